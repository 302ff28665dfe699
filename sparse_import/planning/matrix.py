"""The weight matrix a Relay consumer sees, taken from the IR without densifying.

A frontend often hands a weight to its matrix product through a chain of unary operators
(ONNX ``MatMul``: ``nn.dense(x, transpose(W))``; TFLite float16 weights: ``cast``). Each step is
applied to the IR tensor instead of the dense array: a transpose relabels the levels in O(1), a
cast converts the stored values, a row-major reshape moves every stored coordinate (its linear
offset is unchanged). The result is the ``(units, in)`` matrix of TVM's ``nn.sparse_dense``,
read out with ``SparseTensor.to_scipy`` from the stored values and coordinates.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from sparse_import.layouts import bsr_layout
from sparse_import.tensor import SparseTensor

__all__ = ["block_count", "matrix_block"]


def matrix_block(tensor: SparseTensor) -> tuple[int, int]:
    """The block shape in which a rank-2 tensor stores its values, ``(1, 1)`` if none.

    Only a tensor stored exactly as BSR (block rows outer, block columns compressed, blocks
    row-major) reports its block; any other blocked layout reports ``(1, 1)``, since handing
    it to TVM goes through its coordinates anyway.
    """
    block = tensor.block_shape
    if len(block) == 2 and block != (1, 1) and tensor.is_layout(bsr_layout(block)):
        return block
    return (1, 1)


def block_count(csr: sp.csr_array | sp.csr_matrix, block: tuple[int, int]) -> int:
    """Number of ``block``-shaped tiles of ``csr`` that hold at least one stored value.

    O(nnz) with a bitmap over the tiles (O(nnz log nnz) when the bitmap would be much larger
    than the matrix's stored data).

    Parameters
    ----------
    csr : scipy.sparse.csr_array
        ``(rows, cols)`` with ``block`` dividing both.
    block : tuple[int, int]
        ``(r, c)``.
    """
    r, c = block
    rows, cols = csr.shape
    row_of = np.repeat(np.arange(rows, dtype=np.int64) // r, np.diff(csr.indptr))
    tile = row_of * (cols // c) + csr.indices.astype(np.int64) // c
    tiles = (rows // r) * (cols // c)
    if tiles > 64 * max(csr.nnz, 1):
        return int(np.unique(tile).size)
    seen = np.zeros(tiles, dtype=bool)
    seen[tile] = True
    return int(np.count_nonzero(seen))
