"""What :mod:`sparse_import.planning` imports from :mod:`sparse_import.kernels`, under TVM 0.27.

The cost model (:mod:`sparse_import.planning.roofline`) asks :mod:`sparse_import.kernels` for the
host's vector width (``Simd``, ``target.resolve``) and the batch tiling (``matmul.tiles``). That
package is written against TVM 0.19's ``tvm.tir`` and cannot be imported under TVM 0.27 (the
package is ``tvm.tirx`` there). :func:`install` registers, only when the import fails, a module
with those three pure-Python pieces under the same names; TVM 0.19 installs are left untouched.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

from .target import resolve, simd_lanes

__all__ = ["install"]

ACCUMULATORS = 16  # as sparse_import.kernels.matmul.ACCUMULATORS


def matmul_tile(width: int, block_rows: int, lanes: int) -> int:
    """As :func:`sparse_import.kernels.matmul.matmul_tile`."""
    if width < lanes:
        return width
    vectors = max(1, min(ACCUMULATORS // block_rows, width // lanes))
    return lanes * 2 ** (vectors.bit_length() - 1)


def tiles(width: int, block_rows: int, lanes: int) -> tuple[tuple[int, int], int, list[int]]:
    """As :func:`sparse_import.kernels.matmul.tiles`."""
    tile = matmul_tile(width, block_rows, lanes)
    count, rest = divmod(width, tile)
    vectors, partial = divmod(rest, lanes)
    sizes = [lanes << bit for bit in reversed(range(vectors.bit_length())) if vectors >> bit & 1]
    return (tile, count), count * tile, sizes + ([partial] if partial else [])


@dataclass(frozen=True)
class Simd:
    """The ``width`` (bytes per vector) of :class:`sparse_import.kernels.Simd`."""

    width: int

    @classmethod
    def from_target(cls, target) -> Simd:
        return cls(simd_lanes(target, "uint8"))


def install() -> None:
    """Register the stand-ins when :mod:`sparse_import.kernels` does not import."""
    try:
        import sparse_import.kernels  # noqa: F401
    except ImportError:
        pass
    else:
        return
    package = types.ModuleType("sparse_import.kernels")
    package.__path__ = []
    package.Simd = Simd
    target = types.ModuleType("sparse_import.kernels.target")
    target.resolve = resolve
    matmul = types.ModuleType("sparse_import.kernels.matmul")
    matmul.tiles, matmul.matmul_tile, matmul.ACCUMULATORS = tiles, matmul_tile, ACCUMULATORS
    package.target, package.matmul = target, matmul
    sys.modules.update(
        {
            "sparse_import.kernels": package,
            "sparse_import.kernels.target": target,
            "sparse_import.kernels.matmul": matmul,
        }
    )
