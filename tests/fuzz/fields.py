"""Mutations of a valid sparse tensor's fields: the IR buffers and TFLite ``SparsityParameters``.

A :class:`Case` holds one valid tensor as editable buffers plus its TFLite view (traversal
order, block map, per-level format and dense size). :data:`DEFECTS` are targeted mutations, one
per invariant the issue lists; each returns the regex the error message must match, so the
property "every such input is rejected with *this* message" holds for any random layout.
:func:`havoc` stacks random, untargeted mutations, for which only the documented outcome is
required.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sparse_import.adapters.tflite.params import to_tflite_params

from sparse_import import Level, LevelFormat, LevelPart, SparseTensor, from_tflite_params

from .choice import Chooser, flag, interesting_int, pick

COMPRESSED, SINGLETON, DENSE = LevelFormat.COMPRESSED, LevelFormat.SINGLETON, LevelFormat.DENSE
FUZZ_DENSE_LIMIT = 1 << 24  # bytes; fuzz tests run under this dense byte limit


def _fits(arr: np.ndarray, value: int) -> np.ndarray:
    """``arr`` as a dtype that can hold ``value`` as well (int64, else uint64)."""
    if arr.dtype.kind in "iu" and np.can_cast(np.min_scalar_type(value), arr.dtype):
        return arr.copy()
    if -(2**63) <= value < 2**63 and (arr.size == 0 or int(arr.max(initial=0)) < 2**63):
        return arr.astype(np.int64)
    return arr.astype(np.uint64)


def put(arr: np.ndarray, i: int, value: int) -> np.ndarray:
    """A copy of ``arr`` with ``arr[i] = value``, widened when ``value`` does not fit."""
    out = _fits(arr, value)
    out[i] = value
    return out


@dataclass
class Case:
    """One sparse tensor as editable fields; the TFLite view is empty for COO layouts."""

    name: str
    shape: list[int]
    levels: tuple[Level, ...]
    positions: list[np.ndarray | None]
    coordinates: list[np.ndarray | None]
    values: np.ndarray
    traversal_order: list[int] = field(default_factory=list)
    block_map: list[int] = field(default_factory=list)
    formats: list[Any] = field(default_factory=list)
    dense_sizes: list[Any] = field(default_factory=list)
    extra_levels: int = 0  # TFLite dim_metadata entries added (+) or dropped (-)
    dim_limit: int | None = None  # largest size or index the container can store (files: int32)

    @classmethod
    def of(cls, tensor: SparseTensor) -> Case:
        case = cls(
            tensor.name or "t",
            list(tensor.shape),
            tensor.levels,
            list(tensor.positions),
            list(tensor.coordinates),
            tensor.values,
        )
        if case.tflite_ok:
            fields = to_tflite_params(tensor)
            case.traversal_order = list(fields["traversal_order"])
            case.block_map = list(fields["block_map"])
            case.formats = [m["format"] for m in fields["dim_metadata"]]
            case.dense_sizes = [m.get("dense_size") for m in fields["dim_metadata"]]
        return case

    @property
    def tflite_ok(self) -> bool:
        """Whether TFLite can express the base layout: no singleton level, and a compressed
        in-block level only below a dense block level (which states the block size)."""
        outer = {lvl.dim: lvl.format for lvl in self.levels if lvl.part is LevelPart.BLOCK}
        return all(
            lvl.format is DENSE
            or (
                lvl.format is COMPRESSED
                and (lvl.part is not LevelPart.ELEMENT or outer.get(lvl.dim) is DENSE)
            )
            for lvl in self.levels
        )

    @property
    def nnz(self) -> int:
        return int(self.values.shape[0])

    def level_size(self, k: int) -> int:
        lvl = self.levels[k]
        return lvl.size(self.shape[lvl.dim])

    @property
    def quoted(self) -> str:
        """The tensor's name as messages quote it, as a regex."""
        return re.escape(repr(self.name))

    def clip(self, value: int) -> int:
        """``value``, or the largest the container stores when it is smaller."""
        return value if self.dim_limit is None else min(value, self.dim_limit)

    def label(self, k: int) -> str:
        """How messages name level ``k``, as a regex: ``level 1 \\(d1 : compressed\\)``."""
        return re.escape(f"level {k} ({self.levels[k]})")

    # ------------------------------------------------------------------ the two entry points
    def to_ir(self) -> SparseTensor:
        """Construct and fully validate the IR tensor from the (mutated) buffers."""
        t = SparseTensor(
            self.shape, self.levels, self.positions, self.coordinates, self.values, self.name
        )
        t.validate()
        return t

    def tflite_fields(self) -> dict[str, Any]:
        """Keyword arguments of ``from_tflite_params`` for the (mutated) fields."""
        metadata = []
        for k, fmt in enumerate(self.formats):
            meta: dict[str, Any] = {"format": fmt, "dense_size": self.dense_sizes[k]}
            if fmt != "DENSE":
                segments = self.positions[k] if k < len(self.positions) else None
                indices = self.coordinates[k] if k < len(self.coordinates) else None
                meta["array_segments"] = np.zeros(1, np.int32) if segments is None else segments
                meta["array_indices"] = np.zeros(0, np.int32) if indices is None else indices
            metadata.append(meta)
        if self.extra_levels < 0:
            metadata = metadata[: self.extra_levels]
        metadata += [dict(metadata[-1]) for _ in range(max(self.extra_levels, 0))]
        return {
            "shape": self.shape,
            "traversal_order": self.traversal_order,
            "block_map": self.block_map,
            "dim_metadata": metadata,
            "values": self.values,
            "name": self.name,
        }

    def to_tflite(self) -> SparseTensor:
        return from_tflite_params(**self.tflite_fields())


def check_consistent(t: SparseTensor) -> None:
    """An accepted tensor decodes to exactly what it stores, zeros elsewhere (dense NumPy).

    Where the layout allows duplicate coordinates, they are summed in storage order.
    """
    dense = t.to_dense()
    coords, values = t.coo()
    assert dense.shape == t.shape and dense.dtype == t.dtype
    flat = dense.reshape(-1)
    linear = np.ravel_multi_index(tuple(coords.T), t.shape) if t.rank else coords[:, :0].sum(1)
    order = np.argsort(linear, kind="stable")
    linear, values = linear[order], values[order]
    starts = np.flatnonzero(np.r_[True, linear[1:] != linear[:-1]]) if linear.size else linear
    # summed in the values' own dtype (bool: logical or), as a decoder adding them up would
    sums = np.add.reduceat(values, starts, dtype=values.dtype) if values.size else values
    np.testing.assert_array_equal(flat[linear[starts]], sums)
    rest = np.ones(flat.shape, bool)
    rest[linear] = False
    assert not flat[rest].any()


# ---------------------------------------------------------------------- targeted defects
@dataclass(frozen=True)
class Defect:
    """A targeted mutation: ``apply`` edits the case and returns the message regex."""

    name: str
    apply: Callable[[Case, Chooser], str]
    applies: Callable[[Case], bool]
    tflite_only: bool = False


DEFECTS: dict[str, Defect] = {}


def defect(applies: Callable[[Case], bool] = lambda c: True, *, tflite_only: bool = False):
    def register(fn: Callable[[Case, Chooser], str]) -> Callable[[Case, Chooser], str]:
        DEFECTS[fn.__name__] = Defect(fn.__name__, fn, applies, tflite_only)
        return fn

    return register


def _compressed(case: Case, min_positions: int = 1) -> list[int]:
    return [
        k for k, p in enumerate(case.positions) if p is not None and p.shape[0] >= min_positions
    ]


def _stored(case: Case, min_coordinates: int = 1) -> list[int]:
    return [
        k for k, c in enumerate(case.coordinates) if c is not None and c.shape[0] >= min_coordinates
    ]


def _segment_pairs(case: Case, k: int) -> list[int]:
    """Indices ``i`` of level ``k``'s coordinates with ``i + 1`` in the same segment."""
    head = max(j for j in range(k + 1) if case.positions[j] is not None)
    pos = case.positions[head].astype(np.int64)
    n = case.coordinates[k].shape[0]
    same = np.ones(max(n - 1, 0), bool)
    inner = pos[1:-1]
    same[inner[(inner > 0) & (inner < n)] - 1] = False
    return np.flatnonzero(same).tolist()


@defect(lambda c: c.nnz > 0)
def values_short(case: Case, choose: Chooser) -> str:
    cut = choose.integer(1, case.nnz)
    case.values = case.values[: case.nnz - cut]
    return rf"{case.quoted}: {case.nnz} stored values, but the levels describe {case.nnz + cut}$"


@defect()
def values_long(case: Case, choose: Chooser) -> str:
    extra = choose.integer(1, 3)
    before = case.nnz
    case.values = np.concatenate([case.values, np.zeros(extra, case.values.dtype)])
    return rf"{case.quoted}: {before + extra} stored values, but the levels describe {before}$"


@defect(lambda c: bool(_compressed(c, 3)))
def positions_decrease(case: Case, choose: Chooser) -> str:
    k = pick(choose, _compressed(case, 3))
    pos = case.positions[k]
    i = choose.integer(1, pos.shape[0] - 2)
    after = int(pos[i + 1])
    value = after + choose.integer(1, 3)
    case.positions[k] = put(pos, i, value)
    return rf"{case.label(k)}: positions decrease at {i + 1}: {value} -> {after}$"


@defect(lambda c: bool(_compressed(c, 2)))
def positions_start(case: Case, choose: Chooser) -> str:
    k = pick(choose, _compressed(case, 2))
    value = choose.integer(1, 3)
    case.positions[k] = put(case.positions[k], 0, value)
    return rf"{case.label(k)}: positions should start with 0, got {value}$"


@defect(lambda c: bool(_compressed(c)))
def positions_count(case: Case, choose: Chooser) -> str:
    """Segment count that disagrees with the number of entries of the parent level."""
    k = pick(choose, _compressed(case))
    pos = case.positions[k]
    expected = pos.shape[0]
    if flag(choose) and expected > 1:
        case.positions[k] = pos[:-1]
    else:
        case.positions[k] = np.concatenate([pos, pos[-1:]])
    got = case.positions[k].shape[0]
    return rf"{case.label(k)} has {got} positions, expected {expected} \(one more than the"


@defect(lambda c: bool(_stored(c)))
def coordinates_count(case: Case, choose: Chooser) -> str:
    k = pick(choose, _stored(case))
    crd = case.coordinates[k]
    case.coordinates[k] = crd[:-1]
    n = crd.shape[0]
    if case.levels[k].format is COMPRESSED:
        return (
            rf"{case.label(k)}: last position {n} does not equal the number of coordinates "
            rf"{n - 1}"
        )
    return rf"{case.label(k)} has {n - 1} coordinates, expected one per entry of the level above"


@defect(lambda c: bool(_stored(c)))
def index_out_of_range(case: Case, choose: Chooser) -> str:
    k = pick(choose, _stored(case))
    crd = case.coordinates[k]
    i = choose.integer(0, crd.shape[0] - 1)
    size = case.level_size(k)
    value = -choose.integer(1, 2) if flag(choose) else case.clip(size + pick(choose, [0, 1, 2**40]))
    case.coordinates[k] = put(crd, i, value)
    return rf"{case.label(k)}: coordinates\[{i}\] = {value} is out of bounds \[0, {size}\)$"


def _pairs(case: Case) -> list[tuple[int, int]]:
    return [
        (k, i)
        for k in _stored(case, 2)
        if case.levels[k].format is COMPRESSED
        for i in _segment_pairs(case, k)
    ]


@defect(lambda c: bool(_pairs(c)))
def duplicate_index(case: Case, choose: Chooser) -> str:
    k, i = pick(choose, _pairs(case))
    chain = [k] + [j for j in range(k + 1, len(case.levels)) if case.levels[j].format is SINGLETON]
    for j in chain:
        case.coordinates[j] = put(case.coordinates[j], i + 1, int(case.coordinates[j][i]))
    return rf"coordinates are not strictly increasing at position {i + 1}: (\d+|\(.*\)) then "


@defect(lambda c: bool(_pairs(c)))
def unsorted_index(case: Case, choose: Chooser) -> str:
    k, i = pick(choose, _pairs(case))
    chain = [k] + [j for j in range(k + 1, len(case.levels)) if case.levels[j].format is SINGLETON]
    for j in chain:
        crd = case.coordinates[j].copy()
        crd[[i, i + 1]] = crd[[i + 1, i]]
        case.coordinates[j] = crd
    return rf"coordinates are not (strictly increasing|non-decreasing) at position {i + 1}: "


@defect(lambda c: bool(_stored(c, 0)))
def index_dtype(case: Case, choose: Chooser) -> str:
    k = pick(choose, _stored(case, 0))
    buffers = case.coordinates
    ir, tfl = "coordinates", "array_indices"
    if case.positions[k] is not None and flag(choose):
        buffers, ir, tfl = case.positions, "positions", "array_segments"
    dtype = pick(choose, [np.float64, np.float32, np.bool_])
    buffers[k] = buffers[k].astype(dtype)
    name = np.dtype(dtype).name
    return (
        rf"level {k} ({ir} have dtype {name}, not an integer dtype|"
        rf"{tfl} must be a 1-D integer vector, got dtype {name})"
    )


@defect(lambda c: bool(_stored(c, 0)))
def index_rank(case: Case, choose: Chooser) -> str:
    k = pick(choose, _stored(case, 0))
    case.coordinates[k] = case.coordinates[k].reshape(-1, 1)
    return rf"level {k} (coordinates must be 1-D|array_indices must be a 1-D integer vector)"


@defect()
def negative_dim(case: Case, choose: Chooser) -> str:
    d = choose.integer(0, len(case.shape) - 1)
    value = -choose.integer(1, 4)
    case.shape[d] = value
    return (
        rf"(shape\[{d}\] = {value} is negative|disagrees with the level size -?\d+ implied by "
        rf"shape|does not divide dimension {d} of size {value})"
    )


@defect()
def dense_bomb(case: Case, choose: Chooser) -> str:
    """A dimension so large that the dense form exceeds the byte limit; sizes kept consistent."""
    d = choose.integer(0, len(case.shape) - 1)
    factor = pick(choose, [2**26, 2**31 - 1, 10**12, 2**62])  # > FUZZ_DENSE_LIMIT
    old = case.shape[d]
    case.shape[d] = old * factor if case.dim_limit is None else case.dim_limit // old * old
    for k, lvl in enumerate(case.levels):
        if lvl.dim == d and lvl.part is not LevelPart.ELEMENT and k < len(case.dense_sizes):
            if case.dense_sizes[k] is not None:
                case.dense_sizes[k] = lvl.size(case.shape[d])
    return r"dense form of shape .* needs \d+ bytes, over the dense byte limit of \d+ bytes$"


# -- TFLite-only: the fields that describe the layout itself
@defect(lambda c: len(c.traversal_order) >= 1, tflite_only=True)
def traversal_not_permutation(case: Case, choose: Chooser) -> str:
    order = case.traversal_order
    i = choose.integer(0, len(order) - 1)
    if len(order) >= 2 and flag(choose):
        j = pick(choose, [j for j in range(len(order)) if j != i])
        order[i] = order[j]
    else:
        order[i] = pick(choose, [-1, len(order), len(order) + 1, 2**31 - 1, -(2**31)])
    return rf"traversal_order \[.*\] is not a permutation of range\({len(order)}\)"


@defect(lambda c: bool(c.block_map), tflite_only=True)
def block_map_nowhere(case: Case, choose: Chooser) -> str:
    j = choose.integer(0, len(case.block_map) - 1)
    n = len(case.shape)
    if len(case.block_map) >= 2 and flag(choose):
        case.block_map[j] = case.block_map[1 - j if j < 2 else 0]
    else:
        case.block_map[j] = pick(choose, [-1, n, n + 1, 2**31 - 1])
    return rf"block_map \[.*\] must name distinct dimensions in range\({n}\)"


def _element_levels(case: Case) -> list[int]:
    return [k for k, lvl in enumerate(case.levels) if lvl.part is LevelPart.ELEMENT]


@defect(lambda c: bool(c.formats and _element_levels(c)), tflite_only=True)
def block_not_dividing(case: Case, choose: Chooser) -> str:
    k = pick(choose, _element_levels(case))
    d = case.levels[k].dim
    size = case.shape[d]
    block = pick(choose, [b for b in range(2, size + 2) if size % b])
    case.dense_sizes[k] = block
    return rf"block size {block} does not divide dimension {d} of size {size}$"


@defect(lambda c: bool(c.formats and _element_levels(c)), tflite_only=True)
def block_size_not_positive(case: Case, choose: Chooser) -> str:
    k = pick(choose, _element_levels(case))
    value = pick(choose, [0, -1, -4, -(2**31)])
    case.dense_sizes[k] = value
    return rf"level {k}: block size \(dense_size\) {value} must be positive$"


def _whole_dense(case: Case) -> list[int]:
    return [
        k
        for k, f in enumerate(case.formats)
        if f == "DENSE" and case.levels[k].part is not LevelPart.ELEMENT
    ]


@defect(lambda c: bool(_whole_dense(c)), tflite_only=True)
def dense_size_mismatch(case: Case, choose: Chooser) -> str:
    k = pick(choose, _whole_dense(case))
    size = case.level_size(k)
    value = pick(choose, [size + 1, size + 7, 0, -1, 2**31 - 1, -(2**31)])
    case.dense_sizes[k] = value
    return (
        rf"{case.label(k)}: dense_size {value} disagrees with the level size {size} implied by "
        rf"shape"
    )


@defect(lambda c: bool(c.formats), tflite_only=True)
def unknown_format(case: Case, choose: Chooser) -> str:
    k = choose.integer(0, len(case.formats) - 1)
    case.formats[k] = pick(choose, ["SPARSE_COO", "dense", "", None, 2])
    return rf"dim_metadata\[{k}\] format .* is not DENSE or SPARSE_CSR$"


@defect(lambda c: bool(c.formats), tflite_only=True)
def metadata_count(case: Case, choose: Chooser) -> str:
    levels = len(case.formats)
    case.extra_levels = -1 if flag(choose) else choose.integer(1, 2)
    return rf"{levels + case.extra_levels} dim_metadata entries for {levels} levels$"


@defect(lambda c: bool(c.formats and _element_levels(c)), tflite_only=True)
def sparse_block_level(case: Case, choose: Chooser) -> str:
    """Both levels of a blocked dimension SPARSE_CSR: nothing states the block size, so the
    layout is unsupported, not malformed (one of them DENSE states it)."""
    k = pick(choose, _element_levels(case))
    d = case.levels[k].dim
    outer = next(
        i for i, lvl in enumerate(case.levels) if lvl.dim == d and lvl.part is LevelPart.BLOCK
    )
    case.formats[k] = case.formats[outer] = "SPARSE_CSR"
    return (
        rf"levels {outer} and {k} \(the blocks and the in-block part of dimension {d}\) are "
        "both SPARSE_CSR"
    )


# ---------------------------------------------------------------------- havoc
def havoc_array(arr: Any, choose: Chooser) -> Any:
    """One random edit of a 1-D array: cut, grow, poke a boundary value, reorder, retype."""
    try:
        arr = np.asarray(arr)
    except ValueError:  # a ragged list left by an earlier edit
        arr = np.zeros(0, np.int32)
    if arr.ndim != 1 or arr.dtype.kind not in "biuf":  # start again from a small int vector
        return np.zeros(choose.integer(0, 2), np.int32)
    kind = choose.integer(0, 7)
    n = arr.shape[0] if arr.ndim else 0
    if kind == 0 and n:
        return arr[: choose.integer(0, n - 1)]
    if kind == 1:
        extra = arr[:1] if n else np.zeros(1, arr.dtype if arr.dtype.kind in "iuf" else np.int32)
        return np.concatenate([arr, np.repeat(extra, choose.integer(1, 3))])
    if kind == 2 and n and arr.dtype.kind in "iub":
        return put(
            arr.astype(np.int64) if arr.dtype.kind == "b" else arr,
            choose.integer(0, n - 1),
            interesting_int(choose, [n, int(arr.max())]),
        )
    if kind == 3 and n > 1:
        i = choose.integer(0, n - 2)
        out = arr.copy()
        out[[i, i + 1]] = out[[i + 1, i]]
        return out
    if kind == 4 and n > 1:
        i = choose.integer(1, n - 1)
        out = arr.copy()
        out[i] = out[i - 1]
        return out
    if kind == 5:
        dtype = pick(choose, [np.int8, np.uint8, np.uint16, np.int32, np.uint64, np.float32])
        with np.errstate(all="ignore"):
            return arr.astype(dtype)
    if kind == 6:
        return arr.reshape(-1, 1) if flag(choose) else arr[::-1].copy()
    return pick(choose, [None, [], [[1, 2], [3]], "abc", np.array(["x"]), 2.5])


def havoc(case: Case, choose: Chooser, *, tflite: bool) -> str:
    """Apply 1-4 random edits; returns a short description of what was edited."""
    edits = []
    for _ in range(choose.integer(1, 4)):
        targets = ["values", "shape"]
        targets += [f"positions {k}" for k, p in enumerate(case.positions) if p is not None]
        targets += [f"coordinates {k}" for k, c in enumerate(case.coordinates) if c is not None]
        if tflite:
            targets += ["traversal_order", "block_map", "dense_size", "format"]
        target = pick(choose, targets)
        edits.append(target)
        kind, _, k = target.partition(" ")
        if kind in ("positions", "coordinates"):
            buffers = getattr(case, kind)
            buffers[int(k)] = havoc_array(buffers[int(k)], choose)
        elif kind == "values":
            case.values = havoc_array(case.values, choose)
        elif kind == "shape":
            if case.shape:
                d = choose.integer(0, len(case.shape) - 1)
                case.shape[d] = interesting_int(choose, case.shape)
        elif kind in ("traversal_order", "block_map"):
            setattr(case, kind, havoc_array(getattr(case, kind), choose))
        elif kind == "dense_size" and case.dense_sizes:
            k2 = choose.integer(0, len(case.dense_sizes) - 1)
            case.dense_sizes[k2] = interesting_int(choose, [math.prod(case.shape)])
        elif kind == "format" and case.formats:
            k2 = choose.integer(0, len(case.formats) - 1)
            case.formats[k2] = "DENSE" if case.formats[k2] != "DENSE" else "SPARSE_CSR"
    return ", ".join(edits)


def relayout(case: Case, choose: Chooser) -> str:
    """IR only: change one level's format or properties, keeping the buffers."""
    k = choose.integer(0, len(case.levels) - 1)
    levels = list(case.levels)
    ordered = flag(choose)
    unique = flag(choose)
    levels[k] = replace(
        levels[k], format=pick(choose, list(LevelFormat)), unique=unique, ordered=ordered
    )
    case.levels = tuple(levels)
    return f"level {k} -> {levels[k]}"
