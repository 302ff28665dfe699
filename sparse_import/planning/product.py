"""A matrix product or convolution that reads a sparse weight: what planning needs to price it.

A backend recognizes, in its own IR, each place a weight is read by an operation a sparse kernel
computes, and describes it as a :class:`Product`: the weight as the ``(units, in)`` matrix of
``y = x @ W.T`` (in the IR, never dense), the shape of ``x``, and for a convolution its layout
and kernel size. Planning (:mod:`.decide`, :mod:`.cost`) sees nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sparse_import.tensor import SparseTensor

__all__ = ["LayoutNeighbours", "Product"]


@dataclass(frozen=True)
class LayoutNeighbours:
    """The convolutions next to a convolution in its graph, through operators that compute in
    whatever layout their input has (elementwise, pooling, concatenation).

    Each entry is the weight (parameter name) of such a convolution, or ``None`` for one whose
    weight is no sparse weight (it always stays dense).

    Attributes
    ----------
    producers : tuple[str | None, ...]
        Convolutions whose output reaches this convolution's input.
    consumers : tuple[str | None, ...]
        Convolutions whose input this convolution's output reaches.
    """

    producers: tuple[str | None, ...] = ()
    consumers: tuple[str | None, ...] = ()


@dataclass(frozen=True, eq=False, kw_only=True)
class Product:
    """One read of a weight by a product a sparse kernel can compute.

    Attributes
    ----------
    matrix : SparseTensor
        The ``(units, in)`` weight matrix of ``y = x @ matrix.T``, in the IR.
    data_shape : tuple[int | None, ...]
        Shape of the product's other input (``None`` for a dynamic dimension).
    conv : tuple[str, int] | None
        ``(data_layout, kernel_size)`` for a convolution, ``None`` for a matrix product.
    stride : int
        For a convolution, its stride (the larger of the two axes'); 1 for a matrix product.
    out_shape : tuple[int | None, ...] | None
        For a convolution, the shape of its output (``None``: the input's pixels, as with
        stride 1 and same padding).
    direct : bool
        A convolution computed by the direct NCHW kernel, which takes blocks one column wide
        only (everything NCHW but a 1x1 with stride 1 and no padding, a plain sparse product
        over the pixels).
    neighbours : LayoutNeighbours | None
        For a convolution, the convolutions next to it (what a change of layout around a sparse
        convolution costs depends on their lowering); ``None``: unknown, each side is priced
        as if its neighbour were dense.
    """

    matrix: SparseTensor
    data_shape: tuple[int | None, ...]
    conv: tuple[str, int] | None = None
    stride: int = 1
    out_shape: tuple[int | None, ...] | None = None
    direct: bool = False
    neighbours: LayoutNeighbours | None = None

    @property
    def batch(self) -> int | None:
        """Rows of ``x`` in ``x @ matrix.T``: leading dims (pixels for a convolution)."""
        shape = self.data_shape if self.out_shape is None else self.out_shape
        if self.conv is None:
            lead = shape[:-1]
        elif self.conv[0] == "NHWC":
            lead = shape[:3]
        else:
            lead = (shape[0], *shape[2:])
        return None if any(d is None for d in lead) else math.prod(lead)

    def allows(self, block: tuple[int, int]) -> bool:
        """Whether the kernel for this product takes a BSR weight with ``block`` tiles."""
        rows, cols = self.matrix.shape
        if rows % block[0] or cols % block[1]:
            return False
        return not self.direct or block[1] == 1  # one-column blocks only there
