"""Wall time and peak memory of ``to_relay`` on an ONNX model with two 4096x4096 sparse weights.

The model is ``y = relu(x @ W1) @ W2`` with both weights stored as ONNX sparse initializers
(10% dense, COO with ``[NNZ, 2]`` indices). Each measurement runs in a fresh process, which
reports the wall time of the call, the growth of the process's peak RSS over its RSS before the
call (TVM's own allocations included), and the peak of Python-visible allocations
(``tracemalloc``, which sees NumPy's buffers). For reference
the same model with dense initializers goes through TVM's own ``relay.frontend.from_onnx``.

Run from the repository root: ``python -m benchmarks.bench_import``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import format_table, machine

SIZE, DENSITY, BATCH = 4096, 0.1, 1

_CHILD = r"""
import json, sys, time, tracemalloc
import onnx
model = onnx.load(sys.argv[1])
import sparse_import, tvm.relay  # imports and their memory are not part of the measurement
kind = sys.argv[2]

def status(field):  # kB
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
rss0 = status("VmRSS")
tracemalloc.start()
start = time.perf_counter()
if kind == "tvm":
    mod, params = tvm.relay.frontend.from_onnx(model, freeze_params=False)
else:
    mod, params = sparse_import.to_relay(model, mode=kind)
seconds = time.perf_counter() - start
traced = tracemalloc.get_traced_memory()[1]
rss = status("VmHWM") - rss0
size = sum(v.numpy().nbytes if hasattr(v, "numpy") else v.nbytes for v in params.values())
print(json.dumps({"seconds": seconds, "traced": traced, "rss_kib": rss, "params": size}))
"""


def make_models(directory: Path) -> tuple[Path, Path]:
    """Write the sparse model and its dense twin; return their paths."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    sparse, dense = [], []
    for name in ("W1", "W2"):
        count = round(DENSITY * SIZE * SIZE)
        flat = np.sort(rng.choice(SIZE * SIZE, size=count, replace=False))
        values = rng.standard_normal(count).astype(np.float32)
        indices = np.stack(np.divmod(flat, SIZE), axis=1).astype(np.int64)
        sparse.append(
            helper.make_sparse_tensor(
                numpy_helper.from_array(values, name),
                numpy_helper.from_array(indices, f"{name}_idx"),
                [SIZE, SIZE],
            )
        )
        array = np.zeros(SIZE * SIZE, np.float32)
        array[flat] = values
        dense.append(numpy_helper.from_array(array.reshape(SIZE, SIZE), name))
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "W2"], ["y"]),
    ]
    io = (
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [BATCH, SIZE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [BATCH, SIZE])],
    )
    paths = []
    for tag, kwargs in (
        ("sparse", {"sparse_initializer": sparse}),
        ("dense", {"initializer": dense}),
    ):
        graph = helper.make_graph(nodes, tag, *io, **kwargs)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        path = directory / f"{tag}.onnx"
        onnx.save(model, path)
        paths.append(path)
    return paths[0], paths[1]


def run(path: Path, kind: str) -> dict:
    """Run one import in a fresh interpreter and return its measurements."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), kind], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sparse_path, dense_path = make_models(Path(tmp))
        cases = [
            ("to_relay mode=dense", sparse_path, "dense"),
            ("to_relay mode=sparse", sparse_path, "sparse"),
            ("to_relay mode=auto", sparse_path, "auto"),
            ("TVM from_onnx, dense initializers", dense_path, "tvm"),
        ]
        rows = []
        for label, path, kind in cases:
            result = min((run(path, kind) for _ in range(2)), key=lambda r: r["seconds"])
            rows.append(
                (
                    label,
                    result["seconds"],
                    result["rss_kib"] / 1024,
                    result["traced"] / 2**20,
                    result["params"] / 2**20,
                )
            )
        sizes = {p.name: p.stat().st_size / 2**20 for p in (sparse_path, dense_path)}
    print(machine())
    print(f"model: two {SIZE}x{SIZE} weights at density {DENSITY}; file sizes (MiB): {sizes}")
    print(
        format_table(
            ("import", "wall s", "peak RSS growth MiB", "peak traced MiB", "params MiB"), rows
        )
    )


if __name__ == "__main__":
    main()
