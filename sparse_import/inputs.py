"""A caller's ``shape_dict`` and ``dtype_dict`` checked against a model's declared inputs.

TVM's frontends take whatever shapes and dtypes they are given: a wrong rank or a fixed
dimension overridden by another value either converts silently into a different model or fails
deep in type inference with a C++ backtrace. Each adapter lists its model's runtime inputs as
:class:`DeclaredInput` and calls :func:`check_input_dicts` before TVM runs, so the mistake is one
line naming the input.

Examples
--------
>>> import numpy as np
>>> inputs = {"x": DeclaredInput(np.dtype("float32"), (None, 3), "float32")}
>>> check_input_dicts({"x": (8, 3)}, {"x": "float32"}, inputs)
>>> try:
...     check_input_dicts({"x": (8, 4)}, None, inputs)
... except UnsupportedModelError as error:
...     print(error)
shape_dict['x'] = (8, 4): dimension 1 is 4, but the model declares x of shape (?, 3)
"""

from __future__ import annotations

import operator
from collections.abc import Collection, Mapping
from typing import Any, NamedTuple

import numpy as np

from .errors import UnsupportedModelError

__all__ = ["DeclaredInput", "check_input_dicts"]


class DeclaredInput(NamedTuple):
    """What a model declares for one runtime input.

    Attributes
    ----------
    dtype : numpy.dtype or None
        The element type, ``None`` when NumPy has none for it.
    dims : tuple of (int or None), or None
        ``None`` when the model declares no shape; a ``None`` entry is a symbolic dimension.
    type_text : str
        The framework's name of the element type, for messages; ``""`` when it is unknown
        (then no dtype is refused).
    """

    dtype: np.dtype | None
    dims: tuple[int | None, ...] | None
    type_text: str


def check_input_dicts(
    shape_dict: Mapping[str, Any] | None,
    dtype_dict: Any,
    inputs: Mapping[str, DeclaredInput],
    weights: Collection[str] = (),
) -> None:
    """Refuse names that are not inputs, shapes of another rank, non-positive dimensions, fixed
    dimensions overridden, and dtypes that differ from the declared element type.

    Parameters
    ----------
    shape_dict : mapping of str to sequence of int, optional
    dtype_dict : mapping of str to dtype, or one dtype (not checked: TVM's frontends then keep
        each input's declared type)
    inputs : mapping of str to DeclaredInput
        The model's runtime inputs.
    weights : collection of str
        Sparse weights of the model, named as such when a dict names one.

    Raises
    ------
    UnsupportedModelError
        One line naming the input and what is wrong.
    """
    _check_names("shape_dict", shape_dict, inputs, weights)
    if isinstance(dtype_dict, Mapping):
        _check_names("dtype_dict", dtype_dict, inputs, weights)
    for name, shape in (shape_dict or {}).items():
        _check_shape(name, _shape(name, shape), inputs[name].dims)
    if isinstance(dtype_dict, Mapping):
        for name, dtype in dtype_dict.items():
            _check_dtype(name, dtype, inputs[name])


def _listed(inputs: Mapping[str, DeclaredInput]) -> str:
    return ", ".join(inputs) or "none"


def _check_names(what: str, names: Any, inputs: Mapping[str, DeclaredInput], weights) -> None:
    for name in names or {}:
        if name in weights:
            raise UnsupportedModelError(
                f"{what} names {name!r}, a sparse weight of the model, not one of its inputs "
                f"({_listed(inputs)})"
            )
        if name not in inputs:
            raise UnsupportedModelError(
                f"{what} names {name!r}, which is not an input of the model ({_listed(inputs)})"
            )


def _dim(value: Any) -> int | None:
    """An integer dimension, or ``None`` for TVM's ``relay.Any()`` (a dynamic one)."""
    if type(value).__name__ == "Any" and type(value).__module__.startswith("tvm"):
        return None
    return operator.index(value)


def _shape(name: str, shape: Any) -> tuple[int | None, ...]:
    try:
        dims = tuple(_dim(d) for d in shape)
    except TypeError:
        raise UnsupportedModelError(
            f"shape_dict[{name!r}] = {shape!r} is not a sequence of integers"
        ) from None
    bad = [d for d in dims if d is not None and d <= 0]
    if bad:
        raise UnsupportedModelError(
            f"shape_dict[{name!r}] = {dims}: every dimension must be positive, got {bad[0]}"
        )
    return dims


def _check_shape(
    name: str, dims: tuple[int | None, ...], declared: tuple[int | None, ...] | None
) -> None:
    if declared is None:
        return
    shown = "(" + ", ".join("?" if d is None else str(d) for d in declared) + ")"
    if len(declared) == 1:
        shown = shown[:-1] + ",)"
    if len(dims) != len(declared):
        raise UnsupportedModelError(
            f"shape_dict[{name!r}] = {dims} has rank {len(dims)}, but the model declares "
            f"{name} of rank {len(declared)}: {shown}"
        )
    for d, (given, fixed) in enumerate(zip(dims, declared, strict=True)):
        if fixed is not None and given is not None and fixed != given:
            raise UnsupportedModelError(
                f"shape_dict[{name!r}] = {dims}: dimension {d} is {given}, but the model "
                f"declares {name} of shape {shown}"
            )


def _check_dtype(name: str, dtype: Any, declared: DeclaredInput) -> None:
    try:
        given = np.dtype(dtype)
    except TypeError:
        raise UnsupportedModelError(f"dtype_dict[{name!r}] = {dtype!r} is not a dtype") from None
    if declared.type_text and declared.dtype != given:
        raise UnsupportedModelError(
            f"dtype_dict[{name!r}] = {str(given)!r}, but the model declares {name} of "
            f"type {declared.type_text}"
        )
