"""TFLite ``SparsityParameters`` <-> the IR.

TFLite describes a sparse tensor of rank ``n`` with ``k`` blocked dimensions by:

- ``traversal_order``: a permutation of ``range(n + k)``; entry ``i`` names the *expanded*
  dimension stored at level ``i``. Expanded dimension ``e < n`` is original dimension ``e``
  (its block coordinate when ``e`` is blocked); ``n + j`` is the in-block part of dimension
  ``block_map[j]``.
- ``dim_metadata``: per level, ``DENSE`` with ``dense_size`` or ``SPARSE_CSR`` with
  ``array_segments`` (positions) and ``array_indices`` (coordinates). A block level is DENSE and
  its ``dense_size`` is the block size.

In the IR that is a dim-to-level map: ``Level(d, part=BLOCK, block=b)`` for ``d floordiv b`` and
``Level(d, part=ELEMENT, block=b)`` for ``d mod b``.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sparse_import._checks import check_shape
from sparse_import.errors import SparseFormatError, UnsupportedSparsityError, tensor_label
from sparse_import.levels import Level, LevelFormat, LevelPart
from sparse_import.tensor import Quantization, SparseTensor

DENSE = "DENSE"
SPARSE_CSR = "SPARSE_CSR"


def _int_list(seq: Any, what: str, label: str) -> list[int]:
    # Element by element: np.asarray would turn [2**63, 1] into float64 and reject ragged lists
    # with a bare ValueError.
    try:
        items = seq.reshape(-1).tolist() if isinstance(seq, np.ndarray) else list(seq)
        return [operator.index(v) for v in items]
    except (TypeError, ValueError):
        raise SparseFormatError(f"{label}: {what} {seq!r} must hold integers") from None


def _array(arr: Any, what: str, label: str) -> np.ndarray:
    try:
        return np.asarray(arr)
    except ValueError:  # a ragged nested sequence
        raise SparseFormatError(f"{label}: {what} {arr!r:.80} is not an array") from None


def _index_array(arr: Any, what: str, label: str) -> np.ndarray:
    out = _array(arr, what, label)
    if out.ndim != 1 or out.dtype.kind not in "iu":
        raise SparseFormatError(
            f"{label}: {what} must be a 1-D integer vector, got dtype {out.dtype} shape {out.shape}"
        )
    return out


def from_tflite_params(
    *,
    shape: Sequence[int],
    traversal_order: Sequence[int],
    block_map: Sequence[int],
    dim_metadata: Sequence[Mapping[str, Any]],
    values: Any,
    name: str | None = None,
    quantization: Quantization | None = None,
) -> SparseTensor:
    """Build a validated :class:`~sparse_import.SparseTensor` from raw TFLite sparsity fields.

    Parameters
    ----------
    shape : sequence of int, length n
        The tensor's dense shape.
    traversal_order : sequence of int, length n + k
    block_map : sequence of int, length k
    dim_metadata : sequence of mapping, length n + k
        Per level ``{"format": "DENSE", "dense_size": int}`` or
        ``{"format": "SPARSE_CSR", "array_segments": ints, "array_indices": ints}``.
    values : array_like, shape (nnz,)
        The tensor's buffer, in storage order.
    name : str, optional

    Raises
    ------
    SparseFormatError
        When the fields are inconsistent (naming the tensor, the level and the values).
    UnsupportedSparsityError
        For a blocked dimension whose block level and in-block level are both SPARSE_CSR
        (nothing states the block size).

    Examples
    --------
    >>> import numpy as np
    >>> from sparse_import import from_tflite_params
    >>> t = from_tflite_params(
    ...     shape=[3, 4], traversal_order=[0, 1], block_map=[],
    ...     dim_metadata=[{"format": "DENSE", "dense_size": 3},
    ...                   {"format": "SPARSE_CSR", "array_segments": [0, 3, 3, 5],
    ...                    "array_indices": [0, 2, 3, 0, 3]}],
    ...     values=np.array([6, 9, 8, 5, 7], np.float32), name="w")
    >>> t.to_dense().tolist()
    [[6.0, 0.0, 9.0, 8.0], [0.0, 0.0, 0.0, 0.0], [5.0, 0.0, 0.0, 7.0]]
    """
    label = tensor_label(name)
    dims = list(check_shape(_int_list(shape, "shape", label), label))
    order = _int_list(traversal_order, "traversal_order", label)
    blocked = _int_list(block_map, "block_map", label)
    n, k = len(dims), len(blocked)
    if sorted(order) != list(range(n + k)):
        raise SparseFormatError(
            f"{label}: traversal_order {order} is not a permutation of range({n + k}) "
            f"(rank {n} plus {k} block dimensions)"
        )
    if len(set(blocked)) != k or any(not 0 <= d < n for d in blocked):
        raise SparseFormatError(
            f"{label}: block_map {blocked} must name distinct dimensions in range({n})"
        )
    if len(dim_metadata) != n + k:
        raise SparseFormatError(
            f"{label}: {len(dim_metadata)} dim_metadata entries for {n + k} levels"
        )
    formats = []
    for level, meta in enumerate(dim_metadata):
        fmt = meta.get("format") if isinstance(meta, Mapping) else None
        if fmt not in (DENSE, SPARSE_CSR):
            raise SparseFormatError(
                f"{label}: dim_metadata[{level}] format {fmt!r} is not DENSE or SPARSE_CSR"
            )
        formats.append(fmt)
    block_sizes = {
        d: _block_size(d, order.index(n + j), order.index(d), dims, formats, dim_metadata, label)
        for j, d in enumerate(blocked)
    }
    levels, positions, coordinates = [], [], []
    for level, (e, fmt, meta) in enumerate(zip(order, formats, dim_metadata, strict=True)):
        if e < n:
            d = e
            part = LevelPart.BLOCK if d in block_sizes else LevelPart.WHOLE
        else:
            d = blocked[e - n]
            part = LevelPart.ELEMENT
        lvl = Level(
            d,
            LevelFormat.DENSE if fmt == DENSE else LevelFormat.COMPRESSED,
            part,
            block_sizes.get(d, 1),
        )
        if fmt == DENSE:
            size = _int_list([meta.get("dense_size")], "dense_size", label)[0]
            if d in block_sizes and dims[d] % block_sizes[d]:
                raise SparseFormatError(
                    f"{label}: block size {block_sizes[d]} does not divide dimension {d} of "
                    f"size {dims[d]}"
                )
            expected = lvl.size(dims[d])
            if size != expected:
                raise SparseFormatError(
                    f"{label}: level {level} ({lvl}): dense_size {size} disagrees with the "
                    f"level size {expected} implied by shape {tuple(dims)}"
                )
            positions.append(None)
            coordinates.append(None)
        else:
            positions.append(
                _index_array(meta.get("array_segments"), f"level {level} array_segments", label)
            )
            coordinates.append(
                _index_array(meta.get("array_indices"), f"level {level} array_indices", label)
            )
        levels.append(lvl)
    tensor = SparseTensor(
        tuple(dims),
        tuple(levels),
        tuple(positions),
        tuple(coordinates),
        _array(values, "values", label).reshape(-1),
        name=name,
        quantization=quantization,
    )
    tensor.validate()
    return tensor


def _block_size(
    d: int,
    inner: int,
    outer: int,
    dims: list[int],
    formats: list[str],
    dim_metadata: Sequence[Mapping[str, Any]],
    label: str,
) -> int:
    """The block size of blocked dimension ``d``, whose in-block part is level ``inner`` and
    whose block coordinate is level ``outer``.

    A DENSE in-block level states it (``dense_size``). A SPARSE_CSR one does not, but a DENSE
    outer level states how many blocks there are, and the dimension divided by that is the
    block size (NNAPI's DENSIFY tests store 5 x 7 blocks of a 10 x 21 tensor this way).
    """
    if formats[inner] == DENSE:
        size = _int_list([dim_metadata[inner].get("dense_size")], "dense_size", label)[0]
        if size <= 0:
            raise SparseFormatError(
                f"{label}: level {inner}: block size (dense_size) {size} must be positive"
            )
        return size
    if formats[outer] != DENSE:
        raise UnsupportedSparsityError(
            f"{label}: levels {outer} and {inner} (the blocks and the in-block part of dimension "
            f"{d}) are both SPARSE_CSR, so neither states the block size"
        )
    count = _int_list([dim_metadata[outer].get("dense_size")], "dense_size", label)[0]
    if dims[d] == 0:
        raise UnsupportedSparsityError(
            f"{label}: dimension {d} has size 0, so the block size of its SPARSE_CSR in-block "
            f"level {inner} does not follow from it"
        )
    if count <= 0 or dims[d] % count:
        raise SparseFormatError(
            f"{label}: level {outer}: dense_size {count} blocks does not divide dimension {d} "
            f"of size {dims[d]} (level {inner}, its in-block part, is SPARSE_CSR)"
        )
    return dims[d] // count


def to_tflite_params(tensor: SparseTensor) -> dict[str, Any]:
    """The TFLite sparsity fields for ``tensor``: inverse of :func:`from_tflite_params`.

    Returns a dict with ``traversal_order``, ``block_map`` (ascending, as TFLite's runtime
    expects), ``dim_metadata`` and ``values``.
    """
    label = tensor_label(tensor.name)
    n = tensor.rank
    blocked = sorted({lvl.dim for lvl in tensor.levels if lvl.part is LevelPart.BLOCK})
    order, metadata = [], []
    for k, lvl in enumerate(tensor.levels):
        if lvl.format is LevelFormat.SINGLETON:
            raise UnsupportedSparsityError(
                f"{label}: level {k} ({lvl}) is singleton; TFLite has no singleton levels"
            )
        if lvl.format is LevelFormat.COMPRESSED and not (lvl.unique and lvl.ordered):
            raise UnsupportedSparsityError(
                f"{label}: level {k} ({lvl}) is not unique and ordered as SPARSE_CSR requires"
            )
        order.append(n + blocked.index(lvl.dim) if lvl.part is LevelPart.ELEMENT else lvl.dim)
        if lvl.format is LevelFormat.DENSE:
            metadata.append({"format": DENSE, "dense_size": lvl.size(tensor.shape[lvl.dim])})
        else:
            outer = (
                next(
                    (i, o)
                    for i, o in enumerate(tensor.levels)
                    if o.dim == lvl.dim and o.part is LevelPart.BLOCK
                )
                if lvl.part is LevelPart.ELEMENT
                else None
            )
            if outer is not None and outer[1].format is not LevelFormat.DENSE:
                raise UnsupportedSparsityError(
                    f"{label}: level {k} ({lvl}) is a compressed in-block level and level "
                    f"{outer[0]} ({outer[1]}) is not dense; TFLite can state the block size of "
                    "a compressed in-block level only through a DENSE block level"
                )
            metadata.append(
                {
                    "format": SPARSE_CSR,
                    "array_segments": tensor.positions[k],
                    "array_indices": tensor.coordinates[k],
                }
            )
    return {
        "traversal_order": order,
        "block_map": blocked,
        "dim_metadata": metadata,
        "values": tensor.values,
    }
