"""The run-time densify op keeps a sparse weight compressed in the built library."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import tvm
from tflite_support import compiled_fixture, manifest
from tvm import relay
from tvm.contrib import graph_executor

from sparse_import import SparseTensor
from sparse_import.imported import ImportedModel, SparseWeight
from sparse_import.layouts import coo_layout
from sparse_import.relay_backend import lower
from sparse_import.relay_backend.build import build, run
from sparse_import.relay_backend.compress import csr_bytes, matrix_shape
from sparse_import.relay_backend.densify import OP_NAME, densify

SEEDS = range(6)


def _csr(seed: int) -> sp.csr_array:
    rng = np.random.default_rng(seed)
    rows, cols = (int(v) for v in rng.integers(1, 40, size=2))
    density = float(rng.choice([0.0, 0.05, 0.3, 1.0]))
    dtype = str(rng.choice(["float32", "float64", "int8"]))
    matrix = sp.random_array((rows, cols), density=density, format="csr", rng=rng)
    matrix.data = (matrix.data * 100 - 50).astype(dtype)
    matrix.indices = matrix.indices.astype("uint16")
    return matrix


def _build(matrix: sp.csr_array):
    names = {"d": matrix.data, "i": matrix.indices, "p": matrix.indptr.astype("int32")}
    args = [relay.var(n, shape=v.shape, dtype=str(v.dtype)) for n, v in names.items()]
    body = densify(*args, matrix.shape, str(matrix.dtype))
    mod = tvm.IRModule.from_expr(relay.Function(args, body))
    with tvm.transform.PassContext(opt_level=3):
        return relay.build(mod, target="llvm", params=names)


@pytest.mark.parametrize("seed", SEEDS)
def test_densify_matches_scipy_and_is_not_folded(seed):
    matrix = _csr(seed)
    lib = _build(matrix)
    module = graph_executor.GraphModule(lib["default"](tvm.cpu()))
    module.run()
    np.testing.assert_array_equal(module.get_output(0).numpy(), matrix.toarray())
    assert all(len(v.shape) == 1 for v in lib.get_params().values())


@pytest.mark.parametrize("seed", SEEDS)
def test_dense_of_densified_weight_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    weight = sp.random_array((48, 32), density=0.1, format="csr", rng=rng, dtype="float32")
    weight.indices = weight.indices.astype("uint16")
    x = rng.standard_normal((3, 32)).astype("float32")
    arrays = {"d": weight.data, "i": weight.indices, "p": weight.indptr.astype("int32")}
    args = [relay.var(n, shape=v.shape, dtype=str(v.dtype)) for n, v in arrays.items()]
    xv = relay.var("x", shape=x.shape, dtype="float32")
    body = relay.nn.dense(xv, densify(*args, weight.shape, "float32"))
    mod = tvm.IRModule.from_expr(relay.Function([xv, *args], body))
    with tvm.transform.PassContext(opt_level=3):
        lib = relay.build(mod, target="llvm", params=arrays)
    module = graph_executor.GraphModule(lib["default"](tvm.cpu()))
    module.set_input("x", x)
    module.run()
    np.testing.assert_allclose(
        module.get_output(0).numpy(), x @ weight.toarray().T, rtol=1e-5, atol=1e-5
    )
    assert all(len(v.shape) == 1 for v in lib.get_params().values())


def test_densify_survives_fold_constant():
    matrix = _csr(1)
    consts = [relay.const(a) for a in (matrix.data, matrix.indices, matrix.indptr.astype("int32"))]
    mod = tvm.IRModule.from_expr(densify(*consts, matrix.shape, str(matrix.dtype)))
    folded = relay.transform.FoldConstant()(relay.transform.InferType()(mod))
    assert isinstance(folded["main"].body, relay.Call)
    assert folded["main"].body.op.name == OP_NAME


# ------------------------------------------------------------------ compression first, per path
def _check_compressed(imported, params, decisions) -> int:
    """In sparse mode a weight stays dense only when its CSR arrays would not be smaller (or
    nothing reads it); a compressed one leaves no dense copy. Returns how many ran at run time."""
    weights = {w.param: w for w in imported.weights}
    expanded = 0
    for decision in decisions:
        tensor = weights[decision.param].tensor
        if decision.lowering == "dense":
            assert "no smaller than dense" in decision.reason or "not read" in decision.reason, (
                decision
            )
            assert csr_bytes(tensor) >= tensor.dense_nbytes or "not read" in decision.reason
            continue
        assert decision.param not in params
        assert {f"{decision.param}.{p}" for p in ("data", "indices", "indptr")} <= params.keys()
        expanded += decision.lowering == "densify"
        if decision.lowering == "densify":
            assert decision.reason.startswith("mode='sparse' keeps it compressed")
    return expanded


@pytest.mark.parametrize("name", sorted(manifest()))
def test_sparse_mode_compresses_every_tflite_weight(name):
    """Every fixture: float, float16, int8, hybrid, convolutions, depthwise, transposed
    convolutions. Outputs against LiteRT are checked by
    ``test_tflite_model.test_lowered_outputs_match_litert``."""
    imported, _ = compiled_fixture(name)
    _, params, decisions = lower(imported, "sparse")
    _check_compressed(imported, params, decisions)


@pytest.mark.parametrize("seed", SEEDS)
def test_run_time_expansion_of_weights_of_any_rank_matches_numpy(seed):
    """A weight read elementwise (no sparse kernel): rank 1 to 4, float and int, uint16 and
    int32 column indices, empty rows; the built module adds it to the input exactly."""
    rng = np.random.default_rng(seed)
    rank = 1 + seed % 4
    shape = tuple(int(d) for d in rng.integers(1, 9, size=rank))
    if seed == 5:
        shape = (2, 70000)  # columns past uint16
    dtype = ["float32", "int32", "float64"][seed % 3]
    dense = np.where(rng.random(shape) < 0.2, rng.integers(-50, 50, shape), 0).astype(dtype)
    tensor = SparseTensor.from_dense(dense, coo_layout(rank), name="w")
    x = relay.var("x", shape=shape, dtype=dtype)
    w = relay.var("w", shape=shape, dtype=dtype)
    mod = tvm.IRModule.from_expr(relay.Function([x, w], relay.add(x, w)))
    imported = ImportedModel(mod, {}, (SparseWeight("w", tensor, tensor, "Add"),), "test")
    new_mod, params, (decision,) = lower(imported, "sparse")
    if csr_bytes(tensor) >= tensor.dense_nbytes:
        assert decision.lowering == "dense" and "no smaller" in decision.reason
    else:
        assert decision.lowering == "densify"
        cols = matrix_shape(shape)[1]
        assert "w" not in params
        assert params["w.indices"].dtype == (np.uint16 if cols <= 65536 else np.int32)
    lib = build(new_mod, params)
    xs = rng.integers(-5, 5, shape).astype(dtype)
    (got,) = run(lib, {"x": xs})
    np.testing.assert_array_equal(got, xs + dense)
