"""Queries by field (docs/protocol.md, kinds 110–116, "Query request"; the Rust client's
gateway/client/src/query.rs): the filter, its request (64 bytes; positions 80) and the reply,
a page of records and where the next page starts. Kind 118 pages every applied event by time
(the change feed's read): its filter names a time range only.

A zero field of the filter matches any value; every non-zero one must equal the record's
(TigerBeetle's ``QueryFilter``). Accounts have no ``user_data_32``, trades neither it nor
``user_data_128``: the node refuses a non-zero one ``BadRequest``. A trade matches ``ledger``
on either of its legs. Records come in timestamp order, oldest first (newest first with
``reversed``); a page may hold fewer than ``limit`` records, even none, and still not be the
last (a page examines a bounded number of stored records): while ``next`` is not None, the
next page is ``filter.after(next)``.

>>> first = QueryFilter(ledger=1, code=10, limit=3)
>>> len(encode_query_request(first)), len(encode_query_request(first, at=5))
(64, 80)
>>> first.after(1_000).timestamp_min, first.after(1_000).limit
(1000, 3)
>>> QueryFilter(reversed=True).after(999).timestamp_max
999
>>> decode_transfers_page(bytes(16))
QueryPage(items=[], next=None)
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from . import limits
from .errors import DecodeError, InvalidRequest
from .protocol import Balances, Reader, StatementEvent, decode_balances, decode_event_record
from .records import (
    RECORD_BYTES,
    Account,
    Trade,
    Transfer,
    decode_accounts,
    decode_trades,
    decode_transfers,
)

T = TypeVar("T")

#: A query request's body bytes, and a positions request's (the time asked follows).
QUERY_REQUEST_BYTES = 64
POSITIONS_REQUEST_BYTES = 80
#: A query reply's bytes before its records: count, flags, next.
QUERY_REPLY_HEAD_BYTES = 16
#: A position in a reply: the account record, then its four balances (u128 each).
POSITION_BYTES = RECORD_BYTES + 64
#: An event in an events reply: timestamp u64, kind u8, reserved 7, then the record.
EVENT_BYTES = 16 + RECORD_BYTES
#: An events entry's kind byte for an account created (1–4 are a statement's kinds).
_EVENT_ACCOUNT = 5
#: Each kind byte's name, as ``tally client follow`` and the exports name them.
EVENT_KINDS = {
    StatementEvent.TRANSFER: "transfer",
    StatementEvent.TRADE: "trade",
    StatementEvent.TRANSFER_EXPIRED: "transfer_expired",
    StatementEvent.TRADE_EXPIRED: "trade_expired",
}
#: Request flags: bit 0, newest first. Reply flags: bit 0, more (a page starts at ``next``).
REVERSED = 1
MORE = 1

#: user_data_128 (two u64 halves), user_data_64, user_data_32, ledger, code, reserved, limit,
#: timestamp min, timestamp max, flags, reserved.
_REQUEST = struct.Struct("<QQQIIHHIQQII")
#: Positions only: at, reserved.
_AT = struct.Struct("<QQ")
assert _REQUEST.size == QUERY_REQUEST_BYTES
assert _REQUEST.size + _AT.size == POSITIONS_REQUEST_BYTES
_U64 = (1 << 64) - 1

#: The filter's integer fields and their sizes in bytes (the request's layout).
_FIELDS = (
    ("user_data_128", 16),
    ("user_data_64", 8),
    ("user_data_32", 4),
    ("ledger", 4),
    ("code", 2),
    ("timestamp_min", 8),
    ("timestamp_max", 8),
)


@dataclass(frozen=True)
class QueryFilter:
    """What a query matches: each non-zero field must equal the record's, and its timestamp
    lie in ``timestamp_min..=timestamp_max`` (ns; ``timestamp_max`` 0: no bound); at most
    ``limit`` records (1..=8,189) per page, oldest first unless ``reversed``."""

    user_data_128: int = 0
    user_data_64: int = 0
    user_data_32: int = 0
    ledger: int = 0
    code: int = 0
    limit: int = limits.QUERY_RECORDS_MAX
    timestamp_min: int = 0
    timestamp_max: int = 0
    reversed: bool = False

    def after(self, next: int) -> QueryFilter:
        """The filter of the page after one that answered ``next``: the same, with
        ``timestamp_min`` (oldest first) or ``timestamp_max`` (newest first) set to it."""
        if self.reversed:
            return dataclasses.replace(self, timestamp_max=next)
        return dataclasses.replace(self, timestamp_min=next)


@dataclass
class QueryPage(Generic[T]):
    """One page of a query: its records, and where the next page starts (None: this is the
    last). A page may hold fewer records than asked, even none, and not be the last."""

    items: list[T]
    next: int | None = None


@dataclass
class Position:
    """An account and its balances after every change up to the time asked (the account
    record's own balance fields are its current ones)."""

    account: Account
    balances: Balances


def _check(name: str, value: object, size: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(
            f"query filter: {name} must be an int, not {type(value).__name__} ({value!r})"
        )
    if not 0 <= value < 1 << (8 * size):
        raise InvalidRequest(f"query filter: {name} = {value} is outside 0..=2**{8 * size}-1")
    return value


def encode_query_request(filter: QueryFilter, at: int | None = None) -> bytes:
    """A query request's body (64 bytes), or with ``at`` (ns; 0: now) a positions request's
    (80). Raises ``InvalidRequest`` for a field of the wrong type or out of its range."""
    if not isinstance(filter, QueryFilter):
        raise InvalidRequest(f"a QueryFilter is needed, not {type(filter).__name__}")
    for name, size in _FIELDS:
        _check(name, getattr(filter, name), size)
    limit = filter.limit
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InvalidRequest(f"query filter: limit must be an int, not {type(limit).__name__}")
    if not 1 <= limit <= limits.QUERY_RECORDS_MAX:
        raise InvalidRequest(
            f"query filter: limit = {limit} is outside 1..={limits.QUERY_RECORDS_MAX}"
        )
    if not isinstance(filter.reversed, bool):
        raise InvalidRequest(
            f"query filter: reversed must be a bool, not {type(filter.reversed).__name__}"
        )
    body = _REQUEST.pack(
        filter.user_data_128 & _U64, filter.user_data_128 >> 64, filter.user_data_64,
        filter.user_data_32, filter.ledger, filter.code, 0, limit, filter.timestamp_min,
        filter.timestamp_max, REVERSED if filter.reversed else 0, 0,
    )  # fmt: skip
    if at is None:
        return body
    if isinstance(at, bool) or not isinstance(at, int) or not 0 <= at <= _U64:
        raise InvalidRequest(f"positions: at = {at!r} is not a time in ns (0..=2**64-1)")
    return body + _AT.pack(at, 0)


def decode_query_request(
    body: bytes | bytearray | memoryview, positions: bool = False
) -> tuple[QueryFilter, int]:
    """A query request's filter, and for a positions request (``positions``) the time asked
    (else 0): what the node reads, for tests and tools. Refuses what the node refuses."""
    reader = Reader(body, "query request")
    (low, high, user_data_64, user_data_32, ledger, code, reserved, limit, timestamp_min,
     timestamp_max, flags, tail) = reader.unpack(_REQUEST)  # fmt: skip
    if reserved or tail:
        raise DecodeError("reserved bytes of the query request are not zero")
    if not 1 <= limit <= limits.QUERY_RECORDS_MAX:
        raise DecodeError(f"query request: a limit of {limit}")
    if flags & ~REVERSED:
        raise DecodeError(f"query request: unknown flag bits {flags:#x}")
    at = 0
    if positions:
        at = reader.u64()
        reader.zeros(8)
    reader.end()
    filter = QueryFilter(
        user_data_128=low | high << 64,
        user_data_64=user_data_64,
        user_data_32=user_data_32,
        ledger=ledger,
        code=code,
        limit=limit,
        timestamp_min=timestamp_min,
        timestamp_max=timestamp_max,
        reversed=bool(flags & REVERSED),
    )
    return filter, at


def _page(
    body: bytes | bytearray | memoryview,
    each: int,
    decode: Callable[[memoryview], list[T]],
) -> QueryPage[T]:
    """A query reply of records ``each`` bytes long, ``decode`` turning them into items."""
    reader = Reader(body, "query reply")
    count = reader.count("records", limits.QUERY_RECORDS_MAX, each)
    flags, next = reader.u32(), reader.u64()
    if flags & ~MORE:
        raise DecodeError(f"query reply: unknown flag bits {flags:#x}")
    if not flags & MORE and next:
        raise DecodeError(f"query reply: a next page at {next} without the more flag")
    records = reader.take(count * each)
    reader.end()
    return QueryPage(decode(records), next if flags & MORE else None)


def decode_accounts_page(body: bytes | bytearray | memoryview) -> QueryPage[Account]:
    """A query-accounts reply."""
    return _page(body, RECORD_BYTES, decode_accounts)


def decode_transfers_page(body: bytes | bytearray | memoryview) -> QueryPage[Transfer]:
    """A query-transfers reply."""
    return _page(body, RECORD_BYTES, decode_transfers)


def decode_trades_page(body: bytes | bytearray | memoryview) -> QueryPage[Trade]:
    """A query-trades reply."""
    return _page(body, RECORD_BYTES, decode_trades)


def _positions(records: memoryview) -> list[Position]:
    return [
        Position(
            decode_accounts(records[at : at + RECORD_BYTES])[0],
            decode_balances(records[at + RECORD_BYTES : at + POSITION_BYTES]),
        )
        for at in range(0, len(records), POSITION_BYTES)
    ]


def decode_positions_page(body: bytes | bytearray | memoryview) -> QueryPage[Position]:
    """A query-positions reply: each account record, then its balances as of the time
    asked."""
    return _page(body, POSITION_BYTES, _positions)


@dataclass
class LedgerEvent:
    """An applied event and its timestamp (its position in the feed). ``kind`` is
    ``account`` (``account`` holds the account as created), ``transfer``, ``trade``, or
    ``transfer_expired`` / ``trade_expired`` (``pending_id`` names the pending event whose
    reservation was released)."""

    timestamp: int
    kind: str
    account: Account | None = None
    transfer: Transfer | None = None
    trade: Trade | None = None
    pending_id: int = 0


def _events(records: memoryview) -> list[LedgerEvent]:
    events = []
    for at in range(0, len(records), EVENT_BYTES):
        chunk = records[at : at + EVENT_BYTES]
        timestamp, kind = struct.unpack_from("<QB", chunk)
        if any(chunk[9:16]):
            raise DecodeError("reserved bytes of an event are not zero")
        record = chunk[16:]
        if kind == _EVENT_ACCOUNT:
            events.append(LedgerEvent(timestamp, "account", account=decode_accounts(record)[0]))
            continue
        try:
            stored = StatementEvent(kind)
        except ValueError:
            raise DecodeError(f"unknown event kind {kind}") from None
        transfer, trade, pending_id = decode_event_record(stored, record)
        events.append(
            LedgerEvent(timestamp, EVENT_KINDS[stored], None, transfer, trade, pending_id)
        )
    return events


def decode_events_page(body: bytes | bytearray | memoryview) -> QueryPage[LedgerEvent]:
    """A query-events reply: each event's timestamp, kind and record."""
    return _page(body, EVENT_BYTES, _events)


def next_filter(filter: QueryFilter, next: int) -> QueryFilter:
    """``filter.after(next)``, refusing a ``next`` that does not move the range on (a node
    bug, which would otherwise make a walk over every page ask the same page forever)."""
    if filter.reversed:
        top = filter.timestamp_max or _U64 + 1
        moves = filter.timestamp_min <= next < top and next != 0
    else:
        moves = filter.timestamp_min < next and (
            filter.timestamp_max == 0 or next <= filter.timestamp_max
        )
    if not moves:
        raise DecodeError(
            f"query reply: a next page at {next} outside the range asked "
            f"({filter.timestamp_min}..={filter.timestamp_max or 'no bound'}"
            f"{', newest first' if filter.reversed else ''})"
        )
    return filter.after(next)
