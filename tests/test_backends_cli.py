"""``--backend`` and ``sparse_import.inspect(backend=...)``: the TVM flavour installed decides,
and asking for the other one is refused by name, before anything is imported."""

from __future__ import annotations

import importlib.util
import json

import pytest

import sparse_import
from sparse_import.api import default_backend
from sparse_import.cli import main
from sparse_import.pipeline import demo_model

INSTALLED = "relay" if importlib.util.find_spec("tvm.relay") is not None else "relax"
OTHER = "relax" if INSTALLED == "relay" else "relay"


def test_the_installed_flavour_is_the_default():
    assert default_backend() == INSTALLED


def test_the_other_flavour_is_refused_by_name(capsys):
    assert main(["inspect", "--onnx", "--backend", OTHER]) == 2
    err = capsys.readouterr().err
    assert f"argument --backend: {OTHER} needs the {OTHER.capitalize()} flavour of TVM" in err
    assert f'pip install -e ".[{OTHER},test]"' in err
    with pytest.raises(sparse_import.UnsupportedModelError, match=f"backend '{OTHER}' needs"):
        sparse_import.inspect(demo_model("onnx"), backend=OTHER)


@pytest.mark.parametrize("onnx", [True, False])
def test_inspect_with_the_installed_flavour(capsys, onnx):
    args = ["inspect", "--json", "--backend", INSTALLED] + (["--onnx"] if onnx else [])
    assert main(args) == 0
    document = json.loads(capsys.readouterr().out)
    assert len(document["weights"]) == 2
    for weight in document["weights"]:
        assert set(weight["modes"]) == {"dense", "sparse", "auto"}
        assert weight["modes"]["sparse"]["lowering"] in ("csr", "bsr")


def test_builds_need_relay(capsys):
    if INSTALLED == "relay":
        pytest.skip("every command builds with Relay")
    for command in ("verify", "bench", "compile"):
        assert main([command, "--onnx"]) == 2
        assert f"{command} builds with Relay only for now" in capsys.readouterr().err
    assert main(["calibrate", "--dry-run"]) == 2
    assert "calibrate builds with Relay only for now" in capsys.readouterr().err
