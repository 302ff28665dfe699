"""Fuzzing ONNX sparse tensors and models: every malformed input ends as a documented error.

Seeds are random valid tensors in every IR layout written with ``to_onnx`` (both index forms)
and the sparse initializers of the ONNX fixture models. Targeted defects pin their message;
random field edits and byte edits of serialized messages must end as documented errors or
decode consistently. Valid protos, including the forms the ONNX checker refuses but the adapter
accepts (unsorted or narrower indices), decode as onnxruntime decodes them.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from fuzz.choice import HypothesisChooser, RandomChooser, pick
from fuzz.fields import FUZZ_DENSE_LIMIT
from fuzz.onnx_proto import (
    DEFECTS,
    MODEL_DEFECTS,
    SEED_MODELS,
    STRICT_DEFECTS,
    copy_proto,
    decode,
    decode_consistent,
    havoc,
    mutate_bytes,
    prepare_bytes,
    prepare_proto,
    seed_model_bytes,
)
from fuzz.outcomes import TALLY, attempt, fuzz_report, memory_cap  # noqa: F401  (fixture)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper, numpy_helper
from sparse_import.adapters.onnx import from_onnx, import_model, to_onnx
from strategies import dense_arrays, layouts

from sparse_import import SparseFormatError, SparseTensor, dense_byte_limit

pytestmark = pytest.mark.usefixtures("fuzz_report")

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ONNX_DTYPES = [np.float32, np.float16, np.float64, np.int8, np.uint8, np.int32, np.int64, np.bool_]
NAMES = st.sampled_from(["w", "fc/weight:0", "\u91cd\u307f", "a'b"])


@pytest.fixture(autouse=True)
def _bounded():
    with dense_byte_limit(FUZZ_DENSE_LIMIT), memory_cap():
        yield


def _fixture_sparse() -> list[onnx.SparseTensorProto]:
    out = []
    for name in SEED_MODELS:
        model = onnx.ModelProto.FromString(seed_model_bytes(name))
        out += list(model.graph.sparse_initializer)
        for node in model.graph.node:
            out += [a.sparse_tensor for a in node.attribute if a.name == "sparse_value"]
    return out


FIXTURE_SPARSE = _fixture_sparse()


@st.composite
def sparse_protos(draw) -> onnx.SparseTensorProto:
    """A valid ``SparseTensorProto``: a random IR layout, or a fixture model's tensor."""
    if draw(st.integers(0, 3)) == 0:
        return copy_proto(draw(st.sampled_from(FIXTURE_SPARSE)))
    shape, levels = draw(layouts())
    dense = draw(dense_arrays(shape, dtypes=ONNX_DTYPES))
    t = SparseTensor.from_dense(dense, levels)
    return to_onnx(t, linearized=draw(st.booleans()), name=draw(NAMES))


@FUZZ
@given(sparse_protos(), st.data())
def test_sparse_tensor_defects_are_rejected_with_their_message(seed, data):
    choose = HypothesisChooser(data)
    for name, defect in DEFECTS.items():
        sparse = copy_proto(seed)
        expect = defect(sparse, choose)
        if expect is None:
            continue
        strict = name in STRICT_DEFECTS
        attempt(
            "onnx",
            lambda s=sparse, k=strict: decode(s, strict=k),
            names=[seed.values.name],
            expect=expect,
            what=f"{name} on {seed.dims}",
        )


@FUZZ
@given(sparse_protos(), st.data())
def test_sparse_tensor_havoc_is_rejected_or_consistent(seed, data):
    choose = HypothesisChooser(data)
    for _ in range(6):
        sparse = copy_proto(seed)
        edits = havoc(sparse, choose)
        attempt(
            "onnx",
            lambda s=sparse: decode_consistent(s),
            names=[seed.values.name],
            what=f"edits {edits} on {seed.dims}",
        )


def _parsed(cls, data: bytes):
    try:
        return cls.FromString(data)
    except Exception:  # protobuf's DecodeError: the bytes never become a message
        return None


SPARSE_BYTE_CASES = 3000


def test_sparse_tensor_bytes_are_rejected_or_consistent():
    """Byte edits of serialized fixture tensors; what still parses goes through ``from_onnx``."""
    choose = RandomChooser(20261124)
    seeds = [s.SerializeToString() for s in FIXTURE_SPARSE]
    for i in range(SPARSE_BYTE_CASES):
        sparse = _parsed(onnx.SparseTensorProto, mutate_bytes(pick(choose, seeds), choose))
        if sparse is None:
            continue
        attempt(
            "onnx",
            lambda s=sparse: decode_consistent(s),
            names=[sparse.values.name],
            what=f"byte case {i}",
        )


MODEL_BYTE_CASES = 1500


def test_model_bytes_are_rejected_or_prepared():
    choose = RandomChooser(20261125)
    for i in range(MODEL_BYTE_CASES):
        name = pick(choose, SEED_MODELS)
        data = mutate_bytes(seed_model_bytes(name), choose)
        attempt("onnx", lambda d=data: prepare_bytes(d), what=f"byte case {i} of {name}")


@FUZZ
@given(st.sampled_from(SEED_MODELS), st.data())
def test_defects_inside_models_are_rejected_with_their_message(model_name, data):
    """A defect in a model's sparse initializer or sparse Constant, found while preparing it."""
    choose = HypothesisChooser(data)
    model = onnx.ModelProto.FromString(seed_model_bytes(model_name))
    slots = [("init", k) for k in range(len(model.graph.sparse_initializer))]
    slots += [
        ("node", k)
        for k, n in enumerate(model.graph.node)
        if any(a.name == "sparse_value" for a in n.attribute)
    ]
    if not slots:
        return
    kind, k = pick(choose, slots)
    defect = pick(choose, [d for d in DEFECTS if d not in STRICT_DEFECTS])
    if kind == "init":
        sparse = model.graph.sparse_initializer[k]
        names = [sparse.values.name]
    else:
        node = model.graph.node[k]
        sparse = next(a for a in node.attribute if a.name == "sparse_value").sparse_tensor
        names = [node.output[0]]
    expect = DEFECTS[defect](sparse, choose)
    if expect is None:
        return
    expect = expect.replace(rf"'{sparse.values.name}'", "'.*'")  # Constants: named by output
    data_bytes = model.SerializeToString()
    attempt(
        "onnx",
        lambda: prepare_bytes(data_bytes),
        names=names,
        expect=expect,
        what=f"{defect} in {model_name} {kind} {k}",
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEED_MODELS), st.sampled_from(sorted(MODEL_DEFECTS)), st.data())
def test_semantic_model_edits_are_rejected_with_their_message(model_name, defect, data):
    """Renames onto existing names, aliases, duplicates in subgraphs, huge dims, deep nesting
    and bad perms on a fixture model: each refused with its own message before TVM runs or,
    for an edit that may leave the model valid, refused as documented or prepared."""
    choose = HypothesisChooser(data)
    model = onnx.ModelProto.FromString(seed_model_bytes(model_name))
    expect = MODEL_DEFECTS[defect](model, choose)
    if expect is None:
        return
    attempt(
        "onnx",
        lambda: prepare_proto(model),
        expect=expect or None,
        what=f"{defect} on {model_name}",
    )


def test_every_semantic_edit_applies_to_some_fixture():
    """No edit is dead: each finds something to edit in at least one fixture model."""
    for defect, edit in MODEL_DEFECTS.items():
        applied = [
            name
            for name in SEED_MODELS
            if edit(onnx.ModelProto.FromString(seed_model_bytes(name)), RandomChooser(1))
            is not None
        ]
        assert applied, f"{defect} applies to none of {SEED_MODELS}"


@pytest.mark.parametrize("defect", ["index_out_of_range", "duplicate_index", "dense_bomb"])
def test_import_model_rejects_before_tvm_converts(defect, monkeypatch):
    from tvm import relay

    def never(*args, **kwargs):
        raise AssertionError("TVM's frontend ran on a malformed model")

    monkeypatch.setattr(relay.frontend, "from_onnx", never)
    model = onnx.ModelProto.FromString(seed_model_bytes("mlp"))
    sparse = model.graph.sparse_initializer[0]
    expect = DEFECTS[defect](sparse, RandomChooser(3))
    with pytest.raises(SparseFormatError, match=expect):
        import_model(model)
    TALLY.add("onnx", "rejected")


# --------------------------------------------------------------------- valid protos: never changed
def _onnxruntime_dense(sparse: onnx.SparseTensorProto, dtype: np.dtype) -> np.ndarray:
    import onnxruntime as ort

    elem = helper.np_dtype_to_tensor_dtype(dtype)
    graph = helper.make_graph(
        [helper.make_node("Identity", [sparse.values.name], ["y"])],
        "g",
        [],
        [helper.make_tensor_value_info("y", elem, list(sparse.dims))],
        sparse_initializer=[sparse],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(None, {})[0]


@settings(max_examples=120, deadline=None)
@given(layouts(), st.data())
def test_valid_protos_decode_as_onnxruntime_does(layout, data):
    """Sorted or shuffled, int64 or narrower, [NNZ, rank] or linearized: as onnxruntime reads."""
    shape, _ = layout
    dense = data.draw(dense_arrays(shape, dtypes=[np.float32, np.int8, np.int32, np.float64]))
    coords = np.argwhere(dense)
    if data.draw(st.booleans()):
        coords = coords[data.draw(st.permutations(range(len(coords))))] if len(coords) else coords
    linearized = data.draw(st.booleans())
    indices = np.ravel_multi_index(tuple(coords.T), shape) if linearized else coords
    index_dtype = data.draw(st.sampled_from([np.int64, np.int32, np.int16, np.int8]))
    if indices.size and indices.max() > np.iinfo(index_dtype).max:
        index_dtype = np.int64
    sparse = helper.make_sparse_tensor(
        numpy_helper.from_array(dense[tuple(coords.T)], "w"),
        numpy_helper.from_array(indices.astype(index_dtype), "w_idx"),
        list(shape),
    )
    ours = from_onnx(sparse).to_dense()
    np.testing.assert_array_equal(ours, dense)
    np.testing.assert_array_equal(_onnxruntime_dense(sparse, dense.dtype), dense)
    TALLY.add("onnx", "valid")


@settings(max_examples=150, deadline=None)
@given(sparse_protos(), st.booleans())
def test_to_onnx_round_trips_exactly(sparse, linearized):
    t = from_onnx(sparse)
    back = from_onnx(to_onnx(t, linearized=linearized))
    np.testing.assert_array_equal(back.to_dense(), t.to_dense())
    assert back.dtype == t.dtype and back.shape == t.shape
    TALLY.add("onnx", "valid")


def test_bytes_that_are_not_a_model():
    for data in (b"", b"\x08", b"TFL3" + bytes(40), b"\xff" * 64, b"PK\x03\x04" + bytes(60)):
        attempt("onnx", lambda d=data: prepare_bytes(d), expect=r"are not an ONNX model")


def test_rank3_coo_values_keep_their_bits():
    """An ONNX conv weight is rank 4: its stored values must reach the dense form bit for bit."""
    dense = np.zeros((2, 2, 2, 2), np.float32)
    dense[1, 0, 1, 1] = -0.0
    dense[0, 1, 1, 0] = 3.0
    coords = np.array([[0, 1, 1, 0], [1, 0, 1, 1]])
    sparse = helper.make_sparse_tensor(
        numpy_helper.from_array(dense[tuple(coords.T)], "w"),
        numpy_helper.from_array(coords.astype(np.int64)),
        list(dense.shape),
    )
    out = from_onnx(sparse).to_dense()
    assert out.view(np.uint32)[1, 0, 1, 1] == np.float32(-0.0).view(np.uint32)
