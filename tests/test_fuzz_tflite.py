"""Fuzzing ``.tflite`` files: every damaged model ends as a documented error, valid ones decode.

Three kinds of damage, all starting from the committed fixtures:

- targeted defects written into one sparse tensor through LiteRT's object API (Hypothesis);
  the message must name the tensor and the problem;
- random edits of a sparse tensor's fields, union type codes, type and buffer (Hypothesis);
- random byte edits of the serialized file (seeded, thousands of cases).

Valid models in random layouts are written the same way and decoded by LiteRT's own DENSIFY
kernel as the oracle.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from fuzz.choice import HypothesisChooser, RandomChooser, pick
from fuzz.fields import DEFECTS, FUZZ_DENSE_LIMIT, Case
from fuzz.outcomes import TALLY, attempt, fuzz_report, memory_cap  # noqa: F401  (fixture)
from fuzz.tflite_model import (
    FILE_DEFECTS,
    INT32_MAX,
    NOT_IN_FILES,
    SEMANTIC,
    decode_all,
    decode_and_check_graph,
    decode_consistent,
    fixture_bytes,
    havoc_model,
    mutate_bytes,
    pack,
    pack_shared,
    small_fixtures,
    sparse_indices,
    tensor_name,
    to_offset_layout,
    unpack,
    write_case,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sparse_import.adapters.tflite import import_model, read_sparse_tensors
from strategies import dense_arrays, layouts

from sparse_import import LevelPart, SparseFormatError, SparseTensor, dense_byte_limit

pytestmark = pytest.mark.usefixtures("fuzz_report")

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def _bounded():
    with dense_byte_limit(FUZZ_DENSE_LIMIT), memory_cap():
        yield


@functools.cache
def _base(fixture: str, index: int) -> SparseTensor:
    return read_sparse_tensors(fixture_bytes(fixture))[index]


@st.composite
def sparse_slots(draw) -> tuple[str, int]:
    """A fixture and the index of one of its sparse tensors."""
    fixture = draw(st.sampled_from(small_fixtures()))
    index = draw(st.sampled_from(sparse_indices(unpack(fixture))))
    return fixture, index


@FUZZ
@given(sparse_slots(), st.data())
def test_field_defects_in_files_are_rejected_naming_the_tensor(slot, data):
    fixture, index = slot
    choose = HypothesisChooser(data)
    base = Case.of(_base(fixture, index))
    base.dim_limit = INT32_MAX
    for name, defect in DEFECTS.items():
        if name in NOT_IN_FILES or not defect.applies(base):
            continue
        case = Case.of(_base(fixture, index))
        case.dim_limit = INT32_MAX
        expect = defect.apply(case, choose)
        model = unpack(fixture)
        write_case(model, index, case, choose)
        blob = pack(model)
        tensor = tensor_name(model, index)
        attempt(
            "tflite",
            lambda d=blob: decode_all(d),
            names=[tensor],
            expect=expect,
            what=f"{name} on {fixture} tensor {index}",
        )


@FUZZ
@given(sparse_slots(), st.data())
def test_file_defects_are_rejected_naming_the_tensor(slot, data):
    """Union type codes, missing vectors, misaligned buffers, types, indices, quantization.

    A pattern anchored with ``^`` names the damaged table itself (a buffer), not the tensor.
    """
    fixture, index = slot
    choose = HypothesisChooser(data)
    for name, defect in FILE_DEFECTS.items():
        model = unpack(fixture)
        expect = defect(model, index, choose)
        if expect is None:
            continue
        blob = pack(model)
        tensor = tensor_name(model, index)
        attempt(
            "tflite",
            lambda d=blob: decode_all(d),
            names=[] if expect.startswith("^") else [tensor],
            expect=expect,
            what=f"{name} on {fixture} tensor {index}",
        )


@FUZZ
@given(sparse_slots(), st.data())
def test_field_havoc_in_files_is_rejected_or_consistent(slot, data):
    fixture, index = slot
    choose = HypothesisChooser(data)
    for _ in range(6):
        model = unpack(fixture)
        edits = havoc_model(model, index, choose)
        blob = pack(model)
        attempt(
            "tflite",
            lambda d=blob: decode_consistent(d),  # the buffer table may be what is named
            what=f"{edits} on {fixture} tensor {index}",
        )


BYTE_CASES = 4000


def test_byte_mutations_are_rejected_or_consistent():
    """Seeded byte-level damage of every small fixture: nothing escapes, nothing hangs."""
    choose = RandomChooser(20261123)
    fixtures = small_fixtures()
    for i in range(BYTE_CASES):
        fixture = pick(choose, fixtures)
        data = mutate_bytes(fixture_bytes(fixture), choose)
        attempt("tflite", lambda d=data: decode_consistent(d), what=f"byte case {i} of {fixture}")


def test_not_a_model_at_all():
    for data in (
        b"",
        b"TFL3",
        b"\x00" * 7,
        b"PK\x03\x04" + bytes(60),
        fixture_bytes("handmade_csc_fc.tflite")[:4] + b"ONNX" + bytes(40),
    ):
        attempt(
            "tflite",
            lambda d=data: read_sparse_tensors(d),
            expect=r"are not a TFLite model: the file identifier is",
        )


# --------------------------------------------------------------------- the whole import path
@pytest.mark.parametrize(
    "defect",
    [
        "index_out_of_range",
        "positions_decrease",
        "values_short",
        "traversal_not_permutation",
        "dense_bomb",
    ],
)
def test_import_model_rejects_before_tvm_converts(defect, monkeypatch):
    """``import_model`` reads and checks every sparse tensor before TVM sees the graph."""
    from sparse_import.adapters.tflite import converter

    def never(*args, **kwargs):
        raise AssertionError("TVM's frontend ran on a malformed model")

    monkeypatch.setattr(converter, "from_tflite", never)
    fixture, index = "fc_densify.tflite", 2
    case = Case.of(_base(fixture, index))
    case.dim_limit = INT32_MAX
    expect = DEFECTS[defect].apply(case, RandomChooser(7))
    model = unpack(fixture)
    write_case(model, index, case)
    with pytest.raises(SparseFormatError, match=expect):
        import_model(pack(model))
    TALLY.add("tflite", "rejected")


# --------------------------------------------------------------------- valid files: never changed
@functools.cache
def _densify_only() -> bytes:
    """``handmade_densify_output`` cut to its DENSIFY: constant sparse tensor 0 -> output 1."""
    model = unpack("handmade_densify_output.tflite")
    graph = model.subgraphs[0]
    graph.operators = graph.operators[:1]
    graph.inputs = np.zeros(0, np.int32)
    graph.outputs = np.array([1], np.int32)
    return pack(model)


def _litert_densify(data: bytes) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_content=data,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def _in_block_last(level) -> tuple[bool, int]:
    element = level.part is LevelPart.ELEMENT
    return element, level.dim if element else 0


@settings(max_examples=150, deadline=None)
@given(layouts(tflite=True), st.data())
def test_valid_files_in_random_layouts_decode_as_litert_does(layout, data):
    """Any valid layout, any index vector types: decoded exactly as LiteRT's DENSIFY kernel.

    LiteRT's kernel needs the in-block levels last, in ``block_map`` order: it takes block
    ``j``'s size from level ``traversal_order[n + j]`` instead of from the level holding block
    ``j``, right only when the in-block order is its own inverse (the schema allows any order;
    with blocks of unequal sizes LiteRT drops values). The drawn layout is reordered that way.
    """
    shape, levels = layout
    levels = tuple(sorted(levels, key=_in_block_last))
    dense = data.draw(dense_arrays(shape, dtypes=[np.float32]))
    case = Case.of(SparseTensor.from_dense(dense, levels, name="fc/weight"))
    from fuzz.tflite_model import schema

    model = schema().ModelT.InitFromPackedBuf(_densify_only(), 0)
    write_case(model, 0, case, HypothesisChooser(data))  # index vector types drawn
    model.subgraphs[0].tensors[1].shape = np.array(shape, np.int32)
    file = pack(model)
    ours = read_sparse_tensors(file)[0]
    assert ours.levels == levels
    np.testing.assert_array_equal(ours.to_dense(), dense)
    np.testing.assert_array_equal(_litert_densify(file), dense)
    TALLY.add("tflite", "valid")


@pytest.mark.parametrize("fixture", small_fixtures())
def test_object_api_rewrite_of_fixtures_changes_nothing(fixture):
    """The mutation harness itself: unpack, write back unchanged, pack -> identical tensors."""
    model = unpack(fixture)
    for index in sparse_indices(model):
        write_case(model, index, Case.of(_base(fixture, index)))
    again = read_sparse_tensors(pack(model))
    for index, t in read_sparse_tensors(fixture_bytes(fixture)).items():
        np.testing.assert_array_equal(again[index].to_dense(), t.to_dense())
        assert again[index].levels == t.levels and again[index].name == t.name
        assert again[index].index_dtypes == t.index_dtypes
    TALLY.add("tflite", "valid", len(again))


@FUZZ
@given(st.sampled_from(small_fixtures()), st.sampled_from(sorted(SEMANTIC)), st.data())
def test_semantic_mutations_are_rejected_or_consistent(fixture, mutation, data):
    """Shared flatbuffer references (operators, tensors, sparsity tables), renames onto existing
    names, huge dimensions and ranks past 64, in the inline or the offset layout: a documented
    error naming where, or sparse tensors that decode to what they store, within the time limit
    of every case."""
    model = unpack(fixture)
    what = SEMANTIC[mutation](model, HypothesisChooser(data))
    packed = to_offset_layout(model) if data.draw(st.booleans()) else pack_shared(model)
    attempt("tflite", lambda: decode_and_check_graph(packed), what=f"{what} of {fixture}")
