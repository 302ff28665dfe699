"""Which convolutions share a layout with each NCHW convolution of a Relay function.

TVM builds a dense NCHW convolution for x86 in a blocked ``NCHWc`` layout and our sparse one in
plain NCHW, so the data changes layout wherever a sparse convolution meets a dense one. Between
convolutions the data may pass through operators that compute in whatever layout their input
has (elementwise arithmetic, activations, batch norm, pooling, concatenation): the feature maps
they join form one region, and every convolution reading or writing a region is a neighbour of
the others there. Anything else (a reshape, a matrix product, the function's input or result)
wants the model's own layout, as a sparse convolution does, and joins nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from tvm import relay

from sparse_import.planning.product import LayoutNeighbours

from .uses import op_name

__all__ = ["LAYOUT_FOLLOWING", "conv_neighbours"]

LAYOUT_FOLLOWING = frozenset(
    {
        "add",
        "subtract",
        "multiply",
        "divide",
        "maximum",
        "minimum",
        "nn.relu",
        "nn.leaky_relu",
        "nn.prelu",
        "clip",
        "sigmoid",
        "tanh",
        "nn.bias_add",
        "nn.batch_norm",
        "nn.max_pool2d",
        "nn.avg_pool2d",
        "nn.global_max_pool2d",
        "nn.global_avg_pool2d",
        "concatenate",
    }
)


def _is_conv(expr: relay.Expr) -> bool:
    return op_name(expr) == "nn.conv2d"


def _rank(expr: relay.Expr) -> int:
    kind = expr.checked_type
    return len(kind.shape) if isinstance(kind, relay.TensorType) else -1


def _joined(expr: relay.Expr) -> list[relay.Expr]:
    """The expressions ``expr`` shares its layout with: the feature-map inputs of an operator
    that follows its input's layout (a bias or scale constant does not count)."""
    if op_name(expr) in LAYOUT_FOLLOWING:
        rank = max(_rank(a) for a in expr.args)
        return [a for a in expr.args if isinstance(a, relay.Tuple) or _rank(a) == rank]
    if isinstance(expr, relay.TupleGetItem):
        return [expr.tuple_value]
    if isinstance(expr, relay.Tuple):
        return list(expr.fields)
    return []


def conv_neighbours(
    func: relay.Function, weight_of: Mapping[relay.Call, str]
) -> dict[relay.Call, LayoutNeighbours]:
    """For every NCHW ``nn.conv2d`` of ``func``, the convolutions that share a layout with it.

    Feature maps joined by layout-following operators form one *region*; every convolution
    reading a region or writing into it must agree on its layout, or the data changes layout
    between them.

    Parameters
    ----------
    func : relay.Function
        Type-inferred.
    weight_of : mapping
        Convolution call -> the sparse weight it reads; a convolution missing here reads a
        weight that stays dense.

    Returns
    -------
    dict[relay.Call, LayoutNeighbours]
        ``producers``: the other convolutions attached to the region of its input;
        ``consumers``: those attached to the region of its output.
    """
    root: dict[relay.Expr, relay.Expr] = {}

    def find(expr: relay.Expr) -> relay.Expr:
        path = []
        while root.get(expr, expr) is not expr:
            path.append(expr)
            expr = root[expr]
        for node in path:
            root[node] = expr
        return expr

    convs: list[relay.Call] = []

    def visit(node: relay.Expr) -> None:
        if _is_conv(node):
            if str(node.attrs.data_layout) == "NCHW":
                convs.append(node)
            return
        for other in _joined(node):
            a, b = find(node), find(other)
            if a is not b:
                root[a] = b

    relay.analysis.post_order_visit(func.body, visit)
    attached: dict[relay.Expr, list[relay.Call]] = defaultdict(list)
    for conv in convs:
        attached[find(conv.args[0])].append(conv)
        attached[find(conv)].append(conv)

    def others(conv: relay.Call, region: relay.Expr) -> tuple[str | None, ...]:
        return tuple(weight_of.get(c) for c in dict.fromkeys(attached[region]) if c is not conv)

    return {
        conv: LayoutNeighbours(
            producers=others(conv, find(conv.args[0])), consumers=others(conv, find(conv))
        )
        for conv in convs
    }
