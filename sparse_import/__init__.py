"""sparse-import: bring models with sparse weights into Apache TVM, Relay or Relax.

Framework adapters (TFLite, ONNX, SciPy) normalize every sparse weight into one IR,
:class:`SparseTensor`; planning decides per weight whether it becomes a dense constant or stays
sparse; a backend per TVM flavour carries the decision out. Entry points: :func:`to_relay`
(TVM <= 0.19) and :func:`to_relax` (maintained TVM).
"""

from __future__ import annotations

from typing import Any

from sparse_import.adapters.scipy import from_scipy
from sparse_import.adapters.tflite.params import from_tflite_params

from .api import inspect, to_relax, to_relay
from .errors import (
    DenseLimitError,
    SparseFormatError,
    UnsupportedModelError,
    UnsupportedSparsityError,
)
from .levels import Level, LevelFormat, LevelPart
from .limits import dense_byte_limit, get_dense_byte_limit, set_dense_byte_limit
from .tensor import Quantization, SparseTensor

__version__ = "0.1.0"

__all__ = [
    "DenseLimitError",
    "Level",
    "LevelFormat",
    "LevelPart",
    "Quantization",
    "SparseFormatError",
    "SparseTensor",
    "UnsupportedModelError",
    "UnsupportedSparsityError",
    "dense_byte_limit",
    "from_onnx",
    "from_scipy",
    "from_tflite_params",
    "get_dense_byte_limit",
    "inspect",
    "set_dense_byte_limit",
    "to_relax",
    "to_relay",
]


def from_onnx(sparse_tensor_proto: Any) -> SparseTensor:
    """Convert one ONNX ``SparseTensorProto`` into the IR.

    See :func:`sparse_import.adapters.onnx.from_onnx`; ONNX is imported on first use.
    """
    from sparse_import.adapters.onnx import from_onnx as impl

    return impl(sparse_tensor_proto)
