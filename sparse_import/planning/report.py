"""The rows ``inspect`` reports: each sparse tensor as the model stores it, and its decision.

Both backends plan with :mod:`.plan`; this turns an imported model and the decisions of its
weights into the same rows, whatever the backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sparse_import.imported import ImportedModel
from sparse_import.tensor import SparseTensor

from .decide import Decision
from .modes import Lowering

__all__ = ["inspect_rows"]


def inspect_rows(imported: ImportedModel, decisions: Sequence[Decision]) -> list[dict[str, Any]]:
    """One row per sparse weight (in ``imported.weights`` order), then one per sparse tensor the
    adapter made a constant of the graph (``param`` ``None``, lowering ``dense``).

    Keys: ``param``, ``name``, ``consumer``, ``shape``, ``dtype``, ``layout``,
    ``stored_block``, ``index_widths``, ``nnz``, ``density``, ``dense_bytes``,
    ``stored_bytes`` (the tensor as the model stores it), ``lowering``, ``block``,
    ``sparse_lhs``, ``batch``, ``reason``, ``estimates`` (candidate -> seconds).
    """
    rows = [
        {
            **_stored(w.source),
            "param": w.param,
            "consumer": w.consumer,
            "lowering": str(d.lowering),
            "block": d.block,
            "sparse_lhs": d.sparse_lhs,
            "batch": d.batch,
            "reason": d.reason,
            "estimates": dict(d.estimates),
        }
        for w, d in zip(imported.weights, decisions, strict=True)
    ]
    for constant in imported.constants:
        rows.append(
            {
                **_stored(constant.source),
                "param": None,
                "consumer": constant.consumer,
                "lowering": str(Lowering.DENSE),
                "block": None,
                "sparse_lhs": False,
                "batch": None,
                "reason": constant.reason,
                "estimates": {},
            }
        )
    return rows


def _stored(tensor: SparseTensor) -> dict[str, Any]:
    """The columns that describe a tensor as the model stores it."""
    return {
        "name": tensor.name,
        "shape": tensor.shape,
        "dtype": str(tensor.dtype),
        "layout": tensor.layout,
        "stored_block": tensor.block_shape,
        "index_widths": tensor.index_widths,
        "nnz": tensor.nnz,
        "density": tensor.density,
        "dense_bytes": tensor.dense_nbytes,
        "stored_bytes": tensor.stored_nbytes,
    }
