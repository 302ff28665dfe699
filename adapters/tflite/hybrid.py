"""Hybrid ("dynamic range") operators, which TVM 0.19's TFLite frontend lacks: float
activations, int8 weights.

- :func:`fully_connected`: LiteRT quantizes each batch row of the input on the fly (symmetric to
  [-127, 127], or asymmetric with a zero point when ``asymmetric_quantize_inputs`` is set),
  multiplies in int32 and scales back to float; its dense and its sparse (1x16 block) kernels
  remove the zero point and apply the scales in different orders.
- :func:`convolution`: ``CONV_2D`` and ``DEPTHWISE_CONV_2D`` with per-channel weight scales;
  LiteRT quantizes each batch image asymmetrically (padding holds the zero point).

The Relay graphs repeat LiteRT's steps in the same float32 order, each float32 operation rounded
once (:func:`_f32`), so the outputs are LiteRT's bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tvm
from tvm import relay
from tvm.relay.frontend.common import infer_shape

from .loader import schema
from .operands import FullyConnected, constant

_SYMMETRIC_MAX = 127.0  # TFLite's kScale for symmetric int8 input quantization
_QMIN, _QMAX = -128.0, 127.0  # asymmetric int8 input quantization range


def fully_connected(conv: Any, op: Any) -> relay.Expr:
    """Hybrid ``FULLY_CONNECTED``: float input ``(..., K)``, int8 weight ``(N, K)``."""
    fc = FullyConnected.of(conv, op)
    weight, options = fc.weight, fc.options
    if weight.tensor.Type() != schema().TensorType.INT8:
        raise tvm.error.OpNotImplemented(
            "hybrid FULLY_CONNECTED (float input, quantized weight) is converted for int8 "
            f"weights only, not {conv.get_tensor_type_str(weight.tensor.Type())}"
        )
    x = fc.rows(conv)
    w, w_value = constant(conv, weight)
    if options.AsymmetricQuantizeInputs():
        xq, row_scale, offset = _quantize_asymmetric(x)
    else:
        xq, row_scale = _quantize_symmetric(x)
        offset = None
    # int32 operands: TVM's int8 dense kernels (VNNI) do not compile with LLVM 22
    acc = relay.nn.dense(
        relay.cast(xq, "int32"), relay.cast(w, "int32"), units=fc.units, out_dtype="int32"
    )  # (B, N)
    # (N,); from the value when there is one, so the weight has a single use in Relay
    row_sums = (
        relay.sum(relay.cast(w, "int32"), axis=1)
        if w_value is None
        else relay.const(w_value.astype(np.int32).sum(axis=1))
    )
    weight_scale = relay.const(weight.qnn_params["scale"].data.numpy().astype(np.float32))
    bias = constant(conv, fc.bias)[0] if fc.bias is not None else relay.const(0.0)
    if weight.tensor.Sparsity() is None:
        out = _dense_output(acc, row_sums, offset, row_scale, weight_scale, bias)
    else:
        out = _sparse_output(acc, row_sums, offset, row_scale, weight_scale, bias)
    out = conv.convert_fused_activation_function(out, options.FusedActivationFunction())
    return fc.finish(conv, out)


def _dense_output(
    acc: relay.Expr,
    row_sums: relay.Expr,
    offset: relay.Expr | None,
    row_scale: relay.Expr,
    weight_scale: relay.Expr,
    bias: relay.Expr,
) -> relay.Expr:
    """LiteRT's dense hybrid kernel: ``bias + (acc - offset * row_sums) * (row_scale *
    weight_scale)``, the offset removed in int32, each float32 step rounded once."""
    if offset is not None:
        acc = relay.subtract(acc, relay.multiply(offset, row_sums))
    scale = _f32(relay.multiply, row_scale, weight_scale)  # (B, 1) or (B, N)
    return _f32(relay.add, bias, _f32(relay.multiply, relay.cast(acc, "float32"), scale))


def _sparse_output(
    acc: relay.Expr,
    row_sums: relay.Expr,
    offset: relay.Expr | None,
    row_scale: relay.Expr,
    weight_scale: relay.Expr,
    bias: relay.Expr,
) -> relay.Expr:
    """LiteRT's sparse (1x16 block) hybrid kernel: the offset is removed in float first,
    ``bias - (row_scale * offset) * weight_scale * row_sums``, then ``acc * (row_scale *
    weight_scale)`` is added; a single weight scale is folded into ``row_scale`` first."""
    per_tensor = _rank(weight_scale) == 0
    if per_tensor:
        row_scale = _f32(relay.multiply, row_scale, weight_scale)
    scale = row_scale if per_tensor else _f32(relay.multiply, row_scale, weight_scale)
    out = bias
    if offset is not None:
        offset_scale = _f32(relay.multiply, row_scale, relay.cast(offset, "float32"))
        if not per_tensor:
            offset_scale = _f32(relay.multiply, offset_scale, weight_scale)
        correction = _f32(relay.multiply, offset_scale, relay.cast(row_sums, "float32"))
        out = _f32(relay.subtract, out, correction)
    return _f32(relay.add, out, _f32(relay.multiply, relay.cast(acc, "float32"), scale))


_LANES = 4  # channels per vector in LiteRT's hybrid depthwise output stage


def convolution(conv: Any, op: Any, *, depthwise: bool) -> relay.Expr:
    """Hybrid ``CONV_2D`` / ``DEPTHWISE_CONV_2D`` (NHWC float input, per-channel int8 weight)."""
    tfl = schema()
    inputs = conv.get_input_tensors(op)
    data, weight = inputs[:2]
    bias = inputs[2] if len(inputs) > 2 and inputs[2].tensor_idx != -1 else None
    code = "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"
    scales = weight.qnn_params["scale"].data.numpy().astype(np.float32).reshape(-1)
    value = conv.get_tensor_value(weight)
    out_channels = int(value.shape[-1] if depthwise else value.shape[0])
    if weight.tensor.Type() != tfl.TensorType.INT8 or scales.size != out_channels:
        dtype = conv.get_tensor_type_str(weight.tensor.Type())
        raise tvm.error.OpNotImplemented(
            f"hybrid {code} (float input, quantized weight) is converted for int8 weights with "
            f"one scale per output channel, not {dtype} with {scales.size} scale(s) for "
            f"{out_channels} channels"
        )
    options = tfl.DepthwiseConv2DOptions() if depthwise else tfl.Conv2DOptions()
    table = op.BuiltinOptions()
    options.Init(table.Bytes, table.Pos)
    x = conv.get_tensor_expr(data)
    n, height, width, channels = (int(d) for d in infer_shape(x))
    _, kernel_h, kernel_w = (int(d) for d in value.shape[:3])
    if depthwise:  # (1, KH, KW, C * M) -> (KH, KW, C, M)
        value = value.reshape(kernel_h, kernel_w, channels, out_channels // channels)
        layout = "HWIO" if channels == 1 else "HWOI"
    else:  # (O, KH, KW, I) -> (KH, KW, I, O)
        value = value.transpose((1, 2, 3, 0))
        layout = "HWIO"
    kernel = conv.exp_tab.new_const(value, dtype="int8", source_name=weight.tensor.Name())
    strides = (options.StrideH(), options.StrideW())
    dilation = (options.DilationHFactor(), options.DilationWFactor())
    padding = (0, 0, 0, 0)
    if options.Padding() == tfl.Padding.SAME:
        pad_h = _same_padding(height, (kernel_h - 1) * dilation[0] + 1, strides[0])
        pad_w = _same_padding(width, (kernel_w - 1) * dilation[1] + 1, strides[1])
        padding = (pad_h[0], pad_w[0], pad_h[1], pad_w[1])
    x = relay.reshape(x, (n, -1))
    xq, image_scale, offset = _quantize_asymmetric(x)  # one quantization per image
    centered = relay.subtract(relay.cast(xq, "int32"), offset)  # padding: the zero point
    acc = relay.nn.conv2d(
        relay.reshape(centered, (n, height, width, channels)),
        relay.cast(kernel, "int32"),
        strides=strides,
        padding=padding,
        dilation=dilation,
        groups=channels if depthwise else 1,
        channels=out_channels,
        kernel_size=(kernel_h, kernel_w),
        data_layout="NHWC",
        kernel_layout=layout,
        out_dtype="int32",
    )
    acc = relay.cast(acc, "float32")
    image_scale = relay.reshape(image_scale, (n, 1, 1, 1))
    channel_scale = relay.const(scales)
    if depthwise:  # vector lanes: acc * channel * image; other channels: acc * image * channel
        lanes = np.arange(out_channels) < _LANES * (out_channels // _LANES)
        vector = _f32(relay.multiply, _f32(relay.multiply, acc, channel_scale), image_scale)
        scalar = _f32(relay.multiply, _f32(relay.multiply, acc, image_scale), channel_scale)
        out = relay.where(relay.const(lanes), vector, scalar)
    else:
        out = _f32(relay.multiply, acc, _f32(relay.multiply, channel_scale, image_scale))
    if bias is not None:
        out = _f32(relay.add, out, constant(conv, bias)[0])
    return conv.convert_fused_activation_function(out, options.FusedActivationFunction())


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TFLite's SAME padding ``(before, after)`` of one spatial dimension."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _rank(expr: relay.Expr) -> int:
    return len(expr.data.shape)


def _f32(operation: Any, a: relay.Expr, b: relay.Expr) -> relay.Expr:
    """One float32 operation, correctly rounded: computed in float64 (a product or sum of two
    float32 values is exact there, a quotient rounded twice still lands on the float32 result)
    so that LLVM cannot contract a multiply and an add into one FMA, which LiteRT's kernels do
    not use, and TVM cannot turn a division by a constant into a product."""
    return relay.cast(operation(relay.cast(a, "float64"), relay.cast(b, "float64")), "float32")


def _quantize_symmetric(x: relay.Expr) -> tuple[relay.Expr, relay.Expr]:
    """Per row: ``q = round(x * 127 / range)`` in [-127, 127], scale ``range / 127``."""
    value_range = relay.max(relay.abs(x), axis=1, keepdims=True)  # (B, 1)
    nonzero = relay.greater(value_range, relay.const(0.0))
    safe_range = relay.where(nonzero, value_range, relay.const(1.0))
    inverse = _f32(relay.divide, relay.const(_SYMMETRIC_MAX), safe_range)
    q = relay.clip(relay.round(relay.multiply(x, inverse)), -_SYMMETRIC_MAX, _SYMMETRIC_MAX)
    # in float64: TVM (SimplifyExpr, DivToMul) turns a float32 division by a constant into a
    # product with its inverse, which rounds differently
    scale = relay.where(
        nonzero, _f32(relay.divide, value_range, relay.const(_SYMMETRIC_MAX)), relay.const(1.0)
    )
    return relay.cast(q, "int8"), scale


def _quantize_asymmetric(x: relay.Expr) -> tuple[relay.Expr, relay.Expr, relay.Expr]:
    """Per row, TFLite's ``AsymmetricQuantizeFloats``: the range ``rmax - rmin`` in float32,
    scale and nudged zero point in float64, ``q = round(offset + x * (1 / scale))`` in
    float32."""
    f64 = "float64"
    rmin = relay.minimum(relay.min(x, axis=1, keepdims=True), relay.const(0.0))
    rmax = relay.maximum(relay.max(x, axis=1, keepdims=True), relay.const(0.0))
    empty = relay.equal(rmin, rmax)
    span = relay.cast(relay.where(empty, relay.const(1.0), relay.subtract(rmax, rmin)), f64)
    scale = relay.divide(span, relay.const(_QMAX - _QMIN, f64))
    low = relay.divide(relay.cast(rmin, f64), scale)
    high = relay.divide(relay.cast(rmax, f64), scale)
    from_min = relay.subtract(relay.const(_QMIN, f64), low)
    from_max = relay.subtract(relay.const(_QMAX, f64), high)
    min_error = relay.add(relay.const(-_QMIN, f64), relay.abs(low))
    max_error = relay.add(relay.const(_QMAX, f64), relay.abs(high))
    zero_point = relay.where(relay.less(min_error, max_error), from_min, from_max)
    nudged = relay.clip(relay.round(zero_point), _QMIN, _QMAX)
    offset = relay.where(empty, relay.const(0, "int32"), relay.cast(nudged, "int32"))
    scale32 = relay.where(empty, relay.const(1.0), relay.cast(scale, "float32"))
    inverse = _f32(relay.divide, relay.const(1.0), scale32)
    q = _f32(relay.add, relay.cast(offset, "float32"), _f32(relay.multiply, x, inverse))
    q = relay.clip(relay.round(q), _QMIN, _QMAX)
    return relay.cast(q, "int8"), scale32, offset
