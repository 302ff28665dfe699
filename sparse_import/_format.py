"""Terminal output of the command line: aligned tables, byte sizes, a progress line.

Examples
--------
>>> from sparse_import._format import format_table, human_bytes
>>> human_bytes(25_000)
'24.4 KiB'
>>> print(format_table(["name", "bytes"], [["fc1", "1 KiB"], ["fc2.weight", "12 KiB"]], "lr"))
name         bytes
----------  ------
fc1          1 KiB
fc2.weight  12 KiB
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

__all__ = [
    "format_table",
    "human_bytes",
    "latency_range",
    "milliseconds",
    "one_line",
    "progress",
    "shape_text",
    "short_name",
]

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_bytes(n: float) -> str:
    """``n`` bytes in binary units: ``"512 B"``, ``"24.4 KiB"``, ``"3.1 MiB"``."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def shape_text(shape: Sequence[int]) -> str:
    """``"1x64"`` for the shape ``(1, 64)``."""
    return "x".join(str(int(n)) for n in shape)


def short_name(name: str, width: int = 36) -> str:
    """A tensor name for a table: the first of TFLite's ``;``-joined fused names, its middle
    elided when longer than ``width``."""
    name = name.split(";")[0]
    if len(name) <= width:
        return name
    half = (width - 1) // 2
    return f"{name[:half]}…{name[len(name) - (width - 1 - half) :]}"


def milliseconds(seconds: float) -> str:
    """``"0.034 ms"`` below a second, ``"1.25 s"`` above."""
    return f"{seconds * 1e3:.3f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _latency_unit(seconds: float) -> tuple[float, str]:
    if seconds < 1e-3:
        return 1e6, "µs"
    return (1e3, "ms") if seconds < 1 else (1.0, "s")


def latency_range(low: float, high: float | None = None) -> str:
    """A latency (or a range of two) with three significant digits, in the unit of the larger.

    Examples
    --------
    >>> latency_range(1.53e-6), latency_range(0.0134, 0.0151), latency_range(0.5, 1.25)
    ('1.53 µs', '13.4-15.1 ms', '0.5-1.25 s')
    """
    scale, unit = _latency_unit(max(low, high if high is not None else low))
    if high is None:
        return f"{low * scale:.3g} {unit}"
    return f"{low * scale:.3g}-{high * scale:.3g} {unit}"


def one_line(text: str, limit: int = 400) -> str:
    """``text`` with its whitespace runs collapsed to single spaces, cut to ``limit`` characters.

    Examples
    --------
    >>> from sparse_import._format import one_line
    >>> one_line("two\\n  lines")
    'two lines'
    >>> one_line("x" * 50, limit=10)
    'xxxxxxxxx…'
    """
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """Rows of text as columns padded to equal width, under a header and a dashed rule.

    Parameters
    ----------
    headers : sequence of str
    rows : sequence of sequence of str
        Each as long as ``headers``.
    align : str
        One letter per column, ``"l"`` or ``"r"``; missing letters mean ``"l"``.
    """
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]
    align = align.ljust(len(headers), "l")

    def line(cells: Sequence[str]) -> str:
        padded = (
            str(c).rjust(w) if a == "r" else str(c).ljust(w)
            for c, w, a in zip(cells, widths, align, strict=True)
        )
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


@contextmanager
def progress(stream: TextIO, label: str) -> Iterator[None]:
    """Show ``label`` while the body runs, then how long it took.

    On a terminal a spinner and the elapsed seconds are redrawn in place; elsewhere (a pipe, a
    log) one line ``label ... 1.2 s`` is written when the body ends.
    """
    start = time.perf_counter()
    live = stream.isatty()
    done = threading.Event()

    def spin() -> None:
        for frame in itertools.cycle("|/-\\"):
            stream.write(f"\r{frame} {label} {time.perf_counter() - start:5.1f} s")
            stream.flush()
            if done.wait(0.1):
                return

    spinner = threading.Thread(target=spin, daemon=True) if live else None
    if spinner:
        spinner.start()
    outcome = "failed after "
    try:
        yield
        outcome = ""
    finally:
        done.set()
        if spinner:
            spinner.join()
            stream.write("\r\x1b[K")  # back to the line start, clear it
        stream.write(f"  {label} ... {outcome}{time.perf_counter() - start:.1f} s\n")
        stream.flush()
