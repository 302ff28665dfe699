"""Fuzzing the IR and the TFLite raw fields: every malformed tensor ends as a documented error.

Each example draws a valid tensor in a random layout (``tests/strategies.py``), then either
applies every targeted defect that fits it (the message is pinned per defect) or stacks random
edits (only the documented outcome is required; an input that survives must decode exactly to
what it stores). Valid layouts are checked against LiteRT's own sparse ``FormatConverter``.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from fuzz.choice import HypothesisChooser
from fuzz.fields import DEFECTS, FUZZ_DENSE_LIMIT, Case, check_consistent, havoc, relayout
from fuzz.outcomes import TALLY, attempt, fuzz_report, memory_cap  # noqa: F401  (fixture)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sparse_import.adapters.tflite.params import to_tflite_params
from strategies import dense_arrays, index_dtype_for, layouts

from sparse_import import (
    DenseLimitError,
    Level,
    LevelFormat,
    LevelPart,
    SparseFormatError,
    SparseTensor,
    dense_byte_limit,
    from_tflite_params,
)
from sparse_import.layouts import csr_layout

pytestmark = pytest.mark.usefixtures("fuzz_report")

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAMES = st.sampled_from(["t", "fc/weight;bias", "w:0", "\u91cd\u307f", "a'b"])


@pytest.fixture(autouse=True)
def _bounded():
    """Whatever survives a mutation is decoded: keep that small, and cap memory for the rest."""
    with dense_byte_limit(FUZZ_DENSE_LIMIT), memory_cap():
        yield


@st.composite
def cases(draw, tflite: bool = False) -> Case:
    shape, levels = draw(layouts(tflite=tflite))
    dense = draw(dense_arrays(shape))
    index_dtype = draw(st.sampled_from(index_dtype_for(levels, shape)))
    t = SparseTensor.from_dense(dense, levels, name=draw(NAMES), index_dtype=index_dtype)
    return Case.of(t)


def _defects(case: Case, tflite: bool) -> list[str]:
    return [
        name for name, d in DEFECTS.items() if (tflite or not d.tflite_only) and d.applies(case)
    ]


def _run_defects(base: Case, data, adapter: str) -> None:
    tflite = adapter == "tflite-params"
    choose = HypothesisChooser(data)
    for name in _defects(base, tflite):
        case = Case.of(base.to_ir())
        expect = DEFECTS[name].apply(case, choose)
        build = case.to_tflite if tflite else case.to_ir
        attempt(adapter, build, names=[case.name], expect=expect, what=f"{name} on {base.levels}")


@FUZZ
@given(cases(), st.data())
def test_ir_defects_are_rejected_with_their_message(base, data):
    _run_defects(base, data, "ir")


@FUZZ
@given(cases(tflite=True), st.data())
def test_tflite_field_defects_are_rejected_with_their_message(base, data):
    _run_defects(base, data, "tflite-params")


def _survivor(t: SparseTensor) -> SparseTensor:
    check_consistent(t)
    return t


@FUZZ
@given(cases(), st.data())
def test_ir_havoc_is_rejected_or_consistent(base, data):
    choose = HypothesisChooser(data)
    for _ in range(4):
        case = Case.of(base.to_ir())
        edits = havoc(case, choose, tflite=False)
        if choose.integer(0, 3) == 0:
            edits += "; " + relayout(case, choose)
        attempt("ir", lambda c=case: _survivor(c.to_ir()), names=[case.name], what=edits)


@FUZZ
@given(cases(tflite=True), st.data())
def test_tflite_field_havoc_is_rejected_or_consistent(base, data):
    choose = HypothesisChooser(data)
    for _ in range(4):
        case = Case.of(base.to_ir())
        edits = havoc(case, choose, tflite=True)
        attempt(
            "tflite-params", lambda c=case: _survivor(c.to_tflite()), names=[case.name], what=edits
        )


# --------------------------------------------------------------------- valid layouts: never changed
def _litert_converter(tensor: SparseTensor):
    """LiteRT's ``FormatConverter`` set up for the layout of ``tensor`` (float32 only)."""
    from ai_edge_litert import format_converter_wrapper_pybind11 as fc

    kinds = fc.TfLiteDimensionType
    fields = to_tflite_params(tensor)
    formats = [kinds.TF_LITE_DIM_DENSE] * tensor.rank
    for lvl in tensor.levels:
        if lvl.format is LevelFormat.COMPRESSED:
            formats[lvl.dim] = kinds.TF_LITE_DIM_SPARSE_CSR
    blocks = [tensor.block_shape[d] for d in fields["block_map"]]
    return fc.FormatConverterFp32(
        list(tensor.shape), fields["traversal_order"], formats, blocks, fields["block_map"]
    )


@settings(max_examples=300, deadline=None)
@given(layouts(tflite=True), st.data())
def test_valid_layouts_match_litert_format_converter(layout, data):
    """Our encoding is LiteRT's, bit for bit, and LiteRT's encoding decodes to the dense array.

    LiteRT's converter indexes its per-dimension arrays by level for the first ``rank`` levels,
    so it handles only layouts whose in-block levels come last; the others are moved there.
    """
    shape, levels = layout
    levels = tuple(sorted(levels, key=lambda lvl: lvl.part is LevelPart.ELEMENT))
    dense = data.draw(dense_arrays(shape, dtypes=[np.float32]))
    ours = SparseTensor.from_dense(dense, levels, name="t")
    converter = _litert_converter(ours)
    assert str(converter.DenseToSparse(np.ascontiguousarray(dense))).endswith("TF_LITE_OK")
    metadata = converter.GetDimMetadata()
    fields = to_tflite_params(ours)
    dim_metadata = []
    for k, meta in enumerate(fields["dim_metadata"]):
        theirs = metadata[2 * k : 2 * k + 2]
        if meta["format"] == "DENSE":
            assert theirs == [[meta["dense_size"]], []]
            dim_metadata.append(meta)
        else:
            assert theirs == [meta["array_segments"].tolist(), meta["array_indices"].tolist()]
            segments, indices = (np.array(a, np.int32) for a in theirs)
            dim_metadata.append(
                {"format": "SPARSE_CSR", "array_segments": segments, "array_indices": indices}
            )
    values = np.array(converter.GetData(), np.float32)
    np.testing.assert_array_equal(values, ours.values)
    back = from_tflite_params(
        shape=shape,
        traversal_order=fields["traversal_order"],
        block_map=fields["block_map"],
        dim_metadata=dim_metadata,
        values=values,
        name="t",
    )
    np.testing.assert_array_equal(back.to_dense(), dense)
    TALLY.add("tflite-params", "valid")


@settings(max_examples=300, deadline=None)
@given(cases())
def test_valid_layouts_round_trip_exactly(case):
    """A valid tensor is accepted as is and decodes to the dense array it was encoded from."""
    t = case.to_ir()
    check_consistent(t)
    again = SparseTensor.from_dense(t.to_dense(), t.levels, name=t.name)
    np.testing.assert_array_equal(again.to_dense(), t.to_dense())
    TALLY.add("ir", "valid")


# --------------------------------------------------------------------- bombs: no allocation
def _peak_bytes(call) -> int:
    tracemalloc.start()
    try:
        call()
    except DenseLimitError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def _ir_bomb():
    positions = (None, np.array([0, 1], np.int32))
    return SparseTensor(
        (1, 2**40), csr_layout(), positions, (None, np.array([7], np.int32)), np.ones(1), "bomb"
    )


def _tflite_bomb():
    """Two compressed levels: a 2**31 x 2**31 float32 tensor described in a few bytes."""
    segments = {"format": "SPARSE_CSR", "array_segments": np.array([0, 1], np.int32)}
    return from_tflite_params(
        shape=[2**31, 2**31],
        traversal_order=[0, 1],
        block_map=[],
        dim_metadata=[
            dict(segments, array_indices=np.array([5], np.int32)),
            dict(segments, array_indices=np.array([9], np.int32)),
        ],
        values=np.ones(1, np.float32),
        name="bomb",
    )


@pytest.mark.parametrize("bomb", [_ir_bomb, _tflite_bomb], ids=["ir", "tflite-params"])
def test_dense_bombs_are_refused_before_any_allocation(bomb):
    with pytest.raises(DenseLimitError, match=r"'bomb': dense form of shape .* over the dense"):
        bomb()
    assert _peak_bytes(bomb) < 64 * 1024  # a few small buffers and the message


def test_within_the_limit_to_dense_still_refuses_a_smaller_budget():
    t = SparseTensor(
        (4, 2**20),
        (Level(0), Level(1, LevelFormat.COMPRESSED)),
        (None, np.zeros(5, np.int32)),
        (None, np.zeros(0, np.int32)),
        np.zeros(0, np.float32),
        "w",
    )
    with pytest.raises(DenseLimitError, match=r"'w': .* needs 16777216 bytes, over the limit"):
        t.to_dense(max_bytes=2**20)
    assert _peak_bytes(lambda: t.to_dense(max_bytes=2**20)) < 64 * 1024


def test_unique_unordered_level_rejects_duplicates():
    levels = (Level(0), Level(1, LevelFormat.COMPRESSED, ordered=False))
    t = SparseTensor(
        (2, 4),
        levels,
        (None, np.array([0, 2, 2])),
        (None, np.array([3, 3])),
        np.array([1.0, 2.0]),
        "w",
    )
    with pytest.raises(
        SparseFormatError,
        match=r"'w': level 1 \(d1 : compressed\(nonordered\)\): .*(duplicate|repeat|unique)",
    ):
        t.validate()


def test_duplicates_of_a_non_unique_level_are_summed():
    """A non-unique compressed level above a dense one: both copies of row 1 are kept, summed."""
    levels = (Level(0, LevelFormat.COMPRESSED, unique=False), Level(1))
    t = SparseTensor(
        (2, 2),
        levels,
        (np.array([0, 2]), None),
        (np.array([1, 1]), None),
        np.array([1.0, 2.0, 3.0, 4.0]),
        "w",
    )
    np.testing.assert_array_equal(t.to_dense(), [[0.0, 0.0], [4.0, 6.0]])
