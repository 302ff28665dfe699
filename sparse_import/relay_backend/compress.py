"""Keep a weight compressed although no sparse kernel reads it: expand it at run time.

``mode="sparse"`` puts compression first. A weight whose reads no sparse kernel computes (a
depthwise or strided convolution, an int8 product, an elementwise use) is stored as CSR arrays
of its row-major 2-D view ``(shape[0], prod(shape[1:]))`` and replaced in the module by
:func:`~.densify.densify` of those arrays, reshaped back: the library holds the stored values
and their coordinates only, and each run rebuilds the dense weight before its consumers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp
import tvm
from tvm import relay

from sparse_import.tensor import SparseTensor

from .densify import densify

__all__ = ["CompressedWeight", "apply", "csr_bytes", "matrix_shape"]

_UINT16_COLUMNS = np.iinfo(np.uint16).max + 1


def matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """The row-major 2-D view a weight of ``shape`` is stored as."""
    if len(shape) == 1:
        return (1, shape[0])
    return (shape[0], math.prod(shape[1:]))


def _index_dtype(cols: int) -> np.dtype:
    return np.dtype(np.uint16 if cols <= _UINT16_COLUMNS else np.int32)


def csr_bytes(tensor: SparseTensor) -> int:
    """Bytes of the CSR arrays :class:`CompressedWeight` stores for ``tensor``."""
    rows, cols = matrix_shape(tensor.shape)
    index = _index_dtype(cols).itemsize
    pointer = 4 if tensor.nnz < 2**31 else 8
    return tensor.nnz * (tensor.dtype.itemsize + index) + (rows + 1) * pointer


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
        # the stored values only: a quantization axis means nothing in the 2-D view
        plain = dataclasses.replace(tensor, quantization=None)
        if plain.dtype == np.float16:  # SciPy holds no float16; the round trip is exact
            plain = plain.astype(np.float32)
        matrix = sp.csr_array(plain.reshape((rows, cols)).to_scipy("csr"))
        pointer = np.int32 if matrix.nnz < 2**31 else np.int64
        self.shape, self.dtype = tensor.shape, str(tensor.dtype)
        self.arrays = {
            f"{prefix}.data": np.ascontiguousarray(matrix.data, dtype=tensor.dtype),
            f"{prefix}.indices": np.ascontiguousarray(matrix.indices, dtype=_index_dtype(cols)),
            f"{prefix}.indptr": np.ascontiguousarray(matrix.indptr, dtype=pointer),
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
