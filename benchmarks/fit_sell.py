"""Fit the constants of our batch-1 ``sell`` kernel (``roofline.SELL_MATVEC``).

Times ``sparse_import.sell_dense`` (the weight in sliced ELLPACK over column panels, a ReLU
fused after it, as in an MLP) on weights of 512 to 4096 rows and columns at densities 0.02 to
0.3, built for this CPU with TVM's default threads, and fits by non-negative least squares on
relative error the four constants of ``Roofline``: per call, per byte streamed (the layout's
arrays, ``x`` and ``y``), per vector (a permute and a fused multiply-add) and per (slice, panel)
group. Prints the rows, the constants and the fit's median and 90th-percentile relative error.

Run from the repository root: ``python -m benchmarks.fit_sell [--repeat 7]``; the output is also
written to ``benchmarks/results/sell.txt``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from tvm import relay

from benchmarks.common import fit_roofline, format_table, machine, relu_seconds
from sparse_import.planning.roofline import sell_features
from sparse_import.planning.sell import sell_vectors
from sparse_import.relay_backend.kernels import SellOperand, sell_dense_expr

os.environ.setdefault("TOPHUB_LOCATION", "NONE")

SHAPES = ((2048, 2048), (1024, 4096), (4096, 1024), (1024, 1024), (512, 512), (1000, 300))
DENSITIES = (0.02, 0.05, 0.1, 0.2, 0.3)
RESULTS = Path(__file__).parent / "results" / "sell.txt"


def measure(rng: np.random.Generator, repeat: int) -> list[dict]:
    found = []
    for density in DENSITIES:
        for rows, cols in SHAPES:
            matrix = sp.random_array((rows, cols), density=density, rng=rng, format="csr")
            matrix = matrix.astype(np.float32)
            x = relay.var("x", shape=(1, cols))
            y, params = sell_dense_expr(x, SellOperand.from_scipy(matrix), "w")
            value = rng.standard_normal((1, cols)).astype(np.float32)
            seconds = relu_seconds(y, params, value, repeat)
            vectors, groups = sell_vectors(matrix)
            found.append(
                dict(rows=rows, cols=cols, density=density, nnz=int(matrix.nnz), vectors=vectors,
                     groups=groups, seconds=seconds)
            )  # fmt: skip
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    rows = measure(np.random.default_rng(1), args.repeat)
    predicted, summary = fit_roofline(
        "SELL_MATVEC",
        np.array([sell_features(r["rows"], r["cols"], r["vectors"], r["groups"]) for r in rows]),
        np.array([r["seconds"] for r in rows]),
    )
    table = format_table(
        ["rows", "cols", "density", "nnz", "vectors x 16 / nnz", "ms", "model ms"],
        [
            [r["rows"], r["cols"], r["density"], r["nnz"],
             f"{16 * r['vectors'] / max(r['nnz'], 1):.2f}", f"{r['seconds'] * 1e3:.4f}",
             f"{p * 1e3:.4f}"]
            for r, p in zip(rows, predicted, strict=True)
        ],
    )  # fmt: skip
    text = "\n".join([machine(), table, *summary])
    print(text)
    RESULTS.write_text(text + "\n")


if __name__ == "__main__":
    main()
