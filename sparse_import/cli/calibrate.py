"""``sparse-import calibrate``: re-measure the cost model for the CPU you build for.

Builds a few probe layers per kernel family for ``--target`` (default: this machine's CPU),
times them here on TVM's thread count (``TVM_NUM_THREADS``) and stores one scale per family
(measured over the built-in estimate) in the calibration store, where ``auto`` finds it for
every later import for that CPU and thread count
(:mod:`sparse_import.planning.calibration`). Relay (TVM 0.19) only; the stored scales are read
by both backends.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .._format import format_table, progress
from ..planning import calibration
from ._common import UsageError, backend_of, target_label


def add_parser(commands: Any, parents: dict[str, argparse.ArgumentParser]) -> Any:
    """Register ``calibrate`` and its options."""
    parser = commands.add_parser(
        "calibrate",
        parents=[parents["target"]],
        help="re-measure the cost model for this CPU and store it for auto",
    )
    parser.add_argument(
        "--store",
        type=Path,
        metavar="FILE",
        help=f"calibration store to update (default: ${calibration.ENV} or "
        "~/.cache/sparse_import/calibration.json)",
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved timing rounds (default 5)"
    )
    parser.add_argument("--dry-run", action="store_true", help="measure and print, store nothing")
    parser.set_defaults(backend=None)
    return parser


def run(args: argparse.Namespace) -> int:
    """Measure, print the probes and the scales, and update the store."""
    backend_of(args, "calibrate")  # Relay only: refused with the Relax flavour installed
    if not 1 <= args.rounds <= 100:
        raise UsageError(f"argument --rounds: {args.rounds} is not between 1 and 100")
    store = args.store if args.store is not None else calibration.store_path()
    calibration.load_store(store)  # refuse a broken store before spending the time
    from ..relay_backend.calibrate import measure

    target, label = target_label(args.target, runs_here=True)
    print(f"target  {label}")
    with progress(sys.stderr, "building and timing the probe layers"):
        found, probes = measure(target, rounds=args.rounds)
    threads = f"{found.threads} thread{'s' * (found.threads != 1)}"
    print(f"cpu     {found.cpu}, {found.vector_bytes}-byte vectors, {threads} (TVM_NUM_THREADS)\n")
    rows = [
        [m.probe.family, m.probe.label, f"{m.seconds * 1e3:.3f}", f"{m.estimate * 1e3:.3f}",
         f"{m.ratio:.2f}"]
        for m in probes
    ]  # fmt: skip
    print(
        format_table(["family", "probe", "measured ms", "built-in est. ms", "ratio"], rows, "llrrr")
    )
    print()
    scales = [[family, f"{found.scale(family):.2f}"] for family in found.scales]
    print(format_table(["family", "scale"], scales, "lr"))
    if args.dry_run:
        print("\ndry run: nothing stored")
        return 0
    path = calibration.save(found, len(probes), store)
    print(f"\nstored for {found.cpu}/{found.vector_bytes}/{found.threads} in {path}")
    return 0
