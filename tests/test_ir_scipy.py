"""SciPy <-> IR against SciPy's own dense oracle, for every sparse class."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from sparse_import import SparseTensor, from_scipy
from sparse_import.layouts import bsr_layout, coo_layout, csc_layout, csr_layout, dense_layout

FORMATS = ["csr", "csc", "bsr", "coo", "dia", "lil", "dok"]
KINDS = {"array": sp.random_array, "matrix": sp.random}
DTYPES = [np.float32, np.float64, np.int8, np.uint8, np.int32, np.int64, np.bool_]


def _random(kind: str, fmt: str, shape, density, dtype, seed) -> object:
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=shape) * 10
    dense[rng.random(shape) > density] = 0
    dense = dense.astype(dtype)
    cls = getattr(sp, f"{fmt}_{kind}")
    if fmt == "bsr":
        return cls(dense, blocksize=(2, 4))
    return cls(dense)


@pytest.mark.parametrize("kind", ["array", "matrix"])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_every_class_densifies_exactly(kind, fmt, dtype):
    m = _random(kind, fmt, (6, 8), 0.3, dtype, seed=FORMATS.index(fmt))
    t = from_scipy(m, name="w")
    dense = t.to_dense()
    assert dense.dtype == m.dtype
    np.testing.assert_array_equal(dense, m.toarray())


@pytest.mark.parametrize("fmt", ["csr", "csc", "bsr", "coo"])
def test_layout_is_kept(fmt):
    m = _random("array", fmt, (4, 8), 0.5, np.float32, seed=1)
    expected = {
        "csr": csr_layout(),
        "csc": csc_layout(),
        "bsr": bsr_layout((2, 4)),
        "coo": coo_layout(2),
    }[fmt]
    assert from_scipy(m).levels == expected


def test_duplicates_summed_and_unsorted_handled():
    row = np.array([2, 0, 2, 1, 0])
    col = np.array([1, 3, 1, 0, 3])
    data = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    coo = sp.coo_array((data, (row, col)), shape=(3, 4))
    csr = sp.csr_array((data[[1, 0, 2]], np.array([3, 1, 1]), np.array([0, 1, 1, 3])), shape=(3, 4))
    for m in (coo, csr, coo.tocsc()):
        before = m.copy()
        np.testing.assert_array_equal(from_scipy(m).to_dense(), m.toarray())
        # the input is never mutated
        np.testing.assert_array_equal(m.toarray(), before.toarray())
        assert m.nnz == before.nnz


def test_explicit_zeros_are_kept():
    m = sp.csr_array((np.array([0.0, 2.0]), np.array([0, 2]), np.array([0, 2, 2])), shape=(2, 3))
    t = from_scipy(m)
    assert t.nnz == 2
    assert t.values.tolist() == [0.0, 2.0]


@pytest.mark.parametrize("shape", [(0, 0), (0, 5), (5, 0), (3, 4)])
def test_empty(shape):
    m = sp.csr_array(shape, dtype=np.float32)
    t = from_scipy(m)
    assert t.nnz == 0 and t.density == (0.0 if np.prod(shape) else 1.0)
    np.testing.assert_array_equal(t.to_dense(), np.zeros(shape, np.float32))


@pytest.mark.parametrize("src", ["csr", "csc", "bsr", "coo", "dia"])
@pytest.mark.parametrize("dst", ["csr", "csc", "coo", "bsr"])
def test_to_scipy_round_trip(src, dst):
    m = _random("array", src, (8, 12), 0.3, np.float32, seed=7)
    out = from_scipy(m).to_scipy(dst, blocksize=(2, 4) if dst == "bsr" else None)
    assert out.format == dst
    np.testing.assert_array_equal(out.toarray(), m.toarray())


def test_to_scipy_keeps_own_arrays_for_matching_layout():
    m = _random("array", "bsr", (8, 12), 0.3, np.float32, seed=3)
    t = from_scipy(m)
    out = t.to_scipy("bsr")
    assert out.blocksize == (2, 4)
    assert np.shares_memory(out.data, t.values)


def test_to_scipy_of_other_layouts():
    dense = np.arange(24, dtype=np.float32).reshape(4, 6) % 5
    t = SparseTensor.from_dense(dense, csc_layout())
    np.testing.assert_array_equal(t.to_scipy("csr").toarray(), dense)
    np.testing.assert_array_equal(t.to_scipy("bsr", blocksize=(2, 3)).toarray(), dense)


def test_to_scipy_rejects_bad_requests():
    t = SparseTensor.from_dense(np.ones((4, 6)), csr_layout(), name="w")
    with pytest.raises(ValueError, match=r"unknown SciPy format 'xyz'"):
        t.to_scipy("xyz")
    with pytest.raises(ValueError, match=r"sparse tensor 'w': block \(4, 4\) does not divide"):
        t.to_scipy("bsr", blocksize=(4, 4))
    t3 = SparseTensor.from_dense(np.ones((2, 2, 2)), coo_layout(3), name="t3")
    with pytest.raises(ValueError, match=r"'t3': to_scipy needs rank 2"):
        t3.to_scipy()
    half = SparseTensor.from_dense(np.ones((2, 2), np.float16), csr_layout(), name="h")
    with pytest.raises(ValueError, match=r"'h': SciPy sparse arrays cannot hold float16"):
        half.to_scipy()
    np.testing.assert_array_equal(half.astype(np.float32).to_scipy().toarray(), np.ones((2, 2)))
    with pytest.raises(TypeError, match="expects a SciPy sparse"):
        from_scipy(np.ones((2, 2)))


def test_large_conversion(rng):
    # Timing targets live in benchmarks/; this checks the same conversion for correctness.
    m = sp.random_array((2048, 2048), density=0.1, format="csr", rng=rng, dtype=np.float32)
    np.testing.assert_array_equal(from_scipy(m).to_dense(), m.toarray())


@pytest.mark.parametrize("block", [(1, 4), (4, 1), (2, 4), (1, 1)])
def test_bsr_layout_is_canonical_and_round_trips(block):
    m = _random("array", "bsr", (8, 12), 0.4, np.float32, seed=5).tobsr(blocksize=block)
    t = from_scipy(m)
    assert t.levels == bsr_layout(block)
    assert len(t.levels) == 2 + (block[0] > 1) + (block[1] > 1)
    out = t.to_scipy("bsr")
    assert out.blocksize == block and np.shares_memory(out.data, t.values)
    np.testing.assert_array_equal(out.toarray(), m.toarray())


def test_trivial_block_splits_match_canonical_layouts():
    from sparse_import import Level, LevelFormat, LevelPart

    dense = np.arange(24, dtype=np.float32).reshape(4, 6) % 4
    # d0 split by 1 (as TFLite may write a block map of [0, 1] with sizes 1 and 3)
    spelled = (
        Level(0, LevelFormat.DENSE, LevelPart.BLOCK, 1),
        Level(0, LevelFormat.DENSE, LevelPart.ELEMENT, 1),
        Level(1, LevelFormat.COMPRESSED, LevelPart.BLOCK, 3),
        Level(1, LevelFormat.DENSE, LevelPart.ELEMENT, 3),
    )
    t = SparseTensor.from_dense(dense, spelled)
    assert t.is_layout(bsr_layout((1, 3)))
    out = t.to_scipy("bsr")
    assert out.blocksize == (1, 3) and np.shares_memory(out.data, t.values)
    np.testing.assert_array_equal(out.toarray(), dense)


def test_index_widths_name_each_stored_index_buffer():
    t = from_scipy(_random("array", "csr", (6, 8), 0.5, np.float32, seed=2))
    assert t.index_widths == f"d1: {t.positions[1].dtype}/{t.coordinates[1].dtype}"
    coo = from_scipy(_random("array", "coo", (6, 8), 0.5, np.float32, seed=2))
    assert (
        coo.index_widths == f"d0: {coo.positions[0].dtype}/{coo.coordinates[0].dtype}, "
        f"d1: {coo.coordinates[1].dtype}"
    )
    dense = SparseTensor.from_dense(np.ones((2, 2)), dense_layout(2))
    assert dense.index_widths == ""
