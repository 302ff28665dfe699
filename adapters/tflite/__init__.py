"""TFLite adapter: SparsityParameters and .tflite models -> the IR and Relay.

- :func:`from_tflite_params` / :func:`to_tflite_params`: raw ``SparsityParameters`` <-> IR.
- :func:`load_model`: a checked ``tflite.Model`` from a path, bytes or a parsed model.
- :func:`read_sparse_tensors`: every sparse tensor of a model, in the IR.
- :func:`import_model`: the model converted by TVM's TFLite frontend, sparse weights listed.

TVM is imported only by :func:`import_model`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sparse_import.imported import ImportedModel
from sparse_import.inputs import check_input_dicts

from .graph import check_graph, declared_inputs
from .loader import load_model
from .params import from_tflite_params, to_tflite_params
from .reader import read_sparse_tensors, sparse_tensors

__all__ = [
    "from_tflite_params",
    "import_model",
    "load_model",
    "read_sparse_tensors",
    "to_tflite_params",
]


def import_model(
    model: Any,
    *,
    shape_dict: Mapping[str, Any] | None = None,
    dtype_dict: Mapping[str, str] | None = None,
) -> ImportedModel:
    """Convert a TFLite model with sparse weights into Relay, its sparse weights unbound.

    TVM's own TFLite frontend converts the graph. A sparse weight reaches it as a shape-correct
    stand-in and comes back listed in ``weights`` as a parameter without a value; a sparse
    tensor the frontend needs the values of (a depthwise kernel it reshapes, a shape) reaches it
    as its exact dense form, decoded from the IR once and charged to the dense byte budget.

    Parameters
    ----------
    model : str, os.PathLike, bytes or tflite.Model
        The ``.tflite`` model: a path, its bytes, or the parsed flatbuffer.
    shape_dict, dtype_dict : mapping, optional
        Input shapes and dtypes by input name (default: as the model declares them).

    Returns
    -------
    ImportedModel
        ``mod`` and ``params`` as ``relay.frontend.from_tflite`` returns them, plus one
        :class:`~sparse_import.imported.SparseWeight` per parameter that holds a sparse tensor
        (or its transpose), with ``framework="tflite"``.

    Raises
    ------
    UnsupportedModelError
        When ``model`` is not a TFLite model, has more than one subgraph, uses two tensors of
        one name, when ``shape_dict`` / ``dtype_dict`` contradict the declared inputs (name,
        rank, fixed dimensions but the batch, positive sizes, element type), or is a graph
        TVM's frontend cannot convert (unsupported operators, an
        operator with too few inputs, a constant without data, ...); TVM's exception is chained.
    SparseFormatError
        When the flatbuffer or a tensor's sparsity parameters are malformed, naming the tensor;
        when a ``DENSIFY`` reads anything but a constant sparse tensor, naming the operator.
    UnsupportedSparsityError
        When a tensor's sparsity parameters describe a layout the IR cannot hold.

    Examples
    --------
    >>> from importlib.resources import files
    >>> from sparse_import.adapters.tflite import import_model
    >>> imported = import_model(files("sparse_import.data") / "demo_mlp.tflite")
    >>> for weight in imported.weights:
    ...     print(weight.param, weight.consumer, weight.tensor.layout)
    _param_1 FULLY_CONNECTED (d0 : dense, d1 : compressed)
    _param_3 FULLY_CONNECTED (d0 : dense, d1 floordiv 4 : compressed, d1 mod 4 : dense)
    """
    checked_model = load_model(model)
    check_graph(checked_model)
    check_input_dicts(shape_dict, dtype_dict, declared_inputs(checked_model))
    sparse = sparse_tensors(checked_model)
    from .converter import convert

    return convert(checked_model, sparse, shape_dict=shape_dict, dtype_dict=dtype_dict)
