"""The batch-1 ``sell`` kernel and its op against float64 NumPy, and when ``auto`` picks it.

Every case goes through ``relay.build`` of ``sparse_import.sell_dense`` with a ReLU fused after
it, as the lowering builds it: awkward row and column counts (not multiples of the 16-row
slices or the panels), empty rows, a single value, no value, an all-dense weight, the three
panel widths, several seeds per compiled shape.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.sparse as sp
import tvm
from tvm import relay

import sparse_import
from sparse_import.planning.sell import PANELS
from sparse_import.relay_backend import build, run
from sparse_import.relay_backend.kernels import SellOperand, sell_dense_expr
from sparse_import.target import resolve, vector_bytes

pytestmark = pytest.mark.skipif(
    vector_bytes(resolve(None)) != 64, reason="the sell kernel needs AVX-512"
)
SHAPES = [(1, 1), (16, 32), (17, 33), (37, 70), (300, 7), (5, 1000), (130, 129), (512, 256)]


@functools.cache
def _compiled(shape, panel, vectors):
    """One module per array shapes; the layout's arrays are its inputs, so seeds share it."""
    rows, cols = shape
    x = relay.var("x", shape=(1, cols))
    names = ("w.values", "w.columns", "w.offsets")
    groups = -(-rows // 16) * -(-cols // panel)
    shapes = ((vectors * 16,), (vectors * 16,), (groups + 1,))
    dtypes = ("float32", "uint8", "int32")
    variables = [
        relay.var(n, shape=s, dtype=d) for n, s, d in zip(names, shapes, dtypes, strict=True)
    ]
    from sparse_import.relay_backend.sell_op import sell_dense

    y = relay.nn.relu(sell_dense(x, *variables, units=rows))
    return build(tvm.IRModule.from_expr(relay.Function([x, *variables], y)), {})


@pytest.mark.parametrize("panel", PANELS)
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_numpy(shape, panel):
    for seed, density in enumerate([0.0, 0.003, 0.1, 0.5, 1.0]):
        rng = np.random.default_rng(seed)
        matrix = sp.random_array(shape, density=density, format="csr", rng=rng, dtype=np.float32)
        operand = SellOperand.from_scipy(matrix, panel)
        lib = _compiled(shape, panel, operand.offsets[-1])
        x = rng.standard_normal((1, shape[1])).astype(np.float32)
        (y,) = run(lib, {"x": x, **operand.params("w")})
        expected = np.maximum(x.astype(np.float64) @ matrix.toarray().T.astype(np.float64), 0)
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_expr_builds_and_matches(rng):
    matrix = sp.random_array((100, 300), density=0.1, format="csr", rng=rng, dtype=np.float32)
    x = relay.var("x", shape=(1, 300))
    y, params = sell_dense_expr(x, SellOperand.from_scipy(matrix), "w")
    mod = tvm.IRModule.from_expr(relay.Function(relay.analysis.free_vars(y), y))
    value = rng.standard_normal((1, 300)).astype(np.float32)
    (out,) = run(build(mod, params), {"x": value})
    np.testing.assert_allclose(out, value @ matrix.toarray().T, rtol=1e-5, atol=1e-5)


def _lowering(matrix, **kwargs) -> str:
    (row,) = sparse_import.inspect(matrix, mode="auto", **kwargs)
    return row["lowering"]


def test_auto_picks_it_at_batch_one_only(rng):
    matrix = sp.random_array((2048, 2048), density=0.1, format="csr", rng=rng, dtype=np.float32)
    assert _lowering(matrix) == "sell"
    assert _lowering(matrix, batch_size=16) != "sell"
    haswell, _ = sparse_import.to_relay(matrix, mode="auto", target="llvm -mcpu=haswell")
    assert "sell_dense" not in haswell.astext()  # AVX2: no kernel
    assert _lowering(matrix.astype(np.float64)) != "sell"
    mod, params = sparse_import.to_relay(matrix, mode="auto")
    assert "sparse_import.sell_dense" in mod.astext()
    assert set(params) == {"weight.values", "weight.columns", "weight.offsets"}
    x = rng.standard_normal((1, 2048)).astype(np.float32)
    (y,) = run(build(mod, params), {"x": x})
    expected = x.astype(np.float64) @ matrix.toarray().T.astype(np.float64)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


def test_sparse_mode_keeps_the_stored_format(rng):
    matrix = sp.random_array((2048, 2048), density=0.1, format="csr", rng=rng, dtype=np.float32)
    (row,) = sparse_import.inspect(matrix, mode="sparse")
    assert row["lowering"] == "csr"


def test_converter_mlp_matches_litert():
    """The converter-made 1024-2048-1024 MLP (two DENSIFY weights) in auto: both weights in
    ``sell``, outputs equal to LiteRT's on random inputs."""
    from pathlib import Path

    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    path = Path(__file__).parents[1] / "benchmarks" / "models" / "mlp_1024_2048_1024.tflite"
    data = path.read_bytes()
    assert [r["lowering"] for r in sparse_import.inspect(data, mode="auto")] == ["sell", "sell"]
    mod, params = sparse_import.to_relay(data, mode="auto")
    lib = build(mod, params)
    interpreter = Interpreter(
        model_content=data,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    (entry,) = interpreter.get_input_details()
    out = interpreter.get_output_details()[0]["index"]
    for seed in range(5):
        x = np.random.default_rng(seed).standard_normal(tuple(entry["shape"])).astype(np.float32)
        interpreter.set_tensor(entry["index"], x)
        interpreter.invoke()
        (y,) = run(lib, {entry["name"]: x})
        np.testing.assert_allclose(y, interpreter.get_tensor(out), rtol=1e-4, atol=1e-4)


def test_building_for_a_target_without_avx512_is_refused(rng):
    matrix = sp.random_array((64, 64), density=0.2, format="csr", rng=rng, dtype=np.float32)
    mod, params = sparse_import.to_relay(matrix, mode="auto")
    assert "sell_dense" in mod.astext()
    with pytest.raises(Exception, match="AVX-512 only"):
        build(mod, params, target="llvm -mcpu=haswell")
