"""``sparse_import.sell_dense``: ``y = x @ W.T`` at batch 1 with ``W`` in the ``sell`` layout.

The layout (:mod:`sparse_import.planning.sell`: rows in slices of 16, columns in panels of 32,
``values``, ``columns`` and ``offsets``) is not TVM's CSR or BSR, so ``nn.sparse_dense`` cannot
carry it: this op takes the three arrays with ``nn.dense``'s attributes (``units``: the rows of
``W``). Relay fuses the elementwise operators after it (bias, activation), which our schedule
runs vectorized (and in parallel when large). It computes with AVX-512 only; the planner offers
it for targets that have it.

Examples
--------
>>> import numpy as np
>>> from tvm import relay
>>> from sparse_import.planning.sell import sell_arrays
>>> import scipy.sparse as sp
>>> arrays = sell_arrays(sp.csr_array(np.eye(3, 40, dtype="float32")))
>>> x = relay.var("x", shape=(1, 40))
>>> call = sell_dense(x, *(relay.const(a) for a in arrays), units=3)
>>> call.op.name
'sparse_import.sell_dense'
"""

from __future__ import annotations

import tvm
from tvm import relay
from tvm.relay.op import op as _op

from sparse_import.kernels import Simd
from sparse_import.kernels.sell import sell_matvec, supported

from .custom_op import register_op

__all__ = ["OP_NAME", "register", "sell_dense"]

OP_NAME = "sparse_import.sell_dense"
"""Name of the Relay op."""


def _type_relation(arg_types, attrs):
    data = arg_types[0]
    return relay.TensorType([int(data.shape[0]), int(attrs.units)], data.dtype)


def _compute(attrs, inputs, out_type):
    target = tvm.target.Target.current()
    if not supported(Simd.from_target(target), str(inputs[1].dtype)):
        raise ValueError(
            f"{OP_NAME} computes float32 with AVX-512 only, and target {target} has no AVX-512: "
            "import with to_relay(..., target=...) naming the target you build for"
        )
    return [sell_matvec(*inputs, rows=int(attrs.units))]


@tvm.target.override_native_generic_func("sparse_import_sell_dense_strategy")
def _strategy(attrs, inputs, out_type, target):
    from .strategy import schedule

    strategy = _op.OpStrategy()
    strategy.add_implementation(_compute, schedule, name="sparse_import.sell_matvec")
    return strategy


def register() -> None:
    """Register the op once per process (later calls do nothing)."""
    register_op(
        OP_NAME,
        "Batch-1 product with a weight in sliced ELLPACK over column panels.",
        [
            ("data", "Input, (1, in)."),
            ("weight_values", "Stored values, 16 per vector."),
            ("weight_columns", "Column of each value within its panel (uint8)."),
            ("weight_offsets", "First vector of each (slice, panel)."),
        ],
        "relay.attrs.DenseAttrs",
        _type_relation,
        _op.OpPattern.OUT_ELEMWISE_FUSABLE,
        _strategy,
    )


def sell_dense(
    x: relay.Expr, values: relay.Expr, columns: relay.Expr, offsets: relay.Expr, *, units: int
) -> relay.Call:
    """The op's call on ``x`` ``(1, in)`` with a ``(units, in)`` weight in ``sell`` arrays."""
    register()
    attrs = tvm.ir.make_node("relay.attrs.DenseAttrs", units=units, out_dtype="")
    return relay.Call(tvm.ir.Op.get(OP_NAME), [x, values, columns, offsets], attrs)
