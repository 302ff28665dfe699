"""Shared test fixtures."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TOPHUB_LOCATION", "NONE")  # TVM must never try to download tuning logs
# The planner reads a user's calibration store (``sparse-import calibrate``); the suite prices
# with the built-in constants unless a test points it at a store of its own.
os.environ["SPARSE_IMPORT_CALIBRATION"] = os.path.join(
    tempfile.mkdtemp(prefix="sparse-import-tests-"), "calibration.json"
)

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator, fresh for every test."""
    return np.random.default_rng(20261123)


# The two flavours of TVM cannot share an environment. With maintained TVM (Relax only), the
# suite is the Relax backend's tests plus those that use no TVM at all (the IR, the format
# readers, SciPy, lint); everything else drives Relay.
RELAX_SUITE = (
    "relax",
    "test_ir_errors.py",
    "test_ir_golden.py",
    "test_ir_properties.py",
    "test_ir_scipy.py",
    "test_onnx_sparse.py",
    "test_harden_scipy.py",
    "test_fault_onnx.py",
    "test_lint.py",
    "test_backends_cli.py",
    "test_plan_neighbours.py",
    "test_calibration_store.py",
    "test_sell_layout.py",
)
HAS_RELAY = importlib.util.find_spec("tvm.relay") is not None


def pytest_ignore_collect(collection_path, config):
    if HAS_RELAY or collection_path.name == "conftest.py":
        return None
    relative = collection_path.relative_to(Path(__file__).parent)
    if relative.parts and relative.parts[0] in RELAX_SUITE:
        return None
    return collection_path.suffix == ".py" or collection_path.is_dir()
