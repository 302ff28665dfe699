"""The sparse-format IR: one immutable tensor type for every sparse weight.

A :class:`SparseTensor` is a dense *shape*, a tuple of storage :class:`~sparse_import.Level`
(the dim-to-level map plus a format per level), the per-level *positions* and *coordinates*
buffers, and the *values* buffer in storage order. Explicit zeros inside stored blocks are kept.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _checks, _codec
from .errors import DenseLimitError, SparseFormatError, tensor_label
from .levels import Level, LevelPart
from .limits import get_dense_byte_limit

if TYPE_CHECKING:
    import scipy.sparse


def _frozen(array: Any, what: str) -> np.ndarray:
    """A read-only 1-D view of ``array`` (no copy when it already is an ndarray)."""
    try:
        out = np.asarray(array)
    except ValueError:  # a ragged nested sequence
        raise SparseFormatError(f"{what} is not a 1-D array: {array!r:.80}") from None
    if out.ndim != 1:
        raise SparseFormatError(f"{what} must be 1-D, got shape {out.shape}")
    out = out.view()
    out.flags.writeable = False
    return out


@dataclass(frozen=True, eq=False)
class Quantization:
    """Affine quantization metadata, carried through untouched: ``real = scale * (q - zero_point)``.

    Parameters
    ----------
    scale : ndarray, shape () or (channels,)
    zero_point : ndarray, shape () or (channels,)
    axis : int or None
        The quantized dimension for per-channel parameters, ``None`` for per-tensor.
    """

    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None = None

    def __post_init__(self) -> None:
        scale = np.array(self.scale, dtype=np.float64 if np.ndim(self.scale) else None)
        zero = np.array(self.zero_point)
        for arr in (scale, zero):
            arr.flags.writeable = False
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "zero_point", zero)
        if scale.ndim > 1 or zero.ndim > 1:
            raise ValueError(f"quantization scale/zero_point must be 0-D or 1-D, got {scale.shape}")
        if zero.size not in (1, scale.size):
            raise ValueError(f"{zero.size=} does not match {scale.size=}")


@dataclass(frozen=True, eq=False)
class SparseTensor:
    """An immutable sparse tensor described with MLIR ``sparse_tensor`` levels.

    Parameters
    ----------
    shape : tuple of int, length rank
        The dense shape (the *dimensions*).
    levels : tuple of Level
        The storage levels, outermost first; together they form the dim-to-level map.
    positions : tuple of (ndarray or None)
        One entry per level: for a ``COMPRESSED`` level the 1-D integer array of segment starts,
        shape ``(parent_count + 1,)``; ``None`` otherwise.
    coordinates : tuple of (ndarray or None)
        One entry per level: for ``COMPRESSED`` and ``SINGLETON`` levels the 1-D integer array of
        stored coordinates; ``None`` for ``DENSE``.
    values : ndarray, shape (nnz,)
        Stored values in storage order (explicit zeros kept).
    name : str, optional
        The tensor's name in its model, used in every error message.
    quantization : Quantization, optional
        Carried through untouched.

    Construction checks the structure in O(levels): a valid dim-to-level map, buffers present
    where the formats need them, lengths that agree level by level, and the dense size against
    the dense byte limit (:class:`DenseLimitError`, before any allocation). :meth:`validate` adds
    the full O(nnz) scan.

    Examples
    --------
    >>> import numpy as np
    >>> from sparse_import import SparseTensor
    >>> from sparse_import.layouts import csr_layout
    >>> t = SparseTensor.from_dense(np.array([[0, 1.5], [2.0, 0]]), csr_layout(), name="w")
    >>> t.nnz, t.positions[1].tolist(), t.coordinates[1].tolist()
    (2, [0, 1, 2], [1, 0])
    >>> t.to_dense()
    array([[0. , 1.5],
           [2. , 0. ]])
    """

    shape: tuple[int, ...]
    levels: tuple[Level, ...]
    positions: tuple[np.ndarray | None, ...]
    coordinates: tuple[np.ndarray | None, ...]
    values: np.ndarray
    name: str | None = None
    quantization: Quantization | None = field(default=None)

    def __post_init__(self) -> None:
        label = tensor_label(self.name)
        shape = _checks.check_shape(self.shape, label)
        levels = tuple(self.levels)
        _checks.check_level_map(shape, levels, label)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "levels", levels)
        values = _frozen(self.values, f"{label}: values")
        _checks.check_values_dtype(values.dtype, label)
        object.__setattr__(self, "values", values)
        _checks.check_dense_limit(shape, values.dtype, label, get_dense_byte_limit())
        positions, coordinates = _checks.check_buffers(
            levels, self.positions, self.coordinates, label, _frozen
        )
        object.__setattr__(self, "positions", positions)
        object.__setattr__(self, "coordinates", coordinates)
        _checks.check_counts(shape, levels, positions, coordinates, values, label)
        if self.quantization is not None:
            _checks.check_quantization(shape, self.quantization, label)

    # ----------------------------------------------------------------- derived facts
    @property
    def dtype(self) -> np.dtype:
        """The dtype of the stored values."""
        return self.values.dtype

    @property
    def rank(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def nnz(self) -> int:
        """Number of stored values (explicit zeros inside stored blocks included)."""
        return int(self.values.shape[0])

    @property
    def size(self) -> int:
        """Number of elements of the dense form."""
        return math.prod(self.shape)

    @property
    def density(self) -> float:
        """``nnz / size`` (1.0 for an empty shape)."""
        return self.nnz / self.size if self.size else 1.0

    @property
    def dense_nbytes(self) -> int:
        """Bytes of the dense form."""
        return self.size * self.values.dtype.itemsize

    @property
    def stored_nbytes(self) -> int:
        """Bytes of all stored buffers: values, positions and coordinates."""
        arrays = [a for a in (*self.positions, *self.coordinates) if a is not None]
        return int(self.values.nbytes + sum(a.nbytes for a in arrays))

    @property
    def level_sizes(self) -> tuple[int, ...]:
        """Number of coordinates of each level."""
        return tuple(lvl.size(self.shape[lvl.dim]) for lvl in self.levels)

    @property
    def block_shape(self) -> tuple[int, ...]:
        """Block size along each dimension (1 where a dimension is not blocked)."""
        blocks = [1] * self.rank
        for lvl in self.levels:
            if lvl.part is LevelPart.BLOCK:
                blocks[lvl.dim] = lvl.block
        return tuple(blocks)

    @property
    def index_dtypes(self) -> tuple[str | None, ...]:
        """Per level, the dtype name of its stored coordinates (``None`` for dense levels)."""
        return tuple(None if c is None else c.dtype.name for c in self.coordinates)

    @property
    def index_widths(self) -> str:
        """The dtypes of the stored index buffers, level by level, e.g. ``"d1: uint16/uint8"``
        (positions/coordinates; singleton levels have coordinates only); ``""`` if none."""
        parts = []
        for lvl, pos, crd in zip(self.levels, self.positions, self.coordinates, strict=True):
            if crd is not None:
                widths = crd.dtype.name if pos is None else f"{pos.dtype.name}/{crd.dtype.name}"
                parts.append(f"{lvl.expr}: {widths}")
        return ", ".join(parts)

    @property
    def layout(self) -> str:
        """The levels in MLIR syntax, e.g. ``(d0 : dense, d1 : compressed)``."""
        return "(" + ", ".join(str(lvl) for lvl in self.levels) + ")"

    def is_layout(self, levels: tuple[Level, ...]) -> bool:
        """Whether this tensor is stored as ``levels`` describe, up to trivial block splits.

        ``d floordiv 1`` equals ``d`` and a dense ``d mod 1`` level stores nothing, so
        TFLite's ``(d0 : dense, d1 floordiv 4 : compressed, d1 mod 4 : dense)`` is
        ``bsr_layout((1, 4))``.
        """
        from .layouts import canonical

        return canonical(self.levels) == canonical(tuple(levels))

    # ----------------------------------------------------------------- validation
    def validate(self) -> _checks.LayoutInfo:
        """Full O(nnz) check of every invariant; returns a summary of the layout.

        Checks, level by level: positions start at 0 and never decrease, coordinates lie inside
        the level, coordinates are sorted and unique where the level says so (lexicographically
        across a ``compressed(nonunique)`` + ``singleton`` chain).

        Raises
        ------
        SparseFormatError
            Naming the tensor, the level and the first offending position and values.
        """
        return self._info

    @cached_property
    def _info(self) -> _checks.LayoutInfo:
        return _checks.full_check(self)

    # ----------------------------------------------------------------- conversions
    def linear_offsets(self) -> np.ndarray:
        """Row-major offset into the dense form of every stored value, shape ``(nnz,)``, int64."""
        self.validate()
        return _codec.linear_offsets(self)

    def to_dense(self, *, max_bytes: int | None = None) -> np.ndarray:
        """The dense ndarray, exactly; refuses a dense form over ``max_bytes`` (default: the limit).

        Raises
        ------
        DenseLimitError
            When the dense form would exceed ``max_bytes`` (checked before allocating).
        """
        limit = get_dense_byte_limit() if max_bytes is None else max_bytes
        if self.dense_nbytes > limit:
            raise DenseLimitError(
                f"{tensor_label(self.name)}: dense form of shape {self.shape} needs "
                f"{self.dense_nbytes} bytes, over the limit of {limit} bytes"
            )
        self.validate()
        return _codec.to_dense(self)

    def coo(self) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates and values of every stored value, in storage order.

        Returns
        -------
        coords : ndarray, shape (nnz, rank), int64
        values : ndarray, shape (nnz,)
        """
        offsets = self.linear_offsets()
        if self.rank == 0:
            return np.zeros((offsets.size, 0), np.int64), self.values
        coords = np.stack(np.unravel_index(offsets, self.shape), axis=1).astype(np.int64)
        return coords, self.values

    def to_scipy(
        self, format: str = "csr", blocksize: tuple[int, int] | None = None
    ) -> scipy.sparse.sparray:
        """A SciPy sparse array (rank 2) holding the stored values, explicit zeros included.

        Parameters
        ----------
        format : {"csr", "csc", "coo", "bsr"}
        blocksize : (int, int), optional
            For ``"bsr"``; defaults to this tensor's own block shape.
        """
        from ._to_scipy import to_scipy

        return to_scipy(self, format=format, blocksize=blocksize)

    # ----------------------------------------------------------------- cheap transforms
    def transpose(self, perm: tuple[int, ...] | None = None) -> SparseTensor:
        """Permute the dimensions in O(levels): the buffers are shared, the levels relabelled.

        ``result.to_dense() == self.to_dense().transpose(perm)``; a CSR tensor becomes CSC.
        """
        perm = tuple(reversed(range(self.rank))) if perm is None else tuple(perm)
        if sorted(perm) != list(range(self.rank)):
            raise ValueError(f"{perm=} is not a permutation of {self.rank} dimensions")
        inverse = {old: new for new, old in enumerate(perm)}
        levels = tuple(replace(lvl, dim=inverse[lvl.dim]) for lvl in self.levels)
        shape = tuple(self.shape[p] for p in perm)
        quant = self.quantization
        if quant is not None and quant.axis is not None:
            quant = replace(quant, axis=inverse[quant.axis])
        return replace(self, shape=shape, levels=levels, quantization=quant)

    def reshape(self, shape: tuple[int, ...]) -> SparseTensor:
        """Row-major reshape, as ``numpy.reshape`` on the dense form, without densifying.

        The same tensor is returned when ``shape`` equals its shape; otherwise the stored values
        are re-addressed by their linear offsets (unchanged by a row-major reshape) into a
        sorted CSR (rank 2) or COO tensor, in O(nnz log nnz).

        Raises
        ------
        ValueError
            When the sizes differ, naming the tensor.
        SparseFormatError, UnsupportedSparsityError
            When ``shape`` is not a shape (negative or non-integer dimensions, rank above 64).
        """
        from .layouts import coo_layout, csr_layout

        shape = _checks.check_shape(shape, tensor_label(self.name))
        if shape == self.shape:
            return self
        if math.prod(shape) != self.size:
            raise ValueError(f"{tensor_label(self.name)}: cannot reshape {self.shape} into {shape}")
        offsets = self.linear_offsets()
        order = np.argsort(offsets, kind="stable")
        coords = np.unravel_index(offsets[order], shape)
        values = self.values[order]
        if len(shape) == 2 and offsets.size:
            # sorted offsets are sorted rows, then sorted columns: CSR directly
            indptr = np.concatenate(([0], np.cumsum(np.bincount(coords[0], minlength=shape[0]))))
            return SparseTensor(
                shape,
                csr_layout(),
                (None, indptr),
                (None, coords[1]),
                values,
                self.name,
                self.quantization,
            )
        positions = (np.array([0, offsets.size], dtype=np.int64),) + (None,) * (len(shape) - 1)
        return SparseTensor(
            shape,
            coo_layout(len(shape)),
            positions,
            tuple(coords),
            values,
            self.name,
            self.quantization,
        )

    def astype(self, dtype: Any) -> SparseTensor:
        """The same layout with values cast to ``dtype`` (no copy when it already matches)."""
        dtype = np.dtype(dtype)
        if dtype == self.dtype:
            return self
        return replace(self, values=self.values.astype(dtype))

    def renamed(self, name: str | None) -> SparseTensor:
        """The same tensor (shared buffers) under another name, keeping a completed
        :meth:`validate`, so a tensor that a file stores once but names twice is scanned once."""
        out = copy.copy(self)  # shares the frozen buffers and a completed validation
        object.__setattr__(out, "name", name)
        return out

    def with_values(self, values: np.ndarray) -> SparseTensor:
        """The same layout with new stored values (same length)."""
        return replace(self, values=values)

    @classmethod
    def from_dense(
        cls,
        array: Any,
        levels: tuple[Level, ...],
        *,
        name: str | None = None,
        quantization: Quantization | None = None,
        index_dtype: Any = None,
    ) -> SparseTensor:
        """Encode a dense array into ``levels``, bit for bit as TFLite's FormatConverter does.

        A dense level stores every coordinate under a kept parent; a compressed level keeps a
        coordinate when the sub-tree below it holds a nonzero; the values of every kept leaf are
        stored, zeros included.

        Parameters
        ----------
        array : array_like, shape (d0, ..., dn)
        levels : tuple of Level
        index_dtype : dtype, optional
            Dtype of positions and coordinates; default int32 unless int64 is needed.
        """
        array = np.asarray(array)
        label = tensor_label(name)
        _checks.check_level_map(_checks.check_shape(array.shape, label), tuple(levels), label)
        positions, coordinates, values = _codec.encode(array, levels, index_dtype)
        return cls(array.shape, levels, positions, coordinates, values, name, quantization)
