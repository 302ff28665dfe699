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

__all__ = [
    "BACKENDS",
    "MODES",
    "default_backend",
    "detect_framework",
    "import_model",
    "inspect",
    "to_relax",
    "to_relay",
]

BACKENDS = ("relay", "relax")


def default_backend() -> str:
    """``"relay"`` when the installed TVM has Relay (TVM <= 0.19), else ``"relax"``.

    The two flavours install a module named ``tvm`` each and cannot share an environment.
    """
    import importlib.util

    return "relay" if importlib.util.find_spec("tvm.relay") is not None else "relax"


def _check_backend(backend: str | None) -> str:
    chosen = default_backend() if backend is None else backend
    if chosen not in BACKENDS:
        raise ValueError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if chosen != default_backend():
        extra = "relay" if chosen == "relay" else "relax"
        raise UnsupportedModelError(
            f"backend {chosen!r} needs the {chosen.capitalize()} flavour of TVM, which is not "
            f'installed here: pip install -e ".[{extra},test]" in its own environment'
        )
    return chosen


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
    target: Any = None,
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
    target : str or tvm.target.Target, optional
        The target you will build for (default: this machine's CPU,
        :func:`sparse_import.target.resolve`): ``auto`` decides for its vector width. Pass the
        same target to ``relay.build``.

    Returns
    -------
    mod : tvm.IRModule
    params : dict of str to NumPy arrays or tvm.nd.NDArray

    Examples
    --------
    >>> import scipy.sparse as sp, sparse_import
    >>> w = sp.random_array((64, 32), density=0.1, format="csr", rng=0)
    >>> mod, params = sparse_import.to_relay(w, mode="sparse")
    >>> "nn.sparse_dense" in mod.astext()
    True
    """
    check_mode(mode)
    _check_backend("relay")
    from sparse_import import relay_backend as backend

    imported = import_model(model, shape_dict=shape_dict, dtype_dict=dtype_dict)
    mod, params, _ = backend.lower(imported, mode=mode, batch_size=batch_size, target=target)
    return mod, params


def to_relax(
    model: Any,
    *,
    mode: str = "auto",
    shape_dict: dict[str, Any] | None = None,
    dtype_dict: dict[str, str] | None = None,
    batch_size: int | None = None,
) -> Any:
    """Import a model with sparse weights into Relax (maintained TVM, ``apache-tvm`` 0.2x).

    The same adapters, IR and per-weight decisions as :func:`to_relay`; the module embeds every
    weight as a constant, as TVM's Relax frontends do, and calls the library's TIR kernels
    (``R.call_tir``) for the weights kept sparse; ``mode="sparse"`` expands the other weights
    from CSR arrays at run time. ONNX models, SciPy matrices and TFLite models, int8 and hybrid
    ones bit-exact with LiteRT; a quantized operator the Relax import does not compute exactly
    (a requantizing ``RESHAPE``, say) is refused with :class:`UnsupportedModelError` naming it.

    Parameters
    ----------
    model, mode, shape_dict, dtype_dict, batch_size
        As for :func:`to_relay`.

    Returns
    -------
    tvm.IRModule
        Ready for ``tvm.relax.build(mod, target)``; ``main`` takes the model's inputs.
    """
    check_mode(mode)
    _check_backend("relax")
    from sparse_import.relax_backend.api import to_relax as convert

    mod, _ = convert(
        model, mode=mode, shape_dict=shape_dict, dtype_dict=dtype_dict, batch_size=batch_size
    )
    return mod


def inspect(
    model: Any,
    *,
    mode: str = "auto",
    shape_dict: dict[str, Any] | None = None,
    dtype_dict: dict[str, str] | None = None,
    batch_size: int | None = None,
    backend: str | None = None,
) -> list[dict[str, Any]]:
    """One row per sparse weight: layout, sizes, consumer and the lowering ``mode`` chooses.

    ``backend`` (``"relay"`` or ``"relax"``, default :func:`default_backend`) names the backend
    whose decisions are reported; both plan with :mod:`sparse_import.planning`.

    Examples
    --------
    >>> import scipy.sparse as sp, sparse_import
    >>> w = sp.random_array((64, 32), density=0.1, format="csr", rng=0)
    >>> row, = sparse_import.inspect(w, mode="sparse")
    >>> row["shape"], row["lowering"]
    ((64, 32), 'csr')
    """
    check_mode(mode)
    if _check_backend(backend) == "relax":
        from sparse_import.relax_backend.api import inspect as relax_inspect

        return relax_inspect(
            model, mode=mode, shape_dict=shape_dict, dtype_dict=dtype_dict, batch_size=batch_size
        )
    from sparse_import import relay_backend

    imported = import_model(model, shape_dict=shape_dict, dtype_dict=dtype_dict)
    return relay_backend.inspect_rows(imported, mode=mode, batch_size=batch_size)
