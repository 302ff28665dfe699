"""The run-time densify op keeps a sparse weight compressed in the built library."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import tvm
from tvm import relay
from tvm.contrib import graph_executor

from sparse_import.backend.densify import OP_NAME, densify

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
