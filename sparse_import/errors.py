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
