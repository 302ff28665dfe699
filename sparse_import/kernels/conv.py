"""Sparse convolutions (stride 1): a sparse ``(out, in * kh * kw)`` matrix times the input.

- 1x1 NCHW is :func:`~.matmul.sparse_matmul` itself, vectorized over the pixels with no copy
  (the layout of XNNPACK's sparse kernels); 1x1 NHWC transposes the input to channels-first,
  multiplies, and transposes back (two passes over the feature maps).
- 3x3 NCHW with same padding is a direct convolution: the input is padded once, and for every
  output row each stored weight ``W[o, (c, kh, kw)]`` multiplies the input row ``h + kh`` of
  channel ``c``, shifted by ``kw``, into output row ``h`` of channel ``o`` (vectorized along the
  row; no im2col copy). The column of each stored value becomes its offset in the padded input
  once per call (decoding ``(c, kh, kw)`` on every visit cost more than the products).
"""

from __future__ import annotations

from tvm import te

from ._tir import Simd
from .dense import TRANSPOSE_TAG
from .matmul import sparse_matmul, sparse_rows

__all__ = ["sparse_conv2d_1x1", "sparse_conv2d_3x3_nchw"]


def sparse_conv2d_1x1(
    x: te.Tensor,
    data: te.Tensor,
    indices: te.Tensor,
    indptr: te.Tensor,
    *,
    layout: str,
    simd: Simd,
) -> te.Tensor:
    """A 1x1 convolution with stride 1 whose ``(out, in)`` weight is sparse.

    Parameters
    ----------
    x : te.Tensor
        ``(n, in, h, w)`` (``layout="NCHW"``) or ``(n, h, w, in)`` (``"NHWC"``), static.
    data, indices, indptr : te.Tensor
        The weight's CSR/BSR arrays, as TVM's ``nn.sparse_conv2d`` takes them.
    layout : str
        ``"NCHW"`` or ``"NHWC"``.
    simd : Simd
        The target's vectors.

    Returns
    -------
    te.Tensor
        ``(n, out, h, w)`` or ``(n, h, w, out)``.
    """
    rows = (int(indptr.shape[0]) - 1) * (1 if len(data.shape) == 1 else int(data.shape[1]))
    if layout == "NCHW":
        n, _, h, w = (int(d) for d in x.shape)
        return sparse_matmul(
            x, data, indices, indptr, images=n, width=h * w, simd=simd, out_shape=(n, rows, h, w)
        )
    n, h, w, channels = (int(d) for d in x.shape)
    pixels = n * h * w

    def pixel(p):
        return p // (h * w), p // w % h, p % w

    xt = te.compute(
        (channels, pixels), lambda k, p: x[(*pixel(p), k)], name="x_t", tag=TRANSPOSE_TAG
    )
    yt = sparse_matmul(xt, data, indices, indptr, images=1, width=pixels, simd=simd)
    return te.compute(
        (n, h, w, rows),
        lambda a, b, c, o: yt[0, o, (a * h + b) * w + c],
        name="y",
        tag=TRANSPOSE_TAG,
    )


def sparse_conv2d_3x3_nchw(
    x: te.Tensor, data: te.Tensor, indices: te.Tensor, indptr: te.Tensor, *, simd: Simd
) -> te.Tensor:
    """A 3x3 convolution, stride 1, padding 1, NCHW, whose weight matrix is sparse.

    Parameters
    ----------
    x : te.Tensor
        ``(n, in, h, w)``, static.
    data, indices, indptr : te.Tensor
        The ``(out, in * 9)`` weight matrix (columns in ``(in, kh, kw)`` order, TVM's OIHW
        flattening) as CSR or BSR with one-column blocks.
    simd : Simd
        The target's vectors.

    Returns
    -------
    te.Tensor
        ``(n, out, h, w)``.
    """
    n, channels, h, w = (int(d) for d in x.shape)
    rows = (int(indptr.shape[0]) - 1) * (1 if len(data.shape) == 1 else int(data.shape[1]))
    padded = te.compute(
        (n, channels, h + 2, w + 2),
        lambda a, k, i, j: te.if_then_else(
            te.all(i >= 1, i <= h, j >= 1, j <= w), x[a, k, i - 1, j - 1], 0.0
        ).astype(x.dtype),
        name="x_padded",
        tag=TRANSPOSE_TAG,
    )

    plane = (h + 2) * (w + 2)
    taps = te.compute(  # weight column (c, kh, kw) -> its input offset, once per call
        indices.shape,
        lambda b: (
            indices[b].astype("int32") // 9 * plane
            + indices[b].astype("int32") % 9 // 3 * (w + 2)
            + indices[b].astype("int32") % 3
        ),
        name="tap_offsets",
        tag=TRANSPOSE_TAG,
    )

    def x_row(o, tap):
        return (o // h * channels * (h + 2) + o % h) * (w + 2) + tap

    def y_row(o, out_channel):
        return ((o // h * rows + out_channel) * h + o % h) * w

    return sparse_rows(
        padded,
        data,
        taps,
        indptr,
        outer=n * h,
        width=w,
        x_row=x_row,
        y_row=y_row,
        simd=simd,
        out_shape=(n, rows, h, w),
    )
