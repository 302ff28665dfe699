"""Generated parameter names never collide with anything in the graph.

The backend adds parameters for each compressed weight (``{prefix}.data``, ``.indices``,
``.indptr``, one prefix per view chain). Relay binds parameters by name, so a generated name
equal to a graph input, a dense initializer or another sparse weight would bind the wrong
array. A family of ONNX models places such an entity on every name the backend could derive
(``a.data``, ``a.1``, ``a.1.indptr``, ...) next to a weight ``a`` read through two different
view chains, and checks the built module against NumPy.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from fuzz.onnx_proto import fixture_models
from onnx import TensorProto, helper, numpy_helper

import sparse_import
from sparse_import.planning.names import NameTable
from sparse_import.relay_backend.build import build, run

N = 8  # weights are N x N so one weight can feed MatMul (x @ a) and Gemm (x @ a.T)
SUFFIXES = ("", ".data", ".indices", ".indptr")
COLLIDING = [
    f"a{chain}{suffix}"
    for chain, suffix in itertools.product(("", ".1", ".2"), SUFFIXES)
    if chain or suffix
]
KINDS = ("input", "dense_initializer", "sparse_weight")
sparse_proto = fixture_models().sparse_proto


def _model(kind: str, other: str, rng: np.random.Generator):
    """y = x @ a + x @ a.T + f(other), with ``other`` an entity of ``kind`` named ``other``."""
    a = rng.standard_normal((N, N)).astype(np.float32) * (rng.random((N, N)) < 0.3)
    b = rng.standard_normal((N, N)).astype(np.float32) * (rng.random((N, N)) < 0.3)
    nodes = [
        helper.make_node("MatMul", ["x", "a"], ["p"]),
        helper.make_node("Gemm", ["x", "a"], ["q"], transB=1),
        helper.make_node("Add", ["p", "q"], ["pq"]),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, N])]
    initializers, sparse = [], [sparse_proto(a, "a")]
    feed = {"x": rng.standard_normal((2, N)).astype(np.float32)}
    if kind == "input":
        inputs.append(helper.make_tensor_value_info(other, TensorProto.FLOAT, [2, N]))
        feed[other] = rng.standard_normal((2, N)).astype(np.float32)
        nodes.append(helper.make_node("Add", ["pq", other], ["y"]))
        extra = feed[other]
    elif kind == "dense_initializer":
        initializers.append(numpy_helper.from_array(b[0], other))
        nodes.append(helper.make_node("Add", ["pq", other], ["y"]))
        extra = b[0]
    else:
        sparse.append(sparse_proto(b, other))
        nodes.append(helper.make_node("MatMul", ["x", other], ["r"]))
        nodes.append(helper.make_node("Add", ["pq", "r"], ["y"]))
        extra = feed["x"] @ b
    graph = helper.make_graph(
        nodes,
        "names",
        inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, N])],
        initializer=initializers,
        sparse_initializer=sparse,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = feed["x"]
    return model, feed, x @ a + x @ a.T + extra


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("other", COLLIDING)
def test_generated_names_never_bind_another_tensor(kind: str, other: str) -> None:
    rng = np.random.default_rng(len(other) * 31 + KINDS.index(kind))
    model, feed, expected = _model(kind, other, rng)
    mod, params = sparse_import.to_relay(model, mode="sparse")
    names = [p.name_hint for p in mod["main"].params]
    assert len(names) == len(set(names)), names
    if kind == "input":
        assert other in names and other not in params
    (actual,) = run(build(mod, params), feed)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


def test_name_table_skips_every_taken_derived_name() -> None:
    derive = lambda p: [f"{p}.data", f"{p}.indices", f"{p}.indptr"]  # noqa: E731
    for taken in itertools.chain.from_iterable(
        itertools.combinations(COLLIDING, k) for k in range(4)
    ):
        table = NameTable({"a", *taken})
        prefix = table.claim("a", derive)
        assert not set(derive(prefix)) & {"a", *taken}
        assert all(name in table for name in derive(prefix))
        second = table.claim("a", derive)
        assert second != prefix and not set(derive(second)) & set(derive(prefix))
