"""Register a Relay op of the library: its arguments, attributes type, Python type relation,
fusion pattern and strategy, once per process (:mod:`.densify`, :mod:`.conv_op`,
:mod:`.sell_op`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tvm
from tvm.relay.op import op as _op

__all__ = ["register_op"]


def register_op(
    name: str,
    description: str,
    arguments: Sequence[tuple[str, str]],
    attrs_type: str,
    relation: Callable,
    pattern: int,
    strategy: Callable,
    *,
    stateful: bool = False,
) -> None:
    """Register ``name`` unless this process already has (later calls do nothing).

    Parameters
    ----------
    name, description : str
    arguments : sequence of (str, str)
        ``(name, description)`` of each tensor argument, in order.
    attrs_type : str
        Type key of the attributes (``"relay.attrs.Conv2DAttrs"``).
    relation : callable
        ``(arg_types, attrs) -> output type``.
    pattern : int
        ``OpPattern`` for operator fusion.
    strategy : callable
        A native generic function (``tvm.target.override_native_generic_func``).
    stateful : bool
        ``TOpIsStateful``: ``FoldConstant`` never evaluates the op.
    """
    if name in {str(n) for n in tvm.ir.Op.list_op_names()}:
        return
    _op.register(name, description)
    op = tvm.ir.Op.get(name)
    op.set_num_inputs(len(arguments))
    for argument, text in arguments:
        op.add_argument(argument, "Tensor", text)
    op.set_attrs_type_key(attrs_type)
    op.add_type_rel(f"{name.replace('.', '_')}_rel", relation)
    _op.register_pattern(name, pattern)
    if stateful:
        _op.register_stateful(name, True)
    _op.register_strategy(name, strategy)
