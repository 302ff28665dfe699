"""The pieces under the command line: agreement rules, random inputs, oracles, PNG spy plots."""

from __future__ import annotations

import struct
import sys
import zlib

import numpy as np
import pytest
from sparse_import.adapters.onnx.oracle import OnnxRuntimeOracle
from sparse_import.adapters.tflite.oracle import LiteRTOracle

from sparse_import import SparseTensor
from sparse_import._format import (
    format_table,
    human_bytes,
    milliseconds,
    one_line,
    shape_text,
    short_name,
)
from sparse_import.detect import tflite_header_problem
from sparse_import.layouts import bsr_layout, coo_layout, csr_layout
from sparse_import.pipeline import demo_model
from sparse_import.spy import NONZERO, STORED_ZERO, png_bytes, spy_image, write_spy
from sparse_import.verify import (
    TensorSpec,
    compare,
    make_oracle,
    random_inputs,
    tolerance,
)


# --------------------------------------------------------------------------- agreement rules
@pytest.mark.parametrize(
    ("spec", "rule"),
    [
        (TensorSpec("y", (2,), "float32"), ("relative", 1e-5)),
        (TensorSpec("y", (2,), "float64"), ("relative", 1e-5)),
        (TensorSpec("y", (2,), "float16"), ("relative", 1e-2)),
        (TensorSpec("y", (2,), "int8", scale=0.1, zero_point=3), ("steps", 0.0)),
        (TensorSpec("y", (2,), "uint8", scale=0.5, max_steps=1.0), ("steps", 1.0)),
        (TensorSpec("y", (2,), "float32", scale=0.5), ("steps", 0.0)),
        (TensorSpec("y", (2,), "int64"), ("exact", 0.0)),
        (TensorSpec("y", (2,), "bool"), ("exact", 0.0)),
    ],
)
def test_tolerance_per_dtype(spec, rule):
    assert tolerance(spec) == rule


def test_compare_relative_to_the_largest_expected_magnitude(rng):
    spec = TensorSpec("y", (4, 5), "float32")
    expected = rng.standard_normal((4, 5)).astype(np.float32)
    peak = float(np.abs(expected).max())
    just_in = expected.copy()
    just_in[0, 0] += np.float32(0.5e-5 * peak)
    just_out = expected.copy()
    just_out[0, 0] += np.float32(2e-5 * peak)
    (inside,), (outside,) = (
        compare([just_in], [expected], [spec]),
        compare([just_out], [expected], [spec]),
    )
    assert inside.ok and inside.error == pytest.approx(0.5e-5, rel=1e-2)
    assert not outside.ok and outside.error == pytest.approx(2e-5, rel=1e-2)
    assert outside.max_abs_error == pytest.approx(2e-5 * peak, rel=1e-2)


def test_compare_float16_uses_its_looser_limit(rng):
    spec = TensorSpec("y", (8,), "float16")
    expected = rng.standard_normal(8).astype(np.float16)
    peak = float(np.abs(expected).max())
    (ok,) = compare([expected + np.float16(0.004 * peak)], [expected], [spec])
    (bad,) = compare([expected + np.float16(0.03 * peak)], [expected], [spec])
    assert ok.ok and not bad.ok


@pytest.mark.parametrize("max_steps", [0.0, 1.0])
def test_compare_quantized_in_whole_steps(max_steps):
    spec = TensorSpec("q", (3,), "int8", scale=0.02, zero_point=-5, max_steps=max_steps)
    expected = np.array([-128, 0, 127], dtype=np.int8)
    (same,) = compare([expected.copy()], [expected], [spec])
    (one,) = compare([np.array([-127, 1, 126], np.int8)], [expected], [spec])
    (two,) = compare([np.array([-128, 2, 127], np.int8)], [expected], [spec])
    assert same.ok and same.rule == "steps" and same.error == 0
    assert one.error == 1 and one.ok == (max_steps >= 1)
    assert not two.ok and two.error == 2  # no int8 wrap-around: compared in int64


def test_compare_float_output_of_a_quantized_chain_in_its_steps(rng):
    spec = TensorSpec("y", (16,), "float32", scale=0.05)
    expected = (rng.integers(-128, 128, 16) * 0.05).astype(np.float32)
    near = expected + np.float32(0.2 * 0.05)  # float noise: rounds to 0 steps
    step = expected.copy()
    step[3] += np.float32(0.05)
    (ok,) = compare([near], [expected], [spec])
    (bad,) = compare([step], [expected], [spec])
    assert ok.ok and ok.rule == "steps" and ok.error == 0
    assert not bad.ok and bad.error == 1


def test_compare_unquantized_integers_exactly():
    spec = TensorSpec("i", (2,), "int64")
    (same,) = compare([np.array([3, 4])], [np.array([3, 4])], [spec])
    (off,) = compare([np.array([3, 5])], [np.array([3, 4])], [spec])
    assert same.ok and not off.ok and off.rule == "exact"


def test_compare_nan_and_inf():
    spec = TensorSpec("y", (3,), "float32")
    expected = np.array([np.nan, np.inf, 1.0], np.float32)
    (same,) = compare([expected.copy()], [expected], [spec])
    (nan_for_number,) = compare(
        [np.array([np.nan, np.inf, np.nan], np.float32)], [expected], [spec]
    )
    (number_for_nan,) = compare([np.array([0.0, np.inf, 1.0], np.float32)], [expected], [spec])
    assert same.ok and same.error == 0
    assert not nan_for_number.ok and nan_for_number.error == np.inf
    assert not number_for_nan.ok


def test_compare_shape_mismatch_fails_with_a_note():
    spec = TensorSpec("y", (2, 3), "float32")
    (check,) = compare([np.zeros((3, 2), np.float32)], [np.zeros((2, 3), np.float32)], [spec])
    assert not check.ok
    assert check.note == "shape (3, 2) differs from the oracle's (2, 3)"


def test_compare_output_count_mismatch():
    spec = TensorSpec("y", (1,), "float32")
    with pytest.raises(ValueError, match="the compiled model has 2 outputs, the oracle 1"):
        compare([np.zeros(1), np.zeros(1)], [np.zeros(1)], [spec])


# --------------------------------------------------------------------------- random inputs
def test_random_inputs_shapes_dtypes_and_ranges():
    specs = [
        TensorSpec("f", (2, 3), "float32"),
        TensorSpec("h", (4,), "float16"),
        TensorSpec("q", (4000,), "int8", scale=0.1),
        TensorSpec("u", (4000,), "uint8"),
        TensorSpec("i", (50,), "int64"),
        TensorSpec("b", (6,), "bool"),
    ]
    arrays = random_inputs(specs, seed=3)
    assert {k: (v.shape, v.dtype.name) for k, v in arrays.items()} == {
        s.name: (s.shape, s.dtype) for s in specs
    }
    assert arrays["q"].min() == -128 and arrays["q"].max() == 127  # the whole int8 range
    assert arrays["u"].min() == 0 and arrays["u"].max() == 255
    assert 0 <= arrays["i"].min() and arrays["i"].max() <= 7
    again = random_inputs(specs, seed=3)
    assert all(np.array_equal(arrays[k], again[k]) for k in arrays)
    assert not np.array_equal(arrays["f"], random_inputs(specs, seed=4)["f"])


def test_random_inputs_rejects_unknown_dtypes():
    with pytest.raises(ValueError, match="input 's': cannot make random values of dtype <U3"):
        random_inputs([TensorSpec("s", (1,), "<U3")])


# --------------------------------------------------------------------------- oracles
def test_litert_oracle_runs_the_tflite_demo():
    oracle = make_oracle(demo_model("tflite"))
    assert isinstance(oracle, LiteRTOracle)
    (spec,) = oracle.inputs
    assert (spec.shape, spec.dtype) == ((1, 64), "float32")
    (y,) = oracle.run(random_inputs(oracle.inputs, 0))
    assert y.shape == oracle.outputs[0].shape == (1, 10) and np.isfinite(y).all()


def test_onnxruntime_oracle_matches_a_numpy_mlp():
    """onnxruntime on the ONNX demo equals the MLP computed with NumPy from its own weights."""
    import onnx
    from onnx import numpy_helper

    path = demo_model("onnx")
    oracle = make_oracle(path)
    assert isinstance(oracle, OnnxRuntimeOracle)
    assert [(s.name, s.shape) for s in oracle.inputs] == [("x", (1, 64))]  # batch is symbolic
    graph = onnx.load(path).graph
    w = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for sparse in graph.sparse_initializer:
        values = numpy_helper.to_array(sparse.values)
        dense = np.zeros(tuple(sparse.dims), values.dtype)
        dense[tuple(numpy_helper.to_array(sparse.indices).T)] = values
        w[sparse.values.name] = dense
    x = random_inputs([TensorSpec("x", (5, 64), "float32")], 1)["x"]
    h = np.maximum(x @ w["fc1.weight"].T + w["fc1.bias"], 0)
    h = np.maximum(h @ w["fc2.weight"] + w["fc2.bias"], 0)
    expected = h @ w["fc3.weight"].T + w["fc3.bias"]
    (y,) = oracle.run({"x": x})
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_oracle_rejects_unknown_input_names():
    oracle = make_oracle(demo_model("onnx"))
    with pytest.raises(ValueError, match=r"\['nope'\] are not inputs of the model \(x\)"):
        oracle.run({"nope": np.zeros((1, 64), np.float32)})


@pytest.mark.parametrize(
    ("framework", "module", "package"),
    [
        ("tflite", "ai_edge_litert.interpreter", "ai-edge-litert"),
        ("onnx", "onnxruntime", "onnxruntime"),
    ],
)
def test_missing_runtime_names_the_package(monkeypatch, framework, module, package):
    monkeypatch.setitem(sys.modules, module, None)  # makes the import fail
    with pytest.raises(ImportError, match=f"needs the '{package}' package"):
        make_oracle(demo_model(framework))


def test_onnx_output_scale_of_a_quantizing_node(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"])],
        "quantize",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("q", TensorProto.UINT8, [4])],
        initializer=[
            numpy_helper.from_array(np.array(0.25, np.float32), "s"),
            numpy_helper.from_array(np.array(7, np.uint8), "z"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    oracle = make_oracle(model.SerializeToString(), "onnx")
    (out,) = oracle.outputs
    assert (out.dtype, out.scale, out.zero_point) == ("uint8", 0.25, 7)
    assert tolerance(out) == ("steps", 1.0)
    (q,) = oracle.run({"x": np.array([0.0, 0.25, 1.0, -1.0], np.float32)})
    np.testing.assert_array_equal(q, [7, 8, 11, 3])


# --------------------------------------------------------------------------- spy plots
def decode_png(data: bytes) -> np.ndarray:
    """A minimal reader for the 8-bit grey, unfiltered PNGs that spy.py writes."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body)
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, color) == (8, 0) and b"IEND" in chunks
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, width + 1)
    assert not rows[:, 0].any()  # filter type 0 on every row
    return rows[:, 1:]


def test_png_round_trip(rng):
    image = rng.integers(0, 256, (7, 13), dtype=np.uint8)
    np.testing.assert_array_equal(decode_png(png_bytes(image)), image)


def test_png_rejects_non_images():
    with pytest.raises(ValueError, match=r"expected a non-empty \(height, width\) uint8 image"):
        png_bytes(np.zeros((2, 2, 3), np.uint8))


def test_spy_small_matrix_is_enlarged(rng):
    dense = np.where(rng.random((20, 50)) < 0.2, rng.standard_normal((20, 50)), 0.0)
    image = spy_image(SparseTensor.from_dense(dense, csr_layout(), name="w"))
    expected = np.kron(np.where(dense != 0, NONZERO, 255), np.ones((5, 5))).astype(np.uint8)
    np.testing.assert_array_equal(decode_png(png_bytes(image)), expected)  # 256 // 50 == 5


def test_spy_image_rejects_non_positive_sides():
    w = SparseTensor.from_dense(np.eye(3), csr_layout(), name="w")
    with pytest.raises(ValueError, match="max_side=0 and min_side=256 must be positive"):
        spy_image(w, max_side=0)


def test_write_spy_draws_the_named_figure(rng, tmp_path):
    """The file holds the titled figure (read back by its size and tEXt title)."""
    dense = np.where(rng.random((20, 50)) < 0.2, 1.0, 0.0)
    tensor = SparseTensor.from_dense(dense, csr_layout(), name="w")
    path = write_spy(tensor, tmp_path / "w.png", "fc1/weight")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"tEXtTitle\x00fc1/weight  20x50 float64" in data


def test_spy_large_matrix_is_shrunk_by_block_max(rng):
    dense = np.where(rng.random((300, 1000)) < 0.001, 1.0, 0.0)
    image = spy_image(SparseTensor.from_dense(dense, coo_layout(2)), max_side=128)
    # Oracle: tiles of ceil(1000 / 128) == 8, padded, "any nonzero" per tile.
    padded = np.zeros((304, 1000), bool)
    padded[:300] = dense != 0
    tiles = padded.reshape(38, 8, 125, 8).any(axis=(1, 3))
    np.testing.assert_array_equal(image, np.where(tiles, NONZERO, 255))


def test_spy_shows_stored_zeros_inside_blocks():
    dense = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    image = spy_image(SparseTensor.from_dense(dense, bsr_layout((1, 2))), min_side=1)
    np.testing.assert_array_equal(image, [[NONZERO, STORED_ZERO, 255, 255], [255, 255, 255, 255]])


def test_spy_flattens_higher_ranks(rng):
    dense = np.where(rng.random((4, 3, 3, 2)) < 0.3, 1.0, 0.0)
    image = spy_image(SparseTensor.from_dense(dense, coo_layout(4)), min_side=1)
    np.testing.assert_array_equal(image, np.where(dense.reshape(4, 18) != 0, NONZERO, 255))


# --------------------------------------------------------------------------- text output
def test_human_bytes():
    assert [human_bytes(n) for n in (0, 1023, 1024, 1536, 5 * 2**20)] == [
        "0 B", "1023 B", "1.0 KiB", "1.5 KiB", "5.0 MiB",
    ]  # fmt: skip


def test_format_table_aligns_columns():
    text = format_table(["a", "bb"], [["xxx", "1"], ["y", "22"]], "lr")
    assert text.splitlines() == ["a    bb", "---  --", "xxx   1", "y    22"]


def test_short_name_and_one_line():
    assert short_name("a;b;c") == "a"
    long = "encoder/" + "x" * 50 + "/MatMul"
    short = short_name(long, width=20)
    assert len(short) == 20 and short.startswith("encoder/x") and short.endswith("/MatMul")
    assert one_line("a\n\t b  c") == "a b c"
    capped = one_line("z" * 1000, limit=400)
    assert len(capped) == 400 and capped.endswith("…")
    assert shape_text((1, 64)) == "1x64" and shape_text(()) == ""
    assert (milliseconds(3.4e-5), milliseconds(2.5)) == ("0.034 ms", "2.50 s")


# --------------------------------------------------------------------------- detection
def _patched(data: bytes, offset: int, fmt: str, *values: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


def _header_defects():
    """One broken invariant of the TFLite header per case, each with its pinned reason."""
    data = demo_model("tflite").read_bytes()
    (root,) = struct.unpack_from("<I", data)
    (back,) = struct.unpack_from("<i", data, root)
    vtable = root - back
    size = len(data)
    return [
        (data[:7], "no 'TFL3' file identifier"),
        (data[:4] + b"TFL2" + data[8:], "no 'TFL3' file identifier"),
        (_patched(data, 0, "<I", size), f"root table offset {size} does not fit the {size}-byte"),
        (_patched(data, 0, "<I", 4), "root table offset 4 does not fit"),
        (_patched(data, 0, "<I", root + 2), f"root table offset {root + 2} does not fit"),
        (_patched(data, root, "<i", -size), "vtable of the root table at"),
        (_patched(data, vtable, "<H", 2), "vtable of the root table declares 2 bytes"),
        (_patched(data, vtable, "<H", 7), "vtable of the root table declares 7 bytes"),
        (_patched(data, vtable + 2, "<H", 0), "root table declares 0 bytes"),
        (_patched(data, vtable + 2, "<H", 65534), "root table declares 65534 bytes"),
        (_patched(data, vtable + 8, "<H", 0), "the root table has no subgraphs"),
        (_patched(data, vtable, "<H", 8), "the root table has no subgraphs"),
    ]


@pytest.mark.parametrize(("data", "reason"), _header_defects())
def test_tflite_header_problem_names_each_invariant(data, reason):
    assert reason in tflite_header_problem(data)


def test_every_tflite_fixture_has_a_sound_header():
    from pathlib import Path

    fixtures = Path(__file__).parent / "fixtures" / "tflite"
    files = [demo_model("tflite"), *fixtures.rglob("*.tflite")]
    assert len(files) > 5
    assert {str(f): tflite_header_problem(f.read_bytes()) for f in files} == {
        str(f): None for f in files
    }


# --------------------------------------------------------------------------- oracle inputs
def test_oracles_live_with_their_adapters_and_keep_their_old_names():
    import sparse_import.verify as verify

    assert verify.LiteRTOracle is LiteRTOracle and verify.OnnxRuntimeOracle is OnnxRuntimeOracle
    assert LiteRTOracle.__module__ == "sparse_import.adapters.tflite.oracle"
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        verify.Nope  # noqa: B018


def test_onnx_oracle_needs_no_value_for_initializers_declared_as_inputs(rng):
    """An old model-zoo habit: every weight is also a graph input (an optional override)."""
    from onnx import TensorProto, helper, numpy_helper

    w = rng.standard_normal((4, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "zoo",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4]),
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 3]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    oracle = make_oracle(model.SerializeToString(), "onnx")
    assert [s.name for s in oracle.inputs] == ["x"]
    x = random_inputs(oracle.inputs, 2)["x"]
    np.testing.assert_allclose(oracle.run({"x": x})[0], x @ w, rtol=1e-5)
    np.testing.assert_allclose(oracle.run({"x": x, "w": 2 * w})[0], x @ (2 * w), rtol=1e-5)
