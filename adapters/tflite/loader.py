"""Load a TFLite model and check its flatbuffer structure before anything reads it.

The ``tflite`` package's generated accessors do no bounds checking: a table whose vtable offset
points before the start of the buffer makes them read from its end instead, and a corrupt vector
length makes loops run for as long as the buffer lasts. :func:`load_model` therefore walks the
parts of the model that this adapter and TVM's TFLite frontend read (operator codes, the tensors,
buffers and operators of each subgraph) and checks every table header and vector against the
buffer, so a truncated or corrupted file fails here with a :class:`SparseFormatError` that names
the tensor or operator, instead of crashing or misleading a reader later.

Flatbuffers allow shared references: many entries of a vector may point at one table. Tables
are therefore checked once per distinct table (:func:`shared_tables`), and the work of reading
is bounded by the file's size (:class:`WorkBudget`), so a small file cannot describe a graph
that takes minutes to walk. :func:`buffer_data` returns a buffer's bytes whether they are
stored inline or after the flatbuffer (``offset``/``size``, models over 2 GB).

This module is the one place that imports the ``tflite`` package.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import numpy as np

from sparse_import._checks import MAX_RANK
from sparse_import.detect import TFLITE_IDENTIFIER, read_model_file
from sparse_import.errors import (
    SparseFormatError,
    UnsupportedModelError,
    UnsupportedSparsityError,
)

_HEADER = struct.Struct("<i")
_VTABLE = struct.Struct("<HH")
_TENSOR_SHAPE = 4  # vtable slot of Tensor.shape (field 0)
SUBGRAPH_TENSORS = 4  # vtable slot of SubGraph.tensors (field 0)
_SUBGRAPH_OPERATORS = 10  # vtable slot of SubGraph.operators (field 3)
_READ_ERRORS = (struct.error, IndexError, TypeError, ValueError, OverflowError, UnicodeError)
# Little-endian NumPy dtype of each fixed-size TensorType, by name.
_DTYPES = {
    "FLOAT32": "<f4",
    "FLOAT16": "<f2",
    "FLOAT64": "<f8",
    "INT8": "i1",
    "UINT8": "u1",
    "INT16": "<i2",
    "UINT16": "<u2",
    "INT32": "<i4",
    "UINT32": "<u4",
    "INT64": "<i8",
    "UINT64": "<u8",
    "BOOL": "?",
}

T = TypeVar("T")

# The work budget: reading a model may visit at most this many "bytes of an unshared file" per
# byte of the actual file, plus a floor for tiny files (see WorkBudget).
WORK_PER_BYTE = 2
WORK_FLOOR = 1 << 16
TABLE_COST = 8  # the least an unshared table takes: its vtable offset and one field


class WorkBudget:
    """Bounds the work of reading one model by the size of its file.

    A flatbuffer may reference one table or vector from many places (shared references are
    legal), so a small file can describe a graph of 250,000 operators that all point at one
    operator with 250,000 inputs. Readers :meth:`charge` what each table they visit would take
    in a file without sharing (a table :data:`TABLE_COST` bytes, each vector element its
    size); once the total passes ``WORK_PER_BYTE * file bytes + WORK_FLOOR`` reading stops with
    a :class:`SparseFormatError` naming the table being read. A file that shares nothing never
    reaches the budget: everything charged is also stored in it.

    Parameters
    ----------
    nbytes : int
        Size of the model's flatbuffer.
    """

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.limit = WORK_PER_BYTE * nbytes + WORK_FLOOR
        self.spent = 0

    def charge(self, units: int, what: str) -> None:
        """Count ``units`` of work for reading ``what``; raise once the budget is exceeded."""
        self.spent += units
        if self.spent > self.limit:
            raise SparseFormatError(
                f"{what}: reading the model takes more than {self.limit} units of work, more "
                f"than its {self.nbytes} bytes hold without sharing (flatbuffer tables or vectors "
                "referenced from many places)"
            )


def schema() -> ModuleType:
    """The ``tflite`` flatbuffer package (``pip install tflite``), imported on first use."""
    try:
        import tflite
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ImportError("reading .tflite models needs the 'tflite' package") from exc
    return tflite


@contextlib.contextmanager
def reading(what: str) -> Iterator[None]:
    """Turn the low-level errors of a flatbuffer read into a :class:`SparseFormatError`.

    Parameters
    ----------
    what : str
        What is being read, e.g. ``"tensor 'w' (index 3)"``; starts the message.
    """
    try:
        yield
    except (SparseFormatError, UnsupportedModelError, UnsupportedSparsityError):
        raise
    except _READ_ERRORS as exc:
        raise SparseFormatError(f"{what}: truncated or corrupt flatbuffer ({exc})") from None


def checked(table: T | None, what: str) -> T | None:
    """Return ``table`` (a generated ``tflite`` accessor) after checking its header.

    Checks that the table and its vtable lie inside the buffer and that every field offset lies
    inside the table. Fields read afterwards can then only fail by running past the end of the
    buffer, which :func:`reading` reports.
    """
    if table is None:
        return None
    tab = table._tab  # type: ignore[attr-defined]
    buf, pos = tab.Bytes, tab.Pos
    size = len(buf)
    if not 0 <= pos <= size - _HEADER.size:
        raise SparseFormatError(f"{what}: table offset {pos} lies outside the {size}-byte model")
    vtable = pos - _HEADER.unpack_from(buf, pos)[0]
    if not 0 <= vtable <= size - _VTABLE.size:
        raise SparseFormatError(
            f"{what}: vtable offset {vtable} lies outside the {size}-byte model"
        )
    vtable_size, table_size = _VTABLE.unpack_from(buf, vtable)
    if vtable_size < _VTABLE.size or vtable_size % 2 or vtable + vtable_size > size:
        raise SparseFormatError(f"{what}: vtable of {vtable_size} bytes at {vtable} is malformed")
    if pos + table_size > size:
        raise SparseFormatError(
            f"{what}: table of {table_size} bytes at {pos} runs past the {size}-byte model"
        )
    fields = struct.unpack_from(f"<{(vtable_size - 4) // 2}H", buf, vtable + 4)
    if fields and max(fields) >= max(table_size, _HEADER.size):
        raise SparseFormatError(f"{what}: field offset {max(fields)} lies outside its table")
    return table


def count(length: int, buffer: Any, what: str) -> int:
    """A vector length that fits the buffer (each element takes at least 4 bytes)."""
    if length * 4 > len(buffer):
        raise SparseFormatError(
            f"{what}: vector length {length} does not fit in the {len(buffer)}-byte model"
        )
    return length


@functools.cache
def type_names() -> dict[int, str]:
    """TensorType code -> name (``0 -> "FLOAT32"``)."""
    enum = schema().TensorType
    return {v: k for k, v in vars(enum).items() if not k.startswith("_")}


def tensor_dtype(type_code: int) -> np.dtype | None:
    """NumPy dtype of a TensorType; ``None`` for types without a fixed size (STRING, INT4)."""
    dtype = _DTYPES.get(type_names().get(type_code, ""))
    return None if dtype is None else np.dtype(dtype)


def tensor_name(subgraph: Any, index: int) -> str:
    """The tensor's name as TVM's frontend spells it (a generated name when it has none)."""
    name = subgraph.Tensors(index).Name()
    return name.decode("utf-8") if name is not None else f"tvmgen_tensor_{index}"


def load_model(model: Any) -> Any:
    """Return a checked ``tflite.Model`` for a ``.tflite`` path, its bytes or a ``tflite.Model``.

    Parameters
    ----------
    model : str, os.PathLike, bytes, bytearray, memoryview or tflite.Model

    Returns
    -------
    tflite.Model

    Raises
    ------
    UnsupportedModelError
        When the input is not a TFLite flatbuffer (missing file, wrong file identifier).
    SparseFormatError
        When the flatbuffer is truncated or corrupt, naming the tensor or operator affected.

    Examples
    --------
    >>> from sparse_import import UnsupportedModelError
    >>> from sparse_import.adapters.tflite import load_model
    >>> try:
    ...     load_model(b"not a model")
    ... except UnsupportedModelError as exc:
    ...     print(exc)
    11 bytes are not a TFLite model: the file identifier is b'a mo', expected b'TFL3'
    """
    tfl = schema()
    if isinstance(model, tfl.Model):
        check_structure(model)
        return model
    if isinstance(model, (str, os.PathLike)):
        data: bytes = read_model_file(model)
        origin = f"{str(Path(model))!r}"
    elif isinstance(model, (bytes, bytearray, memoryview)):
        data = bytes(model)
        origin = f"{len(data)} bytes"
    else:
        raise UnsupportedModelError(
            f"cannot read a {type(model).__name__} as a TFLite model: expected a .tflite path, "
            "its bytes or a tflite.Model"
        )
    identifier = data[4:8]
    if identifier != TFLITE_IDENTIFIER:
        verb = "are" if origin.endswith("bytes") else "is"
        raise UnsupportedModelError(
            f"{origin} {verb} not a TFLite model: the file identifier is {identifier!r}, "
            f"expected {TFLITE_IDENTIFIER!r}"
        )
    with reading("TFLite model"):
        root = tfl.Model.GetRootAs(data, 0)
    check_structure(root)
    return root


def check_structure(model: Any) -> None:
    """Check every table and vector of ``model`` that a reader of its graph touches.

    The work is bounded by the file's size (:class:`WorkBudget`), and a table that several
    entries share is checked once.

    Raises
    ------
    SparseFormatError
        Naming the first tensor, buffer, operator or operator code that is malformed, or what
        was being read when the work budget ran out.
    UnsupportedModelError
        For a dense tensor of rank above 64, which NumPy cannot hold.
    """
    buf = model._tab.Bytes
    budget = WorkBudget(len(buf))
    with reading("TFLite model"):
        checked(model, "TFLite model")
        n_buffers = count(model.BuffersLength(), buf, "model buffers")
        n_codes = count(model.OperatorCodesLength(), buf, "model operator codes")
        n_subgraphs = count(model.SubgraphsLength(), buf, "model subgraphs")
    for i in range(n_codes):
        with reading(f"operator code {i}"):
            budget.charge(TABLE_COST, f"operator code {i}")
            code = checked(model.OperatorCodes(i), f"operator code {i}")
            code.BuiltinCode(), code.DeprecatedBuiltinCode(), code.CustomCode()
    for i in range(n_buffers):
        with reading(f"buffer {i}"):
            budget.charge(TABLE_COST, f"buffer {i}")
            buffer = checked(model.Buffers(i), f"buffer {i}")
            buffer.DataAsNumpy()
            if buffer.Offset() > 1 and buffer.Offset() + buffer.Size() > len(buf):
                raise SparseFormatError(
                    f"buffer {i}: {buffer.Size()} bytes at offset {buffer.Offset()} run past "
                    f"the {len(buf)}-byte model"
                )
    for s in range(n_subgraphs):
        _check_subgraph(model, s, n_buffers, n_codes, budget)


def _check_subgraph(model: Any, s: int, n_buffers: int, n_codes: int, budget: WorkBudget) -> None:
    buf = model._tab.Bytes
    where = f"subgraph {s}"
    with reading(where):
        subgraph = checked(model.Subgraphs(s), where)
        n_tensors = count(subgraph.TensorsLength(), buf, f"{where} tensors")
        n_ops = count(subgraph.OperatorsLength(), buf, f"{where} operators")
        for what, vector in (
            ("inputs", subgraph.InputsAsNumpy),
            ("outputs", subgraph.OutputsAsNumpy),
        ):
            indices = vector()
            budget.charge(TABLE_COST + 4 * np.size(indices), f"{where} {what}")
            _check_indices(indices, n_tensors, f"{where} {what}", optional=False)
    # Each table that several entries share is checked once, and charged once per entry.
    for group in shared_tables(subgraph, SUBGRAPH_TENSORS, n_tensors, f"{where} tensors"):
        t, copies = int(group[0]), group.size
        what = f"tensor {t} of {where}"
        with reading(what):
            tensor = checked(subgraph.Tensors(t), what)
            name = tensor.Name()
            if name:
                what = f"tensor {name.decode('utf-8')!r} (index {t})"
            _check_vector(tensor, _TENSOR_SHAPE, 4, f"{what}: shape")
            quant = checked(tensor.Quantization(), f"{what}: quantization")
            budget.charge(_tensor_cost(tensor) * copies, sharing(what, copies))
            if tensor.ShapeLength() > MAX_RANK and tensor.Sparsity() is None:
                raise UnsupportedModelError(
                    f"{what}: rank {tensor.ShapeLength()} is above the {MAX_RANK} dimensions "
                    "NumPy supports"
                )
            if tensor.Type() not in type_names():
                raise SparseFormatError(f"{what}: unknown tensor type {tensor.Type()}")
            if not 0 <= tensor.Buffer() < max(n_buffers, 1):
                raise SparseFormatError(
                    f"{what}: buffer index {tensor.Buffer()} is out of range [0, {n_buffers})"
                )
            if n_buffers and tensor.Sparsity() is None:
                _check_constant_size(model, tensor, what)
            if quant is not None:
                quant.ScaleAsNumpy(), quant.ZeroPointAsNumpy(), quant.QuantizedDimension()
            checked(tensor.Sparsity(), f"{what}: sparsity parameters")
    for group in shared_tables(subgraph, _SUBGRAPH_OPERATORS, n_ops, f"{where} operators"):
        o, copies = int(group[0]), group.size
        what = f"operator {o} of {where}"
        with reading(what):
            op = checked(subgraph.Operators(o), what)
            inputs, outputs = op.InputsAsNumpy(), op.OutputsAsNumpy()
            cost = 3 * TABLE_COST + 4 * (np.size(inputs) + np.size(outputs))
            budget.charge(cost * copies, sharing(what, copies))
            if not 0 <= op.OpcodeIndex() < n_codes:
                raise SparseFormatError(
                    f"{what}: operator code index {op.OpcodeIndex()} is out of range [0, {n_codes})"
                )
            _check_indices(inputs, n_tensors, f"{what} inputs", optional=True)
            _check_indices(outputs, n_tensors, f"{what} outputs", optional=False)
            options = op.BuiltinOptions() if op.BuiltinOptionsType() else None
            if options is not None:
                checked(_Union(options), f"{what} options")


def shared_tables(table: Any, slot: int, length: int, what: str) -> list[np.ndarray]:
    """The entries of a vector of tables grouped by the table they point at.

    Entries of a flatbuffer vector of tables may point at one table (shared references). The
    positions of all ``length`` entries are computed at once from the vector in vtable slot
    ``slot`` of ``table``; the result holds, per distinct table in order of first use, the
    indices of the entries that point at it (so ``group[0]`` is its first entry).
    """
    tab = table._tab
    offset = tab.Offset(slot)
    if not offset or not length:
        return []
    start = tab.Vector(offset)
    if not 0 <= start <= len(tab.Bytes) - 4 * length:
        raise SparseFormatError(
            f"{what}: vector of {length} elements at {start} runs past the "
            f"{len(tab.Bytes)}-byte model"
        )
    relative = np.frombuffer(tab.Bytes, "<u4", count=length, offset=start).astype(np.int64)
    positions = start + 4 * np.arange(length, dtype=np.int64) + relative
    _, first, inverse, copies = np.unique(
        positions, return_index=True, return_inverse=True, return_counts=True
    )
    groups = np.split(np.argsort(inverse, kind="stable"), np.cumsum(copies)[:-1])
    return [groups[k] for k in np.argsort(first)]


def sharing(what: str, copies: int) -> str:
    """``what``, saying how many entries share its table when more than one do."""
    return what if copies == 1 else f"{what} (a table shared by {copies} entries)"


def _tensor_cost(tensor: Any) -> int:
    """What reading ``tensor`` (its shape and quantization vectors) costs in an unshared file."""
    cost = TABLE_COST + 4 * tensor.ShapeLength()
    quant = tensor.Quantization()
    if quant is not None:
        cost += TABLE_COST + 4 * quant.ScaleLength() + 8 * quant.ZeroPointLength()
    return cost


def _check_vector(table: Any, field: int, itemsize: int, what: str) -> None:
    """The vector in vtable slot ``field`` of ``table`` lies inside the buffer."""
    tab = table._tab
    offset = tab.Offset(field)
    if not offset:
        return
    start = tab.Vector(offset)
    length = tab.VectorLen(offset)
    if start + length * itemsize > len(tab.Bytes):
        raise SparseFormatError(
            f"{what}: vector of {length} elements at {start} runs past the "
            f"{len(tab.Bytes)}-byte model"
        )


def _check_constant_size(model: Any, tensor: Any, what: str) -> None:
    """A dense constant's buffer holds exactly its shape's worth of values."""
    dtype = tensor_dtype(tensor.Type())
    buffer = model.Buffers(tensor.Buffer())
    nbytes = buffer.Size() if buffer.Offset() > 1 else buffer.DataLength()
    if dtype is None or nbytes == 0:
        return
    shape = tensor.ShapeAsNumpy()
    dims = [] if isinstance(shape, int) else shape.tolist()
    needed = math.prod(dims) * dtype.itemsize
    if nbytes != needed or min(dims, default=0) < 0:
        raise SparseFormatError(
            f"{what}: its buffer holds {nbytes} bytes, but shape {tuple(dims)} of "
            f"{type_names()[tensor.Type()]} needs {needed}"
        )


def _check_indices(indices: Any, n_tensors: int, what: str, *, optional: bool) -> None:
    if isinstance(indices, int):  # the accessor returns 0 for an absent vector
        return
    low = -1 if optional else 0
    bad = (indices < low) | (indices >= n_tensors)
    if bad.any():
        raise SparseFormatError(
            f"{what}: tensor index {int(indices[bad][0])} is out of range [0, {n_tensors})"
        )


class _Union:
    """Lets :func:`checked` inspect a union member, which the accessors return as a raw
    ``flatbuffers.table.Table``."""

    def __init__(self, tab: Any) -> None:
        self._tab = tab


# ------------------------------------------------------------------------ buffers and graph
def buffer_data(model: Any, index: int) -> np.ndarray:
    """The bytes of buffer ``index``, whatever its layout, as a read-only uint8 view.

    A buffer holds its bytes inline (``Buffer.data``) or, in models over 2 GB, after the
    flatbuffer at ``Buffer.offset`` (``> 1``) for ``Buffer.size`` bytes; that range is checked
    against the file.

    Raises
    ------
    SparseFormatError
        When the buffer table is corrupt or its range runs past the end of the file.
    """
    buf = model._tab.Bytes
    what = f"buffer {index}"
    with reading(what):
        buffer = checked(model.Buffers(index), what)
        if buffer.Offset() > 1:  # stored after the flatbuffer (models over 2 GB)
            start, size = buffer.Offset(), buffer.Size()
            if start + size > len(buf):
                raise SparseFormatError(
                    f"{what}: {size} bytes at offset {start} run past the {len(buf)}-byte model"
                )
            data = np.frombuffer(buf, np.uint8, count=size, offset=start)
        else:
            data = buffer.DataAsNumpy()
            data = np.zeros(0, np.uint8) if isinstance(data, int) else data
    data = data.view()
    data.flags.writeable = False
    return data


class _StoredBuffer:
    """A ``tflite.Buffer`` stand-in whose ``DataAsNumpy`` returns bytes stored at an offset."""

    def __init__(self, buffer: Any, data: np.ndarray) -> None:
        self._buffer, self._data = buffer, data

    def DataAsNumpy(self) -> np.ndarray:
        return self._data

    def DataLength(self) -> int:
        return int(self._data.size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._buffer, name)


def with_buffer_data(model: Any, wrapper: Any) -> Any:
    """A TVM ``TensorWrapper`` whose ``buffer.DataAsNumpy()`` returns the tensor's bytes.

    TVM's TFLite frontend reads a constant with ``buffer.DataAsNumpy()``, which is empty for a
    buffer stored after the flatbuffer (``offset``/``size``, models over 2 GB). For such a
    buffer this returns a copy of ``wrapper`` that reads it through :func:`buffer_data`;
    ``wrapper`` itself otherwise.
    """
    buffer = wrapper.buffer
    if buffer is None or buffer.Offset() <= 1:
        return wrapper
    out = copy.copy(wrapper)
    out.buffer = _StoredBuffer(buffer, buffer_data(model, wrapper.tensor.Buffer()))
    return out
