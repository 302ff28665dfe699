"""Which quantized TFLite operators the Relax import converts with LiteRT's arithmetic.

:func:`refusal` names the first operator of subgraph 0 that reads or writes a quantized integer
tensor and is none of these (each converted by :mod:`.quantized` or :mod:`.hybrid`, or by TVM
where its conversion is exact):

- int8 ``FULLY_CONNECTED``, ``CONV_2D``, ``DEPTHWISE_CONV_2D``, ``TRANSPOSE_CONV``: int8
  input, weight and output, per-tensor input and output, weight zero points 0 (a
  ``TRANSPOSE_CONV`` weight quantized along its output channels), an int32 bias, a fused
  activation among ``NONE``, ``RELU``, ``RELU_N1_TO_1``, ``RELU6``;
- hybrid (float32 input and output, int8 weight) ``FULLY_CONNECTED``, and hybrid convolutions
  with one weight scale per output channel;
- float32 -> per-tensor int8 ``QUANTIZE``, per-tensor int8 -> float32 ``DEQUANTIZE``;
- int8 ``RESHAPE`` whose output has the input's quantization; ``DENSIFY``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sparse_import.adapters.tflite.graph import builtin_code
from sparse_import.adapters.tflite.loader import schema

from .quantized import FUSED_ACTIVATIONS

MATRIX_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV")
_QUANTIZED_TYPES = ("INT8", "UINT8", "INT16")
_OTHERS = (
    "the quantized operators converted are FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D, "
    "TRANSPOSE_CONV, QUANTIZE, DEQUANTIZE, RESHAPE and DENSIFY"
)


def _quantization(tensor: Any) -> tuple[np.ndarray, np.ndarray] | None:
    q = tensor.Quantization()
    if q is None or q.ScaleLength() == 0:
        return None
    return q.ScaleAsNumpy(), q.ZeroPointAsNumpy() if q.ZeroPointLength() else np.zeros(1)


def _type(tensor: Any) -> str:
    tfl = schema()
    names = {v: k for k, v in vars(tfl.TensorType).items() if not k.startswith("_")}
    return names.get(tensor.Type(), str(tensor.Type()))


def _activation(op: Any, name: str) -> int:
    tfl = schema()
    kind = {
        "FULLY_CONNECTED": tfl.FullyConnectedOptions,
        "CONV_2D": tfl.Conv2DOptions,
        "DEPTHWISE_CONV_2D": tfl.DepthwiseConv2DOptions,
        "TRANSPOSE_CONV": tfl.TransposeConvOptions,
    }[name]()
    table = op.BuiltinOptions()
    if table is None:
        return 0
    kind.Init(table.Bytes, table.Pos)
    return int(kind.FusedActivationFunction())


def _matrix_reason(subgraph: Any, op: Any, name: str) -> str | None:
    """Why an int8 or hybrid matrix operator is not converted exactly, else ``None``."""
    inputs = op.InputsAsNumpy().tolist()
    if name == "TRANSPOSE_CONV":  # (output_shape, weight, input[, bias])
        inputs = [inputs[2], inputs[1], *inputs[3:]] if len(inputs) > 2 else []
    if len(inputs) < 2 or min(inputs[:2]) < 0:
        return "it lacks an input or a weight"
    data, weight = subgraph.Tensors(inputs[0]), subgraph.Tensors(inputs[1])
    output = subgraph.Tensors(int(op.OutputsAsNumpy()[0]))
    types = (_type(data), _type(weight), _type(output))
    q_data, q_weight, q_output = (_quantization(t) for t in (data, weight, output))
    if q_weight is None or types[1] != "INT8":
        return f"its weight is {types[1]}{'' if q_weight else ' without quantization'}"
    shape = weight.ShapeAsNumpy()
    channels = int(shape[-1] if name == "DEPTHWISE_CONV_2D" else shape[0])
    if q_weight[0].size not in (1, channels):
        return f"its weight has {q_weight[0].size} scales for {channels} output channels"
    axis = int(weight.Quantization().QuantizedDimension())
    if name == "TRANSPOSE_CONV" and q_weight[0].size > 1 and axis != 0:
        return f"its weight is quantized along axis {axis}, not 0 (the output channels)"
    if types[0] == types[2] == "FLOAT32" and q_data is None and q_output is None:
        if name == "TRANSPOSE_CONV":
            return "hybrid (float input, int8 weight) TRANSPOSE_CONV is not converted"
        if name == "FULLY_CONNECTED":
            return None
        if q_weight[0].size != channels:
            return (
                f"hybrid (float input, int8 weight) with {q_weight[0].size} weight scale(s) for "
                f"{channels} output channels; one per channel is converted"
            )
        return None
    if types != ("INT8", "INT8", "INT8") or q_data is None or q_output is None:
        return f"its input, weight and output are {'/'.join(types)}; int8 is converted"
    if q_data[0].size != 1 or q_output[0].size != 1:
        return "its input or output has per-channel quantization"
    if np.any(q_weight[1] != 0):
        return "its weight has non-zero zero points"
    if len(inputs) > 2 and inputs[2] >= 0 and _type(subgraph.Tensors(inputs[2])) != "INT32":
        return f"its bias is {_type(subgraph.Tensors(inputs[2]))}, not INT32"
    activation = _activation(op, name)
    if activation not in FUSED_ACTIVATIONS:
        return f"its fused activation {activation} is not NONE, RELU, RELU_N1_TO_1 or RELU6"
    return None


def _reason(subgraph: Any, op: Any, name: str) -> str | None:
    """Why operator ``op`` (which touches a quantized tensor) is not converted exactly."""
    if name in MATRIX_OPS:
        return _matrix_reason(subgraph, op, name)
    ins = [subgraph.Tensors(i) for i in op.InputsAsNumpy().tolist() if i >= 0]
    outs = [subgraph.Tensors(i) for i in op.OutputsAsNumpy().tolist() if i >= 0]
    if len(ins) != 1 or len(outs) != 1:
        return None if name == "RESHAPE" and _same_reshape(ins, outs) else _OTHERS
    source, target = ins[0], outs[0]
    q_in, q_out = _quantization(source), _quantization(target)
    if name == "QUANTIZE" and _type(source) == "FLOAT32" and _type(target) == "INT8":
        return None if q_out is not None and q_out[0].size == 1 else "per-channel output"
    if name == "DEQUANTIZE" and _type(source) == "INT8" and _type(target) == "FLOAT32":
        return None if q_in is not None and q_in[0].size == 1 else "per-channel input"
    if name in ("QUANTIZE", "DEQUANTIZE"):
        return f"{_type(source)} -> {_type(target)}; float32 <-> int8 is converted"
    return _OTHERS


def _same_reshape(ins: list[Any], outs: list[Any]) -> bool:
    if not ins or len(outs) != 1 or _type(ins[0]) != "INT8" or _type(outs[0]) != "INT8":
        return False
    a, b = _quantization(ins[0]), _quantization(outs[0])
    return (
        a is not None
        and b is not None
        and a[0].size == b[0].size == 1
        and np.float32(a[0][0]) == np.float32(b[0][0])
        and int(a[1][0]) == int(b[1][0])
    )


def refusal(model: Any) -> str | None:
    """``"operator i (NAME) of subgraph 0 is quantized ...: why"`` for the first quantized
    operator the Relax import does not convert exactly, else ``None``."""
    tfl = schema()
    names = {v: k for k, v in vars(tfl.BuiltinOperator).items() if not k.startswith("_")}
    quantized_types = {getattr(tfl.TensorType, t) for t in _QUANTIZED_TYPES}
    subgraph = model.Subgraphs(0)
    for o in range(subgraph.OperatorsLength()):
        op = subgraph.Operators(o)
        name = names.get(builtin_code(model, op), "CUSTOM")
        if name == "DENSIFY":
            continue
        indices = [*op.InputsAsNumpy().tolist(), *op.OutputsAsNumpy().tolist()]
        if not any(
            subgraph.Tensors(i).Type() in quantized_types
            and _quantization(subgraph.Tensors(i)) is not None
            for i in indices
            if i >= 0
        ):
            continue
        reason = _reason(subgraph, op, name)
        if reason is not None:
            return f"operator {o} ({name}) of subgraph 0 is quantized: {reason}"
    return None
