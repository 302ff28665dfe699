"""Compile and run a lowered Relax module on this CPU (:mod:`.target`).

Examples
--------
>>> import numpy as np, scipy.sparse as sp
>>> from sparse_import.relax_backend import build, lower, run, single_layer
>>> w = sp.random_array((16, 8), density=0.3, format="csr", rng=0, dtype=np.float32)
>>> mod, _ = lower(single_layer.import_model(w), mode="sparse")
>>> x = np.ones((1, 8), np.float32)
>>> bool(np.allclose(run(build(mod), x)[0], x @ w.toarray().T, rtol=1e-5))
True
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tvm
from tvm import relax

from sparse_import.target import resolve

__all__ = ["Timing", "build", "library_bytes", "run", "time_module"]


def build(mod: tvm.IRModule, target: Any = None) -> Any:
    """``relax.build(mod, target)``, the target this CPU unless given (see :func:`.resolve`)."""
    return relax.build(mod, resolve(target))


def _outputs(result: Any) -> list[np.ndarray]:
    if isinstance(result, tvm.runtime.Tensor):
        return [result.numpy()]
    return [o for item in result for o in _outputs(item)]


def run(executable: Any, *inputs: np.ndarray) -> list[np.ndarray]:
    """Run ``main`` of a built module on the CPU: inputs in order, every output flattened out
    of nested tuples."""
    vm = relax.VirtualMachine(executable, tvm.cpu())
    return _outputs(vm["main"](*(tvm.runtime.tensor(np.ascontiguousarray(a)) for a in inputs)))


def library_bytes(executable: Any) -> int:
    """Size of the shared library ``executable.export_library`` writes."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "model.so"
        executable.export_library(str(path))
        return path.stat().st_size


@dataclass(frozen=True)
class Timing:
    """Median and minimum seconds of one call of ``main``."""

    median: float
    minimum: float


def time_module(executable: Any, *inputs: np.ndarray, repeat: int = 50) -> Timing:
    """Time ``main`` (after one warm-up call) ``repeat`` times with the inputs pre-copied."""
    vm = relax.VirtualMachine(executable, tvm.cpu())
    args = [tvm.runtime.tensor(np.ascontiguousarray(a)) for a in inputs]
    vm["main"](*args)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        vm["main"](*args)
        times.append(time.perf_counter() - start)
    return Timing(float(np.median(times)), float(np.min(times)))
