"""``nn.sparse_dense`` semantics (``y = x @ W.T``, ``W`` sparse) from the kernels of this package.

Batch 1 runs the matrix-vector kernels; a larger batch transposes ``x`` (``cols x batch``, small
next to the weight), runs :func:`~.matmul.sparse_matmul` vectorized over the batch and
transposes the ``(rows, batch)`` result back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from tvm import te
from tvm.topi import tag

from ._tir import Simd
from .matmul import sparse_matmul
from .matvec import bsr_matvec, csr_matvec

__all__ = ["TRANSPOSE_TAG", "sparse_dense", "sparse_dense_schedule"]

TRANSPOSE_TAG = "sparse_import.transpose"
"""Tag of the data movement around the kernels (transposes, padding): scheduled parallel over
its first axis (its first two when it has more than two)."""

PARALLEL_EPILOGUE = 1 << 14
"""Values from which a fused epilogue runs in parallel: below it TVM's parallel launch (about
6 us per call) costs more than the loop (a bias and ReLU after a 2048-row batch-1 product:
0.046 ms with a parallel epilogue, 0.038 ms without)."""


def sparse_dense(
    x: te.Tensor, data: te.Tensor, indices: te.Tensor, indptr: te.Tensor, *, simd: Simd
) -> te.Tensor:
    """``y = x @ W.T`` with ``x: (batch, cols)`` static and ``W`` in CSR or BSR arrays.

    Parameters
    ----------
    x : te.Tensor
        ``(batch, cols)`` with a static ``batch``.
    data, indices, indptr : te.Tensor
        ``W``'s arrays as TVM's ``nn.sparse_dense`` takes them.
    simd : Simd
        The target's vectors.

    Returns
    -------
    te.Tensor
        ``(batch, rows)``.
    """
    batch, cols = (int(d) for d in x.shape)
    if batch == 1:
        kernel = csr_matvec if len(data.shape) == 1 else bsr_matvec
        return kernel(x, data, indices, indptr, simd=simd)
    xt = te.compute((cols, batch), lambda k, n: x[n, k], name="x_t", tag=TRANSPOSE_TAG)
    yt = sparse_matmul(xt, data, indices, indptr, images=1, width=batch, simd=simd)
    rows = int(yt.shape[1])
    return te.compute((batch, rows), lambda n, m: yt[0, m, n], name="y", tag=TRANSPOSE_TAG)


def sparse_dense_schedule(outs: Sequence[te.Tensor], lanes: int = 16) -> te.Schedule:
    """Schedule :func:`sparse_dense`'s output and what Relay fused after it.

    Our transposes run parallel over their rows. Elementwise operators fused after the kernel
    (a bias, a folded batch norm, a residual add, an activation) are inlined into the last one,
    which runs over its fused axes ``lanes`` values to a vector, in parallel from
    :data:`PARALLEL_EPILOGUE` values: a default schedule would run a large epilogue serially and
    cost more than the sparse product.
    """
    outs = list(outs)
    s = te.create_schedule([t.op for t in outs])
    out_ops = {t.op for t in outs}
    seen = set()

    def visit(tensor: te.Tensor) -> None:
        op = tensor.op
        if op in seen:
            return
        seen.add(op)
        if op.tag == TRANSPOSE_TAG:  # one image: its channels in parallel
            s[op].parallel(s[op].fuse(*op.axis[:2]) if len(op.axis) > 2 else op.axis[0])
        elif _epilogue(op) and op not in out_ops:
            s[op].compute_inline()
        for child in op.input_tensors:
            visit(child)

    for out in outs:
        visit(out)
    for op in out_ops:
        if _epilogue(op):
            fused = s[op].fuse(*op.axis)
            outer, inner = s[op].split(fused, factor=lanes)
            s[op].vectorize(inner)
            if math.prod(int(d) for d in op.output(0).shape) >= PARALLEL_EPILOGUE:
                s[op].parallel(outer)
    return s


def _epilogue(op: te.Operation) -> bool:
    """An elementwise or broadcast stage Relay fused after the kernel (not one of ours)."""
    return isinstance(op, te.ComputeOp) and op.tag != TRANSPOSE_TAG and tag.is_injective(op.tag)
