"""Classify the reads of a sparse weight: which a kernel of :mod:`.kernels` computes, and why not.

A read becomes a :class:`Site` when its consumer is ``relax.matmul(x, V)`` with ``V`` the weight
through its view chain, 2-D, ``x`` of static shape and rank >= 2, float32 or float64 like the
weight: the product ``y = x @ W.T`` with ``W = V.T``. Every other read yields the reason it keeps
the weight dense.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparse_import.planning.product import Product
from sparse_import.tensor import SparseTensor

from .uses import Use, op_name, static_shape

__all__ = ["SPARSE_DTYPES", "Site", "classify"]

SPARSE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True, eq=False, kw_only=True)
class Site(Product):
    """A read of a weight that a sparse kernel computes: the :class:`Product` planning prices,
    plus ``use``, the path from the weight's Relax parameter to its ``matmul``."""

    use: Use


def _view(tensor: SparseTensor, use: Use) -> SparseTensor | str:
    """Apply the view bindings of ``use.chain`` to the IR tensor, or say why it cannot be."""
    for binding in use.chain:
        call, name = binding.value, op_name(binding.value)
        if name == "relax.astype":
            dtype = str(call.attrs.dtype)
            try:
                kind = np.dtype(dtype).kind
            except TypeError:
                kind = "?"
            if kind not in "biuf":
                return f"astype to {dtype}, a dtype the sparse IR cannot hold as NumPy numbers"
            tensor = tensor.astype(dtype)
        elif name == "relax.permute_dims":
            axes = call.attrs.axes
            tensor = tensor.transpose(None if axes is None else tuple(int(a) for a in axes))
        else:
            shape = static_shape(binding.var)
            if shape is None or None in shape:
                return f"{name} to a dynamic shape {shape}"
            tensor = tensor.reshape(shape)
    return tensor


def _dtype_reason(data_dtype: str, weight: SparseTensor, out_dtype: str) -> str | None:
    data = np.dtype(data_dtype)
    if weight.dtype not in SPARSE_DTYPES or data != weight.dtype:
        return (
            f"{weight.dtype} weight with {data} input: the sparse kernels take float32 or "
            "float64 weights and inputs of the same dtype"
        )
    if out_dtype not in ("", "void", str(data)):
        return f"output dtype {out_dtype} differs from the input dtype {data}"
    return None


def classify(use: Use, tensor: SparseTensor) -> Site | str:
    """A :class:`Site` for a read the sparse kernels compute, else the reason it stays dense.

    Parameters
    ----------
    use : Use
        From :func:`~sparse_import.relax_backend.uses.find_uses`.
    tensor : SparseTensor
        The weight as the parameter holds it (``SparseWeight.tensor``).

    Returns
    -------
    Site | str
    """
    name = use.op_name
    if use.consumer is None:
        return "is the result of the Relax function, not read by a matrix product"
    if op_name(use.consumer.value) is None:
        return f"read by a {name} expression, not by a matrix product"
    if name != "relax.matmul" or use.arg != 1:
        return f"read by {name} (argument {use.arg}), which has no sparse kernel in Relax"
    weight = _view(tensor, use)
    if isinstance(weight, str):
        return weight
    if weight.rank != 2:
        return f"relax.matmul with a {weight.rank}-D weight: the sparse kernels take a matrix"
    call = use.consumer.value
    data = call.args[0]
    shape = static_shape(data)
    if shape is None or len(shape) < 2 or None in shape:
        return (
            f"relax.matmul input of shape {shape}: the sparse kernels need a static shape of "
            "rank >= 2 (give the input shapes in shape_dict)"
        )
    out_dtype = call.attrs.out_dtype
    reason = _dtype_reason(str(data.ty.dtype), weight, "" if out_dtype is None else str(out_dtype))
    if reason:
        return reason
    return Site(use=use, matrix=weight.transpose(), data_shape=shape)
