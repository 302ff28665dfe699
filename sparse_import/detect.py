"""Read a model file safely and tell TFLite from ONNX by its bytes.

This is the one module that knows how the two formats look from the outside. A TFLite model is
a flatbuffer: a 4-byte offset of the root table, then the file identifier ``TFL3``. An ONNX model
is a protobuf ``ModelProto``, which has no magic number at all, so a protobuf string that happens
to hold ``TFL3`` at bytes 4..8 (a producer or graph name) must not make it a TFLite file.

- :func:`read_model_file`: the bytes of a regular file, never blocking on a FIFO or a device;
- :func:`tflite_header_problem`: a cheap check of the flatbuffer header (identifier, root table
  and its vtable inside the file);
- :func:`detect_bytes`: ``"tflite"`` or ``"onnx"``; when the TFLite header looks sound but the
  flatbuffer does not load, ONNX is tried before giving up, and a file that is neither is
  refused with both reasons.

Examples
--------
>>> from sparse_import.detect import detect_bytes, tflite_header_problem
>>> tflite_header_problem(b"not a model at all")
"no 'TFL3' file identifier"
>>> try:
...     detect_bytes(b"not a model at all", "'notes.txt'")
... except ValueError as error:
...     print(error)  # doctest: +ELLIPSIS
'notes.txt' is neither a TFLite model (no 'TFL3' file identifier) nor an ONNX model (...)
"""

from __future__ import annotations

import errno
import os
import stat
import struct

from .errors import SparseFormatError, UnsupportedModelError

__all__ = [
    "FRAMEWORKS",
    "TFLITE_IDENTIFIER",
    "check_regular_file",
    "detect_bytes",
    "read_model_file",
    "tflite_header_problem",
]

FRAMEWORKS = ("tflite", "onnx")
TFLITE_IDENTIFIER = b"TFL3"
"""The TFLite flatbuffer file identifier, at bytes 4..8 of every ``.tflite`` file."""

_UOFFSET = struct.Struct("<I")
_SOFFSET = struct.Struct("<i")
_VTABLE = struct.Struct("<HH")
_HEADER_BYTES = 8  # root offset + file identifier
_MODEL_SUBGRAPHS = 2  # field index of Model.subgraphs in the TFLite schema
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)
_MISSING = (errno.ENOENT, errno.ENOTDIR)


# --------------------------------------------------------------------------- files
def _describe(path: str) -> str:
    return f"model path {path!r}"


def _os_reason(error: OSError) -> str:
    """``"permission denied"`` from an OSError, without the ``[Errno 13]`` prefix."""
    return (error.strerror or type(error).__name__).lower()


def check_regular_file(path: str | os.PathLike[str]) -> os.stat_result:
    """Refuse anything but an existing regular file (symbolic links are followed).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    os.stat_result
        Of the file the path leads to.

    Raises
    ------
    UnsupportedModelError
        Naming the path: it does not exist, holds a NUL byte, cannot be examined, or leads to a
        directory, FIFO, device or socket.
    """
    text = os.fspath(path)
    if not isinstance(text, str):
        raise UnsupportedModelError(f"model path {text!r} must be text, not {type(text).__name__}")
    if "\0" in text:
        raise UnsupportedModelError(f"{_describe(text)} contains a NUL byte")
    try:
        info = os.stat(text)
    except OSError as error:
        if error.errno in _MISSING:
            link = " (a symbolic link to a missing file)" if os.path.islink(text) else ""
            raise UnsupportedModelError(f"model file {text!r} does not exist{link}") from None
        raise UnsupportedModelError(
            f"{_describe(text)} cannot be examined: {_os_reason(error)}"
        ) from None
    _check_kind(text, info.st_mode)
    return info


def _check_kind(text: str, mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _KINDS if test(mode)), "a special file")
    link = "a symbolic link to " if os.path.islink(text) else ""
    raise UnsupportedModelError(
        f"{_describe(text)} is {link}{kind}, not a regular file: give the model file itself"
    )


def read_model_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of the model file at ``path``, which must be a non-empty regular file.

    The file is examined before it is opened and again through the open descriptor (opened
    non-blocking), so a FIFO, a device or a directory is refused at once, even one swapped in
    between the two steps.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    bytes

    Raises
    ------
    UnsupportedModelError
        Naming the path (see :func:`check_regular_file`), or an empty or unreadable file.
    """
    text = os.fspath(path)
    check_regular_file(text)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(text, flags | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise UnsupportedModelError(
            f"model file {text!r} cannot be read: {_os_reason(error)}"
        ) from None
    try:
        _check_kind(text, os.fstat(fd).st_mode)
        with os.fdopen(fd, "rb", closefd=True) as file:
            fd = -1
            data = file.read()
    except OSError as error:
        raise UnsupportedModelError(
            f"model file {text!r} cannot be read: {_os_reason(error)}"
        ) from None
    finally:
        if fd >= 0:
            os.close(fd)
    if not data:
        raise UnsupportedModelError(f"model file {text!r} is empty (0 bytes)")
    return data


# --------------------------------------------------------------------------- formats
def tflite_header_problem(data: bytes | bytearray | memoryview) -> str | None:
    """What keeps ``data`` from starting like a TFLite flatbuffer, or ``None``.

    Checks in O(1): the file identifier; the root table's offset inside the file and 4-byte
    aligned; its vtable inside the file with a size that holds its own header; the root table's
    inline size inside the file; a ``subgraphs`` field in it.
    """
    size = len(data)
    if size < _HEADER_BYTES or bytes(data[4:8]) != TFLITE_IDENTIFIER:
        return f"no {TFLITE_IDENTIFIER.decode()!r} file identifier"
    (root,) = _UOFFSET.unpack_from(data, 0)
    if not _HEADER_BYTES <= root <= size - _SOFFSET.size or root % 4:
        return f"root table offset {root} does not fit the {size}-byte file"
    (back,) = _SOFFSET.unpack_from(data, root)
    vtable = root - back
    if not 0 <= vtable <= size - _VTABLE.size or vtable % 2:
        return f"vtable of the root table at {vtable} does not fit the {size}-byte file"
    vtable_size, table_size = _VTABLE.unpack_from(data, vtable)
    if vtable_size < _VTABLE.size or vtable_size % 2 or vtable + vtable_size > size:
        return f"vtable of the root table declares {vtable_size} bytes at {vtable}"
    if table_size < _SOFFSET.size or root + table_size > size:
        return f"root table declares {table_size} bytes at {root}"
    slot = vtable + _VTABLE.size + 2 * _MODEL_SUBGRAPHS
    if vtable_size <= slot - vtable or not int.from_bytes(data[slot : slot + 2], "little"):
        return "the root table has no subgraphs"
    return None


def _tflite_load_problem(data: bytes) -> Exception | None:
    from sparse_import.adapters.tflite.loader import load_model

    try:
        model = load_model(data)
    except (SparseFormatError, UnsupportedModelError) as error:
        return error
    if not model.SubgraphsLength():
        return UnsupportedModelError(f"{len(data)} bytes: TFLite model without subgraphs")
    return None


def _onnx_problem(data: bytes) -> str | None:
    from sparse_import.adapters.onnx.model import load_model

    try:
        load_model(data)
    except UnsupportedModelError as error:
        text = str(error)
        prefix = f"{len(data)} bytes are not an ONNX model: "
        return text[len(prefix) :] if text.startswith(prefix) else text
    return None


def detect_bytes(data: bytes, origin: str) -> str:
    """``"tflite"`` or ``"onnx"`` for the bytes of a model file.

    Parameters
    ----------
    data : bytes
    origin : str
        How messages name the file (``"'model.onnx'"``, ``"123 bytes"``).

    Returns
    -------
    {"tflite", "onnx"}
        ``"tflite"`` when the flatbuffer header is sound and the model loads (or ONNX fails
        too: then it is a damaged TFLite model and the TFLite adapter's own error is raised);
        ``"onnx"`` when ONNX parses.

    Raises
    ------
    UnsupportedModelError
        ``origin is neither a TFLite model (...) nor an ONNX model (...)``, with both reasons.
    SparseFormatError
        A sound TFLite header over a damaged flatbuffer that is not ONNX either (the TFLite
        adapter's message, which names the tensor or table).
    """
    data = bytes(data)
    if not data:
        raise UnsupportedModelError(f"{origin}: empty, neither a TFLite nor an ONNX model")
    header = tflite_header_problem(data)
    if header is None:
        failure = _tflite_load_problem(data)
        if failure is None:
            return "tflite"
        if _onnx_problem(data) is None:  # ONNX bytes that look like a flatbuffer header
            return "onnx"
        raise failure
    onnx = _onnx_problem(data)
    if onnx is None:
        return "onnx"
    raise UnsupportedModelError(
        f"{origin} is neither a TFLite model ({header}) nor an ONNX model ({onnx})"
    )
