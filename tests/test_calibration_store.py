"""The calibration store and its scales on the cost model (no TVM needed)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sparse_import.planning import calibration, roofline
from sparse_import.planning.calibration import FAMILIES, Calibration

ALL_ROOFLINES = [
    roofline.DENSE_PRODUCT,
    roofline.CSR_MATVEC,
    roofline.BSR_MATVEC,
    roofline.BSR_PACKED,
    roofline.BSR_COLUMN,
    roofline.SELL_MATVEC,
    roofline.SPARSE_MATMUL,
    roofline.SPARSE_DIRECT,
    *roofline.DENSE_CONV.values(),
    *roofline.SPARSE_CONV.values(),
]


def test_every_roofline_belongs_to_a_family():
    assert {r.family for r in ALL_ROOFLINES} == set(FAMILIES) - {"tvm_sparse"}


def test_tvm_kernels_scale_too():
    from sparse_import.planning import cost

    chosen = Calibration("x", 64, "measured", {"tvm_sparse": 3.0})
    lhs = cost.csr_seconds(1024, 1024, 100_000, 4, sparse_lhs=True)
    conv = cost.conv_seconds("NHWC", 3, 64, 576, 784, stored=3000)
    ours = cost.csr_seconds(1024, 1024, 100_000, 4)
    with roofline.calibrated(chosen):
        assert math.isclose(cost.csr_seconds(1024, 1024, 100_000, 4, sparse_lhs=True), 3 * lhs)
        assert math.isclose(cost.conv_seconds("NHWC", 3, 64, 576, 784, stored=3000), 3 * conv)
        assert cost.csr_seconds(1024, 1024, 100_000, 4) == ours


def test_lookup_order(tmp_path):
    store = tmp_path / "calibration.json"
    assert calibration.for_cpu("znver4", 64, store={}).source == "built in"
    assert calibration.for_cpu("znver4", 32, store={}).source == "built in"
    assert calibration.for_cpu("tigerlake", 64, store={}).source == "roofline fallback"
    measured = Calibration("tigerlake", 64, "measured 2026-12-01", {"csr_matvec": 1.5})
    calibration.save(measured, probes=3, path=store)
    found = calibration.for_cpu("tigerlake", 64, store=calibration.load_store(store))
    assert found.source == "measured 2026-12-01"
    assert found.scale("csr_matvec") == 1.5 and found.scale("dense_product") == 1.0
    # another vector width of the same CPU is another entry
    assert calibration.for_cpu("tigerlake", 32, calibration.load_store(store)).source == (
        "roofline fallback"
    )
    # a stored re-measure also wins over the built-in constants
    calibration.save(Calibration("znver4", 64, "measured 2026-12-02", {}), 11, store)
    entries = calibration.load_store(store)
    assert calibration.for_cpu("znver4", 64, entries).source == "measured 2026-12-02"
    assert set(entries) == {"tigerlake/64/1", "znver4/64/1"}


def test_an_entry_holds_for_its_thread_count(tmp_path):
    """A 2-thread plan takes the 2-thread re-measure, else the 1-thread one, else the built-in
    constants; a 1-thread plan never takes a 2-thread entry."""
    store = tmp_path / "calibration.json"
    calibration.save(Calibration("c", 64, "measured 2026-12-01", {"sell_matvec": 2.0}, 2), 1, store)
    entries = calibration.load_store(store)
    two = calibration.for_cpu("c", 64, entries, threads=2)
    assert (two.threads, two.scale("sell_matvec")) == (2, 2.0)
    assert "2 threads" in two.describe()
    assert calibration.for_cpu("c", 64, entries, threads=1).source == "roofline fallback"
    calibration.save(Calibration("c", 64, "measured 2026-12-02", {"sell_matvec": 3.0}), 1, store)
    entries = calibration.load_store(store)
    assert calibration.for_cpu("c", 64, entries, threads=4).scale("sell_matvec") == 3.0
    assert calibration.for_cpu("c", 64, entries, threads=2).scale("sell_matvec") == 2.0
    assert set(entries) == {"c/64/1", "c/64/2"}


def test_store_path_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(calibration.ENV, str(tmp_path / "x.json"))
    assert calibration.store_path() == tmp_path / "x.json"
    assert calibration.load_store() == {}
    monkeypatch.delenv(calibration.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert calibration.store_path() == tmp_path / "sparse_import" / "calibration.json"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not readable JSON"),
        ("[1, 2]", "expected a JSON object at the top"),
        ('{"a/64": 3}', "expected an object with a 'scales' object"),
        ('{"a/64": {"scales": {"csr": 1.0}}}', "unknown kernel family 'csr'"),
        ('{"a/64": {"scales": {"csr_matvec": "fast"}}}', "not a finite number"),
        ('{"a/64": {"scales": {"csr_matvec": NaN}}}', "not a finite number"),
        ('{"a/64": {"scales": {"csr_matvec": 1e9}}}', "outside"),
        ('{"a/64": {"scales": {"csr_matvec": 0}}}', "outside"),
    ],
)
def test_broken_store_is_refused_by_name(tmp_path, text, message):
    store = tmp_path / "calibration.json"
    store.write_text(text)
    with pytest.raises(ValueError, match=message) as raised:
        calibration.load_store(store)
    assert str(store) in str(raised.value)


def test_scales_multiply_each_family(rng):
    """Inside ``calibrated``, every kernel's estimate is its family's scale times the built-in
    one, for random features; outside, the built-in estimate is back."""
    for _ in range(20):
        scales = {f: float(rng.uniform(0.2, 5.0)) for f in FAMILIES}
        chosen = Calibration("x", 64, "measured", scales)
        for kernel in ALL_ROOFLINES:
            features = [float(v) for v in rng.uniform(0, 1e7, size=3)]
            base = kernel.seconds(*features)
            with roofline.calibrated(chosen):
                scaled = kernel.seconds(*features)
            assert math.isclose(scaled, scales[kernel.family] * base, rel_tol=1e-12)
            assert kernel.seconds(*features) == base


def test_calibrated_sets_the_vector_width():
    with roofline.calibrated(Calibration("x", 32, "roofline fallback")):
        assert roofline.lanes(4) == 8
        inner = roofline.sparse_seconds(1024, 1024, 50_000, (1, 1), batch=1)
    with roofline.calibrated(Calibration("x", 64, "roofline fallback")):
        wide = roofline.sparse_seconds(1024, 1024, 50_000, (1, 1), batch=1)
    assert wide < inner  # twice the lanes: half the vector operations


def test_saved_file_is_plain_json(tmp_path):
    store = tmp_path / "deep" / "calibration.json"
    chosen = Calibration("c", 16, "measured 2026-12-01", {"dense_product": 0.5})
    assert calibration.save(chosen, 2, store) == store
    data = json.loads(store.read_text())
    assert data == {
        "c/16/1": {"scales": {"dense_product": 0.5}, "measured": "2026-12-01", "probes": 2}
    }
    assert np.isfinite(list(data["c/16/1"]["scales"].values())).all()
