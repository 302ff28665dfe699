"""``sparse-import bench``: latency, spread and size of each mode, one table.

The modes are timed in turns (dense, sparse, auto, dense, ...), so that load from other work on
the machine falls on every mode alike. Each mode reports the median and the interquartile range
(IQR) of its repeats; a speed-up is printed only when the two modes' IQRs do not overlap, and
"no measurable difference" otherwise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._format import format_table, human_bytes, latency_range, progress
from ..api import MODES
from ._common import NO_SPARSE, count, header, kept, load, target_label

NO_DIFFERENCE = "no measurable difference"


@dataclass(frozen=True)
class Spread:
    """Summary of the repeated timings of one mode, in seconds.

    Attributes
    ----------
    median, q1, q3, low, high : float
        Median, first and third quartiles, minimum and maximum of the repeats.
    """

    median: float
    q1: float
    q3: float
    low: float
    high: float

    @classmethod
    def of(cls, samples: Any) -> Spread:
        """The spread of ``samples``, ``(repeat,)`` positive seconds.

        Examples
        --------
        >>> Spread.of([1.0, 2.0, 3.0, 4.0, 5.0])
        Spread(median=3.0, q1=2.0, q3=4.0, low=1.0, high=5.0)
        """
        values = np.asarray(samples, dtype=np.float64)
        if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values)):
            raise ValueError(f"timings must be a non-empty list of finite seconds, got {values}")
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        return cls(float(median), float(q1), float(q3), float(values.min()), float(values.max()))

    def overlaps(self, other: Spread) -> bool:
        """Whether the interquartile ranges of ``self`` and ``other`` share a point."""
        return self.q1 <= other.q3 and other.q1 <= self.q3


def speedup_text(base: Spread, other: Spread) -> str:
    """``other``'s speed-up over ``base`` (ratio of medians), or :data:`NO_DIFFERENCE`.

    The ratio is printed only when the interquartile ranges are apart: two runs of one module
    differ by noise, which must not read as a speed-up.

    Examples
    --------
    >>> speedup_text(Spread.of([2.0, 2.1, 2.2]), Spread.of([1.0, 1.05, 1.1]))
    '2.00x'
    >>> speedup_text(Spread.of([1.0, 1.3, 1.6]), Spread.of([1.0, 1.0, 1.5]))
    'no measurable difference'
    """
    if base.overlaps(other):
        return NO_DIFFERENCE
    return f"{base.median / other.median:.2f}x"


def add_parser(commands: Any, parents: dict[str, argparse.ArgumentParser]) -> Any:
    """Register ``bench`` and its options."""
    parser = commands.add_parser(
        "bench",
        parents=[parents["model"], parents["target"]],
        help="compare dense, sparse and auto latency and size",
    )
    parser.add_argument(
        "--repeat", type=count(1, 1000), default=15, help="timed repeats per mode (default 15)"
    )
    parser.add_argument(
        "--min-repeat-ms",
        type=count(1, 60_000),
        default=20,
        metavar="MS",
        help="minimum duration of one repeat (default 20)",
    )
    return parser


def _library_bytes(lib: Any, directory: Path, mode: str) -> int:
    """Bytes of the compiled module as a shared library (``lib.export_library``)."""
    path = directory / f"{mode}.so"
    lib.export_library(str(path))
    return path.stat().st_size


def run(args: argparse.Namespace) -> int:
    """Build every mode for ``--target`` and time the modes in turns on the same inputs."""
    from .. import pipeline
    from ..relay_backend.build import time_module
    from ..verify import random_inputs

    target, target_text = target_label(args.target, runs_here=True)
    loaded, label = load(args, "bench")
    inputs = random_inputs(loaded.inputs, 0)
    compiled, library = {}, {}
    with tempfile.TemporaryDirectory(prefix="sparse-import-bench-") as tmp:
        for i, mode in enumerate(MODES, 1):
            with progress(sys.stderr, f"[{i}/{len(MODES)}] {mode}: building"):
                compiled[mode] = pipeline.compile_model(loaded, mode, target=target)
                library[mode] = _library_bytes(compiled[mode].lib, Path(tmp), mode)
    samples: dict[str, list[float]] = {m: [] for m in MODES}
    with progress(sys.stderr, f"timing {len(MODES)} modes in turns, {args.repeat} repeats"):
        for _ in range(args.repeat):
            for mode in MODES:
                timing = time_module(
                    compiled[mode].lib, inputs, repeat=1, min_repeat_ms=args.min_repeat_ms
                )
                samples[mode].append(timing.best)
    spreads = {m: Spread.of(samples[m]) for m in MODES}
    header(
        loaded,
        label,
        ("timing", f"{args.repeat} repeats of at least {args.min_repeat_ms} ms, modes in turns"),
        ("target", target_text),
    )
    dense = spreads[MODES[0]]
    table = [
        [mode, kept(compiled[mode].decisions), human_bytes(compiled[mode].params_nbytes),
         human_bytes(library[mode]), f"{compiled[mode].seconds:.1f} s",
         latency_range(spreads[mode].median), latency_range(spreads[mode].q1, spreads[mode].q3),
         "1.00x" if mode == MODES[0] else speedup_text(dense, spreads[mode])]
        for mode in MODES
    ]  # fmt: skip
    columns = ["mode", "kept sparse", "parameters", "library", "build", "median", "IQR",
               "speed-up"]  # fmt: skip
    print(format_table(columns, table, "lrrrrrrr"))
    print()
    print(
        f"speed-up: dense's median over the mode's when the IQRs are apart, else {NO_DIFFERENCE!r}"
    )
    if not loaded.imported.weights:
        print()
        print(NO_SPARSE)
    return 0
