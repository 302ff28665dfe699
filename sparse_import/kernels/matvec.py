"""Sparse matrix times vector (batch 1), vectorized over stored values or blocks.

Both kernels compute ``y[0, :] = W @ x[0, :]`` for ``W: (rows, cols)`` in TVM's CSR/BSR arrays
(``data``: ``(nnz,)`` or ``(nblocks, r, c)``; ``indices``: column or block column of each entry,
int32 or uint16; ``indptr``: ``(rows // r + 1,)`` int32 positions), parallel over (block) rows.

- :func:`csr_matvec`: a row's stored values are read one SIMD vector at a time, ``x`` gathered
  at their columns (one gather instruction on AVX2 / AVX-512) and multiplied into
  ``INTERLEAVE`` vector accumulators, summed once per row; the values that do not fill a last
  vector are taken one by one.
- :func:`bsr_matvec`: per block, its ``r x c`` values times ``x[col * c : col * c + c]``; for
  ``r x 1`` blocks one vector of ``r`` rows times a broadcast ``x[col]``. ``INTERLEAVE``
  accumulators take consecutive blocks, so the additions do not wait on each other.
"""

from __future__ import annotations

from tvm import te, tir

from ._tir import (
    Simd,
    broadcast,
    flat,
    fold_lanes,
    int32,
    parallel_rows,
    span,
    stack_buffer,
    tree_sum,
)

__all__ = ["INTERLEAVE", "bsr_matvec", "csr_matvec"]

INTERLEAVE = 4
"""Independent accumulators per row: covers the latency of a fused multiply-add."""


def _block(data: te.Tensor) -> tuple[int, int]:
    return (1, 1) if len(data.shape) == 1 else (int(data.shape[1]), int(data.shape[2]))


def csr_matvec(
    x: te.Tensor, data: te.Tensor, indices: te.Tensor, indptr: te.Tensor, *, simd: Simd
) -> te.Tensor:
    """``y = x @ W.T`` for ``x: (1, cols)`` and ``W`` in CSR.

    Parameters
    ----------
    x : te.Tensor
        ``(1, cols)``.
    data, indices, indptr : te.Tensor
        ``W``'s arrays, ``data`` ``(nnz,)``.
    simd : Simd
        The target's vectors.

    Returns
    -------
    te.Tensor
        ``(1, rows)`` with ``rows = indptr.shape[0] - 1``.
    """
    rows = int(indptr.shape[0]) - 1
    dtype = data.dtype
    lanes = simd.lanes(dtype)
    group = INTERLEAVE * lanes

    def body(ins, outs):
        ib = tir.ir_builder.create()
        xs, values, cols = flat(ib, ins[0]), ib.buffer_ptr(ins[1]), ib.buffer_ptr(ins[2])
        pos, y = ib.buffer_ptr(ins[3]), flat(ib, outs[0])

        def chunk(acc, p, u):
            product = values[span(p, lanes)] * simd.gather(xs, cols, p)
            acc[span(u * lanes, lanes)] = acc[span(u * lanes, lanes)] + product

        def emit(row):
            begin = ib.let("begin", int32(pos[row]))
            count = ib.let("count", int32(pos[row + 1]) - begin)
            acc = stack_buffer(ib, dtype, group, "acc")
            with ib.for_range(0, count // group, name="group") as g:
                for u in range(INTERLEAVE):
                    chunk(acc, begin + g * group + u * lanes, u)
            done = ib.let("done", count // group * group)
            with ib.for_range(0, (count - done) // lanes, name="chunk") as k:
                chunk(acc, begin + done + k * lanes, 0)
            total = ib.allocate(dtype, (1,), name="total", scope="global")
            acc[span(0, lanes)] = tree_sum([acc[span(u * lanes, lanes)] for u in range(INTERLEAVE)])
            total[0] = fold_lanes(acc, lanes)
            tail = ib.let("tail", count // lanes * lanes)
            with ib.for_range(0, count - tail, name="tail") as t:
                p = begin + tail + t
                total[0] = total[0] + values[p] * xs[int32(cols[p])]
            y[row] = total[0]

        parallel_rows(ib, rows, "row", emit)
        return ib.get()

    return te.extern(
        (1, rows),
        [x, data, indices, indptr],
        body,
        dtype=dtype,
        name="csr_matvec",
        tag="sparse_import.csr_matvec",
    )


def bsr_matvec(
    x: te.Tensor, data: te.Tensor, indices: te.Tensor, indptr: te.Tensor, *, simd: Simd
) -> te.Tensor:
    """``y = x @ W.T`` for ``x: (1, cols)`` and ``W`` in BSR with ``r x c`` blocks.

    Parameters
    ----------
    x : te.Tensor
        ``(1, cols)``.
    data, indices, indptr : te.Tensor
        ``W``'s arrays, ``data`` ``(nblocks, r, c)`` with ``r * c > 1``.
    simd : Simd
        The target's vectors: ``1 x c`` blocks narrower than a vector are packed
        ``lanes // c`` to a vector; otherwise the block shape sets the vector length.

    Returns
    -------
    te.Tensor
        ``(1, rows)`` with ``rows = r * (indptr.shape[0] - 1)``.
    """
    r, c = _block(data)
    lanes = simd.lanes(data.dtype)
    if r == 1 and c < lanes and lanes % c == 0:
        return _packed_row_matvec(x, data, indices, indptr, lanes)
    size = r * c
    block_rows = int(indptr.shape[0]) - 1
    dtype = data.dtype

    def body(ins, outs):
        ib = tir.ir_builder.create()
        xs, values, cols = flat(ib, ins[0]), flat(ib, ins[1]), ib.buffer_ptr(ins[2])
        pos, y = ib.buffer_ptr(ins[3]), flat(ib, outs[0])

        def block(acc, b, u):
            col = int32(cols[b])
            if c == 1:
                part = span(u * size, r)
                acc[part] = acc[part] + values[span(b * size, r)] * broadcast(xs[col], r)
                return
            row_of_x = xs[span(col * c, c)]
            for i in range(r):
                part = span(u * size + i * c, c)
                acc[part] = acc[part] + values[span(b * size + i * c, c)] * row_of_x

        def emit(brow):
            first = ib.let("first", int32(pos[brow]))
            count = ib.let("count", int32(pos[brow + 1]) - first)
            acc = stack_buffer(ib, dtype, INTERLEAVE * size, "acc")
            with ib.for_range(0, count // INTERLEAVE, name="group") as g:
                for u in range(INTERLEAVE):
                    block(acc, first + g * INTERLEAVE + u, u)
            done = ib.let("done", count // INTERLEAVE * INTERLEAVE)
            with ib.for_range(0, count - done, name="rest") as k:
                block(acc, first + done + k, 0)
            whole = span(0, size)
            acc[whole] = tree_sum([acc[span(u * size, size)] for u in range(INTERLEAVE)])
            if c == 1:
                y[span(brow * r, r)] = acc[span(0, r)]
            else:
                for i in range(r):
                    y[brow * r + i] = tree_sum([acc[i * c + j] for j in range(c)])

        parallel_rows(ib, block_rows, "block_row", emit)
        return ib.get()

    return te.extern(
        (1, block_rows * r),
        [x, data, indices, indptr],
        body,
        dtype=dtype,
        name="bsr_matvec",
        tag="sparse_import.bsr_matvec",
    )


def _packed_row_matvec(
    x: te.Tensor, data: te.Tensor, indices: te.Tensor, indptr: te.Tensor, lanes: int
) -> te.Tensor:
    """:func:`bsr_matvec` for ``1 x c`` blocks, ``lanes // c`` consecutive blocks per vector.

    Their values are contiguous, so one vector load reads them; the ``c`` values of ``x`` each
    block needs are concatenated from ``lanes // c`` short loads. The blocks left over after
    whole vectors take one ``c``-wide operation each.
    """
    c = int(data.shape[2])
    per = lanes // c
    group = INTERLEAVE * per
    rows = int(indptr.shape[0]) - 1
    dtype = data.dtype
    concat = [tir.IntImm("int32", i) for i in range(lanes)]

    def body(ins, outs):
        ib = tir.ir_builder.create()
        xs, values, cols = flat(ib, ins[0]), flat(ib, ins[1]), ib.buffer_ptr(ins[2])
        pos, y = ib.buffer_ptr(ins[3]), flat(ib, outs[0])

        def vector(acc, b, u):
            parts = [xs[span(int32(cols[b + k]) * c, c)] for k in range(per)]
            part = span(u * lanes, lanes)
            acc[part] = acc[part] + values[span(b * c, lanes)] * tir.Shuffle(parts, concat)

        def emit(row):
            first = ib.let("first", int32(pos[row]))
            count = ib.let("count", int32(pos[row + 1]) - first)
            acc = stack_buffer(ib, dtype, INTERLEAVE * lanes, "acc")
            with ib.for_range(0, count // group, name="group") as g:
                for u in range(INTERLEAVE):
                    vector(acc, first + g * group + u * per, u)
            done = ib.let("done", count // group * group)
            with ib.for_range(0, (count - done) // per, name="vector") as k:
                vector(acc, first + done + k * per, 0)
            single = ib.let("single", count // per * per)
            with ib.for_range(0, count - single, name="rest") as k:
                b = first + single + k
                part = span(0, c)
                acc[part] = acc[part] + values[span(b * c, c)] * xs[span(int32(cols[b]) * c, c)]
            acc[span(0, lanes)] = tree_sum([acc[span(u * lanes, lanes)] for u in range(INTERLEAVE)])
            y[row] = fold_lanes(acc, lanes)

        parallel_rows(ib, rows, "row", emit)
        return ib.get()

    return te.extern(
        (1, rows),
        [x, data, indices, indptr],
        body,
        dtype=dtype,
        name="bsr_matvec",
        tag="sparse_import.bsr_matvec",
    )
