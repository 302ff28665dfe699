"""Replay cases for the backend: generated names, view chains, dtypes the IR cannot hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..fuzz.onnx_proto import fixture_models
from .contract import assert_close

sparse_proto = fixture_models().sparse_proto

N = 8


def _weight(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((N, N)).astype(np.float32) * (rng.random((N, N)) < 0.3)


def _run(model, feed: dict[str, np.ndarray], mode: str) -> np.ndarray:
    import sparse_import
    from sparse_import.relay_backend.build import build, run

    mod, params = sparse_import.to_relay(model, mode=mode)
    return run(build(mod, params), feed)[0]


def _graph(nodes, inputs, sparse, dense=()):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        "case",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, N]) for n in inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, N])],
        initializer=list(dense),
        sparse_initializer=sparse,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _input_named_like_operand(suffix: str) -> None:
    from onnx import helper

    w, other = _weight(1), f"w{suffix}"
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["p"]),
        helper.make_node("Add", ["p", other], ["y"]),
    ]
    model = _graph(nodes, ["x", other], [sparse_proto(w, "w")])
    rng = np.random.default_rng(2)
    feed = {n: rng.standard_normal((2, N)).astype(np.float32) for n in ("x", other)}
    for mode in ("sparse", "auto"):
        got = _run(model, feed, mode)
        assert_close(got, feed["x"] @ w + feed[other], f"input {other!r}, mode {mode}")


def case_input_named_w_data(tmp: Path) -> None:
    _input_named_like_operand(".data")


def case_input_named_w_indptr(tmp: Path) -> None:
    _input_named_like_operand(".indptr")


def case_input_named_w_1_indices(tmp: Path) -> None:
    _input_named_like_operand(".1.indices")


def _two_chains_next_to(other: str) -> None:
    from onnx import helper

    a, b = _weight(3), _weight(4)
    nodes = [
        helper.make_node("MatMul", ["x", "a"], ["p"]),
        helper.make_node("Gemm", ["x", "a"], ["q"], transB=1),
        helper.make_node("MatMul", ["x", other], ["r"]),
        helper.make_node("Sum", ["p", "q", "r"], ["y"]),
    ]
    model = _graph(nodes, ["x"], [sparse_proto(a, "a"), sparse_proto(b, other)])
    x = np.random.default_rng(5).standard_normal((2, N)).astype(np.float32)
    got = _run(model, {"x": x}, "sparse")
    assert_close(got, x @ a + x @ a.T + x @ b, f"weight 'a' beside weight {other!r}")


def case_weight_a_1_beside_two_chains_of_a(tmp: Path) -> None:
    _two_chains_next_to("a.1")


def case_weight_a_1_data_beside_two_chains_of_a(tmp: Path) -> None:
    _two_chains_next_to("a.1.data")


def case_weight_a_data_beside_two_chains_of_a(tmp: Path) -> None:
    _two_chains_next_to("a.data")


def case_dense_initializer_named_like_operand(tmp: Path) -> None:
    from onnx import helper, numpy_helper

    w = _weight(6)
    bias = np.arange(N, dtype=np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["p"]),
        helper.make_node("Add", ["p", "w.indices"], ["y"]),
    ]
    model = _graph(
        nodes, ["x"], [sparse_proto(w, "w")], [numpy_helper.from_array(bias, "w.indices")]
    )
    x = np.random.default_rng(7).standard_normal((2, N)).astype(np.float32)
    assert_close(_run(model, {"x": x}, "sparse"), x @ w + bias, "initializer 'w.indices'")


def case_weight_cast_to_bfloat16_stays_dense(tmp: Path) -> None:
    from onnx import TensorProto, helper

    import sparse_import

    w = _weight(8)
    nodes = [
        helper.make_node("Cast", ["w"], ["wb"], to=TensorProto.BFLOAT16),
        helper.make_node("Cast", ["wb"], ["wf"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["x", "wf"], ["y"]),
    ]
    model = _graph(nodes, ["x"], [sparse_proto(w, "w")])
    x = np.random.default_rng(9).standard_normal((2, N)).astype(np.float32)
    dense = _run(model, {"x": x}, "dense")
    for mode in ("sparse", "auto"):
        assert_close(_run(model, {"x": x}, mode), dense, f"bfloat16 chain, mode {mode}")
        (row,) = sparse_import.inspect(model, mode=mode)
        if row["lowering"] != "dense" or "bfloat16" not in row["reason"]:
            raise AssertionError(f"mode {mode}: {row['lowering']}: {row['reason']}")
