"""The numbers in docs/benchmarks.md are the raw outputs in benchmarks/results, rounded."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from benchmarks.render_docs import DOCS, RESULTS, TABLES, render, results_tables


def test_docs_match_the_results_files():
    text = DOCS.read_text()
    new, changes = render(text)
    assert changes == [] and new == text


def test_every_linked_table_has_rows():
    for link in TABLES:
        assert link.docs_header in DOCS.read_text()
        rows = results_tables((RESULTS / link.results).read_text())[link.index]
        assert rows and all(c in rows[0] for cs in link.columns.values() for c in cs)


@pytest.mark.parametrize("seed", range(12))
def test_a_changed_result_is_caught_and_rewritten(seed, tmp_path):
    """Change one figure of a results file: the check names that cell, --write restores agreement.

    Every row of the decode, import and kernels tables is quoted, and the first inference row.
    """
    rng = np.random.default_rng(seed)
    link = TABLES[seed % len(TABLES)]
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    text = (results / link.results).read_text()
    rows = results_tables(text)[link.index]
    row = rows[0] if link.results == "inference.txt" else rows[int(rng.integers(len(rows)))]
    numeric = [c for cs in link.columns.values() for c in cs if re.fullmatch(r"[\d.]+x?", row[c])]
    old = row[rng.choice(numeric)]
    new = re.sub(r"\d", lambda m: str((int(m.group()) + 3) % 10), old)  # same width
    line = next(s for s in text.splitlines() if all(v in s for v in row.values()))
    patched = re.sub(rf"(?<![\w.]){re.escape(old)}(?![\w.])", new, line, count=1)
    (results / link.results).write_text(text.replace(line, patched))
    rewritten, changes = render(DOCS.read_text(), results)
    assert changes and all(c.startswith(f"{link.results} row ") for c in changes), (old, new)
    assert render(rewritten, results)[1] == []


def test_docs_and_results_disagreeing_in_kind_is_an_error(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    docs = DOCS.read_text().replace("| 0.997 (csr) |", "| 0.997 (bsr) |")
    with pytest.raises(ValueError, match=r"inference.txt row 1 'sparse ms \(kernel\)': "
                       r"'0.997 \(bsr\)' should name 'csr'"):  # fmt: skip
        render(docs, results)
