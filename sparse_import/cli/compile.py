"""``sparse-import compile``: build in one mode and export the library.

The library is ``-o FILE``, which must end in ``.so`` (a shared library; linking it needs a C
compiler, as TVM's ``export_library`` does) or ``.tar`` (object files, no compiler needed). By
default it is named after the model file and the mode, in the current directory:
``demo_mlp.tflite`` in mode ``auto`` gives ``demo_mlp.tflite.auto.so``, so models of different
formats or modes never overwrite each other's library.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .._format import format_table, human_bytes, progress
from ._common import UsageError, header, load, mode_line, target_label

LIBRARY_SUFFIXES = (".so", ".tar")


def add_parser(commands: Any, parents: dict[str, argparse.ArgumentParser]) -> Any:
    """Register ``compile`` and its options."""
    parser = commands.add_parser(
        "compile",
        parents=[parents["model"], parents["mode"], parents["target"]],
        help="build with TVM and export a shared library",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help="library to write, ending in .so, or .tar without a C compiler "
        "(default: MODEL_FILE_NAME.MODE.so)",
    )
    return parser


def default_output(model: Path, mode: str) -> Path:
    """``MODEL_FILE_NAME.MODE.so`` in the current directory.

    Examples
    --------
    >>> from pathlib import Path
    >>> from sparse_import.cli.compile import default_output
    >>> default_output(Path("models/demo_mlp.onnx"), "sparse")
    PosixPath('demo_mlp.onnx.sparse.so')
    """
    return Path(f"{model.name}.{mode}.so")


def check_output(output: Path) -> None:
    """Refuse a library name without a library suffix, a directory, or a missing directory."""
    if output.suffix not in LIBRARY_SUFFIXES:
        raise UsageError(
            f"argument -o/--output: {str(output)!r} does not end in .so or .tar; name the "
            "library FILE.so (or FILE.tar without a C compiler)"
        )
    if output.is_dir():
        raise UsageError(f"argument -o/--output: {str(output)!r} is a directory")
    if not output.parent.is_dir():
        raise UsageError(f"cannot write {str(output)!r}: no directory {str(output.parent)!r}")


def run(args: argparse.Namespace) -> int:
    """Build the model in ``--mode`` for ``--target`` and export the library."""
    from .. import pipeline

    if args.output is not None:
        check_output(args.output)
    target, target_text = target_label(args.target, runs_here=False)
    loaded, label = load(args, "compile")
    output = args.output or default_output(loaded.path, args.mode)
    check_output(output)
    with progress(sys.stderr, f"building {args.mode}"):
        compiled = pipeline.compile_model(loaded, args.mode, target=target)
    try:
        compiled.lib.export_library(str(output))
    except RuntimeError as exc:  # TVM runs the C compiler to link a .so
        detail = "; ".join(line for line in str(exc).splitlines()[:2] if line.strip())
        raise UsageError(
            f"cannot write {str(output)!r}: {detail} (a .tar library needs no C compiler)"
        ) from None
    imported = loaded.imported
    dense_params = sum(pipeline.nbytes(v) for v in imported.params.values()) + sum(
        w.tensor.dense_nbytes for w in imported.weights if not imported.bound(w)
    )
    header(
        loaded,
        label,
        mode_line(args.mode, compiled.decisions),
        ("build", f"{compiled.seconds:.1f} s"),
        ("target", target_text),
    )
    sizes = [
        ["parameters, every weight dense", human_bytes(dense_params)],
        [f"parameters, mode {args.mode}", human_bytes(compiled.params_nbytes)],
        [f"library {output}", human_bytes(output.stat().st_size)],
    ]
    print(format_table(["", "size"], sizes, "lr"))
    print()
    print(f"load it with tvm.runtime.load_module({str(output)!r})")
    return 0
