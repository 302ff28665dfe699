"""Fit the constants of our batch-1 BSR kernels (``roofline.BSR_COLUMN``, ``BSR_PACKED``,
``BSR_MATVEC``).

Times ``nn.sparse_dense`` at batch 1 on BSR weights (``r x 1`` blocks: a vector of rows times
one broadcast value of ``x``; ``1 x 4`` and ``1 x 8``: several blocks packed to a vector;
``4 x 4``: the general kernel), 512 to 4096 rows
and columns, densities 0.02 to 0.2, a ReLU fused after it, built for this CPU with TVM's default
threads, and fits each kernel's four ``Roofline`` constants by non-negative least squares on
relative error (:func:`benchmarks.common.fit_roofline`). Prints the rows, the constants and the
fits' median and 90th-percentile relative error.

Run from the repository root: ``python -m benchmarks.fit_matvec [--repeat 7]``; the output is
also written to ``benchmarks/results/matvec.txt``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from tvm import relay

from benchmarks.common import block_sparse, fit_roofline, format_table, machine, relu_seconds
from sparse_import.planning import roofline
from sparse_import.relay_backend.kernels import SparseOperand, sparse_dense_expr

os.environ.setdefault("TOPHUB_LOCATION", "NONE")

SHAPES = ((2048, 2048), (1024, 4096), (4096, 1024), (1024, 1024), (512, 512))
BLOCKS = ((4, 1), (8, 1), (16, 1), (4, 4), (1, 4), (1, 8))
DENSITIES = (0.02, 0.05, 0.1, 0.2)
RESULTS = Path(__file__).parent / "results" / "matvec.txt"


def measure(rng: np.random.Generator, repeat: int) -> list[dict]:
    found = []
    for block in BLOCKS:
        for density in DENSITIES:
            for rows, cols in SHAPES:
                matrix = block_sparse(rng, (rows, cols), density, block)
                x = relay.var("x", shape=(1, cols))
                y, params = sparse_dense_expr(x, SparseOperand.from_scipy(matrix), "w")
                value = rng.standard_normal((1, cols)).astype(np.float32)
                seconds = relu_seconds(y, params, value, repeat)
                nblocks = matrix.nnz // (block[0] * block[1])
                kernel, features = roofline.matvec_features(rows, cols, nblocks, block)
                found.append(
                    dict(rows=rows, cols=cols, block=block, density=density, nblocks=nblocks,
                         kernel=kernel, features=features,
                         seconds=seconds)
                )  # fmt: skip
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    rows = measure(np.random.default_rng(1), args.repeat)
    lines = [machine()]
    kernels = ("BSR_COLUMN", "BSR_PACKED", "BSR_MATVEC")
    for name, kernel in ((k, getattr(roofline, k)) for k in kernels):
        group = [r for r in rows if r["kernel"] is kernel]
        predicted, summary = fit_roofline(
            name,
            np.array([r["features"] for r in group]),
            np.array([r["seconds"] for r in group]),
        )
        cells = [
            [r["rows"], r["cols"], "{}x{}".format(*r["block"]), r["density"], r["nblocks"],
             f"{r['seconds'] * 1e3:.4f}", f"{p * 1e3:.4f}"]
            for r, p in zip(group, predicted, strict=True)
        ]  # fmt: skip
        header = ["rows", "cols", "block", "density", "blocks", "ms", "model ms"]
        lines.append(format_table(header, cells))
        lines += summary
    text = "\n".join(lines)
    print(text)
    RESULTS.write_text(text + "\n")


if __name__ == "__main__":
    main()
