"""The Relax kernels and the SciPy path of the Relax backend against SciPy dense math.

Skipped unless TVM has Relax (its ONNX frontend and ``relax.build``) and no Relay (TVM 0.27).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")
if importlib.util.find_spec("tvm.relay") is not None or not hasattr(tvm, "relax"):
    pytest.skip("needs TVM with Relax and without Relay (0.27)", allow_module_level=True)
if importlib.util.find_spec("tvm.relax.frontend.onnx") is None or not hasattr(tvm.relax, "build"):
    pytest.skip("needs tvm.relax.frontend.onnx and tvm.relax.build", allow_module_level=True)

import scipy.sparse as sp  # noqa: E402

from sparse_import import from_scipy  # noqa: E402
from sparse_import.relax_backend import build, lower, run, single_layer, to_relax  # noqa: E402
from sparse_import.relax_backend.kernels import KernelShape, matmul, matvec  # noqa: E402
from sparse_import.relax_backend.rewrite import Operand  # noqa: E402
from sparse_import.target import resolve, simd_lanes  # noqa: E402

TARGET = resolve()
BATCHES = (1, 3, 16, 40)
BLOCKS = ((1, 1), (4, 1), (1, 4), (2, 3), (16, 1))


def _pruned(rng: np.random.Generator, shape: tuple[int, int], density: float, dtype) -> np.ndarray:
    """A dense array with about ``density`` of its entries nonzero and some all-zero rows."""
    dense = rng.standard_normal(shape) * (rng.random(shape) < density)
    dense[rng.random(shape[0]) < 0.2] = 0.0  # empty rows
    return dense.astype(dtype)


def _compressed(dense: np.ndarray, block: tuple[int, int]):
    if block == (1, 1):
        return sp.csr_array(dense)
    return sp.bsr_array(dense, blocksize=block)


def _kernel_product(dense: np.ndarray, block: tuple[int, int], x: np.ndarray) -> np.ndarray:
    operand = Operand.from_scipy(_compressed(dense, block))
    shape: KernelShape = operand.shape
    batch = x.shape[0]
    if batch == 1:
        func, xin, out = matvec(shape, simd_lanes(TARGET, shape.dtype)), x, (1, shape.rows)
    else:
        func, xin, out = matmul(shape, batch), np.ascontiguousarray(x.T), (shape.rows, batch)
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), TARGET)
    y = tvm.runtime.tensor(np.zeros(out, x.dtype))
    arrays = (xin, operand.data, operand.indices, operand.indptr)
    lib["main"](*(tvm.runtime.tensor(a) for a in arrays), y)
    return y.numpy() if batch == 1 else y.numpy().T


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: "x".join(map(str, b)))
@pytest.mark.parametrize("batch", BATCHES)
def test_kernel_matches_scipy(batch, block):
    for seed in range(2):
        rng = np.random.default_rng(seed)
        rows, cols = block[0] * int(rng.integers(1, 9)), block[1] * int(rng.integers(1, 40))
        dense = _pruned(rng, (rows, cols), float(rng.uniform(0.02, 0.5)), np.float32)
        x = rng.standard_normal((batch, cols)).astype(np.float32)
        np.testing.assert_allclose(
            _kernel_product(dense, block, x), x @ dense.T, rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize("block", [(1, 1), (4, 1)], ids=["csr", "bsr4x1"])
@pytest.mark.parametrize("batch", [1, 16])
def test_kernel_all_zero_weight_and_float64(batch, block):
    rng = np.random.default_rng(7)
    zero = np.zeros((8, 12), np.float32)
    x = rng.standard_normal((batch, 12)).astype(np.float32)
    np.testing.assert_array_equal(_kernel_product(zero, block, x), np.zeros((batch, 8)))
    dense = _pruned(rng, (8, 12), 0.3, np.float64)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(_kernel_product(dense, block, x64), x64 @ dense.T, rtol=1e-12)


@pytest.fixture(scope="module")
def layers():
    """Weights in CSR and in 4x2 blocks (the IR keeps the blocks), empty rows included."""
    rng = np.random.default_rng(3)
    csr = sp.csr_array(_pruned(rng, (48, 64), 0.1, np.float32))
    bsr = sp.bsr_array(_pruned(rng, (48, 64), 0.1, np.float32), blocksize=(4, 2))
    return {"csr": csr, "bsr": bsr}


@pytest.mark.parametrize("shape", [(1, 64), (3, 64), (16, 64), (2, 3, 64)])
@pytest.mark.parametrize("mode", ["dense", "sparse", "auto"])
@pytest.mark.parametrize("kind", ["csr", "bsr"])
def test_to_relax_single_layer_matches_scipy(layers, kind, mode, shape):
    w = layers[kind]
    mod, (decision,) = to_relax(w, mode=mode, shape_dict={"x": shape})
    if mode == "dense":
        assert str(decision.lowering) == "dense"
    if mode == "sparse":
        assert (str(decision.lowering), decision.block) == (
            ("bsr", (4, 2)) if kind == "bsr" else ("csr", None)
        )
    assert [p.name for p in mod["main"].params] == ["x"]
    x = np.random.default_rng(len(shape)).standard_normal(shape).astype(np.float32)
    np.testing.assert_allclose(run(build(mod), x)[0], x @ w.toarray().T, rtol=1e-5, atol=1e-5)


def test_sparse_mode_keeps_no_dense_weight(layers):
    mod, _ = to_relax(layers["csr"], mode="sparse", shape_dict={"x": (4, 64)})
    text = mod.script()
    assert "csr_matmul" in text and "R.matmul" not in text


def test_dense_weights_are_charged_to_the_budget(layers):
    imported = single_layer.import_model(layers["csr"])
    lower(imported, mode="dense")
    assert imported.budget.spent == 48 * 64 * 4


def test_unknown_mode_is_refused(layers):
    with pytest.raises(ValueError, match="mode 'fast' is not one of dense, sparse, auto"):
        to_relax(layers["csr"], mode="fast")


def test_weight_that_is_no_parameter_is_refused(layers):
    imported = single_layer.import_model(layers["csr"])
    tensor = from_scipy(layers["csr"], name="other")
    other = type(imported.weights[0])("other", tensor, tensor, "dense")
    imported.weights = (other,)
    with pytest.raises(ValueError, match="sparse weight 'other': not a parameter"):
        lower(imported, mode="sparse")


def test_auto_never_picks_a_layout_relax_has_no_kernel_for():
    """Relay's batch-1 ``sell`` layout has no Relax kernel: auto chooses among the others."""
    rng = np.random.default_rng(5)
    w = sp.random_array((2048, 2048), density=0.1, format="csr", rng=rng, dtype=np.float32)
    _, (decision,) = to_relax(w, mode="auto", shape_dict={"x": (1, 2048)})
    assert str(decision.lowering) in ("csr", "bsr", "dense")
    assert "sell" not in dict(decision.estimates)
