"""Net settlement through the client against a real node: a cycle opened, instructions
submitted (one whose payer is short of cash, one on hold, one the engine refuses), cut off,
run and closed; the summary's counts and run record, the report's movements (read back from
the run's transfers) against what this test computes from the instructions that settled, the
exceptions with the short account and leg; commands retried with their ids answer ``exists``;
lifecycle commands are an operator's; bad input is refused before anything is sent; and the
decoders refuse damaged replies.

The tests share one node, and a run takes every earlier run's fails that are still open:
only ``test_a_cycle_from_open_to_close`` runs a cycle, and it cancels its own fail at the end.
"""

from __future__ import annotations

import struct
from collections import defaultdict

import pytest
from local_nodes import free_address

from tally_client import (
    AccountFlags,
    Client,
    CommandKind,
    Created,
    DecodeError,
    Forbidden,
    Instruction,
    InstructionFlags,
    InstructionStatus,
    InvalidRequest,
    Movement,
    NotFound,
    Party,
    Phase,
    SettlementCommand,
    ShortLeg,
    Transfer,
)
from tally_client.frames import instruction_rows, instructions_frame, movement_rows, movements_frame
from tally_client.records import Account, decode_commands, encode_commands
from tally_client.settlement import (
    CYCLE_SUMMARY_HEAD_BYTES,
    INSTRUCTION_VIEW_BYTES,
    clearing_account_id,
    decode_cycle_summary,
    decode_instruction_views,
    run_transfer_id,
)

U128_MAX = (1 << 128) - 1
#: Ledgers of their own: the other tests' ledgers 1 and 2 get no clearing accounts.
CASH, SHARES = 61, 62


def cycle_of(base: int) -> int:
    """A cycle number no other test of this run opens, nor the nine after it."""
    return 20_000_000 + base // 100_000


def market(client: Client, base: int, funding: dict[str, tuple[int, int]]) -> dict[str, int]:
    """Issuers of cash and shares, and per participant (name -> (cash, shares) to fund it
    with) a cash and a shares account bound by ``debits_must_not_exceed_credits``. The
    accounts' ids by name (``A cash``, ``A shares``, ...)."""
    ids = {"cash issuer": base + 1, "shares issuer": base + 2}
    accounts = [
        Account(id=base + 1, ledger=CASH, code=1),
        Account(id=base + 2, ledger=SHARES, code=1),
    ]
    transfers = []
    for n, (name, amounts) in enumerate(funding.items()):
        for k, (asset, ledger) in enumerate((("cash", CASH), ("shares", SHARES))):
            account = base + 10 * (n + 1) + k + 1
            ids[f"{name} {asset}"] = account
            accounts.append(Account(id=account, ledger=ledger, code=1,
                                    flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS))  # fmt: skip
            if amounts[k]:
                transfers.append(Transfer(id=base + 500 + len(transfers), amount=amounts[k],
                                          debit_account_id=base + 1 + k, credit_account_id=account,
                                          ledger=ledger, code=1))  # fmt: skip
    assert client.create_accounts(accounts).ok
    if transfers:
        assert client.create_transfers(transfers).ok
    return ids


def trade(ids: dict[str, int], id: int, seller: str, buyer: str, quantity: int, cash: int,
          cycle: int, **fields: int) -> Instruction:  # fmt: skip
    """``seller`` delivers ``quantity`` shares to ``buyer`` against ``cash``."""
    return Instruction(
        id=id,
        deliverer_securities=ids[f"{seller} shares"],
        receiver_securities=ids[f"{buyer} shares"],
        receiver_cash=ids[f"{buyer} cash"],
        deliverer_cash=ids[f"{seller} cash"],
        quantity=quantity,
        cycle=cycle,
        cash=cash,
        **fields,
    )


def results(created: Created) -> list[tuple[int, str]]:
    return [(f.index, f.result) for f in created.failures]


def apply(client: Client, command: SettlementCommand) -> None:
    """Send ``command`` and expect it applied."""
    assert results(client.settlement_commands([command])) == [], command


def test_a_cycle_from_open_to_close(node, base):
    """Open, submit, cut off, run, close: the run settles what can settle, fails the
    instruction whose buyer is short of cash (naming its cash account and the cash leg),
    leaves the held one held; the report's movements are the net of the settled
    instructions, per account, and the accounts' balances moved by exactly that."""
    cycle = cycle_of(base)
    with node.client() as client:
        ids = market(client, base, {"A": (10_000, 100), "B": (10_000, 100), "C": (50, 0)})
        commands = {kind: base + 900 + kind for kind in CommandKind}
        apply(client, SettlementCommand.open(commands[1], cycle))

        instructions = [
            trade(ids, base + 101, "A", "B", 30, 3_000, cycle, reference=7),
            trade(ids, base + 102, "B", "A", 10, 1_200, cycle, priority=2),
            # C has 50 of the 500 it pays: short of cash.
            trade(ids, base + 103, "A", "C", 5, 500, cycle),
            trade(ids, base + 104, "B", "A", 1, 100, cycle, flags=InstructionFlags.HOLD),
            # Sent as is: the engine answers for the quantity.
            trade(ids, base + 105, "A", "B", 0, 100, cycle),
        ]
        submitted = client.create_instructions(instructions)
        assert results(submitted) == [(4, "quantity_must_not_be_zero")]
        assert results(client.create_instructions(instructions[:1])) == [(0, "exists")]

        # Before the run every instruction is an exception (not settled), one per page here.
        before = client.settlement_cycle(cycle, limit=1)
        assert before.phase is Phase.OPEN and before.run is None and before.more
        assert [v.id for v in before.exceptions] == [base + 101]
        assert before.counts[InstructionStatus.ELIGIBLE] == 3
        assert before.counts[InstructionStatus.HELD] == 1
        assert [v.id for v in client.cycle_exceptions(cycle, page_size=1)] == [
            base + 101, base + 102, base + 103, base + 104
        ]  # fmt: skip
        looked = client.lookup_instructions([base + 104, base + 105, base + 101])
        assert [v.id for v in looked] == [base + 104, base + 101]
        assert looked[0].status is InstructionStatus.HELD and looked[0].held == 1
        stored = trade(ids, base + 101, "A", "B", 30, 3_000, cycle, reference=7)
        stored.timestamp = submitted.timestamp_first
        assert looked[1].instruction == stored

        # Lifecycle: cut off (a late instruction is refused), run, close.
        apply(client, SettlementCommand.cut_off(commands[2], cycle))
        late = client.create_instructions([trade(ids, base + 106, "A", "B", 1, 1, cycle)])
        assert results(late) == [(0, "cycle_in_wrong_phase")]
        ran = client.settlement_commands([SettlementCommand.run(commands[3], cycle)])
        assert results(ran) == []
        # Retried with its id, the run answers exists and applies nothing.
        again = client.settlement_commands([SettlementCommand.run(commands[3], cycle)])
        assert results(again) == [(0, "exists")]

        report = client.cycle_report(cycle)
        assert report.phase is Phase.PARTLY_SETTLED and report.cycle == cycle
        assert report.counts[InstructionStatus.SETTLED] == 2
        assert report.counts[InstructionStatus.FAILED] == 1
        assert report.counts[InstructionStatus.HELD] == 1
        assert sum(report.counts.values()) == 4
        run = report.run
        assert run is not None
        assert (run.cycle, run.command, run.timestamp) == (cycle, commands[3], ran.timestamp_first)
        assert (run.settled, run.partly_settled, run.failed, run.aged_out) == (2, 0, 1, 0)
        assert (run.short_securities, run.short_cash) == (0, 1)
        assert run.settled_value == 30 + 3_000 + 10 + 1_200

        # What the settled instructions net to, per account: received less paid.
        net: dict[tuple[int, int], int] = defaultdict(int)
        for i in instructions[:2]:
            net[(i.deliverer_securities, SHARES)] -= i.quantity
            net[(i.receiver_securities, SHARES)] += i.quantity
            net[(i.receiver_cash, CASH)] -= i.cash
            net[(i.deliverer_cash, CASH)] += i.cash
        expected = sorted(
            (Movement(account, ledger, max(-n, 0), max(n, 0))
             for (account, ledger), n in net.items() if n),
            key=lambda m: (m.account, m.ledger),
        )  # fmt: skip
        assert report.movements == sorted(report.movements, key=lambda m: (m.account, m.ledger))
        assert report.movements == [
            Movement(ids["A cash"], CASH, 0, 1_800), Movement(ids["A shares"], SHARES, 20, 0),
            Movement(ids["B cash"], CASH, 1_800, 0), Movement(ids["B shares"], SHARES, 0, 20),
        ] == expected  # fmt: skip
        assert run.postings == len(report.movements)
        # The run's transfers, payers first, each through its ledger's clearing account.
        posted = client.lookup_transfers(run.transfer_ids)
        assert [t.id for t in posted] == [run_transfer_id(run.first_posting + k) for k in range(4)]
        assert all(t.user_data_128 == commands[3] and t.user_data_32 == cycle for t in posted)
        assert [t.credit_account_id == clearing_account_id(t.ledger) for t in posted] == [
            True, True, False, False
        ]  # fmt: skip
        balances = {a.id: a.balance for a in client.lookup_accounts(list(ids.values()))}
        for m in report.movements:
            funded = {"A cash": 10_000, "A shares": 100, "B cash": 10_000, "B shares": 100}
            name = next(name for name, account in ids.items() if account == m.account)
            assert balances[m.account] == funded[name] + m.net, name
        assert balances[ids["C cash"]] == 50 and balances[ids["C shares"]] == 0

        # The exceptions: the fail, naming C's cash account and the cash leg, and the held one.
        exceptions = client.cycle_exceptions(cycle)
        assert [v.id for v in exceptions] == [base + 103, base + 104]
        failed, held = exceptions
        assert failed.status is InstructionStatus.FAILED and failed.status_name == "failed"
        assert (failed.short_account, failed.short_leg) == (ids["C cash"], ShortLeg.CASH)
        assert (failed.settled_quantity, failed.settled_cash, failed.age) == (0, 0, 1)
        assert failed.carried and failed.cycle == cycle
        assert held.status_name == "held" and held.short_leg is None and held.held == 1
        rows = instruction_rows(exceptions)
        assert rows[0]["short_leg"] == "cash" and rows[1]["short_account"] == ""
        assert movement_rows(report.movements)[0] == {
            "account": ids["A cash"], "ledger": CASH, "payable": 0, "receivable": 1_800
        }  # fmt: skip
        assert list(movements_frame(report.movements)["payable"]) == [0, 20, 1_800, 0]
        assert list(instructions_frame(exceptions)["status"]) == ["failed", "held"]

        apply(client, SettlementCommand.close(commands[4], cycle))
        assert client.cycle_report(cycle).phase is Phase.CLOSED

        # Both parties cancel the fail (so no later run on this node takes it), and the held.
        cancels = [
            SettlementCommand.cancel(commands[8], base + 103, Party.DELIVERER),
            SettlementCommand.cancel(commands[8] + 100, base + 103, Party.RECEIVER),
            SettlementCommand.cancel(commands[8] + 200, base + 104, Party.DELIVERER),
            SettlementCommand.cancel(commands[8] + 201, base + 104, Party.DELIVERER),
            SettlementCommand.cancel(commands[8] + 300, base + 104, Party.RECEIVER),
        ]
        assert results(client.settlement_commands(cancels)) == [(3, "cancel_already_requested")]
        after = client.lookup_instructions([base + 103, base + 104])
        assert [v.status_name for v in after] == ["cancelled (bilateral)"] * 2
        assert after[0].cancel_requested_by is Party.DELIVERER


def test_commands_answer_by_index_and_retries_answer_exists(node, base):
    """Each failed command is answered at its index with the engine's result; a command sent
    again under its id answers ``exists``, under its id with other fields
    ``exists_with_different_fields``."""
    cycle = cycle_of(base)
    with node.client() as client:
        batch = [
            SettlementCommand.open(base + 1, cycle),
            SettlementCommand.open(base + 2, cycle),  # the cycle exists now
            SettlementCommand.run(base + 3, cycle),  # not cut off
            SettlementCommand.set_max_age(base + 4, 0),
            SettlementCommand(base + 5, 42),
            SettlementCommand(base + 6, CommandKind.OPEN, cycle=cycle + 1, party=1),
            SettlementCommand.hold(base + 7, instruction=base + 999),
            SettlementCommand.cancel(base + 8, base + 999, party=3),
        ]
        assert results(client.settlement_commands(batch)) == [
            (1, "cycle_exists"), (2, "cycle_in_wrong_phase"), (3, "max_age_must_not_be_zero"),
            (4, "command_kind_unknown"), (5, "command_field_must_be_zero"),
            (6, "instruction_not_found"), (7, "party_must_be_deliverer_or_receiver"),
        ]  # fmt: skip
        assert results(client.settlement_commands(batch[:1])) == [(0, "exists")]
        other = SettlementCommand.open(base + 1, cycle + 1)
        assert results(client.settlement_commands([other])) == [(0, "exists_with_different_fields")]
        summary = client.settlement_cycle(cycle)
        assert summary.phase is Phase.OPEN and summary.exceptions == [] and not summary.more
        assert set(summary.counts.values()) == {0}
        with pytest.raises(NotFound, match=f"there is no cycle {cycle + 1}"):
            client.settlement_cycle(cycle + 1)


def test_lifecycle_commands_are_an_operators(node, base):
    """A submitter may hold an instruction but not open a cycle: a batch with a lifecycle
    command is refused Forbidden whole, naming the event, and nothing of it applies."""
    cycle = cycle_of(base)
    with node.client() as operator:
        ids = market(operator, base, {"A": (100, 10), "B": (100, 10)})
        assert operator.settlement_commands([SettlementCommand.open(base + 1, cycle)]).ok
    with node.client("submitter") as submitter:
        with pytest.raises(Forbidden) as refused:
            submitter.settlement_commands([SettlementCommand.open(base + 2, cycle + 1)])
        assert refused.value.refusal.event == 0
        assert submitter.create_instructions([trade(ids, base + 101, "A", "B", 4, 40, cycle)]).ok
        hold = SettlementCommand.hold(base + 3, base + 101, quantity=1)
        with pytest.raises(Forbidden, match="only an operator") as refused:
            submitter.settlement_commands([hold, SettlementCommand.cut_off(base + 4, cycle)])
        assert refused.value.refusal.event == 1
        assert submitter.settlement_commands([SettlementCommand.hold(base + 5, base + 101, 2)]).ok
    with node.client() as operator:
        (view,) = operator.lookup_instructions([base + 101])
        assert view.held == 2 and view.status is InstructionStatus.ELIGIBLE
        assert operator.settlement_cycle(cycle).phase is Phase.OPEN
        with pytest.raises(NotFound):
            operator.settlement_cycle(cycle + 1)


@pytest.fixture
def offline() -> Client:
    """A client that never connected: had it sent anything, the call would have failed
    otherwise."""
    return Client([free_address()], 1, b"x" * 16, insecure_plaintext=True, connect=False)


def instruction(**fields: object) -> Instruction:
    values: dict[str, object] = {"id": 1, "deliverer_securities": 1, "receiver_securities": 2,
                                 "receiver_cash": 3, "deliverer_cash": 4, "quantity": 1,
                                 "cycle": 1}  # fmt: skip
    values.update(fields)
    return Instruction(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "call, arguments, message",
    [
        ("create_instructions", [[instruction(), instruction(cycle=1 << 32)]],
         r"Instruction 1: cycle = 4294967296 is outside 0..=2\*\*32-1"),
        ("create_instructions", [[instruction(quantity=1 << 64)]], r"Instruction 0: quantity = .* outside"),
        ("create_instructions", [[instruction(receiver_cash=U128_MAX + 1)]], r"receiver_cash = .* outside"),
        ("create_instructions", [[instruction(priority=-1)]], r"priority = -1 is outside"),
        ("create_instructions", [[instruction(flags=1 << 3)]], r"Instruction 0: unknown flag bits 0x0008"),
        ("create_instructions", [[instruction(cash=1.0)]], r"cash must be an int, not float"),
        ("create_instructions", [[Transfer(1, 1, 2, 1, 1, 1)]], r"Transfer is not an Instruction"),
        ("create_instructions", [[]], r"0 events in one call"),
        ("settlement_commands", [[SettlementCommand.open(1, -1)]], r"Command 0: cycle = -1 is outside"),
        ("settlement_commands", [[SettlementCommand.set_max_age(1, 1 << 16)]], r"max_age = 65536"),
        ("settlement_commands", [[SettlementCommand.cancel(1, 2, party="1")]], r"party must be an int"),
        ("settlement_commands", [[SettlementCommand(1, CommandKind.OPEN, cycle=1, flags=1)]],
         r"Command 0: unknown flag bits 0x0001"),
        ("settlement_commands", [[SettlementCommand(1, 1 << 16)]], r"kind = 65536 is outside"),
        ("settlement_commands", [[instruction()]], r"Instruction is not a SettlementCommand"),
        ("settlement_commands", [[SettlementCommand.open(1, 1)] * 8190], r"8190 events"),
        ("lookup_instructions", [[]], r"0 ids; a request carries 1..=8189"),
        ("lookup_instructions", [[1, -1]], r"id 1 = -1 is outside"),
        ("settlement_cycle", [1 << 32], r"cycle = 4294967296 is outside 0..=4294967295"),
        ("settlement_cycle", [1, 0, 0], r"limit = 0 is outside 1..=8189"),
        ("settlement_cycle", [1, 0, 8190], r"limit = 8190 is outside"),
        ("settlement_cycle", [1, U128_MAX + 1], r"after = .* is outside 0..=2\*\*128-1"),
        ("cycle_report", [-1], r"cycle = -1 is outside"),
        ("cycle_exceptions", ["7"], r"cycle must be an int, not str"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_before_sending(offline, call, arguments, message):
    with pytest.raises(InvalidRequest, match=message):
        getattr(offline, call)(*arguments)
    assert offline.requests_sent == 0


def test_commands_round_trip_and_damage_is_refused():
    """Every kind's builder gives a record that decodes back; reserved bytes or flags set
    are refused, and an unknown kind stays a number."""
    commands = [
        SettlementCommand.open(1, 5), SettlementCommand.cut_off(2, 5), SettlementCommand.run(3, 5),
        SettlementCommand.close(4, 5), SettlementCommand.cancel_and_reschedule(5, 5, 6),
        SettlementCommand.hold(6, 9, 3), SettlementCommand.release(7, 9),
        SettlementCommand.cancel(8, 9, Party.RECEIVER), SettlementCommand.set_max_age(9, 4),
        SettlementCommand(10, 77, timestamp=12),
    ]  # fmt: skip
    encoded = encode_commands(commands)
    assert decode_commands(encoded) == commands
    assert [c.kind for c in decode_commands(encoded)][:9] == list(CommandKind)
    assert encoded[128 * 4 + 44] == 6 and encoded[128 * 7 + 50] == Party.RECEIVER
    for at in (52, 115, 118):
        damaged = bytearray(encoded[:128])
        damaged[at] = 1
        with pytest.raises(DecodeError):
            decode_commands(damaged)


def test_damaged_replies_are_refused():
    """A summary or an instruction's state that is short, long or contradicts itself is a
    DecodeError, not a misread."""
    head = bytearray(CYCLE_SUMMARY_HEAD_BYTES)
    struct.pack_into("<I", head, 8, 7)
    assert decode_cycle_summary(bytes(head)).phase is Phase.OPEN
    for at, value, what in [
        (0, 6, "unknown phase 6"),
        (0, 4, "rescheduled to 0, not a later cycle"),
        (1, 2, "damaged summary"),
        (3, 1, "damaged summary"),
        (12, 1, "damaged summary"),  # one exception announced, none carried
        (100, 1, "a run record without a run"),
    ]:
        damaged = bytearray(head)
        damaged[at] = value
        with pytest.raises(DecodeError, match=what):
            decode_cycle_summary(bytes(damaged))
    with pytest.raises(DecodeError, match="short"):
        decode_cycle_summary(bytes(head[:-1]))
    ran = bytearray(head)
    ran[1] = 1
    ran[80 + 210] = 1  # a reserved byte of the run record
    with pytest.raises(DecodeError, match="reserved bytes of the run record"):
        decode_cycle_summary(bytes(ran))

    view = bytearray(INSTRUCTION_VIEW_BYTES)
    assert decode_instruction_views(bytes(view))[0].status is InstructionStatus.ELIGIBLE
    for at, value, what in [
        (128, 8, "unknown status"),
        (129, 2, "unknown short leg"),
        (129, 1, "a short leg without a fail"),
        (128 + 48, 1, "a short leg without a fail"),
        (128 + 12, 1, "a reschedule origin without a reschedule"),
        (130, 3, "unknown cancelling party"),
        (131, 2, "reserved bytes"),
        (128 + 42, 1, "reserved bytes"),
        (119, 1, "unknown flag bits"),
    ]:
        damaged = bytearray(view)
        damaged[at] = value
        with pytest.raises(DecodeError, match=what):
            decode_instruction_views(bytes(damaged))
    with pytest.raises(DecodeError, match="of 191 bytes"):
        decode_instruction_views(bytes(view[:-1]))
    failed = bytearray(view)
    failed[128], failed[129], failed[128 + 48] = 5, 1, 9
    decoded = decode_instruction_views(bytes(failed))[0]
    assert (decoded.status_name, decoded.short_leg, decoded.short_account) == (
        "failed",
        ShortLeg.CASH,
        9,
    )
