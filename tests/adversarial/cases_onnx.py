"""Replay cases for the ONNX adapter: reads before limits, quadratic walks, undocumented
exceptions, shape-like sparse inputs, names defined twice, initializers listed as inputs."""

from __future__ import annotations

import contextlib
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from onnx import AttributeProto, ModelProto, SparseTensorProto, TensorProto, helper, numpy_helper

from ..fuzz.onnx_proto import fixture_models
from .contract import assert_close, expect_error

MiB = 1 << 20


# --------------------------------------------------------------------------- builders
_sparse = fixture_models().sparse_proto


def _vi(name: str, elem: int = TensorProto.FLOAT, shape: Any = None):
    return helper.make_tensor_value_info(name, elem, shape)


def _model(nodes, inputs, outputs, *, sparse=(), dense=()) -> ModelProto:
    graph = helper.make_graph(
        nodes, "g", inputs, outputs, initializer=list(dense), sparse_initializer=list(sparse)
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _import(model, **kwargs):
    from sparse_import.adapters.onnx import import_model

    return import_model(model, **kwargs)


def _prepare(model, base_dir=None):
    from sparse_import.adapters.onnx.model import prepare

    return prepare(model, base_dir)


@contextlib.contextmanager
def _traced(limit: int, what: str) -> Iterator[None]:
    """Fail when Python-tracked allocations (NumPy's included) peak over ``limit`` bytes."""
    tracemalloc.start()
    try:
        yield
    finally:
        top = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        if top > limit:
            raise AssertionError(f"{what}: {top / MiB:.1f} MiB allocated, over {limit / MiB} MiB")


def _holes(tmp: Path, size: int) -> None:
    """``tmp/big.bin``: ``size`` bytes of holes (nothing on disk, zeros when read)."""
    with open(tmp / "big.bin", "wb") as f:
        f.truncate(size)


def _external(tensor, **entries) -> None:
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in {"location": "big.bin", **entries}.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, str(value)


def _external_sparse(dims, values_dims, indices_dims=None, values_type=TensorProto.FLOAT):
    sparse = SparseTensorProto()
    sparse.dims.extend(dims)
    sparse.values.name, sparse.values.data_type = "w", values_type
    sparse.values.dims.extend(values_dims)
    _external(sparse.values)
    if indices_dims is not None:
        sparse.indices.data_type = TensorProto.INT64
        sparse.indices.dims.extend(indices_dims)
        _external(sparse.indices)
    return sparse


def _identity_model(sparse) -> bytes:
    name = sparse.values.name
    model = _model([helper.make_node("Identity", [name], ["y"])], [], [_vi("y")], sparse=[sparse])
    return model.SerializeToString()


def _refused_small(tmp: Path, sparse, error, *fragments) -> None:
    """The model (written next to ``big.bin``) is refused by name with under 4 MiB traced;
    the reads it declares are 16 MiB to 1 GiB."""
    from tvm import relay  # noqa: F401  (its own memory is not the refusal's)

    path = tmp / "m.onnx"
    path.write_bytes(_identity_model(sparse))
    with _traced(4 * MiB, "refusing external data"), expect_error(error, "'w'", *fragments):
        _import(path)


# =========================================================================== 1. allocation
def case_external_values_1gib_without_indices(tmp: Path) -> None:
    from sparse_import import SparseFormatError

    _holes(tmp, 1 << 30)
    sparse = _external_sparse([1 << 28], [1 << 28])  # 1 GiB of values, under the 4 GiB limit
    _refused_small(tmp, sparse, SparseFormatError, "values but no indices")


def case_external_values_of_a_dense_bomb(tmp: Path) -> None:
    from sparse_import import DenseLimitError

    _holes(tmp, 1 << 30)
    sparse = _external_sparse([1 << 20, 1 << 20], [1 << 28], [1 << 28, 2])
    _refused_small(tmp, sparse, DenseLimitError, "dense form of shape (1048576, 1048576)")


def case_external_values_more_than_the_dense_form(tmp: Path) -> None:
    from sparse_import import SparseFormatError

    _holes(tmp, 1 << 30)
    sparse = _external_sparse([10, 10], [1 << 26], [1 << 26, 2])
    _refused_small(tmp, sparse, SparseFormatError, "declare 67108864 elements, more than the 100")


def case_external_indices_of_the_wrong_shape(tmp: Path) -> None:
    from sparse_import import SparseFormatError

    _holes(tmp, 1 << 30)
    sparse = _external_sparse([4096, 4096], [1 << 20], [(1 << 20) + 1, 2])
    _refused_small(tmp, sparse, SparseFormatError, "indices have shape (1048577, 2)")


def case_external_indices_larger_than_the_limit(tmp: Path) -> None:
    from sparse_import import DenseLimitError, dense_byte_limit

    _holes(tmp, 1 << 30)
    # bool values fit the 16 MiB limit; (nnz, 3) int64 indices would be 48 MiB
    sparse = _external_sparse([256, 256, 256], [1 << 21], [1 << 21, 3], TensorProto.BOOL)
    with dense_byte_limit(16 * MiB):
        _refused_small(tmp, sparse, DenseLimitError, "indices: reading 50331648 bytes")


def case_external_range_past_the_end_of_the_file(tmp: Path) -> None:
    from sparse_import import UnsupportedModelError

    _holes(tmp, 64 * MiB)
    sparse = _external_sparse([4096, 4096], [1 << 20], [1 << 20, 2])
    del sparse.values.external_data[:]
    _external(sparse.values, offset=64 * MiB - 8, length=4 * MiB)
    _refused_small(tmp, sparse, UnsupportedModelError, "lies outside 'big.bin'")


def _rank_refused(rank: int) -> None:
    from sparse_import.adapters.onnx import from_onnx

    from sparse_import import UnsupportedSparsityError

    sparse = helper.make_sparse_tensor(
        numpy_helper.from_array(np.ones(3, np.float32), "w"),
        numpy_helper.from_array(np.arange(3, dtype=np.int64)),
        [1] * (rank - 1) + [3],
    )
    with (
        _traced(MiB, f"rank {rank}"),
        expect_error(UnsupportedSparsityError, "'w'", f"rank {rank}", "at most 64"),
    ):
        from_onnx(sparse)


def case_rank_65_is_refused_by_name(tmp: Path) -> None:
    _rank_refused(65)


def case_rank_50000_of_unit_dims_is_refused_by_name(tmp: Path) -> None:
    _rank_refused(50_000)


def _high_rank(rank: int, nnz: int, linearized: bool) -> None:
    from sparse_import.adapters.onnx import from_onnx

    shape = [1] * rank
    shape[rank // 2], shape[-1] = 500, nnz // 100
    rng = np.random.default_rng(rank)
    linear = np.sort(rng.choice(500 * (nnz // 100), nnz, replace=False))
    values = rng.standard_normal(nnz).astype(np.float32)
    indices = linear if linearized else np.stack(np.unravel_index(linear, shape), axis=1)
    sparse = helper.make_sparse_tensor(
        numpy_helper.from_array(values, "w"),
        numpy_helper.from_array(indices.astype(np.int64)),
        shape,
    )
    del indices
    coordinates = rank * nnz * 4  # what the IR itself holds
    extra = 0 if linearized else rank * nnz * 8  # the (nnz, rank) array read from the proto
    with _traced(int(1.6 * coordinates) + extra, f"rank {rank}, {nnz} values"):
        tensor = from_onnx(sparse)
    got = tensor.linear_offsets(), tensor.values
    assert_close(got[0], linear, "offsets")
    assert_close(got[1], values, "values")


def case_rank_64_linearized_indices_stay_linear_in_nnz(tmp: Path) -> None:
    _high_rank(64, 100_000, linearized=True)


def case_rank_40_coordinate_indices_stay_linear_in_nnz(tmp: Path) -> None:
    _high_rank(40, 100_000, linearized=False)


def case_shape_like_sparse_tensor_densified_with_one_transient_copy(tmp: Path) -> None:
    n = 1 << 24  # 64 MiB int32
    index = np.arange(0, n, 4096, dtype=np.int64)
    sparse = helper.make_sparse_tensor(
        numpy_helper.from_array(np.ones(index.size, np.int32), "s"),
        numpy_helper.from_array(index),
        [n],
    )
    nodes = [helper.make_node("Reshape", ["x", "s"], ["y"])]
    model = _model(nodes, [_vi("x", shape=[1])], [_vi("y")], sparse=[sparse])

    def status(key: str) -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = status("VmRSS")
    from sparse_import.adapters.onnx.model import prepare

    prepared = prepare(model, owned=True)
    peak = status("VmHWM") - base
    if peak > 2.5 * 4 * n:
        raise AssertionError(f"densifying 64 MiB peaked at {peak / MiB:.0f} MiB")
    (dense,) = prepared.model.graph.initializer
    assert_close(numpy_helper.to_array(dense)[index], np.ones(index.size), "densified values")


# =========================================================================== 2. linear time
def _chain(n: int, how: str) -> ModelProto:
    sparse = [
        helper.make_sparse_tensor(
            numpy_helper.from_array(np.ones(1, np.float32), f"w{k}"),
            numpy_helper.from_array(np.array([k % 4], np.int64)),
            [2, 2],
        )
        for k in range(n)
    ]
    inputs = [_vi("h0", shape=[2, 2])]
    nodes = [helper.make_node("Add", [f"h{k}", f"w{k}"], [f"h{k + 1}"]) for k in range(n)]
    if how == "declared":
        inputs += [_vi(f"w{k}", shape=[2, 2]) for k in range(n)]
    elif how == "constants":
        consts = [
            helper.make_node("Constant", [], [f"w{k}"], sparse_value=s)
            for k, s in enumerate(sparse)
        ]
        nodes, sparse = consts + nodes, []
    elif how == "sum":
        nodes = [helper.make_node("Sum", ["h0", *(f"w{k}" for k in range(n))], [f"h{n}"])]
    elif how == "subgraphs":  # each weight read inside an If of its own: kept a constant
        nodes = []
        for k in range(n):
            branch = helper.make_graph(
                [helper.make_node("Add", [f"h{k}", f"w{k}"], [f"b{k}"])],
                f"b{k}",
                [],
                [_vi(f"b{k}")],
            )
            nodes.append(
                helper.make_node("If", ["c"], [f"h{k + 1}"], then_branch=branch, else_branch=branch)
            )
        inputs.append(_vi("c", TensorProto.BOOL, []))
    return _model(nodes, inputs, [_vi(f"h{n}", shape=[2, 2])], sparse=sparse)


def _linear_time(how: str, small: int = 1000) -> None:
    from sparse_import.adapters.onnx.model import prepare

    times = []
    for n in (small, 10 * small):
        model = _chain(n, how)
        start = time.perf_counter()
        prepare(model, owned=True)
        times.append(time.perf_counter() - start)
    if times[1] > 30 * times[0]:
        raise AssertionError(f"{how}: 10x the tensors took {times[1] / times[0]:.0f}x the time")


def case_10k_sparse_initializers_declared_as_inputs(tmp: Path) -> None:
    _linear_time("declared")


def case_10k_sparse_constants(tmp: Path) -> None:
    _linear_time("constants")


def case_10k_sparse_initializers_read_by_one_sum(tmp: Path) -> None:
    _linear_time("sum")


def case_5k_sparse_weights_read_in_subgraphs(tmp: Path) -> None:
    _linear_time("subgraphs", small=500)


def case_10k_sparse_initializers_undeclared(tmp: Path) -> None:
    _linear_time("plain")


# =========================================================================== 3. documented errors
def _nested(depth: int, attr_name: str, op_type: str = "If") -> ModelProto:
    """Graphs nested ``depth`` deep, built in place (the helpers and the parser refuse them)."""
    model = _model([], [_vi("c", TensorProto.BOOL, [])], [_vi("y", shape=[2])])
    graph = model.graph
    for level in range(depth):
        node = graph.node.add()
        node.op_type, node.name = op_type, f"n{level}"
        node.input.append("c")
        node.output.append("y")
        attr = node.attribute.add()
        attr.name, attr.type = attr_name, AttributeProto.GRAPH
        graph = attr.g
        graph.name = f"g{level}"
        graph.output.add().CopyFrom(_vi("y", shape=[2]))
    graph.sparse_initializer.add().CopyFrom(_sparse(np.array([0, 2.5], np.float32), "y"))
    return model


def _too_deep(depth: int, attr_name: str, op_type: str = "If") -> None:
    from sparse_import import UnsupportedModelError

    with expect_error(UnsupportedModelError, "node 'n31'", "nested more than 31 levels"):
        _prepare(_nested(depth, attr_name, op_type))


def case_if_nested_3000_deep(tmp: Path) -> None:
    _too_deep(3000, "then_branch")


def case_if_else_branches_nested_500_deep(tmp: Path) -> None:
    _too_deep(500, "else_branch")


def case_loop_bodies_nested_1000_deep(tmp: Path) -> None:
    _too_deep(1000, "body", "Loop")


def case_scan_bodies_nested_32_deep(tmp: Path) -> None:
    _too_deep(32, "body", "Scan")


def case_if_nested_31_deep_is_prepared(tmp: Path) -> None:
    prepared = _prepare(_nested(31, "then_branch"))
    graph = prepared.model.graph
    for _ in range(31):
        graph = graph.node[0].attribute[0].g
    assert_close(numpy_helper.to_array(graph.initializer[0]), np.array([0, 2.5]), "bottom")


def _complex(where: str, elem: int) -> None:
    from sparse_import import UnsupportedSparsityError

    dense = np.zeros((2, 3), helper.tensor_dtype_to_np_dtype(elem))
    dense[1, 2] = 1 - 1j
    name = f"z_{where}"
    nodes = [helper.make_node("Identity", [name], ["y"])]
    if where == "constant":
        nodes.insert(0, helper.make_node("Constant", [], [name], sparse_value=_sparse(dense, name)))
        model = _model(nodes, [], [_vi("y", elem)])
    elif where == "subgraph":
        inner = helper.make_graph(
            nodes, "inner", [], [_vi("y", elem)], sparse_initializer=[_sparse(dense, name)]
        )
        node = helper.make_node("If", ["c"], ["y"], then_branch=inner, else_branch=inner)
        model = _model([node], [_vi("c", TensorProto.BOOL, [])], [_vi("y", elem)])
    else:
        model = _model(nodes, [], [_vi("y", elem)], sparse=[_sparse(dense, name)])
    kind = TensorProto.DataType.Name(elem)
    with expect_error(UnsupportedSparsityError, f"'{name}'", f"element type {kind}"):
        _import(model)


def case_complex64_sparse_initializer(tmp: Path) -> None:
    _complex("initializer", TensorProto.COMPLEX64)


def case_complex128_sparse_constant(tmp: Path) -> None:
    _complex("constant", TensorProto.COMPLEX128)


def case_complex64_sparse_initializer_in_a_subgraph(tmp: Path) -> None:
    _complex("subgraph", TensorProto.COMPLEX64)


def _bad_perm(perm: list[int], source: str) -> None:
    from sparse_import import UnsupportedModelError

    w = np.zeros((3, 4), np.float32)
    w[0, 1], w[2, 3] = 1.0, 2.0
    nodes = [
        helper.make_node("Transpose", ["w"], ["wt"], perm=perm, name="tw"),
        helper.make_node("MatMul", ["x", "wt"], ["y"]),
    ]
    inputs = [_vi("x", shape=[1, 4])]
    if source == "sparse":
        model = _model(nodes, inputs, [_vi("y")], sparse=[_sparse(w, "w")])
    elif source == "dense":
        model = _model(nodes, inputs, [_vi("y")], dense=[numpy_helper.from_array(w, "w")])
    else:
        model = _model(nodes, [*inputs, _vi("w", shape=[3, 4])], [_vi("y")])
    with expect_error(UnsupportedModelError, "node 'tw' (Transpose)", f"perm {perm}", "'w'"):
        _import(model)


def case_transpose_of_a_sparse_weight_with_a_duplicate_axis(tmp: Path) -> None:
    _bad_perm([0, 0], "sparse")


def case_transpose_of_a_dense_initializer_with_an_axis_out_of_range(tmp: Path) -> None:
    _bad_perm([1, 2], "dense")


def case_transpose_of_a_graph_input_with_a_short_perm(tmp: Path) -> None:
    _bad_perm([1], "input")


def _relu(shape) -> ModelProto:
    return _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", shape=shape)], [_vi("y")])


def case_shape_dict_of_the_wrong_rank(tmp: Path) -> None:
    from sparse_import import UnsupportedModelError

    with expect_error(UnsupportedModelError, "shape_dict['x']", "rank 3", "rank 2"):
        _import(_relu([1, 3]), shape_dict={"x": (1, 3, 1)})


def case_shape_dict_overriding_a_fixed_dimension(tmp: Path) -> None:
    from sparse_import import UnsupportedModelError

    with expect_error(UnsupportedModelError, "shape_dict['x']", "dimension 1 is 5", "(?, 3)"):
        _import(_relu(["n", 3]), shape_dict={"x": (8, 5)})


def case_shape_dict_with_a_zero_dimension(tmp: Path) -> None:
    from sparse_import import UnsupportedModelError

    with expect_error(UnsupportedModelError, "shape_dict['x']", "must be positive, got 0"):
        _import(_relu(["n", 3]), shape_dict={"x": (0, 3)})


def case_shape_dict_with_a_negative_dimension(tmp: Path) -> None:
    from sparse_import import UnsupportedModelError

    with expect_error(UnsupportedModelError, "shape_dict['x']", "must be positive, got -1"):
        _import(_relu(["n", 3]), shape_dict={"x": (-1, 3)})


def case_dtype_dict_contradicting_the_graph(tmp: Path) -> None:
    from sparse_import import UnsupportedModelError

    with expect_error(UnsupportedModelError, "dtype_dict['x'] = 'int32'", "type FLOAT"):
        _import(_relu([2, 3]), dtype_dict={"x": "int32"})


def case_dtype_dict_that_is_not_a_dtype(tmp: Path) -> None:
    from sparse_import import UnsupportedModelError

    with expect_error(UnsupportedModelError, "dtype_dict['x'] = 'floaty'", "is not a dtype"):
        _import(_relu([2, 3]), dtype_dict={"x": "floaty"})


def case_tvm_type_error_is_one_line(tmp: Path) -> None:
    from sparse_import import UnsupportedModelError

    node = helper.make_node("Concat", ["x", "x2"], ["y"], axis=0)
    model = _model([node], [_vi("x", shape=[2, 3]), _vi("x2", shape=[2, 4])], [_vi("y")])
    with expect_error(UnsupportedModelError, "TVM's ONNX frontend cannot convert it: TVMError"):
        _import(model)


# =========================================================================== 4. shape-like inputs
def _compiles_like_onnxruntime(nodes, tensors: dict[str, np.ndarray], linearized=()) -> None:
    import onnxruntime as ort

    from sparse_import.relay_backend import lower
    from sparse_import.relay_backend.build import build, run

    x = np.arange(1, 17, dtype=np.float32).reshape(1, 1, 4, 4)
    sparse = [_sparse(t, k, linearized=k in linearized) for k, t in tensors.items()]
    model = _model(nodes, [_vi("x", shape=[1, 1, 4, 4])], [_vi("y")], sparse=sparse)
    imported = _import(model)
    (got,) = run(build(*lower(imported, "dense")[:2]), {"x": x})
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    (expected,) = session.run(None, {"x": x})
    assert_close(got, expected, f"{nodes[0].op_type} with sparse {sorted(tensors)}")


def case_resize_with_sparse_scales(tmp: Path) -> None:
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], mode="nearest")
    _compiles_like_onnxruntime([node], {"s": np.array([1, 1, 2, 3], np.float32)})


def case_resize_with_sparse_sizes(tmp: Path) -> None:
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="linear")
    _compiles_like_onnxruntime([node], {"sizes": np.array([1, 1, 8, 6], np.int64)})


def case_reshape_with_a_sparse_shape_holding_zeros(tmp: Path) -> None:
    node = helper.make_node("Reshape", ["x", "shape"], ["y"])
    _compiles_like_onnxruntime([node], {"shape": np.array([0, 0, 2, 8], np.int64)}, ["shape"])


def case_expand_with_a_sparse_shape(tmp: Path) -> None:
    node = helper.make_node("Expand", ["x", "e"], ["y"])
    _compiles_like_onnxruntime([node], {"e": np.array([2, 3, 1, 1], np.int64)})


def case_slice_with_sparse_starts_ends_axes(tmp: Path) -> None:
    node = helper.make_node("Slice", ["x", "b", "e", "a"], ["y"])
    tensors = {
        "b": np.array([1, 0], np.int64),
        "e": np.array([3, 2], np.int64),
        "a": np.array([3, 2], np.int64),
    }
    _compiles_like_onnxruntime([node], tensors, ["a"])


def case_float_tensor_read_as_scales_and_as_data(tmp: Path) -> None:
    nodes = [
        helper.make_node("Resize", ["x", "", "s"], ["r"], mode="nearest"),
        helper.make_node("Mul", ["r", "s"], ["y"]),
    ]
    _compiles_like_onnxruntime(nodes, {"s": np.array([1, 1, 3, 1], np.float32)})


# =========================================================================== 5. names
def _defined_twice(model, name: str, *fragments: str) -> None:
    from sparse_import import SparseFormatError

    with expect_error(SparseFormatError, f"sparse tensor '{name}'", "defined twice", *fragments):
        _import(model)


def _eye(name: str):
    return _sparse(np.eye(2, dtype=np.float32), name)


def _inner_model(graph) -> ModelProto:
    node = helper.make_node("If", ["c"], ["y"], then_branch=graph, else_branch=graph)
    return _model([node], [_vi("c", TensorProto.BOOL, []), _vi("x", shape=[2, 2])], [_vi("y")])


def case_node_output_shadows_a_sparse_initializer(tmp: Path) -> None:
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["y"]),
        helper.make_node("Relu", ["x"], ["w"], name="relu_w"),
    ]
    model = _model(nodes, [_vi("x", shape=[2, 2])], [_vi("y")], sparse=[_eye("w")])
    _defined_twice(model, "w", "node 'relu_w' (Relu)")


def case_node_output_shadows_a_sparse_initializer_in_a_subgraph(tmp: Path) -> None:
    nodes = [
        helper.make_node("Neg", ["x"], ["k"], name="neg_k"),
        helper.make_node("Add", ["x", "k"], ["y"]),
    ]
    inner = helper.make_graph(nodes, "branch", [], [_vi("y")], sparse_initializer=[_eye("k")])
    _defined_twice(_inner_model(inner), "k", "graph 'branch'", "node 'neg_k' (Neg)")


def case_sparse_initializer_twice_in_a_subgraph(tmp: Path) -> None:
    nodes = [helper.make_node("Add", ["x", "b"], ["y"])]
    inner = helper.make_graph(
        nodes, "body", [], [_vi("y")], sparse_initializer=[_eye("b"), _eye("b")]
    )
    _defined_twice(_inner_model(inner), "b", "graph 'body'", "sparse initializer and a sparse")


def case_dense_and_sparse_initializer_of_one_name(tmp: Path) -> None:
    dense = numpy_helper.from_array(np.ones((2, 2), np.float32), "fc.weight")
    nodes = [helper.make_node("MatMul", ["x", "fc.weight"], ["y"])]
    model = _model(
        nodes, [_vi("x", shape=[2, 2])], [_vi("y")], sparse=[_eye("fc.weight")], dense=[dense]
    )
    _defined_twice(model, "fc.weight", "a dense initializer")


def case_sparse_constant_named_like_a_sparse_initializer(tmp: Path) -> None:
    nodes = [
        helper.make_node("Constant", [], ["v"], sparse_value=_eye("v"), name="kv"),
        helper.make_node("Add", ["x", "v"], ["y"]),
    ]
    model = _model(nodes, [_vi("x", shape=[2, 2])], [_vi("y")], sparse=[_eye("v")])
    _defined_twice(model, "v", "node 'kv' (Constant)")


def case_sparse_constant_output_reused_by_another_node(tmp: Path) -> None:
    nodes = [
        helper.make_node("Constant", [], ["u"], sparse_value=_eye("u"), name="ku"),
        helper.make_node("Identity", ["x"], ["u"], name="id_u"),
        helper.make_node("Add", ["x", "u"], ["y"]),
    ]
    model = _model(nodes, [_vi("x", shape=[2, 2])], [_vi("y")])
    _defined_twice(model, "u", "node 'ku' (Constant)", "node 'id_u' (Identity)")


# =========================================================================== 6. runtime inputs
def _zoo(n_shapes: int, declare: Callable[[str], bool]) -> tuple[ModelProto, np.ndarray]:
    rng = np.random.default_rng(n_shapes)
    w = (rng.random((4, 4)) < 0.5) * rng.standard_normal((4, 4)).astype(np.float32)
    w[0, 0] = 1.0
    shapes = [numpy_helper.from_array(np.array([4], np.int64), "out__SHAPE")]
    shapes += [
        numpy_helper.from_array(np.array([k, 4], np.int64), f"l{k}__SHAPE") for k in range(n_shapes)
    ]
    sparse = [_sparse(w.astype(np.float32), "w"), _sparse(np.array([0, 4], np.int64), "s__SHAPE")]
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Reshape", ["h", "out__SHAPE"], ["y"]),
    ]
    names = [t.name for t in shapes] + ["w", "s__SHAPE"]
    declared = [
        _vi(n, TensorProto.FLOAT if n == "w" else TensorProto.INT64, None)
        for n in names
        if declare(n)
    ]
    model = _model(
        nodes, [_vi("x", shape=[1, 4]), *declared], [_vi("y")], sparse=sparse, dense=shapes
    )
    return model, w.astype(np.float32)


def _only_true_inputs(n_shapes: int, declare: Callable[[str], bool]) -> None:
    from sparse_import.pipeline import relay_inputs
    from sparse_import.relay_backend import lower
    from sparse_import.relay_backend.build import build, run

    model, w = _zoo(n_shapes, declare)
    prepared = _prepare(model)
    if prepared.inputs != ["x"]:
        raise AssertionError(f"prepared inputs {prepared.inputs}, expected ['x']")
    imported = _import(model)
    bound = imported.params.keys() | imported.weight_params
    free = [v.name_hint for v in imported.mod["main"].params if v.name_hint not in bound]
    listed = [name for name, _, _ in relay_inputs(imported)]
    if free != ["x"] or listed != ["x"]:
        raise AssertionError(f"module inputs {free}, listed {listed}, expected ['x']")
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    (got,) = run(build(*lower(imported, "dense")[:2]), {"x": x})
    assert_close(got, (x @ w).reshape(4), "zoo-style model")


def case_every_initializer_declared_as_an_input(tmp: Path) -> None:
    _only_true_inputs(300, lambda name: True)


def case_only_shape_initializers_declared_as_inputs(tmp: Path) -> None:
    _only_true_inputs(50, lambda name: name.endswith("__SHAPE"))


def case_only_sparse_initializers_declared_as_inputs(tmp: Path) -> None:
    _only_true_inputs(5, lambda name: name in ("w", "s__SHAPE"))


def case_no_initializer_declared_as_an_input(tmp: Path) -> None:
    _only_true_inputs(5, lambda name: False)
