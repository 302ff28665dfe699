"""``shape_dict`` / ``dtype_dict`` mistakes on TFLite models: one line naming the input.

Every fixture's declared inputs are perturbed systematically (another rank, a changed inner
dimension, a zero or negative size, an unknown name, another dtype); each mistake must be
refused before TVM runs, by name. A changed batch, which LiteRT resizes, is accepted and computes
what LiteRT computes.
"""

from __future__ import annotations

import numpy as np
import pytest
from sparse_import.adapters.tflite import import_model
from sparse_import.adapters.tflite.graph import declared_inputs
from sparse_import.adapters.tflite.loader import load_model
from sparse_import.adapters.tflite.oracle import LiteRTOracle
from tflite_support import FIXTURES

from sparse_import import UnsupportedModelError
from sparse_import.relay_backend import lower
from sparse_import.relay_backend.build import build, run
from sparse_import.verify import compare

NAMES = sorted(p.name for p in FIXTURES.glob("*.tflite"))


def _mistakes(name: str, dims: tuple, dtype) -> list[tuple[dict, dict | None, str]]:
    shape = [1 if d is None else d for d in dims]
    found = [
        ({name: (*shape, 2)}, None, rf"has rank {len(shape) + 1}, but the model declares"),
        ({name + "_": tuple(shape)}, None, r"which is not an input of the model"),
        ({name: (0, *shape[1:])}, None, r"every dimension must be positive, got 0"),
        ({name: (-3, *shape[1:])}, None, r"every dimension must be positive, got -3"),
        (None, {name: "int16" if dtype != np.int16 else "int8"}, r"but the model declares"),
    ]
    if len(shape) > 1:
        changed = shape.copy()
        changed[-1] += 1
        found.append(({name: tuple(changed)}, None, rf"dimension {len(shape) - 1} is"))
    if len(shape) > 0:
        found.append(({name: ()}, None, r"has rank 0, but the model declares"))
    return found


@pytest.mark.parametrize("fixture", NAMES)
def test_input_dict_mistakes_are_refused_by_name(fixture):
    model = load_model(FIXTURES / fixture)
    for name, declared in declared_inputs(model).items():
        for shapes, dtypes, message in _mistakes(name, declared.dims, declared.dtype):
            with pytest.raises(UnsupportedModelError, match=message) as info:
                import_model(model, shape_dict=shapes, dtype_dict=dtypes)
            text = str(info.value)
            assert "\n" not in text and len(text) < 400 and repr(name)[1:-1] in text


@pytest.mark.slow
@pytest.mark.parametrize("batch", [3, 16])
def test_a_changed_batch_computes_what_litert_computes(batch):
    fixture = "fc_densify.tflite"
    model = (FIXTURES / fixture).read_bytes()
    oracle = LiteRTOracle(model)
    ((name, declared),) = declared_inputs(load_model(model)).items()
    shape = (batch, *declared.dims[1:])
    imported = import_model(model, shape_dict={name: shape})
    inputs = {name: np.random.default_rng(batch).standard_normal(shape).astype(np.float32)}
    lib = build(*lower(imported, "dense")[:2])
    checks = compare(run(lib, inputs), oracle.run(inputs), oracle.outputs)
    assert all(c.ok for c in checks), checks
