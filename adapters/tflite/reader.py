"""Read every tensor of a TFLite model that carries ``SparsityParameters`` into the IR.

Each such tensor becomes a validated :class:`~sparse_import.SparseTensor` through
:func:`~sparse_import.adapters.tflite.params.from_tflite_params`: any rank, any traversal order,
block maps, the three index vector types (``Int32Vector``, ``Uint16Vector``, ``Uint8Vector``) and
parameters that describe a fully dense layout. Index vectors and values are zero-copy NumPy views
of the model's bytes; every table is checked against the buffer before it is read.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sparse_import.errors import SparseFormatError, UnsupportedSparsityError, tensor_label
from sparse_import.tensor import Quantization, SparseTensor

from .loader import (
    SUBGRAPH_TENSORS,
    TABLE_COST,
    WorkBudget,
    buffer_data,
    checked,
    count,
    load_model,
    reading,
    schema,
    shared_tables,
    tensor_dtype,
    type_names,
)
from .params import DENSE, SPARSE_CSR, from_tflite_params

# Little-endian NumPy dtype of each flatbuffer index vector type, by its SparseIndexVector name.
_INDEX_VECTORS = {"Int32Vector": "<i4", "Uint16Vector": "<u2", "Uint8Vector": "u1"}


def read_sparse_tensors(model: Any) -> dict[int, SparseTensor]:
    """Every tensor of the main subgraph that has ``SparsityParameters``, in the IR.

    Parameters
    ----------
    model : str, os.PathLike, bytes or tflite.Model
        The ``.tflite`` model (path, its bytes, or the parsed flatbuffer).

    Returns
    -------
    dict of int to SparseTensor
        Keyed by tensor index in subgraph 0; each tensor is named as in the model and carries the
        tensor's quantization parameters.

    Raises
    ------
    SparseFormatError
        For sparsity parameters that are malformed or inconsistent, naming the tensor.
    UnsupportedSparsityError
        For values of a type NumPy cannot hold (e.g. INT4) or a SPARSE_CSR block level.

    Examples
    --------
    >>> from importlib.resources import files
    >>> from sparse_import.adapters.tflite import read_sparse_tensors
    >>> demo = files("sparse_import.data") / "demo_mlp.tflite"
    >>> for index, tensor in read_sparse_tensors(demo).items():
    ...     print(index, tensor.shape, tensor.layout)
    2 (128, 64) (d0 : dense, d1 : compressed)
    6 (64, 128) (d0 : dense, d1 floordiv 4 : compressed, d1 mod 4 : dense)
    """
    return sparse_tensors(load_model(model))


def sparse_tensors(model: Any) -> dict[int, SparseTensor]:
    """:func:`read_sparse_tensors` for a ``tflite.Model`` already checked by ``load_model``.

    Tensors that share their sparsity parameters, buffer, type, shape and quantization (shared
    flatbuffer references, or one buffer named by several tensors) are decoded and validated
    once; the work of reading is bounded by the file's size (:class:`~.loader.WorkBudget`).
    """
    if model.SubgraphsLength() == 0:
        return {}
    subgraph = model.Subgraphs(0)
    budget = WorkBudget(len(model._tab.Bytes))
    n_tensors = subgraph.TensorsLength()
    out: dict[int, SparseTensor] = {}
    read: dict[tuple[Any, ...], SparseTensor] = {}
    for group in shared_tables(subgraph, SUBGRAPH_TENSORS, n_tensors, "subgraph 0 tensors"):
        tensor = subgraph.Tensors(int(group[0]))
        if tensor.Sparsity() is None:
            continue
        first = _read_once(model, tensor, int(group[0]), read, budget)
        named = bool(tensor.Name())  # entries of one table share its name, else "tensor i"
        for index in group.tolist():
            out[index] = first if named else first.renamed(f"tensor {index}")
    return dict(sorted(out.items()))


def _read_once(
    model: Any, tensor: Any, index: int, read: dict[tuple[Any, ...], SparseTensor], budget: Any
) -> SparseTensor:
    """Tensor ``index``, decoded once per distinct content (``read`` remembers them)."""
    raw_name = tensor.Name()
    name = raw_name.decode("utf-8", "replace") if raw_name else f"tensor {index}"
    label = tensor_label(name)
    quant = tensor.Quantization()
    key = (
        tensor.Sparsity()._tab.Pos,
        tensor.Buffer(),
        tensor.Type(),
        tensor.ShapeAsNumpy().tobytes() if tensor.ShapeLength() else b"",
        None if quant is None else quant._tab.Pos,
    )
    known = read.get(key)
    if known is not None:
        budget.charge(TABLE_COST + 4 * tensor.ShapeLength(), label)
        return known.renamed(name)
    read[key] = _read_tensor(model, tensor, index)
    # Charged after the read, which checks every vector against the file first: at most one
    # tensor's worth of work beyond the budget.
    budget.charge(TABLE_COST * (2 + len(read[key].levels)) + read[key].stored_nbytes, label)
    return read[key]


def _read_tensor(model: Any, tensor: Any, index: int) -> SparseTensor:
    raw_name = tensor.Name()
    name = raw_name.decode("utf-8", "replace") if raw_name else f"tensor {index}"
    label = tensor_label(name)
    buf = model._tab.Bytes
    with reading(label):
        sparsity = checked(tensor.Sparsity(), f"{label}: sparsity parameters")
        if sparsity.TraversalOrderIsNone() or sparsity.DimMetadataIsNone():
            raise SparseFormatError(
                f"{label}: sparsity parameters need traversal_order and dim_metadata"
            )
        shape = _int_vector(tensor.ShapeAsNumpy())
        traversal_order = _int_vector(sparsity.TraversalOrderAsNumpy())
        block_map = _int_vector(sparsity.BlockMapAsNumpy())
        n_levels = count(sparsity.DimMetadataLength(), buf, f"{label}: dim_metadata")
        dim_metadata = [_level(sparsity, k, label) for k in range(n_levels)]
        values = _values(model, tensor, label)
        quantization = _quantization(tensor, label)
    return from_tflite_params(
        shape=shape,
        traversal_order=traversal_order,
        block_map=block_map,
        dim_metadata=dim_metadata,
        values=values,
        name=name,
        quantization=quantization,
    )


def _int_vector(vector: Any) -> list[int]:
    """A generated ``...AsNumpy()`` result as a list (the accessors return 0 when absent)."""
    return [] if isinstance(vector, int) else vector.tolist()


def _level(sparsity: Any, k: int, label: str) -> dict[str, Any]:
    what = f"{label}: dim_metadata[{k}]"
    meta = checked(sparsity.DimMetadata(k), what)
    kinds = schema().DimensionType
    fmt = meta.Format()
    if fmt == kinds.DENSE:
        return {"format": DENSE, "dense_size": meta.DenseSize()}
    if fmt == kinds.SPARSE_CSR:
        return {
            "format": SPARSE_CSR,
            "array_segments": _index_vector(
                meta.ArraySegmentsType(), meta.ArraySegments(), f"{what} array_segments"
            ),
            "array_indices": _index_vector(
                meta.ArrayIndicesType(), meta.ArrayIndices(), f"{what} array_indices"
            ),
        }
    raise SparseFormatError(
        f"{what}: unknown format {fmt}, expected DENSE ({kinds.DENSE}) or "
        f"SPARSE_CSR ({kinds.SPARSE_CSR})"
    )


def _index_vector(type_code: int, table: Any, what: str) -> np.ndarray:
    tfl = schema()
    codes = {getattr(tfl.SparseIndexVector, name): name for name in _INDEX_VECTORS}
    name = codes.get(type_code)
    if name is None:
        expected = ", ".join(f"{n} ({c})" for c, n in sorted(codes.items()))
        raise SparseFormatError(
            f"{what}: unknown index vector type {type_code}, expected {expected}"
        )
    if table is None:
        raise SparseFormatError(f"{what}: the {name} is missing")
    vector = getattr(tfl, name)()
    vector.Init(table.Bytes, table.Pos)
    checked(vector, what)
    dtype = np.dtype(_INDEX_VECTORS[name])
    values = vector.ValuesAsNumpy()
    return np.zeros(0, dtype) if isinstance(values, int) else values.view(dtype)


def _values(model: Any, tensor: Any, label: str) -> np.ndarray:
    type_name = type_names().get(tensor.Type(), str(tensor.Type()))
    dtype = tensor_dtype(tensor.Type())
    if dtype is None:
        raise UnsupportedSparsityError(f"{label}: values of type {type_name} are not supported")
    try:
        data = buffer_data(model, tensor.Buffer())
    except SparseFormatError as exc:
        raise SparseFormatError(f"{label}: {exc}") from None
    nbytes = data.nbytes
    if nbytes % dtype.itemsize:
        raise SparseFormatError(
            f"{label}: its buffer of {nbytes} bytes is not a whole number of {type_name} values"
        )
    return np.frombuffer(data, dtype)


def _quantization(tensor: Any, label: str) -> Quantization | None:
    params = checked(tensor.Quantization(), f"{label}: quantization")
    if params is None:
        return None
    scale, zero_point = params.ScaleAsNumpy(), params.ZeroPointAsNumpy()
    if isinstance(scale, int) or scale.size == 0:
        return None
    if isinstance(zero_point, int):
        zero_point = np.zeros(scale.shape, np.int64)
    if scale.size == 1 and zero_point.size == 1:
        return Quantization(scale[0], zero_point[0], None)
    if zero_point.size != scale.size:
        raise SparseFormatError(
            f"{label}: {scale.size} quantization scales but {zero_point.size} zero points"
        )
    return Quantization(scale, zero_point, params.QuantizedDimension())
