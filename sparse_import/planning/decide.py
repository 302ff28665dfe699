"""Choose a lowering per sparse weight: dense, CSR or BSR, and record why.

``dense`` keeps every weight dense. ``sparse`` keeps every weight whose uses all are sparse-able
matrix products compressed in its own format (BSR with the model's block shape, else CSR).
``auto`` prices every candidate with :mod:`~sparse_import.planning.cost` for the host CPU (dense,
CSR through our kernel or TVM's sparse-left-hand-side one, BSR in the model's blocks,
re-blocked BSR whose explicit zero fill-in stays under ``cost.MAX_FILL``, and for batch-1
float32 products on AVX-512 targets the ``sell`` layout when the backend offers its kernel
(:func:`offering_sell`)) and takes the fastest;
a near tie (within ``cost.TIE_MARGIN``) goes to dense, then to the stored format.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from functools import cached_property

import scipy.sparse as sp

from . import cost, matrix, roofline
from .modes import Lowering
from .product import Product
from .sell import LANES, sell_vectors

__all__ = [
    "Candidate",
    "Decision",
    "SiteMatrix",
    "candidates",
    "choose",
    "offering_sell",
    "stored_candidates",
]

_SELL: contextvars.ContextVar[bool] = contextvars.ContextVar("sell", default=False)


@contextlib.contextmanager
def offering_sell() -> Iterator[None]:
    """Let ``auto`` choose the ``sell`` layout inside the ``with`` block: the backend has its
    kernel (used where the target's vectors hold :data:`~.sell.LANES` float32)."""
    token = _SELL.set(True)
    try:
        yield
    finally:
        _SELL.reset(token)


@dataclass(frozen=True)
class Decision:
    """How one sparse weight was lowered.

    Attributes
    ----------
    param : str
        The weight's Relay parameter.
    source : str | None
        The weight's name in the model.
    consumer : str
        The framework operator consuming it (``"FULLY_CONNECTED"``, ``"MatMul"``, ...).
    lowering : Lowering
        ``DENSE``, ``CSR``, ``BSR``, ``SELL`` or ``DENSIFY``.
    block : tuple[int, int] | None
        BSR block shape (``None`` unless ``lowering == "bsr"``).
    reason : str
        Why: the mode, the estimate that won, or what keeps the weight dense.
    estimates : tuple[tuple[str, float], ...]
        Estimated seconds per candidate (``"dense"``, ``"csr"``, ``"csr_lhs"``, ``"bsr16x1"``,
        ...), fastest first, summed over the weight's uses; empty when nothing was priced.
    sparse_lhs : bool
        CSR through TVM's sparse-left-hand-side kernel (otherwise ours).
    batch : int | None
        Rows of the input the estimates assume (largest over the uses).
    """

    param: str
    source: str | None
    consumer: str
    lowering: Lowering
    block: tuple[int, int] | None
    reason: str
    estimates: tuple[tuple[str, float], ...] = ()
    sparse_lhs: bool = False
    batch: int | None = None


@dataclass(frozen=True)
class Candidate:
    """One way to lower a weight: ``lowering`` with ``block`` (BSR) or ``sparse_lhs`` (CSR)."""

    lowering: Lowering
    block: tuple[int, int] | None = None
    sparse_lhs: bool = False

    @property
    def label(self) -> str:
        """``"dense"``, ``"csr"``, ``"csr_lhs"``, ``"sell"`` or ``"bsr{r}x{c}"``."""
        if self.lowering is Lowering.BSR:
            return "bsr{}x{}".format(*self.block)
        return "csr_lhs" if self.sparse_lhs else self.lowering.value


DENSE = Candidate(Lowering.DENSE)


@dataclass(frozen=True, eq=False)
class SiteMatrix:
    """A site with its batch and, computed once, its weight matrix as SciPy CSR."""

    site: Product
    batch: int

    @cached_property
    def csr(self) -> sp.csr_array:
        """The ``(units, in)`` matrix in CSR (wrapping the IR's arrays when it is CSR)."""
        return self.site.matrix.to_scipy("csr")

    @property
    def own_block(self) -> tuple[int, int]:
        """The block shape the model stores the matrix in (``(1, 1)``: none)."""
        return matrix.matrix_block(self.site.matrix)

    @cached_property
    def sell_vectors(self) -> tuple[int, int]:
        """``(vectors, slices * panels)`` of the matrix in the ``sell`` layout."""
        return sell_vectors(self.csr)

    def nblocks(self, block: tuple[int, int]) -> int:
        """Tiles of ``block`` shape holding a stored value."""
        if block == self.own_block:
            return self.site.matrix.nnz // (block[0] * block[1])
        return matrix.block_count(self.csr, block)

    def seconds(self, candidate: Candidate, sparse_convs: Collection[str] = ()) -> float:
        """Estimated time of this site lowered as ``candidate``, its neighbouring convolutions
        sparse when their weight is in ``sparse_convs``."""
        rows, cols = self.site.matrix.shape
        nnz = self.site.matrix.nnz
        if self.site.conv is not None:  # CSR or the stored blocks: the stored values count
            layout, kernel = self.site.conv
            stride = self.site.stride
            if candidate.lowering is Lowering.DENSE:
                return cost.conv_seconds(layout, kernel, rows, cols, self.batch, stride=stride)
            dense_in, dense_out = self._dense_shares(sparse_convs)
            boundary = cost.conv_boundary_seconds(
                layout,
                self.batch,
                cols // kernel**2,
                rows,
                dense_in=dense_in,
                dense_out=dense_out,
            )
            return boundary + cost.conv_seconds(
                layout, kernel, rows, cols, self.batch, stored=nnz, stride=stride
            )
        if candidate.lowering is Lowering.DENSE:
            return cost.dense_seconds(rows, cols, self.batch)
        if candidate.lowering is Lowering.CSR:
            return cost.csr_seconds(rows, cols, nnz, self.batch, sparse_lhs=candidate.sparse_lhs)
        if candidate.lowering is Lowering.SELL:
            return cost.sell_seconds(rows, cols, *self.sell_vectors)
        blocks = self.nblocks(candidate.block)
        return cost.bsr_seconds(rows, cols, blocks, candidate.block, self.batch)

    def _dense_shares(self, sparse_convs: Collection[str]) -> tuple[float, float]:
        """Shares of the neighbouring convolutions (input side, output side) that stay dense."""
        neighbours = self.site.neighbours
        if neighbours is None:
            return 1.0, 1.0

        def share(convs: tuple[str | None, ...]) -> float:
            if not convs:
                return 0.0
            return sum(c is None or c not in sparse_convs for c in convs) / len(convs)

        return share(neighbours.producers), share(neighbours.consumers)


def _csr_candidates(sites: list[SiteMatrix]) -> list[Candidate]:
    lhs = all(s.site.conv is None for s in sites)  # the transposed kernel exists for products
    return [Candidate(Lowering.CSR), *([Candidate(Lowering.CSR, sparse_lhs=True)] if lhs else [])]


def _own_block(sites: list[SiteMatrix]) -> tuple[int, int]:
    own = {s.own_block for s in sites}
    block = own.pop() if len(own) == 1 else (1, 1)
    return block if all(s.site.allows(block) for s in sites) else (1, 1)


def stored_candidates(sites: list[SiteMatrix]) -> list[Candidate]:
    """The weight in its stored format: BSR in its own blocks, else CSR (either TVM kernel)."""
    own_block = _own_block(sites)
    return [Candidate(Lowering.BSR, own_block)] if own_block != (1, 1) else _csr_candidates(sites)


def _sell_fits(sites: list[SiteMatrix]) -> bool:
    """Every read is a batch-1 float32 product and the kernel is offered for the target."""
    return (
        _SELL.get()
        and roofline.lanes(4) == LANES
        and all(
            s.site.conv is None and s.batch == 1 and s.site.matrix.dtype == "float32" for s in sites
        )
    )


def candidates(sites: list[SiteMatrix], mode: str) -> list[Candidate]:
    """The lowerings ``mode`` may choose from for a weight read by ``sites``."""
    stored = stored_candidates(sites)
    if mode == "sparse":
        return stored
    own_block = _own_block(sites)
    found = [DENSE, *stored]
    if own_block != (1, 1):
        found += _csr_candidates(sites)
    if _sell_fits(sites):
        found.append(Candidate(Lowering.SELL))
    if all(s.site.conv is None for s in sites):
        for block in cost.REBLOCK_SHAPES:
            if block == own_block or not all(s.site.allows(block) for s in sites):
                continue
            fill = max(
                s.nblocks(block) * block[0] * block[1] / max(s.site.matrix.nnz, 1) for s in sites
            )
            if fill <= cost.MAX_FILL:
                found.append(Candidate(Lowering.BSR, block))
    return found


def choose(priced: list[tuple[float, Candidate]], preferred: list[Candidate]) -> Candidate:
    """The fastest of ``priced`` (``(seconds, candidate)``, fastest first), except that the first
    of ``preferred`` estimated within ``cost.TIE_MARGIN`` of it wins the near tie."""
    best_time, best = priced[0]
    times = {c: t for t, c in priced}
    for candidate in preferred:
        if candidate in times and times[candidate] * (1.0 - cost.TIE_MARGIN) <= best_time:
            return candidate
    return best
