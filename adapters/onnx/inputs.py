"""The declared types of an ONNX graph's inputs, for the checks of
:func:`sparse_import.inputs.check_input_dicts`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from sparse_import.inputs import DeclaredInput

from ._proto import NUMERIC_TYPES, type_name


class InputType(NamedTuple):
    """What a graph input declares: its element type (0: unknown) and dims (None: no shape;
    a ``None`` entry: a symbolic or unknown dimension)."""

    elem_type: int
    dims: tuple[int | None, ...] | None


def declared_types(graph, names: list[str]) -> dict[str, InputType]:
    """The declared type of each graph input in ``names``."""
    wanted = set(names)
    found = {}
    for vi in graph.input:
        if vi.name not in wanted:
            continue
        kind = vi.type.tensor_type
        dims = None
        if kind.HasField("shape"):
            # a dim_value of 0 is what some exporters write for an unknown dimension
            dims = tuple(d.dim_value if d.dim_value > 0 else None for d in kind.shape.dim)
        found[vi.name] = InputType(kind.elem_type, dims)
    return found


def declared_inputs(inputs: Mapping[str, InputType]) -> dict[str, DeclaredInput]:
    """The same inputs in the framework-neutral form :func:`check_input_dicts` takes."""
    return {
        name: DeclaredInput(
            NUMERIC_TYPES.get(t.elem_type), t.dims, type_name(t.elem_type) if t.elem_type else ""
        )
        for name, t in inputs.items()
    }
