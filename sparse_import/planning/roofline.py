"""Roofline-style latency of dense products and of our sparse kernels on the host CPU.

Each kernel's time is

    fixed + bytes / bandwidth + vectors * per_vector + rows * per_row

with ``bytes`` what the call streams (weight arrays, input, output, transposes), ``vectors`` its
SIMD operations (fused multiply-adds of one register, or gathers of one register for the batch-1
CSR kernel) and ``rows`` the (block) rows and batch tiles it visits. The lanes of a register are
the host CPU's (:func:`lanes`), so the same constants price AVX-512 and AVX2 machines by their
vector width; the constants themselves were measured on one machine kind (below) and are the
"measured once" half of a roofline: a CPU with another memory system needs its own, which
``sparse-import calibrate`` measures quickly (one scale per kernel family, applied inside
:func:`calibrated`; see :mod:`~sparse_import.planning.calibration`).

Measured: 2026-11-30, AMD EPYC (Zen 4, ``llvm -mcpu=znver4``), 2 vCPUs shared with other work,
TVM 0.19.0, TVM's default thread count; float32 2048x2048, 1024x1024, 4096x1024 and 512x512
weights, densities 0.02-0.2, blocks 1x1, 1x4, 4x1, 8x1, 16x1, batch 1, 4 and 16; 1x1 and 3x3
convolutions of 64x56x56, 128x28x28, 256x14x14 and 64x16x16 feature maps (dense; 1x1 also at
densities 0.05 and 0.2, 3x3 NCHW at 0.05, 0.1 and 0.3); fitted by non-negative least squares
on the relative error (minimum of 5 interleaved rounds per point). Median relative error per
kernel in the comments; the batch-1 BSR kernels (``BSR_COLUMN``, ``BSR_PACKED``, ``BSR_MATVEC``)
re-fitted on 2026-12-01 by ``benchmarks/fit_matvec.py`` (120 weights, a ReLU fused after each,
which since then runs without a parallel launch). The direct NCHW convolution
(``SPARSE_DIRECT``: 3x3 with stride 1 and 2, 1x1 with stride 2, a 7x7 stem; 7x7 to 224x224
maps, densities 0.03-0.25) is fitted by ``benchmarks/fit_direct_conv.py`` (medians of 7
repeats, a ReLU fused after it; 90th percentile 19 %, its worst rows a 3x3 with stride 2 on
56x56, measured up to 1.35x the model). The batch-1
``sell`` kernel (``SELL_MATVEC``) is fitted by ``benchmarks/fit_sell.py`` (30 weights of 300 to
4096 rows and columns, densities 0.02-0.3, a ReLU fused after it; median error 5 %): it streams
its padded arrays at the cache's bandwidth, so its time follows its vector count.

Examples
--------
>>> from sparse_import.planning import roofline
>>> dense = roofline.dense_seconds(2048, 2048, batch=1)
>>> sparse = roofline.sparse_seconds(2048, 2048, 2048 * 2048 // 20, (1, 1), batch=1)
>>> sparse < dense
True
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from types import MappingProxyType

from .calibration import Calibration
from .sell import LANES
from .tiling import tiles

__all__ = [
    "BSR_COLUMN",
    "BSR_MATVEC",
    "BSR_PACKED",
    "CSR_MATVEC",
    "DENSE_CONV",
    "DENSE_PRODUCT",
    "SELL_MATVEC",
    "SPARSE_CONV",
    "SPARSE_DIRECT",
    "SPARSE_MATMUL",
    "Roofline",
    "calibrated",
    "conv_dense_seconds",
    "conv_direct_features",
    "conv_direct_sparse_seconds",
    "conv_sparse_seconds",
    "dense_seconds",
    "family_scale",
    "lanes",
    "matvec_features",
    "sell_features",
    "sell_seconds",
    "sparse_seconds",
]


@dataclass(frozen=True)
class Roofline:
    """Constants of one kernel, in seconds.

    Attributes
    ----------
    fixed : float
        Per call.
    per_byte : float
        Per byte streamed (the inverse of the bandwidth).
    per_vector : float
        Per SIMD operation.
    per_row : float
        Per (block) row and batch tile visited.
    family : str
        The kernel family (:data:`~.calibration.FAMILIES`) whose calibration scale applies.
    """

    fixed: float
    per_byte: float
    per_vector: float
    per_row: float
    family: str = ""

    def seconds(self, nbytes: float, vectors: float, rows: float) -> float:
        """Estimated time of one call on the CPU being planned for (:func:`calibrated`)."""
        constants = (self.fixed, self.per_byte, self.per_vector, self.per_row)
        features = (1.0, nbytes, vectors, rows)
        base = sum(c * f for c, f in zip(constants, features, strict=True))
        return base * family_scale(self.family)


# ------------------------------------------------------------------------ measured constants
DENSE_PRODUCT = Roofline(5.55e-06, 8.56e-12, 2.36e-10, 0.0, "dense_product")  # median error 16 %
CSR_MATVEC = Roofline(1.0e-06, 0.0, 2.90e-09, 4.37e-09, "csr_matvec")  # 2 %
BSR_COLUMN = Roofline(6.26e-08, 4.78e-12, 3.42e-10, 0.0, "bsr_matvec")  # r x 1 blocks; 10 %
BSR_PACKED = Roofline(0.0, 2.32e-12, 3.60e-10, 3.13e-09, "bsr_matvec")  # 1 x 4, 1 x 8; 3 %
BSR_MATVEC = Roofline(6.98e-08, 0.0, 2.05e-10, 3.25e-09, "bsr_matvec")  # other blocks; 3 %
SPARSE_MATMUL = Roofline(1.53e-05, 8.21e-11, 2.23e-12, 4.89e-09, "sparse_matmul")  # 6 %
DENSE_CONV = MappingProxyType(
    {
        ("NCHW", 1): Roofline(1.95e-05, 0.0, 3.92e-10, 0.0, "dense_conv"),
        ("NHWC", 1): Roofline(3.11e-05, 0.0, 5.92e-10, 0.0, "dense_conv"),
        ("NCHW", 3): Roofline(2.33e-05, 0.0, 3.07e-10, 0.0, "dense_conv"),
        ("NHWC", 3): Roofline(0.0, 0.0, 6.30e-10, 0.0, "dense_conv"),
    }
)
SELL_MATVEC = Roofline(0.0, 0.0, 1.01e-09, 4.79e-10, "sell_matvec")  # 5 %
SPARSE_DIRECT = Roofline(3.36e-05, 2.32e-11, 6.05e-10, 5.06e-10, "sparse_direct")  # NCHW; 7 %
SPARSE_CONV = MappingProxyType(  # 1x1, our kernel; NHWC with its transposes
    {
        "NCHW": Roofline(6.99e-06, 6.91e-12, 6.68e-10, 0.0, "sparse_conv"),
        "NHWC": Roofline(2.50e-05, 5.39e-11, 8.16e-10, 2.17e-08, "sparse_conv"),
    }
)
_INDEX_BYTES = 2  # uint16 column indices whenever the block columns fit
_POINTER_BYTES = 4


_VECTOR_BYTES: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "vector_bytes", default=None
)
_CALIBRATION: contextvars.ContextVar[Calibration | None] = contextvars.ContextVar(
    "calibration", default=None
)


def family_scale(family: str) -> float:
    """The scale of ``family``'s estimates for the CPU being planned for (1.0 outside
    :func:`calibrated`)."""
    calibration = _CALIBRATION.get()
    return 1.0 if calibration is None else calibration.scale(family)


@contextlib.contextmanager
def calibrated(calibration: Calibration | None) -> Iterator[None]:
    """Price kernels with ``calibration``'s scales and vector width inside the ``with`` block
    (``None``: the built-in constants at the host's vector width).

    Examples
    --------
    >>> from sparse_import.planning.calibration import Calibration
    >>> base = CSR_MATVEC.seconds(0, 1000, 10)
    >>> with calibrated(Calibration("x", 16, "measured", {"csr_matvec": 2.0})):
    ...     round(CSR_MATVEC.seconds(0, 1000, 10) / base, 6), lanes(4)
    (2.0, 4)
    """
    token = _CALIBRATION.set(calibration)
    try:
        with vector_width(None if calibration is None else calibration.vector_bytes):
            yield
    finally:
        _CALIBRATION.reset(token)


@functools.cache
def _host_vector_bytes() -> int:
    from sparse_import.target import resolve, vector_bytes  # TVM: only when a cost is asked

    return vector_bytes(resolve(None))


@contextlib.contextmanager
def vector_width(nbytes: int | None) -> Iterator[None]:
    """Price kernels for a target whose SIMD registers hold ``nbytes`` (``None``: the host's):
    a module built for another CPU is planned for that CPU's vectors.

    Examples
    --------
    >>> with vector_width(16):  # SSE2: generic x86-64
    ...     lanes(4)
    4
    """
    token = _VECTOR_BYTES.set(nbytes)
    try:
        yield
    finally:
        _VECTOR_BYTES.reset(token)


def lanes(itemsize: int = 4) -> int:
    """Values of ``itemsize`` bytes per SIMD register of the target being planned for (the host
    CPU unless :func:`vector_width` says otherwise)."""
    nbytes = _VECTOR_BYTES.get()
    return max(1, (nbytes or _host_vector_bytes()) // itemsize)


def dense_seconds(rows: int, cols: int, batch: int, itemsize: int = 4) -> float:
    """``nn.dense`` with a ``(rows, cols)`` weight, built for the host CPU."""
    nbytes = (rows * cols + batch * (rows + cols)) * itemsize
    vectors = batch * rows * math.ceil(cols / lanes(itemsize))
    return DENSE_PRODUCT.seconds(nbytes, vectors, 0)


def sparse_seconds(
    rows: int, cols: int, nblocks: int, block: tuple[int, int], batch: int, itemsize: int = 4
) -> float:
    """Our ``nn.sparse_dense`` kernel for a weight of ``nblocks`` ``block`` tiles (``(1, 1)``:
    CSR with ``nblocks`` values)."""
    r, c = block
    if batch == 1:
        kernel, features = matvec_features(rows, cols, nblocks, block, itemsize)
        return kernel.seconds(*features)
    stored = nblocks * (r * c * itemsize + _INDEX_BYTES) + (rows // r + 1) * _POINTER_BYTES
    values = nblocks * r * c
    return _matmul_seconds(SPARSE_MATMUL, stored, rows, cols, values, r, batch, itemsize, True)


def matvec_features(
    rows: int, cols: int, nblocks: int, block: tuple[int, int], itemsize: int = 4
) -> tuple[Roofline, tuple[float, float, float]]:
    """The batch-1 kernel that computes a weight of ``nblocks`` ``block`` tiles (CSR for
    ``(1, 1)``; ``1 x c`` blocks packed several to a vector; other blocks) and its
    ``(bytes, vectors, rows)``."""
    r, c = block
    block_rows = rows // r
    stored = nblocks * (r * c * itemsize + _INDEX_BYTES) + (block_rows + 1) * _POINTER_BYTES
    nbytes = stored + (rows + cols) * itemsize
    width = lanes(itemsize)
    if block == (1, 1):
        return CSR_MATVEC, (nbytes, nblocks / width, rows)
    if c == 1:  # a vector of r rows times one broadcast x[col] per block
        return BSR_COLUMN, (nbytes, nblocks * math.ceil(r / width), block_rows)
    if r == 1 and c < width and width % c == 0:  # width // c blocks packed to a vector
        return BSR_PACKED, (nbytes, nblocks, block_rows)  # x: one short load per block
    return BSR_MATVEC, (nbytes, nblocks * r, block_rows)


def sell_features(rows: int, cols: int, vectors: int, groups: int) -> tuple[float, float, float]:
    """``(bytes, vectors, groups)`` of our batch-1 kernel on a float32 weight in the ``sell``
    layout: ``vectors`` vectors of 16 values and one-byte columns in ``groups`` (slice, panel)
    groups, each vector one permute and one fused multiply-add."""
    nbytes = vectors * LANES * (4 + 1) + (groups + 1) * _POINTER_BYTES + (rows + cols) * 4
    return nbytes, vectors, groups


def sell_seconds(rows: int, cols: int, vectors: int, groups: int) -> float:
    """Our batch-1 ``sell`` kernel (:func:`sell_features`, priced by ``SELL_MATVEC``)."""
    return SELL_MATVEC.seconds(*sell_features(rows, cols, vectors, groups))


def _matmul_seconds(
    kernel: Roofline,
    stored: int,
    rows: int,
    cols: int,
    values: int,
    r: int,
    width: int,
    itemsize: int,
    transposed: bool,
) -> float:
    """:func:`~sparse_import.kernels.sparse_matmul` over ``width`` columns: the weight is read
    once per tile of columns."""

    per_vector = lanes(itemsize)
    (_, count), _, rest = tiles(width, r, per_vector)
    passes = count + len(rest)
    copies = 2 if transposed else 1  # the transposes read and write the input and output again
    nbytes = stored * passes + copies * width * (rows + cols) * itemsize
    vectors = values * math.ceil(width / per_vector)
    return kernel.seconds(nbytes, vectors, rows // r * passes)


def conv_dense_seconds(layout: str, kernel: int, rows: int, cols: int, pixels: int) -> float:
    """``nn.conv2d`` (stride 1) with a ``(rows, cols)`` weight matrix over ``pixels`` pixels."""
    vectors = pixels * rows * math.ceil(cols / lanes())
    return DENSE_CONV[layout, kernel].seconds(0, vectors, 0)


def conv_direct_features(
    rows: int, cols: int, values: int, pixels: int, kernel: int, stride: int
) -> tuple[float, float, float]:
    """``(bytes, vectors, visits)`` of our direct NCHW sparse convolution over one square image
    of ``pixels`` output pixels (``SPARSE_DIRECT`` prices them).

    The input is copied into its stride phases, each a plane ``out + (kernel - 1) // stride``
    wide; the output is computed as one wide row per image at that pitch (the columns past the
    image's width dropped by a crop); every stored value is visited once per tile of the wide
    row and multiplies its vectors.
    """
    out = max(1, math.isqrt(pixels))
    pitch = out + (kernel - 1) // stride
    phases = min(kernel, stride) ** 2
    channels = cols // (kernel * kernel)
    width = (out - 1) * pitch + out
    (_, count), _, rest = tiles(width, 1, lanes())
    copied = channels * phases * pitch * pitch + rows * width
    copied += channels * (out * stride) ** 2 + (rows * out * out if pitch != out else 0)
    return 4.0 * copied, values * math.ceil(width / lanes()), values * (count + len(rest))


def conv_direct_sparse_seconds(
    rows: int, cols: int, values: int, pixels: int, kernel: int, stride: int = 1
) -> float:
    """Our direct NCHW ``sparse_conv2d`` (any square kernel and stride) over ``pixels`` output
    pixels of square images (:func:`conv_direct_features`)."""
    return SPARSE_DIRECT.seconds(*conv_direct_features(rows, cols, values, pixels, kernel, stride))


def conv_sparse_seconds(
    layout: str, rows: int, cols: int, nblocks: int, block: tuple[int, int], pixels: int
) -> float:
    """Our 1x1 ``nn.sparse_conv2d`` kernel (NHWC transposes around the product)."""
    r, c = block
    stored = nblocks * (r * c * 4 + _INDEX_BYTES) + (rows // r + 1) * _POINTER_BYTES
    values = nblocks * r * c
    transposed = layout == "NHWC"
    return _matmul_seconds(
        SPARSE_CONV[layout], stored, rows, cols, values, r, pixels, 4, transposed
    )
