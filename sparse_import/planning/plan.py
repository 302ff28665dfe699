"""Plan one sparse weight: from the products that read it to a :class:`~.decide.Decision`.

A backend finds the reads of a weight in its own IR and describes each one a sparse kernel can
compute as a :class:`~.product.Product`, or names the read that keeps the weight dense. This
module prices the candidates (:mod:`.decide`, :mod:`.cost`) for ``mode`` and records the
decision with its reason. It knows no compiler front end and no file format.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sparse_import.tensor import SparseTensor

from . import cost
from .decide import DENSE, Candidate, Decision, SiteMatrix, candidates, choose, stored_candidates
from .expansion import csr_bytes
from .modes import Lowering
from .product import Product

__all__ = ["WeightRef", "dense", "plan", "plan_expansion", "plan_weights"]


class WeightRef:
    """Who a decision is about: the backend's parameter, the model's name, its consumer."""

    __slots__ = ("consumer", "param", "source")

    def __init__(self, param: str, source: str | None, consumer: str) -> None:
        self.param, self.source, self.consumer = param, source, consumer


def dense(weight: WeightRef, reason: str) -> Decision:
    """The decision that keeps ``weight`` dense, for ``reason``."""
    return Decision(weight.param, weight.source, weight.consumer, Lowering.DENSE, None, reason)


def _reason(mode: str, chosen: Candidate, priced: list[tuple[float, Candidate]], batch: int) -> str:
    times = {c.label: t for t, c in priced}
    best = f"{chosen.label} est. {times[chosen.label] * 1e3:.3f} ms"
    if mode == "sparse":
        kind = "its own blocks" if chosen.lowering is Lowering.BSR else "CSR"
        return f"mode='sparse' keeps the weight in {kind}: {best} at batch {batch}"
    if chosen.lowering is Lowering.DENSE:
        sparse = next(((t, c) for t, c in priced if c.lowering is not Lowering.DENSE), None)
        other = (
            f", fastest sparse {sparse[1].label} est. {sparse[0] * 1e3:.3f} ms" if sparse else ""
        )
        return f"auto: {best}{other} at batch {batch}"
    return f"auto: {best} vs dense est. {times['dense'] * 1e3:.3f} ms at batch {batch}"


def plan(
    weight: WeightRef,
    products: Sequence[Product],
    mode: str,
    batch_size: int | None = None,
    sparse_convs: Collection[str] = (),
) -> tuple[Decision, Candidate, list[SiteMatrix]]:
    """Choose how ``weight``, read by ``products`` only, is lowered in ``mode``.

    Parameters
    ----------
    weight : WeightRef
    products : sequence of Product
        Every read of the weight (non-empty); each a product a sparse kernel computes.
    mode : {"sparse", "auto"}
    batch_size : int, optional
        Rows of ``x`` the estimates assume (default: each product's own, else
        ``cost.DEFAULT_BATCH``).
    sparse_convs : collection of str
        Weights of the neighbouring convolutions taken to be sparse (see :func:`plan_weights`).

    Returns
    -------
    decision : Decision
    chosen : Candidate
    sites : list of SiteMatrix
        The products with their batch, in order (their CSR computed at most once).
    """
    sites = [SiteMatrix(p, batch_size or p.batch or cost.DEFAULT_BATCH) for p in products]
    batch = max(s.batch for s in sites)
    priced = sorted(
        ((sum(s.seconds(c, sparse_convs) for s in sites), c) for c in candidates(sites, mode)),
        key=lambda pair: pair[0],
    )
    chosen = choose(priced, [DENSE, *stored_candidates(sites)])
    decision = Decision(
        weight.param,
        weight.source,
        weight.consumer,
        chosen.lowering,
        chosen.block,
        _reason(mode, chosen, priced, batch),
        tuple((c.label, t) for t, c in priced),
        chosen.sparse_lhs,
        batch,
    )
    return decision, chosen, sites


def _has_neighbours(products: Sequence[Product]) -> bool:
    return any(p.neighbours is not None for p in products)


def plan_weights(
    requests: Sequence[tuple[WeightRef, Sequence[Product]]],
    mode: str,
    batch_size: int | None = None,
) -> list[tuple[Decision, Candidate, list[SiteMatrix]]]:
    """:func:`plan` for several weights at once, convolutions priced with their neighbours.

    A sparse NCHW convolution next to a dense one pays a change of layout; next to another
    sparse one it pays none, so neighbouring convolutions are decided together: every weight
    read by a convolution with known neighbours starts as sparse, then each is planned in turn
    with the others' latest lowering, until no decision changes (a few passes at most).
    """
    linked = {w.param for w, products in requests if _has_neighbours(products)}
    sparse = set(linked)
    results = [None] * len(requests)
    for _ in range(MAX_PASSES):
        changed = False
        for i, (weight, products) in enumerate(requests):
            result = plan(weight, products, mode, batch_size, frozenset(sparse - {weight.param}))
            results[i] = result
            if weight.param in linked:
                now = result[1].lowering is not Lowering.DENSE
                if now != (weight.param in sparse):
                    changed = True
                    (sparse.add if now else sparse.discard)(weight.param)
        if not changed:
            break
    return results


MAX_PASSES = 4
"""Passes of :func:`plan_weights` over the weights: decisions settle in one or two."""


def plan_expansion(weight: WeightRef, tensor: SparseTensor, why: str) -> Decision:
    """``mode="sparse"`` for a weight no sparse kernel reads (``why``): ``DENSIFY`` (its CSR
    arrays, expanded at run time) when they are smaller than the dense weight, else dense."""
    if tensor.rank == 0 or tensor.dtype.kind not in "biuf":
        return dense(weight, f"stays dense: {why}")
    stored, full = csr_bytes(tensor), tensor.dense_nbytes
    if stored >= full:
        return dense(
            weight,
            f"stays dense: {why}; its CSR arrays ({stored} B) are no smaller than dense ({full} B)",
        )
    reason = (
        f"mode='sparse' keeps it compressed ({stored} of {full} B), expanded at run time: {why}"
    )
    return Decision(weight.param, weight.source, weight.consumer, Lowering.DENSIFY, None, reason)
