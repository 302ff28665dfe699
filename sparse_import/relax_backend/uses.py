"""Find how each sparse weight parameter is read in a Relax function.

Relax functions are in A-normal form: every call is bound to a variable, and its arguments are
variables or constants. A *use* is the path from the weight's parameter, through bindings of
unary view operators (``permute_dims``, ``reshape``, ``astype``, ...), to the first binding that
does something else with it: the consumer. One pass over the bindings, no recursion.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import tvm
from tvm import relax

__all__ = ["VIEW_OPS", "Use", "find_uses", "op_name", "static_shape"]

# Unary operators a frontend puts between a weight and its consumer; each maps to an IR
# transform (permute_dims -> SparseTensor.transpose, astype, the rest -> row-major reshape).
VIEW_OPS = frozenset(
    {"relax.permute_dims", "relax.astype", "relax.reshape", "relax.squeeze", "relax.expand_dims"}
)


@dataclass(frozen=True, eq=False)
class Use:
    """One path from a weight parameter to its consumer.

    Attributes
    ----------
    consumer : relax.VarBinding | None
        The binding reading the weight after ``chain``; ``None`` when the weight (or a view of
        it) is the function's result.
    arg : int
        Position of the weight among the consumer call's arguments (-1 for a non-call value).
    chain : tuple[relax.VarBinding, ...]
        The view bindings from the parameter outwards.
    """

    consumer: Any
    arg: int
    chain: tuple[Any, ...]

    @property
    def op_name(self) -> str:
        """Name of the consuming operator (``"relax.matmul"``), or what else reads the weight."""
        if self.consumer is None:
            return "the function result"
        return op_name(self.consumer.value) or type(self.consumer.value).__name__


def op_name(expr: Any) -> str | None:
    """Name of the operator ``expr`` calls (``"relax.matmul"``), ``None`` for anything else."""
    if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
        return str(expr.op.name)
    return None


def static_shape(expr: Any) -> tuple[int | None, ...] | None:
    """Static shape of a tensor expression, ``None`` per dynamic dim; ``None`` if unknown rank."""
    kind = expr.ty
    if not isinstance(kind, relax.TensorType) or kind.shape is None:
        return None
    values = getattr(kind.shape, "values", None)
    if values is None:
        return None
    return tuple(int(d) if isinstance(d, tvm.tirx.IntImm) else None for d in values)


def _operands(value: Any) -> list[tuple[Any, int]]:
    """The variables ``value`` reads, with their argument position (-1 outside a call)."""
    if isinstance(value, relax.Call):
        found = []
        for i, arg in enumerate(value.args):
            if isinstance(arg, relax.Tuple):  # call_tir and concat take tuples of tensors
                found += [(field, -1) for field in arg.fields]
            else:
                found.append((arg, i))
        return found
    if isinstance(value, relax.Tuple):
        return [(field, -1) for field in value.fields]
    if isinstance(value, relax.TupleGetItem):
        return [(value.tuple_value, -1)]
    return [(value, -1)]


def find_uses(func: relax.Function, names: set[str]) -> dict[str, list[Use]]:
    """List the uses of the parameters of ``func`` named in ``names``.

    Parameters
    ----------
    func : relax.Function
        Typically ``mod["main"]``, normalized (every expression has its type).
    names : set[str]
        Names of the weight parameters.

    Returns
    -------
    dict[str, list[Use]]
        For every name in ``names`` its uses, in binding order; empty when the function does
        not read the parameter.
    """
    readers: dict[Any, list[tuple[Any, int]]] = defaultdict(list)
    for block in func.body.blocks:
        for binding in block.bindings:
            for operand, arg in _operands(binding.value):
                if isinstance(operand, relax.Var):
                    readers[operand].append((binding, arg))
    for operand, _ in _operands(func.body.body):
        if isinstance(operand, relax.Var):
            readers[operand].append((None, -1))
    uses: dict[str, list[Use]] = {name: [] for name in names}
    for param in func.params:
        if param.name not in names:
            continue
        stack: list[tuple[Any, tuple[Any, ...]]] = [(param, ())]
        while stack:
            var, chain = stack.pop()
            for binding, arg in readers.get(var, []):
                view = (
                    binding is not None
                    and isinstance(binding, relax.VarBinding)
                    and op_name(binding.value) in VIEW_OPS
                    and arg == 0
                )
                if view:
                    stack.append((binding.var, (*chain, binding)))
                else:
                    uses[param.name].append(Use(binding, arg, chain))
    return uses
