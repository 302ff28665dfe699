"""Shared test fixtures."""

from __future__ import annotations

import os

os.environ.setdefault("TOPHUB_LOCATION", "NONE")  # TVM must never try to download tuning logs

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator, fresh for every test."""
    return np.random.default_rng(20261123)
