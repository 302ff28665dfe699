"""What an adapter hands a backend: the framework's graph in TVM plus its sparse weights in the IR.

The seam between adapters and backends. A sparse weight reaches the backend as a parameter of
the module *without a value* (the frontend saw a shape-correct stand-in, or a graph input): the
backend decides per weight and materializes a dense array only for a weight it lowers dense,
once, however many operators read it. A weight that an adapter had to densify for the frontend
(an operator the frontend only converts from constant values) arrives bound in ``params``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .limits import DenseBudget
from .tensor import SparseTensor


@dataclass(frozen=True, eq=False)
class SparseWeight:
    """A sparse weight read through a parameter of the module.

    Attributes
    ----------
    param : str
        ``name_hint`` of the module's parameter. It has a value in :attr:`ImportedModel.params`
        only when the adapter already densified it (it is *bound*).
    tensor : SparseTensor
        The weight exactly as the parameter holds it (same shape and dtype). Transforms the
        frontend applied (a transpose, a cast) are applied to the IR, never re-derived from a
        dense array.
    source : SparseTensor
        The weight as the model file stores it.
    consumer : str
        The framework operator that consumes it (``"FULLY_CONNECTED"``, ``"MatMul"``, ...).
    """

    param: str
    tensor: SparseTensor
    source: SparseTensor
    consumer: str


@dataclass(frozen=True, eq=False)
class DenseTensor:
    """A sparse tensor of the model that an adapter turned into a dense constant, and why.

    It is no weight the backend can decide for (a ``Reshape`` shape, a tensor read inside a
    subgraph, a kernel the frontend reshapes): listed so every sparse tensor has a decision.
    """

    source: SparseTensor
    consumer: str
    reason: str


@dataclass(eq=False)
class ImportedModel:
    """A framework model converted by TVM's frontend, with its sparse weights listed.

    Attributes
    ----------
    mod : tvm.IRModule
    params : dict
        Values of the module's parameters, except unbound sparse weights.
    weights : tuple[SparseWeight, ...]
    framework : str
    constants : tuple[DenseTensor, ...]
        Sparse tensors the adapter densified into constants of the graph.
    budget : DenseBudget
        Dense bytes allocated for sparse tensors so far; the backend charges what it densifies.
    """

    mod: Any  # tvm.IRModule
    params: dict[str, Any]
    weights: tuple[SparseWeight, ...]
    framework: str
    constants: tuple[DenseTensor, ...] = ()
    budget: DenseBudget = field(default_factory=DenseBudget)

    def bound(self, weight: SparseWeight) -> bool:
        """Whether ``params`` already holds ``weight``'s dense value (the adapter needed it)."""
        return weight.param in self.params

    @property
    def weight_params(self) -> frozenset[str]:
        """Names of the parameters that hold sparse weights, bound or not."""
        return frozenset(w.param for w in self.weights)
