"""Sparsity-pattern pictures ("spy plots") of sparse weights, written as PNG with NumPy and zlib.

A weight of shape ``(d0, d1, ..., dn)`` is drawn as the matrix ``(d0, d1 * ... * dn)`` (rank 1
as one row): one pixel per entry, black where a nonzero value is stored, grey where a stored
value is zero (the padding inside a stored block), white where nothing is stored. A matrix
larger than ``max_side`` is shrunk by an integer factor, each pixel showing the darkest entry of
its tile (block max); a small one is enlarged by an integer factor up to ``min_side``.

Examples
--------
>>> import numpy as np
>>> from sparse_import import SparseTensor
>>> from sparse_import.layouts import csr_layout
>>> from sparse_import.spy import spy_image
>>> w = SparseTensor.from_dense(np.array([[1.0, 0.0], [0.0, 2.0]]), csr_layout())
>>> spy_image(w, min_side=2)
array([[  0, 255],
       [255,   0]], dtype=uint8)
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np

from .tensor import SparseTensor

__all__ = ["png_bytes", "spy_image", "write_spy"]

# Grey level of each kind of entry; the darkest entry of a tile wins when shrinking.
EMPTY, STORED_ZERO, NONZERO = 255, 170, 0
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return 1, shape[0]
    return shape[0], math.prod(shape[1:])


def spy_image(tensor: SparseTensor, *, max_side: int = 1024, min_side: int = 256) -> np.ndarray:
    """The sparsity pattern of ``tensor`` as an 8-bit grey image.

    Parameters
    ----------
    tensor : SparseTensor
        Any layout and rank; only the stored coordinates are read (nothing dense is allocated
        beyond the picture itself).
    max_side : int, optional
        Longest side of the picture; larger matrices are shrunk by ``ceil(side / max_side)``.
    min_side : int, optional
        Smaller matrices are enlarged by ``min_side // side`` (nearest neighbour).

    Returns
    -------
    numpy.ndarray
        ``(height, width)`` uint8: ``0`` nonzero, ``170`` stored zero, ``255`` nothing stored.
    """
    if max_side < 1 or min_side < 1:
        raise ValueError(f"max_side={max_side} and min_side={min_side} must be positive")
    rows, cols = _matrix_shape(tensor.shape)
    side = max(rows, cols, 1)
    shrink = max(1, math.ceil(side / max_side))
    grow = max(1, min_side // side) if shrink == 1 else 1
    height, width = max(1, math.ceil(rows / shrink)), max(1, math.ceil(cols / shrink))

    coords, values = tensor.coo()
    if tensor.rank >= 2:
        row = coords[:, 0]
        col = np.ravel_multi_index(tuple(coords[:, 1:].T), tensor.shape[1:])
    else:
        row = np.zeros(len(values), dtype=np.int64)
        col = coords[:, 0] if tensor.rank == 1 else row
    # Darkness: 0 empty, 1 stored zero, 2 nonzero; the maximum over a tile is its pixel.
    darkness = np.zeros((height, width), dtype=np.uint8)
    np.maximum.at(darkness, (row // shrink, col // shrink), np.where(values != 0, 2, 1))
    image = np.array([EMPTY, STORED_ZERO, NONZERO], dtype=np.uint8)[darkness]
    if grow > 1:
        image = np.repeat(np.repeat(image, grow, axis=0), grow, axis=1)
    return image


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(image: np.ndarray) -> bytes:
    """Encode a ``(height, width)`` uint8 grey image as a PNG file.

    Parameters
    ----------
    image : numpy.ndarray
        ``(height, width)`` uint8.

    Returns
    -------
    bytes
        An 8-bit greyscale PNG (no filtering, zlib level 9).
    """
    if image.ndim != 2 or image.dtype != np.uint8 or 0 in image.shape:
        raise ValueError(
            f"expected a non-empty (height, width) uint8 image, got {image.dtype} {image.shape}"
        )
    height, width = image.shape
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey, no interlace
    rows = np.concatenate([np.zeros((height, 1), np.uint8), image], axis=1)  # filter byte 0
    return b"".join(
        (
            _PNG_SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(rows.tobytes(), 9)),
            _chunk(b"IEND", b""),
        )
    )


def write_spy(tensor: SparseTensor, path: str | Path, **options: int) -> Path:
    """Write the sparsity pattern of ``tensor`` to ``path`` as a PNG.

    Parameters
    ----------
    tensor : SparseTensor
    path : str or pathlib.Path
        The file to write (its directory must exist).
    **options
        ``max_side`` and ``min_side`` of :func:`spy_image`.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    path.write_bytes(png_bytes(spy_image(tensor, **options)))
    return path
