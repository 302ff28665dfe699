"""Storage levels: the MLIR ``sparse_tensor`` vocabulary.

*Dimensions* are the axes of the logical tensor; *levels* are the axes of storage. Each level
indexes one dimension, either whole (``d1``) or one part of a block decomposition
(``d1 floordiv 4`` for the block coordinate, ``d1 mod 4`` for the position inside the block).
Stored indices are *coordinates*; offsets into them are *positions*.

A level's format says how it is stored:

- ``DENSE``: every coordinate of the level, nothing stored.
- ``COMPRESSED``: per parent entry a segment ``positions[p]:positions[p + 1]`` of coordinates.
- ``SINGLETON``: exactly one coordinate per parent entry (the trailing levels of COO).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class LevelFormat(enum.Enum):
    """How one storage level is stored."""

    DENSE = "dense"
    COMPRESSED = "compressed"
    SINGLETON = "singleton"


class LevelPart(enum.Enum):
    """Which part of its dimension a level indexes."""

    WHOLE = "whole"  # d
    BLOCK = "block"  # d floordiv block
    ELEMENT = "element"  # d mod block


@dataclass(frozen=True)
class Level:
    """One storage level: the dimension it indexes, which part of it, and its format.

    Parameters
    ----------
    dim : int
        The dimension this level indexes.
    format : LevelFormat
        Dense, compressed or singleton.
    part : LevelPart
        ``WHOLE`` (``d``), ``BLOCK`` (``d floordiv block``) or ``ELEMENT`` (``d mod block``).
    block : int
        The block size along ``dim``; 1 for a ``WHOLE`` level.
    unique : bool
        Whether a coordinate appears at most once per parent (``False`` for the first level of COO
        with more than one dimension).
    ordered : bool
        Whether coordinates are sorted within each parent.

    Examples
    --------
    >>> from sparse_import import Level, LevelFormat, LevelPart
    >>> str(Level(1, LevelFormat.COMPRESSED, LevelPart.BLOCK, 4))
    'd1 floordiv 4 : compressed'
    """

    dim: int
    format: LevelFormat = LevelFormat.DENSE
    part: LevelPart = LevelPart.WHOLE
    block: int = 1
    unique: bool = True
    ordered: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.dim, int) or isinstance(self.dim, bool) or self.dim < 0:
            raise ValueError(f"{self.dim=} is not a non-negative int")
        if not isinstance(self.format, LevelFormat):
            raise ValueError(f"{self.format=} is not a LevelFormat")
        if not isinstance(self.part, LevelPart):
            raise ValueError(f"{self.part=} is not a LevelPart")
        if not isinstance(self.block, int) or isinstance(self.block, bool) or self.block < 1:
            raise ValueError(f"{self.block=} is not a positive int")
        if self.part is LevelPart.WHOLE and self.block != 1:
            raise ValueError(f"{self.block=} must be 1 for a WHOLE level")

    def size(self, extent: int) -> int:
        """Number of coordinates of this level for a dimension of size ``extent``."""
        if self.part is LevelPart.WHOLE:
            return extent
        if self.part is LevelPart.BLOCK:
            return extent // self.block
        return self.block

    @property
    def scale(self) -> int:
        """How many steps along ``dim`` one coordinate of this level moves."""
        return self.block if self.part is LevelPart.BLOCK else 1

    @property
    def expr(self) -> str:
        """The level expression in MLIR syntax: ``d1``, ``d1 floordiv 4``, ``d1 mod 4``."""
        if self.part is LevelPart.WHOLE:
            return f"d{self.dim}"
        op = "floordiv" if self.part is LevelPart.BLOCK else "mod"
        return f"d{self.dim} {op} {self.block}"

    def __str__(self) -> str:
        flags = (("nonunique", not self.unique), ("nonordered", not self.ordered))
        props = [p for p, on in flags if on]
        fmt = self.format.value + (f"({', '.join(props)})" if props else "")
        return f"{self.expr} : {fmt}"
