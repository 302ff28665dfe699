"""Decoding a TFLite sparse tensor to dense: the IR against TVM's and TFLite's own decoders.

Every case is one sparse tensor encoded once in the IR and handed, with the same
``SparsityParameters``, to

- ``SparseTensor.to_dense`` (vectorized NumPy; timed on a fresh tensor, so the O(nnz) format
  check :meth:`~sparse_import.SparseTensor.validate` runs every time, and once checked);
- TVM 0.19's ``prepare_dense_matrix_from_sparse`` (``tvm/relay/frontend/tflite.py``, the
  function the TFLite frontend runs for ``DENSIFY``), on a real flatbuffer tensor;
- TFLite's C++ ``FormatConverter`` (``FormatConverterFp32.SparseToDense``, only the C++ call).

All three results are compared element by element before anything is timed.

Run from the repository root: ``python -m benchmarks.bench_decode [--quick]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import replace

import flatbuffers
import numpy as np
from ai_edge_litert import format_converter_wrapper_pybind11 as fc
from ai_edge_litert import schema_py_generated as schema
from sparse_import.adapters.tflite import to_tflite_params
from tvm.relay.frontend.tflite import prepare_dense_matrix_from_sparse

from benchmarks.common import format_table, machine
from sparse_import import Level, LevelFormat, SparseTensor
from sparse_import.layouts import bsr_layout, csr_layout

_VECTORS = (  # narrowest index vector that holds the values, as TFLite's converter picks
    (np.uint8, schema.SparseIndexVector.Uint8Vector, schema.Uint8VectorT),
    (np.uint16, schema.SparseIndexVector.Uint16Vector, schema.Uint16VectorT),
    (np.int32, schema.SparseIndexVector.Int32Vector, schema.Int32VectorT),
)


def _case(rng, name: str, shape, density: float, levels, block=None) -> tuple[str, SparseTensor]:
    """A random float32 tensor of ``shape`` (``block``-tiled nonzeros) encoded in ``levels``."""
    block = block or (1,) * len(shape)
    grid = tuple(s // b for s, b in zip(shape, block, strict=True))
    mask = rng.random(grid) < density
    for axis, b in enumerate(block):
        mask = np.repeat(mask, b, axis=axis)
    dense = np.where(mask, rng.standard_normal(shape), 0).astype(np.float32)
    return name, SparseTensor.from_dense(dense, levels, name=name)


def cases(quick: bool) -> list[tuple[str, SparseTensor]]:
    """The decoded tensors: CSR matrices, a 1x4-block FC weight, a 4-D conv weight."""
    rng = np.random.default_rng(0)
    conv = (Level(0), Level(1), Level(2), Level(3, LevelFormat.COMPRESSED))
    found = [_case(rng, "CSR 1024x1024 10%", (1024, 1024), 0.1, csr_layout())]
    if not quick:
        found += [
            _case(rng, "CSR 4096x4096 10%", (4096, 4096), 0.1, csr_layout()),
            _case(
                rng, "FC 1x4 blocks 2048x2048 10%", (2048, 2048), 0.1, bsr_layout((1, 4)), (1, 4)
            ),
            _case(rng, "conv OHWI 256x3x3x256 10%", (256, 3, 3, 256), 0.1, conv),
        ]
    return found


def _index_vector(values: np.ndarray) -> tuple[int, object]:
    dtype, tag, cls = next(v for v in _VECTORS if values.max(initial=0) <= np.iinfo(v[0]).max)
    vector = cls()
    vector.values = values.astype(dtype)
    return tag, vector


def flatbuffer_tensor(tensor: SparseTensor):
    """``tensor`` as a ``tflite.Tensor`` of a one-tensor model (what TVM's decoder reads)."""
    import tflite

    params = to_tflite_params(tensor)
    sparsity = schema.SparsityParametersT()
    sparsity.traversalOrder, sparsity.blockMap = params["traversal_order"], params["block_map"]
    sparsity.dimMetadata = []
    for level in params["dim_metadata"]:
        meta = schema.DimensionMetadataT()
        if level["format"] == "DENSE":
            meta.format, meta.denseSize = schema.DimensionType.DENSE, level["dense_size"]
        else:
            meta.format = schema.DimensionType.SPARSE_CSR
            meta.arraySegmentsType, meta.arraySegments = _index_vector(level["array_segments"])
            meta.arrayIndicesType, meta.arrayIndices = _index_vector(level["array_indices"])
        sparsity.dimMetadata.append(meta)
    t = schema.TensorT()
    t.name, t.shape, t.type, t.buffer, t.sparsity = b"w", list(tensor.shape), 0, 1, sparsity
    data = schema.BufferT()
    data.data = np.frombuffer(params["values"].tobytes(), np.uint8)
    subgraph = schema.SubGraphT()
    subgraph.tensors, subgraph.operators, subgraph.inputs, subgraph.outputs = [t], [], [], [0]
    model = schema.ModelT()
    model.version, model.subgraphs, model.buffers = 3, [subgraph], [schema.BufferT(), data]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return tflite.Model.GetRootAsModel(bytes(builder.Output()), 0).Subgraphs(0).Tensors(0)


def tflite_converter(tensor: SparseTensor) -> fc.FormatConverterFp32:
    """TFLite's FormatConverter set up with ``tensor``'s sparsity (via its own DenseToSparse)."""
    params = to_tflite_params(tensor)
    formats = [
        fc.TF_LITE_DIM_DENSE if m["format"] == "DENSE" else fc.TF_LITE_DIM_SPARSE_CSR
        for m in params["dim_metadata"]
    ]
    n = tensor.rank
    block_size = [
        params["dim_metadata"][params["traversal_order"].index(n + j)]["dense_size"]
        for j in range(len(params["block_map"]))
    ]
    converter = fc.FormatConverterFp32(
        list(tensor.shape), params["traversal_order"], formats, block_size, params["block_map"]
    )
    converter.DenseToSparse(tensor.to_dense())
    if not np.array_equal(np.asarray(converter.GetData(), np.float32), tensor.values):
        raise AssertionError(f"{tensor.name}: TFLite encodes different values than the IR")
    return converter


def _best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(name: str, tensor: SparseTensor, tvm_repeat: int) -> tuple:
    """Check that the three decoders agree, then time each; one table row."""
    expected = tensor.to_dense()
    fb = flatbuffer_tensor(tensor)
    converter = tflite_converter(tensor)
    _, from_tvm = prepare_dense_matrix_from_sparse(fb, tensor.values, "float32")
    converter.SparseToDense(tensor.values)
    from_tflite = np.asarray(converter.GetData(), np.float32).reshape(tensor.shape)
    for who, got in (("TVM", from_tvm), ("TFLite", from_tflite)):
        if not np.array_equal(got.reshape(tensor.shape), expected):
            raise AssertionError(f"{name}: {who} decodes a different dense array than the IR")
    ir_checked = _best(lambda: replace(tensor).to_dense(), 10)  # fresh: validate() runs
    ir = _best(tensor.to_dense, 10)
    tflite_cpp = _best(lambda: converter.SparseToDense(tensor.values), 5)
    tvm = _best(lambda: prepare_dense_matrix_from_sparse(fb, tensor.values, "float32"), tvm_repeat)
    return (
        name,
        tensor.nnz,
        ir_checked * 1e3,
        ir * 1e3,
        tflite_cpp * 1e3,
        tvm * 1e3,
        tvm / ir_checked,
        tflite_cpp / ir_checked,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the smallest case")
    args = parser.parse_args()
    rows = [
        measure(name, t, tvm_repeat=1 if t.nnz > 500_000 else 3) for name, t in cases(args.quick)
    ]
    print(machine())
    print(
        format_table(
            (
                "tensor",
                "nnz",
                "IR checked ms",
                "IR ms",
                "TFLite C++ ms",
                "TVM ms",
                "TVM/IR",
                "TFLite/IR",
            ),
            rows,
        )
    )
    print("ratios use the checked IR time (format validation + decode)")


if __name__ == "__main__":
    main()
