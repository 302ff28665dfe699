"""Hybrid ("dynamic range") TFLite operators in Relax: float32 activations, int8 weights, with
LiteRT's arithmetic bit for bit (the rules of :mod:`sparse_import.adapters.tflite.hybrid`).

- :func:`fully_connected`: each input row is quantized on the fly (symmetric to [-127, 127], or
  asymmetric with a zero point under ``asymmetric_quantize_inputs``), multiplied in int32 and
  scaled back to float32; LiteRT's dense and sparse (1x16 block) kernels remove the zero point
  and apply the scales in different orders.
- :func:`convolution`: ``CONV_2D`` / ``DEPTHWISE_CONV_2D`` with one weight scale per output
  channel; each image is quantized asymmetrically (padding holds its zero point).

Each float32 operation is computed in float64 and rounded once (:func:`_f32`), so that LLVM
cannot contract a multiply and an add into an FMA, which LiteRT's kernels do not use.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tvm import relax

from .quantized import operand, round_half_away, static_shape, weight_scales

_R = relax.op
_SYMMETRIC_MAX = 127.0  # TFLite's kScale for symmetric int8 input quantization
_QMIN, _QMAX = -128.0, 127.0  # asymmetric int8 input quantization range
_LANES = 4  # channels per vector in LiteRT's hybrid depthwise output stage


def _c(value: Any, dtype: str = "float32") -> relax.Expr:
    return relax.const(np.asarray(value, dtype=dtype), dtype)


def _f32(operation: Any, a: relax.Expr, b: relax.Expr) -> relax.Expr:
    """One float32 operation, correctly rounded (computed in float64, then rounded)."""
    return _R.astype(operation(_R.astype(a, "float64"), _R.astype(b, "float64")), "float32")


def _round(v: relax.Expr, low: float, high: float) -> relax.Expr:
    """float32 ``v`` rounded half away from zero and clamped, as float32."""
    rounded = _R.astype(round_half_away(_R.astype(v, "float64")), "float32")
    return _R.clip(rounded, low, high)


def _quantize_symmetric(x: relax.Expr) -> tuple[relax.Expr, relax.Expr]:
    """Per row: ``q = round(x * (127 / range))`` in [-127, 127], scale ``range / 127``."""
    value_range = _R.max(_R.abs(x), axis=1, keepdims=True)  # (B, 1)
    nonzero = _R.greater(value_range, _c(0.0))
    safe_range = _R.where(nonzero, value_range, _c(1.0))
    inverse = _f32(_R.divide, _c(_SYMMETRIC_MAX), safe_range)
    q = _round(_f32(_R.multiply, x, inverse), -_SYMMETRIC_MAX, _SYMMETRIC_MAX)
    scale = _R.where(nonzero, _f32(_R.divide, value_range, _c(_SYMMETRIC_MAX)), _c(1.0))
    return _R.astype(q, "int32"), scale


def _quantize_asymmetric(x: relax.Expr) -> tuple[relax.Expr, relax.Expr, relax.Expr]:
    """Per row, TFLite's ``AsymmetricQuantizeFloats``: the range in float32, scale and nudged
    zero point in float64, ``q = round(offset + x * (1 / scale))`` in float32."""
    f64 = "float64"
    rmin = _R.minimum(_R.min(x, axis=1, keepdims=True), _c(0.0))
    rmax = _R.maximum(_R.max(x, axis=1, keepdims=True), _c(0.0))
    empty = _R.equal(rmin, rmax)
    span = _R.astype(_R.where(empty, _c(1.0), _R.subtract(rmax, rmin)), f64)
    scale = _R.divide(span, _c(_QMAX - _QMIN, f64))
    low = _R.divide(_R.astype(rmin, f64), scale)
    high = _R.divide(_R.astype(rmax, f64), scale)
    from_min = _R.subtract(_c(_QMIN, f64), low)
    from_max = _R.subtract(_c(_QMAX, f64), high)
    min_error = _R.add(_c(-_QMIN, f64), _R.abs(low))
    max_error = _R.add(_c(_QMAX, f64), _R.abs(high))
    zero_point = _R.where(_R.less(min_error, max_error), from_min, from_max)
    nudged = _R.clip(round_half_away(zero_point), _QMIN, _QMAX)
    offset = _R.where(empty, _c(0, "int32"), _R.astype(nudged, "int32"))
    scale32 = _R.where(empty, _c(1.0), _R.astype(scale, "float32"))
    inverse = _f32(_R.divide, _c(1.0), scale32)
    q = _f32(_R.add, _R.astype(offset, "float32"), _f32(_R.multiply, x, inverse))
    return _R.astype(_round(q, _QMIN, _QMAX), "int32"), scale32, offset


def fully_connected(conv: Any, fc: Any) -> relax.Expr:
    """Hybrid ``FULLY_CONNECTED``: float32 input ``(..., K)``, int8 weight ``(N, K)``."""
    x = _R.reshape(conv.get_tensor_expr(fc.data), (-1, fc.depth))
    w = _R.astype(operand(conv, fc.weight), "int32")
    if fc.asymmetric_inputs:
        xq, row_scale, offset = _quantize_asymmetric(x)
    else:
        xq, row_scale = _quantize_symmetric(x)
        offset = None
    acc = _R.matmul(xq, _R.permute_dims(w, [1, 0]), out_dtype="int32")  # (B, N)
    row_sums = _R.sum(w, axis=1)  # (N,)
    scales = weight_scales(fc.weight)
    weight_scale = _c(scales if scales.size > 1 else scales[0])
    bias = operand(conv, fc.bias) if fc.bias is not None else _c(0.0)
    if fc.weight.tensor.Sparsity() is None:
        if offset is not None:
            acc = _R.subtract(acc, _R.multiply(offset, row_sums))
        scale = _f32(_R.multiply, row_scale, weight_scale)
        out = _f32(_R.add, bias, _f32(_R.multiply, _R.astype(acc, "float32"), scale))
    else:  # the offset removed in float first; one weight scale folded into the row scale
        per_tensor = scales.size == 1
        if per_tensor:
            row_scale = _f32(_R.multiply, row_scale, weight_scale)
        scale = row_scale if per_tensor else _f32(_R.multiply, row_scale, weight_scale)
        out = bias
        if offset is not None:
            offset_scale = _f32(_R.multiply, row_scale, _R.astype(offset, "float32"))
            if not per_tensor:
                offset_scale = _f32(_R.multiply, offset_scale, weight_scale)
            correction = _f32(_R.multiply, offset_scale, _R.astype(row_sums, "float32"))
            out = _f32(_R.subtract, out, correction)
        out = _f32(_R.add, out, _f32(_R.multiply, _R.astype(acc, "float32"), scale))
    out = conv.convert_fused_activation_function(out, fc.activation)
    return fc.finish(conv, out)


def convolution(conv: Any, c: Any) -> relax.Expr:
    """Hybrid ``CONV_2D`` / ``DEPTHWISE_CONV_2D`` (NHWC float32 input, per-channel int8
    weight)."""
    x = conv.get_tensor_expr(c.data)
    n, height, width, channels = static_shape(conv, x)
    xq, image_scale, offset = _quantize_asymmetric(_R.reshape(x, (n, -1)))
    centered = _R.subtract(xq, offset)  # padding: the zero point
    centered = _R.reshape(centered, (n, height, width, channels))
    kernel = _R.astype(c.kernel(operand(conv, c.weight)), "int32")
    acc = _R.astype(c.conv2d(kernel, centered, "int32"), "float32")
    image_scale = _R.reshape(image_scale, (n, 1, 1, 1))
    channel_scale = _c(weight_scales(c.weight))
    if c.depthwise:  # vector lanes: acc * channel * image; other channels: acc * image * channel
        lanes = np.arange(c.out_channels) < _LANES * (c.out_channels // _LANES)
        vector = _f32(_R.multiply, _f32(_R.multiply, acc, channel_scale), image_scale)
        scalar = _f32(_R.multiply, _f32(_R.multiply, acc, image_scale), channel_scale)
        out = _R.where(relax.const(lanes), vector, scalar)
    else:
        out = _f32(_R.multiply, acc, _f32(_R.multiply, channel_scale, image_scale))
    if c.bias is not None:
        out = _f32(_R.add, out, operand(conv, c.bias))
    return conv.convert_fused_activation_function(out, c.activation)
