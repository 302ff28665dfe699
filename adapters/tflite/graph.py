"""Graph-level checks of a TFLite model that TVM's frontend would otherwise get wrong.

Run by ``import_model`` on a model checked by :func:`~.loader.load_model`, before TVM converts
it: a ``DENSIFY`` must read a constant sparse tensor, as LiteRT requires, and the tensors the
graph uses must have distinct names, since TVM's frontend keys its expressions by name.
"""

from __future__ import annotations

from typing import Any

from sparse_import.errors import SparseFormatError, UnsupportedModelError
from sparse_import.inputs import DeclaredInput

from .loader import buffer_data, schema, tensor_dtype, tensor_name, type_names


def builtin_code(model: Any, op: Any) -> int:
    """The builtin operator code of ``op`` (the larger of its two code fields)."""
    code = model.OperatorCodes(op.OpcodeIndex())
    return max(code.BuiltinCode(), code.DeprecatedBuiltinCode())


def check_graph(model: Any) -> None:
    """Graph-level checks of subgraph 0 that TVM's frontend would otherwise get wrong.

    - every ``DENSIFY`` has one input and one output, and its input is a constant sparse tensor:
      it has sparsity parameters and data in its buffer, and is neither a graph input nor any
      operator's output (LiteRT refuses the model otherwise; a ``DENSIFY`` of a ``DENSIFY`` is
      one such case);
    - the tensors that operators and the graph use have distinct names: TVM's frontend keys its
      expressions by name, so a second tensor of one name would silently read the first.

    Call it on a model checked by :func:`load_model`.

    Raises
    ------
    SparseFormatError
        For a malformed ``DENSIFY``, naming the operator and its input tensor.
    UnsupportedModelError
        For two used tensors of one name, naming both.
    """
    if model.SubgraphsLength() == 0:
        return
    subgraph = model.Subgraphs(0)
    densify = schema().BuiltinOperator.DENSIFY
    ops = [subgraph.Operators(o) for o in range(subgraph.OperatorsLength())]
    outputs = [_int_list(op.OutputsAsNumpy()) for op in ops]
    inputs = [_int_list(op.InputsAsNumpy()) for op in ops]
    graph_inputs = set(_int_list(subgraph.InputsAsNumpy()))
    producer = {t: o for o in reversed(range(len(ops))) for t in outputs[o]}
    for o, op in enumerate(ops):
        if builtin_code(model, op) != densify:
            continue
        what = f"operator {o} (DENSIFY) of subgraph 0"
        if len(inputs[o]) != 1 or len(outputs[o]) != 1 or inputs[o][0] < 0:
            raise SparseFormatError(
                f"{what}: has inputs {inputs[o]} and outputs {outputs[o]}, expected one tensor each"
            )
        t = inputs[o][0]
        source = f"input tensor {tensor_name(subgraph, t)!r} (index {t})"
        if subgraph.Tensors(t).Sparsity() is None:
            problem = "has no sparsity parameters"
        elif t in producer:
            problem = f"is the output of operator {producer[t]}, not a constant"
        elif t in graph_inputs:
            problem = "is a graph input, not a constant"
        elif buffer_data(model, subgraph.Tensors(t).Buffer()).size == 0:
            problem = "has an empty buffer, not a constant"
        else:
            continue
        raise SparseFormatError(
            f"{what}: {source} {problem}; DENSIFY needs a constant sparse tensor"
        )
    used = graph_inputs.union(_int_list(subgraph.OutputsAsNumpy()), *inputs, *outputs)
    seen: dict[str, int] = {}
    for t in sorted(used):
        if t < 0:
            continue
        name = tensor_name(subgraph, t)
        if name in seen:
            raise UnsupportedModelError(
                f"tensor {name!r} (index {t}): tensor {seen[name]} has the same name; TVM's "
                "TFLite frontend tells tensors apart by name"
            )
        seen[name] = t


def _int_list(vector: Any) -> list[int]:
    """A generated ``...AsNumpy()`` result as a list (the accessors return 0 when absent)."""
    return [] if isinstance(vector, int) else vector.tolist()


def declared_inputs(model: Any) -> dict[str, DeclaredInput]:
    """Each runtime input of subgraph 0 as the model declares it: its type, and its shape with
    ``None`` for a dimension the shape signature marks dynamic (-1) and for the batch
    (dimension 0), which LiteRT resizes (``resize_tensor_input``) like a dynamic one."""
    graph = model.Subgraphs(0)
    names = type_names()
    found = {}
    for i in range(graph.InputsLength()):
        index = graph.Inputs(i)
        tensor = graph.Tensors(index)
        dims = [int(d) for d in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else []
        if tensor.ShapeSignatureLength() == len(dims):
            signature = tensor.ShapeSignatureAsNumpy()
            dims = [None if int(s) < 0 else d for d, s in zip(dims, signature, strict=True)]
        dims[:1] = [None] * len(dims[:1])
        code = tensor.Type()
        found[tensor_name(graph, index)] = DeclaredInput(
            tensor_dtype(code), tuple(dims), names.get(code, "")
        )
    return found
