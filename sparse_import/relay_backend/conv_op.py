"""``sparse_import.sparse_conv2d``: an NCHW convolution with a sparse weight, any square kernel,
stride, padding and dilation (one group).

TVM's ``nn.sparse_conv2d`` takes no stride or padding: it computes 1x1 convolutions and 3x3 ones
with stride 1 and same padding. This op carries ``nn.conv2d``'s own attributes
(``Conv2DAttrs``) and computes with :func:`sparse_import.kernels.conv.sparse_conv2d_nchw`, so a
strided convolution (ResNet's downsampling 1x1 and 3x3, a 7x7 stem) keeps its weight sparse.
Its pattern lets Relay fuse the elementwise operators after it (bias, batch norm, activation),
which our schedule runs parallel and vectorized.

Examples
--------
>>> import numpy as np
>>> from tvm import relay
>>> x = relay.var("x", shape=(1, 4, 8, 8))
>>> data = relay.const(np.ones((3, 1, 1), "float32"))
>>> indices = relay.const(np.array([0, 5, 9], "uint16"))
>>> indptr = relay.const(np.array([0, 1, 3], "int32"))
>>> attrs = dict(kernel_size=(3, 3), strides=(2, 2), padding=(1, 1, 1, 1), dilation=(1, 1))
>>> call = sparse_conv2d(x, data, indices, indptr, **attrs)
>>> call.op.name
'sparse_import.sparse_conv2d'
"""

from __future__ import annotations

import tvm
from tvm import relay
from tvm.relay.op import op as _op

from sparse_import.kernels import Simd
from sparse_import.kernels.conv import conv_output_size, sparse_conv2d_nchw

from .custom_op import register_op

__all__ = ["OP_NAME", "conv_geometry", "register", "sparse_conv2d"]

OP_NAME = "sparse_import.sparse_conv2d"
"""Name of the Relay op."""


def _ints(values) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


def _geometry(attrs) -> dict:
    """:func:`conv_geometry` under the keywords of ``sparse_conv2d_nchw``."""
    geometry = conv_geometry(attrs)
    return {"kernel": geometry.pop("kernel_size"), **geometry}


def _type_relation(arg_types, attrs):
    data, values, _, indptr = arg_types
    n, _, h, w = _ints(data.shape)
    block = 1 if len(values.shape) == 1 else int(values.shape[1])
    rows = (int(indptr.shape[0]) - 1) * block
    g = _geometry(attrs)
    top, left, bottom, right = g["padding"]
    out_h = conv_output_size(h, g["kernel"][0], g["strides"][0], top, bottom, g["dilation"][0])
    out_w = conv_output_size(w, g["kernel"][1], g["strides"][1], left, right, g["dilation"][1])
    return relay.TensorType([n, rows, out_h, out_w], data.dtype)


def _compute(attrs, inputs, out_type):
    simd = Simd.from_target(tvm.target.Target.current())
    return [sparse_conv2d_nchw(*inputs, **_geometry(attrs), simd=simd)]


@tvm.target.override_native_generic_func("sparse_import_sparse_conv2d_strategy")
def _strategy(attrs, inputs, out_type, target):
    from .strategy import schedule

    strategy = _op.OpStrategy()
    strategy.add_implementation(_compute, schedule, name="sparse_import.sparse_conv2d_nchw")
    return strategy


def conv_geometry(attrs) -> dict:
    """The keyword arguments of :func:`sparse_conv2d` for a ``nn.conv2d`` call's attributes."""
    padding = _ints(attrs.padding)
    if len(padding) == 1:
        padding *= 4
    elif len(padding) == 2:
        padding *= 2
    return {
        "kernel_size": _ints(attrs.kernel_size),
        "strides": _ints(attrs.strides),
        "padding": padding,
        "dilation": _ints(attrs.dilation),
    }


def register() -> None:
    """Register the op once per process (later calls do nothing)."""
    register_op(
        OP_NAME,
        "NCHW convolution with a sparse (out, in * kh * kw) weight matrix.",
        [
            ("data", "Input, (n, in, h, w)."),
            ("weight_data", "Stored values, (nnz,) or (nblocks, r, 1)."),
            ("weight_indices", "Column of each value or block."),
            ("weight_indptr", "Row (block row) positions."),
        ],
        "relay.attrs.Conv2DAttrs",
        _type_relation,
        _op.OpPattern.OUT_ELEMWISE_FUSABLE,
        _strategy,
    )


def sparse_conv2d(
    x: relay.Expr,
    data: relay.Expr,
    indices: relay.Expr,
    indptr: relay.Expr,
    *,
    kernel_size: tuple[int, int],
    strides: tuple[int, int],
    padding: tuple[int, int, int, int],
    dilation: tuple[int, int],
) -> relay.Call:
    """The op's call on ``x`` (NCHW) with the weight matrix ``(data, indices, indptr)``.

    Parameters
    ----------
    x : relay.Expr
        ``(n, in, h, w)``.
    data, indices, indptr : relay.Expr
        The ``(out, in * kh * kw)`` matrix (columns in ``(in, kh, kw)`` order) as TVM's BSR
        arrays with one-column blocks (CSR: ``(nnz, 1, 1)`` values).
    kernel_size, strides, dilation : tuple[int, int]
    padding : tuple[int, int, int, int]
        ``(top, left, bottom, right)``.
    """
    register()
    attrs = tvm.ir.make_node(
        "relay.attrs.Conv2DAttrs",
        kernel_size=list(kernel_size),
        strides=list(strides),
        padding=list(padding),
        dilation=list(dilation),
        groups=1,
        data_layout="NCHW",
        kernel_layout="OIHW",
        out_layout="",
        out_dtype="",
    )
    return relay.Call(tvm.ir.Op.get(OP_NAME), [x, data, indices, indptr], attrs)
