"""Mutations of whole ``.tflite`` files: raw bytes, and fields through LiteRT's object API.

The object API (``ai_edge_litert.schema_py_generated``: ``ModelT.InitFromPackedBuf`` and
``Pack``) rewrites a committed fixture with one sparse tensor changed: its sparsity fields (the
:class:`~fuzz.fields.Case` defects, written back into the flatbuffer), the union type codes of
its index vectors, its buffer, type, buffer index or quantization. :func:`mutate_bytes` damages
the serialized file itself: offsets, lengths, vtables, truncation.
"""

from __future__ import annotations

import copy
import functools
import struct
from pathlib import Path
from typing import Any

import numpy as np
from sparse_import.adapters.tflite import read_sparse_tensors

from sparse_import import SparseTensor

from .choice import Chooser, flag, interesting_int, pick
from .fields import Case, check_consistent, put

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tflite"
SMALL = 12_000  # bytes: the fixtures the fast tests mutate
INT32_MAX = 2**31 - 1

# IR index dtype -> the narrowest SparseIndexVector type that holds it
_VECTORS = (("Uint8Vector", np.uint8), ("Uint16Vector", np.uint16), ("Int32Vector", np.int32))
_TENSOR_DTYPES = {
    "FLOAT32": "<f4", "FLOAT16": "<f2", "FLOAT64": "<f8", "INT8": "i1", "UINT8": "u1",
    "INT16": "<i2", "UINT16": "<u2", "INT32": "<i4", "UINT32": "<u4", "INT64": "<i8",
    "UINT64": "<u8", "BOOL": "?",
}  # fmt: skip


def schema() -> Any:
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


@functools.cache
def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@functools.cache
def small_fixtures() -> tuple[str, ...]:
    """Fixture names under :data:`SMALL` bytes that hold at least one sparse tensor."""
    names = sorted(p.name for p in FIXTURES.glob("*.tflite") if p.stat().st_size < SMALL)
    return tuple(n for n in names if read_sparse_tensors(fixture_bytes(n)))


@functools.cache
def _unpacked(name: str) -> Any:
    return schema().ModelT.InitFromPackedBuf(fixture_bytes(name), 0)


def unpack(name: str) -> Any:
    """A fresh ``ModelT`` of fixture ``name`` (deep copy of a cached parse)."""
    return copy.deepcopy(_unpacked(name))


def pack(model: Any) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


class _SharingBuilder:
    """Marker mixin: a builder that writes each object and NumPy array once (see pack_shared)."""


def _shared_pack(pack_method: Any) -> Any:
    def pack_once(self: Any, builder: Any) -> int:
        memo = getattr(builder, "shared_objects", None)
        if memo is None:
            return pack_method(self, builder)
        if id(self) not in memo:
            memo[id(self)] = (self, pack_method(self, builder))
        return memo[id(self)][1]

    pack_once.unshared = pack_method  # type: ignore[attr-defined]
    return pack_once


@functools.cache
def _sharing_builder_class() -> type:
    import flatbuffers

    tfl = schema()
    for name in dir(tfl):
        cls = getattr(tfl, name)
        if name.endswith("T") and isinstance(cls, type) and hasattr(cls, "Pack"):
            if not hasattr(cls.Pack, "unshared"):
                cls.Pack = _shared_pack(cls.Pack)

    class Builder(flatbuffers.Builder, _SharingBuilder):
        def __init__(self, size: int) -> None:
            super().__init__(size)
            self.shared_objects: dict[int, tuple[Any, int]] = {}
            self.shared_arrays: dict[int, tuple[Any, int]] = {}

        def CreateNumpyVector(self, x: Any) -> int:
            if id(x) not in self.shared_arrays:
                self.shared_arrays[id(x)] = (x, super().CreateNumpyVector(x))
            return self.shared_arrays[id(x)][1]

    return Builder


def pack_shared(model: Any) -> bytes:
    """Pack ``model`` writing every object (table) and NumPy array that it holds more than once
    only once: each further occurrence becomes a shared flatbuffer reference, which the format
    allows. ``graph.operators = [op] * 100_000`` costs a few bytes per operator."""
    builder = _sharing_builder_class()(4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def sparse_indices(model: Any) -> list[int]:
    return [i for i, t in enumerate(model.subgraphs[0].tensors) if t.sparsity is not None]


def tensor_name(model: Any, index: int) -> str:
    name = model.subgraphs[0].tensors[index].name
    return name.decode("utf-8", "replace") if name is not None else f"tensor {index}"


def type_name(code: int) -> str:
    names = {v: k for k, v in vars(schema().TensorType).items() if not k.startswith("_")}
    return names.get(code, str(code))


def densify_operator(model: Any) -> int:
    """Index of the first DENSIFY operator of subgraph 0."""
    densify = schema().BuiltinOperator.DENSIFY
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    operators = model.subgraphs[0].operators
    return next(o for o, op in enumerate(operators) if codes[op.opcodeIndex] == densify)


def densify_twice(model: Any, *, sparse_output: bool, name: bytes = b"densified/again") -> int:
    """Insert a DENSIFY of the first DENSIFY's output (LiteRT refuses such a model); the first
    one's consumers read the new output, a tensor named ``name``. With ``sparse_output`` the
    first output also gets the input's sparsity parameters. Returns the new operator's index."""
    graph = model.subgraphs[0]
    o = densify_operator(model)
    first = graph.operators[o]
    out = int(first.outputs[0])
    if sparse_output:
        graph.tensors[out].sparsity = copy.deepcopy(graph.tensors[first.inputs[0]].sparsity)
    again = copy.deepcopy(graph.tensors[out])
    again.name, again.sparsity = name, None
    graph.tensors.append(again)
    second = copy.deepcopy(first)
    second.inputs, second.outputs = [out], [len(graph.tensors) - 1]
    for op in graph.operators:
        op.inputs = [len(graph.tensors) - 1 if i == out else i for i in op.inputs]
    graph.operators.insert(o + 1, second)
    return o + 1


def read_case(model: Any, index: int) -> Case:
    """The tensor's current content as an editable :class:`Case` (read with the library)."""
    return Case.of(read_sparse_tensors(pack(model))[index])


def _index_vector(values: np.ndarray, choose: Chooser | None, original: int) -> tuple[int, Any]:
    """The union (type code, object) holding ``values``: the original type when it fits."""
    tfl = schema()
    fitting = [
        (name, dtype)
        for name, dtype in _VECTORS
        if values.size == 0
        or (int(values.min()) >= np.iinfo(dtype).min and int(values.max()) <= np.iinfo(dtype).max)
    ]
    codes = {getattr(tfl.SparseIndexVector, name): (name, dtype) for name, dtype in fitting}
    if original in codes:
        name, dtype = codes[original]
    elif fitting:
        name, dtype = pick(choose, fitting) if choose is not None else fitting[-1]
    else:  # beyond int32: what a file can hold of it
        name, dtype = "Int32Vector", np.int32
        values = values.astype(np.int64).clip(-(2**31), INT32_MAX)
    vector = getattr(tfl, f"{name}T")()
    vector.values = np.ascontiguousarray(values, dtype=dtype)
    return getattr(tfl.SparseIndexVector, name), vector


def write_case(model: Any, index: int, case: Case, choose: Chooser | None = None) -> None:
    """Write the (mutated) fields of ``case`` into tensor ``index`` of ``model``.

    Shape, traversal order, block map and dense sizes are int32 in the file: values beyond
    are clipped (the defects keep them in range for files). Index vectors keep their type when
    the values fit, else take one that does.
    """
    tfl = schema()
    tensor = model.subgraphs[0].tensors[index]
    tensor.shape = np.array(case.shape, np.int64).clip(-(2**31), INT32_MAX).astype(np.int32)
    sparsity = tensor.sparsity
    sparsity.traversalOrder = np.array(case.traversal_order, np.int64).astype(np.int32)
    sparsity.blockMap = np.array(case.block_map, np.int64).astype(np.int32)
    originals = list(sparsity.dimMetadata)
    metadata = []
    for k, fmt in enumerate(case.formats):
        meta = tfl.DimensionMetadataT()
        old = originals[k] if k < len(originals) else tfl.DimensionMetadataT()
        meta.format = {"DENSE": 0, "SPARSE_CSR": 1}.get(fmt, 0)
        size = case.dense_sizes[k]
        meta.denseSize = int(np.clip(size if isinstance(size, int) else 0, -(2**31), INT32_MAX))
        if fmt == "SPARSE_CSR":
            segments = case.positions[k] if case.positions[k] is not None else np.zeros(1, int)
            indices = case.coordinates[k] if case.coordinates[k] is not None else np.zeros(0, int)
            meta.arraySegmentsType, meta.arraySegments = _index_vector(
                np.asarray(segments), choose, old.arraySegmentsType
            )
            meta.arrayIndicesType, meta.arrayIndices = _index_vector(
                np.asarray(indices), choose, old.arrayIndicesType
            )
        metadata.append(meta)
    if case.extra_levels < 0:
        metadata = metadata[: case.extra_levels]
    metadata += [copy.deepcopy(metadata[-1]) for _ in range(max(case.extra_levels, 0))]
    sparsity.dimMetadata = metadata
    dtype = np.dtype(_TENSOR_DTYPES[type_name(tensor.type)])
    data = np.ascontiguousarray(case.values, dtype=dtype).view(np.uint8)
    model.buffers[tensor.buffer].data = data
    model.buffers[tensor.buffer].offset = model.buffers[tensor.buffer].size = 0


def decode_all(data: bytes) -> dict[int, SparseTensor]:
    """What a caller does with a model: read every sparse tensor and decode it to dense."""
    tensors = read_sparse_tensors(data)
    for t in tensors.values():
        t.to_dense()
    return tensors


def decode_consistent(data: bytes) -> None:
    """:func:`decode_all`, and every tensor read decodes to exactly what it stores."""
    for t in read_sparse_tensors(data).values():
        check_consistent(t)


def decode_and_check_graph(data: bytes) -> None:
    """:func:`decode_consistent`, then the graph checks ``import_model`` runs before TVM."""
    from sparse_import.adapters.tflite.graph import check_graph
    from sparse_import.adapters.tflite.loader import load_model

    decode_consistent(data)
    check_graph(load_model(data))


# ---------------------------------------------------------------------- file-only defects
def _metadata(model: Any, index: int) -> list[Any]:
    return model.subgraphs[0].tensors[index].sparsity.dimMetadata


def _sparse_levels(model: Any, index: int) -> list[int]:
    return [k for k, m in enumerate(_metadata(model, index)) if m.format == 1]


def union_type(model: Any, index: int, choose: Chooser) -> str | None:
    """An index vector whose union type code is NONE or beyond the enum."""
    levels = _sparse_levels(model, index)
    if not levels:
        return None
    k = pick(choose, levels)
    which = pick(choose, ["arraySegments", "arrayIndices"])
    code = pick(choose, [0, 4, 7, 255])
    setattr(_metadata(model, index)[k], which + "Type", code)
    field = "array_segments" if which == "arraySegments" else "array_indices"
    return rf"dim_metadata\[{k}\] {field}: unknown index vector type {code}, expected"


def union_missing(model: Any, index: int, choose: Chooser) -> str | None:
    levels = _sparse_levels(model, index)
    if not levels:
        return None
    k = pick(choose, levels)
    which = pick(choose, ["arraySegments", "arrayIndices"])
    setattr(_metadata(model, index)[k], which, None)
    field = "array_segments" if which == "arraySegments" else "array_indices"
    return rf"dim_metadata\[{k}\] {field}: the (Int32|Uint16|Uint8)Vector is missing"


def buffer_misaligned(model: Any, index: int, choose: Chooser) -> str | None:
    """A buffer whose length is not a whole number of values."""
    tensor = model.subgraphs[0].tensors[index]
    itemsize = np.dtype(_TENSOR_DTYPES[type_name(tensor.type)]).itemsize
    if itemsize == 1:
        return None
    buffer = model.buffers[tensor.buffer]
    data = buffer.data if buffer.data is not None else np.zeros(0, np.uint8)
    cut = choose.integer(1, itemsize - 1)
    if data.size >= cut and flag(choose):
        buffer.data = data[: data.size - cut]
    else:
        buffer.data = np.concatenate([data, np.zeros(cut, np.uint8)])
    return (
        rf"its buffer of {buffer.data.size} bytes is not a whole number of "
        rf"{type_name(tensor.type)} values"
    )


def unsupported_type(model: Any, index: int, choose: Chooser) -> str | None:
    tensor = model.subgraphs[0].tensors[index]
    tensor.type = pick(choose, [5, 8, 13, 14, 17, 18, 21, 99])
    return (
        rf"(values of type {type_name(tensor.type)} are not supported|"
        rf"unknown tensor type {tensor.type}$)"
    )


def buffer_index(model: Any, index: int, choose: Chooser) -> str | None:
    tensor = model.subgraphs[0].tensors[index]
    n = len(model.buffers)
    tensor.buffer = pick(choose, [n, n + 1, INT32_MAX, 2**32 - 1])
    return rf"buffer index {tensor.buffer} is out of range \[0, {n}\)"


def no_traversal_order(model: Any, index: int, choose: Chooser) -> str | None:
    sparsity = model.subgraphs[0].tensors[index].sparsity
    if flag(choose):
        sparsity.traversalOrder = None
    else:
        sparsity.dimMetadata = None
    return r"sparsity parameters need traversal_order and dim_metadata$"


def level_format(model: Any, index: int, choose: Chooser) -> str | None:
    metadata = _metadata(model, index)
    k = choose.integer(0, len(metadata) - 1)
    metadata[k].format = pick(choose, [2, 3, 127, -1])
    return rf"dim_metadata\[{k}\]: unknown format {metadata[k].format}, expected DENSE"


def quantization_lengths(model: Any, index: int, choose: Chooser) -> str | None:
    tfl = schema()
    tensor = model.subgraphs[0].tensors[index]
    scales = choose.integer(2, 5)
    zeros = pick(choose, [s for s in range(2, 7) if s != scales])
    quant = tensor.quantization or tfl.QuantizationParametersT()
    quant.scale = np.ones(scales, np.float32)
    quant.zeroPoint = np.zeros(zeros, np.int64)
    tensor.quantization = quant
    return rf"{scales} quantization scales but {zeros} zero points$"


def buffer_outside(model: Any, index: int, choose: Chooser) -> str | None:
    """A buffer stored "after the flatbuffer" (offset/size) at a range past the end of the file.

    Found by the structural check of the buffer table, so the message names the buffer (the
    pattern is anchored: the test then requires no tensor name).
    """
    tensor = model.subgraphs[0].tensors[index]
    buffer = model.buffers[tensor.buffer]
    size = 0 if buffer.data is None else int(buffer.data.size)
    buffer.data = None
    buffer.offset = pick(choose, [2**31, 2**40, 2**63 - 1])
    buffer.size = max(size, 1)
    return rf"^buffer {tensor.buffer}: {buffer.size} bytes at offset {buffer.offset} run past"


FILE_DEFECTS = {
    f.__name__: f
    for f in (
        union_type, union_missing, buffer_misaligned, unsupported_type, buffer_index,
        no_traversal_order, level_format, quantization_lengths, buffer_outside,
    )
}  # fmt: skip

# Case defects a file cannot express: its index vectors and shape are typed int vectors.
NOT_IN_FILES = frozenset({"index_dtype", "index_rank", "unknown_format"})


# ---------------------------------------------------------------------- object-API havoc
def havoc_model(model: Any, index: int, choose: Chooser) -> str:
    """1-4 random edits of tensor ``index``'s fields; returns what was edited."""
    tensor = model.subgraphs[0].tensors[index]
    edits = []
    for _ in range(choose.integer(1, 4)):
        metadata = tensor.sparsity.dimMetadata or []
        target = pick(choose, ["shape", "order", "block_map", "meta", "meta", "type", "buffer"])
        edits.append(target)
        if target == "shape" and tensor.shape is not None and tensor.shape.size:
            shape = tensor.shape.astype(np.int64)
            i = choose.integer(0, shape.size - 1)
            tensor.shape = (
                put(shape, i, interesting_int(choose, shape.tolist()))
                .clip(-(2**31), INT32_MAX)
                .astype(np.int32)
            )
        elif target == "order" and tensor.sparsity.traversalOrder is not None:
            order = np.array(tensor.sparsity.traversalOrder, np.int32)
            if order.size:
                order[choose.integer(0, order.size - 1)] = choose.integer(-1, order.size)
            tensor.sparsity.traversalOrder = order
        elif target == "block_map":
            tensor.sparsity.blockMap = np.array(
                [choose.integer(-1, 4) for _ in range(choose.integer(0, 2))], np.int32
            )
        elif target == "meta" and metadata:
            meta = metadata[choose.integer(0, len(metadata) - 1)]
            what = pick(choose, ["format", "size", "segtype", "idxtype", "segments", "indices"])
            if what == "format":
                meta.format = 1 - meta.format if meta.format in (0, 1) else 0
            elif what == "size":
                meta.denseSize = int(
                    np.clip(interesting_int(choose, [meta.denseSize]), -(2**31), INT32_MAX)
                )
            elif what in ("segtype", "idxtype"):  # same table, read as another vector type
                attr = "arraySegmentsType" if what == "segtype" else "arrayIndicesType"
                setattr(meta, attr, choose.integer(1, 3))
            else:
                vector = meta.arraySegments if what == "segments" else meta.arrayIndices
                if vector is not None and vector.values is not None and vector.values.size:
                    values = vector.values.copy()
                    i = choose.integer(0, values.size - 1)
                    info = np.iinfo(values.dtype)
                    values[i] = int(
                        np.clip(interesting_int(choose, [int(values[i])]), info.min, info.max)
                    )
                    vector.values = values
        elif target == "type":
            tensor.type = pick(choose, [0, 1, 2, 3, 6, 7, 9, 10, 16])
        elif target == "buffer" and flag(choose):  # values "after the flatbuffer": anywhere
            buffer = model.buffers[tensor.buffer]
            buffer.data = None
            buffer.offset, buffer.size = choose.integer(0, 4096), choose.integer(0, 512)
        elif target == "buffer":
            buffer = model.buffers[tensor.buffer]
            data = buffer.data if buffer.data is not None else np.zeros(0, np.uint8)
            cut = choose.integer(0, min(8, data.size))
            buffer.data = (
                data[: data.size - cut]
                if flag(choose)
                else np.concatenate([data, np.zeros(cut + 1, np.uint8)])
            )
    return ", ".join(edits)


# ---------------------------------------------------------------------- raw bytes
def mutate_bytes(data: bytes, choose: Chooser) -> bytes:
    """1-8 byte-level edits aimed at a flatbuffer's weak points: offsets, lengths, vtables."""
    out = bytearray(data)
    for _ in range(pick(choose, [1, 1, 2, 4, 8])):
        if len(out) < 16:
            break
        kind = choose.integer(0, 6)
        if kind == 0:  # truncate
            del out[choose.integer(8, len(out) - 1) :]
        elif kind == 1:  # a 32-bit offset or length
            at = choose.integer(0, (len(out) - 4) // 4) * 4
            value = pick(
                choose,
                [
                    0,
                    1,
                    4,
                    -4,
                    -1,
                    INT32_MAX,
                    -(2**31),
                    len(out),
                    len(out) - at,
                    choose.integer(-64, 64),
                ],
            )
            out[at : at + 4] = struct.pack("<i", value)
        elif kind == 2:  # a vtable entry
            at = choose.integer(0, (len(out) - 2) // 2) * 2
            out[at : at + 2] = struct.pack(
                "<H", pick(choose, [0, 2, 4, 6, 0xFFFF, choose.integer(0, 64)])
            )
        elif kind == 3:  # a bit
            at = choose.integer(0, len(out) - 1)
            out[at] ^= 1 << choose.integer(0, 7)
        elif kind == 4:  # a byte
            out[choose.integer(0, len(out) - 1)] = choose.integer(0, 255)
        elif kind == 5:  # copy a chunk over another
            n = choose.integer(1, 32)
            src, dst = choose.integer(0, len(out) - 1), choose.integer(0, len(out) - 1)
            out[dst : dst + n] = out[src : src + n]
        else:  # insert or delete a few bytes (shifts every later offset)
            at = choose.integer(8, len(out) - 1)
            if flag(choose):
                out[at:at] = bytes(choose.integer(1, 8))
            else:
                del out[at : at + choose.integer(1, 8)]
    return bytes(out)


# ---------------------------------------------------------------------- semantic mutations
def to_offset_layout(model: Any, align: int = 16) -> bytes:
    """Pack ``model`` with every non-empty buffer stored after the flatbuffer, as models over
    2 GB are: ``Buffer.offset`` (from the start of the file) and ``Buffer.size`` instead of
    ``Buffer.data``. Objects held more than once are shared (:func:`pack_shared`). ``model``
    is changed in place."""
    moved = []
    for buffer in model.buffers:
        if buffer.data is not None and len(buffer.data):
            moved.append((buffer, bytes(np.asarray(buffer.data, np.uint8))))
            buffer.data, buffer.offset, buffer.size = None, 2, len(moved[-1][1])
    head = pack_shared(model)  # uint64 fields: the same length whatever offsets are written
    position = -(-len(head) // align) * align
    for buffer, blob in moved:
        buffer.offset = position
        position += -(-len(blob) // align) * align
    out = bytearray(pack_shared(model))
    assert len(out) == len(head)
    for buffer, blob in moved:
        out += bytes(buffer.offset - len(out)) + blob
    return bytes(out)


def share_operators(model: Any, choose: Chooser) -> str:
    """Many entries of the operator vector pointing at one operator table (a shared reference),
    optionally with many inputs: legal in the format, a hang for a reader that does not bound
    its work. Pack with :func:`pack_shared`."""
    graph = model.subgraphs[0]
    op = pick(choose, graph.operators)
    extra = pick(choose, [0, 10, 1000, 20_000])
    if extra:
        op.inputs = np.concatenate([np.asarray(op.inputs, np.int32), np.zeros(extra, np.int32)])
    graph.operators = [op] * pick(choose, [2, 100, 10_000, 100_000])
    return "share_operators"


def share_tensors(model: Any, choose: Chooser) -> str:
    """Many tensors pointing at one tensor table: a sparse one (its sparsity parameters and
    buffer shared too) or any other."""
    graph = model.subgraphs[0]
    sparse = sparse_indices(model)
    index = (
        pick(choose, sparse)
        if sparse and flag(choose)
        else choose.integer(0, len(graph.tensors) - 1)
    )
    graph.tensors += [graph.tensors[index]] * pick(choose, [1, 50, 5_000, 50_000])
    return "share_tensors"


def share_sparsity(model: Any, choose: Chooser) -> str:
    """Copies of a sparse tensor (distinct tables and names) sharing one sparsity table and one
    buffer: each copy is a distinct tensor that decodes like the original."""
    graph = model.subgraphs[0]
    sparse = sparse_indices(model)
    if not sparse:
        return "share_sparsity (none)"
    source = graph.tensors[pick(choose, sparse)]
    for k in range(pick(choose, [1, 20, 500, 2_000])):
        twin = copy.copy(source)
        twin.name = source.name + f"/twin{k}".encode()
        graph.tensors.append(twin)
    return "share_sparsity"


def rename_onto(model: Any, choose: Chooser) -> str:
    """A used tensor renamed to the name of another used tensor."""
    graph = model.subgraphs[0]
    used = sorted(
        {int(i) for op in graph.operators for i in [*op.inputs, *op.outputs] if i >= 0}
        | {int(i) for i in graph.inputs}
        | {int(i) for i in graph.outputs}
    )
    a, b = pick(choose, used), pick(choose, used)
    if a != b:
        graph.tensors[b].name = graph.tensors[a].name
    return f"rename_onto {a} {b}"


def huge_dimension(model: Any, choose: Chooser) -> str:
    """A dimension of a few million or billion entries in a file of a few kilobytes."""
    graph = model.subgraphs[0]
    tensor = graph.tensors[choose.integer(0, len(graph.tensors) - 1)]
    shape = np.asarray(tensor.shape if tensor.shape is not None else [1], np.int64)
    if not shape.size:
        shape = np.ones(1, np.int64)
    shape[choose.integer(0, shape.size - 1)] = pick(choose, [2**20, 2**24, 2**30, INT32_MAX])
    tensor.shape = shape.astype(np.int32)
    return "huge_dimension"


def high_rank(model: Any, choose: Chooser) -> str:
    """A tensor of rank above NumPy's 64 (trailing dimensions of size 1)."""
    graph = model.subgraphs[0]
    tensor = graph.tensors[choose.integer(0, len(graph.tensors) - 1)]
    shape = np.asarray(tensor.shape if tensor.shape is not None else [], np.int32)
    extra = pick(choose, [65, 70, 200]) - shape.size
    tensor.shape = np.concatenate([shape, np.ones(max(extra, 1), np.int32)])
    return "high_rank"


SEMANTIC = {
    f.__name__: f
    for f in (
        share_operators,
        share_tensors,
        share_sparsity,
        rename_onto,
        huge_dimension,
        high_rank,
    )
}


def semantic_seeds(count: int = 24) -> list[bytes]:
    """Fixtures after one semantic mutation each (seeded), packed with shared references, and
    every small fixture in the offset layout: seeds for the coverage-guided target."""
    from .choice import RandomChooser

    out = [to_offset_layout(unpack(name)) for name in small_fixtures()]
    names, mutations = small_fixtures(), sorted(SEMANTIC)
    for i in range(count):
        model = unpack(names[i % len(names)])
        SEMANTIC[mutations[i % len(mutations)]](model, RandomChooser(i))
        out.append(pack_shared(model))
    return out
