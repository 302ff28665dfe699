"""Quantized TFLite models through the Relax backend, bit for bit against LiteRT.

Every int8 and hybrid fixture (``fixtures/tflite/int8/`` and the quantized ones of
``fixtures/tflite/``) is imported with ``sparse_import.relax_backend``, lowered in each mode,
built with ``relax.build`` for this CPU and run on 20 seeded input sets; the oracle is LiteRT's
builtin kernels without delegates. Outputs must be identical (0 quantization steps apart, the
float output of ``DEQUANTIZE`` included). Hybrid operators are compared at their own outputs (made
model outputs); a float layer after them sums in TVM's order and is held to
``sparse_import.verify``'s relative rule. Skipped unless TVM has Relax and no Relay (0.27).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")
if importlib.util.find_spec("tvm.relay") is not None or not hasattr(tvm, "relax"):
    pytest.skip("needs TVM with Relax and without Relay (0.27)", allow_module_level=True)
if importlib.util.find_spec("tvm.relax.frontend.tflite") is None:
    pytest.skip("needs tvm.relax.frontend.tflite", allow_module_level=True)
pytest.importorskip("ai_edge_litert")

import flatbuffers  # noqa: E402
import tvm_ffi  # noqa: E402
from ai_edge_litert import schema_py_generated as schema  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from tvm import relax  # noqa: E402

from sparse_import.errors import UnsupportedModelError  # noqa: E402
from sparse_import.relax_backend import build, lower  # noqa: E402
from sparse_import.relax_backend.quantized import quantize_multiplier, requantize  # noqa: E402
from sparse_import.relax_backend.tflite import import_model  # noqa: E402
from sparse_import.verify import LiteRTOracle, compare, random_inputs  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tflite"
SEEDS = range(20)
MODES = ("dense", "sparse", "auto")
FULL = sorted(
    [f"int8/{p.name}" for p in (FIXTURES / "int8").glob("int8_*.tflite")]
    + ["cnn_int8.tflite", "handmade_int8_csc_fc.tflite", "mlp_int8.tflite"]
)
HYBRID = sorted(
    [f"int8/{p.name}" for p in (FIXTURES / "int8").glob("hybrid_*.tflite")]
    + ["fc_hybrid_block1x16.tflite"]
)
MATRIX_OPS = {
    schema.BuiltinOperator.FULLY_CONNECTED,
    schema.BuiltinOperator.CONV_2D,
    schema.BuiltinOperator.DEPTHWISE_CONV_2D,
}


def _edit(model: bytes, change) -> bytes:
    obj = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    change(obj)
    builder = flatbuffers.Builder(0)
    builder.Finish(obj.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _codes(model: schema.ModelT) -> list[int]:
    return [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]


def _outputs(result) -> list[np.ndarray]:
    if isinstance(result, tvm.runtime.Tensor):
        return [result.numpy()]
    return [o for item in result for o in _outputs(item)]


@pytest.fixture(scope="module")
def executables():
    """``model bytes -> [(modes, vm)]``: one import per model, one build (and VM) per distinct
    lowered module."""
    cache: dict[bytes, list[tuple[list[str], relax.VirtualMachine]]] = {}

    def get(model: bytes):
        if model not in cache:
            found: dict[int, tuple[list[str], relax.VirtualMachine]] = {}
            for mode in MODES:
                mod, _ = lower(import_model(model), mode=mode)
                key = tvm_ffi.structural_hash(mod)
                if key not in found:
                    found[key] = ([], relax.VirtualMachine(build(mod), tvm.cpu()))
                found[key][0].append(mode)
            cache[model] = list(found.values())
        return cache[model]

    return get


def _run(vm: relax.VirtualMachine, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    arrays = (tvm.runtime.tensor(np.ascontiguousarray(a)) for a in inputs.values())
    return _outputs(vm["main"](*arrays))


def _assert_exact(executables, model: bytes, exact: slice = slice(None)) -> None:
    """Every build of ``model`` equals LiteRT on every seed at the ``exact`` outputs; the other
    outputs agree by ``sparse_import.verify.compare``."""
    oracle = LiteRTOracle(model)
    builds = executables(model)
    for seed in SEEDS:
        inputs = random_inputs(oracle.inputs, seed)
        expected = oracle.run(inputs)
        for modes, vm in builds:
            actual = _run(vm, inputs)
            assert [(a.shape, a.dtype) for a in actual] == [(e.shape, e.dtype) for e in expected]
            pairs = list(zip(actual[exact], expected[exact], strict=True))
            steps = [
                float(np.abs(a.astype(np.float64) - e.astype(np.float64)).max(initial=0))
                for a, e in pairs
            ]
            assert all(np.array_equal(a, e) for a, e in pairs), (
                f"modes {modes}, seed {seed}: outputs differ by up to {steps}"
            )
            rest = range(len(expected))[exact.stop or len(expected) :]
            if rest:
                checks = compare(
                    [actual[i] for i in rest],
                    [expected[i] for i in rest],
                    [oracle.outputs[i] for i in rest],
                )
                assert all(check.ok for check in checks), (modes, seed, checks)


# ---------------------------------------------------------------------------- full integer
@pytest.mark.parametrize("name", FULL)
def test_full_integer_model_is_bit_exact(executables, name):
    _assert_exact(executables, (FIXTURES / name).read_bytes())


def test_weights_stay_unbound_int8_parameters():
    imported = import_model(FIXTURES / "int8/int8_cnn_pc_i8_s0.tflite")
    main = imported.mod["main"]
    declared = {p.name: p for p in main.params[int(main.attrs["num_input"]) :]}
    assert imported.params == {} and sorted(declared) == sorted(w.param for w in imported.weights)
    assert {str(declared[w.param].ty.dtype) for w in imported.weights} == {"int8"}
    assert {w.consumer for w in imported.weights} == {
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "FULLY_CONNECTED",
    }


# ---------------------------------------------------------------------------- TRANSPOSE_CONV
def _transpose_conv_op(model: schema.ModelT):
    graph, codes = model.subgraphs[0], _codes(model)
    op = next(
        o for o in graph.operators if codes[o.opcodeIndex] == schema.BuiltinOperator.TRANSPOSE_CONV
    )
    return graph, op


def _lone_transpose_conv(channels: int, padding: int, seed: int):
    """cnn_int8's TRANSPOSE_CONV alone (its int8 input is the model input), with a dense random
    ``(channels, 3, 3, 16)`` weight, per-channel scales, a random bias and ``padding``."""

    def change(model: schema.ModelT) -> None:
        graph, op = _transpose_conv_op(model)
        rng = np.random.default_rng(seed)

        def buffer(array: np.ndarray) -> int:
            b = schema.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(array).tobytes(), np.uint8)
            model.buffers.append(b)
            return len(model.buffers) - 1

        shape, weight, data, bias = (graph.tensors[i] for i in op.inputs)
        output = graph.tensors[op.outputs[0]]
        size = 12 if padding == schema.Padding.SAME else 13  # 6x6 input, stride 2, 3x3 kernel
        weight.shape = np.array([channels, 3, 3, 16], dtype=np.int32)
        weight.buffer = buffer(rng.integers(-127, 128, (channels, 3, 3, 16), dtype=np.int8))
        weight.sparsity = None
        scales = np.exp(rng.uniform(-7, -4, channels)).astype(np.float32)
        weight.quantization.scale, weight.quantization.zeroPoint = scales, np.zeros(channels)
        bias.shape = np.array([channels], dtype=np.int32)
        bias.buffer = buffer(rng.integers(-2000, 2000, channels, dtype=np.int32))
        bias.quantization.scale = scales * np.float32(data.quantization.scale[0])
        bias.quantization.zeroPoint = np.zeros(channels)
        shape.buffer = buffer(np.array([1, size, size, channels], dtype=np.int32))
        output.shape = np.array([1, size, size, channels], dtype=np.int32)
        output.shapeSignature = None
        op.builtinOptions.padding = padding
        graph.operators, graph.inputs, graph.outputs = [op], [op.inputs[2]], [op.outputs[0]]

    return change


@pytest.mark.parametrize(
    ("channels", "padding"),
    [(12, schema.Padding.SAME), (21, schema.Padding.SAME), (12, schema.Padding.VALID)],
)
def test_transpose_conv_is_bit_exact_in_vector_and_remaining_channels(
    executables, channels, padding
):
    """LiteRT's output stage breaks ties up in channel groups of 8 and away from zero in the
    remaining channels; 12 and 21 channels have both."""
    model = _edit(
        (FIXTURES / "cnn_int8.tflite").read_bytes(),
        _lone_transpose_conv(channels, padding, channels + padding),
    )
    _assert_exact(executables, model)


def test_transpose_conv_weight_is_an_unbound_int8_parameter():
    imported = import_model(FIXTURES / "cnn_int8.tflite")
    main = imported.mod["main"]
    (weight,) = (w for w in imported.weights if w.consumer == "TRANSPOSE_CONV")
    (param,) = (p for p in main.params if p.name == weight.param)
    assert str(param.ty.dtype) == "int8" and weight.tensor.shape == (4, 3, 3, 16)


def _transpose_conv_axis(model: schema.ModelT) -> None:
    graph, op = _transpose_conv_op(model)
    graph.tensors[op.inputs[1]].quantization.quantizedDimension = 3


def test_transpose_conv_quantized_along_another_axis_is_refused():
    model = _edit((FIXTURES / "cnn_int8.tflite").read_bytes(), _transpose_conv_axis)
    with pytest.raises(
        UnsupportedModelError,
        match=r"^operator 5 \(TRANSPOSE_CONV\) of subgraph 0 is quantized: its weight is "
        r"quantized along axis 3, not 0 \(the output channels\); the Relax TFLite import",
    ):
        import_model(model)


# ---------------------------------------------------------------------------- hybrid
def _hybrid_outputs(model: schema.ModelT) -> None:
    """Make the outputs of every hybrid operator model outputs, before the original ones."""
    graph, codes = model.subgraphs[0], _codes(model)
    hybrid = [
        int(op.outputs[0])
        for op in graph.operators
        if codes[op.opcodeIndex] in MATRIX_OPS
        and graph.tensors[op.inputs[0]].type == schema.TensorType.FLOAT32
        and graph.tensors[op.inputs[1]].type == schema.TensorType.INT8
    ]
    graph.outputs = hybrid + [int(i) for i in graph.outputs if int(i) not in hybrid]


def _symmetric_inputs(model: schema.ModelT) -> None:
    codes = _codes(model)
    for op in model.subgraphs[0].operators:
        if codes[op.opcodeIndex] == schema.BuiltinOperator.FULLY_CONNECTED:
            op.builtinOptions.asymmetricQuantizeInputs = False


HYBRID_CASES = [(name, False) for name in HYBRID] + [
    (name, True) for name in HYBRID if "hybrid_fc_" in name
]


@pytest.mark.parametrize(("name", "symmetric"), HYBRID_CASES)
def test_hybrid_operators_are_bit_exact(executables, name, symmetric):
    """Input quantization per row (FULLY_CONNECTED, asymmetric as written or symmetric) or per
    image (convolutions), then LiteRT's dense, sparse (1x16) and convolution hybrid kernels."""
    model = _edit((FIXTURES / name).read_bytes(), _hybrid_outputs)
    if symmetric:
        model = _edit(model, _symmetric_inputs)
    obj = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    graph, codes = obj.subgraphs[0], _codes(obj)
    hybrid = sum(
        codes[op.opcodeIndex] in MATRIX_OPS
        and graph.tensors[op.inputs[1]].type == schema.TensorType.INT8
        for op in graph.operators
    )
    assert hybrid >= 2
    _assert_exact(executables, model, slice(0, hybrid))


def _one_weight_scale(model: schema.ModelT) -> None:
    graph, codes = model.subgraphs[0], _codes(model)
    op = next(o for o in graph.operators if codes[o.opcodeIndex] == schema.BuiltinOperator.CONV_2D)
    q = graph.tensors[op.inputs[1]].quantization
    q.scale, q.zeroPoint = [float(np.max(q.scale))], [0]


def test_per_tensor_hybrid_convolution_is_refused_by_name():
    model = _edit((FIXTURES / "int8/hybrid_cnn_pc_s0.tflite").read_bytes(), _one_weight_scale)
    with pytest.raises(UnsupportedModelError) as raised:
        import_model(model)
    assert str(raised.value) == (
        "operator 1 (CONV_2D) of subgraph 0 is quantized: hybrid (float input, int8 weight) "
        "with 1 weight scale(s) for 67 output channels; one per channel is converted; the Relax "
        "TFLite import does not compute LiteRT's arithmetic for it exactly, use "
        "sparse_import.to_relay"
    )


def _tanh_activation(model: schema.ModelT) -> None:
    codes = _codes(model)
    for op in model.subgraphs[0].operators:
        if codes[op.opcodeIndex] == schema.BuiltinOperator.FULLY_CONNECTED:
            op.builtinOptions.fusedActivationFunction = schema.ActivationFunctionType.TANH


def test_int8_operator_with_an_activation_litert_cannot_fuse_is_refused():
    model = _edit((FIXTURES / "int8/int8_fc_pt_i8_s0.tflite").read_bytes(), _tanh_activation)
    with pytest.raises(
        UnsupportedModelError,
        match=r"^operator 0 \(FULLY_CONNECTED\) of subgraph 0 is quantized: its fused "
        r"activation 4 is not NONE, RELU, RELU_N1_TO_1 or RELU6;",
    ):
        import_model(model)


def _first_fc(model: schema.ModelT):
    graph, codes = model.subgraphs[0], _codes(model)
    op = next(
        o for o in graph.operators if codes[o.opcodeIndex] == schema.BuiltinOperator.FULLY_CONNECTED
    )
    return graph, op


def _weight_zero_point(model: schema.ModelT) -> None:
    graph, op = _first_fc(model)
    q = graph.tensors[op.inputs[1]].quantization
    q.zeroPoint = np.full(len(q.scale), 3, dtype=np.int64)


def _int16_output(model: schema.ModelT) -> None:
    graph, op = _first_fc(model)
    graph.tensors[op.outputs[0]].type = schema.TensorType.INT16


def _two_weight_scales(model: schema.ModelT) -> None:
    graph, op = _first_fc(model)
    q = graph.tensors[op.inputs[1]].quantization
    q.scale, q.zeroPoint = [0.01, 0.02], [0, 0]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_weight_zero_point, "its weight has non-zero zero points"),
        (_int16_output, "its input, weight and output are INT8/INT8/INT16; int8 is converted"),
        (_two_weight_scales, r"its weight has 2 scales for \d+ output channels"),
    ],
)
def test_int8_matrix_operators_outside_litert_rules_are_refused(change, reason):
    model = _edit((FIXTURES / "int8/int8_fc_pt_i8_s0.tflite").read_bytes(), change)
    with pytest.raises(
        UnsupportedModelError,
        match=rf"^operator 0 \(FULLY_CONNECTED\) of subgraph 0 is quantized: {reason}; the Relax "
        "TFLite import does not compute LiteRT's arithmetic for it exactly, use "
        r"sparse_import\.to_relay$",
    ):
        import_model(model)


# ---------------------------------------------------------------------------- QUANTIZE
def _quantize_chain(length: int):
    """The float-I/O fixture cut to its QUANTIZE and a DEQUANTIZE of that, on ``length``
    values; both results are outputs."""

    def change(model: schema.ModelT) -> None:
        graph, codes = model.subgraphs[0], _codes(model)
        quantize = graph.operators[0]
        dequantize = next(
            op
            for op in graph.operators
            if codes[op.opcodeIndex] == schema.BuiltinOperator.DEQUANTIZE
        )
        dequantize.inputs = [quantize.outputs[0]]
        graph.operators = [quantize, dequantize]
        graph.inputs = [quantize.inputs[0]]
        graph.outputs = [quantize.outputs[0], dequantize.outputs[0]]
        for index in (quantize.inputs[0], quantize.outputs[0], dequantize.outputs[0]):
            graph.tensors[index].shape = np.array([1, length], dtype=np.int32)
            graph.tensors[index].shapeSignature = None

    return change


@pytest.mark.parametrize("length", [5, 13, 24])
def test_quantize_and_dequantize_are_bit_exact_on_ties(executables, length):
    """LiteRT rounds the first ``8 * (n // 8)`` values one way and the rest another."""
    model = _edit(
        (FIXTURES / "int8/int8_fc_pt_f32_s0.tflite").read_bytes(), _quantize_chain(length)
    )
    oracle = LiteRTOracle(model)
    scale = oracle.outputs[0].scale
    ((_, vm),) = executables(model)
    rng = np.random.default_rng(length)
    for seed in SEEDS:
        if seed % 2:  # float32 values on the midpoints of quantization steps
            x = ((rng.integers(-100, 100, (1, length)) + 0.5) * np.float32(scale)).astype(
                np.float32
            )
        else:
            x = rng.standard_normal((1, length)).astype(np.float32)
        inputs = {oracle.inputs[0].name: x}
        for actual, expected in zip(_run(vm, inputs), oracle.run(inputs), strict=True):
            assert np.array_equal(actual, expected), (seed, actual, expected)


# ---------------------------------------------------------------------------- output stage
def _high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """gemmlowp's ``SaturatingRoundingDoublingHighMul``, transcribed (int64 arithmetic)."""
    total = a * b + np.where(a * b >= 0, 1 << 30, 1 - (1 << 30))
    return np.sign(total) * (np.abs(total) // (1 << 31))  # C++ division truncates


def _divide_by_pot(x: np.ndarray, exponent: np.ndarray, away: np.ndarray) -> np.ndarray:
    """gemmlowp's ``RoundingDivideByPOT`` (ties away from zero) or ruy's (ties up)."""
    mask = (np.int64(1) << exponent) - 1
    threshold = (mask >> 1) + np.where(away, x < 0, 0)
    rounded = (x >> exponent) + ((x & mask) > threshold)
    half = np.where(exponent > 0, np.int64(1) << np.maximum(exponent - 1, 0), 0)
    return np.where(away, rounded, (x + half) >> exponent)


CHANNELS = 48


@functools.cache
def _output_stage(seed: int):
    """A built :func:`requantize` over random per-channel scales and tie rules."""
    rng = np.random.default_rng(seed)
    scales = np.exp(rng.uniform(np.log(1e-5), np.log(4.0), CHANNELS))  # some above 1
    scales[:3] = [0.5, 1.0, 2.0**-31]
    away = rng.random(CHANNELS) < 0.5
    zero_point, bounds = int(rng.integers(-20, 20)), (-128, int(rng.integers(60, 128)))
    acc = relax.Var("acc", relax.TensorType((4, CHANNELS), "int32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [acc]):
        bb.emit_func_output(bb.normalize(requantize(acc, scales, away, zero_point, bounds)))
    vm = relax.VirtualMachine(build(bb.get()), tvm.cpu())
    return vm, scales, away, zero_point, bounds


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2), data=st.data())
def test_requantize_matches_tflite_fixed_point(seed, data):
    vm, scales, away, zero_point, bounds = _output_stage(seed)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    target = rng.integers(-130, 130, (4, CHANNELS)) + rng.choice([0.0, 0.5], (4, CHANNELS))
    acc = np.round(target / scales) + rng.integers(-1, 2, (4, CHANNELS))  # next to ties
    acc = np.clip(acc, -(2**31), 2**31 - 1).astype(np.int32)
    (actual,) = _run(vm, {"acc": acc})
    multiplier, shift = quantize_multiplier(scales)
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    high = _high_mul(acc.astype(np.int64) * (np.int64(1) << left), multiplier)
    expected = np.clip(_divide_by_pot(high, right, away) + zero_point, *bounds).astype(np.int8)
    assert np.array_equal(actual, expected)
