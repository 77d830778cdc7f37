"""The gateway protocol's bytes (docs/protocol.md, "Gateway protocol"): frames, the 64-byte
request and reply headers, statuses, refusals and each operation's bodies. No sockets here:
``connection`` moves these bytes, ``client`` decides what to send.

Every message is one frame: a 24-byte header (magic ``TLYF``, version 1, kind, reserved,
payload length, frame request id, CRC32C of header bytes 0..20 and the payload), then the
payload: the gateway header, then the body. All integers are little-endian.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

from . import limits
from .crc32c import update as crc_update
from .errors import DecodeError
from .records import RECORD_BYTES, Trade, Transfer, decode_trades, decode_transfers

FRAME_MAGIC = b"TLYF"
FRAME_VERSION = 1
FRAME_HEADER_BYTES = 24
#: The gateway protocol version this client speaks (2: named trade ledgers; request numbers
#: belong to the client).
PROTOCOL_VERSION = 2

FLAG_LINEARIZABLE = 1
FLAG_IN_ORDER = 2

KIND_REGISTER = 64
KIND_HEARTBEAT = 66
KIND_CREATE_ACCOUNTS = 68
KIND_CREATE_TRANSFERS = 70
KIND_CREATE_TRADES = 72
KIND_LOOKUP_ACCOUNTS = 74
KIND_LOOKUP_TRANSFERS = 76
KIND_LOOKUP_TRADES = 78
KIND_STATEMENT = 80
KIND_BALANCES_AS_OF = 82
KIND_NODE_STATE = 84
KIND_ADMIN = 86
KIND_END_SESSION = 88
KIND_CREATE_SETTLEMENTS = 90
KIND_CHECKPOINT = 92
KIND_PROVE = 94
KIND_CONSISTENCY = 96
KIND_COSIGN = 98
KIND_ACCESS_TRAIL = 100
KIND_CREATE_INSTRUCTIONS = 102
KIND_SETTLEMENT_COMMANDS = 104
KIND_LOOKUP_INSTRUCTIONS = 106
KIND_SETTLEMENT_CYCLE = 108
KIND_QUERY_ACCOUNTS = 110
KIND_QUERY_TRANSFERS = 112
KIND_QUERY_TRADES = 114
KIND_QUERY_POSITIONS = 116
KIND_QUERY_EVENTS = 118

#: Admin commands (operators; the body's first byte).
ADMIN_INITIALIZE = 1
ADMIN_ADD_LEARNER = 2
ADMIN_CHANGE_VOTERS = 3
ADMIN_SNAPSHOT = 4
ADMIN_REMOVE_NODES = 5

#: Frame header: magic, version, kind, reserved u16, payload length u32, request id u64, CRC.
_FRAME = struct.Struct("<4sBBHIQI")
#: Request header: version u16, flags u16, body bytes u32, cluster id and client id (u128 as
#: two u64 halves), session u64, request number u64, reserved u64.
_REQUEST = struct.Struct("<HHI2Q2QQQQ")
#: Reply header: version u16, status u8, reserved u8, body bytes u32, cluster id, client id,
#: session, request number, commit index.
_REPLY = struct.Struct("<HBBI2Q2QQQQ")
#: Bytes before a request's body: frame header and gateway header.
BODY_OFFSET = FRAME_HEADER_BYTES + limits.HEADER_BYTES
_U64 = (1 << 64) - 1
assert _FRAME.size == FRAME_HEADER_BYTES
assert _REQUEST.size == _REPLY.size == limits.HEADER_BYTES


class Status(enum.IntEnum):
    """A reply's status (docs/protocol.md, the status table)."""

    OK = 0
    NOT_LEADER = 1
    BUSY = 2
    BAD_REQUEST = 3
    UNAUTHENTICATED = 4
    FORBIDDEN = 5
    SESSION_UNKNOWN = 6
    WRONG_CLUSTER = 7
    UNAVAILABLE = 8
    BATCH_REFUSED = 9
    NOT_FOUND = 10
    INTERNAL = 11
    OUT_OF_SCOPE = 12
    REQUEST_NUMBER_REUSED = 13

    @property
    def is_transient(self) -> bool:
        """Whether the request may succeed if sent again later or elsewhere, unchanged (the
        Rust client's ``Status::is_transient``, the one place that decides)."""
        return self in _TRANSIENT


_TRANSIENT = frozenset({Status.NOT_LEADER, Status.BUSY, Status.SESSION_UNKNOWN, Status.UNAVAILABLE})


class Role(enum.IntEnum):
    SUBMITTER = 1
    READER = 2
    OPERATOR = 3


@dataclass(frozen=True)
class RequestHeader:
    """A request's gateway header but its size: ``FLAG_*`` bits, the cluster's id, the
    client's id, the session (0 to register) and the request number."""

    flags: int
    cluster_id: int
    client_id: int
    session: int
    request_number: int


def request_frame(
    kind: int, frame_id: int, header: RequestHeader, body: bytes | bytearray = b""
) -> bytearray:
    """A whole request frame around ``body``."""
    frame = bytearray(BODY_OFFSET + len(body))
    frame[BODY_OFFSET:] = body
    seal_request(frame, kind, frame_id, header)
    return frame


def seal_request(frame: bytearray, kind: int, frame_id: int, header: RequestHeader) -> None:
    """Fill in the frame and gateway headers of ``frame``, whose body is already at
    ``BODY_OFFSET`` (a create batch is encoded there once; a retry seals it again)."""
    payload_bytes = len(frame) - FRAME_HEADER_BYTES
    cluster_id, client_id = header.cluster_id, header.client_id
    _REQUEST.pack_into(
        frame, FRAME_HEADER_BYTES,
        PROTOCOL_VERSION, header.flags, payload_bytes - limits.HEADER_BYTES,
        cluster_id & _U64, cluster_id >> 64, client_id & _U64, client_id >> 64,
        header.session, header.request_number, 0,
    )  # fmt: skip
    _FRAME.pack_into(frame, 0, FRAME_MAGIC, FRAME_VERSION, kind, 0, payload_bytes, frame_id, 0)
    view = memoryview(frame)
    crc = crc_update(crc_update(0xFFFFFFFF, view[:20]), view[FRAME_HEADER_BYTES:])
    struct.pack_into("<I", frame, 20, crc ^ 0xFFFFFFFF)


@dataclass
class FrameHeader:
    kind: int
    payload_bytes: int
    frame_id: int
    crc: int


def decode_frame_header(header: bytes) -> FrameHeader:
    """Check a frame header (magic, version, reserved bytes, length under the reply limit);
    any failure ends the connection (the stream is no longer at a frame boundary)."""
    magic, version, kind, reserved, length, frame_id, crc = _FRAME.unpack(header)
    if magic != FRAME_MAGIC:
        raise DecodeError(f"not a Tally frame (bad magic {magic!r})")
    if version != FRAME_VERSION:
        raise DecodeError(f"unknown frame version {version}")
    if reserved:
        raise DecodeError("reserved frame header bytes are not zero")
    if length > limits.REPLY_PAYLOAD_BYTES_MAX:
        raise DecodeError(f"a reply of {length} bytes is over the limit")
    return FrameHeader(kind, length, frame_id, crc)


def check_frame_crc(header: bytes, payload: bytes | bytearray | memoryview, crc: int) -> None:
    if crc_update(crc_update(0xFFFFFFFF, header[:20]), payload) ^ 0xFFFFFFFF != crc:
        raise DecodeError("frame checksum mismatch: corrupted in transit")


@dataclass
class ReplyHeader:
    status: Status
    cluster_id: int
    client_id: int
    session: int
    request_number: int
    commit_index: int


def decode_reply(payload: bytes | bytearray | memoryview) -> tuple[ReplyHeader, memoryview]:
    """Check and split a reply payload: its header and body."""
    if len(payload) < limits.HEADER_BYTES:
        raise DecodeError(f"a reply of {len(payload)} bytes has no whole header")
    version, status, reserved, body_bytes, c0, c1, k0, k1, session, number, commit = (
        _REPLY.unpack_from(payload)
    )
    if version != PROTOCOL_VERSION:
        raise DecodeError(
            f"the node speaks protocol version {version}, this client {PROTOCOL_VERSION}"
        )
    try:
        status = Status(status)
    except ValueError:
        raise DecodeError(f"unknown status {status}") from None
    if reserved:
        raise DecodeError("reserved bytes of the reply header are not zero")
    body = memoryview(payload)[limits.HEADER_BYTES :]
    if len(body) != body_bytes:
        raise DecodeError(f"the reply declares {body_bytes} body bytes and carries {len(body)}")
    header = ReplyHeader(status, c0 | c1 << 64, k0 | k1 << 64, session, number, commit)
    return header, body


class Reader:
    """A bounded reader over a reply body: every read checks the bytes left."""

    def __init__(self, body: bytes | bytearray | memoryview, what: str) -> None:
        self.body = memoryview(body)
        self.at = 0
        self.what = what

    def take(self, count: int) -> memoryview:
        if count > len(self.body) - self.at:
            raise DecodeError(f"{self.what}: {count} bytes needed, {len(self.body) - self.at} left")
        out = self.body[self.at : self.at + count]
        self.at += count
        return out

    def unpack(self, fmt: struct.Struct) -> tuple[int, ...]:
        return fmt.unpack(self.take(fmt.size))

    def u8(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "little")

    def u64(self) -> int:
        return int.from_bytes(self.take(8), "little")

    def u128(self) -> int:
        return int.from_bytes(self.take(16), "little")

    def zeros(self, count: int) -> None:
        if any(self.take(count)):
            raise DecodeError(f"reserved bytes of the {self.what} are not zero")

    def count(self, what: str, most: int, each_bytes: int) -> int:
        """A u32 count, at most ``most`` and at most the items of ``each_bytes`` left."""
        count = self.u32()
        if count > most or count * each_bytes > len(self.body) - self.at:
            raise DecodeError(f"{self.what}: {count} {what} do not fit")
        return count

    def string(self, limit: int) -> str:
        length = int.from_bytes(self.take(2), "little")
        if length > limit:
            raise DecodeError(f"{self.what}: a string of {length} bytes is over {limit}")
        try:
            return bytes(self.take(length)).decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError(f"{self.what}: not UTF-8") from None

    def end(self) -> None:
        if self.at != len(self.body):
            raise DecodeError(f"{self.what}: {len(self.body) - self.at} bytes left over")


@dataclass
class Refusal:
    """Why a request was refused: the leader if known, the offending event (``OutOfScope``),
    a message for humans."""

    leader_id: int | None = None
    leader_address: str | None = None
    event: int | None = None
    message: str = ""


def decode_refusal(body: bytes | bytearray | memoryview) -> Refusal:
    reader = Reader(body, "refusal")
    known, event_known = reader.u8(), reader.u8()
    if known > 1 or event_known > 1:
        raise DecodeError("refusal: flags other than 0 and 1")
    reader.zeros(2)
    event = reader.u32()
    leader = reader.u64()
    address = reader.string(limits.ADDRESS_BYTES_MAX)
    message = reader.string(limits.MESSAGE_BYTES_MAX)
    reader.end()
    return Refusal(
        leader_id=leader if known else None,
        leader_address=address if known and address else None,
        event=event if event_known else None,
        message=message,
    )


@dataclass
class Registered:
    """A register reply: the session and the limits the node applies to it."""

    session: int
    session_idle_ms: int
    role: Role
    request_events_max: int
    in_flight_max: int


def decode_registered(body: bytes | bytearray | memoryview) -> Registered:
    reader = Reader(body, "register reply")
    session, idle, role = reader.u64(), reader.u32(), reader.u8()
    reader.zeros(3)
    events, in_flight = reader.u32(), reader.u32()
    reader.end()
    try:
        return Registered(session, idle, Role(role), events, in_flight)
    except ValueError:
        raise DecodeError(f"unknown role {role}") from None


_CREATE_REPLY = struct.Struct("<QQII")
_FAILURE = struct.Struct("<IHH")


def decode_create_reply(
    body: bytes | bytearray | memoryview,
) -> tuple[int, int, list[tuple[int, int]]]:
    """A create reply: first and last timestamps, and the failed events as (index, code)."""
    if len(body) < _CREATE_REPLY.size:
        raise DecodeError(f"a create reply of {len(body)} bytes is too short")
    first, last, count, reserved = _CREATE_REPLY.unpack_from(body)
    rest = memoryview(body)[_CREATE_REPLY.size :]
    if reserved or count > limits.REQUEST_EVENTS_MAX or len(rest) != count * _FAILURE.size:
        raise DecodeError(f"a create reply of {count} failures in {len(rest)} bytes")
    failures = []
    for index, code, pad in _FAILURE.iter_unpack(rest):
        if pad:
            raise DecodeError("reserved bytes of a create reply's failure are not zero")
        failures.append((index, code))
    return first, last, failures


def encode_ids(ids: list[int]) -> bytes:
    """A lookup body: ids, u128 each."""
    return b"".join(i.to_bytes(16, "little") for i in ids)


_BALANCES = struct.Struct("<8Q")


@dataclass(frozen=True)
class Balances:
    """An account's four balances (after an event, or as of a time)."""

    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int


def _balances(v: tuple[int, ...]) -> Balances:
    return Balances(v[0] | v[1] << 64, v[2] | v[3] << 64, v[4] | v[5] << 64, v[6] | v[7] << 64)


def decode_balances(body: bytes | bytearray | memoryview) -> Balances:
    if len(body) != _BALANCES.size:
        raise DecodeError(f"a balances reply of {len(body)} bytes (64 expected)")
    return _balances(_BALANCES.unpack(body))


class StatementEvent(enum.IntEnum):
    TRANSFER = 1
    TRADE = 2
    TRANSFER_EXPIRED = 3
    TRADE_EXPIRED = 4


@dataclass
class StatementEntry:
    """One change to an account's balances: the event (a transfer, a trade, or the expiry of
    the pending one ``pending_id`` names) and the balances after it."""

    timestamp: int
    kind: StatementEvent
    balances_after: Balances
    transfer: Transfer | None = None
    trade: Trade | None = None
    pending_id: int = 0


_STATEMENT_ENTRY = struct.Struct("<QB7x8Q")
assert _STATEMENT_ENTRY.size + RECORD_BYTES == limits.STATEMENT_ENTRY_BYTES


def decode_statement(
    body: bytes | bytearray | memoryview,
) -> tuple[list[StatementEntry], int | None]:
    """A statement reply: its entries, and where the next page starts (``timestamp_min``, or
    ``timestamp_max`` newest first; None: the range holds no more). Its header is a query
    reply's: count u32, flags u32 (bit 0: more), next u64 (0 without more)."""
    reader = Reader(body, "statement reply")
    count = reader.count("entries", limits.STATEMENT_ENTRIES_MAX, limits.STATEMENT_ENTRY_BYTES)
    flags, next = reader.u32(), reader.u64()
    if flags & ~1:
        raise DecodeError(f"statement reply: unknown flag bits {flags:#x}")
    if not flags & 1 and next:
        raise DecodeError(f"statement reply: a next page at {next} without the more flag")
    entries = []
    for _ in range(count):
        chunk = reader.take(limits.STATEMENT_ENTRY_BYTES)
        if any(chunk[9:16]):
            raise DecodeError("reserved bytes of a statement entry are not zero")
        timestamp, kind, *balances = _STATEMENT_ENTRY.unpack_from(chunk)
        record = chunk[_STATEMENT_ENTRY.size :]
        try:
            kind = StatementEvent(kind)
        except ValueError:
            raise DecodeError(f"unknown statement event kind {kind}") from None
        entry = StatementEntry(timestamp, kind, _balances(tuple(balances)))
        entry.transfer, entry.trade, entry.pending_id = decode_event_record(kind, record)
        entries.append(entry)
    reader.end()
    return entries, next if flags & 1 else None


def decode_event_record(
    kind: StatementEvent, record: memoryview
) -> tuple[Transfer | None, Trade | None, int]:
    """A stored event's record as statements and events pages carry it: the transfer's, the
    trade's, or for an expiry the pending event's id (u128) and zeros. Returns the transfer,
    the trade and the pending id (0 when not an expiry)."""
    if kind is StatementEvent.TRANSFER:
        return decode_transfers(record)[0], None, 0
    if kind is StatementEvent.TRADE:
        return None, decode_trades(record)[0], 0
    if any(record[16:]):
        raise DecodeError("an expiry's record has non-zero bytes past its id")
    return None, None, int.from_bytes(record[:16], "little")


#: ``checkpoint``'s index for the newest checkpoint.
LATEST = _U64


@dataclass
class Checkpoint:
    """A signed checkpoint of the verifiable log: its index among the cluster's, the tree
    size, and the signed note (C2SP checkpoint text, signature and cosignature lines)."""

    index: int
    size: int
    note: str


def decode_checkpoint(body: bytes | bytearray | memoryview) -> Checkpoint:
    reader = Reader(body, "checkpoint reply")
    index, size = reader.u64(), reader.u64()
    note = reader.string(limits.NOTE_BYTES_MAX)
    reader.end()
    return Checkpoint(index, size, note)


def _hashes(reader: Reader) -> list[bytes]:
    count = reader.count("hashes", limits.PROOF_HASHES_MAX, 32)
    reader.zeros(4)
    return [bytes(reader.take(32)) for _ in range(count)]


@dataclass
class Proof:
    """An event's or account's leaf in the verifiable log and its audit path."""

    id: int
    leaf_index: int
    leaf: bytes
    audit_path: list[bytes]


@dataclass
class Proofs:
    """Inclusion proofs against checkpoint ``checkpoint`` of tree size ``size``."""

    checkpoint: int
    size: int
    proofs: list[Proof] = field(default_factory=list)


def decode_prove(body: bytes | bytearray | memoryview) -> Proofs:
    reader = Reader(body, "prove reply")
    checkpoint, size = reader.u64(), reader.u64()
    count = reader.count("proofs", limits.PROVE_IDS_MAX, 16 + 8 + limits.LEAF_BYTES + 8)
    reader.zeros(4)
    proofs = []
    for _ in range(count):
        id_, index = reader.u128(), reader.u64()
        leaf = bytes(reader.take(limits.LEAF_BYTES))
        proofs.append(Proof(id_, index, leaf, _hashes(reader)))
    reader.end()
    return Proofs(checkpoint, size, proofs)


def decode_consistency(body: bytes | bytearray | memoryview) -> list[bytes]:
    reader = Reader(body, "consistency reply")
    hashes = _hashes(reader)
    reader.end()
    return hashes


@dataclass
class AccessRead:
    """One read of an account in the access trail: its leaf and inclusion proof."""

    leaf_index: int
    leaf: bytes
    audit_path: list[bytes]


@dataclass
class AccessTrail:
    """The reads of an account, newest first, against access checkpoint ``checkpoint``."""

    checkpoint: int
    size: int
    note: str
    reads: list[AccessRead]


def decode_access_trail(body: bytes | bytearray | memoryview) -> AccessTrail:
    reader = Reader(body, "access trail reply")
    checkpoint, size = reader.u64(), reader.u64()
    note = reader.string(limits.NOTE_BYTES_MAX)
    count = reader.count("reads", limits.ACCESS_TRAIL_READS_MAX, 24)
    reader.zeros(4)
    reads = []
    for _ in range(count):
        index, length = reader.u64(), reader.u32()
        reader.zeros(4)
        if length > limits.ACCESS_LEAF_BYTES_MAX:
            raise DecodeError(f"an access leaf of {length} bytes is over the limit")
        leaf = bytes(reader.take(length))
        reads.append(AccessRead(index, leaf, _hashes(reader)))
    reader.end()
    return AccessTrail(checkpoint, size, note, reads)


@dataclass
class Position:
    """A log position (term, leader, index)."""

    term: int
    leader: int
    index: int


@dataclass
class LedgerTotals:
    ledger: int
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int


@dataclass
class NodeState:
    """A node's own state (operators): role, term, leader, log positions, counts, members,
    and with ``audit`` its state digest and per-ledger totals."""

    node_id: int
    role: str
    term: int
    leader: int | None
    last_applied: Position | None
    snapshot: Position | None
    purged: Position | None
    digest: bytes
    accounts: int
    transfers: int
    trades: int
    voters: list[int]
    learners: list[int]
    ledger_totals: list[LedgerTotals]
    last_log_index: int | None
    committed_index: int | None
    addresses: dict[int, str]
    replication: dict[int, int | None]
    log_key: str
    log_size: int
    checkpoints: int


def _present(reader: Reader) -> bool:
    present = reader.u8()
    if present > 1:
        raise DecodeError(f"{reader.what}: a presence flag of {present}")
    reader.zeros(7)
    return present == 1


def _index(reader: Reader) -> int | None:
    present = _present(reader)
    value = reader.u64()
    return value if present else None


def _position(reader: Reader) -> Position | None:
    present = _present(reader)
    position = Position(reader.u64(), reader.u64(), reader.u64())
    return position if present else None


def _ids(reader: Reader) -> list[int]:
    return [reader.u64() for _ in range(reader.count("ids", limits.MEMBERS_MAX * 4, 8))]


def decode_node_state(body: bytes | bytearray | memoryview) -> NodeState:
    reader = Reader(body, "node state")
    node_id = reader.u64()
    role = reader.string(32)
    term = reader.u64()
    leader = _index(reader)
    last_applied, snapshot, purged = _position(reader), _position(reader), _position(reader)
    digest = bytes(reader.take(32))
    accounts, transfers, trades = reader.u64(), reader.u64(), reader.u64()
    voters, learners = _ids(reader), _ids(reader)
    totals = []
    for _ in range(reader.count("ledger totals", 1 << 32, 68)):
        ledger = reader.u32()
        values = [reader.u128() for _ in range(4)]
        totals.append(LedgerTotals(ledger, *values))
    last_log_index, committed_index = _index(reader), _index(reader)
    addresses = {}
    for _ in range(reader.count("addresses", limits.MEMBERS_MAX, 10)):
        member = reader.u64()
        addresses[member] = reader.string(limits.ADDRESS_BYTES_MAX)
    replication = {}
    for _ in range(reader.count("replication", limits.MEMBERS_MAX, 24)):
        member = reader.u64()
        replication[member] = _index(reader)
    log_key = reader.string(512)
    log_size, checkpoints = reader.u64(), reader.u64()
    reader.end()
    return NodeState(
        node_id, role, term, leader, last_applied, snapshot, purged, digest, accounts,
        transfers, trades, voters, learners, totals, last_log_index, committed_index,
        addresses, replication, log_key, log_size, checkpoints,
    )  # fmt: skip
