"""Fixtures: one TLS node shared by the tests of a run (each test uses ids of its own), and
fresh ids. Clusters of their own (three nodes, plain TCP) are started by the tests that need
them. Every node is killed and its directory removed however the tests end."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The checkout's client, whatever is installed (tests/python_client.rs sets PYTHONPATH too).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from local_nodes import LocalNodes, start_nodes

_ids = itertools.count(1_000_000, 1_000_000)


@pytest.fixture(scope="session")
def node() -> Iterator[LocalNodes]:
    """One node of its own cluster, serving TLS, with every test credential."""
    cluster = start_nodes(1)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def base() -> int:
    """The first of a million ids no other test of this run uses."""
    return next(_ids)
