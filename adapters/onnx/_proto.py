"""The one place that imports ONNX, plus the element-type table the adapter relies on."""

from __future__ import annotations

import functools
from types import ModuleType

import numpy as np

from sparse_import.errors import UnsupportedModelError


@functools.cache
def onnx() -> ModuleType:
    """The ``onnx`` package, imported on first use.

    Raises
    ------
    UnsupportedModelError
        When ONNX is not installed.
    """
    try:
        import onnx as module
        import onnx.numpy_helper
    except ImportError as exc:  # pragma: no cover - onnx is a dependency
        raise UnsupportedModelError(f"reading ONNX models needs the onnx package: {exc}") from exc
    return module


# ONNX TensorProto.DataType -> NumPy dtype for the element types this adapter handles. Other
# types (strings, bfloat16, float8, 4-bit) are refused with their ONNX name.
NUMERIC_TYPES: dict[int, np.dtype] = {
    1: np.dtype(np.float32),  # FLOAT
    2: np.dtype(np.uint8),  # UINT8
    3: np.dtype(np.int8),  # INT8
    4: np.dtype(np.uint16),  # UINT16
    5: np.dtype(np.int16),  # INT16
    6: np.dtype(np.int32),  # INT32
    7: np.dtype(np.int64),  # INT64
    9: np.dtype(np.bool_),  # BOOL
    10: np.dtype(np.float16),  # FLOAT16
    11: np.dtype(np.float64),  # DOUBLE
    12: np.dtype(np.uint32),  # UINT32
    13: np.dtype(np.uint64),  # UINT64
}


def type_name(data_type: int) -> str:
    """The ONNX name of an element type (``"FLOAT"``), or its number if unknown."""
    try:
        return onnx().TensorProto.DataType.Name(data_type)
    except ValueError:
        return str(data_type)
