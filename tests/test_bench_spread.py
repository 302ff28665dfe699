"""``bench``'s reading of repeated timings: spread per mode, and no speed-up out of noise."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparse_import._format import latency_range
from sparse_import.cli import main
from sparse_import.cli.bench import NO_DIFFERENCE, Spread, speedup_text

timings = st.lists(st.floats(1e-7, 10.0), min_size=1, max_size=50)


@settings(max_examples=200, deadline=None)
@given(timings)
def test_spread_matches_numpy(samples):
    spread = Spread.of(samples)
    q1, median, q3 = np.percentile(samples, [25, 50, 75])
    assert (spread.q1, spread.median, spread.q3) == (q1, median, q3)
    assert spread.low == min(samples) <= spread.q1 <= spread.median <= spread.q3 <= max(samples)


@pytest.mark.parametrize("seed", range(20))
def test_two_runs_of_one_module_show_no_difference(seed):
    """Two draws from one noisy distribution (up to 30 % apart) never read as a speed-up."""
    rng = np.random.default_rng(seed)
    base = 1e-3 * (1 + 0.3 * rng.random(15))
    other = rng.permutation(base)
    other[: int(rng.integers(0, 3))] *= 1.3  # a few repeats disturbed by other work
    assert speedup_text(Spread.of(base), Spread.of(other)) == NO_DIFFERENCE


@pytest.mark.parametrize("seed", range(20))
def test_apart_intervals_print_the_ratio_of_medians(seed):
    rng = np.random.default_rng(seed)
    factor = float(rng.uniform(1.5, 8.0))
    base = 1e-3 * (1 + 0.2 * rng.random(15))
    other = base / factor * (1 + 0.05 * rng.random(15))
    text = speedup_text(Spread.of(base), Spread.of(other))
    assert text == f"{np.median(base) / np.median(other):.2f}x"
    assert speedup_text(Spread.of(other), Spread.of(base)).endswith("x")  # slower: below 1


def test_touching_intervals_overlap():
    a, b = Spread.of([1.0, 2.0, 3.0]), Spread.of([2.5, 3.5, 4.5])  # IQRs 1.5-2.5 and 3.0-4.0
    assert not a.overlaps(b) and speedup_text(a, b) == "0.57x"
    c = Spread.of([0.5, 1.5, 2.5])  # IQR 1.0-2.0 touches a's
    assert a.overlaps(c) and c.overlaps(a) and speedup_text(a, c) == NO_DIFFERENCE


def test_spread_rejects_empty_and_non_finite_timings():
    with pytest.raises(ValueError, match=r"timings must be a non-empty list of finite seconds"):
        Spread.of([])
    with pytest.raises(ValueError, match=r"finite seconds, got \[0.001   nan\]"):
        Spread.of([1e-3, float("nan")])


def test_latency_range_keeps_one_unit():
    assert latency_range(1.53e-6) == "1.53 µs"
    assert latency_range(9.5e-4, 1.2e-3) == "0.95-1.2 ms"
    assert latency_range(0.5, 1.25) == "0.5-1.25 s"


def test_bench_reports_spread_and_library_bytes(capsys):
    code = main(["bench", "--onnx", "--repeat", "3", "--min-repeat-ms", "1"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("mode "))
    assert lines[start].split() == [
        "mode", "kept", "sparse", "parameters", "library", "build", "median", "IQR", "speed-up",
    ]  # fmt: skip
    rows = [line.split() for line in lines[start + 2 : start + 5]]
    assert [r[0] for r in rows] == ["dense", "sparse", "auto"]
    for r in rows:
        params, library = float(r[4]), float(r[6])
        assert r[5] == r[7] == "KiB" and library > params  # the library embeds the parameters
    assert rows[0][-1] == "1.00x"
    assert "timing 3 modes in turns, 3 repeats" in err
