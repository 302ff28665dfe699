"""Families of hostile command lines and model files: each ends in a model or one clean error.

- paths that are not regular files, through every entry point (``to_relay``, ``load_model``,
  ``make_oracle``, the command line), each refused at once with the path and what it is;
- format detection: ONNX models that carry ``TFL3`` at bytes 4..8 (producer, doc string, domain,
  or a whole flatbuffer-looking header) import as ONNX and compute the right answer; random and
  truncated bytes are refused with both formats' reasons;
- the command line over a grid of bad arguments and files: exit 2, exactly one
  ``sparse-import: error:`` line under 500 characters, no traceback; exit 1 only for a
  disagreement; a closed pipe is quiet;
- model-zoo ONNX inputs, the default library name and the build target.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import io
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from adversarial.cases_cli import (
    ERROR,
    SPECIAL_PATHS,
    check_cli_error,
    make_flatbuffer_looking_onnx,
    make_matmul_onnx,
    make_special_path,
    run_cli,
)

import sparse_import
from sparse_import import SparseFormatError, UnsupportedModelError
from sparse_import.api import detect_framework
from sparse_import.detect import detect_bytes, read_model_file, tflite_header_problem
from sparse_import.pipeline import demo_model, load_model, relay_inputs, resolve_target
from sparse_import.verify import make_oracle

SEEDS = range(12)


@contextmanager
def deadline(seconds: int = 10):
    """Fail instead of hanging (a FIFO opened for reading blocks until a writer comes)."""

    def expire(signum, frame):
        raise TimeoutError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --------------------------------------------------------------------------- class 1: paths
ENTRY_POINTS = {
    "to_relay": lambda p: sparse_import.to_relay(p),
    "inspect": lambda p: sparse_import.inspect(p),
    "detect_framework": detect_framework,
    "load_model": load_model,
    "litert": lambda p: make_oracle(p, "tflite"),
    "onnxruntime": lambda p: make_oracle(p, "onnx"),
}


@pytest.mark.parametrize("kind", SPECIAL_PATHS)
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_paths_that_are_not_model_files_are_refused(tmp_path, kind, entry):
    path = make_special_path(tmp_path, kind)
    with deadline(), pytest.raises(UnsupportedModelError) as caught:
        ENTRY_POINTS[entry](path)
    assert repr(path) in str(caught.value) and SPECIAL_PATHS[kind] in str(caught.value)


@pytest.mark.parametrize("kind", SPECIAL_PATHS)
def test_paths_that_are_not_model_files_on_the_command_line(tmp_path, kind):
    path = make_special_path(tmp_path, kind)
    with deadline():
        line = check_cli_error(["inspect", path], SPECIAL_PATHS[kind])
    assert line.startswith(ERROR + "model ")


def test_a_fifo_swapped_in_after_the_check_is_refused_through_the_descriptor(tmp_path, monkeypatch):
    """The kind is checked again on the open descriptor (opened non-blocking)."""
    import sparse_import.detect as detect

    fifo = make_special_path(tmp_path, "fifo")
    monkeypatch.setattr(detect, "check_regular_file", lambda path: None)
    with deadline(), pytest.raises(UnsupportedModelError, match="is a FIFO"):
        read_model_file(fifo)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (errno.EACCES, "permission denied"),
        (errno.EIO, "input/output error"),
        (errno.EMFILE, "too many open files"),
    ],
)
def test_unreadable_file_names_the_path_without_errno_numbers(tmp_path, monkeypatch, error, reason):
    """An injected ``open`` failure (root ignores chmod, so permissions are simulated)."""
    import sparse_import.detect as detect

    path = tmp_path / "model.tflite"
    path.write_bytes(demo_model("tflite").read_bytes())

    def refuse(*args, **kwargs):
        raise OSError(error, os.strerror(error), str(path))

    monkeypatch.setattr(detect.os, "open", refuse)
    with pytest.raises(UnsupportedModelError) as caught:
        sparse_import.to_relay(path)
    assert str(caught.value) == f"model file {str(path)!r} cannot be read: {reason}"
    line = check_cli_error(["inspect", str(path)])
    assert "Errno" not in line and reason in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_by_permissions(tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(demo_model("tflite").read_bytes())
    path.chmod(0)
    with pytest.raises(UnsupportedModelError, match="cannot be read: permission denied"):
        read_model_file(path)


# --------------------------------------------------------------------------- class 2: formats
TFL3_FIELDS = [
    {"producer": "TFL3"},
    {"producer": "TFL3-exporter 2.0"},
    {"doc": "TFL3 is the TFLite identifier"},
    {"domain": "TFL3.example"},
    {"producer": "abTFL3", "ir_version": None},
]


@pytest.mark.parametrize("seed", SEEDS)
def test_onnx_models_with_tfl3_at_offset_4_are_onnx(tmp_path, seed):
    rng = np.random.default_rng(seed)
    fields = dict(TFL3_FIELDS[seed % len(TFL3_FIELDS)])
    for key in ("producer", "doc", "domain"):  # a random tail after the identifier
        if key in fields:
            tail = "".join(rng.choice(list("abcdefgh -_.0123456789"), rng.integers(0, 40)))
            fields[key] += tail
    model, _ = make_matmul_onnx(rng, **fields)
    data = model.SerializeToString()
    assert data[4:8] == b"TFL3"
    path = tmp_path / f"model{seed}.tflite"  # the name says TFLite too: content decides
    path.write_bytes(data)
    assert detect_framework(path) == detect_framework(data) == "onnx"
    if fields.get("ir_version", 8) is not None:
        loaded = load_model(path)
        assert loaded.framework == "onnx" and [s.name for s in loaded.inputs] == ["x"]


@pytest.fixture(scope="module")
def built_tfl3_onnx(tmp_path_factory):
    """Three TFL3-carrying ONNX models, converted to Relay and built once."""
    from sparse_import.relay_backend.build import build

    built = []
    for seed, fields in enumerate(TFL3_FIELDS[:3]):
        model, w = make_matmul_onnx(100 + seed, **fields)
        path = tmp_path_factory.mktemp("tfl3") / "model.onnx"
        path.write_bytes(model.SerializeToString())
        mod, params = sparse_import.to_relay(path, mode="dense")
        built.append((build(mod, params, target="llvm"), w))
    return built


@pytest.mark.parametrize("seed", range(6))
def test_tfl3_onnx_models_compute_x_times_w(built_tfl3_onnx, seed):
    from sparse_import.relay_backend.build import run

    lib, w = built_tfl3_onnx[seed % len(built_tfl3_onnx)]
    x = np.random.default_rng(seed).standard_normal((2, 4)).astype(np.float32)
    (y,) = run(lib, {"x": x})
    np.testing.assert_allclose(y, x @ w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("subgraphs", [None, 0, 3, 2**31 - 1])
def test_onnx_with_a_flatbuffer_header_falls_back_to_onnx(subgraphs):
    """A 65 MB ONNX file whose header passes the cheap flatbuffer checks (or even loads as an
    empty TFLite model) is ONNX, because the TFLite reading fails and ONNX parses."""
    data = make_flatbuffer_looking_onnx(subgraphs)
    problem = tflite_header_problem(data)
    assert (problem is None) == (subgraphs is not None)
    assert detect_bytes(data, "big.onnx") == "onnx"


@pytest.mark.parametrize("seed", range(40))
def test_random_bytes_are_neither_with_both_reasons(seed):
    rng = np.random.default_rng(seed)
    data = bytearray(rng.integers(0, 256, int(rng.integers(1, 400)), dtype=np.uint8).tobytes())
    if seed % 2 and len(data) >= 8:
        data[4:8] = b"TFL3"
    with pytest.raises(UnsupportedModelError) as caught:
        detect_bytes(bytes(data), "'noise.bin'")
    message = str(caught.value)
    assert message.startswith("'noise.bin' is neither a TFLite model (")
    assert ") nor an ONNX model (" in message
    if seed % 2 and len(data) >= 8:
        assert "file identifier" not in message.split(" nor ")[0]  # a structural reason


@pytest.mark.parametrize("framework", ["tflite", "onnx"])
@pytest.mark.parametrize("seed", range(10))
def test_truncated_models_end_in_a_documented_error(tmp_path, framework, seed):
    data = demo_model(framework).read_bytes()
    cut = int(np.random.default_rng(seed).integers(1, len(data)))
    path = tmp_path / f"cut.{framework}"
    path.write_bytes(data[:cut])
    try:
        sparse_import.inspect(path)
    except (SparseFormatError, UnsupportedModelError) as error:
        assert "\n" not in str(error).strip()
    code, _, err = run_cli("inspect", str(path))
    assert code in (0, 2) and "Traceback" not in err
    if code == 2:
        assert sum(line.startswith(ERROR) for line in err.splitlines()) == 1


def test_empty_bytes():
    with pytest.raises(UnsupportedModelError, match=r"^0 bytes: empty, neither a TFLite nor an"):
        detect_framework(b"")


# --------------------------------------------------------------------------- class 3: CLI
def _bad_arguments(tmp: Path) -> list[tuple[list[str], str]]:
    (tmp / "spy_file").write_text("")
    (tmp / "dir.so").mkdir(exist_ok=True)
    notes = tmp / "notes.txt"
    notes.write_text("not a model\n")
    return [
        (["inspect", "--shape", "x=0,64"], "positive integers"),
        (["compile", "--onnx", "--shape", "x=0,64"], "'x=0,64'"),
        (["verify", "--onnx", "--shape", "x=-1,64"], "positive integers"),
        (["inspect", "--shape", "x="], "got 'x='"),
        (["inspect", "--shape", "=1,2"], "got '=1,2'"),
        (["inspect", "--shape", "x=1,,2"], "got 'x=1,,2'"),
        (["inspect", "--shape", "x=99999999999,1"], "at most 2147483647"),
        (["inspect", "--dtype", "x=complex64"], "got 'x=complex64'"),
        (["inspect", "--dtype", "x=object"], "got 'x=object'"),
        (["inspect", "--dtype", "x=U3"], "got 'x=U3'"),
        (["inspect", "--dtype", "x=float32["], "DTYPE one of"),
        (["verify", "--samples", "0"], "from 1 to 1000"),
        (["verify", "--samples", "1000000000"], "from 1 to 1000, got '1000000000'"),
        (["bench", "--repeat", "-1"], "from 1 to 1000"),
        (["bench", "--min-repeat-ms", "x"], "from 1 to 60000"),
        (["verify", "--seed", "one"], "--seed: expected an integer from 0"),
        (["verify", "--seed", "-1"], "--seed: expected an integer from 0"),
        (["compile", "--mode", "fast"], "invalid choice"),
        (["inspect", "--frobnicate"], "unrecognized arguments"),
        ([], "COMMAND"),
        (["compile", "-o", str(tmp / "model.txt")], "does not end in .so or .tar"),
        (["compile", "-o", str(tmp / "model.so.txt")], "does not end in .so or .tar"),
        (["compile", "-o", str(tmp / "dir.so")], "is a directory"),
        (["compile", "-o", str(tmp / "no" / "m.so")], "no directory"),
        (["inspect", "--spy", str(tmp / "spy_file")], "exists and is not a directory"),
        (["inspect", "--spy", str(tmp / "spy_file" / "sub")], "--spy: cannot create"),
        (["verify", "--target", "nonsense"], "is not a TVM target"),
        (["bench", "--target", "c"], "does not build for the CPU through LLVM"),
        (["verify", "--target", "llvm -mtriple=aarch64-linux-gnu"], "aarch64"),
        (["compile", "--target", "llvm -mcpu=nonsense_cpu_x", "-o", str(tmp / "m.so")], "no CPU"),
        (["inspect", str(notes)], "is neither a TFLite model"),
        (["inspect", str(tmp)], "is a directory"),
        (["inspect", str(tmp / "missing.onnx")], "does not exist"),
        (["verify", "--onnx", "model.onnx"], "not both"),
        (["inspect", "--onnx", "--shape", "nope=1,64"], "not an input of the model (x)"),
        (["inspect", "--onnx", "--shape", "x=1,32"], "x"),
        (["inspect", "--onnx", "--shape", "x=1,64,1"], "x"),
        (["inspect", "--onnx", "--dtype", "x=int8"], "x"),
        (["inspect", "--onnx", "--dtype", "x=float64"], "x"),
        (
            ["inspect", "--dtype", "serving_default_x:0=int8"],
            "declares serving_default_x:0 of type FLOAT32",
        ),
        (["bench", "--onnx", "--shape", "x=100000000,64"], "over the dense byte limit"),
        (["verify", "--shape", "serving_default_x:0=70000000,64"], "over the dense byte limit"),
    ]


def test_bad_arguments_and_files_are_one_line_with_exit_2(tmp_path):
    failures = []
    for argv, fragment in _bad_arguments(tmp_path):
        try:
            check_cli_error(argv, fragment)
        except AssertionError as failure:
            failures.append(str(failure))
    assert not failures, "\n".join(failures)


def test_no_error_line_is_a_backtrace(capsys, monkeypatch):
    """A TVM error with its 2.5 KB C++ backtrace inside an adapter's message, a multi-line
    TVM error and an unexpected exception: each is one capped line."""
    import tvm

    from sparse_import import pipeline

    backtrace = "\n".join(
        f"  {i}: tvm::runtime::PackedFuncObj::Extractor<{'x' * 60}>" for i in range(40)
    )
    raised = [
        UnsupportedModelError(
            f"model: TVM's ONNX frontend cannot convert it: TVMError: Traceback (most recent "
            f"call last):\n{backtrace}\nTVMError: Check failed: (a == b) is false: shapes"
        ),
        tvm.error.InternalError(f"Traceback (most recent call last):\n{backtrace}\n  boom"),
        TypeError("reduce() of empty iterable with no initial value"),
        UnsupportedModelError("y" * 3000),
    ]
    expected = [
        "model: TVM's ONNX frontend cannot convert it: Check failed: (a == b) is false: shapes",
        "TVM failed: boom",
        "unexpected TypeError: reduce() of empty iterable with no initial value",
        "y" * 100,
    ]
    for exc, fragment in zip(raised, expected, strict=True):

        def failing(loaded, mode, exc=exc, **kwargs):
            raise exc

        monkeypatch.setattr(pipeline, "compile_model", failing)
        line = check_cli_error(["verify", "--samples", "1"], fragment)
        assert len(line) < 500
    capsys.readouterr()


def test_exit_1_only_for_a_disagreement(monkeypatch):
    build_module = importlib.import_module("sparse_import.relay_backend.build")
    real = build_module.run
    monkeypatch.setattr(build_module, "run", lambda lib, inputs: [y + 1 for y in real(lib, inputs)])
    code, out, err = run_cli("verify", "--samples", "1", "--target", "llvm")
    assert code == 1 and "FAIL: 1 of 1 outputs differ" in out and ERROR not in err


class _ClosedPipe(io.StringIO):
    """A stdout whose reader has gone: every write fails as on a closed pipe."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")


@pytest.mark.parametrize(
    "argv", [["inspect"], ["inspect", "--json"], ["inspect", "--onnx"], ["--help"], ["--version"]]
)
def test_closed_pipe_in_process_is_quiet(argv):
    from sparse_import.cli import main

    err = io.StringIO()
    with contextlib.redirect_stdout(_ClosedPipe()), contextlib.redirect_stderr(err):
        code = main(argv)
    assert code in (0, 141)
    assert all(line.startswith("note: ") for line in err.getvalue().splitlines())


def test_closed_pipe_exits_quietly():
    """``sparse-import inspect --json | head -0``: SIGPIPE semantics, no message."""
    done = subprocess.Popen(
        [sys.executable, "-m", "sparse_import", "inspect", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "TOPHUB_LOCATION": "NONE"},
    )
    done.stdout.close()  # the reader goes away before anything is written
    _, err = done.communicate(timeout=120)
    assert done.returncode in (0, 141), err
    assert err == b""


# --------------------------------------------------------------------------- class 4: inputs
@pytest.mark.parametrize("seed", range(6))
def test_model_zoo_inputs_list_only_runtime_inputs(tmp_path, seed):
    rng = np.random.default_rng(seed)
    zoo, unused = int(rng.integers(0, 400)), int(rng.integers(0, 5))
    model, _ = make_matmul_onnx(rng, zoo_inputs=zoo, unused_inputs=unused)
    path = tmp_path / "zoo.onnx"
    path.write_bytes(model.SerializeToString())
    loaded = load_model(path)
    assert [(s.name, s.shape) for s in loaded.inputs] == [("x", (2, 4))]
    assert [name for name, _, _ in relay_inputs(loaded.imported)] == ["x"]
    code, out, _ = run_cli("inspect", str(path))
    assert code == 0
    assert next(line for line in out.splitlines() if line.startswith("inputs")) == (
        "inputs  x float32[2x4]"
    )


def test_model_zoo_model_verifies_against_onnxruntime(tmp_path):
    """onnxruntime still needs the unused declared inputs; verify feeds them."""
    model, _ = make_matmul_onnx(1, zoo_inputs=20, unused_inputs=3)
    path = tmp_path / "zoo.onnx"
    path.write_bytes(model.SerializeToString())
    code, out, err = run_cli("verify", str(path), "--samples", "2", "--target", "llvm")
    assert code == 0, out + err
    assert "OK: every output agrees with onnxruntime" in out


# --------------------------------------------------------------------------- output, target
def test_default_library_names_differ_per_format_and_mode(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for argv, name in [
        (["compile", "--target", "llvm"], "demo_mlp.tflite.auto.so"),
        (["compile", "--onnx", "--mode", "dense", "--target", "llvm"], "demo_mlp.onnx.dense.so"),
    ]:
        code, out, err = run_cli(*argv)
        assert code == 0, out + err
        assert (tmp_path / name).is_file() and f"library {name}" in out
    assert len(list(tmp_path.glob("*.so"))) == 2


def test_target_reaches_the_build_and_the_header(tmp_path, monkeypatch):
    from sparse_import.target import resolve

    build_module = importlib.import_module("sparse_import.relay_backend.build")
    seen = []
    real = build_module.build

    def recording(mod, params, target=None, **kwargs):
        seen.append(target)
        return real(mod, params, target=target, **kwargs)

    monkeypatch.setattr(build_module, "build", recording)
    code, out, _ = run_cli("compile", "--target", "llvm", "-o", str(tmp_path / "m.tar"))
    generic = resolve_target("llvm")
    assert "-mcpu" not in generic
    assert code == 0 and seen == [generic] and out.splitlines()[4] == "target  llvm"
    code, out, _ = run_cli("verify", "--samples", "1")
    assert code == 0 and seen[-1] == resolve_target(None) == str(resolve(None)).replace(
        " -keys=cpu", ""
    )
    assert f"target   {seen[-1]} (this machine's CPU)" in out.splitlines()
