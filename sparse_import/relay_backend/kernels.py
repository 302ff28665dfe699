"""Compressed weight operands of TVM's ``nn.sparse_dense`` and ``nn.sparse_conv2d``.

TVM takes a sparse weight as three arrays: ``data`` (``(nnz,)`` for CSR, ``(nblocks, r, c)``
for BSR), ``indices`` (column of each value / block) and ``indptr`` (row / block-row pointers).
This module turns a SciPy CSR/BSR matrix into those arrays and builds the Relay calls on them.
The arrays become Relay parameters (free variables bound at build time), so the module's
``params`` carry only compressed data. On CPUs the calls run the kernels of
:mod:`sparse_import.kernels` (registered by :mod:`.strategy`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from tvm import relay
from tvm.relay.op.nn import _make as _nn_make  # nn.sparse_conv2d has no Python wrapper

from sparse_import.planning.roofline import lanes
from sparse_import.planning.sell import sell_arrays

from . import strategy  # noqa: F401  (registers our kernels for the calls built here)
from .conv_op import sparse_conv2d
from .sell_op import sell_dense

__all__ = [
    "SellOperand",
    "SparseOperand",
    "sell_dense_expr",
    "sparse_conv2d_expr",
    "sparse_dense_expr",
]

_POINTER_DTYPE = np.dtype(np.int32)
MAX_ROW_PADDING = 0.15
"""Largest fraction of explicit zeros :meth:`SparseOperand.from_scipy` adds to CSR rows."""


def _index_dtype(block_cols: int) -> np.dtype:
    """uint16 column indices when they fit (TVM reads any integer dtype; 2 bytes less per
    entry, measured no slower), else int32."""
    return np.dtype(np.uint16) if block_cols <= 2**16 else np.dtype(np.int32)


class _Arrays:
    """Named arrays that become a weight's parameters ``{prefix}.{part}``."""

    PARTS: ClassVar[tuple[str, ...]] = ()

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays together."""
        return int(sum(getattr(self, part).nbytes for part in self.PARTS))

    def params(self, prefix: str) -> dict[str, np.ndarray]:
        """Parameter dict ``{prefix.<part>: array}``, in :attr:`PARTS` order."""
        return {f"{prefix}.{part}": getattr(self, part) for part in self.PARTS}

    def variables(self, prefix: str) -> tuple[relay.Var, ...]:
        """Relay variables named as in :meth:`params`, typed from the arrays."""
        return tuple(
            relay.var(name, shape=value.shape, dtype=str(value.dtype))
            for name, value in self.params(prefix).items()
        )


@dataclass(frozen=True)
class SparseOperand(_Arrays):
    """The three arrays TVM reads a sparse ``(units, in)`` weight from.

    Attributes
    ----------
    data : numpy.ndarray
        ``(nnz,)`` values (CSR) or ``(nblocks, r, c)`` blocks (BSR).
    indices : numpy.ndarray
        ``(nnz,)`` or ``(nblocks,)`` column (block column) of each entry: uint16 when the
        block columns fit, else int32.
    indptr : numpy.ndarray
        ``(units + 1,)`` or ``(units // r + 1,)`` int32 row (block row) pointers.
    shape : tuple[int, int]
        ``(units, in)`` of the weight.
    """

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    shape: tuple[int, int]
    PARTS: ClassVar[tuple[str, ...]] = ("data", "indices", "indptr")

    @property
    def format(self) -> Literal["csr", "bsr"]:
        """``"csr"`` or ``"bsr"``, from the rank of ``data``."""
        return "bsr" if self.data.ndim == 3 else "csr"

    @property
    def block(self) -> tuple[int, int]:
        """Block shape ``(r, c)``; ``(1, 1)`` for CSR."""
        return (1, 1) if self.data.ndim == 1 else tuple(int(n) for n in self.data.shape[1:])

    @classmethod
    def from_scipy(
        cls, matrix: sp.csr_matrix | sp.bsr_matrix, *, pad_rows: bool = True
    ) -> SparseOperand:
        """Take the arrays of a SciPy CSR or BSR matrix (explicit zeros are kept).

        With ``pad_rows``, each CSR row is padded with explicit zeros (at its last column) to a
        whole number of the host CPU's vectors when that adds at most ``MAX_ROW_PADDING`` of
        the stored values: our batch-1 kernel then never takes a value one by one (10 % faster
        at 2048x2048, density 0.1). The operand still holds the same matrix.

        Parameters
        ----------
        matrix : scipy.sparse.csr_matrix | scipy.sparse.bsr_matrix
            Weight of shape ``(units, in)``; BSR becomes TVM's BSR with the same block shape.
        pad_rows : bool, optional
            Pad CSR rows as above.

        Returns
        -------
        SparseOperand
        """
        if matrix.format not in ("csr", "bsr"):
            raise ValueError(f"expected a CSR or BSR matrix, got format {matrix.format!r}")
        shape = (int(matrix.shape[0]), int(matrix.shape[1]))
        if matrix.format == "bsr" and matrix.blocksize == (1, 1):
            matrix = matrix.tocsr()
        block_cols = shape[1] // (matrix.blocksize[1] if matrix.format == "bsr" else 1)
        data, indices, indptr = matrix.data, matrix.indices, matrix.indptr
        if pad_rows and matrix.format == "csr" and matrix.nnz:
            data, indices, indptr = _padded_rows(data, indices, indptr, lanes(data.itemsize))
        if indptr[-1] > np.iinfo(_POINTER_DTYPE).max:
            raise ValueError(f"{indptr[-1]} stored entries do not fit TVM's int32 pointers")
        return cls(
            data=np.ascontiguousarray(data),
            indices=np.ascontiguousarray(indices, dtype=_index_dtype(block_cols)),
            indptr=np.ascontiguousarray(indptr, dtype=_POINTER_DTYPE),
            shape=shape,
        )


def _padded_rows(
    data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, multiple: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR arrays with every row padded to a multiple of ``multiple`` entries (zeros at the
    row's last column), or the arrays as given if that adds more than ``MAX_ROW_PADDING``."""
    lengths = np.diff(indptr).astype(np.int64)
    padded = -(-lengths // multiple) * multiple
    total = int(padded.sum())
    if total > (1.0 + MAX_ROW_PADDING) * lengths.sum() or total == lengths.sum():
        return data, indices, indptr
    new_indptr = np.concatenate(([0], np.cumsum(padded)))
    shift = np.repeat(new_indptr[:-1] - indptr[:-1], lengths)
    positions = np.arange(lengths.sum(), dtype=np.int64) + shift
    last = indices[np.maximum(indptr[1:].astype(np.int64) - 1, 0)]
    new_indices = np.repeat(np.where(lengths > 0, last, 0), padded).astype(indices.dtype)
    new_indices[positions] = indices
    new_data = np.zeros(total, dtype=data.dtype)
    new_data[positions] = data
    return new_data, new_indices, new_indptr


@dataclass(frozen=True)
class SellOperand(_Arrays):
    """A ``(units, in)`` weight in the ``sell`` layout (:mod:`sparse_import.planning.sell`),
    read by :func:`~.sell_op.sell_dense` at batch 1.

    Attributes
    ----------
    values, columns, offsets : numpy.ndarray
        The layout's arrays.
    shape : tuple[int, int]
        ``(units, in)`` of the weight.
    """

    values: np.ndarray
    columns: np.ndarray
    offsets: np.ndarray
    shape: tuple[int, int]

    PARTS: ClassVar[tuple[str, ...]] = ("values", "columns", "offsets")

    @classmethod
    def from_scipy(cls, matrix: sp.csr_matrix | sp.csr_array, panel: int = 32) -> SellOperand:
        """Lay out a SciPy CSR matrix in panels of ``panel`` columns (explicit zeros kept)."""
        values, columns, offsets = sell_arrays(matrix, panel)
        return cls(values, columns, offsets, (int(matrix.shape[0]), int(matrix.shape[1])))


def sell_dense_expr(
    x: relay.Expr, operand: SellOperand, prefix: str
) -> tuple[relay.Expr, dict[str, np.ndarray]]:
    """Build ``y = x @ W.T`` for a ``(1, in)`` ``x`` with ``W`` in the ``sell`` layout."""
    call = sell_dense(x, *operand.variables(prefix), units=operand.shape[0])
    return call, operand.params(prefix)


def sparse_dense_expr(
    x: relay.Expr, operand: SparseOperand, prefix: str, *, sparse_lhs: bool = False
) -> tuple[relay.Expr, dict[str, np.ndarray]]:
    """Build ``y = x @ W.T`` with ``W`` sparse, for a rank-2 ``x``.

    Parameters
    ----------
    x : relay.Expr
        ``(batch, in)`` input.
    operand : SparseOperand
        Compressed ``W`` of shape ``(units, in)``.
    prefix : str
        Name prefix of the new parameters.
    sparse_lhs : bool, optional
        Compute ``(W @ x.T).T`` with TVM's sparse-left-hand-side kernel instead of the default
        ``x @ W.T`` kernel (same result; TVM schedules the two differently on x86).

    Returns
    -------
    tuple[relay.Expr, dict[str, numpy.ndarray]]
        The ``(batch, units)`` ``nn.sparse_dense`` call and the parameters it reads.
    """
    call = relay.nn.sparse_dense(x, operand.variables(prefix), sparse_lhs=sparse_lhs)
    if sparse_lhs:
        call = relay.transpose(call, axes=(1, 0))
    return call, operand.params(prefix)


def sparse_conv2d_expr(
    x: relay.Expr,
    operand: SparseOperand,
    prefix: str,
    *,
    layout: str,
    kernel_size: int,
    geometry: dict | None = None,
) -> tuple[relay.Expr, dict[str, np.ndarray]]:
    """Build TVM's ``nn.sparse_conv2d`` (stride 1, same padding) with a BSR/CSR weight, or with
    ``geometry`` (NCHW) our :func:`~.conv_op.sparse_conv2d` for any stride and padding.

    Parameters
    ----------
    x : relay.Expr
        ``(n, h, w, in)`` (NHWC) or ``(n, in, h, w)`` (NCHW) input.
    operand : SparseOperand
        Compressed weight matrix ``(out, kh * kw * in)`` in the column order of TVM's kernel
        (``(kh, kw, in)`` for NHWC, ``(in, kh, kw)`` for NCHW).
    prefix : str
        Name prefix of the new parameters.
    layout : str
        ``"NHWC"`` or ``"NCHW"``.
    kernel_size : int
        1 or 3 (without ``geometry``).
    geometry : dict, optional
        :func:`~.conv_op.conv_geometry` of the convolution, for our op.

    Returns
    -------
    tuple[relay.Expr, dict[str, numpy.ndarray]]
        The convolution call and the parameters it reads.
    """
    params = operand.params(prefix)
    if operand.data.ndim == 1:  # TVM's convolutions read CSR as BSR with 1x1 blocks
        params[f"{prefix}.data"] = operand.data.reshape(-1, 1, 1)
    data, indices, indptr = (
        relay.var(name, shape=value.shape, dtype=str(value.dtype)) for name, value in params.items()
    )
    if geometry is not None:
        return sparse_conv2d(x, data, indices, indptr, **geometry), params
    call = _nn_make.sparse_conv2d(x, data, indices, indptr, layout, [kernel_size, kernel_size])
    return call, params
