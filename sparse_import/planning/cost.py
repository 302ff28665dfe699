"""Latency model of the kernels a lowering runs on: dense, our sparse kernels, TVM's.

Modules are built for the host CPU (:mod:`~sparse_import.target`), where ``nn.dense``
and ``nn.conv2d`` use AVX2/AVX-512 and ``nn.sparse_dense`` (``x @ W.T``) and 1x1
``nn.sparse_conv2d`` run the kernels of :mod:`sparse_import.kernels`. Those are priced by the
roofline-style model of :mod:`~sparse_import.planning.roofline` (bytes streamed over a measured
bandwidth, plus vector work, plus a fixed cost per call and per row).

Two lowerings still run TVM 0.19's own kernels and keep the constants fitted to them: CSR
through the sparse-left-hand-side kernel (``csr_lhs``) and 3x3 NHWC ``nn.sparse_conv2d``. For
``y = x @ W.T`` with ``x: (batch, cols)`` and ``W: (rows, cols)``, each fitted kernel's time at
a calibrated batch size is

    fixed + per_entry * E + per_entry_spill * E * log2(1 + S / 1 MiB) + per_block_row * R

with ``E`` the stored entries, ``S`` the bytes of the weight's arrays and ``R = rows // r`` the
block rows; between calibrated batch sizes the time is interpolated linearly, above the largest
it grows in proportion to the batch. A TVM convolution (weight matrix ``(rows, cols)`` with
``cols = kh * kw * in``, ``P`` output pixels) takes, per data layout and kernel size,

    fixed + per_product * P * E + per_pixel_row * P * rows + per_pixel_col * P * cols

The fitted constants (``benchmarks/fit_cost.py`` on ``benchmarks/calibrate.py`` measurements:
target ``llvm``, generic x86-64) are a conservative price for the host CPU, where TVM's kernels
run at least as fast. The tables of TVM's ``x @ W.T`` CSR and BSR kernels and of its dense
kernels stay for those benchmarks; no lowering is priced by them any more.

Fitted: 2026-11-23 on AMD EPYC, 2 cpus, TVM 0.19.0 target llvm, TVM_NUM_THREADS=default.

Examples
--------
>>> from sparse_import.planning import cost
>>> dense = cost.dense_seconds(2048, 2048, batch=1)
>>> bsr = cost.bsr_seconds(2048, 2048, nblocks=13107, block=(16, 1), batch=1)
>>> bsr < dense
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import astuple, dataclass
from types import MappingProxyType

from . import roofline

__all__ = [
    "BSR",
    "CONV_DENSE",
    "CONV_SPARSE",
    "CSR",
    "CSR_LHS",
    "DEFAULT_BATCH",
    "DENSE",
    "MAX_FILL",
    "NCHW_BOUNDARY_PER_VALUE",
    "REBLOCK_SHAPES",
    "TIE_MARGIN",
    "ConvCost",
    "KernelCost",
    "bsr_seconds",
    "conv_boundary_seconds",
    "conv_seconds",
    "csr_seconds",
    "dense_seconds",
    "operand_bytes",
    "sell_seconds",
]

_MIB = 2.0**20
_INDEX_BYTES = 4  # int32 indices and pointers


@dataclass(frozen=True)
class KernelCost:
    """Fitted constants of one kernel at one batch size, in seconds.

    Attributes
    ----------
    fixed : float
        Per call.
    per_entry : float
        Per stored entry (value or block).
    per_entry_spill : float
        Per stored entry and ``log2(1 + stored MiB)``.
    per_block_row : float
        Per block row of ``W``.
    """

    fixed: float
    per_entry: float
    per_entry_spill: float
    per_block_row: float

    @staticmethod
    def features(entries: int, stored_bytes: int, block_rows: int) -> tuple[float, ...]:
        """The quantities the constants multiply, in field order."""
        spill = entries * math.log2(1.0 + stored_bytes / _MIB)
        return (1.0, float(entries), spill, float(block_rows))

    def seconds(self, entries: int, stored_bytes: int, block_rows: int) -> float:
        """Estimated time of one call."""
        features = self.features(entries, stored_bytes, block_rows)
        return sum(c * f for c, f in zip(astuple(self), features, strict=True))


@dataclass(frozen=True)
class ConvCost:
    """Fitted constants of one convolution kernel (layout and kernel size), in seconds.

    Attributes
    ----------
    fixed : float
        Per call.
    per_product : float
        Per output pixel and weight entry (stored value for sparse).
    per_pixel_row : float
        Per output pixel and output channel.
    per_pixel_col : float
        Per output pixel and weight column (``kh * kw * in``: the im2col work).
    """

    fixed: float
    per_product: float
    per_pixel_row: float
    per_pixel_col: float

    @staticmethod
    def features(pixels: int, entries: int, rows: int, cols: int) -> tuple[float, ...]:
        """The quantities the constants multiply, in field order."""
        return (1.0, float(pixels * entries), float(pixels * rows), float(pixels * cols))

    def seconds(self, pixels: int, entries: int, rows: int, cols: int) -> float:
        """Estimated time of one call."""
        features = self.features(pixels, entries, rows, cols)
        return sum(c * f for c, f in zip(astuple(self), features, strict=True))


Table = Mapping[int, KernelCost]  # calibrated batch size -> constants


def _table(by_batch: dict[int, KernelCost]) -> Table:
    return MappingProxyType(by_batch)


# ------------------------------------------------------------------------ fitted constants
# {FITTED}
DENSE: Table = _table(
    {
        1: KernelCost(7.156e-06, 3.631e-11, 8.943e-12, 1.871e-09),
        4: KernelCost(8.891e-06, 1.189e-10, 1.967e-11, 2.45e-09),
        16: KernelCost(1.671e-05, 5.415e-10, 8.707e-11, 1.778e-08),
    }
)
CSR: Table = _table(
    {
        1: KernelCost(1.024e-07, 2.968e-10, 4.828e-11, 0),
        4: KernelCost(0, 1.346e-09, 1.474e-10, 1.024e-09),
        16: KernelCost(1.399e-07, 4.922e-09, 7.787e-10, 0),
    }
)
CSR_LHS: Table = _table(
    {
        1: KernelCost(5.451e-06, 3.478e-10, 3.413e-11, 0),
        4: KernelCost(1.083e-05, 1.023e-09, 7.961e-12, 0),
        16: KernelCost(0, 4.273e-09, 0, 2.218e-08),
    }
)
BSR: Mapping[tuple[int, int], Table] = MappingProxyType(
    {
        (16, 1): _table(
            {
                1: KernelCost(5.506e-06, 1.089e-09, 0, 1.788e-09),
                4: KernelCost(6.548e-06, 3.515e-09, 0, 0),
                16: KernelCost(9.368e-06, 1.393e-08, 0, 0),
            }
        ),
        (16, 4): _table(
            {
                1: KernelCost(5.589e-06, 8.713e-09, 6.846e-11, 3.324e-09),
                4: KernelCost(6.513e-06, 3.329e-08, 6.353e-10, 5.533e-08),
                16: KernelCost(0, 1.364e-07, 1.773e-09, 1.572e-07),
            }
        ),
        (1, 16): _table(
            {
                1: KernelCost(5.822e-06, 4.358e-09, 1.018e-09, 0),
                4: KernelCost(6.088e-06, 1.765e-08, 4.035e-09, 0),
                16: KernelCost(7.972e-06, 7.024e-08, 1.599e-08, 0),
            }
        ),
        (1, 4): _table(
            {
                1: KernelCost(5.515e-06, 1.09e-09, 2.431e-10, 0),
                4: KernelCost(5.629e-06, 4.563e-09, 9.131e-10, 0),
                16: KernelCost(5.598e-06, 1.806e-08, 3.628e-09, 0),
            }
        ),
        (4, 1): _table(
            {
                1: KernelCost(5.476e-06, 5.488e-10, 0, 4.751e-10),
                4: KernelCost(4.931e-06, 2.207e-09, 0, 1.504e-09),
                16: KernelCost(3.804e-06, 8.763e-09, 0, 3.926e-09),
            }
        ),
        (4, 4): _table(
            {
                1: KernelCost(5.548e-06, 2.627e-09, 4.293e-12, 0),
                4: KernelCost(5.173e-06, 1.032e-08, 6.657e-11, 5.93e-09),
                16: KernelCost(4.169e-06, 4.13e-08, 2.227e-10, 2.203e-08),
            }
        ),
        (8, 1): _table(
            {
                1: KernelCost(5.605e-06, 5.283e-10, 1.418e-11, 9.621e-10),
                4: KernelCost(4.349e-06, 3.086e-09, 9.138e-11, 3.621e-08),
                16: KernelCost(1.946e-06, 1.229e-08, 3.917e-10, 1.332e-07),
            }
        ),
    }
)
CONV_DENSE: Mapping[tuple[str, int], ConvCost] = MappingProxyType(
    {
        ("NCHW", 1): ConvCost(1.055e-05, 7.151e-11, 5.133e-10, 0),
        ("NCHW", 3): ConvCost(0, 5.4e-11, 0, 6.602e-10),
        ("NHWC", 1): ConvCost(4.23e-06, 7.059e-11, 0, 0),
        ("NHWC", 3): ConvCost(0, 6.399e-11, 0, 0),
    }
)
CONV_SPARSE: Mapping[tuple[str, int], ConvCost] = MappingProxyType(
    {
        ("NCHW", 1): ConvCost(0, 2.863e-10, 2.145e-10, 0),
        ("NCHW", 3): ConvCost(0, 4.047e-10, 0, 1.431e-09),
        ("NHWC", 1): ConvCost(0, 2.786e-10, 4.474e-10, 0),
        ("NHWC", 3): ConvCost(1.443e-07, 1.859e-10, 0, 4.428e-10),
    }
)
# {END}

# ------------------------------------------------------------------------ policy constants
REBLOCK_SHAPES = ((4, 1), (8, 1), (16, 1), (4, 4), (1, 4), (1, 8), (1, 16))
"""Block shapes ``auto`` may re-block a weight into: our BSR kernel vectorizes ``r`` rows, or
packs ``1 x c`` blocks several to a vector (a CSR weight pruned in 1x4 blocks runs 1.7x faster
as BSR 1x4 at batch 1, 2048x2048, density 0.1)."""

MAX_FILL = 1.5
"""Largest ``stored / nnz`` ratio (explicit zeros filled into blocks) ``auto`` accepts."""

TIE_MARGIN = 0.10
"""``auto`` keeps a weight dense, or else in its stored format, unless another lowering is
estimated this much faster: a near tie (within the model's typical error, see the fit quality
above) goes to the simpler module that needs no re-encoding."""

NCHW_BOUNDARY_PER_VALUE = 1.0e-9
"""Seconds per input and output feature-map value that a sparse NCHW convolution costs its graph
beyond its own kernel: TVM's x86 ``conv2d`` computes NCHW models in a blocked ``NCHWc`` layout,
``sparse_conv2d`` does not, so layout transforms surround it. Set from
``benchmarks/bench_conv_boundary.py`` (dense 3x3 -> 1x1 -> dense 3x3 chains, 15x15x64 to
56x56x64: about 1 ns per value, -0.1 to 1.3; the NHWC chains scatter around zero)."""

DEFAULT_BATCH = 1
"""Batch assumed when neither the input shapes nor the caller give one."""


def operand_bytes(
    kind: str, rows: int, entries: int, block: tuple[int, int] = (1, 1), itemsize: int = 4
) -> int:
    """Bytes of the weight's arrays: ``kind`` ``"dense"`` (``entries = rows * cols``),
    ``"csr"`` (``entries = nnz``) or ``"bsr"`` (``entries`` blocks of shape ``block``)."""
    if kind == "dense":
        return entries * itemsize
    r, c = block
    return entries * (r * c * itemsize + _INDEX_BYTES) + (rows // r + 1) * _INDEX_BYTES


def _seconds(table: Table, batch: int, entries: int, stored: int, block_rows: int) -> float:
    """Interpolate the calibrated batch sizes of ``table`` linearly in ``batch``."""
    if batch in table:
        return table[batch].seconds(entries, stored, block_rows)
    calibrated = sorted(table)
    if batch > calibrated[-1]:
        top = calibrated[-1]
        return table[top].seconds(entries, stored, block_rows) * batch / top
    low = max((b for b in calibrated if b < batch), default=calibrated[0])
    high = min(b for b in calibrated if b > batch)
    t_low = table[low].seconds(entries, stored, block_rows)
    t_high = table[high].seconds(entries, stored, block_rows)
    return t_low + (t_high - t_low) * (batch - low) / (high - low)


def dense_seconds(rows: int, cols: int, batch: int, itemsize: int = 4) -> float:
    """Estimated time of ``nn.dense`` with a ``(rows, cols)`` weight, built for the host CPU."""
    return roofline.dense_seconds(rows, cols, batch, itemsize)


def csr_seconds(
    rows: int, cols: int, nnz: int, batch: int, *, sparse_lhs: bool = False, itemsize: int = 4
) -> float:
    """Estimated time of ``nn.sparse_dense`` with a CSR weight holding ``nnz`` values.

    ``sparse_lhs`` selects TVM's sparse-left-hand-side kernel (``(W @ x.T).T``, fitted
    constants); otherwise our kernel (:mod:`~sparse_import.planning.roofline`).
    """
    if not sparse_lhs:
        return roofline.sparse_seconds(rows, cols, nnz, (1, 1), batch, itemsize)
    stored = operand_bytes("csr", rows, nnz, itemsize=itemsize)
    return roofline.family_scale("tvm_sparse") * _seconds(CSR_LHS, batch, nnz, stored, rows)


def bsr_seconds(
    rows: int, cols: int, nblocks: int, block: tuple[int, int], batch: int, itemsize: int = 4
) -> float:
    """Estimated time of our ``nn.sparse_dense`` kernel with a BSR weight of ``nblocks``
    ``block`` tiles (``(1, 1)``: CSR)."""
    block = (int(block[0]), int(block[1]))
    return roofline.sparse_seconds(rows, cols, nblocks, block, batch, itemsize)


def sell_seconds(rows: int, cols: int, vectors: int, groups: int) -> float:
    """Estimated time of our batch-1 ``sell`` kernel: ``vectors`` vectors of 16 float32 values
    in ``groups`` (slice, panel) groups (:mod:`~sparse_import.planning.sell`)."""
    return roofline.sell_seconds(rows, cols, vectors, groups)


def conv_seconds(
    layout: str,
    kernel: int,
    rows: int,
    cols: int,
    pixels: int,
    *,
    stored: int | None = None,
    stride: int = 1,
) -> float:
    """Estimated time of a convolution: ``nn.conv2d`` when ``stored`` is ``None``, else a
    sparse convolution with ``stored`` values (ours for 1x1 and for the direct NCHW kernel,
    any kernel size and stride; TVM's for 3x3 NHWC).

    Parameters
    ----------
    layout : str
        ``"NHWC"`` or ``"NCHW"``.
    kernel : int
        Kernel height and width (NHWC: 1 or 3).
    rows, cols : int
        Weight matrix ``(out, kernel * kernel * in)``.
    pixels : int
        Output pixels ``n * h * w``.
    stored : int, optional
        Stored values of a sparse weight.
    stride : int
        The convolution's stride.
    """
    if stored is None:
        fitted = 1 if kernel == 1 else 3  # the fitted kernel nearest in work per value
        return roofline.conv_dense_seconds(layout, fitted, rows, cols, pixels)
    if kernel == 1 and stride == 1:
        return roofline.conv_sparse_seconds(layout, rows, cols, stored, (1, 1), pixels)
    if layout == "NCHW":
        return roofline.conv_direct_sparse_seconds(rows, cols, stored, pixels, kernel, stride)
    fitted = CONV_SPARSE[layout, kernel].seconds(pixels, stored, rows, cols)
    return roofline.family_scale("tvm_sparse") * fitted


def conv_boundary_seconds(
    layout: str,
    pixels: int,
    channels_in: int,
    channels_out: int,
    *,
    dense_in: float = 1.0,
    dense_out: float = 1.0,
) -> float:
    """Estimated cost a sparse convolution adds around itself in a graph (NCHW layout changes).

    ``dense_in`` and ``dense_out`` are the shares of its neighbouring convolutions, on the input
    and on the output side, that stay dense (their blocked layout needs the change); between two
    sparse convolutions the data stays NCHW and nothing is paid.
    """
    if layout != "NCHW":
        return 0.0
    return NCHW_BOUNDARY_PER_VALUE * pixels * (channels_in * dense_in + channels_out * dense_out)
