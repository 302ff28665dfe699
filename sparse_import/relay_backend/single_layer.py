"""A one-layer Relay module ``y = nn.dense(x, W)`` for one sparse weight matrix.

This is what :func:`sparse_import.to_relay` builds from a SciPy sparse matrix or a
:class:`~sparse_import.SparseTensor`: ``W`` of shape ``(units, in)``, input ``x`` of shape
``(batch, in)``, output ``(batch, units)``. The result is an
:class:`~sparse_import.imported.ImportedModel` like the framework adapters return, so the same
backend lowers it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tvm
from tvm import relay

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
    """Wrap one weight matrix into the module ``y = nn.dense(x, W)``.

    Parameters
    ----------
    model : scipy.sparse matrix or array, or SparseTensor
        ``W`` of shape ``(units, in)``; its name (``SparseTensor.name``) names the parameter,
        ``"weight"`` when it has none (or is named like the input).
    shape_dict : mapping, optional
        ``{"x": (..., in)}``; default ``(1, in)``.
    dtype_dict : mapping, optional
        ``{"x": dtype}``; default the weight's dtype.

    Returns
    -------
    ImportedModel
        With ``framework="scipy"`` and the weight as its one, unbound, parameter.

    Raises
    ------
    UnsupportedModelError
        A tensor that is not 2-D, or input shapes/dtypes that do not fit it.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from sparse_import.relay_backend.single_layer import import_model
    >>> w = sp.random_array((8, 4), density=0.5, format="csr", rng=0, dtype=np.float32)
    >>> imported = import_model(w, shape_dict={"x": (2, 4)})
    >>> imported.mod["main"].checked_type.ret_type
    TensorType([2, 8], float32)
    """
    layer = one_layer(model, shape_dict, dtype_dict)
    tensor, param = layer.tensor, layer.param
    x = relay.var(INPUT, shape=layer.input_shape, dtype=layer.input_dtype)
    w = relay.var(param, shape=tensor.shape, dtype=str(tensor.dtype))
    y = relay.nn.dense(x, w, units=tensor.shape[0])
    mod = relay.transform.InferType()(tvm.IRModule.from_expr(relay.Function([x, w], y)))
    weight = SparseWeight(param, tensor, tensor, "dense")
    return ImportedModel(mod, {}, (weight,), "scipy")
