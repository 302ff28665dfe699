"""Planning: per sparse weight, dense or compressed, and in which format, for which reason.

Framework- and compiler-free: a backend describes each read of a weight that a sparse kernel
computes as a :class:`~.product.Product` (the weight as a ``(units, in)`` matrix in the IR, the
other operand's shape, convolution geometry) and :func:`~.plan.plan` prices the candidates
with :mod:`.cost` (tables of TVM's kernels, :mod:`.roofline` for ours) and returns a
:class:`~.decide.Decision`.

- :mod:`.modes`: ``MODES`` and the :class:`~.modes.Lowering` enum.
- :mod:`.product`, :mod:`.plan`, :mod:`.decide`: what is priced, how a decision is taken.
- :mod:`.cost`, :mod:`.roofline`: the latency model for the CPU the module is built for.
- :mod:`.matrix`: block counts of a weight matrix from its stored coordinates.
- :mod:`.names`: generated parameter names, unique against the whole graph.
"""

from __future__ import annotations

from .modes import MODES, Lowering, check_mode

__all__ = ["MODES", "Lowering", "check_mode"]
