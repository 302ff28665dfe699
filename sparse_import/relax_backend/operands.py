"""Operands of the TFLite matrix operators converted here (exact int8 and hybrid): the tensors
(TVM's ``TensorWrapper``) and options of one ``FULLY_CONNECTED``, ``CONV_2D`` or
``DEPTHWISE_CONV_2D``, and their Relax layouts as TVM's converter builds them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tvm import relax

from sparse_import.adapters.tflite.loader import schema


def _options(op: Any, kind: Any) -> Any:
    options = kind()
    table = op.BuiltinOptions()
    options.Init(table.Bytes, table.Pos)
    return options


def _bias(inputs: list[Any]) -> Any | None:
    return inputs[2] if len(inputs) > 2 and inputs[2].tensor_idx != -1 else None


@dataclass(frozen=True)
class FullyConnected:
    """One ``FULLY_CONNECTED``: ``weight`` is ``(units, depth)``, ``bias`` ``None`` if absent."""

    data: Any
    weight: Any
    bias: Any | None
    output: Any
    units: int
    depth: int
    activation: int
    keep_num_dims: bool
    asymmetric_inputs: bool  # hybrid: quantize input rows with a zero point

    @classmethod
    def of(cls, conv: Any, op: Any) -> FullyConnected:
        inputs = conv.get_input_tensors(op)
        (output,) = conv.get_output_tensors(op)
        units, depth = (int(d) for d in inputs[1].tensor.ShapeAsNumpy())
        options = _options(op, schema().FullyConnectedOptions)
        return cls(
            inputs[0],
            inputs[1],
            _bias(inputs),
            output,
            units,
            depth,
            int(options.FusedActivationFunction()),
            bool(options.KeepNumDims()),
            bool(options.AsymmetricQuantizeInputs()),
        )

    def finish(self, conv: Any, out: relax.Expr) -> relax.Expr:
        """Reshape ``(rows, units)`` back to the input's leading dimensions for
        ``keep_num_dims``, as TVM does."""
        if self.keep_num_dims:
            shape = [int(d) for d in conv._infer_shape(conv.get_tensor_expr(self.data))]
            out = relax.op.reshape(out, (*shape[:-1], self.units))
        return out


@dataclass(frozen=True)
class Convolution:
    """One NHWC ``CONV_2D`` or ``DEPTHWISE_CONV_2D`` with its static sizes."""

    data: Any
    weight: Any
    bias: Any | None
    output: Any
    depthwise: bool
    activation: int
    strides: tuple[int, int]
    dilation: tuple[int, int]
    padding: tuple[int, int, int, int]
    input_shape: tuple[int, int, int, int]
    kernel_shape: tuple[int, int, int, int]  # as TFLite stores it

    @classmethod
    def of(cls, conv: Any, op: Any, *, depthwise: bool) -> Convolution:
        tfl = schema()
        inputs = conv.get_input_tensors(op)
        (output,) = conv.get_output_tensors(op)
        kind = tfl.DepthwiseConv2DOptions if depthwise else tfl.Conv2DOptions
        options = _options(op, kind)
        input_shape = tuple(int(d) for d in inputs[0].tensor.ShapeAsNumpy())
        kernel_shape = tuple(int(d) for d in inputs[1].tensor.ShapeAsNumpy())
        strides = (int(options.StrideH()), int(options.StrideW()))
        dilation = (int(options.DilationHFactor()), int(options.DilationWFactor()))
        _, kernel_h, kernel_w, _ = kernel_shape
        padding = (0, 0, 0, 0)
        if options.Padding() == tfl.Padding.SAME:
            pad_h = _same_padding(input_shape[1], (kernel_h - 1) * dilation[0] + 1, strides[0])
            pad_w = _same_padding(input_shape[2], (kernel_w - 1) * dilation[1] + 1, strides[1])
            padding = (pad_h[0], pad_w[0], pad_h[1], pad_w[1])
        return cls(
            inputs[0],
            inputs[1],
            _bias(inputs),
            output,
            depthwise,
            int(options.FusedActivationFunction()),
            strides,
            dilation,
            padding,
            input_shape,
            kernel_shape,
        )

    @property
    def out_channels(self) -> int:
        return self.kernel_shape[-1] if self.depthwise else self.kernel_shape[0]

    @property
    def groups(self) -> int:
        if self.depthwise:
            return self.input_shape[-1]
        return self.input_shape[-1] // self.kernel_shape[-1]

    @property
    def layout(self) -> str:
        return "HWOI" if self.depthwise and self.input_shape[-1] > 1 else "HWIO"

    def kernel(self, weight: relax.Expr) -> relax.Expr:
        """The TFLite weight in :attr:`layout`: ``(O, KH, KW, I)`` transposed to HWIO; a
        depthwise ``(1, KH, KW, C * M)`` reshaped to HWOI ``(KH, KW, C * M, 1)`` (HWIO
        ``(KH, KW, 1, M)`` for one input channel)."""
        if not self.depthwise:
            return relax.op.permute_dims(weight, [1, 2, 3, 0])
        _, kernel_h, kernel_w, channels = self.kernel_shape
        if self.input_shape[-1] == 1:
            return relax.op.reshape(weight, (kernel_h, kernel_w, 1, channels))
        return relax.op.reshape(weight, (kernel_h, kernel_w, channels, 1))

    def conv2d(self, kernel: relax.Expr, x: relax.Expr, out_dtype: str) -> relax.Expr:
        return relax.op.nn.conv2d(
            x,
            kernel,
            strides=self.strides,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            data_layout="NHWC",
            kernel_layout=self.layout,
            out_dtype=out_dtype,
        )


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TFLite's SAME padding ``(before, after)`` of one spatial dimension."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2
