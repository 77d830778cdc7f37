"""Bad input raises a clear exception before anything is sent: out-of-range and wrongly
typed fields (naming the event and the field), empty and oversized batches, bad ids, bad
credentials and options. The client here points at an address nobody listens on and never
registered: had it sent anything, the call would have failed differently."""

from __future__ import annotations

import pytest
from local_nodes import free_address

from tally_client import (
    Account,
    Client,
    InvalidRequest,
    QueryFilter,
    RecordError,
    Trade,
    Transfer,
)

U128_MAX = (1 << 128) - 1


@pytest.fixture
def client() -> Client:
    return Client([free_address()], 1, b"x" * 16, insecure_plaintext=True, connect=False)


def transfer(**fields: object) -> Transfer:
    values: dict[str, object] = {"id": 1, "debit_account_id": 1, "credit_account_id": 2, "amount": 1,
                                     "ledger": 1, "code": 1}  # fmt: skip
    values.update(fields)
    return Transfer(**values)  # type: ignore[arg-type]


def check(client: Client, call: str, argument: object, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        getattr(client, call)(argument)
    assert client.requests_sent == 0


@pytest.mark.parametrize(
    "call, argument, message",
    [
        ("create_transfers", [transfer(), transfer(amount=U128_MAX + 1)],
         r"Transfer 1: amount = 3402\d+ is outside 0..=2\*\*128-1"),
        ("create_transfers", [transfer(id=-1)], r"Transfer 0: id = -1 is outside"),
        ("create_transfers", [transfer(amount=1.5)], r"Transfer 0: amount must be an int, not float"),
        ("create_transfers", [transfer(amount="100")], r"amount must be an int, not str"),
        ("create_transfers", [transfer(ledger=1 << 32)], r"ledger = 4294967296 is outside 0..=2\*\*32-1"),
        ("create_transfers", [transfer(code=-1)], r"code = -1 is outside"),
        ("create_transfers", [transfer(flags=1 << 8)], r"unknown flag bits 0x0100"),
        ("create_transfers", [Account(id=1, ledger=1, code=1)], r"Transfer 0: Account is not a Transfer"),
        ("create_accounts", [Account(id=1, ledger=1, code=1, flags=1 << 5)], r"unknown flag bits"),
        ("create_accounts", [Account(id=1, ledger=1, code=1, limit=1 << 64)], r"limit = .* outside"),
        ("create_trades", [Trade(1, 1, 2, 3, 4, quantity=1 << 64)], r"Trade 0: quantity = .* outside"),
        ("create_trades", [Trade(1, 1, 2, 3, U128_MAX + 5)], r"cash_credit_account_id"),
        ("create_settlements", [transfer(), Trade(1, 1, 2, 3, 4, flags=1 << 4)],
         r"Trade 1: unknown flag bits"),
        ("create_settlements", [transfer(), transfer(ledger=None)], r"Transfer 1: ledger must be an int"),
        ("create_settlements", [Account(id=1, ledger=1, code=1)], r"neither a Transfer nor a Trade"),
        ("create_accounts", [], r"0 events in one call; a request carries 1..=8189"),
        ("create_transfers", [transfer()] * 8190, r"8190 events in one call"),
        ("create_transfers", transfer(), r"a sequence is needed"),
        ("lookup_accounts", [], r"0 ids; a request carries 1..=8189"),
        ("lookup_transfers", [1] * 8190, r"8190 ids"),
        ("lookup_trades", [1, U128_MAX + 1], r"id 1 = .* is outside 0..=2\*\*128-1"),
        ("lookup_accounts", ["1"], r"id 0 must be an int, not str"),
        ("lookup_accounts", 5, r"a sequence of ids is needed"),
        ("prove", [1] * 257, r"257 ids; a request carries 1..=256"),
        ("statement", -1, r"account_id = -1 is outside"),
        ("access_trail", 1.0, r"account_id must be an int"),
        ("change_voters", [], r"0 node ids; a request names 1..=64"),
        ("remove_nodes", [2, -1], r"node id = -1 is outside"),
        ("initialize", {}, r"0 members"),
        ("query_transfers", QueryFilter(limit=0), r"limit = 0 is outside 1..=8189"),
        ("query_accounts", QueryFilter(limit=8190), r"limit = 8190 is outside 1..=8189"),
        ("query_trades", QueryFilter(ledger=1 << 32), r"ledger = 4294967296 is outside 0..=2\*\*32-1"),
        ("query_transfers", QueryFilter(code=-1), r"code = -1 is outside 0..=2\*\*16-1"),
        ("query_accounts", QueryFilter(user_data_128=U128_MAX + 1), r"user_data_128 = .* outside"),
        ("query_transfers", QueryFilter(timestamp_max=1 << 64), r"timestamp_max = .* outside"),
        ("query_transfers", QueryFilter(user_data_64="7"), r"user_data_64 must be an int, not str"),
        ("query_trades", QueryFilter(reversed=1), r"reversed must be a bool, not int"),
        ("positions", QueryFilter(limit=True), r"limit must be an int, not bool"),
        ("query_accounts", {"ledger": 1}, r"a QueryFilter is needed, not dict"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_before_sending(client, call, argument, message):
    """Each bad argument raises InvalidRequest naming what is wrong; nothing is sent."""
    check(client, call, argument, message)


def test_bad_options_are_refused(client):
    """Statement limits, timestamps and a positions request's time are checked too (a walk
    over every page of a query on its first step); record errors are InvalidRequests and
    ValueErrors, so callers may catch either."""
    with pytest.raises(InvalidRequest, match="limit = 0 is outside 1..=8189"):
        client.statement(1, limit=0)
    with pytest.raises(InvalidRequest, match="timestamp = -5"):
        client.balances_as_of(1, -5)
    with pytest.raises(ValueError):
        client.create_transfers([transfer(amount=-1)])
    with pytest.raises(InvalidRequest, match="at = -1 is not a time"):
        client.positions(QueryFilter(), at=-1)
    with pytest.raises(InvalidRequest, match="limit = 0"):
        next(client.query_all(client.query_transfers, QueryFilter(limit=0)))
    assert issubclass(RecordError, InvalidRequest)
    assert client.requests_sent == 0


@pytest.mark.parametrize(
    "options, message",
    [
        ({"addresses": [], "credential": b"x" * 16}, "no node address"),
        ({"addresses": ["nohost"], "credential": b"x" * 16}, "not a host:port"),
        ({"addresses": ["127.0.0.1:1"], "credential": b"short"}, "a credential is 16..=256 bytes, this one 5"),
        ({"addresses": ["127.0.0.1:1"], "credential": b"x" * 257}, "this one 257"),
        ({"addresses": ["127.0.0.1:1"], "credential": b"x" * 16, "cluster_id": -1}, "cluster_id = -1"),
        ({"addresses": ["127.0.0.1:1"], "credential": b"x" * 16, "insecure_plaintext": False},
         "give the cluster CA"),
    ],
)  # fmt: skip
def test_bad_client_options_are_refused(options, message):
    """A client that could never work is refused when made, before connecting."""
    options.setdefault("cluster_id", 1)
    options.setdefault("insecure_plaintext", True)
    with pytest.raises(InvalidRequest, match=message):
        Client(**options)
