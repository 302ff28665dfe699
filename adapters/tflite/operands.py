"""Operands of the ``FULLY_CONNECTED`` conversions written here (hybrid and exact int8)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from tvm import relay

from .loader import schema


@dataclass(frozen=True)
class FullyConnected:
    """The tensors of one ``FULLY_CONNECTED`` op (TVM's ``TensorWrapper``) and its sizes.

    ``weight`` is ``(units, depth)``; ``bias`` is ``None`` when the op has none.
    """

    data: Any
    weight: Any
    bias: Any | None
    output: Any
    units: int
    depth: int
    options: Any

    @classmethod
    def of(cls, conv: Any, op: Any) -> FullyConnected:
        inputs = conv.get_input_tensors(op)
        bias = inputs[2] if len(inputs) > 2 and inputs[2].tensor_idx != -1 else None
        (output,) = conv.get_output_tensors(op)
        units, depth = (int(d) for d in inputs[1].tensor.ShapeAsNumpy())
        options = schema().FullyConnectedOptions()
        table = op.BuiltinOptions()
        options.Init(table.Bytes, table.Pos)
        return cls(inputs[0], inputs[1], bias, output, units, depth, options)

    def rows(self, conv: Any) -> relay.Expr:
        """The input as ``(rows, depth)``."""
        return relay.reshape(conv.get_tensor_expr(self.data), (-1, self.depth))

    def finish(self, conv: Any, out: relay.Expr) -> relay.Expr:
        """Reshape ``(rows, units)`` back to the input's leading dimensions for
        ``keep_num_dims``, as TVM does."""
        if self.options.KeepNumDims():
            from tvm.relay.frontend.common import infer_shape

            input_shape = infer_shape(conv.get_tensor_expr(self.data))
            out = relay.reshape(out, (*input_shape[:-1], self.units))
        return out


def constant(conv: Any, tensor: Any) -> tuple[relay.Expr, np.ndarray | None]:
    """The expression of a constant operand, as TVM's converters build it, and its value
    (``None`` when the operand is already an expression)."""
    if conv.has_expr(tensor.tensor_idx):
        return conv.get_expr(tensor.tensor_idx), None
    value = conv.get_tensor_value(tensor)
    expr = conv.exp_tab.new_const(
        value,
        dtype=conv.get_tensor_type_str(tensor.tensor.Type()),
        source_name=tensor.tensor.Name(),
    )
    return expr, value
