"""Keep a weight compressed although no sparse kernel reads it: expand it at run time.

``mode="sparse"`` puts compression first. A weight whose reads no sparse kernel computes (a
depthwise or strided convolution, an int8 product, an elementwise use) is stored as CSR arrays
of its row-major 2-D view ``(shape[0], prod(shape[1:]))`` and replaced in the module by
:func:`~.densify.densify` of those arrays, reshaped back: the library holds the stored values
and their coordinates only, and each run rebuilds the dense weight before its consumers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tvm
from tvm import relay

from sparse_import.planning.expansion import csr_arrays, csr_bytes, matrix_shape
from sparse_import.tensor import SparseTensor

from .densify import densify

__all__ = ["CompressedWeight", "apply", "csr_bytes", "matrix_shape"]


class CompressedWeight:
    """The CSR arrays of one weight and the expression that expands them.

    Parameters
    ----------
    tensor : SparseTensor
        The weight as its parameter holds it (rank >= 1).
    prefix : str
        Names the arrays ``{prefix}.data``, ``{prefix}.indices``, ``{prefix}.indptr``.
    """

    def __init__(self, tensor: SparseTensor, prefix: str) -> None:
        rows, cols = matrix_shape(tensor.shape)
        data, indices, indptr = csr_arrays(tensor)
        self.shape, self.dtype = tensor.shape, str(tensor.dtype)
        self.arrays = {
            f"{prefix}.data": data,
            f"{prefix}.indices": indices,
            f"{prefix}.indptr": indptr,
        }
        self.variables = [
            relay.var(name, shape=value.shape, dtype=str(value.dtype))
            for name, value in self.arrays.items()
        ]
        self.matrix_shape = (rows, cols)

    def expression(self) -> relay.Expr:
        """The dense weight, rebuilt at run time."""
        dense = densify(*self.variables, self.matrix_shape, self.dtype)
        if self.matrix_shape == self.shape:
            return dense
        return relay.reshape(dense, self.shape)


def apply(
    mod: tvm.IRModule, params: Mapping[str, Any], weights: Mapping[str, CompressedWeight]
) -> tuple[tvm.IRModule, dict[str, Any]]:
    """Replace each parameter named in ``weights`` by its run-time expansion.

    Returns the type-inferred module (the parameters replaced by their CSR arrays) and params
    without the weights' dense values, with their arrays.
    """
    if not weights:
        return mod, dict(params)
    func = mod["main"]
    replaced = {p: weights[p.name_hint] for p in func.params if p.name_hint in weights}
    body = relay.bind(func.body, {p: w.expression() for p, w in replaced.items()})
    new_params = [p for p in func.params if p not in replaced]
    for weight in replaced.values():
        new_params.extend(weight.variables)
    new_mod = tvm.IRModule(dict(mod.functions.items()), type_definitions=mod.type_definitions)
    new_mod["main"] = relay.Function(new_params, body, attrs=func.attrs)
    new_mod = relay.transform.InferType()(new_mod)
    out = {k: v for k, v in params.items() if k not in weights}
    for weight in replaced.values():
        out.update(weight.arrays)
    return new_mod, out
