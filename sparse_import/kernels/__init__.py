"""Sparse matrix kernels for CPUs, written in TVM's tensor expressions and TIR.

``y = x @ W.T`` with ``W: (rows, cols)`` held as CSR or BSR arrays (``data``, ``indices``,
``indptr``, the layout of TVM's ``nn.sparse_dense``), vectorized for the target's SIMD width and
parallel over rows:

- batch 1 (:func:`~.matvec.csr_matvec`, :func:`~.matvec.bsr_matvec`): each row (or ``1 x c``
  block row) is walked in chunks of one vector of stored values, ``x`` gathered by their
  columns; ``r x 1`` blocks multiply a vector of ``r`` rows by one broadcast ``x[col]``.
- batch ``n`` (:func:`~.matmul.sparse_matmul`): ``y.T = W @ x.T``, vectorized over the batch:
  each stored value is broadcast and multiplies one contiguous row of ``x.T`` (the layout of
  XNNPACK's sparse kernels and "Fast Sparse ConvNets", Elsen et al. 2020). A 1x1 convolution
  in NCHW is this product with the pixels as the batch, with no transpose; a 3x3 one in NCHW
  (:func:`~.conv.sparse_conv2d_3x3_nchw`) reads shifted rows of the padded input instead.

The package builds TE/TIR only; registering the kernels with a compiler front end (Relay) is
the backend's business, so another front end can reuse them.
"""

from __future__ import annotations

from ._tir import Simd
from .conv import sparse_conv2d_1x1, sparse_conv2d_3x3_nchw
from .dense import sparse_dense, sparse_dense_schedule
from .matmul import sparse_matmul
from .matvec import bsr_matvec, csr_matvec

__all__ = [
    "Simd",
    "bsr_matvec",
    "csr_matvec",
    "sparse_conv2d_1x1",
    "sparse_conv2d_3x3_nchw",
    "sparse_dense",
    "sparse_dense_schedule",
    "sparse_matmul",
]
