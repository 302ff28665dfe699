""".tflite files that are legal flatbuffers but were hangs, crashes, refusals or silently wrong
graphs: shared references, ranks past NumPy's, complex values, buffers stored after the
flatbuffer, malformed ``DENSIFY`` and two tensors of one name.

Each family runs over the committed fixtures with seeded choices; the oracles are the unshared
or inline form of the same model (read by this library and run by LiteRT) and LiteRT's own
refusal.
"""

from __future__ import annotations

import copy
import re
import time

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from fuzz.choice import RandomChooser
from fuzz.tflite_model import (
    densify_operator,
    densify_twice,
    pack,
    pack_shared,
    rename_onto,
    schema,
    share_operators,
    small_fixtures,
    sparse_indices,
    tensor_name,
    to_offset_layout,
    unpack,
)
from sparse_import.adapters.tflite import import_model, load_model, read_sparse_tensors
from sparse_import.adapters.tflite.graph import check_graph
from sparse_import.adapters.tflite.loader import buffer_data

from sparse_import import SparseFormatError, UnsupportedModelError, UnsupportedSparsityError

BUDGET = r"reading the model takes more than \d+ units of work, more than its \d+ bytes hold"
DENSIFY_FIXTURES = ("fc_densify.tflite", "conv2d_densify.tflite", "handmade_csc_fc.tflite")
SECONDS = 1.0  # the most a refusal of a shared-reference file may take


def _litert_error(data: bytes) -> str | None:
    """LiteRT's refusal of ``data`` (``None`` when it prepares and runs the model)."""
    try:
        it = Interpreter(model_content=data)
        it.allocate_tensors()
        for detail in it.get_input_details():
            it.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
        it.invoke()
    except (RuntimeError, ValueError) as error:
        return str(error)
    return None


def _litert_outputs(data: bytes, seed: int) -> list[np.ndarray]:
    """LiteRT's builtin kernels (no delegates) on seeded random inputs."""
    it = Interpreter(
        model_content=data,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    it.allocate_tensors()
    rng = np.random.default_rng(seed)
    for detail in it.get_input_details():
        it.set_tensor(detail["index"], rng.random(detail["shape"]).astype(detail["dtype"]))
    it.invoke()
    return [it.get_tensor(d["index"]).copy() for d in it.get_output_details()]


def _same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for index in a:
        assert a[index].name == b[index].name
        np.testing.assert_array_equal(a[index].to_dense(), b[index].to_dense())


def _timed(call):
    start = time.perf_counter()
    try:
        return call(), time.perf_counter() - start
    except Exception as error:  # the caller checks the error
        return error, time.perf_counter() - start


# ---------------------------------------------------------------- shared references (hangs)
def test_a_megabyte_of_shared_operators_is_refused_at_once():
    """The reported hang: 250,000 operator entries pointing at one operator table (1 MB)."""
    model = unpack("fc_densify.tflite")
    model.subgraphs[0].operators = [model.subgraphs[0].operators[1]] * 250_000
    data = pack_shared(model)
    assert len(data) > 10**6
    for call in (lambda: read_sparse_tensors(data), lambda: import_model(data)):
        error, seconds = _timed(call)
        assert isinstance(error, SparseFormatError), error
        assert str(error).startswith("operator 0 of subgraph 0 (a table shared by 250000 entries)")
        assert seconds < SECONDS


@pytest.mark.parametrize("seed", range(12))
def test_shared_operators_are_refused_or_read_as_unshared(seed):
    """Any fixture, any operator shared any number of times with up to 20,000 extra inputs: a
    refusal naming the operator within a second, or the same sparse tensors as the unshared
    file holds."""
    fixture = small_fixtures()[seed % len(small_fixtures())]
    model = unpack(fixture)
    share_operators(model, RandomChooser(seed))
    data = pack_shared(model)
    result, seconds = _timed(lambda: read_sparse_tensors(data))
    assert seconds < SECONDS, seconds
    if isinstance(result, Exception):
        assert isinstance(result, SparseFormatError), result
        assert str(result).startswith("operator ") and " of subgraph 0" in str(result)
        assert re.search(BUDGET, str(result)), result
    else:
        _same_tensors(result, read_sparse_tensors(fixture_bytes_of(fixture)))


def fixture_bytes_of(fixture: str) -> bytes:
    return pack(unpack(fixture))


@pytest.mark.parametrize("seed", range(10))
def test_tensors_sharing_one_sparse_table_are_decoded_once(seed):
    """Copies of a sparse tensor sharing its table, or its sparsity parameters and buffer:
    within the budget each copy decodes as the original, and the copies cost one decode; past
    it, a refusal naming the tensor."""
    fixture = small_fixtures()[seed % len(small_fixtures())]
    model = unpack(fixture)
    index = sparse_indices(model)[seed % len(sparse_indices(model))]
    graph = model.subgraphs[0]
    same_table = seed % 2 == 0
    copies = (
        [3, 300, 30_000, 100_000, 5][seed // 2]
        if same_table
        else [3, 30, 300, 3_000][seed // 3 % 4]
    )
    for k in range(copies):
        twin = graph.tensors[index] if same_table else copy.copy(graph.tensors[index])
        if not same_table:
            twin.name = graph.tensors[index].name + f"/{k}".encode()
        graph.tensors.append(twin)
    data = pack_shared(model)
    result, seconds = _timed(lambda: read_sparse_tensors(data))
    assert seconds < 2 * SECONDS, seconds
    if isinstance(result, Exception):
        assert isinstance(result, SparseFormatError), result
        assert f"(index {index})" in str(result) or tensor_name(model, index) in str(result)
        assert "units of work" in str(result)
        return
    original = result[index]
    twins = [result[i] for i in range(len(graph.tensors) - copies, len(graph.tensors))]
    for twin in twins[:5]:
        np.testing.assert_array_equal(twin.to_dense(), original.to_dense())
        assert np.shares_memory(twin.values, original.values)  # decoded once, shared


def test_shared_shape_vectors_are_charged_per_tensor():
    """20,000 tensors sharing one 60-entry shape vector: refused by the budget (before the
    shape is checked 20,000 times) and fast."""
    model = unpack("fc_densify.tflite")
    graph = model.subgraphs[0]
    shape = np.ones(60, np.int32)
    for k in range(20_000):
        twin = copy.copy(graph.tensors[0])
        twin.name, twin.shape = f"extra/{k}".encode(), shape
        graph.tensors.append(twin)
    data = pack_shared(model)
    error, seconds = _timed(lambda: load_model(data))
    assert isinstance(error, SparseFormatError) and "units of work" in str(error), error
    assert seconds < SECONDS


@pytest.mark.parametrize("fixture", small_fixtures())
def test_honest_fixtures_stay_far_inside_the_budget(fixture):
    """Every committed fixture, and its offset-layout twin, reads within the budget."""
    read_sparse_tensors(fixture_bytes_of(fixture))
    read_sparse_tensors(to_offset_layout(unpack(fixture)))


# ----------------------------------------------------------------------- ranks past 64
@pytest.mark.parametrize("rank", [65, 70, 128])
@pytest.mark.parametrize("fixture", DENSIFY_FIXTURES)
def test_dense_tensor_of_rank_above_64_is_unsupported(rank, fixture):
    model = unpack(fixture)
    graph = model.subgraphs[0]
    index = next(i for i, t in enumerate(graph.tensors) if t.sparsity is None)
    graph.tensors[index].shape = np.ones(rank, np.int32)
    name = tensor_name(model, index)
    message = rf"^tensor '{name}' \(index {index}\): rank {rank} is above the 64 dimensions"
    for call in (load_model, import_model):
        with pytest.raises(UnsupportedModelError, match=message):
            call(pack(model))


@pytest.mark.parametrize("rank", [64, 65, 99])
@pytest.mark.parametrize("fixture", DENSIFY_FIXTURES)
def test_sparse_tensor_of_rank_above_64_is_unsupported(rank, fixture):
    """Trailing dimensions of size 1 up to ``rank``: rank 64 decodes as the original, above is
    refused naming the tensor."""
    tfl = schema()
    model = unpack(fixture)
    index = sparse_indices(model)[0]
    tensor = model.subgraphs[0].tensors[index]
    old_rank, extra = len(tensor.shape), rank - len(tensor.shape)
    order = np.asarray(tensor.sparsity.traversalOrder, np.int32)  # block parts move up
    tensor.shape = np.concatenate([tensor.shape, np.ones(extra, np.int32)])
    tensor.sparsity.traversalOrder = np.concatenate(
        [np.where(order < old_rank, order, order + extra), np.arange(old_rank, rank)]
    ).astype(np.int32)
    for _ in range(extra):
        meta = tfl.DimensionMetadataT()
        meta.format, meta.denseSize = 0, 1
        tensor.sparsity.dimMetadata.append(meta)
    if rank == 64:
        original = read_sparse_tensors(fixture_bytes_of(fixture))[index].to_dense()
        padded = read_sparse_tensors(pack(model))[index].to_dense()
        np.testing.assert_array_equal(padded.reshape(original.shape), original)
        return
    with pytest.raises(
        UnsupportedSparsityError,
        match=rf"^sparse tensor '{tensor_name(model, index)}': rank {rank} is above the 64",
    ):
        read_sparse_tensors(pack(model))


# ----------------------------------------------------------------------- complex values
@pytest.mark.parametrize("type_name", ["COMPLEX64", "COMPLEX128"])
@pytest.mark.parametrize("fixture", DENSIFY_FIXTURES)
def test_complex_sparse_values_are_unsupported(type_name, fixture):
    model = unpack(fixture)
    index = sparse_indices(model)[0]
    model.subgraphs[0].tensors[index].type = getattr(schema().TensorType, type_name)
    message = rf"^sparse tensor '{tensor_name(model, index)}': values of type {type_name} are not"
    for call in (read_sparse_tensors, import_model):
        with pytest.raises(UnsupportedSparsityError, match=message):
            call(pack(model))


# ------------------------------------------------------------ buffers after the flatbuffer
@pytest.mark.parametrize("fixture", small_fixtures())
def test_offset_buffers_read_as_inline_ones(fixture):
    """Every buffer moved after the flatbuffer (``offset``/``size``, as in models over 2 GB):
    LiteRT computes the same outputs, and every sparse tensor and buffer reads the same."""
    inline = fixture_bytes_of(fixture)
    moved = to_offset_layout(unpack(fixture))
    reference = _litert_outputs(inline, 0)
    # LiteRT reads a sparse tensor that no DENSIFY or FULLY_CONNECTED expects as dense bytes
    # (fp16_block1x4_dequantize): its outputs are then not even repeatable, so no oracle.
    if all(
        np.array_equal(a, b) for a, b in zip(reference, _litert_outputs(inline, 0), strict=True)
    ):
        for a, b in zip(reference, _litert_outputs(moved, 0), strict=True):
            np.testing.assert_array_equal(a, b)
    _same_tensors(read_sparse_tensors(moved), read_sparse_tensors(inline))
    a, b = load_model(inline), load_model(moved)
    assert a.BuffersLength() == b.BuffersLength()
    for i in range(a.BuffersLength()):
        np.testing.assert_array_equal(buffer_data(a, i), buffer_data(b, i))


def test_offset_buffer_past_the_end_is_reported():
    data = bytearray(to_offset_layout(unpack("fc_densify.tflite")))
    cut = bytes(data[: len(data) - 8])
    with pytest.raises(SparseFormatError, match=r"^buffer \d+: \d+ bytes at offset \d+ run past"):
        load_model(cut)


@pytest.mark.parametrize(
    "fixture", ["fc_densify.tflite", "handmade_csc_fc.tflite", "cnn_int8.tflite", "mlp_fp16.tflite"]
)
def test_offset_buffers_import_as_inline_ones(fixture):
    """Dense constants stored after the flatbuffer reach TVM's frontend as inline ones do."""
    inline = import_model(fixture_bytes_of(fixture))
    moved = import_model(to_offset_layout(unpack(fixture)))
    assert inline.params.keys() == moved.params.keys()
    for key in inline.params:
        np.testing.assert_array_equal(inline.params[key].numpy(), moved.params[key].numpy())
    assert str(inline.mod) == str(moved.mod)


# ---------------------------------------------------------------------- malformed DENSIFY
def _dense_constant_input(model) -> int:
    graph = model.subgraphs[0]
    constant = next(
        i
        for i, t in enumerate(graph.tensors)
        if t.sparsity is None and model.buffers[t.buffer].data is not None
    )
    graph.operators[densify_operator(model)].inputs = [constant]
    return densify_operator(model)


def _graph_input(model) -> int:
    graph = model.subgraphs[0]
    source = graph.tensors[graph.operators[densify_operator(model)].inputs[0]]
    graph.tensors[graph.inputs[0]].sparsity = copy.deepcopy(source.sparsity)
    graph.operators[densify_operator(model)].inputs = [graph.inputs[0]]
    return densify_operator(model)


def _two_inputs(model) -> int:
    op = model.subgraphs[0].operators[densify_operator(model)]
    op.inputs = [op.inputs[0], op.inputs[0]]
    return densify_operator(model)


DENSIFY_DEFECTS = {
    "chain": (lambda m: densify_twice(m, sparse_output=False), "has no sparsity parameters"),
    "chain of a sparse output": (
        lambda m: densify_twice(m, sparse_output=True),
        r"is the output of operator \d+",
    ),
    "dense constant": (_dense_constant_input, "has no sparsity parameters"),
    "graph input": (_graph_input, "is a graph input"),
    "two inputs": (_two_inputs, "expected one tensor each"),
}


@pytest.mark.parametrize("defect", list(DENSIFY_DEFECTS))
@pytest.mark.parametrize("fixture", DENSIFY_FIXTURES)
def test_malformed_densify_is_refused_as_litert_refuses_it(defect, fixture):
    change, problem = DENSIFY_DEFECTS[defect]
    model = unpack(fixture)
    o = change(model)
    data = pack(model)
    assert _litert_error(data) is not None  # the oracle: LiteRT refuses it too
    message = rf"^operator {o} \(DENSIFY\) of subgraph 0: .*{problem}"
    with pytest.raises(SparseFormatError, match=message):
        import_model(data)


@pytest.mark.parametrize("fixture", small_fixtures())
def test_every_fixture_passes_the_graph_checks(fixture):
    check_graph(load_model(fixture_bytes_of(fixture)))


# ------------------------------------------------------------------ two tensors, one name
@pytest.mark.parametrize("seed", range(16))
def test_a_used_tensor_renamed_onto_another_is_refused(seed):
    """TVM's frontend keys tensors by name: a second tensor of one name would silently read the
    first. Both tensors are named in the refusal."""
    fixture = small_fixtures()[seed % len(small_fixtures())]
    model = unpack(fixture)
    what = rename_onto(model, RandomChooser(seed))
    a, b = map(int, what.split()[1:])
    if a == b:
        check_graph(load_model(pack(model)))
        return
    first, second = sorted((a, b))
    name = tensor_name(model, a)
    with pytest.raises(
        UnsupportedModelError,
        match=rf"^tensor '{name}' \(index {second}\): tensor {first} has the same name",
    ):
        import_model(pack(model))
