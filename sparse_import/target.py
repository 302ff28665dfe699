"""The compilation target: this machine's CPU by default, and what its vectors hold.

Shared by both backends: it runs under TVM 0.19 (Relay, target strings) and TVM 0.27 (Relax,
which takes targets as dicts only); :func:`resolve` builds every target from a dict, and reads a
string ``"llvm -mcpu=... -mattr=..."`` into one when the installed TVM refuses the string.

TVM's plain ``llvm`` target is generic x86-64 (SSE2): it leaves AVX2 and AVX-512 unused, which
slows dense products 1.8-6.6x on a Zen 4. :func:`host_target` names the CPU the process runs on
as TVM's LLVM reports it (TVM rejects ``-mcpu=native``); :func:`resolve` turns what a caller
passes (``None``, ``"host"``, a target string with ``-mcpu=native``, a ``tvm.target.Target``)
into a target; :func:`vector_bytes` and :func:`simd_lanes` give the vector width the sparse
kernels are laid out for.

Two defects of TVM 0.19's x86 int8 kernels on modern CPUs are kept out of every build:

- with VNNI or AMX they call an LLVM intrinsic with a signature LLVM 22 rejects, and LLVM aborts
  the process (``nn.dense`` int8 for ``znver4``): :func:`resolve` switches those features off
  (``-mattr=-avx512vnni,...``) on every ``llvm`` target that has them; no float kernel uses them.
- with AVX512-BW, ``nn.dense`` of int8 or uint8 data returns wrong sums (``-mcpu=znver4`` and
  ``skylake-avx512`` alike; generic ``llvm`` and ``haswell`` are right): ``resolve(...,
  integer_products=True)`` also switches AVX512-BW off. :func:`~.build.build` asks for it when the
  module multiplies integer tensors; float modules keep it (TVM's float schedules use 16 lanes
  only with it: dense 2048x2048 took 1.39 ms at batch 16 with, 1.94 ms without).

Examples
--------
>>> from sparse_import.target import host_target, resolve, simd_lanes
>>> host_target().startswith("llvm -mcpu=")
True
>>> resolve("llvm -mcpu=znver4").attrs["mcpu"]
'znver4'
>>> str(resolve("llvm").kind)
'llvm'
>>> simd_lanes(resolve("llvm"), "float32")  # generic x86-64: SSE2, 16-byte vectors
4
"""

from __future__ import annotations

import functools

import numpy as np
import tvm
from tvm.target import codegen

from sparse_import.planning.calibration import Calibration, for_cpu

__all__ = [
    "HOST",
    "calibration",
    "cpu_name",
    "host_target",
    "resolve",
    "runtime_threads",
    "simd_lanes",
    "vector_bytes",
]

HOST = "host"
"""Target name that :func:`resolve` reads as :func:`host_target`."""

_NATIVE = "-mcpu=native"
_ABORTING_FEATURES = ("avx512vnni", "avxvnni", "amx-int8")
_WRONG_INT8_FEATURES = ("avx512bw",)


@functools.cache
def host_target() -> str:
    """``"llvm -mcpu=<cpu>"`` for the CPU this process runs on (``"llvm"`` if LLVM cannot tell).

    Returns
    -------
    str
        A TVM target string, for example ``"llvm -mcpu=znver4"``; :func:`resolve` makes it a
        target.
    """
    cpu = str(codegen.llvm_get_system_cpu())
    return "llvm" if cpu in ("", "generic") else f"llvm -mcpu={cpu}"


def resolve(
    target: str | tvm.target.Target | None = None, *, integer_products: bool = False
) -> tvm.target.Target:
    """The TVM target a caller means, without the CPU features TVM 0.19 mishandles.

    Parameters
    ----------
    target : str | tvm.target.Target | None
        ``None`` or ``"host"``: :func:`host_target`. A string with ``-mcpu=native`` gets the host
        CPU in its place. Anything else is handed to ``tvm.target.Target``.
    integer_products : bool, optional
        The module multiplies int8/uint8 tensors: AVX512-BW is switched off too.

    Returns
    -------
    tvm.target.Target

    Raises
    ------
    ValueError
        A target string TVM does not parse (the message quotes it).
    """
    features = _ABORTING_FEATURES + (_WRONG_INT8_FEATURES if integer_products else ())
    if isinstance(target, tvm.target.Target):
        return _without(target, features)
    if target is None or target.strip() == HOST:
        target = host_target()
    elif _NATIVE in target:
        cpu = host_target().partition("-mcpu=")[2]
        target = target.replace(_NATIVE, f"-mcpu={cpu}" if cpu else "")
    try:
        parsed = tvm.target.Target(_as_dict(target))
    except Exception as error:  # TVM raises its own error types (TVMError, ValueError, ...)
        lines = str(error).strip().splitlines()  # TVM's message ends its traceback
        reason = lines[-1] if lines else type(error).__name__
        raise ValueError(f"target {target!r} is not a TVM target: {reason}") from None
    return _without(parsed, features)


def _as_dict(target: str) -> str | dict[str, object]:
    """``"llvm -mcpu=x -mattr=+a,-b"`` as ``{"kind": "llvm", "mcpu": "x", "mattr": [...]}``,
    which every TVM takes; anything else (a tag, other flags) is returned unchanged."""
    kind, *flags = target.split()
    config: dict[str, object] = {"kind": kind}
    for flag in flags:
        key, sep, value = flag.lstrip("-").partition("=")
        if not flag.startswith("-") or not sep or key not in ("mcpu", "mtriple", "mattr"):
            return target
        config[key] = value.split(",") if key == "mattr" else value
    return config


def _without(target: tvm.target.Target, features: tuple[str, ...]) -> tvm.target.Target:
    """``target`` with those of ``features`` it has switched off (``llvm`` targets only)."""
    if target.kind.name != "llvm":
        return target
    found = [f for f in features if codegen.target_has_features(f, target)]
    if not found:
        return target
    config = dict(target.export())
    config["mattr"] = [*config.get("mattr", []), *(f"-{f}" for f in found)]
    return tvm.target.Target(config)


def vector_bytes(target: tvm.target.Target) -> int:
    """Width of the target's SIMD registers in bytes: 64 (AVX-512), 32 (AVX2) or 16."""
    if target.kind.name != "llvm":
        return 16
    for feature, width in (("avx512f", 64), ("avx2", 32)):
        if codegen.target_has_features(feature, target):
            return width
    return 16


def simd_lanes(target: tvm.target.Target, dtype: str | np.dtype) -> int:
    """Values of ``dtype`` that one SIMD register of ``target`` holds (at least 1)."""
    return max(1, vector_bytes(target) // np.dtype(dtype).itemsize)


def calibration(target: tvm.target.Target) -> Calibration:
    """How the planner prices kernels for ``target``: its CPU (``-mcpu``, ``"generic"`` when
    none is named), vector width and TVM's thread count in this process
    (``TVM_NUM_THREADS``, else TVM's default) looked up by
    :func:`~.planning.calibration.for_cpu`."""
    return for_cpu(cpu_name(target), vector_bytes(target), threads=runtime_threads())


def cpu_name(target: tvm.target.Target) -> str:
    """LLVM's name of the CPU ``target`` builds for (its ``-mcpu``), ``"generic"`` when it
    names none or is not an ``llvm`` target."""
    cpu = str(target.attrs.get("mcpu", "")) if target.kind.name == "llvm" else ""
    return cpu or "generic"


def runtime_threads() -> int:
    """The threads TVM's runtime runs parallel loops on in this process."""
    count = tvm.get_global_func("runtime.NumThreads", allow_missing=True)
    return max(1, int(count())) if count is not None else 1
