"""The 128-byte event records (docs/records.md): accounts, transfers and trades, and net
settlement's instructions and settlement commands.

Each record type is a plain dataclass and a layout (``LAYOUTS``: field, offset, size), the
table ``tests/test_records_doc.py`` compares with docs/records.md, the page the Rust encoders
are checked against too. Encoding goes through one precompiled ``struct.Struct`` per layout
(u128 fields as two little-endian u64 halves) packed into one ``bytearray`` per batch, so a
batch of 8,189 transfers costs one allocation; ``struct`` itself refuses a value out of a
field's range, and the encoder then names the event and the field.

>>> record = encode_transfers([Transfer(id=7, debit_account_id=1, credit_account_id=2,
...                                     amount=100, ledger=1, code=10)])
>>> len(record), decode_transfers(record)[0].amount
(128, 100)
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from .errors import DecodeError, RecordError

RECORD_BYTES = 128
#: The ``flags`` field sits here in every record type (docs/records.md).
FLAGS_OFFSET = 118
#: Bit 15 of a record's flags marks a trade in a settlement batch (docs/records.md).
SETTLEMENT_TRADE = 1 << 15

U128_MAX = (1 << 128) - 1
_U64 = (1 << 64) - 1


class AccountFlags(enum.IntFlag):
    LINKED = 1 << 0
    DEBITS_MUST_NOT_EXCEED_CREDITS = 1 << 1
    CREDITS_MUST_NOT_EXCEED_DEBITS = 1 << 2
    HISTORY = 1 << 3
    CLOSED = 1 << 4


class TransferFlags(enum.IntFlag):
    LINKED = 1 << 0
    PENDING = 1 << 1
    POST_PENDING_TRANSFER = 1 << 2
    VOID_PENDING_TRANSFER = 1 << 3
    BALANCING_DEBIT = 1 << 4
    BALANCING_CREDIT = 1 << 5
    CLOSING_DEBIT = 1 << 6
    CLOSING_CREDIT = 1 << 7


class TradeFlags(enum.IntFlag):
    LINKED = 1 << 0
    PENDING = 1 << 1
    POST_PENDING_TRADE = 1 << 2
    VOID_PENDING_TRADE = 1 << 3


_RESOLVES_TRADE = TradeFlags.POST_PENDING_TRADE | TradeFlags.VOID_PENDING_TRADE


class InstructionFlags(enum.IntFlag):
    #: This instruction and the next in the batch are taken or refused together.
    LINKED = 1 << 0
    #: A part may settle when the whole cannot.
    PARTIAL = 1 << 1
    #: Submitted on hold: nothing settles until it is released.
    HOLD = 1 << 2


class CommandKind(enum.IntEnum):
    """What a settlement command does (``SettlementCommand.kind``). Open, cut off, run, close,
    cancel and reschedule and set max age are a cycle's lifecycle (operators only); hold,
    release and cancel act on one instruction."""

    OPEN = 1
    CUT_OFF = 2
    RUN = 3
    CLOSE = 4
    CANCEL_AND_RESCHEDULE = 5
    HOLD = 6
    RELEASE = 7
    CANCEL = 8
    SET_MAX_AGE = 9


class Party(enum.IntEnum):
    """Who asks to cancel an instruction (``SettlementCommand.party``)."""

    DELIVERER = 1
    RECEIVER = 2


@dataclass(slots=True)
class Account:
    """An account: one holder's balance of one asset (``ledger``).

    >>> Account(id=1, ledger=1, code=10, flags=AccountFlags.HISTORY).flags
    <AccountFlags.HISTORY: 8>
    """

    id: int
    ledger: int
    code: int
    flags: int = 0
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0
    user_data_128: int = 0
    user_data_64: int = 0
    limit: int = 0
    timestamp: int = 0

    @property
    def balance(self) -> int:
        """Credits posted less debits posted (the holder's position on a credit-normal
        account)."""
        return self.credits_posted - self.debits_posted


@dataclass(slots=True)
class Transfer:
    """Money moved between two accounts of one ledger; with ``PENDING`` a reservation, and
    with ``POST_PENDING_TRANSFER`` or ``VOID_PENDING_TRANSFER`` its resolution
    (``pending_id``)."""

    id: int
    debit_account_id: int
    credit_account_id: int
    amount: int
    ledger: int
    code: int
    flags: int = 0
    pending_id: int = 0
    user_data_128: int = 0
    user_data_64: int = 0
    user_data_32: int = 0
    timeout: int = 0
    timestamp: int = 0


@dataclass(slots=True)
class Trade:
    """Delivery versus payment: ``quantity`` of an instrument from the seller's instrument
    account to the buyer's, and ``cash_amount`` from the buyer's cash account to the
    seller's, both or neither. A post or void names its pending trade (``pending_id``) in
    place of the ledgers and ``user_data_64``."""

    id: int
    instrument_debit_account_id: int
    instrument_credit_account_id: int
    cash_debit_account_id: int
    cash_credit_account_id: int
    instrument_ledger: int = 0
    cash_ledger: int = 0
    quantity: int = 0
    cash_amount: int = 0
    code: int = 0
    flags: int = 0
    pending_id: int = 0
    user_data_64: int = 0
    timeout: int = 0
    timestamp: int = 0


@dataclass(slots=True)
class Instruction:
    """A settlement instruction for a net settlement cycle: ``quantity`` units from the
    deliverer's securities account to the receiver's, against ``cash`` from the receiver's
    cash account to the deliverer's (0: free of payment), settled in ``cycle``'s netting run.

    >>> Instruction(id=1, deliverer_securities=11, receiver_securities=21, receiver_cash=20,
    ...             deliverer_cash=10, quantity=5, cycle=20261207, cash=500).flags
    0
    """

    id: int
    #: The deliverer's account on the instrument's ledger (pays ``quantity``).
    deliverer_securities: int
    #: The receiver's account on the instrument's ledger.
    receiver_securities: int
    #: The receiver's account on the cash ledger (pays ``cash``).
    receiver_cash: int
    #: The deliverer's account on the cash ledger.
    deliverer_cash: int
    quantity: int
    #: The cycle it settles in (e.g. the intended settlement date, yyyymmdd).
    cycle: int
    cash: int = 0
    #: Higher settles first when a participant is short.
    priority: int = 0
    #: The participants' settlement reference, opaque to Tally.
    reference: int = 0
    flags: int = 0
    timestamp: int = 0


@dataclass(slots=True)
class SettlementCommand:
    """One step of a settlement cycle's or an instruction's lifecycle; fields its ``kind``
    does not use must be 0 (the engine answers ``command_field_must_be_zero``). An applied
    command is kept under its ``id``: sending it again answers ``exists`` and applies nothing.
    The class methods build each kind.

    >>> SettlementCommand.run(7, cycle=20261207).kind
    <CommandKind.RUN: 3>
    """

    id: int
    kind: int
    #: Hold, release, cancel: the instruction.
    instruction: int = 0
    #: Hold, release: units (0: all that is left, all held).
    quantity: int = 0
    #: Open, cut off, run, close, cancel and reschedule: the cycle.
    cycle: int = 0
    #: Cancel and reschedule: the later cycle its instructions move to.
    to_cycle: int = 0
    #: Set max age: runs an instruction may fail before it is cancelled (at least 1).
    max_age: int = 0
    #: Cancel: who asks (``Party``).
    party: int = 0
    #: None defined: any bit is refused.
    flags: int = 0
    timestamp: int = 0

    @classmethod
    def open(cls, id: int, cycle: int) -> SettlementCommand:
        """Open ``cycle`` for instructions (operators)."""
        return cls(id, CommandKind.OPEN, cycle=cycle)

    @classmethod
    def cut_off(cls, id: int, cycle: int) -> SettlementCommand:
        """Close ``cycle`` to new instructions (operators)."""
        return cls(id, CommandKind.CUT_OFF, cycle=cycle)

    @classmethod
    def run(cls, id: int, cycle: int) -> SettlementCommand:
        """Net and settle ``cycle`` (cut off), fails carried forward (operators)."""
        return cls(id, CommandKind.RUN, cycle=cycle)

    @classmethod
    def close(cls, id: int, cycle: int) -> SettlementCommand:
        """Close ``cycle`` after its run (operators)."""
        return cls(id, CommandKind.CLOSE, cycle=cycle)

    @classmethod
    def cancel_and_reschedule(cls, id: int, cycle: int, to_cycle: int) -> SettlementCommand:
        """Cancel ``cycle``'s run before it happens and move its instructions to the later
        ``to_cycle`` (operators)."""
        return cls(id, CommandKind.CANCEL_AND_RESCHEDULE, cycle=cycle, to_cycle=to_cycle)

    @classmethod
    def hold(cls, id: int, instruction: int, quantity: int = 0) -> SettlementCommand:
        """Hold ``quantity`` more units of ``instruction`` (0: all that is left)."""
        return cls(id, CommandKind.HOLD, instruction=instruction, quantity=quantity)

    @classmethod
    def release(cls, id: int, instruction: int, quantity: int = 0) -> SettlementCommand:
        """Release ``quantity`` held units of ``instruction`` (0: all held)."""
        return cls(id, CommandKind.RELEASE, instruction=instruction, quantity=quantity)

    @classmethod
    def cancel(cls, id: int, instruction: int, party: int) -> SettlementCommand:
        """One party's request to cancel ``instruction``; the other party's cancels it."""
        return cls(id, CommandKind.CANCEL, instruction=instruction, party=party)

    @classmethod
    def set_max_age(cls, id: int, max_age: int) -> SettlementCommand:
        """Set how many runs an instruction may fail before it is cancelled (operators)."""
        return cls(id, CommandKind.SET_MAX_AGE, max_age=max_age)


Record = Account | Transfer | Trade

#: Per record type, its fields as (name, offset, size): docs/records.md's tables. A trade's
#: ``pending_id`` shares bytes 80..96 with its ledgers and ``user_data_64``.
LAYOUTS: dict[str, tuple[tuple[str, int, int], ...]] = {
    "Account": (
        ("id", 0, 16),
        ("debits_pending", 16, 16),
        ("debits_posted", 32, 16),
        ("credits_pending", 48, 16),
        ("credits_posted", 64, 16),
        ("user_data_128", 80, 16),
        ("user_data_64", 96, 8),
        ("limit", 104, 8),
        ("ledger", 112, 4),
        ("code", 116, 2),
        ("flags", 118, 2),
        ("timestamp", 120, 8),
    ),
    "Transfer": (
        ("id", 0, 16),
        ("debit_account_id", 16, 16),
        ("credit_account_id", 32, 16),
        ("amount", 48, 16),
        ("pending_id", 64, 16),
        ("user_data_128", 80, 16),
        ("user_data_64", 96, 8),
        ("user_data_32", 104, 4),
        ("timeout", 108, 4),
        ("ledger", 112, 4),
        ("code", 116, 2),
        ("flags", 118, 2),
        ("timestamp", 120, 8),
    ),
    "Trade": (
        ("id", 0, 16),
        ("instrument_debit_account_id", 16, 16),
        ("instrument_credit_account_id", 32, 16),
        ("cash_debit_account_id", 48, 16),
        ("cash_credit_account_id", 64, 16),
        ("instrument_ledger", 80, 4),
        ("cash_ledger", 84, 4),
        ("user_data_64", 88, 8),
        ("pending_id", 80, 16),
        ("quantity", 96, 8),
        ("cash_amount", 104, 8),
        ("timeout", 112, 4),
        ("code", 116, 2),
        ("flags", 118, 2),
        ("timestamp", 120, 8),
    ),
    "Instruction": (
        ("id", 0, 16),
        ("deliverer_securities", 16, 16),
        ("receiver_securities", 32, 16),
        ("receiver_cash", 48, 16),
        ("deliverer_cash", 64, 16),
        ("reference", 80, 16),
        ("quantity", 96, 8),
        ("cash", 104, 8),
        ("cycle", 112, 4),
        ("priority", 116, 2),
        ("flags", 118, 2),
        ("timestamp", 120, 8),
    ),
    # Bytes 52..116 are reserved (zero).
    "Command": (
        ("id", 0, 16),
        ("instruction", 16, 16),
        ("quantity", 32, 8),
        ("cycle", 40, 4),
        ("to_cycle", 44, 4),
        ("max_age", 48, 2),
        ("party", 50, 2),
        ("kind", 116, 2),
        ("flags", 118, 2),
        ("timestamp", 120, 8),
    ),
}

#: A settlement command's reserved bytes (zero), as (offset, size).
COMMAND_RESERVED = (52, 64)

#: Per record type, its flags (bit = the flag's value); a settlement command has none.
FLAGS: dict[str, type[enum.IntFlag]] = {
    "Account": AccountFlags,
    "Transfer": TransferFlags,
    "Trade": TradeFlags,
    "Instruction": InstructionFlags,
}

# u128 fields are two u64 halves, low first (little-endian throughout).
_ACCOUNT = struct.Struct("<12QQQIHHQ")
_TRANSFER = struct.Struct("<12QQIIIHHQ")
_TRADE = struct.Struct("<10QIIQQQIHHQ")
_TRADE_RESOLVE = struct.Struct("<12QQQIHHQ")
_INSTRUCTION = struct.Struct("<12QQQIHHQ")
_COMMAND = struct.Struct("<4QQIIHH64sHHQ")
assert _ACCOUNT.size == _TRANSFER.size == _TRADE.size == _TRADE_RESOLVE.size == RECORD_BYTES
assert _INSTRUCTION.size == _COMMAND.size == RECORD_BYTES
_NO_RESERVED = bytes(COMMAND_RESERVED[1])


def _check_field(kind: str, index: int, record: object, name: str, size: int) -> None:
    value = getattr(record, name, None)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordError(
            f"{kind} {index}: {name} must be an int, not {type(value).__name__} ({value!r})"
        )
    if not 0 <= value < 1 << (8 * size):
        raise RecordError(f"{kind} {index}: {name} = {value} is outside 0..=2**{8 * size}-1")


def _explain(kind: str, index: int, record: object, error: Exception) -> RecordError:
    """Why record ``index`` did not pack: the first field that is wrong."""
    if kind == "Settlement":
        if not isinstance(record, (Transfer, Trade)):
            name = type(record).__name__
            return RecordError(f"event {index}: {name} is neither a Transfer nor a Trade")
        kind = type(record).__name__
    expected = _CLASSES[kind]
    if not isinstance(record, expected):
        name = expected.__name__
        article = "an" if name[0] in "AEIOU" else "a"
        return RecordError(f"{kind} {index}: {type(record).__name__} is not {article} {name}")
    for name, _, size in LAYOUTS[kind]:
        try:
            _check_field(kind, index, record, name, size)
        except RecordError as found:
            return found
    flags = getattr(record, "flags", 0)
    if flags & ~_KNOWN_FLAGS[kind]:
        return RecordError(f"{kind} {index}: unknown flag bits {flags & ~_KNOWN_FLAGS[kind]:#06x}")
    return RecordError(f"{kind} {index}: {error}")


def _account_into(buffer: bytearray, at: int, a: Account) -> None:
    i, dp, dq, cp, cq, u = (
        a.id, a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted,
        a.user_data_128,
    )  # fmt: skip
    pack_into = _ACCOUNT.pack_into
    pack_into(
        buffer, at,
        i & _U64, i >> 64, dp & _U64, dp >> 64, dq & _U64, dq >> 64,
        cp & _U64, cp >> 64, cq & _U64, cq >> 64, u & _U64, u >> 64,
        a.user_data_64, a.limit, a.ledger, a.code, a.flags, a.timestamp,
    )  # fmt: skip
    if a.flags > 0x1F:
        raise struct.error("unknown flag bits")


def _transfer_into(buffer: bytearray, at: int, t: Transfer) -> None:
    i, d, c, a, p, u = (
        t.id, t.debit_account_id, t.credit_account_id, t.amount, t.pending_id, t.user_data_128,
    )  # fmt: skip
    pack_into = _TRANSFER.pack_into
    pack_into(
        buffer, at,
        i & _U64, i >> 64, d & _U64, d >> 64, c & _U64, c >> 64,
        a & _U64, a >> 64, p & _U64, p >> 64, u & _U64, u >> 64,
        t.user_data_64, t.user_data_32, t.timeout, t.ledger, t.code, t.flags, t.timestamp,
    )  # fmt: skip
    if t.flags > 0xFF:
        raise struct.error("unknown flag bits")


def _trade_into(buffer: bytearray, at: int, t: Trade, marker: int = 0) -> None:
    """A trade's record; ``marker`` is or-ed into its flags (a settlement batch's bit)."""
    if t.flags > 0x0F:
        raise struct.error("unknown flag bits")
    i, idr, icr, cdr, ccr = (
        t.id,
        t.instrument_debit_account_id,
        t.instrument_credit_account_id,
        t.cash_debit_account_id,
        t.cash_credit_account_id,
    )
    head = (
        i & _U64, i >> 64, idr & _U64, idr >> 64, icr & _U64, icr >> 64,
        cdr & _U64, cdr >> 64, ccr & _U64, ccr >> 64,
    )  # fmt: skip
    tail = (t.quantity, t.cash_amount, t.timeout, t.code, t.flags | marker, t.timestamp)
    if t.flags & _RESOLVES_TRADE:
        p = t.pending_id
        _TRADE_RESOLVE.pack_into(buffer, at, *head, p & _U64, p >> 64, *tail)
    else:
        _TRADE.pack_into(
            buffer, at, *head, t.instrument_ledger, t.cash_ledger, t.user_data_64, *tail
        )


def _instruction_into(buffer: bytearray, at: int, n: Instruction) -> None:
    i, ds, rs, rc, dc, r = (
        n.id, n.deliverer_securities, n.receiver_securities, n.receiver_cash, n.deliverer_cash,
        n.reference,
    )  # fmt: skip
    _INSTRUCTION.pack_into(
        buffer, at,
        i & _U64, i >> 64, ds & _U64, ds >> 64, rs & _U64, rs >> 64,
        rc & _U64, rc >> 64, dc & _U64, dc >> 64, r & _U64, r >> 64,
        n.quantity, n.cash, n.cycle, n.priority, n.flags, n.timestamp,
    )  # fmt: skip
    if n.flags > 0x07:
        raise struct.error("unknown flag bits")


def _command_into(buffer: bytearray, at: int, c: SettlementCommand) -> None:
    i, n = c.id, c.instruction
    _COMMAND.pack_into(
        buffer, at,
        i & _U64, i >> 64, n & _U64, n >> 64,
        c.quantity, c.cycle, c.to_cycle, c.max_age, c.party, _NO_RESERVED,
        c.kind, c.flags, c.timestamp,
    )  # fmt: skip
    if c.flags:
        raise struct.error("unknown flag bits")


_KNOWN_FLAGS = {"Account": 0x1F, "Transfer": 0xFF, "Trade": 0x0F, "Instruction": 0x07, "Command": 0}
_CLASSES: dict[str, type] = {
    "Account": Account,
    "Transfer": Transfer,
    "Trade": Trade,
    "Instruction": Instruction,
    "Command": SettlementCommand,
}


def _encode(
    kind: str,
    events: Sequence[Record | Instruction | SettlementCommand],
    into: Callable[[bytearray, int, Any], None],
    out: bytearray | None,
    offset: int,
) -> bytearray:
    """``events`` packed by ``into``, one after another, into ``out`` at ``offset`` (a new
    bytearray if none); a record that does not pack is named, with its first wrong field."""
    buffer = out if out is not None else bytearray(len(events) * RECORD_BYTES)
    at = offset
    index = 0
    try:
        for index, event in enumerate(events):
            into(buffer, at, event)
            at += RECORD_BYTES
    except (struct.error, TypeError, AttributeError) as error:
        raise _explain(kind, index, events[index], error) from None
    return buffer


def encode_accounts(
    accounts: Sequence[Account], out: bytearray | None = None, offset: int = 0
) -> bytearray:
    """Accounts as records, into ``out`` at ``offset`` (a new bytearray if none)."""
    return _encode("Account", accounts, _account_into, out, offset)


def encode_transfers(
    transfers: Sequence[Transfer], out: bytearray | None = None, offset: int = 0
) -> bytearray:
    """Transfers as records, into ``out`` at ``offset`` (a new bytearray if none)."""
    return _encode("Transfer", transfers, _transfer_into, out, offset)


def encode_trades(
    trades: Sequence[Trade], out: bytearray | None = None, offset: int = 0
) -> bytearray:
    """Trades as records: a new trade writes its ledgers and ``user_data_64`` into bytes
    80..96, a post or void its ``pending_id`` (the fields the flags do not select are not
    written, as the Rust encoder does)."""
    return _encode("Trade", trades, _trade_into, out, offset)


def _settlement_into(buffer: bytearray, at: int, event: Transfer | Trade) -> None:
    if isinstance(event, Trade):
        _trade_into(buffer, at, event, SETTLEMENT_TRADE)
    elif isinstance(event, Transfer):
        _transfer_into(buffer, at, event)
    else:
        raise TypeError("neither a Transfer nor a Trade")


def encode_settlements(
    events: Sequence[Transfer | Trade], out: bytearray | None = None, offset: int = 0
) -> bytearray:
    """Transfers and trades in one batch, in order: a trade's record carries bit 15 of its
    flags (``SETTLEMENT_TRADE``), so a linked chain can hold a trade and its fees."""
    return _encode("Settlement", events, _settlement_into, out, offset)


def encode_instructions(
    instructions: Sequence[Instruction], out: bytearray | None = None, offset: int = 0
) -> bytearray:
    """Settlement instructions as records, into ``out`` at ``offset`` (a new bytearray if
    none)."""
    return _encode("Instruction", instructions, _instruction_into, out, offset)


def encode_commands(
    commands: Sequence[SettlementCommand], out: bytearray | None = None, offset: int = 0
) -> bytearray:
    """Settlement commands as records (bytes 52..116 zero), into ``out`` at ``offset`` (a new
    bytearray if none)."""
    return _encode("Command", commands, _command_into, out, offset)


def _records(
    body: bytes | bytearray | memoryview, unpacker: struct.Struct
) -> Iterable[tuple[int, ...]]:
    if len(body) % RECORD_BYTES:
        raise DecodeError(f"a body of {len(body)} bytes is not whole 128-byte records")
    return unpacker.iter_unpack(body)


def decode_accounts(body: bytes | bytearray | memoryview) -> list[Account]:
    """Account records (a lookup reply's body)."""
    out = []
    for v in _records(body, _ACCOUNT):
        if v[16] & ~0x1F:
            raise DecodeError(f"an account record has unknown flag bits {v[16]:#06x}")
        out.append(
            Account(
                id=v[0] | v[1] << 64,
                debits_pending=v[2] | v[3] << 64,
                debits_posted=v[4] | v[5] << 64,
                credits_pending=v[6] | v[7] << 64,
                credits_posted=v[8] | v[9] << 64,
                user_data_128=v[10] | v[11] << 64,
                user_data_64=v[12],
                limit=v[13],
                ledger=v[14],
                code=v[15],
                flags=AccountFlags(v[16]),
                timestamp=v[17],
            )
        )
    return out


def decode_transfers(body: bytes | bytearray | memoryview) -> list[Transfer]:
    """Transfer records (a lookup reply's body)."""
    out = []
    for v in _records(body, _TRANSFER):
        if v[17] & ~0xFF:
            raise DecodeError(f"a transfer record has unknown flag bits {v[17]:#06x}")
        out.append(_transfer(v))
    return out


def _transfer(v: tuple[int, ...]) -> Transfer:
    return Transfer(
        id=v[0] | v[1] << 64,
        debit_account_id=v[2] | v[3] << 64,
        credit_account_id=v[4] | v[5] << 64,
        amount=v[6] | v[7] << 64,
        pending_id=v[8] | v[9] << 64,
        user_data_128=v[10] | v[11] << 64,
        user_data_64=v[12],
        user_data_32=v[13],
        timeout=v[14],
        ledger=v[15],
        code=v[16],
        flags=TransferFlags(v[17]),
        timestamp=v[18],
    )


def decode_trades(body: bytes | bytearray | memoryview) -> list[Trade]:
    """Trade records (a lookup reply's body): a new trade with its ledgers and user data, a
    post or void with its pending id."""
    out = []
    for v in _records(body, _TRADE):
        if v[17] & ~0x0F:
            raise DecodeError(f"a trade record has unknown flag bits {v[17]:#06x}")
        out.append(_trade(v))
    return out


def _trade(v: tuple[int, ...]) -> Trade:
    flags = TradeFlags(v[17])
    trade = Trade(
        id=v[0] | v[1] << 64,
        instrument_debit_account_id=v[2] | v[3] << 64,
        instrument_credit_account_id=v[4] | v[5] << 64,
        cash_debit_account_id=v[6] | v[7] << 64,
        cash_credit_account_id=v[8] | v[9] << 64,
        quantity=v[13],
        cash_amount=v[14],
        timeout=v[15],
        code=v[16],
        flags=flags,
        timestamp=v[18],
    )
    if flags & _RESOLVES_TRADE:
        # Bytes 80..96 are the pending trade's id (docs/records.md).
        trade.pending_id = v[10] | v[11] << 32 | v[12] << 64
    else:
        trade.instrument_ledger, trade.cash_ledger, trade.user_data_64 = v[10], v[11], v[12]
    return trade


def decode_instructions(body: bytes | bytearray | memoryview) -> list[Instruction]:
    """Settlement instruction records."""
    out = []
    for v in _records(body, _INSTRUCTION):
        out.append(_instruction(v))
    return out


def _instruction(v: tuple[int, ...]) -> Instruction:
    if v[16] & ~0x07:
        raise DecodeError(f"an instruction record has unknown flag bits {v[16]:#06x}")
    return Instruction(
        id=v[0] | v[1] << 64,
        deliverer_securities=v[2] | v[3] << 64,
        receiver_securities=v[4] | v[5] << 64,
        receiver_cash=v[6] | v[7] << 64,
        deliverer_cash=v[8] | v[9] << 64,
        reference=v[10] | v[11] << 64,
        quantity=v[12],
        cash=v[13],
        cycle=v[14],
        priority=v[15],
        flags=InstructionFlags(v[16]),
        timestamp=v[17],
    )


def decode_commands(body: bytes | bytearray | memoryview) -> list[SettlementCommand]:
    """Settlement command records; a reserved byte or flag bit set is refused. A known kind
    becomes a ``CommandKind``, an unknown one stays a number."""
    out = []
    _records(body, _COMMAND)  # whole records
    for v in _COMMAND.iter_unpack(body):
        i0, i1, n0, n1, quantity, cycle, to_cycle, max_age, party, reserved, kind, flags, ts = v
        if any(reserved) or flags:
            raise DecodeError("a settlement command record has reserved bytes or flags set")
        out.append(
            SettlementCommand(
                id=i0 | i1 << 64,
                kind=CommandKind(kind) if kind in _COMMAND_KINDS else kind,
                instruction=n0 | n1 << 64,
                quantity=quantity,
                cycle=cycle,
                to_cycle=to_cycle,
                max_age=max_age,
                party=party,
                flags=0,
                timestamp=ts,
            )
        )
    return out


_COMMAND_KINDS = frozenset(kind.value for kind in CommandKind)


def field_names(kind: str) -> list[str]:
    """The dataclass fields of record type ``kind`` (``"Account"``, ``"Transfer"``,
    ``"Trade"``, ``"Instruction"``, ``"Command"``)."""
    return [f.name for f in fields(_CLASSES[kind])]
