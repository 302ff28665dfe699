"""Keep the numbers in ``docs/benchmarks.md`` equal to the raw outputs in ``results/``.

Each table of the docs is tied to a table of a results file (:data:`TABLES`): its rows by a key
(or by position), its columns by name. Every number in a cell is the results figure rounded
(half up) to as many decimals as the docs show it with, so the docs choose the precision and the
results supply the digits. ``--write`` rewrites the numbers in place; the default only checks
and lists the cells that differ (exit status 1).

    python -m benchmarks.render_docs            # check
    python -m benchmarks.render_docs --write    # regenerate the numbers
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?")


@dataclass(frozen=True)
class TableLink:
    """One docs table and the results table its numbers come from.

    Attributes
    ----------
    docs_header : str
        The docs table's first line, exactly.
    results : str
        File name in ``results/``.
    index : int
        Which table of that file (0: the first).
    columns : dict of str to tuple of str
        Docs column -> results columns, whose figures fill the cell's numbers in order (words in
        the cell, such as a kernel name, must equal the results text).
    key : callable or None
        Docs row (column -> text) -> the results row's key (column -> text); ``None`` ties rows
        by position.
    """

    docs_header: str
    results: str
    index: int
    columns: dict[str, tuple[str, ...]]
    key: Callable[[dict[str, str]], dict[str, str]] | None = None


def _inference_key(row: dict[str, str]) -> dict[str, str]:
    return {
        "weight": row["weight"],
        "batch": row["batch"],
        "density": f"{float(row['density']):.3f}",
    }


def _import_key(row: dict[str, str]) -> dict[str, str]:
    return {"import": row["import"].replace("`", "").replace("to_relay ", "to_relay mode=")}


TABLES = (
    TableLink(
        "| tensor | IR checked ms | IR ms | TFLite C++ ms | TVM ms | TVM / IR | TFLite / IR |",
        "decode.txt", 0,
        {"IR checked ms": ("IR checked ms",), "IR ms": ("IR ms",),
         "TFLite C++ ms": ("TFLite C++ ms",), "TVM ms": ("TVM ms",), "TVM / IR": ("TVM/IR",),
         "TFLite / IR": ("TFLite/IR",)},
        lambda row: {"tensor": row["tensor"]},
    ),
    TableLink(
        "| import | wall s | peak RSS growth MiB | peak traced MiB | params MiB |",
        "import.txt", 0,
        {c: (c,) for c in ("wall s", "peak RSS growth MiB", "peak traced MiB", "params MiB")},
        _import_key,
    ),
    TableLink(
        "| row (1 thread) | dense ms | sparse ms | auto ms | auto is | dense / auto | target | "
        "auto / best | auto GB/s | dense GB/s |",
        "kernels.txt", 0,
        {"dense ms": ("dense ms",), "sparse ms": ("sparse ms",), "auto ms": ("auto ms",),
         "auto is": ("auto is",), "dense / auto": ("dense/auto",), "target": ("target",),
         "auto / best": ("auto/best",), "auto GB/s": ("auto GB/s",),
         "dense GB/s": ("dense GB/s",)},
    ),
    TableLink(
        "| peers, 1 thread | TVM auto ms | best peer | best peer ms | best peer / auto |",
        "kernels.txt", 1,
        {"TVM auto ms": ("TVM auto ms",), "best peer": ("best peer",),
         "best peer ms": ("best peer ms",), "best peer / auto": ("best peer/auto",)},
    ),
    TableLink(
        "| row (2 threads) | dense ms | sparse ms | auto ms | auto is | dense / auto | target | "
        "auto / best |",
        "kernels.txt", 2,
        {"dense ms": ("dense ms",), "sparse ms": ("sparse ms",), "auto ms": ("auto ms",),
         "auto is": ("auto is",), "dense / auto": ("dense/auto",), "target": ("target",),
         "auto / best": ("auto/best",)},
    ),
    TableLink(
        "| weight | batch | density | dense ms | sparse ms (kernel) | auto | dense/sparse | "
        "sparse/dense bytes |",
        "inference.txt", 0,
        {"dense ms": ("dense ms",), "sparse ms (kernel)": ("sparse ms", "sparse is"),
         "auto": ("auto is",), "dense/sparse": ("dense/sparse",),
         "sparse/dense bytes": ("sparse/dense",)},
        _inference_key,
    ),
    TableLink(
        "| model | TVM dense ms | TVM sparse ms | TVM auto ms | onnxruntime ms | DeepSparse ms |",
        "models.txt", 0,
        {c: (c,) for c in ("TVM dense ms", "TVM sparse ms", "TVM auto ms", "onnxruntime ms",
                           "DeepSparse ms")},
    ),
    TableLink(
        "| model | dense / auto | dense / sparse | dense / best peer | best TVM / best peer |",
        "models.txt", 1,
        {"dense / auto": ("auto",), "dense / sparse": ("sparse",),
         "dense / best peer": ("best peer",), "best TVM / best peer": ("best peer vs best TVM",)},
    ),
    TableLink(
        "| model | dense MiB | sparse MiB | auto MiB | dense / sparse |",
        "models.txt", 4,
        {"dense MiB": ("dense MiB",), "sparse MiB": ("sparse MiB",), "auto MiB": ("auto MiB",),
         "dense / sparse": ("dense/sparse",)},
    ),
)  # fmt: skip


def results_tables(text: str) -> list[list[dict[str, str]]]:
    """The fixed-width tables of a results file: a header line, a line of dashes, then rows."""
    lines, tables = text.splitlines(), []
    for i in range(1, len(lines)):
        if not re.fullmatch(r"-+(  -+)*", lines[i]):
            continue
        spans = [m.span() for m in re.finditer(r"-+", lines[i])]
        spans = [(start, spans[j + 1][0] if j + 1 < len(spans) else None)
                 for j, (start, _) in enumerate(spans)]  # fmt: skip
        names = [lines[i - 1][a:b].strip() for a, b in spans]
        rows = []
        for line in lines[i + 1 :]:
            if not line.strip() or len(line) < spans[-1][0]:
                break
            rows.append({n: line[a:b].strip() for n, (a, b) in zip(names, spans, strict=True)})
        tables.append(rows)
    return tables


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _rounded(figure: str, shown: str) -> str:
    """``figure`` (results text, e.g. ``"548.954"`` or ``"2.92x"``) with ``shown``'s decimals."""
    value = Decimal(_NUMBER.search(figure).group())
    decimals = len(shown.split(".")[1]) if "." in shown else 0
    return str(value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP))


def _expected_cell(cell: str, figures: list[str], where: str) -> str:
    """``cell`` with each number replaced by the next figure; words checked, not replaced."""
    numbers = [f for f in figures if _NUMBER.search(f)]
    words = [f for f in figures if not _NUMBER.search(f)]
    found = _NUMBER.findall(cell)
    if len(found) != len(numbers):
        raise ValueError(f"{where}: {cell!r} shows {len(found)} numbers, results give {figures}")
    for word in words:
        if word not in re.findall(r"[A-Za-z_]\w*", cell):
            raise ValueError(f"{where}: {cell!r} should name {word!r}")
    it = iter(numbers)
    return _NUMBER.sub(lambda m: _rounded(next(it), m.group()), cell)


def render(docs: str, results: Path = RESULTS) -> tuple[str, list[str]]:
    """``docs`` with every linked number taken from ``results``, and a line per changed cell."""
    lines, changes = docs.splitlines(keepends=True), []
    for link in TABLES:
        start = next((i for i, s in enumerate(lines) if s.rstrip("\n") == link.docs_header), None)
        if start is None:
            raise ValueError(f"docs table {link.docs_header!r} not found")
        header = _cells(lines[start])
        source = results_tables((results / link.results).read_text())[link.index]
        i = start + 2
        while i < len(lines) and lines[i].startswith("|"):
            row = dict(zip(header, _cells(lines[i]), strict=True))
            if link.key is None:
                match = source[i - start - 2]
            else:
                key = link.key(row)
                match = next((r for r in source if all(r[k] == v for k, v in key.items())), None)
                if match is None:
                    raise ValueError(f"{link.results}: no row {key}")
            cells = _cells(lines[i])
            for j, name in enumerate(header):
                if name in link.columns:
                    where = f"{link.results} row {i - start - 1} {name!r}"
                    figures = [match[c] for c in link.columns[name]]
                    new = _expected_cell(cells[j], figures, where)
                    if new != cells[j]:
                        changes.append(f"{where}: docs {cells[j]!r}, results {new!r}")
                        cells[j] = new
            lines[i] = "| " + " | ".join(cells) + " |\n"
            i += 1
    return "".join(lines), changes


def main(argv: list[str] | None = None) -> int:
    """Check (default) or ``--write`` the numbers of ``docs/benchmarks.md``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the docs' numbers")
    args = parser.parse_args(argv)
    text = DOCS.read_text()
    new, changes = render(text)
    for change in changes:
        print(change)
    if args.write and new != text:
        DOCS.write_text(new)
        print(f"wrote {DOCS.relative_to(ROOT)} ({len(changes)} cells)")
        return 0
    return 1 if changes else 0


if __name__ == "__main__":
    sys.exit(main())
