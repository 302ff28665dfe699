"""The Relax backend (TVM 0.27): each sparse weight becomes a dense constant or a kernel call.

- :func:`lower`: ``ImportedModel -> (mod, decisions)`` in mode ``"dense"``, ``"sparse"`` or
  ``"auto"``, a module for ``relax.build`` whose weights are embedded constants (dense or
  compressed);
  :func:`inspect_rows` reports the decisions without rewriting or densifying.
- :mod:`.uses` / :mod:`.sites`: where a weight's parameter is read, through which view chain,
  and which reads a kernel computes (described for :mod:`sparse_import.planning`).
- :mod:`.rewrite` / :mod:`.kernels`: reads replaced by ``R.call_tir`` of TIR kernels.
- :mod:`.compress`: in ``mode="sparse"``, a weight no kernel reads kept as CSR arrays and
  expanded at run time by a TIR PrimFunc (``Lowering.DENSIFY``).
- :mod:`.single_layer` (SciPy), :mod:`.onnx` (ONNX through ``tvm.relax.frontend.onnx``),
  :mod:`.tflite` (float TFLite through ``tvm.relax.frontend.tflite``), :mod:`.api`
  (:func:`to_relax`, :func:`inspect`).
- :mod:`.build`: compile and run on this CPU (:mod:`sparse_import.target`).

Decisions, costs and names come from :mod:`sparse_import.planning`, which knows no compiler.
"""

from __future__ import annotations

from sparse_import.planning.decide import Decision

from . import single_layer
from .api import inspect, to_relax
from .build import Timing, build, library_bytes, run, time_module
from .lowering import MODES, inspect_rows, lower, plan_model

__all__ = [
    "MODES",
    "Decision",
    "Timing",
    "build",
    "inspect",
    "inspect_rows",
    "library_bytes",
    "lower",
    "plan_model",
    "run",
    "single_layer",
    "time_module",
    "to_relax",
]
