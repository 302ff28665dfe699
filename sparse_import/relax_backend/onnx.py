"""ONNX models with sparse weights -> Relax, through TVM's own ``relax.frontend.onnx``.

TVM's Relax ONNX frontend, like Relay's, fails on ``graph.sparse_initializer``. The ONNX adapter's
:func:`~sparse_import.adapters.onnx.model.prepare` turns every sparse weight into a graph input of
the same name and type (nothing of its dense size is allocated), so the frontend makes it a
parameter of ``main``; everything else the frontend embeds as constants.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sparse_import.adapters.onnx.inputs import declared_inputs
from sparse_import.adapters.onnx.model import load_model, prepare
from sparse_import.errors import UnsupportedModelError, tvm_error_line
from sparse_import.imported import DenseTensor, ImportedModel, SparseWeight
from sparse_import.inputs import check_input_dicts

__all__ = ["import_model"]


def import_model(
    model: Any,
    *,
    shape_dict: dict[str, Any] | None = None,
    dtype_dict: dict[str, str] | None = None,
    base_dir: str | Path | None = None,
) -> ImportedModel:
    """Convert an ONNX model with sparse weights into Relax, its sparse weights unbound.

    Parameters
    ----------
    model : path, bytes or onnx.ModelProto
        Not modified. External data is looked up next to the model file.
    shape_dict, dtype_dict : dict, optional
        Shapes and dtypes of the model's inputs, as for ``relax.frontend.onnx.from_onnx``.
        The sparse kernels need static shapes: give a dynamic batch here.
    base_dir : path, optional
        Directory holding external data when ``model`` is bytes or a ``ModelProto``.

    Returns
    -------
    ImportedModel
        ``framework="onnx"``; one :class:`SparseWeight` per sparse weight, a parameter of
        ``main`` named like the ONNX tensor.

    Raises
    ------
    SparseFormatError, UnsupportedSparsityError
        As :func:`sparse_import.adapters.onnx.import_model`.
    UnsupportedModelError
        Not an ONNX model, input dicts that do not fit its inputs, or a graph TVM's Relax
        frontend cannot convert: one line, with TVM's exception chained.

    Examples
    --------
    >>> import numpy as np
    >>> from onnx import TensorProto, helper, numpy_helper
    >>> from sparse_import.relax_backend.onnx import import_model
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
    """
    from tvm.relax.frontend.onnx import from_onnx

    proto, base, owned = load_model(model, base_dir)
    del model
    prepared = prepare(proto, base, owned=owned)
    check_input_dicts(
        shape_dict, dtype_dict, declared_inputs(prepared.input_types), prepared.weights
    )
    try:
        mod = from_onnx(
            prepared.model,
            shape_dict=shape_dict,
            dtype_dict=dtype_dict or "float32",
            sanitize_input_names=False,
        )
    except Exception as exc:  # TVM raises anything from KeyError to TVMError
        raise UnsupportedModelError(
            f"model: TVM's Relax ONNX frontend cannot convert it: {tvm_error_line(exc)}"
        ) from exc
    weights = tuple(
        SparseWeight(name, tensor, tensor, consumer)
        for name, (tensor, consumer) in prepared.weights.items()
    )
    constants = tuple(DenseTensor(*entry) for entry in prepared.constants)
    return ImportedModel(mod, {}, weights, "onnx", constants, prepared.budget)
