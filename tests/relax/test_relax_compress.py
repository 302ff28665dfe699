"""``mode="sparse"`` in Relax: a weight no sparse kernel reads is expanded at run time.

Weights of rank 1 to 4, integer and float, read elementwise (``y = x + W``) are stored as CSR
arrays and rebuilt by a TIR PrimFunc inside the module; outputs are exact against NumPy. The
expansion survives ``FoldConstant`` (no dense constant reappears) and the library is smaller
than the dense one. Skipped unless TVM has Relax and no Relay (0.27).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")
if importlib.util.find_spec("tvm.relay") is not None or not hasattr(tvm, "relax"):
    pytest.skip("needs TVM with Relax and without Relay (0.27)", allow_module_level=True)

from tvm import relax  # noqa: E402

from sparse_import.imported import ImportedModel, SparseWeight  # noqa: E402
from sparse_import.levels import Level, LevelFormat  # noqa: E402
from sparse_import.relax_backend import build, library_bytes, lower, run  # noqa: E402
from sparse_import.relax_backend.compress import csr_bytes  # noqa: E402
from sparse_import.tensor import SparseTensor  # noqa: E402

DTYPES = ("int8", "int32", "float16", "float32")
SHAPES = ((37,), (9, 70), (4, 5, 6), (3, 4, 5, 6))


def _layout(rank: int) -> tuple[Level, ...]:
    """Dense outer levels, the last one compressed."""
    return (*(Level(d) for d in range(rank - 1)), Level(rank - 1, LevelFormat.COMPRESSED))


def _pruned(rng: np.random.Generator, shape: tuple[int, ...], dtype: str, density: float):
    if np.dtype(dtype).kind == "i":
        values = rng.integers(-50, 50, shape).astype(dtype)
        values[values == 0] = 7
    else:
        values = rng.standard_normal(shape).astype(dtype)
    return np.where(rng.random(shape) < density, values, np.zeros((), dtype))


def elementwise_model(weights: list[np.ndarray]) -> ImportedModel:
    """``main(x_0, ..., w_0, ...) -> (x_0 + w_0, ...)``, every ``w_i`` an unbound sparse weight."""
    xs = [
        relax.Var(f"x{i}", relax.TensorType(w.shape, str(w.dtype))) for i, w in enumerate(weights)
    ]
    ws = [
        relax.Var(f"w{i}", relax.TensorType(w.shape, str(w.dtype))) for i, w in enumerate(weights)
    ]
    builder = relax.BlockBuilder()
    with builder.function("main", [*xs, *ws], {"num_input": len(xs)}):
        with builder.dataflow():
            ys = [builder.emit(relax.op.add(x, w)) for x, w in zip(xs, ws, strict=True)]
            out = builder.emit_output(relax.Tuple(ys))
        builder.emit_func_output(out)
    tensors = [
        SparseTensor.from_dense(w, _layout(w.ndim), name=f"w{i}") for i, w in enumerate(weights)
    ]
    found = tuple(SparseWeight(f"w{i}", t, t, "Add") for i, t in enumerate(tensors))
    return ImportedModel(builder.get(), {}, found, "test")


@pytest.fixture(scope="module")
def many():
    """Weights of every rank and dtype over three seeds (one empty), in one module."""
    weights = []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        for shape in SHAPES:
            for dtype in DTYPES:
                density = 0.0 if (seed, shape, dtype) == (0, (9, 70), "float32") else 0.1
                weights.append(_pruned(rng, shape, dtype, density))
    mod, decisions = lower(elementwise_model(weights), mode="sparse")
    return weights, decisions, build(mod)


def test_expanded_weights_are_exact(many):
    weights, decisions, executable = many
    assert {str(d.lowering) for d in decisions} == {"densify"}
    rng = np.random.default_rng(10)
    for _ in range(2):
        xs = [_pruned(rng, w.shape, str(w.dtype), 1.0) for w in weights]
        outputs = run(executable, *xs)
        for got, x, w in zip(outputs, xs, weights, strict=True):
            assert got.dtype == w.dtype
            np.testing.assert_array_equal(got, x + w)


def test_decision_names_the_read_and_the_bytes(many):
    weights, decisions, _ = many
    for weight, decision in zip(weights, decisions, strict=True):
        assert decision.reason.startswith("mode='sparse' keeps it compressed (")
        assert f"of {weight.nbytes} B), expanded at run time: read by relax.add" in decision.reason


def test_a_weight_whose_csr_is_not_smaller_stays_dense():
    weight = _pruned(np.random.default_rng(0), (6, 8), "int8", 0.9)
    imported = elementwise_model([weight])
    tensor = imported.weights[0].tensor
    mod, (decision,) = lower(imported, mode="sparse")
    assert str(decision.lowering) == "dense"
    assert decision.reason.endswith(
        f"its CSR arrays ({csr_bytes(tensor)} B) are no smaller than dense ({weight.nbytes} B)"
    )
    x = np.ones_like(weight)
    np.testing.assert_array_equal(run(build(mod), x)[0], x + weight)


def _constant_shapes(func) -> list[tuple[int, ...]]:
    shapes = []

    def visit(expr):
        value = getattr(expr, "value", None)
        if isinstance(expr, tvm.ir.expr.Constant) and isinstance(value, tvm.runtime.Tensor):
            shapes.append(tuple(value.shape))

    relax.analysis.post_order_visit(func.body, visit)
    return shapes


@pytest.fixture(scope="module")
def big():
    """One 256x1024 float32 weight at 5 % read elementwise, lowered dense and sparse."""
    weight = _pruned(np.random.default_rng(1), (256, 1024), "float32", 0.05)
    lowered = {mode: lower(elementwise_model([weight]), mode=mode) for mode in ("dense", "sparse")}
    return weight, lowered, {mode: build(mod) for mode, (mod, _) in lowered.items()}


def test_fold_constant_leaves_the_weight_compressed(big):
    weight, lowered, _ = big
    mod, _ = lowered["sparse"]
    for folded in (relax.transform.FoldConstant()(mod), relax.get_pipeline("zero")(mod)):
        funcs = [f for f in folded.functions.values() if isinstance(f, relax.Function)]
        shapes = [s for f in funcs for s in _constant_shapes(f)]
        assert weight.shape not in shapes
        assert sum(int(np.prod(s)) for s in shapes) < weight.size // 5
    assert weight.shape in _constant_shapes(lowered["dense"][0]["main"])


def test_library_is_smaller_than_dense_and_right(big):
    weight, _, executables = big
    sizes = {mode: library_bytes(executable) for mode, executable in executables.items()}
    assert sizes["dense"] > weight.nbytes
    assert sizes["sparse"] < sizes["dense"] - weight.nbytes * 3 // 4
    x = np.random.default_rng(2).standard_normal(weight.shape).astype(np.float32)
    for executable in executables.values():
        np.testing.assert_array_equal(run(executable, x)[0], x + weight)
