"""The client: finds the leader among the addresses given, keeps a session, sends each call
as one request and retries it without ever applying anything twice.

Retries mirror the Rust client (gateway/client/src/client.rs). Request numbers come from one
counter for the client's whole life, across sessions and nodes; a request whose outcome was
not seen (a lost connection, a timeout, ``NotLeader``, ``Unavailable``, ``Busy``, an expired
session) is sent again under the *same* number, with backoff and jitter, until the call's
deadline: the cluster keeps each client's last answers in its replicated reply table, so
whichever node leads then answers with the original reply and applies nothing again. Every
other refusal is permanent and raised at once (``errors``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from . import limits, protocol, query, settlement
from .connection import Connection, ConnectionLost, Tls
from .errors import (
    BadRequest,
    BatchRefused,
    ClientClosed,
    DeadlineExceeded,
    Forbidden,
    Internal,
    InvalidRequest,
    NotFound,
    OutOfScope,
    Refused,
    RequestNumberReused,
    Unauthenticated,
    WrongCluster,
)
from .protocol import LATEST, Status
from .query import Position, QueryFilter, QueryPage
from .records import (
    RECORD_BYTES,
    U128_MAX,
    Account,
    Instruction,
    SettlementCommand,
    Trade,
    Transfer,
    decode_accounts,
    decode_trades,
    decode_transfers,
    encode_accounts,
    encode_commands,
    encode_instructions,
    encode_settlements,
    encode_trades,
    encode_transfers,
)
from .results import result_name

if TYPE_CHECKING:
    # For type checkers only (typing.Self is Python 3.11): nothing is imported at run time.
    from typing_extensions import Self

T = TypeVar("T")

_REFUSED: dict[Status, type[Refused]] = {
    Status.BAD_REQUEST: BadRequest,
    Status.UNAUTHENTICATED: Unauthenticated,
    Status.FORBIDDEN: Forbidden,
    Status.WRONG_CLUSTER: WrongCluster,
    Status.BATCH_REFUSED: BatchRefused,
    Status.NOT_FOUND: NotFound,
    Status.INTERNAL: Internal,
    Status.OUT_OF_SCOPE: OutOfScope,
    Status.REQUEST_NUMBER_REUSED: RequestNumberReused,
}

#: The longest pause between two tries, and the first.
BACKOFF_MAX_S = 0.5
BACKOFF_FIRST_S = 0.01


@dataclass(frozen=True)
class Failure:
    """A failed event of a create call: its index in the call and its result."""

    index: int
    code: int

    @property
    def result(self) -> str:
        """The result's documented name, e.g. ``"exceeds_credits"``."""
        return result_name(self.code)


@dataclass
class Created:
    """What a create call got back: the commit index of the Raft entry that applied it (the
    same for a retry answered from the reply table), the timestamps the engine gave its first
    and last events (event ``i`` got ``timestamp_first + i``), and the failed events by index
    (replies by exception: events not listed succeeded)."""

    commit_index: int
    timestamp_first: int
    timestamp_last: int
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every event succeeded."""
        return not self.failures


class _Transient(Exception):
    """Worth another try (another node, later)."""


@dataclass
class _Session:
    connection: Connection
    session: int
    registered: protocol.Registered


def _check_u128(what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{what} must be an int, not {type(value).__name__} ({value!r})")
    if not 0 <= value <= U128_MAX:
        raise InvalidRequest(f"{what} = {value} is outside 0..=2**128-1")
    return value


def _check_range(what: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{what} must be an int, not {type(value).__name__} ({value!r})")
    if not low <= value <= high:
        raise InvalidRequest(f"{what} = {value} is outside {low}..={high}")
    return value


def _node_id(node_id: object) -> int:
    return _check_range("node id", node_id, 0, (1 << 64) - 1)


def _node_ids(node_ids: Sequence[int]) -> bytes:
    if not 0 < len(node_ids) <= limits.MEMBERS_MAX:
        raise InvalidRequest(f"{len(node_ids)} node ids; a request names 1..=64")
    return len(node_ids).to_bytes(4, "little") + b"".join(
        _node_id(node_id).to_bytes(8, "little") for node_id in node_ids
    )


def _member(addresses: tuple[str, str]) -> bytes:
    """A member's client and peer addresses, u16 length + UTF-8 each."""
    out = b""
    for address in addresses:
        encoded = address.encode("utf-8")
        if len(encoded) > limits.ADDRESS_BYTES_MAX:
            raise InvalidRequest(f"an address of {len(encoded)} bytes is over 256")
        out += len(encoded).to_bytes(2, "little") + encoded
    return out


def _ids(what: str, ids: Sequence[int], most: int) -> bytes:
    if isinstance(ids, (str, bytes)) or not hasattr(ids, "__len__"):
        raise InvalidRequest(f"{what}: a sequence of ids is needed, not {type(ids).__name__}")
    if not 1 <= len(ids) <= most:
        raise InvalidRequest(f"{what}: {len(ids)} ids; a request carries 1..={most}")
    for index, value in enumerate(ids):
        _check_u128(f"{what}: id {index}", value)
    return protocol.encode_ids(list(ids))


class Client:
    """A client of a Tally cluster's gateway (synchronous; one request at a time; share it
    within one thread, or give each thread its own).

    ``addresses`` are the nodes' client addresses (``host:port``); the client registers with
    one of them and follows the leader. ``cluster_id`` must be the nodes' ``cluster_id``;
    ``credential`` the secret whose hash their config lists (16..=256 bytes). ``ca`` is the
    cluster CA file (TLS 1.3, the node verified against it); without it, pass
    ``insecure_plaintext=True`` to speak plain TCP to nodes configured so.

    Each call waits ``request_timeout_s`` for one reply and gives up after ``deadline_s``.
    Reads are linearizable (served by the leader after confirming its leadership) unless
    ``linearizable=False`` (served from what the node the session is on has applied).

    >>> with Client(["127.0.0.1:7101"], cluster_id=0x7A11, credential=b"my-operator-secret-0123",
    ...             ca="pki/ca.pem") as client:                        # doctest: +SKIP
    ...     client.create_accounts([Account(id=1, ledger=1, code=10),
    ...                             Account(id=2, ledger=1, code=10)]).ok
    True
    """

    def __init__(
        self,
        addresses: Sequence[str] | str,
        cluster_id: int,
        credential: bytes | str,
        *,
        ca: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        server_name: str | None = None,
        insecure_plaintext: bool = False,
        request_timeout_s: float = 10.0,
        deadline_s: float = 60.0,
        linearizable: bool = True,
        connect: bool = True,
    ) -> None:
        if isinstance(addresses, str):
            addresses = [address for address in addresses.split(",") if address]
        if not addresses:
            raise InvalidRequest("no node address given")
        for address in addresses:
            if not isinstance(address, str) or ":" not in address:
                raise InvalidRequest(f"{address!r} is not a host:port address")
        self.cluster_id = _check_u128("cluster_id", cluster_id)
        if isinstance(credential, str):
            credential = credential.encode()
        if not isinstance(credential, (bytes, bytearray)):
            raise InvalidRequest(f"a credential is bytes or str, not {type(credential).__name__}")
        if not limits.CREDENTIAL_BYTES_MIN <= len(credential) <= limits.CREDENTIAL_BYTES_MAX:
            raise InvalidRequest(
                f"a credential is {limits.CREDENTIAL_BYTES_MIN}..={limits.CREDENTIAL_BYTES_MAX}"
                f" bytes, this one {len(credential)}"
            )
        if ca is None and not insecure_plaintext:
            raise InvalidRequest(
                "give the cluster CA (ca=...) to speak TLS, or insecure_plaintext=True for "
                "nodes configured with insecure_plaintext"
            )
        self.addresses = list(addresses)
        self._credential = bytes(credential)
        self._tls = Tls(ca, cert, key, server_name) if ca is not None else None
        self._context = self._tls.context() if self._tls is not None else None
        self.request_timeout_s = request_timeout_s
        self.deadline_s = deadline_s
        self.linearizable = linearizable
        #: Random and odd, as the Rust client's: the key of this client's request numbers.
        self.client_id = random.getrandbits(128) | 1
        self._last_number = 0
        self._target = 0
        self._session: _Session | None = None
        self._closed = False
        #: Request frames sent, registrations and resends included.
        self.requests_sent = 0
        if connect:
            self._register()

    # ---- life cycle -------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the session on its node now (a credential holds at most 64 sessions), rather
        than at its idle timeout. Best effort, within a second; later calls raise
        ``ClientClosed``."""
        self._closed = True
        held, self._session = self._session, None
        if held is None or not held.connection.is_open:
            return
        try:
            frame_id = self._send(
                held.connection,
                protocol.KIND_END_SESSION,
                self._header(held.session, self._next_number()),
                b"",
            )
            held.connection.receive(frame_id, 1.0)
        except (ConnectionLost, InvalidRequest):
            pass
        finally:
            held.connection.close()

    @property
    def current_node(self) -> str:
        """The address of the node the session is on (or will be tried next)."""
        if self._session is not None:
            return self._session.connection.address
        return self.addresses[self._target % len(self.addresses)]

    @property
    def request_events_max(self) -> int:
        """Events one create request may carry, as the node said at registration."""
        if self._session is not None:
            return max(1, self._session.registered.request_events_max)
        return limits.REQUEST_EVENTS_MAX

    @property
    def session_id(self) -> int | None:
        """The session this client holds now (None before registering or after a drop)."""
        return self._session.session if self._session is not None else None

    @property
    def role(self) -> protocol.Role | None:
        return self._session.registered.role if self._session is not None else None

    # ---- the retry loop -----------------------------------------------------------------

    def _next_number(self) -> int:
        self._last_number += 1
        return self._last_number

    def _retarget(self, hint: str | None) -> None:
        if hint is not None and hint in self.addresses:
            self._target = self.addresses.index(hint)
        else:
            self._target += 1

    def _connect(self, address: str) -> Connection:
        server_name = self._tls.server_name if self._tls is not None else None
        return Connection(address, self._context, server_name, self.request_timeout_s)

    def _header(self, session: int, number: int, flags: int = 0) -> protocol.RequestHeader:
        return protocol.RequestHeader(flags, self.cluster_id, self.client_id, session, number)

    def _send(
        self,
        connection: Connection,
        kind: int,
        header: protocol.RequestHeader,
        body: bytes | bytearray,
        frame: bytearray | None = None,
    ) -> int:
        """Seal and send one request (``frame``: a create's, its body already in place)."""
        frame_id = connection.next_frame_id()
        if frame is None:
            frame = protocol.request_frame(kind, frame_id, header, body)
        else:
            protocol.seal_request(frame, kind, frame_id, header)
        self.requests_sent += 1
        connection.send(frame, self.request_timeout_s)
        return frame_id

    def _exchange(
        self,
        connection: Connection,
        kind: int,
        header: protocol.RequestHeader,
        body: bytes | bytearray,
        frame: bytearray | None = None,
    ) -> tuple[protocol.ReplyHeader, memoryview]:
        frame_id = self._send(connection, kind, header, body, frame)
        reply_kind, payload = connection.receive(frame_id, self.request_timeout_s)
        reply, reply_body = protocol.decode_reply(payload)
        if reply_kind != kind | 1:
            raise ConnectionLost(f"a reply of kind {reply_kind} to a request of kind {kind}")
        return reply, reply_body

    def _refused(self, status: Status, body: memoryview) -> Refused:
        refusal = protocol.decode_refusal(body)
        return _REFUSED.get(status, Refused)(status, refusal)

    def _drop_session(self, end_on_node: bool) -> None:
        """Forget the session; if the node still holds it (it answered but cannot serve this
        client), end it there without waiting, so finding the leader leaves nothing behind on
        the followers asked."""
        held, self._session = self._session, None
        if held is None:
            return
        if end_on_node and held.connection.is_open:
            try:
                self._send(
                    held.connection,
                    protocol.KIND_END_SESSION,
                    self._header(held.session, self._next_number()),
                    b"",
                )
            except ConnectionLost:
                pass
        held.connection.close()

    def _session_now(self) -> _Session:
        """A session on the current target, registering one if there is none. Raises
        ``_Transient`` for what another try may fix, a ``TallyError`` for what it cannot."""
        if self._closed:
            raise ClientClosed("the client is closed")
        held = self._session
        if held is not None:
            if held.connection.is_open:
                return held
            # The node keeps the session (and its cached replies) when a connection drops:
            # go on in the same session, so a retry gets the original reply.
            try:
                held.connection = self._connect(held.connection.address)
                return held
            except ConnectionLost as error:
                self._session = None
                self._retarget(None)
                raise _Transient(str(error)) from None
        address = self.addresses[self._target % len(self.addresses)]
        try:
            connection = self._connect(address)
        except ConnectionLost as error:
            self._retarget(None)
            raise _Transient(str(error)) from None
        try:
            header, body = self._exchange(
                connection, protocol.KIND_REGISTER, self._header(0, 1), self._credential
            )
        except ConnectionLost as error:
            connection.close()
            self._retarget(None)
            hint = "" if self._context else " (a TLS port closes plain TCP so: give the CA?)"
            raise _Transient(f"register at {address}: {error}{hint}") from None
        if header.status is not Status.OK:
            connection.close()
            refusal = protocol.decode_refusal(body)
            busy_elsewhere = header.status is Status.BUSY and refusal.leader_id is not None
            if header.status in (Status.NOT_LEADER, Status.UNAVAILABLE) or busy_elsewhere:
                self._retarget(refusal.leader_address)
            if not header.status.is_transient:
                raise _REFUSED.get(header.status, Refused)(header.status, refusal)
            raise _Transient(f"register at {address}: {header.status.name}: {refusal.message}")
        registered = protocol.decode_registered(body)
        self._session = _Session(connection, registered.session, registered)
        return self._session

    def _register(self) -> None:
        self._retry(self._session_now)

    def _pause(self, backoff: list[float]) -> None:
        # Between half and one and a half times the backoff, so clients that failed together
        # do not retry together; then double it, up to BACKOFF_MAX_S.
        time.sleep(backoff[0] * (0.5 + random.random()))
        backoff[0] = min(backoff[0] * 2, BACKOFF_MAX_S)

    def _retry(self, attempt: Callable[[], T]) -> T:
        started = time.monotonic()
        backoff = [BACKOFF_FIRST_S]
        last = "nothing tried"
        while time.monotonic() - started < self.deadline_s:
            try:
                return attempt()
            except _Transient as error:
                last = str(error)
                self._pause(backoff)
        raise DeadlineExceeded(self.deadline_s, last)

    def _call(
        self,
        kind: int,
        body: bytes | bytearray = b"",
        flags: int = 0,
        frame: bytearray | None = None,
    ) -> tuple[protocol.ReplyHeader, memoryview]:
        """Send one request until it is answered for good or the deadline passes: the same
        request number on every try, every session and every node."""
        started = time.monotonic()
        backoff = [BACKOFF_FIRST_S]
        last = "nothing tried"
        number: int | None = None
        while time.monotonic() - started < self.deadline_s:
            try:
                held = self._session_now()
            except _Transient as error:
                last = str(error)
                self._pause(backoff)
                continue
            if number is None:
                number = self._next_number()
            try:
                header, reply = self._exchange(
                    held.connection, kind, self._header(held.session, number, flags), body, frame
                )
            except ConnectionLost as error:
                # The outcome is unknown: the same number again, on the same session after a
                # lost connection, on the next node after a node that kept the connection
                # but did not answer. The reply table answers it if it was applied.
                last = str(error)
                if not error.timed_out or len(self.addresses) == 1:
                    self._pause(backoff)
                else:
                    self._drop_session(end_on_node=False)
                    self._retarget(None)
                continue
            status = header.status
            if status is Status.OK:
                return header, reply
            if status in (Status.NOT_LEADER, Status.SESSION_UNKNOWN, Status.UNAVAILABLE):
                refusal = protocol.decode_refusal(reply)
                last = f"{status.name}: {refusal.message}"
                self._drop_session(end_on_node=status is not Status.SESSION_UNKNOWN)
                self._retarget(refusal.leader_address)
                if refusal.leader_address is None:
                    self._pause(backoff)
            elif status is Status.BUSY:
                last = f"BUSY: {protocol.decode_refusal(reply).message}"
                self._pause(backoff)
            else:
                raise self._refused(status, reply)
        raise DeadlineExceeded(self.deadline_s, last)

    def _read(self, kind: int, body: bytes) -> memoryview:
        flags = protocol.FLAG_LINEARIZABLE if self.linearizable else 0
        return self._call(kind, body, flags)[1]

    # ---- creates --------------------------------------------------------------------------

    def _create(
        self,
        kind: int,
        events: Sequence[object],
        encode: Callable[..., bytearray],
        what: str,
    ) -> Created:
        if isinstance(events, (str, bytes)) or not hasattr(events, "__len__"):
            raise InvalidRequest(f"{what}: a sequence is needed, not {type(events).__name__}")
        count = len(events)
        most = self.request_events_max
        if not 1 <= count <= most:
            raise InvalidRequest(
                f"{what}: {count} events in one call; a request carries 1..={most} (split "
                "larger batches between linked chains)"
            )
        # The records go straight into the frame, encoded once; each try seals the headers.
        frame = bytearray(protocol.BODY_OFFSET + count * RECORD_BYTES)
        encode(events, frame, protocol.BODY_OFFSET)
        header, reply = self._call(kind, frame=frame)
        first, last, failures = protocol.decode_create_reply(reply)
        return Created(
            header.commit_index, first, last, [Failure(index, code) for index, code in failures]
        )

    def create_accounts(self, accounts: Sequence[Account]) -> Created:
        """Create accounts (1..=8,189 in one call), applied in order as one batch.

        >>> client.create_accounts([Account(id=1, ledger=1, code=10)]).ok  # doctest: +SKIP
        True
        """
        return self._create(protocol.KIND_CREATE_ACCOUNTS, accounts, encode_accounts, "accounts")

    def create_transfers(self, transfers: Sequence[Transfer]) -> Created:
        """Create transfers: plain, pending, or posting or voiding a pending one.

        >>> created = client.create_transfers([Transfer(id=100, debit_account_id=1,
        ...     credit_account_id=2, amount=250, ledger=1, code=1)])  # doctest: +SKIP
        >>> [(f.index, f.result) for f in created.failures]  # doctest: +SKIP
        []
        """
        return self._create(
            protocol.KIND_CREATE_TRANSFERS, transfers, encode_transfers, "transfers"
        )

    def create_trades(self, trades: Sequence[Trade]) -> Created:
        """Create delivery-versus-payment trades (plain, pending, post or void)."""
        return self._create(protocol.KIND_CREATE_TRADES, trades, encode_trades, "trades")

    def create_settlements(self, events: Sequence[Transfer | Trade]) -> Created:
        """Transfers and trades in one batch, in order, so one linked chain can hold a trade
        and its fee transfers (they settle or fail as one)."""
        return self._create(
            protocol.KIND_CREATE_SETTLEMENTS, events, encode_settlements, "settlements"
        )

    def create_instructions(self, instructions: Sequence[Instruction]) -> Created:
        """Submit settlement instructions into their (open) cycles for net settlement; the
        failed ones by index (e.g. ``cycle_in_wrong_phase`` after the cut-off, ``exists`` for
        one taken before)."""
        return self._create(
            protocol.KIND_CREATE_INSTRUCTIONS, instructions, encode_instructions, "instructions"
        )

    def settlement_commands(self, commands: Sequence[SettlementCommand]) -> Created:
        """Apply settlement commands, in order: a cycle's lifecycle (operators only: anyone
        else's request is refused ``Forbidden`` whole), holds, releases and cancellations of
        instructions; the failed ones by index. A command sent again with its id answers
        ``exists`` and applies nothing.

        >>> created = client.settlement_commands(
        ...     [SettlementCommand.open(1, cycle=20261207)])  # doctest: +SKIP
        >>> created.ok  # doctest: +SKIP
        True
        """
        return self._create(
            protocol.KIND_SETTLEMENT_COMMANDS, commands, encode_commands, "settlement commands"
        )

    # ---- reads ----------------------------------------------------------------------------

    def lookup_accounts(self, ids: Sequence[int]) -> list[Account]:
        """The accounts found, in the order asked (ids not found, or outside a reader's
        scope, are left out)."""
        body = _ids("lookup_accounts", ids, limits.LOOKUP_IDS_MAX)
        return decode_accounts(self._read(protocol.KIND_LOOKUP_ACCOUNTS, body))

    def lookup_transfers(self, ids: Sequence[int]) -> list[Transfer]:
        body = _ids("lookup_transfers", ids, limits.LOOKUP_IDS_MAX)
        return decode_transfers(self._read(protocol.KIND_LOOKUP_TRANSFERS, body))

    def lookup_trades(self, ids: Sequence[int]) -> list[Trade]:
        body = _ids("lookup_trades", ids, limits.LOOKUP_IDS_MAX)
        return decode_trades(self._read(protocol.KIND_LOOKUP_TRADES, body))

    def lookup_instructions(self, ids: Sequence[int]) -> list[settlement.InstructionView]:
        """Settlement instructions with where each stands, in the order asked (ids not found,
        or outside a reader's scope, are left out)."""
        body = _ids("lookup_instructions", ids, limits.LOOKUP_IDS_MAX)
        return settlement.decode_instruction_views(
            self._read(protocol.KIND_LOOKUP_INSTRUCTIONS, body)
        )

    def settlement_cycle(
        self, cycle: int, after: int = 0, limit: int = limits.CYCLE_EXCEPTIONS_MAX
    ) -> settlement.CycleSummary:
        """A settlement cycle's summary: its phase, counts by status, its run record once run,
        and at most ``limit`` of its exceptions (instructions not settled whole) after
        instruction id ``after`` (0: from the first). A reader's counts and exceptions are
        its own instructions'. ``NotFound`` for a cycle never opened."""
        body = (
            _check_range("cycle", cycle, 0, (1 << 32) - 1).to_bytes(4, "little")
            + _check_range("limit", limit, 1, limits.CYCLE_EXCEPTIONS_MAX).to_bytes(4, "little")
            + _check_u128("after", after).to_bytes(16, "little")
        )
        return settlement.decode_cycle_summary(self._read(protocol.KIND_SETTLEMENT_CYCLE, body))

    def cycle_exceptions(
        self, cycle: int, page_size: int = limits.CYCLE_EXCEPTIONS_MAX
    ) -> list[settlement.InstructionView]:
        """Every instruction of ``cycle`` not settled whole (held, failed, partly settled,
        cancelled, or waiting for the run), in id order, ``page_size`` per request."""
        found: list[settlement.InstructionView] = []
        after = 0
        while True:
            page = self.settlement_cycle(cycle, after=after, limit=page_size)
            found.extend(page.exceptions)
            if not (page.more and page.exceptions):
                return found
            after = page.exceptions[-1].id

    def cycle_report(self, cycle: int) -> settlement.CycleReport:
        """A cycle's phase, counts and run record, and per participant account and ledger
        what its run paid (``payable``) and received (``receivable``), read back from the
        transfers the run posted: one into its ledger's clearing account is a payment by its
        debit account, one out of it a receipt by its credit account. Before the run, or
        for a run that moved nothing, there are no movements."""
        summary = self.settlement_cycle(cycle, limit=1)
        totals: dict[tuple[int, int], list[int]] = {}
        if summary.run is not None:
            ids = summary.run.transfer_ids
            for start in range(0, len(ids), limits.LOOKUP_IDS_MAX):
                for t in self.lookup_transfers(ids[start : start + limits.LOOKUP_IDS_MAX]):
                    paid = t.credit_account_id == settlement.clearing_account_id(t.ledger)
                    account = t.debit_account_id if paid else t.credit_account_id
                    entry = totals.setdefault((account, t.ledger), [0, 0])
                    entry[0 if paid else 1] += t.amount
        return settlement.CycleReport(
            cycle=summary.cycle,
            phase=summary.phase,
            counts=summary.counts,
            run=summary.run,
            movements=[
                settlement.Movement(account, ledger, paid, received)
                for (account, ledger), (paid, received) in sorted(totals.items())
            ],
            rescheduled_to=summary.rescheduled_to,
        )

    def statement(
        self,
        account_id: int,
        *,
        timestamp_min: int = 0,
        timestamp_max: int = 0,
        limit: int = limits.STATEMENT_ENTRIES_MAX,
        newest_first: bool = False,
        debits_only: bool = False,
        credits_only: bool = False,
        code: int = 0,
        user_data_128: int = 0,
        user_data_64: int = 0,
        user_data_32: int = 0,
    ) -> list[protocol.StatementEntry]:
        """An account's statement: the changes to its balances between the two timestamps
        (ns; ``timestamp_max`` 0 = no bound), at most ``limit``, oldest first unless
        ``newest_first``, each with the balances after it. The account filter keeps only the
        events debiting the account (``debits_only``) or crediting it (``credits_only``), and
        those whose ``code`` / ``user_data_*`` equal the given non-zero values (an expiry is
        judged as the pending event it released; a trade has no ``user_data_128`` or
        ``user_data_32``, so a non-zero one leaves trades out). Raises ``NotFound`` for an
        account that does not exist (or, for a reader, is outside its scope).

        A node walks a bounded part of the history per request and says where the next
        request starts; this follows it until it has ``limit`` entries or the range ends, so
        fewer than ``limit`` entries means the range holds no more."""
        if debits_only and credits_only:
            raise ValueError("debits_only and credits_only: leave both out for every side")
        flags = (1 if newest_first else 0) | (2 if debits_only else 0) | (4 if credits_only else 0)
        low = _check_range("timestamp_min", timestamp_min, 0, (1 << 64) - 1)
        high = _check_range("timestamp_max", timestamp_max, 0, (1 << 64) - 1)
        left = _check_range("limit", limit, 1, limits.STATEMENT_ENTRIES_MAX)
        account = _check_u128("account_id", account_id).to_bytes(16, "little")
        account_filter = (
            flags.to_bytes(4, "little")
            + _check_u128("user_data_128", user_data_128).to_bytes(16, "little")
            + _check_range("user_data_64", user_data_64, 0, (1 << 64) - 1).to_bytes(8, "little")
            + _check_range("user_data_32", user_data_32, 0, (1 << 32) - 1).to_bytes(4, "little")
            + _check_range("code", code, 0, (1 << 16) - 1).to_bytes(2, "little")
            + bytes(2)
        )
        entries: list[protocol.StatementEntry] = []
        while True:
            body = (
                account
                + low.to_bytes(8, "little")
                + high.to_bytes(8, "little")
                + left.to_bytes(4, "little")
                + account_filter
            )
            page, next = protocol.decode_statement(self._read(protocol.KIND_STATEMENT, body))
            entries.extend(page)
            left = limit - len(entries)
            if next is None or left <= 0:
                return entries
            if newest_first:
                high = next
            else:
                low = next

    def balances_as_of(self, account_id: int, timestamp: int) -> protocol.Balances:
        """An account's balances after every change up to ``timestamp`` (ns)."""
        body = (
            _check_u128("account_id", account_id).to_bytes(16, "little")
            + _check_range("timestamp", timestamp, 0, (1 << 64) - 1).to_bytes(8, "little")
            + bytes(8)
        )
        return protocol.decode_balances(self._read(protocol.KIND_BALANCES_AS_OF, body))

    # ---- queries by field ------------------------------------------------------------------

    def query_accounts(self, filter: QueryFilter) -> QueryPage[Account]:
        """One page of the accounts matching ``filter`` (by creation time), and where the
        next page starts: a page may hold fewer than ``filter.limit`` accounts, even none, and
        not be the last; ``query_all`` follows every page. A reader sees its scope only."""
        body = query.encode_query_request(filter)
        return query.decode_accounts_page(self._read(protocol.KIND_QUERY_ACCOUNTS, body))

    def query_transfers(self, filter: QueryFilter) -> QueryPage[Transfer]:
        """One page of the transfers matching ``filter`` (see ``query_accounts``)."""
        body = query.encode_query_request(filter)
        return query.decode_transfers_page(self._read(protocol.KIND_QUERY_TRANSFERS, body))

    def query_trades(self, filter: QueryFilter) -> QueryPage[Trade]:
        """One page of the trades matching ``filter``: a trade matches ``ledger`` on either
        leg (see ``query_accounts``)."""
        body = query.encode_query_request(filter)
        return query.decode_trades_page(self._read(protocol.KIND_QUERY_TRADES, body))

    def positions(self, filter: QueryFilter, at: int = 0) -> QueryPage[Position]:
        """One page of the accounts matching ``filter`` that existed at ``at`` (ns; 0: now),
        each with its balances after every change up to ``at`` (see ``query_accounts``)."""
        body = query.encode_query_request(filter, at)
        return query.decode_positions_page(self._read(protocol.KIND_QUERY_POSITIONS, body))

    def query_events(self, filter: QueryFilter) -> QueryPage[query.LedgerEvent]:
        """One page of every applied event (accounts created, transfers, trades, expiries)
        with a timestamp in ``filter``'s range, in timestamp order: the change feed's read.
        Events are selected by time only: a non-zero field is refused ``BadRequest``. A
        reader sees what its scope shows (see ``query_accounts``)."""
        body = query.encode_query_request(filter)
        return query.decode_events_page(self._read(protocol.KIND_QUERY_EVENTS, body))

    def query_all(
        self, page: Callable[[QueryFilter], QueryPage[T]], filter: QueryFilter
    ) -> Iterator[T]:
        """Every record ``filter`` matches, one request of ``page`` (``query_accounts``,
        ``query_transfers``, ``query_trades``, ``query_events``, or ``positions`` with its time
        bound) per page,
        each page's ``next`` setting the following one's bound; lazily, so a large result
        need not be held at once.

        >>> total = sum(t.amount for t in client.query_all(
        ...     client.query_transfers, QueryFilter(ledger=1, code=7)))  # doctest: +SKIP
        >>> then = list(client.query_all(
        ...     lambda f: client.positions(f, at=stamp), QueryFilter(ledger=1)))  # doctest: +SKIP
        """
        current = filter
        while True:
            got = page(current)
            yield from got.items
            if got.next is None:
                return
            current = query.next_filter(current, got.next)

    def heartbeat(self) -> None:
        """Keep the session from idling out (a session with no request for its idle timeout,
        60 s by default, is dropped; the client then registers again by itself)."""
        self._call(protocol.KIND_HEARTBEAT)

    def node_state(self, audit: bool = False) -> protocol.NodeState:
        """Operators: the state of the node the session is on (linearizable: the leader's);
        ``audit`` adds the state digest and per-ledger totals."""
        body = bytes([1 if audit else 0]) + bytes(7)
        return protocol.decode_node_state(self._read(protocol.KIND_NODE_STATE, body))

    def _admin(self, command: int, body: bytes = b"") -> int:
        return self._call(protocol.KIND_ADMIN, bytes([command]) + bytes(7) + body)[0].commit_index

    def snapshot(self) -> int:
        """Operators: have the node the session is on build a snapshot now; the commit index
        it knew when done."""
        return self._admin(protocol.ADMIN_SNAPSHOT)

    def initialize(self, members: dict[int, tuple[str, str]]) -> int:
        """Operators: found the cluster on a fresh node (one started without ``[bootstrap]``):
        ``members`` maps each founding voter's id to its (client address, peer address)."""
        if not 1 <= len(members) <= limits.MEMBERS_MAX:
            raise InvalidRequest(f"{len(members)} members; a cluster is founded with 1..=64")
        body = len(members).to_bytes(4, "little") + b"".join(
            _node_id(node_id).to_bytes(8, "little") + _member(addresses)
            for node_id, addresses in members.items()
        )
        return self._admin(protocol.ADMIN_INITIALIZE, body)

    def add_learner(self, node_id: int, client_address: str, peer_address: str) -> int:
        """Operators: add a started node as a learner; answered once it has caught up (then
        ``change_voters`` makes it a voter: what ``tally admin add-node`` does)."""
        body = _node_id(node_id).to_bytes(8, "little") + _member((client_address, peer_address))
        return self._admin(protocol.ADMIN_ADD_LEARNER, body)

    def change_voters(self, voters: Sequence[int]) -> int:
        """Operators: make exactly ``voters`` the voting members (through joint consensus)."""
        return self._admin(protocol.ADMIN_CHANGE_VOTERS, _node_ids(voters))

    def remove_nodes(self, node_ids: Sequence[int]) -> int:
        """Operators: take nodes out of the cluster (voters leave through joint consensus,
        then as learners)."""
        return self._admin(protocol.ADMIN_REMOVE_NODES, _node_ids(node_ids))

    # ---- the verifiable log ---------------------------------------------------------------

    def checkpoint(self, index: int = LATEST) -> protocol.Checkpoint:
        """Signed checkpoint ``index`` of the verifiable log (``LATEST``: the newest).
        ``NotFound`` on a node without a checkpoint key, or before one is signed."""
        index = _check_range("index", index, 0, LATEST)
        body = index.to_bytes(8, "little") + bytes(8)
        return protocol.decode_checkpoint(self._read(protocol.KIND_CHECKPOINT, body))

    def checkpoint_covering(self, commit_index: int) -> protocol.Checkpoint:
        """The oldest checkpoint covering every event committed up to ``commit_index`` (a
        create's ``Created.commit_index``); ``NotFound`` until one is signed (about a second
        after the events commit)."""
        commit_index = _check_range("commit_index", commit_index, 0, LATEST)
        body = LATEST.to_bytes(8, "little") + max(commit_index, 1).to_bytes(8, "little")
        return protocol.decode_checkpoint(self._read(protocol.KIND_CHECKPOINT, body))

    def prove(
        self, ids: Sequence[int], *, accounts: bool = False, checkpoint: int = LATEST
    ) -> protocol.Proofs:
        """Inclusion proofs of stored transfers and trades (or, with ``accounts``, accounts)
        against a checkpoint; ids not stored, not in scope or not yet in it are left out."""
        checkpoint = _check_range("checkpoint", checkpoint, 0, LATEST)
        ids_body = _ids("prove", ids, limits.PROVE_IDS_MAX)
        body = (
            checkpoint.to_bytes(8, "little")
            + (1 if accounts else 0).to_bytes(4, "little")
            + bytes(4)
            + ids_body
        )
        return protocol.decode_prove(self._read(protocol.KIND_PROVE, body))

    def consistency(self, old: int, new: int) -> list[bytes]:
        """RFC 6962's consistency proof from the log at ``old`` leaves to ``new``."""
        body = _check_range("old", old, 0, LATEST).to_bytes(8, "little") + _check_range(
            "new", new, 0, LATEST
        ).to_bytes(8, "little")
        return protocol.decode_consistency(self._read(protocol.KIND_CONSISTENCY, body))

    def cosign(self, checkpoint: int, line: str) -> int:
        """Hand the cluster a witness's cosignature ``line`` of checkpoint ``checkpoint``;
        ``Forbidden`` unless it is a valid cosignature by a witness the nodes list. The commit
        index of the entry that keeps it."""
        encoded = line.encode("utf-8")
        if len(encoded) > limits.NOTE_BYTES_MAX:
            raise InvalidRequest(f"a cosignature line of {len(encoded)} bytes is over 1024")
        body = (
            _check_range("checkpoint", checkpoint, 0, LATEST).to_bytes(8, "little")
            + len(encoded).to_bytes(2, "little")
            + encoded
        )
        flags = protocol.FLAG_LINEARIZABLE if self.linearizable else 0
        return self._call(protocol.KIND_COSIGN, body, flags)[0].commit_index

    def access_trail(
        self,
        account_id: int,
        *,
        checkpoint: int = LATEST,
        before: int = LATEST,
        limit: int = limits.ACCESS_TRAIL_READS_MAX,
    ) -> protocol.AccessTrail:
        """The recorded reads of an account, newest first, each with its inclusion proof
        against the access trail's checkpoint."""
        body = (
            _check_u128("account_id", account_id).to_bytes(16, "little")
            + _check_range("checkpoint", checkpoint, 0, LATEST).to_bytes(8, "little")
            + _check_range("before", before, 0, LATEST).to_bytes(8, "little")
            + _check_range("limit", limit, 1, limits.ACCESS_TRAIL_READS_MAX).to_bytes(4, "little")
            + bytes(4)
        )
        return protocol.decode_access_trail(self._read(protocol.KIND_ACCESS_TRAIL, body))
