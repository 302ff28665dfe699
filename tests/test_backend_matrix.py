"""Backend helpers without a TVM build: IR reshape, tile counts, operands, the cost model."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from sparse_import import SparseTensor, from_scipy
from sparse_import.layouts import bsr_layout, csc_layout, csr_layout
from sparse_import.levels import Level, LevelFormat
from sparse_import.planning import cost, matrix, roofline
from sparse_import.relay_backend.kernels import SparseOperand


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


def _operand_matrix(operand: SparseOperand) -> np.ndarray:
    arrays = (operand.data, operand.indices, operand.indptr)
    return sp.csr_array(arrays, shape=operand.shape).toarray()


@pytest.mark.parametrize("seed", range(8))
def test_operand_pads_long_csr_rows_to_whole_vectors(seed):
    """Rows of ~100 values (with some empty rows) get zeros up to a multiple of the host's
    lanes at their last column; the matrix is unchanged, indices stay sorted per row."""
    rng = np.random.default_rng(seed)
    dense = _dense(rng, (40, 1000), 0.1)
    dense[rng.choice(40, 5, replace=False)] = 0
    csr = sp.csr_array(dense)
    operand = SparseOperand.from_scipy(csr)
    lengths = np.diff(operand.indptr)
    assert operand.data.size > csr.nnz and np.all(lengths % roofline.lanes(4) == 0)
    np.testing.assert_array_equal(_operand_matrix(operand), dense)
    for row in range(40):
        assert np.all(np.diff(operand.indices[operand.indptr[row] : operand.indptr[row + 1]]) >= 0)


def test_operand_keeps_short_rows_and_unpadded_requests(rng):
    """Rows of ~3 values would need several times their size in zeros: kept as they are."""
    csr = sp.csr_array(_dense(rng, (40, 30), 0.1))
    for operand in (SparseOperand.from_scipy(csr), SparseOperand.from_scipy(csr, pad_rows=False)):
        np.testing.assert_array_equal(operand.data, csr.data)
        np.testing.assert_array_equal(operand.indptr, csr.indptr)
    long_rows = sp.csr_array(_dense(rng, (8, 1000), 0.1))
    unpadded = SparseOperand.from_scipy(long_rows, pad_rows=False)
    np.testing.assert_array_equal(unpadded.data, long_rows.data)


# ------------------------------------------------------------------ cost model
def test_cost_grows_with_batch_and_entries():
    for batch in (1, 2, 4, 9, 16, 64):
        assert cost.dense_seconds(1024, 1024, batch) < cost.dense_seconds(1024, 1024, batch + 1)
        assert cost.csr_seconds(1024, 1024, 50_000, batch) < cost.csr_seconds(
            1024, 1024, 100_000, batch
        )


def test_cost_interpolates_tvm_kernels_between_calibrated_batches():
    def lhs(batch):
        return cost.csr_seconds(2048, 2048, 200_000, batch, sparse_lhs=True)

    assert lhs(10) == pytest.approx((lhs(4) + lhs(16)) / 2)
    assert lhs(32) == pytest.approx(2 * lhs(16))


def test_cost_prices_our_kernels_by_their_work():
    """CSR is BSR with 1x1 blocks; at batch 1 a column of 16 rows (one vector times one
    broadcast input) beats the same values in CSR (gathered one by one); a sparse weight at
    5% beats dense, a full one does not."""
    values = 16_384
    assert cost.bsr_seconds(512, 512, 1000, (1, 1), 1) == cost.csr_seconds(512, 512, 1000, 1)
    for batch in (1, 16):
        column = cost.bsr_seconds(2048, 2048, values // 16, (16, 1), batch)
        assert column < cost.csr_seconds(2048, 2048, values, batch)
        assert cost.csr_seconds(2048, 2048, 2048 * 2048 // 20, batch) < cost.dense_seconds(
            2048, 2048, batch
        )
        assert cost.csr_seconds(2048, 2048, 2048 * 2048, batch) > cost.dense_seconds(
            2048, 2048, batch
        )
