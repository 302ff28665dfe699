"""Check a compiled model against the framework's own runtime.

The oracles are the reference runtimes of each format, with every graph rewrite switched off:
LiteRT with its builtin kernels and no default delegate (``OpResolverType.
BUILTIN_WITHOUT_DEFAULT_DELEGATES``, so XNNPACK never runs), and onnxruntime with
``ORT_DISABLE_ALL``. Both live in the ``test`` extra (``pip install "sparse-import[test]"``)
and are imported only when an oracle is made.

- :class:`TensorSpec`, :func:`random_inputs`: inputs of the right names, shapes and dtypes;
- :func:`make_oracle` (:class:`LiteRTOracle`, :class:`OnnxRuntimeOracle`): run the model;
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
from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = [
    "LiteRTOracle",
    "OnnxRuntimeOracle",
    "Oracle",
    "OutputCheck",
    "TensorSpec",
    "compare",
    "make_oracle",
    "random_inputs",
    "tolerance",
]

FLOAT_RTOL = 1e-5
FLOAT16_RTOL = 1e-2
_EXTRA = 'pip install "sparse-import[test]"'


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
        Quantization step of an integer tensor (``real = scale * (q - zero_point)``), ``None``
        when the tensor is not quantized or the step is unknown.
    zero_point : int
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None = None
    zero_point: int = 0


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
        quantization steps (quantized integers, one step is ``scale``); ``exact``: other
        integers and booleans.
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

    float32/float64 agree within ``1e-5`` relative, float16 within ``1e-2``; a quantized output
    within one quantization step; other integers and booleans exactly.

    Examples
    --------
    >>> from sparse_import.verify import TensorSpec, tolerance
    >>> tolerance(TensorSpec("y", (1,), "int8", scale=0.05))
    ('steps', 1.0)
    """
    dtype = np.dtype(spec.dtype)
    if dtype.kind == "f":
        return "relative", FLOAT16_RTOL if dtype.itemsize <= 2 else FLOAT_RTOL
    if dtype.kind in "iu" and spec.scale:
        return "steps", 1.0
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


def _model_bytes(model: Any) -> bytes:
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)):
        return Path(model).read_bytes()
    if hasattr(model, "SerializeToString"):
        return model.SerializeToString()
    raise TypeError(f"cannot read a model from a {type(model).__name__}")


class LiteRTOracle:
    """LiteRT's interpreter with builtin kernels only (no XNNPACK or other delegate).

    Parameters
    ----------
    model : path or bytes
        A ``.tflite`` model.

    Attributes
    ----------
    inputs, outputs : tuple of TensorSpec
        As the model declares them (``scale`` from each tensor's quantization).
    """

    framework = "tflite"

    def __init__(self, model: str | os.PathLike | bytes) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter, OpResolverType
        except ImportError as exc:
            raise ImportError(
                f"running LiteRT needs the 'ai-edge-litert' package ({_EXTRA})"
            ) from exc
        self._interpreter = Interpreter(
            model_content=_model_bytes(model),
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        self._interpreter.allocate_tensors()
        self.inputs = tuple(map(_litert_spec, self._interpreter.get_input_details()))
        self.outputs = tuple(map(_litert_spec, self._interpreter.get_output_details()))

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run once; inputs whose shape differs from the declared one resize the model."""
        it = self._interpreter
        details = {d["name"]: d for d in it.get_input_details()}
        _check_input_names(inputs, details)
        resized = False
        for name, value in inputs.items():
            if tuple(details[name]["shape"]) != np.shape(value):
                it.resize_tensor_input(details[name]["index"], list(np.shape(value)), strict=False)
                resized = True
        if resized:
            it.allocate_tensors()
        for name, value in inputs.items():
            it.set_tensor(details[name]["index"], np.ascontiguousarray(value))
        it.invoke()
        return [it.get_tensor(d["index"]).copy() for d in it.get_output_details()]


def _litert_spec(detail: Mapping[str, Any]) -> TensorSpec:
    scale, zero_point = detail["quantization"]
    return TensorSpec(
        name=detail["name"],
        shape=tuple(int(n) for n in detail["shape"]),
        dtype=np.dtype(detail["dtype"]).name,
        scale=float(scale) if scale else None,
        zero_point=int(zero_point),
    )


def _check_input_names(inputs: Mapping[str, Any], declared: Mapping[str, Any]) -> None:
    unknown = sorted(set(inputs) - set(declared))
    if unknown:
        raise ValueError(f"{unknown} are not inputs of the model ({', '.join(declared)})")


# Where the output scale of a quantizing ONNX node is: input index of y_scale.
_ONNX_OUTPUT_SCALE = {"QuantizeLinear": 1, "QLinearMatMul": 6, "QLinearConv": 6}
_ORT_TYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int16)": "int16",
    "tensor(uint16)": "uint16", "tensor(int32)": "int32", "tensor(uint32)": "uint32",
    "tensor(int64)": "int64", "tensor(uint64)": "uint64", "tensor(bool)": "bool",
}  # fmt: skip


class OnnxRuntimeOracle:
    """onnxruntime on the CPU with every graph optimization off (``ORT_DISABLE_ALL``).

    Parameters
    ----------
    model : path, bytes or onnx.ModelProto
        A path is handed to onnxruntime as a path, so external data next to it is found.

    Attributes
    ----------
    inputs, outputs : tuple of TensorSpec
        As the model declares them; symbolic dimensions are 1. An integer output written by
        ``QuantizeLinear``, ``QLinearMatMul`` or ``QLinearConv`` with a constant scalar
        ``y_scale`` has that ``scale``.
    """

    framework = "onnx"

    def __init__(self, model: str | os.PathLike | bytes | Any) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ImportError(
                f"running onnxruntime needs the 'onnxruntime' package ({_EXTRA})"
            ) from exc
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        source = str(model) if isinstance(model, (str, os.PathLike)) else _model_bytes(model)
        self._session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        scales = _onnx_output_scales(model)
        self.inputs = tuple(_ort_spec(arg, {}) for arg in self._session.get_inputs())
        self.outputs = tuple(_ort_spec(arg, scales) for arg in self._session.get_outputs())

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run once on ``inputs`` (any size along symbolic dimensions)."""
        _check_input_names(inputs, {spec.name: spec for spec in self.inputs})
        return list(
            self._session.run(None, {k: np.ascontiguousarray(v) for k, v in inputs.items()})
        )


def _ort_spec(arg: Any, scales: Mapping[str, tuple[float, int]]) -> TensorSpec:
    shape = tuple(n if isinstance(n, int) and n >= 0 else 1 for n in arg.shape)
    dtype = _ORT_TYPES.get(arg.type)
    if dtype is None:
        raise ValueError(f"onnxruntime tensor {arg.name!r} has unsupported type {arg.type}")
    scale, zero_point = scales.get(arg.name, (None, 0))
    return TensorSpec(arg.name, shape, dtype, scale, zero_point)


def _onnx_output_scales(model: Any) -> dict[str, tuple[float, int]]:
    """``output name -> (scale, zero_point)`` for graph outputs of quantizing nodes."""
    import onnx
    from onnx import numpy_helper

    if isinstance(model, onnx.ModelProto):
        proto = model
    elif isinstance(model, (str, os.PathLike)):
        proto = onnx.load_model(model, load_external_data=False)
    else:
        proto = onnx.load_model_from_string(_model_bytes(model))
    graph = proto.graph
    consts = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = node.attribute[0].t
    outputs = {o.name for o in graph.output}
    scales = {}
    for node in graph.node:
        index = _ONNX_OUTPUT_SCALE.get(node.op_type)
        if index is None or node.output[0] not in outputs or len(node.input) <= index:
            continue
        scale = consts.get(node.input[index])
        zero = consts.get(node.input[index + 1]) if len(node.input) > index + 1 else None
        if scale is None or numpy_helper.to_array(scale).size != 1:
            continue
        zero_point = int(numpy_helper.to_array(zero).ravel()[0]) if zero is not None else 0
        scales[node.output[0]] = (float(numpy_helper.to_array(scale).ravel()[0]), zero_point)
    return scales


def make_oracle(model: Any, framework: str | None = None) -> LiteRTOracle | OnnxRuntimeOracle:
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
        return LiteRTOracle(model)
    if framework == "onnx":
        return OnnxRuntimeOracle(model)
    raise UnsupportedModelError(f"no reference runtime for a {framework} model")
