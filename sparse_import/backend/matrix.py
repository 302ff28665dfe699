"""The weight matrix a Relay consumer sees, taken from the IR without densifying.

A frontend often hands a weight to its matrix product through a chain of unary operators
(ONNX ``MatMul``: ``nn.dense(x, transpose(W))``; TFLite float16 weights: ``cast``). Each step is
applied to the IR tensor instead of the dense array: a transpose relabels the levels in O(1), a
cast converts the stored values, a row-major reshape moves every stored coordinate (its linear
offset is unchanged). The result is the ``(units, in)`` matrix of TVM's ``nn.sparse_dense``,
read out with ``SparseTensor.to_scipy`` from the stored values and coordinates.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from sparse_import.errors import tensor_label
from sparse_import.layouts import bsr_layout, coo_layout, csr_layout
from sparse_import.tensor import SparseTensor

__all__ = ["block_count", "matrix_block", "reshape"]


def reshape(tensor: SparseTensor, shape: tuple[int, ...]) -> SparseTensor:
    """Row-major reshape of a sparse tensor, as ``numpy.reshape`` on its dense form.

    The same tensor is returned when ``shape`` equals its shape; otherwise the stored values are
    re-addressed by their linear offsets into a sorted COO tensor, in O(nnz log nnz).

    Parameters
    ----------
    tensor : SparseTensor
        Any layout.
    shape : tuple[int, ...]
        New shape with the same number of elements.

    Returns
    -------
    SparseTensor
        ``result.to_dense() == tensor.to_dense().reshape(shape)``.

    Raises
    ------
    ValueError
        When the sizes differ, naming the tensor.
    """
    shape = tuple(int(n) for n in shape)
    if shape == tensor.shape:
        return tensor
    if math.prod(shape) != tensor.size:
        raise ValueError(f"{tensor_label(tensor.name)}: cannot reshape {tensor.shape} into {shape}")
    offsets = tensor.linear_offsets()
    order = np.argsort(offsets, kind="stable")
    coords = np.unravel_index(offsets[order], shape)
    rank = len(shape)
    positions = (np.array([0, offsets.size], dtype=np.int64),) + (None,) * (rank - 1)
    if rank == 2 and offsets.size:
        # CSR directly: sorted offsets are sorted rows, then sorted columns.
        indptr = np.concatenate(([0], np.cumsum(np.bincount(coords[0], minlength=shape[0]))))
        return SparseTensor(
            shape,
            csr_layout(),
            (None, indptr),
            (None, coords[1]),
            tensor.values[order],
            tensor.name,
            tensor.quantization,
        )
    return SparseTensor(
        shape,
        coo_layout(rank),
        positions,
        tuple(coords),
        tensor.values[order],
        tensor.name,
        tensor.quantization,
    )


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
