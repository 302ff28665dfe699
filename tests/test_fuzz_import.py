"""Damaged models that pass the adapters' own reading, through ``import_model`` and TVM.

A model can be readable and still wrong for TVM's frontend (an operator with too few inputs,
a constant without data, quantization TVM rejects). ``import_model`` must turn whatever the
frontend raises into a documented error. Runs in a subprocess (``fuzz/import_loop.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fuzz.outcomes import TALLY, fuzz_report  # noqa: F401  (fixture)
from fuzz.tflite_model import pack, unpack
from sparse_import.adapters.tflite import import_model, read_sparse_tensors

from sparse_import import SparseFormatError, UnsupportedModelError

pytestmark = pytest.mark.usefixtures("fuzz_report")

TESTS = Path(__file__).resolve().parent
CASES = 120


def _run(adapter: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "fuzz.import_loop", adapter, str(CASES), "20261126"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=TESTS,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    counts = result["counts"]
    TALLY.add(adapter, "rejected", counts.get("rejected", 0))
    TALLY.add(adapter, "imported", counts.get("imported", 0))
    TALLY.add(adapter, "escaped", counts.get("escaped", 0))
    return result


def test_onnx_import_model_documents_every_frontend_failure():
    result = _run("onnx")
    assert not result["escapes"], "\n".join(result["escapes"])


def test_tflite_import_model_documents_every_frontend_failure():
    result = _run("tflite")
    assert not result["escapes"], "\n".join(result["escapes"])


def test_tflite_constant_without_data_is_a_documented_error():
    """The FC bias of a valid model pointed at the empty buffer 0: readable, not convertible."""
    model = unpack("handmade_int8_csc_fc.tflite")
    model.subgraphs[0].tensors[3].buffer = 0  # 'fc/bias'
    data = pack(model)
    read_sparse_tensors(data)  # the sparse weight itself is fine
    with pytest.raises((SparseFormatError, UnsupportedModelError), match=r"'fc/bias'|frontend"):
        import_model(data)
