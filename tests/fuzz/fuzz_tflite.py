"""Coverage-guided fuzzing of ``.tflite`` bytes -> ``read_sparse_tensors`` -> dense, then the
graph checks that ``import_model`` runs before TVM.

Seeds: the small committed fixtures, the same in the offset layout (buffers after the
flatbuffer), and fixtures after a semantic mutation (shared references, renames, huge
dimensions, ranks past 64). See :mod:`fuzz.target` for running it.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.target import instrumented, main

with instrumented():
    import sparse_import.adapters.tflite  # noqa: F401

    from fuzz.outcomes import attempt
    from fuzz.tflite_model import (
        decode_and_check_graph,
        fixture_bytes,
        semantic_seeds,
        small_fixtures,
    )


def one_input(data: bytes) -> None:
    attempt("tflite", lambda: decode_and_check_graph(data), what="fuzzed model")


def seeds() -> list[bytes]:
    return [fixture_bytes(name) for name in small_fixtures()] + semantic_seeds()


if __name__ == "__main__":
    main(one_input, seeds)
