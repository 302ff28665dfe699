"""Shared helpers of the TFLite model tests: fixtures, LiteRT as the oracle, model surgery."""

from __future__ import annotations

import functools
import json
import pathlib
import zlib
from collections.abc import Callable
from typing import Any

import flatbuffers
import numpy as np
import tvm
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from sparse_import.adapters.tflite import import_model
from tvm import relay

from sparse_import.backend.build import build
from sparse_import.imported import ImportedModel

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures" / "tflite"
OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


@functools.cache
def manifest() -> dict[str, dict]:
    """The fixture manifest: ``{file name: facts about the file}``."""
    return json.loads((FIXTURES / "manifest.json").read_text())


@functools.cache
def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def seed_of(name: str) -> int:
    """A stable per-fixture seed."""
    return zlib.crc32(name.encode())


def interpreter(model: bytes, *, preserve_all_tensors: bool = False) -> Interpreter:
    """LiteRT with its builtin reference kernels, no delegates."""
    it = Interpreter(
        model_content=model,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        experimental_preserve_all_tensors=preserve_all_tensors,
    )
    it.allocate_tensors()
    return it


def random_inputs(model: bytes, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Seeded inputs by name: standard normal floats, integers over their whole range."""
    inputs = {}
    for detail in interpreter(model).get_input_details():
        dtype = np.dtype(detail["dtype"])
        if dtype.kind == "f":
            value = rng.standard_normal(detail["shape"])
        else:
            info = np.iinfo(dtype)
            value = rng.integers(info.min, info.max, detail["shape"], endpoint=True)
        inputs[detail["name"]] = value.astype(dtype)
    return inputs


def run_litert(
    model: bytes, inputs: dict[str, np.ndarray], *, preserve_all_tensors: bool = False
) -> tuple[list[np.ndarray], Interpreter]:
    """LiteRT's outputs on ``inputs`` (and the interpreter, for intermediate tensors)."""
    it = interpreter(model, preserve_all_tensors=preserve_all_tensors)
    for detail in it.get_input_details():
        it.set_tensor(detail["index"], inputs[detail["name"]])
    it.invoke()
    return [it.get_tensor(d["index"]) for d in it.get_output_details()], it


def compile_module(mod: tvm.IRModule, params: dict[str, Any]) -> tvm.runtime.Module:
    """Build with the project's build helper.

    TVM 0.19 with LLVM 22 fails LLVM's verifier ("#dbg_declare") on a fused
    transpose + add + reshape (TRANSPOSE_CONV with bias followed by a flatten); such modules are
    rebuilt without operator fusion.
    """
    try:
        return build(mod, params)
    except tvm.error.TVMError as exc:
        if "dbg_declare" not in str(exc):
            raise
    with tvm.transform.PassContext(opt_level=3, config={"relay.FuseOps.max_depth": 1}):
        return relay.build(mod, target="llvm", params=dict(params))


@functools.cache
def compiled_fixture(name: str) -> tuple[ImportedModel, tvm.runtime.Module]:
    """Each fixture imported and built once per test session."""
    imported = import_model(FIXTURES / name)
    return imported, compile_module(imported.mod, imported.params)


def assert_matches(outputs: list[np.ndarray], reference: list[np.ndarray]) -> list[float]:
    """Float outputs within 1e-5 relative to the output's range; quantized within one step.

    Returns the error of each output: relative to ``max |reference|`` for floats, in
    quantization steps for integers.
    """
    assert len(outputs) == len(reference)
    errors = []
    for out, ref in zip(outputs, reference, strict=True):
        assert out.shape == ref.shape and out.dtype == ref.dtype
        if ref.dtype.kind == "f":
            scale = float(np.abs(ref).max()) or 1.0
            np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * scale)
            errors.append(float(np.abs(out - ref).max()) / scale)
        else:
            steps = int(np.abs(out.astype(np.int64) - ref.astype(np.int64)).max())
            assert steps <= 1, f"{steps} quantization steps apart"
            errors.append(steps)
    return errors


# ---------------------------------------------------------------------------- model surgery
def edit(model: bytes, change: Callable[[schema.ModelT], Any]) -> bytes:
    """Unpack ``model`` with LiteRT's object API, apply ``change`` in place, pack it again."""
    obj = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    change(obj)
    builder = flatbuffers.Builder(0)
    builder.Finish(obj.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def builtin_codes(model: schema.ModelT) -> list[int]:
    """The builtin operator code of each entry of ``model.operatorCodes``."""
    return [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]


def opcode_index(model: schema.ModelT, op: int) -> int:
    """Index of builtin ``op`` in the model's operator codes, added when missing."""
    codes = builtin_codes(model)
    if op in codes:
        return codes.index(op)
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = op, min(op, 127), 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def insert_densify(model: schema.ModelT, *, everywhere: bool = False) -> None:
    """Put a DENSIFY in front of every operator input that is a sparse tensor.

    LiteRT's kernels other than FULLY_CONNECTED read a sparse tensor's buffer as if it were
    dense; with the DENSIFY they see the dense form, which makes LiteRT an oracle again.
    ``everywhere`` adds one in front of FULLY_CONNECTED too, to expose LiteRT's dense form of
    every sparse tensor.
    """
    graph = model.subgraphs[0]
    codes = builtin_codes(model)
    reads_sparse = {schema.BuiltinOperator.DENSIFY}
    if not everywhere:
        reads_sparse.add(schema.BuiltinOperator.FULLY_CONNECTED)
    added = []
    for op in graph.operators:
        if codes[op.opcodeIndex] in reads_sparse:
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
            step.opcodeIndex = opcode_index(model, schema.BuiltinOperator.DENSIFY)
            step.inputs, step.outputs = [index], [len(graph.tensors) - 1]
            added.append(step)
            op.inputs[slot] = len(graph.tensors) - 1
    graph.operators[:0] = added


def operators(model: bytes) -> list[tuple[str, list[int], list[int]]]:
    """``(op name, inputs, outputs)`` of every operator of the main subgraph."""
    obj = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    codes = builtin_codes(obj)
    return [
        (OP_NAMES[codes[op.opcodeIndex]], [int(i) for i in op.inputs], [int(o) for o in op.outputs])
        for op in obj.subgraphs[0].operators
    ]
