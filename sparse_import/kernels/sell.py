"""Sparse matrix times vector in sliced ELLPACK over column panels (``sell``), for AVX-512.

The batch-1 CSR kernel (:func:`~.matvec.csr_matvec`) gathers ``x`` one lane at a time: an index
extraction, a load and a lane insert per stored value, which bounds it at about 30 GB/s of
weight on Zen 4, far below the cache's bandwidth. Here ``x`` is read in panels of 32, 64 or
128 values held in two, four or eight vector registers, and a stored value's ``x`` comes from
two-register permutes (``vpermi2ps``, one per pair of registers, then selects on the index's
higher bits) that serve 16 values at once.

The layout (:mod:`sparse_import.planning.sell`): rows in slices of 16, one row per vector lane;
columns in panels; per slice and panel as many vectors as its longest row has values there.
Every vector costs a load of 16 values and their 16 one-byte columns, the permutes and a fused
multiply-add, with no per-row sum or loop exit; the padding costs bytes (at density 0.1 and
panels of 32, about twice the values, 5 bytes each with the column, against 6 per value for
CSR; wider panels pad less and permute more).
"""

from __future__ import annotations

from tvm import te, tir

from sparse_import.planning.sell import LANES, panel_of

from ._tir import Simd, flat, parallel_rows, span, stack_buffer

__all__ = ["sell_matvec", "supported"]

_PERMUTE = "llvm.x86.avx512.vpermi2var.ps.512"


def supported(simd: Simd, dtype: str) -> bool:
    """Whether the target has the kernel's instructions for ``dtype`` (AVX-512, float32)."""
    return simd.isa == "avx512" and dtype == "float32"


def _pick(tables: list[tir.PrimExpr], index: tir.PrimExpr) -> tir.PrimExpr:
    """``tables`` (each 16 lanes, ``32 * 2**k`` values in all) read at ``index`` per lane: one
    two-register permute per pair of tables (it looks at the index's low 5 bits), then a select
    on each higher bit."""
    picked = [
        tir.call_llvm_pure_intrin("float32x16", _PERMUTE, tir.const(0, "uint32"), low, index, high)
        for low, high in zip(tables[::2], tables[1::2], strict=True)
    ]
    bit = 32
    while len(picked) > 1:
        test = tir.bitwise_and(index, tir.Broadcast(tir.const(bit, "int32"), LANES))
        chosen = test != tir.Broadcast(tir.const(0, "int32"), LANES)
        picked = [tir.Select(chosen, b, a) for a, b in zip(picked[::2], picked[1::2], strict=True)]
        bit *= 2
    return picked[0]


def sell_matvec(
    x: te.Tensor, values: te.Tensor, columns: te.Tensor, offsets: te.Tensor, *, rows: int
) -> te.Tensor:
    """``y = x @ W.T`` for ``x: (1, cols)`` float32 and ``W`` in the ``sell`` arrays.

    The panel width is the one whose panel count matches ``offsets``
    (:func:`~sparse_import.planning.sell.panel_of`). Parallel over slices; the last panel's
    ``x`` (past ``cols``: zeros) is copied to the stack, and the last slice's rows (past
    ``rows``: not stored) are written lane by lane.

    Returns
    -------
    te.Tensor
        ``(1, rows)``.
    """
    cols = int(x.shape[1])
    panel = panel_of(rows, cols, int(offsets.shape[0]))
    slices, panels = -(-rows // LANES), -(-cols // panel)
    whole = cols // panel  # panels whose x is all inside ``x``
    count = panel // LANES  # registers of x per panel

    def body(ins, outs):
        ib = tir.ir_builder.create()
        xs, vals, cols_of = flat(ib, ins[0]), ib.buffer_ptr(ins[1]), ib.buffer_ptr(ins[2])
        off, y = ib.buffer_ptr(ins[3]), flat(ib, outs[0])

        def panel_product(acc, s, p, tables):
            first = ib.let("first", off[s * panels + p])
            with ib.for_range(0, off[s * panels + p + 1] - first, name="k") as k:
                at = (first + k) * LANES
                picked = _pick(tables, cols_of[span(at, LANES)].astype("int32x16"))
                acc[span(0, LANES)] = acc[span(0, LANES)] + vals[span(at, LANES)] * picked

        def emit(s):
            acc = stack_buffer(ib, "float32", LANES, "acc")
            with ib.for_range(0, whole, name="panel") as p:
                tables = [xs[span(p * panel + t * LANES, LANES)] for t in range(count)]
                panel_product(acc, s, p, tables)
            if whole < panels:  # the last panel reaches past x: copied, zeros after it
                tail = stack_buffer(ib, "float32", panel, "tail")
                for i in range(cols - whole * panel):
                    tail[i] = xs[whole * panel + i]
                tables = [tail[span(t * LANES, LANES)] for t in range(count)]
                panel_product(acc, s, whole, tables)
            full = rows // LANES
            if full == slices:
                y[span(s * LANES, LANES)] = acc[span(0, LANES)]
                return
            with ib.if_scope(s < full):
                y[span(s * LANES, LANES)] = acc[span(0, LANES)]
            with ib.else_scope():
                for lane in range(rows - full * LANES):
                    y[full * LANES + lane] = acc[lane]

        parallel_rows(ib, slices, "slice", emit)
        return ib.get()

    return te.extern(
        (1, rows),
        [x, values, columns, offsets],
        body,
        dtype="float32",
        name="sell_matvec",
        tag="sparse_import.sell_matvec",
    )
