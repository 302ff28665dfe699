"""Replay cases for the command line and the model-loading entry points.

Classes: model paths that are not regular files (FIFOs, devices, sockets, directories, links to
them, NUL bytes, empty files); format detection (ONNX bytes that carry ``TFL3`` at offset 4, a
flatbuffer-looking header over ONNX, random and truncated bytes); command-line errors (one line,
exit 2, no traceback); model-zoo ONNX inputs; the build target. The ``make_*`` helpers build the
inputs and are shared with ``tests/test_harden_cli.py``.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import struct
from pathlib import Path

import numpy as np

from sparse_import import SparseFormatError, UnsupportedModelError

from .contract import assert_close, expect_error

ERROR = "sparse-import: error: "
TFLITE_ROOT_MIN = 0x04120808  # root offset of an ONNX file: ir_version 8, a 4-byte producer


# --------------------------------------------------------------------------- builders
def make_matmul_onnx(
    rng: np.random.Generator | int = 0,
    *,
    producer: str = "",
    doc: str = "",
    domain: str = "",
    blob: bytes = b"",
    zoo_inputs: int = 0,
    unused_inputs: int = 0,
    ir_version: int | None = 8,
):
    """``y = reshape(x @ w)``, with optional string fields, a raw byte initializer ``blob``, and
    old model-zoo habits: ``zoo_inputs`` initializers also declared as graph inputs (``*__SHAPE``
    ones among them) and ``unused_inputs`` declared inputs that nothing reads.

    Returns ``(model, w)``.
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(rng)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    shape = np.array([2, 3], np.int64)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(shape, "y__SHAPE")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])]
    if zoo_inputs:
        inputs += [
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 3]),
            helper.make_tensor_value_info("y__SHAPE", TensorProto.INT64, [2]),
        ]
        for i in range(zoo_inputs):
            name = f"c{i}__SHAPE"
            inits.append(numpy_helper.from_array(np.array([i, 1], np.int64), name))
            inputs.append(helper.make_tensor_value_info(name, TensorProto.INT64, [2]))
    inputs += [
        helper.make_tensor_value_info(f"unused_{i}", TensorProto.FLOAT, [i + 1])
        for i in range(unused_inputs)
    ]
    if blob:
        inits.append(helper.make_tensor("blob", TensorProto.UINT8, [len(blob)], blob, raw=True))
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Reshape", ["h", "y__SHAPE"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    if ir_version is None:
        model.ClearField("ir_version")
    else:
        model.ir_version = ir_version
    for field, value in (("producer_name", producer), ("doc_string", doc), ("domain", domain)):
        if value:
            setattr(model, field, value)
    return model, w


def make_flatbuffer_looking_onnx(subgraphs: int | None) -> bytes:
    """ONNX bytes whose first 8 bytes are a plausible TFLite header: producer ``TFL3`` puts the
    identifier at offset 4, and a raw initializer places a vtable where the root offset points.

    ``subgraphs``: ``None`` for a root table without fields; else a ``subgraphs`` field whose
    vector declares that many entries (``0``: an empty, loadable TFLite model).
    """

    def serialize(blob: bytes) -> bytes:
        model, _ = make_matmul_onnx(0, producer="TFL3", blob=blob)
        return model.SerializeToString()

    size = TFLITE_ROOT_MIN + 64
    probe = serialize(bytes(size))
    start = probe.index(bytes(64))
    (root,) = struct.unpack_from("<I", probe)
    blob = bytearray(size)
    at = root - start
    struct.pack_into("<i", blob, at, -8)  # vtable 8 bytes after the table
    if subgraphs is None:
        struct.pack_into("<HH", blob, at + 8, 4, 8)
    else:
        struct.pack_into("<HHHHH", blob, at + 8, 10, 8, 0, 0, 4)  # subgraphs at table + 4
        struct.pack_into("<I", blob, at + 4, 16)  # -> vector at table + 20
        struct.pack_into("<I", blob, at + 20, subgraphs)
    data = serialize(bytes(blob))
    if data[4:8] != b"TFL3" or struct.unpack_from("<I", data)[0] != root:
        raise AssertionError("the construction no longer puts a TFLite header on the ONNX bytes")
    return data


def make_special_path(tmp: Path, kind: str) -> str:
    """A model path of ``kind`` that is not a readable regular model file."""
    if kind == "fifo":
        os.mkfifo(tmp / "model.tflite")
        return str(tmp / "model.tflite")
    if kind == "link-to-fifo":
        os.mkfifo(tmp / "pipe")
        os.symlink(tmp / "pipe", tmp / "model.onnx")
        return str(tmp / "model.onnx")
    if kind == "directory":
        (tmp / "model.onnx").mkdir()
        return str(tmp / "model.onnx")
    if kind == "link-to-directory":
        os.symlink(tmp, tmp / "dir.tflite")
        return str(tmp / "dir.tflite")
    if kind == "socket":
        path = tmp / "s.onnx"
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(str(path))
        return str(path)
    if kind == "empty":
        (tmp / "empty.tflite").write_bytes(b"")
        return str(tmp / "empty.tflite")
    if kind == "dangling":
        os.symlink(tmp / "gone.tflite", tmp / "link.tflite")
        return str(tmp / "link.tflite")
    if kind == "nul":
        return str(tmp / "mo\0del.tflite")
    if kind == "under-a-file":
        (tmp / "file").write_bytes(b"x")
        return str(tmp / "file" / "model.tflite")
    if kind.startswith("/dev/"):
        return kind
    raise ValueError(f"unknown kind {kind!r}")


# What each kind of path is called in the message.
SPECIAL_PATHS = {
    "fifo": "is a FIFO (named pipe), not a regular file",
    "link-to-fifo": "is a symbolic link to a FIFO (named pipe)",
    "directory": "is a directory, not a regular file",
    "link-to-directory": "is a symbolic link to a directory",
    "socket": "is a socket, not a regular file",
    "empty": "is empty (0 bytes)",
    "dangling": "does not exist (a symbolic link to a missing file)",
    "nul": "contains a NUL byte",
    "under-a-file": "does not exist",
    "/dev/zero": "is a character device",
    "/dev/urandom": "is a character device",
    "/dev/null": "is a character device",
}


def run_cli(*argv: str) -> tuple[int, str, str]:
    """``sparse_import.cli.main(argv)`` in-process: exit status, stdout, stderr."""
    from sparse_import.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def check_cli_error(argv: list[str], *fragments: str) -> str:
    """Fail unless ``argv`` exits 2 with one short ``sparse-import: error:`` line naming
    ``fragments`` (progress and notes may precede it), and no traceback."""
    code, _, err = run_cli(*argv)
    errors = [line for line in err.splitlines() if line.startswith(ERROR)]
    problems = []
    if code != 2:
        problems.append(f"exit {code}")
    if len(errors) != 1:
        problems.append(f"{len(errors)} error lines")
    if "Traceback" in err or any(len(line) >= 500 for line in err.splitlines()):
        problems.append("a traceback or an overlong line")
    if errors and any(f not in errors[0] for f in fragments):
        problems.append(f"message does not name {fragments}")
    if problems:
        raise AssertionError(f"{argv}: {', '.join(problems)}; stderr {err[-600:]!r}")
    return errors[0]


# --------------------------------------------------------------------------- class 1: paths
def _path_case(tmp: Path, kind: str) -> None:
    import sparse_import

    path = make_special_path(tmp, kind)
    with expect_error(UnsupportedModelError, repr(path), SPECIAL_PATHS[kind]):
        sparse_import.to_relay(path)


def case_path_fifo_to_relay(tmp: Path) -> None:
    _path_case(tmp, "fifo")


def case_path_symlink_to_fifo_to_relay(tmp: Path) -> None:
    _path_case(tmp, "link-to-fifo")


def case_path_directory_to_relay(tmp: Path) -> None:
    _path_case(tmp, "directory")


def case_path_symlink_to_directory(tmp: Path) -> None:
    _path_case(tmp, "link-to-directory")


def case_path_socket(tmp: Path) -> None:
    _path_case(tmp, "socket")


def case_path_dev_zero(tmp: Path) -> None:
    _path_case(tmp, "/dev/zero")


def case_path_dev_urandom(tmp: Path) -> None:
    _path_case(tmp, "/dev/urandom")


def case_path_empty_file(tmp: Path) -> None:
    _path_case(tmp, "empty")


def case_path_nul_byte(tmp: Path) -> None:
    _path_case(tmp, "nul")


def case_path_dangling_symlink(tmp: Path) -> None:
    _path_case(tmp, "dangling")


def case_path_fifo_cli_verify(tmp: Path) -> None:
    path = make_special_path(tmp, "fifo")
    check_cli_error(["verify", path], repr(path), "FIFO")


def case_path_fifo_pipeline_and_oracle(tmp: Path) -> None:
    from sparse_import.pipeline import load_model
    from sparse_import.verify import make_oracle

    path = make_special_path(tmp, "link-to-fifo")
    with expect_error(UnsupportedModelError, repr(path), "FIFO"):
        load_model(path)
    for framework in ("tflite", "onnx"):
        with expect_error(UnsupportedModelError, repr(path), "FIFO"):
            make_oracle(path, framework)


# --------------------------------------------------------------------------- class 2: formats
def _onnx_with_tfl3(tmp: Path, name: str, **fields: str) -> None:
    """An ONNX model whose bytes 4..8 are ``TFL3`` imports as ONNX and computes ``x @ w``."""
    import sparse_import
    from sparse_import.relay_backend.build import build, run

    model, w = make_matmul_onnx(7, **fields)
    data = model.SerializeToString()
    if data[4:8] != b"TFL3":
        raise AssertionError(f"construction: bytes 4..8 are {data[4:8]!r}")
    path = tmp / name
    path.write_bytes(data)
    mod, params = sparse_import.to_relay(path, mode="dense")
    x = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
    (y,) = run(build(mod, params, target="llvm"), {"x": x})
    assert_close(y, x @ w, f"{name}: y")


def case_format_onnx_producer_tfl3(tmp: Path) -> None:
    _onnx_with_tfl3(tmp, "producer.onnx", producer="TFL3-exporter")


def case_format_onnx_doc_string_tfl3(tmp: Path) -> None:
    _onnx_with_tfl3(tmp, "doc.bin", doc="TFL3 is not a TFLite file identifier here")


def case_format_onnx_domain_tfl3(tmp: Path) -> None:
    _onnx_with_tfl3(tmp, "domain.tflite", domain="TFL3.example")


def case_format_onnx_without_ir_version(tmp: Path) -> None:
    from sparse_import.api import detect_framework

    model, _ = make_matmul_onnx(0, producer="abTFL3", ir_version=None)
    data = model.SerializeToString()
    if data[4:8] != b"TFL3":
        raise AssertionError(f"construction: bytes 4..8 are {data[4:8]!r}")
    if detect_framework(data) != "onnx":
        raise AssertionError("ONNX bytes without ir_version are not detected as ONNX")


def case_format_onnx_with_flatbuffer_header(tmp: Path) -> None:
    from sparse_import.api import detect_framework

    path = tmp / "big.onnx"
    path.write_bytes(make_flatbuffer_looking_onnx(None))
    if detect_framework(path) != "onnx":
        raise AssertionError("an ONNX file with a TFLite-looking header is not ONNX")


def case_format_onnx_with_loadable_flatbuffer(tmp: Path) -> None:
    from sparse_import.api import detect_framework

    data = make_flatbuffer_looking_onnx(0)  # an empty subgraph vector: TFLite loads it
    if detect_framework(data) != "onnx":
        raise AssertionError("an ONNX file that also loads as an empty TFLite model is not ONNX")


def case_format_random_bytes_with_identifier(tmp: Path) -> None:
    from sparse_import.api import detect_framework

    rng = np.random.default_rng(5)
    data = bytearray(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    data[4:8] = b"TFL3"
    path = tmp / "noise.tflite"
    path.write_bytes(bytes(data))
    with expect_error(UnsupportedModelError, repr(str(path)), "neither a TFLite model", "ONNX"):
        detect_framework(path)


def case_format_truncated_tflite(tmp: Path) -> None:
    import sparse_import
    from sparse_import.pipeline import demo_model

    data = demo_model("tflite").read_bytes()
    for cut in (9, 64, len(data) // 3, len(data) - 100):
        path = tmp / f"cut{cut}.tflite"
        path.write_bytes(data[:cut])
        with expect_error((SparseFormatError, UnsupportedModelError)):
            sparse_import.to_relay(path)


def case_format_truncated_onnx_cli(tmp: Path) -> None:
    from sparse_import.pipeline import demo_model

    data = demo_model("onnx").read_bytes()
    for cut in (3, 40, len(data) // 2):
        path = tmp / f"cut{cut}.onnx"
        path.write_bytes(data[:cut])
        check_cli_error(["inspect", str(path)], repr(str(path)))


# --------------------------------------------------------------------------- class 3: CLI errors
def case_cli_zero_dimension(tmp: Path) -> None:
    check_cli_error(["compile", "--onnx", "--shape", "x=0,64", "-o", str(tmp / "m.so")], "x=0,64")


def case_cli_shape_overrides_fixed_dimension(tmp: Path) -> None:
    check_cli_error(["verify", "--onnx", "--shape", "x=1,32"], "x")


def case_cli_dtype_mismatch_onnx(tmp: Path) -> None:
    check_cli_error(["inspect", "--onnx", "--dtype", "x=int8"], "x")


def case_cli_dtype_mismatch_tflite(tmp: Path) -> None:
    check_cli_error(["inspect", "--dtype", "serving_default_x:0=int8"], "serving_default_x:0")


def case_cli_spy_is_a_file(tmp: Path) -> None:
    (tmp / "spy").write_text("")
    check_cli_error(["inspect", "--spy", str(tmp / "spy")], "--spy", "is not a directory")


def case_cli_output_not_a_library(tmp: Path) -> None:
    check_cli_error(["compile", "-o", str(tmp / "model.txt")], "model.txt", ".so")


def case_cli_output_is_a_directory(tmp: Path) -> None:
    (tmp / "out.so").mkdir()
    check_cli_error(["compile", "-o", str(tmp / "out.so")], "is a directory")


def case_cli_directory_as_model(tmp: Path) -> None:
    check_cli_error(["inspect", str(tmp)], repr(str(tmp)), "directory")


def case_cli_input_over_the_byte_limit(tmp: Path) -> None:
    check_cli_error(["bench", "--onnx", "--shape", "x=100000000,64"], "input 'x'", "limit")


def case_cli_bad_target(tmp: Path) -> None:
    check_cli_error(["verify", "--target", "nonsense -mcpu=nothing"], "--target", "nonsense")


def case_cli_foreign_target_for_verify(tmp: Path) -> None:
    check_cli_error(["verify", "--target", "llvm -mtriple=aarch64-linux-gnu"], "aarch64")


def case_cli_broken_pipe_is_quiet(tmp: Path) -> None:
    from sparse_import.cli import main

    class ClosedPipe(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    err = io.StringIO()
    with contextlib.redirect_stdout(ClosedPipe()), contextlib.redirect_stderr(err):
        code = main(["inspect", "--json"])
    if code not in (0, 141) or err.getvalue():
        raise AssertionError(f"closed stdout: exit {code}, stderr {err.getvalue()!r}")


# --------------------------------------------------------------------------- class 4, 5
def case_inputs_model_zoo_onnx(tmp: Path) -> None:
    from sparse_import.pipeline import load_model

    model, _ = make_matmul_onnx(3, zoo_inputs=300, unused_inputs=4)
    path = tmp / "zoo.onnx"
    path.write_bytes(model.SerializeToString())
    names = [spec.name for spec in load_model(path).inputs]
    if names != ["x"]:
        raise AssertionError(f"runtime inputs of a model-zoo model: {names[:5]}... ({len(names)})")


def case_target_reaches_the_build(tmp: Path) -> None:
    code, out, err = run_cli("compile", "--target", "llvm", "-o", str(tmp / "m.tar"))
    if code != 0 or "target  llvm\n" not in out:
        raise AssertionError(f"compile --target llvm: exit {code}, {out[-300:]!r} {err[-300:]!r}")
