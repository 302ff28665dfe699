"""Inference latency and params size of the three lowering modes, side by side.

For every weight of the FC grid (shapes 2048x2048 and 4096x1024, densities 0.5 to 0.02, batch
1 and 16) the one-layer module ``y = x @ W.T`` is imported from the IR and lowered in mode
``dense``, ``sparse`` and ``auto``; the three modules are built and timed in the same run
(minimum over three interleaved rounds of 15 repeats), and their params are weighed. When
``auto`` makes the same choice as another mode, the two modules are identical and are built and
timed once.

Targets: ``sparse`` at least 3x faster than ``dense`` at density 0.05 for 2048x2048 batch 1;
``auto`` within 10% of the better of ``dense`` and ``sparse`` on every row; sparse params at
density 0.1 at most 0.2x the dense bytes.

Run from the repository root: ``python -m benchmarks.bench_inference [--tiles 1x4] [--quick]``.
"""

from __future__ import annotations

import argparse

import numpy as np
import tvm

from benchmarks.common import block_sparse, element_sparse, format_table, machine
from sparse_import import from_scipy
from sparse_import.relay_backend import build, lower, single_layer, time_module

SHAPES = ((2048, 2048), (4096, 1024))
DENSITIES = (0.5, 0.3, 0.1, 0.05, 0.02)
BATCHES = (1, 16)
MODES = ("dense", "sparse", "auto")
ROUNDS = 3


def _nbytes(params: dict) -> int:
    return sum(np.asarray(v.numpy() if hasattr(v, "numpy") else v).nbytes for v in params.values())


def _label(decision) -> str:
    if decision.lowering == "bsr":
        return "bsr{}x{}".format(*decision.block)
    return "csr_lhs" if decision.sparse_lhs else decision.lowering


def measure(rng, shape, density: float, batch: int, tiles: tuple[int, int]) -> tuple:
    """One table row: latency, choice and params bytes of each mode for one weight."""
    if tiles == (1, 1):
        matrix = element_sparse(rng, shape, density)  # the model stores CSR
    else:
        matrix = block_sparse(rng, shape, density, tiles)  # the model stores its own blocks
    weight = from_scipy(matrix, name="w")
    imported = single_layer.import_model(weight, shape_dict={"x": (batch, shape[1])})
    x = {"x": rng.standard_normal((batch, shape[1])).astype(np.float32)}
    built, labels, sizes, same = {}, {}, {}, {}
    lowered = {}
    for mode in MODES:
        mod, params, (decision,) = lower(imported, mode=mode)
        labels[mode], sizes[mode] = _label(decision), _nbytes(params)
        # A mode that lowers to the very module of an earlier mode shares its build and timing:
        # timing one module twice would only measure the machine's noise.
        same[mode] = next(
            (
                m
                for m, (other, p) in lowered.items()
                if sorted(p) == sorted(params) and tvm.ir.structural_equal(other, mod)
            ),
            mode,
        )
        lowered[mode] = (mod, params)
        if same[mode] == mode:
            built[mode] = build(mod, params)
    best = {mode: float("inf") for mode in built}
    for _ in range(ROUNDS):
        for mode in built:
            best[mode] = min(best[mode], time_module(built[mode], x).best * 1e3)
    best = {mode: best[same[mode]] for mode in MODES}
    t_dense, t_sparse, t_auto = (best[m] for m in MODES)
    return (
        f"{shape[0]}x{shape[1]}",
        batch,
        density,
        t_dense,
        t_sparse,
        labels["sparse"],
        t_auto,
        labels["auto"],
        t_dense / t_sparse,
        t_auto / min(t_dense, t_sparse),
        sizes["dense"],
        sizes["sparse"],
        sizes["sparse"] / sizes["dense"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", default="1x1", help="tile shape of the nonzeros, e.g. 1x4")
    parser.add_argument("--quick", action="store_true", help="one shape, two densities")
    args = parser.parse_args()
    tiles = tuple(int(n) for n in args.tiles.split("x"))
    rng = np.random.default_rng(0)
    shapes, densities = (SHAPES[:1], (0.1, 0.05)) if args.quick else (SHAPES, DENSITIES)
    rows = [
        measure(rng, shape, d, b, tiles) for shape in shapes for b in BATCHES for d in densities
    ]
    print(machine(), f"| nonzeros drawn in {args.tiles} tiles")
    print(
        format_table(
            (
                "weight",
                "batch",
                "density",
                "dense ms",
                "sparse ms",
                "sparse is",
                "auto ms",
                "auto is",
                "dense/sparse",
                "auto/best",
                "dense bytes",
                "sparse bytes",
                "sparse/dense",
            ),
            rows,
        )
    )
    worst = max(r[9] for r in rows)
    print(f"worst auto/best(dense, sparse): {worst:.3f}")


if __name__ == "__main__":
    main()
