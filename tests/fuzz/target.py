"""Shared set-up of the coverage-guided (atheris / libFuzzer) targets ``fuzz_*.py``.

Run a target by hand, as long as you like (a corpus directory keeps what it learns)::

    python tests/fuzz/fuzz_tflite.py -max_total_time=3600 -rss_limit_mb=2048 -timeout=10 CORPUS

An empty corpus directory is filled with the target's seeds first; without one, a temporary
directory is used. Any
libFuzzer flag works (``-runs=N``, ``-jobs=N``, ``-seed=S``, ``-artifact_prefix=DIR/``). A
crash is an input that raised anything but the documented errors, named the tensor in no way,
ran past ``-timeout`` seconds or past ``-rss_limit_mb``; libFuzzer saves it as ``crash-*``.
Replay one with ``python tests/fuzz/fuzz_tflite.py crash-...``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


def instrumented() -> object:
    """Context manager: imports inside it get coverage instrumentation (the library's)."""
    import atheris

    return atheris.instrument_imports(include=["sparse_import"])


def main(one_input: Callable[[bytes], None], seeds: Callable[[], Iterable[bytes]]) -> None:
    """Fuzz ``one_input`` with libFuzzer's command line from ``sys.argv``."""
    import atheris

    import sparse_import

    from . import outcomes
    from .fields import FUZZ_DENSE_LIMIT

    outcomes.CASE_SECONDS = None  # libFuzzer's -timeout owns SIGALRM
    sparse_import.set_dense_byte_limit(int(os.environ.get("FUZZ_DENSE_LIMIT", FUZZ_DENSE_LIMIT)))
    argv = list(sys.argv)
    paths = [Path(arg) for arg in argv[1:] if not arg.startswith("-")]
    if not paths:
        paths = [Path(tempfile.mkdtemp(prefix="sparse-import-fuzz-"))]
        argv.append(str(paths[0]))
    if paths[0].is_dir() and not any(paths[0].iterdir()):  # an empty corpus: seed it
        for i, seed in enumerate(seeds()):
            (paths[0] / f"seed-{i:04d}").write_bytes(seed)
    atheris.Setup(argv, one_input)
    atheris.Fuzz()
