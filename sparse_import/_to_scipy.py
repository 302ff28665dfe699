"""A rank-2 :class:`~sparse_import.SparseTensor` as a SciPy sparse array.

Part of the IR (``SparseTensor.to_scipy``): SciPy is the IR's matrix library, not a framework
read by an adapter (:mod:`sparse_import.adapters.scipy` reads SciPy matrices *into* the IR).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import tensor_label
from .layouts import bsr_layout, csc_layout, csr_layout
from .levels import LevelFormat

if TYPE_CHECKING:
    from .tensor import SparseTensor

__all__ = ["to_scipy"]

COMPRESSED = LevelFormat.COMPRESSED


def to_scipy(
    tensor: SparseTensor, format: str = "csr", blocksize: tuple[int, int] | None = None
) -> Any:
    """A SciPy sparse array with the stored values of ``tensor`` (rank 2), explicit zeros kept.

    CSR, CSC and BSR tensors already in that layout are wrapped without re-deriving anything;
    any other layout goes through its exact coordinates. The tensor is validated in full first,
    so SciPy only ever sees checked index arrays.
    """
    import scipy.sparse as sp

    if tensor.rank != 2:
        raise ValueError(f"{tensor_label(tensor.name)}: to_scipy needs rank 2, got {tensor.shape}")
    if tensor.dtype == np.float16:
        raise ValueError(
            f"{tensor_label(tensor.name)}: SciPy sparse arrays cannot hold float16 values; "
            "convert first with tensor.astype(numpy.float32)"
        )
    tensor.validate()
    blocks = tensor.block_shape if blocksize is None else tuple(blocksize)
    if format in ("csr", "csc", "bsr"):
        own = {"csr": csr_layout(), "csc": csc_layout(), "bsr": bsr_layout(blocks)}[format]
        if tensor.is_layout(own):
            # The tensor's own arrays: the one compressed level holds indptr and indices.
            k = next(i for i, lvl in enumerate(tensor.levels) if lvl.format is COMPRESSED)
            data = tensor.values.reshape(-1, *blocks) if format == "bsr" else tensor.values
            cls = getattr(sp, f"{format}_array")
            return cls((data, tensor.coordinates[k], tensor.positions[k]), shape=tensor.shape)
    coords, values = tensor.coo()
    coo = sp.coo_array((values, (coords[:, 0], coords[:, 1])), shape=tensor.shape)
    if format == "coo":
        return coo
    if format == "csr":
        return coo.tocsr()
    if format == "csc":
        return coo.tocsc()
    if format == "bsr":
        for d in (0, 1):
            if tensor.shape[d] % blocks[d]:
                raise ValueError(
                    f"{tensor_label(tensor.name)}: block {blocks} does not divide {tensor.shape}"
                )
        return coo.tocsr().tobsr(blocksize=blocks)
    raise ValueError(f"unknown SciPy format {format!r}; expected csr, csc, coo or bsr")
