"""Read an ONNX model and rewrite its sparse tensors into a form TVM's ONNX frontend digests.

TVM 0.19's ``relay.frontend.from_onnx`` ignores ``graph.sparse_initializer`` (a node reading one
fails with ``KeyError``) and cannot parse ``Constant``'s ``sparse_value`` attribute. Here every
sparse tensor is read into the IR and replaced:

- a main-graph sparse tensor that is a *weight* (floating point, or the quantized input of a
  ``DequantizeLinear``) read by main-graph nodes only becomes a graph input of the same name
  whose dense value is returned as a parameter; TVM turns it into a Relay variable of that name;
- any other main-graph sparse tensor, and every sparse tensor inside a subgraph (``If``/``Loop``
  bodies), becomes the equivalent dense initializer or dense ``Constant``, which TVM folds into
  the module as a constant.

External data (dense or sparse) is read here with :mod:`.external`'s checks, so TVM sees a
self-contained model. A caller's ``ModelProto`` is copied once, and only when it needs
rewriting; a model read from a path or bytes is rewritten in place.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from sparse_import.errors import (
    SparseFormatError,
    UnsupportedModelError,
    UnsupportedSparsityError,
    tensor_label,
)
from sparse_import.limits import check_model_total
from sparse_import.tensor import SparseTensor

from ._proto import onnx, type_name
from .external import inline_external, uses_external_data
from .sparse import from_onnx

GRAPH, GRAPHS, SPARSE_TENSOR, SPARSE_TENSORS = 5, 10, 11, 12  # AttributeProto.AttributeType


@dataclass
class PreparedModel:
    """A model without sparse tensors or external data, plus what was taken out of it.

    Attributes
    ----------
    model : onnx.ModelProto
    params : dict of str to ndarray
        Dense value of every sparse weight turned into a graph input.
    weights : dict of str to (SparseTensor, str)
        The same names -> the weight in the IR and the op type of its first consumer.
    inputs : list of str
        The model's own runtime inputs (graph inputs that are neither initializers nor weights).
    """

    model: Any
    params: dict[str, np.ndarray] = field(default_factory=dict)
    weights: dict[str, tuple[SparseTensor, str]] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- loading
def load_model(model: Any, base_dir: str | Path | None = None) -> tuple[Any, Path | None, bool]:
    """Parse ``model`` (path, bytes or ``ModelProto``) without touching its external data.

    Returns
    -------
    model : onnx.ModelProto
    base_dir : Path or None
        Where external data is looked up: ``base_dir`` if given, else the model file's directory.
    owned : bool
        Whether the proto was created here (and may be rewritten in place).
    """
    proto_type = onnx().ModelProto
    if isinstance(model, proto_type):
        return model, None if base_dir is None else Path(base_dir), False
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise UnsupportedModelError(f"ONNX model file {str(path)!r} does not exist")
        data = path.read_bytes()
        base = path.parent if base_dir is None else Path(base_dir)
    elif isinstance(model, (bytes, bytearray, memoryview)):
        data, base = bytes(model), None if base_dir is None else Path(base_dir)
    else:
        raise UnsupportedModelError(
            f"model must be a path, bytes or an onnx.ModelProto, not {type(model).__name__}"
        )
    try:
        proto = proto_type.FromString(data)
    except Exception as exc:  # protobuf's DecodeError
        raise UnsupportedModelError(f"{len(data)} bytes are not an ONNX model: {exc}") from None
    if not proto.graph.output:
        raise UnsupportedModelError(
            f"{len(data)} bytes are not an ONNX model: the graph has no outputs"
        )
    return proto, base, True


# --------------------------------------------------------------------------- graph walking
def subgraphs(node) -> Iterator[Any]:
    """The graphs held by ``node``'s attributes (``If`` branches, ``Loop``/``Scan`` bodies)."""
    for attr in node.attribute:
        if attr.type == GRAPH:
            yield attr.g
        elif attr.type == GRAPHS:
            yield from attr.graphs


def all_graphs(graph) -> Iterator[Any]:
    """``graph`` and, depth first, every graph nested in its nodes."""
    yield graph
    for node in graph.node:
        for sub in subgraphs(node):
            yield from all_graphs(sub)


def _dense_tensors(graph) -> Iterator[tuple[Any, str]]:
    """Every dense ``TensorProto`` of every graph, with how error messages name it."""
    for g in all_graphs(graph):
        for tensor in g.initializer:
            yield tensor, f"initializer {tensor.name!r}"
        for node in g.node:
            for attr in node.attribute:
                label = f"node {node.name or node.op_type!r} attribute {attr.name!r}"
                if attr.HasField("t"):
                    yield attr.t, label
                for tensor in attr.tensors:
                    yield tensor, label


def _sparse_value(node):
    """The ``sparse_value`` attribute of a ``Constant`` node, or ``None``."""
    if node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
        return None
    for attr in node.attribute:
        if attr.name == "sparse_value":
            return attr
    return None


class _Declared(NamedTuple):
    """A sparse tensor's name and dense size as its proto declares them (nothing read)."""

    name: str
    dense_nbytes: int


def _declared(graph) -> Iterator[_Declared]:
    """Every sparse tensor of ``graph`` and its subgraphs, sized from dims and value type."""
    to_dtype = onnx().helper.tensor_dtype_to_np_dtype
    for g in all_graphs(graph):
        protos = [(t.values.name, t) for t in g.sparse_initializer]
        protos += [
            (n.output[0] if n.output else "", a.sparse_tensor)
            for n in g.node
            if (a := _sparse_value(n)) is not None
        ]
        for name, proto in protos:
            try:
                itemsize = np.dtype(to_dtype(proto.values.data_type)).itemsize
            except (KeyError, TypeError, ValueError):
                itemsize = 1  # the tensor's own reading names the bad type
            yield _Declared(name, math.prod(max(int(d), 0) for d in proto.dims) * itemsize)


def _check_sparse_attributes(graph) -> bool:
    """Whether any graph holds a sparse tensor; refuse sparse attributes other ops would read."""
    found = False
    for g in all_graphs(graph):
        found = found or bool(g.sparse_initializer)
        for node in g.node:
            for attr in node.attribute:
                if attr.type not in (SPARSE_TENSOR, SPARSE_TENSORS):
                    continue
                if _sparse_value(node) is None or attr.name != "sparse_value":
                    raise UnsupportedSparsityError(
                        f"node {node.name or node.op_type!r} ({node.op_type}) has the sparse "
                        f"attribute {attr.name!r}; only Constant's sparse_value is supported"
                    )
                found = True
    return found


def _check_no_sparse_io(graph) -> None:
    for vi in (*graph.input, *graph.output):
        if vi.type.HasField("sparse_tensor_type"):
            raise UnsupportedSparsityError(
                f"graph input/output {vi.name!r} is a sparse tensor; only sparse weights "
                "(initializers and Constant nodes) are supported"
            )


def _uses(graph) -> dict[str, list[tuple[str, int]]]:
    """Value name -> the (op type, input index) of each main-graph node reading it."""
    uses: dict[str, list[tuple[str, int]]] = {}
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name:
                uses.setdefault(name, []).append((node.op_type, k))
    return uses


def _read_in_subgraphs(graph) -> set[str]:
    """Names read by nodes of any subgraph (including the subgraphs' own values)."""
    names: set[str] = set()
    for node in graph.node:
        for sub in subgraphs(node):
            for g in all_graphs(sub):
                for inner in g.node:
                    names.update(inner.input)
    return names


def _is_weight(tensor: SparseTensor, uses: list[tuple[str, int]]) -> bool:
    if not uses:
        return False
    if tensor.dtype.kind == "f":
        return True
    return ("DequantizeLinear", 0) in uses


# --------------------------------------------------------------------------- rewriting
def _dense_proto(tensor: SparseTensor, name: str):
    return onnx().numpy_helper.from_array(tensor.to_dense(), name)


def _replace_sparse_value(node, attr, tensor: SparseTensor) -> None:
    dense = onnx().helper.make_attribute("value", _dense_proto(tensor, node.output[0]))
    for k, a in enumerate(node.attribute):
        if a.name == attr.name:
            del node.attribute[k]
            break
    node.attribute.append(dense)


def _initializer_tensor(graph, k: int, base_dir) -> SparseTensor:
    sparse = graph.sparse_initializer[k]
    if not sparse.values.name:
        raise SparseFormatError(
            f"graph {graph.name!r}: sparse_initializer[{k}] has no name (values.name is empty)"
        )
    return from_onnx(sparse, base_dir=base_dir)


def _constant_tensor(node, attr, base_dir) -> SparseTensor:
    if len(node.output) != 1 or not node.output[0]:
        raise UnsupportedModelError(f"node {node.name!r} (Constant) must have one named output")
    return from_onnx(attr.sparse_tensor, name=node.output[0], base_dir=base_dir)


def _densify_subgraph(graph, base_dir) -> None:
    """Replace the sparse tensors of a subgraph (and its own subgraphs) by dense ones."""
    for k in range(len(graph.sparse_initializer)):
        tensor = _initializer_tensor(graph, k, base_dir)
        graph.initializer.append(_dense_proto(tensor, tensor.name))
    del graph.sparse_initializer[:]
    for node in graph.node:
        attr = _sparse_value(node)
        if attr is not None:
            _replace_sparse_value(node, attr, _constant_tensor(node, attr, base_dir))
        for sub in subgraphs(node):
            _densify_subgraph(sub, base_dir)


def _declare_input(graph, tensor: SparseTensor) -> None:
    """Make ``tensor.name`` a graph input of exactly its type, checking any declaration."""
    helper = onnx().helper
    elem = helper.np_dtype_to_tensor_dtype(tensor.dtype)
    for vi in graph.input:
        if vi.name != tensor.name:
            continue
        declared = vi.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in declared.shape.dim)
        shape_ok = not declared.HasField("shape") or (
            len(dims) == tensor.rank
            and all(d is None or d == n for d, n in zip(dims, tensor.shape, strict=True))
        )
        if declared.elem_type not in (0, elem) or not shape_ok:
            raise SparseFormatError(
                f"{tensor_label(tensor.name)}: graph input declares {type_name(declared.elem_type)}"
                f" {dims}, but its sparse initializer is {type_name(elem)} {tensor.shape}"
            )
        vi.type.CopyFrom(helper.make_tensor_type_proto(elem, tensor.shape))
        return
    graph.input.append(helper.make_tensor_value_info(tensor.name, elem, tensor.shape))


def prepare(model, base_dir: str | Path | None = None, *, owned: bool = False) -> PreparedModel:
    """Rewrite ``model`` so that TVM's ONNX frontend can convert it (see the module docstring).

    Parameters
    ----------
    model : onnx.ModelProto
    base_dir : path, optional
        Directory of the model, for external data.
    owned : bool
        Rewrite ``model`` in place; otherwise a copy is rewritten when anything needs it.

    Raises
    ------
    SparseFormatError
        A malformed sparse tensor, a name defined twice, or a graph input whose declared type
        contradicts its sparse initializer.
    UnsupportedSparsityError
        Sparse graph inputs/outputs, or sparse attributes of ops other than ``Constant``.
    UnsupportedModelError
        Unreadable external data.
    """
    graph = model.graph
    _check_no_sparse_io(graph)
    has_sparse = _check_sparse_attributes(graph)
    if has_sparse:  # before any tensor is read or densified
        check_model_total(_declared(graph), model="ONNX model")
    external = [(t, label) for t, label in _dense_tensors(graph) if uses_external_data(t)]
    if (has_sparse or external) and not owned:
        model = _copy(model)
        graph = model.graph
        external = [(t, label) for t, label in _dense_tensors(graph) if uses_external_data(t)]
    for tensor, label in external:
        inline_external(tensor, base_dir, label)
    prepared = PreparedModel(model)
    if has_sparse:
        _rewrite_main_graph(graph, base_dir, prepared)
    initialized = {t.name for t in graph.initializer}
    prepared.inputs = [
        vi.name
        for vi in graph.input
        if vi.name not in initialized and vi.name not in prepared.weights
    ]
    return prepared


def _copy(model):
    copy = onnx().ModelProto()
    copy.CopyFrom(model)
    return copy


def _rewrite_main_graph(graph, base_dir, prepared: PreparedModel) -> None:
    uses = _uses(graph)
    # TVM 0.19's If converter loses graph inputs read by both branches (KeyError): a tensor
    # read inside a subgraph stays a constant.
    for name in _read_in_subgraphs(graph):
        uses.pop(name, None)
    defined = {t.name for t in graph.initializer}

    def take(tensor: SparseTensor) -> bool:
        """Record a weight; return False when the tensor must stay a constant instead."""
        if tensor.name in defined:
            raise SparseFormatError(f"{tensor_label(tensor.name)}: the name is defined twice")
        defined.add(tensor.name)
        if not _is_weight(tensor, uses.get(tensor.name, [])):
            return False
        _declare_input(graph, tensor)
        prepared.params[tensor.name] = tensor.to_dense()
        prepared.weights[tensor.name] = (tensor, uses[tensor.name][0][0])
        return True

    for k in range(len(graph.sparse_initializer)):
        tensor = _initializer_tensor(graph, k, base_dir)
        if not take(tensor):
            graph.initializer.append(_dense_proto(tensor, tensor.name))
    del graph.sparse_initializer[:]

    taken = []
    for k, node in enumerate(graph.node):
        attr = _sparse_value(node)
        if attr is not None:
            tensor = _constant_tensor(node, attr, base_dir)
            if take(tensor):
                taken.append(k)
            else:
                _replace_sparse_value(node, attr, tensor)
        for sub in subgraphs(node):
            _densify_subgraph(sub, base_dir)
    for k in reversed(taken):
        del graph.node[k]
