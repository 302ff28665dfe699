"""Decompression bombs: small inputs that declare huge tensors are refused before allocating.

Each case measures the peak of Python-tracked allocations (NumPy's included) with
``tracemalloc`` while the input is read; a refusal must come with a peak of kilobytes, and an
accepted empty tensor must not allocate its huge sibling dimension either.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from fuzz.fields import Case
from fuzz.onnx_proto import prepare_bytes
from fuzz.outcomes import TALLY, attempt, fuzz_report, memory_cap  # noqa: F401  (fixture)
from fuzz.tflite_model import INT32_MAX, fixture_bytes, pack, unpack, write_case
from onnx import TensorProto, helper, numpy_helper
from sparse_import.adapters.onnx import from_onnx
from sparse_import.adapters.tflite import read_sparse_tensors

from sparse_import import (
    DenseLimitError,
    Level,
    LevelFormat,
    SparseFormatError,
    dense_byte_limit,
    from_tflite_params,
)

pytestmark = pytest.mark.usefixtures("fuzz_report")

SMALL = 256 * 1024  # bytes: the most a refusal (or an empty tensor) may allocate
DENSE, COMPRESSED = LevelFormat.DENSE, LevelFormat.COMPRESSED


@pytest.fixture(autouse=True)
def _capped():
    read_sparse_tensors(fixture_bytes("handmade_csc_fc.tflite"))  # imports outside the traces
    with memory_cap():
        yield


def peak(call) -> tuple[int, BaseException | None]:
    """Peak traced bytes while ``call`` runs, and what it raised (documented errors only)."""
    tracemalloc.start()
    error = None
    try:
        call()
    except (SparseFormatError, DenseLimitError) as exc:
        error = exc
    finally:
        top = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return top, error


def _tflite_model(shape, levels, fixture="handmade_csc_fc.tflite"):
    """A real model file whose sparse tensor 0 is replaced by an empty one in ``levels``."""
    values = np.zeros(0, np.float32)
    positions = [np.array([0, 0], np.int32) if lvl.format is COMPRESSED else None for lvl in levels]
    coordinates = [np.zeros(0, np.int32) if p is not None else None for p in positions]
    case = Case("fc/weight", list(shape), levels, positions, coordinates, values)
    case.traversal_order = [lvl.dim for lvl in levels]
    case.formats = ["DENSE" if lvl.format is DENSE else "SPARSE_CSR" for lvl in levels]
    case.dense_sizes = [shape[lvl.dim] if lvl.format is DENSE else None for lvl in levels]
    model = unpack(fixture)
    write_case(model, 0, case)
    return pack(model)


def test_tflite_file_declaring_a_huge_tensor():
    """Two compressed levels: 2**31-1 x 2**31-1 float32 in a 2.8 KB file, one stored value."""
    levels = (Level(0, COMPRESSED), Level(1, COMPRESSED))
    data = _tflite_model((INT32_MAX, INT32_MAX), levels)
    top, error = peak(lambda: read_sparse_tensors(data))
    assert isinstance(error, DenseLimitError)
    assert "'fc/weight': dense form of shape (2147483647, 2147483647)" in str(error)
    assert top < SMALL
    TALLY.add("tflite", "rejected")


def test_tflite_file_declaring_an_empty_tensor_with_a_huge_dimension():
    """Shape (0, 2**31-1) stored (d0 : compressed, d1 : dense): empty and valid; its dense form
    is (0, 2147483647) and nothing of the huge dimension is allocated."""
    levels = (Level(0, COMPRESSED), Level(1))
    data = _tflite_model((0, INT32_MAX), levels)
    with dense_byte_limit(1 << 20):
        tensor = read_sparse_tensors(data)[0]
        top, error = peak(lambda: (tensor.to_dense(), tensor.coo()))
    assert error is None and top < SMALL
    assert tensor.to_dense().shape == (0, INT32_MAX)
    TALLY.add("tflite", "valid")


@pytest.mark.parametrize(
    "levels",
    [
        (Level(1), Level(0)),  # column-major dense: the old arange(2**31) of 16 GiB
        (Level(0, COMPRESSED), Level(1)),
    ],
    ids=["dense-dense", "compressed-dense"],
)
def test_empty_tensors_never_broadcast_a_huge_dimension(levels):
    order = [lvl.dim for lvl in levels]
    metadata = []
    for lvl in levels:
        size = (0, INT32_MAX)[lvl.dim]
        if lvl.format is DENSE:
            metadata.append({"format": "DENSE", "dense_size": size})
        else:
            metadata.append(
                {
                    "format": "SPARSE_CSR",
                    "array_indices": np.zeros(0, np.int32),
                    "array_segments": np.zeros(2, np.int32),
                }
            )  # first level: 1 parent
    t = from_tflite_params(
        shape=[0, INT32_MAX],
        traversal_order=order,
        block_map=[],
        dim_metadata=metadata,
        values=np.zeros(0, np.float32),
        name="w",
    )
    top, error = peak(lambda: (t.to_dense(), t.coo(), t.linear_offsets()))
    assert error is None and top < SMALL


def test_onnx_sparse_tensor_declaring_a_huge_tensor():
    sparse = helper.make_sparse_tensor(
        numpy_helper.from_array(np.ones(1, np.float32), "w"),
        numpy_helper.from_array(np.array([[5, 7]], np.int64)),
        [2**31, 2**31],
    )
    top, error = peak(lambda: from_onnx(sparse))
    assert isinstance(error, DenseLimitError) and "'w': dense form of shape" in str(error)
    assert top < SMALL
    TALLY.add("onnx", "rejected")


def test_onnx_values_larger_than_the_dense_form_are_refused_before_reading(tmp_path):
    """External values: 64 MiB of (sparse-file) zeros for a 10 x 10 tensor. The NNZ the
    values' dims declare exceeds the dense size: refused from the dims alone, never read."""
    big = tmp_path / "values.bin"
    with open(big, "wb") as f:
        f.truncate(64 << 20)
    values = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[16 << 20])
    values.data_location = TensorProto.EXTERNAL
    entry = values.external_data.add()
    entry.key, entry.value = "location", "values.bin"
    sparse = helper.make_sparse_tensor(
        values, numpy_helper.from_array(np.zeros((1, 2), np.int64)), [10, 10]
    )
    top, error = peak(lambda: from_onnx(sparse, base_dir=tmp_path))
    assert isinstance(error, SparseFormatError) and "'w'" in str(error)
    assert top < SMALL, f"{top >> 20} MiB read for a 100-element tensor"


def _many_sparse_weights(count: int, side: int) -> bytes:
    """``count`` sparse initializers of ``side x side`` float32, one value each, summed."""
    inits = [
        helper.make_sparse_tensor(
            numpy_helper.from_array(np.ones(1, np.float32), f"w{k}"),
            numpy_helper.from_array(np.array([[0, 0]], np.int64)),
            [side, side],
        )
        for k in range(count)
    ]
    nodes = [helper.make_node("Sum", ["x", *(f"w{k}" for k in range(count))], ["y"])]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [side, side])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [side, side])],
        sparse_initializer=inits,
    )
    return helper.make_model(graph).SerializeToString()


def test_many_tensors_each_under_the_limit_stay_bounded_together():
    """16 weights of 1 MiB dense under a 1 MiB limit: the import densifies none of them; a
    dense lowering is refused for their total before the first is allocated."""
    from sparse_import.adapters.onnx import import_model

    from sparse_import.relay_backend import lower

    side = 512  # 1 MiB of float32 each
    data = _many_sparse_weights(16, side)
    assert len(data) < 4096
    with dense_byte_limit(side * side * 4):
        top, error = peak(lambda: prepare_bytes(data))
        assert error is None and top < side * side * 4, f"{top >> 20} MiB to prepare"
        imported = import_model(data)
        assert imported.budget.spent == 0
        top, error = peak(lambda: lower(imported, "dense"))
    assert isinstance(error, DenseLimitError), f"{top >> 20} MiB densified from {len(data)} bytes"
    assert "its 16 densified sparse tensors need 16777216 bytes" in str(error)
    assert top < side * side * 4


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append(value & 0x7F | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (serialized messages concatenate into one)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def test_deeply_nested_onnx_graphs_are_refused_not_recursed():
    """``If`` branches nested 300 deep, written byte by byte (the onnx helpers refuse to build
    them): refused while parsing, with no RecursionError in the adapter's graph walks."""
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1]).SerializeToString()
    graph = _field(12, output)  # GraphProto.output
    for _ in range(300):
        attribute = _field(1, b"then_branch") + _field(6, graph) + _varint(20 << 3) + _varint(5)
        node = helper.make_node("If", ["c"], ["y"]).SerializeToString() + _field(5, attribute)
        graph = _field(1, node) + _field(12, output)  # GraphProto.node, .output
    data = helper.make_model(helper.make_graph([], "g", [], [])).SerializeToString()
    data += _field(7, graph)  # ModelProto.graph, merged into the empty one
    attempt("onnx", lambda: prepare_bytes(data), expect=r"are not an ONNX model")
