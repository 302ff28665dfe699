"""Malformed .tflite input: a clear error that names the tensor, never a crash or a hang.

Semantic corruptions are made with LiteRT's flatbuffer object API (the file stays a valid
flatbuffer); structural ones edit the bytes (truncation, bad offsets, random byte flips).
"""

from __future__ import annotations

import re
import struct

import numpy as np
import pytest
import tflite
import tvm
from ai_edge_litert import schema_py_generated as schema
from sparse_import.adapters.tflite import import_model, load_model, read_sparse_tensors
from tflite_support import FIXTURES, edit, fixture_bytes

from sparse_import import (
    DenseLimitError,
    SparseFormatError,
    UnsupportedModelError,
    UnsupportedSparsityError,
)

CSR = "handmade_densify_output.tflite"  # fc/weight (10, 16): DENSE rows, SPARSE_CSR columns
LABEL = "sparse tensor 'fc/weight'"


def _sparse(model: schema.ModelT) -> schema.TensorT:
    (tensor,) = [t for t in model.subgraphs[0].tensors if t.sparsity is not None]
    return tensor


def _metadata(model: schema.ModelT, level: int) -> schema.DimensionMetadataT:
    return _sparse(model).sparsity.dimMetadata[level]


def _set(obj: object, **fields: object) -> None:
    for key, value in fields.items():
        setattr(obj, key, value)


def _decreasing_segments(model):
    segments = _metadata(model, 1).arraySegments.values
    segments[1] = segments[2] + 1


def _index_out_of_range(model):
    _metadata(model, 1).arrayIndices.values[0] = 16


def _values_short(model):
    buffer = model.buffers[_sparse(model).buffer]
    buffer.data = buffer.data[:-4]


def _values_ragged(model):
    buffer = model.buffers[_sparse(model).buffer]
    buffer.data = buffer.data[:-1]


def _huge_dense_shape(model):
    tensor = _sparse(model)
    tensor.shape = [1 << 30, 16]
    _metadata(model, 0).denseSize = 1 << 30


def _no_sparsity_behind_densify(model):
    tensor = _sparse(model)
    tensor.sparsity = None
    model.buffers[tensor.buffer].data = np.zeros(10 * 16 * 4, np.uint8)


def _short_dense_constant(model):
    (bias,) = [t for t in model.subgraphs[0].tensors if t.name == b"fc/bias"]
    buffer = model.buffers[bias.buffer]
    buffer.data = buffer.data[:-4]


SEMANTIC = {
    "segments decrease": (
        _decreasing_segments,
        SparseFormatError,
        rf"{LABEL}: level 1 \(d1 : compressed\): positions decrease at 2",
    ),
    "index out of range": (
        _index_out_of_range,
        SparseFormatError,
        rf"{LABEL}: level 1 \(d1 : compressed\): coordinates\[0\] = 16 is out of bounds \[0, 16\)",
    ),
    "values shorter than the metadata": (
        _values_short,
        SparseFormatError,
        rf"{LABEL}: \d+ stored values, but the levels describe \d+",
    ),
    "values not a whole number": (
        _values_ragged,
        SparseFormatError,
        rf"{LABEL}: its buffer of \d+ bytes is not a whole number of FLOAT32 values",
    ),
    "unknown index vector type": (
        lambda m: _set(_metadata(m, 1), arraySegmentsType=9),
        SparseFormatError,
        rf"{LABEL}: dim_metadata\[1\] array_segments: unknown index vector type 9, expected "
        r"Int32Vector \(1\), Uint16Vector \(2\), Uint8Vector \(3\)",
    ),
    "index vector type NONE": (
        lambda m: _set(_metadata(m, 1), arrayIndicesType=0),
        SparseFormatError,
        rf"{LABEL}: dim_metadata\[1\] array_indices: unknown index vector type 0",
    ),
    "unknown level format": (
        lambda m: _set(_metadata(m, 0), format=3),
        SparseFormatError,
        rf"{LABEL}: dim_metadata\[0\]: unknown format 3, expected DENSE \(0\) or SPARSE_CSR \(1\)",
    ),
    "dense size over the limit": (
        _huge_dense_shape,
        DenseLimitError,
        rf"{LABEL}: dense form of shape \(1073741824, 16\) \(float32\) needs 68719476736 bytes, "
        "over the dense byte limit",
    ),
    "missing traversal order": (
        lambda m: _set(_sparse(m).sparsity, traversalOrder=None),
        SparseFormatError,
        rf"{LABEL}: sparsity parameters need traversal_order and dim_metadata",
    ),
    "traversal order not a permutation": (
        lambda m: _set(_sparse(m).sparsity, traversalOrder=[0, 0]),
        SparseFormatError,
        rf"{LABEL}: traversal_order \[0, 0\] is not a permutation of range\(2\)",
    ),
    "negative dimension": (
        lambda m: _set(_sparse(m), shape=[-1, 16]),
        SparseFormatError,
        rf"{LABEL}: shape\[0\] = -1 is negative",
    ),
    "unsupported value type": (
        lambda m: _set(_sparse(m), type=schema.TensorType.INT4),
        UnsupportedSparsityError,
        rf"{LABEL}: values of type INT4 are not supported",
    ),
}


@pytest.mark.parametrize("case", list(SEMANTIC))
def test_corrupt_sparsity_parameters_are_reported(case):
    change, error, message = SEMANTIC[case]
    model = edit(fixture_bytes(CSR), change)
    with pytest.raises(error, match=message):
        read_sparse_tensors(model)
    with pytest.raises(error, match=message):
        import_model(model)


def test_densify_of_a_tensor_without_sparsity_is_reported():
    model = edit(fixture_bytes(CSR), _no_sparsity_behind_densify)
    with pytest.raises(
        SparseFormatError,
        match=r"operator 0 \(DENSIFY\) of subgraph 0: input tensor 'fc/weight' \(index 0\) has no "
        r"sparsity parameters; DENSIFY needs a constant sparse tensor",
    ):
        import_model(model)


def test_dense_constant_of_the_wrong_size_is_reported():
    model = edit(fixture_bytes(CSR), _short_dense_constant)
    with pytest.raises(
        SparseFormatError,
        match=r"tensor 'fc/bias' \(index \d+\): its buffer holds 36 bytes, but shape \(10,\) of "
        "FLOAT32 needs 40",
    ):
        import_model(model)


# ---------------------------------------------------------------------------- bytes
STRUCTURAL = (
    r"^(TFLite model|subgraph \d+|tensor .*|buffer \d+|operator .*|sparse tensor '.*'.*): "
    r"(truncated or corrupt flatbuffer|.*lies outside|.*runs past|.*does not fit|vtable)"
)


@pytest.mark.parametrize("name", ["fc_block1x4.tflite", "handmade_csc_fc.tflite"])
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99, 0.999])
def test_truncated_models_are_reported(name, keep):
    data = fixture_bytes(name)
    cut = data[: int(len(data) * keep)]
    with pytest.raises(SparseFormatError, match=STRUCTURAL):
        load_model(cut)
    with pytest.raises(SparseFormatError, match=STRUCTURAL):
        import_model(cut)


def _sparse_tables(data: bytes) -> tuple[object, object]:
    """The sparsity table and the array_indices vector table of fc/weight."""
    model = tflite.Model.GetRootAs(data, 0)
    graph = model.Subgraphs(0)
    (tensor,) = [
        graph.Tensors(i) for i in range(graph.TensorsLength()) if graph.Tensors(i).Sparsity()
    ]
    sparsity = tensor.Sparsity()
    indices = tflite.Uint8Vector()
    table = sparsity.DimMetadata(1).ArrayIndices()
    indices.Init(table.Bytes, table.Pos)
    return sparsity, indices


def _poke(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def test_vtable_offset_outside_the_model_is_reported():
    data = fixture_bytes(CSR)
    sparsity, _ = _sparse_tables(data)
    pos = sparsity._tab.Pos
    bad = _poke(data, pos, "<i", pos + 1000)  # vtable = pos - soffset: before the buffer
    with pytest.raises(
        SparseFormatError,
        match=rf"tensor 'fc/weight' \(index 0\): sparsity parameters: vtable offset -1000 lies "
        rf"outside the {len(data)}-byte model",
    ):
        load_model(bad)


def test_vector_length_past_the_end_is_reported():
    data = fixture_bytes(CSR)
    _, indices = _sparse_tables(data)
    tab = indices._tab
    length_at = tab.Vector(tab.Offset(4)) - 4
    bad = _poke(data, length_at, "<I", 0x7FFFFFFF)
    with pytest.raises(
        SparseFormatError,
        match=rf"{LABEL}: truncated or corrupt flatbuffer \(.*\)",
    ):
        read_sparse_tensors(bad)


def test_shape_vector_past_the_end_of_a_non_constant_tensor_is_reported():
    """TVM's frontend reads every tensor's shape; the model input has no buffer to check."""
    data = fixture_bytes(CSR)
    graph = tflite.Model.GetRootAs(data, 0).Subgraphs(0)
    index = int(graph.InputsAsNumpy()[0])
    tab = graph.Tensors(index)._tab
    start = tab.Vector(tab.Offset(4))
    length = (len(data) - start) // 4 + 1  # fits the model's size, not its end
    bad = _poke(data, start - 4, "<I", length)
    name = re.escape(graph.Tensors(index).Name().decode())
    with pytest.raises(
        SparseFormatError,
        match=rf"^tensor '{name}' \(index {index}\): shape: vector of {length} elements at "
        rf"{start} runs past the {len(data)}-byte model$",
    ):
        load_model(bad)
    with pytest.raises(SparseFormatError, match=r": shape: vector of"):
        import_model(bad)


def test_level_count_past_the_end_is_reported():
    data = fixture_bytes(CSR)
    sparsity, _ = _sparse_tables(data)
    tab = sparsity._tab
    length_at = tab.Vector(tab.Offset(8)) - 4
    bad = _poke(data, length_at, "<I", 0x3FFFFFFF)
    with pytest.raises(
        SparseFormatError,
        match=rf"{LABEL}: dim_metadata: vector length 1073741823 does not fit in the "
        rf"{len(data)}-byte model",
    ):
        read_sparse_tensors(bad)


def _vtable(data: bytes) -> tuple[int, int]:
    """Position of fc/weight's sparsity table and of its vtable."""
    sparsity, _ = _sparse_tables(data)
    pos = sparsity._tab.Pos
    return pos, pos - struct.unpack_from("<i", data, pos)[0]


def test_malformed_vtables_are_reported():
    data = fixture_bytes(CSR)
    pos, vtable = _vtable(data)
    what = r"tensor 'fc/weight' \(index 0\): sparsity parameters"
    cases = [
        (_poke(data, vtable, "<H", 3), rf"{what}: vtable of 3 bytes at {vtable} is malformed"),
        (
            _poke(data, vtable + 2, "<H", 0xFFFF),
            rf"{what}: table of 65535 bytes at {pos} runs past the {len(data)}-byte model",
        ),
        (
            _poke(data, vtable + 4, "<H", 0xFFF0),
            rf"{what}: field offset 65520 lies outside its table",
        ),
    ]
    for bad, message in cases:
        with pytest.raises(SparseFormatError, match=message):
            load_model(bad)


def _set_tensor(name: bytes, **fields: object):
    def change(model):
        (tensor,) = [t for t in model.subgraphs[0].tensors if t.name == name]
        _set(tensor, **fields)

    return change


def _set_operator(**fields: object):
    return lambda model: _set(model.subgraphs[0].operators[0], **fields)


def _external_buffer_past_the_end(model):
    buffer = model.buffers[_sparse(model).buffer]
    buffer.data, buffer.offset, buffer.size = None, 1 << 20, 100


GRAPH = {
    "unknown tensor type": (
        _set_tensor(b"x", type=99),
        r"tensor 'x' \(index 2\): unknown tensor type 99",
    ),
    "buffer index out of range": (
        _set_tensor(b"fc/bias", buffer=99),
        r"tensor 'fc/bias' \(index 3\): buffer index 99 is out of range \[0, 3\)",
    ),
    "operator code index out of range": (
        _set_operator(opcodeIndex=7),
        r"operator 0 of subgraph 0: operator code index 7 is out of range \[0, 2\)",
    ),
    "operator input out of range": (
        _set_operator(inputs=[50]),
        r"operator 0 of subgraph 0 inputs: tensor index 50 is out of range \[0, 5\)",
    ),
    "graph output out of range": (
        lambda model: _set(model.subgraphs[0], outputs=[4, 9]),
        r"subgraph 0 outputs: tensor index 9 is out of range \[0, 5\)",
    ),
    "values stored past the end": (
        _external_buffer_past_the_end,
        r"buffer 1: 100 bytes at offset 1048576 run past the \d+-byte model",
    ),
}


@pytest.mark.parametrize("case", list(GRAPH))
def test_inconsistent_graphs_are_reported(case):
    change, message = GRAPH[case]
    with pytest.raises(SparseFormatError, match=message):
        import_model(edit(fixture_bytes(CSR), change))


@pytest.mark.parametrize("name", [CSR, "fc_block1x4.tflite"])
def test_random_byte_flips_never_escape_as_other_errors(name):
    """Every flip either still reads or raises one of the library's errors."""
    data = fixture_bytes(name)
    rng = np.random.default_rng(7)
    for _ in range(300):
        bad = bytearray(data)
        for at in rng.integers(0, len(data), size=3):
            bad[at] = int(rng.integers(0, 256))
        try:
            read_sparse_tensors(bytes(bad))
        except (SparseFormatError, UnsupportedSparsityError, UnsupportedModelError):
            pass


# ---------------------------------------------------------------------------- not a model
def test_bytes_without_the_file_identifier_are_rejected():
    with pytest.raises(
        UnsupportedModelError,
        match=r"^16 bytes are not a TFLite model: the file identifier is b'\\x00ABC', "
        r"expected b'TFL3'$",
    ):
        import_model(b"1234\x00ABC" + bytes(8))


def test_missing_file_is_rejected(tmp_path):
    with pytest.raises(UnsupportedModelError, match=r"model file '.*nope.tflite' does not exist"):
        import_model(tmp_path / "nope.tflite")


def test_other_objects_are_rejected():
    with pytest.raises(
        UnsupportedModelError,
        match=r"cannot read a int as a TFLite model: expected a .tflite path, its bytes or a "
        r"tflite.Model",
    ):
        import_model(42)


def test_models_with_several_subgraphs_are_rejected():
    def duplicate_graph(model):
        model.subgraphs.append(model.subgraphs[0])

    with pytest.raises(UnsupportedModelError, match=r"the model has 2 subgraphs"):
        import_model(edit(fixture_bytes(CSR), duplicate_graph))


def test_file_identifier_check_reads_files_too(tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"\x00" * 32)
    with pytest.raises(UnsupportedModelError, match=r"is not a TFLite model"):
        load_model(path)
    assert (FIXTURES / CSR).exists()


# ---------------------------------------------------------------------------- quantized ops
def _retype_hybrid_weight(model):
    """The 1x16-block weight of the hybrid model becomes uint8 (same bytes)."""
    graph = model.subgraphs[0]
    (weight,) = [
        t
        for t in graph.tensors
        if t.sparsity is not None and t.sparsity.blockMap is not None and len(t.sparsity.blockMap)
    ]
    weight.type = schema.TensorType.UINT8


def test_hybrid_fully_connected_with_uint8_weights_is_refused():
    model = edit(fixture_bytes("fc_hybrid_block1x16.tflite"), _retype_hybrid_weight)
    with pytest.raises(
        UnsupportedModelError,
        match=r"^model: TVM's TFLite frontend cannot convert it: OpNotImplemented: hybrid "
        r"FULLY_CONNECTED \(float input, quantized weight\) is converted for int8 "
        r"weights only, not uint8",
    ) as info:
        import_model(model)
    assert isinstance(info.value.__cause__, tvm.error.OpNotImplemented)


def _quantize_conv_weights(model):
    """Mark each CONV_2D weight as quantized while its input stays float (dynamic range)."""
    graph = model.subgraphs[0]
    for op in graph.operators:
        if len(op.inputs) == 3 and len(graph.tensors[op.inputs[1]].shape) == 4:
            quantization = schema.QuantizationParametersT()
            quantization.scale, quantization.zeroPoint = [1.0], [0]
            graph.tensors[op.inputs[1]].quantization = quantization


def test_hybrid_conv_with_one_weight_scale_is_refused_by_name():
    """Hybrid CONV_2D is converted for per-channel int8 weights; one scale for all channels is
    refused (LiteRT itself computes inf for such files)."""
    model = edit(fixture_bytes("conv2d_densify.tflite"), _quantize_conv_weights)
    with pytest.raises(
        UnsupportedModelError,
        match=r"^model: TVM's TFLite frontend cannot convert it: OpNotImplemented: hybrid "
        r"CONV_2D \(float input, quantized weight\) is converted for int8 weights with one scale "
        r"per output channel, not float32 with 1 scale\(s\) for \d+ channels",
    ):
        import_model(model)
