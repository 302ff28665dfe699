"""The convolutions that share a layout region in a Relay graph (``relay_backend.neighbours``),
and a chain of sparse convolutions lowered together, exact against NumPy."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import tvm
from tvm import relay

from sparse_import import SparseTensor
from sparse_import.imported import ImportedModel, SparseWeight
from sparse_import.layouts import coo_layout
from sparse_import.relay_backend import build, lower, run
from sparse_import.relay_backend.neighbours import conv_neighbours
from sparse_import.relay_backend.uses import op_name


def _conv(x, w, kernel):
    return relay.nn.conv2d(x, w, kernel_size=(kernel, kernel), padding=(kernel // 2,) * 2)


def _fire_and_residual(weights: dict[str, relay.Var], dense_w: relay.Constant) -> relay.Expr:
    """x -> a (1x1) -> relu -> [b (1x1), c (3x3)] -> concat -> d (1x1) -> + skip -> e (dense
    weight) -> flatten -> f (1x1 on the flattened map, a region of its own)."""
    x = relay.var("x", shape=(1, 8, 6, 6), dtype="float32")
    a = relay.nn.relu(_conv(x, weights["a"], 1))
    fire = relay.concatenate([_conv(a, weights["b"], 1), _conv(a, weights["c"], 3)], axis=1)
    d = relay.add(_conv(fire, weights["d"], 1), relay.const(np.ones((8, 1, 1), "float32")))
    e = _conv(relay.nn.relu(relay.add(d, a)), dense_w, 1)
    flat = relay.reshape(e, (1, 8 * 36, 1, 1))
    f = _conv(flat, weights["f"], 1)
    return relay.Function([x, *weights.values()], f)


def _weights(rng):
    shapes = {"a": (8, 8, 1, 1), "b": (8, 8, 1, 1), "c": (8, 8, 3, 3), "d": (8, 16, 1, 1)}
    shapes["f"] = (4, 8 * 36, 1, 1)
    dense = {}
    for name, shape in shapes.items():
        matrix = sp.random_array(
            (shape[0], int(np.prod(shape[1:]))), density=0.3, rng=rng, dtype=np.float32
        )
        dense[name] = matrix.toarray().reshape(shape)
    return dense


def test_regions_join_through_elementwise_ops_and_concatenation(rng):
    dense = _weights(rng)
    params = {n: relay.var(n, shape=w.shape, dtype="float32") for n, w in dense.items()}
    func = _fire_and_residual(params, relay.const(np.ones((8, 8, 1, 1), "float32")))
    func = relay.transform.InferType()(tvm.IRModule.from_expr(func))["main"]
    convs = []
    relay.analysis.post_order_visit(
        func.body, lambda n: convs.append(n) if op_name(n) == "nn.conv2d" else None
    )
    weight_of = {c: c.args[1].name_hint for c in convs if isinstance(c.args[1], relay.Var)}
    near = {weight_of.get(c, "dense"): n for c, n in conv_neighbours(func, weight_of).items()}
    assert sorted(near) == ["a", "b", "c", "d", "dense", "f"]
    # the input of a is the function's input: nothing else attaches to it
    assert near["a"].producers == ()
    # a's output region: relu(a) read by b, c and the residual add (joining d's output and e)
    assert sorted(map(str, near["a"].consumers)) == ["None", "b", "c", "d"]
    # b and c write one concatenation, which d reads
    assert set(near["b"].consumers) == {"c", "d"} and set(near["c"].consumers) == {"b", "d"}
    assert set(near["b"].producers) == {"a", "c", "d", None}
    assert set(near["d"].producers) == {"b", "c"}
    assert set(near["d"].consumers) == {"a", "b", "c", None}
    assert set(near["dense"].producers) == {"a", "b", "c", "d"}
    # a reshape ends the region: e's output and f's input are not joined
    assert near["dense"].consumers == () and near["f"].producers == ()


def test_a_chain_lowered_together_matches_numpy(rng):
    dense = _weights(rng)
    params = {n: relay.var(n, shape=w.shape, dtype="float32") for n, w in dense.items()}
    dense_w = rng.standard_normal((8, 8, 1, 1)).astype(np.float32)
    func = _fire_and_residual(params, relay.const(dense_w))
    mod = relay.transform.InferType()(tvm.IRModule.from_expr(func))
    tensors = {n: SparseTensor.from_dense(w, coo_layout(4), name=n) for n, w in dense.items()}
    weights = tuple(SparseWeight(n, t, t, "Conv") for n, t in tensors.items())
    imported = ImportedModel(mod, {}, weights, "test")
    x = rng.standard_normal((1, 8, 6, 6)).astype(np.float32)
    reference = run(build(*lower(imported, mode="dense")[:2]), {"x": x})[0]
    for mode in ("auto", "sparse"):
        lowered, lowered_params, decisions = lower(imported, mode=mode)
        got = run(build(lowered, lowered_params), {"x": x})[0]
        np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-5)
        assert len(decisions) == len(weights)
