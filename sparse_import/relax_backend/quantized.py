"""int8 TFLite operators in Relax with LiteRT's integer arithmetic, bit for bit.

TVM 0.27's Relax TFLite frontend computes quantized ``FULLY_CONNECTED``, ``CONV_2D``,
``DEPTHWISE_CONV_2D`` and ``TRANSPOSE_CONV`` in float (dequantize, float operator, quantize)
and rounds ``QUANTIZE`` / ``DEQUANTIZE`` once; LiteRT accumulates in int32 and requantizes
with a 31-bit fixed-point multiplier, rounding twice (TFLite's
``MultiplyByQuantizedMultiplier``):

1. ``h = (acc * 2**left * M + 2**30) >> 31`` in int64 (the rounding doubling high multiply);
2. ``h >> right`` rounded to nearest; ties go up in ruy's kernels (dense ``FULLY_CONNECTED``,
   ``CONV_2D``) and in the vectorized channels (groups of 8) of ``DEPTHWISE_CONV_2D`` and
   ``TRANSPOSE_CONV``, away from zero in the sparse ``FULLY_CONNECTED`` kernel and the remaining
   depthwise and transposed convolution channels.

Then the output zero point is added and the result clamped to the fused activation's range.
``M`` and the shift come from ``QuantizeMultiplier`` of ``input_scale * weight_scale /
output_scale`` (a per-tensor ``FULLY_CONNECTED`` multiplies the two float32 scales in float32
first). ``QUANTIZE`` and ``DEQUANTIZE`` round the values LiteRT handles 8 at a time differently
from the rest. The same rules as :mod:`sparse_import.adapters.tflite.quantized` (the Relay
backend), which documents how they were measured.

Accumulators are computed from int32 operands (``x - input_zero_point``); a weight keeps its
int8 type (an unbound parameter when it is sparse) and is cast in the module.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tvm import relax

from sparse_import.adapters.tflite import arithmetic as tflite_arithmetic
from sparse_import.adapters.tflite.arithmetic import effective_scales, quantize_multiplier
from sparse_import.adapters.tflite.loader import schema as _schema

INT8 = "int8"
_LANES = 8  # values per vector in LiteRT's depthwise, QUANTIZE and DEQUANTIZE loops
_R = relax.op


def activation_range(fused: int, scale: float, zero_point: int) -> tuple[int, int]:
    """TFLite's ``CalculateActivationRangeQuantized`` for an int8 output."""
    return tflite_arithmetic.activation_range(fused, scale, zero_point, "int8")


FUSED_ACTIVATIONS = frozenset({0, 1, 2, 3})


# ---------------------------------------------------------------------------- output stage
def requantize(
    acc: relax.Expr,
    scales: np.ndarray,
    ties: np.ndarray,
    zero_point: int,
    bounds: tuple[int, int],
) -> relax.Expr:
    """LiteRT's output stage on int32 accumulators ``(..., channels)``.

    Parameters
    ----------
    acc : relax.Expr
        int32 accumulators, bias included, the output channel last.
    scales : numpy.ndarray
        Effective scales, ``(channels,)`` or ``(1,)`` (:func:`effective_scales`).
    ties : numpy.ndarray of bool
        ``True`` where a channel's final shift breaks ties away from zero (else up).
    zero_point : int
        The output's zero point.
    bounds : tuple of int
        The clamp (:func:`activation_range`).
    """
    multiplier, shift = quantize_multiplier(scales)
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    x = _R.astype(acc, "int64")
    if left.any():
        x = _R.left_shift(x, _i64(left))
    high = _R.right_shift(_R.add(_R.multiply(x, _i64(multiplier)), _i64(1 << 30)), _i64(31))
    half = np.where(right > 0, np.left_shift(1, np.maximum(right - 1, 0)), 0).astype(np.int64)
    away = np.asarray(ties, dtype=bool) & (right > 0)
    if away.any():
        negative = _R.astype(_R.less(high, _i64(0)), "int64")
        high = _R.subtract(high, _R.multiply(negative, _i64(away)))
    out = _R.right_shift(_R.add(high, _i64(half)), _i64(right))
    out = _R.clip(_R.add(out, _i64(zero_point)), *bounds)
    return _R.astype(out, INT8)


def _i64(value: Any) -> relax.Expr:
    return relax.const(np.asarray(value, dtype=np.int64), "int64")


def _f64(value: float) -> relax.Expr:
    return relax.const(float(value), "float64")


# ---------------------------------------------------------------------------- tensors
def scale_of(tensor: Any) -> float:
    """The per-tensor scale of a ``TensorWrapper``."""
    return float(np.asarray(tensor.qnn_params["scale"].value.numpy()).reshape(-1)[0])


def zero_point_of(tensor: Any) -> int:
    """The per-tensor zero point of a ``TensorWrapper``."""
    return int(np.asarray(tensor.qnn_params["zero_point"].value.numpy()).reshape(-1)[0])


def weight_scales(tensor: Any) -> np.ndarray:
    """The scales of a weight (TFLite's, one per channel or one)."""
    return tensor.tensor.Quantization().ScaleAsNumpy().astype(np.float32).reshape(-1)


def _centered(x: relax.Expr, zero_point: int) -> relax.Expr:
    return _R.subtract(_R.astype(x, "int32"), relax.const(zero_point, "int32"))


def operand(conv: Any, tensor: Any) -> relax.Expr:
    """A constant operand's expression: its variable when it has one, else a constant."""
    if conv.has_expr(tensor.tensor_idx):
        return conv.get_expr(tensor.tensor_idx)
    return conv.exp_tab.new_const(
        conv.get_tensor_value(tensor),
        dtype=conv.get_tensor_type_str(tensor.tensor.Type()),
        source_name=tensor.tensor.Name(),
    )


def static_shape(conv: Any, expr: relax.Expr) -> tuple[int, ...]:
    return tuple(int(d) for d in conv._infer_shape(expr))


# ---------------------------------------------------------------------------- (de)quantize
def _vector_lanes(size: int) -> np.ndarray:
    """``True`` for the values LiteRT's loops handle 8 at a time, ``False`` for the rest."""
    return np.arange(size) < _LANES * (size // _LANES)


def _by_lane(vector: relax.Expr, scalar: relax.Expr, shape: tuple[int, ...]) -> relax.Expr:
    lanes = _vector_lanes(int(np.prod(shape)))
    if lanes.all():
        return vector
    if not lanes.any():
        return scalar
    return _R.where(relax.const(lanes.reshape(shape)), vector, scalar)


def round_half_even(v: relax.Expr) -> relax.Expr:
    """Round float64 ``v`` to the nearest integer, ties to even (exact for ``|v| < 2**52``)."""
    nearest = _R.floor(_R.add(v, _f64(0.5)))  # ties up
    tie = _R.equal(_R.subtract(v, _R.floor(v)), _f64(0.5))
    half_nearest = _R.multiply(nearest, _f64(0.5))
    odd = _R.not_equal(_R.floor(half_nearest), half_nearest)
    return _R.where(_R.logical_and(tie, odd), _R.subtract(nearest, _f64(1.0)), nearest)


def round_half_away(v: relax.Expr) -> relax.Expr:
    """Round float64 ``v`` to the nearest integer, ties away from zero (``std::round``)."""
    return _R.multiply(_R.sign(v), _R.floor(_R.add(_R.abs(v), _f64(0.5))))


def quantize(x: relax.Expr, shape: tuple[int, ...], scale: float, zero_point: int) -> relax.Expr:
    """LiteRT's float32 -> int8 ``QUANTIZE``: the values handled 8 at a time are ``x * (1 /
    scale)`` in float32 rounded half to even, the rest ``x / scale`` in float64 rounded half
    away from zero; then the zero point is added and the result clamped."""
    inverse = np.float32(1) / np.float32(scale)
    product = _R.astype(_R.multiply(x, relax.const(inverse, "float32")), "float64")
    vector = round_half_even(product)
    scalar = round_half_away(_R.divide(_R.astype(x, "float64"), _f64(np.float32(scale))))
    out = _by_lane(vector, scalar, shape)
    out = _R.clip(_R.add(out, _f64(zero_point)), -128.0, 127.0)
    return _R.astype(out, INT8)


def dequantize(x: relax.Expr, shape: tuple[int, ...], scale: float, zero_point: int) -> relax.Expr:
    """LiteRT's int8 -> float32 ``DEQUANTIZE``: the values handled 8 at a time are ``q * scale
    + (-zero_point * scale)`` (two float32 roundings), the rest ``(q - zero_point) * scale``."""
    s = np.float32(scale)
    # each float32 step computed in float64 (exact) and rounded once: no contraction to an FMA
    product = _R.astype(_R.multiply(_R.astype(x, "float64"), _f64(s)), "float32")
    offset = _f64(np.float32(-np.float32(zero_point) * s))
    vector = _R.astype(_R.add(_R.astype(product, "float64"), offset), "float32")
    centered = _R.astype(_centered(x, zero_point), "float64")
    scalar = _R.astype(_R.multiply(centered, _f64(s)), "float32")
    return _by_lane(vector, scalar, shape)


# ---------------------------------------------------------------------------- operators
def fully_connected(conv: Any, fc: Any) -> relax.Expr:
    """int8 ``FULLY_CONNECTED`` (int8 input, weight and output; per-tensor or per-channel)."""
    x = _R.reshape(conv.get_tensor_expr(fc.data), (-1, fc.depth))
    w = _R.permute_dims(_R.astype(operand(conv, fc.weight), "int32"), [1, 0])
    acc = _R.matmul(_centered(x, zero_point_of(fc.data)), w, out_dtype="int32")
    if fc.bias is not None:
        acc = _R.add(acc, operand(conv, fc.bias))
    scales = weight_scales(fc.weight)
    effective = effective_scales(
        scale_of(fc.data), scales, scale_of(fc.output), float_product=scales.size == 1
    )
    sparse_kernel = fc.weight.tensor.Sparsity() is not None
    out = requantize(
        acc,
        effective,
        np.array([sparse_kernel]),
        zero_point_of(fc.output),
        activation_range(fc.activation, scale_of(fc.output), zero_point_of(fc.output)),
    )
    return fc.finish(conv, out)


def convolution(conv: Any, c: Any) -> relax.Expr:
    """int8 ``CONV_2D`` / ``DEPTHWISE_CONV_2D`` (NHWC; per-tensor or per-channel weight)."""
    x = _centered(conv.get_tensor_expr(c.data), zero_point_of(c.data))  # padding: zero point
    acc = c.conv2d(_R.astype(c.kernel(operand(conv, c.weight)), "int32"), x, "int32")
    if c.bias is not None:
        acc = _R.add(acc, operand(conv, c.bias))
    scales = effective_scales(
        scale_of(c.data), weight_scales(c.weight), scale_of(c.output), float_product=False
    )
    ties = ~_vector_lanes(c.out_channels) if c.depthwise else np.zeros(c.out_channels, bool)
    bounds = activation_range(c.activation, scale_of(c.output), zero_point_of(c.output))
    return requantize(
        acc, np.broadcast_to(scales, (c.out_channels,)), ties, zero_point_of(c.output), bounds
    )


def transpose_convolution(conv: Any, op: Any) -> relax.Expr:
    """int8 ``TRANSPOSE_CONV`` (NHWC; per-tensor or per-channel weight ``(O, KH, KW, I)``).

    LiteRT scatters ``(x - input_zero_point) * w`` into int32 accumulators (col2im), adds the
    bias and requantizes per output channel like ``DEPTHWISE_CONV_2D``: channels in groups of 8
    break ties up, the remaining ones away from zero. The output keeps the declared
    ``output_shape`` (SAME padding before the data as TFLite computes it, the rest after).
    """
    tfl = _schema()
    inputs = conv.get_input_tensors(op)
    shape_tensor, weight, data = inputs[:3]
    bias = inputs[3] if len(inputs) > 3 and inputs[3].tensor_idx != -1 else None
    (output,) = conv.get_output_tensors(op)
    options = tfl.TransposeConvOptions()
    table = op.BuiltinOptions()
    options.Init(table.Bytes, table.Pos)
    strides = (int(options.StrideH()), int(options.StrideW()))
    channels, kernel_h, kernel_w, _ = (int(d) for d in weight.tensor.ShapeAsNumpy())
    _, out_h, out_w, _ = (int(d) for d in np.asarray(conv.get_tensor_value(shape_tensor)))
    _, in_h, in_w, _ = static_shape(conv, conv.get_tensor_expr(data))
    same = options.Padding() == tfl.Padding.SAME
    padding, extra = zip(
        *(
            _transpose_padding(size, out, kernel, stride, same=same)
            for size, out, kernel, stride in zip(
                (in_h, in_w), (out_h, out_w), (kernel_h, kernel_w), strides, strict=True
            )
        ),
        strict=True,
    )
    x = _centered(conv.get_tensor_expr(data), zero_point_of(data))
    kernel = _R.permute_dims(_R.astype(operand(conv, weight), "int32"), [3, 0, 1, 2])  # IOHW
    acc = _R.nn.conv2d_transpose(
        x,
        kernel,
        strides=strides,
        padding=(padding[0][0], padding[1][0], padding[0][1], padding[1][1]),
        output_padding=extra,
        data_layout="NHWC",
        kernel_layout="IOHW",
        out_dtype="int32",
    )
    if bias is not None:
        acc = _R.add(acc, operand(conv, bias))
    scales = effective_scales(
        scale_of(data), weight_scales(weight), scale_of(output), float_product=False
    )
    activation = int(options.FusedActivationFunction())
    bounds = activation_range(activation, scale_of(output), zero_point_of(output))
    return requantize(
        acc,
        np.broadcast_to(scales, (channels,)),
        ~_vector_lanes(channels),
        zero_point_of(output),
        bounds,
    )


def _transpose_padding(
    size: int, out: int, kernel: int, stride: int, *, same: bool
) -> tuple[tuple[int, int], int]:
    """``((before, after), output_padding)`` of one spatial axis of a ``TRANSPOSE_CONV`` from
    ``size`` to the declared ``out``: TFLite offsets by SAME's leading pad only (``total // 2``
    of ``ComputePaddingHeightWidth``), crops or extends the end to ``out``."""
    total = max((-(-out // stride) - 1) * stride + kernel - out, 0) if same else 0
    before, full = total // 2, (size - 1) * stride + kernel
    after = max(full - before - out, 0)
    return (before, after), max(out - (full - before - after), 0)
