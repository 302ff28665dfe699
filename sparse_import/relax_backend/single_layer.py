"""A one-layer Relax module ``y = x @ W.T`` for one sparse weight matrix.

What :func:`~sparse_import.relax_backend.api.to_relax` builds from a SciPy sparse matrix or a
:class:`~sparse_import.SparseTensor`: ``W`` of shape ``(units, in)``, input ``x`` of shape
``(..., in)``, output ``(..., units)``, written as TVM's Relax frontends write a dense layer
(``R.matmul(x, R.permute_dims(W))``). The result is an
:class:`~sparse_import.imported.ImportedModel` with ``W`` an unbound parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tvm
from tvm import relax

from sparse_import.adapters.scipy import from_scipy
from sparse_import.errors import UnsupportedModelError, tensor_label
from sparse_import.imported import ImportedModel, SparseWeight
from sparse_import.tensor import SparseTensor

__all__ = ["INPUT", "WEIGHT", "import_model"]

INPUT = "x"
WEIGHT = "weight"


def _input_shape(shape_dict: Mapping[str, Any] | None, tensor: SparseTensor) -> tuple[int, ...]:
    shape_dict = dict(shape_dict or {})
    unknown = sorted(set(shape_dict) - {INPUT})
    if unknown:
        raise UnsupportedModelError(
            f"shape_dict names {unknown}; the one-layer module has the single input {INPUT!r}"
        )
    shape = tuple(int(d) for d in shape_dict.get(INPUT, (1, tensor.shape[1])))
    if len(shape) < 2 or shape[-1] != tensor.shape[1] or min(shape) < 1:
        raise UnsupportedModelError(
            f"input {INPUT!r} of shape {shape} does not fit {tensor_label(tensor.name)} of shape "
            f"{tensor.shape}: expected (..., {tensor.shape[1]})"
        )
    return shape


def import_model(
    model: Any,
    *,
    shape_dict: Mapping[str, Any] | None = None,
    dtype_dict: Mapping[str, str] | None = None,
) -> ImportedModel:
    """Wrap one weight matrix into the Relax module ``y = x @ W.T``.

    Parameters
    ----------
    model : scipy.sparse matrix or array, or SparseTensor
        ``W`` of shape ``(units, in)``; its name names the parameter (``"weight"`` when it has
        none or is named like the input).
    shape_dict : mapping, optional
        ``{"x": (..., in)}``; default ``(1, in)``.
    dtype_dict : mapping, optional
        ``{"x": dtype}``; default the weight's dtype.

    Returns
    -------
    ImportedModel
        ``framework="scipy"``, the weight its one unbound parameter.

    Raises
    ------
    UnsupportedModelError
        A tensor that is not 2-D, or input shapes/dtypes that do not fit it.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from sparse_import.relax_backend.single_layer import import_model
    >>> w = sp.random_array((8, 4), density=0.5, format="csr", rng=0, dtype=np.float32)
    >>> imported = import_model(w, shape_dict={"x": (2, 4)})
    >>> [p.name for p in imported.mod["main"].params]
    ['x', 'weight']
    """
    tensor = model if isinstance(model, SparseTensor) else from_scipy(model, name=None)
    if tensor.rank != 2:
        raise UnsupportedModelError(
            f"{tensor_label(tensor.name)} has shape {tensor.shape}; a one-layer module needs a "
            "2-D weight (units, in)"
        )
    dtype_dict = dict(dtype_dict or {})
    unknown = sorted(set(dtype_dict) - {INPUT})
    if unknown:
        raise UnsupportedModelError(
            f"dtype_dict names {unknown}; the one-layer module has the single input {INPUT!r}"
        )
    param = tensor.name if tensor.name and tensor.name != INPUT else WEIGHT
    shape = _input_shape(shape_dict, tensor)
    x = relax.Var(INPUT, relax.TensorType(shape, dtype_dict.get(INPUT, str(tensor.dtype))))
    w = relax.Var(param, relax.TensorType(tensor.shape, str(tensor.dtype)))
    builder = relax.BlockBuilder()
    with builder.function("main", [x, w], {"num_input": 1}):
        with builder.dataflow():
            wt = builder.emit(relax.op.permute_dims(w, [1, 0]))
            y = builder.emit_output(relax.op.matmul(x, wt))
        builder.emit_func_output(y)
    mod: tvm.IRModule = builder.get()
    weight = SparseWeight(param, tensor, tensor, "dense")
    return ImportedModel(mod, {}, (weight,), "scipy")
