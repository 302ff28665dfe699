"""The CSR arrays a weight is stored as when it is expanded at run time (``Lowering.DENSIFY``).

Shared by both backends: a weight of any rank is stored as the CSR arrays of its row-major 2-D
view ``(shape[0], prod(shape[1:]))``, with ``uint16`` column indices where they fit, and the
expansion pays only when those arrays are smaller than the dense weight (:func:`csr_bytes`).

Examples
--------
>>> import numpy as np
>>> from sparse_import import SparseTensor
>>> from sparse_import.layouts import coo_layout
>>> w = SparseTensor.from_dense(np.eye(4, 6, dtype=np.float32), coo_layout(2), name="w")
>>> data, indices, indptr = csr_arrays(w)
>>> indices.dtype, indptr.tolist(), csr_bytes(w) < w.dense_nbytes
(dtype('uint16'), [0, 1, 2, 3, 4], True)
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from sparse_import.tensor import SparseTensor

__all__ = ["csr_arrays", "csr_bytes", "index_dtype", "matrix_shape", "pointer_dtype"]

_UINT16_COLUMNS = np.iinfo(np.uint16).max + 1


def matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """The row-major 2-D view a weight of ``shape`` is stored as."""
    if len(shape) == 1:
        return (1, shape[0])
    return (shape[0], math.prod(shape[1:]))


def index_dtype(cols: int) -> np.dtype:
    """Column indices: ``uint16`` up to 65536 columns, else ``int32``."""
    return np.dtype(np.uint16 if cols <= _UINT16_COLUMNS else np.int32)


def pointer_dtype(nnz: int) -> np.dtype:
    """Row positions: ``int32`` below 2**31 stored values, else ``int64``."""
    return np.dtype(np.int32 if nnz < 2**31 else np.int64)


def csr_bytes(tensor: SparseTensor) -> int:
    """Bytes of the CSR arrays :func:`csr_arrays` gives ``tensor`` (an empty weight still
    stores one padding value and index)."""
    rows, cols = matrix_shape(tensor.shape)
    stored = max(tensor.nnz, 1)
    pointer = pointer_dtype(tensor.nnz).itemsize
    return stored * (tensor.dtype.itemsize + index_dtype(cols).itemsize) + (rows + 1) * pointer


def csr_arrays(tensor: SparseTensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(data, indices, indptr)`` of the 2-D view, built from the IR's stored values and
    coordinates (never from a dense array); an empty weight gets one padding value and index
    that its all-zero ``indptr`` never reads."""
    rows, cols = matrix_shape(tensor.shape)
    # the stored values only: a quantization axis means nothing in the 2-D view
    plain = dataclasses.replace(tensor, quantization=None)
    if plain.dtype == np.float16:  # SciPy holds no float16; the round trip is exact
        plain = plain.astype(np.float32)
    matrix = plain.reshape((rows, cols)).to_scipy("csr")
    data = np.asarray(matrix.data, dtype=tensor.dtype)
    indices = np.asarray(matrix.indices, dtype=index_dtype(cols))
    if data.size == 0:
        data, indices = np.zeros(1, tensor.dtype), np.zeros(1, indices.dtype)
    indptr = np.asarray(matrix.indptr, dtype=pointer_dtype(tensor.nnz))
    return (np.ascontiguousarray(data), np.ascontiguousarray(indices), np.ascontiguousarray(indptr))
