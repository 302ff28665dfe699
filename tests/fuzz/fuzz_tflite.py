"""Coverage-guided fuzzing of ``.tflite`` bytes -> ``read_sparse_tensors`` -> dense.

Seeds: the small committed fixtures. See :mod:`fuzz.target` for running it.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.target import instrumented, main

with instrumented():
    import sparse_import.adapters.tflite  # noqa: F401

    from fuzz.outcomes import attempt
    from fuzz.tflite_model import decode_consistent, fixture_bytes, small_fixtures


def one_input(data: bytes) -> None:
    attempt("tflite", lambda: decode_consistent(data), what="fuzzed model")


def seeds() -> list[bytes]:
    return [fixture_bytes(name) for name in small_fixtures()]


if __name__ == "__main__":
    main(one_input, seeds)
