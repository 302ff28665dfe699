"""The public entry points: :func:`to_relay` and :func:`inspect`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .detect import detect_bytes, read_model_file
from .errors import UnsupportedModelError
from .imported import ImportedModel
from .planning.modes import MODES, check_mode
from .tensor import SparseTensor

__all__ = ["MODES", "detect_framework", "import_model", "inspect", "to_relay"]


def _read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a model file: a non-empty regular file, never a FIFO, device or directory."""
    return read_model_file(path)


def detect_framework(model: Any) -> str:
    """Name the framework of ``model``: ``"tflite"``, ``"onnx"`` or ``"scipy"``.

    Paths and bytes are recognized by content, not by file name (see :mod:`sparse_import.detect`):
    a sound TFLite flatbuffer header, else an ONNX protobuf; a file that is neither is refused
    with both reasons. A path must lead to a regular file.

    Raises
    ------
    UnsupportedModelError
        Naming the path or the object: a missing, empty or special file (directory, FIFO,
        device, socket), bytes that are neither TFLite nor ONNX, an object of another type.

    Examples
    --------
    >>> from sparse_import.api import detect_framework
    >>> from sparse_import.pipeline import demo_model
    >>> detect_framework(demo_model("onnx")), detect_framework(demo_model("tflite"))
    ('onnx', 'tflite')
    """
    if isinstance(model, SparseTensor):
        return "scipy"
    module = type(model).__module__ or ""
    if module.startswith("scipy.sparse"):
        return "scipy"
    if module.startswith("tflite"):
        return "tflite"
    if module.startswith("onnx"):
        return "onnx"
    if isinstance(model, (str, os.PathLike)):
        return detect_bytes(_read_bytes(model), repr(os.fspath(model)))
    if isinstance(model, (bytes, bytearray, memoryview)):
        return detect_bytes(bytes(model), f"{len(model)} bytes")
    raise UnsupportedModelError(
        f"cannot import a {type(model).__name__}: expected a .tflite or .onnx path, its bytes, "
        "a tflite.Model, an onnx.ModelProto, a SciPy sparse matrix or a SparseTensor"
    )


def import_model(
    model: Any,
    *,
    shape_dict: dict[str, Any] | None = None,
    dtype_dict: dict[str, str] | None = None,
) -> ImportedModel:
    """Convert ``model`` with TVM's stock frontend, every sparse weight as an unbound parameter.

    A path is read once, through :func:`~sparse_import.detect.read_model_file`; the adapters
    get its bytes (and, for ONNX, its directory for external data).
    """
    extra: dict[str, Any] = {}
    if isinstance(model, (str, os.PathLike)):
        path = Path(os.fspath(model))
        model = _read_bytes(path)
        framework = detect_bytes(model, repr(str(path)))
        if framework == "onnx":
            extra["base_dir"] = path.parent
    else:
        framework = detect_framework(model)
    if framework == "tflite":
        from sparse_import.adapters import tflite as adapter
    elif framework == "onnx":
        from sparse_import.adapters import onnx as adapter
    else:
        from sparse_import.relay_backend import single_layer as adapter
    # Hand the model over without keeping a reference here: an adapter that parses file bytes
    # into its own objects can then free them (a model as large as its sparse weights).
    handed = [model]
    del model
    return adapter.import_model(handed.pop(), shape_dict=shape_dict, dtype_dict=dtype_dict, **extra)


def to_relay(
    model: Any,
    *,
    mode: str = "auto",
    shape_dict: dict[str, Any] | None = None,
    dtype_dict: dict[str, str] | None = None,
    batch_size: int | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Import a model with sparse weights into Relay.

    Parameters
    ----------
    model : path, bytes, tflite.Model, onnx.ModelProto, SciPy sparse matrix or SparseTensor
        A ``.tflite`` or ``.onnx`` model (path, its bytes, or the parsed object), or one weight
        matrix ``W`` of shape ``(units, in)``, which gives the one-layer module
        ``y = dense(x, W)``.
    mode : {"auto", "dense", "sparse"}
        ``"dense"`` turns every sparse weight into a dense constant; ``"sparse"`` keeps every
        matrix-product weight compressed (``nn.sparse_dense``); ``"auto"`` chooses per weight
        from a measured cost model.
    shape_dict, dtype_dict : dict, optional
        Input shapes and dtypes by input name, as for TVM's own frontends.
    batch_size : int, optional
        The batch size ``auto`` optimizes for (default: taken from the input shapes).

    Returns
    -------
    mod : tvm.IRModule
    params : dict of str to tvm.nd.NDArray

    Examples
    --------
    >>> import scipy.sparse as sp, sparse_import
    >>> w = sp.random_array((64, 32), density=0.1, format="csr", rng=0)
    >>> mod, params = sparse_import.to_relay(w, mode="sparse")
    >>> "nn.sparse_dense" in mod.astext()
    True
    """
    check_mode(mode)
    from sparse_import import relay_backend as backend

    imported = import_model(model, shape_dict=shape_dict, dtype_dict=dtype_dict)
    mod, params, _ = backend.lower(imported, mode=mode, batch_size=batch_size)
    return mod, params


def inspect(
    model: Any,
    *,
    mode: str = "auto",
    shape_dict: dict[str, Any] | None = None,
    dtype_dict: dict[str, str] | None = None,
    batch_size: int | None = None,
) -> list[dict[str, Any]]:
    """One row per sparse weight: layout, sizes, consumer and the lowering ``mode`` chooses.

    Examples
    --------
    >>> import scipy.sparse as sp, sparse_import
    >>> w = sp.random_array((64, 32), density=0.1, format="csr", rng=0)
    >>> row, = sparse_import.inspect(w, mode="sparse")
    >>> row["shape"], row["lowering"]
    ((64, 32), 'csr')
    """
    check_mode(mode)
    from sparse_import import relay_backend as backend

    imported = import_model(model, shape_dict=shape_dict, dtype_dict=dtype_dict)
    return backend.inspect_rows(imported, mode=mode, batch_size=batch_size)
