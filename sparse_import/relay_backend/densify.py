"""``sparse_import.densify_csr``: a Relay op that expands a CSR weight at run time.

In ``mode="sparse"`` a weight that no sparse kernel computes stays compressed in the library
only if its expansion survives ``relay.build``: ``FoldConstant`` folds every call whose
arguments are constants (and ``relay.build(..., params=...)`` binds the weight's arrays as
constants), so ``relay.sparse_to_dense`` would be folded back into the dense weight. This op is
registered *stateful* (``TOpIsStateful``), which ``FoldConstant`` never evaluates, and *opaque*,
so it is never fused into its consumer; its compute is :func:`sparse_import.kernels.densify.
densify_csr`. The library then stores only ``data``, ``indices`` and ``indptr``.

Examples
--------
>>> import numpy as np
>>> from tvm import relay
>>> data = relay.const(np.ones(2, "float32"))
>>> indices = relay.const(np.array([0, 3], "uint16"))
>>> indptr = relay.const(np.array([0, 1, 2], "int32"))
>>> call = densify(data, indices, indptr, (2, 4), "float32")
>>> call.op.name
'sparse_import.densify_csr'
"""

from __future__ import annotations

import tvm
from tvm import relay, topi
from tvm.relay.op import op as _op
from tvm.relay.op.strategy.generic import wrap_topi_schedule

from sparse_import.kernels.densify import densify_csr

from .custom_op import register_op

__all__ = ["OP_NAME", "densify", "register"]

OP_NAME = "sparse_import.densify_csr"
"""Name of the Relay op."""


def _type_relation(arg_types, attrs):
    return relay.TensorType([int(d) for d in attrs.shape], arg_types[0].dtype)


def _compute(attrs, inputs, out_type):
    return [densify_csr(*inputs, tuple(int(d) for d in out_type.shape))]


@tvm.target.override_native_generic_func("sparse_import_densify_strategy")
def _strategy(attrs, inputs, out_type, target):
    strategy = _op.OpStrategy()
    strategy.add_implementation(
        _compute, wrap_topi_schedule(topi.generic.schedule_extern), name="sparse_import.densify"
    )
    return strategy


def register() -> None:
    """Register the op once per process (later calls do nothing)."""
    register_op(
        OP_NAME,
        "Dense tensor of a CSR matrix (data, indices, indptr).",
        [
            ("data", "Stored values, (nnz,)."),
            ("indices", "Column coordinates, (nnz,)."),
            ("indptr", "Row positions, (rows + 1,)."),
        ],
        "relay.attrs.InitOpAttrs",
        _type_relation,
        _op.OpPattern.OPAQUE,
        _strategy,
        stateful=True,
    )


def densify(
    data: relay.Expr, indices: relay.Expr, indptr: relay.Expr, shape: tuple[int, int], dtype: str
) -> relay.Call:
    """Relay call expanding the CSR matrix ``(data, indices, indptr)`` to ``shape`` at run time.

    Parameters
    ----------
    data, indices, indptr : relay.Expr
        The CSR arrays, ``(nnz,)``, ``(nnz,)`` and ``(rows + 1,)``.
    shape : tuple of int
        ``(rows, cols)`` of the dense result.
    dtype : str
        Dtype of ``data`` and of the result.

    Returns
    -------
    relay.Call
        A call that ``FoldConstant`` leaves in place.
    """
    register()
    attrs = tvm.ir.make_node("relay.attrs.InitOpAttrs", shape=[int(d) for d in shape], dtype=dtype)
    return relay.Call(tvm.ir.Op.get(OP_NAME), [data, indices, indptr], attrs)
