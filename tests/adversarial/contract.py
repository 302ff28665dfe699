"""What a replay case may check: a documented error that names the culprit, or the right answer.

A case is a module-level function ``case_<name>(tmp: pathlib.Path) -> None`` in a
``cases_<area>.py`` module of this package. It builds its input under ``tmp``, runs the library
in-process and returns only when the contract of ``docs/robustness.md`` holds; anything else
raises :class:`AssertionError`. Crashes, hangs and memory bombs are caught by the runner
(:mod:`tests.adversarial.run`), which gives each case its own process, memory cap and timeout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

from sparse_import import (
    SparseFormatError,
    UnsupportedModelError,
    UnsupportedSparsityError,
)

__all__ = ["DOCUMENTED", "assert_close", "expect_error"]

# Every error the library documents for bad input (DenseLimitError is a SparseFormatError).
DOCUMENTED = (SparseFormatError, UnsupportedModelError, UnsupportedSparsityError)

_MAX_MESSAGE = 1000  # a message is one readable line, not a dump of the input


@contextlib.contextmanager
def expect_error(
    exc_types: type[BaseException] | tuple[type[BaseException], ...] = DOCUMENTED,
    *fragments: str,
) -> Iterator[None]:
    """Fail unless the block raises one of ``exc_types`` whose message contains ``fragments``.

    The message must also be one line of at most 1000 characters (no C++ backtrace).

    Examples
    --------
    >>> with expect_error(ValueError, "bad"):
    ...     raise ValueError("a bad thing")
    """
    try:
        yield
    except exc_types as error:
        text = str(error)
        missing = [f for f in fragments if f not in text]
        if missing:
            raise AssertionError(
                f"{type(error).__name__} does not name {missing}: {text[:300]!r}"
            ) from error
        if "\n" in text.strip() or len(text) > _MAX_MESSAGE:
            raise AssertionError(
                f"{type(error).__name__} is not one short line ({len(text)} chars): {text[:300]!r}"
            ) from error
        return
    except BaseException as error:
        raise AssertionError(
            f"expected {_names(exc_types)} naming {list(fragments)}, got "
            f"{type(error).__name__}: {str(error)[:300]}"
        ) from error
    raise AssertionError(f"expected {_names(exc_types)} naming {list(fragments)}, got no error")


def _names(exc_types: type[BaseException] | tuple[type[BaseException], ...]) -> str:
    types = exc_types if isinstance(exc_types, tuple) else (exc_types,)
    return " or ".join(t.__name__ for t in types)


def assert_close(
    actual: np.ndarray, expected: np.ndarray, what: str, *, rtol: float = 1e-5, atol: float = 1e-6
) -> None:
    """Fail with the largest difference when ``actual`` and ``expected`` disagree."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: shape {actual.shape}, expected {expected.shape}")
    if not np.allclose(actual, expected, rtol=rtol, atol=atol):
        worst = float(np.max(np.abs(actual.astype(np.float64) - expected)))
        raise AssertionError(f"{what}: wrong result, max abs difference {worst:.3g}")
