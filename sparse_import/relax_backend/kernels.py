"""``y = x @ W.T`` with ``W`` in CSR or BSR arrays, as TIR PrimFuncs for ``R.call_tir``.

The Relax twin of :mod:`sparse_import.kernels`: the same layouts, written in TVMScript because
TVM 0.27 has neither the ``tvm.tir.ir_builder`` nor the TE schedules those kernels are built
with. ``W: (rows, cols)`` is held as ``data`` (stored values, flattened: ``(nnz,)`` or
``(nblocks * r * c,)``), ``indices`` (column, or block column, per entry; int32) and ``indptr``
(``(rows // r + 1,)`` int32 positions). Every array has at least one element (an empty weight is
padded with one zero that ``indptr`` never reaches), and rows run in parallel.

- batch 1 (:func:`matvec`): ``x: (1, cols) -> y: (1, rows)``. CSR reads a row's stored values
  one vector of ``lanes`` at a time, ``x`` gathered at their columns, into ``lanes`` partial
  sums folded once per row; BSR multiplies each ``r x c`` block by ``x[col * c : + c]``.
- batch ``n`` (:func:`matmul`): ``x.T: (cols, n) -> y.T: (rows, n)``: each stored value is
  broadcast and multiplies one contiguous row of ``x.T`` (XNNPACK's layout), vectorized over
  the batch in tiles of at most ``TILE`` columns.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm.script import tirx as T

__all__ = ["TILE", "KernelShape", "matmul", "matvec"]

TILE = 32
"""Batch columns per vectorized tile of :func:`matmul` (two AVX-512 vectors of float32)."""


@dataclass(frozen=True)
class KernelShape:
    """The static shape of one sparse product.

    Attributes
    ----------
    rows, cols : int
        Shape of ``W``.
    block : tuple[int, int]
        ``(r, c)``: ``(1, 1)`` for CSR.
    stored : int
        Length of ``data`` (``nnz`` or ``nblocks * r * c``, at least 1).
    entries : int
        Length of ``indices`` (at least 1).
    dtype : str
    """

    rows: int
    cols: int
    block: tuple[int, int]
    stored: int
    entries: int
    dtype: str

    @property
    def block_rows(self) -> int:
        return self.rows // self.block[0]


def matvec(shape: KernelShape, lanes: int):
    """The batch-1 PrimFunc ``(x, data, indices, indptr, y)``; ``lanes`` values per vector."""
    if shape.block == (1, 1):
        return _csr_matvec(shape, lanes)
    return _bsr_matvec(shape)


def matmul(shape: KernelShape, batch: int):
    """The batch-``n`` PrimFunc ``(xt, data, indices, indptr, yt)`` for ``n = batch``."""
    tile = min(batch, TILE)
    tiles, rest = divmod(batch, tile)
    if shape.block == (1, 1):
        return _csr_matmul(shape, batch, tile, tiles, rest)
    return _bsr_matmul(shape, batch, tile, tiles, rest)


def _csr_matvec(shape: KernelShape, lanes: int):
    rows, cols, stored, entries, dt = (
        shape.rows,
        shape.cols,
        shape.stored,
        shape.entries,
        shape.dtype,
    )

    @T.prim_func(private=True)
    def csr_matvec(
        x: T.Buffer((1, cols), dt),
        data: T.Buffer((stored,), dt),
        indices: T.Buffer((entries,), "int32"),
        indptr: T.Buffer((rows + 1,), "int32"),
        y: T.Buffer((1, rows), dt),
    ):
        T.func_attr({"tir.noalias": True})
        for i in T.parallel(rows):
            acc = T.alloc_buffer((lanes,), dt, scope="local")
            total = T.alloc_buffer((1,), dt, scope="local")
            for v in T.vectorized(lanes):
                acc[v] = T.cast(0, dt)
            begin = indptr[i]
            count = indptr[i + 1] - begin
            for g in range(count // lanes):
                for v in T.vectorized(lanes):
                    acc[v] = (
                        acc[v] + data[begin + g * lanes + v] * x[0, indices[begin + g * lanes + v]]
                    )
            total[0] = T.cast(0, dt)
            for v in range(lanes):
                total[0] = total[0] + acc[v]
            for t in range(begin + count // lanes * lanes, begin + count):
                total[0] = total[0] + data[t] * x[0, indices[t]]
            y[0, i] = total[0]

    return csr_matvec


def _bsr_matvec(shape: KernelShape):
    rows, cols, stored, entries, dt = (
        shape.rows,
        shape.cols,
        shape.stored,
        shape.entries,
        shape.dtype,
    )
    r, c = shape.block
    size, block_rows = r * c, shape.block_rows

    @T.prim_func(private=True)
    def bsr_matvec(
        x: T.Buffer((1, cols), dt),
        data: T.Buffer((stored,), dt),
        indices: T.Buffer((entries,), "int32"),
        indptr: T.Buffer((block_rows + 1,), "int32"),
        y: T.Buffer((1, rows), dt),
    ):
        T.func_attr({"tir.noalias": True})
        for br in T.parallel(block_rows):
            acc = T.alloc_buffer((size,), dt, scope="local")
            for e in T.vectorized(size):
                acc[e] = T.cast(0, dt)
            for b in range(indptr[br], indptr[br + 1]):
                for e in T.vectorized(size):
                    acc[e] = acc[e] + data[b * size + e] * x[0, indices[b] * c + e % c]
            for i in range(r):
                y[0, br * r + i] = T.cast(0, dt)
                for j in range(c):
                    y[0, br * r + i] = y[0, br * r + i] + acc[i * c + j]

    return bsr_matvec


def _csr_matmul(shape: KernelShape, batch: int, tile: int, tiles: int, rest: int):
    rows, cols, stored, entries, dt = (
        shape.rows,
        shape.cols,
        shape.stored,
        shape.entries,
        shape.dtype,
    )
    last = tiles * tile

    @T.prim_func(private=True)
    def csr_matmul(
        xt: T.Buffer((cols, batch), dt),
        data: T.Buffer((stored,), dt),
        indices: T.Buffer((entries,), "int32"),
        indptr: T.Buffer((rows + 1,), "int32"),
        yt: T.Buffer((rows, batch), dt),
    ):
        T.func_attr({"tir.noalias": True})
        for i in T.parallel(rows):
            acc = T.alloc_buffer((tile,), dt, scope="local")
            for t in range(tiles):
                for k in T.vectorized(tile):
                    acc[k] = T.cast(0, dt)
                for p in range(indptr[i], indptr[i + 1]):
                    for k in T.vectorized(tile):
                        acc[k] = acc[k] + data[p] * xt[indices[p], t * tile + k]
                for k in T.vectorized(tile):
                    yt[i, t * tile + k] = acc[k]
            if rest > 0:
                for k in T.vectorized(rest):
                    acc[k] = T.cast(0, dt)
                for p in range(indptr[i], indptr[i + 1]):
                    for k in T.vectorized(rest):
                        acc[k] = acc[k] + data[p] * xt[indices[p], last + k]
                for k in T.vectorized(rest):
                    yt[i, last + k] = acc[k]

    return csr_matmul


def _bsr_matmul(shape: KernelShape, batch: int, tile: int, tiles: int, rest: int):
    rows, cols, stored, entries, dt = (
        shape.rows,
        shape.cols,
        shape.stored,
        shape.entries,
        shape.dtype,
    )
    r, c = shape.block
    size, block_rows = r * c, shape.block_rows
    last = tiles * tile

    @T.prim_func(private=True)
    def bsr_matmul(
        xt: T.Buffer((cols, batch), dt),
        data: T.Buffer((stored,), dt),
        indices: T.Buffer((entries,), "int32"),
        indptr: T.Buffer((block_rows + 1,), "int32"),
        yt: T.Buffer((rows, batch), dt),
    ):
        T.func_attr({"tir.noalias": True})
        for br in T.parallel(block_rows):
            acc = T.alloc_buffer((r * tile,), dt, scope="local")
            for t in range(tiles):
                for i in range(r):
                    for k in T.vectorized(tile):
                        acc[i * tile + k] = T.cast(0, dt)
                for b in range(indptr[br], indptr[br + 1]):
                    for i in T.unroll(r):
                        for j in T.unroll(c):
                            for k in T.vectorized(tile):
                                acc[i * tile + k] = (
                                    acc[i * tile + k]
                                    + data[b * size + i * c + j]
                                    * xt[indices[b] * c + j, t * tile + k]
                                )
                for i in range(r):
                    for k in T.vectorized(tile):
                        yt[br * r + i, t * tile + k] = acc[i * tile + k]
            if rest > 0:
                for i in range(r):
                    for k in T.vectorized(rest):
                        acc[i * tile + k] = T.cast(0, dt)
                for b in range(indptr[br], indptr[br + 1]):
                    for i in T.unroll(r):
                        for j in T.unroll(c):
                            for k in T.vectorized(rest):
                                acc[i * tile + k] = (
                                    acc[i * tile + k]
                                    + data[b * size + i * c + j] * xt[indices[b] * c + j, last + k]
                                )
                for i in range(r):
                    for k in T.vectorized(rest):
                        yt[br * r + i, last + k] = acc[i * tile + k]

    return bsr_matmul
