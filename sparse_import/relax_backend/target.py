"""The compilation target for Relax builds: this machine's CPU, as a TVM target dict.

TVM 0.27 takes targets as dicts (``{"kind": "llvm", "mcpu": cpu}``) and renamed the TIR package,
so :mod:`sparse_import.kernels.target` (which imports TVM 0.19's ``tvm.tir`` through
:mod:`sparse_import.kernels`) cannot be imported here; this module is its Relax twin.

Examples
--------
>>> from sparse_import.relax_backend.target import resolve, simd_lanes
>>> str(resolve().kind)
'llvm'
>>> simd_lanes(resolve("llvm"), "float32") >= 4
True
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import tvm
from tvm.target import codegen

__all__ = ["HOST", "host_target", "resolve", "simd_lanes"]

HOST = "host"
"""Target name that :func:`resolve` reads as :func:`host_target`."""


@functools.cache
def host_target() -> dict[str, str]:
    """``{"kind": "llvm", "mcpu": cpu}`` for the CPU this process runs on (no ``mcpu`` when
    LLVM cannot tell)."""
    cpu = str(codegen.llvm_get_system_cpu())
    return {"kind": "llvm"} if cpu in ("", "generic") else {"kind": "llvm", "mcpu": cpu}


def resolve(target: str | dict[str, Any] | tvm.target.Target | None = None) -> tvm.target.Target:
    """The TVM target a caller means: ``None`` or ``"host"`` is :func:`host_target`.

    Raises
    ------
    ValueError
        A target TVM does not parse (the message quotes it).
    """
    if isinstance(target, tvm.target.Target):
        return target
    if target is None or (isinstance(target, str) and target.strip() == HOST):
        target = host_target()
    try:
        return tvm.target.Target(target)
    except Exception as error:  # TVM raises its own error types for a bad target
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error)
        raise ValueError(f"target {target!r} is not a TVM target: {reason}") from None


def simd_lanes(target: tvm.target.Target, dtype: str | np.dtype) -> int:
    """Values of ``dtype`` one SIMD register of an x86 ``llvm`` target holds (at least 1)."""
    width = 16
    if target.kind.name == "llvm":
        for feature, size in (("avx512f", 64), ("avx2", 32)):
            if codegen.target_has_features(feature, target):
                width = size
                break
    return max(1, width // np.dtype(dtype).itemsize)
