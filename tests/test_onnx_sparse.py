"""ONNX SparseTensorProto <-> IR: decoding against dense NumPy and onnxruntime, round trips,
property tests over random tensors, and one negative test per validation rule."""

from __future__ import annotations

import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from sparse_import.adapters.onnx import from_onnx, to_onnx
from strategies import VALUE_DTYPES, dense_arrays, layouts

from sparse_import import (
    DenseLimitError,
    SparseFormatError,
    SparseTensor,
    UnsupportedModelError,
    UnsupportedSparsityError,
    dense_byte_limit,
)
from sparse_import.layouts import coo_layout, csc_layout


def make_sparse(values, indices, dims, name="W", index_type=None) -> onnx.SparseTensorProto:
    """A SparseTensorProto from raw arrays (``indices=None`` leaves the field unset)."""
    values_proto = numpy_helper.from_array(np.asarray(values), name)
    if indices is None:
        sparse = onnx.SparseTensorProto()
        sparse.values.CopyFrom(values_proto)
        sparse.dims.extend(dims)
        return sparse
    indices = np.asarray(indices, dtype=index_type or np.int64)
    return helper.make_sparse_tensor(values_proto, numpy_helper.from_array(indices), dims)


def encode(dense: np.ndarray, *, linearized=False, order=None, index_type=np.int64, name="W"):
    """The ONNX encoding of ``dense``'s nonzeros (optionally permuted by ``order``)."""
    coords = np.argwhere(dense)
    if order is not None:
        coords = coords[order]
    values = dense[tuple(coords.T)]
    indices = np.ravel_multi_index(tuple(coords.T), dense.shape) if linearized else coords
    return make_sparse(values, indices, dense.shape, name, index_type)


def array(tensor_proto) -> np.ndarray:
    return numpy_helper.to_array(tensor_proto)


# --------------------------------------------------------------------------- decoding
W = np.array([[0, 1.5, 0, 0, 2], [0, 0, 0, 0, 0], [3, 0, 0, 4, 0], [0, 0, 0, 0, 5]], np.float32)


@pytest.mark.parametrize("linearized", [False, True], ids=["coords", "linearized"])
def test_decodes_both_index_forms_to_sorted_coo(linearized):
    t = from_onnx(encode(W, linearized=linearized))
    assert t.name == "W" and t.shape == (4, 5) and t.levels == coo_layout(2)
    assert t.coordinates[0].tolist() == [0, 0, 2, 2, 3]
    assert t.coordinates[1].tolist() == [1, 4, 0, 3, 4]
    assert t.values.tolist() == [1.5, 2, 3, 4, 5]
    np.testing.assert_array_equal(t.to_dense(), W)
    assert t.to_dense().dtype == np.float32


def test_explicit_zero_values_are_kept():
    t = from_onnx(make_sparse(np.array([0.0, 7.0], np.float32), [[0, 0], [1, 1]], [2, 2]))
    assert t.nnz == 2 and t.values.tolist() == [0.0, 7.0]


@pytest.mark.parametrize(
    "indices", [None, np.zeros((0, 2)), np.zeros(0)], ids=["absent", "coords", "linearized"]
)
def test_nnz_zero(indices):
    t = from_onnx(make_sparse(np.zeros(0, np.float32), indices, [3, 4]))
    assert t.nnz == 0
    np.testing.assert_array_equal(t.to_dense(), np.zeros((3, 4), np.float32))


def test_name_argument_overrides_values_name():
    assert from_onnx(encode(W, name=""), name="const_out").name == "const_out"
    assert from_onnx(encode(W, name="")).name is None


@pytest.mark.parametrize("index_type", [np.int32, np.int16, np.uint8, np.uint64])
def test_narrower_index_types_are_widened(index_type):
    t = from_onnx(encode(W, index_type=index_type))
    np.testing.assert_array_equal(t.to_dense(), W)


def test_unsorted_indices_are_sorted_with_their_values():
    order = np.array([3, 0, 4, 2, 1])
    for linearized in (False, True):
        t = from_onnx(encode(W, linearized=linearized, order=order))
        assert t.coordinates[0].tolist() == [0, 0, 2, 2, 3]
        np.testing.assert_array_equal(t.to_dense(), W)


def test_does_not_modify_the_proto():
    sparse = encode(W, order=np.array([4, 3, 2, 1, 0]), index_type=np.int32)
    before = sparse.SerializeToString()
    from_onnx(sparse)
    assert sparse.SerializeToString() == before


def _onnxruntime_dense(sparse: onnx.SparseTensorProto, elem_type: int) -> np.ndarray:
    nodes = [  # Identity: a Constant that is a graph output comes back sparse
        helper.make_node("Constant", [], ["c"], sparse_value=sparse),
        helper.make_node("Identity", ["c"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "c", [], [helper.make_tensor_value_info("y", elem_type, list(sparse.dims))]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])
    return session.run(None, {})[0]


ORT_CASES = {
    "float32-coords": dict(dtype=np.float32),
    "float16-linearized": dict(dtype=np.float16, linearized=True),
    "float64-rank3": dict(dtype=np.float64, shape=(3, 4, 5)),
    "int8-unsorted": dict(dtype=np.int8, order="reverse"),
    "uint8-int32-indices": dict(dtype=np.uint8, index_type=np.int32),
    "int32-linear-unsorted": dict(dtype=np.int32, linearized=True, order="reverse"),
    "int64-rank1": dict(dtype=np.int64, shape=(17,)),
    "empty": dict(dtype=np.float32, density=0.0),
}


@pytest.mark.parametrize("case", ORT_CASES.values(), ids=ORT_CASES.keys())
def test_decoding_matches_onnxruntime(case, rng):
    """onnxruntime densifies the same proto (unsorted and int32 forms included)."""
    shape, dtype = case.get("shape", (6, 7)), np.dtype(case["dtype"])
    dense = np.where(rng.random(shape) < case.get("density", 0.3), rng.integers(1, 90, shape), 0)
    dense = dense.astype(dtype)
    nnz = np.count_nonzero(dense)
    order = np.arange(nnz)[::-1] if case.get("order") else None
    sparse = encode(
        dense,
        linearized=case.get("linearized", False),
        order=order,
        index_type=case.get("index_type", np.int64),
    )
    expected = _onnxruntime_dense(sparse, helper.np_dtype_to_tensor_dtype(dtype))
    got = from_onnx(sparse).to_dense()
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


# --------------------------------------------------------------------------- writing
def test_to_onnx_writes_checker_valid_sorted_protos(rng):
    dense = np.where(rng.random((5, 6)) < 0.4, rng.standard_normal((5, 6)), 0).astype(np.float32)
    csc = SparseTensor.from_dense(dense, csc_layout())
    for linearized in (False, True):
        sparse = to_onnx(csc, linearized=linearized, name="w")
        onnx.checker.check_sparse_tensor(sparse)
        assert sparse.values.name == "w" and list(sparse.dims) == [5, 6]
        expected = encode(dense, linearized=linearized, name="w")
        np.testing.assert_array_equal(array(sparse.indices), array(expected.indices))
        np.testing.assert_array_equal(array(sparse.values), array(expected.values))


def test_to_onnx_refuses_shapes_onnx_cannot_hold():
    scalar = SparseTensor.from_dense(np.float32(1.0), (), name="s")
    with pytest.raises(UnsupportedSparsityError, match=r"'s': ONNX sparse tensors need positive"):
        to_onnx(scalar)
    empty = SparseTensor.from_dense(np.zeros((0, 3), np.float32), coo_layout(2), name="e")
    with pytest.raises(UnsupportedSparsityError, match=r"positive dims, got \(0, 3\)"):
        to_onnx(empty)


# --------------------------------------------------------------------------- properties
@st.composite
def onnx_cases(draw):
    """A random dense tensor and its ONNX encoding: either index form, any order, narrow or
    wide index types, explicit zeros among the stored values."""
    rank = draw(st.integers(1, 4))
    shape = tuple(draw(st.integers(1, 6)) for _ in range(rank))
    dense = draw(dense_arrays(shape))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    stored = (dense != 0) | (rng.random(shape) < 0.1)  # some explicit zeros
    coords = np.argwhere(stored)
    if draw(st.booleans()):
        coords = coords[rng.permutation(len(coords))]
    linearized = draw(st.booleans())
    index_type = draw(st.sampled_from([np.int64, np.int32, np.int16]))
    indices = np.ravel_multi_index(tuple(coords.T), shape) if linearized else coords
    sparse = make_sparse(dense[tuple(coords.T)], indices, shape, "P", index_type)
    return dense, sparse, linearized


@settings(max_examples=150, deadline=None)
@given(onnx_cases())
def test_property_decode_matches_dense_and_round_trips(case):
    dense, sparse, linearized = case
    t = from_onnx(sparse)
    got = t.to_dense()
    assert got.dtype == dense.dtype
    np.testing.assert_array_equal(got, dense)
    again = to_onnx(t, linearized=linearized)
    onnx.checker.check_sparse_tensor(again)
    back = from_onnx(again)
    assert back.levels == t.levels and back.shape == t.shape
    for a, b in zip(back.coordinates, t.coordinates, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back.values, t.values)
    assert from_onnx(to_onnx(t), strict=True).nnz == t.nnz  # the writer satisfies the checker


@settings(max_examples=100, deadline=None)
@given(layouts(), st.data())
def test_property_any_ir_layout_round_trips_through_onnx(layout, data):
    shape, levels = layout
    dense = data.draw(dense_arrays(shape, dtypes=VALUE_DTYPES))
    t = SparseTensor.from_dense(dense, levels, name="L")
    back = from_onnx(to_onnx(t), strict=True)
    assert back.nnz == t.nnz  # explicit zeros of stored blocks survive
    np.testing.assert_array_equal(back.to_dense(), dense)


# --------------------------------------------------------------------------- validation
def test_rank_zero_dims():
    with pytest.raises(SparseFormatError, match=r"^sparse tensor 'W': dims must have rank > 0"):
        from_onnx(make_sparse(np.ones(0, np.float32), None, []))


def test_non_positive_dims():
    with pytest.raises(SparseFormatError, match=r"'W': dims \(3, 0\) must all be positive"):
        from_onnx(make_sparse(np.ones(0, np.float32), None, [3, 0]))


def test_dims_overflowing_int64():
    with pytest.raises(SparseFormatError, match=r"overflow a 64-bit linear index"):
        from_onnx(make_sparse(np.ones(0, np.float32), None, [2**40, 2**40]))


def test_values_rank():
    sparse = make_sparse(np.ones((2, 1), np.float32), [[0, 0], [1, 1]], [2, 2])
    with pytest.raises(SparseFormatError, match=r"'W': values must have rank 1 \(\[NNZ\]\), got"):
        from_onnx(sparse)


def test_values_data_shorter_than_dims():
    sparse = make_sparse(np.ones(2, np.float32), [[0, 0], [1, 1]], [2, 2])
    sparse.values.dims[0] = 3
    with pytest.raises(SparseFormatError, match=r"'W': values: stored data does not match dims"):
        from_onnx(sparse)


def test_values_without_indices():
    with pytest.raises(SparseFormatError, match=r"^sparse tensor 'W': 2 values but no indices$"):
        from_onnx(make_sparse(np.ones(2, np.float32), None, [2, 2]))


def test_indices_of_a_non_integer_type():
    sparse = make_sparse(np.ones(1, np.float32), [[0.0, 1.0]], [2, 2], index_type=np.float32)
    match = r"'W': indices must be INT64 \(other integer types are accepted\), got FLOAT$"
    with pytest.raises(SparseFormatError, match=match):
        from_onnx(sparse)


def test_strict_requires_int64_indices():
    sparse = encode(W, index_type=np.int32)
    with pytest.raises(SparseFormatError, match=r"'W': indices must be INT64, got INT32$"):
        from_onnx(sparse, strict=True)


@pytest.mark.parametrize("shape", [(5, 3), (5, 2, 1), (4,)], ids=str)
def test_indices_shape(shape):
    sparse = make_sparse(np.ones(5, np.float32), np.zeros(shape), [4, 5])
    match = re.escape(
        f"'W': indices have shape {shape}; expected (5, 2) ([NNZ, rank]) or (5,) (linearized) "
        "for 5 values"
    )
    with pytest.raises(SparseFormatError, match=match):
        from_onnx(sparse)


def test_coordinates_out_of_bounds():
    sparse = make_sparse(np.ones(3, np.float32), [[0, 1], [2, 7], [3, 0]], [4, 5])
    match = r"^sparse tensor 'W': indices\[1\] = \(2, 7\) is out of bounds for shape \(4, 5\)$"
    with pytest.raises(SparseFormatError, match=match):
        from_onnx(sparse)


def test_negative_coordinates():
    sparse = make_sparse(np.ones(2, np.float32), [[0, 1], [-1, 2]], [4, 5])
    with pytest.raises(SparseFormatError, match=r"indices\[1\] = \(-1, 2\) is out of bounds"):
        from_onnx(sparse)


def test_linearized_index_out_of_bounds():
    sparse = make_sparse(np.ones(2, np.float32), [3, 20], [4, 5])
    match = r"'W': indices\[1\] = 20 is out of bounds for shape \(4, 5\) \(linearized, size 20\)$"
    with pytest.raises(SparseFormatError, match=match):
        from_onnx(sparse)


def test_huge_unsigned_index_is_out_of_bounds_not_wrapped():
    sparse = make_sparse(np.ones(1, np.float32), [2**64 - 1], [4, 5], index_type=np.uint64)
    with pytest.raises(SparseFormatError, match=r"indices\[0\] = 9223372036854775807 is out of"):
        from_onnx(sparse)


def test_strict_requires_ascending_indices():
    sparse = make_sparse(np.ones(3, np.float32), [[0, 1], [1, 0], [0, 3]], [4, 5])
    match = r"'W': indices are not strictly ascending at position 2: \(1, 0\) then \(0, 3\)$"
    with pytest.raises(SparseFormatError, match=match):
        from_onnx(sparse, strict=True)
    assert from_onnx(sparse).nnz == 3  # unambiguous, so accepted by default


@pytest.mark.parametrize("strict", [False, True])
def test_duplicate_coordinates(strict):
    sparse = make_sparse(np.ones(4, np.float32), [[1, 1], [0, 2], [3, 3], [1, 1]], [4, 5])
    if strict:
        match = r"not strictly ascending at position 1: \(1, 1\) then \(0, 2\)"
    else:
        match = r"'W': indices\[3\] = \(1, 1\) repeats indices\[0\]; duplicate coordinates are"
    with pytest.raises(SparseFormatError, match=match):
        from_onnx(sparse, strict=strict)


def test_duplicate_linearized_indices_when_sorted():
    sparse = make_sparse(np.ones(3, np.float32), [2, 5, 5], [4, 5])
    with pytest.raises(SparseFormatError, match=r"indices\[2\] = 5 repeats indices\[1\]"):
        from_onnx(sparse)


@pytest.mark.parametrize(
    ("elem_type", "name"), [(TensorProto.STRING, "STRING"), (TensorProto.BFLOAT16, "BFLOAT16")]
)
def test_unsupported_value_types(elem_type, name):
    sparse = make_sparse(np.ones(1, np.float32), [[0, 0]], [2, 2])
    value = [b"a"] if elem_type == TensorProto.STRING else [1.0]
    sparse.values.CopyFrom(helper.make_tensor("W", elem_type, [1], value))
    with pytest.raises(UnsupportedSparsityError, match=rf"'W': values have element type {name};"):
        from_onnx(sparse)


def test_dense_limit_is_checked_before_allocating():
    sparse = make_sparse(np.ones(1, np.float32), [[0, 0]], [2**20, 2**20])
    with dense_byte_limit(2**30), pytest.raises(DenseLimitError, match=r"'W': dense form"):
        from_onnx(sparse)


def test_name_that_is_not_utf8():
    sparse = onnx.SparseTensorProto.FromString(
        encode(W, name="W\u00e9").SerializeToString().replace("W\u00e9".encode(), b"W\xe9!")
    )
    match = "^" + re.escape(r"sparse tensor 'W\\xe9!': the name is not valid UTF-8") + "$"
    with pytest.raises(SparseFormatError, match=match):
        from_onnx(sparse)


def test_not_a_sparse_tensor_proto():
    with pytest.raises(TypeError, match=r"expected an onnx.SparseTensorProto, got TensorProto"):
        from_onnx(numpy_helper.from_array(W))


# --------------------------------------------------------------------------- external data
def _external(sparse: onnx.SparseTensorProto, directory, location="w.bin", **override):
    """Move values and indices of ``sparse`` into ``directory/location``."""
    data = [array(sparse.values).tobytes(), array(sparse.indices).tobytes()]
    (directory / "w.bin").write_bytes(data[0] + data[1])
    offsets = [0, len(data[0])]
    for tensor, offset, blob in zip((sparse.values, sparse.indices), offsets, data, strict=True):
        stub = TensorProto(name=tensor.name, data_type=tensor.data_type, dims=tensor.dims)
        tensor.CopyFrom(stub)
        tensor.data_location = TensorProto.EXTERNAL
        entries = {"location": location, "offset": offset, "length": len(blob)}
        if tensor is sparse.values:
            entries.update(override)
        for key, value in entries.items():
            entry = tensor.external_data.add()
            entry.key, entry.value = key, str(value)
    return sparse


def test_external_values_and_indices(tmp_path):
    sparse = _external(encode(W, linearized=True), tmp_path)
    np.testing.assert_array_equal(from_onnx(sparse, base_dir=tmp_path).to_dense(), W)


@pytest.mark.parametrize(
    ("location", "override", "match"),
    [
        ("w.bin", {}, None),
        ("../w.bin", {}, r"external data location '../w.bin' points outside the model's"),
        ("/etc/passwd", {}, r"external data location '/etc/passwd' must be relative to"),
        ("missing.bin", {}, r"external data file '.*missing.bin' does not exist"),
        ("w.bin", {"length": 12}, r"external data length 12 does not match dims \(5,\) of"),
        ("w.bin", {"offset": 10**9}, r"external data range \[1000000000, .*\) lies outside"),
        ("w.bin", {"offset": "x"}, r"external data offset/length 'x'/'20' are not integers"),
    ],
    ids=["ok", "escape", "absolute", "missing", "length", "range", "not-int"],
)
def test_external_data_checks(tmp_path, location, override, match):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    sparse = _external(encode(W), model_dir, location, **override)
    if location == "../w.bin":
        (tmp_path / "w.bin").write_bytes((model_dir / "w.bin").read_bytes())
    if match is None:
        np.testing.assert_array_equal(from_onnx(sparse, base_dir=model_dir).to_dense(), W)
        return
    with pytest.raises(UnsupportedModelError, match=r"^sparse tensor 'W': values: " + match):
        from_onnx(sparse, base_dir=model_dir)


def test_external_symlink_escaping_the_directory(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    sparse = _external(encode(W), tmp_path)
    (model_dir / "w.bin").symlink_to(tmp_path / "w.bin")
    with pytest.raises(UnsupportedModelError, match=r"'w.bin' points outside the model's"):
        from_onnx(sparse, base_dir=model_dir)


def test_external_data_needs_a_directory(tmp_path):
    sparse = _external(encode(W), tmp_path)
    match = r"values is stored in the external file 'w.bin'; pass the model as a path, or give"
    with pytest.raises(UnsupportedModelError, match=match):
        from_onnx(sparse)


def _refuse_reads(monkeypatch) -> None:
    def fromfile(*args, **kwargs):
        raise AssertionError("external data was read")

    monkeypatch.setattr(np, "fromfile", fromfile)


def test_external_values_larger_than_the_dense_form_are_not_read(tmp_path, monkeypatch):
    sparse = _external(make_sparse(np.ones(21, np.float32), np.arange(21), W.shape), tmp_path)
    _refuse_reads(monkeypatch)
    match = (
        r"^sparse tensor 'W': values: dims \(21,\) declare 21 elements, more than the 20 of "
        r"the dense form \(4, 5\)$"
    )
    with pytest.raises(SparseFormatError, match=match):
        from_onnx(sparse, base_dir=tmp_path)


def test_external_indices_of_the_wrong_shape_are_not_read(tmp_path, monkeypatch):
    indices = np.array([[0, 1], [0, 4], [2, 0], [2, 3], [3, 4], [3, 3]])
    sparse = make_sparse(np.ones(5, np.float32), indices, W.shape)
    sparse = _external(sparse, tmp_path)
    sparse.values.CopyFrom(numpy_helper.from_array(np.ones(5, np.float32), "W"))
    _refuse_reads(monkeypatch)
    match = r"^sparse tensor 'W': indices have shape \(6, 2\); expected \(5, 2\) \(\[NNZ, rank\]\)"
    with pytest.raises(SparseFormatError, match=match):
        from_onnx(sparse, base_dir=tmp_path)
