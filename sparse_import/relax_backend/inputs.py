"""The runtime inputs of an imported Relax module: its ``main`` parameters but the weights."""

from __future__ import annotations

from sparse_import.imported import ImportedModel

from .uses import static_shape

__all__ = ["relax_inputs"]


def relax_inputs(imported: ImportedModel) -> tuple[tuple[str, tuple[int | None, ...], str], ...]:
    """``(name, shape, dtype)`` of each input of ``main`` that is not a weight or a param;
    ``None`` for a symbolic dimension.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from sparse_import.relax_backend import single_layer
    >>> w = sp.random_array((8, 4), density=0.5, format="csr", rng=0, dtype=np.float32)
    >>> relax_inputs(single_layer.import_model(w))
    (('x', (1, 4), 'float32'),)
    """
    skip = imported.weight_params | imported.params.keys()
    found = []
    for var in imported.mod["main"].params:
        if var.name in skip:
            continue
        dims = static_shape(var)
        if dims is None:
            continue
        found.append((var.name, dims, str(var.ty.dtype)))
    return tuple(found)
