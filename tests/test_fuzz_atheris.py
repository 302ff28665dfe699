"""The coverage-guided targets of ``tests/fuzz/``, each for a fixed number of runs.

Each target runs in its own process under libFuzzer's limits: a per-input timeout, an RSS cap
and a total time cap, so a crash, a hang or a memory blow-up fails this test instead of the
test session. Run the targets longer by hand (see ``tests/fuzz/target.py``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from fuzz.outcomes import TALLY, fuzz_report  # noqa: F401  (fixture)

pytest.importorskip("atheris", reason="atheris (libFuzzer for Python) is not installed")
pytestmark = pytest.mark.usefixtures("fuzz_report")

FUZZ = Path(__file__).resolve().parent / "fuzz"
TARGETS = {  # script: (adapter, runs)
    "fuzz_params.py": ("tflite-params", 1500),
    "fuzz_tflite.py": ("tflite", 20000),
    "fuzz_onnx.py": ("onnx", 20000),
}


@pytest.mark.parametrize(
    "script",
    [
        "fuzz_onnx.py",
        "fuzz_params.py",
        "fuzz_tflite.py",
    ],
)
def test_coverage_guided_target_runs_clean(script, tmp_path):
    adapter, runs = TARGETS[script]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    command = [
        sys.executable, str(FUZZ / script), f"-runs={runs}", "-seed=20261123",
        "-timeout=10", "-rss_limit_mb=2048", "-max_total_time=60",
        f"-artifact_prefix={tmp_path}/", str(corpus),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    lines = done.stderr.splitlines()
    found = next((i for i, line in enumerate(lines) if "Uncaught Python exception" in line), None)
    tail = "\n".join(lines[-40:] if found is None else lines[found : found + 30])
    assert done.returncode == 0, f"{script} found a failing input:\n{tail}"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-"))]
    ran = re.search(r"^Done (\d+) runs in (\d+) second", done.stderr, re.MULTILINE)
    assert ran is not None, tail
    n, seconds = int(ran.group(1)), int(ran.group(2))
    assert n >= runs or seconds >= 60, tail  # all runs, unless the time cap came first
    TALLY.add(adapter, "runs", n)
