"""SciPy sparse matrices and arrays <-> the IR.

``from_scipy`` keeps CSR, CSC, BSR and COO storage as it is (after SciPy's own canonicalization:
duplicates summed, indices sorted, on a copy); DIA, LIL and DOK go through SciPy's ``tocsr``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sparse_import.errors import SparseFormatError, tensor_label
from sparse_import.layouts import bsr_layout, coo_layout, csc_layout, csr_layout
from sparse_import.levels import LevelFormat
from sparse_import.tensor import SparseTensor

COMPRESSED = LevelFormat.COMPRESSED


def _scipy():
    import scipy.sparse

    return scipy.sparse


def _canonical(matrix: Any) -> Any:
    """A copy with duplicates summed and indices sorted (the input is never mutated)."""
    out = matrix.copy()
    out.sum_duplicates()
    return out


def from_scipy(matrix: Any, name: str | None = None) -> SparseTensor:
    """Convert any SciPy sparse matrix or array into a :class:`~sparse_import.SparseTensor`.

    Parameters
    ----------
    matrix : scipy.sparse.spmatrix or scipy.sparse.sparray
        CSR, CSC, BSR and COO keep their layout (BSR its block shape); DIA, LIL and DOK become
        CSR. Duplicates are summed and indices sorted as SciPy defines it; explicit zeros stay.
    name : str, optional

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
    fmt = matrix.format
    if fmt in ("dia", "lil", "dok"):
        matrix, fmt = matrix.tocsr(), "csr"
    if fmt in ("csr", "csc"):
        m = _canonical(matrix)
        levels = csr_layout() if fmt == "csr" else csc_layout()
        tensor = SparseTensor(
            m.shape, levels, (None, m.indptr), (None, m.indices), m.data, name=name
        )
    elif fmt == "bsr":
        m = _canonical(matrix)
        levels = bsr_layout(m.blocksize)
        compressed = [lvl.format is COMPRESSED for lvl in levels]
        tensor = SparseTensor(
            m.shape,
            levels,
            tuple(m.indptr if c else None for c in compressed),
            tuple(m.indices if c else None for c in compressed),
            m.data.reshape(-1),
            name=name,
        )
    elif fmt == "coo":
        m = _canonical(matrix)
        coords = [np.asarray(c) for c in m.coords] if hasattr(m, "coords") else [m.row, m.col]
        nnz = m.data.shape[0]
        dtype = coords[0].dtype if coords else np.int64
        positions = (np.array([0, nnz], dtype=dtype),) + (None,) * (len(coords) - 1)
        tensor = SparseTensor(m.shape, coo_layout(len(coords)), positions, coords, m.data, name)
    else:
        raise SparseFormatError(f"{tensor_label(name)}: unsupported SciPy format {fmt!r}")
    tensor.validate()
    return tensor


def to_scipy(
    tensor: SparseTensor, format: str = "csr", blocksize: tuple[int, int] | None = None
) -> Any:
    """A SciPy sparse array with the stored values of ``tensor`` (rank 2), explicit zeros kept.

    CSR, CSC and BSR tensors already in that layout are wrapped without re-deriving anything;
    any other layout goes through its exact coordinates.
    """
    sp = _scipy()
    if tensor.rank != 2:
        raise ValueError(f"{tensor_label(tensor.name)}: to_scipy needs rank 2, got {tensor.shape}")
    if tensor.dtype == np.float16:
        raise ValueError(
            f"{tensor_label(tensor.name)}: SciPy sparse arrays cannot hold float16 values; "
            "convert first with tensor.astype(numpy.float32)"
        )
    tensor.validate()
    blocks = tensor.block_shape if blocksize is None else tuple(blocksize)
    if format in ("csr", "csc", "bsr"):
        own = {"csr": csr_layout(), "csc": csc_layout(), "bsr": bsr_layout(blocks)}[format]
        if tensor.is_layout(own):
            # The tensor's own arrays: the one compressed level holds indptr and indices.
            k = next(i for i, lvl in enumerate(tensor.levels) if lvl.format is COMPRESSED)
            data = tensor.values.reshape(-1, *blocks) if format == "bsr" else tensor.values
            cls = getattr(sp, f"{format}_array")
            return cls((data, tensor.coordinates[k], tensor.positions[k]), shape=tensor.shape)
    coords, values = tensor.coo()
    coo = sp.coo_array((values, (coords[:, 0], coords[:, 1])), shape=tensor.shape)
    if format == "coo":
        return coo
    if format == "csr":
        return coo.tocsr()
    if format == "csc":
        return coo.tocsc()
    if format == "bsr":
        for d in (0, 1):
            if tensor.shape[d] % blocks[d]:
                raise ValueError(
                    f"{tensor_label(tensor.name)}: block {blocks} does not divide {tensor.shape}"
                )
        return coo.tocsr().tobsr(blocksize=blocks)
    raise ValueError(f"unknown SciPy format {format!r}; expected csr, csc, coo or bsr")
