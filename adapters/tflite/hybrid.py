"""``FULLY_CONNECTED`` conversions that TVM 0.19's TFLite frontend lacks.

- :func:`fully_connected` (hybrid, or "dynamic range" quantization): float activations, int8
  weights. LiteRT quantizes each batch row of the input on the fly (symmetric to [-127, 127], or
  asymmetric with a zero point when ``asymmetric_quantize_inputs`` is set), multiplies in int32
  and scales back to float. The Relay graph here repeats those steps in the same float32 order,
  so the outputs agree with LiteRT to float rounding rather than to the input's quantization
  error.
- :func:`quantized_fully_connected`: int8 activations with per-channel weight scales, which TVM
  rejects (its converter assumes one weight scale); ``qnn.dense`` takes the scale vector and
  ``qnn.requantize`` rescales per output channel.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tvm
from tvm import relay
from tvm.relay import qnn
from tvm.relay.frontend.tflite import get_scalar_from_constant

from .loader import schema

_SYMMETRIC_MAX = 127.0  # TFLite's kScale for symmetric int8 input quantization
_QMIN, _QMAX = -128.0, 127.0  # asymmetric int8 input quantization range


def _options(op: Any) -> Any:
    tfl = schema()
    options = tfl.FullyConnectedOptions()
    table = op.BuiltinOptions()
    options.Init(table.Bytes, table.Pos)
    return options


def _constant(conv: Any, tensor: Any) -> tuple[relay.Expr, np.ndarray | None]:
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


def _operands(conv: Any, op: Any) -> tuple[Any, Any, Any | None, Any, int, int]:
    inputs = conv.get_input_tensors(op)
    data, weight = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 and inputs[2].tensor_idx != -1 else None
    (output,) = conv.get_output_tensors(op)
    units, depth = (int(d) for d in weight.tensor.ShapeAsNumpy())
    return data, weight, bias, output, units, depth


def _finish(conv: Any, op: Any, out: relay.Expr, data: Any, units: int) -> relay.Expr:
    """Reshape for ``keep_num_dims``, as TVM does."""
    if _options(op).KeepNumDims():
        from tvm.relay.frontend.common import infer_shape

        input_shape = infer_shape(conv.get_tensor_expr(data))
        out = relay.reshape(out, (*input_shape[:-1], units))
    return out


def fully_connected(conv: Any, op: Any) -> relay.Expr:
    """Hybrid ``FULLY_CONNECTED``: float input ``(..., K)``, int8 weight ``(N, K)``."""
    data, weight, bias, _, units, depth = _operands(conv, op)
    if weight.tensor.Type() != schema().TensorType.INT8:
        raise tvm.error.OpNotImplemented(
            "hybrid FULLY_CONNECTED (float input, quantized weight) is converted for int8 "
            f"weights only, not {conv.get_tensor_type_str(weight.tensor.Type())}"
        )
    options = _options(op)
    x = relay.reshape(conv.get_tensor_expr(data), (-1, depth))
    w, w_value = _constant(conv, weight)
    if options.AsymmetricQuantizeInputs():
        xq, row_scale, offset = _quantize_asymmetric(x)
    else:
        xq, row_scale = _quantize_symmetric(x)
        offset = None
    acc = relay.nn.dense(xq, w, units=units, out_dtype="int32")  # (B, N)
    if offset is not None:
        # (N,); from the value when there is one, so the weight has a single use in Relay
        row_sums = (
            relay.sum(relay.cast(w, "int32"), axis=1)
            if w_value is None
            else relay.const(w_value.astype(np.int32).sum(axis=1))
        )
        acc = relay.subtract(acc, relay.multiply(offset, row_sums))
    weight_scale = weight.qnn_params["scale"].data.numpy().astype(np.float32)
    out = relay.cast(acc, "float32")
    if weight_scale.size == 1:  # LiteRT folds the weight scale into each row's scale first
        out = relay.multiply(out, relay.multiply(row_scale, relay.const(weight_scale.reshape(()))))
    else:
        out = relay.multiply(relay.multiply(out, row_scale), relay.const(weight_scale))
    if bias is not None:
        out = relay.add(_constant(conv, bias)[0], out)
    out = conv.convert_fused_activation_function(out, options.FusedActivationFunction())
    return _finish(conv, op, out, data, units)


def _quantize_symmetric(x: relay.Expr) -> tuple[relay.Expr, relay.Expr]:
    """Per row: ``q = round(x * 127 / range)`` in [-127, 127], scale ``range / 127``."""
    value_range = relay.max(relay.abs(x), axis=1, keepdims=True)  # (B, 1)
    nonzero = relay.greater(value_range, relay.const(0.0))
    safe_range = relay.where(nonzero, value_range, relay.const(1.0))
    inverse = relay.divide(relay.const(_SYMMETRIC_MAX), safe_range)
    q = relay.clip(relay.round(relay.multiply(x, inverse)), -_SYMMETRIC_MAX, _SYMMETRIC_MAX)
    scale = relay.where(
        nonzero, relay.divide(value_range, relay.const(_SYMMETRIC_MAX)), relay.const(1.0)
    )
    return relay.cast(q, "int8"), scale


def _quantize_asymmetric(x: relay.Expr) -> tuple[relay.Expr, relay.Expr, relay.Expr]:
    """Per row, TFLite's ``AsymmetricQuantizeFloats``: scale and nudged zero point in float64."""
    f64 = "float64"
    rmin = relay.cast(relay.minimum(relay.min(x, axis=1, keepdims=True), relay.const(0.0)), f64)
    rmax = relay.cast(relay.maximum(relay.max(x, axis=1, keepdims=True), relay.const(0.0)), f64)
    empty = relay.equal(rmin, rmax)
    span = relay.where(empty, relay.const(1.0, f64), relay.subtract(rmax, rmin))
    scale = relay.divide(span, relay.const(_QMAX - _QMIN, f64))
    low, high = relay.divide(rmin, scale), relay.divide(rmax, scale)
    from_min = relay.subtract(relay.const(_QMIN, f64), low)
    from_max = relay.subtract(relay.const(_QMAX, f64), high)
    min_error = relay.add(relay.const(-_QMIN, f64), relay.abs(low))
    max_error = relay.add(relay.const(_QMAX, f64), relay.abs(high))
    zero_point = relay.where(relay.less(min_error, max_error), from_min, from_max)
    nudged = relay.clip(relay.round(zero_point), _QMIN, _QMAX)
    offset = relay.where(empty, relay.const(0, "int32"), relay.cast(nudged, "int32"))
    scale32 = relay.where(empty, relay.const(1.0), relay.cast(scale, "float32"))
    inverse = relay.divide(relay.const(1.0), scale32)
    q = relay.add(relay.cast(offset, "float32"), relay.multiply(x, inverse))
    q = relay.clip(relay.round(q), _QMIN, _QMAX)
    return relay.cast(q, "int8"), scale32, offset


def quantized_fully_connected(conv: Any, op: Any) -> relay.Expr:
    """int8 ``FULLY_CONNECTED`` whose weight has one scale per output channel."""
    data, weight, bias, output, units, depth = _operands(conv, op)
    out_dtype = conv.get_tensor_type_str(output.tensor.Type())
    x = relay.reshape(conv.get_tensor_expr(data), (-1, depth))
    kernel_scale = weight.qnn_params["scale"]
    out = qnn.op.dense(
        x,
        _constant(conv, weight)[0],
        input_zero_point=data.qnn_params["zero_point"],
        kernel_zero_point=weight.qnn_params["zero_point"],
        input_scale=data.qnn_params["scale"],
        kernel_scale=kernel_scale,
        units=units,
        out_dtype="int64" if out_dtype == "int16" else "int32",
    )
    if bias is not None:
        out = relay.nn.bias_add(out, _constant(conv, bias)[0])
    input_scale = get_scalar_from_constant(data.qnn_params["scale"])
    out = qnn.op.requantize(
        out,
        input_scale=relay.const(input_scale * kernel_scale.data.numpy(), "float32"),
        input_zero_point=relay.const(0, "int32"),
        output_scale=output.qnn_params["scale"],
        output_zero_point=output.qnn_params["zero_point"],
        axis=1,
        out_dtype=out_dtype,
    )
    out = conv.convert_qnn_fused_activation_function(
        expr=out,
        fused_activation_fn=_options(op).FusedActivationFunction(),
        scale=get_scalar_from_constant(output.qnn_params["scale"]),
        zero_point=get_scalar_from_constant(output.qnn_params["zero_point"]),
        dtype=out_dtype,
    )
    return _finish(conv, op, out, data, units)
