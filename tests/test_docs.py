"""Every code example in the docs, the README and the public docstrings runs."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import pytest

import sparse_import

ROOT = Path(__file__).resolve().parents[1]
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_markdown_examples(path):
    result = doctest.testfile(str(path), module_relative=False, optionflags=FLAGS)
    assert result.failed == 0


def _modules():
    names = ["sparse_import"]
    for pkg in (sparse_import, importlib.import_module("sparse_import.adapters")):
        for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            names.append(info.name)
    return sorted(n for n in names if not n.endswith("__main__"))


RELAY = importlib.util.find_spec("tvm.relay") is not None


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    if RELAY and name.startswith("sparse_import.relax_backend"):
        pytest.skip(f"{name} needs the Relax flavour of TVM (apache-tvm)")
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=FLAGS)
    assert result.failed == 0
