"""The pieces of ``benchmarks.bench_models`` that decide what the peers run and what is counted.

The peers (onnxruntime, DeepSparse) read a dense copy of each model: checked against NumPy on
generated sparse initializers and against onnxruntime's own reading of the sparse fixtures. The
ResNet-50 fixture is checked for its sparsity, its outputs and its one refusal.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from benchmarks import bench_models

models = bench_models._fixtures()
MAIN_GRAPH_FIXTURES = [name for name in models.IN_MEMORY if name != "control_flow"]


def _identity_model(sparse: onnx.SparseTensorProto, dense: np.ndarray) -> onnx.ModelProto:
    elem = helper.np_dtype_to_tensor_dtype(dense.dtype)
    graph = helper.make_graph(
        [helper.make_node("Identity", [sparse.values.name], ["y"])],
        "identity",
        [],
        [helper.make_tensor_value_info("y", elem, list(dense.shape))],
        sparse_initializer=[sparse],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("seed", range(30))
def test_dense_copy_restores_every_value(seed):
    """Any rank, density (NNZ = 0 too), index form ([NNZ, rank] or linearized), index dtype
    and storage order."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(d) for d in rng.integers(1, 6, size=int(rng.integers(1, 5))))
    keep = rng.random(shape) < rng.uniform(0.0, 1.0)
    dense = np.where(keep, rng.standard_normal(shape), 0.0).astype(np.float32)
    nnz = int(np.count_nonzero(dense))
    sparse = models.sparse_proto(
        dense,
        "w",
        linearized=bool(rng.integers(2)),
        index_dtype=(np.int32, np.int64)[int(rng.integers(2))],
        order=rng.permutation(nnz),
    )
    copy = bench_models.dense_copy(_identity_model(sparse, dense))
    assert not copy.graph.sparse_initializer
    (restored,) = [numpy_helper.to_array(t) for t in copy.graph.initializer]
    np.testing.assert_array_equal(restored, dense)
    (y,) = bench_models.ort_session(copy, optimize=False).run(None, {})
    np.testing.assert_array_equal(y, dense)


@pytest.mark.parametrize("name", MAIN_GRAPH_FIXTURES)
def test_dense_copy_computes_what_the_sparse_model_computes(name):
    """Against onnxruntime's own reading of the sparse initializers; graph inputs that name an
    initializer (overridable defaults) are dropped, so the copy's inputs are the data only."""
    fixture = models.IN_MEMORY[name]()
    copy = bench_models.dense_copy(fixture.model)
    initializers = {t.name for t in copy.graph.initializer}
    assert not initializers & {vi.name for vi in copy.graph.input}
    expected = models.run_onnxruntime(fixture.model, fixture.inputs)
    feeds = {k: v for k, v in fixture.inputs.items() if k not in initializers}
    got = bench_models.ort_session(copy, optimize=False).run(None, feeds)
    for y, ref in zip(got, expected, strict=True):
        np.testing.assert_array_equal(y, ref)


@pytest.fixture(scope="module")
def resnet():
    return models.resnet50(64, 0.1)


def test_resnet50_weights_are_pruned_to_the_density(resnet):
    sparse = resnet.model.graph.sparse_initializer
    assert len(sparse) == len(resnet.weights) == 54  # 53 convolutions and the classifier
    for proto in sparse:
        size = int(np.prod(proto.dims))
        assert len(numpy_helper.to_array(proto.values)) == round(0.1 * size), proto.values.name
    assert sorted(set(resnet.weights.values())) == ["Conv", "Gemm"]
    assert [vi.name for vi in resnet.model.graph.input] == ["gpu_0/data_0"]


def test_resnet50_runs_in_onnxruntime(resnet):
    probabilities, logits = models.run_onnxruntime(resnet.model, resnet.inputs)
    assert probabilities.shape == logits.shape == (1, 1000)
    np.testing.assert_allclose(probabilities.sum(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(probabilities, np.exp(logits) / np.exp(logits).sum(), rtol=1e-4)
    assert logits.std() > 1e-2  # the restored weights neither vanish nor saturate


def test_resnet50_refuses_a_size_off_the_stride():
    with pytest.raises(ValueError, match=r"resnet50: size=48 is not a positive multiple of 32"):
        models.resnet50(48)


@pytest.mark.parametrize(
    ("func_name", "category"),
    [
        ("tvmgen_default_fused_nn_sparse_conv2d_add_nn_relu_6_1", "sparse kernels"),
        ("tvmgen_default_fused_nn_sparse_dense_add", "sparse kernels"),
        ("tvmgen_default_fused_nn_contrib_conv2d_NCHWc_add_nn_relu_5", "dense conv/fc"),
        ("tvmgen_default_fused_nn_contrib_dense_pack_add", "dense conv/fc"),
        ("tvmgen_default_fused_layout_transform_concatenate_2_1", "layout"),
        ("tvmgen_default_fused_nn_global_avg_pool2d", "other"),
    ],
)
def test_profile_categories(func_name, category):
    assert bench_models._category(func_name) == category
