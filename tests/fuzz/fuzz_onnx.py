"""Coverage-guided fuzzing of ONNX bytes: a ``SparseTensorProto`` -> ``from_onnx`` -> dense,
or (first byte odd) a ``ModelProto`` -> everything ``import_model`` does before TVM, or (first
byte 2 mod 4) a semantic edit of a fixture model (:data:`fuzz.onnx_proto.MODEL_DEFECTS`), the
following bytes choosing the model, the edit and its random choices.

Seeds: the sparse tensors and models of ``tests/fixtures/onnx/make_models.py``. See
:mod:`fuzz.target` for running it.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.target import instrumented, main

with instrumented():
    import onnx
    import sparse_import.adapters.onnx  # noqa: F401

    from fuzz.choice import RandomChooser
    from fuzz.onnx_proto import (
        MODEL_DEFECTS,
        SEED_MODELS,
        decode_consistent,
        prepare_bytes,
        prepare_proto,
        seed_model_bytes,
    )
    from fuzz.outcomes import attempt

EDITS = sorted(MODEL_DEFECTS)


def semantic_edit(data: bytes) -> None:
    """Apply the edit the bytes choose to the fixture model they choose, and prepare it."""
    if len(data) < 2:
        return
    name, edit = SEED_MODELS[data[0] % len(SEED_MODELS)], EDITS[data[1] % len(EDITS)]
    model = onnx.ModelProto.FromString(seed_model_bytes(name))
    expect = MODEL_DEFECTS[edit](model, RandomChooser(int.from_bytes(data[2:10], "little")))
    if expect is not None:
        attempt("onnx", lambda: prepare_proto(model), expect=expect or None, what=edit)


def one_input(data: bytes) -> None:
    if not data:
        return
    if data[0] % 2:
        attempt("onnx", lambda: prepare_bytes(data[1:]), what="fuzzed model")
        return
    if data[0] % 4 == 2:
        semantic_edit(data[1:])
        return
    try:
        sparse = onnx.SparseTensorProto.FromString(data[1:])
    except Exception:  # protobuf's DecodeError: never reaches the adapter
        return
    attempt(
        "onnx",
        lambda: decode_consistent(sparse),
        names=[sparse.values.name],
        what="fuzzed sparse tensor",
    )


def seeds() -> list[bytes]:
    out = []
    for name in SEED_MODELS:
        data = seed_model_bytes(name)
        out.append(b"\x01" + data)
        model = onnx.ModelProto.FromString(data)
        out += [b"\x00" + s.SerializeToString() for s in model.graph.sparse_initializer]
    out += [
        b"\x02" + bytes([m, e]) + bytes(8)
        for m in range(len(SEED_MODELS))
        for e in range(len(EDITS))
    ]
    return out


if __name__ == "__main__":
    main(one_input, seeds)
