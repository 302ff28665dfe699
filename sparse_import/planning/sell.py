"""The ``sell`` layout of a sparse matrix: sliced ELLPACK over column panels.

SELL-C (Kreutzer et al. 2014) with C = :data:`LANES`, cut into column panels of one of
:data:`PANELS` columns:
the rows are taken in slices of 16, one row per vector lane of AVX-512 float32. Within a slice
and a panel, vector ``k`` holds in lane ``l`` the ``k``-th stored value of row
``16 * slice + l`` in that panel (zero past the row's last one) and its column within the panel
(uint8); the slice and panel's vector count is the longest of its 16 rows there.
``offsets[slice * panels + panel]`` is the first vector of each (slice, panel), ``offsets[-1]``
their total. Read by :func:`sparse_import.kernels.sell.sell_matvec`; NumPy only, so the
planner can count a matrix's vectors (:func:`sell_vectors`) without TVM.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

__all__ = ["LANES", "PANELS", "SellArrays", "panel_of", "sell_arrays", "sell_vectors"]

LANES = 16
"""Rows per slice: the float32 lanes of an AVX-512 register."""

PANELS = (32, 64, 128)
"""Columns per panel: the values 2, 4 or 8 registers hold (one ``vpermi2ps`` selects from 32)."""


def panel_of(rows: int, cols: int, offsets: int) -> int:
    """The panel width of a ``rows x cols`` layout with ``offsets`` entries in ``offsets``.

    Panel counts differ between the widths except when one panel holds every column, and then
    the layouts are the same: the narrowest such width is returned.

    Raises
    ------
    ValueError
        No width gives that many entries.
    """
    slices = -(-rows // LANES)
    for panel in PANELS:
        if slices * -(-cols // panel) + 1 == offsets:
            return panel
    raise ValueError(
        f"sell offsets hold {offsets} entries, which no panel width of {PANELS} gives for a "
        f"{rows}x{cols} matrix"
    )


def _groups(matrix: sp.csr_array | sp.csr_matrix, panel: int):
    if panel not in PANELS:
        raise ValueError(f"panel width {panel} is not one of {PANELS}")
    rows, cols = (int(n) for n in matrix.shape)
    slices, panels = -(-rows // LANES), -(-cols // panel)
    coo = sp.coo_array(matrix)
    row, col = coo.row.astype(np.int64), coo.col.astype(np.int64)
    group = (row // LANES) * panels + col // panel  # (slice, panel), in output order
    lane = row % LANES
    per_lane = np.bincount(group * LANES + lane, minlength=slices * panels * LANES)
    counts = per_lane.reshape(slices * panels, LANES).max(axis=1, initial=0)
    return coo, col, group, lane, counts


def sell_vectors(matrix: sp.csr_array | sp.csr_matrix, panel: int = 32) -> tuple[int, int]:
    """``(vectors, slices * panels)`` of ``matrix`` in the layout with ``panel`` columns.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> sell_vectors(sp.csr_array(np.eye(20, 40, dtype=np.float32)))
    (2, 4)
    """
    *_, counts = _groups(matrix, panel)
    return int(counts.sum()), int(counts.size)


class SellArrays(NamedTuple):
    """A matrix in the layout above."""

    values: np.ndarray
    columns: np.ndarray
    offsets: np.ndarray


def sell_arrays(matrix: sp.csr_array | sp.csr_matrix, panel: int = 32) -> SellArrays:
    """The ``sell`` arrays of a ``(rows, cols)`` CSR matrix in panels of ``panel`` columns
    (explicit zeros kept).

    Returns
    -------
    SellArrays
        ``values`` ``(vectors * 16,)`` of the matrix dtype, ``columns`` ``(vectors * 16,)``
        uint8, ``offsets`` ``(slices * panels + 1,)`` int32.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> w = sp.csr_array(np.array([[0, 2.0, 0], [3.0, 0, 4.0]], np.float32))
    >>> values, columns, offsets = sell_arrays(w)
    >>> offsets.tolist(), values.reshape(-1, 16)[:, :2].tolist()
    ([0, 2], [[2.0, 3.0], [0.0, 4.0]])
    >>> columns.reshape(-1, 16)[:, :2].tolist()
    [[1, 0], [0, 2]]
    """
    coo, col, group, lane, counts = _groups(matrix, panel)
    order = np.lexsort((col, lane, group))
    group, lane, col, data = group[order], lane[order], col[order], coo.data[order]
    key = group * LANES + lane
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if key.size else key
    rank = np.arange(key.size) - np.repeat(starts, np.diff(np.r_[starts, key.size]))
    offsets = np.r_[0, np.cumsum(counts)]
    if offsets[-1] * LANES > np.iinfo(np.int32).max:
        raise ValueError(f"{offsets[-1]} vectors of 16 values do not fit int32 positions")
    position = (offsets[group] + rank) * LANES + lane
    values = np.zeros(int(offsets[-1]) * LANES, matrix.dtype)
    columns = np.zeros(values.size, np.uint8)
    values[position] = data
    columns[position] = col % panel
    return SellArrays(values, columns, offsets.astype(np.int32))
