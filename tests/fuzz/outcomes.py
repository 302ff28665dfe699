"""The documented outcomes of a malformed input, and the tally the suite reports.

Every fuzz and fault test runs each input through :func:`attempt`. An input is either rejected
with one of the adapter's documented errors, whose message says *where* (the tensor, or the
flatbuffer table for structural damage) and *what*, or accepted; anything else is an escape and
fails the test: another exception type, a documented error with an anonymous message, an input
known to be malformed that is accepted, or a case running past :data:`CASE_SECONDS`.
"""

from __future__ import annotations

import contextlib
import re
import resource
import signal
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import pytest

from sparse_import import (
    SparseFormatError,
    UnsupportedModelError,
    UnsupportedSparsityError,
)

T = TypeVar("T")

# What each entry point may raise for bad input (DenseLimitError is a SparseFormatError).
DOCUMENTED: dict[str, tuple[type[Exception], ...]] = {
    "ir": (SparseFormatError,),
    "tflite-params": (SparseFormatError, UnsupportedSparsityError),
    "tflite": (SparseFormatError, UnsupportedSparsityError, UnsupportedModelError),
    "onnx": (SparseFormatError, UnsupportedSparsityError, UnsupportedModelError),
}

# How a message may start when the damage is not inside one named tensor: the flatbuffer table
# or protobuf field it was found in, or the input as a whole.
LOCATIONS: dict[str, re.Pattern[str]] = {
    "tflite": re.compile(
        r"^(sparse tensor ['\"]|tensor ['\"].*['\"] \(index \d+\)|tensor \d+ of subgraph \d+|"
        r"buffer \d+|"
        r"operator( code)? \d+|subgraph \d+|model (buffers|operator codes|subgraphs)|"
        r"TFLite model|\d+ bytes are not a TFLite model|the model has \d+ subgraphs|"
        r"model (file|path) |"
        r"'.*' is not a TFLite model|"
        r"DENSIFY )"
    ),
    "onnx": re.compile(
        r"^(sparse tensor( ['\"]|:)|ONNX model|model|node|graph|initializer|\d+ bytes are not)"
    ),
}

# A single input may take this long, parse to error or to dense form. The atheris targets set
# it to None: libFuzzer's own -timeout needs SIGALRM.
CASE_SECONDS: float | None = 2.0


class Escape(AssertionError):
    """A malformed input that did not end as a documented error."""


class Hang(BaseException):
    """Raised in the main thread when a case runs past its time limit.

    A ``BaseException``, so no ``except Exception`` in the code under test can swallow it.
    """


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block with :class:`Hang` after ``seconds`` (SIGALRM; main thread only)."""

    def expire(signum: int, frame: Any) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def memory_cap(headroom: int = 4 << 30) -> Iterator[None]:
    """Cap the address space at its current size plus ``headroom`` bytes for the block.

    A decompression bomb that slips past the checks then fails with ``MemoryError`` (an escape
    the test reports) instead of driving the machine into the OOM killer.
    """
    with open("/proc/self/status") as status:
        used = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = used + headroom
    if soft != resource.RLIM_INFINITY:  # never loosen a limit set from outside
        cap = min(cap, soft)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


class Tally:
    """Counts per adapter of the cases tried and how each ended."""

    def __init__(self) -> None:
        self.counts: dict[str, Counter[str]] = {}

    def add(self, adapter: str, outcome: str, n: int = 1) -> None:
        self.counts.setdefault(adapter, Counter())[outcome] += n

    def lines(self) -> list[str]:
        out = []
        for adapter, c in sorted(self.counts.items()):
            tried = c["rejected"] + c["accepted"] + c["imported"] + c["escaped"]
            line = (
                f"fuzz: {adapter}: {tried} mutated inputs, {c['rejected']} rejected with a "
                f"documented error, {c['accepted']} still valid and decoded consistently, "
            )
            if c["imported"]:
                line += f"{c['imported']} converted by TVM, "
            line += f"{c['escaped']} escaped"
            if c["valid"]:
                line += f"; {c['valid']} valid inputs round-tripped exactly"
            if c["runs"]:
                line += f"; {c['runs']} coverage-guided runs"
            out.append(line)
        return out


TALLY = Tally()


class _Report:
    """pytest plugin: the tally in the terminal summary."""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        lines = TALLY.lines()
        if lines:
            terminalreporter.section("fuzz and fault summary")
            for line in lines:
                terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def fuzz_report(pytestconfig: pytest.Config) -> Tally:
    """Register the summary plugin once; every fuzz test module uses this fixture."""
    manager = pytestconfig.pluginmanager
    if manager.get_plugin("sparse-import-fuzz-report") is None:
        manager.register(_Report(), "sparse-import-fuzz-report")
    return TALLY


def _named(message: str, adapter: str, names: Sequence[str]) -> bool:
    # protobuf hands out names that are not UTF-8 as bytes; messages show them escaped
    names = [n.decode("utf-8", "backslashreplace") if isinstance(n, bytes) else n for n in names]
    names = [n for n in names if n]  # a nameless tensor is "sparse tensor" (LOCATIONS)
    if names:
        return any(repr(name) in message for name in names)
    pattern = LOCATIONS.get(adapter)
    return bool(message) and (pattern is None or pattern.match(message) is not None)


def attempt(
    adapter: str,
    call: Callable[[], T],
    *,
    names: Sequence[str] = (),
    expect: str | None = None,
    what: str = "",
) -> T | None:
    """Run one mutated input; the result when accepted, ``None`` when rejected as documented.

    Parameters
    ----------
    adapter : str
        Key of :data:`DOCUMENTED`.
    call : callable
        Reads the input and does all the work a caller would (e.g. decodes to dense).
    names : sequence of str
        Tensor names of which the message must quote one; empty: the message must start with
        a location of :data:`LOCATIONS`.
    expect : str, optional
        A regex the message must match: the input is known to be malformed in this way, so
        acceptance is an escape too.
    what : str
        Describes the input in failure messages (for reproduction).

    Raises
    ------
    Escape
        For anything but the documented outcomes.
    """
    allowed = DOCUMENTED[adapter]
    try:
        with time_limit(CASE_SECONDS) if CASE_SECONDS else contextlib.nullcontext():
            result = call()
    except allowed as exc:
        message = str(exc)
        problem = None
        if not _named(message, adapter, names):
            problem = f"does not name {list(names) or 'where'}"
        elif expect is not None and re.search(expect, message) is None:
            problem = f"does not match {expect!r}"
        if problem:
            TALLY.add(adapter, "escaped")
            raise Escape(f"{what}: {type(exc).__name__} {problem}: {message[:500]}") from exc
        TALLY.add(adapter, "rejected")
        return None
    except Hang as exc:
        TALLY.add(adapter, "escaped")
        raise Escape(f"{what}: {exc}") from None
    except Exception as exc:
        TALLY.add(adapter, "escaped")
        raise Escape(f"{what}: undocumented {type(exc).__name__}: {str(exc)[:500]}") from exc
    if expect is not None:
        TALLY.add(adapter, "escaped")
        raise Escape(f"{what}: accepted, but should fail with {expect!r}")
    TALLY.add(adapter, "accepted")
    return result
