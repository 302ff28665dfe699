"""Common level layouts, spelled with :class:`~sparse_import.Level`.

Examples
--------
>>> from sparse_import.layouts import bsr_layout
>>> [str(level) for level in bsr_layout((2, 4))]
['d0 floordiv 2 : dense', 'd1 floordiv 4 : compressed', 'd0 mod 2 : dense', 'd1 mod 4 : dense']
>>> [str(level) for level in bsr_layout((1, 4))]
['d0 : dense', 'd1 floordiv 4 : compressed', 'd1 mod 4 : dense']
"""

from __future__ import annotations

from .levels import Level, LevelFormat, LevelPart

DENSE, COMPRESSED, SINGLETON = LevelFormat.DENSE, LevelFormat.COMPRESSED, LevelFormat.SINGLETON
BLOCK, ELEMENT = LevelPart.BLOCK, LevelPart.ELEMENT


def dense_layout(rank: int) -> tuple[Level, ...]:
    """All levels dense, row-major: ``(d0 : dense, ..., d{rank-1} : dense)``."""
    return tuple(Level(d) for d in range(rank))


def csr_layout() -> tuple[Level, ...]:
    """Compressed sparse rows: ``(d0 : dense, d1 : compressed)``."""
    return (Level(0), Level(1, COMPRESSED))


def csc_layout() -> tuple[Level, ...]:
    """Compressed sparse columns: ``(d1 : dense, d0 : compressed)``."""
    return (Level(1), Level(0, COMPRESSED))


def bsr_layout(blocksize: tuple[int, int]) -> tuple[Level, ...]:
    """Block sparse rows with ``(r, c)`` blocks stored row-major, as SciPy's BSR.

    Levels: ``d0 floordiv r : dense, d1 floordiv c : compressed, d0 mod r : dense,
    d1 mod c : dense``, in canonical form: a dimension with block size 1 is one whole level, so
    ``bsr_layout((1, 4))`` is ``(d0 : dense, d1 floordiv 4 : compressed, d1 mod 4 : dense)``,
    TFLite's 1x4 FULLY_CONNECTED layout, and ``bsr_layout((1, 1))`` is CSR.
    """
    r, c = blocksize
    return canonical(
        (
            Level(0, DENSE, BLOCK, r),
            Level(1, COMPRESSED, BLOCK, c),
            Level(0, DENSE, ELEMENT, r),
            Level(1, DENSE, ELEMENT, c),
        )
    )


def canonical(levels: tuple[Level, ...]) -> tuple[Level, ...]:
    """The same storage without trivial block splits.

    A ``d floordiv 1`` level is the whole dimension ``d``, and a dense ``d mod 1`` level has a
    single coordinate and stores nothing, so it is dropped. Buffers are unchanged, which makes
    two layouts that differ only by such splits describe identical storage.
    """
    out = []
    for lvl in levels:
        if lvl.block == 1 and lvl.part is ELEMENT and lvl.format is DENSE:
            continue
        if lvl.block == 1 and lvl.part is BLOCK:
            lvl = Level(lvl.dim, lvl.format, unique=lvl.unique, ordered=lvl.ordered)
        out.append(lvl)
    return tuple(out)


def coo_layout(rank: int) -> tuple[Level, ...]:
    """Sorted coordinate lists, as MLIR spells COO.

    ``(d0 : compressed(nonunique), d1 : singleton(nonunique), ..., d{rank-1} : singleton)``:
    only the full coordinate tuple is unique. For rank 1 the single level is an ordinary unique
    compressed level.
    """
    if rank == 1:
        return (Level(0, COMPRESSED),)
    return (
        Level(0, COMPRESSED, unique=False),
        *(Level(d, SINGLETON, unique=False) for d in range(1, rank - 1)),
        Level(rank - 1, SINGLETON),
    )
