"""The pruned MLP of ``bench_kernels``, written by TensorFlow's own converter.

A 1024-2048-1024 Keras MLP (ReLU between the layers, batch 1) whose two kernels keep 10 % of
their entries at random, converted with ``Optimize.EXPERIMENTAL_SPARSITY``: each weight is
stored sparse behind a ``DENSIFY`` op, as the converter writes any unblocked pruned float
weight. Seeded, so a rerun writes the same bytes. Uses the fixture generator's helpers.

Needs TensorFlow, which is never a dependency of the project: run it with a separate
environment that has ``tensorflow-cpu``::

    /path/to/tf-venv/bin/python benchmarks/make_mlp_tflite.py
"""

from __future__ import annotations

import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "fixtures" / "tflite"))

import generate_converter as gen  # noqa: E402
import tensorflow as tf  # noqa: E402

OUT = HERE / "models" / "mlp_1024_2048_1024.tflite"
SEED = 20261201
DENSITY = 0.10


def main() -> None:
    model = gen.mlp("mlp_1024_2048_1024", 1, 1024, 2048, 1024)()
    gen.set_weights(model, {f"fc{i}": gen.Prune(gen.RANDOM, DENSITY) for i in (1, 2)}, SEED)
    data = gen.convert(model, "float", SEED)
    error = gen.tflite_error(model, data, SEED)
    assert error < gen.TOLERANCE["float"], error
    ops = tf.lite.Interpreter(model_content=data)._get_ops_details()
    names = [op["op_name"] for op in ops]
    assert names.count("DENSIFY") == 2, names
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_bytes(data)
    print(f"{OUT.name}: {len(data)} bytes, ops {names}, |TFLite - Keras| / max {error:.1e}")


if __name__ == "__main__":
    main()
