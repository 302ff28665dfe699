"""What an adapter hands the backend: a dense Relay module plus its sparse weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .tensor import SparseTensor


@dataclass(frozen=True, eq=False)
class SparseWeight:
    """A sparse weight that the framework's TVM frontend received as a dense Relay parameter.

    Attributes
    ----------
    param : str
        Key in :attr:`ImportedModel.params`, and ``name_hint`` of the Relay variable.
    tensor : SparseTensor
        The weight exactly as the parameter holds it: ``tensor.to_dense() == params[param]``
        (same shape and dtype). Transforms the frontend applied (a transpose, a cast) are applied
        to the IR, never re-derived from the dense array.
    source : SparseTensor
        The weight as the model file stores it.
    consumer : str
        The framework operator that consumes it (``"FULLY_CONNECTED"``, ``"MatMul"``, ...).
    """

    param: str
    tensor: SparseTensor
    source: SparseTensor
    consumer: str


@dataclass(eq=False)
class ImportedModel:
    """A framework model converted by TVM's own frontend, with its sparse weights listed."""

    mod: Any  # tvm.IRModule
    params: dict[str, Any]
    weights: tuple[SparseWeight, ...]
    framework: str
