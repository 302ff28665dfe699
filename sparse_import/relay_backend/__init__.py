"""The Relay backend: each sparse weight becomes a dense constant or a sparse kernel call.

- :func:`lower`: ``ImportedModel -> (mod, params, decisions)`` in mode ``"dense"``,
  ``"sparse"`` or ``"auto"``; :func:`inspect_rows` reports the decisions per weight without
  rewriting or densifying anything (:func:`plan_model`).
- :mod:`.uses` / :mod:`.sites`: where a weight's parameter is read, through which view chain,
  and which reads a sparse kernel computes (described for :mod:`sparse_import.planning`).
- :mod:`.rewrite` / :mod:`.kernels`: the consumer calls replaced, the compressed operands.
- :mod:`.strategy`: the library's own x86 kernels (:mod:`sparse_import.kernels`) registered for
  ``nn.sparse_dense`` and ``nn.sparse_conv2d``, so any ``relay.build`` of the output uses them.
- :mod:`.densify`: a Relay op that expands a CSR weight at run time.
- :mod:`.single_layer`: the module ``y = nn.dense(x, W)`` for one SciPy / IR weight matrix.
- :mod:`.build`: compile and run a module on the CPU (TopHub switched off; target
  :mod:`sparse_import.target`).

Decisions, costs and names come from :mod:`sparse_import.planning`, which knows no Relay. The
backend knows no file format: it sees Relay, parameters, and the IR of each sparse weight.
"""

from __future__ import annotations

from sparse_import.planning import cost
from sparse_import.planning.decide import Decision

from . import single_layer
from .build import Timing, build, run, time_module
from .lowering import MODES, inspect_rows, lower, plan_model

__all__ = [
    "MODES",
    "Decision",
    "Timing",
    "build",
    "cost",
    "inspect_rows",
    "lower",
    "plan_model",
    "run",
    "single_layer",
    "time_module",
]
