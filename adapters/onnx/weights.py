"""Which sparse tensors of a graph are weights, and checks of the ops that read them.

A *weight* reaches TVM as a Relay parameter (a variable bound to its dense value), so the
backend can lower it sparse; every other sparse tensor becomes a dense constant that TVM folds.
A variable is only safe where the op reads its input as data: TVM's converters for ``Resize``,
``Reshape``, ``Slice``... need their shape-like inputs to be constants. Hence an allow-list of
``(op type, input index)`` pairs that read data; a tensor read anywhere else stays a constant.
"""

from __future__ import annotations

import numpy as np

from sparse_import.errors import UnsupportedModelError

from .graphs import node_label

_EVERY = None
# op type -> the input indices it reads as data (None: every input)
DATA_INPUTS: dict[str, frozenset[int] | None] = {
    "MatMul": _EVERY,
    "Gemm": _EVERY,
    "Conv": _EVERY,
    "ConvTranspose": _EVERY,
    "MatMulInteger": frozenset({0, 1}),
    "DequantizeLinear": frozenset({0}),
    "Add": _EVERY,
    "Sub": _EVERY,
    "Mul": _EVERY,
    "Div": _EVERY,
    "Sum": _EVERY,
    "Mean": _EVERY,
    "Max": _EVERY,
    "Min": _EVERY,
    "Pow": _EVERY,
    "PRelu": _EVERY,
    "Where": frozenset({1, 2}),
    "Concat": _EVERY,
    "Identity": _EVERY,
    "Cast": _EVERY,
    "Transpose": _EVERY,
    "Gather": frozenset({0}),
    "Neg": _EVERY,
    "Abs": _EVERY,
    "Relu": _EVERY,
    "Sigmoid": _EVERY,
    "Tanh": _EVERY,
    "Exp": _EVERY,
    "Sqrt": _EVERY,
    "Softmax": _EVERY,
    "BatchNormalization": _EVERY,
    "LayerNormalization": _EVERY,
    "Einsum": _EVERY,
    # shape ops: the data input may be a variable, the shape-like ones must stay constants
    "Reshape": frozenset({0}),
    "Flatten": frozenset({0}),
    "Squeeze": frozenset({0}),
    "Unsqueeze": frozenset({0}),
    "Expand": frozenset({0}),
    "Tile": frozenset({0}),
    "Slice": frozenset({0}),
    "Pad": frozenset({0}),
    "Split": frozenset({0}),
    "Resize": frozenset({0}),
}

Use = tuple[str, int]  # (op type, input index) of one reader


def reads_as_data(use: Use) -> bool:
    """Whether the op reads that input as data (a variable is fine there)."""
    op_type, index = use
    if op_type not in DATA_INPUTS:
        return False
    slots = DATA_INPUTS[op_type]
    return slots is None or index in slots


def is_weight(dtype: np.dtype, uses: list[Use]) -> bool:
    """Whether a sparse tensor of ``dtype`` read by ``uses`` becomes a Relay parameter.

    It must be read, only as data, and be floating point or the quantized input of a
    ``DequantizeLinear``.

    Examples
    --------
    >>> import numpy as np
    >>> f32 = np.dtype(np.float32)
    >>> is_weight(f32, [("MatMul", 1)]), is_weight(f32, [("Resize", 2)]), is_weight(f32, [])
    (True, False, False)
    >>> is_weight(f32, [("Reshape", 0), ("MatMul", 1)]), is_weight(f32, [("Reshape", 1)])
    (True, False)
    >>> is_weight(np.dtype(np.int8), [("DequantizeLinear", 0)])
    True
    """
    return not_weight_reason(dtype, uses) is None


def not_weight_reason(dtype: np.dtype, uses: list[Use]) -> str | None:
    """Why a sparse tensor of ``dtype`` read by ``uses`` must be a constant, ``None`` for a weight.

    Examples
    --------
    >>> import numpy as np
    >>> not_weight_reason(np.dtype(np.float32), [("Reshape", 1)])
    "read by Reshape as input 1, which TVM's ONNX frontend needs as a constant"
    """
    if not uses:
        return "not read by a node of the main graph (only inside a subgraph, or not at all)"
    for op_type, index in uses:
        if not reads_as_data((op_type, index)):
            return (
                f"read by {op_type} as input {index}, which TVM's ONNX frontend needs as a constant"
            )
    if dtype.kind != "f" and ("DequantizeLinear", 0) not in uses:
        return f"{dtype} tensor not read by DequantizeLinear: a constant, not a weight"
    return None


def check_transposes(graph, ranks: dict[str, int]) -> None:
    """Refuse a ``Transpose`` whose ``perm`` is not a permutation of its input's dimensions.

    ``ranks`` maps names of values of known rank (initializers, weights, declared inputs) to
    their rank; a ``Transpose`` of anything else is left to TVM.

    Raises
    ------
    UnsupportedModelError
        Naming the node, its input, the rank and the ``perm``.
    """
    for node in graph.node:
        if node.op_type != "Transpose" or not node.input or node.input[0] not in ranks:
            continue
        rank = ranks[node.input[0]]
        for attr in node.attribute:
            if attr.name != "perm":
                continue
            perm = [int(p) for p in attr.ints]
            if sorted(perm) != list(range(rank)):
                raise UnsupportedModelError(
                    f"{node_label(node)}: perm {perm} is not a permutation of the {rank} "
                    f"dimensions of its input {node.input[0]!r}"
                )
