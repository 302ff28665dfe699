"""Import, lower and build a model file: the steps that the command line chains.

:func:`load_model` imports a model once with static input shapes (symbolic dimensions, as in
ONNX models exported with a dynamic batch, become 1 unless ``shape_dict`` says otherwise) and
lists its inputs; :func:`compile_model` lowers it in one mode and builds it with TVM.

Examples
--------
>>> from sparse_import.pipeline import demo_model, load_model
>>> loaded = load_model(demo_model("onnx"), shape_dict={"x": (4, 64)})
>>> loaded.framework, [(s.name, s.shape, s.dtype) for s in loaded.inputs]
('onnx', [('x', (4, 64), 'float32')])
>>> sorted(w.param for w in loaded.imported.weights)
['fc1.weight', 'fc2.weight']
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .api import import_model
from .errors import DenseLimitError, UnsupportedModelError
from .imported import ImportedModel
from .limits import get_dense_byte_limit
from .verify import TensorSpec

__all__ = [
    "DEMOS",
    "CompiledModel",
    "LoadedModel",
    "compile_model",
    "demo_model",
    "load_model",
    "nbytes",
    "relay_inputs",
    "resolve_target",
    "runs_here",
]

DEMOS = {"tflite": "demo_mlp.tflite", "onnx": "demo_mlp.onnx"}


def demo_model(framework: str = "tflite") -> Path:
    """Path of the small sparse MLP shipped inside the package (``"tflite"`` or ``"onnx"``).

    Both are MLPs 64-128-64-10 whose first two weights are sparse: one pruned at random, one in
    1 x 4 blocks (see ``tests/fixtures``).
    """
    if framework not in DEMOS:
        raise ValueError(f"no demo model for {framework!r}; there are {', '.join(DEMOS)}")
    return Path(str(resources.files("sparse_import.data") / DEMOS[framework]))


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model imported with static input shapes.

    Attributes
    ----------
    path : pathlib.Path
    framework : {"tflite", "onnx"}
    imported : ImportedModel
    inputs : tuple of TensorSpec
        The inputs of the Relay module (``scale`` unset), all dimensions concrete.
    resolved : dict of str to tuple of int
        Inputs that had symbolic dimensions -> the shape they were given (symbolic -> 1).
    """

    path: Path
    framework: str
    imported: ImportedModel
    inputs: tuple[TensorSpec, ...]
    resolved: dict[str, tuple[int, ...]]


def relay_inputs(imported: ImportedModel) -> tuple[tuple[str, tuple[int | None, ...], str], ...]:
    """``(name, shape, dtype)`` of each runtime input of the module; ``None`` for a symbolic
    dimension.

    Parameters (``imported.params``) and sparse weights are not inputs, and neither are inputs
    that the graph never reads: old ONNX models declare every initializer as a graph input, and
    some declare inputs nothing uses (``*__SHAPE``).
    """
    from tvm import relay, tir

    main = imported.mod["main"]
    used = {var.name_hint for var in relay.analysis.free_vars(main.body)}
    found = []
    weights = imported.weight_params
    for var in main.params:
        if (
            var.name_hint in imported.params
            or var.name_hint in weights
            or var.name_hint not in used
        ):
            continue
        kind = var.type_annotation
        shape = tuple(None if isinstance(d, tir.Any) else int(d) for d in kind.shape)
        found.append((var.name_hint, shape, str(kind.dtype)))
    return tuple(found)


def load_model(
    path: str | Path,
    *,
    shape_dict: Mapping[str, tuple[int, ...]] | None = None,
    dtype_dict: Mapping[str, str] | None = None,
) -> LoadedModel:
    """Import a ``.tflite`` or ``.onnx`` file with every input shape concrete.

    Parameters
    ----------
    path : str or pathlib.Path
        A regular file (not a directory, FIFO or device); the format is told by content.
    shape_dict, dtype_dict : mapping, optional
        Input shapes and dtypes by input name. Symbolic dimensions not fixed here become 1 (the
        model is imported a second time with them fixed).

    Raises
    ------
    UnsupportedModelError
        A missing, empty or special file, a file that is neither TFLite nor ONNX, a shape with a
        dimension that is not positive, or ``shape_dict`` / ``dtype_dict`` naming something that
        is not an input.
    DenseLimitError
        An input whose dense size is over the dense byte limit
        (:func:`sparse_import.set_dense_byte_limit`): its random values would not fit.
    """
    path = Path(path)
    shapes = {k: _check_shape(k, v) for k, v in (shape_dict or {}).items()}
    dtypes = dict(dtype_dict or {})
    imported = import_model(path, shape_dict=shapes or None, dtype_dict=dtypes or None)
    found = relay_inputs(imported)
    names = [name for name, _, _ in found]
    for what, given in (("shape_dict", shapes), ("dtype_dict", dtypes)):
        for name in given:
            if name not in names:
                raise UnsupportedModelError(
                    f"{what} names {name!r}, which is not an input of the model "
                    f"({', '.join(names) or 'it has none'})"
                )
    resolved = {
        name: tuple(1 if d is None else d for d in shape)
        for name, shape, _ in found
        if None in shape
    }
    if resolved:
        imported = import_model(path, shape_dict={**shapes, **resolved}, dtype_dict=dtypes or None)
        found = relay_inputs(imported)
    inputs = tuple(TensorSpec(name, shape, dtype) for name, shape, dtype in found)  # type: ignore[arg-type]
    _check_input_sizes(inputs)
    return LoadedModel(path, imported.framework, imported, inputs, resolved)


def _check_shape(name: str, shape: Any) -> tuple[int, ...]:
    try:
        dims = tuple(shape)
    except TypeError:
        dims = (shape,)
    if not all(isinstance(d, (int, np.integer)) and d > 0 for d in dims):
        raise UnsupportedModelError(
            f"shape_dict[{name!r}] = {dims}: every dimension must be a positive integer"
        )
    return tuple(int(d) for d in dims)


def _check_input_sizes(inputs: tuple[TensorSpec, ...]) -> None:
    """Refuse inputs too large to hold, before anything of their size is allocated."""
    limit = get_dense_byte_limit()
    for spec in inputs:
        size = math.prod(spec.shape) * np.dtype(spec.dtype).itemsize
        if size > limit:
            raise DenseLimitError(
                f"input {spec.name!r}: shape {spec.shape} ({spec.dtype}) needs {size} bytes, "
                f"over the dense byte limit of {limit} bytes"
            )


def nbytes(value: Any) -> int:
    """Bytes of a NumPy array or a ``tvm.nd.NDArray``."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    return int(np.prod(value.shape, dtype=np.int64)) * np.dtype(value.dtype).itemsize


@dataclass(frozen=True, eq=False)
class CompiledModel:
    """One lowering of a model, built.

    Attributes
    ----------
    mode : {"dense", "sparse", "auto"}
    lib : tvm.runtime.Module
        Factory module of ``relay.build`` (run with :func:`sparse_import.relay_backend.build.run`).
    params_nbytes : int
        Bytes of every parameter of the lowered module (weights, biases, sparse index arrays).
    decisions : object
        The backend's per-weight decisions, as ``lower`` returns them.
    seconds : float
        Lowering and build time.
    """

    mode: str
    lib: Any
    params_nbytes: int
    decisions: Any
    seconds: float


def compile_model(
    loaded: LoadedModel, mode: str, *, batch_size: int | None = None, target: str | None = None
) -> CompiledModel:
    """Lower ``loaded`` in ``mode`` and build it for ``target`` (default: this machine's CPU)."""
    from .relay_backend import lower
    from .relay_backend.build import build

    start = time.perf_counter()
    mod, params, decisions = lower(loaded.imported, mode=mode, batch_size=batch_size, target=target)
    lib = build(mod, params, target=target)
    total = sum(nbytes(v) for v in params.values())
    return CompiledModel(mode, lib, total, decisions, time.perf_counter() - start)


def resolve_target(target: str | None = None) -> str:
    """The TVM target string ``target`` means; ``None`` or ``"host"``: this machine's CPU.

    Raises
    ------
    ValueError
        A target TVM does not parse, or an LLVM ``-mcpu`` that LLVM does not know (checked
        before TVM sees it, which would only log a warning and build for a generic CPU).

    Examples
    --------
    >>> from sparse_import.pipeline import resolve_target
    >>> resolve_target().startswith("llvm")
    True
    """
    from .target import resolve

    _check_cpu(target)
    return str(resolve(target)).replace(" -keys=cpu", "")


def _check_cpu(target: str | None) -> None:
    import tvm
    from tvm.target import codegen

    words = (target or "").split()
    if not words or words[0] != "llvm":
        return
    options = dict(w[1:].partition("=")[::2] for w in words[1:] if w.startswith("-"))
    cpu = options.get("mcpu", "")
    if not cpu or cpu == "native":
        return
    triple = options.get("mtriple")
    base = tvm.target.Target(f"llvm -mtriple={triple}" if triple else "llvm")
    known = [str(name) for name in codegen.llvm_get_cpu_archlist(base)]
    if known and cpu not in known:
        raise ValueError(
            f"target {target!r}: LLVM knows no CPU {cpu!r} (it knows "
            f"{', '.join(known[:4])}, ... {len(known)} in all)"
        )


# LLVM features that only tune code generation; any other feature is an instruction set.
_TUNING = re.compile(r"(fast|slow|tuning|prefer|no|false-deps|allow|idivq|idivl|macrofusion|"
                     r"branchfusion|lea|vzeroupper|ermsb|fsrm|x87|64bit)")  # fmt: skip


def runs_here(target: str) -> str | None:
    """Why a module built for ``target`` cannot run on this machine's CPU, or ``None``.

    Examples
    --------
    >>> from sparse_import.pipeline import runs_here
    >>> runs_here("llvm") is None
    True
    >>> runs_here("c")
    "target 'c' does not build for the CPU through LLVM"
    """
    import tvm
    from tvm.target import codegen

    from .target import host_target

    parsed = tvm.target.Target(target)
    if parsed.kind.name != "llvm":
        return f"target {target!r} does not build for the CPU through LLVM"
    triple = str(parsed.attrs.get("mtriple", "") or "")
    system = str(codegen.llvm_get_system_triple())
    if triple and triple.split("-")[0] != system.split("-")[0]:
        return f"target {target!r} is for {triple}, this machine is {system}"
    host = set(codegen.llvm_get_cpu_features(tvm.target.Target(host_target())))
    missing = sorted(
        f for f in set(codegen.llvm_get_cpu_features(parsed)) - host if not _TUNING.match(f)
    )
    if missing:
        return f"target {target!r} uses instructions this CPU lacks ({', '.join(missing[:6])})"
    return None
