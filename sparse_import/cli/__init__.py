"""The ``sparse-import`` command line (also ``python -m sparse_import``).

Commands, one module each: ``inspect`` (the model's sparse weights and how each mode lowers
them), ``compile`` (build with TVM and export a shared library), ``verify`` (compare the compiled
module with LiteRT or onnxruntime on random inputs), ``bench`` (dense, sparse and auto side by
side) and ``calibrate`` (re-measure the cost model for this CPU). With no MODEL a small sparse
MLP shipped inside the package is used (TFLite, or ONNX with ``--onnx``).

Exit status: 0 success, 1 disagreement found by ``verify``, 2 usage or input error (one line on
stderr: ``sparse-import: error: ...``, never a traceback); a closed output pipe ends the program
quietly with 141, as SIGPIPE would. Set ``SPARSE_IMPORT_TRACEBACK=1`` to see the traceback of
an unexpected error instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence

from .. import __version__
from . import bench, calibrate, compile, inspect, verify
from ._common import (
    PROG,
    Parser,
    backend_of,
    error_message,
    mode_options,
    model_options,
    target_options,
)

__all__ = ["build_parser", "main"]

COMMANDS = (inspect, compile, verify, bench, calibrate)
EXIT_USAGE = 2
EXIT_SIGPIPE = 128 + 13
_TRACEBACK_ENV = "SPARSE_IMPORT_TRACEBACK"


def build_parser() -> Parser:
    """The argument parser of ``sparse-import``."""
    parser = Parser(
        prog=PROG,
        description="Import models with sparse weights (TFLite, ONNX) into Apache TVM.",
        epilog="Run 'sparse-import COMMAND -h' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parents = {"model": model_options(), "mode": mode_options(), "target": target_options()}
    for command in COMMANDS:
        command.add_parser(commands, parents).set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sparse-import`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    try:
        return _run(build_parser(), argv)
    except BrokenPipeError:  # the reader of stdout went away (``| head``): stop quietly
        _discard_stdout()
        return EXIT_SIGPIPE


def _run(parser: Parser, argv: Sequence[str] | None) -> int:
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        sys.stdout.flush()
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    for logger in ("autotvm", "strategy"):  # "not tuned", "layout is not optimized" notices
        logging.getLogger(logger).setLevel(logging.ERROR)
    diagnostics: list[str] = []
    try:
        with warnings.catch_warnings(), _tvm_diagnostics(diagnostics):
            warnings.filterwarnings("ignore", module=r"tvm\.")
            backend_of(args, args.command)  # before a command imports its TVM flavour
            status = args.run(args)
            sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return status
    except BrokenPipeError:
        raise
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 128 + 2
    except Exception as exc:
        if os.environ.get(_TRACEBACK_ENV):
            raise
        return _error(error_message(exc, diagnostics))


def _error(message: str) -> int:
    with contextlib.suppress(OSError):
        print(f"{PROG}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _discard_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush stays quiet."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


@contextlib.contextmanager
def _tvm_diagnostics(found: list[str]) -> Iterator[None]:
    """Collect the messages TVM's type checker would print to stderr, to put them in the one
    error line instead."""
    try:
        from tvm.ir import diagnostics  # every command imports TVM to read the model
    except ImportError:  # maintained TVM (Relax) has no Relay type checker to quiet
        yield
        return

    def collect(context) -> None:
        found.extend(str(d.message) for d in context.diagnostics)

    diagnostics.override_renderer(collect)
    try:
        yield
    finally:
        diagnostics.override_renderer(None)
