"""Entry points of the Relax backend: :func:`to_relax` and :func:`inspect`.

They take what :func:`sparse_import.to_relay` takes (TFLite and ONNX paths, bytes or parsed
models; SciPy sparse matrices or :class:`~sparse_import.SparseTensor`). Quantized TFLite models
are refused (:mod:`.tflite`).
"""

from __future__ import annotations

from typing import Any

from sparse_import.api import detect_framework
from sparse_import.imported import ImportedModel
from sparse_import.planning.decide import Decision

__all__ = ["import_model", "inspect", "to_relax"]


def import_model(
    model: Any,
    *,
    shape_dict: dict[str, Any] | None = None,
    dtype_dict: dict[str, str] | None = None,
) -> ImportedModel:
    """An :class:`ImportedModel` in Relax for ``model`` (TFLite, ONNX or SciPy), weights unbound.

    Raises
    ------
    UnsupportedModelError
        A quantized TFLite model, or anything the adapters refuse.
    """
    framework = detect_framework(model)
    if framework == "tflite":
        from . import tflite as adapter
    elif framework == "onnx":
        from . import onnx as adapter
    else:
        from . import single_layer as adapter
    return adapter.import_model(model, shape_dict=shape_dict, dtype_dict=dtype_dict)


def to_relax(
    model: Any,
    *,
    mode: str = "auto",
    shape_dict: dict[str, Any] | None = None,
    dtype_dict: dict[str, str] | None = None,
    batch_size: int | None = None,
) -> tuple[Any, tuple[Decision, ...]]:
    """Import ``model`` into a Relax module for ``relax.build``, sparse weights lowered by mode.

    Parameters
    ----------
    model : path, bytes, tflite.Model, onnx.ModelProto, scipy.sparse matrix or SparseTensor
    mode : {"auto", "dense", "sparse"}
        See :func:`sparse_import.relax_backend.lower`.
    shape_dict, dtype_dict : dict, optional
        Input shapes and dtypes (the sparse kernels need static shapes).
    batch_size : int, optional
        Rows of the matrix-product input the cost model assumes.

    Returns
    -------
    mod : tvm.IRModule
        Every weight embedded as a constant; ``main`` takes the model's inputs only.
    decisions : tuple[Decision, ...]
        One per sparse weight.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from sparse_import.relax_backend import to_relax
    >>> w = sp.random_array((64, 32), density=0.1, format="csr", rng=0, dtype=np.float32)
    >>> mod, (decision,) = to_relax(w, mode="sparse", shape_dict={"x": (4, 32)})
    >>> str(decision.lowering)
    'csr'
    """
    from .lowering import lower

    imported = import_model(model, shape_dict=shape_dict, dtype_dict=dtype_dict)
    return lower(imported, mode=mode, batch_size=batch_size)


def inspect(
    model: Any,
    *,
    mode: str = "auto",
    shape_dict: dict[str, Any] | None = None,
    dtype_dict: dict[str, str] | None = None,
    batch_size: int | None = None,
) -> list[dict[str, Any]]:
    """One row per sparse tensor of ``model``: how ``mode`` lowers it in Relax (nothing is
    rewritten or densified); the rows of :func:`sparse_import.inspect`."""
    from .lowering import inspect_rows

    imported = import_model(model, shape_dict=shape_dict, dtype_dict=dtype_dict)
    return inspect_rows(imported, mode=mode, batch_size=batch_size)
