"""Measure TVM's dense and sparse matrix-product kernels on this machine.

Times ``nn.dense`` and ``nn.sparse_dense`` (CSR, CSR through TVM's sparse-left-hand-side kernel,
BSR with several block shapes) for a grid of weight shapes, densities and batch sizes, prints
one table, and writes the raw rows to JSON for ``benchmarks/fit_cost.py``, which fits the
constants of ``sparse_import.planning.cost``.

BSR rows use weights whose nonzeros fill whole tiles (no explicit zeros); the "refill" rows take
an element-random (or 1x4-tiled) weight and re-block it, so their tiles hold explicit zeros:
they check that the model predicts re-blocking from the block count alone.

Every measurement is the minimum over ``--passes`` passes through the grid (and over the rows of
an earlier run given with ``--merge``), so a burst of load from other processes inflates at most
one of them.

Run from the repository root: ``python -m benchmarks.calibrate [--quick] [--merge FILE]``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from benchmarks.common import (
    block_sparse,
    conv_layer,
    dense_layer,
    element_sparse,
    format_table,
    machine,
    sparse_layer,
    time_layer,
)

SHAPES = ((2048, 2048), (4096, 1024), (1024, 4096), (512, 512))
DENSE_ONLY_SHAPES = ((256, 256), (1024, 1024), (4096, 4096), (768, 3072), (3072, 768))
DENSITIES = (0.5, 0.3, 0.1, 0.05, 0.02)
BATCHES = (1, 4, 16)
BLOCKS = ((1, 4), (4, 1), (8, 1), (16, 1), (1, 16), (4, 4))
CONVS = (("NHWC", 1), ("NHWC", 3), ("NCHW", 1), ("NCHW", 3))  # (data layout, kernel size)
CONV_SIZES = ((56, 64), (28, 128), (14, 256), (28, 64), (28, 32), (8, 64))  # (h = w, channels)
CONV_DENSITIES = (0.05, 0.1, 0.3, 0.6)
REFILL = (((1, 1), (4, 1)), ((1, 1), (8, 1)), ((1, 4), (4, 4)), ((1, 4), (16, 4)))
DEFAULT_OUT = Path(__file__).with_name("results") / "calibration.json"


@dataclass(frozen=True)
class Row:
    """One measurement."""

    rows: int
    cols: int
    density: float
    batch: int
    kernel: str  # "dense" | "csr" | "csr_lhs" | "bsr" | conv_label(...)
    block: tuple[int, int]
    pattern: tuple[int, int]  # tile shape the nonzeros were drawn in
    nnz: int  # stored values, explicit zeros included
    nblocks: int
    best_ms: float
    median_ms: float

    @property
    def key(self) -> tuple:
        """What was measured (everything but the times)."""
        return (
            self.rows,
            self.cols,
            self.density,
            self.batch,
            self.kernel,
            tuple(self.block),
            tuple(self.pattern),
        )


def _row(shape, density, batch, kernel, matrix, pattern, x) -> Row:
    """Build, time and describe one layer (``matrix`` is a dense ndarray for ``"dense"``)."""
    if kernel == "dense":
        layer, block, stored = dense_layer(matrix, batch), (1, 1), matrix.size
    else:
        layer = sparse_layer(matrix, batch, sparse_lhs=kernel == "csr_lhs")
        block = matrix.blocksize if kernel == "bsr" else (1, 1)
        stored = int(matrix.data.size)
    timing = time_layer(*layer, x)
    return Row(
        *shape,
        density,
        batch,
        kernel,
        tuple(block),
        pattern,
        stored,
        stored // (block[0] * block[1]),
        timing.best * 1e3,
        timing.median * 1e3,
    )


def _sparse_rows(rng: np.random.Generator, shape, density: float, batch: int) -> list[Row]:
    x = rng.standard_normal((batch, shape[1])).astype("float32")
    csr = element_sparse(rng, shape, density)
    rows = [_row(shape, density, batch, k, csr, (1, 1), x) for k in ("csr", "csr_lhs")]
    for block in BLOCKS:
        bsr = block_sparse(rng, shape, density, block)
        rows.append(_row(shape, density, batch, "bsr", bsr, block, x))
    for pattern, block in REFILL:
        source = block_sparse(rng, shape, density, pattern)
        bsr = sp.bsr_matrix(source.tocsr(), blocksize=block)
        rows.append(_row(shape, density, batch, "bsr", bsr, pattern, x))
    return rows


def _grid(quick: bool, seed: int) -> list[Row]:
    rng = np.random.default_rng(seed)
    shapes, densities = (SHAPES[:1], (0.1, 0.02)) if quick else (SHAPES, DENSITIES)
    rows: list[Row] = []
    for shape in shapes + (() if quick else DENSE_ONLY_SHAPES):
        weight = rng.standard_normal(shape).astype("float32")
        for batch in BATCHES:
            x = rng.standard_normal((batch, shape[1])).astype("float32")
            rows.append(_row(shape, 1.0, batch, "dense", weight, (1, 1), x))
            if shape in shapes:
                for density in densities:
                    rows.extend(_sparse_rows(rng, shape, density, batch))
    return rows


def conv_label(layout: str, kernel: int, *, sparse: bool) -> str:
    """Kernel label of a convolution row: ``"conv:NHWC3"`` or ``"sparse_conv:NHWC3"``."""
    return f"{'sparse_conv' if sparse else 'conv'}:{layout}{kernel}"


def _conv_grid(seed: int) -> list[Row]:
    """Dense ``nn.conv2d`` against CSR ``nn.sparse_conv2d`` (``batch`` holds the pixels)."""
    rng = np.random.default_rng(seed)
    rows: list[Row] = []
    for layout, kernel in CONVS:
        for size, channels in CONV_SIZES:
            shape = (channels, kernel * kernel * channels)
            x_shape = (1, size, size, channels) if layout == "NHWC" else (1, channels, size, size)
            x = rng.standard_normal(x_shape).astype("float32")
            for density in (1.0, *CONV_DENSITIES):
                matrix = element_sparse(rng, shape, min(density, 1.0))
                sparse = density < 1.0
                timing = time_layer(*conv_layer(matrix, layout, kernel, size, sparse=sparse), x)
                label = conv_label(layout, kernel, sparse=sparse)
                rows.append(
                    Row(
                        *shape,
                        density,
                        size * size,
                        label,
                        (1, 1),
                        (1, 1),
                        matrix.nnz,
                        matrix.nnz,
                        timing.best * 1e3,
                        timing.median * 1e3,
                    )
                )
    return rows


def merge(*runs: list[Row]) -> list[Row]:
    """Per measured configuration, the row with the smallest best time over ``runs``."""
    best: dict[tuple, Row] = {}
    for rows in runs:
        for row in rows:
            if row.key not in best or row.best_ms < best[row.key].best_ms:
                best[row.key] = row
    return list(best.values())


def calibrate(
    quick: bool = False, seed: int = 0, passes: int = 2, section: str = "all"
) -> list[Row]:
    """Run the grid ``passes`` times and merge (``quick``: one shape, two densities;
    ``section``: ``"fc"`` matrix products only, ``"conv"`` convolutions only)."""
    runs = []
    for _ in range(passes):
        rows = _grid(quick, seed) if section in ("all", "fc") else []
        runs.append(rows + (_conv_grid(seed) if section in ("all", "conv") and not quick else []))
    return merge(*runs)


def load(path: Path) -> list[Row]:
    """Rows of an earlier run's JSON."""
    payload = json.loads(path.read_text())
    return [
        Row(**{**r, "block": tuple(r["block"]), "pattern": tuple(r["pattern"])})
        for r in payload["rows"]
    ]


def _reference(row: Row) -> tuple:
    """Key of the dense row a row is compared with (same weight shape, batch and operator)."""
    return (row.rows, row.cols, row.batch, row.kernel.partition(":")[2])


def _table(rows: list[Row]) -> str:
    dense = {
        _reference(r): r.best_ms
        for r in rows
        if r.kernel in ("dense",) or r.kernel.startswith("conv:")
    }
    body = [
        (
            f"{r.rows}x{r.cols}",
            r.batch,
            r.density,
            r.kernel if r.kernel != "bsr" else f"bsr{r.block[0]}x{r.block[1]}",
            f"{r.pattern[0]}x{r.pattern[1]}",
            r.nnz,
            r.nblocks,
            r.best_ms,
            r.median_ms,
            dense[_reference(r)] / r.best_ms,
        )
        for r in rows
    ]
    header = (
        "weight",
        "batch",
        "density",
        "kernel",
        "tiles",
        "stored",
        "blocks",
        "best_ms",
        "median_ms",
        "dense/this",
    )
    return format_table(header, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small grid")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output file")
    parser.add_argument("--passes", type=int, default=2, help="passes over the grid")
    parser.add_argument("--merge", type=Path, help="earlier JSON whose rows to merge in")
    parser.add_argument("--section", choices=("all", "fc", "conv"), default="all")
    args = parser.parse_args()
    start = time.perf_counter()
    rows = calibrate(args.quick, passes=args.passes, section=args.section)
    if args.merge:
        rows = merge(load(args.merge), rows)
    rows.sort(key=lambda r: (-r.rows * r.cols, r.rows, r.batch, -r.density, r.kernel, r.block))
    print(machine())
    print(_table(rows))
    print(f"{len(rows)} measurements in {time.perf_counter() - start:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "rows": [asdict(r) for r in rows],
    }
    args.out.write_text(json.dumps(payload, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
