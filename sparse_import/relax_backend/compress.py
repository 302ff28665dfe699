"""Keep a weight compressed although no sparse kernel reads it: expand it at run time, in Relax.

``mode="sparse"`` puts compression first. A weight whose reads no kernel of :mod:`.kernels`
computes (a convolution, an integer product, an elementwise read) is stored as CSR arrays of its
row-major 2-D view ``(shape[0], prod(shape[1:]))`` (``(1, n)`` for a vector), constants of the
module, and its parameter is replaced by a call of a private Relax function that expands them:
``R.call_tir`` of a PrimFunc that zeroes the dense buffer and scatters the stored values, rows in
parallel, then reshapes the matrix back. The library holds the stored values and their
coordinates only; each run rebuilds the dense weight before its consumers.

The expansion sits in its own Relax function so that no pass sees a ``call_tir`` of constants:
``relax.transform.FoldConstant`` (in TVM's ``zero`` and CPU pipelines) would evaluate it at
compile time and embed the dense weight again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import tvm
from tvm import relax
from tvm.script import tirx as T

from sparse_import.planning.expansion import csr_arrays, csr_bytes, matrix_shape
from sparse_import.tensor import SparseTensor

__all__ = ["CompressedWeight", "ExpandShape", "apply", "csr_bytes", "matrix_shape"]


@dataclass(frozen=True)
class ExpandShape:
    """The static signature of one expansion: matrix ``(rows, cols)``, ``stored`` values of
    ``dtype``, column indices of ``index`` dtype, positions of ``pointer`` dtype."""

    rows: int
    cols: int
    stored: int
    dtype: str
    index: str
    pointer: str


def densify_csr(shape: ExpandShape):
    """The PrimFunc ``(data, indices, indptr, out)``: ``out`` zeroed, then each row's stored
    values scattered to their columns; rows in parallel."""
    rows, cols, stored = shape.rows, shape.cols, shape.stored
    dt, it, pt = shape.dtype, shape.index, shape.pointer

    @T.prim_func(private=True)
    def densify(
        data: T.Buffer((stored,), dt),
        indices: T.Buffer((stored,), it),
        indptr: T.Buffer((rows + 1,), pt),
        out: T.Buffer((rows, cols), dt),
    ):
        T.func_attr({"tir.noalias": True})
        for i in T.parallel(rows):
            for j in range(cols):
                out[i, j] = T.cast(0, dt)
            for p in range(indptr[i], indptr[i + 1]):
                out[i, T.cast(indices[p], pt)] = data[p]

    return densify


class CompressedWeight:
    """The CSR arrays of one weight, built from the IR (never from a dense array).

    Parameters
    ----------
    tensor : SparseTensor
        The weight as its parameter holds it (rank >= 1, a NumPy number dtype).
    """

    def __init__(self, tensor: SparseTensor) -> None:
        rows, cols = matrix_shape(tensor.shape)
        self.shape, self.dtype = tensor.shape, str(tensor.dtype)
        self.data, self.indices, self.indptr = csr_arrays(tensor)
        self.signature = ExpandShape(
            rows, cols, self.data.size, self.dtype, str(self.indices.dtype), str(self.indptr.dtype)
        )

    @cached_property
    def constants(self) -> tuple[Any, Any, Any]:
        """``data``, ``indices``, ``indptr`` as Relax constants, made once."""
        return tuple(relax.const(a, str(a.dtype)) for a in (self.data, self.indices, self.indptr))


def _expander(builder: relax.BlockBuilder, shape: ExpandShape, out: tuple[int, ...]) -> Any:
    """A private Relax function ``(data, indices, indptr) -> weight of shape out``."""
    kernel = builder.add_func(densify_csr(shape), "densify_csr")
    params = [
        relax.Var("data", relax.TensorType((shape.stored,), shape.dtype)),
        relax.Var("indices", relax.TensorType((shape.stored,), shape.index)),
        relax.Var("indptr", relax.TensorType((shape.rows + 1,), shape.pointer)),
    ]
    inner = relax.BlockBuilder()
    with inner.function("expand", params, private=True):
        with inner.dataflow():
            matrix_type = relax.TensorType((shape.rows, shape.cols), shape.dtype)
            value = inner.emit(relax.call_tir(kernel, params, matrix_type))
            if out != (shape.rows, shape.cols):
                value = inner.emit(relax.op.reshape(value, out))
            value = inner.emit_output(value)
        inner.emit_func_output(value)
    return builder.add_func(inner.get()["expand"], "expand_csr")


def apply(mod: tvm.IRModule, weights: Mapping[str, CompressedWeight]) -> tvm.IRModule:
    """Replace each parameter of ``main`` named in ``weights`` by its run-time expansion.

    The expansions are bound first, in a block of their own; every read of the parameter reads
    the expanded weight. Expansions of one signature share their functions.
    """
    if not weights:
        return mod
    func = mod["main"]
    builder = relax.BlockBuilder(mod)
    funcs: dict[tuple[ExpandShape, tuple[int, ...]], Any] = {}
    bindings, replaced = [], {}
    for param in func.params:
        weight = weights.get(param.name)
        if weight is None:
            continue
        key = (weight.signature, weight.shape)
        if key not in funcs:
            funcs[key] = _expander(builder, *key)
        var = relax.Var(param.name, relax.TensorType(weight.shape, weight.dtype))
        bindings.append(relax.VarBinding(var, relax.Call(funcs[key], list(weight.constants))))
        replaced[param] = var
    out = builder.get()
    body = func.bind_params(replaced).body
    params = [p for p in func.params if p not in replaced]
    body = relax.SeqExpr([relax.BindingBlock(bindings), *body.blocks], body.body)
    out["main"] = relax.Function(params, body, func.ret_ty, func.is_pure, func.attrs)
    return relax.transform.Normalize()(out)
