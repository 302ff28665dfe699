"""Which measurements price the kernels for a target CPU: built in, re-measured, or a fallback.

The constants of :mod:`~sparse_import.planning.roofline` were fitted on one CPU
(:data:`MEASURED_CPUS`). For any other CPU the planner either uses a quick re-measure stored by
``sparse-import calibrate`` (one scale per kernel family: measured time over the constants'
estimate, on a handful of probe layers built for that CPU), or falls back to the roofline
constants scaled only by the target's vector width.

The store is a JSON file (``$SPARSE_IMPORT_CALIBRATION``, default
``~/.cache/sparse_import/calibration.json``) mapping ``"<cpu>/<vector bytes>/<threads>"`` to
``{"scales": {family: scale}, "measured": date, "probes": count}``. Kernels scale differently
with TVM's thread count (on a 2-vCPU Zen 4 dense products gain 2.4x from the second thread,
``sell`` 1.9x), so an entry holds for the thread count it was measured with; a plan for a
count without one takes the single-thread entry, then the built-in constants (measured on one
thread).

Examples
--------
>>> c = for_cpu("znver4", 64, store={})
>>> c.source, c.scale("csr_matvec"), c.threads
('built in', 1.0, 1)
>>> for_cpu("some-future-cpu", 32, store={}).source
'roofline fallback'
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

__all__ = [
    "FAMILIES",
    "MEASURED_CPUS",
    "Calibration",
    "for_cpu",
    "load_store",
    "save",
    "store_path",
]

FAMILIES = (
    "dense_product",
    "csr_matvec",
    "bsr_matvec",
    "sell_matvec",
    "sparse_matmul",
    "dense_conv",
    "sparse_conv",
    "sparse_direct",
    "tvm_sparse",
)
"""Kernel families that carry one scale each: the :class:`~.roofline.Roofline` names, and
``tvm_sparse`` for the TVM kernels :mod:`~.cost` prices by fitted tables (the
sparse-left-hand-side CSR product, NHWC 3x3 sparse convolution)."""

MEASURED_CPUS = frozenset({"znver4"})
"""CPUs (LLVM's names) whose measurements are the built-in constants."""

ENV = "SPARSE_IMPORT_CALIBRATION"
_SCALE_RANGE = (1e-3, 1e3)  # a scale outside this is a broken measurement, not a CPU


@dataclass(frozen=True)
class Calibration:
    """The scales that price kernels for one CPU.

    Attributes
    ----------
    cpu : str
        LLVM's name of the CPU (``"znver4"``), or ``"generic"``.
    vector_bytes : int
        Width of its SIMD registers.
    source : str
        ``"built in"``, ``"measured <date>"`` or ``"roofline fallback"``.
    scales : Mapping[str, float]
        Per kernel family (:data:`FAMILIES`), the factor on the built-in estimate; missing
        families are 1.0.
    threads : int
        TVM's thread count the scales were measured with.
    """

    cpu: str
    vector_bytes: int
    source: str
    scales: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    threads: int = 1

    def scale(self, family: str) -> float:
        """Factor on the built-in estimate of ``family``'s kernels."""
        return float(self.scales.get(family, 1.0))

    def describe(self) -> str:
        """One line for reports: the CPU and where its prices come from."""
        threads = f"{self.threads} thread{'s' * (self.threads != 1)}"
        return f"{self.cpu} ({self.vector_bytes}-byte vectors, {threads}): {self.source}"


def store_path() -> Path:
    """The calibration store: ``$SPARSE_IMPORT_CALIBRATION`` or the user cache default."""
    configured = os.environ.get(ENV)
    if configured:
        return Path(configured)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "sparse_import" / "calibration.json"


def _key(cpu: str, vector_bytes: int, threads: int) -> str:
    return f"{cpu}/{vector_bytes}/{threads}"


def _check_entry(path: Path, key: str, entry: object) -> dict:
    where = f"calibration store {path}, entry {key!r}"
    if not isinstance(entry, dict) or not isinstance(entry.get("scales"), dict):
        raise ValueError(f"{where}: expected an object with a 'scales' object")
    for family, value in entry["scales"].items():
        if family not in FAMILIES:
            raise ValueError(f"{where}: unknown kernel family {family!r}")
        low, high = _SCALE_RANGE
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"{where}: scale of {family} is {value!r}, not a finite number")
        if not low <= value <= high:
            raise ValueError(f"{where}: scale of {family} is {value}, outside [{low}, {high}]")
    return entry


def load_store(path: Path | None = None) -> dict[str, dict]:
    """The entries of the store (``{}`` when the file does not exist).

    Raises
    ------
    ValueError
        The file is not a JSON object of well-formed entries (the message names the file).
    """
    path = store_path() if path is None else path
    if not path.is_file():
        return {}
    try:
        text = path.read_text()
        data = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"calibration store {path} is not readable JSON: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"calibration store {path}: expected a JSON object at the top")
    return {key: _check_entry(path, key, entry) for key, entry in data.items()}


def for_cpu(
    cpu: str, vector_bytes: int, store: Mapping[str, dict] | None = None, threads: int = 1
) -> Calibration:
    """The calibration the planner uses for ``cpu`` running ``threads`` threads: a stored
    re-measure for that thread count, then one for a single thread, then the built-in
    constants for :data:`MEASURED_CPUS`, else the roofline fallback.

    Parameters
    ----------
    cpu : str
        LLVM's CPU name (a target's ``-mcpu``), ``"generic"`` when the target names none.
    vector_bytes : int
        The target's SIMD register width.
    store : Mapping[str, dict], optional
        Entries as :func:`load_store` returns them (default: read the store).
    threads : int
        TVM's thread count the module will run with.
    """
    entries = load_store() if store is None else store
    for measured in dict.fromkeys((threads, 1)):
        entry = entries.get(_key(cpu, vector_bytes, measured))
        if entry is not None:
            scales = MappingProxyType({k: float(v) for k, v in entry["scales"].items()})
            source = f"measured {entry.get('measured', '')}".strip()
            return Calibration(cpu, vector_bytes, source, scales, measured)
    if cpu in MEASURED_CPUS:
        return Calibration(cpu, vector_bytes, "built in")
    return Calibration(cpu, vector_bytes, "roofline fallback")


def save(calibration: Calibration, probes: int, path: Path | None = None) -> Path:
    """Add or replace ``calibration``'s entry in the store; returns the store's path."""
    path = store_path() if path is None else path
    entries = load_store(path)
    entries[_key(calibration.cpu, calibration.vector_bytes, calibration.threads)] = {
        "scales": dict(calibration.scales),
        "measured": calibration.source.removeprefix("measured ").strip(),
        "probes": probes,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
    return path
