"""Find how each sparse weight parameter is used in a Relay function.

A *use* is the path from the weight's variable, through a chain of unary view operators
(``transpose``, ``cast``, ``reshape``, ...), to the first call that does something else with it:
the consumer. The walk uses TVM's C++ ``post_order_visit``, so deep graphs need no Python
recursion.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import tvm
from tvm import relay

__all__ = ["VIEW_OPS", "Use", "find_uses", "op_name", "parents"]

# Unary operators a frontend puts between a weight and its consumer; each maps to an IR
# transform (transpose -> SparseTensor.transpose, cast -> astype, the rest -> row-major reshape).
VIEW_OPS = frozenset(
    {"transpose", "cast", "reshape", "squeeze", "expand_dims", "copy", "reverse_reshape"}
)


@dataclass(frozen=True, eq=False)
class Use:
    """One path from a weight variable to its consumer.

    Attributes
    ----------
    consumer : relay.Expr | None
        The call (or tuple, ...) reading the weight after ``chain``; ``None`` when the weight (or
        a view of it) is the function's result.
    arg : int
        Position of the weight among the consumer's arguments (-1 for a non-call consumer).
    chain : tuple[relay.Call, ...]
        The view operators from the variable outwards.
    """

    consumer: relay.Expr | None
    arg: int
    chain: tuple[relay.Call, ...]

    @property
    def op_name(self) -> str:
        """Name of the consuming operator (``"nn.dense"``), or what else reads the weight."""
        if self.consumer is None:
            return "the function result"
        return op_name(self.consumer) or type(self.consumer).__name__


def op_name(expr: relay.Expr | None) -> str | None:
    """Name of the operator ``expr`` calls (``"nn.dense"``), ``None`` for anything else."""
    if isinstance(expr, relay.Call) and isinstance(expr.op, tvm.ir.Op):
        return str(expr.op.name)
    return None


def parents(func: relay.Function) -> dict[relay.Expr, list[tuple[relay.Expr | None, int]]]:
    """Map every expression to the expressions that read it and at which argument position."""
    readers: dict[relay.Expr, list[tuple[relay.Expr | None, int]]] = defaultdict(list)

    def visit(node: relay.Expr) -> None:
        if isinstance(node, relay.Call):
            for i, arg in enumerate(node.args):
                readers[arg].append((node, i))
        elif isinstance(node, relay.Tuple):
            for field in node.fields:
                readers[field].append((node, -1))
        elif isinstance(node, relay.TupleGetItem):
            readers[node.tuple_value].append((node, -1))
        elif isinstance(node, relay.Let):
            readers[node.value].append((node, -1))
            readers[node.body].append((node, -1))
        elif isinstance(node, relay.If):
            for part in (node.cond, node.true_branch, node.false_branch):
                readers[part].append((node, -1))

    relay.analysis.post_order_visit(func.body, visit)
    readers[func.body].append((None, -1))
    return readers


def find_uses(func: relay.Function, names: set[str]) -> dict[str, list[Use]]:
    """List the uses of the parameters of ``func`` named in ``names``.

    Parameters
    ----------
    func : relay.Function
        Typically ``mod["main"]``, type-inferred.
    names : set[str]
        ``name_hint`` of the weight parameters.

    Returns
    -------
    dict[str, list[Use]]
        For every name in ``names`` its uses, in graph order; empty when the function does not
        read the parameter.
    """
    readers = parents(func)
    uses: dict[str, list[Use]] = {name: [] for name in names}
    for var in func.params:
        if var.name_hint not in names:
            continue
        stack: list[tuple[relay.Expr, tuple[relay.Call, ...]]] = [(var, ())]
        while stack:
            node, chain = stack.pop()
            for parent, arg in readers.get(node, []):
                if op_name(parent) in VIEW_OPS and arg == 0:
                    stack.append((parent, (*chain, parent)))
                else:
                    uses[var.name_hint].append(Use(parent, arg, chain))
    return uses
