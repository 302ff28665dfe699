"""What a sparse 1x1 convolution costs its graph beyond its own kernel.

A chain ``conv3x3 -> relu -> conv1x1 -> relu -> conv3x3`` is timed with the middle convolution
dense (``nn.conv2d``) and sparse (``nn.sparse_conv2d``, 1% dense, so its own work is small); the
difference, minus the difference the cost model predicts for the isolated layers, is the cost of
the surroundings (layout transforms TVM inserts for NCHW, lost fusion). It sets
``cost.NCHW_BOUNDARY_PER_VALUE``.

Run from the repository root: ``python -m benchmarks.bench_conv_boundary``.
"""

from __future__ import annotations

import argparse

import numpy as np
import scipy.sparse as sp
import tvm
from tvm import relay

from benchmarks.common import format_table, machine
from sparse_import.relay_backend import build, cost, time_module
from sparse_import.relay_backend.kernels import SparseOperand, sparse_conv2d_expr

SIZES = ((56, 64), (28, 128), (14, 256), (15, 64))  # (h = w, channels)


def chain(rng, layout: str, size: int, channels: int, middle: sp.csr_matrix | None):
    """The built chain and its input; ``middle`` is the sparse 1x1 weight (``None``: dense)."""
    shape = (1, channels, size, size) if layout == "NCHW" else (1, size, size, channels)
    kernel_layout = "OIHW" if layout == "NCHW" else "HWIO"

    def weight(k):
        w = rng.standard_normal((channels, channels, k, k)).astype("float32")
        return relay.const(w if layout == "NCHW" else w.transpose(2, 3, 1, 0))

    def conv(h, k):
        return relay.nn.conv2d(
            h,
            weight(k),
            kernel_size=(k, k),
            padding=(k // 2, k // 2),
            data_layout=layout,
            kernel_layout=kernel_layout,
        )

    x = relay.var("x", shape=shape)
    h = relay.nn.relu(conv(x, 3))
    params = {}
    if middle is None:
        h = conv(h, 1)
    else:
        operand = SparseOperand.from_scipy(middle)
        h, params = sparse_conv2d_expr(h, operand, "m", layout=layout, kernel_size=1)
    y = conv(relay.nn.relu(h), 3)
    mod = tvm.IRModule.from_expr(relay.Function(relay.analysis.free_vars(y), y))
    return build(mod, params), {"x": rng.standard_normal(shape).astype("float32")}


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for layout in ("NCHW", "NHWC"):
        for size, channels in SIZES:
            middle = sp.csr_matrix(
                sp.random(channels, channels, density=0.01, random_state=0, dtype=np.float32)
            )
            dense = min(
                time_module(*chain(rng, layout, size, channels, None)).best for _ in range(3)
            )
            sparse = min(
                time_module(*chain(rng, layout, size, channels, middle)).best for _ in range(3)
            )
            pixels = size * size
            predicted = cost.conv_seconds(
                layout, 1, channels, channels, pixels, stored=middle.nnz
            ) - cost.conv_seconds(layout, 1, channels, channels, pixels)
            extra = (sparse - dense) - predicted
            rows.append(
                (
                    layout,
                    f"{size}x{size}x{channels}",
                    dense * 1e3,
                    sparse * 1e3,
                    predicted * 1e3,
                    extra * 1e3,
                    extra / (pixels * 2 * channels) * 1e9,
                )
            )
    print(machine())
    print(
        format_table(
            (
                "layout",
                "feature map",
                "dense-middle ms",
                "sparse-middle ms",
                "kernel diff est ms",
                "extra ms",
                "extra ns/value",
            ),
            rows,
        )
    )


if __name__ == "__main__":
    main()
