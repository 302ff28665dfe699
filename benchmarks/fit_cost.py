"""Fit the constants of ``sparse_import.planning.cost`` to ``benchmarks/calibrate.py`` output.

Each kernel (dense, CSR, CSR through the sparse-left-hand-side kernel, BSR per block shape) and
calibrated batch size gets the four constants of ``cost.KernelCost``, fitted by non-negative
least squares on the relative error. The script prints the constants in the form ``cost.py``
keeps them (``--write`` puts them there), the fit quality per kernel, and the regret of choosing
by the model against the measured best in every cell of the grid.

Run from the repository root: ``python -m benchmarks.fit_cost [FILE] [--write]``.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from benchmarks.calibrate import DEFAULT_OUT
from benchmarks.common import format_table
from sparse_import.planning import cost

COST_PY = Path(cost.__file__)


def _label(row: dict) -> str:
    return row["kernel"] if row["kernel"] != "bsr" else "bsr{}x{}".format(*row["block"])


def _features(row: dict) -> np.ndarray:
    kind = "bsr" if row["kernel"] == "bsr" else row["kernel"].replace("csr_lhs", "csr")
    block = tuple(row["block"])
    stored = cost.operand_bytes(kind, row["rows"], row["nblocks"], block)
    return np.array(cost.KernelCost.features(row["nblocks"], stored, row["rows"] // block[0]))


def _conv(row: dict) -> tuple[bool, str, int] | None:
    """``(sparse, layout, kernel)`` of a convolution row (label ``"sparse_conv:NHWC3"``)."""
    family, _, spec = row["kernel"].partition(":")
    return (family == "sparse_conv", spec[:4], int(spec[4:])) if spec else None


def _conv_features(row: dict) -> np.ndarray:
    return np.array(cost.ConvCost.features(row["batch"], row["nnz"], row["rows"], row["cols"]))


def _nnls(group: list[dict], features) -> list[float]:
    """Non-negative least squares of the relative error."""
    seconds = np.array([g["best_ms"] * 1e-3 for g in group])
    design = np.stack([features(g) for g in group]) / seconds[:, None]
    coef, _ = nnls(design, np.ones(len(group)))
    return [float(c) for c in coef]


def fit_conv(rows: list[dict]) -> dict[str, cost.ConvCost]:
    """Convolution constants per label (``"conv:NHWC3"``, ``"sparse_conv:NHWC3"``)."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if _conv(row):
            groups[row["kernel"]].append(row)
    return {label: cost.ConvCost(*_nnls(g, _conv_features)) for label, g in groups.items()}


def fit(rows: list[dict]) -> dict[str, dict[int, cost.KernelCost]]:
    """Matrix-product constants per kernel label and batch size."""
    groups: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for row in rows:
        if not _conv(row):
            groups[_label(row), row["batch"]].append(row)
    fitted: dict[str, dict[int, cost.KernelCost]] = defaultdict(dict)
    for (label, batch), group in sorted(groups.items()):
        fitted[label][batch] = cost.KernelCost(*_nnls(group, _features))
    return dict(fitted)


def predict(row: dict) -> float:
    """``sparse_import.planning.cost``'s estimate for a measured row, in seconds."""
    block, batch = tuple(row["block"]), row["batch"]
    conv = _conv(row)
    if conv:
        sparse, layout, kernel = conv
        stored = row["nnz"] if sparse else None
        return cost.conv_seconds(layout, kernel, row["rows"], row["cols"], batch, stored=stored)
    if row["kernel"] == "dense":
        return cost.dense_seconds(row["rows"], row["cols"], batch)
    if row["kernel"] in ("csr", "csr_lhs"):
        return cost.csr_seconds(
            row["rows"], row["cols"], row["nnz"], batch, sparse_lhs=row["kernel"] == "csr_lhs"
        )
    return cost.bsr_seconds(row["rows"], row["cols"], row["nblocks"], block, batch)


def errors(rows: list[dict]) -> dict[str, np.ndarray]:
    """Relative error of the model per kernel label."""
    found: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        found[_label(row)].append(predict(row) / (row["best_ms"] * 1e-3) - 1.0)
    return {k: np.abs(np.array(v)) for k, v in found.items()}


def quality(rows: list[dict]) -> str:
    """Table of the model's relative errors per kernel."""
    body = [
        (k, e.size, float(np.median(e)), float(np.percentile(e, 90)), float(e.max()))
        for k, e in sorted(errors(rows).items())
    ]
    return format_table(("kernel", "rows", "median|err|", "p90|err|", "max|err|"), body)


def _cells(rows: list[dict]) -> dict[tuple, list[dict]]:
    """Rows grouped by the weight they describe, each cell with every kernel measured for it.

    A cell is a shape, batch, density and tile pattern: the dense row, the CSR rows of that
    density (their times do not depend on the pattern) and the BSR rows drawn in the pattern;
    or a convolution (batch: output pixels) with its dense and sparse rows.
    """
    dense = {(r["rows"], r["cols"], r["batch"]): r for r in rows if r["kernel"] == "dense"}
    csr: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if r["kernel"] in ("csr", "csr_lhs"):
            csr[r["rows"], r["cols"], r["batch"], r["density"]].append(r)
    cells: dict[tuple, list[dict]] = {}
    conv_dense = {
        (r["kernel"][5:], r["rows"], r["cols"], r["batch"]): r
        for r in rows
        if r["kernel"].startswith("conv:")
    }
    for r in rows:
        if r["kernel"].startswith("sparse_conv:"):
            key = (r["kernel"][12:], r["rows"], r["cols"], r["batch"])
            name = f"{key[0]} {key[1]}x{key[2]}"
            cells[name, key[3], r["density"], "conv"] = [conv_dense[key], r]
        if r["kernel"] == "bsr":
            size = (r["rows"], r["cols"], r["batch"])
            key = (f"{size[0]}x{size[1]}", size[2], r["density"], "{}x{}".format(*r["pattern"]))
            cells.setdefault(key, [dense[size], *csr[(*size, r["density"])]]).append(r)
    return cells


def regret(rows: list[dict]) -> str:
    """Measured time of the model's pick over the measured best, per cell of the grid."""
    body = []
    for key, cell in sorted(_cells(rows).items()):
        pick = min(cell, key=predict)
        best = min(cell, key=lambda r: r["best_ms"])
        body.append((*key, _label(best), _label(pick), pick["best_ms"] / best["best_ms"]))
    ratios = np.array([b[-1] for b in body])
    table = format_table(
        ("weight", "batch", "density", "tiles", "best", "model picks", "pick/best"), body
    )
    return (
        f"{table}\ncells: {ratios.size}, pick within 10% of best: "
        f"{np.mean(ratios <= 1.1):.0%}, worst pick/best: {ratios.max():.3f}"
    )


def _literal(table: dict[int, cost.KernelCost], indent: str) -> str:
    inner = indent + "    "
    lines = [
        f"{inner}{b}: KernelCost({', '.join(f'{v:.4g}' for v in vars(c).values())}),"
        for b, c in sorted(table.items())
    ]
    return "\n".join(
        [
            "_table(",
            f"{indent}    {{",
            *("    " + ln for ln in lines),
            f"{indent}    }}",
            f"{indent})",
        ]
    )


def constants_block(
    fitted: dict[str, dict[int, cost.KernelCost]], conv: dict[str, cost.ConvCost]
) -> str:
    """The fitted constants as the Python source ``cost.py`` holds them."""
    lines = [
        f"DENSE: Table = {_literal(fitted['dense'], '')}",
        f"CSR: Table = {_literal(fitted['csr'], '')}",
        f"CSR_LHS: Table = {_literal(fitted['csr_lhs'], '')}",
        "BSR: Mapping[tuple[int, int], Table] = MappingProxyType(",
        "    {",
    ]
    for label in sorted(k for k in fitted if k.startswith("bsr")):
        r, c = label[3:].split("x")
        lines.append(f"        ({r}, {c}): {_literal(fitted[label], '        ')},")
    lines += ["    }", ")"]
    for name, prefix in (("CONV_DENSE", "conv:"), ("CONV_SPARSE", "sparse_conv:")):
        lines += [f"{name}: Mapping[tuple[str, int], ConvCost] = MappingProxyType(", "    {"]
        for label in sorted(k for k in conv if k.startswith(prefix)):
            spec = label[len(prefix) :]
            numbers = ", ".join(f"{v:.4g}" for v in vars(conv[label]).values())
            lines.append(f'        ("{spec[:4]}", {spec[4:]}): ConvCost({numbers}),')
        lines += ["    }", ")"]
    return "\n".join(lines)


def write(block: str, note: str) -> None:
    """Replace the fitted constants (and the fit note of the docstring) in ``cost.py``."""
    text = COST_PY.read_text()
    text = re.sub(
        r"(# \{FITTED\}\n).*?(# \{END\})", lambda m: m[1] + block + "\n" + m[2], text, flags=re.S
    )
    text = re.sub(r"Fitted: .*?\n", lambda _: f"Fitted: {note}\n", text)
    COST_PY.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, nargs="?", default=DEFAULT_OUT)
    parser.add_argument("--write", action="store_true", help="update cost.py")
    args = parser.parse_args()
    payload = json.loads(args.file.read_text())
    rows = payload["rows"]
    block = constants_block(fit(rows), fit_conv(rows))
    print(f"# fitted from {args.file.name}: {payload['machine']}, {payload['date']}")
    print(block)
    if args.write:
        write(block, f"{payload['date']} on {payload['machine']}.")
        import importlib

        importlib.reload(cost)
    print("\nquality of the constants in sparse_import/planning/cost.py:")
    print(quality(rows))
    print()
    print(regret(rows))


if __name__ == "__main__":
    main()
