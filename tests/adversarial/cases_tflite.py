"""Replay cases for the TFLite adapter: shared flatbuffer references (once hangs of minutes),
ranks past NumPy's 64, complex values, buffers stored after the flatbuffer (once refused),
malformed ``DENSIFY`` (once accepted) and two tensors of one name (once a silently wrong graph).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np

from .contract import expect_error

SECONDS = 2.0  # the most a refusal of a shared-reference file may take


def _tfl():
    from ..fuzz import tflite_model

    return tflite_model


def _errors():
    from sparse_import import SparseFormatError, UnsupportedModelError, UnsupportedSparsityError

    return SparseFormatError, UnsupportedModelError, UnsupportedSparsityError


def _read(data: bytes):
    from sparse_import.adapters.tflite import read_sparse_tensors

    return read_sparse_tensors(data)


def _import(data: bytes):
    from sparse_import.adapters.tflite import import_model

    return import_model(data)


def _quick_refusal(call, *fragments: str) -> None:
    start = time.perf_counter()
    with expect_error(_errors()[0], *fragments):
        call()
    if time.perf_counter() - start > SECONDS:
        raise AssertionError(f"refused, but after {time.perf_counter() - start:.1f} s")


def _sparse_index(model) -> int:
    return _tfl().sparse_indices(model)[0]


def _name(model, index: int) -> str:
    return _tfl().tensor_name(model, index)


# ------------------------------------------------------------- shared references (hangs)
def case_quarter_million_operators_share_one_table(tmp: Path) -> None:
    t = _tfl()
    model = t.unpack("fc_densify.tflite")
    model.subgraphs[0].operators = [model.subgraphs[0].operators[1]] * 250_000
    data = t.pack_shared(model)
    _quick_refusal(lambda: _import(data), "operator 0 of subgraph 0", "shared by 250000", "work")


def case_shared_operator_with_twenty_thousand_inputs(tmp: Path) -> None:
    t = _tfl()
    model = t.unpack("conv2d_densify.tflite")
    op = model.subgraphs[0].operators[1]
    op.inputs = np.concatenate([op.inputs, np.zeros(20_000, np.int32)]).astype(np.int32)
    model.subgraphs[0].operators = [op] * 5_000
    data = t.pack_shared(model)
    _quick_refusal(lambda: _read(data), "operator 0 of subgraph 0", "units of work")


def case_fifty_thousand_entries_of_one_sparse_tensor(tmp: Path) -> None:
    t = _tfl()
    model = t.unpack("handmade_csc_fc.tflite")
    index = _sparse_index(model)
    model.subgraphs[0].tensors += [model.subgraphs[0].tensors[index]] * 50_000
    data = t.pack_shared(model)
    _quick_refusal(lambda: _read(data), f"(index {index})", "shared by 50001", "units of work")


def case_copies_sharing_sparsity_and_buffer_decode_as_the_original(tmp: Path) -> None:
    t = _tfl()
    model = t.unpack("fc_block1x4.tflite")
    graph = model.subgraphs[0]
    index = _sparse_index(model)
    for k in range(1_000):
        twin = copy.copy(graph.tensors[index])
        twin.name = graph.tensors[index].name + f"/twin{k}".encode()
        graph.tensors.append(twin)
    start = time.perf_counter()
    tensors = _read(t.pack_shared(model))
    if time.perf_counter() - start > SECONDS:
        raise AssertionError(f"1,000 copies took {time.perf_counter() - start:.1f} s")
    original = tensors[index].to_dense()
    for i in (len(graph.tensors) - 1, len(graph.tensors) - 500):
        if not np.array_equal(tensors[i].to_dense(), original):
            raise AssertionError(f"copy {i} decodes differently from tensor {index}")
        if tensors[i].name != _name(model, i):
            raise AssertionError(f"copy {i} is named {tensors[i].name!r}")


def case_copies_sharing_sparsity_past_the_budget(tmp: Path) -> None:
    t = _tfl()
    model = t.unpack("handmade_block4x2_fc.tflite")
    graph = model.subgraphs[0]
    index = _sparse_index(model)
    shared = copy.copy(graph.tensors[index])
    graph.tensors += [shared] * 200_000  # one extra table, 200,000 entries
    _quick_refusal(lambda: _read(t.pack_shared(model)), "shared by 200000", "units of work")


def case_tensors_share_one_long_shape_vector(tmp: Path) -> None:
    t = _tfl()
    model = t.unpack("fc_densify.tflite")
    graph = model.subgraphs[0]
    shape = np.ones(64, np.int32)
    for k in range(20_000):
        twin = copy.copy(graph.tensors[0])
        twin.name, twin.shape = f"unused/{k}".encode(), shape
        graph.tensors.append(twin)
    data = t.pack_shared(model)
    _quick_refusal(lambda: _read(data), "tensor 'unused/", "units of work")


# -------------------------------------------------------------------- ranks and dtypes
def case_dense_input_of_rank_70(tmp: Path) -> None:
    t = _tfl()
    model = t.unpack("fc_densify.tflite")
    model.subgraphs[0].tensors[0].shape = np.ones(70, np.int32)
    name = _name(model, 0)
    with expect_error(_errors()[1], f"tensor '{name}' (index 0)", "rank 70 is above the 64"):
        _import(t.pack(model))


def _pad_sparse_rank(model, index: int, rank: int) -> None:
    tfl = _tfl().schema()
    tensor = model.subgraphs[0].tensors[index]
    old_rank, extra = len(tensor.shape), rank - len(tensor.shape)
    # expanded dimensions: the new ones come after the old ones, block parts after all of them
    order = np.asarray(tensor.sparsity.traversalOrder, np.int32)
    order = np.where(order < old_rank, order, order + extra)
    tensor.shape = np.concatenate([tensor.shape, np.ones(extra, np.int32)])
    tensor.sparsity.traversalOrder = np.concatenate(
        [order, np.arange(old_rank, rank, dtype=np.int32)]
    ).astype(np.int32)
    for _ in range(extra):
        meta = tfl.DimensionMetadataT()
        meta.format, meta.denseSize = 0, 1
        tensor.sparsity.dimMetadata.append(meta)


def case_sparse_tensor_of_rank_65(tmp: Path) -> None:
    t = _tfl()
    model = t.unpack("handmade_csc_fc.tflite")
    index = _sparse_index(model)
    _pad_sparse_rank(model, index, 65)
    with expect_error(_errors()[2], f"sparse tensor '{_name(model, index)}'", "rank 65"):
        _read(t.pack(model))


def case_sparse_tensor_of_rank_64_decodes(tmp: Path) -> None:
    t = _tfl()
    model = t.unpack("handmade_dcsr_block_fc.tflite")
    index = _sparse_index(model)
    original = _read(t.pack(model))[index].to_dense()
    _pad_sparse_rank(model, index, 64)
    padded = _read(t.pack(model))[index].to_dense()
    if padded.shape != original.shape + (1,) * (64 - original.ndim):
        raise AssertionError(f"rank-64 tensor has shape {padded.shape}")
    if not np.array_equal(padded.reshape(original.shape), original):
        raise AssertionError("rank-64 tensor decodes differently")


def _complex(type_name: str, fixture: str) -> None:
    t = _tfl()
    model = t.unpack(fixture)
    index = _sparse_index(model)
    model.subgraphs[0].tensors[index].type = getattr(t.schema().TensorType, type_name)
    name = _name(model, index)
    with expect_error(_errors()[2], f"sparse tensor '{name}'", f"values of type {type_name}"):
        _import(t.pack(model))


def case_complex64_sparse_values(tmp: Path) -> None:
    _complex("COMPLEX64", "fc_densify.tflite")


def case_complex128_sparse_values(tmp: Path) -> None:
    _complex("COMPLEX128", "handmade_block2x2_conv.tflite")


# -------------------------------------------------------- buffers after the flatbuffer
def _offset_reads_as_inline(fixture: str) -> None:
    t = _tfl()
    inline, moved = _read(t.pack(t.unpack(fixture))), _read(t.to_offset_layout(t.unpack(fixture)))
    if inline.keys() != moved.keys():
        raise AssertionError(f"sparse tensors {list(moved)}, expected {list(inline)}")
    for i in inline:
        if not np.array_equal(inline[i].to_dense(), moved[i].to_dense()):
            raise AssertionError(f"tensor {i} reads differently from the offset layout")


def case_offset_buffers_read_fc(tmp: Path) -> None:
    _offset_reads_as_inline("mlp_int8.tflite")


def case_offset_buffers_read_conv(tmp: Path) -> None:
    _offset_reads_as_inline("handmade_nested_block_conv.tflite")


def case_offset_buffer_bytes(tmp: Path) -> None:
    from sparse_import.adapters.tflite import load_model
    from sparse_import.adapters.tflite.loader import buffer_data

    t = _tfl()
    a = load_model(t.pack(t.unpack("fc_densify.tflite")))
    b = load_model(t.to_offset_layout(t.unpack("fc_densify.tflite")))
    for i in range(a.BuffersLength()):
        if buffer_data(a, i).tobytes() != buffer_data(b, i).tobytes():
            raise AssertionError(f"buffer {i} differs in the offset layout")


def case_offset_buffer_past_the_end(tmp: Path) -> None:
    data = _tfl().to_offset_layout(_tfl().unpack("handmade_csc_fc.tflite"))
    with expect_error(_errors()[0], "buffer ", "run past the"):
        _read(data[:-4])


def case_offset_buffers_import(tmp: Path) -> None:
    """A dense constant stored at an offset must reach TVM (converter.py reads it through
    ``loader.with_buffer_data``)."""
    t = _tfl()
    inline = _import(t.pack(t.unpack("fc_densify.tflite")))
    try:
        moved = _import(t.to_offset_layout(t.unpack("fc_densify.tflite")))
    except _errors()[1] as error:
        raise AssertionError(f"a valid model with offset buffers is refused: {error}") from None
    for key, value in inline.params.items():
        if not np.array_equal(value.numpy(), moved.params[key].numpy()):
            raise AssertionError(f"parameter {key} differs in the offset layout")


# --------------------------------------------------------------------- malformed DENSIFY
def _chain(fixture: str, sparse_output: bool) -> tuple[bytes, int, str]:
    t = _tfl()
    model = t.unpack(fixture)
    out = int(model.subgraphs[0].operators[t.densify_operator(model)].outputs[0])
    o = t.densify_twice(model, sparse_output=sparse_output)
    return t.pack(model), o, _name(model, out)


def case_densify_of_a_densify(tmp: Path) -> None:
    data, o, name = _chain("fc_densify.tflite", sparse_output=False)
    with expect_error(_errors()[0], f"operator {o} (DENSIFY)", f"'{name}'", "no sparsity"):
        _import(data)


def case_densify_of_a_densify_output_with_sparsity(tmp: Path) -> None:
    data, o, name = _chain("conv2d_densify.tflite", sparse_output=True)
    with expect_error(_errors()[0], f"operator {o} (DENSIFY)", f"'{name}'", "is the output of"):
        _import(data)


def case_densify_of_a_dense_constant(tmp: Path) -> None:
    t = _tfl()
    model = t.unpack("handmade_csc_fc.tflite")
    graph = model.subgraphs[0]
    o = _tfl().densify_operator(model)
    bias = next(
        i
        for i, x in enumerate(graph.tensors)
        if x.sparsity is None and model.buffers[x.buffer].data is not None
    )
    graph.operators[o].inputs = [bias]
    with expect_error(_errors()[0], f"operator {o} (DENSIFY)", f"'{_name(model, bias)}'"):
        _import(t.pack(model))


def case_densify_of_a_graph_input(tmp: Path) -> None:
    t = _tfl()
    model = t.unpack("depthwise_densify.tflite")
    graph = model.subgraphs[0]
    o = _tfl().densify_operator(model)
    x = int(graph.inputs[0])
    graph.tensors[x].sparsity = copy.deepcopy(graph.tensors[graph.operators[o].inputs[0]].sparsity)
    graph.operators[o].inputs = [x]
    with expect_error(_errors()[0], f"operator {o} (DENSIFY)", "is a graph input"):
        _import(t.pack(model))


def case_densify_with_two_inputs(tmp: Path) -> None:
    t = _tfl()
    model = t.unpack("transpose_conv_densify.tflite")
    op = model.subgraphs[0].operators[_tfl().densify_operator(model)]
    op.inputs = [op.inputs[0], op.inputs[0]]
    with expect_error(_errors()[0], "(DENSIFY) of subgraph 0", "expected one tensor each"):
        _import(t.pack(model))


# ---------------------------------------------------------------- two tensors, one name
def _rename(fixture: str, source: int, target: int) -> None:
    t = _tfl()
    model = t.unpack(fixture)
    graph = model.subgraphs[0]
    graph.tensors[target].name = graph.tensors[source].name
    first, second = sorted((source, target))
    with expect_error(
        _errors()[1], f"tensor '{_name(model, source)}' (index {second})", f"tensor {first} has"
    ):
        _import(t.pack(model))


def case_output_renamed_onto_the_input(tmp: Path) -> None:
    t = _tfl()
    graph = t.unpack("fc_densify.tflite").subgraphs[0]
    _rename("fc_densify.tflite", int(graph.inputs[0]), int(graph.outputs[0]))


def case_weight_renamed_onto_the_bias(tmp: Path) -> None:
    t = _tfl()
    model = t.unpack("handmade_csc_fc.tflite")
    op = model.subgraphs[0].operators[-1]
    _rename("handmade_csc_fc.tflite", int(op.inputs[2]), int(op.inputs[1]))


def case_intermediate_renamed_onto_a_later_one(tmp: Path) -> None:
    t = _tfl()
    model = t.unpack("mlp_int8.tflite")
    ops = model.subgraphs[0].operators
    _rename("mlp_int8.tflite", int(ops[-1].outputs[0]), int(ops[0].outputs[0]))
