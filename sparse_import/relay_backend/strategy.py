"""Register the kernels of :mod:`sparse_import.kernels` as Relay implementations on CPUs.

For ``nn.sparse_dense`` (``x @ W.T`` form), 1x1 ``nn.sparse_conv2d`` and 3x3 NCHW
``nn.sparse_conv2d`` with static shapes, float32 or float64, the strategy TVM uses for the
``cpu`` target key gains one more implementation, ``sparse_import.*``, at a higher priority
than TVM's own (``PLEVEL``), so every ``relay.build`` for an ``llvm`` target picks it, whoever
calls it. Every other call keeps TVM's implementations. Importing :mod:`sparse_import.relay_backend`
registers it; registering again replaces the registration with an identical one.

Examples
--------
>>> from sparse_import.relay_backend import strategy
>>> strategy.register()
>>> strategy.IMPLEMENTATIONS
('sparse_import.sparse_dense', 'sparse_import.sparse_conv2d')
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import tvm
from tvm import te
from tvm.relay.op import strategy as relay_strategy
from tvm.relay.op.strategy import x86 as tvm_x86

from sparse_import.kernels import (
    Simd,
    sparse_conv2d_1x1,
    sparse_conv2d_3x3_nchw,
    sparse_dense,
    sparse_dense_schedule,
)

__all__ = ["IMPLEMENTATIONS", "MAX_BLOCK", "PLEVEL", "register", "schedule", "tvm_kernels"]

PLEVEL = 30
"""Priority of our implementations (TVM's x86 ones use 10)."""

IMPLEMENTATIONS = ("sparse_import.sparse_dense", "sparse_import.sparse_conv2d")
"""Names of the implementations :func:`register` adds."""

MAX_BLOCK = 64
"""Largest block (``r * c`` values) our kernels take: they unroll a block's products."""

_DTYPES = ("float32", "float64")
_INDEX_DTYPES = ("int32", "uint16", "int64")


def _static(tensor: te.Tensor) -> bool:
    return all(isinstance(d, (int, tvm.tir.IntImm)) for d in tensor.shape)


def _block_values(data: te.Tensor) -> int:
    return int(data.shape[1]) * int(data.shape[2])


def _supported(x: te.Tensor, data: te.Tensor, indices: te.Tensor, indptr: te.Tensor) -> bool:
    """Whether our kernels compute this call: static shapes, float data of ``x``'s dtype,
    CSR (``data`` rank 1) or BSR (rank 3, blocks of at most ``MAX_BLOCK`` values) with integer
    indices."""
    return (
        all(_static(t) for t in (x, data, indices, indptr))
        and x.dtype == data.dtype
        and data.dtype in _DTYPES
        and (len(data.shape) == 1 or (len(data.shape) == 3 and _block_values(data) <= MAX_BLOCK))
        and indices.dtype in _INDEX_DTYPES
        and indptr.dtype in _INDEX_DTYPES
    )


def schedule(attrs, outs, target):
    """Our kernels' schedule (:func:`~sparse_import.kernels.sparse_dense_schedule`) for the
    target's vectors."""
    with target:
        lanes = max(1, Simd.from_target(target).width // 4)
        return sparse_dense_schedule(outs, lanes)


def _sparse_dense_compute(attrs, inputs, out_type):
    simd = Simd.from_target(tvm.target.Target.current())
    return [sparse_dense(*inputs, simd=simd)]


def _conv_compute(attrs, inputs, out_type):
    simd = Simd.from_target(tvm.target.Target.current())
    if int(attrs["kernel_size"][0]) == 3:
        return [sparse_conv2d_3x3_nchw(*inputs, simd=simd)]
    return [sparse_conv2d_1x1(*inputs, layout=str(attrs["layout"]), simd=simd)]


def _conv_supported(attrs, inputs) -> bool:
    """1x1 in NCHW or NHWC; 3x3 in NCHW with one-column blocks (same padding, stride 1: the
    only 3x3 form of ``nn.sparse_conv2d``)."""
    kernel, layout, data = int(attrs["kernel_size"][0]), str(attrs["layout"]), inputs[1]
    if kernel == 1:
        return layout in ("NCHW", "NHWC")
    return kernel == 3 and layout == "NCHW" and (len(data.shape) == 1 or int(data.shape[2]) == 1)


def _sparse_dense_strategy(attrs, inputs, out_type, target):
    strategy = tvm_x86.sparse_dense_strategy_cpu(attrs, inputs, out_type, target)
    if (
        target.kind.name == "llvm"
        and not attrs["sparse_lhs"]
        and len(inputs[0].shape) == 2
        and _supported(*inputs)
    ):
        strategy.add_implementation(
            _sparse_dense_compute, schedule, name=IMPLEMENTATIONS[0], plevel=PLEVEL
        )
    return strategy


def _sparse_conv2d_strategy(attrs, inputs, out_type, target):
    strategy = tvm_x86.sparse_conv2d_strategy_cpu(attrs, inputs, out_type, target)
    if target.kind.name == "llvm" and _conv_supported(attrs, inputs) and _supported(*inputs):
        strategy.add_implementation(_conv_compute, schedule, name=IMPLEMENTATIONS[1], plevel=PLEVEL)
    return strategy


def _override(generic: Callable, function: Callable) -> None:
    generic.register("cpu", override=True)(function)


def register() -> None:
    """Add our implementations to TVM's ``cpu`` strategies (idempotent)."""
    _override(relay_strategy.sparse_dense_strategy, _sparse_dense_strategy)
    _override(relay_strategy.sparse_conv2d_strategy, _sparse_conv2d_strategy)


@contextlib.contextmanager
def tvm_kernels() -> Iterator[None]:
    """Build with TVM's own sparse implementations only, inside the ``with`` block.

    For comparisons (``benchmarks/bench_kernels.py``); :func:`register` is restored on exit.
    """
    _override(relay_strategy.sparse_dense_strategy, tvm_x86.sparse_dense_strategy_cpu)
    _override(relay_strategy.sparse_conv2d_strategy, tvm_x86.sparse_conv2d_strategy_cpu)
    try:
        yield
    finally:
        register()


register()
