"""Shared helpers of the TFLite model tests: fixtures, LiteRT as the oracle, model surgery."""

from __future__ import annotations

import functools
import json
import pathlib
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import flatbuffers
import numpy as np
import tvm
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from sparse_import.adapters.tflite import import_model

from sparse_import.imported import ImportedModel
from sparse_import.relay_backend import lower
from sparse_import.relay_backend.build import build, run
from sparse_import.verify import LiteRTOracle, TensorSpec, compare, random_inputs

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


def inputs_for(name: str, model: bytes) -> dict[str, np.ndarray]:
    """Seeded random inputs for ``model`` (fixture ``name`` gives the seed)."""
    return random_inputs(LiteRTOracle(model).inputs, seed_of(name))


def litert_all_tensors(model: bytes, inputs: dict[str, np.ndarray]) -> Interpreter:
    """LiteRT (builtin kernels, no delegates) after one run that keeps every intermediate tensor
    (``LiteRTOracle`` returns the outputs only)."""
    it = Interpreter(
        model_content=model,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        experimental_preserve_all_tensors=True,
    )
    it.allocate_tensors()
    for detail in it.get_input_details():
        it.set_tensor(detail["index"], inputs[detail["name"]])
    it.invoke()
    return it


@functools.cache
def compiled_fixture(name: str) -> tuple[ImportedModel, tvm.runtime.Module]:
    """Each fixture imported and built once per test session."""
    imported = import_model(FIXTURES / name)
    return imported, build(*lower(imported, "dense")[:2])


def assert_matches(
    outputs: list[np.ndarray], reference: list[np.ndarray], specs: Sequence[TensorSpec]
) -> list[float]:
    """Outputs of the oracle's shapes and dtypes, each within ``sparse_import.verify``'s rule.

    Float outputs agree within 1e-5 of ``max |reference|``; outputs of a quantized chain
    (integer, or float from a DEQUANTIZE) in 0 quantization steps.
    Returns each output's error under its rule.
    """
    assert [(o.shape, o.dtype) for o in outputs] == [(r.shape, r.dtype) for r in reference]
    checks = compare(outputs, reference, specs)
    assert all(check.ok for check in checks), [check for check in checks if not check.ok]
    return [check.error for check in checks]


def assert_matches_litert(
    model: bytes, lib: tvm.runtime.Module, inputs: dict[str, np.ndarray]
) -> list[float]:
    """``lib`` on ``inputs`` against LiteRT on ``model`` (see :func:`assert_matches`)."""
    oracle = LiteRTOracle(model)
    return assert_matches(run(lib, inputs), oracle.run(inputs), oracle.outputs)


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
