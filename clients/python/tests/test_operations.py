"""Every operation the gateway offers, through the client, against a real node: creates of
each kind (plain, pending, post, void, linked settlements), lookups, statements, balances as
of a time, node state, snapshots, and the verifiable log's checkpoints, proofs (checked here
against the checkpoint's root, RFC 6962), consistency and access trail."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

from tally_client import (
    LATEST,
    Account,
    AccountFlags,
    Forbidden,
    NotFound,
    Role,
    StatementEvent,
    Trade,
    TradeFlags,
    Transfer,
    TransferFlags,
)

T = TypeVar("T")


def eventually(what: str, attempt: Callable[[], T], seconds: float = 30.0) -> T:
    """``attempt()`` once it stops raising ``NotFound`` or returning a falsy value: for what
    the leader does within about a second (signing a checkpoint), with a deadline."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            value = attempt()
            if value:
                return value
        except NotFound:
            pass
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.1)


def accounts(base: int, *ledgers: int, flags: int = AccountFlags.HISTORY) -> list[Account]:
    return [
        Account(id=base + i + 1, ledger=ledger, code=10, flags=flags)
        for i, ledger in enumerate(ledgers)
    ]


def test_accounts_are_created_and_looked_up_and_duplicates_answer_exists(node, base):
    """Accounts round-trip through create and lookup; a second create of the same ids fails
    per event with ``exists`` (replies by exception), and unknown ids are left out."""
    with node.client() as client:
        assert client.role is Role.OPERATOR
        created = client.create_accounts(accounts(base, 1, 1, 2))
        assert created.ok and created.commit_index > 0
        assert created.timestamp_last == created.timestamp_first + 2
        again = client.create_accounts(accounts(base, 1, 1))
        assert [(f.index, f.result) for f in again.failures] == [(0, "exists"), (1, "exists")]
        found = client.lookup_accounts([base + 3, base + 999, base + 1])
        assert [a.id for a in found] == [base + 3, base + 1]
        assert found[0].ledger == 2 and found[0].flags == AccountFlags.HISTORY
        assert found[1].timestamp == created.timestamp_first


def test_transfers_pending_post_void_and_their_failures(node, base):
    """Plain, pending, post and void transfers move the balances they should; a transfer
    past a constrained account's credits fails ``exceeds_credits``; lookups return them."""
    a, b, c = base + 1, base + 2, base + 3
    with node.client() as client:
        constrained = Account(id=c, ledger=1, code=10,
                              flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)  # fmt: skip
        assert client.create_accounts([*accounts(base, 1, 1), constrained]).ok
        created = client.create_transfers(
            [
                Transfer(id=base + 10, debit_account_id=a, credit_account_id=b, amount=500,
                         ledger=1, code=1),
                Transfer(id=base + 11, debit_account_id=a, credit_account_id=b, amount=70,
                         ledger=1, code=1, flags=TransferFlags.PENDING, timeout=3600),
                Transfer(id=base + 12, debit_account_id=a, credit_account_id=b, amount=30,
                         ledger=1, code=1, flags=TransferFlags.PENDING),
                Transfer(id=base + 13, debit_account_id=0, credit_account_id=0,
                         amount=(1 << 128) - 1, ledger=0, code=0, pending_id=base + 11,
                         flags=TransferFlags.POST_PENDING_TRANSFER),
                Transfer(id=base + 14, debit_account_id=0, credit_account_id=0, amount=0,
                         ledger=0, code=0, pending_id=base + 12,
                         flags=TransferFlags.VOID_PENDING_TRANSFER),
                Transfer(id=base + 15, debit_account_id=c, credit_account_id=a, amount=1,
                         ledger=1, code=1),
            ]
        )  # fmt: skip
        assert [(f.index, f.result) for f in created.failures] == [(5, "exceeds_credits")]
        by_id = {x.id: x for x in client.lookup_accounts([a, b])}
        assert (by_id[a].debits_posted, by_id[a].debits_pending) == (570, 0)
        assert (by_id[b].credits_posted, by_id[b].credits_pending) == (570, 0)
        assert by_id[b].balance == 570
        found = client.lookup_transfers([base + 11, base + 13, base + 15])
        assert [t.id for t in found] == [base + 11, base + 13]
        assert found[0].flags == TransferFlags.PENDING and found[0].timeout == 3600
        assert found[1].pending_id == base + 11 and found[1].amount == 70


def trade(base: int, offset: int, **fields: int) -> Trade:
    """A trade of 10 shares (ledger 2) for 1,000 cash (ledger 1) between accounts base+1..4:
    seller's instrument base+1 -> buyer's base+2, buyer's cash base+3 -> seller's base+4."""
    values = {
        "id": base + offset,
        "instrument_debit_account_id": base + 1,
        "instrument_credit_account_id": base + 2,
        "cash_debit_account_id": base + 3,
        "cash_credit_account_id": base + 4,
        "instrument_ledger": 2,
        "cash_ledger": 1,
        "quantity": 10,
        "cash_amount": 1000,
        "code": 7,
        "user_data_64": 20261209,
    }
    values.update(fields)
    return Trade(**values)


def test_trades_and_settlements_move_both_legs(node, base):
    """A trade settles both legs; a pending trade posted and another voided; a settlement
    batch links a trade with its fee transfer, and a failing fee takes the trade down with
    it (linked_event_failed); lookups return trades in their own layout."""
    with node.client() as client:
        assert client.create_accounts(accounts(base, 2, 2, 1, 1)).ok
        resolve = {"instrument_debit_account_id": 0, "instrument_credit_account_id": 0,
                       "cash_debit_account_id": 0, "cash_credit_account_id": 0, "quantity": 0,
                       "cash_amount": 0, "instrument_ledger": 0, "cash_ledger": 0, "user_data_64": 0}  # fmt: skip
        created = client.create_trades(
            [
                trade(base, 10),
                trade(base, 11, flags=TradeFlags.PENDING, timeout=3600),
                trade(base, 12, flags=TradeFlags.PENDING),
                trade(base, 13, flags=TradeFlags.POST_PENDING_TRADE, pending_id=base + 11,
                      **resolve),
                trade(base, 14, flags=TradeFlags.VOID_PENDING_TRADE, pending_id=base + 12,
                      **resolve),
            ]
        )  # fmt: skip
        assert created.ok, created.failures
        fee = Transfer(id=base + 21, debit_account_id=base + 3, credit_account_id=base + 4,
                       amount=5, ledger=1, code=2)  # fmt: skip
        settled = client.create_settlements([trade(base, 20, flags=TradeFlags.LINKED), fee])
        assert settled.ok, settled.failures
        bad_fee = Transfer(id=base + 31, debit_account_id=base + 3, credit_account_id=base + 1,
                           amount=5, ledger=1, code=2)  # cash to an instrument account  # fmt: skip
        failed = client.create_settlements([trade(base, 30, flags=TradeFlags.LINKED), bad_fee])
        assert [f.result for f in failed.failures] == [
            "linked_event_failed",
            "accounts_must_have_the_same_ledger",
        ]
        positions = {x.id: x for x in client.lookup_accounts([base + 1, base + 2, base + 3])}
        assert positions[base + 1].debits_posted == 30  # three trades of 10 delivered
        assert positions[base + 2].credits_posted == 30
        assert positions[base + 3].debits_posted == 3005
        found = client.lookup_trades([base + 10, base + 13, base + 20, base + 30])
        assert [t.id for t in found] == [base + 10, base + 13, base + 20]
        assert (found[0].instrument_ledger, found[0].cash_ledger) == (2, 1)
        assert found[0].user_data_64 == 20261209
        assert found[1].pending_id == base + 11 and found[1].flags == TradeFlags.POST_PENDING_TRADE
        assert client.lookup_transfers([base + 21])[0].amount == 5


def test_statement_and_balances_as_of(node, base):
    """A statement lists each change with the balances after it, oldest or newest first and
    within a time window; balances as of a time are the ones after the last change up to
    it; an unknown account is NotFound."""
    a, b = base + 1, base + 2
    with node.client() as client:
        assert client.create_accounts(accounts(base, 1, 1)).ok
        stamps = []
        for n in range(3):
            created = client.create_transfers(
                [Transfer(id=base + 10 + n, debit_account_id=a, credit_account_id=b,
                          amount=100 * (n + 1), ledger=1, code=1)]
            )  # fmt: skip
            assert created.ok
            stamps.append(created.timestamp_first)
        entries = client.statement(b)
        assert [e.kind for e in entries] == [StatementEvent.TRANSFER] * 3
        assert [e.transfer.id for e in entries] == [base + 10, base + 11, base + 12]
        assert [e.balances_after.credits_posted for e in entries] == [100, 300, 600]
        assert [e.timestamp for e in entries] == stamps
        newest = client.statement(b, newest_first=True, limit=2)
        assert [e.transfer.id for e in newest] == [base + 12, base + 11]
        window = client.statement(b, timestamp_min=stamps[1], timestamp_max=stamps[1])
        assert [e.transfer.id for e in window] == [base + 11]
        assert client.balances_as_of(b, stamps[1]).credits_posted == 300
        assert client.balances_as_of(a, stamps[2]).debits_posted == 600
        assert client.balances_as_of(a, stamps[0] - 1).debits_posted == 0
        # The account filter: b is credited by every transfer, debited by none; code and
        # user data pick one transfer out.
        assert client.statement(b, debits_only=True) == []
        assert client.statement(b, credits_only=True) == entries
        assert [e.transfer.id for e in client.statement(a, debits_only=True)] == [
            base + 10,
            base + 11,
            base + 12,
        ]
        tagged = client.create_transfers(
            [Transfer(id=base + 13, debit_account_id=b, credit_account_id=a, amount=7,
                      ledger=1, code=9, user_data_64=42)]
        )  # fmt: skip
        assert tagged.ok
        only = client.statement(b, code=9)
        assert [e.transfer.id for e in only] == [base + 13]
        assert only[0].balances_after.debits_posted == 7
        assert [e.transfer.id for e in client.statement(b, debits_only=True)] == [base + 13]
        assert [e.transfer.id for e in client.statement(a, user_data_64=42)] == [base + 13]
        assert client.statement(a, user_data_64=42, debits_only=True) == []
        with pytest.raises(ValueError, match="debits_only and credits_only"):
            client.statement(b, debits_only=True, credits_only=True)
        with pytest.raises(NotFound, match="no such account"):
            client.statement(base + 999)
        with pytest.raises(NotFound):
            client.balances_as_of(base + 999, stamps[0])


def test_operator_reads_node_state_heartbeats_and_snapshots(node, base):
    """An operator's node state names the leader and counts what was created; the audit adds
    the digest and per-ledger totals; a heartbeat and a snapshot are answered."""
    with node.client() as client:
        assert client.create_accounts(accounts(base, 1, 1)).ok
        client.heartbeat()
        state = client.node_state(audit=True)
        assert state.role == "Leader" and state.leader == state.node_id == 1
        assert state.accounts >= 2 and state.voters == [1]
        assert state.digest != bytes(32)
        assert any(t.ledger == 1 for t in state.ledger_totals)
        assert state.log_key.startswith("tally/cluster-0x7a11+")
        assert client.snapshot() >= state.committed_index


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.3.2: the root an inclusion proof leads to."""
    fn, sn, r = index, size - 1, leaf_hash(leaf)
    for p in path:
        assert sn != 0
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    assert sn == 0
    return r


def checkpoint_root(note: str) -> tuple[int, bytes]:
    lines = note.split("\n")
    return int(lines[1]), base64.b64decode(lines[2])


def test_checkpoints_proofs_consistency_and_the_access_trail(node, base):
    """A create's commit index leads to the checkpoint covering it; the inclusion proofs of
    its transfers lead to that checkpoint's root; consistency proofs are served between
    sizes; reads of an account show in its access trail; a cosignature by no listed witness
    is Forbidden."""
    with node.client() as client:
        assert client.create_accounts(accounts(base, 1, 1)).ok
        created = client.create_transfers(
            [Transfer(id=base + 10 + n, debit_account_id=base + 1, credit_account_id=base + 2,
                      amount=1, ledger=1, code=1) for n in range(5)]
        )  # fmt: skip
        covering = eventually(
            "a checkpoint covering the transfers",
            lambda: client.checkpoint_covering(created.commit_index),
        )
        size, root = checkpoint_root(covering.note)
        assert size == covering.size
        assert covering.note.startswith(f"tally/cluster-0x7a11\n{size}\n")
        proofs = client.prove([base + 10, base + 14, base + 999], checkpoint=covering.index)
        assert proofs.checkpoint == covering.index and proofs.size == size
        assert [p.id for p in proofs.proofs] == [base + 10, base + 14]
        for proof in proofs.proofs:
            assert root_from_inclusion(proof.leaf_index, size, proof.leaf, proof.audit_path) == root
        account_proofs = client.prove([base + 1], accounts=True, checkpoint=covering.index)
        assert [p.id for p in account_proofs.proofs] == [base + 1]
        latest = client.checkpoint(LATEST)
        assert latest.index >= covering.index and latest.size >= size
        assert client.checkpoint(covering.index).note == covering.note
        if latest.size > size:
            assert client.consistency(size, latest.size)
        assert client.consistency(size, size) == []
        client.lookup_accounts([base + 1])
        trail = eventually(
            "the account's reads in its access trail",
            lambda: client.access_trail(base + 1).reads,
        )
        assert all(len(read.leaf) > 0 for read in trail)
        # Well formed (key id, time, Ed25519 signature), by a witness no node lists.
        line = "— witness.example/nobody " + base64.b64encode(bytes(range(76))).decode() + "\n"
        with pytest.raises(Forbidden):
            client.cosign(covering.index, line)
