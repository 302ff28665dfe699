"""Sparse times dense, vectorized over the dense operand's columns: ``Y = W @ X``.

``W: (rows, cols)`` in TVM's CSR/BSR arrays, ``X: (images, cols, width)`` and
``Y: (images, rows, width)`` row-major. Each stored value is broadcast and multiplies one
contiguous stretch of a row of ``X`` into vector accumulators (the layout of XNNPACK's sparse
kernels and of "Fast Sparse ConvNets", Elsen et al. 2020), so ``X`` is read with contiguous
vector loads and no gather. ``width`` is the batch of a matrix product (``y.T = W @ x.T``) or the
pixels of a 1x1 convolution in NCHW. Block rows of all images run in parallel; ``width`` is cut
into tiles of a power-of-two count of whole vectors, at most ``ACCUMULATORS`` of them, and the
rest into shorter tiles (power-of-two counts of vectors, then one partial vector).
When a tile holds few vectors, consecutive blocks go to independent accumulators.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from tvm import te, tir

from sparse_import.planning.tiling import ACCUMULATORS, matmul_tile, tiles

from ._tir import Simd, broadcast, flat, int32, parallel_rows, span, stack_buffer, tree_sum

__all__ = ["ACCUMULATORS", "matmul_tile", "sparse_matmul", "sparse_rows", "tiles"]


def _interleave(block_rows: int, size: int, lanes: int) -> int:
    """Independent accumulator sets: enough for about 8 vector updates in flight."""
    vectors = block_rows * math.ceil(size / lanes)
    return max(1, min(4, 8 // vectors))


def sparse_matmul(
    x: te.Tensor,
    data: te.Tensor,
    indices: te.Tensor,
    indptr: te.Tensor,
    *,
    images: int,
    width: int,
    simd: Simd,
    out_shape: tuple[int, ...] | None = None,
) -> te.Tensor:
    """``Y[g] = W @ X[g]`` for every image ``g``.

    Parameters
    ----------
    x : te.Tensor
        ``X``, any shape holding ``images * cols * width`` values in that order.
    data, indices, indptr : te.Tensor
        ``W``'s arrays: ``data`` ``(nnz,)`` (CSR) or ``(nblocks, r, c)`` (BSR).
    images, width : int
        Leading and trailing extents of ``X`` and ``Y``.
    simd : Simd
        The target's vectors.
    out_shape : tuple[int, ...], optional
        Shape of the result (``(images, rows, width)`` by default); any shape with that many
        values in that order.

    Returns
    -------
    te.Tensor
    """
    rows = (int(indptr.shape[0]) - 1) * (1 if len(data.shape) == 1 else int(data.shape[1]))
    cols = math.prod(int(d) for d in x.shape) // (images * width)
    return sparse_rows(
        x,
        data,
        indices,
        indptr,
        outer=images,
        width=width,
        x_row=lambda g, col: (g * cols + col) * width,
        y_row=lambda g, row: (g * rows + row) * width,
        simd=simd,
        out_shape=out_shape or (images, rows, width),
    )


def sparse_rows(
    x: te.Tensor,
    data: te.Tensor,
    indices: te.Tensor,
    indptr: te.Tensor,
    *,
    outer: int,
    width: int,
    x_row: Callable[[tir.PrimExpr, tir.PrimExpr], tir.PrimExpr],
    y_row: Callable[[tir.PrimExpr, tir.PrimExpr], tir.PrimExpr],
    simd: Simd,
    out_shape: tuple[int, ...],
) -> te.Tensor:
    """The kernel behind :func:`sparse_matmul`, for any placement of the rows of ``X``/``Y``.

    For every ``o < outer`` and output row ``m``: ``Y[y_row(o, m) : + width] = sum over the
    stored ``W[m, k]`` of ``W[m, k] * X[x_row(o, k) : + width]`` (flat positions). A matrix
    product places the rows one after another; a direct 3x3 convolution places them at the
    shifted input row each weight column reads.
    """
    r, c = (1, 1) if len(data.shape) == 1 else (int(data.shape[1]), int(data.shape[2]))
    block_rows = int(indptr.shape[0]) - 1
    dtype = data.dtype
    lanes = simd.lanes(dtype)
    (tile, full), rest_start, rest = tiles(width, r, lanes)

    def accumulate(ib, refs, o, brow, start, size):
        xs, values, cols_, pos, y = refs
        ways = _interleave(r, size, lanes)
        acc = stack_buffer(ib, dtype, ways * r * size, "acc")

        def block(b, u):
            col = ib.let("col", int32(cols_[b]) * c)
            for i in range(r):
                for j in range(c):
                    w = broadcast(values[(b * r + i) * c + j], size)
                    part = span((u * r + i) * size, size)
                    acc[part] = acc[part] + w * xs[span(x_row(o, col + j) + start, size)]

        first = ib.let("first", int32(pos[brow]))
        count = ib.let("count", int32(pos[brow + 1]) - first)
        with ib.for_range(0, count // ways, name="group") as g:
            for u in range(ways):
                block(first + g * ways + u, u)
        if ways > 1:
            done = ib.let("done", count // ways * ways)
            with ib.for_range(0, count - done, name="rest") as k:
                block(first + done + k, 0)
        for i in range(r):
            parts = [acc[span((u * r + i) * size, size)] for u in range(ways)]
            y[span(y_row(o, brow * r + i) + start, size)] = tree_sum(parts)

    def body(ins, outs):
        ib = tir.ir_builder.create()
        refs = (
            flat(ib, ins[0]),
            flat(ib, ins[1]),
            ib.buffer_ptr(ins[2]),
            ib.buffer_ptr(ins[3]),
            flat(ib, outs[0]),
        )

        def emit(work):
            o = work // block_rows
            brow = work % block_rows
            if full:
                with ib.for_range(0, full, name="tile") as t:
                    accumulate(ib, refs, o, brow, t * tile, tile)
            start = rest_start
            for size in rest:
                accumulate(ib, refs, o, brow, start, size)
                start += size

        parallel_rows(ib, outer * block_rows, "work", emit)
        return ib.get()

    return te.extern(
        out_shape,
        [x, data, indices, indptr],
        body,
        dtype=dtype,
        name="sparse_matmul",
        tag="sparse_import.sparse_matmul",
    )
