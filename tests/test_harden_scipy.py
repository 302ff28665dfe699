"""``from_scipy`` on SciPy objects whose index arrays nobody validated, and the classes of valid
input it once refused or blew up on.

SciPy's compiled routines trust ``indptr`` and ``indices``: before ``from_scipy`` checked them
itself, a decreasing ``indptr`` crashed the interpreter. The corrupt-input families therefore run
in a child process (``python tests/test_harden_scipy.py SEED COUNT``) that prints one line per
case, so a crash is caught and names its case. Every class (csr, csc, bsr, coo, dok, lil, dia)
is tried as ``spmatrix`` and ``sparray``.
"""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from sparse_import import (
    DenseLimitError,
    LevelFormat,
    SparseFormatError,
    SparseTensor,
    UnsupportedSparsityError,
    dense_byte_limit,
    from_scipy,
)
from sparse_import.layouts import bsr_layout

FORMATS = ("csr", "csc", "bsr", "coo", "dok", "lil", "dia")
KINDS = ("array", "matrix")
BATCHES = 4  # child processes
PER_BATCH = 150  # cases in each


# ------------------------------------------------------------------------------ generators
def random_matrix(rng: np.random.Generator, fmt: str, kind: str, dtype=np.float64):
    """A valid SciPy object of class ``fmt``/``kind`` with a 4x8 or 6x8 random pattern."""
    shape = (int(rng.choice([4, 6])), 8)
    dense = rng.integers(-9, 10, size=shape) * (rng.random(shape) < 0.4)
    dense[0, 0] = 3  # at least one stored value
    cls = getattr(sp, f"{fmt}_{kind}")
    dense = dense.astype(dtype)
    return cls(dense, blocksize=(2, 4)) if fmt == "bsr" else cls(dense)


def corrupt(rng: np.random.Generator, m) -> str:
    """Break one index array of ``m`` in place, bypassing SciPy's checks; returns a fragment the
    error message must contain."""
    fmt = m.format
    if fmt in ("csr", "csc", "bsr"):
        indptr, indices = m.indptr.astype(np.int64), m.indices.astype(np.int64)
        choice = rng.integers(0, 7)
        if choice == 0 and indptr.size > 2:  # decreasing: a middle entry pushed past its successor
            i = int(rng.integers(1, indptr.size - 1))
            indptr[i] = indptr[i + 1] + int(rng.integers(1, 3))
            indptr[-1] = max(indptr[-1], 1)
            m.indptr = indptr
            return "indptr"
        if choice == 1:  # a huge or negative entry
            i = int(rng.integers(1, indptr.size))
            indptr[i] = rng.choice([-1, -(2**31), 2**31 - 1, 2**40])
            m.indptr = indptr
            return "indptr"
        if choice == 2:  # wrong length
            m.indptr = indptr[:-1] if rng.random() < 0.5 else np.append(indptr, indptr[-1])
            return "indptr has"
        if choice == 3:  # does not start at 0
            indptr[0] = int(rng.integers(1, 3))
            m.indptr = indptr
            return "indptr"
        if choice == 4 and indices.size:  # an index out of range
            i = int(rng.integers(0, indices.size))
            indices[i] = rng.choice([-1, -(2**31), 8, 2**31 - 1, 2**40])
            m.indices = indices
            return "indices["
        if choice == 5 and indices.size:  # indices shorter than data
            m.indices = indices[:-1]
            return "lengths differ"
        m.indptr = indptr.astype(np.float64)  # not an integer array
        return "indptr must be a 1-D integer array"
    if fmt == "coo":
        coords = [np.asarray(c).astype(np.int64) for c in m.coords]
        d = int(rng.integers(0, 2))
        if rng.random() < 0.6:
            coords[d][int(rng.integers(0, coords[d].size))] = rng.choice([-1, 99, 2**40])
            fragment = f"coords[{d}]["
        else:
            coords[d] = coords[d][:-1]
            fragment = "lengths differ"
        m.coords = tuple(coords)
        return fragment
    if fmt == "dok":
        key = (int(rng.choice([-1, 99, 2**40])), 0)
        m._dict[key if rng.random() < 0.5 else key[::-1]] = 1.0
        return "keys[:, "
    if fmt == "lil":
        row = int(rng.integers(0, m.shape[0]))
        if rng.random() < 0.6:
            m.rows[row] = [*m.rows[row], int(rng.choice([-1, 8, 2**40]))]
            m.data[row] = [*m.data[row], 1.0]
            return "rows (columns)"
        m.rows[row] = [*m.rows[row], 0]
        return "LIL rows and data differ in length"
    # dia: data rows that disagree with the offsets
    m.offsets = np.append(m.offsets, 0)
    return "rows of data for"


def run_batch(seed: int, count: int) -> None:
    """The child process: ``count`` corrupt inputs; prints ``ok``/``FAIL`` lines, then ``DONE``."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        fmt, kind = FORMATS[i % len(FORMATS)], KINDS[(i // len(FORMATS)) % 2]
        m = random_matrix(rng, fmt, kind)
        fragment = corrupt(rng, m)
        print(f"case {seed}/{i} {fmt}_{kind}: {fragment}", flush=True)
        try:
            from_scipy(m, name="w")
        except SparseFormatError as error:
            text = str(error)
            if not text.startswith("sparse tensor 'w': ") or fragment not in text:
                print(f"FAIL {seed}/{i}: message {text!r} lacks {fragment!r}", flush=True)
        except BaseException as error:
            print(f"FAIL {seed}/{i}: {type(error).__name__}: {error}", flush=True)
        else:
            print(f"FAIL {seed}/{i}: corrupt {fmt}_{kind} accepted", flush=True)
        if i % 3 == 0:
            _to_scipy_of_corrupt_tensor(rng, f"{seed}/{i}")
    print("DONE", flush=True)


def _to_scipy_of_corrupt_tensor(rng: np.random.Generator, case: str) -> None:
    """``to_scipy`` of an IR tensor built directly with a corrupt CSR/BSR level (construction
    checks only lengths): a SparseFormatError from the full check, before SciPy sees it."""
    block = (1, 1) if rng.random() < 0.5 else (2, 4)
    t = SparseTensor.from_dense(random_matrix(rng, "csr", "array").toarray(), bsr_layout(block))
    k = next(i for i, lvl in enumerate(t.levels) if lvl.format is LevelFormat.COMPRESSED)
    positions, coordinates = list(t.positions), list(t.coordinates)
    pos, crd = positions[k].astype(np.int64), coordinates[k].astype(np.int64)
    if rng.random() < 0.5 and pos.size > 2:
        pos[1] = pos[-1] + 1  # decreasing afterwards
    elif crd.size:
        crd[int(rng.integers(0, crd.size))] = rng.choice([-1, 2**31 - 1])
    else:
        return
    positions[k], coordinates[k] = pos, crd
    bad = SparseTensor(t.shape, t.levels, tuple(positions), tuple(coordinates), t.values, "w")
    for fmt in ("csr", "bsr", "coo"):
        try:
            bad.to_scipy(fmt, blocksize=block if fmt == "bsr" else None)
        except SparseFormatError as error:
            if not str(error).startswith("sparse tensor 'w': level"):
                print(f"FAIL {case} to_scipy: {error}", flush=True)
        except BaseException as error:
            print(f"FAIL {case} to_scipy: {type(error).__name__}: {error}", flush=True)
        else:
            print(f"FAIL {case}: to_scipy({fmt}) of a corrupt tensor accepted", flush=True)


@pytest.mark.parametrize("batch", range(BATCHES))
def test_corrupt_index_arrays_never_crash(batch):
    """Corrupt indptr/indices/coords/keys/rows/offsets end in a SparseFormatError naming the
    tensor and the array, and so does ``to_scipy`` of an IR tensor with corrupt positions or
    coordinates; in a child process, so that a crash fails the test."""
    proc = subprocess.run(
        [sys.executable, str(Path(__file__)), str(1000 + batch), str(PER_BATCH)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = proc.stdout.splitlines()
    last = lines[-2] if len(lines) > 1 else "(no case ran)"
    assert proc.returncode == 0, (
        f"child died ({proc.returncode}) after {last}: {proc.stderr[-500:]}"
    )
    assert lines and lines[-1] == "DONE", proc.stdout[-500:]
    failures = [line for line in lines if line.startswith("FAIL")]
    assert not failures, failures[:5]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", KINDS)
def test_valid_inputs_with_duplicates_and_disorder_match_scipy(fmt, kind):
    """Valid, non-canonical inputs (duplicates, unsorted indices, explicit zeros) decode to
    exactly what SciPy's ``toarray`` gives, and the input is never mutated."""
    rng = np.random.default_rng(FORMATS.index(fmt) + 10 * KINDS.index(kind))
    for _ in range(20):
        m = random_matrix(rng, fmt, kind, rng.choice([np.float32, np.int32, np.float64]))
        if fmt in ("csr", "csc", "coo"):  # shuffled and duplicated entries
            coo = sp.coo_array(m)
            order = rng.permutation(coo.nnz)
            dup = rng.integers(0, coo.nnz, size=3)
            rows = np.concatenate([coo.row[order], coo.row[dup]])
            cols = np.concatenate([coo.col[order], coo.col[dup]])
            data = np.concatenate([coo.data[order], coo.data[dup]])
            cls = getattr(sp, f"coo_{kind}")
            m = cls((data, (rows, cols)), shape=m.shape)
            m = m if fmt == "coo" else getattr(m, f"to{fmt}")(copy=True)
            if fmt != "coo":
                m.has_sorted_indices = False
        before = m.copy()
        t = from_scipy(m, name="w")
        assert t.dtype == m.dtype
        np.testing.assert_array_equal(t.to_dense(), m.toarray())
        np.testing.assert_array_equal(m.toarray(), before.toarray())


# ---------------------------------------------------------------- allocation before limits
def _peak(call) -> tuple[int, BaseException | None]:
    tracemalloc.start()
    error = None
    try:
        call()
    except SparseFormatError as exc:
        error = exc
    finally:
        top = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return top, error


@pytest.mark.parametrize("seed", range(6))
def test_huge_dok_and_dia_are_refused_from_the_shape(seed):
    """A DOK or DIA of a huge shape and a handful of values: DenseLimitError before anything of
    the dense shape's size is allocated (peak well under a megabyte)."""
    rng = np.random.default_rng(seed)
    shape = (int(2 ** rng.integers(24, 34)), int(2 ** rng.integers(24, 34)))
    dok = sp.dok_array(shape, dtype=np.float32)
    dok[int(rng.integers(0, shape[0])), int(rng.integers(0, shape[1]))] = 1.0
    dia = sp.dia_array(
        (np.ones((2, 4), np.float32), np.array([rng.integers(-(2**40), 2**40), 3])), shape=shape
    )
    for m in (dok, dia):
        top, error = _peak(lambda m=m: from_scipy(m, name="big"))
        assert isinstance(error, DenseLimitError), error
        assert str(error).startswith(f"sparse tensor 'big': dense form of shape {shape}")
        assert top < 256 * 1024, top


@pytest.mark.parametrize("seed", range(6))
def test_dok_and_dia_under_the_limit_allocate_only_their_entries(seed):
    """With a limit that admits the shape, DOK and DIA still allocate nothing proportional to it
    (no row pointer over 2**22 rows); huge DIA offsets select no entry; values are exact."""
    rng = np.random.default_rng(seed)
    shape = (2**22, 2**22)
    rows, cols = rng.integers(0, 2**22, size=(2, 5))
    dok = sp.dok_array(shape, dtype=np.float64)
    for i, (r, c) in enumerate(zip(rows, cols, strict=True)):
        dok[int(r), int(c)] = float(i + 1)
    offsets = np.array([0, int(rng.integers(2**23, 2**40)), -int(rng.integers(2**23, 2**40))])
    dia = sp.dia_array((rng.random((3, 16)) + 1, offsets), shape=shape)
    with dense_byte_limit(2**50):
        for m in (dok, dia):
            top, error = _peak(lambda m=m: from_scipy(m, name="w"))
            assert error is None, error
            assert top < 1024 * 1024, top
        t = from_scipy(dok, name="w")
        coords, values = t.coo()
        expected = {(int(r), int(c)): v for (r, c), v in dok.items()}
        assert {tuple(map(int, c)): v for c, v in zip(coords, values, strict=True)} == expected
        d = from_scipy(dia, name="w")
        coords, values = d.coo()
        assert (coords[:, 0] == coords[:, 1]).all() and d.nnz == 16  # only the main diagonal
        np.testing.assert_array_equal(values, dia.data[0])


def _dia_oracle(data: np.ndarray, offsets: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """SciPy's definition, element by element: ``data[k, j]`` sits at ``(j - offsets[k], j)``."""
    out = np.zeros(shape, data.dtype)
    for k, offset in enumerate(offsets.tolist()):
        for j in range(min(data.shape[1], shape[1])):
            if 0 <= j - offset < shape[0]:
                out[j - offset, j] += data[k, j]
    return out


@pytest.mark.parametrize("seed", range(12))
def test_dia_with_any_offsets_matches_the_definition(seed):
    """DIA with offsets inside, at the edge of and far outside the shape (SciPy's constructor
    would wrap those to int32, so they are set afterwards), data rows longer or shorter than the
    columns, repeated offsets and explicit zeros: exactly the definition's dense form."""
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 9)), int(rng.integers(1, 9)))
    n = int(rng.integers(1, 6))
    offsets = rng.choice([-(2**62), -(2**40), -9, -3, -1, 0, 0, 1, 2, 7, 2**40, 2**62], size=n)
    data = rng.integers(-3, 4, size=(n, int(rng.integers(0, 12)))).astype(np.float32)
    for kind in KINDS:
        m = getattr(sp, f"dia_{kind}")((data, np.arange(n)), shape=shape)
        m.offsets = offsets
        np.testing.assert_array_equal(
            from_scipy(m, name="w").to_dense(), _dia_oracle(data, offsets, shape)
        )


# --------------------------------------------------------------------- documented refusals
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex_values_are_unsupported(fmt, dtype):
    m = random_matrix(np.random.default_rng(0), fmt, "array", dtype)
    name = np.dtype(dtype).name
    with pytest.raises(
        UnsupportedSparsityError, match=rf"^sparse tensor 'w': {name} values are not supported"
    ):
        from_scipy(m, name="w")


@pytest.mark.parametrize("rank", [65, 70, 200])
def test_reshape_past_numpys_rank_is_unsupported(rank):
    t = from_scipy(sp.csr_array(np.eye(4)), name="w")
    with pytest.raises(
        UnsupportedSparsityError,
        match=rf"^sparse tensor 'w': rank {rank} is above the 64 dimensions NumPy supports",
    ):
        t.reshape((1,) * (rank - 1) + (16,))


# ------------------------------------------------------------------------- 1-D arrays
@pytest.mark.parametrize("fmt", ["csr", "coo", "dok"])
@pytest.mark.parametrize("seed", range(8))
def test_one_dimensional_arrays_import_as_rank_1(fmt, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    dense = rng.integers(-5, 6, size=n) * (rng.random(n) < 0.3)
    m = getattr(sp, f"{fmt}_array")(dense.astype(np.float32))
    t = from_scipy(m, name="v")
    assert t.rank == 1 and t.shape == (n,) and t.layout == "(d0 : compressed)"
    np.testing.assert_array_equal(t.to_dense(), dense.astype(np.float32))


def test_one_dimensional_csr_with_a_bad_indptr_is_refused():
    m = sp.csr_array(np.array([0, 1.0, 0, 2.0]))
    m.indptr = np.array([0, 5])
    with pytest.raises(SparseFormatError, match=r"^sparse tensor 'v': indptr ends at 5, past"):
        from_scipy(m, name="v")


if __name__ == "__main__":
    run_batch(int(sys.argv[1]), int(sys.argv[2]))
