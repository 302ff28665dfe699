"""Lower the sparse weights of an imported Relax model: dense constants or sparse kernels.

:func:`lower` finds every read of each :class:`~sparse_import.imported.SparseWeight` parameter
(:mod:`.uses`), describes those a kernel computes (:mod:`.sites`), lets
:mod:`sparse_import.planning` decide per weight (the decisions of the Relay backend), builds the
compressed arrays straight from the IR and rewrites the reads into ``R.call_tir`` of the kernels
(:mod:`.rewrite`); in ``mode="sparse"`` a weight no kernel reads is stored as CSR arrays expanded
at run time (:mod:`.compress`). A weight lowered dense is densified here, once, charged to the
model's dense byte budget first, and embedded as a constant like every weight TVM's Relax
frontends import.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tvm
from tvm import relax

from sparse_import.imported import ImportedModel, SparseWeight
from sparse_import.planning import report, roofline
from sparse_import.planning.decide import Candidate, Decision, SiteMatrix
from sparse_import.planning.modes import MODES, Lowering, check_arguments
from sparse_import.planning.plan import WeightRef, dense, plan, plan_expansion
from sparse_import.target import calibration, resolve, simd_lanes

from . import compress
from .compress import CompressedWeight
from .rewrite import Operand, SparseCall, rewrite_main
from .sites import Site, classify
from .uses import Use, find_uses, op_name, static_shape

__all__ = ["MODES", "Plan", "inspect_rows", "lower", "plan_model"]


def _check_weights(func: relax.Function, imported: ImportedModel) -> None:
    """Each weight must be a parameter of ``main`` typed exactly as its IR tensor."""
    declared = {p.name: p for p in func.params}
    for weight in imported.weights:
        var = declared.get(weight.param)
        if var is None:
            raise ValueError(
                f"sparse weight {weight.param!r}: not a parameter of the Relax function main"
            )
        shape = static_shape(var)
        dtype = np.dtype(str(var.ty.dtype)) if isinstance(var.ty, relax.TensorType) else None
        if shape != weight.tensor.shape or dtype != weight.tensor.dtype:
            raise ValueError(
                f"sparse weight {weight.param!r}: its IR tensor is {weight.tensor.shape} "
                f"{weight.tensor.dtype} but the parameter is {shape} {dtype}"
            )


def _ref(weight: SparseWeight) -> WeightRef:
    return WeightRef(weight.param, weight.source.name, weight.consumer)


def _operand(site: SiteMatrix, chosen: Candidate) -> Operand:
    if chosen.lowering is Lowering.BSR:
        return Operand.from_scipy(site.site.matrix.to_scipy("bsr", blocksize=chosen.block))
    return Operand.from_scipy(site.csr)


def _chain_key(site: Site) -> tuple:
    """Sites whose weight went through the same views share one compressed operand."""
    return tuple((op_name(b.value), str(b.value.attrs), str(b.var.ty)) for b in site.use.chain)


def _expanded_at_run_time(
    weight: SparseWeight, why: str
) -> tuple[Decision, CompressedWeight | None]:
    """``mode="sparse"`` for a weight no kernel reads
    (:func:`~sparse_import.planning.plan.plan_expansion`)."""
    decision = plan_expansion(_ref(weight), weight.tensor, why)
    if decision.lowering is not Lowering.DENSIFY:
        return decision, None
    return decision, CompressedWeight(weight.tensor)


def _lower_weight(
    weight: SparseWeight, uses: Sequence[Use], mode: str, batch_size: int | None
) -> tuple[Decision, dict[Any, SparseCall], CompressedWeight | None]:
    if not uses:
        return dense(_ref(weight), "not read by the Relax function"), {}, None
    results = [classify(use, weight.tensor) for use in uses]
    reasons = list(dict.fromkeys(r for r in results if isinstance(r, str)))
    if reasons:
        why = "; ".join(reasons)
        if mode == "sparse":
            decision, expansion = _expanded_at_run_time(weight, why)
            return decision, {}, expansion
        return dense(_ref(weight), "stays dense: " + why), {}, None
    decision, chosen, sites = plan(_ref(weight), results, mode, batch_size)
    if chosen.lowering is Lowering.DENSE:
        return decision, {}, None
    operands: dict[tuple, Operand] = {}
    calls = {}
    for site in sites:
        key = _chain_key(site.site)
        if key not in operands:
            operands[key] = _operand(site, chosen)
        calls[site.site.use.consumer.var] = SparseCall(site.site, operands[key])
    return decision, calls, None


@dataclass(frozen=True, eq=False)
class Plan:
    """What :func:`plan_model` decided, before anything is rewritten or densified.

    Attributes
    ----------
    mod : tvm.IRModule
        The imported module, normalized.
    decisions : tuple[Decision, ...]
        One per weight, in ``imported.weights`` order.
    calls : dict
        Variable of a ``matmul`` binding -> its sparse replacement.
    expansions : dict
        Parameter -> its CSR arrays expanded at run time (``Lowering.DENSIFY``).
    """

    mod: tvm.IRModule
    decisions: tuple[Decision, ...]
    calls: dict[Any, SparseCall] = field(default_factory=dict)
    expansions: dict[str, CompressedWeight] = field(default_factory=dict)


def plan_model(imported: ImportedModel, mode: str = "auto", batch_size: int | None = None) -> Plan:
    """Decide every weight of ``imported`` for this machine's CPU (its calibration) without
    rewriting or densifying anything."""
    with roofline.calibrated(calibration(resolve())):
        return _plan_model(imported, mode, batch_size)


def _plan_model(imported: ImportedModel, mode: str, batch_size: int | None) -> Plan:
    check_arguments(mode, batch_size)
    mod = relax.transform.Normalize()(imported.mod)
    func = mod["main"]
    _check_weights(func, imported)
    if mode == "dense" or not imported.weights:
        reason = "mode='dense' keeps every weight dense"
        return Plan(mod, tuple(dense(_ref(w), reason) for w in imported.weights))
    uses = find_uses(func, {w.param for w in imported.weights})
    decisions, calls, expansions = [], {}, {}
    for weight in imported.weights:
        decision, found, expansion = _lower_weight(weight, uses[weight.param], mode, batch_size)
        decisions.append(decision)
        calls.update(found)
        if expansion is not None:
            expansions[weight.param] = expansion
    return Plan(mod, tuple(decisions), calls, expansions)


def _bind_dense(imported: ImportedModel, mod: tvm.IRModule, skip: set[str]) -> tvm.IRModule:
    """Embed every weight ``main`` still reads as a constant: the adapter's bound values and
    the dense value of every unbound weight, charged to the budget first."""
    func = mod["main"]
    read = {p.name for p in func.params} - skip
    todo = [w for w in imported.weights if not imported.bound(w) and w.param in read]
    imported.budget.charge(w.tensor for w in todo)  # all or none, before any allocation
    values = {k: v for k, v in imported.params.items() if k in read}
    values.update({w.param: w.tensor.to_dense() for w in todo})
    if not values:
        return mod
    tensors = {
        k: v if isinstance(v, tvm.runtime.Tensor) else tvm.runtime.tensor(np.asarray(v))
        for k, v in values.items()
    }
    return relax.transform.BindParams("main", tensors)(mod)


def _inputs_only(mod: tvm.IRModule) -> tvm.IRModule:
    """``main`` with every parameter counted as an input (the weights are constants now)."""
    func = mod["main"]
    if func.attrs is not None and "num_input" in func.attrs:
        mod["main"] = func.with_attr("num_input", len(func.params))
    return mod


def lower(
    imported: ImportedModel, mode: str = "auto", batch_size: int | None = None
) -> tuple[tvm.IRModule, tuple[Decision, ...]]:
    """Lower every sparse weight of ``imported`` as ``mode`` says, into a module for
    ``relax.build`` whose only parameters are the model's inputs.

    Parameters
    ----------
    imported : ImportedModel
        A Relax module from an adapter, with its sparse weights listed.
    mode : {"auto", "dense", "sparse"}
        ``"dense"``: every weight becomes a dense constant. ``"sparse"``: every weight whose
        reads all are matrix products a kernel computes is kept compressed (BSR in its own
        blocks, else CSR); every other weight is stored as CSR arrays expanded at run time
        (:mod:`.compress`, ``Lowering.DENSIFY``) when they are smaller than the dense weight,
        else stays dense; the reason is recorded either way. ``"auto"``: per weight the
        fastest of dense, CSR and BSR by :mod:`~sparse_import.planning.cost` (a ``csr_lhs``
        choice runs on this package's CSR kernel).
    batch_size : int, optional
        Rows of the matrix-product input the cost model assumes (default: from the shapes).

    Returns
    -------
    mod : tvm.IRModule
        Dense weights and compressed arrays embedded as constants; kernels as PrimFuncs.
    decisions : tuple[Decision, ...]
        One per weight, in ``imported.weights`` order.

    Raises
    ------
    ValueError
        An unknown mode, a bad ``batch_size``, or a weight that is not a parameter of ``main``
        matching its IR tensor (the message names the weight).
    DenseLimitError
        When the weights lowered dense would densify past the dense byte limit; raised before
        any of them is allocated.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from sparse_import.relax_backend import lower, single_layer
    >>> w = sp.random_array((64, 32), density=0.1, format="csr", rng=0, dtype=np.float32)
    >>> mod, (decision,) = lower(single_layer.import_model(w), mode="sparse")
    >>> str(decision.lowering), [p.name for p in mod["main"].params]
    ('csr', ['x'])
    """
    planned = plan_model(imported, mode, batch_size)
    mod, decisions = planned.mod, planned.decisions
    kernels = {d.param for d in decisions if d.lowering in (Lowering.CSR, Lowering.BSR)}
    if planned.calls:
        target = resolve()
        lanes = {dt: simd_lanes(target, dt) for dt in ("float32", "float64")}
        mod = rewrite_main(mod, planned.calls, kernels, lanes)
    mod = compress.apply(mod, planned.expansions)
    skip = kernels | set(planned.expansions)
    return _inputs_only(_bind_dense(imported, mod, skip)), decisions


def inspect_rows(
    imported: ImportedModel, mode: str = "auto", batch_size: int | None = None
) -> list[dict[str, Any]]:
    """One row per sparse weight: what the model stores and how ``mode`` lowers it in Relax.

    The keys of :func:`sparse_import.relay_backend.lowering.inspect_rows`; nothing is
    rewritten or densified.
    """
    decisions = plan_model(imported, mode, batch_size).decisions
    return report.inspect_rows(imported, decisions)
