"""Check a compiled model against the framework's own runtime.

The oracles are the reference runtimes of each format, with every graph rewrite switched off:
LiteRT with its builtin kernels and no default delegate (``OpResolverType.
BUILTIN_WITHOUT_DEFAULT_DELEGATES``, so XNNPACK never runs), and onnxruntime with
``ORT_DISABLE_ALL``. Both live in the ``test`` extra (``pip install "sparse-import[test]"``)
and are imported only when an oracle is made.

- :class:`TensorSpec`, :func:`random_inputs`: inputs of the right names, shapes and dtypes;
- :func:`make_oracle`: the framework's runtime, which lives with the framework's adapter
  (``sparse_import.adapters.tflite.oracle.LiteRTOracle``,
  ``sparse_import.adapters.onnx.oracle.OnnxRuntimeOracle``);
- :func:`tolerance`, :func:`compare`: the agreement rule per output.

Examples
--------
>>> import numpy as np
>>> from sparse_import.verify import TensorSpec, compare, random_inputs
>>> spec = TensorSpec("y", (2, 3), "float32")
>>> inputs = random_inputs([spec], seed=0)
>>> y = inputs["y"]
>>> [check.ok for check in compare([y * (1 + 1e-7)], [y], [spec])]
[True]
>>> [check.ok for check in compare([y + 0.1], [y], [spec])]
[False]
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = [
    "TEST_EXTRA",
    "Oracle",
    "OutputCheck",
    "TensorSpec",
    "check_input_names",
    "compare",
    "make_oracle",
    "model_bytes",
    "random_inputs",
    "tolerance",
]

FLOAT_RTOL = 1e-5
QUANTIZED_STEPS = 0.0
"""Quantization steps an output of a quantized chain may differ by (LiteRT's arithmetic)."""
FLOAT16_RTOL = 1e-2
TEST_EXTRA = 'pip install "sparse-import[test]"'
"""How to install the reference runtimes (the ``test`` extra)."""


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of a model input or output.

    Attributes
    ----------
    name : str
    shape : tuple of int
        Concrete shape (symbolic dimensions already resolved).
    dtype : str
        NumPy dtype name (``"float32"``, ``"int8"``, ...).
    scale : float or None
        Quantization step of an integer tensor (``real = scale * (q - zero_point)``); for a float
        tensor, the step of the quantized tensor it was dequantized from (the float output of a
        quantized chain); ``None`` when there is none or it is unknown.
    zero_point : int
    max_steps : float
        Quantization steps an output with a ``scale`` may differ by: 0 where the library computes
        the oracle's integer arithmetic (LiteRT's), more where it is TVM's (onnxruntime's QDQ).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None = None
    zero_point: int = 0
    max_steps: float = QUANTIZED_STEPS


def random_inputs(
    specs: Sequence[TensorSpec], seed: int | np.random.Generator = 0
) -> dict[str, np.ndarray]:
    """Random arrays for ``specs``: standard normal floats, full-range small integers, booleans.

    Parameters
    ----------
    specs : sequence of TensorSpec
    seed : int or numpy.random.Generator
        The same seed gives the same arrays.

    Returns
    -------
    dict of str to numpy.ndarray
        ``spec.name -> array`` of ``spec.shape`` and ``spec.dtype``. Floats are standard normal;
        8- and 16-bit integers cover their whole range (any quantized value); wider integers are
        drawn from ``[0, 8)``, a safe range for indices and sizes.
    """
    rng = np.random.default_rng(seed)
    arrays = {}
    for spec in specs:
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            array = rng.standard_normal(spec.shape).astype(dtype)
        elif dtype.kind == "b":
            array = rng.random(spec.shape) < 0.5
        elif dtype.kind in "iu":
            info = np.iinfo(dtype)
            low, high = (info.min, info.max) if dtype.itemsize <= 2 else (0, 7)
            array = rng.integers(low, high, size=spec.shape, endpoint=True, dtype=dtype)
        else:
            raise ValueError(f"input {spec.name!r}: cannot make random values of dtype {dtype}")
        arrays[spec.name] = array
    return arrays


# --------------------------------------------------------------------------- agreement
@dataclass(frozen=True)
class OutputCheck:
    """How far one output of the compiled model is from the oracle's.

    Attributes
    ----------
    name, dtype : str
    shape : tuple of int
        The oracle's output shape.
    max_abs_error : float
        ``max |actual - expected|`` (in quantized units for integer outputs).
    rule : {"relative", "steps", "exact"}
        ``relative``: ``max |actual - expected| / max |expected|`` (floats); ``steps``:
        whole quantization steps (quantized integers, or the float output of a quantized chain
        rounded to steps of ``scale``); ``exact``: other integers and booleans.
    error, limit : float
        The measured quantity of ``rule`` and its largest accepted value.
    ok : bool
        ``error <= limit`` and the shapes match.
    note : str
        Why a check failed before any value was compared (shape mismatch), else ``""``.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    max_abs_error: float
    rule: str
    error: float
    limit: float
    ok: bool
    note: str = ""


def tolerance(spec: TensorSpec) -> tuple[str, float]:
    """The agreement rule for an output: ``(rule, limit)`` as in :class:`OutputCheck`.

    The output of a quantized chain (an integer tensor with a scale, or a float tensor
    dequantized from one) agrees in whole quantization steps: ``spec.max_steps``, 0 for TFLite
    models, whose integer arithmetic the library computes as LiteRT does, bit for bit. Other
    float32/float64 outputs agree within ``1e-5`` relative, float16 within ``1e-2``; other
    integers and booleans exactly.

    Examples
    --------
    >>> from sparse_import.verify import TensorSpec, tolerance
    >>> tolerance(TensorSpec("y", (1,), "int8", scale=0.05))
    ('steps', 0.0)
    >>> tolerance(TensorSpec("y", (1,), "float32", scale=0.05))
    ('steps', 0.0)
    """
    dtype = np.dtype(spec.dtype)
    if dtype.kind in "iuf" and spec.scale:
        return "steps", float(spec.max_steps)
    if dtype.kind == "f":
        return "relative", FLOAT16_RTOL if dtype.itemsize <= 2 else FLOAT_RTOL
    return "exact", 0.0


def compare(
    actual: Sequence[np.ndarray], expected: Sequence[np.ndarray], specs: Sequence[TensorSpec]
) -> list[OutputCheck]:
    """Check each output of the compiled model against the oracle's.

    Parameters
    ----------
    actual, expected : sequence of numpy.ndarray
        The compiled model's and the oracle's outputs, in the same order.
    specs : sequence of TensorSpec
        The oracle's output specs (names, dtypes, quantization steps).

    Returns
    -------
    list of OutputCheck
        One per output; a missing or extra output is a failed check.
    """
    if not len(actual) == len(expected) == len(specs):
        raise ValueError(
            f"the compiled model has {len(actual)} outputs, the oracle {len(expected)} "
            f"(specs for {len(specs)})"
        )
    return [_check(a, e, s) for a, e, s in zip(actual, expected, specs, strict=True)]


def _check(actual: np.ndarray, expected: np.ndarray, spec: TensorSpec) -> OutputCheck:
    actual, expected = np.asarray(actual), np.asarray(expected)
    rule, limit = tolerance(spec)
    base = {"name": spec.name, "dtype": str(expected.dtype), "shape": tuple(expected.shape)}
    if actual.shape != expected.shape:
        note = f"shape {actual.shape} differs from the oracle's {expected.shape}"
        return OutputCheck(
            **base, max_abs_error=np.inf, rule=rule, error=np.inf, limit=limit, ok=False, note=note
        )
    diff, magnitude = _max_abs_diff(actual, expected)
    if rule == "relative":
        error = diff / magnitude if magnitude > 0 else (0.0 if diff == 0 else np.inf)
    elif rule == "steps" and expected.dtype.kind == "f":  # real values: steps of ``scale``
        error = float(np.round(diff / spec.scale)) if np.isfinite(diff) else np.inf
    else:
        error = diff
    return OutputCheck(
        **base, max_abs_error=diff, rule=rule, error=error, limit=limit, ok=bool(error <= limit)
    )


def _max_abs_diff(actual: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """``max |actual - expected|`` (equal infinities and NaN where NaN count as 0; NaN against a
    number as infinity) and ``max |expected|`` over its finite entries."""
    if actual.size == 0:
        return 0.0, 0.0
    wide = np.float64 if "f" in (actual.dtype.kind, expected.dtype.kind) else np.int64
    a, e = actual.astype(wide), expected.astype(wide)
    if wide is np.int64:
        return float(np.abs(a - e).max()), float(np.abs(e).max())
    same = (a == e) | (np.isnan(a) & np.isnan(e))
    with np.errstate(invalid="ignore"):
        delta = np.where(same, 0.0, np.abs(a - e))
    delta[np.isnan(delta)] = np.inf
    finite = np.abs(e[np.isfinite(e)])
    return float(delta.max()), float(finite.max()) if finite.size else 0.0


# --------------------------------------------------------------------------- oracles
class Oracle(Protocol):
    """A framework runtime that runs one model on named inputs."""

    framework: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The model's outputs on ``inputs``, in the model's output order."""
        ...


def model_bytes(model: Any) -> bytes:
    """The bytes of a model given as bytes, a path (a regular file) or a parsed protobuf."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)):
        from .detect import read_model_file

        return read_model_file(model)
    if hasattr(model, "SerializeToString"):
        return model.SerializeToString()
    raise TypeError(f"cannot read a model from a {type(model).__name__}")


def check_input_names(inputs: Mapping[str, Any], declared: Mapping[str, Any]) -> None:
    """Refuse input names the model does not declare, listing the ones it does."""
    unknown = sorted(set(inputs) - set(declared))
    if unknown:
        raise ValueError(f"{unknown} are not inputs of the model ({', '.join(declared)})")


def make_oracle(model: Any, framework: str | None = None) -> Oracle:
    """The reference runtime for ``model``.

    Parameters
    ----------
    model : path, bytes or onnx.ModelProto
    framework : {"tflite", "onnx"}, optional
        Detected from the model's content when not given.

    Raises
    ------
    ImportError
        Naming the missing package (``ai-edge-litert`` or ``onnxruntime``).
    UnsupportedModelError
        For anything that is neither a TFLite nor an ONNX model.
    """
    from .api import detect_framework
    from .errors import UnsupportedModelError

    framework = framework or detect_framework(model)
    if framework == "tflite":
        from sparse_import.adapters.tflite.oracle import LiteRTOracle

        return LiteRTOracle(model)
    if framework == "onnx":
        from sparse_import.adapters.onnx.oracle import OnnxRuntimeOracle

        return OnnxRuntimeOracle(model)
    raise UnsupportedModelError(f"no reference runtime for a {framework} model")


_MOVED = {
    "LiteRTOracle": "sparse_import.adapters.tflite.oracle",
    "OnnxRuntimeOracle": "sparse_import.adapters.onnx.oracle",
}


def __getattr__(name: str) -> Any:
    """The oracles moved to their adapters; the old names still import from here."""
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
