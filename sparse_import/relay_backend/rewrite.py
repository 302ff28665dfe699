"""Replace the matrix products of chosen weights with sparse ones.

One pass of TVM's dataflow-pattern rewriter (C++ traversal) visits every ``nn.dense``,
``nn.matmul`` and ``nn.conv2d``; the calls listed in a plan become ``nn.sparse_dense`` (inputs of
rank > 2 reshaped to ``(rows, in)`` and back) or ``nn.sparse_conv2d``, reading new parameters
with the compressed arrays. Afterwards a weight parameter that no call reads any more leaves the
function and the params. On CPUs those calls run the kernels of :mod:`sparse_import.kernels`
(:mod:`.strategy`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relay
from tvm.relay.dataflow_pattern import DFPatternCallback, is_op, wildcard

from .conv_op import conv_geometry
from .kernels import (
    SellOperand,
    SparseOperand,
    sell_dense_expr,
    sparse_conv2d_expr,
    sparse_dense_expr,
)
from .sites import Site, conv_form

__all__ = ["SparseCall", "rewrite_module"]


@dataclass(frozen=True, eq=False)
class SparseCall:
    """How one consumer call is rewritten.

    Attributes
    ----------
    site : Site
        The consumer and the shape of its input.
    operand : SparseOperand | SellOperand
        Compressed ``(units, in)`` weight matrix (``sell``: batch-1 products only).
    prefix : str
        Name prefix of the operand's parameters (sites sharing an operand share the prefix).
    sparse_lhs : bool
        Use TVM's sparse-left-hand-side kernel (matrix products only).
    """

    site: Site
    operand: SparseOperand | SellOperand
    prefix: str
    sparse_lhs: bool = False

    def build(self, data: relay.Expr) -> tuple[relay.Expr, dict[str, np.ndarray]]:
        """The replacement expression reading ``data`` (the rewritten first argument)."""
        if self.site.conv is not None:
            layout, kernel = self.site.conv
            attrs = self.site.use.consumer.attrs
            return sparse_conv2d_expr(
                data,
                self.operand,
                self.prefix,
                layout=layout,
                kernel_size=kernel,
                geometry=None if conv_form(attrs) else conv_geometry(attrs),
            )
        lead = self.site.data_shape[:-1]
        x = data if len(lead) == 1 else relay.reshape(data, (-1, self.operand.shape[1]))
        if isinstance(self.operand, SellOperand):
            y, params = sell_dense_expr(x, self.operand, self.prefix)
        else:
            y, params = sparse_dense_expr(x, self.operand, self.prefix, sparse_lhs=self.sparse_lhs)
        if len(lead) != 1:
            y = relay.reshape(y, (*(-1 if d is None else d for d in lead), self.operand.shape[0]))
        return y, params


class _Rewriter(DFPatternCallback):
    def __init__(self, plan: Mapping[relay.Expr, SparseCall]) -> None:
        super().__init__(rewrite_once=True)
        operand = wildcard(), wildcard()
        self.pattern = is_op("nn.dense")(*operand) | is_op("nn.matmul")(*operand)
        self.pattern |= is_op("nn.conv2d")(*operand)
        self.plan = plan
        self.params: dict[str, np.ndarray] = {}

    def callback(self, pre: relay.Expr, post: relay.Expr, node_map: object) -> relay.Expr:
        call = self.plan.get(pre)
        if call is None:
            return post
        expr, params = call.build(post.args[0])
        self.params.update(params)
        return expr


def _dedupe_variables(
    body: relay.Expr, generated: Collection[str]
) -> tuple[relay.Expr, list[relay.Var]]:
    """Make the generated variables of one name one variable (sites sharing an operand).

    Only names in ``generated`` are merged: a model may hold distinct variables with equal
    names, and those must stay apart.
    """
    first: dict[str, relay.Var] = {}
    rebind = {}
    for var in relay.analysis.free_vars(body):
        if var.name_hint not in generated:
            continue
        if var.name_hint in first:
            rebind[var] = first[var.name_hint]
        else:
            first[var.name_hint] = var
    if rebind:
        body = relay.bind(body, rebind)
    return body, list(relay.analysis.free_vars(body))


def rewrite_module(
    mod: tvm.IRModule,
    params: Mapping[str, object],
    plan: Mapping[relay.Expr, SparseCall],
    weights: set[str],
) -> tuple[tvm.IRModule, dict[str, object]]:
    """Apply ``plan`` to ``mod["main"]``.

    Parameters
    ----------
    mod : tvm.IRModule
        Type-inferred module; the keys of ``plan`` are calls of its ``main``.
    params : Mapping[str, object]
        The module's parameters.
    plan : Mapping[relay.Expr, SparseCall]
        Consumer call -> its sparse replacement.
    weights : set[str]
        Parameters that may be dropped when no call reads them any more.

    Returns
    -------
    tuple[tvm.IRModule, dict[str, object]]
        The new module (type-inferred) and params: the dropped weights removed, the compressed
        arrays added as NumPy arrays (no second copy).
    """
    func = mod["main"]
    rewriter = _Rewriter(plan)
    body, free = _dedupe_variables(rewriter.rewrite(func.body), rewriter.params.keys())
    free_names = {v.name_hint for v in free}
    kept = [p for p in func.params if p.name_hint not in weights or p.name_hint in free_names]
    declared = {p.name_hint for p in func.params}
    added = [v for v in free if v.name_hint not in declared]
    new_func = relay.Function(kept + added, body, attrs=func.attrs)
    new_mod = tvm.IRModule(dict(mod.functions.items()), type_definitions=mod.type_definitions)
    new_mod["main"] = new_func
    new_mod = relay.transform.InferType()(new_mod)
    kept_names = {p.name_hint for p in kept}
    new_params = {k: v for k, v in params.items() if k in kept_names or k not in weights}
    new_params.update(rewriter.params)  # NumPy arrays: relay.build takes them as they are
    return new_mod, new_params
