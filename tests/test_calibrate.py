"""``sparse-import calibrate``: the quick re-measure, its store, and what ``auto`` does with it.

No timing is asserted (these machines are noisy): the tests check that every probe runs and is
priced, that the scales reach the store and the planner, and that bad arguments and broken
stores are refused with a message.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.sparse as sp

import sparse_import
from sparse_import.cli import main
from sparse_import.planning import calibration
from sparse_import.planning.calibration import FAMILIES
from sparse_import.relay_backend import calibrate

ERROR = "sparse-import: error: "


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def measured():
    return calibrate.measure(rounds=1)


def test_every_family_is_measured(measured):
    found, probes = measured
    assert found.source.startswith("measured ")
    assert set(found.scales) == set(FAMILIES)
    assert len(probes) == len(calibrate.PROBES)
    for m in probes:
        assert m.seconds > 0 and m.estimate > 0 and math.isfinite(m.ratio), m
    for family in FAMILIES:
        ratios = [m.ratio for m in probes if m.probe.family == family]
        geometric = math.exp(np.mean(np.log(ratios)))
        assert math.isclose(found.scale(family), geometric, rel_tol=1e-9)


def test_probe_weights_have_their_density_and_blocks():
    rng = np.random.default_rng(0)
    for probe in calibrate.PROBES:
        weight = calibrate._weight(probe, rng)
        rows, cols = probe.shape[0], probe.shape[1] * probe.kernel**2
        assert weight.shape == (rows, cols)
        if probe.density < 1.0:
            assert abs(weight.nnz / (rows * cols) - probe.density) < 0.01 * probe.density + 1e-3
            blocked = sp.bsr_matrix(weight, blocksize=probe.block)
            assert blocked.nnz == weight.nnz  # every stored block is full


def test_cli_stores_and_auto_uses_it(capsys, tmp_path, monkeypatch):
    store = tmp_path / "calibration.json"
    code, out, err = cli(capsys, "calibrate", "--store", store, "--rounds", "1")
    assert code == 0, err
    assert "stored for" in out and str(store) in out
    for family in FAMILIES:
        assert family in out
    (entry,) = json.loads(store.read_text()).values()
    assert set(entry["scales"]) == set(FAMILIES) and entry["probes"] == len(calibrate.PROBES)
    monkeypatch.setenv(calibration.ENV, str(store))
    code, out, _ = cli(capsys, "inspect")
    assert code == 0 and "measured " in out


def test_scales_move_auto_decisions(tmp_path, monkeypatch):
    """A CPU whose sparse kernels measured 50x slower than the built-in constants gets the weight
    dense; one whose dense products measured 50x slower keeps a denser weight sparse."""
    from sparse_import.target import host_target, resolve, runtime_threads, vector_bytes

    weight = sp.random_array((512, 512), density=0.1, format="csr", rng=0, dtype=np.float32)
    half = sp.random_array((512, 512), density=0.6, format="csr", rng=0, dtype=np.float32)
    cpu = host_target().partition("-mcpu=")[2] or "generic"
    key = f"{cpu}/{vector_bytes(resolve(None))}/{runtime_threads()}"
    store = tmp_path / "calibration.json"
    monkeypatch.setenv(calibration.ENV, str(store))

    def lowering(matrix, scales, batch=1):
        store.write_text(json.dumps({key: {"scales": scales, "measured": "test"}}))
        (row,) = sparse_import.inspect(matrix, mode="auto", batch_size=batch)
        return row["lowering"]

    assert lowering(weight, {}) != "dense"
    slow = {f: 50.0 for f in ("csr_matvec", "bsr_matvec", "sell_matvec", "tvm_sparse")}
    assert lowering(weight, slow) == "dense"
    assert lowering(half, {}, batch=16) == "dense"
    assert lowering(half, {"dense_product": 50.0}, batch=16) != "dense"


def test_bad_arguments_and_broken_store(capsys, tmp_path):
    code, _, err = cli(capsys, "calibrate", "--rounds", "0", "--store", tmp_path / "c.json")
    assert code == 2 and err.startswith(ERROR) and "--rounds" in err
    broken = tmp_path / "broken.json"
    broken.write_text("[]")
    code, _, err = cli(capsys, "calibrate", "--store", broken)
    assert code == 2 and str(broken) in err and "JSON object" in err
    code, _, err = cli(capsys, "calibrate", "--target", "llvm -mcpu=nonsense-cpu-x", "--dry-run")
    assert code == 2 and err.startswith(ERROR)


def test_dry_run_stores_nothing(capsys, tmp_path):
    store = tmp_path / "calibration.json"
    code, out, _ = cli(capsys, "calibrate", "--store", store, "--rounds", "1", "--dry-run")
    assert code == 0 and "nothing stored" in out and not store.exists()
