"""The notebook-style example runs as the README documents it (its settings from the
environment) against a real node, and prints the positions table it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from local_nodes import CLUSTER_ID, CREDENTIALS

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "settle_and_positions.py"


def test_the_example_settles_and_prints_positions(node):
    env = {
        **os.environ,
        "PYTHONPATH": str(EXAMPLE.parents[1] / "src"),
        "TALLY_CLUSTER": ",".join(node.addresses),
        "TALLY_CLUSTER_ID": hex(CLUSTER_ID),
        "TALLY_CREDENTIAL": CREDENTIALS["operator"][0],
        "TALLY_CA": node.ca,
    }
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "settled at commit index" in lines[1] and lines[1].endswith("True")
    assert lines[2] == "overdraft: [(0, 'exceeds_credits')]"
    header = lines.index(next(line for line in lines if line.startswith("name ")))
    rows = {line[:20].strip(): line.split()[-1] for line in lines[header + 1 : header + 8]}
    assert rows["fund A cash"] == "3500000" and rows["fund B shares"] == "100"
    assert rows["exchange fees"] == "1250"
