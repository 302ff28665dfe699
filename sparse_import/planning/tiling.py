"""How a batch-``n`` sparse product tiles the columns of ``X.T``: shared by the kernels that
compute it and the cost model that prices it.

Columns go into tiles of a power-of-two count of whole vectors, at most ``ACCUMULATORS`` of
them, and the rest into shorter tiles (power-of-two counts of vectors, then one partial vector).
Pure Python: the Relay kernels (:mod:`sparse_import.kernels.matmul`), the Relax ones and
:mod:`.roofline` import it alike.

Examples
--------
>>> tiles(100, 1, 16)  # 16 lanes: one tile of 64 columns, then 32, then a partial 4
((64, 1), 64, [32, 4])
"""

from __future__ import annotations

__all__ = ["ACCUMULATORS", "matmul_tile", "tiles"]

ACCUMULATORS = 16
"""Vector accumulators per block row and tile (x86-64 has 16 vector registers, AVX-512 32)."""


def matmul_tile(width: int, block_rows: int, lanes: int) -> int:
    """Columns of ``X`` per tile: a power-of-two count of whole vectors, at most what
    ``ACCUMULATORS`` hold for ``block_rows`` rows and ``width`` fills (``width`` if shorter than
    a vector). LLVM lowers other vector lengths (192 lanes, say) up to 5x slower."""
    if width < lanes:
        return width
    vectors = max(1, min(ACCUMULATORS // block_rows, width // lanes))
    return lanes * 2 ** (vectors.bit_length() - 1)


def tiles(width: int, block_rows: int, lanes: int) -> tuple[tuple[int, int], int, list[int]]:
    """``((tile, count), start of the rest, [sizes of the rest])``: ``count`` tiles of ``tile``
    columns, then shorter ones: power-of-two counts of whole vectors, then a partial vector."""
    tile = matmul_tile(width, block_rows, lanes)
    count, rest = divmod(width, tile)
    vectors, partial = divmod(rest, lanes)
    sizes = [lanes << bit for bit in reversed(range(vectors.bit_length())) if vectors >> bit & 1]
    return (tile, count), count * tile, sizes + ([partial] if partial else [])
