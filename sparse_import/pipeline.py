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

import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .api import detect_framework, import_model
from .errors import UnsupportedModelError
from .imported import ImportedModel
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
    dimension. Parameters (``imported.params``) are not inputs."""
    from tvm import tir

    found = []
    for var in imported.mod["main"].params:
        if var.name_hint in imported.params:
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
    shape_dict, dtype_dict : mapping, optional
        Input shapes and dtypes by input name. Symbolic dimensions not fixed here become 1 (the
        model is imported a second time with them fixed).

    Raises
    ------
    UnsupportedModelError
        A missing file, a file that is neither TFLite nor ONNX, or ``shape_dict`` /
        ``dtype_dict`` naming something that is not an input.
    """
    path = Path(path)
    framework = detect_framework(path)  # raises for a missing file
    if framework == "onnx":
        _check_onnx(path)
    shapes = {k: tuple(v) for k, v in (shape_dict or {}).items()}
    dtypes = dict(dtype_dict or {})
    imported = import_model(path, shape_dict=shapes or None, dtype_dict=dtypes or None)
    found = relay_inputs(imported)
    names = [name for name, _, _ in found]
    for what, given in (("shape_dict", shapes), ("dtype_dict", dtypes)):
        for name in given:
            if name not in names:
                raise UnsupportedModelError(
                    f"{what} names {name!r}, which is not an input of the model "
                    f"({', '.join(names)})"
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
    return LoadedModel(path, framework, imported, inputs, resolved)


def _check_onnx(path: Path) -> None:
    """Name the file and both formats when it is neither TFLite (by identifier) nor ONNX."""
    from sparse_import.adapters.onnx.model import load_model as parse_onnx

    try:
        parse_onnx(path)
    except UnsupportedModelError as exc:
        raise UnsupportedModelError(
            f"{str(path)!r} is neither a TFLite model (no 'TFL3' file identifier) nor an ONNX "
            f"model ({exc})"
        ) from None


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
        Factory module of ``relay.build`` (run with :func:`sparse_import.backend.build.run`).
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
    loaded: LoadedModel, mode: str, *, batch_size: int | None = None
) -> CompiledModel:
    """Lower ``loaded`` in ``mode`` and build it for the CPU (target ``llvm``)."""
    from .backend import lower
    from .backend.build import build

    start = time.perf_counter()
    mod, params, decisions = lower(loaded.imported, mode=mode, batch_size=batch_size)
    lib = build(mod, params)
    total = sum(nbytes(v) for v in params.values())
    return CompiledModel(mode, lib, total, decisions, time.perf_counter() - start)
