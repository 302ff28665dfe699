"""ONNX models with sparse weights through TVM's ONNX frontend, compared with onnxruntime.

Every fixture of ``fixtures/onnx/make_models.py`` is imported once per module, built for
``llvm`` and run on the same inputs as onnxruntime (graph optimizations off), with the
agreement rule of :func:`sparse_import.verify.compare`. Fixtures the graph executor runs are
also lowered with ``mode="sparse"`` and ``mode="auto"`` and checked the same way.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import tvm
from onnx import TensorProto, helper, numpy_helper
from sparse_import.adapters.onnx import import_model
from tvm import relay

import sparse_import
from sparse_import import SparseFormatError, UnsupportedModelError, UnsupportedSparsityError
from sparse_import.imported import ImportedModel
from sparse_import.relay_backend import Decision, lower
from sparse_import.relay_backend.build import build, run
from sparse_import.verify import OnnxRuntimeOracle, TensorSpec, compare

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location(
    "onnx_fixture_models", HERE / "fixtures" / "onnx" / "make_models.py"
)
models = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(models)

NAMES = [*models.IN_MEMORY, "external"]
VM_NAMES = {"control_flow"}  # If/Loop: the Relay VM, not the graph executor
GRAPH_NAMES = [name for name in NAMES if name not in VM_NAMES]
LOWERED_MODES = ("sparse", "auto")
SPARSE_DENSE_NAMES = {"mlp", "gemm", "external"}  # MatMul and Gemm weights: nn.sparse_dense


def run_tvm(imported: ImportedModel, inputs_list, control_flow: bool) -> list[list[np.ndarray]]:
    """Build once, run every input set: graph executor, or the Relay VM for If/Loop."""
    mod, params, _ = lower(imported, "dense")
    if not control_flow:
        lib = build(mod, params)
        return [run(lib, inputs) for inputs in inputs_list]
    os.environ["TOPHUB_LOCATION"] = "NONE"
    with tvm.transform.PassContext(opt_level=3):
        exe = relay.vm.compile(mod, target="llvm", params=params)
    vm = tvm.runtime.vm.VirtualMachine(exe, tvm.cpu())
    outputs = []
    for inputs in inputs_list:
        out = vm.run(**inputs)
        outs = out if isinstance(out, tvm.runtime.container.ADT) else [out]
        outputs.append([o.numpy() for o in outs])
    return outputs


def assert_agrees(
    got_all: list[np.ndarray],
    expected_all: list[np.ndarray],
    specs: tuple[TensorSpec, ...],
    rtol: float,
) -> None:
    """Each output within :func:`~sparse_import.verify.tolerance` of the oracle's and within
    the fixture's ``rtol``, of the oracle's shape and dtype, on outputs that are not all zeros
    (so the comparison can fail)."""
    for check, got, expected in zip(
        compare(got_all, expected_all, specs), got_all, expected_all, strict=True
    ):
        assert got.shape == expected.shape and got.dtype == expected.dtype, check.name
        assert check.rule == "relative" and check.ok, check
        assert check.error <= rtol, check
        assert np.abs(expected).max() > 0  # a comparison that can fail


@dataclass
class Case:
    fixture: object
    imported: ImportedModel
    specs: tuple[TensorSpec, ...]
    ort_outputs: list[list[np.ndarray]]
    _tvm_outputs: list[list[np.ndarray]] | None = None

    @property
    def tvm_outputs(self) -> list[list[np.ndarray]]:
        """The dense module's outputs, built on first use."""
        if self._tvm_outputs is None:
            self._tvm_outputs = run_tvm(
                self.imported, self.fixture.all_inputs(), self.fixture.control_flow
            )
        return self._tvm_outputs


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, Case]:
    """Fixture name -> its imported model and onnxruntime's outputs, made once per module."""
    made: dict[str, Case] = {}

    def get(name: str) -> Case:
        if name not in made:
            if name == "external":
                fixture = models.external(tmp_path_factory.mktemp("external"))
            else:
                fixture = models.IN_MEMORY[name]()
            oracle = OnnxRuntimeOracle(fixture.model)
            made[name] = Case(
                fixture,
                import_model(fixture.model),
                oracle.outputs,
                [oracle.run(inputs) for inputs in fixture.all_inputs()],
            )
        return made[name]

    return get


@pytest.fixture(scope="module", params=NAMES)
def case(request, cases) -> Case:
    return cases(request.param)


def test_outputs_match_onnxruntime(case):
    assert len(case.tvm_outputs) == len(case.ort_outputs)
    for got_all, expected_all in zip(case.tvm_outputs, case.ort_outputs, strict=True):
        assert_agrees(got_all, expected_all, case.specs, case.fixture.rtol)


def test_sparse_weights_become_named_relay_params(case):
    imported = case.imported
    assert imported.framework == "onnx"
    assert {w.param: w.consumer for w in imported.weights} == case.fixture.weights
    main_params = {v.name_hint: v for v in imported.mod["main"].params}
    _, params, _ = lower(imported, "dense")
    for weight in imported.weights:
        assert weight.param not in imported.params  # unbound until the backend decides
        dense = _numpy(params[weight.param])
        expected = weight.tensor.to_dense()
        assert dense.dtype == expected.dtype and dense.shape == expected.shape
        np.testing.assert_array_equal(dense, expected)
        assert weight.source is weight.tensor  # ONNX stores it as TVM receives it
        ty = main_params[weight.param].type_annotation
        assert tuple(int(d) for d in ty.shape) == dense.shape and ty.dtype == str(dense.dtype)


def test_weights_keep_their_sparsity(case):
    """The fixtures store exactly the nonzeros: the IR holds those, not a dense copy."""
    for weight in case.imported.weights:
        assert weight.tensor.nnz == np.count_nonzero(weight.tensor.to_dense())
        assert weight.tensor.density < 1


# --------------------------------------------------------------------------- other modes
@dataclass
class Lowered:
    case: Case
    mode: str
    mod: tvm.IRModule
    params: dict
    decisions: tuple[Decision, ...]
    outputs: list[list[np.ndarray]]


@pytest.fixture(
    scope="module",
    params=[(name, mode) for name in GRAPH_NAMES for mode in LOWERED_MODES],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def lowered(request, cases) -> Lowered:
    """A graph-executor fixture lowered with ``mode``, built once and run on every input set."""
    name, mode = request.param
    case = cases(name)
    assert not case.fixture.control_flow
    mod, params, decisions = lower(case.imported, mode=mode)
    lib = build(mod, params)
    outputs = [run(lib, inputs) for inputs in case.fixture.all_inputs()]
    return Lowered(case, mode, mod, params, decisions, outputs)


def test_lowered_outputs_match_onnxruntime(lowered):
    case = lowered.case
    assert len(lowered.outputs) == len(case.ort_outputs)
    for got_all, expected_all in zip(lowered.outputs, case.ort_outputs, strict=True):
        assert_agrees(got_all, expected_all, case.specs, case.fixture.rtol)


def test_lowered_decisions_cover_every_weight(lowered):
    weights = lowered.case.imported.weights
    assert [d.param for d in lowered.decisions] == [w.param for w in weights]
    assert {d.consumer for d in lowered.decisions} <= set(lowered.case.fixture.weights.values())
    for decision in lowered.decisions:
        assert decision.lowering in ("dense", "csr", "bsr", "densify") and decision.reason


def test_weights_lowered_sparse_leave_no_dense_copy(lowered):
    """No parameter keeps the dense form of a weight the decisions say was compressed (only a
    weight kept dense may hold that shape, as its own parameter)."""
    weights = {w.param: w for w in lowered.case.imported.weights}
    compressed = [d.param for d in lowered.decisions if d.lowering != "dense"]
    kept = {d.param for d in lowered.decisions if d.lowering == "dense"}
    dense_shapes = {weights[p].tensor.shape for p in compressed}
    for param in compressed:
        assert param not in lowered.params
        assert {f"{param}.data", f"{param}.indices", f"{param}.indptr"} <= lowered.params.keys()
    for key, value in lowered.params.items():
        if key not in kept:
            assert tuple(value.shape) not in dense_shapes, key
    for param in kept:
        np.testing.assert_array_equal(
            _numpy(lowered.params[param]), weights[param].tensor.to_dense()
        )


def _numpy(value) -> np.ndarray:
    return value.numpy() if isinstance(value, tvm.nd.NDArray) else np.asarray(value)


@pytest.mark.parametrize("name", sorted(SPARSE_DENSE_NAMES))
def test_sparse_mode_computes_matrix_products_with_sparse_dense(name, cases):
    """MatMul and Gemm (transB and not, with alpha and beta) weight matrices: each one CSR
    in sparse mode, one ``nn.sparse_dense`` per matrix, no parameter of its dense shape left."""
    case = cases(name)
    mod, params, decisions = lower(case.imported, mode="sparse")
    lowering = {d.param: d.lowering for d in decisions}
    matrices = [w for w in case.imported.weights if w.tensor.rank == 2]
    assert {w.consumer for w in matrices} == {"Gemm" if name == "gemm" else "MatMul"}
    assert len(matrices) == 2 and all(lowering[w.param] == "csr" for w in matrices)
    text = mod.astext(show_meta_data=False)
    assert text.count("nn.sparse_dense(") == len(matrices)
    shapes = {w.tensor.shape for w in matrices}
    assert not any(tuple(v.shape) in shapes for v in params.values())


def test_to_relay_dense_end_to_end(tmp_path):
    """``sparse_import.to_relay`` on a model path: every weight a dense parameter equal to the
    IR's dense form, and the built module agrees with onnxruntime."""
    fixture = models.external(tmp_path)
    mod, params = sparse_import.to_relay(fixture.model, mode="dense")
    assert "nn.sparse_dense" not in mod.astext(show_meta_data=False)
    imported = import_model(fixture.model)
    assert params.keys() == imported.params.keys() | imported.weight_params
    for weight in imported.weights:
        np.testing.assert_array_equal(_numpy(params[weight.param]), weight.tensor.to_dense())
    oracle = OnnxRuntimeOracle(fixture.model)
    got = run(build(mod, params), fixture.inputs)
    assert_agrees(got, oracle.run(fixture.inputs), oracle.outputs, fixture.rtol)


# --------------------------------------------------------------------------- input forms
@pytest.fixture(scope="module")
def mlp():
    return models.mlp()


def test_path_bytes_and_proto_give_the_same_module(mlp, tmp_path):
    path = tmp_path / "mlp.onnx"
    onnx.save(mlp.model, path)
    results = [import_model(m) for m in (path, str(path), path.read_bytes(), mlp.model)]
    for other in results[1:]:
        assert tvm.ir.structural_equal(other.mod, results[0].mod)
        assert other.params.keys() == results[0].params.keys()
        for key, value in other.params.items():
            np.testing.assert_array_equal(value, results[0].params[key])


@pytest.mark.parametrize("name", ["mlp", "conv", "gemm", "control_flow"])
def test_callers_model_proto_is_not_modified(name):
    model = models.IN_MEMORY[name]().model
    before = model.SerializeToString()
    import_model(model)
    assert model.SerializeToString() == before


def test_external_data_of_a_loaded_proto_needs_base_dir(tmp_path):
    fixture = models.external(tmp_path)
    proto = onnx.load(fixture.model)  # loads the dense biases, not the sparse tensors
    with pytest.raises(UnsupportedModelError, match=r"'w1': values is stored in the external"):
        import_model(proto)
    imported = import_model(proto, base_dir=tmp_path)
    (w1,) = [w for w in imported.weights if w.param == "w1"]
    (expected,) = [w for w in import_model(fixture.model).weights if w.param == "w1"]
    np.testing.assert_array_equal(w1.tensor.to_dense(), expected.tensor.to_dense())


def test_dense_external_data_escaping_the_directory(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    model = onnx.load(models.external(model_dir).model, load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../weights.bin"
    (tmp_path / "weights.bin").write_bytes((model_dir / "weights.bin").read_bytes())
    onnx.save(model, model_dir / "bad.onnx")
    match = r"^initializer 'b1': external data location '../weights.bin' points outside"
    with pytest.raises(UnsupportedModelError, match=match):
        import_model(model_dir / "bad.onnx")


def test_embedded_demo_with_symbolic_batch():
    """The package's demo model: Gemm and MatMul weights, a ``batch`` dimension."""
    path = Path(sparse_import.__file__).parent / "data" / "demo_mlp.onnx"
    x = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
    imported = import_model(path, shape_dict={"x": x.shape})
    assert sorted(w.consumer for w in imported.weights) == ["Gemm", "MatMul"]
    got = run(build(*lower(imported, "dense")[:2]), {"x": x})
    oracle = OnnxRuntimeOracle(path)
    assert_agrees(got, oracle.run({"x": x}), oracle.outputs, 1e-5)


def test_a_dense_model_passes_through_to_tvm_unchanged():
    w = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "w")
    model = _graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        initializer=[w],
    )
    imported = import_model(model)
    assert imported.weights == () and imported.params == {}
    assert tvm.ir.structural_equal(imported.mod, relay.frontend.from_onnx(model)[0])


# --------------------------------------------------------------------------- refusals
def _graph(nodes, inputs=None, outputs=None, **kwargs):
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])]
    outputs = outputs or [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])]
    model = helper.make_model(
        helper.make_graph(nodes, "g", inputs, outputs, **kwargs),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.ir_version = 8
    return model


def _sparse(name="w", dims=(2, 2)):
    return models.sparse_proto(np.eye(*dims, dtype=np.float32), name)


def test_name_defined_twice():
    dense = numpy_helper.from_array(np.eye(2, dtype=np.float32), "w")
    model = _graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        initializer=[dense],
        sparse_initializer=[_sparse()],
    )
    match = (
        r"^sparse tensor 'w': the name is defined twice in graph 'g': a sparse initializer and "
        r"a dense initializer$"
    )
    with pytest.raises(SparseFormatError, match=match):
        import_model(model)


def test_unnamed_sparse_initializer():
    model = _graph([helper.make_node("MatMul", ["x", "w"], ["y"])], sparse_initializer=[_sparse()])
    model.graph.sparse_initializer[0].values.name = ""
    with pytest.raises(SparseFormatError, match=r"^graph 'g': sparse_initializer\[0\] has no"):
        import_model(model)


def test_graph_input_contradicting_its_sparse_initializer():
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2]),
        helper.make_tensor_value_info("w", TensorProto.FLOAT16, [2, 2]),
    ]
    model = _graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], inputs, sparse_initializer=[_sparse()]
    )
    match = r"'w': graph input declares FLOAT16 \(2, 2\), but its sparse initializer is FLOAT"
    with pytest.raises(SparseFormatError, match=match):
        import_model(model)


def test_sparse_constant_without_output_name():
    node = helper.make_node("Constant", [], [""], sparse_value=_sparse(), name="c0")
    with pytest.raises(UnsupportedModelError, match=r"^node 'c0' \(Constant\) must have one"):
        import_model(_graph([node, helper.make_node("Identity", ["x"], ["y"])]))


def test_sparse_graph_input():
    x = helper.make_sparse_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    model = _graph([helper.make_node("Identity", ["x"], ["y"])], [x])
    with pytest.raises(UnsupportedSparsityError, match=r"graph input/output 'x' is a sparse"):
        import_model(model)


def test_sparse_attribute_of_another_op():
    node = helper.make_node("Identity", ["x"], ["y"], name="n0")
    node.attribute.append(helper.make_attribute("weights", _sparse()))
    with pytest.raises(UnsupportedSparsityError, match=r"node 'n0' \(Identity\) has the sparse"):
        import_model(_graph([node]))


def test_shape_dict_names_are_checked(mlp):
    with pytest.raises(UnsupportedModelError, match=r"shape_dict names 'w1', a sparse weight"):
        import_model(mlp.model, shape_dict={"w1": (64, 128)})
    with pytest.raises(UnsupportedModelError, match=r"dtype_dict names 'z', which is not an"):
        import_model(mlp.model, dtype_dict={"z": "float32"})


def test_what_tvm_cannot_convert_is_reported_as_such():
    node = helper.make_node("NoSuchOp", ["x"], ["y"])
    match = (
        r"^model: TVM's ONNX frontend cannot convert it: OpNotImplemented: The following "
        r"operators are not supported for frontend ONNX: NoSuchOp"
    )
    with pytest.raises(UnsupportedModelError, match=match) as info:
        import_model(_graph([node]))
    assert isinstance(info.value.__cause__, tvm.error.OpNotImplemented)


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (b"\x00not a model", r"^12 bytes are not an ONNX model"),
        ("/nonexistent/m.onnx", r"model file '/nonexistent/m.onnx' does not exist"),
        (3, r"^model must be a path, bytes or an onnx.ModelProto, not int$"),
    ],
    ids=["bytes", "path", "type"],
)
def test_not_an_onnx_model(model, match):
    with pytest.raises(UnsupportedModelError, match=match):
        import_model(model)
