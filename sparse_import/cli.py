"""The ``sparse-import`` command line (also ``python -m sparse_import``).

Commands: ``inspect`` (the model's sparse weights and how each mode lowers them), ``compile``
(build with TVM and export a shared library), ``verify`` (compare the compiled module with LiteRT
or onnxruntime on random inputs) and ``bench`` (dense, sparse and auto side by side). With no
MODEL a small sparse MLP shipped inside the package is used (TFLite, or ONNX with ``--onnx``).

Exit status: 0 success, 1 disagreement found by ``verify``, 2 usage or input error (one line on
stderr: ``sparse-import: error: ...``).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from . import __version__
from ._format import format_table, human_bytes, progress
from .api import MODES

if TYPE_CHECKING:
    from .backend import Decision
    from .pipeline import LoadedModel
    from .verify import OutputCheck

PROG = "sparse-import"
FRAMEWORK_NAMES = {"tflite": "TFLite", "onnx": "ONNX"}
ORACLE_NAMES = {
    "tflite": "LiteRT (builtin kernels, no delegates)",
    "onnx": "onnxruntime (graph optimizations off)",
}


class UsageError(ValueError):
    """A command line that names a model or option the command cannot use."""


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


# --------------------------------------------------------------------------- arguments
def _shape_item(text: str) -> tuple[str, tuple[int, ...]]:
    name, sep, dims = text.rpartition("=")
    try:
        shape = tuple(int(d) for d in dims.split(","))
    except ValueError:
        shape = ()
    if not sep or not name or not shape or min(shape) < 0:
        raise argparse.ArgumentTypeError(
            f"expected NAME=D0,D1,... with non-negative integers, got {text!r}"
        )
    return name, shape


def _dtype_item(text: str) -> tuple[str, str]:
    name, sep, dtype = text.rpartition("=")
    try:
        dtype = np.dtype(dtype).name
    except TypeError:
        sep = ""
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=DTYPE (e.g. x=float32), got {text!r}")
    return name, dtype


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``sparse-import``."""
    model = _Parser(add_help=False)
    model.add_argument(
        "model",
        nargs="?",
        metavar="MODEL",
        help="a .tflite or .onnx file (default: the embedded demo MLP)",
    )
    model.add_argument("--onnx", action="store_true", help="use the embedded ONNX demo model")
    model.add_argument(
        "--shape",
        type=_shape_item,
        action="append",
        default=[],
        metavar="NAME=D0,D1,...",
        help="shape of an input (repeatable); symbolic dimensions default to 1",
    )
    model.add_argument(
        "--dtype",
        type=_dtype_item,
        action="append",
        default=[],
        metavar="NAME=DTYPE",
        help="dtype of an input (repeatable), e.g. x=float32",
    )
    mode = _Parser(add_help=False)
    mode.add_argument(
        "--mode",
        choices=MODES,
        default="auto",
        help="dense: every weight dense; sparse: every matrix-product weight compressed; "
        "auto: per weight, from the cost model (default)",
    )

    parser = _Parser(
        prog=PROG,
        description="Import models with sparse weights (TFLite, ONNX) into Apache TVM Relay.",
        epilog="Run 'sparse-import COMMAND -h' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    inspect = commands.add_parser(
        "inspect", parents=[model], help="list the sparse weights and how each mode lowers them"
    )
    inspect.add_argument("--json", action="store_true", help="print JSON instead of tables")
    inspect.add_argument(
        "--spy", type=Path, metavar="DIR", help="write a sparsity-pattern PNG per weight to DIR"
    )
    compile_ = commands.add_parser(
        "compile", parents=[model, mode], help="build with TVM and export a shared library"
    )
    compile_.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help="library to write (.so, or .tar without a C compiler; default: MODEL_NAME.so)",
    )
    verify = commands.add_parser(
        "verify",
        parents=[model, mode],
        help="run the compiled module and LiteRT/onnxruntime on random inputs; exit 1 if they "
        "disagree",
    )
    verify.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    verify.add_argument(
        "--samples",
        type=_positive,
        default=3,
        metavar="N",
        help="random input sets to compare (default 3)",
    )
    bench = commands.add_parser(
        "bench", parents=[model], help="compare dense, sparse and auto latency and size"
    )
    bench.add_argument(
        "--repeat", type=_positive, default=15, help="timed repeats per mode (default 15)"
    )
    bench.add_argument(
        "--min-repeat-ms",
        type=_positive,
        default=20,
        metavar="MS",
        help="minimum duration of one repeat (default 20)",
    )
    for sub, run in (
        (inspect, cmd_inspect),
        (compile_, cmd_compile),
        (verify, cmd_verify),
        (bench, cmd_bench),
    ):
        sub.set_defaults(run=run)
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sparse-import`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return int(exc.code or 0)
    for logger in ("autotvm", "strategy"):  # "not tuned", "layout is not optimized" notices
        logging.getLogger(logger).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"tvm\.")
            return args.run(args)
    except (ValueError, NotImplementedError, ImportError, OSError) as exc:
        return _error(" ".join(str(exc).split()) or type(exc).__name__)
    except RuntimeError as exc:
        if not type(exc).__module__.startswith("tvm"):
            raise
        return _error(f"TVM failed: {_tvm_summary(str(exc))}")


def _error(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def _tvm_summary(text: str) -> str:
    """The message of a TVM error without its C++ and Python stack traces."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if re.match(r"\w*Error: ", line)]
    if not starts:
        return lines[0] if lines else "unknown error"
    i = starts[-1]
    message = lines[i].split(": ", 1)[1]
    if message.endswith(":") and i + 1 < len(lines):  # "... failed with the following errors:"
        message += " " + lines[i + 1]
    return message


# --------------------------------------------------------------------------- shared steps
def _load(args: argparse.Namespace) -> tuple[LoadedModel, str]:
    """Import the model the arguments name; return it and a label for headings."""
    from .pipeline import demo_model, load_model

    if args.model is not None and args.onnx:
        raise UsageError("--onnx selects the embedded ONNX demo: give MODEL or --onnx, not both")
    if args.model is None:
        path = demo_model("onnx" if args.onnx else "tflite")
        label = f"{path.name} (embedded demo)"
    else:
        path = Path(args.model)
        label = str(path)
    loaded = load_model(path, shape_dict=dict(args.shape), dtype_dict=dict(args.dtype))
    for name, shape in loaded.resolved.items():
        print(
            f"note: input {name!r} has symbolic dimensions; using shape {shape} "
            f"(set it with --shape {name}=...)",
            file=sys.stderr,
        )
    return loaded, f"{label}, {FRAMEWORK_NAMES[loaded.framework]}"


def _header(loaded: LoadedModel, label: str, *extra: tuple[str, str]) -> None:
    """The ``key  value`` lines that open every report."""
    pairs = [
        ("model", label),
        ("inputs", ", ".join(f"{s.name} {s.dtype}[{_shape_text(s.shape)}]" for s in loaded.inputs)),
        *extra,
    ]
    width = max(len(key) for key, _ in pairs)
    for key, value in pairs:
        print(f"{key.ljust(width)}  {value}")
    print()


def _short(name: str, width: int = 36) -> str:
    """A weight name for a table: the first of TFLite's fused names, middle elided if long."""
    name = name.split(";")[0]
    if len(name) <= width:
        return name
    half = (width - 1) // 2
    return f"{name[:half]}…{name[len(name) - (width - 1 - half) :]}"


def _shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(int(n)) for n in shape)


def _lowering(row: dict[str, Any]) -> str:
    """``dense``, ``csr``, ``csr_lhs`` or ``bsr{r}x{c}`` from an inspect row."""
    if row["lowering"] == "bsr":
        return "bsr{}x{}".format(*row["block"])
    return "csr_lhs" if row["sparse_lhs"] else row["lowering"]


def _kept(decisions: Sequence[Decision]) -> str:
    return f"{sum(d.lowering != 'dense' for d in decisions)} of {len(decisions)}"


def _mode_line(mode: str, decisions: Sequence[Decision]) -> tuple[str, str]:
    if not decisions:
        return "mode", f"{mode}; {NO_SPARSE}"
    return "mode", f"{mode}: {_kept(decisions)} sparse weights kept sparse"


NO_SPARSE = "no sparse weights: the model imports as a plain dense model"


# --------------------------------------------------------------------------- inspect
# Keys of an inspect row that describe the weight itself; the others describe one mode's choice.
WEIGHT_KEYS = (
    "param", "name", "consumer", "shape", "dtype", "layout", "stored_block", "index_widths", "nnz",
    "density",
    "dense_bytes", "stored_bytes",
)  # fmt: skip
WEIGHT_HEADERS = ["#", "weight", "consumer", "shape", "dtype", "nnz", "density", "dense", "stored"]


def _weight_cells(i: int, r: dict[str, Any]) -> list[str]:
    return [
        str(i), _short(r["name"] or r["param"]), r["consumer"], _shape_text(r["shape"]),
        r["dtype"], str(r["nnz"]), f"{100 * r['density']:.1f} %", human_bytes(r["dense_bytes"]),
        human_bytes(r["stored_bytes"]),
    ]  # fmt: skip


def cmd_inspect(args: argparse.Namespace) -> int:
    """``sparse-import inspect``: the rows of :func:`sparse_import.inspect` for every mode."""
    from .backend import inspect_rows

    loaded, label = _load(args)
    rows = {m: inspect_rows(loaded.imported, mode=m) for m in MODES}
    spies = _write_spies(loaded, args.spy) if args.spy is not None else []
    if args.json:
        print(json.dumps(_inspect_json(loaded, rows, spies), indent=2))
        return 0
    auto = rows["auto"]
    _header(loaded, label, ("sparse", f"{len(auto)} weight{'s' * (len(auto) != 1)}"))
    if not auto:
        print(NO_SPARSE)
        return 0
    weights = [_weight_cells(i, r) for i, r in enumerate(auto, 1)]
    print(format_table(WEIGHT_HEADERS, weights, "rllllrrrr"))
    print()
    layouts = [[str(i), r["layout"], r["index_widths"]] for i, r in enumerate(auto, 1)]
    headers = ["#", "layout (as the model stores the weight)", "index dtypes"]
    print(format_table(headers, layouts, "rl"))
    print()
    lowering = [
        [str(i), *(_lowering(rows[m][i - 1]) for m in MODES), r["reason"]]
        for i, r in enumerate(auto, 1)
    ]
    print(format_table(["#", *MODES, "why (auto)"], lowering, "r"))
    dense = sum(r["dense_bytes"] for r in auto)
    stored = sum(r["stored_bytes"] for r in auto)
    print()
    print(
        f"sparse weights: {human_bytes(dense)} dense, {human_bytes(stored)} as the model stores "
        f"them ({dense / max(stored, 1):.1f}x smaller)"
    )
    for path in spies:
        print(f"wrote {path}")
    return 0


def _write_spies(loaded: LoadedModel, directory: Path) -> list[Path]:
    from .spy import write_spy

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, weight in enumerate(loaded.imported.weights, 1):
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in weight.param)[:60]
        paths.append(write_spy(weight.source, directory / f"{i:02d}_{stem}.png"))
    return paths


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _inspect_json(
    loaded: LoadedModel, rows: dict[str, list[dict[str, Any]]], spies: list[Path]
) -> Any:
    """One object per weight: the weight's own keys, then ``modes``: each mode's choice."""
    weights = []
    for i, row in enumerate(rows["auto"]):
        entry = {k: v for k, v in row.items() if k in WEIGHT_KEYS}
        entry["modes"] = {
            m: {k: v for k, v in rows[m][i].items() if k not in WEIGHT_KEYS} for m in MODES
        }
        if spies:
            entry["spy"] = str(spies[i])
        weights.append(entry)
    inputs = [{"name": s.name, "shape": s.shape, "dtype": s.dtype} for s in loaded.inputs]
    document = {
        "model": str(loaded.path),
        "framework": loaded.framework,
        "inputs": inputs,
        "weights": weights,
    }
    return _jsonable(document)


# --------------------------------------------------------------------------- compile
def cmd_compile(args: argparse.Namespace) -> int:
    """``sparse-import compile``: build in one mode and export the library."""
    from .pipeline import compile_model, nbytes

    loaded, label = _load(args)
    output = args.output or Path(loaded.path.stem + ".so")
    if not output.parent.is_dir():
        raise UsageError(f"cannot write {str(output)!r}: no directory {str(output.parent)!r}")
    with progress(sys.stderr, f"building {args.mode}"):
        compiled = compile_model(loaded, args.mode)
    try:
        compiled.lib.export_library(str(output))
    except RuntimeError as exc:  # TVM runs the C compiler to link a .so
        detail = "; ".join(line for line in str(exc).splitlines()[:2] if line.strip())
        raise UsageError(
            f"cannot write {str(output)!r}: {detail} (a .tar library needs no C compiler)"
        ) from None
    dense_params = sum(nbytes(v) for v in loaded.imported.params.values())
    _header(
        loaded,
        label,
        _mode_line(args.mode, compiled.decisions),
        ("build", f"{compiled.seconds:.1f} s"),
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


# --------------------------------------------------------------------------- verify
def cmd_verify(args: argparse.Namespace) -> int:
    """``sparse-import verify``: the compiled module against the framework's runtime."""
    from .backend.build import run
    from .pipeline import compile_model
    from .verify import compare, make_oracle, random_inputs

    loaded, label = _load(args)
    oracle = make_oracle(loaded.path, loaded.framework)
    with progress(sys.stderr, f"building {args.mode}"):
        compiled = compile_model(loaded, args.mode)
    rng = np.random.default_rng(args.seed)
    samples = []
    for _ in range(args.samples):
        inputs = random_inputs(loaded.inputs, rng)
        samples.append(compare(run(compiled.lib, inputs), oracle.run(inputs), oracle.outputs))
    # Per output, the worst sample: a failure first, else the largest error.
    worst = [
        max(checks, key=lambda c: (not c.ok, c.error)) for checks in zip(*samples, strict=True)
    ]
    _header(
        loaded,
        label,
        _mode_line(args.mode, compiled.decisions),
        ("oracle", ORACLE_NAMES[loaded.framework]),
        ("samples", f"{args.samples} random input sets, seed {args.seed}"),
    )
    columns = ["output", "shape", "dtype", "max abs error", "error", "limit", "result"]
    print(format_table(columns, [_check_cells(c) for c in worst], "lllrrrl"))
    for check in worst:
        if check.note:
            print(f"{check.name}: {check.note}")
    failed = sum(not c.ok for c in worst)
    oracle_name = ORACLE_NAMES[loaded.framework].split(" (")[0]
    print()
    if failed:
        print(f"FAIL: {failed} of {len(worst)} outputs differ from {oracle_name} beyond the limit")
        return 1
    print(f"OK: every output agrees with {oracle_name}")
    return 0


def _check_cells(check: OutputCheck) -> list[str]:
    if check.rule == "relative":
        error, limit = f"{check.error:.2g} rel", f"{check.limit:g} rel"
    elif check.rule == "steps":
        error, limit = f"{check.error:g} steps", f"{check.limit:g} step"
    else:
        error, limit = f"{check.error:g}", "exact"
    return [
        _short(check.name), _shape_text(check.shape), check.dtype,
        f"{check.max_abs_error:.3g}", error, limit, "ok" if check.ok else "FAIL",
    ]  # fmt: skip


# --------------------------------------------------------------------------- bench
def cmd_bench(args: argparse.Namespace) -> int:
    """``sparse-import bench``: latency and size of each mode, one table."""
    from .backend.build import time_module
    from .pipeline import compile_model
    from .verify import random_inputs

    loaded, label = _load(args)
    inputs = random_inputs(loaded.inputs, 0)
    results = []
    for i, mode in enumerate(MODES, 1):
        with progress(sys.stderr, f"[{i}/{len(MODES)}] {mode}: building and timing"):
            compiled = compile_model(loaded, mode)
            timing = time_module(
                compiled.lib, inputs, repeat=args.repeat, min_repeat_ms=args.min_repeat_ms
            )
        results.append((mode, compiled, timing))
    _header(
        loaded,
        label,
        ("timing", f"{args.repeat} repeats of at least {args.min_repeat_ms} ms, best and median"),
    )
    dense_best = results[0][2].best
    table = [
        [mode, _kept(c.decisions), human_bytes(c.params_nbytes), f"{c.seconds:.1f} s",
         _ms(t.best), _ms(t.median), f"{dense_best / t.best:.2f}x"]
        for mode, c, t in results
    ]  # fmt: skip
    columns = ["mode", "kept sparse", "parameters", "build", "best", "median", "speed-up"]
    print(format_table(columns, table, "lrrrrrr"))
    if not loaded.imported.weights:
        print()
        print(NO_SPARSE)
    return 0


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms" if seconds < 1 else f"{seconds:.2f} s"
