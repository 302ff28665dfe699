"""TFLite models with sparse weights through the Relax backend, against LiteRT.

Every float and float16 fixture of ``fixtures/tflite/manifest.json`` is imported with TVM
0.27's Relax TFLite frontend, lowered in each mode, built and run on seeded inputs; LiteRT's
builtin kernels are the oracle (for the fixture LiteRT reads wrongly, LiteRT on the model with
the missing ``DENSIFY`` put in). Float outputs agree within 1e-5 of the output's largest
magnitude (``sparse_import.verify.compare``). Quantized fixtures are compared bit for bit in
``test_relax_tflite_int8.py``; a quantized operator converted otherwise is refused, naming
it. Skipped unless TVM has Relax and no Relay (0.27).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import zlib
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
from tvm import relax  # noqa: E402

from sparse_import.errors import UnsupportedModelError  # noqa: E402
from sparse_import.relax_backend import build, inspect, lower, run, to_relax  # noqa: E402
from sparse_import.relax_backend.tflite import import_model  # noqa: E402
from sparse_import.verify import LiteRTOracle, compare, random_inputs  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tflite"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
QUANTIZED = sorted(n for n in MANIFEST if "int8" in n or "hybrid" in n) + sorted(
    f"int8/{p.name}" for p in (FIXTURES / "int8").glob("*.tflite")
)
FLOAT = sorted(set(MANIFEST) - set(QUANTIZED))
MODES = ("dense", "sparse", "auto")
# The Relax reads of a weight a sparse kernel computes, per TFLite consumer.
KERNEL_CONSUMERS = {"FULLY_CONNECTED"}


def _edit_insert_densify(model: bytes) -> bytes:
    """``model`` with a DENSIFY in front of every sparse input of an operator other than
    FULLY_CONNECTED and DENSIFY (which LiteRT reads as if it were dense)."""
    obj = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in obj.operatorCodes]
    densify = schema.BuiltinOperator.DENSIFY
    if densify not in codes:
        code = schema.OperatorCodeT()
        code.builtinCode, code.deprecatedBuiltinCode, code.version = densify, min(densify, 127), 1
        obj.operatorCodes.append(code)
        codes.append(densify)
    graph = obj.subgraphs[0]
    added = []
    for op in graph.operators:
        if codes[op.opcodeIndex] in (densify, schema.BuiltinOperator.FULLY_CONNECTED):
            continue
        for slot, index in enumerate(op.inputs):
            if index < 0 or graph.tensors[index].sparsity is None:
                continue
            source = graph.tensors[index]
            dense = schema.TensorT()
            dense.name = source.name + b"/densified"
            dense.shape, dense.type, dense.buffer = source.shape, source.type, 0
            dense.quantization = source.quantization
            graph.tensors.append(dense)
            step = schema.OperatorT()
            step.opcodeIndex = codes.index(densify)
            step.inputs, step.outputs = [index], [len(graph.tensors) - 1]
            added.append(step)
            op.inputs[slot] = len(graph.tensors) - 1
    graph.operators[:0] = added
    builder = flatbuffers.Builder(0)
    builder.Finish(obj.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@functools.cache
def _fixture(name: str):
    """The model's bytes, its seeded inputs and LiteRT's outputs (and output specs)."""
    model = (FIXTURES / name).read_bytes()
    oracle_model = model if MANIFEST[name]["litert_reference"] else _edit_insert_densify(model)
    oracle = LiteRTOracle(oracle_model)
    inputs = random_inputs(oracle.inputs, zlib.crc32(name.encode()))
    return model, inputs, oracle.run(inputs), oracle.outputs


@pytest.fixture(scope="module")
def lowered():
    """``(name, mode) -> (imported, mod, decisions, executable)``; one import per fixture, one
    build per distinct module."""
    imports, results, executables = {}, {}, {}

    def get(name, mode):
        if (name, mode) not in results:
            if name not in imports:
                imports[name] = import_model(FIXTURES / name)
            mod, decisions = lower(imports[name], mode=mode)
            key = tvm_ffi.structural_hash(mod)
            if key not in executables:
                executables[key] = build(mod)
            results[name, mode] = imports[name], mod, decisions, executables[key]
        return results[name, mode]

    return get


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", FLOAT)
def test_outputs_match_litert(lowered, name, mode):
    _, inputs, reference, specs = _fixture(name)
    _, _, decisions, executable = lowered(name, mode)
    if mode == "dense":
        assert {str(d.lowering) for d in decisions} == {"dense"}
    outputs = run(executable, *inputs.values())
    assert [(o.shape, o.dtype) for o in outputs] == [(r.shape, r.dtype) for r in reference]
    checks = compare(outputs, reference, specs)
    assert all(check.ok for check in checks), checks


def test_litert_reads_the_blind_spot_fixture_wrongly():
    """The oracle with the DENSIFY put in differs from LiteRT on the file as stored."""
    (name,) = [n for n in FLOAT if not MANIFEST[n]["litert_reference"]]
    model, inputs, reference, _ = _fixture(name)
    assert not np.allclose(LiteRTOracle(model).run(inputs)[0], reference[0], equal_nan=True)


@pytest.mark.parametrize("name", FLOAT)
def test_weights_are_unbound_parameters(lowered, name):
    imported, _, _, _ = lowered(name, "dense")
    assert imported.params == {} and imported.weights
    main = imported.mod["main"]
    n_inputs = int(main.attrs["num_input"])
    declared = {p.name: p for p in main.params[n_inputs:]}
    assert sorted(declared) == sorted(w.param for w in imported.weights)
    for weight in imported.weights:
        ty = declared[weight.param].ty
        assert tuple(int(d) for d in ty.shape) == weight.tensor.shape
        assert np.dtype(str(ty.dtype)) == weight.tensor.dtype == np.float32
        assert weight.source.nnz == weight.tensor.nnz


def _constants(mod) -> list[np.ndarray]:
    found = []

    def visit(expr):
        value = getattr(expr, "value", None)
        if isinstance(expr, tvm.ir.expr.Constant) and isinstance(value, tvm.runtime.Tensor):
            found.append(value.numpy())

    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func.body, visit)
    return found


@pytest.mark.parametrize("name", FLOAT)
def test_sparse_mode_keeps_every_weight_compressed(lowered, name):
    """Float FULLY_CONNECTED weights go to the kernels, every other weight is expanded at run
    time (all are smaller compressed); no constant of the module is a weight's dense form."""
    imported, mod, decisions, _ = lowered(name, "sparse")
    constants = _constants(mod)
    for weight, decision in zip(imported.weights, decisions, strict=True):
        dense = weight.tensor.to_dense()
        # the weight of handmade_densify_output is also a model output: no kernel reads it all
        if weight.consumer in KERNEL_CONSUMERS and name != "handmade_densify_output.tflite":
            assert str(decision.lowering) in ("csr", "bsr"), decision.reason
        else:
            assert str(decision.lowering) == "densify", decision.reason
        assert not any(c.shape == dense.shape and np.array_equal(c, dense) for c in constants)


def test_dense_mode_embeds_each_weight_as_a_constant(lowered):
    """The check above finds a weight's dense form when it is there."""
    imported, mod, _, _ = lowered("cnn_multi.tflite", "dense")
    constants = _constants(mod)
    for weight in imported.weights:
        dense = weight.tensor.to_dense()
        assert any(c.shape == dense.shape and np.array_equal(c, dense) for c in constants)


@pytest.mark.parametrize("name", ["conv2d_densify.tflite", "transpose_conv_densify.tflite"])
def test_convolution_weights_are_expanded_at_run_time(lowered, name):
    _, _, decisions, _ = lowered(name, "sparse")
    assert {str(d.lowering) for d in decisions} == {"densify"}
    assert all("expanded at run time: read by relax.nn.conv2d" in d.reason for d in decisions)


def test_fully_connected_weights_go_to_the_kernels(lowered):
    _, _, decisions, _ = lowered("mlp_index_widths.tflite", "sparse")
    assert [str(d.lowering) for d in decisions] == ["csr", "bsr", "csr"]


def _requantizing_reshape(model: bytes) -> bytes:
    """cnn_int8 with its int8 RESHAPE's output scale doubled (a requantization)."""
    obj = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in obj.operatorCodes]
    graph = obj.subgraphs[0]
    reshape = next(
        op for op in graph.operators if codes[op.opcodeIndex] == schema.BuiltinOperator.RESHAPE
    )
    quantization = graph.tensors[reshape.outputs[0]].quantization
    quantization.scale = [2 * float(quantization.scale[0])]
    builder = flatbuffers.Builder(0)
    builder.Finish(obj.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_quantized_operator_not_converted_exactly_is_refused_by_name():
    """Every quantized operator of the fixtures is converted with LiteRT's arithmetic (see
    test_relax_tflite_int8.py); an int8 RESHAPE that requantizes is not, and is refused by
    name."""
    model = _requantizing_reshape((FIXTURES / "cnn_int8.tflite").read_bytes())
    with pytest.raises(UnsupportedModelError) as raised:
        import_model(model)
    assert str(raised.value) == (
        "operator 6 (RESHAPE) of subgraph 0 is quantized: the quantized operators converted "
        "are FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV, QUANTIZE, "
        "DEQUANTIZE, RESHAPE and DENSIFY; the Relax TFLite import does not compute LiteRT's "
        "arithmetic for it exactly, use sparse_import.to_relay"
    )


def test_to_relax_and_inspect_take_tflite_bytes():
    model = (FIXTURES / "fc_densify.tflite").read_bytes()
    _, decisions = to_relax(model, mode="sparse")
    rows = inspect(model, mode="sparse")
    assert [str(d.lowering) for d in decisions] == [r["lowering"] for r in rows] == ["csr"]
    assert rows[0]["consumer"] == "FULLY_CONNECTED"


def test_input_dicts_are_checked():
    with pytest.raises(UnsupportedModelError, match="serving_default_x:0"):
        import_model(FIXTURES / "fc_densify.tflite", shape_dict={"serving_default_x:0": (2, 47)})


@pytest.mark.parametrize("name", ["cnn_multi.tflite", "mlp_fp16.tflite"])
def test_only_weights_lowered_dense_are_charged(name):
    """The import densifies nothing; dense mode charges every weight, sparse mode none."""
    spent = {}
    for mode in ("sparse", "dense"):
        imported = import_model(FIXTURES / name)
        assert imported.budget.spent == 0 and imported.constants == ()
        lower(imported, mode=mode)
        spent[mode] = imported.budget.spent
    assert spent["sparse"] == 0
    assert spent["dense"] == sum(w.tensor.dense_nbytes for w in imported.weights)


def _with_operator(model: bytes, old: int, new: int) -> bytes:
    """``model`` with every operator code ``old`` replaced by ``new``."""
    obj = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    for code in obj.operatorCodes:
        if max(code.builtinCode, code.deprecatedBuiltinCode) == old:
            code.builtinCode, code.deprecatedBuiltinCode = new, min(new, 127)
    builder = flatbuffers.Builder(0)
    builder.Finish(obj.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_an_operator_the_frontend_lacks_is_refused_on_one_line():
    model = _with_operator(
        (FIXTURES / "fc_densify.tflite").read_bytes(),
        schema.BuiltinOperator.FULLY_CONNECTED,
        schema.BuiltinOperator.SKIP_GRAM,
    )
    with pytest.raises(UnsupportedModelError) as raised:
        import_model(model)
    message = str(raised.value)
    assert message.startswith("model: TVM's Relax TFLite frontend cannot convert it: ")
    assert "SKIP_GRAM" in message and "\n" not in message
    assert raised.value.__cause__ is not None
