"""SciPy sparse matrices and arrays <-> the IR.

SciPy's compiled routines (``sort_indices``, ``sum_duplicates``, ``tocsr``, ``check_format``)
trust ``indptr`` and ``indices``: a decreasing ``indptr`` or an index out of range makes them
read and write out of bounds and crash the interpreter. :func:`from_scipy` therefore runs no
SciPy routine on its input. It reads the input's arrays, checks the dense byte limit from the
shape first, then the structure in O(1) (ranks, dtypes, lengths) and every index in O(nnz) with
vectorized NumPy, and canonicalizes on its own copies (entries sorted, duplicates summed,
explicit zeros kept, as SciPy defines it).

CSR, CSC, BSR and COO keep their layout (a 1-D CSR or COO array becomes one compressed level);
LIL becomes CSR; DOK and DIA become sorted COO, so that nothing proportional to the dense shape
is allocated for them.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import numpy as np

from sparse_import import _checks
from sparse_import._codec import index_dtype
from sparse_import._to_scipy import to_scipy  # noqa: F401  (the inverse, re-exported)
from sparse_import.errors import SparseFormatError, UnsupportedModelError, tensor_label
from sparse_import.layouts import bsr_layout, coo_layout, csc_layout, csr_layout
from sparse_import.levels import LevelFormat
from sparse_import.limits import get_dense_byte_limit
from sparse_import.tensor import SparseTensor

COMPRESSED = LevelFormat.COMPRESSED
_CONVERSION_ERRORS = (TypeError, ValueError, OverflowError)


def _scipy():
    import scipy.sparse

    return scipy.sparse


# ------------------------------------------------------------------------------- checks
def _index_array(array: Any, what: str, label: str) -> np.ndarray:
    """``array`` as a 1-D integer ndarray (no copy), or a SparseFormatError."""
    try:
        out = np.asarray(array)
    except _CONVERSION_ERRORS:
        raise SparseFormatError(f"{label}: {what} is not an array") from None
    if out.ndim != 1 or out.dtype.kind not in "iu":
        raise SparseFormatError(
            f"{label}: {what} must be a 1-D integer array, got dtype {out.dtype} shape {out.shape}"
        )
    return out


def _value_array(array: Any, ndim: int, label: str) -> np.ndarray:
    try:
        out = np.asarray(array)
    except _CONVERSION_ERRORS:
        raise SparseFormatError(f"{label}: data is not an array") from None
    if out.ndim != ndim:
        raise SparseFormatError(f"{label}: data must have {ndim} dimensions, got {out.shape}")
    _checks.check_values_dtype(out.dtype, label)
    return out


def _check_in_range(indices: np.ndarray, size: int, what: str, label: str) -> None:
    """Every entry of ``indices`` lies in ``[0, size)`` (O(n), vectorized)."""
    if indices.size and (indices.min() < 0 or indices.max() >= size):
        bad = int(np.flatnonzero((indices < 0) | (indices >= size))[0])
        raise SparseFormatError(
            f"{label}: {what}[{bad}] = {indices[bad]} is out of bounds [0, {size})"
        )


def _check_indptr(indptr: np.ndarray, segments: int, stored: int, label: str) -> int:
    """A CSR/CSC/BSR index pointer: ``segments + 1`` entries, from 0, never decreasing, its
    last entry at most the ``stored`` indices; returns that last entry (the nnz)."""
    if indptr.shape[0] != segments + 1:
        raise SparseFormatError(
            f"{label}: indptr has {indptr.shape[0]} entries, expected {segments + 1} (one more "
            f"than the {segments} rows, columns or block rows it indexes)"
        )
    if int(indptr[0]) != 0:
        raise SparseFormatError(f"{label}: indptr should start with 0, got {indptr[0]}")
    nnz = int(indptr[-1])
    if nnz > stored:
        raise SparseFormatError(
            f"{label}: indptr ends at {nnz}, past the {stored} stored indices and values"
        )
    # Bounded by [0, nnz] first, so the int64 steps below cannot wrap around.
    _check_in_range(indptr, nnz + 1, "indptr", label)
    steps = np.diff(indptr.astype(np.int64))
    if steps.size and steps.min() < 0:
        bad = int(np.flatnonzero(steps < 0)[0])
        raise SparseFormatError(
            f"{label}: indptr decreases at {bad + 1}: {indptr[bad]} -> {indptr[bad + 1]}"
        )
    return nnz


def _same_length(arrays: dict[str, np.ndarray], label: str) -> int:
    lengths = {what: a.shape[0] for what, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{what} {n}" for what, n in lengths.items())
        raise SparseFormatError(f"{label}: lengths differ: {shown}")
    return next(iter(lengths.values()))


# ------------------------------------------------------------------------- canonical form
def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _sorted_summed(keys: list[np.ndarray], data: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Entries sorted by ``keys`` (the first key outermost), duplicates summed; new arrays."""
    if data.shape[0] == 0:
        return [np.array(k, dtype=np.int64) for k in keys], data.copy()
    keys = [k.astype(np.int64) for k in keys]
    order = np.lexsort(keys[::-1])
    keys = [k[order] for k in keys]
    data = data[order]
    first = np.ones(data.shape[0], dtype=bool)
    same = np.ones(data.shape[0] - 1, dtype=bool)
    for k in keys:
        same &= k[1:] == k[:-1]
    first[1:] = ~same
    if not first.all():
        starts = np.flatnonzero(first)
        data = np.add.reduceat(data, starts, axis=0).astype(data.dtype, copy=False)
        keys = [k[starts] for k in keys]
    return keys, data


def _narrow(array: np.ndarray, largest: int) -> np.ndarray:
    return _readonly(array.astype(index_dtype(largest), copy=False))


def _compressed(
    shape: tuple[int, ...], major_dim: int, major: np.ndarray, minor: np.ndarray, data: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted, summed entries as (positions, coordinates, values) of a compressed level."""
    (major, minor), data = _sorted_summed([major, minor], data)
    counts = np.bincount(major, minlength=shape[major_dim])
    indptr = np.concatenate(([0], np.cumsum(counts)))
    largest = max(data.shape[0], *shape)
    return _narrow(indptr, largest), _narrow(minor, largest), _readonly(data)


def _coo_tensor(
    shape: tuple[int, ...], coords: list[np.ndarray], data: np.ndarray, name: str | None
) -> SparseTensor:
    coords, data = _sorted_summed(coords, data)
    largest = max(data.shape[0], *shape)
    positions = (_narrow(np.array([0, data.shape[0]]), largest),) + (None,) * (len(shape) - 1)
    coordinates = tuple(_narrow(c, largest) for c in coords)
    levels = coo_layout(len(shape))
    return SparseTensor(shape, levels, positions, coordinates, _readonly(data), name)


# ------------------------------------------------------------------------------ readers
def _read_compressed(m: Any, shape: tuple[int, ...], name: str | None, label: str) -> SparseTensor:
    indptr = _index_array(m.indptr, "indptr", label)
    indices = _index_array(m.indices, "indices", label)
    data = _value_array(m.data, 1, label)
    stored = _same_length({"indices": indices, "data": data}, label)
    if len(shape) == 1:  # a 1-D CSR array: one segment over the only dimension
        nnz = _check_indptr(indptr, 1, stored, label)
        _check_in_range(indices[:nnz], shape[0], "indices", label)
        return _coo_tensor(shape, [indices[:nnz]], data[:nnz], name)
    major_dim = 0 if m.format == "csr" else 1
    nnz = _check_indptr(indptr, shape[major_dim], stored, label)
    indices, data = indices[:nnz], data[:nnz]
    _check_in_range(indices, shape[1 - major_dim], "indices", label)
    major = np.repeat(np.arange(shape[major_dim]), np.diff(indptr.astype(np.int64)))
    positions, coordinates, values = _compressed(shape, major_dim, major, indices, data)
    levels = csr_layout() if major_dim == 0 else csc_layout()
    return SparseTensor(shape, levels, (None, positions), (None, coordinates), values, name)


def _read_bsr(m: Any, shape: tuple[int, ...], name: str | None, label: str) -> SparseTensor:
    indptr = _index_array(m.indptr, "indptr", label)
    indices = _index_array(m.indices, "indices", label)
    data = _value_array(m.data, 3, label)
    r, c = data.shape[1:]
    if r < 1 or c < 1 or shape[0] % r or shape[1] % c:
        raise SparseFormatError(f"{label}: blocks of {(r, c)} do not tile the shape {shape}")
    stored = _same_length({"indices": indices, "data": data}, label)
    block_shape = (shape[0] // r, shape[1] // c)
    nnz = _check_indptr(indptr, block_shape[0], stored, label)
    indices, data = indices[:nnz], data[:nnz]
    _check_in_range(indices, block_shape[1], "indices", label)
    rows = np.repeat(np.arange(block_shape[0]), np.diff(indptr.astype(np.int64)))
    positions, coordinates, blocks = _compressed(block_shape, 0, rows, indices, data)
    levels = bsr_layout((r, c))
    compressed = [lvl.format is COMPRESSED for lvl in levels]
    return SparseTensor(
        shape,
        levels,
        tuple(positions if k else None for k in compressed),
        tuple(coordinates if k else None for k in compressed),
        _readonly(blocks.reshape(-1)),
        name,
    )


def _read_coo(m: Any, shape: tuple[int, ...], name: str | None, label: str) -> SparseTensor:
    raw = m.coords if hasattr(m, "coords") else (m.row, m.col)
    coords = [_index_array(c, f"coords[{d}]", label) for d, c in enumerate(raw)]
    if len(coords) != len(shape):
        raise SparseFormatError(f"{label}: {len(coords)} coordinate arrays for shape {shape}")
    data = _value_array(m.data, 1, label)
    _same_length({"data": data, **{f"coords[{d}]": c for d, c in enumerate(coords)}}, label)
    for d, c in enumerate(coords):
        _check_in_range(c, shape[d], f"coords[{d}]", label)
    return _coo_tensor(shape, coords, data, name)


def _read_dok(m: Any, shape: tuple[int, ...], name: str | None, label: str) -> SparseTensor:
    store = getattr(m, "_dict", m)  # SciPy >= 1.13 keeps the entries in ``_dict``
    if not isinstance(store, dict):
        raise SparseFormatError(f"{label}: DOK entries are a {type(store).__name__}, not a dict")
    keys, items = list(store.keys()), list(store.values())
    try:
        coords = np.array(keys) if keys else np.zeros((0, len(shape)), np.int64)
        if coords.dtype.kind not in "iu":
            raise TypeError(coords.dtype)
        coords = coords.reshape(len(keys), len(shape))
        data = np.array(items, dtype=m.dtype)
    except _CONVERSION_ERRORS:
        raise SparseFormatError(
            f"{label}: DOK keys must be tuples of {len(shape)} integers and values of {m.dtype}"
        ) from None
    columns = [coords[:, d] for d in range(len(shape))]
    for d, c in enumerate(columns):
        _check_in_range(c, shape[d], f"keys[:, {d}]", label)
    return _coo_tensor(shape, columns, data, name)


def _read_lil(m: Any, shape: tuple[int, ...], name: str | None, label: str) -> SparseTensor:
    rows, items = np.asarray(m.rows), np.asarray(m.data)
    if rows.shape != (shape[0],) or items.shape != (shape[0],):
        raise SparseFormatError(
            f"{label}: LIL rows {rows.shape} and data {items.shape} must be ({shape[0]},)"
        )
    try:
        lengths = np.fromiter(map(len, rows), np.int64, count=shape[0])
        same = np.array_equal(lengths, np.fromiter(map(len, items), np.int64, count=shape[0]))
    except _CONVERSION_ERRORS:
        raise SparseFormatError(f"{label}: LIL rows and data must hold one list per row") from None
    if not same:
        bad = int(np.flatnonzero(lengths != np.fromiter(map(len, items), np.int64))[0])
        raise SparseFormatError(f"{label}: LIL rows and data differ in length at row {bad}")
    try:
        nnz = int(lengths.sum())
        columns = np.fromiter(itertools.chain.from_iterable(rows), np.int64, count=nnz)
        data = np.fromiter(itertools.chain.from_iterable(items), m.dtype, count=nnz)
    except _CONVERSION_ERRORS:
        raise SparseFormatError(
            f"{label}: LIL rows must hold lists of integer columns and data lists of {m.dtype}"
        ) from None
    _check_in_range(columns, shape[1], "rows (columns)", label)
    major = np.repeat(np.arange(shape[0]), lengths)
    positions, coordinates, values = _compressed(shape, 0, major, columns, data)
    return SparseTensor(shape, csr_layout(), (None, positions), (None, coordinates), values, name)


def _read_dia(m: Any, shape: tuple[int, ...], name: str | None, label: str) -> SparseTensor:
    """Diagonal ``offsets[k]`` holds ``data[k, j]`` at ``(j - offsets[k], j)``; padding and zeros
    are dropped as SciPy's ``tocoo`` does. Only the stored entries that land inside the shape
    are visited: at most ``data.size``, whatever the offsets and the shape."""
    offsets = _index_array(m.offsets, "offsets", label)
    data = _value_array(m.data, 2, label)
    if data.shape[0] != offsets.shape[0]:
        raise SparseFormatError(
            f"{label}: {data.shape[0]} rows of data for {offsets.shape[0]} diagonal offsets"
        )
    rows, cols = shape
    # An offset outside [-rows, cols] puts no entry inside the shape: clip before any int64 math.
    if offsets.dtype.kind == "u":
        off = np.minimum(offsets, cols).astype(np.int64)
    else:
        off = np.clip(offsets.astype(np.int64), -rows, cols)
    start = np.maximum(off, 0)
    stop = np.minimum(min(data.shape[1], cols), rows + off)
    counts = np.maximum(stop - start, 0)
    diagonal = np.repeat(np.arange(off.shape[0]), counts)
    column = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts - start, counts)
    values = data[diagonal, column]
    keep = values != 0
    coords = [column[keep] - off[diagonal[keep]], column[keep]]
    return _coo_tensor(shape, coords, values[keep], name)


_READERS = {
    "csr": _read_compressed,
    "csc": _read_compressed,
    "bsr": _read_bsr,
    "coo": _read_coo,
    "dok": _read_dok,
    "lil": _read_lil,
    "dia": _read_dia,
}
# The formats that SciPy defines only in two dimensions.
_TWO_D = frozenset({"csc", "bsr", "lil", "dia"})


def from_scipy(matrix: Any, name: str | None = None) -> SparseTensor:
    """Convert any SciPy sparse matrix or array into a :class:`~sparse_import.SparseTensor`.

    Parameters
    ----------
    matrix : scipy.sparse.spmatrix or scipy.sparse.sparray
        CSR, CSC, BSR and COO keep their layout (BSR its block shape; 1-D CSR and COO arrays
        become one compressed level); LIL becomes CSR; DOK and DIA become sorted COO.
        Duplicates are summed and indices sorted as SciPy defines it; explicit zeros stay.
    name : str, optional

    Raises
    ------
    SparseFormatError
        For index arrays that break their format (an ``indptr`` that decreases, an index out
        of bounds, lengths that disagree), naming the tensor and the values; checked before
        anything reads them.
    DenseLimitError
        When the dense form would exceed the dense byte limit, checked from the shape first.
    UnsupportedSparsityError
        For complex values or a rank above 64.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from sparse_import import from_scipy
    >>> m = sp.csr_array(np.array([[0, 2.0], [3.0, 0]]))
    >>> t = from_scipy(m, name="w")
    >>> t.layout
    '(d0 : dense, d1 : compressed)'
    >>> bool((t.to_dense() == m.toarray()).all())
    True
    """
    sp = _scipy()
    if not sp.issparse(matrix):
        raise TypeError(f"from_scipy expects a SciPy sparse matrix or array, got {type(matrix)}")
    label = tensor_label(name)
    shape = _checks.check_shape(matrix.shape, label)
    dtype = np.dtype(matrix.dtype)
    _checks.check_values_dtype(dtype, label)
    _checks.check_dense_limit(shape, dtype, label, get_dense_byte_limit())
    fmt = matrix.format
    reader = _READERS.get(fmt)
    if reader is None:
        raise SparseFormatError(f"{label}: unsupported SciPy format {fmt!r}")
    if not shape or (fmt in _TWO_D and len(shape) != 2) or (fmt == "csr" and len(shape) > 2):
        raise SparseFormatError(f"{label}: a {fmt} matrix of shape {shape}")
    tensor = reader(matrix, shape, name, label)
    tensor.validate()
    return tensor


# --------------------------------------------------------------------------- one-layer model
ONE_LAYER_INPUT = "x"
ONE_LAYER_WEIGHT = "weight"


@dataclasses.dataclass(frozen=True)
class OneLayer:
    """The model ``y = x @ W.T`` a backend builds for one weight matrix ``W``.

    Attributes
    ----------
    tensor : SparseTensor
        ``W``, ``(units, in)``.
    param : str
        The weight's parameter name: its own name, ``"weight"`` when it has none (or is named
        like the input).
    input_shape : tuple of int
        ``(..., in)``.
    input_dtype : str
    """

    tensor: SparseTensor
    param: str
    input_shape: tuple[int, ...]
    input_dtype: str


def one_layer(model: Any, shape_dict: Any = None, dtype_dict: Any = None) -> OneLayer:
    """Check a weight matrix and the caller's input dicts for the one-layer model.

    Parameters
    ----------
    model : scipy.sparse matrix or array, or SparseTensor
    shape_dict, dtype_dict : mapping, optional
        ``{"x": (..., in)}`` (default ``(1, in)``) and ``{"x": dtype}`` (default the weight's).

    Raises
    ------
    UnsupportedModelError
        A tensor that is not 2-D, or input names, shapes or dtypes that do not fit it.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> w = sp.random_array((8, 4), density=0.5, format="csr", rng=0, dtype=np.float32)
    >>> layer = one_layer(w, {"x": (2, 4)})
    >>> layer.param, layer.input_shape, layer.input_dtype
    ('weight', (2, 4), 'float32')
    """
    tensor = model if isinstance(model, SparseTensor) else from_scipy(model, name=None)
    if tensor.rank != 2:
        raise UnsupportedModelError(
            f"{tensor_label(tensor.name)} has shape {tensor.shape}; a one-layer module needs a "
            "2-D weight (units, in)"
        )
    x = ONE_LAYER_INPUT
    for what, given in (("shape_dict", shape_dict), ("dtype_dict", dtype_dict)):
        unknown = sorted(set(dict(given or {})) - {x})
        if unknown:
            raise UnsupportedModelError(
                f"{what} names {unknown}; the one-layer module has the single input {x!r}"
            )
    shape = tuple(int(d) for d in dict(shape_dict or {}).get(x, (1, tensor.shape[1])))
    if len(shape) < 2 or shape[-1] != tensor.shape[1] or min(shape) < 1:
        raise UnsupportedModelError(
            f"input {x!r} of shape {shape} does not fit {tensor_label(tensor.name)} of shape "
            f"{tensor.shape}: expected (..., {tensor.shape[1]})"
        )
    param = tensor.name if tensor.name and tensor.name != x else ONE_LAYER_WEIGHT
    dtype = str(dict(dtype_dict or {}).get(x, str(tensor.dtype)))
    return OneLayer(tensor, param, shape, dtype)
