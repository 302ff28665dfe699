"""Property tests over random layouts: exact round trips against dense NumPy."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from sparse_import.adapters.tflite.params import to_tflite_params
from strategies import dense_arrays, index_dtype_for, layouts

from sparse_import import LevelFormat, SparseTensor, from_tflite_params

SETTINGS = settings(max_examples=150, deadline=None)


@st.composite
def tensors(draw, tflite=False):
    shape, levels = draw(layouts(tflite=tflite))
    dense = draw(dense_arrays(shape))
    idx = draw(st.sampled_from(index_dtype_for(levels, shape)))
    return dense, SparseTensor.from_dense(dense, levels, name="t", index_dtype=idx), idx


def _same_buffers(a: SparseTensor, b: SparseTensor) -> bool:
    def eq(x, y):
        return (x is None and y is None) or (
            x is not None and y is not None and np.array_equal(x, y)
        )

    return (
        a.shape == b.shape
        and a.levels == b.levels
        and all(eq(x, y) for x, y in zip(a.positions, b.positions, strict=True))
        and all(eq(x, y) for x, y in zip(a.coordinates, b.coordinates, strict=True))
        and np.array_equal(a.values, b.values)
        and a.dtype == b.dtype
    )


@SETTINGS
@given(tensors())
def test_decode_inverts_encode(case):
    dense, t, _ = case
    info = t.validate()
    assert info.nnz == t.nnz
    out = t.to_dense()
    assert out.dtype == dense.dtype
    np.testing.assert_array_equal(out, dense)


@SETTINGS
@given(tensors())
def test_encoding_is_deterministic_and_minimal(case):
    dense, t, idx = case
    again = SparseTensor.from_dense(t.to_dense(), t.levels, name="t", index_dtype=idx)
    assert _same_buffers(t, again)
    # every stored value lies in the dense array at its coordinates
    coords, values = t.coo()
    np.testing.assert_array_equal(dense[tuple(coords.T)], values)
    # a compressed level stores no coordinate whose sub-tree is all zero: every stored value
    # is nonzero unless it sits inside a dense level below a kept coordinate
    if all(lvl.format is not LevelFormat.DENSE for lvl in t.levels):
        assert np.all(values != 0)


@SETTINGS
@given(tensors(tflite=True))
def test_tflite_params_round_trip(case):
    dense, t, _ = case
    fields = to_tflite_params(t)
    back = from_tflite_params(shape=t.shape, name="t", **fields)
    assert _same_buffers(t, back)
    np.testing.assert_array_equal(back.to_dense(), dense)


@SETTINGS
@given(tensors(), st.randoms(use_true_random=False))
def test_transpose_is_a_relabelling(case, random):
    dense, t, _ = case
    perm = list(range(t.rank))
    random.shuffle(perm)
    tt = t.transpose(tuple(perm))
    assert t.nnz == 0 or np.shares_memory(tt.values, t.values)  # no copy
    np.testing.assert_array_equal(tt.to_dense(), dense.transpose(perm))
