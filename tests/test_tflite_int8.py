"""int8 TFLite models from TensorFlow's converter, bit for bit against LiteRT.

The fixtures in ``fixtures/tflite/int8/`` (written by ``generate_converter.py``) have seeded
random layer sizes and fused activations: full-integer models with per-channel or per-tensor
weight scales and int8 or float inputs and outputs (``QUANTIZE`` / ``DEQUANTIZE``), and
dynamic-range ("hybrid") models; weights in 1x16 blocks read by ``FULLY_CONNECTED``, CSR behind
``DENSIFY`` and dense, in ``FULLY_CONNECTED``, ``CONV_2D`` and ``DEPTHWISE_CONV_2D``.

Every model is converted in each mode of ``sparse_import.to_relay``; modes that give the same
Relay module and parameters share one build. The oracle is LiteRT's builtin kernels without
delegates, on 20 seeded input sets per model: outputs must be identical, i.e. 0 quantization
steps apart (for the float output of ``DEQUANTIZE`` as well). Hybrid operators are compared at
their own outputs; a float layer after them sums in TVM's order, so the model output is held to
``sparse_import.verify``'s relative rule.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import tvm
from ai_edge_litert import schema_py_generated as schema
from hypothesis import given, settings
from hypothesis import strategies as st
from sparse_import.adapters.tflite.quantized import (
    activation_range,
    effective_scales,
    quantize_multiplier,
    requantize,
)
from tflite_support import FIXTURES, builtin_codes, edit
from tvm import relay

import sparse_import
from sparse_import.api import MODES
from sparse_import.errors import UnsupportedModelError
from sparse_import.relay_backend.build import build, run
from sparse_import.verify import LiteRTOracle, compare, random_inputs

INT8 = FIXTURES / "int8"
SEEDS = range(20)
FULL = sorted(p.name for p in INT8.glob("int8_*.tflite"))
HYBRID = sorted(p.name for p in INT8.glob("hybrid_*.tflite"))
MATRIX_OPS = {
    schema.BuiltinOperator.FULLY_CONNECTED,
    schema.BuiltinOperator.CONV_2D,
    schema.BuiltinOperator.DEPTHWISE_CONV_2D,
}


def test_the_family_is_there():
    assert len(FULL) >= 10 and len(HYBRID) >= 3
    assert all((INT8 / name).stat().st_size < 100_000 for name in FULL + HYBRID)


# ---------------------------------------------------------------------------- builds
@functools.cache
def _builds(model: bytes) -> tuple[tuple[tuple[str, ...], tvm.runtime.Module], ...]:
    """``(modes, lib)`` per distinct ``to_relay`` result of ``model`` over all modes."""
    groups: list[tuple[list[str], tvm.IRModule, dict]] = []
    for mode in MODES:
        mod, params = sparse_import.to_relay(model, mode=mode)
        for modes, other, other_params in groups:
            if _same(mod, params, other, other_params):
                modes.append(mode)
                break
        else:
            groups.append(([mode], mod, params))
    return tuple((tuple(modes), build(mod, params)) for modes, mod, params in groups)


def _same(mod: tvm.IRModule, params: dict, other: tvm.IRModule, other_params: dict) -> bool:
    return (
        params.keys() == other_params.keys()
        and tvm.ir.structural_equal(_sorted_params(mod), _sorted_params(other))
        and all(np.array_equal(_numpy(params[k]), _numpy(other_params[k])) for k in params)
    )


def _sorted_params(mod: tvm.IRModule) -> relay.Function:
    """``main`` with its parameters in name order (modes may list them in another order)."""
    main = mod["main"]
    params = sorted(main.params, key=lambda var: var.name_hint)
    return relay.Function(params, main.body)


def _numpy(value) -> np.ndarray:
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def _steps(actual: np.ndarray, expected: np.ndarray, scale: float) -> float:
    """``max |actual - expected|`` in quantization steps of ``scale``."""
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    return float(diff.max() / scale) if diff.size else 0.0


def _output_scales(model: bytes) -> list[float]:
    """Per model output: its scale, or for a float output the scale of the quantized tensor
    it was dequantized from (1.0 when there is none)."""
    obj = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    graph = obj.subgraphs[0]
    producers = {int(o): op for op in graph.operators for o in op.outputs}
    scales = []
    for index in graph.outputs:
        tensor = graph.tensors[index]
        if tensor.type == schema.TensorType.FLOAT32 and int(index) in producers:
            tensor = graph.tensors[producers[int(index)].inputs[0]]
        q = tensor.quantization
        scales.append(float(q.scale[0]) if q is not None and q.scale is not None else 1.0)
    return scales


def _assert_exact(model: bytes, outputs: slice = slice(None)) -> None:
    """Every build of ``model`` equals LiteRT on every seed (the ``outputs`` selected)."""
    oracle = LiteRTOracle(model)
    scales = _output_scales(model)[outputs]
    for seed in SEEDS:
        inputs = random_inputs(oracle.inputs, seed)
        expected = oracle.run(inputs)[outputs]
        for modes, lib in _builds(model):
            actual = run(lib, inputs)[outputs]
            steps = [_steps(a, e, s) for a, e, s in zip(actual, expected, scales, strict=True)]
            assert all(
                a.dtype == e.dtype and np.array_equal(a, e)
                for a, e in zip(actual, expected, strict=True)
            ), f"modes {modes}, seed {seed}: outputs differ by {steps} quantization steps"


# ---------------------------------------------------------------------------- full integer
@pytest.mark.parametrize("name", FULL)
def test_full_integer_model_is_bit_exact(name):
    _assert_exact((INT8 / name).read_bytes())


def test_full_integer_models_cover_the_class():
    """Per-channel and per-tensor, int8 and float I/O, 1x16 blocks read by FULLY_CONNECTED,
    DENSIFY, convolutions, every fused activation."""
    seen = set()
    for name in FULL:
        obj = schema.ModelT.InitFromPackedBuf(bytearray((INT8 / name).read_bytes()), 0)
        graph, codes = obj.subgraphs[0], builtin_codes(obj)
        for op in graph.operators:
            code = codes[op.opcodeIndex]
            seen.add(code)
            if code in MATRIX_OPS:
                weight = graph.tensors[op.inputs[1]]
                seen.add(("scales", len(weight.quantization.scale) > 1))
                seen.add(("blocks", weight.sparsity is not None))
                seen.add(("activation", op.builtinOptions.fusedActivationFunction))
    ops = schema.BuiltinOperator
    assert {ops.QUANTIZE, ops.DEQUANTIZE, ops.DENSIFY} | MATRIX_OPS <= seen
    assert {("scales", True), ("scales", False), ("blocks", True), ("blocks", False)} <= seen
    assert {("activation", a) for a in (0, 1, 3)} <= seen  # NONE, RELU, RELU6


# ---------------------------------------------------------------------------- hybrid
def _hybrid_outputs(model: schema.ModelT) -> None:
    """Make the outputs of every hybrid operator model outputs, before the original ones."""
    graph, codes = model.subgraphs[0], builtin_codes(model)
    hybrid = [
        int(op.outputs[0])
        for op in graph.operators
        if codes[op.opcodeIndex] in MATRIX_OPS
        and graph.tensors[op.inputs[0]].type == schema.TensorType.FLOAT32
        and graph.tensors[op.inputs[1]].type == schema.TensorType.INT8
    ]
    graph.outputs = hybrid + [int(i) for i in graph.outputs]


def _symmetric_inputs(model: schema.ModelT) -> None:
    codes = builtin_codes(model)
    for op in model.subgraphs[0].operators:
        if codes[op.opcodeIndex] == schema.BuiltinOperator.FULLY_CONNECTED:
            op.builtinOptions.asymmetricQuantizeInputs = False


HYBRID_CASES = [(name, False) for name in HYBRID] + [
    (name, True) for name in HYBRID if name.startswith("hybrid_fc_")
]


@pytest.mark.parametrize(("name", "symmetric"), HYBRID_CASES)
def test_hybrid_operators_are_bit_exact(name, symmetric):
    """Input quantization per row (FULLY_CONNECTED, asymmetric as written or symmetric) or per
    image (convolutions), then LiteRT's dense, sparse (1x16) and convolution hybrid kernels."""
    model = edit((INT8 / name).read_bytes(), _hybrid_outputs)
    if symmetric:
        model = edit(model, _symmetric_inputs)
    hybrid = len(LiteRTOracle(model).outputs) - 1
    assert hybrid >= 2
    _assert_exact(model, slice(0, hybrid))
    oracle = LiteRTOracle(model)
    for seed in SEEDS[:5]:
        inputs = random_inputs(oracle.inputs, seed)
        expected = oracle.run(inputs)
        for _, lib in _builds(model):
            checks = compare(run(lib, inputs)[hybrid:], expected[hybrid:], oracle.outputs[hybrid:])
            assert all(check.ok for check in checks), checks


def _one_weight_scale(model: schema.ModelT) -> None:
    """Give the CONV_2D weight a single scale (per-tensor hybrid convolution)."""
    graph, codes = model.subgraphs[0], builtin_codes(model)
    op = next(o for o in graph.operators if codes[o.opcodeIndex] == schema.BuiltinOperator.CONV_2D)
    q = graph.tensors[op.inputs[1]].quantization
    q.scale, q.zeroPoint = [float(np.max(q.scale))], [0]


def test_per_tensor_hybrid_convolution_is_refused_by_name():
    model = edit((INT8 / "hybrid_cnn_pc_s0.tflite").read_bytes(), _one_weight_scale)
    with pytest.raises(
        UnsupportedModelError, match=r"hybrid CONV_2D .* not int8 with 1 scale\(s\) for 67 channels"
    ):
        sparse_import.to_relay(model, mode="dense")


# ---------------------------------------------------------------------------- QUANTIZE
def _quantize_chain(length: int):
    """The float-I/O fixture cut to its QUANTIZE, a DEQUANTIZE of that, on ``length`` values;
    both results are outputs."""

    def change(model: schema.ModelT) -> None:
        graph = model.subgraphs[0]
        codes = builtin_codes(model)
        quantize = graph.operators[0]
        dequantize = next(
            op
            for op in graph.operators
            if codes[op.opcodeIndex] == schema.BuiltinOperator.DEQUANTIZE
        )
        dequantize.inputs = [quantize.outputs[0]]
        graph.operators = [quantize, dequantize]
        graph.inputs, graph.outputs = (
            [quantize.inputs[0]],
            [quantize.outputs[0], dequantize.outputs[0]],
        )
        for index in (quantize.inputs[0], quantize.outputs[0], dequantize.outputs[0]):
            graph.tensors[index].shape = np.array([1, length], dtype=np.int32)
            graph.tensors[index].shapeSignature = None

    return change


@pytest.mark.parametrize("length", [5, 13, 24])
def test_quantize_and_dequantize_are_bit_exact_on_ties(length):
    """LiteRT rounds the first ``8 * (n // 8)`` values one way and the rest another."""
    model = edit((INT8 / "int8_fc_pt_f32_s0.tflite").read_bytes(), _quantize_chain(length))
    oracle = LiteRTOracle(model)
    scale = oracle.outputs[0].scale
    ((_, lib),) = _builds(model)
    rng = np.random.default_rng(length)
    for seed in SEEDS:
        if seed % 2:  # float32 values next to the midpoints of quantization steps
            ties = (rng.integers(-100, 100, (1, length)) + 0.5) * np.float32(scale)
            x = ties.astype(np.float32)
        else:
            x = rng.standard_normal((1, length)).astype(np.float32)
        inputs = {oracle.inputs[0].name: x}
        for actual, expected in zip(run(lib, inputs), oracle.run(inputs), strict=True):
            assert np.array_equal(actual, expected), (seed, actual, expected)


# ---------------------------------------------------------------------------- output stage
def _high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """gemmlowp's ``SaturatingRoundingDoublingHighMul``, transcribed (int64 arithmetic)."""
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    total = ab + nudge
    return np.sign(total) * (np.abs(total) // (1 << 31))  # C++ division truncates


def _divide_by_pot(x: np.ndarray, exponent: np.ndarray, away: np.ndarray) -> np.ndarray:
    """gemmlowp's ``RoundingDivideByPOT`` (ties away from zero) or ruy's (ties up)."""
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + np.where(away, x < 0, 0)
    rounded = (x >> exponent) + (remainder > threshold)
    ties_up = (
        x + np.where(exponent > 0, np.int64(1) << np.maximum(exponent - 1, 0), 0)
    ) >> exponent
    return np.where(away, rounded, ties_up)


def _tflite_output_stage(acc, scales, away, zero_point, bounds):
    multiplier, shift = quantize_multiplier(scales)
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    x = _high_mul(acc.astype(np.int64) * (np.int64(1) << left), multiplier)
    return np.clip(_divide_by_pot(x, right, away) + zero_point, *bounds).astype(np.int8)


CHANNELS = 48


@functools.cache
def _output_stage(seed: int):
    """A compiled :func:`requantize` over random per-channel scales and tie rules."""
    rng = np.random.default_rng(seed)
    scales = np.exp(rng.uniform(np.log(1e-5), np.log(4.0), CHANNELS))  # some above 1
    scales[:3] = [0.5, 1.0, 2.0**-31]
    away = rng.random(CHANNELS) < 0.5
    zero_point, bounds = int(rng.integers(-20, 20)), (-128, int(rng.integers(60, 128)))
    acc = relay.var("acc", shape=(4, CHANNELS), dtype="int32")
    expr = requantize(acc, scales, away, zero_point, bounds)
    lib = build(tvm.IRModule.from_expr(relay.Function([acc], expr)), {})
    return lib, scales, away, zero_point, bounds


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2), data=st.data())
def test_requantize_matches_tflite_fixed_point(seed, data):
    lib, scales, away, zero_point, bounds = _output_stage(seed)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    target = rng.integers(-130, 130, (4, CHANNELS)) + rng.choice([0.0, 0.5], (4, CHANNELS))
    acc = np.round(target / scales) + rng.integers(-1, 2, (4, CHANNELS))  # next to ties
    acc = np.clip(acc, -(2**31), 2**31 - 1).astype(np.int32)
    (actual,) = run(lib, {"acc": acc})
    expected = _tflite_output_stage(acc, scales, away, zero_point, bounds)
    assert np.array_equal(actual, expected)


def test_quantize_multiplier_golden():
    multiplier, shift = quantize_multiplier(np.array([0.5, 1.0, 0.75, 1 - 2.0**-40, 2.0**-33, 0]))
    assert multiplier.tolist() == [2**30, 2**30, 3 * 2**29, 2**30, 0, 0]
    assert shift.tolist() == [0, 1, 0, 1, 0, 0]


def test_effective_scales_per_tensor_multiply_in_float32_first():
    a, w, o = np.float32(0.1), np.float32(0.3), np.float32(0.7)
    product = float(np.float64(np.float32(a * w)) / np.float64(o))
    assert effective_scales(a, [w], o, float_product=True)[0] == product
    assert effective_scales(a, [w], o, float_product=False)[0] == float(
        np.float64(a) * np.float64(w) / np.float64(o)
    )


def test_activation_range_golden():
    assert activation_range(0, 0.1, 3, "int8") == (-128, 127)
    assert activation_range(1, 0.1, 3, "int8") == (3, 127)
    assert activation_range(3, 0.1, 3, "int8") == (3, 63)
    assert activation_range(3, 0.01, -128, "int8") == (-128, 127)
    assert activation_range(2, 0.25, 0, "int8") == (-4, 4)


def test_activation_range_refuses_other_activations():
    with pytest.raises(NotImplementedError, match="fused activation 4 on a quantized operator"):
        activation_range(4, 0.1, 0, "int8")
