"""Reading sparse tensors out of .tflite files, checked against LiteRT and the manifest.

LiteRT's own densified view (the output tensor of each DENSIFY op, kept with
``experimental_preserve_all_tensors``) is the oracle for the decoded values; the manifest, written
from LiteRT's flatbuffer object API, is the oracle for the stored layout.
"""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from sparse_import.adapters.tflite import import_model, read_sparse_tensors
from tflite_support import (
    FIXTURES,
    assert_matches_litert,
    edit,
    fixture_bytes,
    inputs_for,
    insert_densify,
    litert_all_tensors,
    manifest,
    operators,
)

from sparse_import import LevelFormat
from sparse_import.relay_backend import lower
from sparse_import.relay_backend.build import build

ALL = sorted(manifest())


@pytest.mark.parametrize("name", ALL)
def test_reader_finds_the_layout_the_manifest_describes(name):
    tensors = read_sparse_tensors(FIXTURES / name)
    described = manifest()[name]["sparse_tensors"]
    assert sorted(tensors) == sorted(t["tensor_index"] for t in described)
    for entry in described:
        tensor = tensors[entry["tensor_index"]]
        assert tensor.name == entry["name"]
        assert tensor.shape == tuple(entry["shape"])
        assert tensor.dtype == np.dtype(entry["dtype"])
        assert tensor.nnz == entry["stored_values"]
        assert len(tensor.levels) == len(entry["levels"])
        for k, level in enumerate(entry["levels"]):
            compressed = level["format"] == "SPARSE_CSR"
            assert (tensor.levels[k].format is LevelFormat.COMPRESSED) == compressed
            if compressed:
                assert tensor.positions[k].dtype == np.dtype(level["segments_type"])
                assert tensor.coordinates[k].dtype == np.dtype(level["indices_type"])
                assert tensor.positions[k].size == level["segments_length"]
                assert tensor.coordinates[k].size == level["indices_length"]
            else:
                assert tensor.level_sizes[k] == level["dense_size"]
        quantization = entry["quantization"]
        if quantization is None:
            assert tensor.quantization is None
        else:
            np.testing.assert_allclose(
                np.atleast_1d(tensor.quantization.scale), quantization["scale"], rtol=1e-7
            )
            np.testing.assert_array_equal(
                np.atleast_1d(tensor.quantization.zero_point), quantization["zero_point"]
            )
            if len(quantization["scale"]) > 1:
                assert tensor.quantization.axis == quantization["axis"]


def test_fixtures_cover_every_index_vector_type_and_a_fully_dense_layout():
    dtypes, all_dense = set(), False
    for name in ALL:
        for tensor in read_sparse_tensors(FIXTURES / name).values():
            dtypes |= {
                a.dtype.name for a in (*tensor.positions, *tensor.coordinates) if a is not None
            }
            all_dense |= all(level.format is LevelFormat.DENSE for level in tensor.levels)
    assert {"uint8", "uint16", "int32"} <= dtypes
    assert all_dense


@pytest.mark.parametrize("name", ALL)
def test_decoded_tensors_equal_litert_densify_outputs(name):
    """Each sparse tensor goes through a DENSIFY (the converter's own, or one put in front of
    the operators that read it directly); LiteRT's output of it is the oracle."""
    model = edit(fixture_bytes(name), lambda obj: insert_densify(obj, everywhere=True))
    tensors = read_sparse_tensors(model)
    it = litert_all_tensors(model, inputs_for(name, model))
    ops = operators(model)
    densified = {}
    for (source,), (output,) in ((i, o) for op, i, o in ops if op == "DENSIFY"):
        dense = tensors[source].to_dense()
        litert = it.get_tensor(output)
        assert litert.dtype == dense.dtype
        np.testing.assert_array_equal(dense, litert)
        densified[output] = source
    assert sorted(set(densified.values())) == sorted(tensors)
    # float16 weights: TFLite's DEQUANTIZE of the densified tensor is an exact cast to float32
    for op, op_inputs, op_outputs in ops:
        if op == "DEQUANTIZE" and op_inputs[0] in densified:
            dense = tensors[densified[op_inputs[0]]].to_dense()
            np.testing.assert_array_equal(dense.astype(np.float32), it.get_tensor(op_outputs[0]))


def _externalize(model: bytes) -> bytes:
    """Move every sparse tensor's values after the flatbuffer (``Buffer.offset``/``size``)."""
    payloads: list[bytes] = []

    def change(obj: schema.ModelT, start: int) -> None:
        payloads.clear()
        for tensor in obj.subgraphs[0].tensors:
            if tensor.sparsity is not None:
                buffer = obj.buffers[tensor.buffer]
                data = bytes(np.asarray(buffer.data, np.uint8))
                buffer.data, buffer.offset, buffer.size = (
                    None,
                    start + len(b"".join(payloads)),
                    len(data),
                )
                payloads.append(data)

    probe = edit(model, lambda obj: change(obj, 1 << 20))
    start = -(-len(probe) // 16) * 16
    packed = edit(model, lambda obj: change(obj, start))
    assert len(packed) == len(probe)
    return packed + bytes(start - len(packed)) + b"".join(payloads)


def test_values_stored_after_the_flatbuffer_are_read():
    name = "mlp_index_widths.tflite"
    model = _externalize(fixture_bytes(name))
    inline = read_sparse_tensors(fixture_bytes(name))
    moved = read_sparse_tensors(model)
    assert sorted(moved) == sorted(inline)
    for index, tensor in moved.items():
        np.testing.assert_array_equal(tensor.to_dense(), inline[index].to_dense())
    imported = import_model(model)
    assert_matches_litert(model, build(*lower(imported, "dense")[:2]), inputs_for(name, model))
