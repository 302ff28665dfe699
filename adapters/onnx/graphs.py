"""Walking an ONNX graph and its subgraphs without recursion, and the checks of names.

A ``GraphProto`` nests further graphs in node attributes (``If`` branches, ``Loop`` and
``Scan`` bodies). Parsing a file bounds that nesting (protobuf refuses 100 nested messages),
but a ``ModelProto`` built in memory can nest thousands deep, so :func:`walk` iterates with an
explicit stack and refuses more than :data:`MAX_GRAPH_DEPTH` levels, the most a serialized
model can hold.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sparse_import.errors import SparseFormatError, UnsupportedModelError, tensor_label

GRAPH, GRAPHS = 5, 10  # AttributeProto.AttributeType
MAX_GRAPH_DEPTH = 31  # protobuf's parser refuses 32 levels (100 nested messages)


def node_label(node) -> str:
    """``node 'name' (OpType)`` for error messages (the op type when the node has no name)."""
    return f"node {node.name or node.op_type!r} ({node.op_type})"


def subgraphs(node) -> Iterator[tuple[str, Any]]:
    """``(attribute name, graph)`` for each graph held by ``node``'s attributes."""
    for attr in node.attribute:
        if attr.type == GRAPH:
            yield attr.name, attr.g
        elif attr.type == GRAPHS:
            for g in attr.graphs:
                yield attr.name, g


def walk(graph) -> list[Any]:
    """``graph`` first, then every graph nested in its nodes, at any depth, iteratively.

    Raises
    ------
    UnsupportedModelError
        For subgraphs nested deeper than :data:`MAX_GRAPH_DEPTH`, naming the node holding the
        first graph too deep.

    Examples
    --------
    >>> from onnx import helper
    >>> inner = helper.make_graph([], "inner", [], [])
    >>> outer = helper.make_graph(
    ...     [helper.make_node("If", ["c"], [], then_branch=inner, else_branch=inner)],
    ...     "outer", [], [])
    >>> [g.name for g in walk(outer)]
    ['outer', 'inner', 'inner']
    """
    found = []
    stack = [(graph, 0)]
    while stack:
        g, depth = stack.pop()
        found.append(g)
        for node in g.node:
            for attr_name, sub in subgraphs(node):
                if depth >= MAX_GRAPH_DEPTH:
                    raise UnsupportedModelError(
                        f"{node_label(node)} attribute {attr_name!r} of graph {g.name!r}: "
                        f"subgraphs nested more than {MAX_GRAPH_DEPTH} levels deep"
                    )
                stack.append((sub, depth + 1))
    return found


def sparse_value(node):
    """The ``sparse_value`` attribute of a ``Constant`` node, or ``None``."""
    if node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
        return None
    for attr in node.attribute:
        if attr.name == "sparse_value":
            return attr
    return None


def check_sparse_names(graph) -> None:
    """Refuse a sparse tensor whose name another definition in the same graph reuses.

    A sparse initializer or sparse ``Constant`` output must not share its name with another
    sparse tensor, a dense initializer or the output of another node of its graph: which
    value a reader sees would depend on the order of rewriting. O(size of the graph).

    Raises
    ------
    SparseFormatError
        Naming the tensor, the graph and both definitions.
    """
    where = f"graph {graph.name!r}"
    sparse: dict[str, tuple[str, int]] = {}  # name -> (what defines it, node index or -1)

    def define(name: str, what: str, index: int) -> None:
        if name in sparse:
            raise SparseFormatError(
                f"{tensor_label(name)}: the name is defined twice in {where}: "
                f"{sparse[name][0]} and {what}"
            )
        sparse[name] = (what, index)

    for sp in graph.sparse_initializer:
        if sp.values.name:  # an empty name is refused when the tensor is read
            define(sp.values.name, "a sparse initializer", -1)
    for k, node in enumerate(graph.node):
        if sparse_value(node) is not None and len(node.output) == 1 and node.output[0]:
            define(node.output[0], f"the sparse value of {node_label(node)}", k)
    if not sparse:
        return
    for tensor in graph.initializer:
        if tensor.name in sparse:
            raise SparseFormatError(
                f"{tensor_label(tensor.name)}: the name is defined twice in {where}: "
                f"{sparse[tensor.name][0]} and a dense initializer"
            )
    for k, node in enumerate(graph.node):
        for out in node.output:
            if out in sparse and sparse[out][1] != k:
                raise SparseFormatError(
                    f"{tensor_label(out)}: the name is defined twice in {where}: "
                    f"{sparse[out][0]} and the output of {node_label(node)}"
                )
