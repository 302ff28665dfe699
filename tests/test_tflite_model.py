"""TFLite models with sparse weights, end to end: import, relay.build, compare with LiteRT.

Every fixture in ``fixtures/tflite/manifest.json`` is imported once and built once per mode
(shared through ``compiled_fixture`` and ``lowered_fixture``): the dense import, the backend's
``mode="sparse"`` for every fixture and ``mode="auto"`` for a subset. LiteRT's builtin reference
kernels on the same seeded inputs are the oracle. Float outputs agree within 1e-5 of the
output's largest magnitude, outputs of a quantized chain in 0 quantization steps.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import tflite
import tvm
from ai_edge_litert import schema_py_generated as schema
from sparse_import.adapters.tflite import import_model, read_sparse_tensors
from tflite_support import (
    FIXTURES,
    assert_matches_litert,
    builtin_codes,
    compiled_fixture,
    edit,
    fixture_bytes,
    inputs_for,
    insert_densify,
    manifest,
)

import sparse_import
from sparse_import.relay_backend import Decision, build, lower
from sparse_import.verify import LiteRTOracle

LITERT = sorted(name for name, entry in manifest().items() if entry["litert_reference"])
NOT_LITERT = sorted(name for name, entry in manifest().items() if not entry["litert_reference"])
# Operators whose Relay weight is the dense tensor or a transpose of it (TVM reshapes
# depthwise kernels, which the IR cannot follow unless the reshape is a transpose).
TRANSPOSED_CONSUMERS = {"FULLY_CONNECTED", "CONV_2D", "TRANSPOSE_CONV"}


@pytest.mark.parametrize("name", LITERT)
def test_outputs_match_litert(name):
    model = fixture_bytes(name)
    _, lib = compiled_fixture(name)
    assert_matches_litert(model, lib, inputs_for(name, model))


@pytest.mark.parametrize("name", NOT_LITERT)
def test_outputs_match_litert_given_the_missing_densify(name):
    """LiteRT reads a sparse tensor that reaches DEQUANTIZE without DENSIFY as if it were
    dense; the oracle is LiteRT on the same model with the DENSIFY put in."""
    model = fixture_bytes(name)
    inputs = inputs_for(name, model)
    as_stored = LiteRTOracle(model).run(inputs)
    reference = LiteRTOracle(_oracle_model(name)).run(inputs)
    assert not np.allclose(as_stored[0], reference[0], equal_nan=True)
    _, lib = compiled_fixture(name)
    assert_matches_litert(_oracle_model(name), lib, inputs)


def _oracle_model(name: str) -> bytes:
    """The fixture, or for LiteRT's blind spot the fixture with the missing DENSIFY put in."""
    model = fixture_bytes(name)
    return model if manifest()[name]["litert_reference"] else edit(model, insert_densify)


# ---------------------------------------------------------------------------- sparse and auto
# A subset for "auto": block and CSR FULLY_CONNECTED, mixed index widths, a 2-D block, a
# convolution, an int8 model.
AUTO = [
    "fc_block1x4.tflite",
    "fc_densify.tflite",
    "mlp_index_widths.tflite",
    "handmade_block4x2_fc.tflite",
    "cnn_multi.tflite",
    "mlp_int8.tflite",
]
# The Relay operator a weight lowered sparse is read by, per consumer.
SPARSE_OPS = {"FULLY_CONNECTED": "nn.sparse_dense", "CONV_2D": "nn.sparse_conv2d"}


@functools.cache
def lowered_fixture(
    name: str, mode: str
) -> tuple[str, dict, tuple[Decision, ...], tvm.runtime.Module]:
    """The fixture lowered in ``mode`` and built, once per session: module text, params,
    decisions and the built module."""
    imported, _ = compiled_fixture(name)
    mod, params, decisions = lower(imported, mode=mode)
    return mod.astext(show_meta_data=False), params, decisions, build(mod, params)


def _lowered_modes() -> list[tuple[str, str]]:
    return [(name, "sparse") for name in sorted(manifest())] + [(name, "auto") for name in AUTO]


@pytest.mark.parametrize(("name", "mode"), _lowered_modes())
def test_lowered_outputs_match_litert(name, mode):
    _, _, _, lib = lowered_fixture(name, mode)
    inputs = inputs_for(name, fixture_bytes(name))
    assert_matches_litert(_oracle_model(name), lib, inputs)


@pytest.mark.parametrize(("name", "mode"), _lowered_modes())
def test_weights_lowered_sparse_leave_no_dense_copy(name, mode):
    imported, _ = compiled_fixture(name)
    text, params, decisions, _ = lowered_fixture(name, mode)
    assert [d.param for d in decisions] == [w.param for w in imported.weights]
    # A weight kept dense (a model output, say) holds its own dense form, which it needs.
    needed = {d.param for d in decisions if d.lowering == "dense"}
    kept = [
        np.asarray(value.numpy() if hasattr(value, "numpy") else value)
        for key, value in params.items()
        if key not in needed
    ]
    for decision in decisions:
        if decision.lowering == "dense":
            continue
        assert decision.param not in params
        sell = decision.lowering == "sell"
        parts = ("values", "columns", "offsets") if sell else ("data", "indices", "indptr")
        assert {f"{decision.param}.{part}" for part in parts} <= set(params)
        ops = {"densify": "sparse_import.densify_csr", "sell": "sparse_import.sell_dense"}
        lowering = str(decision.lowering)
        assert (ops[lowering] if lowering in ops else SPARSE_OPS[decision.consumer]) in text
        dense = next(w for w in imported.weights if w.param == decision.param).tensor.to_dense()
        assert not any(k.shape == dense.shape and np.array_equal(k, dense) for k in kept)


@pytest.mark.parametrize("name", sorted(manifest()))
def test_sparse_mode_lowers_float_fully_connected_weights_to_sparse_dense(name):
    imported, _ = compiled_fixture(name)
    text, _, decisions, _ = lowered_fixture(name, "sparse")
    dtypes = {w.param: w.tensor.dtype for w in imported.weights}
    float_fc = [
        d for d in decisions if d.consumer == "FULLY_CONNECTED" and dtypes[d.param].kind == "f"
    ]
    for decision in float_fc:
        assert decision.lowering in ("csr", "bsr"), decision
    assert ("nn.sparse_dense" in text) == bool(float_fc)


def _expected_weights(entry: dict) -> set[tuple[str, str]]:
    expected = set()
    for tensor in entry["sparse_tensors"]:
        for path in tensor["consumer_paths"]:
            if path["ops"][-1] in TRANSPOSED_CONSUMERS:
                expected.add((tensor["name"], path["ops"][-1]))
            if path["model_output"]:
                expected.add((tensor["name"], "OUTPUT"))
    return expected


@pytest.mark.parametrize("name", sorted(manifest()))
def test_weights_are_the_params_in_the_ir(name):
    imported, _ = compiled_fixture(name)
    stored = {t.name: t for t in read_sparse_tensors(FIXTURES / name).values()}
    _, dense_params, _ = lower(imported, "dense")
    for weight in imported.weights:
        value = dense_params[weight.param]
        param = value.numpy() if hasattr(value, "numpy") else value
        dense = weight.tensor.to_dense()
        assert (dense.dtype, dense.shape) == (param.dtype, param.shape)
        np.testing.assert_array_equal(dense, param)
        source = stored[weight.source.name]
        assert weight.source.layout == source.layout
        np.testing.assert_array_equal(weight.source.to_dense(), source.to_dense())
        assert weight.tensor.nnz == source.nnz
    found = {(w.source.name, w.consumer) for w in imported.weights}
    expected = _expected_weights(manifest()[name])
    assert expected <= found
    assert {consumer for _, consumer in found - expected} <= {"DEPTHWISE_CONV_2D"}


def _forms() -> dict[str, object]:
    path = FIXTURES / "handmade_densify_output.tflite"
    data = path.read_bytes()
    return {
        "path": path,
        "str": str(path),
        "bytes": data,
        "bytearray": bytearray(data),
        "memoryview": memoryview(data),
        "tflite.Model": tflite.Model.GetRootAs(data, 0),
    }


@pytest.mark.parametrize("form", list(_forms()))
def test_every_model_form_gives_the_same_module(form):
    base = import_model(FIXTURES / "handmade_densify_output.tflite")
    other = import_model(_forms()[form])
    tvm.ir.assert_structural_equal(other.mod, base.mod)
    assert other.params.keys() == base.params.keys()
    for key, value in base.params.items():
        np.testing.assert_array_equal(other.params[key].numpy(), value.numpy())
    assert [(w.param, w.consumer) for w in other.weights] == [
        (w.param, w.consumer) for w in base.weights
    ]
    assert other.framework == "tflite"


def test_to_relay_accepts_path_bytes_and_parsed_model():
    name = "fc_block1x4.tflite"
    data = fixture_bytes(name)
    inputs = inputs_for(name, data)
    for model in (FIXTURES / name, data, tflite.Model.GetRootAs(data, 0)):
        mod, params = sparse_import.to_relay(model, mode="dense")
        assert_matches_litert(data, build(mod, params), inputs)


# ---------------------------------------------------------------------------- quantized FC
def _fully_connected_ops(model: schema.ModelT) -> list[schema.OperatorT]:
    codes = builtin_codes(model)
    return [
        op
        for op in model.subgraphs[0].operators
        if codes[op.opcodeIndex] == schema.BuiltinOperator.FULLY_CONNECTED
    ]


def _symmetric_inputs(model: schema.ModelT) -> None:
    for op in _fully_connected_ops(model):
        op.builtinOptions.asymmetricQuantizeInputs = False


def _same_scale_behind_densify(model: schema.ModelT) -> None:
    """Give each DENSIFY output the (per-tensor) quantization of its sparse input."""
    graph = model.subgraphs[0]
    codes = builtin_codes(model)
    for op in graph.operators:
        if codes[op.opcodeIndex] == schema.BuiltinOperator.DENSIFY:
            source, output = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
            output.quantization.scale = list(source.quantization.scale)
            output.quantization.zeroPoint = list(source.quantization.zeroPoint)


def _per_tensor(model: schema.ModelT) -> None:
    graph = model.subgraphs[0]
    for tensor in graph.tensors:
        q = tensor.quantization
        if tensor.type == schema.TensorType.INT8 and q is not None and q.scale is not None:
            if tensor.sparsity is not None and len(q.scale) > 1:
                q.scale, q.zeroPoint = [float(np.max(q.scale))], [0]
    _same_scale_behind_densify(model)
    tensors = graph.tensors
    for op in _fully_connected_ops(model):
        data, weight = tensors[op.inputs[0]], tensors[op.inputs[1]]
        if data.type == schema.TensorType.INT8 and len(op.inputs) > 2 and op.inputs[2] >= 0:
            bias = tensors[op.inputs[2]].quantization
            bias.scale = [data.quantization.scale[0] * weight.quantization.scale[0]]
            bias.zeroPoint = [0]


HYBRID_VARIANTS = {
    "asymmetric inputs, per-channel weights": lambda model: None,
    "symmetric inputs, per-channel weights": _symmetric_inputs,
    "asymmetric inputs, per-tensor weights": _per_tensor,
    "symmetric inputs, per-tensor weights": lambda model: (
        _symmetric_inputs(model),
        _per_tensor(model),
    ),
}


@pytest.mark.parametrize("variant", list(HYBRID_VARIANTS))
def test_hybrid_fully_connected_matches_litert(variant):
    """Float activations, int8 weights (a 1x16-block weight read directly, a CSR one behind
    DENSIFY): LiteRT quantizes each input row on the fly; so does the Relay graph."""
    name = "fc_hybrid_block1x16.tflite"
    model = edit(fixture_bytes(name), HYBRID_VARIANTS[variant])
    imported = import_model(model)
    lib = build(*lower(imported, "dense")[:2])
    ((key, x),) = inputs_for(name, model).items()
    # Rows of mixed signs, a zero row, all-positive and all-negative rows of larger magnitude.
    batches = [x, np.stack([np.zeros_like(x[0]), np.abs(x[1])]), -np.abs(x) * 1e3]
    for batch in batches:
        assert_matches_litert(model, lib, {key: batch})


def test_int8_fully_connected_with_one_weight_scale_matches_litert():
    """Per-tensor int8 FULLY_CONNECTED (one weight scale) on the dense form of a 1x16-block
    weight: LiteRT's integer arithmetic, 0 steps off."""
    name = "mlp_int8.tflite"
    model = edit(fixture_bytes(name), _per_tensor)
    imported = import_model(model)
    assert_matches_litert(model, build(*lower(imported, "dense")[:2]), inputs_for(name, model))
