"""Error classes of sparse-import.

Every class extends a builtin, so callers may catch ``ValueError`` or ``NotImplementedError``
without knowing this library. Messages name the tensor, the level and the offending values.
"""

from __future__ import annotations


class SparseFormatError(ValueError):
    """Sparse data that breaks an invariant of its format (bounds, order, lengths, sizes)."""


class DenseLimitError(SparseFormatError):
    """A tensor whose dense form would exceed the configured byte limit.

    Raised before anything of that size is allocated; see
    :func:`sparse_import.set_dense_byte_limit`.
    """


class UnsupportedSparsityError(NotImplementedError):
    """Valid sparse data in a layout this library does not handle (yet)."""


class UnsupportedModelError(ValueError):
    """An input that is not a model this library can read (unknown format, missing file)."""


def tensor_label(name: str | None) -> str:
    """Return ``"sparse tensor 'name'"`` (or ``"sparse tensor"``) for error messages."""
    return f"sparse tensor {name!r}" if name else "sparse tensor"


def tvm_error_line(exc: BaseException, *, first: bool = False, limit: int = 300) -> str:
    """``Type: message`` of a TVM exception on one line, at most ``limit`` characters of message.

    TVM puts its C++ backtrace before the message, so the last non-empty line is taken; with
    ``first``, the first one (the Relax TFLite frontend's Python errors put it there).

    Examples
    --------
    >>> tvm_error_line(ValueError("Traceback:\\n  frame 1\\nValueError: bad shape"))
    'ValueError: bad shape'
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = (lines[0 if first else -1] if lines else "").removeprefix(f"{type(exc).__name__}: ")
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}"
