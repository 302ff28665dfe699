"""One interface for the decisions of a mutator, whatever drives it."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

# Integers that break size and index arithmetic: signs, zero, type boundaries, huge values.
SPECIAL_INTS = (
    -(2**63), -(2**31), -1, 0, 1, 2, 127, 128, 255, 256, 65535, 65536,
    2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1,
)  # fmt: skip


class Chooser(Protocol):
    """Source of a mutator's decisions."""

    def integer(self, low: int, high: int) -> int:
        """An int in ``[low, high]`` (both included)."""
        ...


def pick(choose: Chooser, options: Sequence[T]) -> T:
    """One of ``options`` (non-empty)."""
    return options[choose.integer(0, len(options) - 1)]


def flag(choose: Chooser) -> bool:
    return choose.integer(0, 1) == 1


def interesting_int(choose: Chooser, near: Sequence[int] = ()) -> int:
    """A boundary value, or a value next to one of ``near`` (sizes the input already uses)."""
    if near and flag(choose):
        return pick(choose, near) + choose.integer(-2, 2)
    return pick(choose, SPECIAL_INTS)


class RandomChooser:
    """Decisions from a seeded ``random.Random``."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)

    def integer(self, low: int, high: int) -> int:
        return self.random.randint(low, high)


class HypothesisChooser:
    """Decisions drawn from Hypothesis's ``st.data()``, so failures shrink."""

    def __init__(self, data: Any) -> None:
        from hypothesis import strategies as st

        self.data, self.st = data, st

    def integer(self, low: int, high: int) -> int:
        return self.data.draw(self.st.integers(low, high))
