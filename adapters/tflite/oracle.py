"""LiteRT, the reference runtime of TFLite models, as the oracle of ``sparse-import verify``.

LiteRT runs with its builtin kernels and no default delegate (``OpResolverType.
BUILTIN_WITHOUT_DEFAULT_DELEGATES``), so XNNPACK never rewrites the graph. The
``ai-edge-litert`` package comes with the ``test`` extra and is imported only when an oracle is
made.

Examples
--------
>>> from sparse_import.adapters.tflite.oracle import LiteRTOracle
>>> from sparse_import.pipeline import demo_model
>>> from sparse_import.verify import random_inputs
>>> oracle = LiteRTOracle(demo_model("tflite"))
>>> [(s.name, s.shape, s.dtype) for s in oracle.inputs]
[('serving_default_x:0', (1, 64), 'float32')]
>>> oracle.run(random_inputs(oracle.inputs, 0))[0].shape
(1, 10)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from sparse_import.verify import TEST_EXTRA, TensorSpec, check_input_names, model_bytes

__all__ = ["LiteRTOracle"]


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
                f"running LiteRT needs the 'ai-edge-litert' package ({TEST_EXTRA})"
            ) from exc
        self._interpreter = Interpreter(
            model_content=model_bytes(model),
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        self._interpreter.allocate_tensors()
        steps = _dequantized_steps(self._interpreter)
        self.inputs = tuple(_litert_spec(d) for d in self._interpreter.get_input_details())
        self.outputs = tuple(
            _litert_spec(d, steps.get(d["index"])) for d in self._interpreter.get_output_details()
        )

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run once; inputs whose shape differs from the declared one resize the model."""
        it = self._interpreter
        details = {d["name"]: d for d in it.get_input_details()}
        check_input_names(inputs, details)
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


def _dequantized_steps(interpreter: Any) -> dict[int, float]:
    """Tensor index -> quantization step of each float tensor a ``DEQUANTIZE`` of an integer
    tensor writes (the float output of a quantized chain is compared in those steps)."""
    tensors = {d["index"]: d for d in interpreter.get_tensor_details()}
    steps = {}
    for op in interpreter._get_ops_details():
        if op["op_name"] != "DEQUANTIZE" or len(op["inputs"]) != 1:
            continue
        source = tensors[int(op["inputs"][0])]
        scale, _ = source["quantization"]
        if scale and np.dtype(source["dtype"]).kind in "iu":
            steps.update({int(o): float(scale) for o in op["outputs"]})
    return steps


def _litert_spec(detail: Mapping[str, Any], step: float | None = None) -> TensorSpec:
    scale, zero_point = detail["quantization"]
    return TensorSpec(
        name=detail["name"],
        shape=tuple(int(n) for n in detail["shape"]),
        dtype=np.dtype(detail["dtype"]).name,
        scale=float(scale) if scale else step,
        zero_point=int(zero_point),
    )
