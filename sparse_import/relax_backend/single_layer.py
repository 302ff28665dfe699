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

from sparse_import.adapters.scipy import ONE_LAYER_INPUT, ONE_LAYER_WEIGHT, one_layer
from sparse_import.imported import ImportedModel, SparseWeight

__all__ = ["INPUT", "WEIGHT", "import_model"]

INPUT = ONE_LAYER_INPUT
WEIGHT = ONE_LAYER_WEIGHT


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
    layer = one_layer(model, shape_dict, dtype_dict)
    tensor, param = layer.tensor, layer.param
    x = relax.Var(INPUT, relax.TensorType(layer.input_shape, layer.input_dtype))
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
