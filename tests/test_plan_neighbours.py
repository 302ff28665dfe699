"""Neighbouring sparse convolutions decided together: the change of layout between a sparse NCHW
convolution and a dense one is paid once per side that meets a dense neighbour, never between
two sparse ones. Planning only (no TVM)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from sparse_import import from_scipy
from sparse_import.planning import cost
from sparse_import.planning.decide import SiteMatrix
from sparse_import.planning.modes import Lowering
from sparse_import.planning.plan import WeightRef, plan, plan_weights
from sparse_import.planning.product import LayoutNeighbours, Product


def _conv(rows, cols, density, pixels, seed, producers=(), consumers=(), kernel=1):
    matrix = sp.random_array(
        (rows, cols * kernel * kernel), density=density, format="csr", rng=seed, dtype=np.float32
    )
    side = int(np.sqrt(pixels))
    return Product(
        matrix=from_scipy(matrix),
        data_shape=(1, cols, side, side),
        conv=("NCHW", kernel),
        neighbours=LayoutNeighbours(producers=tuple(producers), consumers=tuple(consumers)),
    )


def _ref(name):
    return WeightRef(name, name, "Conv")


def test_boundary_is_charged_only_towards_dense_neighbours():
    product = _conv(64, 64, 0.1, 56 * 56, 0, producers=("a", None), consumers=("b",))
    site = SiteMatrix(product, 56 * 56)
    csr = plan(_ref("w"), [product], "sparse")[1]
    kernel = cost.conv_seconds("NCHW", 1, 64, 64, 56 * 56, stored=product.matrix.nnz)
    boundary_in = cost.NCHW_BOUNDARY_PER_VALUE * 56 * 56 * 64
    alone = site.seconds(csr, ())
    assert alone == pytest.approx(kernel + 2 * boundary_in)
    # "a" sparse: the other producer (None: a weight that is not sparse) stays dense, so half
    # the input side is paid; "b" sparse: the output side is free
    assert site.seconds(csr, {"a", "b"}) == pytest.approx(kernel + boundary_in / 2)
    unknown = SiteMatrix(
        Product(matrix=product.matrix, data_shape=product.data_shape, conv=("NCHW", 1)), 56 * 56
    )
    assert unknown.seconds(csr, {"a", "b"}) == pytest.approx(alone)


def _chain(density, seed, ends):
    """Three 1x1 convolutions a -> b -> c at 56x56; ``ends`` ``None`` puts a dense convolution
    (a weight that is not sparse) before ``a`` and after ``c``."""
    pix = 56 * 56
    before, after = ((None,), (None,)) if ends else ((), ())
    return [
        (_ref("a"), [_conv(256, 64, density, pix, seed, before, ("b",))]),
        (_ref("b"), [_conv(64, 256, density, pix, seed + 1, ("a",), ("c",))]),
        (_ref("c"), [_conv(256, 64, density, pix, seed + 2, ("b",), after)]),
    ]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("density", [0.02, 0.1, 0.3, 0.6])
@pytest.mark.parametrize("ends", [False, True])
def test_decisions_are_consistent_with_each_other(seed, density, ends):
    requests = _chain(density, seed * 3, ends)
    results = plan_weights(requests, "auto")
    sparse = {
        ref.param
        for (ref, _), (d, _, _) in zip(requests, results, strict=True)
        if d.lowering is not Lowering.DENSE
    }
    for (ref, products), (decision, _, _) in zip(requests, results, strict=True):
        alone = plan(ref, products, "auto", None, sparse - {ref.param})[0]
        assert alone.lowering is decision.lowering, (ref.param, alone.reason, decision.reason)


def test_a_chain_of_sparse_convolutions_shares_its_layout():
    """At a density where one sparse convolution between dense ones loses to its layout changes,
    a chain of them keeps them all sparse: inside the chain nothing changes layout."""
    pix, density = 56 * 56, 0.1
    lonely = _conv(256, 64, density, pix, 7, (None,), (None,))
    (decision, _, _) = plan(_ref("b"), [lonely], "auto")
    assert decision.lowering is Lowering.DENSE, decision.reason
    requests = [
        (_ref("a"), [_conv(256, 64, density, pix, 7, (), ("b",))]),
        (_ref("b"), [_conv(256, 64, density, pix, 7, ("a",), ("c",))]),
        (_ref("c"), [_conv(256, 64, density, pix, 7, ("b",), ())]),
    ]
    lowerings = [d.lowering for d, _, _ in plan_weights(requests, "auto")]
    assert lowerings == [Lowering.CSR] * 3


def test_sparse_mode_is_unchanged_by_neighbours():
    requests = _chain(0.6, 0, True)
    assert all(d.lowering is Lowering.CSR for d, _, _ in plan_weights(requests, "sparse"))
