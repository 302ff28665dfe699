"""TFLite models with sparse weights -> Relax, through TVM's own ``relax.frontend.tflite``.

:class:`SparseConverter` (built on first use from TVM 0.27's ``OperatorConverter``) overrides
only what sparse tensors need; every other operator is converted by TVM:

- a sparse tensor that an operator reads as an expression (every float ``FULLY_CONNECTED``,
  ``CONV_2D``, ``DEPTHWISE_CONV_2D`` and ``TRANSPOSE_CONV`` weight; elementwise operands; model
  outputs) is a Relax variable typed like the tensor, one per tensor however many operators read
  it, which becomes a parameter of ``main`` *without a value*: the transposes and reshapes TVM
  applies to a weight are ``permute_dims`` / ``reshape`` bindings in the module, followed by the
  backend (:mod:`.uses`), so no stand-in array is needed;
- a sparse tensor whose values an operator reads (a shape, padding amounts) is densified once,
  charged to the model's dense byte budget and listed in ``ImportedModel.constants``;
- ``DENSIFY`` aliases its output to its sparse input, ``DEQUANTIZE`` of a sparse float16 tensor
  aliases it cast to float32 (exactly as TFLite dequantizes float16);
- TVM 0.27 converts ``TRANSPOSE_CONV`` to an NHWC ``conv2d_transpose`` that it cannot legalize;
  those are converted to NCHW (``relax.transform.ConvertLayout``) after the import.

Quantized operators are converted here with LiteRT's arithmetic, bit for bit (TVM's Relax
frontend computes them in float): int8 and hybrid (float activations, int8 weights)
``FULLY_CONNECTED``, ``CONV_2D`` and ``DEPTHWISE_CONV_2D`` (:mod:`.quantized`, :mod:`.hybrid`),
int8 ``TRANSPOSE_CONV``, ``QUANTIZE`` and ``DEQUANTIZE``; int8 weights stay int8 parameters. A
model with any other quantized operator is refused, naming it (:mod:`.quantized_support`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from sparse_import.adapters.tflite.graph import check_graph, declared_inputs
from sparse_import.adapters.tflite.loader import (
    load_model,
    schema,
    tensor_name,
    with_buffer_data,
)
from sparse_import.adapters.tflite.reader import sparse_tensors
from sparse_import.errors import (
    SparseFormatError,
    UnsupportedModelError,
    UnsupportedSparsityError,
    tvm_error_line,
)
from sparse_import.imported import DenseTensor, ImportedModel, SparseWeight
from sparse_import.inputs import check_input_dicts
from sparse_import.limits import DenseBudget
from sparse_import.planning.names import NameTable
from sparse_import.tensor import SparseTensor

from . import hybrid, quantized
from .operands import Convolution, FullyConnected
from .quantized_support import refusal
from .uses import op_name

__all__ = ["import_model"]

# Raised by this package's own checks: never rewrapped.
OWN_ERRORS = (SparseFormatError, UnsupportedSparsityError, UnsupportedModelError)
# Operators whose Relax converter takes a weight expression when the tensor has one (instead
# of reading its values): a sparse weight reaches them as its variable.
EXPRESSION_OPS = frozenset({"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV"})
OUTPUT = "OUTPUT"  # consumer of a sparse tensor that is itself a model output
TRANSPOSE_CONV = "relax.nn.conv2d_transpose"


@dataclass(frozen=True)
class _Dense:
    """A tensor whose value is the dense form of ``tensor``; ``source`` is what the file stores."""

    tensor: SparseTensor
    source: SparseTensor


@functools.cache
def converter_class() -> type:
    """:class:`SparseConverter`, a subclass of TVM's Relax TFLite ``OperatorConverter``."""
    from tvm import relax
    from tvm.relax.frontend.tflite.tflite_frontend import OperatorConverter

    class SparseConverter(OperatorConverter):
        """TVM's Relax TFLite ``OperatorConverter`` that reads sparse tensors from the IR.

        Parameters
        ----------
        model, subgraph, exp_tab, ctx
            As TVM's ``from_tflite`` passes them.
        sparse : mapping of int to SparseTensor
            The sparse tensors of the subgraph by tensor index.
        budget : DenseBudget
            Charged for every tensor densified here.
        names : NameTable
            Names in use (the graph inputs); weight variables take free ones.
        """

        def __init__(
            self,
            model: Any,
            subgraph: Any,
            exp_tab: Any,
            ctx: Any,
            sparse: Mapping[int, SparseTensor],
            budget: DenseBudget,
            names: NameTable,
        ) -> None:
            super().__init__(model, subgraph, exp_tab, ctx)
            self.dense: dict[int, _Dense] = {i: _Dense(t, t) for i, t in sparse.items()}
            self.budget, self.names = budget, names
            self.variables: dict[int, tuple[Any, _Dense, str]] = {}  # by id() of the entry
            self.decoded: dict[int, tuple[np.ndarray, _Dense, str]] = {}  # by id() of the entry
            self._consumer = OUTPUT
            self.convert_map = {c: self._tracked(c, f) for c, f in self.convert_map.items()}

        def _tracked(self, code: str, convert: Any) -> Any:
            def run(op: Any) -> Any:
                self._consumer = code
                try:
                    return convert(op)
                finally:
                    self._consumer = OUTPUT

            return run

        # -------------------------------------------------------- values and expressions
        def _sparse(self, index: int) -> _Dense | None:
            entry = self.dense.get(index)
            if entry is None or super().has_expr(index):
                return None
            return entry

        def _variable(self, entry: _Dense) -> Any:
            """The one Relax variable of ``entry``, typed as its IR tensor."""
            found = self.variables.get(id(entry))
            if found is None:
                tensor = entry.tensor
                base = entry.source.name or "weight"
                name = self.names.claim(base, lambda p: [p])
                var = relax.Var(name, relax.TensorType(tensor.shape, str(tensor.dtype)))
                found = (var, entry, self._consumer)
                self.variables[id(entry)] = found
            return found[0]

        def has_expr(self, input_tensor_idx: int) -> bool:
            if self._consumer in EXPRESSION_OPS and self._sparse(input_tensor_idx) is not None:
                return True
            return super().has_expr(input_tensor_idx)

        def get_expr(self, input_tensor_idx: int) -> Any:
            entry = self._sparse(input_tensor_idx)
            if entry is not None:
                return self._variable(entry)
            return super().get_expr(input_tensor_idx)

        def get_tensor_expr(self, tensor: Any, is_sparse: bool = False) -> Any:
            entry = self._sparse(tensor.tensor_idx)
            if entry is not None:
                return self._variable(entry)
            return super().get_tensor_expr(tensor, is_sparse)

        def get_tensor_value(self, tensor_wrapper: Any, is_sparse: bool = False) -> np.ndarray:
            """The tensor's constant value; a sparse tensor's dense form, decoded once and
            charged to the budget."""
            entry = self.dense.get(tensor_wrapper.tensor_idx)
            if entry is None:  # a buffer after the flatbuffer is read from its offset
                wrapper = with_buffer_data(self.model, tensor_wrapper)
                return super().get_tensor_value(wrapper, is_sparse)
            found = self.decoded.get(id(entry))
            if found is None:
                self.budget.charge([entry.tensor])
                found = (entry.tensor.to_dense(), entry, self._consumer)
                self.decoded[id(entry)] = found
            return found[0]

        def check_unsupported_ops(self) -> None:
            """Operators TVM has no converter for; quantized operators are checked before
            the conversion (:func:`.quantized_support.refusal`) and converted here."""
            import tvm

            missing = sorted(
                {
                    self.get_op_code_str(self.subgraph.Operators(i))
                    for i in range(self.subgraph.OperatorsLength())
                }
                - set(self.convert_map)
            )
            if missing:
                raise tvm.error.OpNotImplemented(
                    "The following operators are not supported in frontend TFLite: "
                    + ", ".join(f"'{name}'" for name in missing)
                )

        # -------------------------------------------------------- operators
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
            shape = tuple(output.tensor.ShapeAsNumpy()) if output.tensor.ShapeLength() else None
            if shape is not None and shape != entry.tensor.shape:
                raise SparseFormatError(
                    f"DENSIFY of {name!r}: output shape {shape} differs from the sparse "
                    f"tensor's shape {entry.tensor.shape}"
                )
            self.dense[output.tensor_idx] = entry
            return None

        def convert_dequantize(self, op: Any) -> Any:
            """``DEQUANTIZE`` of a sparse float16 tensor aliases it cast to float32; a
            per-tensor int8 -> float32 one computes LiteRT's float32 rounding."""
            (source,) = self.get_input_tensors(op)
            entry = self.dense.get(source.tensor_idx)
            if entry is not None and source.tensor.Type() == schema().TensorType.FLOAT16:
                (output,) = self.get_output_tensors(op)
                self.dense[output.tensor_idx] = _Dense(
                    entry.tensor.astype(np.float32), entry.source
                )
                return None
            if source.qnn_params is None or source.tensor.Type() != schema().TensorType.INT8:
                return super().convert_dequantize(op)
            x = self.get_tensor_expr(source)
            return quantized.dequantize(
                x,
                quantized.static_shape(self, x),
                quantized.scale_of(source),
                quantized.zero_point_of(source),
            )

        def convert_quantize(self, op: Any) -> Any:
            """float32 -> per-tensor int8 ``QUANTIZE`` with LiteRT's rounding."""
            (source,) = self.get_input_tensors(op)
            (output,) = self.get_output_tensors(op)
            x = self.get_tensor_expr(source)
            return quantized.quantize(
                x,
                quantized.static_shape(self, x),
                quantized.scale_of(output),
                quantized.zero_point_of(output),
            )

        def convert_fully_connected(self, op: Any) -> Any:
            """TVM's conversion, except for int8 and hybrid operators (LiteRT's arithmetic)."""
            fc = FullyConnected.of(self, op)
            if fc.weight.qnn_params is None:
                return super().convert_fully_connected(op)
            if fc.data.qnn_params is None:
                return hybrid.fully_connected(self, fc)
            return quantized.fully_connected(self, fc)

        def convert_conv(self, op: Any, conv_type: str) -> Any:
            """TVM's conversion, except for int8 and hybrid operators (LiteRT's arithmetic)."""
            c = Convolution.of(self, op, depthwise=conv_type == "depthwise")
            if c.weight.qnn_params is None:
                return super().convert_conv(op, conv_type)
            if c.data.qnn_params is None:
                return hybrid.convolution(self, c)
            return quantized.convolution(self, c)

        def convert_transpose_conv(self, op: Any) -> Any:
            """TVM's conversion, except for int8 operators (LiteRT's arithmetic)."""
            _, weight, data = self.get_input_tensors(op)[:3]
            if weight.qnn_params is None or data.qnn_params is None:
                return super().convert_transpose_conv(op)
            return quantized.transpose_convolution(self, op)

        # -------------------------------------------------------- results
        def weights(self) -> tuple[Any, tuple[SparseWeight, ...]]:
            """The weight variables (new parameters of ``main``) and their weights."""
            found = list(self.variables.values())
            return (
                [var for var, _, _ in found],
                tuple(SparseWeight(var.name, e.tensor, e.source, c) for var, e, c in found),
            )

        def constants(self) -> tuple[DenseTensor, ...]:
            return tuple(
                DenseTensor(entry.source, consumer, f"TVM's {consumer} converter reads its values")
                for _, entry, consumer in self.decoded.values()
            )

    return SparseConverter


def _has_nhwc_transpose_conv(func: Any) -> bool:
    return any(
        op_name(b.value) == TRANSPOSE_CONV and str(b.value.attrs.data_layout) != "NCHW"
        for block in func.body.blocks
        for b in block.bindings
    )


def import_model(
    model: Any,
    *,
    shape_dict: Mapping[str, Any] | None = None,
    dtype_dict: Mapping[str, str] | None = None,
) -> ImportedModel:
    """Convert a float, int8 or hybrid TFLite model with sparse weights into Relax, its sparse
    weights unbound.

    Parameters
    ----------
    model : str, os.PathLike, bytes or tflite.Model
    shape_dict, dtype_dict : mapping, optional
        Input shapes and dtypes by input name (default: as the model declares them).

    Returns
    -------
    ImportedModel
        ``framework="tflite"``; each sparse tensor read as an expression is a parameter of
        ``main`` after the model's inputs (``num_input`` counts the inputs only), named like the
        TFLite tensor, without a value.

    Raises
    ------
    UnsupportedModelError
        Not a TFLite model, input dicts that contradict its inputs, more than one subgraph, a
        quantized operator not converted with LiteRT's arithmetic (named, with its index and
        why), or a graph TVM's Relax frontend cannot convert (one line, TVM's exception
        chained).
    SparseFormatError, UnsupportedSparsityError
        As :func:`sparse_import.adapters.tflite.import_model`.

    Examples
    --------
    >>> from importlib.resources import files
    >>> from sparse_import.relax_backend.tflite import import_model
    >>> imported = import_model(files("sparse_import.data") / "demo_mlp.tflite")
    >>> [(w.consumer, w.tensor.shape) for w in imported.weights]
    [('FULLY_CONNECTED', (128, 64)), ('FULLY_CONNECTED', (64, 128))]
    """
    from tvm import relax
    from tvm.relax.frontend.tflite.tflite_frontend import from_tflite

    checked = load_model(model)
    del model
    check_graph(checked)
    check_input_dicts(shape_dict, dtype_dict, declared_inputs(checked))
    if checked.SubgraphsLength() != 1:
        raise UnsupportedModelError(
            f"the model has {checked.SubgraphsLength()} subgraphs; the Relax TFLite import "
            "converts models with exactly one"
        )
    refused = refusal(checked)
    if refused is not None:
        raise UnsupportedModelError(
            f"{refused}; the Relax TFLite import does not compute LiteRT's arithmetic for it "
            "exactly, use sparse_import.to_relay"
        )
    sparse = sparse_tensors(checked)
    budget = DenseBudget("TFLite model")
    names = NameTable(declared_inputs(checked))
    made: list[Any] = []

    def factory(model: Any, subgraph: Any, exp_tab: Any, ctx: Any) -> Any:
        made.append(converter_class()(model, subgraph, exp_tab, ctx, sparse, budget, names))
        return made[-1]

    try:
        mod = from_tflite(
            checked,
            shape_dict=dict(shape_dict) if shape_dict else None,
            dtype_dict=dict(dtype_dict) if dtype_dict else None,
            op_converter=factory,
        )
    except OWN_ERRORS:
        raise
    except Exception as exc:  # TVM raises anything from AssertionError to TVMError
        raise UnsupportedModelError(
            "model: TVM's Relax TFLite frontend cannot convert it: "
            f"{tvm_error_line(exc, first=True)}"
        ) from exc
    done = made[0]
    variables, weights = done.weights()
    func = mod["main"]
    attrs = {k: v for k, v in func.attrs.items() if k != "params"} if func.attrs else {}
    main = relax.Function(
        [*func.params, *variables], func.body, func.ret_ty, func.is_pure
    ).with_attrs(attrs)
    mod["main"] = main
    mod = relax.transform.Normalize()(mod)
    if _has_nhwc_transpose_conv(mod["main"]):
        mod = relax.transform.ConvertLayout({TRANSPOSE_CONV: ["NCHW", "IOHW"]})(mod)
    return ImportedModel(mod, {}, weights, "tflite", done.constants(), budget)
