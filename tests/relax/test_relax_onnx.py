"""ONNX models with sparse weights through the Relax backend, against onnxruntime.

Skipped unless TVM has Relax (its ONNX frontend and ``relax.build``) and no Relay (TVM 0.27).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")
if importlib.util.find_spec("tvm.relay") is not None or not hasattr(tvm, "relax"):
    pytest.skip("needs TVM with Relax and without Relay (0.27)", allow_module_level=True)
if importlib.util.find_spec("tvm.relax.frontend.onnx") is None or not hasattr(tvm.relax, "build"):
    pytest.skip("needs tvm.relax.frontend.onnx and tvm.relax.build", allow_module_level=True)
pytest.importorskip("onnxruntime")

from onnx import helper  # noqa: E402

import sparse_import  # noqa: E402
from sparse_import.errors import UnsupportedModelError  # noqa: E402
from sparse_import.relax_backend import (  # noqa: E402
    build,
    inspect,
    library_bytes,
    run,
    to_relax,
)

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures" / "onnx"))
import make_models  # noqa: E402

CONVERTED = ("mlp", "gemm", "conv", "float16", "qdq", "wide_types", "squeezenet")
MODES = ("dense", "sparse", "auto")


@pytest.fixture(scope="module", params=CONVERTED)
def fixture(request):
    built = getattr(make_models, request.param)()
    expected = [make_models.run_onnxruntime(built.model, i) for i in built.all_inputs()]
    return built, expected


@pytest.fixture(scope="module")
def compiled():
    """``(fixture name, mode) -> (decisions, executable)``, each built once."""
    cache = {}

    def get(built, mode):
        key = (built.name, mode)
        if key not in cache:
            shapes = {k: v.shape for k, v in built.inputs.items()}
            mod, decisions = to_relax(built.model, mode=mode, shape_dict=shapes)
            cache[key] = decisions, build(mod)
        return cache[key]

    return get


@pytest.mark.parametrize("mode", MODES)
def test_fixture_matches_onnxruntime(fixture, compiled, mode):
    built, expected = fixture
    decisions, executable = compiled(built, mode)
    assert {d.param for d in decisions} == set(built.weights)
    if mode == "dense":
        assert {str(d.lowering) for d in decisions} == {"dense"}
    for inputs, reference in zip(built.all_inputs(), expected, strict=True):
        outputs = run(executable, *inputs.values())
        assert len(outputs) == len(reference)
        for got, want in zip(outputs, reference, strict=True):
            scale = max(float(np.abs(want).max()), 1e-30)
            assert float(np.abs(got - want).max()) / scale <= built.rtol


@pytest.mark.parametrize("name", ["conv", "squeezenet"])
def test_sparse_mode_expands_convolution_weights_at_run_time(compiled, name):
    """No Relax kernel reads a convolution's weight: sparse mode keeps it as CSR arrays,
    expanded in the module, and the library is smaller than the dense one."""
    built = getattr(make_models, name)()
    decisions, sparse = compiled(built, "sparse")
    assert {str(d.lowering) for d in decisions} == {"densify"}
    assert all(
        "expanded at run time: read by relax.nn.conv2d (argument 1)" in d.reason for d in decisions
    )
    if name == "squeezenet":
        _, dense = compiled(built, "dense")
        assert library_bytes(sparse) < library_bytes(dense) * 2 // 3


def test_sparse_mode_compresses_the_matrix_products():
    built = make_models.mlp()
    _, decisions = to_relax(built.model, mode="sparse")
    assert [str(d.lowering) for d in decisions] == ["csr", "csr"]


def test_inspect_rows_without_relay():
    rows = inspect(make_models.gemm().model, mode="sparse")
    assert {r["lowering"] for r in rows} <= {"dense", "csr", "bsr", "densify"}
    assert all(r["reason"] for r in rows)
    assert sparse_import.__version__


def test_loop_is_refused_with_the_frontend_reason():
    with pytest.raises(
        UnsupportedModelError, match=r"Relax ONNX frontend cannot convert it: .*Loop"
    ):
        to_relax(make_models.control_flow().model)


def test_tflite_is_converted():
    from sparse_import.pipeline import demo_model

    _, decisions = to_relax(demo_model("tflite"), mode="sparse")
    assert [d.consumer for d in decisions] == ["FULLY_CONNECTED", "FULLY_CONNECTED"]


# --------------------------------------------------------------------------- the big MLP
def _mlp(rng: np.random.Generator):
    """1024 -> 2048 -> 1024, ReLU between, both weights 90 % sparse initializers."""
    w1 = make_models.pruned(rng, (1024, 2048), 0.1)
    w2 = make_models.pruned(rng, (2048, 1024), 0.1)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [make_models._vi("x", np.float32, ["n", 1024])],
        [make_models._vi("y", np.float32, ["n", 1024])],
        sparse_initializer=[make_models.sparse_proto(w1, "w1"), make_models.sparse_proto(w2, "w2")],
    )
    return make_models._model(graph), w1, w2


@pytest.fixture(scope="module")
def big_mlp():
    rng = np.random.default_rng(0)
    model, w1, w2 = _mlp(rng)
    x = rng.standard_normal((4, 1024)).astype(np.float32)
    built = {}
    for mode in ("dense", "sparse"):
        mod, decisions = to_relax(model, mode=mode, shape_dict={"x": x.shape})
        built[mode] = (build(mod), decisions)
    return built, x, np.maximum(x @ w1, 0) @ w2


def test_big_mlp_sparse_library_is_smaller_and_right(big_mlp):
    built, x, expected = big_mlp
    sizes = {mode: library_bytes(executable) for mode, (executable, _) in built.items()}
    assert [str(d.lowering) for d in built["sparse"][1]] == ["csr", "csr"]
    dense_weights = 2 * 1024 * 2048 * 4
    assert sizes["dense"] > dense_weights
    assert sizes["sparse"] < sizes["dense"] - dense_weights // 2  # 10 % values + indices
    for executable, _ in built.values():
        got = run(executable, x)[0]
        assert float(np.abs(got - expected).max()) <= 1e-5 * float(np.abs(expected).max())
