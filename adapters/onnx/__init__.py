"""ONNX adapter: ``SparseTensorProto`` <-> the IR, and ``.onnx`` models with sparse weights ->
Relay through TVM's own ONNX frontend.

ONNX is imported on first use (:mod:`._proto`), TVM inside :func:`import_model`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sparse_import.errors import UnsupportedModelError, tvm_error_line
from sparse_import.imported import DenseTensor, ImportedModel, SparseWeight
from sparse_import.inputs import check_input_dicts

from .inputs import declared_inputs
from .model import load_model, prepare
from .sparse import from_onnx, to_onnx

__all__ = ["from_onnx", "import_model", "to_onnx"]


def import_model(
    model: Any,
    *,
    shape_dict: dict[str, Any] | None = None,
    dtype_dict: dict[str, str] | None = None,
    base_dir: str | Path | None = None,
) -> ImportedModel:
    """Convert an ONNX model with sparse weights into Relay, its sparse weights unbound.

    Every sparse tensor is read into the IR and validated; sparse weights reach TVM as graph
    inputs, so they become Relay parameters named like the ONNX tensor, without values: nothing
    of a weight's dense size is allocated here. TVM's stock frontend (``freeze_params=True``)
    converts the rest of the graph; sparse tensors it needs as constants (shapes, subgraph
    tensors) are densified into it and listed in ``constants``.

    Parameters
    ----------
    model : path, bytes or onnx.ModelProto
        Not modified. External data is looked up next to the model file.
    shape_dict, dtype_dict : dict, optional
        Shapes and dtypes of the model's inputs, as for ``relay.frontend.from_onnx``.
    base_dir : path, optional
        Directory holding external data when ``model`` is bytes or a ``ModelProto``.

    Returns
    -------
    ImportedModel
        ``framework="onnx"``; one :class:`SparseWeight` per sparse weight that became a Relay
        parameter (``consumer`` is the ONNX op type reading it, e.g. ``"MatMul"``).

    Raises
    ------
    SparseFormatError
        A sparse tensor breaking the ONNX checker's rules (see :func:`from_onnx`).
    UnsupportedModelError
        Not an ONNX model, unreadable external data, subgraphs nested too deep, a
        ``shape_dict``/``dtype_dict`` that names something other than an input or contradicts
        its declared type (rank, a fixed dimension, a dimension < 1, the element type), or a
        graph TVM's frontend cannot convert (unsupported operators, for one): one line, with
        TVM's exception chained.
    UnsupportedSparsityError
        Sparse graph inputs, or sparse attributes other than ``Constant``'s ``sparse_value``.

    Examples
    --------
    >>> import numpy as np
    >>> from onnx import TensorProto, helper, numpy_helper
    >>> from sparse_import.adapters.onnx import import_model
    >>> w = helper.make_sparse_tensor(
    ...     numpy_helper.from_array(np.array([1.0, 2.0], np.float32), "w"),
    ...     numpy_helper.from_array(np.array([[0, 0], [2, 1]], np.int64)), [3, 2])
    >>> graph = helper.make_graph(
    ...     [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
    ...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
    ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
    ...     sparse_initializer=[w])
    >>> imported = import_model(helper.make_model(graph))
    >>> [(w.param, w.consumer, w.tensor.nnz) for w in imported.weights]
    [('w', 'MatMul', 2)]
    >>> "w" in imported.params  # unbound: the backend densifies it only if it lowers it dense
    False
    """
    from tvm import relay

    proto, base, owned = load_model(model, base_dir)
    del model  # file bytes, once parsed, are not needed (the caller keeps no reference)
    prepared = prepare(proto, base, owned=owned)
    check_input_dicts(
        shape_dict, dtype_dict, declared_inputs(prepared.input_types), prepared.weights
    )
    try:
        mod, params = relay.frontend.from_onnx(
            prepared.model, shape=shape_dict, dtype=dtype_dict or "float32", freeze_params=True
        )
    except Exception as exc:  # TVM raises anything from KeyError to TVMError
        raise UnsupportedModelError(
            f"model: TVM's ONNX frontend cannot convert it: {tvm_error_line(exc)}"
        ) from exc
    weights = tuple(
        SparseWeight(name, tensor, tensor, consumer)
        for name, (tensor, consumer) in prepared.weights.items()
    )
    constants = tuple(DenseTensor(*entry) for entry in prepared.constants)
    return ImportedModel(mod, dict(params), weights, "onnx", constants, prepared.budget)
