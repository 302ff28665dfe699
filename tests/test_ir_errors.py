"""One negative test per invariant of the IR and of the TFLite raw fields, messages pinned."""

from __future__ import annotations

import numpy as np
import pytest

import sparse_import
from sparse_import import (
    DenseLimitError,
    Level,
    LevelFormat,
    LevelPart,
    Quantization,
    SparseFormatError,
    SparseTensor,
    UnsupportedSparsityError,
    from_tflite_params,
)
from sparse_import.layouts import coo_layout, csr_layout

C, S = LevelFormat.COMPRESSED, LevelFormat.SINGLETON
BLOCK, ELEMENT = LevelPart.BLOCK, LevelPart.ELEMENT


def csr(indptr, indices, values=None, shape=(3, 4), name="w"):
    if not isinstance(indices, np.ndarray):
        indices = np.asarray(indices, dtype=np.int64)
    values = np.ones(len(indices), np.float32) if values is None else values
    return SparseTensor(
        shape, csr_layout(), (None, np.asarray(indptr)), (None, indices), values, name=name
    )


# --------------------------------------------------------------------- structure (construction)
@pytest.mark.parametrize(
    ("shape", "levels", "message"),
    [
        ((3, -2), (Level(0), Level(1)), r"'w': shape\[1\] = -2 is negative"),
        ((3, 2.5), (Level(0), Level(1)), r"'w': shape\[1\] = 2.5 is not an integer"),
        (
            (3, 4),
            (Level(0), Level(2)),
            r"level 1 \(d2 : dense\) indexes dimension 2, but the "
            r"rank is 2",
        ),
        (
            (3, 4),
            (Level(0),),
            r"dimension 1 must be indexed by one whole level or one "
            r"floordiv/mod pair, found: none",
        ),
        (
            (3, 4),
            (Level(0), Level(1), Level(1)),
            r"dimension 1 must be indexed .* found: d1 : "
            r"dense, d1 : dense",
        ),
        (
            (4, 4),
            (Level(0), Level(1, part=BLOCK, block=2), Level(1, part=ELEMENT, block=4)),
            r"dimension 1 has floordiv and mod levels with different block sizes \[2, 4\]",
        ),
        (
            (4, 4),
            (Level(0), Level(1, part=BLOCK, block=3), Level(1, part=ELEMENT, block=3)),
            r"block size 3 does not divide dimension 1 of size 4",
        ),
        (
            (4, 4),
            (Level(0), Level(1, part=ELEMENT, block=2), Level(1, part=BLOCK, block=2)),
            r"dimension 1: the floordiv level must come before the mod level",
        ),
    ],
)
def test_level_map_errors(shape, levels, message):
    n = len(levels)
    with pytest.raises(SparseFormatError, match=message):
        SparseTensor(shape, levels, (None,) * n, (None,) * n, np.zeros(12, np.float32), "w")


def test_level_fields():
    with pytest.raises(ValueError, match=r"self.dim=-1 is not a non-negative int"):
        Level(-1)
    with pytest.raises(ValueError, match=r"self.block=4 must be 1 for a WHOLE level"):
        Level(0, block=4)
    with pytest.raises(ValueError, match=r"self.block=0 is not a positive int"):
        Level(0, part=BLOCK, block=0)


def test_missing_positions():
    with pytest.raises(
        SparseFormatError,
        match=r"'w': level 1 \(d1 : compressed\) needs "
        r"positions",
    ):
        SparseTensor((3, 4), csr_layout(), (None, None), (None, np.zeros(0, int)), [], "w")


def test_unexpected_coordinates():
    with pytest.raises(
        SparseFormatError,
        match=r"level 0 \(d0 : dense\) must not have "
        r"coordinates",
    ):
        SparseTensor((3, 4), csr_layout(), (None, [0, 0, 0, 0]), ([1], []), [], "w")


def test_buffer_count():
    with pytest.raises(SparseFormatError, match=r"'w': 1 positions entries for 2 levels"):
        SparseTensor((3, 4), csr_layout(), (None,), (None, []), [], "w")


def test_index_dtype():
    with pytest.raises(
        SparseFormatError,
        match=r"level 1 coordinates have dtype float64, not "
        r"an integer dtype",
    ):
        csr([0, 1, 1, 1], np.array([0.0]))


def test_buffers_are_1d():
    with pytest.raises(
        SparseFormatError,
        match=r"level 1 positions must be 1-D, got shape "
        r"\(2, 2\)",
    ):
        csr(np.zeros((2, 2), int), [0])


def test_positions_length():
    with pytest.raises(
        SparseFormatError,
        match=r"level 1 \(d1 : compressed\) has 3 positions, "
        r"expected 4 \(one more than the 3 entries",
    ):
        csr([0, 1, 1], [0])


def test_last_position_matches_coordinates():
    with pytest.raises(
        SparseFormatError,
        match=r"last position 2 does not equal the number of "
        r"coordinates 1",
    ):
        csr([0, 1, 1, 2], [0])


def test_singleton_count():
    with pytest.raises(
        SparseFormatError,
        match=r"level 1 \(d1 : singleton\) has 1 coordinates, "
        r"expected one per entry of the level above \(2\)",
    ):
        SparseTensor((3, 4), coo_layout(2), ([0, 2], None), ([0, 1], [0]), [1.0, 2.0], "w")


def test_values_length():
    with pytest.raises(SparseFormatError, match=r"'w': 3 stored values, but the levels describe 2"):
        csr([0, 1, 1, 2], [0, 3], values=np.ones(3))


def test_values_dtype():
    with pytest.raises(SparseFormatError, match=r"values dtype <U1 is not numeric"):
        csr([0, 1, 1, 1], [0], values=np.array(["a"]))


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex_values_are_unsupported(dtype):
    name = np.dtype(dtype).name
    with pytest.raises(
        UnsupportedSparsityError, match=rf"^sparse tensor 'w': {name} values are not supported"
    ):
        csr([0, 1, 1, 1], [0], values=np.ones(1, dtype))
    with pytest.raises(UnsupportedSparsityError, match=rf"'w': {name} values are not supported"):
        csr([0, 1, 1, 1], [0]).astype(dtype)


@pytest.mark.parametrize("rank", [65, 66, 128, 1000])
def test_rank_above_numpys_limit_is_unsupported(rank):
    """Shapes, dense forms and reshapes past NumPy's 64 dimensions, refused before NumPy sees
    them; rank 64 itself works."""
    message = rf"^sparse tensor 'w': rank {rank} is above the 64 dimensions NumPy supports"
    with pytest.raises(UnsupportedSparsityError, match=message):
        SparseTensor((1,) * rank, (), (), (), np.ones(1), name="w")
    with pytest.raises(UnsupportedSparsityError, match=message):
        csr([0, 1, 1, 1], [0]).reshape((1,) * (rank - 2) + (3, 4))
    t = csr([0, 1, 1, 1], [0]).reshape((1,) * 62 + (3, 4))
    assert t.rank == 64 and t.to_dense().sum() == 1


@pytest.mark.parametrize("shape", [(-3, -4), (12.0,), ("3", 4)])
def test_reshape_to_a_non_shape_is_refused(shape):
    with pytest.raises(SparseFormatError, match=r"^sparse tensor 'w': shape\[0\] = "):
        csr([0, 1, 1, 1], [0]).reshape(shape)


def test_renamed_shares_buffers_and_validation():
    t = csr([0, 1, 1, 2], [0, 3])
    t.validate()
    u = t.renamed("v")
    assert u.name == "v" and t.name == "w" and u.values is t.values
    assert u.validate() is t.validate()


def test_dense_byte_limit_is_checked_before_allocation():
    # 10^6 x 10^6 float32 would be 4 TB; refused at construction with no allocation.
    with pytest.raises(
        DenseLimitError,
        match=r"'bomb': dense form of shape \(1000000, 1000000\)"
        r" \(float32\) needs 4000000000000 bytes, over the "
        r"dense byte limit",
    ):
        SparseTensor(
            (10**6, 10**6),
            coo_layout(2),
            ([0, 1], None),
            ([5], [7]),
            np.ones(1, np.float32),
            "bomb",
        )


def test_dense_byte_limit_is_configurable():
    t = csr([0, 1, 1, 1], [0])
    with sparse_import.dense_byte_limit(16):
        with pytest.raises(
            DenseLimitError,
            match=r"'w': .* needs 48 bytes, over the dense byte "
            r"limit of 16 bytes",
        ):
            csr([0, 1, 1, 1], [0])
    with pytest.raises(DenseLimitError, match=r"needs 48 bytes, over the limit of 8 bytes"):
        t.to_dense(max_bytes=8)
    with pytest.raises(ValueError, match=r"positive int or None, got -1"):
        sparse_import.set_dense_byte_limit(-1)


def test_dense_byte_limit_from_environment(monkeypatch):
    monkeypatch.setenv("SPARSE_IMPORT_MAX_DENSE_BYTES", "32")
    with pytest.raises(DenseLimitError, match=r"over the dense byte limit of 32 bytes"):
        csr([0, 1, 1, 1], [0])
    monkeypatch.setenv("SPARSE_IMPORT_MAX_DENSE_BYTES", "lots")
    with pytest.raises(ValueError, match=r"SPARSE_IMPORT_MAX_DENSE_BYTES='lots' is not an"):
        csr([0, 1, 1, 1], [0])


# --------------------------------------------------------------------- full scan (validate)
def test_positions_start_at_zero():
    with pytest.raises(
        SparseFormatError,
        match=r"'w': level 1 \(d1 : compressed\): positions "
        r"should start with 0, got 1",
    ):
        csr([1, 1, 1, 1], [0]).validate()


def test_positions_never_decrease():
    with pytest.raises(
        SparseFormatError,
        match=r"level 1 \(d1 : compressed\): positions "
        r"decrease at 2: 2 -> 1",
    ):
        csr([0, 2, 1, 2], [0, 1]).validate()


@pytest.mark.parametrize(
    ("indices", "bad"), [([0, 4], r"coordinates\[1\] = 4"), ([-1, 2], r"coordinates\[0\] = -1")]
)
def test_coordinates_in_bounds(indices, bad):
    with pytest.raises(SparseFormatError, match=bad + r" is out of bounds \[0, 4\)"):
        csr([0, 2, 2, 2], indices).validate()


def test_coordinates_sorted():
    with pytest.raises(
        SparseFormatError,
        match=r"level 1 \(d1 : compressed\): coordinates are "
        r"not strictly increasing at position 1: 3 then 1",
    ):
        csr([0, 2, 2, 2], [3, 1]).validate()


def test_coordinates_unique():
    with pytest.raises(SparseFormatError, match=r"not strictly increasing at position 2: 2 then 2"):
        csr([0, 1, 3, 3], [0, 2, 2]).validate()


def test_coo_tuples_unique_and_sorted():
    t = SparseTensor((3, 4), coo_layout(2), ([0, 3], None), ([0, 1, 1], [2, 3, 3]), np.ones(3), "w")
    with pytest.raises(
        SparseFormatError,
        match=r"level 1 \(d1 : singleton\): coordinates are "
        r"not strictly increasing at position 2: \(1, 3\) "
        r"then \(1, 3\)",
    ):
        t.validate()
    t = SparseTensor((3, 4), coo_layout(2), ([0, 2], None), ([2, 1], [0, 0]), np.ones(2), "w")
    with pytest.raises(
        SparseFormatError,
        match=r"level 0 \(d0 : compressed\(nonunique\)\): "
        r"coordinates are not non-decreasing",
    ):
        t.validate()


def test_to_dense_validates_first():
    # an unchecked coordinate past the row would silently land in the next row
    with pytest.raises(SparseFormatError, match=r"is out of bounds"):
        csr([0, 1, 1, 1], [5]).to_dense()


def test_unordered_level_skips_order_check():
    levels = (Level(0), Level(1, C, ordered=False))
    t = SparseTensor((2, 4), levels, (None, [0, 2, 2]), (None, [3, 1]), np.array([1.0, 2.0]))
    np.testing.assert_array_equal(t.to_dense(), [[0, 2, 0, 1], [0, 0, 0, 0]])


# --------------------------------------------------------------------- other entry points
def test_quantization_shapes():
    with pytest.raises(ValueError, match=r"zero.size=2 does not match scale.size=3"):
        Quantization(np.ones(3), np.zeros(2, np.int64), axis=0)


def test_transpose_needs_permutation():
    with pytest.raises(ValueError, match=r"perm=\(0, 0\) is not a permutation of 2 dimensions"):
        csr([0, 1, 1, 1], [0]).transpose((0, 0))


def _meta(*levels):
    return [dict(m) for m in levels]


D3 = {"format": "DENSE", "dense_size": 3}
D4 = {"format": "DENSE", "dense_size": 4}


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        (
            {"traversal_order": [0, 0]},
            SparseFormatError,
            r"'w': traversal_order \[0, 0\] is not a permutation of range\(2\) \(rank 2 plus 0 "
            r"block dimensions\)",
        ),
        (
            {"traversal_order": [0, 1, 2], "block_map": [5], "dim_metadata": _meta(D3, D4, D4)},
            SparseFormatError,
            r"block_map \[5\] must name distinct dimensions in range\(2\)",
        ),
        ({"dim_metadata": _meta(D3)}, SparseFormatError, r"1 dim_metadata entries for 2 levels"),
        (
            {"dim_metadata": _meta(D3, {"format": "SPARSE_COO"})},
            SparseFormatError,
            r"dim_metadata\[1\] format 'SPARSE_COO' is not DENSE or SPARSE_CSR",
        ),
        (
            {"dim_metadata": _meta(D3, {"format": "DENSE", "dense_size": 5})},
            SparseFormatError,
            r"level 1 \(d1 : dense\): dense_size 5 disagrees with the level size 4 implied by "
            r"shape \(3, 4\)",
        ),
        (
            {
                "traversal_order": [0, 1, 2],
                "block_map": [1],
                "dim_metadata": _meta(
                    D3,
                    {"format": "SPARSE_CSR", "array_segments": [0, 0, 0, 0], "array_indices": []},
                    {"format": "SPARSE_CSR", "array_segments": [0], "array_indices": []},
                ),
            },
            UnsupportedSparsityError,
            r"levels 1 and 2 \(the blocks and the in-block part of dimension 1\) are both "
            r"SPARSE_CSR, so neither states the block size",
        ),
        (
            {
                "traversal_order": [0, 1, 2],
                "block_map": [1],
                "dim_metadata": _meta(D3, D4, {"format": "DENSE", "dense_size": 0}),
            },
            SparseFormatError,
            r"level 2: block size \(dense_size\) 0 must be positive",
        ),
        (
            {
                "traversal_order": [0, 1, 2],
                "block_map": [1],
                "dim_metadata": _meta(
                    D3, {"format": "DENSE", "dense_size": 1}, {"format": "DENSE", "dense_size": 3}
                ),
            },
            SparseFormatError,
            r"block size 3 does not divide dimension 1 of size 4",
        ),
        (
            {
                "dim_metadata": _meta(
                    D3, {"format": "SPARSE_CSR", "array_segments": [0.5], "array_indices": []}
                )
            },
            SparseFormatError,
            r"level 1 array_segments must be a 1-D integer vector, got dtype "
            r"float64",
        ),
        (
            {
                "dim_metadata": _meta(
                    D3,
                    {"format": "SPARSE_CSR", "array_segments": [0, 1, 1, 1], "array_indices": [9]},
                )
            },
            SparseFormatError,
            r"coordinates\[0\] = 9 is out of bounds \[0, 4\)",
        ),
    ],
)
def test_tflite_field_errors(fields, error, message):
    base = {
        "shape": [3, 4],
        "traversal_order": [0, 1],
        "block_map": [],
        "dim_metadata": _meta(D3, D4),
        "values": np.ones(12, np.float32),
        "name": "w",
    }
    base.update(fields)
    if base["dim_metadata"][-1]["format"] == "SPARSE_CSR" and "values" not in fields:
        base["values"] = np.ones(len(base["dim_metadata"][-1]["array_indices"]), np.float32)
    with pytest.raises(error, match=message):
        from_tflite_params(**base)


def test_model_total_is_bounded_by_the_limit():
    """The budget charges a batch all or nothing, and counts every batch of one model."""
    from sparse_import.limits import DenseBudget

    tensors = [csr([0, 1, 1, 1], [0], name=f"w{i}") for i in range(3)]  # 48 bytes dense each
    budget = DenseBudget()
    with sparse_import.dense_byte_limit(144):
        budget.charge(tensors[:2])
        budget.charge(tensors[2:])
    assert (budget.spent, budget.count) == (144, 3)
    budget = DenseBudget()
    with sparse_import.dense_byte_limit(100):
        budget.charge(tensors[:1])
        with pytest.raises(
            DenseLimitError,
            match=r"model: its 3 densified sparse tensors need 144 bytes "
            r"dense together, over the dense byte limit of "
            r"100 bytes \(largest: 'w0', 48 bytes\)",
        ):
            budget.charge(tensors[1:])
    assert (budget.spent, budget.count) == (48, 1)  # nothing charged by the refused batch
