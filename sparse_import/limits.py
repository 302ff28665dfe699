"""The dense byte limit: a guard against decompression bombs.

A sparse tensor declares its dense shape; a crafted file can declare an enormous one with a
handful of stored values. Every :class:`~sparse_import.SparseTensor` checks its dense size against
this limit when it is constructed, before anything of that size is allocated. What one import
really densifies (a weight lowered dense, a tensor a frontend needs as a constant) is charged to
the model's :class:`DenseBudget` before it is allocated, so many tensors each under the limit
cannot add up to a bomb either; a weight that stays compressed costs nothing there.

The limit comes from, in order: :func:`set_dense_byte_limit`, the environment variable
``SPARSE_IMPORT_MAX_DENSE_BYTES``, the default of 4 GiB.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from . import _checks
from .errors import DenseLimitError

DEFAULT_DENSE_BYTE_LIMIT = 4 * 1024**3
_ENV = "SPARSE_IMPORT_MAX_DENSE_BYTES"
_override: int | None = None


def get_dense_byte_limit() -> int:
    """Return the largest dense size, in bytes, that a sparse tensor may declare."""
    if _override is not None:
        return _override
    env = os.environ.get(_ENV)
    if env is None:
        return DEFAULT_DENSE_BYTE_LIMIT
    try:
        value = int(env)
    except ValueError:
        raise ValueError(f"{_ENV}={env!r} is not an integer number of bytes") from None
    if value <= 0:
        raise ValueError(f"{_ENV}={env!r} must be positive")
    return value


def set_dense_byte_limit(limit: int | None) -> None:
    """Set the dense byte limit for this process; ``None`` restores the default.

    Examples
    --------
    >>> import sparse_import
    >>> sparse_import.set_dense_byte_limit(2**30)
    >>> sparse_import.get_dense_byte_limit()
    1073741824
    >>> sparse_import.set_dense_byte_limit(None)
    """
    global _override
    if limit is not None and (not isinstance(limit, int) or limit <= 0):
        raise ValueError(f"dense byte limit must be a positive int or None, got {limit!r}")
    _override = limit


@contextlib.contextmanager
def dense_byte_limit(limit: int | None) -> Iterator[None]:
    """Context manager that sets the dense byte limit and restores the previous one."""
    global _override
    previous = _override
    set_dense_byte_limit(limit)
    try:
        yield
    finally:
        _override = previous


class DenseBudget:
    """The dense bytes one import has allocated for sparse tensors, against the limit.

    An adapter and then the backend :meth:`charge` every sparse tensor before they densify it;
    weights that stay compressed are never charged, so a model far larger than the limit in
    dense form imports as long as what is densified stays under it.

    Examples
    --------
    >>> import numpy as np
    >>> from sparse_import import SparseTensor, dense_byte_limit
    >>> from sparse_import.layouts import csr_layout
    >>> w = SparseTensor.from_dense(np.eye(64, dtype=np.float32), csr_layout(), name="w")
    >>> budget = DenseBudget("model")
    >>> budget.charge([w])
    >>> budget.spent
    16384
    >>> with dense_byte_limit(20000):
    ...     budget.charge([w])
    Traceback (most recent call last):
    ...
    sparse_import.errors.DenseLimitError: model: its 2 densified sparse tensors need 32768 \
bytes dense together, over the dense byte limit of 20000 bytes (largest: 'w', 16384 bytes)
    """

    def __init__(self, model: str = "model") -> None:
        self.model = model
        self.spent = 0
        self.count = 0
        self._largest: tuple[int, str | None] = (0, None)

    def charge(self, tensors: Iterable[Any]) -> None:
        """Account for densifying ``tensors`` (each once), all or none.

        Raises
        ------
        DenseLimitError
            When the bytes densified so far plus theirs pass the limit; nothing is charged.
        """
        tensors = list(tensors)
        if not tensors:
            return
        limit = get_dense_byte_limit()
        total = self.spent + sum(t.dense_nbytes for t in tensors)
        largest = max(
            [self._largest, *((t.dense_nbytes, t.name) for t in tensors)], key=lambda p: p[0]
        )
        count = self.count + len(tensors)
        if total > limit:
            raise DenseLimitError(
                f"{self.model}: its {count} densified sparse tensors need {total} bytes dense "
                f"together, over the dense byte limit of {limit} bytes (largest: "
                f"{largest[1]!r}, {largest[0]} bytes)"
            )
        self.spent, self.count, self._largest = total, count, largest


def check_dense_form(shape: Sequence[int], dtype: Any, label: str) -> None:
    """Refuse a dense form of ``shape`` and ``dtype`` over the limit, from the declaration alone.

    An adapter calls this before it reads a tensor's buffers, so a few bytes that declare a huge
    tensor never cause a large read; the message is the one
    :class:`~sparse_import.SparseTensor` gives for the same tensor.

    Examples
    --------
    >>> import numpy as np
    >>> from sparse_import import DenseLimitError
    >>> try:
    ...     check_dense_form((2**20, 2**20), np.float32, "sparse tensor 'w'")
    ... except DenseLimitError as error:
    ...     print(error)
    sparse tensor 'w': dense form of shape (1048576, 1048576) (float32) needs 4398046511104
    bytes, over the dense byte limit of 4294967296 bytes
    """
    shape = tuple(int(d) for d in shape)
    _checks.check_dense_limit(shape, np.dtype(dtype), label, get_dense_byte_limit())


def check_read_size(nbytes: int, what: str) -> None:
    """Refuse to read ``nbytes`` of stored data (an external range) over the limit.

    Examples
    --------
    >>> check_read_size(16, "sparse tensor 'w': indices")
    """
    limit = get_dense_byte_limit()
    if nbytes > limit:
        raise DenseLimitError(
            f"{what}: reading {nbytes} bytes is over the dense byte limit of {limit} bytes"
        )
