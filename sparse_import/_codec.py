"""Vectorized decoding and encoding between levels and dense arrays.

Decoding walks the levels once, carrying for every stored entry its row-major offset into the
dense form: a dense level broadcasts each parent over ``arange(size)``, a compressed level
repeats each parent by its segment length, a singleton level adds one coordinate per parent.
No Python loop runs per stored element.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .levels import Level, LevelFormat, LevelPart

if TYPE_CHECKING:
    from .tensor import SparseTensor


def index_dtype(max_value: int) -> np.dtype:
    """int32 unless ``max_value`` needs int64 (SciPy's rule)."""
    return np.dtype(np.int32) if max_value <= np.iinfo(np.int32).max else np.dtype(np.int64)


def _dim_strides(shape: tuple[int, ...]) -> list[int]:
    strides = [1] * len(shape)
    for d in range(len(shape) - 2, -1, -1):
        strides[d] = strides[d + 1] * shape[d + 1]
    return strides


def linear_offsets(t: SparseTensor) -> np.ndarray:
    """Row-major dense offset of every stored value, in storage order; shape ``(nnz,)``."""
    if not t.nnz:
        # A dimension of size 0 empties the tensor, but the levels above it could still
        # broadcast over a huge sibling dimension; with values stored, every intermediate
        # count is bounded by a stored buffer.
        return np.zeros(0, dtype=np.int64)
    strides = _dim_strides(t.shape)
    offsets = np.zeros(1, dtype=np.int64)
    for lvl, pos, crd in zip(t.levels, t.positions, t.coordinates, strict=True):
        step = strides[lvl.dim] * lvl.scale
        if lvl.format is LevelFormat.DENSE:
            size = lvl.size(t.shape[lvl.dim])
            offsets = (offsets[:, None] + np.arange(size, dtype=np.int64) * step).ravel()
        elif lvl.format is LevelFormat.COMPRESSED:
            counts = np.diff(pos.astype(np.int64))
            offsets = np.repeat(offsets, counts) + crd.astype(np.int64) * step
        else:
            offsets = offsets + crd.astype(np.int64) * step
    return offsets


def _is_row_major_dense(t: SparseTensor) -> bool:
    if any(lvl.format is not LevelFormat.DENSE for lvl in t.levels):
        return False
    return [lvl.dim for lvl in t.levels] == list(range(t.rank)) and all(
        lvl.part is LevelPart.WHOLE for lvl in t.levels
    )


def _has_duplicates(t: SparseTensor) -> bool:
    """Whether two stored values may share a dense position (they are then summed).

    A non-unique level allows it, unless only singleton levels follow it and the last of them
    is unique: COO, whose full coordinate tuples ``validate`` checks to be unique.
    """
    for k, lvl in enumerate(t.levels):
        rest = t.levels[k + 1 :]
        coo_tail = (
            bool(rest) and rest[-1].unique and all(r.format is LevelFormat.SINGLETON for r in rest)
        )
        if not lvl.unique and not coo_tail:
            return True
    return False


def to_dense(t: SparseTensor) -> np.ndarray:
    """Scatter the stored values into a new dense array (duplicates summed where allowed)."""
    if _is_row_major_dense(t):
        return t.values.reshape(t.shape).copy()
    offsets = linear_offsets(t)
    out = np.zeros(math.prod(t.shape), dtype=t.dtype)
    if _has_duplicates(t):
        np.add.at(out, offsets, t.values)
    else:
        out[offsets] = t.values
    return out.reshape(t.shape)


def _to_level_order(array: np.ndarray, levels: tuple[Level, ...]) -> np.ndarray:
    """View ``array`` with one axis per level, in level order (blocked dims split in two)."""
    expanded_shape: list[int] = []
    axis_of: dict[tuple[int, LevelPart], int] = {}
    blocks = {lvl.dim: lvl.block for lvl in levels if lvl.part is LevelPart.BLOCK}
    for d, n in enumerate(array.shape):
        if d in blocks:
            axis_of[(d, LevelPart.BLOCK)] = len(expanded_shape)
            axis_of[(d, LevelPart.ELEMENT)] = len(expanded_shape) + 1
            expanded_shape += [n // blocks[d], blocks[d]]
        else:
            axis_of[(d, LevelPart.WHOLE)] = len(expanded_shape)
            expanded_shape.append(n)
    order = [axis_of[(lvl.dim, lvl.part)] for lvl in levels]
    return array.reshape(expanded_shape).transpose(order)


def encode(
    array: np.ndarray, levels: tuple[Level, ...], dtype: Any = None
) -> tuple[tuple[np.ndarray | None, ...], tuple[np.ndarray | None, ...], np.ndarray]:
    """Encode ``array`` into ``levels`` with TFLite FormatConverter semantics.

    Returns ``(positions, coordinates, values)``. A coordinate of a compressed level (and of the
    singleton levels chained to it) is kept iff the sub-tree below holds a nonzero.
    """
    cube = _to_level_order(np.asarray(array), levels)
    n = len(levels)
    # has_nonzero[k]: shape level_sizes[:k+1], whether the sub-tree below that prefix is nonzero.
    has_nonzero: list[np.ndarray] = [np.empty(0)] * n
    if n:
        has_nonzero[n - 1] = cube != 0
        for k in range(n - 2, -1, -1):
            has_nonzero[k] = has_nonzero[k + 1].any(axis=-1)
    sizes = cube.shape
    idx_dtype = np.dtype(dtype) if dtype is not None else index_dtype(max([*sizes, cube.size, 1]))
    positions: list[np.ndarray | None] = [None] * n
    coordinates: list[np.ndarray | None] = [None] * n
    kept = np.ones((), dtype=bool)  # which prefixes (of the levels done so far) are stored
    k = 0
    while k < n:
        lvl = levels[k]
        if lvl.format is LevelFormat.DENSE:
            kept = np.broadcast_to(kept[..., None], sizes[: k + 1])
            k += 1
            continue
        if lvl.format is LevelFormat.SINGLETON and k == 0:
            raise ValueError("a singleton level needs a compressed level above it to encode")
        # A compressed level plus the singleton levels chained after it, encoded together.
        end = k + 1
        while end < n and levels[end].format is LevelFormat.SINGLETON:
            end += 1
        if lvl.format is LevelFormat.SINGLETON:
            raise ValueError("a singleton level must follow a compressed level")
        parent_shape = sizes[:k]
        chained = kept.reshape(kept.shape + (1,) * (end - k)) & has_nonzero[end - 1]
        per_parent = chained.reshape(math.prod(parent_shape), -1).sum(axis=1)
        parents = kept.reshape(-1)
        segment_lengths = per_parent[parents]
        positions[k] = np.concatenate([[0], np.cumsum(segment_lengths)]).astype(idx_dtype)
        where = np.nonzero(chained)
        for j in range(k, end):
            coordinates[j] = where[j].astype(idx_dtype)
        kept = chained
        k = end
    values = cube[np.broadcast_to(kept, sizes)] if n else cube.reshape(-1)
    return tuple(positions), tuple(coordinates), np.ascontiguousarray(values)
