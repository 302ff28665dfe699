"""Helpers shared by the TIR kernels: the target's vectors, flat buffer views, vector loads.

The kernels write explicit vector expressions (``Ramp`` indices) rather than loops for TVM to
vectorize, so that gathers can use the x86 gather instructions: TVM 0.19 lowers a load at a
vector of indices into one scalar load per lane.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import tir
from tvm.target import codegen

__all__ = [
    "Simd",
    "broadcast",
    "flat",
    "fold_lanes",
    "int32",
    "parallel_rows",
    "span",
    "stack_buffer",
    "tree_sum",
]

_GATHERS = {  # (instruction set, dtype) -> (intrinsic, mask kind)
    ("avx512", "float32"): ("llvm.x86.avx512.gather.dps.512", "bits"),
    ("avx512", "float64"): ("llvm.x86.avx512.gather.dpd.512", "bits"),
    ("avx2", "float32"): ("llvm.x86.avx2.gather.d.ps.256", "sign"),
    ("avx2", "float64"): ("llvm.x86.avx2.gather.d.pd.256", "sign"),
}


@dataclass(frozen=True)
class Simd:
    """The SIMD registers the kernels are laid out for.

    Attributes
    ----------
    width : int
        Bytes per vector register: 64 (AVX-512), 32 (AVX2) or 16 (SSE2, other CPUs).
    isa : str
        ``"avx512"``, ``"avx2"`` or ``""``: which gather instructions exist.
    use_gather : bool
        Load gathered values with the gather instruction of ``isa``. Off by default: on Zen 4
        (2-vCPU EPYC) the batch-1 CSR kernel took 0.33 ms with ``vgatherdps`` and 0.20 ms with
        one load per lane (2048x2048, density 0.1, one thread).
    """

    width: int
    isa: str = ""
    use_gather: bool = False

    @classmethod
    def from_target(cls, target: tvm.target.Target) -> Simd:
        """The vectors of an x86 ``llvm`` target (16 bytes and no gather for anything else)."""
        if target.kind.name != "llvm":
            return cls(16)
        triple = str(target.attrs.get("mtriple", "")) or str(codegen.llvm_get_system_triple())
        if not triple.startswith(("x86_64", "i686", "i386")):
            return cls(16)
        if codegen.target_has_features("avx512f", target):
            return cls(64, "avx512")
        if codegen.target_has_features("avx2", target):
            return cls(32, "avx2")
        return cls(16)

    def lanes(self, dtype: str) -> int:
        """Values of ``dtype`` per vector register (at least 1)."""
        return max(1, self.width // np.dtype(dtype).itemsize)

    def gather(
        self,
        buffer: tir.ir_builder.BufferVar,
        indices: tir.ir_builder.BufferVar,
        start: tir.PrimExpr,
    ) -> tir.PrimExpr:
        """``buffer[indices[start + l]]`` for the :meth:`lanes` lanes ``l`` of ``buffer``'s dtype.

        One gather instruction when :attr:`use_gather` is set and the target has it; else one
        scalar load per lane, each reading its own index (faster than loading the indices as a
        vector and extracting its lanes: 35% with uint16 indices on Zen 4).
        """
        dtype = buffer.dtype
        lanes = self.lanes(dtype)
        found = _GATHERS.get((self.isa, dtype)) if self.use_gather else None
        if found is None:
            loads = [buffer[index] for index in _scalar_indices(indices, start, lanes)]
            if lanes == 1:
                return loads[0]
            return tir.Shuffle(loads, [tir.IntImm("int32", i) for i in range(lanes)])
        name, mask_kind = found
        itemsize = np.dtype(dtype).itemsize
        if mask_kind == "bits":  # AVX-512: one mask bit per lane, int32 scale
            mask, scale = tir.const(-1, f"int{max(8, lanes)}"), tir.const(itemsize, "int32")
        else:  # AVX2: the sign of each mask lane, int8 scale
            mask, scale = broadcast(tir.const(-1.0, dtype), lanes), tir.const(itemsize, "int8")
        base = tir.call_intrin("handle", "tir.address_of", buffer[0])
        zero = broadcast(tir.const(0, dtype), lanes)
        index = int32(indices[span(start, lanes)])
        return tir.call_llvm_pure_intrin(
            f"{dtype}x{lanes}", name, tir.const(0, "uint32"), zero, base, index, mask, scale
        )


_PACKED = {"uint16": 4, "int32": 2}  # indices per 64-bit word


def _scalar_indices(
    indices: tir.ir_builder.BufferVar, start: tir.PrimExpr, lanes: int
) -> list[tir.PrimExpr]:
    """``int32(indices[start + l])`` for ``l < lanes``, read as 64-bit words split by shifts
    (four uint16 or two int32 indices per load): the loads are what bounds the gather, and this
    takes 13 % off the batch-1 CSR kernel on Zen 4."""
    per = _PACKED.get(indices.dtype)
    if per is None or lanes % per:
        return [int32(indices[start + lane]) for lane in range(lanes)]
    bits = 64 // per
    mask = tir.const((1 << bits) - 1, "uint64")
    out = []
    for word_index in range(lanes // per):
        loaded = indices[span(start + per * word_index, per)]
        word = tir.call_intrin("uint64", "tir.reinterpret", loaded)
        for k in range(per):
            out.append(((word >> tir.const(bits * k, "uint64")) & mask).astype("int32"))
    return out


def parallel_rows(
    ib: tir.ir_builder.IRBuilder, extent: int, name: str, body: Callable[[tir.Var], None]
) -> None:
    """Emit ``body(i)`` for ``i < extent``: in a parallel loop when TVM's runtime has more than
    one thread, else in a plain loop (TVM's parallel launch costs about 6 us per call even with
    one thread: 13 % of a 2048x2048 batch-1 product at density 0.05)."""
    threads = tir.call_packed("runtime.NumThreads")
    with ib.if_scope(threads > 1):
        with ib.for_range(0, extent, kind="parallel", name=name) as i:
            body(i)
    with ib.else_scope():
        with ib.for_range(0, extent, name=name) as i:
            body(i)


def flat(ib: tir.ir_builder.IRBuilder, buffer: tir.Buffer) -> tir.ir_builder.BufferVar:
    """A one-dimensional view of ``buffer`` (same data), indexed by the flat position."""
    size = math.prod(int(d) for d in buffer.shape)
    view = tir.decl_buffer((size,), buffer.dtype, name=f"{buffer.name}_flat", data=buffer.data)
    return ib.buffer_ptr(view)


def span(start: tir.PrimExpr, lanes: int) -> tuple[tir.PrimExpr]:
    """Index of ``lanes`` consecutive values from ``start`` (a scalar index for one lane).

    A one-element tuple: ``BufferVar`` would unpack a bare ``Ramp`` as several indices.
    """
    return (start if lanes == 1 else tir.Ramp(start, 1, lanes),)


def broadcast(value: tir.PrimExpr, lanes: int) -> tir.PrimExpr:
    """``value`` repeated in ``lanes`` lanes (``value`` itself for one lane)."""
    return value if lanes == 1 else tir.Broadcast(value, lanes)


def int32(value: tir.PrimExpr) -> tir.PrimExpr:
    """``value`` (scalar or vector; indices may be stored as uint16) as int32."""
    lanes = tvm.DataType(value.dtype).lanes
    target = "int32" if lanes == 1 else f"int32x{lanes}"
    return value if value.dtype == target else value.astype(target)


def stack_buffer(
    ib: tir.ir_builder.IRBuilder, dtype: str, size: int, name: str
) -> tir.ir_builder.BufferVar:
    """A zeroed buffer of ``size`` values on the stack (promoted to registers by LLVM).

    Allocated in scope ``"global"`` with a constant size, which TVM 0.19 places on the stack; a
    ``"local"`` or unscoped allocation becomes a ``TVMBackendAllocWorkspace`` call on every
    iteration of the loop around it (5x slower rows in the batch-1 CSR kernel).
    """
    buffer = ib.allocate(dtype, (size,), name=name, scope="global")
    buffer[span(0, size)] = broadcast(tir.const(0, dtype), size)
    return buffer


def fold_lanes(buffer: tir.ir_builder.BufferVar, lanes: int) -> tir.PrimExpr:
    """The sum of ``buffer[0:lanes]``, folding the upper half onto the lower one in place.

    The buffer is a stack allocation, so LLVM turns the folds into register shuffles (a vector
    ``let`` would be simpler, but LLVM 22 rejects the debug record TVM 0.19 gives it).
    """
    while lanes > 1:
        half = lanes // 2
        odd = lanes % 2
        low = span(0, half)
        buffer[low] = buffer[low] + buffer[span(half + odd, half)]
        lanes = half + odd
    return buffer[0]


def tree_sum(terms: list[tir.PrimExpr]) -> tir.PrimExpr:
    """The sum of ``terms`` as a balanced tree of additions."""
    while len(terms) > 1:
        pairs = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)]
        terms = pairs + ([terms[-1]] if len(terms) % 2 else [])
    return terms[0]
