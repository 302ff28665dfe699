"""Classify the uses of a sparse weight: which can run on TVM's sparse kernels, and why not.

A use becomes a :class:`Site` when its consumer is a matrix product TVM can run with a sparse
right-hand side (``nn.dense``, ``nn.matmul``) or a convolution with one group a sparse kernel
computes: NCHW/OIHW with any square kernel, stride, padding and dilation (1x1 with stride 1 as a
sparse product over the pixels, any block; the rest on our direct kernel, blocks one column
wide), or NHWC/HWIO 1x1 or 3x3 with stride 1 and same padding (TVM's ``nn.sparse_conv2d``).
Every other use yields the reason it keeps the weight dense.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relay

from sparse_import.planning.product import Product
from sparse_import.tensor import SparseTensor

from .uses import Use, op_name

__all__ = ["Site", "classify", "conv_form"]

# A view chain through such a cast is computed exactly only by folding it on the dense constant
# (TVM drops the rounding of a bfloat16 round trip of a run-time value).
NON_NUMPY_CAST = "a dtype the sparse IR cannot hold as NumPy numbers"
SPARSE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))  # checked against TVM 0.19's kernels


@dataclass(frozen=True, eq=False, kw_only=True)
class Site(Product):
    """A use of a weight that a sparse kernel can compute: the :class:`Product` planning
    prices, plus ``use``, the path from the weight's Relay parameter to its consumer."""

    use: Use


def _shape(expr: relay.Expr) -> tuple[int | None, ...]:
    """Static shape of a type-inferred expression, ``None`` for each dynamic dimension."""
    return tuple(int(d) if isinstance(d, tvm.tir.IntImm) else None for d in expr.checked_type.shape)


def _view(tensor: SparseTensor, chain: tuple[relay.Call, ...]) -> SparseTensor | str:
    """Apply the view operators of ``chain`` to the IR tensor, or say why it cannot be.

    A cast to a dtype that is not a NumPy number (``bfloat16``, say) keeps the weight dense:
    the IR holds NumPy arrays, and TVM computes such a chain from the dense constant.
    """
    for call in chain:
        name = op_name(call)
        if name == "cast":
            dtype = str(call.attrs.dtype)
            try:
                kind = np.dtype(dtype).kind
            except TypeError:
                kind = "?"
            if kind not in "biuf":
                return f"cast to {dtype}, {NON_NUMPY_CAST}"
            tensor = tensor.astype(dtype)
        elif name == "transpose":
            axes = call.attrs.axes
            tensor = tensor.transpose(None if axes is None else tuple(int(a) for a in axes))
        else:
            tensor = tensor.reshape(_shape(call))
    return tensor


def _dtype_reason(data: relay.Expr, weight: SparseTensor, out_dtype: str) -> str | None:
    data_dtype = np.dtype(data.checked_type.dtype)
    if weight.dtype.kind in "iu":
        return f"{weight.dtype} weight: TVM has no sparse {weight.dtype} kernel"
    if weight.dtype not in SPARSE_DTYPES or data_dtype != weight.dtype:
        return (
            f"{weight.dtype} weight with {data_dtype} input: TVM's sparse kernels are used "
            "with float32 or float64 weights and inputs of the same dtype"
        )
    if out_dtype not in ("", str(data_dtype)):
        return f"output dtype {out_dtype} differs from the input dtype {data_dtype}"
    return None


def _conv_reason(attrs: relay.Expr) -> str | None:
    kernel = tuple(int(k) for k in attrs.kernel_size)
    layouts = (str(attrs.data_layout), str(attrs.kernel_layout))
    if int(attrs.groups) != 1:
        return (
            f"nn.conv2d with groups {attrs.groups}: the sparse convolutions compute one group "
            "(a depthwise or grouped convolution stays dense)"
        )
    if kernel[0] != kernel[1]:
        return f"nn.conv2d with kernel {kernel}: the sparse convolutions take square kernels"
    if layouts == ("NCHW", "OIHW"):
        return None  # the direct kernel: any size, stride, padding, dilation
    pad = 0 if kernel == (1, 1) else 1
    checks = (
        (kernel in ((1, 1), (3, 3)), f"kernel {kernel}"),
        (layouts == ("NHWC", "HWIO"), f"layouts {layouts[0]}/{layouts[1]}"),
        (tuple(int(s) for s in attrs.strides) == (1, 1), f"strides {tuple(attrs.strides)}"),
        (tuple(int(d) for d in attrs.dilation) == (1, 1), f"dilation {tuple(attrs.dilation)}"),
        (all(int(p) == pad for p in attrs.padding), f"padding {tuple(attrs.padding)}"),
    )
    failed = [what for ok, what in checks if not ok]
    if failed:
        return (
            f"nn.conv2d with {', '.join(failed)}: an NHWC sparse convolution is 1x1 or 3x3 "
            "(HWIO weights) with stride 1, dilation 1 and same padding; NCHW/OIHW takes any "
            "square kernel"
        )
    return None


def conv_form(attrs: relay.Expr) -> tuple[int, str] | None:
    """``(kernel, "same")`` for a 1x1 or 3x3 convolution TVM's ``nn.sparse_conv2d`` computes
    (stride 1, dilation 1, same padding); ``None`` for any other."""
    kernel = int(attrs.kernel_size[0])
    plain = all(int(s) == 1 for s in (*attrs.strides, *attrs.dilation))
    same = all(int(p) == kernel // 2 for p in attrs.padding)
    if kernel in (1, 3) and int(attrs.kernel_size[1]) == kernel and plain and same:
        return kernel, "same"
    return None


def _conv_matrix(weight: SparseTensor, kernel_layout: str) -> SparseTensor:
    """The ``(out, kh * kw * in)`` matrix of TVM's sparse_conv2d.

    Columns run over ``(kh, kw, in)`` for an HWIO kernel (TVM's NHWC im2col order) and over
    ``(in, kh, kw)`` for OIHW (its NCHW order).
    """
    if kernel_layout == "HWIO":
        weight = weight.transpose((3, 0, 1, 2))
    return weight.reshape((weight.shape[0], math.prod(weight.shape[1:])))


def classify(use: Use, tensor: SparseTensor) -> Site | str:
    """A :class:`Site` for a use TVM's sparse kernels compute, else the reason it stays dense.

    Parameters
    ----------
    use : Use
        From :func:`~sparse_import.relay_backend.uses.find_uses` on a type-inferred function.
    tensor : SparseTensor
        The weight as the parameter holds it (``SparseWeight.tensor``).

    Returns
    -------
    Site | str
    """
    name = use.op_name
    call = use.consumer
    if name in ("qnn.dense", "qnn.conv2d", "qnn.batch_matmul"):
        return f"quantized {name}: TVM has no sparse int8 kernel"
    if call is None:
        return "is the result of the Relay function, not read by a matrix product"
    if op_name(call) is None:
        return f"read by a {name} expression (a model output, say), not by a matrix product"
    if name not in ("nn.dense", "nn.matmul", "nn.conv2d") or use.arg != 1:
        return f"read by {name} (argument {use.arg}), which has no sparse kernel"
    weight = _view(tensor, use.chain)
    if isinstance(weight, str):
        return weight
    data = call.args[0]
    reason = _dtype_reason(data, weight, str(call.attrs.out_dtype))
    if reason:
        return reason
    if name == "nn.conv2d":
        reason = _conv_reason(call.attrs)
        if reason:
            return reason
        layout = str(call.attrs.data_layout)
        conv = (layout, int(call.attrs.kernel_size[0]))
        matrix = _conv_matrix(weight, str(call.attrs.kernel_layout))
        return Site(
            use=use,
            matrix=matrix,
            data_shape=_shape(data),
            conv=conv,
            stride=max(int(s) for s in call.attrs.strides),
            out_shape=_shape(call),
            direct=layout == "NCHW" and conv_form(call.attrs) != (1, "same"),
        )
    if name == "nn.matmul":
        if call.attrs.transpose_a:
            return "nn.matmul with transpose_a: TVM's sparse_dense needs x @ W.T"
        if not call.attrs.transpose_b:
            weight = weight.transpose()
    shape = _shape(data)
    if len(shape) < 2 or sum(d is None for d in shape[:-1]) > 1:
        return f"{name} input of shape {shape}: needs rank >= 2 with at most one dynamic dimension"
    return Site(use=use, matrix=weight, data_shape=shape)
