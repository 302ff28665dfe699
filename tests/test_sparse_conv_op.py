"""``sparse_import.sparse_conv2d`` (any square kernel, stride, padding, dilation; NCHW) against
TVM's dense ``nn.conv2d`` computed by NumPy-checked Relay, on awkward shapes and weights."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import tvm
from tvm import relay

from sparse_import.relay_backend import build, run
from sparse_import.relay_backend.conv_op import sparse_conv2d

CASES = [  # (in, out, h, w, kernel, stride, padding (t, l, b, r), dilation)
    (8, 16, 9, 11, 3, 2, (1, 1, 1, 1), 1),
    (5, 7, 8, 8, 1, 2, (0, 0, 0, 0), 1),
    (3, 8, 15, 13, 7, 2, (3, 3, 3, 3), 1),
    (6, 4, 10, 9, 3, 1, (0, 2, 1, 0), 1),
    (4, 9, 12, 12, 3, 2, (2, 2, 2, 2), 2),
    (7, 5, 6, 17, 5, 3, (2, 1, 2, 1), 1),
    (16, 33, 7, 7, 3, 2, (1, 1, 1, 1), 1),
]


def _numpy_conv(x, w, stride, padding, dilation):
    """Reference: direct loops over the taps in float64."""
    n, _, h, wd = x.shape
    o, _, k, _ = w.shape
    top, left, bottom, right = padding
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (top, bottom), (left, right)))
    out_h = (h + top + bottom - (k - 1) * dilation - 1) // stride + 1
    out_w = (wd + left + right - (k - 1) * dilation - 1) // stride + 1
    y = np.zeros((n, o, out_h, out_w))
    for i in range(k):
        for j in range(k):
            patch = xp[
                :,
                :,
                i * dilation : i * dilation + stride * (out_h - 1) + 1 : stride,
                j * dilation : j * dilation + stride * (out_w - 1) + 1 : stride,
            ]
            y += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j].astype(np.float64))
    return y


def _weight(out, cols, density, seed, kind):
    rng = np.random.default_rng(seed)
    if kind == "zero":
        return np.zeros((out, cols), np.float32)
    if kind == "one":
        m = np.zeros((out, cols), np.float32)
        m[rng.integers(out), rng.integers(cols)] = rng.standard_normal()
        return m
    m = sp.random_array((out, cols), density=density, rng=rng).toarray().astype(np.float32)
    m[rng.integers(out)] = 0  # an empty row
    return m


def _arrays(matrix, block_rows, index_dtype):
    if block_rows == 1:
        csr = sp.csr_array(matrix)
        data = csr.data.reshape(-1, 1, 1)
        return data, csr.indices.astype(index_dtype), csr.indptr.astype(np.int32)
    bsr = sp.bsr_array(matrix, blocksize=(block_rows, 1))
    return bsr.data, bsr.indices.astype(index_dtype), bsr.indptr.astype(np.int32)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(
    ("kind", "block_rows", "index_dtype"),
    [("random", 1, "uint16"), ("random", 1, "int32"), ("zero", 1, "int32"), ("one", 1, "uint16")],
)
def test_matches_a_direct_convolution(case, kind, block_rows, index_dtype):
    cin, cout, h, w, k, stride, padding, dilation = case
    seed = hash((case, kind)) % 2**32
    matrix = _weight(cout, cin * k * k, 0.3, seed, kind)
    data, indices, indptr = _arrays(matrix, block_rows, index_dtype)
    x = relay.var("x", shape=(2, cin, h, w), dtype="float32")
    params = {"d": data, "i": indices, "p": indptr}
    args = [relay.var(n, shape=v.shape, dtype=str(v.dtype)) for n, v in params.items()]
    call = sparse_conv2d(
        x,
        *args,
        kernel_size=(k, k),
        strides=(stride, stride),
        padding=padding,
        dilation=(dilation, dilation),
    )
    body = relay.nn.relu(relay.add(call, relay.const(np.float32(0.25))))
    mod = tvm.IRModule.from_expr(relay.Function([x, *args], body))
    inputs = np.random.default_rng(seed + 1).standard_normal((2, cin, h, w)).astype(np.float32)
    got = run(build(mod, params), {"x": inputs})[0]
    weight = matrix.reshape(cout, cin, k, k)
    expected = np.maximum(_numpy_conv(inputs, weight, stride, padding, dilation) + 0.25, 0)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("block_rows", [4, 8])
def test_row_blocks(block_rows):
    cin, cout, h, w, k, stride, padding, dilation = CASES[0]
    matrix = _weight(cout, cin * k * k, 0.3, 5, "random")
    blocks = np.repeat(matrix[::block_rows] != 0, block_rows, axis=0)
    matrix = np.where(blocks, 1.0 + matrix, 0).astype(np.float32)
    data, indices, indptr = _arrays(matrix, block_rows, "uint16")
    x = relay.var("x", shape=(1, cin, h, w), dtype="float32")
    params = {"d": data, "i": indices, "p": indptr}
    args = [relay.var(n, shape=v.shape, dtype=str(v.dtype)) for n, v in params.items()]
    call = sparse_conv2d(
        x, *args, kernel_size=(k, k), strides=(stride,) * 2, padding=padding, dilation=(1, 1)
    )
    mod = tvm.IRModule.from_expr(relay.Function([x, *args], call))
    inputs = np.random.default_rng(6).standard_normal((1, cin, h, w)).astype(np.float32)
    got = run(build(mod, params), {"x": inputs})[0]
    expected = _numpy_conv(inputs, matrix.reshape(cout, cin, k, k), stride, padding, dilation)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
