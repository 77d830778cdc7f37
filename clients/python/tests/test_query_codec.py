"""Queries by field without a node: requests laid out byte by byte as docs/protocol.md's
"Query request" says, replies of each kind decoded back to the records put in, replies the
Rust decoder refuses (unknown flags, a `next` without the more flag, counts past the bytes,
bytes left over) refused with a DecodeError and never another exception, and `query_all`
following `next` from page to page, refusing a `next` that does not move on."""

from __future__ import annotations

import random
import struct

import pytest

from tally_client import (
    Account,
    AccountFlags,
    Balances,
    Client,
    DecodeError,
    Position,
    QueryFilter,
    QueryPage,
    Trade,
    Transfer,
    TransferFlags,
    protocol,
    query,
)
from tally_client.records import encode_accounts, encode_trades, encode_transfers

U128_MAX = (1 << 128) - 1
U64_MAX = (1 << 64) - 1

FILTER = QueryFilter(
    user_data_128=U128_MAX - 1,
    user_data_64=U64_MAX - 7,
    user_data_32=8,
    ledger=9,
    code=10,
    limit=8189,
    timestamp_min=11,
    timestamp_max=12,
    reversed=True,
)


def head(count: int, next: int | None, flags: int | None = None) -> bytes:
    """A query reply's first 16 bytes, packed here from the documented layout."""
    if flags is None:
        flags = 0 if next is None else 1
    return struct.pack("<IIQ", count, flags, next or 0)


def balances_bytes(b: Balances) -> bytes:
    values = (b.debits_pending, b.debits_posted, b.credits_pending, b.credits_posted)
    return b"".join(v.to_bytes(16, "little") for v in values)


ACCOUNTS = [
    Account(id=5, ledger=1, code=2, flags=AccountFlags.HISTORY, credits_posted=1 << 100,
            user_data_128=U128_MAX, user_data_64=3, timestamp=40),
    Account(id=6, ledger=2, code=3, debits_pending=9, timestamp=41),
]  # fmt: skip
TRANSFERS = [
    Transfer(id=7, debit_account_id=5, credit_account_id=6, amount=U128_MAX, ledger=1, code=4,
             user_data_32=99, flags=TransferFlags.PENDING, timeout=60, timestamp=50),
]  # fmt: skip
TRADES = [
    Trade(id=8, instrument_debit_account_id=1, instrument_credit_account_id=2,
          cash_debit_account_id=3, cash_credit_account_id=4, instrument_ledger=2, cash_ledger=1,
          quantity=10, cash_amount=1000, code=7, user_data_64=20261207, timestamp=60),
]  # fmt: skip
BALANCES = Balances(1, 2, U128_MAX, 1 << 64)


def test_a_query_request_is_laid_out_as_documented():
    body = query.encode_query_request(FILTER)
    assert len(body) == 64
    fields = struct.unpack("<16sQIIHHIQQII", body)
    assert int.from_bytes(fields[0], "little") == U128_MAX - 1
    assert fields[1:] == (U64_MAX - 7, 8, 9, 10, 0, 8189, 11, 12, 1, 0)
    positions = query.encode_query_request(FILTER, at=U64_MAX)
    assert len(positions) == 80 and positions[:64] == body
    assert struct.unpack_from("<QQ", positions, 64) == (U64_MAX, 0)
    # Defaults: everything matches, a whole page, oldest first.
    plain = struct.unpack("<16sQIIHHIQQII", query.encode_query_request(QueryFilter()))
    assert plain == (bytes(16), 0, 0, 0, 0, 0, 8189, 0, 0, 0, 0)


def test_requests_round_trip_and_damaged_ones_are_refused():
    assert query.decode_query_request(query.encode_query_request(FILTER)) == (FILTER, 0)
    body = query.encode_query_request(FILTER, at=99)
    assert query.decode_query_request(body, positions=True) == (FILTER, 99)
    forward = QueryFilter(ledger=3, limit=1)
    assert query.decode_query_request(query.encode_query_request(forward)) == (forward, 0)
    # A positions body is not a query body, nor the other way round.
    with pytest.raises(DecodeError):
        query.decode_query_request(body)
    with pytest.raises(DecodeError):
        query.decode_query_request(body[:64], positions=True)
    damaged = [
        (34, b"\x01"),  # reserved after code
        (36, struct.pack("<I", 0)),  # limit 0
        (36, struct.pack("<I", 8190)),  # limit over 8,189
        (56, struct.pack("<I", 2)),  # an unknown flag
        (60, b"\x01"),  # reserved after flags
        (72, b"\x01"),  # reserved after at
    ]
    for at, patch in damaged:
        bad = bytearray(body)
        bad[at : at + len(patch)] = patch
        with pytest.raises(DecodeError):
            query.decode_query_request(bad, positions=True)


@pytest.mark.parametrize(
    "decode, records, encoded",
    [
        (query.decode_accounts_page, ACCOUNTS, encode_accounts(ACCOUNTS)),
        (query.decode_transfers_page, TRANSFERS, encode_transfers(TRANSFERS)),
        (query.decode_trades_page, TRADES, encode_trades(TRADES)),
    ],
)
def test_pages_of_records_round_trip(decode, records, encoded):
    count = len(records)
    assert decode(head(count, 77) + bytes(encoded)) == QueryPage(records, 77)
    assert decode(head(count, None) + bytes(encoded)) == QueryPage(records, None)
    # A page with none, yet more to come (a page examines a bounded number of records).
    assert decode(head(0, 1 << 63)) == QueryPage([], 1 << 63)
    assert decode(head(0, None)) == QueryPage([], None)


def test_a_page_of_positions_round_trips():
    body = head(2, 5) + b"".join(
        bytes(encode_accounts([account])) + balances_bytes(BALANCES) for account in ACCOUNTS
    )
    page = query.decode_positions_page(body)
    assert page == QueryPage([Position(ACCOUNTS[0], BALANCES), Position(ACCOUNTS[1], BALANCES)], 5)
    # The balances are the ones after the record, not the record's own.
    assert page.items[0].balances.credits_pending == U128_MAX
    assert page.items[0].account.credits_posted == 1 << 100


def event_bytes(timestamp: int, kind: int, record: bytes) -> bytes:
    """An events reply's entry, packed here from the documented layout."""
    return struct.pack("<QB7x", timestamp, kind) + record


def test_a_page_of_events_round_trips():
    expiry = (77).to_bytes(16, "little") + bytes(112)
    body = head(5, 200) + b"".join(
        [
            event_bytes(40, 5, bytes(encode_accounts(ACCOUNTS[:1]))),
            event_bytes(50, 1, bytes(encode_transfers(TRANSFERS))),
            event_bytes(60, 2, bytes(encode_trades(TRADES))),
            event_bytes(70, 3, expiry),
            event_bytes(80, 4, expiry),
        ]
    )
    page = query.decode_events_page(body)
    assert page.next == 200
    assert [(e.timestamp, e.kind) for e in page.items] == [
        (40, "account"),
        (50, "transfer"),
        (60, "trade"),
        (70, "transfer_expired"),
        (80, "trade_expired"),
    ]
    assert page.items[0].account == ACCOUNTS[0]
    assert page.items[1].transfer == TRANSFERS[0]
    assert page.items[2].trade == TRADES[0]
    assert page.items[3].pending_id == 77 and page.items[3].transfer is None
    assert page.items[4].pending_id == 77
    # An unknown kind, a reserved byte, an expiry with bytes past its id, a short entry.
    for at, byte in [(24, 6), (24, 0), (25, 1), (16 + 4 * 144 + 16 + 20, 1)]:
        bad = bytearray(body)
        bad[at] = byte
        with pytest.raises(DecodeError):
            query.decode_events_page(bytes(bad))
    with pytest.raises(DecodeError):
        query.decode_events_page(body[:-1])


ONE_ACCOUNT = bytes(encode_accounts(ACCOUNTS[:1]))
ONE_POSITION = ONE_ACCOUNT + balances_bytes(BALANCES)


@pytest.mark.parametrize(
    "decode, body",
    [
        (query.decode_accounts_page, head(1, None, flags=2) + ONE_ACCOUNT),  # unknown flag
        (query.decode_accounts_page, head(1, 9, flags=3) + ONE_ACCOUNT),
        (query.decode_transfers_page, head(0, 9, flags=0)),  # next without more
        (query.decode_accounts_page, head(2, None) + ONE_ACCOUNT),  # count past the bytes
        (query.decode_accounts_page, head(8190, None) + ONE_ACCOUNT),  # over the limit
        (query.decode_accounts_page, head(1, None) + ONE_ACCOUNT + b"\x00"),  # left over
        (query.decode_accounts_page, head(0, None) + ONE_ACCOUNT),
        (query.decode_accounts_page, head(1, None) + ONE_POSITION),  # 64 bytes left over
        (query.decode_positions_page, head(1, None) + ONE_ACCOUNT),  # short
        (query.decode_positions_page, head(1, None) + ONE_POSITION + bytes(64)),
        (query.decode_trades_page, head(0, None)[:15]),  # no whole header
        (query.decode_trades_page, b""),
        # A record that does not decode: an account with an unknown flag bit.
        (query.decode_accounts_page, head(1, None) + ONE_ACCOUNT[:118] + b"\x00\x01"
         + ONE_ACCOUNT[120:]),
        (query.decode_positions_page, head(1, None) + ONE_ACCOUNT[:118] + b"\x00\x01"
         + ONE_POSITION[120:]),
    ],
)  # fmt: skip
def test_malformed_replies_are_decode_errors(decode, body):
    with pytest.raises(DecodeError):
        decode(body)


def test_random_bytes_never_raise_anything_but_decode_error():
    rng = random.Random(110)
    decoders = [
        query.decode_accounts_page,
        query.decode_transfers_page,
        query.decode_trades_page,
        query.decode_positions_page,
        query.decode_events_page,
    ]
    for _ in range(2000):
        count = rng.choice([0, 1, 2, rng.randrange(1 << 32)])
        body = head(count, None, rng.choice([0, 1, rng.randrange(1 << 32)]))
        body += rng.randbytes(rng.choice([0, 8, 128, 144, 192, 256, rng.randrange(400)]))
        for decode in decoders:
            try:
                decode(body)
            except DecodeError:
                pass
        for positions in (False, True):
            try:
                query.decode_query_request(rng.randbytes(rng.choice([64, 80])), positions)
            except DecodeError:
                pass


class FakePages:
    """Pages of integers served in order, recording the filter each request carried."""

    def __init__(self, pages: list[QueryPage[int]]) -> None:
        self.pages = pages
        self.asked: list[QueryFilter] = []

    def __call__(self, filter: QueryFilter) -> QueryPage[int]:
        self.asked.append(filter)
        return self.pages[len(self.asked) - 1]


def offline() -> Client:
    return Client(["127.0.0.1:1"], 1, b"x" * 16, insecure_plaintext=True, connect=False)


@pytest.mark.parametrize("reversed", [False, True])
def test_query_all_follows_next_through_every_page(reversed):
    """Empty pages with more to come are followed too; each request is the first filter
    with the bound of its direction moved to the previous page's `next`."""
    first = QueryFilter(ledger=4, limit=2, timestamp_min=100, timestamp_max=900,
                        reversed=reversed)  # fmt: skip
    cursors = [700, 500, 300] if reversed else [300, 500, 700]
    pages = FakePages(
        [
            QueryPage([1, 2], cursors[0]),
            QueryPage([], cursors[1]),
            QueryPage([3], cursors[2]),
            QueryPage([4, 5], None),
        ]
    )
    assert list(offline().query_all(pages, first)) == [1, 2, 3, 4, 5]
    bound = "timestamp_max" if reversed else "timestamp_min"
    assert [getattr(f, bound) for f in pages.asked] == [getattr(first, bound), *cursors]
    for asked in pages.asked:
        assert (asked.ledger, asked.limit, asked.reversed) == (4, 2, reversed)
    other = "timestamp_min" if reversed else "timestamp_max"
    assert {getattr(f, other) for f in pages.asked} == {getattr(first, other)}


@pytest.mark.parametrize(
    "first, cursor",
    [
        (QueryFilter(timestamp_min=100), 100),  # the same page again
        (QueryFilter(timestamp_min=100), 50),  # backwards
        (QueryFilter(timestamp_min=100, timestamp_max=200), 201),  # past the range
        (QueryFilter(reversed=True, timestamp_max=200), 200),
        (QueryFilter(reversed=True, timestamp_max=200), 300),
        (QueryFilter(reversed=True, timestamp_min=100), 99),
        (QueryFilter(reversed=True), 0),  # 0 would mean no bound: from the top again
    ],
)
def test_query_all_refuses_a_next_that_does_not_move_on(first, cursor):
    pages = FakePages([QueryPage([1], cursor), QueryPage([2], None)])
    walk = offline().query_all(pages, first)
    assert next(walk) == 1
    with pytest.raises(DecodeError, match="outside the range asked"):
        next(walk)
    assert len(pages.asked) == 1


def test_the_query_kinds_are_the_documented_ones():
    assert (
        protocol.KIND_QUERY_ACCOUNTS,
        protocol.KIND_QUERY_TRANSFERS,
        protocol.KIND_QUERY_TRADES,
        protocol.KIND_QUERY_POSITIONS,
    ) == (110, 112, 114, 116)
