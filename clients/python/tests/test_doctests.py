"""The examples in the client's docstrings run and give what they show (the ones that need
a node are marked to skip; the nodes are exercised by the other tests)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "crc32c",
    "frames",
    "records",
    "results",
    "client",
    "protocol",
    "errors",
    "settlement",
    "query",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"tally_client.{name}")
    failed, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert failed == 0
