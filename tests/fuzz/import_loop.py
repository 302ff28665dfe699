"""Damaged models through the whole import path, TVM's frontend included, in one process.

``python -m fuzz.import_loop {tflite,onnx} CASES SEED`` (from ``tests/``) mutates the committed
models until CASES of them pass the adapter's own reading (so TVM's frontend gets to convert
them), runs ``import_model`` on each and prints one JSON line: the outcome counts and the first
escapes. It runs in a subprocess of the tests so a crash in native code cannot take the test
session down, and under a memory cap.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TOPHUB_LOCATION", "NONE")


def _tflite(choose) -> tuple[bytes, Callable[[bytes], object], Callable[[bytes], object]]:
    from sparse_import.adapters.tflite import import_model, read_sparse_tensors

    from fuzz.choice import pick
    from fuzz.tflite_model import fixture_bytes, mutate_bytes, small_fixtures

    name = pick(choose, small_fixtures())
    return mutate_bytes(fixture_bytes(name), choose), read_sparse_tensors, import_model


def _onnx(choose) -> tuple[bytes, Callable[[bytes], object], Callable[[bytes], object]]:
    import onnx
    from sparse_import.adapters.onnx import import_model

    from fuzz.choice import pick
    from fuzz.onnx_proto import SEED_MODELS, havoc, mutate_bytes, prepare_bytes, seed_model_bytes

    name = pick(choose, SEED_MODELS)
    model = onnx.ModelProto.FromString(seed_model_bytes(name))
    sparse = model.graph.sparse_initializer
    if sparse and choose.integer(0, 1):
        havoc(sparse[choose.integer(0, len(sparse) - 1)], choose)
        return model.SerializeToString(), prepare_bytes, import_model
    return mutate_bytes(seed_model_bytes(name), choose), prepare_bytes, import_model


def main(adapter: str, cases: int, seed: int) -> dict:
    import warnings

    import sparse_import
    from fuzz.choice import RandomChooser
    from fuzz.outcomes import DOCUMENTED

    warnings.simplefilter("ignore")  # TVM's ONNX frontend warns about every oddity
    sparse_import.set_dense_byte_limit(1 << 24)
    choose = RandomChooser(seed)
    draw = {"tflite": _tflite, "onnx": _onnx}[adapter]
    counts: Counter[str] = Counter()
    escapes: list[str] = []
    while counts["imported"] + counts["rejected"] + counts["escaped"] < cases:
        data, read, import_model = draw(choose)
        try:
            read(data)  # the adapter's own checks; those are fuzzed elsewhere
        except DOCUMENTED[adapter]:
            continue
        try:
            import_model(data)
            counts["imported"] += 1
        except DOCUMENTED[adapter]:
            counts["rejected"] += 1
        except Exception as exc:  # anything else escaped the adapter
            counts["escaped"] += 1
            if len(escapes) < 5:
                escapes.append(
                    f"{type(exc).__module__}.{type(exc).__name__}: {exc}\n"
                    + traceback.format_exc(limit=-3)
                )
    return {"counts": dict(counts), "escapes": escapes}


if __name__ == "__main__":
    limit = 8 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
