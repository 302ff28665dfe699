"""Replay every adversarial case in its own capped subprocess.

Cases live in ``tests/adversarial/cases_*.py`` (see :mod:`tests.adversarial.contract`). Each runs
in a fresh interpreter with a memory cap and a CPU-time limit (:mod:`tests.adversarial.run`) and a
wall-clock timeout here, so a case that crashes the interpreter, hangs, or allocates past the cap
fails its own test instead of the suite. Two cases run at a time.
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CASES_DIR = ROOT / "tests" / "adversarial"
WALL_SECONDS = 120
WORKERS = 2
CHECK_FAILED = 3  # tests.adversarial.run's exit status for a failed check


def _discover() -> list[str]:
    """``module:function`` of every ``case_*`` function, found without importing the modules."""
    found = []
    for path in sorted(CASES_DIR.glob("cases_*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        found += [
            f"{path.stem}:{node.name}"
            for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("case_")
        ]
    return found


CASES = _discover()


def _run(target: str) -> tuple[int | None, str]:
    env = {**os.environ, "TOPHUB_LOCATION": "NONE", "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            done = subprocess.run(
                [sys.executable, "-m", "tests.adversarial.run", target, tmp],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=WALL_SECONDS,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return None, f"hung: no result after {WALL_SECONDS} s"
    return done.returncode, done.stderr[-3000:]


@pytest.fixture(scope="module")
def outcomes() -> dict[str, tuple[int | None, str]]:
    with ThreadPoolExecutor(WORKERS) as pool:
        return dict(zip(CASES, pool.map(_run, CASES), strict=True))


def test_cases_are_found() -> None:
    areas = {target.split(":")[0] for target in CASES}
    assert "cases_backend" in areas, areas
    assert len(CASES) >= 10, CASES


@pytest.mark.slow
@pytest.mark.parametrize("target", CASES)
def test_case_holds_the_contract(target: str, outcomes: dict) -> None:
    code, stderr = outcomes[target]
    if code is None:
        pytest.fail(f"{target}: {stderr}")
    if code < 0:
        pytest.fail(f"{target}: crashed with {signal.Signals(-code).name}\n{stderr}")
    if code == CHECK_FAILED:
        pytest.fail(stderr)
    assert code == 0, f"{target}: exit status {code}\n{stderr}"
