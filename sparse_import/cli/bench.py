"""``sparse-import bench``: latency and size of each mode, one table."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .._format import format_table, human_bytes, milliseconds, progress
from ..api import MODES
from ._common import NO_SPARSE, count, header, kept, load, target_label


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


def run(args: argparse.Namespace) -> int:
    """Build every mode for ``--target`` and time it on the same random inputs."""
    from .. import pipeline
    from ..backend.build import time_module
    from ..verify import random_inputs

    target, target_text = target_label(args.target, runs_here=True)
    loaded, label = load(args)
    inputs = random_inputs(loaded.inputs, 0)
    results = []
    for i, mode in enumerate(MODES, 1):
        with progress(sys.stderr, f"[{i}/{len(MODES)}] {mode}: building and timing"):
            compiled = pipeline.compile_model(loaded, mode, target=target)
            timing = time_module(
                compiled.lib, inputs, repeat=args.repeat, min_repeat_ms=args.min_repeat_ms
            )
        results.append((mode, compiled, timing))
    header(
        loaded,
        label,
        ("timing", f"{args.repeat} repeats of at least {args.min_repeat_ms} ms, best and median"),
        ("target", target_text),
    )
    dense_best = results[0][2].best
    table = [
        [mode, kept(c.decisions), human_bytes(c.params_nbytes), f"{c.seconds:.1f} s",
         milliseconds(t.best), milliseconds(t.median), f"{dense_best / t.best:.2f}x"]
        for mode, c, t in results
    ]  # fmt: skip
    columns = ["mode", "kept sparse", "parameters", "build", "best", "median", "speed-up"]
    print(format_table(columns, table, "lrrrrrr"))
    if not loaded.imported.weights:
        print()
        print(NO_SPARSE)
    return 0
