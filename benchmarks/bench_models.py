"""Pruned ONNX models end to end: TVM's three modes next to onnxruntime and DeepSparse.

Models (``tests/fixtures/onnx/make_models.py``, built from onnx's own light test models with
seeded random, magnitude-pruned weights stored as sparse initializers): ResNet-50 with 90% of
every convolution and classifier weight zero, and SqueezeNet 1.1 with 75% zero, both on a
``(1, 3, 224, 224)`` image.

Systems: TVM modes ``dense``, ``sparse`` and ``auto`` (``sparse_import.to_relay`` then the
benchmarks' shared build, for this CPU, on 2 threads: ``TVM_NUM_THREADS=2`` unless set, as TVM's
default here is one); onnxruntime's CPU provider
(2 intra-op threads, all graph optimizations); DeepSparse 1.8 on 2 cores, run by
``benchmarks/deepsparse_worker.py`` in its own Python 3.10 virtualenv (``--deepsparse-python``;
the column is skipped when it is missing). The peers read the same model with its sparse
initializers written as dense initializers (neither reads ``SparseTensorProto``), and only the
image as graph input, so they may fold every weight.

Every system of every model is timed in interleaved rounds (each round times each system once,
``--min-ms`` per figure, taken while no other process keeps a CPU busy (:class:`Quiet`); the
order rotates from round to round); the table reports medians
over rounds and the spread (largest interquartile range over median in the row). Ratios are
"times faster than TVM dense" (``dense / x``). Outputs are checked against onnxruntime with graph
optimizations off: ``max |y - ref| / max |ref|`` over both outputs (probabilities and logits).
Library bytes: ``export_library`` of each TVM mode, weights included.

Run from the repository root: ``python -m benchmarks.bench_models [--rounds 9]``; the full
configuration (both models, ``--size 224``) also writes ``benchmarks/results/models.txt``.
Smoke runs: ``--size 64 --rounds 2 --models squeezenet``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import tvm
from onnx import numpy_helper
from tvm.contrib import graph_executor
from tvm.contrib.debugger import debug_executor

import sparse_import
from benchmarks import common

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "models.txt"
WORKER = ROOT / "deepsparse_worker.py"
FIXTURES = ROOT.parent / "tests" / "fixtures" / "onnx" / "make_models.py"
DEEPSPARSE_PYTHON = Path("/work/dsenv/bin/python")
MODELS = {"resnet50": 0.10, "squeezenet": 0.25}  # name -> density
MODES = ("dense", "sparse", "auto")
PEERS = ("onnxruntime", "DeepSparse")
THREADS = 2
FULL_SIZE = 224
PROFILE_MS = 10  # least time per operator and repeat in the profile


def _fixtures():
    spec = importlib.util.spec_from_file_location("onnx_fixture_models", FIXTURES)
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- peers' model
def dense_copy(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with every main-graph sparse initializer as a dense initializer and no graph
    input that names an initializer."""
    out = onnx.ModelProto.FromString(model.SerializeToString())
    graph = out.graph
    for sparse in graph.sparse_initializer:
        values = numpy_helper.to_array(sparse.values)
        indices = numpy_helper.to_array(sparse.indices).astype(np.int64)
        dense = np.zeros(tuple(sparse.dims), values.dtype)
        if indices.ndim == 2:
            dense[tuple(indices.T)] = values
        else:  # linearized
            dense.reshape(-1)[indices] = values
        graph.initializer.append(numpy_helper.from_array(dense, sparse.values.name))
    del graph.sparse_initializer[:]
    names = {t.name for t in graph.initializer}
    kept = [vi for vi in graph.input if vi.name not in names]
    del graph.input[:]
    graph.input.extend(kept)
    return out


def unpin() -> None:
    """Let this thread run on every CPU again.

    TVM's thread pool binds the calling thread to CPU 0 when a kernel launches with another task
    count than the last (our sparse kernels do); onnxruntime runs on the calling thread and its
    pool's threads inherit the affinity of the thread that creates the session, so without this
    it would run on one core.
    """
    os.sched_setaffinity(0, range(os.cpu_count() or 1))


def ort_session(model: onnx.ModelProto, *, optimize: bool, threads: int = THREADS):
    import onnxruntime as ort

    unpin()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if optimize
        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


class DeepSparse:
    """The worker process (``deepsparse_worker.py``) and its line protocol."""

    def __init__(self, python: Path, log: Path):
        env = {**os.environ, "NM_DISABLE_ANALYTICS": "1"}
        self.log = log
        self.process = subprocess.Popen(
            [str(python), str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("w"),
            text=True,
            env=env,
        )

    def request(self, **command) -> dict:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            tail = self.log.read_text()[-2000:]
            raise RuntimeError(f"DeepSparse worker exited ({self.process.poll()}): {tail}")
        answer = json.loads(line)
        if not answer["ok"]:
            raise RuntimeError(f"DeepSparse worker: {answer['error']}")
        return answer

    def close(self) -> None:
        if self.process.poll() is None:
            self.request(cmd="quit")
            self.process.wait(timeout=60)


# --------------------------------------------------------------------------- one model
@dataclass
class Case:
    """One model: its timers, outputs per system, library bytes and the weights' lowerings."""

    name: str
    density: float
    timers: dict[str, Callable[[], float]] = field(default_factory=dict)
    outputs: dict[str, list[np.ndarray]] = field(default_factory=dict)
    library_bytes: dict[str, int] = field(default_factory=dict)
    lowerings: dict[str, Counter] = field(default_factory=dict)
    profilers: dict[str, Callable[[], dict]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def tvm_timer(lib: tvm.runtime.Module, inputs: dict, min_ms: int) -> Callable[[], float]:
    module = graph_executor.GraphModule(lib["default"](tvm.cpu(0)))
    for name, value in inputs.items():
        module.set_input(name, value)
    evaluator = module.module.time_evaluator(
        "run", tvm.cpu(0), number=1, repeat=1, min_repeat_ms=min_ms
    )
    return lambda: float(evaluator().mean)


def tvm_outputs(lib: tvm.runtime.Module, inputs: dict) -> list[np.ndarray]:
    module = graph_executor.GraphModule(lib["default"](tvm.cpu(0)))
    for name, value in inputs.items():
        module.set_input(name, value)
    module.run()
    return [module.get_output(i).numpy() for i in range(module.get_num_outputs())]


def loop_timer(
    run: Callable[[], object], min_ms: int, before: Callable[[], None] = lambda: None
) -> Callable[[], float]:
    """Mean seconds of ``run`` over as many calls as fill ``min_ms`` (``before`` runs first)."""

    def measure() -> float:
        before()
        runs, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < min_ms / 1e3 or not runs:
            run()
            runs += 1
        return elapsed / runs

    return measure


def _kind(row: dict) -> str:
    shape = row["shape"]
    return f"{shape[2]}x{shape[3]}" if len(shape) == 4 else "fc"


def _lowerings(rows: list[dict]) -> Counter:
    """``(lowering, kernel size or "fc", no sparse kernel)`` -> number of weights."""
    return Counter((r["lowering"], _kind(r), r["reason"].startswith("stays dense")) for r in rows)


CATEGORIES = ("sparse kernels", "dense conv/fc", "layout", "other")


def _category(func_name: str) -> str:
    if "sparse_conv2d" in func_name or "sparse_dense" in func_name:
        return "sparse kernels"
    if "conv2d" in func_name or "_dense" in func_name or "matmul" in func_name:
        return "dense conv/fc"
    if "layout_transform" in func_name or "transpose" in func_name:
        return "layout"
    return "other"


def _profiler(lib: tvm.runtime.Module, inputs: dict) -> Callable[[], dict]:
    """Per-category seconds of one run, from TVM's debug executor (its per-op log silenced)."""

    def profile() -> dict[str, float]:
        module = debug_executor.create(lib.get_graph_json(), lib.get_lib(), tvm.cpu(0))
        module.load_params(tvm.runtime.save_param_dict(lib.get_params()))
        for name, value in inputs.items():
            module.set_input(name, value)
        saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        try:
            costs = module.run_individual(number=1, repeat=3, min_repeat_ms=PROFILE_MS)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(null)
        nodes = json.loads(lib.get_graph_json())["nodes"]
        seconds = dict.fromkeys(CATEGORIES, 0.0)
        for node, cost in zip(nodes, costs, strict=True):
            if node["op"] == "tvm_op":
                seconds[_category(node["attrs"]["func_name"])] += float(np.median(cost))
        return seconds

    return profile


def make_case(
    name: str, density: float, size: int, min_ms: int, deepsparse: DeepSparse | None, work: Path
) -> Case:
    fixture = getattr(_fixtures(), name)(size, density)
    case = Case(name, density)
    inputs = fixture.inputs
    for mode in MODES:
        start = time.perf_counter()
        mod, params = sparse_import.to_relay(fixture.model, mode=mode)
        lib = common.build(mod, params)
        path = work / f"{name}_{mode}.so"
        lib.export_library(str(path))
        case.library_bytes[mode] = path.stat().st_size
        case.timers[f"TVM {mode}"] = tvm_timer(lib, inputs, min_ms)
        case.outputs[f"TVM {mode}"] = tvm_outputs(lib, inputs)
        case.profilers[mode] = _profiler(lib, inputs)
        seconds = time.perf_counter() - start
        case.notes.append(f"{name}: TVM {mode} imported and built in {seconds:.0f} s")
        if mode != "dense":
            case.lowerings[mode] = _lowerings(sparse_import.inspect(fixture.model, mode=mode))
    dense = dense_copy(fixture.model)
    case.outputs["reference"] = ort_session(dense, optimize=False).run(None, inputs)
    session = ort_session(dense, optimize=True)
    case.outputs["onnxruntime"] = session.run(None, inputs)
    case.timers["onnxruntime"] = loop_timer(lambda: session.run(None, inputs), min_ms, unpin)
    if deepsparse is not None:
        model_path, in_path, out_path = (
            work / f"{name}{suffix}" for suffix in (".onnx", "_in.npz", "_out.npz")
        )
        onnx.save(dense, model_path)
        np.savez(in_path, *[inputs[vi.name] for vi in dense.graph.input])
        start = time.perf_counter()
        deepsparse.request(
            cmd="load",
            name=name,
            model=str(model_path),
            inputs=str(in_path),
            outputs=str(out_path),
            cores=THREADS,
        )
        with np.load(out_path) as data:
            keys = sorted(data.files, key=lambda key: int(key.rsplit("_", 1)[1]))
            case.outputs["DeepSparse"] = [data[key] for key in keys]
        case.timers["DeepSparse"] = lambda: deepsparse.request(
            cmd="time", name=name, min_ms=min_ms
        )["seconds"]
        case.notes.append(f"{name}: DeepSparse compiled in {time.perf_counter() - start:.0f} s")
    return case


def max_relative_error(outputs: list[np.ndarray], reference: list[np.ndarray]) -> float:
    """``max |y - ref| / max |ref|`` over the outputs."""
    return max(
        float(np.max(np.abs(y.astype(np.float64) - r)) / max(np.max(np.abs(r)), 1e-30))
        for y, r in zip(outputs, reference, strict=True)
    )


# --------------------------------------------------------------------------- the run


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """CPU seconds spent so far by the whole machine and by the processes ``pids``."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]  # all but idle and iowait
    ours = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read().rsplit(")", 1)[1].split()
        ours += int(stat[11]) + int(stat[12])  # utime, stime
    return busy / _TICK, ours / _TICK


@dataclass
class Quiet:
    """Takes each figure while no other process keeps a CPU busy.

    DeepSparse pins one thread per core and synchronizes them by spinning: while another process
    kept one of the 2 cores busy, its SqueezeNet ran 500x slower, and TVM's and onnxruntime's
    figures moved too. Before a figure, a ``pause_ms`` sample must show other processes using
    under a quarter of a CPU (the pause also lets onnxruntime's and DeepSparse's worker threads
    stop spinning after their last run); a figure during which they used more is taken again.
    Waits and retakes stop when ``budget_s`` seconds are spent; later figures count as loaded.
    """

    pause_ms: int
    budget_s: float
    pids: list[int] = field(default_factory=lambda: [os.getpid()])
    loaded: int = 0
    retaken: int = 0
    figures: int = 0

    def _others(self, run: Callable[[], object]) -> tuple[object, float]:
        """``run()``'s result and the CPUs other processes kept busy meanwhile."""
        busy0, ours0 = _cpu_seconds(self.pids)
        start = time.perf_counter()
        result = run()
        wall = time.perf_counter() - start
        busy1, ours1 = _cpu_seconds(self.pids)
        return result, ((busy1 - busy0) - (ours1 - ours0)) / wall

    def take(self, timer: Callable[[], float]) -> float:
        self.figures += 1
        while True:
            start = time.perf_counter()
            _, idle_load = self._others(lambda: time.sleep(self.pause_ms / 1e3))
            if idle_load > 0.25 and self.budget_s > 0:
                time.sleep(0.5)
                self.budget_s -= time.perf_counter() - start
                continue
            seconds, load = self._others(timer)
            if max(idle_load, load) <= 0.25:
                return seconds
            if self.budget_s <= 0:
                self.loaded += 1
                return seconds
            self.retaken += 1
            self.budget_s -= time.perf_counter() - start


def measure(cases: list[Case], rounds: int, quiet: Quiet) -> dict[tuple[str, str], list[float]]:
    """Seconds per run, ``rounds`` figures per (model, system), systems interleaved."""
    for case in cases:  # warm up (first runs, page faults, worker threads)
        for timer in case.timers.values():
            quiet.take(timer)
    quiet.loaded = quiet.retaken = quiet.figures = 0
    times: dict[tuple[str, str], list[float]] = {}
    for r in range(rounds):
        for case in cases:
            systems = list(case.timers)
            shift = r % len(systems)
            for system in systems[shift:] + systems[:shift]:
                times.setdefault((case.name, system), []).append(quiet.take(case.timers[system]))
    return times


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if np.isfinite(a / b) else "-"


def report(cases: list[Case], times: dict, profiles: dict, rounds: int, size: int) -> str:
    systems = [f"TVM {m}" for m in MODES] + list(PEERS)
    tvm_threads = tvm.get_global_func("runtime.NumThreads")()
    latency, fastest, ratios, checks, sizes, shares = [], [], [], [], [], []
    for case in cases:
        label = f"{case.name} d={case.density:.2f}"
        ran = [s for s in systems if s in case.timers]
        median = {s: float(np.median(times[case.name, s])) for s in ran}
        best = {s: float(np.min(times[case.name, s])) for s in ran}
        spread = max(
            float(np.subtract(*np.percentile(times[case.name, s], [75, 25]))) / median[s]
            for s in ran
        )
        latency.append([label, *(median[s] * 1e3 if s in ran else "-" for s in systems)])
        latency[-1].append(f"{spread:.0%}")
        fastest.append([label, *(best[s] * 1e3 if s in ran else "-" for s in systems)])
        dense = median["TVM dense"]
        best_peer = min(median[s] for s in PEERS if s in median)
        best_tvm = min(median[f"TVM {m}"] for m in MODES)
        ratios.append(
            [
                label,
                _ratio(dense, median["TVM auto"]),
                _ratio(dense, median["TVM sparse"]),
                _ratio(dense, best_peer),
                _ratio(best_tvm, best_peer),
            ]
        )
        reference = case.outputs["reference"]
        checks.append(
            [label]
            + [
                f"{max_relative_error(case.outputs[s], reference):.1e}"
                if s in case.outputs
                else "-"
                for s in systems
            ]
        )
        lib = case.library_bytes
        mib = [f"{lib[m] / 2**20:.1f}" for m in MODES]
        sizes.append(
            [label, *mib, _ratio(lib["dense"], lib["sparse"]), _ratio(lib["dense"], lib["auto"])]
        )
        for mode in MODES:
            seconds = profiles[case.name, mode]
            total = sum(seconds.values())
            shares.append(
                [label, mode, total * 1e3, *(f"{seconds[c] / total:.0%}" for c in CATEGORIES)]
            )
    lines = [
        common.machine(),
        f"input (1, 3, {size}, {size}), batch 1; TVM runs {tvm_threads} threads, onnxruntime and "
        f"DeepSparse {THREADS}; "
        f"{rounds} interleaved rounds, medians; spread = largest IQR / median in the row",
        common.format_table(["model", *(f"{s} ms" for s in systems), "spread"], latency),
        "",
        "times faster than TVM dense (dense / x); best peer = the faster of onnxruntime and "
        "DeepSparse; best TVM = the fastest TVM mode",
        common.format_table(
            ["model", "auto", "sparse", "best peer", "best peer vs best TVM"], ratios
        ),
        "",
        "fastest round (ms), for runtimes that suffer most from other work on the machine",
        common.format_table(["model", *(f"{s} ms" for s in systems)], fastest),
        "",
        "max |y - ref| / max |ref| against onnxruntime with graph optimizations off",
        common.format_table(["model", *systems], checks),
        "",
        "library MiB (export_library, weights included)",
        common.format_table(
            ["model", "dense MiB", "sparse MiB", "auto MiB", "dense/sparse", "dense/auto"], sizes
        ),
        "",
        "where TVM's time goes: sum of per-operator medians (debug executor) and shares",
        common.format_table(["model", "mode", "ops ms", *CATEGORIES], shares),
        "",
        "weights per lowering (kernel size; * = no sparse kernel for this convolution)",
    ]
    for case in cases:
        for mode, counts in case.lowerings.items():
            parts = [
                f"{n} {low} {kind}{'*' if unsupported else ''}"
                for (low, kind, unsupported), n in sorted(counts.items())
            ]
            lines.append(f"  {case.name} {mode}: " + ", ".join(parts))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--size", type=int, default=FULL_SIZE, help="image height and width")
    parser.add_argument("--min-ms", type=int, default=300, help="least time per figure")
    parser.add_argument("--pause-ms", type=int, default=200, help="idle sample before a figure")
    parser.add_argument(
        "--wait-budget", type=float, default=900.0, help="seconds to wait for idle CPUs, in all"
    )
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    parser.add_argument("--deepsparse-python", type=Path, default=DEEPSPARSE_PYTHON)
    args = parser.parse_args()
    # TVM's default on this 2-vCPU machine is one thread; the peers run THREADS. Set before the
    # first TVM run starts its thread pool.
    os.environ.setdefault("TVM_NUM_THREADS", str(THREADS))
    names = [n for n in args.models.split(",") if n]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
    notes = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        deepsparse = None
        if args.deepsparse_python.exists():
            deepsparse = DeepSparse(args.deepsparse_python, work / "deepsparse.log")
        else:
            notes.append(f"DeepSparse skipped: {args.deepsparse_python} not found")
        try:
            cases = [
                make_case(n, MODELS[n], args.size, args.min_ms, deepsparse, work) for n in names
            ]
            quiet = Quiet(args.pause_ms, args.wait_budget)
            if deepsparse is not None:
                quiet.pids.append(deepsparse.process.pid)
            times = measure(cases, args.rounds, quiet)
            profiles = {(c.name, m): c.profilers[m]() for c in cases for m in MODES}
        finally:
            if deepsparse is not None:
                deepsparse.close()
    for case in cases:
        notes += case.notes
    text = report(cases, times, profiles, args.rounds, args.size)
    notes.append(
        f"{quiet.figures} figures: {quiet.retaken} taken again because other processes kept a "
        f"quarter CPU or more busy, {quiet.loaded} kept under such load (wait budget spent)"
    )
    text += "\n" + "\n".join(notes)
    print(text)
    if args.size == FULL_SIZE and names == list(MODELS):
        RESULTS.write_text(text + "\n")
    else:
        print(f"(smoke configuration: {RESULTS.relative_to(ROOT.parent)} not written)")


if __name__ == "__main__":
    main()
