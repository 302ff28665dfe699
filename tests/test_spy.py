"""Spy plots read back from their PNG: size, pixels per cell, title (drawn and in tEXt)."""

from __future__ import annotations

import io
import math
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.image import imread
from sparse_import.adapters.tflite import read_sparse_tensors

from sparse_import import SparseTensor
from sparse_import._format import shape_text
from sparse_import.layouts import bsr_layout, coo_layout, csr_layout
from sparse_import.pipeline import demo_model, load_model
from sparse_import.spy import (
    BOTTOM,
    COLOURS,
    LEFT,
    MIN_FIGURE_WIDTH,
    MIN_PLOT_SIDE,
    PLOT_SIDE,
    RIGHT,
    TOP,
    spy_figure,
    spy_filename,
)

FIXTURES = Path(__file__).parent / "fixtures" / "tflite"
# Figure bounds for any weight: the plot is at most PLOT_SIDE and at least MIN_PLOT_SIDE a side.
MAX_SIZE = (PLOT_SIDE + LEFT + RIGHT, PLOT_SIDE + TOP + BOTTOM)
MIN_SIZE = (MIN_FIGURE_WIDTH, MIN_PLOT_SIDE + TOP + BOTTOM)


def _fixture_weights() -> list[tuple[str, SparseTensor]]:
    weights = []
    for path in sorted(FIXTURES.glob("*.tflite")):
        for tensor in read_sparse_tensors(path.read_bytes()).values():
            weights.append((f"{path.stem}:{tensor.name}", tensor))
    return weights


WEIGHTS = _fixture_weights()


@pytest.fixture(scope="module")
def onnx_weights() -> list[SparseTensor]:
    loaded = load_model(demo_model("onnx"), shape_dict={"x": (1, 64)})
    return [w.source for w in loaded.imported.weights]


def png_text(data: bytes) -> tuple[tuple[int, int], dict[str, str]]:
    """``(width, height)`` from IHDR and the ``tEXt`` chunks of a PNG, CRCs checked."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, size, text = 8, None, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0] == zlib.crc32(
            kind + body
        )
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"tEXt":
            key, value = body.split(b"\0", 1)
            text[key.decode("latin-1")] = value.decode("latin-1")
        pos += 12 + length
    assert size is not None
    return size, text


def expected_cells(tensor: SparseTensor, shrink: tuple[int, int]) -> np.ndarray:
    """Oracle: per tile the darkest kind (2 nonzero, 1 stored zero, 0 absent) from dense math."""
    dense = tensor.to_dense()
    matrix = dense.reshape(dense.shape[0], -1) if dense.ndim >= 2 else dense.reshape(1, -1)
    stored = np.zeros(matrix.shape, bool)
    coords, _ = tensor.coo()
    flat = np.ravel_multi_index(tuple(coords.T), tensor.shape) if tensor.rank else [0]
    stored.reshape(-1)[flat] = True
    kind = np.where(matrix != 0, 2, np.where(stored, 1, 0))
    rows, cols = matrix.shape
    (r, c), h, w = shrink, math.ceil(rows / shrink[0]), math.ceil(cols / shrink[1])
    padded = np.zeros((h * r, w * c), int)
    padded[:rows, :cols] = kind
    return padded.reshape(h, r, w, c).max(axis=(1, 3))


def check_figure(tensor: SparseTensor, name: str) -> None:
    fig = spy_figure(tensor, name)
    size, text = png_text(fig.png)
    # Size: what the figure says, within the bounds for thin and square weights.
    assert size == fig.size
    assert MIN_SIZE[0] <= size[0] <= max(MAX_SIZE[0], MIN_FIGURE_WIDTH)
    assert MIN_SIZE[1] <= size[1] <= MAX_SIZE[1]
    # Title: the weight's name (first fused name) and shape, in tEXt and as drawn.
    assert text["Title"] == fig.title and text["Description"] == fig.subtitle
    first = name.split(";")[0]
    assert fig.title.startswith(first[: len(first) if len(first) <= 24 else 10])
    assert f"  {shape_text(tensor.shape)} " in fig.title
    pixels = imread(io.BytesIO(fig.png))[..., :3]
    assert pixels.shape[:2] == (size[1], size[0])
    band = slice(0, 32)
    assert (pixels[band].min(axis=2) < 0.3).any(), "the title band has no ink"
    alone = Figure(figsize=(size[0] / 100, size[1] / 100), dpi=100)
    FigureCanvasAgg(alone)
    alone.text(0.5, 1 - 20 / size[1], fig.title, ha="center", va="center", fontsize=11,
               weight="bold")  # fmt: skip
    buffer = io.BytesIO()
    alone.savefig(buffer, format="png", dpi=100)
    buffer.seek(0)
    np.testing.assert_allclose(pixels[band], imread(buffer)[band, :, :3], atol=2 / 255)
    # Pixels: the centre of every cell has the colour of its tile's darkest entry.
    left, top, width, height = fig.plot
    cells = expected_cells(tensor, fig.shrink)
    h, w = cells.shape
    assert width % w == 0 and height % h == 0 and width >= MIN_PLOT_SIDE <= height
    ys = top + (np.arange(h) * height + height // 2) // h
    xs = left + (np.arange(w) * width + width // 2) // w
    colours = np.array([to_rgb(c) for c in COLOURS])
    np.testing.assert_allclose(pixels[np.ix_(ys, xs)], colours[cells], atol=2 / 255)


@pytest.mark.parametrize(("label", "tensor"), WEIGHTS, ids=[w[0] for w in WEIGHTS])
def test_spy_plot_of_every_tflite_fixture_weight(label, tensor):
    check_figure(tensor, tensor.name)


def test_spy_plot_of_the_onnx_demo_weights(onnx_weights):
    assert [w.name for w in onnx_weights] == ["fc1.weight", "fc2.weight"]
    for weight in onnx_weights:
        check_figure(weight, weight.name)


@pytest.mark.parametrize("seed", range(6))
def test_spy_plot_of_random_thin_square_and_large_weights(seed):
    rng = np.random.default_rng(seed)
    shapes = [(int(rng.integers(1, 12)), int(rng.integers(200, 3000))),  # thin
              (int(rng.integers(200, 3000)), int(rng.integers(1, 4))),  # tall
              (int(rng.integers(1, 700)),) * 2]  # fmt: skip
    for shape in shapes:
        dense = np.where(rng.random(shape) < 0.05, rng.standard_normal(shape), 0.0)
        tensor = SparseTensor.from_dense(dense, coo_layout(2), name=f"w{seed}")
        check_figure(tensor, tensor.name)


def test_thin_weight_is_stretched_not_a_strip(rng):
    dense = np.where(rng.random((7, 576)) < 0.3, 1.0, 0.0)
    fig = spy_figure(SparseTensor.from_dense(dense, csr_layout()), "fc/weight")
    _, _, width, height = fig.plot
    assert (width, height) == (576, 7 * 23) and fig.shrink == (1, 1)
    assert fig.title == "fc/weight  7x576 float64"


def test_large_weight_states_its_scale(rng):
    dense = np.where(rng.random((1300, 2000)) < 0.001, 1.0, 0.0)
    fig = spy_figure(SparseTensor.from_dense(dense, csr_layout()), "big")
    assert fig.shrink == (3, 4) and "1 cell = 3x4 entries (darkest)" in fig.subtitle
    check_figure(SparseTensor.from_dense(dense, csr_layout()), "big")


def test_very_thin_weight_keeps_its_rows(rng):
    dense = np.where(rng.random((2, 70000)) < 0.0005, 1.0, 0.0)
    fig = spy_figure(SparseTensor.from_dense(dense, csr_layout()), "w")
    assert fig.shrink == (1, 110) and "1 cell = 1x110 entries (darkest)" in fig.subtitle
    check_figure(SparseTensor.from_dense(dense, csr_layout()), "w")


def test_stored_zeros_have_their_own_colour_and_count():
    dense = np.zeros((4, 8))
    dense[0, 0] = 1.0  # the 1x4 block at (0, 0) stores three zeros
    fig = spy_figure(SparseTensor.from_dense(dense, bsr_layout((1, 4))), "fc/weight")
    assert "nnz 1 of 32 (3.1 %)" in fig.subtitle
    pixels = imread(io.BytesIO(fig.png))[..., :3]
    left, top, width, height = fig.plot
    centre = [pixels[top + height // 8, left + (2 * j + 1) * width // 16] for j in range(5)]
    expected = [COLOURS[2], COLOURS[1], COLOURS[1], COLOURS[1], COLOURS[0]]
    np.testing.assert_allclose(centre, [to_rgb(c) for c in expected], atol=2 / 255)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=40), min_size=1, max_size=8))
def test_spy_filenames_are_safe_and_unique(names):
    taken: list[str] = []
    for name in names:
        file = spy_filename(name, taken)
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*\.png", file), file
        assert file.lower() not in {t.lower() for t in taken}
        taken.append(file)


def test_spy_filename_keeps_the_first_fused_name():
    assert spy_filename("m/fc1/MatMul;m/fc1/BiasAdd") == "m_fc1_MatMul.png"
    assert spy_filename("fc.weight", ["FC.weight.png"]) == "fc.weight-2.png"
    assert spy_filename(";") == "weight.png"
