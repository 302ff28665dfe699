"""Mutations of ONNX ``SparseTensorProto`` messages and of serialized ONNX models.

:data:`DEFECTS` are targeted, one per rule ``from_onnx`` enforces, each returning the regex
its message must match; :func:`havoc` edits protobuf fields at random; the seeds are random
valid tensors (``to_onnx`` of the IR) and the sparse initializers of the ONNX fixture models.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from onnx import TensorProto, numpy_helper
from sparse_import.adapters.onnx import from_onnx
from sparse_import.adapters.onnx.model import load_model, prepare

from sparse_import import SparseTensor

from .choice import Chooser, flag, interesting_int, pick
from .fields import check_consistent

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "onnx" / "make_models.py"
SEED_MODELS = ("mlp", "gemm", "conv", "float16", "qdq", "wide_types", "control_flow")


@functools.cache
def fixture_models() -> Any:
    """``tests/fixtures/onnx/make_models.py`` as a module (shared with the ONNX model tests)."""
    name = "onnx_fixture_models"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, MODELS)
        module = sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


@functools.cache
def seed_model_bytes(name: str) -> bytes:
    return fixture_models().IN_MEMORY[name]().model.SerializeToString()


def copy_proto(proto: Any) -> Any:
    out = type(proto)()
    out.CopyFrom(proto)
    return out


def decode(sparse: Any, **kwargs: Any) -> SparseTensor:
    """What a caller does: convert, then decode to dense."""
    t = from_onnx(sparse, **kwargs)
    t.to_dense()
    return t


def decode_consistent(sparse: Any, **kwargs: Any) -> None:
    """:func:`decode`, and the tensor decodes to exactly what it stores."""
    check_consistent(from_onnx(sparse, **kwargs))


def prepare_bytes(data: bytes) -> None:
    """All ``import_model`` does before TVM: parse, read every sparse tensor, densify."""
    proto, base, owned = load_model(data)
    prepare(proto, base, owned=owned)


def _array(tensor: Any) -> np.ndarray:
    return numpy_helper.to_array(tensor)


def _set_array(tensor: Any, array: np.ndarray) -> None:
    """Replace a ``TensorProto``'s data and dims, keeping its name."""
    tensor.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(array), tensor.name))


def _name(sparse: Any) -> str:
    return re.escape(repr(sparse.values.name))


# ---------------------------------------------------------------------- targeted defects
DEFECTS: dict[str, Callable[[Any, Chooser], str | None]] = {}


def defect(fn: Callable[[Any, Chooser], str | None]) -> Callable[[Any, Chooser], str | None]:
    DEFECTS[fn.__name__] = fn
    return fn


def _nnz(sparse: Any) -> int:
    return int(np.prod(sparse.values.dims)) if sparse.values.dims else 0


def _indices(sparse: Any) -> np.ndarray:
    return _array(sparse.indices)


@defect
def dims_empty(sparse: Any, choose: Chooser) -> str:
    del sparse.dims[:]
    return rf"{_name(sparse)}: dims must have rank > 0, got \(\)$"


@defect
def dims_not_positive(sparse: Any, choose: Chooser) -> str:
    d = choose.integer(0, len(sparse.dims) - 1)
    sparse.dims[d] = pick(choose, [0, -1, -(2**31), -(2**63)])
    return rf"{_name(sparse)}: dims \(.*\) must all be positive$"


@defect
def dims_overflow(sparse: Any, choose: Chooser) -> str:
    sparse.dims.extend([2**40, 2**40])
    return rf"{_name(sparse)}: dims \(.*\) overflow a 64-bit linear index$"


@defect
def dense_bomb(sparse: Any, choose: Chooser) -> str:
    """A huge first dimension: coordinates stay valid, the dense form exceeds the limit."""
    sparse.dims[0] = sparse.dims[0] * pick(choose, [2**26, 2**31, 2**40])
    return rf"{_name(sparse)}: dense form of shape .* over the dense byte limit"


@defect
def values_rank(sparse: Any, choose: Chooser) -> str:
    values = _array(sparse.values)
    _set_array(sparse.values, values.reshape(-1, 1))
    return rf"{_name(sparse)}: values must have rank 1 \(\[NNZ\]\), got shape \({values.size}, 1\)$"


@defect
def values_type(sparse: Any, choose: Chooser) -> str:
    """Element types without a NumPy equivalent: unsupported, refused by name."""
    code = pick(
        choose,
        [
            TensorProto.STRING,
            TensorProto.BFLOAT16,
            TensorProto.FLOAT8E4M3FN,
            TensorProto.INT4,
            TensorProto.COMPLEX64,
        ],
    )
    sparse.values.data_type = code
    kind = TensorProto.DataType.Name(code)
    return rf"{_name(sparse)}: values have element type {kind}; supported"


@defect
def values_truncated(sparse: Any, choose: Chooser) -> str | None:
    """Raw data that does not fill the declared dims (truncated or misaligned)."""
    raw = _array(sparse.values).tobytes()
    if not raw:
        return None
    sparse.values.ClearField("raw_data")
    sparse.values.raw_data = raw[: choose.integer(0, len(raw) - 1)]
    return rf"{_name(sparse)}: values: stored data does not match dims"


@defect
def values_count(sparse: Any, choose: Chooser) -> str | None:
    """Values shorter or longer than the indices imply."""
    values = _array(sparse.values)
    if values.size and flag(choose):
        values = values[: choose.integer(0, values.size - 1)]
    else:
        values = np.concatenate([values, np.ones(choose.integer(1, 3), values.dtype)])
    _set_array(sparse.values, values)
    return rf"{_name(sparse)}: indices have shape \(.*\); expected \({values.size}, "


@defect
def indices_rank(sparse: Any, choose: Chooser) -> str | None:
    indices = _indices(sparse)
    shaped = (
        indices.reshape(1, -1)
        if flag(choose) and indices.size
        else indices.reshape(*indices.shape, 1)
    )
    nnz, rank = _nnz(sparse), len(sparse.dims)
    if shaped.shape in ((nnz, rank), (nnz,)):  # still a valid form
        return None
    _set_array(sparse.indices, shaped)
    return rf"{_name(sparse)}: indices have shape {re.escape(str(shaped.shape))}; expected"


@defect
def indices_dtype(sparse: Any, choose: Chooser) -> str | None:
    if not sparse.HasField("indices"):
        return None
    dtype = pick(choose, [np.float32, np.float64, np.bool_])
    _set_array(sparse.indices, _indices(sparse).astype(dtype))
    code = TensorProto.DataType.Name(sparse.indices.data_type)
    return (
        rf"{_name(sparse)}: indices must be INT64 \(other integer types are accepted\), "
        rf"got {code}$"
    )


@defect
def indices_missing(sparse: Any, choose: Chooser) -> str | None:
    nnz = _nnz(sparse)
    if not nnz:
        return None
    sparse.ClearField("indices")
    return rf"{_name(sparse)}: {nnz} values but no indices$"


@defect
def index_out_of_range(sparse: Any, choose: Chooser) -> str | None:
    indices = _indices(sparse).astype(np.int64)
    if not indices.size:
        return None
    i = choose.integer(0, indices.shape[0] - 1)
    dims = list(sparse.dims)
    if indices.ndim == 2:
        d = choose.integer(0, indices.shape[1] - 1)
        indices[i, d] = -1 if flag(choose) else dims[d] + choose.integer(0, 2)
    else:
        indices[i] = -1 if flag(choose) else math.prod(dims) + choose.integer(0, 2)
    _set_array(sparse.indices, indices)
    return rf"{_name(sparse)}: indices\[{i}\] = .* is out of bounds for shape"


def _adjacent(sparse: Any) -> int | None:
    """The last ``i`` with indices ``i``, ``i + 1``; ``None`` unless they strictly ascend."""
    if _nnz(sparse) < 2:
        return None
    indices = _indices(sparse).astype(np.int64)
    linear = indices if indices.ndim == 1 else np.ravel_multi_index(tuple(indices.T), sparse.dims)
    return indices.shape[0] - 2 if (np.diff(linear) > 0).all() else None


@defect
def duplicate_index(sparse: Any, choose: Chooser) -> str | None:
    last = _adjacent(sparse)
    if last is None:
        return None
    i = choose.integer(0, last)
    indices = _indices(sparse).copy()
    indices[i + 1] = indices[i]
    _set_array(sparse.indices, indices)
    return rf"{_name(sparse)}: indices\[{i + 1}\] = .* repeats indices\[{i}\]; duplicate"


@defect
def more_values_than_dense(sparse: Any, choose: Chooser) -> str | None:
    """NNZ larger than the dense size: shrink the dims under the stored indices."""
    if _nnz(sparse) < 2:
        return None
    del sparse.dims[:]
    sparse.dims.extend([1] * (_indices(sparse).shape[1] if _indices(sparse).ndim == 2 else 1))
    return rf"{_name(sparse)}: indices\[\d+\] = .* (is out of bounds for shape|repeats)"


STRICT_DEFECTS = {"unsorted_index"}  # only malformed under ``strict=True``


@defect
def unsorted_index(sparse: Any, choose: Chooser) -> str | None:
    last = _adjacent(sparse)
    if last is None:
        return None
    i = choose.integer(0, last)
    indices, values = _indices(sparse).copy(), _array(sparse.values).copy()
    indices[[i, i + 1]], values[[i, i + 1]] = indices[[i + 1, i]], values[[i + 1, i]]
    _set_array(sparse.indices, indices)
    _set_array(sparse.values, values)
    return rf"{_name(sparse)}: indices are not strictly ascending at position {i + 1}: "


# ---------------------------------------------------------------------- havoc
def _int64(value: int) -> int:
    return max(-(2**63), min(value, 2**63 - 1))


def havoc(sparse: Any, choose: Chooser) -> str:
    """1-4 random edits of dims, types, data and shapes of values and indices."""
    edits = []
    for _ in range(choose.integer(1, 4)):
        kind = choose.integer(0, 11)
        edits.append(str(kind))
        target = sparse.values if flag(choose) else sparse.indices
        if kind == 0 and sparse.dims:
            sparse.dims[choose.integer(0, len(sparse.dims) - 1)] = _int64(
                interesting_int(choose, list(sparse.dims))
            )
        elif kind == 1:
            sparse.dims.append(interesting_int(choose, [1, 2]))
        elif kind == 2 and sparse.dims:
            del sparse.dims[-1]
        elif kind == 3:
            target.data_type = choose.integer(0, 23)
        elif kind == 4 and target.dims:
            target.dims[choose.integer(0, len(target.dims) - 1)] = _int64(
                interesting_int(choose, list(target.dims))
            )
        elif kind == 5:
            target.dims.append(choose.integer(0, 2))
        elif kind == 6:
            raw = bytearray(target.raw_data)
            if raw:
                raw[choose.integer(0, len(raw) - 1)] = choose.integer(0, 255)
            target.raw_data = bytes(raw)
        elif kind == 7:
            target.raw_data = target.raw_data[: choose.integer(0, len(target.raw_data))]
        elif kind == 8:  # typed fields instead of raw_data, possibly of the wrong kind
            target.ClearField("raw_data")
            field = pick(choose, ["float_data", "int32_data", "int64_data", "double_data"])
            getattr(target, field).extend([1] * choose.integer(0, 4))
        elif kind == 9:
            sparse.ClearField("indices")
        elif kind == 10:
            target.data_location = TensorProto.EXTERNAL
            entry = target.external_data.add()
            entry.key, entry.value = (
                "location",
                pick(choose, ["../x.bin", "/etc/passwd", "w.bin", "", ".", "a/../../b"]),
            )
        else:
            with_dims = list(target.dims)
            target.ClearField("dims")
            target.dims.extend(with_dims[::-1])
    return ",".join(edits)


def mutate_bytes(data: bytes, choose: Chooser) -> bytes:
    """Byte edits of a serialized message: varints, lengths, tags, truncation."""
    out = bytearray(data)
    for _ in range(pick(choose, [1, 1, 2, 4])):
        if not out:
            break
        kind = choose.integer(0, 4)
        at = choose.integer(0, len(out) - 1)
        if kind == 0:
            del out[at:]
        elif kind == 1:
            out[at] = pick(choose, [0x00, 0x7F, 0x80, 0xFF, choose.integer(0, 255)])
        elif kind == 2:
            out[at] ^= 1 << choose.integer(0, 7)
        elif kind == 3:  # a huge varint (a length or a dim)
            out[at:at] = b"\xff\xff\xff\xff\xff\xff\xff\xff\x7f"
        else:
            n = choose.integer(1, 16)
            src = choose.integer(0, len(out) - 1)
            out[at:at] = out[src : src + n]
    return bytes(out)


# ---------------------------------------------------------------------- semantic model edits
# Each edits a parsed seed model (in place) into one that is malformed, or too deep, in a way
# the adapter must refuse before TVM runs, and returns the regex its message must match; ""
# when the edit may also leave a valid model; None when the seed has nothing to edit. They
# rename onto existing names (inputs, initializers, node outputs), alias sparse tensors, put
# huge dims in small files, duplicate names inside subgraphs and nest graphs past the limit.
MODEL_DEFECTS: dict[str, Callable[[Any, Chooser], str | None]] = {}


def model_defect(fn: Callable[[Any, Chooser], str | None]) -> Callable[[Any, Chooser], str | None]:
    MODEL_DEFECTS[fn.__name__] = fn
    return fn


def _graphs_with_sparse(model: Any) -> list[Any]:
    """Every graph (main and nested) holding a sparse initializer."""
    from sparse_import.adapters.onnx.graphs import walk

    return [g for g in walk(model.graph) if len(g.sparse_initializer)]


def _twice(name: str, graph: Any, what: str) -> str:
    return (
        rf"^sparse tensor {re.escape(repr(name))}: the name is defined twice in graph "
        rf"{re.escape(repr(graph.name))}: .*{what}"
    )


def _a_sparse(model: Any, choose: Chooser) -> tuple[Any, Any] | None:
    graphs = _graphs_with_sparse(model)
    if not graphs:
        return None
    graph = pick(choose, graphs)
    return graph, pick(choose, list(graph.sparse_initializer))


@model_defect
def rename_onto_node_output(model: Any, choose: Chooser) -> str | None:
    """A sparse initializer renamed onto the output of a node of its graph."""
    found = _a_sparse(model, choose)
    if found is None:
        return None
    graph, sparse = found
    outputs = [o for n in graph.node for o in n.output if o and n.op_type != "Constant"]
    if not outputs:
        return None
    name = pick(choose, outputs)
    sparse.values.name = name
    return _twice(name, graph, r"the output of node")


@model_defect
def node_output_onto_sparse(model: Any, choose: Chooser) -> str | None:
    """A node's output renamed onto a sparse initializer (the value is aliased)."""
    found = _a_sparse(model, choose)
    if found is None or not len(found[0].node):
        return None
    graph, sparse = found
    node = pick(choose, list(graph.node))
    if not len(node.output) or sparse_value_name(node) is not None:
        return None
    node.output[choose.integer(0, len(node.output) - 1)] = sparse.values.name
    return _twice(sparse.values.name, graph, r"the output of node")


@model_defect
def rename_onto_dense_initializer(model: Any, choose: Chooser) -> str | None:
    found = _a_sparse(model, choose)
    if found is None or not len(found[0].initializer):
        return None
    graph, sparse = found
    name = pick(choose, list(graph.initializer)).name
    sparse.values.name = name
    return _twice(name, graph, r"a dense initializer")


@model_defect
def duplicate_sparse_initializer(model: Any, choose: Chooser) -> str | None:
    """A second sparse initializer of the same name, in whichever graph (subgraphs too)."""
    found = _a_sparse(model, choose)
    if found is None:
        return None
    graph, sparse = found
    copy = graph.sparse_initializer.add()
    copy.CopyFrom(sparse)
    if flag(choose):  # different content, same name
        copy.dims[0] = copy.dims[0] + 1
    return _twice(sparse.values.name, graph, r"a sparse initializer and a sparse initializer")


@model_defect
def sparse_constant_aliasing_an_initializer(model: Any, choose: Chooser) -> str | None:
    """A sparse ``Constant`` whose output is a sparse initializer's name."""
    found = _a_sparse(model, choose)
    if found is None:
        return None
    graph, sparse = found
    node = graph.node.add()
    node.op_type, node.name = "Constant", "alias"
    node.output.append(sparse.values.name)
    attr = node.attribute.add()
    attr.name, attr.type = "sparse_value", 11  # SPARSE_TENSOR
    attr.sparse_tensor.CopyFrom(sparse)
    return _twice(sparse.values.name, graph, r"node 'alias' \(Constant\)")


@model_defect
def rename_onto_graph_input(model: Any, choose: Chooser) -> str | None:
    """A main-graph sparse initializer renamed onto a runtime input declared of another type:
    refused when the tensor becomes a weight, a constant overriding the input otherwise."""
    graph = model.graph
    inputs = [vi for vi in graph.input if vi.type.HasField("tensor_type")]
    if not len(graph.sparse_initializer) or not inputs:
        return None
    sparse = pick(choose, list(graph.sparse_initializer))
    target = pick(choose, inputs)
    sparse.values.name = target.name
    target.type.tensor_type.elem_type = TensorProto.FLOAT16 if flag(choose) else TensorProto.INT8
    return ""


@model_defect
def huge_dims_in_a_small_file(model: Any, choose: Chooser) -> str | None:
    """A few bytes of dims declaring a dense form of terabytes, or a rank NumPy cannot hold."""
    found = _a_sparse(model, choose)
    if found is None:
        return None
    _, sparse = found
    if flag(choose):
        sparse.dims.extend([1] * choose.integer(64, 5000))
        return rf"{_name(sparse)}: dims have rank \d+; at most 64 dimensions"
    sparse.dims[0] = sparse.dims[0] * pick(choose, [2**30, 2**40, 2**50])
    return (
        rf"{_name(sparse)}: (dense form of shape .* over the dense byte limit|dims .* overflow "
        r"a 64-bit linear index)"
    )


@model_defect
def nested_past_the_limit(model: Any, choose: Chooser) -> str:
    """An ``If`` added to the main graph, its branches nested 32 to 3000 deep."""
    depth = pick(choose, [32, 33, 100, 3000])
    graph = model.graph
    for level in range(depth):
        node = graph.node.add()
        node.op_type, node.name = "If", f"nest{level}"
        node.input.append("c")
        attr = node.attribute.add()
        attr.name, attr.type = pick(choose, ["then_branch", "else_branch"]), 5  # GRAPH
        graph = attr.g
        graph.name = f"level{level}"
    return r"^node 'nest31' \(If\) attribute '\w+' of graph 'level30': subgraphs nested more"


@model_defect
def transpose_with_a_bad_perm(model: Any, choose: Chooser) -> str | None:
    """A ``Transpose`` reading a main-graph sparse initializer with a perm that is not one."""
    graph = model.graph
    if not len(graph.sparse_initializer):
        return None
    sparse = pick(choose, list(graph.sparse_initializer))
    rank = len(sparse.dims)
    perm = pick(
        choose,
        [
            [0] * (rank + 1),
            list(range(rank - 1)),
            [rank + choose.integer(0, 9)] * rank,
            [-1] * rank,
        ],
    )
    if sorted(perm) == list(range(rank)):
        return None
    node = graph.node.add()
    node.op_type, node.name = "Transpose", "bad_perm"
    node.input.append(sparse.values.name)
    node.output.append("bad_perm_out")
    attr = node.attribute.add()
    attr.name, attr.type = "perm", 7  # INTS
    attr.ints.extend(perm)
    return rf"^node 'bad_perm' \(Transpose\): perm {re.escape(str(perm))} is not a permutation"


def sparse_value_name(node: Any) -> str | None:
    """The output name of a sparse ``Constant``, or ``None`` for any other node."""
    if node.op_type == "Constant" and any(a.name == "sparse_value" for a in node.attribute):
        return node.output[0] if len(node.output) else ""
    return None


def prepare_proto(model: Any) -> None:
    """All ``import_model`` does before TVM, on a ``ModelProto`` (deep ones cannot be
    serialized and parsed again)."""
    prepare(model, None, owned=True)
