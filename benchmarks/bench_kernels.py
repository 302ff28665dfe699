"""Our sparse kernels against dense and TVM's own sparse kernels, built for this CPU.

Rows: a 2048x2048 fully connected layer at batch 1 (density 0.10 and 0.05, element-random;
density 0.10 in 1x4 blocks), at batch 16 (density 0.10), and a 1024-2048-1024 two-layer MLP
(ReLU between, 90% of each weight zero) at batch 1. Every module is built for the host CPU
(``sparse_import.target.host_target``); "TVM sparse" is the same ``nn.sparse_dense``
module built with TVM 0.19's implementations only (``strategy.tvm_kernels``).

All modules of all rows are timed in interleaved rounds (each round times every module once,
``min_repeat_ms`` per figure), and the table reports medians over rounds, with the spread
(largest interquartile range over median of a row's modules). The roofline columns: the bytes
our kernel streams (its weight arrays, input and output) per second; the same for dense (its
weight); and a one-thread NumPy copy of as many bytes as our kernel streams, timed in the same
rounds (bytes copied per second).

Targets (ours vs dense): batch 1 d=0.10 >= 3.0x, d=0.05 >= 5.0x, 1x4 blocks d=0.10 >= 4.0x,
batch 16 d=0.10 >= 2.0x, MLP >= 2.5x.

Run from the repository root: ``python -m benchmarks.bench_kernels [--rounds 9]``; the table
is also written to ``benchmarks/results/kernels.txt``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import tvm
from tvm import relay
from tvm.contrib import graph_executor

from benchmarks.common import block_sparse, element_sparse, format_table, machine
from sparse_import.relay_backend import build, strategy
from sparse_import.relay_backend.kernels import SparseOperand, sparse_dense_expr

RESULTS = Path(__file__).parent / "results" / "kernels.txt"
TARGETS = {"fc b1 d0.10": 3.0, "fc b1 d0.05": 5.0, "fc 1x4 d0.10": 4.0, "fc b16 d0.10": 2.0}
TARGETS["mlp 1024-2048-1024"] = 2.5
MIN_REPEAT_MS = 30


@dataclass
class Row:
    """One benchmark row: its weights, batch, and the timers of its modules."""

    name: str
    weights: list[sp.csr_matrix | sp.bsr_matrix]
    batch: int
    timers: dict[str, Callable[[], float]]
    sparse_bytes: int
    dense_bytes: int


def _layers(weights, batch: int, sparse: bool) -> tuple[tvm.IRModule, dict]:
    """``x -> W1 -> relu -> W2 ...`` (no ReLU after the last layer)."""
    x = relay.var("x", shape=(batch, weights[0].shape[1]))
    y, params = x, {}
    for i, weight in enumerate(weights):
        if i:
            y = relay.nn.relu(y)
        if sparse:
            y, more = sparse_dense_expr(y, SparseOperand.from_scipy(weight), f"w{i}")
        else:
            var = relay.var(f"w{i}", shape=weight.shape)
            y, more = relay.nn.dense(y, var), {f"w{i}": weight.toarray()}
        params.update(more)
    return tvm.IRModule.from_expr(relay.Function(relay.analysis.free_vars(y), y)), params


def _timer(lib: tvm.runtime.Module, inputs: dict[str, np.ndarray]) -> Callable[[], float]:
    module = graph_executor.GraphModule(lib["default"](tvm.cpu(0)))
    for name, value in inputs.items():
        module.set_input(name, value)
    evaluator = module.module.time_evaluator(
        "run", tvm.cpu(0), number=1, repeat=1, min_repeat_ms=MIN_REPEAT_MS
    )
    return lambda: float(evaluator().mean)


def _copy_timer(nbytes: int) -> Callable[[], float]:
    """Seconds to copy ``nbytes`` with NumPy (one thread, ``memcpy``), averaged over as many
    copies as fill ``MIN_REPEAT_MS``. TVM's own elementwise kernels copy 5x slower."""
    source = np.ones(max(1, nbytes // 8), np.float64)
    target = np.empty_like(source)

    def measure() -> float:
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < MIN_REPEAT_MS / 1e3 or not count:
            np.copyto(target, source)
            count += 1
        return elapsed / count

    return measure


def make_row(name: str, weights: list, batch: int, rng: np.random.Generator) -> Row:
    x = {"x": rng.standard_normal((batch, weights[0].shape[1])).astype(np.float32)}
    dense_mod, dense_params = _layers(weights, batch, sparse=False)
    sparse_mod, sparse_params = _layers(weights, batch, sparse=True)
    with strategy.tvm_kernels():
        tvm_lib = build(sparse_mod, sparse_params)
    ours_lib = build(sparse_mod, sparse_params)
    dense_lib = build(dense_mod, dense_params)
    outputs = {"x": x["x"]}
    expected = _reference(weights, x["x"])
    for lib in (ours_lib, tvm_lib, dense_lib):
        module = graph_executor.GraphModule(lib["default"](tvm.cpu(0)))
        module.set_input(**outputs)
        module.run()
        np.testing.assert_allclose(module.get_output(0).numpy(), expected, rtol=1e-3, atol=1e-3)
    arrays = sum(int(np.asarray(v).nbytes) for v in sparse_params.values())
    streamed = arrays + 4 * batch * sum(w.shape[0] + w.shape[1] for w in weights)
    timers = {
        "dense": _timer(dense_lib, x),
        "tvm": _timer(tvm_lib, x),
        "ours": _timer(ours_lib, x),
        "copy": _copy_timer(streamed),
    }
    dense_bytes = sum(4 * w.shape[0] * w.shape[1] for w in weights)
    return Row(name, weights, batch, timers, streamed, dense_bytes)


def _reference(weights, x: np.ndarray) -> np.ndarray:
    y = x.astype(np.float64)
    for i, weight in enumerate(weights):
        if i:
            y = np.maximum(y, 0.0)
        y = y @ weight.toarray().astype(np.float64).T
    return y


def rows(rng: np.random.Generator) -> list[Row]:
    fc = (2048, 2048)
    return [
        make_row("fc b1 d0.10", [element_sparse(rng, fc, 0.10)], 1, rng),
        make_row("fc b1 d0.05", [element_sparse(rng, fc, 0.05)], 1, rng),
        make_row("fc 1x4 d0.10", [block_sparse(rng, fc, 0.10, (1, 4))], 1, rng),
        make_row("fc b16 d0.10", [element_sparse(rng, fc, 0.10)], 16, rng),
        make_row(
            "mlp 1024-2048-1024",
            [element_sparse(rng, (2048, 1024), 0.10), element_sparse(rng, (1024, 2048), 0.10)],
            1,
            rng,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    table = rows(np.random.default_rng(20261130))
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for row in table:
            for kind, timer in row.timers.items():
                times.setdefault((row.name, kind), []).append(timer())
    lines = []
    for row in table:
        median = {k: float(np.median(times[row.name, k])) for k in row.timers}
        spread = max(
            float(np.subtract(*np.percentile(times[row.name, k], [75, 25]))) / median[k]
            for k in row.timers
        )
        ours_gbs = row.sparse_bytes / median["ours"] / 1e9
        dense_gbs = row.dense_bytes / median["dense"] / 1e9
        copy_gbs = row.sparse_bytes / median["copy"] / 1e9
        speedup = median["dense"] / median["ours"]
        lines.append(
            [
                row.name,
                median["dense"] * 1e3,
                median["tvm"] * 1e3,
                median["ours"] * 1e3,
                f"{speedup:.2f}x",
                f"{TARGETS[row.name]:.1f}x",
                f"{median['dense'] / median['tvm']:.2f}x",
                f"{ours_gbs:.1f}",
                f"{dense_gbs:.1f}",
                f"{copy_gbs:.1f}",
                f"{spread:.0%}",
            ]
        )
    header = [
        "row",
        "dense ms",
        "TVM sparse ms",
        "ours ms",
        "dense/ours",
        "target",
        "dense/TVM",
        "ours GB/s",
        "dense GB/s",
        "copy GB/s",
        "spread",
    ]
    text = "\n".join(
        [
            machine(),
            f"{args.rounds} interleaved rounds, medians; spread = largest IQR / median in the row",
            format_table(header, lines),
        ]
    )
    print(text)
    RESULTS.write_text(text + "\n")


if __name__ == "__main__":
    main()
