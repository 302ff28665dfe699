"""The ``sell`` layout (sliced ELLPACK over column panels): arrays, counts, panel inference.

NumPy only (runs in both environments). Every layout is decoded back and compared with the
matrix it came from, over random shapes, densities, panel widths and seeds.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from sparse_import.planning.sell import LANES, PANELS, panel_of, sell_arrays, sell_vectors

SHAPES = [(1, 1), (16, 32), (17, 33), (37, 70), (300, 7), (5, 1000), (64, 129), (128, 256)]


def decode(arrays, shape, panel):
    """The dense matrix a layout stores (the inverse of ``sell_arrays``)."""
    values, columns, offsets = arrays
    rows, cols = shape
    slices, panels = -(-rows // LANES), -(-cols // panel)
    dense = np.zeros((slices * LANES, panels * panel), values.dtype)
    vectors = values.reshape(-1, LANES)
    local = columns.reshape(-1, LANES).astype(np.int64)
    for group in range(slices * panels):
        s, p = divmod(group, panels)
        for k in range(offsets[group], offsets[group + 1]):
            for lane in range(LANES):
                dense[s * LANES + lane, p * panel + local[k, lane]] += vectors[k, lane]
    return dense[:rows, :cols]


@pytest.mark.parametrize("panel", PANELS)
@pytest.mark.parametrize("shape", SHAPES)
def test_layout_round_trips(shape, panel):
    for seed in range(4):
        rng = np.random.default_rng(seed)
        density = [0.0, 0.01, 0.2, 1.0][seed]
        matrix = sp.random_array(shape, density=density, format="csr", rng=rng, dtype=np.float32)
        arrays = sell_arrays(matrix, panel)
        np.testing.assert_array_equal(decode(arrays, shape, panel), matrix.toarray())
        values, columns, offsets = arrays
        assert values.dtype == np.float32 and columns.dtype == np.uint8
        assert offsets.dtype == np.int32 and offsets[0] == 0 and np.all(np.diff(offsets) >= 0)
        assert int(columns.max(initial=0)) < panel
        vectors, groups = sell_vectors(matrix, panel)
        assert vectors == offsets[-1] and groups + 1 == offsets.size
        # each (slice, panel) has exactly as many vectors as its longest row has values there
        dense = matrix.toarray() != 0
        rows, cols = shape
        padded = np.zeros((-(-rows // LANES) * LANES, -(-cols // panel) * panel), bool)
        padded[:rows, :cols] = dense
        per_row = padded.reshape(-1, LANES, padded.shape[1] // panel, panel).sum(axis=3)
        np.testing.assert_array_equal(np.diff(offsets), per_row.max(axis=1).ravel())
        assert panel_of(rows, cols, offsets.size) <= panel


def test_explicit_zeros_are_kept():
    matrix = sp.csr_array(
        (np.array([0.0, 2.0], np.float32), np.array([3, 5]), np.array([0, 2])), shape=(1, 8)
    )
    values, columns, _ = sell_arrays(matrix)
    assert values.size == 2 * LANES and sorted(columns.reshape(-1, LANES)[:, 0]) == [3, 5]


def test_panel_inference():
    assert panel_of(2048, 2048, 128 * 64 + 1) == 32
    assert panel_of(2048, 2048, 128 * 32 + 1) == 64
    assert panel_of(2048, 2048, 128 * 16 + 1) == 128
    assert panel_of(20, 30, 2 + 1) == 32  # one panel: the layouts coincide
    with pytest.raises(ValueError, match="no panel width"):
        panel_of(2048, 2048, 7)
    with pytest.raises(ValueError, match="panel width 48"):
        sell_arrays(sp.csr_array(np.eye(4, dtype=np.float32)), 48)
