"""Queries by field against a real node: accounts on two ledgers of this test's own,
transfers and trades with a few codes and user data, then every page of several filters, both
ways and in pages of 3, against a reference computed here from lookups by id; positions as of
a past time against each account's balances as of it; the fields a record lacks refused
``BadRequest``; a reader's queries within its scope."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from tally_client import (
    Account,
    AccountFlags,
    BadRequest,
    Client,
    QueryFilter,
    QueryPage,
    Trade,
    Transfer,
)

T = TypeVar("T")

ACCOUNTS = 12
TRANSFERS = 60
TRADES = 9


def every_page(read: Callable[[QueryFilter], QueryPage[T]], first: QueryFilter) -> list[T]:
    """Every page of ``first``, following ``next`` as docs/protocol.md says (by hand, not
    through the client's own walk): each page at most ``limit`` records."""
    items: list[T] = []
    current, pages = first, 0
    while True:
        page = read(current)
        pages += 1
        assert len(page.items) <= first.limit, (first, page)
        items.extend(page.items)
        if page.next is None:
            break
        bound = "timestamp_max" if first.reversed else "timestamp_min"
        current = dataclasses.replace(first, **{bound: page.next})
        assert pages < 1000, f"{first}: no end in sight"
    # Every page of a small result is whole until the last: each page was asked for.
    assert pages >= -(-len(items) // first.limit), (first, pages)
    return items


def matches(f: QueryFilter, record: Any, fields: tuple[str, ...]) -> bool:
    """Whether ``record`` matches the filter on ``fields`` (zero: any) and its time range."""
    for name in fields:
        wanted = getattr(f, name)
        if wanted and getattr(record, name) != wanted:
            return False
    return f.timestamp_min <= record.timestamp and (
        f.timestamp_max == 0 or record.timestamp <= f.timestamp_max
    )


def trade_matches(f: QueryFilter, t: Trade) -> bool:
    """A trade matches ``ledger`` on either leg."""
    if f.ledger and f.ledger not in (t.instrument_ledger, t.cash_ledger):
        return False
    return matches(f, t, ("user_data_64", "code"))


ACCOUNT_FIELDS = ("user_data_128", "user_data_64", "ledger", "code")
TRANSFER_FIELDS = ("user_data_128", "user_data_64", "user_data_32", "ledger", "code")


def walked(
    client: Client, read: Callable[[QueryFilter], QueryPage[T]], f: QueryFilter, most: int
) -> list[T]:
    """The client's own walk over every page (stopped past ``most`` records, so a walk that
    asks the same page forever fails instead of hanging)."""
    return list(itertools.islice(client.query_all(read, f), most + 1))


def reference(stored: list[T], keep: Callable[[T], bool], reversed: bool) -> list[T]:
    found = [record for record in stored if keep(record)]
    return found[::-1] if reversed else found


class Ledger:
    """What this test created, as lookups by id read it back, oldest first."""

    def __init__(self, client: Client, base: int) -> None:
        k = base // 1_000_000
        # Two ledgers no other test uses; a tag in user_data_128 no other test sets.
        self.a, self.b, self.tag = 1000 + 2 * k, 1001 + 2 * k, base
        on_a = [base + i for i in range(1, ACCOUNTS + 1, 2)]
        on_b = [base + i for i in range(2, ACCOUNTS + 1, 2)]
        accounts = [
            Account(id=base + i, ledger=self.a if i % 2 else self.b, code=10 + i % 3,
                    user_data_128=self.tag if i % 3 == 0 else 0, user_data_64=i % 4,
                    # Half keep a history (balances as of a time by binary search), half not
                    # (by walking the account's changes back).
                    flags=AccountFlags.HISTORY if i <= ACCOUNTS // 2 else 0)
            for i in range(1, ACCOUNTS + 1)
        ]  # fmt: skip
        # An account on ledger 1, the reader's scope, with the tag.
        accounts.append(Account(id=base + 20, ledger=1, code=10, user_data_128=self.tag))
        created = client.create_accounts(accounts)
        assert created.ok, created.failures
        self.first = created.timestamp_first
        transfers = []
        for i in range(TRANSFERS):
            same = on_a if i % 2 == 0 else on_b
            debit = same[i % 6]
            credit = same[(i % 6 + 1 + (i // 6) % 5) % 6]
            transfers.append(
                Transfer(id=base + 100 + i, debit_account_id=debit, credit_account_id=credit,
                         amount=1 + i, ledger=self.a if i % 2 == 0 else self.b, code=1 + i % 3,
                         user_data_128=self.tag if i % 4 < 2 else 0, user_data_64=i % 5,
                         user_data_32=i % 4)
            )  # fmt: skip
        trades = [
            # Shares on ledger b against cash on ledger a.
            Trade(id=base + 500 + i, instrument_debit_account_id=on_b[i % 6],
                  instrument_credit_account_id=on_b[(i + 1) % 6],
                  cash_debit_account_id=on_a[(i + 1) % 6], cash_credit_account_id=on_a[i % 6],
                  instrument_ledger=self.b, cash_ledger=self.a, quantity=1 + i,
                  cash_amount=100 * (1 + i), code=7 + i % 2, user_data_64=i % 3)
            for i in range(TRADES)
        ]  # fmt: skip
        # Three rounds of 20 transfers and 3 trades, so trades and transfers interleave and
        # the balances move after the past time the positions are read at.
        self.rounds = []
        for r in range(3):
            done = client.create_transfers(transfers[20 * r : 20 * (r + 1)])
            assert done.ok, done.failures
            self.rounds.append(done)
            assert client.create_trades(trades[3 * r : 3 * (r + 1)]).ok
        # An account opened after the last event: positions as of a past time leave it out.
        late = client.create_accounts([Account(id=base + 13, ledger=self.a, code=10)])
        assert late.ok
        self.last = late.timestamp_last

        ids = [a.id for a in accounts] + [base + 13]
        self.accounts = sorted(client.lookup_accounts(ids), key=lambda a: a.timestamp)
        self.transfers = sorted(
            client.lookup_transfers([t.id for t in transfers]), key=lambda t: t.timestamp
        )
        self.trades = sorted(
            client.lookup_trades([t.id for t in trades]), key=lambda t: t.timestamp
        )
        assert len(self.accounts) == ACCOUNTS + 2
        assert len(self.transfers) == TRANSFERS and len(self.trades) == TRADES


@pytest.fixture
def ledger(node, base) -> Ledger:
    with node.client() as client:
        return Ledger(client, base)


def check_filters(
    read: Callable[[QueryFilter], QueryPage[T]],
    walk: Callable[[QueryFilter], list[T]],
    stored: list[T],
    keep: Callable[[QueryFilter, T], bool],
    filters: list[QueryFilter],
) -> None:
    """Each filter, both ways, in pages of 3 (and of 1 and of 8,189 for the first), equals
    the reference, page by page and through the client's walk."""
    limits = {0: (3, 1, 8189)}
    sizes = []
    for n, f in enumerate(filters):
        for limit in limits.get(n, (3,)):
            for reversed in (False, True):
                asked = dataclasses.replace(f, limit=limit, reversed=reversed)
                expected = reference(stored, lambda r, asked=asked: keep(asked, r), reversed)
                assert every_page(read, asked) == expected, asked
                assert walk(asked) == expected, asked
                sizes.append(len(expected))
    # The filters tell records apart: some match none, some many (several pages of 3), and
    # not all match everything.
    assert max(sizes) > 6 and min(sizes) < len(stored), sizes


def test_transfers_every_page_of_each_filter_equals_the_reference(node, ledger):
    t = ledger.transfers
    filters = [
        QueryFilter(ledger=ledger.a),
        QueryFilter(ledger=ledger.b, code=2),
        # No ledger: the range begins at this test's first event, so no other test's.
        QueryFilter(code=3, timestamp_min=ledger.first),
        QueryFilter(user_data_128=ledger.tag, user_data_64=1),
        QueryFilter(user_data_32=2, ledger=ledger.a),
        QueryFilter(ledger=ledger.a, timestamp_min=t[10].timestamp, timestamp_max=t[40].timestamp),
        QueryFilter(user_data_128=ledger.tag, timestamp_max=t[25].timestamp),
        QueryFilter(ledger=ledger.b, code=9),
    ]
    with node.client() as client:
        check_filters(
            client.query_transfers,
            lambda f: walked(client, client.query_transfers, f, TRANSFERS),
            t,
            lambda f, r: matches(f, r, TRANSFER_FIELDS),
            filters,
        )
        empty = client.query_transfers(QueryFilter(ledger=ledger.b, code=9, limit=3))
        assert empty == QueryPage([], None)


def test_accounts_and_trades_every_page_equals_the_reference(node, ledger):
    with node.client() as client:
        check_filters(
            client.query_accounts,
            lambda f: walked(client, client.query_accounts, f, ACCOUNTS + 2),
            ledger.accounts,
            lambda f, r: matches(f, r, ACCOUNT_FIELDS),
            [
                QueryFilter(ledger=ledger.a),
                QueryFilter(user_data_128=ledger.tag),
                QueryFilter(ledger=ledger.b, user_data_64=2),
                QueryFilter(code=11, timestamp_min=ledger.first),
                QueryFilter(ledger=ledger.a, timestamp_max=ledger.accounts[5].timestamp),
            ],
        )
        check_filters(
            client.query_trades,
            lambda f: walked(client, client.query_trades, f, TRADES),
            ledger.trades,
            trade_matches,
            [
                QueryFilter(ledger=ledger.a),  # the cash leg
                QueryFilter(ledger=ledger.b, code=8),  # the instrument leg
                QueryFilter(user_data_64=1, timestamp_min=ledger.first),
                QueryFilter(code=7, timestamp_min=ledger.trades[4].timestamp),
            ],
        )


def test_positions_as_of_a_past_time_equal_balances_as_of(node, ledger):
    """Every page of positions as of a time between two rounds: the accounts that existed
    then (not the late one), each with its balances as of then; as of now, the balances of a
    lookup."""
    at = ledger.rounds[1].timestamp_first + 9  # in the middle of the second round
    moved = 0
    with node.client() as client:
        for f in [
            QueryFilter(ledger=ledger.a),
            QueryFilter(ledger=ledger.b, code=10),
            QueryFilter(user_data_128=ledger.tag),
        ]:
            for reversed in (False, True):
                asked = dataclasses.replace(f, limit=3, reversed=reversed)
                positions = every_page(lambda g: client.positions(g, at=at), asked)
                expected = reference(
                    ledger.accounts,
                    lambda a, asked=asked: a.timestamp <= at and matches(asked, a, ACCOUNT_FIELDS),
                    reversed,
                )
                assert [p.account for p in positions] == expected, asked
                for position in positions:
                    then = client.balances_as_of(position.account.id, at)
                    assert position.balances == then, (asked, position.account.id)
                    moved += then.credits_posted != position.account.credits_posted
                walk = walked(client, lambda g: client.positions(g, at=at), asked, ACCOUNTS + 2)
                assert walk == positions
        assert moved > 0, "nothing moved after the time asked: the test proves nothing"
        assert ledger.accounts[-1].id == ledger.tag + 13  # the late one
        now = every_page(client.positions, QueryFilter(ledger=ledger.a, limit=3))
        assert [p.account for p in now] == [a for a in ledger.accounts if a.ledger == ledger.a]
        for position in now:
            account = position.account
            assert (position.balances.debits_posted, position.balances.credits_posted) == (
                account.debits_posted,
                account.credits_posted,
            )


def test_events_every_page_equals_the_accounts_transfers_and_trades_merged(node, ledger):
    """Every applied event of this test's range (accounts created, transfers, trades: no
    expiries here), merged by timestamp from the lookups, equals the events pages in pages of
    3 and of 8,189, both ways, and through the client's walk."""
    expected = sorted(
        [("account", a.timestamp, a.id) for a in ledger.accounts]
        + [("transfer", t.timestamp, t.id) for t in ledger.transfers]
        + [("trade", t.timestamp, t.id) for t in ledger.trades],
        key=lambda e: e[1],
    )

    def key(e: Any) -> tuple[str, int, int]:
        record = e.account or e.transfer or e.trade
        assert record.timestamp == e.timestamp
        return (e.kind, e.timestamp, record.id)

    with node.client() as client:
        for limit in (3, 8189):
            for reversed in (False, True):
                f = QueryFilter(
                    timestamp_min=ledger.first,
                    timestamp_max=ledger.last,
                    limit=limit,
                    reversed=reversed,
                )
                want = expected[::-1] if reversed else expected
                assert [key(e) for e in every_page(client.query_events, f)] == want, f
                walk = walked(client, client.query_events, f, len(expected))
                assert [key(e) for e in walk] == want, f
        # The records are the ones a lookup returns.
        events = list(
            client.query_all(
                client.query_events,
                QueryFilter(timestamp_min=ledger.first, timestamp_max=ledger.last),
            )
        )
        assert [e.transfer for e in events if e.transfer] == ledger.transfers
        assert [e.trade for e in events if e.trade] == ledger.trades


def test_fields_a_record_lacks_and_empty_ranges_are_bad_requests(node, ledger):
    with node.client() as client:
        for call, f in [
            (client.query_accounts, QueryFilter(user_data_32=1)),
            (client.positions, QueryFilter(user_data_32=1)),
            (client.query_trades, QueryFilter(user_data_32=1)),
            (client.query_trades, QueryFilter(user_data_128=1)),
            (client.query_transfers, QueryFilter(timestamp_min=10, timestamp_max=5)),
            # Events are selected by time only.
            (client.query_events, QueryFilter(ledger=ledger.a)),
            (client.query_events, QueryFilter(code=1)),
        ]:
            with pytest.raises(BadRequest):
                call(f)
        # The same session goes on.
        assert client.query_accounts(QueryFilter(ledger=ledger.a, limit=1)).items


def test_a_reader_queries_within_its_scope(node, ledger):
    """The reader sees accounts on ledger 1 only: of this test's, the one there; none of the
    transfers or trades between accounts on other ledgers."""
    with node.client("reader") as reader:
        tagged = QueryFilter(user_data_128=ledger.tag, limit=3)
        assert [a.id for a in reader.query_all(reader.query_accounts, tagged)] == [ledger.tag + 20]
        assert [p.account.id for p in reader.query_all(reader.positions, tagged)] == [
            ledger.tag + 20
        ]
        assert list(reader.query_all(reader.query_transfers, QueryFilter(ledger=ledger.a))) == []
        assert list(reader.query_all(reader.query_trades, QueryFilter(ledger=ledger.b))) == []
        # Of this test's events, the reader sees the creation of the account on ledger 1.
        mine = QueryFilter(timestamp_min=ledger.first, timestamp_max=ledger.last, limit=3)
        seen = [(e.kind, e.account.id if e.account else 0) for e in
                reader.query_all(reader.query_events, mine)]  # fmt: skip
        assert seen == [("account", ledger.tag + 20)]
