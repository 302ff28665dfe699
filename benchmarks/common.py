"""Shared pieces of the benchmark scripts: random sparse weights, one-layer modules, tables."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import tvm
from tvm import relay
from tvm.contrib import graph_executor

from sparse_import import _format
from sparse_import.relay_backend.build import Timing, build, time_module
from sparse_import.relay_backend.kernels import SparseOperand, sparse_conv2d_expr, sparse_dense_expr
from sparse_import.target import host_target

__all__ = [
    "block_sparse",
    "conv_layer",
    "dense_layer",
    "element_sparse",
    "fit_roofline",
    "format_table",
    "machine",
    "relu_seconds",
    "sparse_layer",
    "time_layer",
]


def block_sparse(
    rng: np.random.Generator,
    shape: tuple[int, int],
    density: float,
    block: tuple[int, int],
    dtype: str = "float32",
) -> sp.bsr_matrix:
    """Random ``(rows, cols)`` matrix whose nonzeros fill whole ``block``-shaped tiles.

    Exactly ``round(density * number of tiles)`` tiles, chosen uniformly without replacement,
    hold standard-normal values; every other entry is zero.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    shape : tuple[int, int]
        ``(rows, cols)``, multiples of ``block``.
    density : float
        Fraction of tiles (and so of entries) that are stored.
    block : tuple[int, int]
        Tile shape ``(r, c)``.
    dtype : str, optional
        Value dtype.

    Returns
    -------
    scipy.sparse.bsr_matrix
        With ``blocksize == block`` and sorted block columns.
    """
    (rows, cols), (r, c) = shape, block
    grid = (rows // r, cols // c)
    count = round(density * grid[0] * grid[1])
    chosen = np.sort(rng.choice(grid[0] * grid[1], size=count, replace=False))
    block_rows, block_cols = np.divmod(chosen, grid[1])
    indptr = np.concatenate(([0], np.cumsum(np.bincount(block_rows, minlength=grid[0]))))
    data = rng.standard_normal((count, r, c)).astype(dtype)
    return sp.bsr_matrix((data, block_cols, indptr), shape=shape)


def element_sparse(
    rng: np.random.Generator, shape: tuple[int, int], density: float, dtype: str = "float32"
) -> sp.csr_matrix:
    """Random CSR matrix with ``round(density * rows * cols)`` uniformly placed nonzeros."""
    return block_sparse(rng, shape, density, (1, 1), dtype).tocsr()


def dense_layer(weight: np.ndarray, batch: int) -> tuple[tvm.IRModule, dict[str, np.ndarray]]:
    """``y = nn.dense(x, w)`` with ``x: (batch, in)`` and ``w`` a parameter."""
    x = relay.var("x", shape=(batch, weight.shape[1]), dtype=str(weight.dtype))
    w = relay.var("w", shape=weight.shape, dtype=str(weight.dtype))
    return tvm.IRModule.from_expr(relay.Function([x, w], relay.nn.dense(x, w))), {"w": weight}


def sparse_layer(
    matrix: sp.csr_matrix | sp.bsr_matrix, batch: int, *, sparse_lhs: bool = False
) -> tuple[tvm.IRModule, dict[str, np.ndarray]]:
    """``y = nn.sparse_dense(x, W)`` with ``x: (batch, in)`` and ``W`` the given matrix."""
    x = relay.var("x", shape=(batch, matrix.shape[1]), dtype=str(matrix.dtype))
    y, params = sparse_dense_expr(x, SparseOperand.from_scipy(matrix), "w", sparse_lhs=sparse_lhs)
    return tvm.IRModule.from_expr(relay.Function(relay.analysis.free_vars(y), y)), params


def conv_layer(
    matrix: sp.csr_matrix, layout: str, kernel: int, size: int, *, sparse: bool
) -> tuple[tvm.IRModule, dict[str, np.ndarray]]:
    """A stride-1 same-padded convolution of a ``(1, size, size, in)`` (or NCHW) input.

    ``matrix`` is the ``(out, kernel * kernel * in)`` weight in the column order of TVM's
    ``sparse_conv2d`` for ``layout``; ``sparse`` picks ``nn.sparse_conv2d`` over ``nn.conv2d``.
    """
    out_channels = matrix.shape[0]
    channels = matrix.shape[1] // (kernel * kernel)
    shape = (1, size, size, channels) if layout == "NHWC" else (1, channels, size, size)
    x = relay.var("x", shape=shape, dtype=str(matrix.dtype))
    if sparse:
        y, params = sparse_conv2d_expr(
            x, SparseOperand.from_scipy(matrix), "w", layout=layout, kernel_size=kernel
        )
    else:
        dense = matrix.toarray()
        if layout == "NHWC":  # columns (kh, kw, in) -> HWIO
            weight = dense.reshape(out_channels, kernel, kernel, channels).transpose(1, 2, 3, 0)
        else:  # columns (in, kh, kw) -> OIHW
            weight = dense.reshape(out_channels, channels, kernel, kernel)
        w = relay.var("w", shape=weight.shape, dtype=str(weight.dtype))
        kernel_layout = "HWIO" if layout == "NHWC" else "OIHW"
        y = relay.nn.conv2d(
            x,
            w,
            kernel_size=(kernel, kernel),
            padding=(kernel // 2, kernel // 2),
            data_layout=layout,
            kernel_layout=kernel_layout,
        )
        params = {"w": np.ascontiguousarray(weight)}
    return tvm.IRModule.from_expr(relay.Function(relay.analysis.free_vars(y), y)), params


def time_layer(
    mod: tvm.IRModule, params: dict[str, np.ndarray], x: np.ndarray, repeat: int = 15
) -> Timing:
    """Build a one-input module and time it on ``x`` (input named ``"x"``)."""
    return time_module(build(mod, params), {"x": x}, repeat=repeat)


def relu_seconds(y: relay.Expr, params: dict[str, np.ndarray], x: np.ndarray, repeat: int) -> float:
    """Median seconds of ``relu(y)`` built for this CPU, its input ``"x"`` set to ``x``: a
    kernel with the epilogue a model fuses after it, timed as the ``fit_*`` scripts time it."""
    y = relay.nn.relu(y)
    lib = build(tvm.IRModule.from_expr(relay.Function(relay.analysis.free_vars(y), y)), params)
    module = graph_executor.GraphModule(lib["default"](tvm.cpu(0)))
    module.set_input("x", x)
    timer = module.module.time_evaluator(
        "run", tvm.cpu(0), number=1, repeat=repeat, min_repeat_ms=30
    )
    return float(np.median(timer().results))


def fit_roofline(
    name: str, features: np.ndarray, seconds: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """Fit the four ``Roofline`` constants (per call, byte, vector, row) to measured times by
    non-negative least squares on relative error.

    Parameters
    ----------
    name : str
        The constant's name in ``roofline.py``, for the summary line.
    features : numpy.ndarray
        ``(rows, 3)``: bytes, vectors, rows of each measurement.
    seconds : numpy.ndarray
        Measured time of each.

    Returns
    -------
    tuple[numpy.ndarray, list[str]]
        The model's time for each measurement, and two summary lines (the constants as code,
        the median and 90th-percentile relative error).
    """
    from scipy.optimize import nnls

    design = np.column_stack([np.ones(len(seconds)), features])
    constants, _ = nnls(design / seconds[:, None], np.ones_like(seconds))
    predicted = design @ constants
    error = np.abs(predicted - seconds) / seconds
    return predicted, [
        f"{name} = Roofline({{:.3g}}, {{:.3g}}, {{:.3g}}, {{:.3g}})".format(*constants),
        f"median relative error {np.median(error):.1%}, "
        f"90th percentile {np.quantile(error, 0.9):.1%}",
    ]


def machine() -> str:
    """One line naming the machine and TVM's thread count, printed above every table."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    threads = os.environ.get("TVM_NUM_THREADS", "default")
    return (
        f"{cpu}, {os.cpu_count()} cpus, TVM {tvm.__version__} target {host_target()}, "
        f"TVM_NUM_THREADS={threads}"
    )


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Right-aligned text table (floats with 3 decimals), laid out by the CLI's formatter."""

    def cell(value: object) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    cells = [[cell(v) for v in row] for row in rows]
    return _format.format_table(list(header), cells, "r" * len(header))
