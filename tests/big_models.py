"""Models far larger than the dense byte limit in dense form, for the bind-late tests.

``python big_models.py OUT_DIR [N] [LAYERS] [DENSITY]`` writes ``big.onnx`` (sparse
initializers, linearized COO indices) and ``big.tflite`` (CSR weights behind DENSIFY, uint16
column indices), both ``LAYERS`` square ``N x N`` layers ``h = h @ W.T`` (ONNX: ``MatMul`` with
``W.T`` stored), and ``big.npz`` with the CSR arrays of each ``W`` for the SciPy reference.
Each row holds ``round(DENSITY * N)`` values at distinct columns; nothing of dense size is ever
allocated here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE / "fixtures" / "tflite"))
sys.path.insert(0, str(HERE / "fixtures" / "onnx"))


def csr_weights(n: int, layers: int, density: float, seed: int = 0):
    """``layers`` CSR matrices ``(n, n)``: ``k`` values per row, columns spread by a stride."""
    rng = np.random.default_rng(seed)
    k = max(1, round(density * n))
    stride = max(1, n // k)
    out = []
    for _ in range(layers):
        start = rng.integers(0, n, size=(n, 1))
        cols = np.sort((start + stride * np.arange(k)) % n, axis=1).astype(np.int64)
        values = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
        indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
        out.append((indptr, cols.ravel(), values.ravel()))
    return out


def write_onnx(path: Path, weights, n: int) -> None:
    """``h{i+1} = MatMul(h{i}, t{i})`` with ``t{i} = W{i}.T`` a sparse initializer."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, sparse = [], []
    for i, (indptr, cols, values) in enumerate(weights):
        rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
        # W.T[c, r] = W[r, c]: linearized index c * n + r, sorted as ONNX requires
        linear = cols * n + rows
        order = np.argsort(linear, kind="stable")
        sparse.append(
            helper.make_sparse_tensor(
                numpy_helper.from_array(values[order], f"t{i}"),
                numpy_helper.from_array(linear[order]),
                [n, n],
            )
        )
        nodes.append(helper.make_node("MatMul", [f"h{i}", f"t{i}"], [f"h{i + 1}"]))
    layers = len(weights)
    graph = helper.make_graph(
        nodes,
        "big",
        [helper.make_tensor_value_info("h0", TensorProto.FLOAT, [1, n])],
        [helper.make_tensor_value_info(f"h{layers}", TensorProto.FLOAT, [1, n])],
        sparse_initializer=sparse,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def write_tflite(path: Path, weights, n: int) -> None:
    """``FULLY_CONNECTED(h, DENSIFY(W))`` per layer, ``W`` in CSR with uint16 columns."""
    from generate_handmade import Graph, Op, index_vector, schema

    g = Graph(sparse=True)
    h = g.tensor("h0", (1, n))
    first = h
    for i, (indptr, cols, values) in enumerate(weights):
        sparsity = schema.SparsityParametersT()
        sparsity.traversalOrder, sparsity.blockMap = [0, 1], []
        rows = schema.DimensionMetadataT()
        rows.format, rows.denseSize = schema.DimensionType.DENSE, n
        inner = schema.DimensionMetadataT()
        inner.format = schema.DimensionType.SPARSE_CSR
        inner.arraySegmentsType, inner.arraySegments = index_vector(indptr, "int32")
        inner.arrayIndicesType, inner.arrayIndices = index_vector(cols, "uint16")
        sparsity.dimMetadata = [rows, inner]
        stored = g.tensor(f"w{i}", (n, n), np.float32, values, sparsity=sparsity)
        dense = g.tensor(f"w{i}/densified", (n, n))
        g.op(Op.DENSIFY, [stored], [dense], schema.DensifyOptionsT())
        h = g.fully_connected(f"h{i + 1}", h, dense, -1, (1, n))
    path.write_bytes(g.pack("big", [first], [h]))


def main() -> None:
    out = Path(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 16384
    layers = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    density = float(sys.argv[4]) if len(sys.argv) > 4 else 0.02
    weights = csr_weights(n, layers, density)
    np.savez(
        out / "big.npz",
        **{
            f"{part}{i}": a for i, w in enumerate(weights) for part, a in zip("pcv", w, strict=True)
        },
    )
    write_onnx(out / "big.onnx", weights, n)
    write_tflite(out / "big.tflite", weights, n)


if __name__ == "__main__":
    main()
