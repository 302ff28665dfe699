"""The public entry points: :func:`to_relay` and :func:`inspect`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import UnsupportedModelError
from .imported import ImportedModel
from .tensor import SparseTensor

MODES = ("dense", "sparse", "auto")
_TFLITE_MAGIC = b"TFL3"


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise UnsupportedModelError(f"model file {str(path)!r} does not exist")
    if path.is_dir():
        raise UnsupportedModelError(f"model path {str(path)!r} is a directory, not a model file")
    return path.read_bytes()


def detect_framework(model: Any) -> str:
    """Name the framework of ``model``: ``"tflite"``, ``"onnx"`` or ``"scipy"``.

    Paths and bytes are recognized by content (the TFLite file identifier ``TFL3``, else an ONNX
    protobuf), not by file name.
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
        path = Path(model)
        if not path.exists():
            raise UnsupportedModelError(f"model file {str(path)!r} does not exist")
        with path.open("rb") as f:
            head = f.read(8)
        return "tflite" if head[4:8] == _TFLITE_MAGIC else "onnx"
    if isinstance(model, (bytes, bytearray, memoryview)):
        return "tflite" if bytes(model[4:8]) == _TFLITE_MAGIC else "onnx"
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
    """Convert ``model`` with TVM's stock frontend, every sparse weight as a dense parameter."""
    framework = detect_framework(model)
    if framework == "tflite":
        from sparse_import.adapters import tflite as adapter
    elif framework == "onnx":
        from sparse_import.adapters import onnx as adapter
    else:
        from sparse_import.backend import single_layer as adapter
    return adapter.import_model(model, shape_dict=shape_dict, dtype_dict=dtype_dict)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")


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
    _check_mode(mode)
    from sparse_import import backend

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
    _check_mode(mode)
    from sparse_import import backend

    imported = import_model(model, shape_dict=shape_dict, dtype_dict=dtype_dict)
    return backend.inspect_rows(imported, mode=mode, batch_size=batch_size)
