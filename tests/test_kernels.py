"""The sparse kernels of ``sparse_import.kernels`` against dense NumPy oracles.

Each kernel is compiled once per array shape (module-scoped cache); many random sparsity
patterns with that shape then run through it: empty rows, rows shorter and longer than a vector,
a single stored value, no stored value, awkward row and column counts.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
import tvm
from tvm import relay, te

from sparse_import.kernels import (
    Simd,
    sparse_conv2d_1x1,
    sparse_conv2d_3x3_nchw,
    sparse_dense,
    sparse_dense_schedule,
)
from sparse_import.relay_backend import build, run, strategy
from sparse_import.target import host_target, resolve, simd_lanes, vector_bytes

SEEDS = range(6)
HOST = resolve(None)
SIMDS = {  # name -> (target, Simd): host vectors, AVX-512 and AVX2 gathers, SSE2
    "host": (HOST, Simd.from_target(HOST)),
    "avx512": (resolve("llvm -mcpu=skylake-avx512"), Simd(64, "avx512", use_gather=True)),
    "avx2": (resolve("llvm -mcpu=haswell"), Simd(32, "avx2", use_gather=True)),
    "sse": (resolve("llvm"), Simd(16)),
}


def _random_bsr(rng, shape, block, nblocks, dtype):
    """A BSR matrix with exactly ``nblocks`` stored ``block`` tiles at random places."""
    grid = (shape[0] // block[0], shape[1] // block[1])
    tiles = np.sort(rng.choice(grid[0] * grid[1], size=nblocks, replace=False))
    indptr = np.searchsorted(tiles // grid[1], np.arange(grid[0] + 1)).astype(np.int32)
    data = rng.standard_normal((nblocks, *block)).astype(dtype)
    return sp.bsr_array((data, tiles % grid[1], indptr), shape=shape, blocksize=block)


def _arrays(matrix, block, index_dtype):
    if block == (1, 1):
        csr = sp.csr_array(matrix)
        csr.sort_indices()
        return csr.data, csr.indices.astype(index_dtype), csr.indptr.astype(np.int32)
    return matrix.data, matrix.indices.astype(index_dtype), matrix.indptr.astype(np.int32)


@functools.cache
def _compiled_dense(simd_name, batch, shape, block, nblocks, index_dtype, dtype):
    target, simd = SIMDS[simd_name]
    data_shape = (nblocks,) if block == (1, 1) else (nblocks, *block)
    x = te.placeholder((batch, shape[1]), dtype=dtype, name="x")
    data = te.placeholder(data_shape, dtype=dtype, name="data")
    indices = te.placeholder((nblocks,), dtype=index_dtype, name="indices")
    indptr = te.placeholder((shape[0] // block[0] + 1,), dtype="int32", name="indptr")
    y = sparse_dense(x, data, indices, indptr, simd=simd)
    with target:
        schedule = sparse_dense_schedule([y])
    return tvm.build(schedule, [x, data, indices, indptr, y], target=target)


def _check_dense(simd_name, batch, shape, block, nblocks, index_dtype="int32", dtype="float32"):
    func = _compiled_dense(simd_name, batch, shape, block, nblocks, index_dtype, dtype)
    tol = 1e-4 if dtype == "float32" else 1e-10
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        matrix = _random_bsr(rng, shape, block, nblocks, dtype)
        x = rng.standard_normal((batch, shape[1])).astype(dtype)
        args = [tvm.nd.array(a) for a in (x, *_arrays(matrix, block, index_dtype))]
        out = tvm.nd.empty((batch, shape[0]), dtype)
        func(*args, out)
        expected = x.astype(np.float64) @ matrix.toarray().astype(np.float64).T
        np.testing.assert_allclose(out.numpy(), expected, rtol=tol, atol=tol)


# ------------------------------------------------------------------ CSR, all batches
@pytest.mark.parametrize("batch", [1, 3, 16])
@pytest.mark.parametrize("nnz", [0, 1, 300, 1850])
@pytest.mark.parametrize("index_dtype", ["int32", "uint16"])
def test_csr_matches_numpy(batch, nnz, index_dtype):
    """37 x 50: rows and columns not multiples of any vector; 1850 of 1850 values is full."""
    _check_dense("host", batch, (37, 50), (1, 1), nnz, index_dtype)


@pytest.mark.parametrize("simd_name", ["avx512", "avx2", "sse"])
@pytest.mark.parametrize("batch", [1, 5])
def test_csr_other_vector_widths(simd_name, batch):
    _check_dense(simd_name, batch, (70, 45), (1, 1), 900)


# ------------------------------------------------------------------ BSR, all batches
@pytest.mark.parametrize("block", [(1, 4), (4, 1), (8, 1), (16, 1), (2, 3)])
@pytest.mark.parametrize("batch", [1, 3, 40])
def test_bsr_matches_numpy(block, batch):
    """5 x 7 block rows and columns; batch 40 with 16-row blocks splits into 16 + 16 + 8."""
    shape = (block[0] * 5, block[1] * 7)
    _check_dense("host", batch, shape, block, 13)


@pytest.mark.parametrize("block", [(1, 2), (1, 4), (1, 8), (4, 1)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bsr_long_rows(block, dtype):
    """About 33 blocks per row: 1 x c blocks packed several to a vector, 4 accumulators, the
    vectors and single blocks left over."""
    shape = (block[0] * 6, block[1] * 50)
    _check_dense("host", 1, shape, block, 200, dtype=dtype)


@pytest.mark.parametrize("block", [(1, 4), (16, 1)])
def test_bsr_uint16_indices_and_empty(block):
    shape = (block[0] * 6, block[1] * 9)
    _check_dense("host", 1, shape, block, 20, "uint16")
    _check_dense("host", 16, shape, block, 0, "uint16")


@pytest.mark.parametrize("simd_name", ["host", "avx512", "avx2"])
@pytest.mark.parametrize(("batch", "block"), [(1, (1, 1)), (4, (1, 1)), (1, (4, 1)), (7, (1, 2))])
def test_float64(simd_name, batch, block):
    shape = (block[0] * 9, block[1] * 11)
    _check_dense(simd_name, batch, shape, block, 40, dtype="float64")


# ------------------------------------------------------------------ 1x1 convolution
@functools.cache
def _compiled_conv(layout, x_shape, rows, block, nblocks):
    target, simd = SIMDS["host"]
    data_shape = (nblocks,) if block == (1, 1) else (nblocks, *block)
    x = te.placeholder(x_shape, name="x")
    data = te.placeholder(data_shape, name="data")
    indices = te.placeholder((nblocks,), dtype="int32", name="indices")
    indptr = te.placeholder((rows // block[0] + 1,), dtype="int32", name="indptr")
    y = sparse_conv2d_1x1(x, data, indices, indptr, layout=layout, simd=simd)
    with target:
        schedule = sparse_dense_schedule([y])
    return tvm.build(schedule, [x, data, indices, indptr, y], target=target), y.shape


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("block", [(1, 1), (4, 1)])
@pytest.mark.parametrize("pixels", [(2, 5, 3), (1, 10, 10)])
def test_conv1x1_matches_numpy(layout, block, pixels):
    """12 -> 20 channels; 2 images of 5 x 3 pixels (less than a vector), one of 10 x 10 (with
    4 x 1 blocks: a tile of 4 vectors, then 2 vectors, then 4 pixels)."""
    n, h, w = pixels
    x_shape = (n, 12, h, w) if layout == "NCHW" else (n, h, w, 12)
    func, y_shape = _compiled_conv(layout, x_shape, 20, block, 17)
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        matrix = _random_bsr(rng, (20, 12), block, 17, "float32")
        x = rng.standard_normal(x_shape).astype(np.float32)
        out = tvm.nd.empty(tuple(int(d) for d in y_shape))
        func(*(tvm.nd.array(a) for a in (x, *_arrays(matrix, block, "int32"))), out)
        spec = "oc,nchw->nohw" if layout == "NCHW" else "oc,nhwc->nhwo"
        expected = np.einsum(spec, matrix.toarray().astype(np.float64), x)
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-4)


@functools.cache
def _compiled_conv3x3(x_shape, rows, block, nblocks):
    target, simd = SIMDS["host"]
    data_shape = (nblocks,) if block == (1, 1) else (nblocks, *block)
    x = te.placeholder(x_shape, name="x")
    data = te.placeholder(data_shape, name="data")
    indices = te.placeholder((nblocks,), dtype="uint16", name="indices")
    indptr = te.placeholder((rows // block[0] + 1,), dtype="int32", name="indptr")
    y = sparse_conv2d_3x3_nchw(x, data, indices, indptr, simd=simd)
    with target:
        schedule = sparse_dense_schedule([y])
    return tvm.build(schedule, [x, data, indices, indptr, y], target=target)


@pytest.mark.parametrize("block", [(1, 1), (4, 1)])
@pytest.mark.parametrize("x_shape", [(2, 5, 6, 7), (1, 3, 20, 20)])
def test_conv3x3_nchw_matches_numpy(block, x_shape):
    """Same padding at every border; rows of 7 (less than a vector) and 20 (16 + 4)."""
    n, channels, h, w = x_shape
    func = _compiled_conv3x3(x_shape, 8, block, 30)
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        matrix = _random_bsr(rng, (8, channels * 9), block, 30, "float32")
        x = rng.standard_normal(x_shape).astype(np.float32)
        out = tvm.nd.empty((n, 8, h, w))
        func(*(tvm.nd.array(a) for a in (x, *_arrays(matrix, block, "uint16"))), out)
        oihw = matrix.toarray().astype(np.float64).reshape(8, channels, 3, 3)
        padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))
        expected = np.einsum("nchwkl,ockl->nohw", windows, oihw)
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ Relay registration
@pytest.fixture(scope="module")
def relay_weight():
    return _random_bsr(np.random.default_rng(7), (40, 24), (4, 1), 30, "float32")


def _sparse_dense_module(matrix, batch, sparse_lhs=False):
    x = relay.var("x", shape=(batch, matrix.shape[1]))
    names = ("w.data", "w.indices", "w.indptr")
    values = (matrix.data, matrix.indices.astype(np.int32), matrix.indptr.astype(np.int32))
    weights = [
        relay.var(n, shape=v.shape, dtype=str(v.dtype)) for n, v in zip(names, values, strict=True)
    ]
    y = relay.nn.sparse_dense(x, weights, sparse_lhs=sparse_lhs)
    mod = tvm.IRModule.from_expr(relay.Function([x, *weights], y))
    return mod, dict(zip(names, values, strict=True))


@pytest.mark.parametrize("batch", [1, 6])
def test_relay_build_uses_our_kernels(relay_weight, batch):
    """A plain ``relay.build`` (any caller) picks our implementation for nn.sparse_dense."""
    mod, params = _sparse_dense_module(relay_weight, batch)
    lib = build(mod, params)
    kernel = "bsr_matvec" if batch == 1 else "sparse_matmul"
    assert kernel in lib.get_lib().get_source("ll")
    x = np.random.default_rng(batch).standard_normal((batch, 24)).astype(np.float32)
    expected = x @ relay_weight.toarray().T
    np.testing.assert_allclose(run(lib, {"x": x})[0], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("block", "ours"), [((1, 1), True), ((16, 8), False)])
def test_relay_block_sizes(block, ours):
    """1x1 BSR blocks run our kernel (CSR-like, packed 16 to a vector); blocks of more than
    ``MAX_BLOCK`` values stay on TVM's kernel. Both are right."""
    matrix = _random_bsr(
        np.random.default_rng(5), (32, 48), block, 6 if block[0] > 1 else 300, "float32"
    )
    mod, params = _sparse_dense_module(matrix, 1)
    lib = build(mod, params)
    assert ("bsr_matvec" in lib.get_lib().get_source("ll")) == ours
    x = np.random.default_rng(6).standard_normal((1, 48)).astype(np.float32)
    expected = x @ matrix.toarray().T
    np.testing.assert_allclose(run(lib, {"x": x})[0], expected, rtol=1e-4, atol=1e-4)


def test_sparse_lhs_keeps_tvm_kernel(relay_weight):
    """``W @ x.T`` (sparse_lhs) is TVM's kernel: still right, none of ours."""
    strategy.register()  # registering twice changes nothing
    mod, params = _sparse_dense_module(relay_weight, 5, sparse_lhs=True)
    lib = build(mod, params)
    source = lib.get_lib().get_source("ll")
    assert not any(k in source for k in ("bsr_matvec", "sparse_matmul", "csr_matvec"))
    x = np.random.default_rng(1).standard_normal((5, 24)).astype(np.float32)
    expected = relay_weight.toarray() @ x.T
    np.testing.assert_allclose(run(lib, {"x": x})[0], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("layout", "kernel", "ours"), [("NCHW", 3, True), ("NHWC", 3, False)])
def test_relay_sparse_conv2d_3x3_kernel_choice(layout, kernel, ours):
    """3x3 NCHW runs our direct convolution; 3x3 NHWC stays on TVM's kernel. Both are right."""
    rng = np.random.default_rng(11)
    matrix = _random_bsr(rng, (8, 6 * 9), (1, 1), 60, "float32")
    shape = (1, 6, 7, 9) if layout == "NCHW" else (1, 7, 9, 6)
    x = relay.var("x", shape=shape)
    arrays = _arrays(matrix, (1, 1), "int32")
    if layout == "NHWC":  # TVM's NHWC order of the columns is (kh, kw, in)
        dense = matrix.toarray().reshape(8, 6, 3, 3).transpose(0, 2, 3, 1).reshape(8, 54)
        arrays = _arrays(sp.bsr_array(dense, blocksize=(1, 1)), (1, 1), "int32")
    names = ("w.data", "w.indices", "w.indptr")
    weights = [
        relay.var(n, shape=a.shape, dtype=str(a.dtype)) for n, a in zip(names, arrays, strict=True)
    ]
    data = relay.reshape(weights[0], (-1, 1, 1))
    call = relay.nn._make.sparse_conv2d(x, data, weights[1], weights[2], layout, [kernel, kernel])
    mod = tvm.IRModule.from_expr(relay.Function([x, *weights], call))
    lib = build(mod, dict(zip(names, arrays, strict=True)))
    assert ("sparse_matmul" in lib.get_lib().get_source("ll")) == ours
    xv = rng.standard_normal(shape).astype(np.float32)
    nchw = xv if layout == "NCHW" else xv.transpose(0, 3, 1, 2)
    padded = np.pad(nchw, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))
    expected = np.einsum("nchwkl,ockl->nohw", windows, matrix.toarray().reshape(8, 6, 3, 3))
    got = run(lib, {"x": xv})[0]
    got = got if layout == "NCHW" else got.transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ targets
def test_host_target_names_this_cpu():
    cpu = str(tvm.target.codegen.llvm_get_system_cpu())
    assert host_target() == f"llvm -mcpu={cpu}"
    assert str(resolve("host")) == str(resolve(None))
    assert resolve(None).mcpu == resolve("llvm -mcpu=native").mcpu == cpu


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_int8_dense_builds_right_for_the_host(dtype):
    """TVM 0.19's VNNI int8 kernels abort LLVM 22 and its AVX512-BW ones sum wrong: build()
    switches both off for a module of integer products, and only for those."""
    has = tvm.target.codegen.target_has_features
    assert not has("avx512vnni", resolve(None))
    assert not has("avx512bw", resolve(None, integer_products=True))
    x = relay.var("x", shape=(2, 32), dtype=dtype)
    w = relay.var("w", shape=(16, 32), dtype="int8")
    mod = tvm.IRModule.from_expr(relay.Function([x, w], relay.nn.dense(x, w, out_dtype="int32")))
    rng = np.random.default_rng(3)
    weight = rng.integers(-100, 100, (16, 32)).astype(np.int8)
    xs = rng.integers(0 if dtype == "uint8" else -128, 127, (2, 32)).astype(dtype)
    got = run(build(mod, {"w": weight}), {"x": xs})[0]
    np.testing.assert_array_equal(got, xs.astype(np.int32) @ weight.T.astype(np.int32))


def test_vector_width_follows_target():
    assert vector_bytes(resolve("llvm")) == 16
    assert vector_bytes(resolve("llvm -mcpu=haswell")) == 32
    assert vector_bytes(resolve("llvm -mcpu=skylake-avx512")) == 64
    assert simd_lanes(resolve("llvm -mcpu=haswell"), "float64") == 4
    assert Simd.from_target(resolve("llvm -mcpu=haswell")) == Simd(32, "avx2")


def test_gather_instructions_only_when_asked():
    """The kernels load gathered values one lane at a time unless ``use_gather`` is set."""
    x = te.placeholder((1, 64), name="x")
    arrays = [te.placeholder((40,), name="d"), te.placeholder((40,), "int32", name="i")]
    indptr = te.placeholder((9,), "int32", name="p")
    for gather, expected in ((False, 0), (True, 1)):
        simd = Simd(64, "avx512", use_gather=gather)
        y = sparse_dense(x, *arrays, indptr, simd=simd)
        target = SIMDS["avx512"][0]
        with target:
            func = tvm.build(sparse_dense_schedule([y]), [x, *arrays, indptr, y], target=target)
        assert min(func.get_source("asm").count("vgatherdps"), 1) == expected


def test_bad_target_is_a_value_error():
    message = r"target 'nonsense-kind -x' is not a TVM target: .*kind \"nonsense-kind\""
    with pytest.raises(ValueError, match=message):
        resolve("nonsense-kind -x")


# ------------------------------------------------------------------ threads
_THREADED_CHECK = """
import numpy as np, scipy.sparse as sp, tvm
from tvm import te
from sparse_import.target import resolve
from sparse_import.kernels import Simd, sparse_dense, sparse_dense_schedule
assert tvm.get_global_func("runtime.NumThreads")() == 2
target = resolve(None)
rng = np.random.default_rng(0)
for batch, block in ((1, (1, 1)), (1, (1, 4)), (1, (8, 1)), (6, (1, 1)), (20, (4, 1))):
    w = sp.bsr_array(sp.random_array((64, 96), density=0.2, rng=rng).toarray().astype(np.float32),
                     blocksize=block)
    arrays = (w.data.reshape(-1) if block == (1, 1) else w.data, w.indices.astype(np.int32),
              w.indptr.astype(np.int32))
    x = te.placeholder((batch, 96), name="x")
    ins = [te.placeholder(a.shape, dtype=str(a.dtype), name=f"a{i}") for i, a in enumerate(arrays)]
    y = sparse_dense(x, *ins, simd=Simd.from_target(target))
    with target:
        f = tvm.build(sparse_dense_schedule([y]), [x, *ins, y], target=target)
    xv = rng.standard_normal((batch, 96)).astype(np.float32)
    out = tvm.nd.empty((batch, 64))
    f(tvm.nd.array(xv), *(tvm.nd.array(a) for a in arrays), out)
    np.testing.assert_allclose(out.numpy(), xv @ w.toarray().T, rtol=1e-4, atol=1e-4)
print("ok")
"""


def test_kernels_run_parallel_over_two_threads():
    """TVM runs one thread by default here; the row-parallel loops must be right with two."""
    env = {**os.environ, "TVM_NUM_THREADS": "2", "TOPHUB_LOCATION": "NONE"}
    done = subprocess.run(
        [sys.executable, "-c", _THREADED_CHECK], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
