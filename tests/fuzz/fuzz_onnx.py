"""Coverage-guided fuzzing of ONNX bytes: a ``SparseTensorProto`` -> ``from_onnx`` -> dense,
or (first byte odd) a ``ModelProto`` -> everything ``import_model`` does before TVM.

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

    from fuzz.onnx_proto import SEED_MODELS, decode_consistent, prepare_bytes, seed_model_bytes
    from fuzz.outcomes import attempt


def one_input(data: bytes) -> None:
    if not data:
        return
    if data[0] % 2:
        attempt("onnx", lambda: prepare_bytes(data[1:]), what="fuzzed model")
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
    return out


if __name__ == "__main__":
    main(one_input, seeds)
