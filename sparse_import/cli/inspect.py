"""``sparse-import inspect``: the sparse weights and how each mode lowers them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._format import format_table, human_bytes, shape_text, short_name
from ..api import MODES
from ._common import NO_SPARSE, UsageError, backend_of, header, load, target_label

if TYPE_CHECKING:
    from ..pipeline import LoadedModel

# Keys of an inspect row that describe the weight itself; the others describe one mode's choice.
WEIGHT_KEYS = (
    "param", "name", "consumer", "shape", "dtype", "layout", "stored_block", "index_widths", "nnz",
    "density", "dense_bytes", "stored_bytes",
)  # fmt: skip
WEIGHT_HEADERS = ["#", "weight", "consumer", "shape", "dtype", "nnz", "density", "dense", "stored"]


def add_parser(commands: Any, parents: dict[str, argparse.ArgumentParser]) -> Any:
    """Register ``inspect`` and its options."""
    parser = commands.add_parser(
        "inspect",
        parents=[parents["model"]],
        help="list the sparse weights and how each mode lowers them",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument(
        "--spy", type=Path, metavar="DIR", help="write a sparsity-pattern PNG per weight to DIR"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """The rows of :func:`sparse_import.inspect` for every mode, as tables or JSON."""
    if args.spy is not None and args.spy.exists() and not args.spy.is_dir():
        raise UsageError(f"argument --spy: {str(args.spy)!r} exists and is not a directory")
    loaded, label = load(args, "inspect")
    if backend_of(args, "inspect") == "relax":
        from ..relax_backend import inspect_rows
    else:
        from ..relay_backend import inspect_rows
    target, target_text = target_label(None, runs_here=False)
    rows = {m: inspect_rows(loaded.imported, mode=m) for m in MODES}
    spies = _write_spies(loaded, args.spy) if args.spy is not None else []
    if args.json:
        print(json.dumps(_inspect_json(loaded, target, rows, spies), indent=2))
        return 0
    auto = rows["auto"]
    header(
        loaded,
        label,
        ("sparse", f"{len(auto)} weight{'s' * (len(auto) != 1)}"),
        ("target", target_text),
        ("prices", _prices()),
    )
    if not auto:
        print(NO_SPARSE)
        return 0
    weights = [_weight_cells(i, r) for i, r in enumerate(auto, 1)]
    print(format_table(WEIGHT_HEADERS, weights, "rllllrrrr"))
    print()
    layouts = [[str(i), r["layout"], r["index_widths"]] for i, r in enumerate(auto, 1)]
    print(format_table(["#", "layout (as the model stores the weight)", "index dtypes"], layouts))
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


def _prices() -> str:
    """Where ``auto``'s kernel prices for this CPU (what ``inspect`` plans for) come from:
    built in, measured, or the fallback."""
    from ..target import calibration, resolve

    return calibration(resolve(None)).describe()


def _weight_cells(i: int, r: dict[str, Any]) -> list[str]:
    return [
        str(i), short_name(r["name"] or r["param"]), r["consumer"], shape_text(r["shape"]),
        r["dtype"], str(r["nnz"]), f"{100 * r['density']:.1f} %", human_bytes(r["dense_bytes"]),
        human_bytes(r["stored_bytes"]),
    ]  # fmt: skip


def _lowering(row: dict[str, Any]) -> str:
    """``dense``, ``csr``, ``csr_lhs`` or ``bsr{r}x{c}`` from an inspect row."""
    if row["lowering"] == "bsr":
        return "bsr{}x{}".format(*row["block"])
    return "csr_lhs" if row["sparse_lhs"] else row["lowering"]


def _write_spies(loaded: LoadedModel, directory: Path) -> list[Path]:
    from ..spy import spy_filename, write_spy

    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = (exc.strerror or type(exc).__name__).lower()
        raise UsageError(f"argument --spy: cannot create {str(directory)!r}: {reason}") from None
    paths: list[Path] = []
    for weight in loaded.imported.weights:
        name = weight.source.name or weight.tensor.name or weight.param
        file = spy_filename(name, [p.name for p in paths])
        paths.append(write_spy(weight.source, directory / file, name))
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
    loaded: LoadedModel, target: str, rows: dict[str, list[dict[str, Any]]], spies: list[Path]
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
        "target": target,
        "prices": _prices(),
        "inputs": inputs,
        "weights": weights,
    }
    return _jsonable(document)
