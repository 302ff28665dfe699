"""Sparsity-pattern pictures ("spy plots") of sparse weights.

A weight of shape ``(d0, d1, ..., dn)`` is drawn as the matrix ``(d0, d1 * ... * dn)`` (rank 1
as one row). Each entry is one of three kinds: a stored nonzero, a stored zero (an explicit zero
the format keeps, such as the padding inside a stored block) or absent (nothing stored). A
matrix larger than the picture is shrunk by an integer factor, each cell showing the darkest
entry of its tile (nonzero over stored zero over absent).

:func:`spy_image` gives the bare pattern as grey pixels; :func:`write_spy` draws a readable
figure with matplotlib (Agg): the weight's name, shape and density as the title, row and column
tick labels in entries, the scale (entries per cell), a legend with the count of each kind, and
a minimum height so that a thin weight such as ``7x576`` is not a 7-pixel strip. The title is
also stored in the PNG's ``Title`` text chunk.

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

import io
import math
import re
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._format import shape_text, short_name
from .tensor import SparseTensor

__all__ = ["SpyFigure", "png_bytes", "spy_figure", "spy_filename", "spy_image", "write_spy"]

# Grey level of each kind of entry; the darkest entry of a tile wins when shrinking.
EMPTY, STORED_ZERO, NONZERO = 255, 170, 0
# Colours of the figure, by darkness code (0 absent, 1 stored zero, 2 nonzero).
COLOURS = ("#ffffff", "#f28e2b", "#1b365d")
KIND_LABELS = ("not stored", "stored zero", "nonzero")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Figure geometry in pixels (at 100 dpi): the plot's longest side, the shortest side a thin
# weight is stretched to, the smallest figure width (room for the title) and the margins.
PLOT_SIDE, MIN_PLOT_SIDE, MIN_FIGURE_WIDTH = 640, 160, 520
LEFT, RIGHT, TOP, BOTTOM = 72, 24, 64, 88
_DPI = 100


def _matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return 1, shape[0]
    return shape[0], math.prod(shape[1:])


def _darkness(tensor: SparseTensor, shrink: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per tile of ``shrink`` (rows, columns) entries its darkest kind, and each kind's count."""
    rows, cols = _matrix_shape(tensor.shape)
    height, width = max(1, math.ceil(rows / shrink[0])), max(1, math.ceil(cols / shrink[1]))
    coords, values = tensor.coo()
    if tensor.rank >= 2:
        row = coords[:, 0]
        col = np.ravel_multi_index(tuple(coords[:, 1:].T), tensor.shape[1:])
    else:
        row = np.zeros(len(values), dtype=np.int64)
        col = coords[:, 0] if tensor.rank == 1 else row
    kind = np.where(values != 0, 2, 1).astype(np.uint8)
    darkness = np.zeros((height, width), dtype=np.uint8)
    np.maximum.at(darkness, (row // shrink[0], col // shrink[1]), kind)
    nonzero = int(np.count_nonzero(kind == 2))
    counts = np.array([rows * cols - len(values), len(values) - nonzero, nonzero], np.int64)
    return darkness, counts


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
    darkness, _ = _darkness(tensor, (shrink, shrink))
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


@dataclass(frozen=True)
class SpyFigure:
    """A rendered spy plot.

    Attributes
    ----------
    png : bytes
        The PNG file (RGBA), with ``Title`` and ``Description`` text chunks.
    title : str
        The title as drawn and as stored: ``"name  7x576 float32"``.
    subtitle : str
        The second title line: nonzeros, density and scale.
    size : tuple of int
        ``(width, height)`` of the PNG in pixels.
    plot : tuple of int
        ``(left, top, width, height)`` of the matrix inside the PNG, in pixels.
    shrink : tuple of int
        Entries per cell along rows and columns (``(1, 1)``: one cell per entry); each axis
        longer than the plot is shrunk on its own, so a ``2x70000`` weight keeps its two rows.
    """

    png: bytes
    title: str
    subtitle: str
    size: tuple[int, int]
    plot: tuple[int, int, int, int]
    shrink: tuple[int, int]


def _plot_size(rows: int, cols: int) -> tuple[tuple[int, int], int, int]:
    """``(shrink, plot width, plot height)``: integer cells, thin sides stretched."""
    shrink = (max(1, math.ceil(rows / PLOT_SIDE)), max(1, math.ceil(cols / PLOT_SIDE)))
    height, width = max(1, math.ceil(rows / shrink[0])), max(1, math.ceil(cols / shrink[1]))
    cell = max(1, PLOT_SIDE // max(height, width))
    return (
        shrink,
        width * max(cell, math.ceil(MIN_PLOT_SIDE / width)),
        height * max(cell, math.ceil(MIN_PLOT_SIDE / height)),
    )


def spy_figure(tensor: SparseTensor, name: str | None = None) -> SpyFigure:
    """Draw the sparsity pattern of ``tensor`` as a titled figure with axes and a legend.

    Parameters
    ----------
    tensor : SparseTensor
        Any layout and rank (drawn as ``(d0, d1 * ... * dn)``).
    name : str, optional
        The weight's name in its model; defaults to ``tensor.name``.

    Returns
    -------
    SpyFigure

    Examples
    --------
    >>> import numpy as np
    >>> from sparse_import import SparseTensor
    >>> from sparse_import.layouts import csr_layout
    >>> fig = spy_figure(SparseTensor.from_dense(np.eye(7, 576), csr_layout()), "fc/weight")
    >>> fig.title, fig.size
    ('fc/weight  7x576 float64', (672, 313))
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    name = name or tensor.name or "(unnamed)"
    rows, cols = _matrix_shape(tensor.shape)
    shrink, plot_w, plot_h = _plot_size(rows, cols)
    darkness, counts = _darkness(tensor, shrink)
    total = max(rows * cols, 1)
    fig_w, fig_h = max(plot_w + LEFT + RIGHT, MIN_FIGURE_WIDTH), plot_h + TOP + BOTTOM
    left = LEFT + (fig_w - LEFT - RIGHT - plot_w) // 2

    title = f"{short_name(name, max(24, fig_w // 9))}  {shape_text(tensor.shape)} {tensor.dtype}"
    scale = "1 cell = 1 entry"
    if shrink != (1, 1):
        scale = "1 cell = {}x{} entries (darkest)".format(*shrink)
    subtitle = f"nnz {counts[2]:,} of {total:,} ({100 * counts[2] / total:.1f} %), {scale}"

    fig = Figure(figsize=(fig_w / _DPI, fig_h / _DPI), dpi=_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((left / fig_w, BOTTOM / fig_h, plot_w / fig_w, plot_h / fig_h))
    ax.imshow(
        darkness, cmap=ListedColormap(COLOURS), vmin=0, vmax=2, interpolation="nearest",
        aspect="auto", extent=(0, cols, rows, 0),
    )  # fmt: skip
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(nbins="auto", integer=True))
    for spine in ax.spines.values():  # outside the cells, so edge cells keep their colour
        spine.set_position(("outward", 2))
    ax.tick_params(labelsize=8)
    dims = "d1" if tensor.rank == 2 else f"d1..d{tensor.rank - 1} flattened"
    ax.set_xlabel("column" if tensor.rank < 2 else f"column ({dims})", fontsize=9)
    ax.set_ylabel("row (d0)" if tensor.rank >= 2 else "", fontsize=9)
    fig.text(0.5, 1 - 20 / fig_h, title, ha="center", va="center", fontsize=11, weight="bold")
    fig.text(0.5, 1 - 42 / fig_h, subtitle, ha="center", va="center", fontsize=9)
    handles = [
        Patch(facecolor=c, edgecolor="#666666", label=f"{k} ({n:,})")
        for c, k, n in zip(COLOURS[::-1], KIND_LABELS[::-1], counts[::-1], strict=True)
    ]
    fig.legend(
        handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False,
        bbox_to_anchor=(0.5, 0.0),
    )  # fmt: skip
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, metadata={"Title": title, "Description": subtitle})
    return SpyFigure(
        buffer.getvalue(), title, subtitle, (fig_w, fig_h), (left, TOP, plot_w, plot_h), shrink
    )


def spy_filename(name: str, taken: Iterable[str] = ()) -> str:
    """A file name for the spy plot of weight ``name``: safe characters, unique among ``taken``.

    Only the first of TFLite's ``;``-joined fused names is kept; other characters than letters,
    digits, ``-``, ``_`` and ``.`` become ``_``; a clash (ignoring case) gets ``-2``, ``-3``...

    Examples
    --------
    >>> spy_filename("model/fc1/MatMul;model/fc1/BiasAdd", taken=["model_fc1_MatMul.png"])
    'model_fc1_MatMul-2.png'
    """
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name.split(";")[0]).strip("._-")[:80] or "weight"
    used = {t.lower() for t in taken}
    candidate, n = f"{stem}.png", 1
    while candidate.lower() in used:
        n += 1
        candidate = f"{stem}-{n}.png"
    return candidate


def write_spy(tensor: SparseTensor, path: str | Path, name: str | None = None) -> Path:
    """Write the spy plot of ``tensor`` (:func:`spy_figure`) to ``path`` as a PNG.

    Parameters
    ----------
    tensor : SparseTensor
    path : str or pathlib.Path
        The file to write (its directory must exist).
    name : str, optional
        The weight's name in its model; defaults to ``tensor.name``.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    path.write_bytes(spy_figure(tensor, name).png)
    return path
