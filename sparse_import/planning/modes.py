"""The user's choice (:data:`MODES`) and what planning makes of each weight (:class:`Lowering`)."""

from __future__ import annotations

import enum

import numpy as np

__all__ = ["MODES", "Lowering", "check_arguments", "check_mode"]

MODES = ("dense", "sparse", "auto")


class Lowering(str, enum.Enum):
    """How one sparse weight reaches the compiled module.

    ``DENSE``: a dense constant. ``CSR`` / ``BSR``: compressed arrays read by a sparse kernel.
    ``SELL``: the batch-1 product's weight in sliced ELLPACK over column panels
    (:mod:`~sparse_import.planning.sell`), for targets with AVX-512.
    ``DENSIFY``: compressed arrays expanded to the dense weight at run time, inside the module,
    for a weight that ``mode="sparse"`` keeps compressed although no sparse kernel reads it.
    """

    DENSE = "dense"
    CSR = "csr"
    BSR = "bsr"
    SELL = "sell"
    DENSIFY = "densify"

    def __str__(self) -> str:
        return self.value

    @property
    def compressed(self) -> bool:
        """Whether the library holds the weight's stored values only."""
        return self is not Lowering.DENSE


def check_mode(mode: str) -> None:
    """Refuse a ``mode`` that is not one of :data:`MODES`.

    Examples
    --------
    >>> check_mode("auto")
    >>> check_mode("fast")
    Traceback (most recent call last):
    ...
    ValueError: mode 'fast' is not one of dense, sparse, auto
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")


def check_arguments(mode: str, batch_size: int | None) -> None:
    """Refuse an unknown ``mode`` or a ``batch_size`` that is not a positive int (or ``None``).

    Examples
    --------
    >>> check_arguments("auto", 8)
    >>> check_arguments("auto", 0)
    Traceback (most recent call last):
    ...
    ValueError: batch_size must be a positive int, got 0
    """
    check_mode(mode)
    if batch_size is not None and (
        not isinstance(batch_size, (int, np.integer))
        or isinstance(batch_size, bool)
        or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
