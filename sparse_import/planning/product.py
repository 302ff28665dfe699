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

__all__ = ["Product"]


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
    """

    matrix: SparseTensor
    data_shape: tuple[int | None, ...]
    conv: tuple[str, int] | None = None

    @property
    def batch(self) -> int | None:
        """Rows of ``x`` in ``x @ matrix.T``: leading dims (pixels for a convolution)."""
        if self.conv is None:
            lead = self.data_shape[:-1]
        elif self.conv[0] == "NHWC":
            lead = self.data_shape[:3]
        else:
            lead = (self.data_shape[0], *self.data_shape[2:])
        return None if any(d is None for d in lead) else math.prod(lead)

    def allows(self, block: tuple[int, int]) -> bool:
        """Whether the kernel for this product takes a BSR weight with ``block`` tiles."""
        rows, cols = self.matrix.shape
        if rows % block[0] or cols % block[1]:
            return False
        return self.conv != ("NCHW", 3) or block[1] == 1  # one-column blocks only there
