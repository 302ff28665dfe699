"""Read an ONNX model and rewrite its sparse tensors into a form TVM's ONNX frontend digests.

TVM 0.19's ``relay.frontend.from_onnx`` ignores ``graph.sparse_initializer`` (a node reading one
fails with ``KeyError``) and cannot parse ``Constant``'s ``sparse_value`` attribute. Here every
sparse tensor is read into the IR and replaced:

- a main-graph sparse tensor that is a *weight* (floating point, or the quantized input of a
  ``DequantizeLinear``) read by main-graph nodes only, each reading it as data
  (:mod:`.weights`), becomes a graph input of the same name and type; TVM turns it into a
  Relay variable of that name, and nothing of its dense size is allocated here;
- any other sparse tensor (one read as a ``Resize`` scale or a ``Reshape`` shape, say), and
  every sparse tensor inside a subgraph (``If``/``Loop`` bodies), becomes the equivalent dense
  initializer or dense ``Constant``, written in place, which TVM folds into the module; its
  dense bytes are charged to the model's :class:`~sparse_import.limits.DenseBudget` first.

Before anything is read, the graphs are walked once, iteratively and to a bounded depth
(:mod:`.graphs`), names a sparse tensor shares with another definition of its graph are
refused, and each declared dense size is checked against the dense byte limit. External data
(dense or sparse) is read here with :mod:`.external`'s checks, so TVM sees a self-contained
model. A caller's ``ModelProto`` is copied once, and only when it needs rewriting; a model read
from a path or bytes is rewritten in place. Every step is linear in the size of the model.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparse_import.detect import read_model_file
from sparse_import.errors import (
    SparseFormatError,
    UnsupportedModelError,
    UnsupportedSparsityError,
    tensor_label,
)
from sparse_import.limits import DenseBudget
from sparse_import.tensor import SparseTensor

from ._proto import onnx, type_name
from .external import inline_external, uses_external_data
from .graphs import check_sparse_names, node_label, sparse_value, subgraphs, walk
from .inputs import InputType, declared_types
from .sparse import from_onnx
from .weights import check_transposes, not_weight_reason

TENSOR, SPARSE_TENSOR, SPARSE_TENSORS = 4, 11, 12  # AttributeProto.AttributeType


@dataclass
class PreparedModel:
    """A model without sparse tensors or external data, plus what was taken out of it.

    Attributes
    ----------
    model : onnx.ModelProto
    weights : dict of str to (SparseTensor, str)
        Every sparse weight turned into a graph input (by name) -> the weight in the IR and the
        op type of its first consumer.
    constants : list of (SparseTensor, str, str)
        Every other sparse tensor, written as a dense constant: the tensor, its first
        consumer and why it is no weight.
    inputs : list of str
        The model's own runtime inputs: graph inputs that are neither initializers (dense or
        sparse, which old exporters also list as inputs) nor weights.
    input_types : dict of str to InputType
        The declared element type and dims of each of ``inputs``.
    """

    model: Any
    weights: dict[str, tuple[SparseTensor, str]] = field(default_factory=dict)
    constants: list[tuple[SparseTensor, str, str]] = field(default_factory=list)
    budget: DenseBudget = field(default_factory=lambda: DenseBudget("ONNX model"))
    inputs: list[str] = field(default_factory=list)
    input_types: dict[str, InputType] = field(default_factory=dict)


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
        data = read_model_file(path)
        base = path.parent if base_dir is None else Path(base_dir)
    elif isinstance(model, (bytes, bytearray, memoryview)):
        data, base = bytes(model), None if base_dir is None else Path(base_dir)
        del model
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
def _dense_tensors(graphs: Sequence[Any]) -> Iterator[tuple[Any, str]]:
    """Every dense ``TensorProto`` of every graph, with how error messages name it."""
    for g in graphs:
        for tensor in g.initializer:
            yield tensor, f"initializer {tensor.name!r}"
        for node in g.node:
            for attr in node.attribute:
                label = f"node {node.name or node.op_type!r} attribute {attr.name!r}"
                if attr.HasField("t"):
                    yield attr.t, label
                for tensor in attr.tensors:
                    yield tensor, label


def _check_sparse_attributes(graphs: Sequence[Any]) -> bool:
    """Whether any graph holds a sparse tensor; refuse sparse attributes other ops would read."""
    found = False
    for g in graphs:
        found = found or bool(g.sparse_initializer)
        for node in g.node:
            for attr in node.attribute:
                if attr.type not in (SPARSE_TENSOR, SPARSE_TENSORS):
                    continue
                if sparse_value(node) is None or attr.name != "sparse_value":
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


def _ranks(graph) -> dict[str, int]:
    """Names of the values of ``graph`` whose rank is known without inference -> rank."""
    ranks = {t.name: len(t.dims) for t in graph.initializer}
    ranks.update((t.values.name, len(t.dims)) for t in graph.sparse_initializer)
    for vi in graph.input:
        kind = vi.type.tensor_type
        if kind.HasField("shape") and vi.name not in ranks:
            ranks[vi.name] = len(kind.shape.dim)
    for node in graph.node:
        attr = sparse_value(node)
        if attr is not None and node.output:
            ranks[node.output[0]] = len(attr.sparse_tensor.dims)
    return ranks


# --------------------------------------------------------------------------- rewriting
def _write_dense(proto, tensor: SparseTensor, name: str, budget: DenseBudget) -> None:
    """Fill ``proto``, a ``TensorProto`` already in its place in the model, with the dense
    form of ``tensor``, holding at most one transient copy next to the proto's own bytes;
    charged to ``budget`` before anything is allocated."""
    budget.charge([tensor])
    dense = tensor.to_dense()
    proto.name = name
    proto.data_type = onnx().helper.np_dtype_to_tensor_dtype(dense.dtype)
    proto.dims.extend(dense.shape)
    data = dense.astype(dense.dtype.newbyteorder("<"), copy=False).tobytes()
    del dense
    proto.raw_data = data


def _replace_sparse_value(node, attr, tensor: SparseTensor, budget: DenseBudget) -> None:
    name = attr.name
    for k, a in enumerate(node.attribute):
        if a.name == name:
            del node.attribute[k]
            break
    dense = node.attribute.add()
    dense.name, dense.type = "value", TENSOR
    _write_dense(dense.t, tensor, node.output[0], budget)


def _initializer_tensor(graph, k: int, base_dir) -> SparseTensor:
    sparse = graph.sparse_initializer[k]
    if not sparse.values.name:
        raise SparseFormatError(
            f"graph {graph.name!r}: sparse_initializer[{k}] has no name (values.name is empty)"
        )
    return from_onnx(sparse, base_dir=base_dir)


def _constant_tensor(node, attr, base_dir) -> SparseTensor:
    if len(node.output) != 1 or not node.output[0]:
        raise UnsupportedModelError(f"{node_label(node)} must have one named output")
    return from_onnx(attr.sparse_tensor, name=node.output[0], base_dir=base_dir)


_IN_SUBGRAPH = "inside a subgraph, which TVM's ONNX frontend converts with constants only"


def _densify(graph, base_dir, prepared: PreparedModel) -> None:
    """Replace the sparse tensors of one graph (not its subgraphs) by dense ones."""
    uses = _uses(graph)
    for k in range(len(graph.sparse_initializer)):
        tensor = _initializer_tensor(graph, k, base_dir)
        _write_dense(graph.initializer.add(), tensor, tensor.name, prepared.budget)
        prepared.constants.append((tensor, _first(uses, tensor.name), _IN_SUBGRAPH))
    del graph.sparse_initializer[:]
    for node in graph.node:
        attr = sparse_value(node)
        if attr is not None:
            tensor = _constant_tensor(node, attr, base_dir)
            _replace_sparse_value(node, attr, tensor, prepared.budget)
            prepared.constants.append((tensor, _first(uses, tensor.name), _IN_SUBGRAPH))


def _first(uses: dict[str, list[tuple[str, int]]], name: str) -> str:
    """The op type of the first node reading ``name``, ``"-"`` when none does."""
    return uses[name][0][0] if uses.get(name) else "-"


def _declare_input(graph, declared: dict[str, Any], tensor: SparseTensor) -> None:
    """Make ``tensor.name`` a graph input of exactly its type, checking any declaration.

    ``declared`` maps the names of ``graph.input`` to their entries; it is kept up to date.
    """
    helper = onnx().helper
    elem = helper.np_dtype_to_tensor_dtype(tensor.dtype)
    vi = declared.get(tensor.name)
    if vi is None:
        declared[tensor.name] = graph.input.add()
        declared[tensor.name].CopyFrom(
            helper.make_tensor_value_info(tensor.name, elem, tensor.shape)
        )
        return
    kind = vi.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in kind.shape.dim)
    shape_ok = not kind.HasField("shape") or (
        len(dims) == tensor.rank
        and all(d is None or d == n for d, n in zip(dims, tensor.shape, strict=True))
    )
    if kind.elem_type not in (0, elem) or not shape_ok:
        raise SparseFormatError(
            f"{tensor_label(tensor.name)}: graph input declares {type_name(kind.elem_type)}"
            f" {dims}, but its sparse initializer is {type_name(elem)} {tensor.shape}"
        )
    vi.type.CopyFrom(helper.make_tensor_type_proto(elem, tensor.shape))


def prepare(model, base_dir: str | Path | None = None, *, owned: bool = False) -> PreparedModel:
    """Rewrite ``model`` so that TVM's ONNX frontend can convert it (see the module docstring).

    Every step is linear in the size of the model; nested graphs are walked iteratively.

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
        A malformed sparse tensor, a sparse tensor's name defined twice in its graph (by a
        tensor or a node output), or a graph input whose declared type contradicts its sparse
        initializer.
    UnsupportedSparsityError
        Sparse graph inputs/outputs, or sparse attributes of ops other than ``Constant``.
    UnsupportedModelError
        Unreadable external data, subgraphs nested too deep, or a ``Transpose`` whose ``perm``
        does not fit its input.
    """
    graph = model.graph
    graphs = walk(graph)
    _check_no_sparse_io(graph)
    has_sparse = _check_sparse_attributes(graphs)
    if has_sparse:  # before any tensor is read
        for g in graphs:
            check_sparse_names(g)
    for g in graphs:
        check_transposes(g, _ranks(g))
    external = [(t, label) for t, label in _dense_tensors(graphs) if uses_external_data(t)]
    if (has_sparse or external) and not owned:
        model = _copy(model)
        graph = model.graph
        graphs = walk(graph)
        external = [(t, label) for t, label in _dense_tensors(graphs) if uses_external_data(t)]
    for tensor, label in external:
        inline_external(tensor, base_dir, label)
    prepared = PreparedModel(model)
    if has_sparse:
        _rewrite_main_graph(graph, base_dir, prepared)
        for sub in graphs[1:]:
            _densify(sub, base_dir, prepared)
    initialized = {t.name for t in graph.initializer}
    prepared.inputs = [
        vi.name
        for vi in graph.input
        if vi.name not in initialized and vi.name not in prepared.weights
    ]
    prepared.input_types = declared_types(graph, prepared.inputs)
    return prepared


def _copy(model):
    copy = onnx().ModelProto()
    copy.CopyFrom(model)
    return copy


def _read_in_subgraphs(graph) -> set[str]:
    """Names read by nodes of any subgraph (including the subgraphs' own values)."""
    names: set[str] = set()
    for node in graph.node:
        for _, sub in subgraphs(node):
            for g in walk(sub):
                for inner in g.node:
                    names.update(inner.input)
    return names


def _drop_nodes(graph, dropped: set[int]) -> None:
    """Delete the nodes at the ``dropped`` indices, keeping the order, in one pass."""
    kept = 0
    for k in range(len(graph.node)):
        if k in dropped:
            continue
        if kept != k:
            graph.node[kept].CopyFrom(graph.node[k])
        kept += 1
    del graph.node[kept:]


def _rewrite_main_graph(graph, base_dir, prepared: PreparedModel) -> None:
    all_uses = _uses(graph)
    uses = dict(all_uses)
    # TVM 0.19's If converter loses graph inputs read by both branches (KeyError): a tensor
    # read inside a subgraph stays a constant.
    in_subgraphs = _read_in_subgraphs(graph)
    for name in in_subgraphs:
        uses.pop(name, None)
    declared = {vi.name: vi for vi in graph.input}

    def take(tensor: SparseTensor) -> bool:
        """Record a weight; return False (and why) when the tensor must stay a constant."""
        reason = (
            "read " + _IN_SUBGRAPH
            if tensor.name in in_subgraphs
            else not_weight_reason(tensor.dtype, uses.get(tensor.name, []))
        )
        if reason is not None:
            prepared.constants.append((tensor, _first(all_uses, tensor.name), reason))
            return False
        _declare_input(graph, declared, tensor)
        prepared.weights[tensor.name] = (tensor, uses[tensor.name][0][0])
        return True

    for k in range(len(graph.sparse_initializer)):
        tensor = _initializer_tensor(graph, k, base_dir)
        if not take(tensor):
            _write_dense(graph.initializer.add(), tensor, tensor.name, prepared.budget)
    del graph.sparse_initializer[:]

    taken = set()
    for k, node in enumerate(graph.node):
        attr = sparse_value(node)
        if attr is not None:
            tensor = _constant_tensor(node, attr, base_dir)
            if take(tensor):
                taken.add(k)
            else:
                _replace_sparse_value(node, attr, tensor, prepared.budget)
    if taken:
        _drop_nodes(graph, taken)
