"""Fully connected layers through the library's front door: dense, sparse and auto next to peers.

Rows: a 2048x2048 fully connected layer at batch 1 (density 0.10 and 0.05, element-random;
density 0.10 in 1x4 blocks), at batch 16 (density 0.10), and the 1024-2048-1024 MLP made by
TensorFlow's converter (``models/mlp_1024_2048_1024.tflite``: ReLU between, 90 % of each weight
zero, stored sparse behind ``DENSIFY``; ``make_mlp_tflite.py`` writes it) at batch 1.

Every TVM module comes from ``sparse_import.to_relay(model, mode=...)`` (the FC rows from the
SciPy weight, the MLP from the ``.tflite`` file) and is built for the host CPU; "TVM kernels" is
the sparse-mode module built with TVM 0.19's own sparse implementations
(``strategy.tvm_kernels``). Peers, never dependencies: onnxruntime (graph optimizations on) on
an ONNX ``MatMul`` with the dense weight for the FC rows; LiteRT with its default delegate
(XNNPACK) on the ``.tflite`` file for the MLP; DeepSparse 1.8 on the FC rows' ONNX models where
its Python 3.10 venv exists (``--deepsparse-python``). Every output is checked against a
float64 NumPy product (TFLite: its weights read back from LiteRT) before timing.

One table per thread count (``--threads``, default 1 and every CPU; TVM's default on this
2-vCPU machine is one thread, since it counts one thread per physical core), each from a child
process with ``TVM_NUM_THREADS`` set; the peers run on the same number of threads, in the
tables of ``--peer-threads`` (default 1). On 2 threads the runtimes' worker pools share the two
cores and keep spinning after each run: a 0.03 ms layer timed next to onnxruntime and DeepSparse
spread 100-240 % between rounds, so that table times TVM's modes alone. Within a
table all modules of all rows are timed in interleaved rounds (each round times every module
once, ``MIN_REPEAT_MS`` per figure); medians over rounds, and the spread (largest interquartile
range over median of a row's modules). Roofline columns: the bytes auto's module streams (its
parameters, input and output) per second; the same for dense (its weight); and a one-thread
NumPy copy of as many bytes as auto's module streams, timed in the same rounds.

Targets (auto vs dense): batch 1 d=0.10 >= 3.0x, d=0.05 >= 5.0x, 1x4 blocks d=0.10 >= 4.0x,
batch 16 d=0.10 >= 2.0x, MLP >= 2.5x; auto within 10 % of the better of dense and sparse.

Run from the repository root: ``python -m benchmarks.bench_kernels [--rounds 11]``; the tables
are also written to ``benchmarks/results/kernels.txt``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import scipy.sparse as sp
from onnx import TensorProto, helper, numpy_helper

import sparse_import
from benchmarks import bench_models
from benchmarks.common import block_sparse, element_sparse, format_table, machine
from sparse_import.relay_backend import build, strategy

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "kernels.txt"
MLP = HERE / "models" / "mlp_1024_2048_1024.tflite"
TARGETS = {"fc b1 d0.10": 3.0, "fc b1 d0.05": 5.0, "fc 1x4 d0.10": 4.0, "fc b16 d0.10": 2.0}
TARGETS["mlp 1024-2048-1024"] = 2.5
MODES = ("dense", "sparse", "auto")
MIN_REPEAT_MS = 30
PAUSE_MS = 100
"""Idle sample before each figure (``bench_models.Quiet``). The runtimes keep their worker
threads spinning after a run (DeepSparse pins one per core and spins them in step): taken back
to back on 2 threads, DeepSparse's 2048x2048 layer took 31 ms instead of 0.5 ms, and
onnxruntime's 0.7 ms instead of 0.14 ms, depending on what ran before."""
QUIET_BUDGET_S = 300


@dataclass
class Row:
    """One benchmark row: its timers, their outputs, and the bytes for the roofline columns."""

    name: str
    timers: dict[str, Callable[[], float]] = field(default_factory=dict)
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    reference: np.ndarray | None = None
    auto_bytes: int = 0
    dense_bytes: int = 0
    auto_is: str = ""


def _nbytes(params: dict) -> int:
    return sum(
        int(np.asarray(v.numpy() if hasattr(v, "numpy") else v).nbytes) for v in params.values()
    )


def _tvm(row: Row, model, inputs: dict[str, np.ndarray]) -> None:
    """Import ``model`` in every mode (and sparse with TVM's kernels), build, time."""
    shapes = {name: value.shape for name, value in inputs.items()}
    for mode in MODES:
        mod, params = sparse_import.to_relay(model, mode=mode, shape_dict=shapes)
        lib = build(mod, params)
        key = f"TVM {mode}"
        row.outputs[key] = bench_models.tvm_outputs(lib, inputs)[0]
        row.timers[key] = bench_models.tvm_timer(lib, inputs, MIN_REPEAT_MS)
        if mode == "auto":
            io = sum(v.nbytes for v in inputs.values()) + row.outputs[key].nbytes
            row.auto_bytes = _nbytes(params) + io
        if mode == "sparse":
            with strategy.tvm_kernels():
                lib = build(mod, params)
            row.outputs["TVM kernels"] = bench_models.tvm_outputs(lib, inputs)[0]
            row.timers["TVM kernels"] = bench_models.tvm_timer(lib, inputs, MIN_REPEAT_MS)
    rows = sparse_import.inspect(model, mode="auto", shape_dict=shapes)
    row.auto_is = "+".join(sorted({r["lowering"] for r in rows}))


def _onnx_matmul(weight: np.ndarray, batch: int) -> onnx.ModelProto:
    """``y = x @ W.T`` as one ONNX ``MatMul`` with a dense initializer."""
    units, features = weight.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "wt"], ["y"])],
        "fc",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, units])],
        [numpy_helper.from_array(np.ascontiguousarray(weight.T), "wt")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # DeepSparse 1.8 reads IR versions up to 9
    return model


@dataclass
class Peers:
    """The peers a table runs (none: TVM's modes only) on ``threads`` threads."""

    threads: int
    enabled: bool
    deepsparse: bench_models.DeepSparse | None
    work: Path


def fc_row(name: str, weight, batch: int, rng, peers: Peers) -> Row:
    row = Row(name)
    x = rng.standard_normal((batch, weight.shape[1])).astype(np.float32)
    dense = weight.toarray()
    row.reference = x.astype(np.float64) @ dense.astype(np.float64).T
    row.dense_bytes = dense.nbytes
    _tvm(row, weight, {"x": x})
    if not peers.enabled:
        return row
    model = _onnx_matmul(dense, batch)
    session = bench_models.ort_session(model, optimize=True, threads=peers.threads)
    row.outputs["onnxruntime"] = session.run(None, {"x": x})[0]
    row.timers["onnxruntime"] = bench_models.loop_timer(
        lambda: session.run(None, {"x": x}), MIN_REPEAT_MS, bench_models.unpin
    )
    deepsparse = peers.deepsparse
    if deepsparse is not None:
        key = name.replace(" ", "_").replace(".", "")
        paths = [peers.work / f"{key}{suffix}" for suffix in (".onnx", "_in.npz", "_out.npz")]
        onnx.save(model, paths[0])
        np.savez(paths[1], x)
        deepsparse.request(
            cmd="load",
            name=key,
            model=str(paths[0]),
            inputs=str(paths[1]),
            outputs=str(paths[2]),
            cores=peers.threads,
            batch=batch,
        )
        with np.load(paths[2]) as data:
            row.outputs["DeepSparse"] = data["arr_0"]
        row.timers["DeepSparse"] = lambda: deepsparse.request(
            cmd="time", name=key, min_ms=MIN_REPEAT_MS
        )["seconds"]
    return row


def mlp_row(rng, peers: Peers) -> Row:
    from ai_edge_litert.interpreter import Interpreter

    row = Row("mlp 1024-2048-1024")
    data = MLP.read_bytes()
    interpreter = Interpreter(model_content=data, num_threads=peers.threads)
    interpreter.allocate_tensors()
    (entry,) = interpreter.get_input_details()
    x = rng.standard_normal(tuple(entry["shape"])).astype(np.float32)
    row.reference = _tflite_reference(data, x)
    row.dense_bytes = sum(4 * a * b for a, b in ((2048, 1024), (1024, 2048)))
    _tvm(row, data, {entry["name"]: x})
    if not peers.enabled:
        return row
    out = interpreter.get_output_details()[0]["index"]

    def run() -> None:
        interpreter.set_tensor(entry["index"], x)
        interpreter.invoke()

    run()
    row.outputs["LiteRT"] = interpreter.get_tensor(out).copy()
    row.timers["LiteRT"] = bench_models.loop_timer(run, MIN_REPEAT_MS, bench_models.unpin)
    return row


def _tflite_reference(data: bytes, x: np.ndarray) -> np.ndarray:
    """The MLP in float64 NumPy, its weights and biases read from LiteRT's densified tensors."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_content=data,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        experimental_preserve_all_tensors=True,
    )
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    y = x.astype(np.float64)
    layers = [op for op in interpreter._get_ops_details() if op["op_name"] == "FULLY_CONNECTED"]
    for i, op in enumerate(layers):
        weight, bias = (interpreter.get_tensor(t).astype(np.float64) for t in op["inputs"][1:3])
        y = y @ weight.T + bias
        if i + 1 < len(layers):
            y = np.maximum(y, 0.0)
    return y


def _copy_timer(nbytes: int) -> Callable[[], float]:
    """Seconds to copy ``nbytes`` with NumPy (one thread, ``memcpy``), averaged over as many
    copies as fill ``MIN_REPEAT_MS``."""
    source = np.ones(max(1, nbytes // 8), np.float64)
    target = np.empty_like(source)

    def measure() -> float:
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < MIN_REPEAT_MS / 1e3 or not count:
            np.copyto(target, source)
            count += 1
        return elapsed / count

    return measure


def rows(peers: Peers) -> list[Row]:
    rng = np.random.default_rng(20261130)
    fc = (2048, 2048)
    blocked = sp.csr_matrix(block_sparse(rng, fc, 0.10, (1, 4)))
    table = [
        fc_row("fc b1 d0.10", element_sparse(rng, fc, 0.10), 1, rng, peers),
        fc_row("fc b1 d0.05", element_sparse(rng, fc, 0.05), 1, rng, peers),
        fc_row("fc 1x4 d0.10", blocked, 1, rng, peers),
        fc_row("fc b16 d0.10", element_sparse(rng, fc, 0.10), 16, rng, peers),
        mlp_row(rng, peers),
    ]
    for row in table:
        scale = max(float(np.max(np.abs(row.reference))), 1e-30)
        for key, y in row.outputs.items():
            error = float(np.max(np.abs(y.astype(np.float64) - row.reference))) / scale
            if error > 1e-4:
                raise AssertionError(f"{row.name}: {key} is {error:.1e} off the float64 product")
        row.timers["copy"] = _copy_timer(row.auto_bytes)
    return table


PEERS = ("onnxruntime", "LiteRT", "DeepSparse")


def table_text(threads: int, rounds: int, deepsparse_python: Path | None) -> str:
    """Build every row, time them in ``rounds`` interleaved rounds, format the tables (peers
    unless ``deepsparse_python`` is ``None``, DeepSparse when it exists)."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        deepsparse = None
        if deepsparse_python is not None and deepsparse_python.exists():
            deepsparse = bench_models.DeepSparse(deepsparse_python, work / "deepsparse.log")
        try:
            table = rows(Peers(threads, deepsparse_python is not None, deepsparse, work))
            quiet = bench_models.Quiet(pause_ms=PAUSE_MS, budget_s=QUIET_BUDGET_S)
            if deepsparse is not None:
                quiet.pids.append(deepsparse.process.pid)
            times = bench_models.measure(table, rounds, quiet)  # rows take a Case's place
        finally:
            if deepsparse is not None:
                deepsparse.close()
    speed, peers = [], []
    for row in table:
        median = {k: float(np.median(times[row.name, k])) for k in row.timers}
        spread = max(
            float(np.subtract(*np.percentile(times[row.name, k], [75, 25]))) / median[k]
            for k in row.timers
        )
        dense, auto = median["TVM dense"], median["TVM auto"]
        best = min(dense, median["TVM sparse"])
        speed.append(
            [
                row.name,
                dense * 1e3,
                median["TVM sparse"] * 1e3,
                auto * 1e3,
                row.auto_is,
                f"{dense / auto:.2f}x",
                f"{TARGETS[row.name]:.1f}x",
                f"{auto / best:.2f}",
                f"{dense / median['TVM kernels']:.2f}x",
                f"{row.auto_bytes / auto / 1e9:.1f}",
                f"{row.dense_bytes / dense / 1e9:.1f}",
                f"{row.auto_bytes / median['copy'] / 1e9:.1f}",
                f"{spread:.0%}",
            ]
        )
        if not any(p in median for p in PEERS):
            continue
        best_peer = min((p for p in PEERS if p in median), key=median.get)
        peers.append(
            [row.name, auto * 1e3]
            + [f"{median[p] * 1e3:.3f}" if p in median else "-" for p in PEERS]
            + [best_peer, median[best_peer] * 1e3, f"{median[best_peer] / auto:.2f}x"]
        )
    header = [
        "row",
        "dense ms",
        "sparse ms",
        "auto ms",
        "auto is",
        "dense/auto",
        "target",
        "auto/best",
        "dense/TVM kernels",
        "auto GB/s",
        "dense GB/s",
        "copy GB/s",
        "spread",
    ]
    peer_header = ["row", "TVM auto ms", *(f"{p} ms" for p in PEERS)]
    peer_header += ["best peer", "best peer ms", "best peer/auto"]
    who = "TVM and every peer" if peers else "TVM (no peers: see --peer-threads)"
    lines = [
        machine(),
        f"{rounds} interleaved rounds, medians; {who} on {threads} thread(s); spread = largest "
        f"IQR / median in the row; {quiet.retaken} of {quiet.figures} figures retaken and "
        f"{quiet.loaded} taken under load from other processes",
        format_table(header, speed),
    ]
    if peers:
        lines += [
            "",
            "peers (time of the fastest peer over TVM auto's: above 1 means auto is faster)",
            format_table(peer_header, peers),
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument(
        "--threads", default=f"1,{os.cpu_count() or 1}", help="comma-separated thread counts"
    )
    parser.add_argument(
        "--peer-threads", default="1", help="comma-separated thread counts whose table has peers"
    )
    parser.add_argument("--deepsparse-python", type=Path, default=bench_models.DEEPSPARSE_PYTHON)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--no-peers", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        python = None if args.no_peers else args.deepsparse_python
        print(json.dumps(table_text(args.child, args.rounds, python)))
        return
    with_peers = {int(t) for t in args.peer_threads.split(",") if t}
    texts = []
    for threads in dict.fromkeys(int(t) for t in args.threads.split(",")):
        env = {**os.environ, "TVM_NUM_THREADS": str(threads), "TOPHUB_LOCATION": "NONE"}
        command = [sys.executable, "-m", "benchmarks.bench_kernels", "--child", str(threads)]
        command += ["--rounds", str(args.rounds)]
        command += ["--deepsparse-python", str(args.deepsparse_python)]
        command += [] if threads in with_peers else ["--no-peers"]
        done = subprocess.run(command, env=env, check=True, stdout=subprocess.PIPE, text=True)
        texts.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(texts[-1] + "\n", flush=True)
    RESULTS.write_text("\n\n".join(texts) + "\n")


if __name__ == "__main__":
    main()
