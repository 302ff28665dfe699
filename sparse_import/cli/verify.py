"""``sparse-import verify``: the compiled module against the framework's own runtime."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from .._format import format_table, progress, shape_text, short_name
from ._common import count, header, load, mode_line, target_label

if TYPE_CHECKING:
    from ..verify import OutputCheck

ORACLE_NAMES = {
    "tflite": "LiteRT (builtin kernels, no delegates)",
    "onnx": "onnxruntime (graph optimizations off)",
}
EXIT_DISAGREE = 1


def add_parser(commands: Any, parents: dict[str, argparse.ArgumentParser]) -> Any:
    """Register ``verify`` and its options."""
    parser = commands.add_parser(
        "verify",
        parents=[parents["model"], parents["mode"], parents["target"]],
        help="run the compiled module and LiteRT/onnxruntime on random inputs; exit 1 if they "
        "disagree",
    )
    parser.add_argument(
        "--seed", type=count(0, 2**63 - 1), default=0, help="seed of the random inputs"
    )
    parser.add_argument(
        "--samples",
        type=count(1, 1000),
        default=3,
        metavar="N",
        help="random input sets to compare (default 3)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Build in ``--mode``, run it and the oracle on ``--samples`` random input sets."""
    from .. import pipeline
    from ..relay_backend.build import run as run_module
    from ..verify import compare, make_oracle, random_inputs

    target, target_text = target_label(args.target, runs_here=True)
    loaded, label = load(args, "verify")
    oracle = make_oracle(loaded.path, loaded.framework)
    with progress(sys.stderr, f"building {args.mode}"):
        compiled = pipeline.compile_model(loaded, args.mode, target=target)
    rng = np.random.default_rng(args.seed)
    samples = []
    for _ in range(args.samples):
        inputs = random_inputs(loaded.inputs, rng)
        # Inputs the oracle declares but the graph never reads still need a value there.
        unread = [spec for spec in oracle.inputs if spec.name not in inputs]
        feed = {**random_inputs(unread, rng), **inputs}
        samples.append(compare(run_module(compiled.lib, inputs), oracle.run(feed), oracle.outputs))
    # Per output, the worst sample: a failure first, else the largest error.
    worst = [
        max(checks, key=lambda c: (not c.ok, c.error)) for checks in zip(*samples, strict=True)
    ]
    header(
        loaded,
        label,
        mode_line(args.mode, compiled.decisions),
        ("oracle", ORACLE_NAMES[loaded.framework]),
        ("samples", f"{args.samples} random input sets, seed {args.seed}"),
        ("target", target_text),
    )
    columns = ["output", "shape", "dtype", "max abs error", "error", "limit", "result"]
    print(format_table(columns, [_check_cells(c) for c in worst], "lllrrrl"))
    for check in worst:
        if check.note:
            print(f"{check.name}: {check.note}")
    failed = sum(not c.ok for c in worst)
    oracle_name = ORACLE_NAMES[loaded.framework].split(" (")[0]
    print()
    if failed:
        print(f"FAIL: {failed} of {len(worst)} outputs differ from {oracle_name} beyond the limit")
        return EXIT_DISAGREE
    print(f"OK: every output agrees with {oracle_name}")
    return 0


def _check_cells(check: OutputCheck) -> list[str]:
    if check.rule == "relative":
        error, limit = f"{check.error:.2g} rel", f"{check.limit:g} rel"
    elif check.rule == "steps":
        error, limit = f"{check.error:g} steps", f"{check.limit:g} step"
    else:
        error, limit = f"{check.error:g}", "exact"
    return [
        short_name(check.name), shape_text(check.shape), check.dtype,
        f"{check.max_abs_error:.3g}", error, limit, "ok" if check.ok else "FAIL",
    ]  # fmt: skip
