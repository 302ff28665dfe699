"""Coverage-guided fuzzing of the IR and the TFLite raw fields, through the Hypothesis
properties of ``tests/test_fuzz_ir.py``: the fuzzer's bytes choose the random layout and the
mutations (``fuzz_one_input``), so coverage steers the same structure-aware generator.

See :mod:`fuzz.target` for running it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.target import instrumented, main

with instrumented():
    import sparse_import.adapters.tflite.params  # noqa: F401
    import test_fuzz_ir as properties

PROPERTIES = [
    properties.test_ir_defects_are_rejected_with_their_message,
    properties.test_tflite_field_defects_are_rejected_with_their_message,
    properties.test_ir_havoc_is_rejected_or_consistent,
    properties.test_tflite_field_havoc_is_rejected_or_consistent,
]


def one_input(data: bytes) -> None:
    if data:
        PROPERTIES[data[0] % len(PROPERTIES)].hypothesis.fuzz_one_input(data[1:])


def seeds() -> list[bytes]:
    return [bytes([k]) + os.urandom(256) for k in range(4 * len(PROPERTIES))]


if __name__ == "__main__":
    main(one_input, seeds)
