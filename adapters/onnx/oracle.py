"""onnxruntime, the reference runtime of ONNX models, as the oracle of ``sparse-import verify``.

onnxruntime runs on the CPU with every graph optimization off (``ORT_DISABLE_ALL``). Its type
strings (``tensor(float)``) are translated to NumPy dtype names here and nowhere else. The
``onnxruntime`` package comes with the ``test`` extra and is imported only when an oracle is
made.

Examples
--------
>>> from sparse_import.adapters.onnx.oracle import OnnxRuntimeOracle
>>> from sparse_import.pipeline import demo_model
>>> oracle = OnnxRuntimeOracle(demo_model("onnx"))
>>> [(s.name, s.shape, s.dtype) for s in oracle.inputs]  # the symbolic batch is 1
[('x', (1, 64), 'float32')]
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from sparse_import.verify import TEST_EXTRA, TensorSpec, check_input_names, model_bytes

__all__ = ["OnnxRuntimeOracle"]

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
        As the model declares them; symbolic dimensions are 1. ``inputs`` are the ones a run
        needs: a graph input backed by an initializer (every weight of an old model-zoo model) is
        an optional override, which :meth:`run` accepts but does not need. An integer output
        written by ``QuantizeLinear``,
        ``QLinearMatMul`` or ``QLinearConv`` with a constant scalar ``y_scale`` has that
        ``scale``.
    """

    framework = "onnx"

    def __init__(self, model: str | os.PathLike | bytes | Any) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ImportError(
                f"running onnxruntime needs the 'onnxruntime' package ({TEST_EXTRA})"
            ) from exc
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.log_severity_level = 3  # errors only: no notes on stderr about the graph's form
        data = model_bytes(model)  # a path must be a non-empty regular file, never a FIFO
        # A path goes to onnxruntime as a path, so that it finds external data next to it.
        source = os.fspath(model) if isinstance(model, (str, os.PathLike)) else data
        self._session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        proto = model if hasattr(model, "graph") else _proto(data)
        scales = _output_scales(proto.graph)
        declared = self._session.get_inputs()
        overridable = self._session.get_overridable_initializers()
        self._declared = {arg.name: arg for arg in (*declared, *overridable)}
        self.inputs = tuple(_ort_spec(arg, {}) for arg in declared)
        self.outputs = tuple(_ort_spec(arg, scales) for arg in self._session.get_outputs())

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run once on ``inputs`` (any size along symbolic dimensions)."""
        check_input_names(inputs, self._declared)
        return list(
            self._session.run(None, {k: np.ascontiguousarray(v) for k, v in inputs.items()})
        )


ORT_STEPS = 1.0
"""Steps a quantized ONNX output may differ by: TVM's QNN rounds as it does, not as
onnxruntime does."""


def _ort_spec(arg: Any, scales: Mapping[str, tuple[float, int]]) -> TensorSpec:
    shape = tuple(n if isinstance(n, int) and n >= 0 else 1 for n in arg.shape)
    dtype = _ORT_TYPES.get(arg.type)
    if dtype is None:
        raise ValueError(f"onnxruntime tensor {arg.name!r} has unsupported type {arg.type}")
    scale, zero_point = scales.get(arg.name, (None, 0))
    return TensorSpec(arg.name, shape, dtype, scale, zero_point, max_steps=ORT_STEPS)


def _proto(data: bytes) -> Any:
    """The ``ModelProto`` in ``data``, its external data left unread."""
    import onnx

    return onnx.load_model_from_string(data)


def _output_scales(graph: Any) -> dict[str, tuple[float, int]]:
    """``output name -> (scale, zero_point)`` for graph outputs of quantizing nodes."""
    from onnx import numpy_helper

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
