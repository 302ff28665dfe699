"""Invariant checks of :class:`~sparse_import.SparseTensor`.

Two tiers, as in SciPy's ``check_format``: the structural checks run at construction in
O(levels); :func:`full_check` scans every stored coordinate (O(nnz), vectorized). Nothing here
mutates its inputs.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .errors import DenseLimitError, SparseFormatError, UnsupportedSparsityError
from .levels import Level, LevelFormat, LevelPart

if TYPE_CHECKING:
    from .tensor import Quantization, SparseTensor

COMPRESSED, SINGLETON, DENSE = LevelFormat.COMPRESSED, LevelFormat.SINGLETON, LevelFormat.DENSE


class LayoutInfo(NamedTuple):
    """Facts derived by :meth:`SparseTensor.validate`."""

    nnz: int
    level_counts: tuple[int, ...]  # stored entries at each level
    level_sizes: tuple[int, ...]
    block_shape: tuple[int, ...]


# NumPy arrays have at most this many dimensions (``numpy.ndarray`` refuses more).
MAX_RANK = 64


def check_shape(shape: Any, label: str) -> tuple[int, ...]:
    """Return ``shape`` as a tuple of Python ints, each non-negative, at most :data:`MAX_RANK`.

    Raises
    ------
    SparseFormatError
        For a shape that is not a sequence of non-negative integers.
    UnsupportedSparsityError
        For a rank above NumPy's limit of :data:`MAX_RANK` dimensions.
    """
    try:
        dims = tuple(shape)
    except TypeError:
        raise SparseFormatError(f"{label}: shape {shape!r} is not a sequence") from None
    if len(dims) > MAX_RANK:
        raise UnsupportedSparsityError(
            f"{label}: rank {len(dims)} is above the {MAX_RANK} dimensions NumPy supports"
        )
    out = []
    for d, n in enumerate(dims):
        try:
            value = operator.index(n)
        except TypeError:
            raise SparseFormatError(f"{label}: shape[{d}] = {n!r} is not an integer") from None
        if value < 0:
            raise SparseFormatError(f"{label}: shape[{d}] = {value} is negative")
        out.append(int(value))
    return tuple(out)


def check_values_dtype(dtype: np.dtype, label: str) -> None:
    """Stored values are of a real numeric dtype (bool, integer or floating point).

    Raises
    ------
    UnsupportedSparsityError
        For complex values, which no backend of this library computes with.
    SparseFormatError
        For any other non-numeric dtype.
    """
    if dtype.kind == "c":
        raise UnsupportedSparsityError(
            f"{label}: {dtype} values are not supported (complex numbers; only bool, integer "
            "and floating-point values are)"
        )
    if dtype.kind not in "biuf":
        raise SparseFormatError(f"{label}: values dtype {dtype} is not numeric")


def check_dense_limit(shape: tuple[int, ...], dtype: np.dtype, label: str, limit: int) -> None:
    """Refuse a dense form over ``limit`` bytes, from the shape alone (nothing is allocated).

    Raises
    ------
    DenseLimitError
        Naming the tensor, its shape and dtype, the bytes needed and the limit.
    """
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > limit:
        raise DenseLimitError(
            f"{label}: dense form of shape {shape} ({dtype}) needs {nbytes} bytes, over the "
            f"dense byte limit of {limit} bytes"
        )


def check_level_map(shape: tuple[int, ...], levels: Sequence[Level], label: str) -> None:
    """The levels form a dim-to-level map: every dimension indexed whole, or by one
    ``floordiv``/``mod`` pair with the same block size that divides the dimension."""
    rank = len(shape)
    parts: dict[int, list[Level]] = {d: [] for d in range(rank)}
    for k, lvl in enumerate(levels):
        if not isinstance(lvl, Level):
            raise SparseFormatError(f"{label}: level {k} is {lvl!r}, not a Level")
        if lvl.dim >= rank:
            raise SparseFormatError(
                f"{label}: level {k} ({lvl}) indexes dimension {lvl.dim}, but the rank is {rank}"
            )
        parts[lvl.dim].append(lvl)
    for d, lvls in parts.items():
        kinds = sorted(lvl.part.value for lvl in lvls)
        if kinds == ["whole"]:
            continue
        if kinds != ["block", "element"]:
            found = ", ".join(str(lvl) for lvl in lvls) or "none"
            raise SparseFormatError(
                f"{label}: dimension {d} must be indexed by one whole level or one floordiv/mod "
                f"pair, found: {found}"
            )
        blocks = {lvl.block for lvl in lvls}
        if len(blocks) != 1:
            raise SparseFormatError(
                f"{label}: dimension {d} has floordiv and mod levels with different block sizes "
                f"{sorted(blocks)}"
            )
        (block,) = blocks
        if shape[d] % block:
            raise SparseFormatError(
                f"{label}: block size {block} does not divide dimension {d} of size {shape[d]}"
            )
        order = [lvl.part for lvl in levels if lvl.dim == d]
        if order[0] is not LevelPart.BLOCK:
            raise SparseFormatError(
                f"{label}: dimension {d}: the floordiv level must come before the mod level"
            )


def check_buffers(
    levels: tuple[Level, ...],
    positions: Any,
    coordinates: Any,
    label: str,
    freeze: Callable[[Any, str], np.ndarray],
) -> tuple[tuple[np.ndarray | None, ...], tuple[np.ndarray | None, ...]]:
    """Buffers present exactly where the formats need them, 1-D and of an integer dtype."""
    positions, coordinates = tuple(positions), tuple(coordinates)
    for what, bufs in (("positions", positions), ("coordinates", coordinates)):
        if len(bufs) != len(levels):
            raise SparseFormatError(f"{label}: {len(bufs)} {what} entries for {len(levels)} levels")
    out_pos: list[np.ndarray | None] = []
    out_crd: list[np.ndarray | None] = []
    for k, (lvl, pos, crd) in enumerate(zip(levels, positions, coordinates, strict=True)):
        needs_pos = lvl.format is COMPRESSED
        needs_crd = lvl.format is not DENSE
        for what, buf, needed, out in (
            ("positions", pos, needs_pos, out_pos),
            ("coordinates", crd, needs_crd, out_crd),
        ):
            if (buf is not None) != needed:
                state = "needs" if needed else "must not have"
                raise SparseFormatError(f"{label}: level {k} ({lvl}) {state} {what}")
            if buf is None:
                out.append(None)
                continue
            arr = freeze(buf, f"{label}: level {k} {what}")
            if arr.dtype.kind not in "iu":
                raise SparseFormatError(
                    f"{label}: level {k} {what} have dtype {arr.dtype}, not an integer dtype"
                )
            out.append(arr)
    return tuple(out_pos), tuple(out_crd)


def check_counts(
    shape: tuple[int, ...],
    levels: tuple[Level, ...],
    positions: tuple[np.ndarray | None, ...],
    coordinates: tuple[np.ndarray | None, ...],
    values: np.ndarray,
    label: str,
) -> tuple[int, ...]:
    """Buffer lengths agree level by level (O(levels): reads only each last position)."""
    counts = []
    count = 1
    for k, lvl in enumerate(levels):
        size = lvl.size(shape[lvl.dim])
        if lvl.format is DENSE:
            count *= size
        elif lvl.format is COMPRESSED:
            pos, crd = positions[k], coordinates[k]
            if pos.shape[0] != count + 1:
                raise SparseFormatError(
                    f"{label}: level {k} ({lvl}) has {pos.shape[0]} positions, expected "
                    f"{count + 1} (one more than the {count} entries of the level above)"
                )
            last = int(pos[-1])
            if last != crd.shape[0]:
                raise SparseFormatError(
                    f"{label}: level {k} ({lvl}): last position {last} does not equal the number "
                    f"of coordinates {crd.shape[0]}"
                )
            count = last
        else:
            crd = coordinates[k]
            if crd.shape[0] != count:
                raise SparseFormatError(
                    f"{label}: level {k} ({lvl}) has {crd.shape[0]} coordinates, expected one "
                    f"per entry of the level above ({count})"
                )
        counts.append(count)
    if values.shape[0] != count:
        raise SparseFormatError(
            f"{label}: {values.shape[0]} stored values, but the levels describe {count}"
        )
    return tuple(counts)


def check_quantization(shape: tuple[int, ...], quant: Quantization, label: str) -> None:
    """Per-channel parameters name a dimension of the tensor and give one scale per channel."""
    if quant.axis is None:
        if quant.scale.size != 1:
            raise SparseFormatError(
                f"{label}: {quant.scale.size} quantization scales but no quantization axis"
            )
        return
    if not 0 <= quant.axis < len(shape):
        raise SparseFormatError(
            f"{label}: quantization axis {quant.axis} is out of range for rank {len(shape)}"
        )
    if quant.scale.size not in (1, shape[quant.axis]):
        raise SparseFormatError(
            f"{label}: {quant.scale.size} quantization scales for dimension {quant.axis} of "
            f"size {shape[quant.axis]}"
        )


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def full_check(t: SparseTensor) -> LayoutInfo:
    """Every invariant, O(nnz); raises :class:`SparseFormatError` at the first violation."""
    from .errors import tensor_label

    label = tensor_label(t.name)
    counts = check_counts(t.shape, t.levels, t.positions, t.coordinates, t.values, label)
    # Segment starts of the innermost compressed level above, for order checks of singletons.
    starts: np.ndarray | None = None
    chain: list[np.ndarray] = []
    # Sign of the lexicographic comparison of consecutive coordinate tuples of ``chain``,
    # carried level to level so a chain of singletons costs O(nnz) per level, not O(rank).
    cmp: np.ndarray | None = None
    for k, lvl in enumerate(t.levels):
        size = lvl.size(t.shape[lvl.dim])
        if lvl.format is DENSE:
            starts, chain, cmp = None, [], None
            continue
        crd = t.coordinates[k]
        if crd.size:
            low, high = crd.min(), crd.max()
            if low < 0 or high >= size:
                bad = _first((crd < 0) | (crd >= size))
                raise SparseFormatError(
                    f"{label}: level {k} ({lvl}): coordinates[{bad}] = {crd[bad]} is out of "
                    f"bounds [0, {size})"
                )
        if lvl.format is COMPRESSED:
            pos = t.positions[k]
            if int(pos[0]) != 0:
                raise SparseFormatError(
                    f"{label}: level {k} ({lvl}): positions should start with 0, got {pos[0]}"
                )
            steps = np.diff(pos.astype(np.int64))
            if steps.size and steps.min() < 0:
                bad = _first(steps < 0)
                raise SparseFormatError(
                    f"{label}: level {k} ({lvl}): positions decrease at {bad + 1}: "
                    f"{pos[bad]} -> {pos[bad + 1]}"
                )
            starts = np.zeros(crd.shape[0], dtype=bool)
            inner = pos[:-1].astype(np.int64)
            starts[inner[inner < crd.shape[0]]] = True
            chain, cmp = [crd], _step_signs(crd)
        elif starts is not None:
            chain.append(crd)
            cmp = np.where(cmp != 0, cmp, _step_signs(crd))
        if starts is None:
            continue
        if lvl.ordered:
            _check_order(chain, cmp, starts, lvl, k, label)
        elif lvl.unique:
            _check_unique(chain, starts, lvl, k, label)
    return LayoutInfo(t.nnz, counts, t.level_sizes, t.block_shape)


def _step_signs(crd: np.ndarray) -> np.ndarray:
    """Sign of each step between consecutive coordinates, as int8."""
    return np.sign(np.diff(crd.astype(np.int64, copy=False))).astype(np.int8)


def _check_order(
    chain: list[np.ndarray],
    cmp: np.ndarray,
    starts: np.ndarray,
    lvl: Level,
    k: int,
    label: str,
) -> None:
    """Within each segment, coordinate tuples of the chain increase (strictly when unique).

    ``cmp`` compares each tuple with the next one (-1, 0, 1), outer levels first.
    """
    if chain[-1].shape[0] < 2:
        return
    same_segment = ~starts[1:]
    bad = same_segment & ((cmp <= 0) if lvl.unique else (cmp < 0))
    if bad.any():
        _order_error(chain, bad, lvl, k, label)


def _order_error(chain: list[np.ndarray], bad: np.ndarray, lvl: Level, k: int, label: str) -> None:
    """Raise for the first out-of-order pair that ``bad`` marks."""
    i = _first(bad)
    tuples = [tuple(int(c[j]) for c in chain) for j in (i, i + 1)]
    shown = [t[0] if len(t) == 1 else t for t in tuples]
    rule = "strictly increasing" if lvl.unique else "non-decreasing"
    raise SparseFormatError(
        f"{label}: level {k} ({lvl}): coordinates are not {rule} at position {i + 1}: "
        f"{shown[0]} then {shown[1]}"
    )


def _check_unique(
    chain: list[np.ndarray], starts: np.ndarray, lvl: Level, k: int, label: str
) -> None:
    """An unordered but unique level: no coordinate tuple repeats within a segment."""
    n = chain[-1].shape[0]
    if n < 2:
        return
    segment = np.cumsum(starts) - 1
    order = np.lexsort([*(c for c in reversed(chain)), segment])
    keys = [segment, *chain]
    same = np.ones(n - 1, dtype=bool)
    for key in keys:
        sorted_key = key[order]
        same &= sorted_key[1:] == sorted_key[:-1]
    if same.any():
        first, second = sorted(int(i) for i in order[[_first(same), _first(same) + 1]])
        shown = tuple(int(c[first]) for c in chain)
        shown_text = shown[0] if len(shown) == 1 else shown
        raise SparseFormatError(
            f"{label}: level {k} ({lvl}): duplicate coordinate {shown_text} in one segment at "
            f"positions {first} and {second} of a unique level"
        )
