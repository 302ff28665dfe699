"""Quick re-measure of the cost model for a target CPU (``sparse-import calibrate``).

Fifteen probe layers, one or two per kernel family (dense products; our batch-1 CSR, BSR and
``sell`` kernels, the last on AVX-512 targets only; the batch-N sparse product; dense and sparse
convolutions; TVM's own kernels that ``auto`` may pick: the sparse-left-hand-side product and
NHWC 3x3 sparse convolution), are built for the target and timed here; each family's scale is
the geometric mean of measured time over the built-in constants' estimate for that target's
vector width. The planner then multiplies every estimate of the family by it
(:mod:`~sparse_import.planning.calibration`), so the ratios that decide dense against sparse
are this CPU's. Timing runs on this machine: the target must be one it can run.

Examples
--------
>>> from sparse_import.relay_backend.calibrate import PROBES
>>> sorted({p.family for p in PROBES}) == sorted(
...     ["dense_product", "csr_matvec", "bsr_matvec", "sparse_matmul", "dense_conv",
...      "sparse_conv", "sparse_direct", "tvm_sparse", "sell_matvec"])
True
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import scipy.sparse as sp
import tvm
from tvm import relay

from sparse_import.planning import cost, roofline
from sparse_import.planning.calibration import Calibration
from sparse_import.planning.sell import LANES, sell_vectors
from sparse_import.target import cpu_name, resolve, runtime_threads, vector_bytes

from .build import build, time_module
from .kernels import (
    SellOperand,
    SparseOperand,
    sell_dense_expr,
    sparse_conv2d_expr,
    sparse_dense_expr,
)

__all__ = ["PROBES", "Measured", "Probe", "measure"]

_SEED = 20261201


@dataclass(frozen=True)
class Probe:
    """One probe layer: ``kind`` ``"fc"`` (``shape`` ``(units, in)``, ``batch`` rows of input;
    ``sparse_lhs``: TVM's sparse-left-hand-side kernel) or ``"conv"`` (``layout``, ``shape``
    ``(out, in)`` channels, ``kernel`` square, same padding, stride 1, ``size`` x ``size``
    maps); ``density`` 1.0 is the dense layer."""

    family: str
    kind: str
    shape: tuple[int, int]
    density: float
    batch: int = 1
    block: tuple[int, int] = (1, 1)
    kernel: int = 1
    size: int = 1
    layout: str = "NCHW"
    sparse_lhs: bool = False

    @property
    def label(self) -> str:
        rows, cols = self.shape
        if self.kind == "fc":
            what = f"fc {rows}x{cols} batch {self.batch}"
        else:
            what = f"conv {self.kernel}x{self.kernel} {cols}->{rows} on {self.size}x{self.size}"
            what += f" {self.layout}"
        if self.density < 1.0:
            what += f" d{self.density:g}"
        if self.sparse_lhs:
            what += " lhs"
        return what + (f" {self.block[0]}x{self.block[1]}" if self.block != (1, 1) else "")


PROBES = (
    Probe("dense_product", "fc", (2048, 2048), 1.0),
    Probe("dense_product", "fc", (1024, 1024), 1.0, batch=16),
    Probe("csr_matvec", "fc", (2048, 2048), 0.1),
    Probe("csr_matvec", "fc", (1024, 1024), 0.05),
    Probe("bsr_matvec", "fc", (2048, 2048), 0.1, block=(1, 4)),
    Probe("bsr_matvec", "fc", (2048, 2048), 0.1, block=(8, 1)),
    Probe("sell_matvec", "fc", (2048, 2048), 0.1),
    Probe("sell_matvec", "fc", (1024, 1024), 0.05),
    Probe("sparse_matmul", "fc", (1024, 1024), 0.1, batch=16),
    Probe("dense_conv", "conv", (64, 64), 1.0, kernel=3, size=28),
    Probe("dense_conv", "conv", (128, 128), 1.0, kernel=1, size=28),
    Probe("sparse_direct", "conv", (64, 64), 0.1, kernel=3, size=28),
    Probe("sparse_conv", "conv", (128, 128), 0.1, kernel=1, size=28),
    Probe("tvm_sparse", "fc", (1024, 1024), 0.1, sparse_lhs=True),
    Probe("tvm_sparse", "conv", (64, 64), 0.1, kernel=3, size=28, layout="NHWC"),
)


@dataclass(frozen=True)
class Measured:
    """One probe's measured and estimated seconds (medians of interleaved rounds)."""

    probe: Probe
    seconds: float
    estimate: float

    @property
    def ratio(self) -> float:
        return self.seconds / self.estimate


def _weight(probe: Probe, rng: np.random.Generator) -> sp.csr_matrix:
    """``(rows, cols * kernel**2)`` float32 weight whose nonzeros fill whole ``block`` tiles."""
    rows, cols = probe.shape[0], probe.shape[1] * probe.kernel**2
    r, c = probe.block
    tiles = (rows // r) * (cols // c)
    keep = rng.choice(tiles, size=max(1, round(probe.density * tiles)), replace=False)
    mask = np.zeros(tiles, bool)
    mask[keep] = True
    mask = np.kron(mask.reshape(rows // r, cols // c), np.ones((r, c), bool))
    values = rng.standard_normal((rows, cols)).astype(np.float32)
    return sp.csr_matrix(np.where(mask, values, np.float32(0)))


def _module(probe: Probe, weight: sp.csr_matrix) -> tuple[relay.Function, dict, np.ndarray]:
    rng = np.random.default_rng(_SEED + 1)
    operand = None
    if probe.density < 1.0:
        matrix = weight if probe.block == (1, 1) else weight.tobsr(probe.block)
        operand = SparseOperand.from_scipy(matrix)
    if probe.kind == "fc":
        x = relay.var("x", shape=(probe.batch, probe.shape[1]))
        if probe.family == "sell_matvec":
            y, params = sell_dense_expr(x, SellOperand.from_scipy(weight), "w")
        elif operand is None:
            w = relay.var("w", shape=weight.shape)
            y, params = relay.nn.dense(x, w), {"w": weight.toarray()}
        else:
            y, params = sparse_dense_expr(x, operand, "w", sparse_lhs=probe.sparse_lhs)
        value = rng.standard_normal((probe.batch, probe.shape[1])).astype(np.float32)
    else:
        rows, channels, k, size = probe.shape[0], probe.shape[1], probe.kernel, probe.size
        nhwc = probe.layout == "NHWC"
        shape = (1, size, size, channels) if nhwc else (1, channels, size, size)
        x = relay.var("x", shape=shape)
        if operand is None:
            w = relay.var("w", shape=(rows, channels, k, k))
            y = relay.nn.conv2d(x, w, padding=(k // 2, k // 2), kernel_size=(k, k))
            params = {"w": weight.toarray().reshape(rows, channels, k, k)}
        else:
            y, params = sparse_conv2d_expr(x, operand, "w", layout=probe.layout, kernel_size=k)
        value = rng.standard_normal(shape).astype(np.float32)
    return relay.Function(relay.analysis.free_vars(y), y), params, value


def _estimate(probe: Probe, weight: sp.csr_matrix) -> float:
    rows, cols = weight.shape
    if probe.family == "tvm_sparse":
        if probe.kind == "fc":
            return cost.csr_seconds(rows, cols, weight.nnz, probe.batch, sparse_lhs=True)
        pixels = probe.size * probe.size
        return cost.conv_seconds(probe.layout, probe.kernel, rows, cols, pixels, stored=weight.nnz)
    if probe.family == "sell_matvec":
        return roofline.sell_seconds(rows, cols, *sell_vectors(weight))
    if probe.kind == "fc":
        if probe.density >= 1.0:
            return roofline.dense_seconds(rows, cols, probe.batch)
        r, c = probe.block
        nblocks = weight.nnz // (r * c)
        return roofline.sparse_seconds(rows, cols, nblocks, probe.block, probe.batch)
    pixels = probe.size * probe.size
    if probe.density >= 1.0:
        return roofline.conv_dense_seconds("NCHW", probe.kernel, rows, cols, pixels)
    if probe.family == "sparse_direct":
        return roofline.conv_direct_sparse_seconds(rows, cols, weight.nnz, pixels, probe.kernel)
    return roofline.conv_sparse_seconds("NCHW", rows, cols, weight.nnz, (1, 1), pixels)


def measure(
    target: str | tvm.target.Target | None = None,
    *,
    probes: Sequence[Probe] = PROBES,
    rounds: int = 5,
    progress: Callable[[str], None] = lambda _: None,
) -> tuple[Calibration, list[Measured]]:
    """Build ``probes`` for ``target`` (default: this machine's CPU), time them here in
    ``rounds`` interleaved rounds, and derive one scale per kernel family.

    Returns
    -------
    tuple[Calibration, list[Measured]]
        The calibration (source ``"measured <date>"``, for this process's TVM thread count;
        families without a probe keep 1.0) and each probe's figures.
    """
    resolved = resolve(target)
    cpu = cpu_name(resolved)
    base = Calibration(cpu, vector_bytes(resolved), "built in")
    rng = np.random.default_rng(_SEED)
    built = []
    if base.vector_bytes // 4 != LANES:  # the sell kernel needs 16 float32 lanes (AVX-512)
        probes = [p for p in probes if p.family != "sell_matvec"]
    for probe in probes:
        progress(f"building {probe.label}")
        weight = _weight(probe, rng)
        func, params, value = _module(probe, weight)
        lib = build(tvm.IRModule.from_expr(func), params, target=resolved)
        with roofline.calibrated(base):
            estimate = _estimate(probe, weight)
        built.append((probe, lib, value, estimate))
    times: dict[int, list[float]] = {i: [] for i in range(len(built))}
    for _ in range(rounds):
        for i, (_, lib, value, _) in enumerate(built):
            times[i].append(time_module(lib, {"x": value}, repeat=1).median)
    found = [
        Measured(probe, float(np.median(times[i])), estimate)
        for i, (probe, _, _, estimate) in enumerate(built)
    ]
    scales = {}
    for family in dict.fromkeys(m.probe.family for m in found):
        ratios = [m.ratio for m in found if m.probe.family == family]
        scales[family] = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    today = datetime.date.today().isoformat()
    scales = MappingProxyType(scales)
    calibration = Calibration(
        cpu, base.vector_bytes, f"measured {today}", scales, threads=runtime_threads()
    )
    return calibration, found
