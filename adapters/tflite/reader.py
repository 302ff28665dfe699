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

from .loader import checked, count, load_model, reading, schema, tensor_dtype, type_names
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
    """:func:`read_sparse_tensors` for a ``tflite.Model`` already checked by ``load_model``."""
    if model.SubgraphsLength() == 0:
        return {}
    subgraph = model.Subgraphs(0)
    out = {}
    for index in range(subgraph.TensorsLength()):
        tensor = subgraph.Tensors(index)
        if tensor.Sparsity() is not None:
            out[index] = _read_tensor(model, tensor, index)
    return out


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
    buffer = checked(model.Buffers(tensor.Buffer()), f"{label}: buffer {tensor.Buffer()}")
    if buffer.Offset() > 1:  # stored after the flatbuffer (models over 2 GB)
        start = buffer.Offset()
        data: Any = memoryview(model._tab.Bytes)[start : start + buffer.Size()]
    else:
        data = buffer.DataAsNumpy()
        data = b"" if isinstance(data, int) else data
    nbytes = len(data) if not isinstance(data, np.ndarray) else data.nbytes
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
