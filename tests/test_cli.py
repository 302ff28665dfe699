"""The ``sparse-import`` command line, run in-process on the embedded demos and on fixtures.

Every compiled module is checked against the framework's own runtime (LiteRT or onnxruntime);
the verify command is shown to fail (exit 1) when the module's outputs are corrupted. Builds are
shared across the module through a cache around :func:`sparse_import.pipeline.compile_model`.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sparse_import.adapters.tflite import read_sparse_tensors

import sparse_import
from sparse_import import pipeline
from sparse_import.cli import main
from sparse_import.pipeline import demo_model
from sparse_import.verify import compare, make_oracle, random_inputs

HERE = Path(__file__).resolve().parent
TFLITE = HERE / "fixtures" / "tflite"
ERROR = "sparse-import: error: "
build_module = importlib.import_module(
    "sparse_import.relay_backend.build"
)  # the package exports build()


def _onnx_fixtures():
    spec = importlib.util.spec_from_file_location(
        "onnx_fixture_models", HERE / "fixtures" / "onnx" / "make_models.py"
    )
    module = sys.modules.get(spec.name)
    if module is None:
        module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", autouse=True)
def shared_builds():
    """Build each (model, mode, input shapes) once for the whole module."""
    real = pipeline.compile_model
    cache = {}

    def cached(loaded, mode, **kwargs):
        key = (str(loaded.path), mode, loaded.inputs, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = real(loaded, mode, **kwargs)
        return cache[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "compile_model", cached)
        yield cache


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def table_rows(out: str, header_start: str) -> list[list[str]]:
    """The rows of the table whose header line starts with ``header_start``."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        rows.append(line.split())
    return rows


# --------------------------------------------------------------------------- verify
def test_verify_default_is_the_tflite_demo_in_auto_mode(capsys):
    code, out, err = cli(capsys, "verify")
    assert code == 0, out + err
    assert "demo_mlp.tflite (embedded demo), TFLite" in out
    assert "LiteRT (builtin kernels, no delegates)" in out
    ((name, shape, dtype, _, error, _, limit, _, result),) = table_rows(out, "output")
    assert (name, shape, dtype, result) == ("StatefulPartitionedCall_1:0", "1x10", "float32", "ok")
    assert float(error) <= 1e-5 and limit == "1e-05"
    assert out.rstrip().endswith("OK: every output agrees with LiteRT")
    assert "building auto" in err  # progress goes to stderr


def _perturbed_run(monkeypatch, change):
    real = build_module.run
    monkeypatch.setattr(
        build_module, "run", lambda lib, inputs: [change(y) for y in real(lib, inputs)]
    )


@pytest.mark.parametrize(("relative", "code"), [(1e-3, 1), (2e-6, 0)])
def test_verify_fails_when_the_module_disagrees(capsys, monkeypatch, relative, code):
    """A corrupted module output is caught (exit 1); a change far below the limit is not."""
    _perturbed_run(monkeypatch, lambda y: y + np.float32(relative * np.abs(y).max()))
    got, out, _ = cli(capsys, "verify", "--samples", "1")
    assert got == code
    ((*_, error, _, _, _, result),) = table_rows(out, "output")
    assert float(error) == pytest.approx(relative, rel=0.25)  # plus rounding noise
    if code:
        assert result == "FAIL"
        assert out.rstrip().endswith("FAIL: 1 of 1 outputs differ from LiteRT beyond the limit")


def test_verify_onnx_demo_with_a_batch(capsys):
    code, out, err = cli(capsys, "verify", "--onnx", "--shape", "x=3,64", "--mode", "sparse")
    assert code == 0, out + err
    assert "x float32[3x64]" in out and "onnxruntime (graph optimizations off)" in out
    ((name, shape, *_, result),) = table_rows(out, "output")
    assert (name, shape, result) == ("logits", "3x10", "ok")
    assert "symbolic" not in err  # the batch was given


def test_verify_quantized_model_in_zero_steps(capsys, monkeypatch):
    model = TFLITE / "mlp_int8.tflite"
    code, out, _ = cli(capsys, "verify", model, "--samples", "2")
    assert code == 0, out
    ((_, _, dtype, _, error, _, limit, _, result),) = table_rows(out, "output")
    assert (dtype, limit, result, float(error)) == ("int8", "0", "ok", 0.0)
    _perturbed_run(
        monkeypatch, lambda y: np.clip(y.astype(np.int16) + 1, -128, 127).astype(y.dtype)
    )
    code, out, _ = cli(capsys, "verify", model, "--samples", "1")
    assert code == 1 and table_rows(out, "output")[0][4] == "1"


def test_verify_float16_onnx_model(capsys, tmp_path):
    fixture = _onnx_fixtures().float16()
    path = tmp_path / "float16.onnx"
    path.write_bytes(fixture.model.SerializeToString())
    code, out, _ = cli(capsys, "verify", path, "--samples", "1")
    assert code == 0, out
    ((_, _, dtype, _, _, _, limit, _, result),) = table_rows(out, "output")
    assert (dtype, limit, result) == ("float16", "0.01", "ok")


def test_verify_needs_the_runtime_package(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    code, out, err = cli(capsys, "verify")
    assert code == 2 and out == ""
    assert (
        err == f"{ERROR}running LiteRT needs the 'ai-edge-litert' package "
        '(pip install "sparse-import[test]")\n'
    )


# --------------------------------------------------------------------------- inspect
def test_inspect_json_matches_the_model(capsys):
    code, out, _ = cli(capsys, "inspect", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["framework"] == "tflite" and doc["model"] == str(demo_model("tflite"))
    assert doc["inputs"] == [{"name": "serving_default_x:0", "shape": [1, 64], "dtype": "float32"}]
    assert doc["prices"].endswith(("built in", "roofline fallback"))  # the suite's store is empty
    stored = {t.name: t for t in read_sparse_tensors(demo_model("tflite").read_bytes()).values()}
    assert [w["name"] for w in doc["weights"]] == list(stored)
    for row in doc["weights"]:
        source = stored[row["name"]]
        assert tuple(row["shape"]) == source.shape and row["dtype"] == "float32"
        assert row["nnz"] == source.values.size
        assert row["density"] == pytest.approx(source.values.size / np.prod(source.shape))
        assert row["dense_bytes"] == 4 * np.prod(source.shape)
        assert row["consumer"] == "FULLY_CONNECTED"
        assert list(row["modes"]) == ["dense", "sparse", "auto"]
        assert row["modes"]["dense"]["lowering"] == "dense"
        assert row["modes"]["sparse"]["lowering"] in ("csr", "bsr")
        assert all(m["reason"] for m in row["modes"].values())
    py_rows = sparse_import.inspect(demo_model("tflite"), mode="auto")
    assert [r["lowering"] for r in py_rows] == [
        w["modes"]["auto"]["lowering"] for w in doc["weights"]
    ]


def test_inspect_table(capsys):
    code, out, _ = cli(capsys, "inspect")
    assert code == 0
    assert out.splitlines()[:4] == [
        "model   demo_mlp.tflite (embedded demo), TFLite",
        "inputs  serving_default_x:0 float32[1x64]",
        "sparse  2 weights",
        f"target  {pipeline.resolve_target()} (this machine's CPU)",
    ]
    weights = table_rows(out, "#  weight")
    assert [r[1:4] for r in weights] == [
        ["demo_mlp_1/fc1_1/MatMul", "FULLY_CONNECTED", "128x64"],
        ["demo_mlp_1/fc2_1/MatMul", "FULLY_CONNECTED", "64x128"],
    ]
    layouts = table_rows(out, "#  layout")
    from sparse_import.adapters.tflite import read_sparse_tensors

    stored = read_sparse_tensors(demo_model("tflite")).values()
    assert [" ".join(r[1:]) for r in layouts] == [f"{t.layout} {t.index_widths}" for t in stored]
    assert [t.layout for t in stored] == [
        "(d0 : dense, d1 : compressed)",
        "(d0 : dense, d1 floordiv 4 : compressed, d1 mod 4 : dense)",
    ]
    lowering = table_rows(out, "#  dense")
    assert [r[1] for r in lowering] == ["dense", "dense"]
    assert all(r[2] in ("csr", "bsr1x4") for r in lowering)
    assert "KiB dense" in out


def test_inspect_spy_writes_the_sparsity_pattern(capsys, tmp_path):
    """One PNG per weight, named after it, titled with its name and shape (tEXt chunk)."""
    code, out, _ = cli(capsys, "inspect", "--spy", tmp_path / "spy")
    assert code == 0
    files = sorted((tmp_path / "spy").glob("*.png"))
    assert [f.name for f in files] == ["demo_mlp_1_fc1_1_MatMul.png", "demo_mlp_1_fc2_1_MatMul.png"]
    assert all(f"wrote {f}" in out for f in files)
    assert b"tEXtTitle\x00demo_mlp_1/fc1_1/MatMul  128x64 " in files[0].read_bytes()
    assert b"tEXtTitle\x00demo_mlp_1/fc2_1/MatMul  64x128 " in files[1].read_bytes()


def test_inspect_onnx_demo_resolves_the_symbolic_batch(capsys):
    code, out, err = cli(capsys, "inspect", "--onnx")
    assert code == 0
    assert (
        "note: input 'x' has symbolic dimensions; using shape (1, 64) (set it with --shape x=...)"
        in err
    )
    assert [r[1:4] for r in table_rows(out, "#  weight")] == [
        ["fc1.weight", "Gemm", "128x64"],
        ["fc2.weight", "MatMul", "128x64"],
    ]


def test_shape_and_dtype_options_reach_the_import(capsys):
    code, out, err = cli(
        capsys, "inspect", "--onnx", "--json", "--shape", "x=5,64", "--dtype", "x=float32"
    )
    assert code == 0 and err == ""
    assert json.loads(out)["inputs"] == [{"name": "x", "shape": [5, 64], "dtype": "float32"}]


def _dense_onnx(path: Path) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    w = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "dense",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def test_model_without_sparse_weights_still_imports(capsys, tmp_path):
    model = _dense_onnx(tmp_path / "dense.onnx")
    code, out, _ = cli(capsys, "inspect", model)
    assert code == 0
    assert "sparse  0 weights" in out
    assert "no sparse weights: the model imports as a plain dense model" in out
    code, out, _ = cli(capsys, "verify", model, "--samples", "1")
    assert code == 0 and "OK: every output agrees with onnxruntime" in out


# --------------------------------------------------------------------------- compile, bench
def test_compile_exports_a_library_tvm_loads(capsys, tmp_path):
    import tvm
    from tvm.contrib import graph_executor

    output = tmp_path / "demo.so"
    code, out, _ = cli(capsys, "compile", "--mode", "auto", "-o", output)
    assert code == 0, out
    assert output.is_file() and f"library {output}" in out
    assert any("KiB" in line for line in out.splitlines() if line.startswith("parameters"))
    module = graph_executor.GraphModule(tvm.runtime.load_module(str(output))["default"](tvm.cpu()))
    oracle = make_oracle(demo_model("tflite"))
    inputs = random_inputs(oracle.inputs, 7)
    for name, value in inputs.items():
        module.set_input(name, value)
    module.run()
    (check,) = compare([module.get_output(0).numpy()], oracle.run(inputs), oracle.outputs)
    assert check.ok, check


def test_bench_compares_the_three_modes(capsys):
    code, out, err = cli(capsys, "bench", "--repeat", "2", "--min-repeat-ms", "1")
    assert code == 0, out + err
    rows = table_rows(out, "mode    kept")
    assert [r[0] for r in rows] == ["dense", "sparse", "auto"]
    assert rows[0][1:4] == ["0", "of", "2"] and rows[1][1:4] == ["2", "of", "2"]
    assert rows[0][-1] == "1.00x"
    assert all(r[-1].endswith("x") or r[-2:] == ["measurable", "difference"] for r in rows)
    for i, mode in enumerate(["dense", "sparse", "auto"], 1):
        assert f"[{i}/3] {mode}: building" in err
    assert "timing 3 modes in turns, 2 repeats" in err


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["inspect", "no/such.tflite"], "model file 'no/such.tflite' does not exist"),
        (["verify", "--onnx", "model.onnx"], "--onnx selects the embedded ONNX demo: give MODEL "
         "or --onnx, not both"),
        (["inspect", "--onnx", "--shape", "nope=1,64"], "shape_dict names 'nope', which is not an "
         "input of the model (x)"),
        (["compile", "-o", "no/such/dir/m.so"], "cannot write 'no/such/dir/m.so': no directory "
         "'no/such/dir'"),
        (["inspect", "--shape", "nope=1,64"], "shape_dict names 'nope', which is not an input of "
         "the model (serving_default_x:0)"),
    ],
)  # fmt: skip
def test_input_errors_are_one_line_with_status_2(capsys, argv, message):
    code, out, err = cli(capsys, *argv)
    assert (code, out, err) == (2, "", f"{ERROR}{message}\n")


def test_unknown_format(capsys, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a model\n")
    code, _, err = cli(capsys, "inspect", path)
    assert code == 2
    assert err.startswith(
        f"{ERROR}{str(path)!r} is neither a TFLite model (no 'TFL3' file identifier) nor an ONNX "
        "model ("
    )
    assert err.count("\n") == 1


def test_truncated_tflite_model(capsys, tmp_path):
    path = tmp_path / "cut.tflite"
    path.write_bytes(demo_model("tflite").read_bytes()[:4000])
    code, _, err = cli(capsys, "verify", path)
    assert code == 2 and err.startswith(ERROR) and err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["inspect", "--shape", "x=1,a"], "argument --shape: expected NAME=D0,D1,... with "
         "positive integers (at most 2147483647), got 'x=1,a'"),
        (["inspect", "--dtype", "x=float99"], "argument --dtype: expected NAME=DTYPE with DTYPE "
         "one of float16, float32, float64, int8, int16, int32, int64, uint8, uint16, uint32, "
         "uint64, bool, got 'x=float99'"),
        (["bench", "--repeat", "0"], "argument --repeat: expected an integer from 1 to 1000, "
         "got '0'"),
        (["compile", "--mode", "fast"], "argument --mode: invalid choice: 'fast'"),
        (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
    ],
)  # fmt: skip
def test_usage_errors(capsys, argv, message):
    code, out, err = cli(capsys, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"{ERROR}{message}")
    assert err.endswith(f"(see 'sparse-import {argv[0]} --help')\n".replace(" frobnicate", ""))


def test_tvm_failures_are_one_line(capsys, monkeypatch):
    import tvm

    def failing(loaded, mode, **kwargs):
        raise tvm.error.InternalError(
            "Traceback (most recent call last):\n  1: tvm::Foo\n  0: tvm::Bar\n"
            '  File "x.cc", line 3\nInternalError: Check failed: (a == b) is false: boom\n'
        )

    monkeypatch.setattr(pipeline, "compile_model", failing)
    code, _, err = cli(capsys, "compile", "-o", "unused.so")
    assert code == 2
    assert err.splitlines() == [
        "  building auto ... failed after 0.0 s",
        f"{ERROR}TVM failed: Check failed: (a == b) is false: boom",
    ]


def test_help_and_version(capsys):
    assert main(["--help"]) == 0
    assert "inspect" in capsys.readouterr().out
    done = subprocess.run(
        [sys.executable, "-m", "sparse_import", "--version"], capture_output=True, text=True
    )
    assert (done.returncode, done.stdout) == (0, f"sparse-import {sparse_import.__version__}\n")
