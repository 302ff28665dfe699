"""Backend helpers without a TVM build: IR reshape, tile counts, operands, the cost model."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from sparse_import import SparseTensor, from_scipy
from sparse_import.backend import cost, matrix
from sparse_import.backend.kernels import SparseOperand
from sparse_import.layouts import bsr_layout, csc_layout, csr_layout
from sparse_import.levels import Level, LevelFormat


def _dense(rng, shape, density):
    return np.where(rng.random(shape) < density, rng.standard_normal(shape), 0).astype(np.float32)


@pytest.mark.parametrize(
    ("shape", "new_shape", "levels"),
    [
        ((6, 8), (48,), csr_layout()),
        ((6, 8), (4, 12), csc_layout()),
        ((4, 3, 3, 5), (4, 45), (Level(0), Level(1), Level(2), Level(3, LevelFormat.COMPRESSED))),
        ((8, 8), (2, 4, 8), bsr_layout((2, 4))),
    ],
)
def test_reshape_matches_numpy(rng, shape, new_shape, levels):
    dense = _dense(rng, shape, 0.3)
    tensor = SparseTensor.from_dense(dense, levels, name="w")
    reshaped = tensor.reshape(new_shape)
    reshaped.validate()
    np.testing.assert_array_equal(reshaped.to_dense(), dense.reshape(new_shape))
    assert reshaped.nnz == tensor.nnz  # stored values (explicit zeros too) move, none appear


def test_reshape_to_the_same_shape_is_the_tensor(rng):
    tensor = from_scipy(sp.csr_array(_dense(rng, (4, 5), 0.5)))
    assert tensor.reshape((4, 5)) is tensor


def test_reshape_refuses_another_size(rng):
    tensor = from_scipy(sp.csr_array(_dense(rng, (4, 5), 0.5)), name="w")
    with pytest.raises(ValueError, match=r"sparse tensor 'w': cannot reshape \(4, 5\) into"):
        tensor.reshape((3, 7))


@pytest.mark.parametrize("block", [(1, 1), (4, 1), (2, 2), (1, 8), (16, 1)])
def test_block_count_matches_scipy(rng, block):
    csr = sp.csr_array(_dense(rng, (64, 32), 0.05))
    assert matrix.block_count(csr, block) == sp.bsr_array(csr, blocksize=block).nnz // (
        block[0] * block[1]
    )


def test_matrix_block_reports_only_bsr_storage(rng):
    dense = _dense(rng, (8, 8), 0.4)
    assert matrix.matrix_block(SparseTensor.from_dense(dense, bsr_layout((1, 4)))) == (1, 4)
    assert matrix.matrix_block(SparseTensor.from_dense(dense, csr_layout())) == (1, 1)
    blocked_csc = SparseTensor.from_dense(dense, bsr_layout((2, 2))).transpose()
    assert matrix.matrix_block(blocked_csc) == (1, 1)


def test_operand_keeps_bsr_blocks_and_narrow_indices(rng):
    bsr = sp.bsr_array(_dense(rng, (8, 16), 0.5), blocksize=(2, 4))
    operand = SparseOperand.from_scipy(bsr)
    assert (operand.format, operand.block, operand.shape) == ("bsr", (2, 4), (8, 16))
    assert operand.indices.dtype == np.uint16 and operand.indptr.dtype == np.int32
    np.testing.assert_array_equal(operand.data, bsr.data)
    assert sorted(operand.params("w")) == ["w.data", "w.indices", "w.indptr"]


# ------------------------------------------------------------------ cost model
def test_cost_grows_with_batch_and_entries():
    for batch in (1, 2, 4, 9, 16, 64):
        assert cost.dense_seconds(1024, 1024, batch) < cost.dense_seconds(1024, 1024, batch + 1)
        assert cost.csr_seconds(1024, 1024, 50_000, batch) < cost.csr_seconds(
            1024, 1024, 100_000, batch
        )


def test_cost_interpolates_between_calibrated_batches():
    low, high = cost.csr_seconds(2048, 2048, 200_000, 4), cost.csr_seconds(2048, 2048, 200_000, 16)
    assert cost.csr_seconds(2048, 2048, 200_000, 10) == pytest.approx((low + high) / 2)
    assert cost.csr_seconds(2048, 2048, 200_000, 32) == pytest.approx(2 * high)


def test_cost_prices_an_unmeasured_block_within_the_measured_ones():
    assert (2, 2) not in cost.BSR
    values = 16_384  # the same stored values in every block shape
    measured = [cost.bsr_seconds(512, 512, values // (r * c), (r, c), 1) for r, c in cost.BSR]
    assert min(measured) <= cost.bsr_seconds(512, 512, values // 4, (2, 2), 1) <= max(measured)
    assert cost.bsr_seconds(512, 512, 1000, (1, 1), 1) == cost.csr_seconds(512, 512, 1000, 1)
