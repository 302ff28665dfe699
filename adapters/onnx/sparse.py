"""ONNX ``SparseTensorProto`` <-> :class:`~sparse_import.SparseTensor`.

ONNX stores a sparse tensor in coordinate form: ``values`` of shape ``(nnz,)`` and ``indices``
either of shape ``(nnz, rank)`` (one coordinate tuple per value) or ``(nnz,)`` (*linearized*:
row-major offsets into the dense tensor). The name of the tensor is ``values.name``. In the IR
both forms become the sorted COO layout ``(d0 : compressed(nonunique), d1 : singleton, ...)``
(a single compressed level for rank 1), with int32 coordinates unless a dimension needs int64.

The ONNX checker's rules are enforced with messages naming the tensor and the first offending
position: dense rank > 0 with positive dims, ``values`` of rank 1, indices present unless
``nnz == 0``, indices of shape ``(nnz, rank)`` or ``(nnz,)`` holding in-bounds coordinates in
strictly ascending order. Two deviations real exporters write are accepted unless
``strict=True``, because their meaning is unambiguous: indices of a narrower integer type
(widened to int64) and indices in any order without duplicates (sorted together with their
values). Duplicate coordinates are always refused: their meaning (sum? last wins?) is not
defined.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sparse_import._codec import index_dtype
from sparse_import.errors import SparseFormatError, UnsupportedSparsityError, tensor_label
from sparse_import.layouts import coo_layout
from sparse_import.limits import check_dense_form, check_read_size
from sparse_import.tensor import SparseTensor

from ._proto import NUMERIC_TYPES, onnx, type_name
from .external import read_external, uses_external_data

INT64 = 7
_INT64_MAX = np.iinfo(np.int64).max
MAX_RANK = 64  # NumPy's limit on ndarray dimensions: no dense form of a higher rank exists
_CHUNK = 1 << 20  # linear offsets unravelled per chunk, so temporaries stay O(chunk)


def tensor_array(
    tensor,
    base_dir: str | Path | None,
    what: str,
    check_dims: Callable[[tuple[int, ...]], None] | None = None,
) -> np.ndarray:
    """The array a ``TensorProto`` holds (inline or external), without modifying the proto.

    ``check_dims`` (optional) is called with the dims of external data once its file range is
    checked and before anything is read, so it can refuse a size the caller cannot use.

    Raises
    ------
    UnsupportedSparsityError
        For element types outside the numeric types, or segmented tensors.
    SparseFormatError
        When the stored data does not fill the declared dims.
    """
    if tensor.data_type not in NUMERIC_TYPES:
        raise UnsupportedSparsityError(
            f"{what} have element type {type_name(tensor.data_type)}; supported: "
            + ", ".join(type_name(t) for t in NUMERIC_TYPES)
        )
    if tensor.HasField("segment"):
        raise UnsupportedSparsityError(f"{what}: segmented tensors are not supported")
    if uses_external_data(tensor):
        return read_external(tensor, base_dir, what, check_dims)
    try:
        return onnx().numpy_helper.to_array(tensor)
    except (ValueError, TypeError, OverflowError) as exc:
        raise SparseFormatError(
            f"{what}: stored data does not match dims {tuple(tensor.dims)}: {exc}"
        ) from None


def _dense_shape(sparse, label: str) -> tuple[int, ...]:
    shape = tuple(int(d) for d in sparse.dims)
    if not shape:
        raise SparseFormatError(f"{label}: dims must have rank > 0, got ()")
    if len(shape) > MAX_RANK:
        raise UnsupportedSparsityError(
            f"{label}: dims have rank {len(shape)}; at most {MAX_RANK} dimensions are supported "
            "(NumPy's limit for the dense form)"
        )
    if min(shape) <= 0:
        raise SparseFormatError(f"{label}: dims {shape} must all be positive")
    if math.prod(shape) > _INT64_MAX:
        raise SparseFormatError(f"{label}: dims {shape} overflow a 64-bit linear index")
    return shape


def _check_declared_count(dims: tuple[int, ...], shape: tuple[int, ...], what: str) -> None:
    """Refuse external values whose dims declare more elements than the dense form holds.

    Checked from the dims alone, before the file is read: distinct in-bounds coordinates
    number at most ``prod(shape)``, so a larger count is malformed, and reading it would
    allocate memory the dense tensor never needs.
    """
    count, size = math.prod(dims), math.prod(shape)
    if count > size:
        raise SparseFormatError(
            f"{what}: dims {dims} declare {count} elements, more than the {size} of the dense "
            f"form {shape}"
        )


def _check_declared_indices(
    dims: tuple[int, ...], shape: tuple[int, ...], nnz: int, label: str
) -> None:
    """Refuse indices whose dims are neither ``(nnz, rank)`` nor ``(nnz,)``, before reading."""
    rank = len(shape)
    if dims not in ((nnz, rank), (nnz,)):
        raise SparseFormatError(
            f"{label}: indices have shape {dims}; expected ({nnz}, {rank}) "
            f"([NNZ, rank]) or ({nnz},) (linearized) for {nnz} values"
        )


def _check_external_indices(
    indices, dims: tuple[int, ...], shape: tuple[int, ...], nnz: int, label: str
) -> None:
    """External indices: of shape ``(nnz, rank)`` or ``(nnz,)``, and a read within the limit."""
    _check_declared_indices(dims, shape, nnz, label)
    itemsize = NUMERIC_TYPES.get(indices.data_type, np.dtype(np.int64)).itemsize
    check_read_size(math.prod(dims) * itemsize, f"{label}: indices")


def _declared_dims(tensor) -> tuple[int, ...]:
    return tuple(int(d) for d in tensor.dims)


def _check_declarations(sparse, shape: tuple[int, ...], label: str) -> None:
    """Everything the dims of external values and indices must satisfy, before either is read.

    The dense form must fit the dense byte limit, the values must be ``(nnz,)`` with ``nnz``
    at most the dense size, the indices present when ``nnz > 0`` and of shape ``(nnz, rank)``
    or ``(nnz,)``, and neither external range larger than the limit.
    """
    values = sparse.values
    dtype = NUMERIC_TYPES.get(values.data_type)
    if dtype is None:
        return  # reading the values names the unsupported element type
    check_dense_form(shape, dtype, label)
    if not uses_external_data(values):
        return  # inline values are already in memory; their dims are checked on reading
    dims = _declared_dims(values)
    what = f"{label}: values"
    if len(dims) != 1:
        raise SparseFormatError(f"{label}: values must have rank 1 ([NNZ]), got shape {dims}")
    _check_declared_count(dims, shape, what)
    nnz = dims[0]
    if not sparse.HasField("indices"):
        if nnz:
            raise SparseFormatError(f"{label}: {nnz} values but no indices")
        return
    if uses_external_data(sparse.indices):
        dims = _declared_dims(sparse.indices)
        _check_external_indices(sparse.indices, dims, shape, nnz, label)


def _index_array(
    sparse, base_dir, label: str, strict: bool, shape: tuple[int, ...], nnz: int
) -> np.ndarray:
    indices = sparse.indices
    kind = NUMERIC_TYPES.get(indices.data_type, np.dtype(object)).kind
    if indices.data_type != INT64 and (strict or kind not in "iu"):
        accepted = "" if strict else " (other integer types are accepted)"
        raise SparseFormatError(
            f"{label}: indices must be INT64{accepted}, got {type_name(indices.data_type)}"
        )
    array = tensor_array(
        indices,
        base_dir,
        f"{label}: indices",
        check_dims=lambda dims: _check_external_indices(indices, dims, shape, nnz, label),
    )
    if array.dtype == np.uint64:  # huge values stay out of bounds instead of wrapping
        array = np.minimum(array, np.uint64(_INT64_MAX))
    return array.astype(np.int64, copy=False)


def _shown(indices: np.ndarray, i: int) -> int | tuple[int, ...]:
    row = indices[i]
    return int(row) if row.ndim == 0 else tuple(int(c) for c in row)


def _linear(indices: np.ndarray, shape: tuple[int, ...], nnz: int, label: str) -> np.ndarray:
    """Check bounds; return the (nnz,) row-major offsets, O(nnz) memory for either form."""
    rank, size = len(shape), math.prod(shape)
    if indices.shape not in ((nnz, rank), (nnz,)):
        raise SparseFormatError(
            f"{label}: indices have shape {indices.shape}; expected ({nnz}, {rank}) "
            f"([NNZ, rank]) or ({nnz},) (linearized) for {nnz} values"
        )
    if indices.ndim == 2:
        bad = np.zeros(nnz, dtype=bool)
        for d, n in enumerate(shape):
            column = indices[:, d]
            bad |= (column < 0) | (column >= n)
        suffix = ""
    else:
        bad = (indices < 0) | (indices >= size)
        suffix = f" (linearized, size {size})"
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SparseFormatError(
            f"{label}: indices[{i}] = {_shown(indices, i)} is out of bounds for shape "
            f"{shape}{suffix}"
        )
    if indices.ndim == 1:
        return indices
    linear = np.zeros(nnz, dtype=np.int64)
    stride = 1
    for d in range(rank - 1, -1, -1):
        if shape[d] > 1:
            linear += indices[:, d] * stride
        stride *= shape[d]
    return linear


def _unravel(linear: np.ndarray, shape: tuple[int, ...], dtype: np.dtype) -> list[np.ndarray]:
    """One coordinate array per dimension (``dtype``), unravelled chunk by chunk."""
    nnz = linear.shape[0]
    strides = [math.prod(shape[d + 1 :]) for d in range(len(shape))]
    coords = []
    for n, stride in zip(shape, strides, strict=True):
        out = np.zeros(nnz, dtype)
        if n > 1:
            for start in range(0, nnz, _CHUNK):
                part = linear[start : start + _CHUNK]
                out[start : start + part.shape[0]] = (part // stride) % n
        coords.append(out)
    return coords


def _ascending_order(
    linear: np.ndarray, indices: np.ndarray, label: str, strict: bool
) -> np.ndarray | None:
    """``None`` when ``linear`` strictly ascends, else the permutation that sorts it.

    Raises on duplicates, and on any disorder when ``strict``.
    """
    steps = np.diff(linear)
    if not (steps <= 0).any():
        return None
    if strict:
        i = int(np.flatnonzero(steps <= 0)[0]) + 1
        raise SparseFormatError(
            f"{label}: indices are not strictly ascending at position {i}: "
            f"{_shown(indices, i - 1)} then {_shown(indices, i)}"
        )
    order = np.argsort(linear, kind="stable")
    ranked = linear[order]
    repeated = order[1:][ranked[1:] == ranked[:-1]]
    if repeated.size:
        j = int(repeated.min())
        first = int(np.flatnonzero(linear == linear[j])[0])
        raise SparseFormatError(
            f"{label}: indices[{j}] = {_shown(indices, j)} repeats indices[{first}]; "
            "duplicate coordinates are ambiguous"
        )
    return order


def from_onnx(
    sparse,
    *,
    name: str | None = None,
    base_dir: str | Path | None = None,
    strict: bool = False,
) -> SparseTensor:
    """Convert one ONNX ``SparseTensorProto`` into the IR (sorted COO), validating it.

    Parameters
    ----------
    sparse : onnx.SparseTensorProto
        ``values`` of shape ``(nnz,)``; ``indices`` of shape ``(nnz, rank)`` or ``(nnz,)``
        (linearized), or absent when ``nnz == 0``. Not modified.
    name : str, optional
        The tensor's name; default ``values.name`` (the name of a sparse initializer).
    base_dir : path, optional
        Directory of the model, for values or indices stored as external data.
    strict : bool
        Apply the ONNX checker's rules exactly: refuse indices that are not INT64 or not
        strictly ascending (accepted and normalized by default).

    Returns
    -------
    SparseTensor
        Shape ``dims``, layout ``coo_layout(rank)``, values in row-major order of their
        coordinates; coordinates are int32 unless a dimension needs int64.

    Raises
    ------
    SparseFormatError
        A broken checker rule, naming the tensor and the first offending position.
    UnsupportedSparsityError
        Values of a non-numeric element type (strings, bfloat16, float8, 4-bit).

    Examples
    --------
    >>> import numpy as np
    >>> from onnx import helper, numpy_helper
    >>> from sparse_import.adapters.onnx import from_onnx
    >>> sp = helper.make_sparse_tensor(
    ...     numpy_helper.from_array(np.array([5.0, 7.0], np.float32), "w"),
    ...     numpy_helper.from_array(np.array([[0, 1], [2, 0]], np.int64)),
    ...     [3, 2])
    >>> t = from_onnx(sp)
    >>> t.name, t.layout
    ('w', '(d0 : compressed(nonunique), d1 : singleton)')
    >>> t.to_dense()
    array([[0., 5.],
           [0., 0.],
           [7., 0.]], dtype=float32)
    """
    if not isinstance(sparse, onnx().SparseTensorProto):
        raise TypeError(f"expected an onnx.SparseTensorProto, got {type(sparse).__name__}")
    name = name or sparse.values.name or None
    if isinstance(name, bytes):  # protobuf hands out invalid UTF-8 strings as bytes
        decoded = name.decode("utf-8", "backslashreplace")
        raise SparseFormatError(f"{tensor_label(decoded)}: the name is not valid UTF-8")
    label = tensor_label(name)
    shape = _dense_shape(sparse, label)
    _check_declarations(sparse, shape, label)
    what = f"{label}: values"
    values = tensor_array(
        sparse.values,
        base_dir,
        what,
        check_dims=lambda dims: _check_declared_count(dims, shape, what),
    )
    if values.ndim != 1:
        raise SparseFormatError(
            f"{label}: values must have rank 1 ([NNZ]), got shape {values.shape}"
        )
    nnz = values.shape[0]
    if sparse.HasField("indices"):
        indices = _index_array(sparse, base_dir, label, strict, shape, nnz)
        linear = _linear(indices, shape, nnz, label)
        order = _ascending_order(linear, indices, label, strict)
        del indices
        if order is not None:
            linear, values = linear[order], values[order]
    elif nnz:
        raise SparseFormatError(f"{label}: {nnz} values but no indices")
    else:
        linear = np.zeros(0, np.int64)
    return _coo_tensor(shape, linear, values, name)


def _coo_tensor(
    shape: tuple[int, ...], linear: np.ndarray, values: np.ndarray, name: str | None
) -> SparseTensor:
    """The sorted COO tensor of ascending row-major offsets ``linear`` and their values."""
    nnz = linear.shape[0]
    dtype = index_dtype(max(*shape, nnz))
    positions = (np.array([0, nnz], dtype),) + (None,) * (len(shape) - 1)
    coordinates = tuple(_unravel(linear, shape, dtype))
    tensor = SparseTensor(shape, coo_layout(len(shape)), positions, coordinates, values, name)
    tensor.validate()
    return tensor


def to_onnx(tensor: SparseTensor, *, linearized: bool = False, name: str | None = None):
    """Write any IR tensor as an ONNX ``SparseTensorProto`` that passes the ONNX checker.

    Parameters
    ----------
    tensor : SparseTensor
        Any layout; every stored value (explicit zeros included) becomes one ONNX value.
    linearized : bool
        Write indices of shape ``(nnz,)`` (row-major offsets) instead of ``(nnz, rank)``.
    name : str, optional
        ``values.name``; default ``tensor.name``. Quantization metadata is not written
        (ONNX keeps it on ``DequantizeLinear`` nodes, not on tensors).

    Returns
    -------
    onnx.SparseTensorProto
        INT64 indices in strictly ascending order.

    Examples
    --------
    >>> import numpy as np
    >>> from sparse_import import SparseTensor
    >>> from sparse_import.layouts import csc_layout
    >>> from onnx.numpy_helper import to_array
    >>> from sparse_import.adapters.onnx import to_onnx
    >>> t = SparseTensor.from_dense(np.array([[0, 2], [3, 4]], np.float32), csc_layout())
    >>> sp = to_onnx(t, linearized=True, name="w")
    >>> list(sp.dims), to_array(sp.indices).tolist(), to_array(sp.values).tolist()
    ([2, 2], [1, 2, 3], [2.0, 3.0, 4.0])
    """
    if tensor.rank == 0 or min(tensor.shape) == 0:
        raise UnsupportedSparsityError(
            f"{tensor_label(tensor.name)}: ONNX sparse tensors need positive dims, got "
            f"{tensor.shape}"
        )
    numpy_helper, helper = onnx().numpy_helper, onnx().helper
    coords, values = tensor.coo()
    linear = np.ravel_multi_index(tuple(coords.T), tensor.shape).astype(np.int64, copy=False)
    if (np.diff(linear) < 0).any():
        order = np.argsort(linear, kind="stable")
        coords, values, linear = coords[order], values[order], linear[order]
    name = name or tensor.name
    indices = linear if linearized else coords
    return helper.make_sparse_tensor(
        numpy_helper.from_array(np.ascontiguousarray(values), name),
        numpy_helper.from_array(np.ascontiguousarray(indices, dtype=np.int64)),
        tensor.shape,
    )
