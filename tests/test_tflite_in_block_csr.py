"""TFLite layouts whose in-block levels are SPARSE_CSR.

The schema lets any level be SPARSE_CSR, in-block levels included; such a level has no
``dense_size``, so its block size follows from the dense shape and the DENSE block level of the
same dimension (5 x 7 blocks of a 10 x 21 tensor: 2 and 3 blocks). LiteRT's own converter does
not decode these layouts, so the oracles here are the dense array the tensor was encoded from and
an independent, element-by-element reading of the TFLite fields.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from fuzz.fields import Case
from fuzz.tflite_model import pack, unpack, write_case
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sparse_import.adapters.tflite import from_tflite_params, read_sparse_tensors, to_tflite_params
from strategies import dense_arrays, layouts

import sparse_import
from sparse_import import (
    Level,
    LevelFormat,
    LevelPart,
    SparseFormatError,
    SparseTensor,
    UnsupportedSparsityError,
)
from sparse_import.relay_backend.build import build, run

D, C = LevelFormat.DENSE, LevelFormat.COMPRESSED
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reference_decode(shape, traversal_order, block_map, dim_metadata, values) -> np.ndarray:
    """Read TFLite sparsity fields one stored value at a time, as the schema describes them.

    Level ``i`` walks expanded dimension ``traversal_order[i]`` (``n + j``: the in-block part of
    ``block_map[j]``); a DENSE level visits ``0 .. size - 1``, a SPARSE_CSR level the indices of
    its segment for the parent's position. Block sizes: a DENSE in-block level's ``dense_size``,
    else the dimension divided by the block count of its DENSE block level.
    """
    n = len(shape)
    block = {}
    for j, d in enumerate(block_map):
        inner = dim_metadata[traversal_order.index(n + j)]
        outer = dim_metadata[traversal_order.index(d)]
        block[d] = (
            inner["dense_size"] if inner["format"] == "DENSE" else shape[d] // outer["dense_size"]
        )
    dense = np.zeros(shape, dtype=np.asarray(values).dtype)
    out = iter(values)

    def walk(level: int, position: int, coords: dict[int, int]) -> int:
        if level == len(traversal_order):
            index = [0] * n
            for e, c in coords.items():
                d = e if e < n else block_map[e - n]
                index[d] += c * block[d] if e < n and d in block else c
            dense[tuple(index)] = next(out)
            return 0
        meta = dim_metadata[level]
        e = traversal_order[level]
        if meta["format"] == "DENSE":
            children = [(c, position * meta["dense_size"] + c) for c in range(meta["dense_size"])]
        else:
            lo, hi = meta["array_segments"][position], meta["array_segments"][position + 1]
            children = [(int(meta["array_indices"][p]), p) for p in range(lo, hi)]
        for c, child in children:
            walk(level + 1, child, {**coords, e: c})
        return 0

    walk(0, 0, {})
    return dense


@SETTINGS
@given(layouts(tflite=True, compressed_in_block=True), st.data())
def test_compressed_in_block_levels_round_trip_and_decode_as_the_fields_say(layout, data):
    shape, levels = layout
    dense = data.draw(dense_arrays(shape, dtypes=[np.float32, np.int8]))
    t = SparseTensor.from_dense(dense, levels, name="w")
    fields = to_tflite_params(t)
    back = from_tflite_params(shape=shape, name="w", **fields)
    assert back.levels == t.levels
    np.testing.assert_array_equal(back.to_dense(), dense)
    plain = {
        **fields,
        "dim_metadata": [
            {k: (np.asarray(v).tolist() if k.startswith("array") else v) for k, v in m.items()}
            for m in fields["dim_metadata"]
        ],
    }
    np.testing.assert_array_equal(reference_decode(list(shape), **plain), dense)


def _blocked(shape, block, inner_formats, outer_formats=(D, D)) -> tuple[Level, ...]:
    """Block levels of both dimensions first (formats ``outer_formats``), then the in-block ones."""
    return (
        Level(0, outer_formats[0], LevelPart.BLOCK, block[0]),
        Level(1, outer_formats[1], LevelPart.BLOCK, block[1]),
        Level(0, inner_formats[0], LevelPart.ELEMENT, block[0]),
        Level(1, inner_formats[1], LevelPart.ELEMENT, block[1]),
    )


# 5 x 7 blocks of a 10 x 21 tensor, as in NNAPI's DENSIFY tests, and other shapes
GOLDEN = [((10, 21), (5, 7)), ((4, 6), (2, 3)), ((8, 4), (4, 1)), ((3, 12), (1, 4))]


@pytest.mark.parametrize(("shape", "block"), GOLDEN)
@pytest.mark.parametrize("inner", list(itertools.product((D, C), repeat=2)))
def test_block_sizes_follow_from_the_dense_block_levels(shape, block, inner):
    rng = np.random.default_rng(sum(shape) + 10 * sum(inner is C for inner in inner))
    dense = (rng.random(shape) < 0.2) * rng.integers(1, 9, shape).astype(np.float32)
    t = SparseTensor.from_dense(dense, _blocked(shape, block, inner), name="w")
    fields = to_tflite_params(t)
    for k, fmt in zip((2, 3), inner, strict=True):
        assert fields["dim_metadata"][k]["format"] == ("DENSE" if fmt is D else "SPARSE_CSR")
    back = from_tflite_params(shape=shape, name="w", **fields)
    assert back.block_shape == block
    np.testing.assert_array_equal(back.to_dense(), dense)


def test_both_levels_of_a_dimension_compressed_states_no_block_size():
    t = SparseTensor.from_dense(np.eye(4, dtype=np.float32), _blocked((4, 4), (2, 2), (D, D)))
    fields = to_tflite_params(t)
    fields["dim_metadata"][0] = {
        "format": "SPARSE_CSR",
        "array_segments": np.array([0, 2]),
        "array_indices": np.array([0, 1]),
    }
    fields["dim_metadata"][2] = {
        "format": "SPARSE_CSR",
        "array_segments": np.arange(5),
        "array_indices": np.zeros(4, int),
    }
    with pytest.raises(
        UnsupportedSparsityError,
        match=r"^sparse tensor 'w': levels 0 and 2 \(the blocks and the in-block part of "
        r"dimension 0\) are both SPARSE_CSR, so neither states the block size$",
    ):
        from_tflite_params(shape=(4, 4), name="w", **fields)
    compressed = SparseTensor.from_dense(
        np.eye(4, dtype=np.float32), _blocked((4, 4), (2, 2), (C, D), (C, D)), name="w"
    )
    with pytest.raises(
        UnsupportedSparsityError, match=r"^sparse tensor 'w': level 2 .* is a compressed in-block"
    ):
        to_tflite_params(compressed)


@pytest.mark.parametrize("count", [0, 3, -2])
def test_a_block_count_that_does_not_divide_the_dimension_is_refused(count):
    t = SparseTensor.from_dense(np.eye(4, dtype=np.float32), _blocked((4, 4), (2, 2), (C, D)))
    fields = to_tflite_params(t)
    fields["dim_metadata"][0] = {"format": "DENSE", "dense_size": count}
    with pytest.raises(
        SparseFormatError,
        match=rf"^sparse tensor 'w': level 0: dense_size {count} blocks does not divide "
        r"dimension 0 of size 4 \(level 2, its in-block part, is SPARSE_CSR\)$",
    ):
        from_tflite_params(shape=(4, 4), name="w", **fields)


@pytest.fixture(scope="module")
def densify_only() -> bytes:
    """The fixture's DENSIFY (sparse tensor 0 -> output 1) beside its untouched input."""
    model = unpack("handmade_densify_output.tflite")
    graph = model.subgraphs[0]
    graph.operators = graph.operators[:1]
    graph.outputs = np.array([1], np.int32)
    return pack(model)


@pytest.mark.slow
@pytest.mark.parametrize(("shape", "block"), GOLDEN[:2])
def test_a_densify_of_such_a_tensor_reads_and_computes_the_dense_array(shape, block, densify_only):
    from fuzz.tflite_model import schema

    rng = np.random.default_rng(shape[0])
    dense = (rng.random(shape) < 0.3) * rng.standard_normal(shape).astype(np.float32)
    t = SparseTensor.from_dense(dense, _blocked(shape, block, (C, C)), name="w")
    model = schema().ModelT.InitFromPackedBuf(densify_only, 0)
    write_case(model, 0, Case.of(t))
    model.subgraphs[0].tensors[1].shape = np.array(shape, np.int32)
    file = pack(model)
    (read,) = read_sparse_tensors(file).values()
    np.testing.assert_array_equal(read.to_dense(), dense)
    mod, params = sparse_import.to_relay(file, mode="dense")
    feed = {
        p.name_hint: np.zeros([int(d) for d in p.type_annotation.shape], p.type_annotation.dtype)
        for p in mod["main"].params
        if p.name_hint not in params
    }
    (out,) = run(build(mod, params), feed)
    np.testing.assert_array_equal(out, dense)
