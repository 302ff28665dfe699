"""Fit the constants of our direct sparse NCHW convolution (``roofline.SPARSE_DIRECT``).

Times the direct kernel (3x3 with stride 1 and 2, 1x1 with stride 2, a 7x7 stem with stride 2;
7x7 to 224x224 images; densities 0.03, 0.1 and 0.25; a ReLU fused after it, as in a model),
built for this CPU with TVM's default threads, and fits by non-negative least squares on
relative error the four constants of ``Roofline``: per call, per byte copied around the kernel
(the stride phases of the input, the wide output rows and their crop), per vector product and
per visit of a stored value (once per tile of a wide row). Prints the rows, the constants and
the fit's median and 90th-percentile relative error.

Run from the repository root: ``python -m benchmarks.fit_direct_conv [--repeat 7]``; the output
is also written to ``benchmarks/results/direct_conv.txt``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from tvm import relay

from benchmarks.common import fit_roofline, format_table, machine, relu_seconds
from sparse_import.planning import roofline
from sparse_import.relay_backend.conv_op import conv_geometry
from sparse_import.relay_backend.kernels import SparseOperand, sparse_conv2d_expr
from sparse_import.relay_backend.sites import conv_form

os.environ.setdefault("TOPHUB_LOCATION", "NONE")

CASES = (  # (in, out, height = width, kernel, stride)
    (64, 64, 56, 3, 1),
    (128, 128, 28, 3, 1),
    (256, 256, 14, 3, 1),
    (512, 512, 7, 3, 1),
    (64, 128, 28, 3, 1),
    (32, 32, 111, 3, 1),
    (128, 128, 56, 3, 2),
    (256, 256, 28, 3, 2),
    (256, 512, 56, 1, 2),
    (512, 1024, 28, 1, 2),
    (1024, 2048, 14, 1, 2),
    (3, 64, 224, 7, 2),
)
DENSITIES = (0.03, 0.1, 0.25)
RESULTS = Path(__file__).parent / "results" / "direct_conv.txt"


def measure(rng: np.random.Generator, repeat: int) -> list[dict]:
    rows = []
    for density in DENSITIES:
        for cin, cout, size, kernel, stride in CASES:
            matrix = sp.random_array(
                (cout, cin * kernel * kernel), density=density, rng=rng, format="csr"
            ).astype(np.float32)
            x = relay.var("x", shape=(1, cin, size, size))
            w = relay.var("w", shape=(cout, cin, kernel, kernel))
            pad = kernel // 2
            attrs = relay.nn.conv2d(
                x, w, kernel_size=(kernel,) * 2, strides=(stride,) * 2, padding=(pad, pad)
            ).attrs
            y, params = sparse_conv2d_expr(
                x,
                SparseOperand.from_scipy(matrix),
                "w",
                layout="NCHW",
                kernel_size=kernel,
                geometry=None if conv_form(attrs) else conv_geometry(attrs),
            )
            value = rng.standard_normal((1, cin, size, size)).astype(np.float32)
            seconds = relu_seconds(y, params, value, repeat)
            rows.append(
                dict(
                    cin=cin, cout=cout, size=size, kernel=kernel, stride=stride,
                    density=density, nnz=int(matrix.nnz), seconds=seconds,
                )
            )  # fmt: skip
    return rows


def features(row: dict) -> tuple[float, float, float]:
    """What :func:`roofline.conv_direct_sparse_seconds` prices, for one measured row."""
    out = (row["size"] + 2 * (row["kernel"] // 2) - row["kernel"]) // row["stride"] + 1
    return roofline.conv_direct_features(
        row["cout"],
        row["cin"] * row["kernel"] ** 2,
        row["nnz"],
        out * out,
        row["kernel"],
        row["stride"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    rows = measure(np.random.default_rng(1), args.repeat)
    predicted, summary = fit_roofline(
        "SPARSE_DIRECT",
        np.array([features(r) for r in rows]),
        np.array([r["seconds"] for r in rows]),
    )
    table = format_table(
        ["in", "out", "size", "kernel", "stride", "density", "ms", "model ms"],
        [
            [r["cin"], r["cout"], r["size"], r["kernel"], r["stride"], r["density"],
             f"{r['seconds'] * 1e3:.3f}", f"{p * 1e3:.3f}"]
            for r, p in zip(rows, predicted, strict=True)
        ],
    )  # fmt: skip
    text = "\n".join([machine(), table, *summary])
    print(text)
    RESULTS.write_text(text + "\n")


if __name__ == "__main__":
    main()
