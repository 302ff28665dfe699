"""What every command shares: its options, loading the model, the report header, errors."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import numpy as np

from .._format import one_line, shape_text
from ..api import BACKENDS, MODES, default_backend

if TYPE_CHECKING:
    from ..pipeline import LoadedModel
    from ..planning.decide import Decision

PROG = "sparse-import"
FRAMEWORK_NAMES = {"tflite": "TFLite", "onnx": "ONNX"}
NO_SPARSE = "no sparse weights: the model imports as a plain dense model"
MAX_DIM = 2**31 - 1  # TVM shapes are 32-bit
# The input dtypes TVM's frontends and the random inputs of verify and bench handle.
INPUT_DTYPES = (
    "float16", "float32", "float64", "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64", "bool",
)  # fmt: skip
MESSAGE_LIMIT = 400  # characters of one error line after the prefix


class UsageError(ValueError):
    """A command line that names a model or option the command cannot use."""


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {one_line(message)} (see '{self.prog} --help')\n")


# --------------------------------------------------------------------------- option types
def shape_item(text: str) -> tuple[str, tuple[int, ...]]:
    """``NAME=D0,D1,...`` with positive dimensions -> ``(NAME, (D0, D1, ...))``."""
    name, sep, dims = text.rpartition("=")
    try:
        shape = tuple(int(d) for d in dims.split(","))
    except ValueError:
        shape = ()
    if not sep or not name or not shape or not all(0 < d <= MAX_DIM for d in shape):
        raise argparse.ArgumentTypeError(
            f"expected NAME=D0,D1,... with positive integers (at most {MAX_DIM}), "
            f"got {one_line(text, 80)!r}"
        )
    return name, shape


def dtype_item(text: str) -> tuple[str, str]:
    """``NAME=DTYPE`` with a dtype an input can have -> ``(NAME, DTYPE)``."""
    name, sep, dtype = text.rpartition("=")
    try:
        dtype = np.dtype(dtype).name
    except (TypeError, ValueError, SyntaxError):
        sep = ""
    if not sep or not name or dtype not in INPUT_DTYPES:
        raise argparse.ArgumentTypeError(
            f"expected NAME=DTYPE with DTYPE one of {', '.join(INPUT_DTYPES)}, "
            f"got {one_line(text, 80)!r}"
        )
    return name, dtype


def count(low: int, high: int) -> Callable[[str], int]:
    """An integer option in ``[low, high]`` (a bound keeps a typo from running for days)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"expected an integer from {low} to {high}, got {one_line(text, 80)!r}"
            )
        return value

    return parse


def model_options() -> argparse.ArgumentParser:
    """MODEL, ``--onnx``, ``--shape``, ``--dtype``: the options of every command."""
    model = Parser(add_help=False)
    model.add_argument(
        "model",
        nargs="?",
        metavar="MODEL",
        help="a .tflite or .onnx file (default: the embedded demo MLP)",
    )
    model.add_argument("--onnx", action="store_true", help="use the embedded ONNX demo model")
    model.add_argument(
        "--shape",
        type=shape_item,
        action="append",
        default=[],
        metavar="NAME=D0,D1,...",
        help="shape of an input (repeatable); symbolic dimensions default to 1",
    )
    model.add_argument(
        "--dtype",
        type=dtype_item,
        action="append",
        default=[],
        metavar="NAME=DTYPE",
        help="dtype of an input (repeatable), e.g. x=float32",
    )
    model.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="relay (TVM 0.19) or relax (maintained TVM); default: the TVM installed",
    )
    return model


def backend_of(args: argparse.Namespace, command: str) -> str:
    """The backend ``--backend`` names (default: the installed TVM's), refused when that TVM is
    not installed or ``command`` does not support it yet."""
    chosen = args.backend or default_backend()
    if chosen != default_backend():
        raise UsageError(
            f"argument --backend: {chosen} needs the {chosen.capitalize()} flavour of TVM, which "
            f'is not installed here (pip install -e ".[{chosen},test]" in its own environment)'
        )
    if chosen == "relax" and command != "inspect":
        raise UsageError(
            f"{command} builds with Relay only for now; with Relax use inspect, or "
            "sparse_import.to_relax and tvm.relax.build"
        )
    return chosen


def mode_options() -> argparse.ArgumentParser:
    """``--mode``: the lowering of compile and verify."""
    mode = Parser(add_help=False)
    mode.add_argument(
        "--mode",
        choices=MODES,
        default="auto",
        help="dense: every weight dense; sparse: every matrix-product weight compressed; "
        "auto: per weight, from the cost model (default)",
    )
    return mode


def target_options() -> argparse.ArgumentParser:
    """``--target``: what compile, verify and bench build for."""
    target = Parser(add_help=False)
    target.add_argument(
        "--target",
        metavar="TARGET",
        help="TVM target to build for (default: this machine's CPU, e.g. 'llvm -mcpu=znver4')",
    )
    return target


# --------------------------------------------------------------------------- shared steps
def load(args: argparse.Namespace, command: str) -> tuple[LoadedModel, str]:
    """Import the model the arguments name, with the backend ``--backend`` names (see
    :func:`backend_of`); return it and a label for headings."""
    from ..pipeline import demo_model, load_model

    if args.model is not None and args.onnx:
        raise UsageError("--onnx selects the embedded ONNX demo: give MODEL or --onnx, not both")
    if args.model is None:
        path = demo_model("onnx" if args.onnx else "tflite")
        label = f"{path.name} (embedded demo)"
    else:
        path = Path(args.model)
        label = str(path)
    if backend_of(args, command) == "relax":
        loaded = _load_relax(path, args)
    else:
        loaded = load_model(path, shape_dict=dict(args.shape), dtype_dict=dict(args.dtype))
    for name, shape in loaded.resolved.items():
        print(
            f"note: input {name!r} has symbolic dimensions; using shape {shape} "
            f"(set it with --shape {name}=...)",
            file=sys.stderr,
        )
    return loaded, f"{label}, {FRAMEWORK_NAMES[loaded.framework]}"


def _load_relax(path: Path, args: argparse.Namespace) -> LoadedModel:
    """The model imported into Relax, its inputs as the Relax module declares them."""
    from ..pipeline import LoadedModel
    from ..relax_backend.api import import_model
    from ..relax_backend.inputs import relax_inputs
    from ..verify import TensorSpec

    shapes, dtypes = dict(args.shape), dict(args.dtype) or None
    imported = import_model(path, shape_dict=shapes or None, dtype_dict=dtypes)
    resolved = {
        name: tuple(1 if d is None else d for d in shape)
        for name, shape, _ in relax_inputs(imported)
        if None in shape
    }
    if resolved:  # the sparse kernels need static shapes: symbolic dimensions become 1
        imported = import_model(path, shape_dict={**shapes, **resolved}, dtype_dict=dtypes)
    inputs = tuple(TensorSpec(*found) for found in relax_inputs(imported))
    return LoadedModel(path, imported.framework, imported, inputs, resolved)


def target_label(target: str | None, *, runs_here: bool) -> tuple[str, str]:
    """``(TVM target string, label)`` for ``--target``; refuse a target TVM does not parse, and
    one this CPU cannot run when the command runs the module (``runs_here``)."""
    from .. import pipeline

    try:
        resolved = pipeline.resolve_target(target)
    except ValueError as exc:
        raise UsageError(f"argument --target: {exc}") from None
    if runs_here:
        problem = pipeline.runs_here(resolved)
        if problem:
            raise UsageError(f"argument --target: {problem}; this command runs the module here")
    if target is None or target.strip() == "host":
        return resolved, f"{resolved} (this machine's CPU)"
    return resolved, resolved if "-mcpu=native" in target else one_line(target)


def header(loaded: LoadedModel, label: str, *extra: tuple[str, str]) -> None:
    """The ``key  value`` lines that open every report."""
    inputs = ", ".join(f"{s.name} {s.dtype}[{shape_text(s.shape)}]" for s in loaded.inputs)
    pairs = [("model", label), ("inputs", inputs or "none"), *extra]
    width = max(len(key) for key, _ in pairs)
    for key, value in pairs:
        print(f"{key.ljust(width)}  {value}")
    print()


def kept(decisions: Sequence[Decision]) -> str:
    """``"2 of 3"``: sparse weights kept sparse."""
    return f"{sum(d.lowering != 'dense' for d in decisions)} of {len(decisions)}"


def mode_line(mode: str, decisions: Sequence[Decision]) -> tuple[str, str]:
    """The header line of a mode and what it kept sparse."""
    if not decisions:
        return "mode", f"{mode}; {NO_SPARSE}"
    return "mode", f"{mode}: {kept(decisions)} sparse weights kept sparse"


# --------------------------------------------------------------------------- errors
_TRACEBACK = "Traceback (most recent call last)"
# Errors the library and the runtimes it calls raise for bad input (messages say what is wrong).
_DOCUMENTED = (ValueError, NotImplementedError, ImportError, OSError, RuntimeError)
_ERROR_LINE = re.compile(r"^\s*(?:[\w.]+\.)?(\w*(?:Error|Exception)): (.+)$")


def tvm_summary(text: str) -> str:
    """The message of a TVM error without its C++ and Python stack traces.

    Examples
    --------
    >>> from sparse_import.cli._common import tvm_summary
    >>> tvm_summary("Traceback (most recent call last):\\n  0: tvm::Foo\\nTVMError: boom")
    'boom'
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if _ERROR_LINE.match(line)]
    if not starts:
        kept_lines = [line for line in lines if not _is_frame(line)]
        return kept_lines[0] if kept_lines else "unknown error"
    i = starts[-1]
    message = _ERROR_LINE.match(lines[i]).group(2)  # type: ignore[union-attr]
    if message.endswith(":") and i + 1 < len(lines):  # "... failed with the following errors:"
        message += " " + lines[i + 1]
    return message


def _is_frame(line: str) -> bool:
    return line.startswith((_TRACEBACK, "File ")) or bool(re.match(r"^\d+: ", line))


def strip_backtrace(text: str) -> str:
    """``text`` with any embedded TVM or Python backtrace replaced by its final message."""
    head, found, tail = text.partition(_TRACEBACK)
    if not found:
        return text
    head = re.sub(r"\w*Error:\s*$", "", head.rstrip()).rstrip()
    return f"{head} {tvm_summary(found + tail)}".strip()


def error_message(exc: BaseException, diagnostics: Sequence[str] = ()) -> str:
    """One line for any exception: its message without backtraces or errno numbers."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename!r}: " if exc.filename else ""
        message = f"{where}{exc.strerror.lower()}"
    else:
        message = strip_backtrace(str(exc)) or type(exc).__name__
        if not isinstance(exc, _DOCUMENTED):  # a bug, or a library failing in an unforeseen way
            message = f"unexpected {type(exc).__name__}: {message}"
    if type(exc).__module__.startswith("tvm"):
        # A DiagnosticError says only "diagnostics were emitted"; they are the message.
        found = "; ".join(dict.fromkeys(diagnostics))
        message = f"TVM failed: {found or tvm_summary(str(exc))}"
    return one_line(message, MESSAGE_LIMIT)
