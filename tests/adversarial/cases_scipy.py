"""Replay cases for ``from_scipy``: index arrays nobody validated (once a SIGSEGV inside SciPy),
conversions that allocated the dense shape before the limit, complex values and ranks past 64,
and 1-D sparse arrays that were refused."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np

from .contract import expect_error


def _sp():
    import scipy.sparse

    return scipy.sparse


def _from_scipy(m, name: str):
    from sparse_import import from_scipy

    return from_scipy(m, name=name)


def _errors():
    from sparse_import import DenseLimitError, SparseFormatError, UnsupportedSparsityError

    return SparseFormatError, DenseLimitError, UnsupportedSparsityError


def _matrix(fmt: str, kind: str = "array", shape=(6, 8), seed: int = 0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    dense = (rng.integers(-9, 10, size=shape) * (rng.random(shape) < 0.4)).astype(dtype)
    dense[0, 0] = 1
    cls = getattr(_sp(), f"{fmt}_{kind}")
    return cls(dense, blocksize=(2, 4)) if fmt == "bsr" else cls(dense)


def _bad(m, name: str, *fragments: str) -> None:
    bad_format = _errors()[0]
    with expect_error(bad_format, f"sparse tensor '{name}'", *fragments):
        _from_scipy(m, name)


# --------------------------------------------------------------- unvalidated index arrays
def case_csr_decreasing_indptr(tmp: Path) -> None:
    m = _sp().csr_array((np.ones(3), np.array([0, 1, 2]), np.array([0, 3, 1, 3])), shape=(3, 3))
    _bad(m, "fc1.weight", "indptr decreases at 2: 3 -> 1")


def case_csr_matrix_indptr_of_two_to_the_forty(tmp: Path) -> None:
    m = _matrix("csr", "matrix")
    indptr = m.indptr.astype(np.int64)
    indptr[2] = 2**40
    m.indptr = indptr
    _bad(m, "enc.w", "indptr[2] = 1099511627776")


def case_csc_index_out_of_range(tmp: Path) -> None:
    m = _matrix("csc", seed=1)
    indices = m.indices.copy()
    indices[-1] = 2**31 - 1
    m.indices = indices
    _bad(m, "proj", f"indices[{indices.size - 1}] = 2147483647 is out of bounds [0, 6)")


def case_bsr_matrix_decreasing_indptr(tmp: Path) -> None:
    m = _matrix("bsr", "matrix", shape=(8, 8), seed=2)
    m.indptr = np.array([0, 2, 1, 2, 2])
    _bad(m, "block.w", "indptr decreases at 2: 2 -> 1")


def case_coo_negative_row(tmp: Path) -> None:
    m = _matrix("coo", seed=3)
    rows = m.coords[0].copy()
    rows[0] = -7
    m.coords = (rows, m.coords[1])
    _bad(m, "coo.w", "coords[0][0] = -7 is out of bounds [0, 6)")


def case_csr_indptr_not_starting_at_zero(tmp: Path) -> None:
    m = _matrix("csr", "matrix", seed=4)
    m.indptr = m.indptr + 1
    _bad(m, "starts", "indptr should start with 0, got 1")


def case_csr_indices_shorter_than_data(tmp: Path) -> None:
    m = _matrix("csr", seed=5)
    m.indices = m.indices[:-2]
    _bad(m, "short", "lengths differ")


def case_lil_column_out_of_range(tmp: Path) -> None:
    m = _matrix("lil", "matrix", seed=6)
    m.rows[3] = [*m.rows[3], 99]
    m.data[3] = [*m.data[3], 5.0]
    _bad(m, "lil.w", "rows (columns)", "= 99 is out of bounds [0, 8)")


def case_dok_key_out_of_range(tmp: Path) -> None:
    m = _matrix("dok", seed=7)
    m._dict[(2, 2**40)] = 1.0
    _bad(m, "dok.w", "keys[:, 1]", "1099511627776 is out of bounds [0, 8)")


def case_dia_offsets_and_data_disagree(tmp: Path) -> None:
    m = _matrix("dia", seed=8)
    m.offsets = np.append(m.offsets, 100)
    _bad(m, "dia.w", "rows of data for")


# ----------------------------------------------------------------- allocation before limits
def _peak(call) -> tuple[int, BaseException | None]:
    tracemalloc.start()
    error = None
    try:
        call()
    except Exception as exc:  # the case checks the error
        error = exc
    finally:
        top = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return top, error


def _refused_small(m, name: str, shape) -> None:
    _, dense_limit, _ = _errors()
    top, error = _peak(lambda: _from_scipy(m, name))
    if not isinstance(error, dense_limit) or f"sparse tensor '{name}'" not in str(error):
        raise AssertionError(f"expected DenseLimitError naming {name!r}, got {error!r}")
    if str(shape) not in str(error):
        raise AssertionError(f"the message does not give the shape {shape}: {error}")
    if top > 256 * 1024:
        raise AssertionError(f"{top} bytes allocated before the refusal")


def case_dok_one_value_in_a_huge_shape(tmp: Path) -> None:
    m = _sp().dok_array((2**31, 2**31), dtype=np.float32)
    m[5, 7] = 1.0
    _refused_small(m, "huge.dok", (2**31, 2**31))


def case_dok_matrix_huge_shape(tmp: Path) -> None:
    m = _sp().dok_matrix((2**33, 3), dtype=np.float64)
    m[2**32, 1] = 2.0
    _refused_small(m, "tall.dok", (2**33, 3))


def case_dia_huge_shape_and_offsets(tmp: Path) -> None:
    m = _sp().dia_array((np.ones((1, 10)), np.array([0])), shape=(10, 2**40))
    m.offsets = np.array([2**40])
    _refused_small(m, "wide.dia", (10, 2**40))


def case_coo_huge_shape(tmp: Path) -> None:
    m = _sp().coo_array((np.ones(1), (np.array([3]), np.array([4]))), shape=(2**30, 2**30))
    _refused_small(m, "huge.coo", (2**30, 2**30))


def case_dok_under_a_raised_limit_stays_small(tmp: Path) -> None:
    from sparse_import import dense_byte_limit

    shape = (2**24, 2**24)
    m = _sp().dok_array(shape, dtype=np.float64)
    entries = {(2**24 - 1, 0): 1.5, (3, 2**23): -2.0, (0, 0): 4.0}
    for key, value in entries.items():
        m[key] = value
    with dense_byte_limit(2**60):
        top, error = _peak(lambda: _from_scipy(m, "big.dok"))
        if error is not None:
            raise AssertionError(f"valid DOK refused: {error!r}")
        if top > 1 << 20:
            raise AssertionError(f"{top} bytes allocated for 3 values (no row pointer expected)")
        coords, values = _from_scipy(m, "big.dok").coo()
    got = {tuple(int(c) for c in row): float(v) for row, v in zip(coords, values, strict=True)}
    if got != entries:
        raise AssertionError(f"wrong entries {got}, expected {entries}")


def case_dia_far_offsets_select_nothing(tmp: Path) -> None:
    from sparse_import import dense_byte_limit

    data = np.arange(1, 49, dtype=np.float32).reshape(3, 16)
    m = _sp().dia_array((data, np.array([0, 1, 2])), shape=(2**22, 2**22))
    m.offsets = np.array([0, 2**45, -(2**45)])  # set after SciPy's int32 cast
    with dense_byte_limit(2**60):
        top, error = _peak(lambda: _from_scipy(m, "band"))
        if error is not None or top > 1 << 20:
            raise AssertionError(f"error {error!r}, peak {top} bytes")
        coords, values = _from_scipy(m, "band").coo()
    if not (coords[:, 0] == coords[:, 1]).all() or values.tolist() != data[0].tolist():
        raise AssertionError(f"expected the main diagonal only, got {coords[:4]} {values[:4]}")


# --------------------------------------------------------------- complex values, ranks > 64
def case_complex64_csr(tmp: Path) -> None:
    m = _sp().csr_array(np.array([[0, 1j], [2, 0]], np.complex64))
    with expect_error(_errors()[2], "sparse tensor 'cplx'", "complex64 values are not supported"):
        _from_scipy(m, "cplx")


def case_complex128_coo_matrix(tmp: Path) -> None:
    m = _sp().coo_matrix(np.array([[0, 1 + 2j], [3, 0]]))
    with expect_error(_errors()[2], "sparse tensor 'z'", "complex128 values are not supported"):
        _from_scipy(m, "z")


def case_complex_dok(tmp: Path) -> None:
    m = _matrix("dok", seed=9, dtype=np.complex64)
    with expect_error(_errors()[2], "sparse tensor 'zd'", "complex64"):
        _from_scipy(m, "zd")


def case_reshape_to_rank_70(tmp: Path) -> None:
    t = _from_scipy(_sp().csr_array(np.eye(4)), "eye")
    with expect_error(_errors()[2], "sparse tensor 'eye'", "rank 70 is above the 64 dimensions"):
        t.reshape((1,) * 69 + (16,))


def case_reshape_to_rank_64_works(tmp: Path) -> None:
    dense = np.arange(16.0).reshape(4, 4) * (np.arange(16).reshape(4, 4) % 3 == 0)
    t = _from_scipy(_sp().csr_array(dense), "r64").reshape((1,) * 63 + (16,))
    if not np.array_equal(t.to_dense(), dense.reshape((1,) * 63 + (16,))):
        raise AssertionError("rank-64 reshape decodes wrongly")


# ------------------------------------------------------------------------------ 1-D arrays
def _one_d(fmt: str, name: str, dense: np.ndarray) -> None:
    t = _from_scipy(getattr(_sp(), f"{fmt}_array")(dense), name)
    if t.shape != dense.shape or t.layout != "(d0 : compressed)":
        raise AssertionError(f"{fmt}: shape {t.shape}, layout {t.layout}")
    if not np.array_equal(t.to_dense(), dense):
        raise AssertionError(f"{fmt}: wrong values {t.to_dense()} for {dense}")


def case_one_dimensional_csr_array(tmp: Path) -> None:
    _one_d("csr", "bias", np.array([0, 1.5, 0, 0, -2, 0, 7], np.float32))


def case_one_dimensional_coo_array(tmp: Path) -> None:
    _one_d("coo", "mask", np.array([3, 0, 0, 0, 0, 0, 0, 0, 1], np.int32))


def case_one_dimensional_dok_array(tmp: Path) -> None:
    _one_d("dok", "scale", np.array([0, 0, 0.25, 0], np.float64))


def case_one_dimensional_csr_with_duplicates(tmp: Path) -> None:
    m = _sp().csr_array(
        (np.array([1.0, 2.0, 4.0]), np.array([3, 0, 3]), np.array([0, 3])), shape=(5,)
    )
    t = _from_scipy(m, "dup")
    if t.to_dense().tolist() != [2.0, 0.0, 0.0, 5.0, 0.0]:
        raise AssertionError(f"duplicates not summed: {t.to_dense()}")


def case_one_dimensional_csr_bad_indptr(tmp: Path) -> None:
    m = _sp().csr_array(np.array([0, 1.0, 0, 2.0]))
    m.indptr = np.array([0, 5])
    _bad(m, "v", "indptr ends at 5, past the 2 stored")
