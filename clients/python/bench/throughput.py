"""The Python client's throughput on the shape of ``tally loadgen --preset tigerbeetle``:
10,000 accounts, transfers between two of them picked uniformly, batches of 8,189, one
client, one batch in flight (docs/performance.md has the figures and the Rust client's).

    python clients/python/bench/throughput.py --spawn --events 2000000
    python clients/python/bench/throughput.py --cluster 127.0.0.1:7101 --ca pki/ca.pem \\
        --cluster-id 0x7a11 --events 2000000          # TALLY_CREDENTIAL: an operator's

``--spawn`` starts one node of this checkout's ``tally`` (``TALLY_BIN`` or
target/release/tally) in a temporary directory, as ``loadgen --spawn 1`` does. Each batch is
timed from building its Transfer objects to its reply (so the figure includes everything a
Python program submitting transfers pays); the report gives transfers/s over the whole run and
the batch latency's percentiles.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from tally_client import Account, Client, Transfer

ACCOUNTS = 10_000
BATCH_EVENTS = 8_189


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def run(client: Client, events: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    for first in range(1, ACCOUNTS + 1, BATCH_EVENTS):
        batch = [
            Account(id=i, ledger=1, code=1)
            for i in range(first, min(first + BATCH_EVENTS, ACCOUNTS + 1))
        ]
        created = client.create_accounts(batch)
        assert all(f.result == "exists" for f in created.failures), created.failures[:3]
    latencies_ms: list[float] = []
    next_id = rng.getrandbits(64) << 32  # fresh ids for every run against one node
    sent = 0
    failed = 0
    started = time.perf_counter()
    while sent < events:
        count = min(BATCH_EVENTS, events - sent)
        batch_started = time.perf_counter()
        debits = rng.choices(range(1, ACCOUNTS + 1), k=count)
        transfers = []
        for n, debit in enumerate(debits):
            credit = debit % ACCOUNTS + 1 + rng.randrange(ACCOUNTS - 1)
            credit = credit - ACCOUNTS if credit > ACCOUNTS else credit
            transfers.append(
                Transfer(
                    id=next_id + n,
                    debit_account_id=debit,
                    credit_account_id=credit,
                    amount=1 + n % 999_999,
                    ledger=1,
                    code=1,
                )
            )
        created = client.create_transfers(transfers)
        latencies_ms.append((time.perf_counter() - batch_started) * 1000)
        failed += len(created.failures)
        next_id += count
        sent += count
    elapsed = time.perf_counter() - started
    latencies_ms.sort()
    return {
        "events": sent,
        "failed": failed,
        "seconds": elapsed,
        "events_per_second": sent / elapsed,
        "batch_ms_p50": percentile(latencies_ms, 0.50),
        "batch_ms_p99": percentile(latencies_ms, 0.99),
        "batch_ms_max": latencies_ms[-1],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spawn", action="store_true", help="start one local node (TLS)")
    parser.add_argument("--cluster", help="node addresses, comma-separated")
    parser.add_argument("--cluster-id", default="0x7a11")
    parser.add_argument("--ca", help="the cluster CA file")
    parser.add_argument("--insecure-plaintext", action="store_true")
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="write the report here as JSON")
    args = parser.parse_args()
    nodes = None
    if args.spawn:
        sys.path.insert(0, str(HERE.parent / "tests"))
        from local_nodes import start_nodes

        nodes = start_nodes(1)
    try:
        if nodes is not None:
            client = nodes.client(deadline_s=120.0)
        else:
            if not args.cluster:
                parser.error("give --spawn or --cluster")
            client = Client(
                args.cluster,
                int(args.cluster_id, 0),
                os.environ["TALLY_CREDENTIAL"],
                ca=args.ca,
                insecure_plaintext=args.insecure_plaintext,
                deadline_s=120.0,
            )
        with client:
            report = run(client, args.events, args.seed)
    finally:
        if nodes is not None:
            nodes.stop()
    print(
        f"{report['events']:,} transfers in {report['seconds']:.2f} s: "
        f"{report['events_per_second']:,.0f}/s, batch p50 {report['batch_ms_p50']:.2f} ms, "
        f"p99 {report['batch_ms_p99']:.2f} ms, max {report['batch_ms_max']:.2f} ms, "
        f"{report['failed']} failed"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
