"""Expand a CSR matrix into a dense buffer at run time: a TE extern scatter.

The kernel walks the rows in parallel: it zeroes each row of the ``(rows, cols)`` buffer, then
writes the row's stored values at their column coordinates. Coordinates are any integer dtype
(``uint16`` where they fit).

Examples
--------
>>> from tvm import te
>>> data = te.placeholder((3,), "float32")
>>> indices = te.placeholder((3,), "uint16")
>>> indptr = te.placeholder((3,), "int32")
>>> densify_csr(data, indices, indptr, (2, 4)).shape
[2, 4]
"""

from __future__ import annotations

import tvm
from tvm import te

__all__ = ["densify_csr"]


def _scatter_ir(data, indices, indptr, out, rows: int, cols: int):
    ib = tvm.tir.ir_builder.create()
    values = ib.buffer_ptr(data)
    coords = ib.buffer_ptr(indices)
    positions = ib.buffer_ptr(indptr)
    dense = ib.buffer_ptr(out)
    with ib.for_range(0, rows, "r", kind="parallel") as r:
        row = r.astype("int64") * cols
        with ib.for_range(0, cols, "c", dtype="int64") as c:
            dense[row + c] = tvm.tir.const(0, out.dtype)
        start = positions[r].astype("int64")
        stop = positions[r + 1].astype("int64")
        with ib.for_range(0, stop - start, "j", dtype="int64") as j:
            column = coords[start + j].astype("int64")
            dense[r.astype("int64") * cols + column] = values[start + j]
    return ib.get()


def densify_csr(
    data: te.Tensor, indices: te.Tensor, indptr: te.Tensor, shape: tuple[int, int]
) -> te.Tensor:
    """Dense ``(rows, cols)`` tensor of the CSR matrix ``(data, indices, indptr)``.

    Parameters
    ----------
    data : te.Tensor
        Stored values, ``(nnz,)``.
    indices : te.Tensor
        Column coordinate of each stored value, ``(nnz,)``, any integer dtype.
    indptr : te.Tensor
        Row positions, ``(rows + 1,)``.
    shape : tuple of int
        ``(rows, cols)`` of the result.

    Returns
    -------
    te.Tensor
        ``(rows, cols)``, dtype of ``data``; zero where nothing is stored.
    """
    rows, cols = (int(d) for d in shape)
    return te.extern(
        [(rows, cols)],
        [data, indices, indptr],
        lambda ins, outs: _scatter_ir(*ins, outs[0], rows, cols),
        dtype=data.dtype,
        name="densify_csr",
    )
