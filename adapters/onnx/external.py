"""Tensor data stored outside the model file ("external data"), read safely.

A ``TensorProto`` with ``data_location == EXTERNAL`` names a file (``location``, relative to the
model's directory), a byte ``offset`` and a ``length``. ``onnx.load`` resolves this for dense
initializers and attribute tensors, but not for the ``values`` and ``indices`` of sparse
tensors; this module reads both kinds, with the same rules:

- the location must stay inside the model's directory once symbolic links are resolved
  (no absolute paths, no ``..`` escapes);
- ``offset`` and ``length`` must lie inside the file, and ``length`` must equal the size the
  tensor's dims and element type declare, so a crafted entry cannot trigger a huge read.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sparse_import.errors import UnsupportedModelError
from sparse_import.limits import check_read_size

from ._proto import NUMERIC_TYPES, type_name

EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL


def uses_external_data(tensor) -> bool:
    """Whether ``tensor`` (a ``TensorProto``) keeps its data in an external file."""
    return tensor.data_location == EXTERNAL


def _entries(tensor, what: str) -> tuple[str, int, int | None]:
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    if not location:
        raise UnsupportedModelError(f"{what}: external data without a 'location'")
    try:
        offset = int(info.get("offset", 0))
        length = int(info["length"]) if "length" in info else None
    except ValueError:
        raise UnsupportedModelError(
            f"{what}: external data offset/length {info.get('offset')!r}/{info.get('length')!r} "
            "are not integers"
        ) from None
    return location, offset, length


def resolve(base_dir: str | Path | None, location: str, what: str) -> Path:
    """The file ``location`` names, checked to lie inside ``base_dir``.

    Raises
    ------
    UnsupportedModelError
        No ``base_dir`` (a model given as bytes or a ``ModelProto``), a location holding a NUL
        byte, an absolute location, one that resolves outside ``base_dir``, or a missing file.
    """
    if base_dir is None:
        raise UnsupportedModelError(
            f"{what} is stored in the external file {location!r}; pass the model as a path, or "
            "give base_dir, the directory holding that file"
        )
    if "\x00" in location:
        raise UnsupportedModelError(
            f"{what}: external data location {location!r} contains a NUL byte"
        )
    if Path(location).is_absolute():
        raise UnsupportedModelError(
            f"{what}: external data location {location!r} must be relative to the model's "
            "directory, not absolute"
        )
    base = Path(base_dir).resolve()
    path = (base / location).resolve()
    if not path.is_relative_to(base):
        raise UnsupportedModelError(
            f"{what}: external data location {location!r} points outside the model's directory "
            f"{str(base)!r}"
        )
    if not path.is_file():
        raise UnsupportedModelError(f"{what}: external data file {str(path)!r} does not exist")
    return path


def read_external(
    tensor,
    base_dir: str | Path | None,
    what: str,
    check_dims: Callable[[tuple[int, ...]], None] | None = None,
) -> np.ndarray:
    """The array an external ``TensorProto`` holds, shaped by its dims, read with one copy.

    Parameters
    ----------
    tensor : onnx.TensorProto
        With ``data_location == EXTERNAL``; not modified.
    base_dir : path or None
        The model's directory.
    what : str
        How error messages name the tensor.
    check_dims : callable, optional
        Called with the dims once the file range is checked, before anything is read; raises
        to refuse a size the caller cannot use.

    Raises
    ------
    DenseLimitError
        When the tensor's bytes exceed the dense byte limit (checked before reading; a file
        with holes can declare far more than it occupies on disk).
    """
    dtype = NUMERIC_TYPES.get(tensor.data_type)
    if dtype is None:
        raise UnsupportedModelError(
            f"{what}: external data of type {type_name(tensor.data_type)} is not supported"
        )
    location, offset, length = _entries(tensor, what)
    path = resolve(base_dir, location, what)
    dims = tuple(int(d) for d in tensor.dims)
    if any(d < 0 for d in dims):
        raise UnsupportedModelError(f"{what}: negative dims {dims}")
    expected = math.prod(dims) * dtype.itemsize
    size = path.stat().st_size
    length = size - offset if length is None else length
    if offset < 0 or length < 0 or offset + length > size:
        raise UnsupportedModelError(
            f"{what}: external data range [{offset}, {offset + length}) lies outside "
            f"{location!r} ({size} bytes)"
        )
    if length != expected:
        raise UnsupportedModelError(
            f"{what}: external data length {length} does not match dims {dims} of "
            f"{type_name(tensor.data_type)} ({expected} bytes)"
        )
    if check_dims is not None:
        check_dims(dims)
    check_read_size(expected, what)
    array = np.fromfile(path, dtype=dtype.newbyteorder("<"), count=math.prod(dims), offset=offset)
    return array.astype(dtype, copy=False).reshape(dims)


def inline_external(tensor, base_dir: str | Path | None, what: str) -> None:
    """Move an external dense tensor's data into its ``raw_data`` (the tensor is modified)."""
    array = read_external(tensor, base_dir, what)
    tensor.raw_data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    tensor.data_location = 0  # DEFAULT
    del tensor.external_data[:]
