"""TFLite's own FormatConverter unit-test vectors: decode and encode bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sparse_import.adapters.tflite.params import to_tflite_params

from sparse_import import SparseTensor, from_tflite_params

HERE = Path(__file__).parent
VECTORS = HERE / "fixtures" / "tflite_format_converter.json"
SHARED = HERE.parents[1] / "shared" / "vectors" / "tflite_format_converter.json"
CASES = json.loads(VECTORS.read_text())["vectors"]


def test_vectors_are_the_shared_ones():
    assert len(CASES) == 18
    if SHARED.exists():  # the committed copy must not drift from the shared original
        assert json.loads(SHARED.read_text()) == json.loads(VECTORS.read_text())


def _raw_fields(case: dict) -> dict:
    n = len(case["dense_shape"])
    meta = case["expected_dim_metadata"]
    dim_metadata = []
    for level, expanded in enumerate(case["traversal_order"]):
        dense = expanded >= n or case["format"][expanded] == "D"
        if dense:
            dim_metadata.append({"format": "DENSE", "dense_size": meta[str(2 * level)][0]})
        else:
            dim_metadata.append(
                {
                    "format": "SPARSE_CSR",
                    "array_segments": np.array(meta[str(2 * level)], np.int32),
                    "array_indices": np.array(meta[str(2 * level + 1)], np.int32),
                }
            )
    return {
        "shape": case["dense_shape"],
        "traversal_order": case["traversal_order"],
        "block_map": case["block_map"],
        "dim_metadata": dim_metadata,
        "values": np.array(case["expected_data"], np.float32),
        "name": case["name"],
    }


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_decode_matches_dense(case):
    tensor = from_tflite_params(**_raw_fields(case))
    expected = np.array(case["dense_values"], np.float32).reshape(case["dense_shape"])
    np.testing.assert_array_equal(tensor.to_dense(), expected)
    assert tensor.block_shape == tuple(
        case["block_size"][case["block_map"].index(d)] if d in case["block_map"] else 1
        for d in range(len(case["dense_shape"]))
    )


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_encode_matches_tflite(case):
    levels = from_tflite_params(**_raw_fields(case)).levels
    dense = np.array(case["dense_values"], np.float32).reshape(case["dense_shape"])
    encoded = to_tflite_params(SparseTensor.from_dense(dense, levels, name=case["name"]))
    assert encoded["traversal_order"] == case["traversal_order"]
    assert encoded["block_map"] == case["block_map"]
    got = {}
    for level, meta in enumerate(encoded["dim_metadata"]):
        if meta["format"] == "DENSE":
            got[str(2 * level)] = [meta["dense_size"]]
        else:
            got[str(2 * level)] = meta["array_segments"].tolist()
            got[str(2 * level + 1)] = meta["array_indices"].tolist()
    assert got == case["expected_dim_metadata"]
    assert encoded["values"].tolist() == case["expected_data"]
