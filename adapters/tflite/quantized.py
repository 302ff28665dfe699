"""int8 operators with LiteRT's integer arithmetic, bit for bit.

TVM's ``qnn.requantize`` rounds once (``UPWARD`` or ``TONEAREST``), or computes in float32 on
x86 targets with SSE4.1; LiteRT multiplies by a 31-bit fixed-point multiplier and rounds twice:

1. ``h = (acc * 2**left * M + 2**30) >> 31``, the rounding doubling high multiply (ties go up,
   in gemmlowp's ``SaturatingRoundingDoublingHighMul`` as in NEON's ``vqrdmulh``);
2. ``h >> right``, rounded to nearest, where the kernels break ties differently: up (towards
   +inf) in ruy's kernels (``FULLY_CONNECTED`` with a dense weight, ``CONV_2D``) and in the
   vectorized output stage of ``DEPTHWISE_CONV_2D`` (channels in groups of 8); away from zero
   (gemmlowp's ``RoundingDivideByPOT``) in the sparse ``FULLY_CONNECTED`` kernel (weights in
   1x16 blocks) and in the depthwise output stage's remaining channels.

``M`` and the shift come from TFLite's ``QuantizeMultiplier`` of the effective scale
``input_scale * weight_scale / output_scale`` (:func:`quantize_multiplier`), in double
precision, except that a per-tensor ``FULLY_CONNECTED`` multiplies the two float32 scales in
float32 first, as TFLite's ``GetQuantizedConvolutionMultipler`` does (the fixtures cannot tell
the two apart: their multipliers come out equal). The output zero point is added, the result
clamped to the fused activation's range (:func:`activation_range`) and stored as int8.

The int32 accumulators are exact in any order; they are computed from int32 operands
(``x - input_zero_point``) so that TVM never picks its VNNI int8 kernels, which LLVM 22 cannot
compile.

Measured with ai-edge-litert 2.3.0 on x86-64 (AVX-512), builtin kernels without delegates,
against a NumPy model of each candidate rule on the int8 fixtures; single rounding and the
other tie rules tried disagreed with LiteRT on some outputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tvm import relay
from tvm.relay import qnn
from tvm.relay.frontend.tflite import get_scalar_from_constant

from .arithmetic import activation_range, effective_scales, quantize_multiplier
from .loader import schema
from .operands import FullyConnected, constant

INT8 = "int8"
_LANES = 8  # values per vector in LiteRT's depthwise, QUANTIZE and DEQUANTIZE loops


# ---------------------------------------------------------------------------- output stage
def requantize(
    acc: relay.Expr,
    scales: np.ndarray,
    ties: np.ndarray,
    zero_point: int,
    bounds: tuple[int, int],
    out_dtype: str = INT8,
) -> relay.Expr:
    """LiteRT's output stage on int32 accumulators whose last axis is the output channel.

    Parameters
    ----------
    acc : relay.Expr
        int32 accumulators (bias included), shape ``(..., channels)``.
    scales : numpy.ndarray
        Effective scales, ``(channels,)`` or ``(1,)`` (:func:`effective_scales`).
    ties : numpy.ndarray of bool
        ``True`` where the channel's final shift breaks ties away from zero (else up),
        ``(channels,)`` or ``(1,)``.
    zero_point : int
        The output's zero point.
    bounds : tuple of int
        The clamp (:func:`activation_range`).
    out_dtype : str
    """
    multiplier, shift = quantize_multiplier(scales)
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    x = relay.cast(acc, "int64")
    if left.any():
        x = relay.left_shift(x, _i64(left))
    high = relay.right_shift(
        relay.add(relay.multiply(x, _i64(multiplier)), _i64(1 << 30)),
        _i64(31),
    )
    half = np.where(right > 0, np.left_shift(1, np.maximum(right - 1, 0)), 0).astype(np.int64)
    away = np.asarray(ties, dtype=bool) & (right > 0)
    if away.any():
        negative = relay.cast(relay.less(high, _i64(0)), "int64")
        high = relay.subtract(high, relay.multiply(negative, _i64(away)))
    out = relay.right_shift(relay.add(high, _i64(half)), _i64(right))
    out = relay.add(out, _i64(zero_point))
    out = relay.clip(out, *bounds)
    return relay.cast(out, out_dtype)


def _i64(value: Any) -> relay.Expr:
    """An int64 constant (``relay.const`` narrows int64 arrays to int32)."""
    return relay.const(np.asarray(value, dtype=np.int64), "int64")


def _zero_point(tensor: Any) -> int:
    return int(get_scalar_from_constant(tensor.qnn_params["zero_point"]))


def _scale(tensor: Any) -> float:
    return float(get_scalar_from_constant(tensor.qnn_params["scale"]))


def _weight_scales(tensor: Any) -> np.ndarray:
    return tensor.qnn_params["scale"].data.numpy().astype(np.float32).reshape(-1)


def _weight_zero_points(tensor: Any) -> np.ndarray:
    return tensor.qnn_params["zero_point"].data.numpy().reshape(-1)


def is_int8(conv: Any, *tensors: Any) -> bool:
    """Every tensor is int8 and quantized."""
    return all(
        t.qnn_params is not None and conv.get_tensor_type_str(t.tensor.Type()) == INT8
        for t in tensors
    )


# ---------------------------------------------------------------------------- (de)quantize
def _vector_lanes(size: int) -> np.ndarray:
    """``True`` for the values LiteRT's loops handle 8 at a time, ``False`` for the rest."""
    return np.arange(size) < _LANES * (size // _LANES)


def quantize(x: relay.Expr, shape: tuple[int, ...], scale: float, zero_point: int) -> relay.Expr:
    """LiteRT's float32 -> int8 ``QUANTIZE`` of a tensor of static ``shape``.

    The values handled 8 at a time (all but the last ``size % 8`` in row-major order) are
    ``x * (1 / scale)`` in float32 rounded half to even; the rest ``x / scale`` in float64
    rounded half away from zero. Then the zero point is added and the result clamped.
    """
    inverse = np.float32(1) / np.float32(scale)
    vector = _round_half_even(relay.cast(relay.multiply(x, relay.const(inverse)), "float64"))
    scalar = relay.round(relay.divide(relay.cast(x, "float64"), _f64(np.float32(scale))))
    out = _by_lane(vector, scalar, shape)
    out = relay.clip(relay.add(out, _f64(zero_point)), -128.0, 127.0)
    return relay.cast(out, INT8)


def dequantize(x: relay.Expr, shape: tuple[int, ...], scale: float, zero_point: int) -> relay.Expr:
    """LiteRT's int8 -> float32 ``DEQUANTIZE`` of a tensor of static ``shape``.

    The values handled 8 at a time are ``q * scale + (-zero_point * scale)`` (two float32
    roundings); the rest ``(q - zero_point) * scale``, rounded once.
    """
    s = np.float32(scale)
    # each float32 step rounded once, in float64 (exact), so LLVM cannot contract it into an FMA
    product = relay.cast(relay.multiply(relay.cast(x, "float64"), _f64(s)), "float32")
    offset = _f64(np.float32(-np.float32(zero_point) * s))
    vector = relay.cast(relay.add(relay.cast(product, "float64"), offset), "float32")
    centered = relay.subtract(relay.cast(x, "int32"), relay.const(zero_point))
    scalar = relay.multiply(relay.cast(centered, "float32"), relay.const(s))
    return _by_lane(vector, scalar, shape)


def _by_lane(vector: relay.Expr, scalar: relay.Expr, shape: tuple[int, ...]) -> relay.Expr:
    lanes = _vector_lanes(int(np.prod(shape)))
    if lanes.all():
        return vector
    if not lanes.any():
        return scalar
    return relay.where(relay.const(lanes.reshape(shape)), vector, scalar)


def _f64(value: float) -> relay.Expr:
    return relay.const(float(value), "float64")


def _round_half_even(v: relay.Expr) -> relay.Expr:
    """Round float64 ``v`` to the nearest integer, ties to even (exact for |v| < 2**52)."""
    f64 = _f64
    nearest = relay.floor(relay.add(v, f64(0.5)))  # ties up
    tie = relay.equal(relay.subtract(v, relay.floor(v)), f64(0.5))
    half_nearest = relay.multiply(nearest, f64(0.5))
    odd = relay.not_equal(relay.floor(half_nearest), half_nearest)
    return relay.where(relay.logical_and(tie, odd), relay.subtract(nearest, f64(1.0)), nearest)


# ---------------------------------------------------------------------------- operators
def fully_connected(conv: Any, op: Any) -> relay.Expr:
    """int8 ``FULLY_CONNECTED`` (int8 input, weight and output; per-tensor or per-channel)."""
    fc = FullyConnected.of(conv, op)
    w, _ = constant(conv, fc.weight)
    x = relay.subtract(relay.cast(fc.rows(conv), "int32"), relay.const(_zero_point(fc.data)))
    acc = relay.nn.dense(x, relay.cast(w, "int32"), units=fc.units, out_dtype="int32")
    if fc.bias is not None:
        acc = relay.nn.bias_add(acc, constant(conv, fc.bias)[0])
    weight_scales = _weight_scales(fc.weight)
    scales = effective_scales(
        _scale(fc.data), weight_scales, _scale(fc.output), float_product=weight_scales.size == 1
    )
    sparse_kernel = fc.weight.tensor.Sparsity() is not None
    out = requantize(
        acc,
        scales,
        np.array([sparse_kernel]),
        _zero_point(fc.output),
        activation_range(
            fc.options.FusedActivationFunction(), _scale(fc.output), _zero_point(fc.output), INT8
        ),
    )
    return fc.finish(conv, out)


def per_channel_fully_connected(conv: Any, op: Any) -> relay.Expr:
    """``FULLY_CONNECTED`` with per-channel weight scales on other than int8 activations (int16):
    ``qnn.dense`` and ``qnn.requantize`` per output channel, TVM's rounding (not LiteRT's)."""
    fc = FullyConnected.of(conv, op)
    out_dtype = conv.get_tensor_type_str(fc.output.tensor.Type())
    kernel_scale = fc.weight.qnn_params["scale"]
    out = qnn.op.dense(
        fc.rows(conv),
        constant(conv, fc.weight)[0],
        input_zero_point=fc.data.qnn_params["zero_point"],
        kernel_zero_point=fc.weight.qnn_params["zero_point"],
        input_scale=fc.data.qnn_params["scale"],
        kernel_scale=kernel_scale,
        units=fc.units,
        out_dtype="int64" if out_dtype == "int16" else "int32",
    )
    if fc.bias is not None:
        out = relay.nn.bias_add(out, constant(conv, fc.bias)[0])
    out = qnn.op.requantize(
        out,
        input_scale=relay.const(_scale(fc.data) * kernel_scale.data.numpy(), "float32"),
        input_zero_point=relay.const(0, "int32"),
        output_scale=fc.output.qnn_params["scale"],
        output_zero_point=fc.output.qnn_params["zero_point"],
        axis=1,
        out_dtype=out_dtype,
    )
    out = conv.convert_qnn_fused_activation_function(
        expr=out,
        fused_activation_fn=fc.options.FusedActivationFunction(),
        scale=_scale(fc.output),
        zero_point=_zero_point(fc.output),
        dtype=out_dtype,
    )
    return fc.finish(conv, out)


def convolution(conv: Any, op: Any, converted: relay.Expr, *, depthwise: bool) -> relay.Expr:
    """``CONV_2D`` / ``DEPTHWISE_CONV_2D`` as TVM converted it (``converted``), with the
    accumulation in int32 operands and LiteRT's output stage.

    TVM's expression is ``[clip](qnn.requantize([bias_add](qnn.conv2d(...))))``; its layouts,
    padding and kernel transforms are kept. Anything else is returned unchanged.
    """
    data, weight = conv.get_input_tensors(op)[:2]
    (output,) = conv.get_output_tensors(op)
    if not is_int8(conv, data, weight, output) or _weight_zero_points(weight).any():
        return converted
    requantized = converted.args[0] if _op_name(converted) == "clip" else converted
    if _op_name(requantized) != "qnn.requantize":
        return converted
    acc = requantized.args[0]
    bias = None
    if _op_name(acc) == "nn.bias_add":
        acc, bias = acc.args
    if _op_name(acc) != "qnn.conv2d":
        return converted
    x, kernel = acc.args[:2]
    attrs = acc.attrs
    acc = relay.nn.conv2d(
        relay.subtract(relay.cast(x, "int32"), relay.const(_zero_point(data))),
        relay.cast(kernel, "int32"),
        strides=attrs.strides,
        padding=attrs.padding,
        dilation=attrs.dilation,
        groups=attrs.groups,
        channels=attrs.channels,
        kernel_size=attrs.kernel_size,
        data_layout=attrs.data_layout,
        kernel_layout=attrs.kernel_layout,
        out_dtype="int32",
    )
    if bias is not None:
        acc = relay.nn.bias_add(acc, bias, axis=3)
    channels = int(output.tensor.ShapeAsNumpy()[-1])
    scales = effective_scales(
        _scale(data), _weight_scales(weight), _scale(output), float_product=False
    )
    if depthwise:
        ties = ~_vector_lanes(channels)
    else:
        ties = np.zeros(channels, dtype=bool)
    options = op.BuiltinOptions()
    fused = _fused_activation(conv, op, options)
    bounds = activation_range(fused, _scale(output), _zero_point(output), INT8)
    return requantize(acc, np.broadcast_to(scales, (channels,)), ties, _zero_point(output), bounds)


def _fused_activation(conv: Any, op: Any, table: Any) -> int:
    tfl = schema()
    code = conv.get_op_code_str(op)
    options = tfl.DepthwiseConv2DOptions() if code == "DEPTHWISE_CONV_2D" else tfl.Conv2DOptions()
    options.Init(table.Bytes, table.Pos)
    return int(options.FusedActivationFunction())


def _op_name(expr: relay.Expr) -> str | None:
    op = getattr(expr, "op", None)
    return getattr(op, "name", None)
