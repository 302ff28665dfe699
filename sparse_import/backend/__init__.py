"""The shared Relay backend: lower each sparse weight to a dense constant or a sparse kernel.

- :func:`lower`: ``ImportedModel -> (mod, params, decisions)`` in mode ``"dense"``,
  ``"sparse"`` or ``"auto"``; :func:`inspect_rows` reports the decisions per weight.
- :mod:`.single_layer`: the module ``y = nn.dense(x, W)`` for one SciPy / IR weight matrix.
- :mod:`.strategy`: the library's own x86 kernels (:mod:`sparse_import.kernels`) registered for
  ``nn.sparse_dense`` and ``nn.sparse_conv2d``, so any ``relay.build`` of the output uses them.
- :mod:`.cost` and :mod:`.roofline`: the latency model ``auto`` chooses with.
- :mod:`.target`: this machine's CPU as a TVM target (the default of every build).
- :mod:`.build`: compile and run a module on the CPU (TopHub switched off).
- :mod:`.names`: generated parameter names, unique against the whole graph.

The backend knows no file format: it sees Relay, parameters, and the IR of each sparse weight.
"""

from __future__ import annotations

from . import cost, single_layer
from .build import Timing, build, run, time_module
from .decide import Decision
from .lowering import MODES, inspect_rows, lower

__all__ = [
    "MODES",
    "Decision",
    "Timing",
    "build",
    "cost",
    "inspect_rows",
    "lower",
    "run",
    "single_layer",
    "time_module",
]
