"""TVM's TFLite frontend, taught to read sparse tensors.

:class:`SparseOperatorConverter` subclasses TVM's ``OperatorConverter`` and overrides only what
sparse weights need; every other operator is converted by TVM:

- ``get_tensor_value`` serves a sparse tensor as a shape-correct *stand-in* (a read-only array
  over a few kilobytes, :func:`stand_in`) where TVM only transposes the value before making it a
  parameter (float ``FULLY_CONNECTED``, ``CONV_2D``, ``TRANSPOSE_CONV``, and any tensor read as
  an expression); elsewhere (shape-like inputs, depthwise kernels that TVM reshapes, weights
  whose values :mod:`.hybrid` reads) the dense form, decoded once per tensor and charged to the
  model's dense byte budget;
- ``DENSIFY`` becomes an alias of its input (no Relay op), as does ``DEQUANTIZE`` of a float16
  weight (the alias is cast to float32, exactly as TFLite dequantizes float16);
- a densified tensor that an operator reads as an expression, or that is a model output, becomes
  one constant parameter;
- ``FULLY_CONNECTED``, ``CONV_2D`` and ``DEPTHWISE_CONV_2D`` with int8 weights on float
  activations (hybrid models) are converted here (:mod:`.hybrid`), because TVM 0.19 cannot;
- int8 ``FULLY_CONNECTED``, ``CONV_2D`` and ``DEPTHWISE_CONV_2D`` compute LiteRT's integer
  arithmetic bit for bit (:mod:`.quantized`), where TVM's ``qnn.requantize`` rounds otherwise.

Every array handed to TVM is remembered; after conversion each Relay parameter that is one of
them, or a transposed view of one, becomes a :class:`~sparse_import.imported.SparseWeight` whose
IR tensor is transformed the same way (:func:`match_view`). Stand-ins are then taken out of the
params, so TVM never copies them: the backend binds a weight's dense value only if it lowers it
dense.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import tvm
from tvm import relay
from tvm.relay.frontend.tflite import OperatorConverter, from_tflite, get_scalar_from_constant

from sparse_import.errors import (
    SparseFormatError,
    UnsupportedModelError,
    UnsupportedSparsityError,
)
from sparse_import.imported import DenseTensor, ImportedModel, SparseWeight
from sparse_import.limits import DenseBudget
from sparse_import.tensor import SparseTensor

from . import hybrid, quantized
from .loader import schema, tensor_name, with_buffer_data

# Raised by this package's own checks (the IR, the reader, the converter): never rewrapped.
OWN_ERRORS = (SparseFormatError, UnsupportedSparsityError, UnsupportedModelError)
# Operators whose float-activation, int8-weight ("dynamic range") form is converted here.
HYBRID_OPS = frozenset({"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D"})
OUTPUT = "OUTPUT"  # consumer of a sparse tensor that is itself a model output
# Operators whose TVM converter only transposes a float weight's value before making it a
# parameter: a stand-in is safe there.
STAND_IN_OPS = frozenset({"FULLY_CONNECTED", "CONV_2D", "TRANSPOSE_CONV"})


@dataclass(frozen=True)
class _Dense:
    """A tensor whose value is the dense form of ``tensor``; ``source`` is what the file stores."""

    tensor: SparseTensor
    source: SparseTensor


@dataclass(frozen=True)
class _Handout:
    """One array given to TVM: for which tensor and which consuming operator; a stand-in's
    values are not the tensor's."""

    array: np.ndarray
    dense: _Dense
    consumer: str
    stand_in: bool


def stand_in(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A read-only array of ``shape`` and ``dtype`` over a few kilobytes of zeros.

    Axis ``a`` has stride ``(a + 1) * itemsize``: distinct per axis, so a transposed view still
    tells which axis went where (:func:`match_view`), and every element addressed lies inside
    the buffer. Its values are zeros, never the tensor's.

    Examples
    --------
    >>> a = stand_in((4096, 4096), np.dtype(np.float32))
    >>> a.shape, a.strides, a.flags.writeable
    ((4096, 4096), (4, 8), False)
    """
    itemsize = dtype.itemsize
    strides = tuple((a + 1) * itemsize for a in range(len(shape)))
    span = sum((n - 1) * st for n, st in zip(shape, strides, strict=True)) if all(shape) else 0
    buffer = np.zeros(span // itemsize + 1, dtype)
    view = np.lib.stride_tricks.as_strided(buffer, shape, strides, writeable=False)
    return view


class SparseOperatorConverter(OperatorConverter):
    """TVM's TFLite ``OperatorConverter`` that reads sparse tensors from the IR.

    Parameters
    ----------
    model, subgraph, exp_tab
        As TVM's ``from_tflite`` passes them.
    sparse : mapping of int to SparseTensor
        The sparse tensors of ``subgraph`` by tensor index (see ``read_sparse_tensors``).
    budget : DenseBudget
        Charged for every tensor densified here.
    """

    def __init__(
        self,
        model: Any,
        subgraph: Any,
        exp_tab: Any,
        sparse: Mapping[int, SparseTensor],
        budget: DenseBudget,
    ) -> None:
        super().__init__(model, subgraph, exp_tab)
        self.dense: dict[int, _Dense] = {i: _Dense(t, t) for i, t in sparse.items()}
        self.handouts: dict[int, _Handout] = {}  # by id() of the array's memory owner
        self.budget = budget
        self.weights: tuple[SparseWeight, ...] = ()
        self.constants: tuple[DenseTensor, ...] = ()
        self._decoded: dict[int, np.ndarray] = {}  # by id() of the _Dense entry
        self._constants: dict[int, relay.Expr] = {}
        self._reading_expression = False
        self._consumer = OUTPUT
        self.convert_map = {code: self._tracked(code, fn) for code, fn in self.convert_map.items()}

    def _tracked(self, code: str, convert: Any) -> Any:
        def run(op: Any) -> Any:
            self._consumer = code
            return convert(op)

        return run

    # ------------------------------------------------------------ values and expressions
    def get_tensor_value(self, tensor_wrapper: Any, is_sparse: bool = False) -> np.ndarray:
        """The tensor's constant value; for a sparse or densified tensor a stand-in where TVM
        only makes it a parameter, else its exact dense form (decoded once per tensor)."""
        entry = self.dense.get(tensor_wrapper.tensor_idx)
        if entry is None:  # a buffer after the flatbuffer is read from its offset
            return super().get_tensor_value(with_buffer_data(self.model, tensor_wrapper), is_sparse)
        if self._reading_expression or (
            self._consumer in STAND_IN_OPS and entry.tensor.dtype.kind == "f"
        ):
            array = stand_in(entry.tensor.shape, entry.tensor.dtype)
            self.handouts[id(_owner(array))] = _Handout(array, entry, self._consumer, True)
            return array
        array = self._decoded.get(id(entry))
        if array is None:
            self.budget.charge([entry.tensor])
            array = entry.tensor.to_dense()
            if not _owner(array).flags.owndata:
                array = array.copy()  # a hand-out owns its memory, so params map back to it
            self._decoded[id(entry)] = array
            self.handouts[id(_owner(array))] = _Handout(array, entry, self._consumer, False)
        return array

    def get_expr(self, input_tensor_idx: int) -> relay.Expr:
        if input_tensor_idx in self.dense and not self.has_expr(input_tensor_idx):
            return self._constant(input_tensor_idx)
        return super().get_expr(input_tensor_idx)

    def get_tensor_expr(self, tensor: Any, is_sparse: bool = False) -> relay.Expr:
        if tensor.tensor_idx in self.dense and not self.has_expr(tensor.tensor_idx):
            return self._constant(tensor.tensor_idx)
        return super().get_tensor_expr(tensor, is_sparse)

    def _constant(self, index: int) -> relay.Expr:
        """One parameter per densified tensor read as an expression."""
        if index not in self._constants:
            (wrapper,) = self.get_tensors([index])
            self._reading_expression = True
            try:
                value = self.get_tensor_value(wrapper)
            finally:
                self._reading_expression = False
            self._constants[index] = self.exp_tab.new_const(
                value, dtype=str(value.dtype), source_name=wrapper.tensor.Name()
            )
        return self._constants[index]

    def convert_op_to_relay(self) -> None:
        super().convert_op_to_relay()
        self._consumer = OUTPUT
        for index in self.subgraph.OutputsAsNumpy():
            if index in self.dense and not self.has_expr(index):
                self.exp_tab.set_expr(tensor_name(self.subgraph, index), self._constant(index))
        self._collect()

    # ------------------------------------------------------------ results
    def _collect(self) -> None:
        """List every parameter that holds a sparse tensor (or a transposed view) as a weight,
        take stand-ins out of the params, and list tensors densified for anything else."""
        weights, mapped = [], set()
        for param, value in list(self.exp_tab.params.items()):
            if not isinstance(value, np.ndarray):
                continue
            handout = self.handouts.get(id(_owner(value)))
            if handout is None:
                continue
            perm = match_view(value, handout.array)
            if perm is None:
                if handout.stand_in:  # TVM changed a stand-in other than by a transpose
                    raise UnsupportedModelError(
                        f"sparse tensor {handout.dense.source.name!r}: TVM's converter of "
                        f"{handout.consumer} reshaped it to {value.shape}; cannot follow it"
                    )
                continue  # a reshape (depthwise kernels with a depth multiplier): a constant
            tensor = handout.dense.tensor
            if perm != tuple(range(tensor.rank)):
                tensor = tensor.transpose(perm)
            weights.append(
                SparseWeight(
                    param,
                    tensor.astype(value.dtype),
                    handout.dense.source,
                    handout.consumer,
                )
            )
            mapped.add(id(handout))
            if handout.stand_in:
                del self.exp_tab.params[param]
        self.weights = tuple(weights)
        self.constants = tuple(
            DenseTensor(
                h.dense.source,
                h.consumer,
                f"TVM's {h.consumer} converter reshapes its value into a constant",
            )
            for h in self.handouts.values()
            if id(h) not in mapped and not h.stand_in
        )

    # ------------------------------------------------------------ operators
    def check_unsupported_ops(self) -> None:
        """TVM's check, except that hybrid ``HYBRID_OPS`` are supported here."""
        ops = [self.subgraph.Operators(i) for i in range(self.subgraph.OperatorsLength())]
        codes = [self.get_op_code_str(op) for op in ops]
        missing = sorted({code for code in codes if code not in self.convert_map})
        hybrid_ops = sorted(
            {
                c
                for op, c in zip(ops, codes, strict=True)
                if c not in HYBRID_OPS and _hybrid(self, op)
            }
        )
        message = ""
        if missing:
            message += f"The following operators are not supported in frontend TFLite: {missing}\n"
        if hybrid_ops:
            message += (
                f"The following operators are likely to have dynamic range quantization: "
                f"{hybrid_ops}; only {sorted(HYBRID_OPS)} are converted with float inputs and "
                "quantized weights"
            )
        if message:
            raise tvm.error.OpNotImplemented(message)

    def convert_densify(self, op: Any) -> None:
        """``DENSIFY`` aliases its output to the dense form of its sparse input."""
        (source,) = self.get_input_tensors(op)
        (output,) = self.get_output_tensors(op)
        entry = self.dense.get(source.tensor_idx)
        name = tensor_name(self.subgraph, source.tensor_idx)
        if entry is None:
            raise SparseFormatError(
                f"DENSIFY input tensor {name!r} (index {source.tensor_idx}) has no sparsity "
                "parameters"
            )
        out_shape = tuple(output.tensor.ShapeAsNumpy()) if output.tensor.ShapeLength() else None
        if out_shape is not None and out_shape != entry.tensor.shape:
            raise SparseFormatError(
                f"DENSIFY of {name!r}: output shape {out_shape} differs from the sparse "
                f"tensor's shape {entry.tensor.shape}"
            )
        self.dense[output.tensor_idx] = entry
        return None

    def convert_dequantize(self, op: Any) -> relay.Expr | None:
        """``DEQUANTIZE`` of a sparse float16 tensor aliases the tensor cast to float32; a
        per-tensor int8 one computes LiteRT's float32 rounding; TVM's conversion otherwise."""
        (source,) = self.get_input_tensors(op)
        entry = self.dense.get(source.tensor_idx)
        if entry is not None and source.tensor.Type() == schema().TensorType.FLOAT16:
            (output,) = self.get_output_tensors(op)
            self.dense[output.tensor_idx] = _Dense(entry.tensor.astype(np.float32), entry.source)
            return None
        output = self.get_output_tensors(op)[0]
        float_output = self.get_tensor_type_str(output.tensor.Type()) == "float32"
        if float_output and _per_tensor_int8(self, source):
            x = self.get_tensor_expr(source)
            shape = _static(x)
            if shape:
                return quantized.dequantize(
                    x,
                    shape,
                    _scalar(source.qnn_params["scale"]),
                    int(_scalar(source.qnn_params["zero_point"])),
                )
        return super().convert_dequantize(op)

    def convert_quantize(self, op: Any) -> relay.Expr:
        """float32 -> per-tensor int8 ``QUANTIZE`` with LiteRT's rounding; TVM's conversion
        otherwise."""
        (source,) = self.get_input_tensors(op)
        (output,) = self.get_output_tensors(op)
        float_input = self.get_tensor_type_str(source.tensor.Type()) == "float32"
        if float_input and _per_tensor_int8(self, output):
            x = self.get_tensor_expr(source)
            shape = _static(x)
            if shape:
                return quantized.quantize(
                    x,
                    shape,
                    _scalar(output.qnn_params["scale"]),
                    int(_scalar(output.qnn_params["zero_point"])),
                )
        return super().convert_quantize(op)

    def convert_fully_connected(self, op: Any) -> relay.Expr:
        """TVM's conversion, except for hybrid and int8 models (LiteRT's arithmetic)."""
        data, weight = self.get_input_tensors(op)[:2]
        (output,) = self.get_output_tensors(op)
        if weight.qnn_params is not None and data.qnn_params is None:
            return hybrid.fully_connected(self, op)
        if quantized.is_int8(self, data, weight, output):
            return quantized.fully_connected(self, op)
        if data.qnn_params is not None and _per_channel(weight):
            return quantized.per_channel_fully_connected(self, op)
        return super().convert_fully_connected(op)

    def convert_conv(self, op: Any, conv_type: str) -> relay.Expr:
        """TVM's conversion; int8 convolutions get LiteRT's output stage, hybrid ones are
        converted here."""
        data, weight = self.get_input_tensors(op)[:2]
        if weight.qnn_params is not None and data.qnn_params is None:
            return hybrid.convolution(self, op, depthwise=conv_type == "depthwise")
        converted = super().convert_conv(op, conv_type)
        return quantized.convolution(self, op, converted, depthwise=conv_type == "depthwise")


def _owner(array: np.ndarray) -> np.ndarray:
    """The array that owns the memory of ``array`` (NumPy collapses view chains)."""
    base = array.base
    return base if isinstance(base, np.ndarray) else array


def match_view(view: np.ndarray, array: np.ndarray) -> tuple[int, ...] | None:
    """The ``perm`` with ``view`` the same memory as ``array.transpose(perm)``, else ``None``.

    Each axis of ``view`` must match an unused axis of ``array`` with the same size and stride;
    axes of size 1 match any unused axis of size 1 (their strides address nothing).
    """
    if (
        view.ndim != array.ndim
        or view.dtype != array.dtype
        or view.__array_interface__["data"][0] != array.__array_interface__["data"][0]
    ):
        return None
    free = list(range(array.ndim))
    perm = []
    for size, stride in zip(view.shape, view.strides, strict=True):
        match = next(
            (
                a
                for a in free
                if array.shape[a] == size and (size == 1 or array.strides[a] == stride)
            ),
            None,
        )
        if match is None:
            return None
        free.remove(match)
        perm.append(match)
    return tuple(perm)


def _static(expr: relay.Expr) -> tuple[int, ...] | None:
    """The shape of ``expr`` when every dimension is known, else ``None``."""
    from tvm.relay.frontend.common import infer_shape

    shape = infer_shape(expr)
    return tuple(int(d) for d in shape) if all(isinstance(d, int) for d in shape) else None


def _scalar(value: Any) -> float:
    return float(get_scalar_from_constant(value))


def _per_tensor_int8(converter: OperatorConverter, tensor: Any) -> bool:
    return quantized.is_int8(converter, tensor) and not _per_channel(tensor)


def _per_channel(tensor: Any) -> bool:
    return tensor.qnn_params is not None and tensor.qnn_params["scale"].data.numpy().size > 1


def _hybrid(converter: OperatorConverter, op: Any) -> bool:
    """TVM's test for a dynamic-range operator: only weights carry quantization."""
    inputs = converter.get_input_tensors(op)
    outputs = converter.get_output_tensors(op)
    quantized = [t.qnn_params is not None for t in inputs]
    return (
        not any(quantized[:1])
        and any(quantized[1:])
        and not any(t.qnn_params is not None for t in outputs)
    )


def convert(
    model: Any,
    sparse: Mapping[int, SparseTensor],
    *,
    shape_dict: Mapping[str, Any] | None = None,
    dtype_dict: Mapping[str, str] | None = None,
) -> ImportedModel:
    """Run TVM's ``from_tflite`` with :class:`SparseOperatorConverter`.

    Parameters
    ----------
    model : tflite.Model
        A model checked by ``load_model``, with exactly one subgraph.
    sparse : mapping of int to SparseTensor
        Its sparse tensors (``read_sparse_tensors``).
    shape_dict, dtype_dict : mapping, optional
        Input shapes and dtypes by input name, as for ``relay.frontend.from_tflite``.
    """
    if model.SubgraphsLength() != 1:
        raise UnsupportedModelError(
            f"the model has {model.SubgraphsLength()} subgraphs; TVM's TFLite frontend converts "
            "models with exactly one"
        )
    made: list[SparseOperatorConverter] = []
    budget = DenseBudget("TFLite model")

    def factory(model: Any, subgraph: Any, exp_tab: Any) -> SparseOperatorConverter:
        made.append(SparseOperatorConverter(model, subgraph, exp_tab, sparse, budget))
        return made[-1]

    try:
        mod, params = from_tflite(
            model,
            shape_dict=dict(shape_dict) if shape_dict else None,
            dtype_dict=dict(dtype_dict) if dtype_dict else None,
            op_converter=factory,
        )
    except OWN_ERRORS:
        raise
    except Exception as exc:  # TVM raises anything from AssertionError to TVMError
        raise UnsupportedModelError(
            f"model: TVM's TFLite frontend cannot convert it: {type(exc).__name__}: {exc}"
        ) from exc
    done = made[0]
    return ImportedModel(mod, dict(params), done.weights, "tflite", done.constants, budget)
