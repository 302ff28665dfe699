"""Rewrite the sparse reads of a Relax ``main`` into ``R.call_tir`` of the kernels.

Each ``lv = R.matmul(x, view(W))`` that planning lowered to CSR or BSR becomes, bound to the same
variable ``lv``: ``x`` reshaped to ``(batch, cols)``, then the batch-1 kernel, or ``x``
transposed, the batch-``n`` kernel and its result transposed back, reshaped to ``lv``'s shape.
The compressed arrays are constants of the module; the kernels are PrimFuncs added to it (one
per distinct shape). The view bindings of a compressed weight and its parameter go away.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import tvm
from tvm import relax

from . import kernels
from .kernels import KernelShape
from .sites import Site

__all__ = ["Operand", "SparseCall", "rewrite_main"]


@dataclass(frozen=True, eq=False)
class Operand:
    """A weight matrix's compressed arrays and their kernel shape.

    Attributes
    ----------
    shape : KernelShape
    data, indices, indptr : numpy.ndarray
        ``(stored,)`` values, ``(entries,)`` int32 columns, int32 positions.
    """

    shape: KernelShape
    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray

    @cached_property
    def constants(self) -> tuple[Any, Any, Any]:
        """The three arrays as Relax constants, made once (shared by every read)."""
        return tuple(relax.const(a, str(a.dtype)) for a in (self.data, self.indices, self.indptr))

    @classmethod
    def from_scipy(cls, matrix: Any) -> Operand:
        """From a SciPy CSR or BSR array; empty arrays padded with one element."""
        block = (1, 1) if matrix.format == "csr" else tuple(int(b) for b in matrix.blocksize)
        data = np.ascontiguousarray(matrix.data).reshape(-1)
        indices = matrix.indices.astype(np.int32)
        if data.size == 0:  # no stored value: indptr is all zeros, the pad is never read
            data, indices = np.zeros(1, data.dtype), np.zeros(1, np.int32)
        rows, cols = (int(d) for d in matrix.shape)
        shape = KernelShape(rows, cols, block, data.size, indices.size, str(data.dtype))
        return cls(shape, data, indices, matrix.indptr.astype(np.int32))


@dataclass(frozen=True, eq=False)
class SparseCall:
    """One matmul binding to replace: its site and the operand that computes it."""

    site: Site
    operand: Operand


class _Emitter:
    """New bindings, with variables of the kind their block takes."""

    def __init__(self, dataflow: bool) -> None:
        self.dataflow = dataflow
        self.bindings: list[Any] = []

    def bind(self, value: Any, shape: tuple[int, ...], dtype: str, name: str) -> Any:
        kind = relax.DataflowVar if self.dataflow else relax.Var
        var = kind(name, relax.TensorType(shape, dtype))
        self.bindings.append(relax.VarBinding(var, value))
        return var


class _Kernels:
    """The module's kernel PrimFuncs, one GlobalVar per distinct signature."""

    def __init__(self, builder: relax.BlockBuilder, lanes: Mapping[str, int]) -> None:
        self.builder, self.lanes, self.found = builder, lanes, {}

    def get(self, shape: KernelShape, batch: int) -> Any:
        key = (shape, batch)
        if key not in self.found:
            if batch == 1:
                func = kernels.matvec(shape, self.lanes[shape.dtype])
                name = "csr_matvec" if shape.block == (1, 1) else "bsr_matvec"
            else:
                func = kernels.matmul(shape, batch)
                name = "csr_matmul" if shape.block == (1, 1) else "bsr_matmul"
            self.found[key] = self.builder.add_func(func, name)
        return self.found[key]


def _replace(binding: Any, call: SparseCall, emit: _Emitter, funcs: _Kernels) -> None:
    x = binding.value.args[0]
    shape = tuple(int(d) for d in call.site.data_shape)
    dtype = call.operand.shape.dtype
    cols, rows = shape[-1], call.operand.shape.rows
    batch = math.prod(shape[:-1])
    name = binding.var.name
    if len(shape) != 2:
        x = emit.bind(relax.op.reshape(x, (batch, cols)), (batch, cols), dtype, f"{name}_x")
    op = call.operand
    arrays = list(op.constants)
    func = funcs.get(op.shape, batch)
    if batch == 1:
        value = relax.call_tir(func, [x, *arrays], relax.TensorType((1, rows), dtype))
    else:
        xt = emit.bind(relax.op.permute_dims(x, [1, 0]), (cols, batch), dtype, f"{name}_xt")
        out = relax.TensorType((rows, batch), dtype)
        yt = emit.bind(relax.call_tir(func, [xt, *arrays], out), (rows, batch), dtype, f"{name}_yt")
        value = relax.op.permute_dims(yt, [1, 0])
    if len(shape) != 2:
        y = emit.bind(value, (batch, rows), dtype, f"{name}_y")
        value = relax.op.reshape(y, (*shape[:-1], rows))
    emit.bindings.append(relax.VarBinding(binding.var, value))


def rewrite_main(
    mod: tvm.IRModule,
    calls: Mapping[Any, SparseCall],
    dropped: set[str],
    lanes: Mapping[str, int],
) -> tvm.IRModule:
    """``mod`` with the bindings of ``calls`` (keyed by their variable) replaced, the view
    bindings of the ``dropped`` parameters and those parameters removed."""
    func = mod["main"]
    builder = relax.BlockBuilder(mod)
    funcs = _Kernels(builder, lanes)
    dead = {c.site.use.chain[i].var for c in calls.values() for i in range(len(c.site.use.chain))}
    blocks = []
    for block in func.body.blocks:
        dataflow = isinstance(block, relax.DataflowBlock)
        emit = _Emitter(dataflow)
        for binding in block.bindings:
            if binding.var in dead:
                continue
            call = calls.get(binding.var)
            if call is None:
                emit.bindings.append(binding)
            else:
                _replace(binding, call, emit, funcs)
        kind = relax.DataflowBlock if dataflow else relax.BindingBlock
        blocks.append(kind(emit.bindings))
    params = [p for p in func.params if p.name not in dropped]
    body = relax.SeqExpr(blocks, func.body.body)
    new = relax.Function(params, body, func.ret_ty, func.is_pure, func.attrs)
    out = builder.get()
    out["main"] = new
    return relax.transform.Normalize()(out)
