"""Systematic faults in ``.tflite`` files: every truncation, every overwritten byte, bad paths.

Unlike the random mutations of ``test_fuzz_tflite.py`` these enumerate: each prefix of a file,
and each single byte set to 0x00 and to 0xFF, of the smallest fixtures. Every case must end as
a documented error (or a model that still decodes consistently), within the time limit.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from fuzz.choice import RandomChooser
from fuzz.fields import FUZZ_DENSE_LIMIT, Case
from fuzz.outcomes import TALLY, attempt, fuzz_report, memory_cap  # noqa: F401  (fixture)
from fuzz.tflite_model import (
    decode_consistent,
    fixture_bytes,
    mutate_bytes,
    pack,
    read_case,
    unpack,
    write_case,
)
from sparse_import.adapters.tflite import import_model, load_model, read_sparse_tensors

from sparse_import import (
    DenseLimitError,
    SparseFormatError,
    UnsupportedModelError,
    dense_byte_limit,
)

pytestmark = pytest.mark.usefixtures("fuzz_report")

SMALLEST = ("handmade_densify_output.tflite", "handmade_dcsr_block_fc.tflite")


@pytest.fixture(autouse=True)
def _bounded():
    with dense_byte_limit(FUZZ_DENSE_LIMIT), memory_cap():
        yield


@pytest.mark.parametrize("fixture", SMALLEST)
def test_every_truncation_is_rejected(fixture):
    data = fixture_bytes(fixture)
    for end in range(len(data)):
        attempt("tflite", lambda d=data[:end]: decode_consistent(d), what=f"{fixture} cut at {end}")


@pytest.mark.parametrize("value", [0x00, 0xFF])
def test_every_overwritten_byte_is_rejected_or_consistent(value):
    data = bytearray(fixture_bytes(SMALLEST[0]))
    for at in range(len(data)):
        damaged = bytearray(data)
        damaged[at] = value
        attempt(
            "tflite",
            lambda d=bytes(damaged): decode_consistent(d),
            what=f"byte {at} set to {value:#x}",
        )


def test_parsed_models_are_checked_like_bytes():
    """A ``tflite.Model`` built from damaged bytes gets the same structural checks."""
    import tflite

    choose = RandomChooser(99)
    for i in range(600):
        data = mutate_bytes(fixture_bytes(SMALLEST[i % 2]), choose)
        if data[4:8] != b"TFL3":
            continue
        model = tflite.Model.GetRootAs(data, 0)
        attempt("tflite", lambda m=model: read_sparse_tensors(m), what=f"parsed case {i}")


def test_paths_that_are_not_model_files(tmp_path):
    (tmp_path / "dir.tflite").mkdir()
    (tmp_path / "empty.tflite").write_bytes(b"")
    (tmp_path / "loop.tflite").symlink_to(tmp_path / "loop.tflite")
    os.mkfifo(tmp_path / "fifo.tflite")
    cases = {
        "dir.tflite": r"is a directory, not a regular file",
        "missing.tflite": r"does not exist",
        "loop.tflite": r"too many levels of symbolic links",
        "fifo.tflite": r"is a FIFO \(named pipe\), not a regular file",  # never opened
        "empty.tflite": r"is empty \(0 bytes\)",
    }
    for name, expect in cases.items():
        path = tmp_path / name
        attempt("tflite", lambda p=path: read_sparse_tensors(p), expect=expect, what=name)
        with pytest.raises(UnsupportedModelError, match=expect):
            read_sparse_tensors(str(path))
    for wrong in (object(), 3, None):
        with pytest.raises(UnsupportedModelError, match=r"cannot read a \w+ as a TFLite model"):
            load_model(wrong)


def test_a_tensor_with_an_empty_name_is_named_by_its_index():
    model = unpack("handmade_csc_fc.tflite")
    case = read_case(model, 0)
    case.values = case.values[:-1]
    write_case(model, 0, case)
    model.subgraphs[0].tensors[0].name = b""
    with pytest.raises(SparseFormatError, match=r"^sparse tensor 'tensor 0': \d+ stored values"):
        read_sparse_tensors(pack(model))


def test_mutation_harness_round_trips_a_case():
    """``read_case`` / ``write_case`` leave a valid tensor exactly as it was."""
    model = unpack("handmade_block4x2_fc.tflite")
    before = read_sparse_tensors(fixture_bytes("handmade_block4x2_fc.tflite"))[0]
    write_case(model, 0, Case.of(before))
    after = read_sparse_tensors(pack(model))[0]
    np.testing.assert_array_equal(after.to_dense(), before.to_dense())
    TALLY.add("tflite", "valid")


@pytest.mark.parametrize("axis", [2, 7, -1, 2**31 - 1])
def test_quantization_axis_out_of_range_is_rejected(axis):
    model = unpack("handmade_int8_csc_fc.tflite")  # 'fc/weight': (16, 32), 16 scales on axis 0
    model.subgraphs[0].tensors[1].quantization.quantizedDimension = axis
    with pytest.raises(SparseFormatError, match=r"'fc/weight': .*quantiz.*axis"):
        read_sparse_tensors(pack(model))


def test_quantization_scales_must_match_their_dimension():
    model = unpack("handmade_int8_csc_fc.tflite")
    model.subgraphs[0].tensors[1].quantization.quantizedDimension = 1  # size 32, 16 scales
    with pytest.raises(SparseFormatError, match=r"'fc/weight': .*16 .*scales.*32"):
        read_sparse_tensors(pack(model))


def test_a_model_whose_sparse_tensors_add_up_past_the_limit_is_refused_dense():
    """Each tensor fits under the limit, the model's total does not: the import densifies
    nothing, a dense lowering is refused before densifying, a sparse one needs nothing dense."""
    from sparse_import.relay_backend import lower

    data = fixture_bytes("mlp_index_widths.tflite")
    sizes = [t.dense_nbytes for t in read_sparse_tensors(data).values()]
    assert len(sizes) == 3 and max(sizes) < sum(sizes) - 1
    with dense_byte_limit(sum(sizes) - 1):
        imported = import_model(data)
        assert imported.budget.spent == 0
        with pytest.raises(
            DenseLimitError,
            match=rf"TFLite model: its 3 densified sparse tensors need {sum(sizes)} bytes",
        ):
            lower(imported, "dense")
        decisions = lower(imported, "sparse")[2]
    assert all(d.lowering != "dense" for d in decisions) and imported.budget.spent == 0
