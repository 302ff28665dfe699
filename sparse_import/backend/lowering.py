"""Lower the sparse weights of an imported model: dense constants or TVM's sparse kernels.

:func:`lower` finds every use of each :class:`~sparse_import.imported.SparseWeight` parameter,
decides per weight (:mod:`.decide`), builds the compressed arrays straight from the IR (never by
scanning a dense array) and rewrites the consumers (:mod:`.rewrite`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tvm
from tvm import relay

from sparse_import.imported import ImportedModel, SparseWeight

from . import cost
from .decide import DENSE, Candidate, Decision, SiteMatrix, candidates, choose, stored_candidates
from .kernels import SparseOperand
from .names import NameTable
from .rewrite import SparseCall, rewrite_module
from .sites import Site, classify
from .uses import Use, find_uses

__all__ = ["MODES", "inspect_rows", "lower"]

MODES = ("dense", "sparse", "auto")


def _check_arguments(mode: str, batch_size: int | None) -> None:
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    if batch_size is not None and (
        not isinstance(batch_size, (int, np.integer))
        or isinstance(batch_size, bool)
        or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")


def _check_weights(func: relay.Function, imported: ImportedModel) -> None:
    """Each weight must be a parameter of ``main`` holding exactly its IR tensor's shape/dtype."""
    declared = {p.name_hint: p for p in func.params}
    for weight in imported.weights:
        var = declared.get(weight.param)
        if var is None or weight.param not in imported.params:
            raise ValueError(
                f"sparse weight {weight.param!r}: not a parameter of the Relay function main "
                "with a value in params"
            )
        value = imported.params[weight.param]
        shape, dtype = tuple(int(d) for d in value.shape), np.dtype(str(value.dtype))
        if shape != weight.tensor.shape or dtype != weight.tensor.dtype:
            raise ValueError(
                f"sparse weight {weight.param!r}: its IR tensor is {weight.tensor.shape} "
                f"{weight.tensor.dtype} but the parameter holds {shape} {dtype}"
            )


def _dense(weight: SparseWeight, reason: str) -> Decision:
    return Decision(weight.param, weight.source.name, weight.consumer, "dense", None, reason)


def _reason(mode: str, chosen: Candidate, priced: list[tuple[float, Candidate]], batch: int) -> str:
    times = {c.label: t for t, c in priced}
    best = f"{chosen.label} est. {times[chosen.label] * 1e3:.3f} ms"
    if mode == "sparse":
        kind = "its own blocks" if chosen.lowering == "bsr" else "CSR"
        return f"mode='sparse' keeps the weight in {kind}: {best} at batch {batch}"
    if chosen.lowering == "dense":
        sparse = next(((t, c) for t, c in priced if c.lowering != "dense"), None)
        other = (
            f", fastest sparse {sparse[1].label} est. {sparse[0] * 1e3:.3f} ms" if sparse else ""
        )
        return f"auto: {best}{other} at batch {batch}"
    return f"auto: {best} vs dense est. {times['dense'] * 1e3:.3f} ms at batch {batch}"


def _operand(site: SiteMatrix, chosen: Candidate) -> SparseOperand:
    if chosen.lowering == "bsr":
        return SparseOperand.from_scipy(site.site.matrix.to_scipy("bsr", blocksize=chosen.block))
    return SparseOperand.from_scipy(site.csr)


def _chain_key(site: Site) -> tuple:
    """Sites whose weight went through the same view operators share one compressed operand."""

    def step(call: relay.Call) -> tuple:
        attrs = call.attrs
        fields = () if attrs is None else tuple((k, str(attrs[k])) for k in sorted(attrs.keys()))
        return (str(call.op.name), fields)

    return (site.conv, tuple(step(c) for c in site.use.chain))


def _lower_weight(
    weight: SparseWeight,
    uses: Sequence[Use],
    mode: str,
    batch_size: int | None,
    names: NameTable,
) -> tuple[Decision, dict[relay.Expr, SparseCall]]:
    if not uses:
        return _dense(weight, "not read by the Relay function"), {}
    results = [classify(use, weight.tensor) for use in uses]
    reasons = list(dict.fromkeys(r for r in results if isinstance(r, str)))
    if reasons:
        return _dense(weight, "stays dense: " + "; ".join(reasons)), {}
    sites = [SiteMatrix(s, batch_size or s.batch or cost.DEFAULT_BATCH) for s in results]
    batch = max(s.batch for s in sites)
    priced = sorted(
        ((sum(s.seconds(c) for s in sites), c) for c in candidates(sites, mode)),
        key=lambda pair: pair[0],
    )
    chosen = choose(priced, [DENSE, *stored_candidates(sites)])
    estimates = tuple((c.label, t) for t, c in priced)
    decision = Decision(
        weight.param,
        weight.source.name,
        weight.consumer,
        chosen.lowering,
        chosen.block,
        _reason(mode, chosen, priced, batch),
        estimates,
        chosen.sparse_lhs,
        batch,
    )
    if chosen.lowering == "dense":
        return decision, {}
    operands: dict[tuple, tuple[SparseOperand, str]] = {}
    calls = {}
    for site in sites:
        key = _chain_key(site.site)
        if key not in operands:
            operand = _operand(site, chosen)
            prefix = names.claim(weight.param, lambda p, o=operand: o.params(p).keys())
            operands[key] = (operand, prefix)
        operand, prefix = operands[key]
        calls[site.site.use.consumer] = SparseCall(site.site, operand, prefix, chosen.sparse_lhs)
    return decision, calls


def lower(
    imported: ImportedModel, mode: str = "auto", batch_size: int | None = None
) -> tuple[tvm.IRModule, dict[str, Any], tuple[Decision, ...]]:
    """Lower every sparse weight of ``imported`` as ``mode`` says.

    Parameters
    ----------
    imported : ImportedModel
        A dense Relay module from an adapter, with its sparse weights listed.
    mode : {"auto", "dense", "sparse"}
        ``"dense"``: every weight stays a dense parameter. ``"sparse"``: every weight whose uses
        all are matrix products (or convolutions) that TVM's sparse kernels compute becomes
        compressed, in BSR with its own block shape or else CSR; any other use, and int8 or
        float16 weights, keep it dense with the reason recorded. ``"auto"``: per weight the
        fastest of dense, CSR and BSR (own or re-blocked) by :mod:`~.cost`.
    batch_size : int, optional
        Rows of the matrix-product input assumed by the cost model (default: from the
        input shapes, else ``cost.DEFAULT_BATCH``).

    Returns
    -------
    mod : tvm.IRModule
    params : dict[str, numpy.ndarray | tvm.nd.NDArray]
        A compressed weight's dense array is gone once no dense use is left; its arrays are
        ``{param}.data``, ``{param}.indices``, ``{param}.indptr``.
    decisions : tuple[Decision, ...]
        One per weight, in ``imported.weights`` order.

    Raises
    ------
    ValueError
        An unknown mode, a bad ``batch_size``, or a weight that is not a parameter of ``main``
        matching its IR tensor (the message names the weight).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from sparse_import.backend import lower, single_layer
    >>> w = sp.random_array((64, 32), density=0.1, format="csr", rng=0, dtype=np.float32)
    >>> mod, params, (decision,) = lower(single_layer.import_model(w), mode="sparse")
    >>> decision.lowering, sorted(params)
    ('csr', ['weight.data', 'weight.indices', 'weight.indptr'])
    """
    _check_arguments(mode, batch_size)
    if mode == "dense" or not imported.weights:
        reason = "mode='dense' keeps every weight dense"
        return (
            imported.mod,
            dict(imported.params),
            tuple(_dense(w, reason) for w in imported.weights),
        )
    mod = relay.transform.InferType()(imported.mod)
    func = mod["main"]
    _check_weights(func, imported)
    uses = find_uses(func, {w.param for w in imported.weights})
    names = NameTable([*(p.name_hint for p in func.params), *imported.params])
    decisions, plan = [], {}
    for weight in imported.weights:
        decision, calls = _lower_weight(weight, uses[weight.param], mode, batch_size, names)
        decisions.append(decision)
        plan.update(calls)
    compressed = {d.param for d in decisions if d.lowering != "dense"}
    new_mod, params = rewrite_module(mod, imported.params, plan, compressed)
    return new_mod, params, tuple(decisions)


def inspect_rows(
    imported: ImportedModel, mode: str = "auto", batch_size: int | None = None
) -> list[dict[str, Any]]:
    """One row per sparse weight: what the model stores and how ``mode`` lowers it.

    Keys: ``param``, ``name``, ``consumer``, ``shape``, ``dtype``, ``layout``,
    ``stored_block``, ``index_widths``, ``nnz``, ``density``, ``dense_bytes``,
    ``stored_bytes`` (the weight as the model stores it), ``lowering``, ``block``,
    ``sparse_lhs``, ``batch``, ``reason``, ``estimates`` (candidate -> seconds).
    """
    _, _, decisions = lower(imported, mode, batch_size)
    return [
        {
            "param": w.param,
            "name": w.source.name,
            "consumer": w.consumer,
            "shape": w.source.shape,
            "dtype": str(w.source.dtype),
            "layout": w.source.layout,
            "stored_block": w.source.block_shape,
            "index_widths": w.source.index_widths,
            "nnz": w.source.nnz,
            "density": w.source.density,
            "dense_bytes": w.source.dense_nbytes,
            "stored_bytes": w.source.stored_nbytes,
            "lowering": d.lowering,
            "block": d.block,
            "sparse_lhs": d.sparse_lhs,
            "batch": d.batch,
            "reason": d.reason,
            "estimates": dict(d.estimates),
        }
        for w, d in zip(imported.weights, decisions, strict=True)
    ]
