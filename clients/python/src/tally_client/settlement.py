"""Net settlement's reads (docs/protocol.md, kinds 106 and 108; docs/records.md, "Run record"):
an instruction with where it stands (192 bytes: its record, then its state), a cycle's
summary (phase, counts by status, the run record once run, a page of exceptions), and the
report the client builds from a run's posted transfers. The codes and names are
engine/src/settlement_wire.rs's, the ones the CLI prints.

A run posts one transfer per participant and asset through its ledger's clearing account
(``clearing_account_id``); the transfer posted at timestamp ``t`` has id
``run_transfer_id(t)``, so a run's postings are found from its run record alone.

>>> hex(clearing_account_id(1)), hex(run_transfer_id(5))
('0xffffffffffffffff0000000000000001', '0xffffffffffffffff8000000000000005')
>>> InstructionStatus.PARTLY_SETTLED.label
'partly settled'
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

from .errors import DecodeError
from .records import RECORD_BYTES, Instruction, Party, decode_instructions

#: The engine's own ids begin here (the upper half all ones): clearing accounts and a run's
#: transfers; no client may create an event or account there.
RESERVED_ID_FIRST = ((1 << 64) - 1) << 64
#: The code of every clearing account and of every transfer a run posts.
SETTLEMENT_CODE = 0xFFFF

#: Bytes of an instruction's state after its record, and of the whole view.
INSTRUCTION_STATE_BYTES = 64
INSTRUCTION_VIEW_BYTES = RECORD_BYTES + INSTRUCTION_STATE_BYTES
#: Bytes of a run record, and of a cycle summary before its exceptions.
RUN_RECORD_BYTES = 256
CYCLE_SUMMARY_HEAD_BYTES = 80 + RUN_RECORD_BYTES


def clearing_account_id(ledger: int) -> int:
    """The clearing account of ``ledger``: a run's payers pay into it and its receivers are
    paid from it; it nets to zero after every run."""
    return RESERVED_ID_FIRST | ledger


def run_transfer_id(timestamp: int) -> int:
    """The id of the transfer a run posted at ``timestamp``."""
    return RESERVED_ID_FIRST | 1 << 63 | timestamp


class InstructionStatus(enum.IntEnum):
    """Where an instruction stands (its code in the wire forms); ``label`` is the name
    docs/settlement.md and the CLI use."""

    ELIGIBLE = 0
    HELD = 1
    RESCHEDULED = 2
    SETTLED = 3
    PARTLY_SETTLED = 4
    FAILED = 5
    CANCELLED_AGED_OUT = 6
    CANCELLED_BILATERAL = 7

    @property
    def label(self) -> str:
        return STATUS_NAMES[self.value]


#: Statuses by code, as docs/settlement.md names them (settlement_wire.rs ``STATUS_NAMES``).
STATUS_NAMES = (
    "eligible",
    "held",
    "rescheduled",
    "settled",
    "partly settled",
    "failed",
    "cancelled (aged out)",
    "cancelled (bilateral)",
)


class Phase(enum.IntEnum):
    """Where a cycle is in its lifecycle; ``label`` is docs/settlement.md's name."""

    OPEN = 0
    CUT_OFF = 1
    SETTLED = 2
    PARTLY_SETTLED = 3
    CANCELLED = 4
    CLOSED = 5

    @property
    def label(self) -> str:
        return ("open", "cut off", "settled", "partly settled", "cancelled", "closed")[self.value]


class ShortLeg(enum.IntEnum):
    """Which payer was short when an instruction failed or settled in part."""

    #: The deliverer lacked the securities.
    SECURITIES = 0
    #: The receiver lacked the cash.
    CASH = 1


@dataclass(frozen=True)
class Certificate:
    """A run's netting certificate: SHA-256 over its inputs, its net movements and its
    exceptions (docs/settlement.md, "The netting certificate")."""

    inputs: bytes
    movements: bytes
    exceptions: bytes


@dataclass(frozen=True)
class RunRecord:
    """What a cycle's run did: the run command, where its postings are, its counts and its
    netting certificate."""

    cycle: int
    #: The run command's id and timestamp.
    command: int
    timestamp: int
    #: The timestamp of the run's first posted transfer (0: none); the others follow one
    #: apart.
    first_posting: int
    postings: int
    settled: int
    partly_settled: int
    failed: int
    aged_out: int
    #: Units plus cash settled in the run.
    settled_value: int
    #: Instructions failed or settled in part, by the leg that was short.
    short_securities: int
    short_cash: int
    certificate: Certificate

    @property
    def transfer_ids(self) -> list[int]:
        """The ids of the transfers the run posted, in posting order (payers first)."""
        return [run_transfer_id(self.first_posting + k) for k in range(self.postings)]


_RUN = struct.Struct("<2Q2QQQQQQQII8s32s32s32sQQ48s")
assert _RUN.size == RUN_RECORD_BYTES


def decode_run_record(body: bytes | bytearray | memoryview) -> RunRecord:
    """A 256-byte run record; reserved bytes (88..96, 208..256) set are refused."""
    if len(body) != RUN_RECORD_BYTES:
        raise DecodeError(f"a run record of {len(body)} bytes ({RUN_RECORD_BYTES} expected)")
    (c0, c1, v0, v1, timestamp, first, settled, partly, failed, aged, cycle, postings,
     reserved, inputs, movements, exceptions, short_securities, short_cash,
     tail) = _RUN.unpack(body)  # fmt: skip
    if any(reserved) or any(tail):
        raise DecodeError(f"cycle {cycle}: reserved bytes of the run record are not zero")
    return RunRecord(
        cycle=cycle,
        command=c0 | c1 << 64,
        timestamp=timestamp,
        first_posting=first,
        postings=postings,
        settled=settled,
        partly_settled=partly,
        failed=failed,
        aged_out=aged,
        settled_value=v0 | v1 << 64,
        short_securities=short_securities,
        short_cash=short_cash,
        certificate=Certificate(inputs, movements, exceptions),
    )


@dataclass
class InstructionView:
    """An instruction as a read shows it: what was submitted and where it stands. A failed or
    partly settled one names the account that was short and its leg; a rescheduled one the
    cycle it came from; ``cancel_requested_by`` the party that asked to cancel, if one did."""

    instruction: Instruction
    status: InstructionStatus
    #: The cycle it is in now (its own, a rescheduled one, or the last it was run in).
    cycle: int
    #: Whether it failed or part-settled in a run, so every later run takes it.
    carried: bool
    #: Runs it took part in without settling whole.
    age: int
    settled_quantity: int
    settled_cash: int
    #: Units held.
    held: int
    cancel_requested_by: Party | None = None
    short_account: int = 0
    short_leg: ShortLeg | None = None
    rescheduled_from: int = 0

    @property
    def id(self) -> int:
        return self.instruction.id

    @property
    def status_name(self) -> str:
        """The status as docs/settlement.md and the CLI name it, e.g. ``"failed"``."""
        return self.status.label


_STATE = struct.Struct("<BBBBHHIIQQQ8sQQ")
assert _STATE.size == INSTRUCTION_STATE_BYTES


def _view(chunk: memoryview) -> InstructionView:
    instruction = decode_instructions(chunk[:RECORD_BYTES])[0]
    (status, leg, party, carried, age, reserved, cycle, rescheduled_from, settled_quantity,
     settled_cash, held, reserved_tail, short_lo, short_hi) = _STATE.unpack(
        chunk[RECORD_BYTES:]
    )  # fmt: skip
    short_account = short_lo | short_hi << 64

    def bad(what: str) -> DecodeError:
        return DecodeError(f"instruction {instruction.id:#x}: {what}")

    if carried > 1 or reserved or any(reserved_tail):
        raise bad("reserved bytes are not zero")
    if leg > 1:
        raise bad("unknown short leg")
    short = status in (InstructionStatus.PARTLY_SETTLED, InstructionStatus.FAILED)
    if not short and (leg != 0 or short_account != 0):
        raise bad("a short leg without a fail")
    if status != InstructionStatus.RESCHEDULED and rescheduled_from != 0:
        raise bad("a reschedule origin without a reschedule")
    if status >= len(STATUS_NAMES):
        raise bad("unknown status")
    if party > 2:
        raise bad("unknown cancelling party")
    return InstructionView(
        instruction=instruction,
        status=InstructionStatus(status),
        cycle=cycle,
        carried=carried == 1,
        age=age,
        settled_quantity=settled_quantity,
        settled_cash=settled_cash,
        held=held,
        cancel_requested_by=Party(party) if party else None,
        short_account=short_account,
        short_leg=ShortLeg(leg) if short else None,
        rescheduled_from=rescheduled_from,
    )


def decode_instruction_views(body: bytes | bytearray | memoryview) -> list[InstructionView]:
    """Instructions with their states, 192 bytes each (a lookup-instructions reply)."""
    if len(body) % INSTRUCTION_VIEW_BYTES:
        raise DecodeError(f"an instruction lookup reply of {len(body)} bytes")
    view = memoryview(body)
    return [
        _view(view[at : at + INSTRUCTION_VIEW_BYTES])
        for at in range(0, len(view), INSTRUCTION_VIEW_BYTES)
    ]


@dataclass
class CycleSummary:
    """A cycle as a read shows it: its phase (``rescheduled_to``: where a cancelled cycle's
    instructions went), how many of its instructions stand in each status, its run record
    once run, and a page of its exceptions (instructions not settled whole, in id order;
    ``more``: others follow the last one here)."""

    cycle: int
    phase: Phase
    counts: dict[InstructionStatus, int]
    run: RunRecord | None = None
    exceptions: list[InstructionView] = field(default_factory=list)
    more: bool = False
    rescheduled_to: int = 0


_SUMMARY_HEAD = struct.Struct("<BBBBIII8Q")
assert _SUMMARY_HEAD.size == 80


def decode_cycle_summary(body: bytes | bytearray | memoryview) -> CycleSummary:
    """A settlement-cycle reply; refused by name when it is short, long or damaged."""
    if len(body) < CYCLE_SUMMARY_HEAD_BYTES:
        raise DecodeError(f"a cycle summary of {len(body)} bytes is short")
    view = memoryview(body)
    phase, has_run, more, reserved, rescheduled_to, cycle, count, *counts = (
        _SUMMARY_HEAD.unpack_from(view)
    )
    rest = view[CYCLE_SUMMARY_HEAD_BYTES:]
    if len(rest) != count * INSTRUCTION_VIEW_BYTES or has_run > 1 or more > 1 or reserved:
        raise DecodeError(f"cycle {cycle}: a damaged summary")
    record = view[80:CYCLE_SUMMARY_HEAD_BYTES]
    if has_run:
        run: RunRecord | None = decode_run_record(record)
    elif any(record):
        raise DecodeError(f"cycle {cycle}: a run record without a run")
    else:
        run = None
    if phase > Phase.CLOSED:
        raise DecodeError(f"settlement cycle {cycle}: unknown phase {phase}")
    if phase == Phase.CANCELLED and rescheduled_to <= cycle:
        raise DecodeError(
            f"settlement cycle {cycle}: rescheduled to {rescheduled_to}, not a later cycle"
        )
    return CycleSummary(
        cycle=cycle,
        phase=Phase(phase),
        counts={status: counts[status] for status in InstructionStatus},
        run=run,
        exceptions=decode_instruction_views(rest),
        more=more == 1,
        rescheduled_to=rescheduled_to,
    )


@dataclass(frozen=True)
class Movement:
    """What one participant's account (of ``ledger``) paid and received in a run: one of the
    two is 0 (a run posts one net transfer per account)."""

    account: int
    ledger: int
    payable: int = 0
    receivable: int = 0

    @property
    def net(self) -> int:
        """Received less paid."""
        return self.receivable - self.payable


@dataclass
class CycleReport:
    """A cycle's summary without its exceptions (``Client.cycle_exceptions`` lists them),
    and per participant account and ledger what the run paid and received, read back from
    the transfers it posted (a reader sees its own accounts' only), by account id and
    ledger."""

    cycle: int
    phase: Phase
    counts: dict[InstructionStatus, int]
    run: RunRecord | None
    movements: list[Movement]
    rescheduled_to: int = 0
