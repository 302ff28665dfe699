"""Lower the sparse weights of an imported model: dense constants or sparse kernels, in Relay.

:func:`lower` finds every use of each :class:`~sparse_import.imported.SparseWeight` parameter
(:mod:`.uses`), describes the ones a sparse kernel computes (:mod:`.sites`), lets
:mod:`sparse_import.planning` decide per weight, builds the compressed arrays straight from the
IR (never by scanning a dense array) and rewrites the consumers (:mod:`.rewrite`). A weight the
adapter left unbound is densified here only when it is lowered dense, once, charged to the
model's dense byte budget first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import tvm
from tvm import relay

from sparse_import.imported import ImportedModel, SparseWeight
from sparse_import.planning import report, roofline
from sparse_import.planning.decide import Candidate, Decision, SiteMatrix, offering_sell
from sparse_import.planning.modes import MODES, Lowering, check_arguments
from sparse_import.planning.names import NameTable
from sparse_import.planning.plan import WeightRef, dense, plan_expansion, plan_weights
from sparse_import.target import calibration, resolve

from . import compress
from .compress import CompressedWeight
from .kernels import SellOperand, SparseOperand
from .neighbours import conv_neighbours
from .rewrite import SparseCall, rewrite_module
from .sites import NON_NUMPY_CAST, Site, classify
from .uses import Use, find_uses

__all__ = ["MODES", "inspect_rows", "lower", "plan_model"]

UNREAD = "not read by the Relay function"


def _check_weights(func: relay.Function, imported: ImportedModel) -> None:
    """Each weight must be a parameter of ``main`` typed exactly as its IR tensor."""
    declared = {p.name_hint: p for p in func.params}
    for weight in imported.weights:
        var = declared.get(weight.param)
        if var is None:
            raise ValueError(
                f"sparse weight {weight.param!r}: not a parameter of the Relay function main"
            )
        kind = var.checked_type
        shape, dtype = tuple(int(d) for d in kind.shape), np.dtype(str(kind.dtype))
        if shape != weight.tensor.shape or dtype != weight.tensor.dtype:
            raise ValueError(
                f"sparse weight {weight.param!r}: its IR tensor is {weight.tensor.shape} "
                f"{weight.tensor.dtype} but the parameter is {shape} {dtype}"
            )


def _ref(weight: SparseWeight) -> WeightRef:
    return WeightRef(weight.param, weight.source.name, weight.consumer)


def _operand(site: SiteMatrix, chosen: Candidate) -> SparseOperand | SellOperand:
    if chosen.lowering is Lowering.SELL:
        return SellOperand.from_scipy(site.csr)
    if chosen.lowering is Lowering.BSR:
        return SparseOperand.from_scipy(site.site.matrix.to_scipy("bsr", blocksize=chosen.block))
    return SparseOperand.from_scipy(site.csr)


def _chain_key(site: Site) -> tuple:
    """Sites whose weight went through the same view operators share one compressed operand."""

    def step(call: relay.Call) -> tuple:
        attrs = call.attrs
        fields = () if attrs is None else tuple((k, str(attrs[k])) for k in sorted(attrs.keys()))
        return (str(call.op.name), fields)

    return (site.conv, tuple(step(c) for c in site.use.chain))


def _expanded_at_run_time(
    weight: SparseWeight, why: str, names: NameTable
) -> tuple[Decision, CompressedWeight | None]:
    """``mode="sparse"`` for a weight no kernel reads (:func:`~sparse_import.planning.plan.
    plan_expansion`), with the names of its CSR arrays claimed."""
    decision = plan_expansion(_ref(weight), weight.tensor, why)
    if decision.lowering is not Lowering.DENSIFY:
        return decision, None
    parts = ("data", "indices", "indptr")
    prefix = names.claim(weight.param, lambda p: [f"{p}.{part}" for part in parts])
    return decision, CompressedWeight(weight.tensor, prefix)


def _classify(weight: SparseWeight, uses: Sequence[Use]) -> list[Site] | str:
    """The weight's sites, or why it cannot be read by sparse kernels."""
    if not uses:
        return UNREAD
    results = [classify(use, weight.tensor) for use in uses]
    reasons = list(dict.fromkeys(r for r in results if isinstance(r, str)))
    return "; ".join(reasons) if reasons else results


def _with_neighbours(func: relay.Function, found: dict[str, list[Site] | str]) -> None:
    """Give every NCHW convolution site the convolutions next to it (:mod:`.neighbours`)."""
    sites = [s for v in found.values() if not isinstance(v, str) for s in v]
    weight_of = {s.use.consumer: p for p, v in found.items() if not isinstance(v, str) for s in v}
    if not any(s.conv is not None and s.conv[0] == "NCHW" for s in sites):
        return
    near = conv_neighbours(func, weight_of)
    for param, value in found.items():
        if not isinstance(value, str):
            found[param] = [
                replace(s, neighbours=near[s.use.consumer]) if s.use.consumer in near else s
                for s in value
            ]


def _lower_weight(
    weight: SparseWeight,
    found: list[Site] | str,
    planned: tuple[Decision, Candidate, list[SiteMatrix]] | None,
    mode: str,
    names: NameTable,
) -> tuple[Decision, dict[relay.Expr, SparseCall], CompressedWeight | None]:
    if found is UNREAD:
        return dense(_ref(weight), UNREAD), {}, None
    if isinstance(found, str):
        if mode == "sparse" and NON_NUMPY_CAST not in found:
            decision, expansion = _expanded_at_run_time(weight, found, names)
            return decision, {}, expansion
        return dense(_ref(weight), "stays dense: " + found), {}, None
    decision, chosen, sites = planned
    if chosen.lowering is Lowering.DENSE:
        return decision, {}, None
    operands: dict[tuple, tuple[SparseOperand | SellOperand, str]] = {}
    calls = {}
    for site in sites:
        key = _chain_key(site.site)
        if key not in operands:
            operand = _operand(site, chosen)
            prefix = names.claim(weight.param, lambda p, o=operand: o.params(p).keys())
            operands[key] = (operand, prefix)
        operand, prefix = operands[key]
        calls[site.site.use.consumer] = SparseCall(site.site, operand, prefix, chosen.sparse_lhs)
    return decision, calls, None


def _materialize(
    imported: ImportedModel, func: relay.Function, params: dict[str, Any]
) -> dict[str, Any]:
    """Bind the dense value of every unbound weight ``func`` still reads, charged first."""
    read = {p.name_hint for p in func.params}
    todo = [w for w in imported.weights if not imported.bound(w) and w.param in read]
    imported.budget.charge(w.tensor for w in todo)  # all or none, before any allocation
    for weight in todo:
        params[weight.param] = weight.tensor.to_dense()
    return params


def lower(
    imported: ImportedModel,
    mode: str = "auto",
    batch_size: int | None = None,
    target: str | tvm.target.Target | None = None,
) -> tuple[tvm.IRModule, dict[str, Any], tuple[Decision, ...]]:
    """Lower every sparse weight of ``imported`` as ``mode`` says.

    Parameters
    ----------
    imported : ImportedModel
        A Relay module from an adapter, with its sparse weights listed.
    mode : {"auto", "dense", "sparse"}
        ``"dense"``: every weight becomes a dense parameter. ``"sparse"`` (compression first):
        every weight whose uses all are matrix products (or convolutions) that a sparse kernel
        computes becomes compressed, in BSR with its own block shape or else CSR; every other
        weight is stored as CSR arrays expanded at run time (:mod:`.compress`) when they are
        smaller than the dense weight, else stays dense; the reason is recorded either way.
        ``"auto"``: per weight the fastest of dense, CSR and BSR (own or re-blocked) by
        :mod:`~sparse_import.planning.cost`.
    batch_size : int, optional
        Rows of the matrix-product input assumed by the cost model (default: from the
        input shapes, else ``cost.DEFAULT_BATCH``).
    target : str or tvm.target.Target, optional
        The target the module will be built for (default: this machine's CPU); ``auto``
        prices the kernels for its vector width.

    Returns
    -------
    mod : tvm.IRModule
    params : dict[str, numpy.ndarray | tvm.nd.NDArray]
        Dense values only for the weights lowered dense; a compressed weight's arrays are
        ``{param}.data``, ``{param}.indices``, ``{param}.indptr``.
    decisions : tuple[Decision, ...]
        One per weight, in ``imported.weights`` order.

    Raises
    ------
    ValueError
        An unknown mode, a bad ``batch_size``, or a weight that is not a parameter of ``main``
        matching its IR tensor (the message names the weight).
    DenseLimitError
        When the weights lowered dense would densify past the dense byte limit (with what
        the adapter densified); raised before any of them is allocated.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from sparse_import.relay_backend import lower, single_layer
    >>> w = sp.random_array((64, 32), density=0.1, format="csr", rng=0, dtype=np.float32)
    >>> mod, params, (decision,) = lower(single_layer.import_model(w), mode="sparse")
    >>> str(decision.lowering), sorted(params)
    ('csr', ['weight.data', 'weight.indices', 'weight.indptr'])
    """
    planned = plan_model(imported, mode, batch_size, target)
    mod, decisions = planned.mod, planned.decisions
    if not planned.calls and not planned.expansions:
        return imported.mod, _materialize(imported, mod["main"], dict(imported.params)), decisions
    compressed = {d.param for d in decisions if d.lowering.compressed}
    mod, params = rewrite_module(mod, imported.params, planned.calls, compressed)
    mod, params = compress.apply(mod, params, planned.expansions)
    return mod, _materialize(imported, mod["main"], params), decisions


@dataclass(frozen=True, eq=False)
class Plan:
    """What :func:`plan_model` decided, before anything is rewritten or densified.

    Attributes
    ----------
    mod : tvm.IRModule
        The imported module, type-inferred.
    decisions : tuple[Decision, ...]
        One per weight, in ``imported.weights`` order.
    calls : dict
        Consumer call -> its sparse replacement.
    expansions : dict
        Parameter -> its CSR arrays expanded at run time (``Lowering.DENSIFY``).
    """

    mod: tvm.IRModule
    decisions: tuple[Decision, ...]
    calls: dict[relay.Expr, SparseCall] = field(default_factory=dict)
    expansions: dict[str, compress.CompressedWeight] = field(default_factory=dict)


def plan_model(
    imported: ImportedModel,
    mode: str = "auto",
    batch_size: int | None = None,
    target: str | tvm.target.Target | None = None,
) -> Plan:
    """Decide every weight of ``imported`` for ``target`` (default: this machine's CPU) without
    rewriting or densifying anything."""
    with roofline.calibrated(calibration(resolve(target))), offering_sell():
        return _plan_model(imported, mode, batch_size)


def _plan_model(imported: ImportedModel, mode: str, batch_size: int | None) -> Plan:
    check_arguments(mode, batch_size)
    mod = relay.transform.InferType()(imported.mod)
    func = mod["main"]
    _check_weights(func, imported)
    if mode == "dense" or not imported.weights:
        reason = "mode='dense' keeps every weight dense"
        return Plan(mod, tuple(dense(_ref(w), reason) for w in imported.weights))
    uses = find_uses(func, {w.param for w in imported.weights})
    found = {w.param: _classify(w, uses[w.param]) for w in imported.weights}
    _with_neighbours(func, found)
    requests = [(_ref(w), found[w.param]) for w in imported.weights]
    requests = [(ref, sites) for ref, sites in requests if not isinstance(sites, str)]
    # popped weight by weight below: each weight's SciPy CSR is freed once its operand exists
    results = plan_weights(requests, mode, batch_size)
    planned = dict(zip((ref.param for ref, _ in requests), results, strict=True))
    del results
    names = NameTable([*(p.name_hint for p in func.params), *imported.params])
    decisions, calls, expansions = [], {}, {}
    for weight in imported.weights:
        decision, replaced, expansion = _lower_weight(
            weight, found.pop(weight.param), planned.pop(weight.param, None), mode, names
        )
        decisions.append(decision)
        calls.update(replaced)
        if expansion is not None:
            expansions[weight.param] = expansion
    return Plan(mod, tuple(decisions), calls, expansions)


def inspect_rows(
    imported: ImportedModel,
    mode: str = "auto",
    batch_size: int | None = None,
    target: str | tvm.target.Target | None = None,
) -> list[dict[str, Any]]:
    """One row per sparse weight: what the model stores and how ``mode`` lowers it.

    Keys: ``param``, ``name``, ``consumer``, ``shape``, ``dtype``, ``layout``,
    ``stored_block``, ``index_widths``, ``nnz``, ``density``, ``dense_bytes``,
    ``stored_bytes`` (the weight as the model stores it), ``lowering``, ``block``,
    ``sparse_lhs``, ``batch``, ``reason``, ``estimates`` (candidate -> seconds). Sparse tensors
    the adapter made constants of the graph follow, with ``param`` ``None`` and lowering
    ``dense``. Nothing is rewritten or densified.
    """
    decisions = plan_model(imported, mode, batch_size, target).decisions
    return report.inspect_rows(imported, decisions)
