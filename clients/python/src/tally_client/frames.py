"""Results as tables: rows of plain dicts (standard library), a text table, and pandas
DataFrames when pandas is installed (``pip install 'tally-client[pandas]'``; the client
itself never needs it).

>>> from tally_client import Account
>>> rows = account_rows([Account(id=1, ledger=1, code=10, credits_posted=250)],
...                     names={1: "fund A"})
>>> print(table(rows, ["name", "ledger", "balance"]))
name    ledger  balance
fund A       1      250
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from .protocol import StatementEntry
from .records import Account, Trade, Transfer
from .settlement import InstructionView, Movement

#: An account row's columns, in order.
ACCOUNT_COLUMNS = [
    "id", "name", "ledger", "code", "debits_pending", "debits_posted", "credits_pending",
    "credits_posted", "balance", "flags", "timestamp",
]  # fmt: skip


def account_rows(
    accounts: Iterable[Account], names: Mapping[int, str] | None = None
) -> list[dict[str, Any]]:
    """One dict per account: its fields, its ``name`` from ``names`` (empty if none), and its
    ``balance`` (credits posted less debits posted)."""
    rows = []
    for account in accounts:
        row = asdict(account)
        row["name"] = (names or {}).get(account.id, "")
        row["balance"] = account.credits_posted - account.debits_posted
        row["flags"] = int(account.flags)
        rows.append({column: row[column] for column in ACCOUNT_COLUMNS})
    return rows


def event_rows(events: Iterable[Transfer | Trade]) -> list[dict[str, Any]]:
    """One dict per transfer or trade: its fields (flags as an int)."""
    rows = []
    for event in events:
        row = asdict(event)
        row["flags"] = int(event.flags)
        rows.append(row)
    return rows


def statement_rows(entries: Iterable[StatementEntry]) -> list[dict[str, Any]]:
    """One dict per statement entry: timestamp, kind, the event's id (or the expired pending
    event's), and the four balances after it."""
    rows = []
    for entry in entries:
        event = entry.transfer or entry.trade
        rows.append(
            {
                "timestamp": entry.timestamp,
                "kind": entry.kind.name.lower(),
                "id": event.id if event is not None else entry.pending_id,
                **asdict(entry.balances_after),
            }
        )
    return rows


#: An instruction row's columns, in order (the CLI's ``tally client cycle status`` and
#: ``exceptions`` columns).
INSTRUCTION_COLUMNS = [
    "id", "status", "cycle", "quantity", "settled_quantity", "cash", "settled_cash", "held",
    "age", "short_account", "short_leg", "cancel_requested_by", "reference",
]  # fmt: skip

#: A movement row's columns, in order (``tally client cycle report``'s).
MOVEMENT_COLUMNS = ["account", "ledger", "payable", "receivable"]


def instruction_rows(views: Iterable[InstructionView]) -> list[dict[str, Any]]:
    """One dict per instruction with where it stands: the status by name, the short account
    and leg of a fail or part (empty otherwise), the cancelling party (empty if none)."""
    rows = []
    for view in views:
        short = view.short_leg is not None
        rows.append(
            {
                "id": view.id,
                "status": view.status_name,
                "cycle": view.cycle,
                "quantity": view.instruction.quantity,
                "settled_quantity": view.settled_quantity,
                "cash": view.instruction.cash,
                "settled_cash": view.settled_cash,
                "held": view.held,
                "age": view.age,
                "short_account": view.short_account if short else "",
                "short_leg": view.short_leg.name.lower() if view.short_leg is not None else "",
                "cancel_requested_by": (
                    view.cancel_requested_by.name.lower() if view.cancel_requested_by else ""
                ),
                "reference": view.instruction.reference,
            }
        )
    return rows


def movement_rows(movements: Iterable[Movement]) -> list[dict[str, Any]]:
    """One dict per account and ledger of a run: what it paid and received."""
    return [
        {"account": m.account, "ledger": m.ledger, "payable": m.payable,
         "receivable": m.receivable}
        for m in movements
    ]  # fmt: skip


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """``rows`` as a text table: a header line, numbers right-aligned, text left-aligned."""
    if not rows:
        return ""
    columns = list(columns or rows[0].keys())
    cells = [[str(row[column]) for column in columns] for row in rows]
    widths = [
        max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)
    ]
    numeric = [all(isinstance(row[column], int) for row in rows) for column in columns]

    def line(values: Sequence[str]) -> str:
        parts = [
            value.rjust(width) if right else value.ljust(width)
            for value, width, right in zip(values, widths, numeric)
        ]
        return "  ".join(parts).rstrip()

    header = [
        column.rjust(width) if right else column.ljust(width)
        for column, width, right in zip(columns, widths, numeric)
    ]
    return "\n".join(["  ".join(header).rstrip(), *(line(values) for values in cells)])


def _pandas() -> Any:
    try:
        import pandas  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        raise ImportError(
            "DataFrames need pandas: pip install 'tally-client[pandas]' (or use the *_rows "
            "functions, which need nothing)"
        ) from None
    return pandas


def accounts_frame(accounts: Iterable[Account], names: Mapping[int, str] | None = None) -> Any:
    """Accounts as a pandas DataFrame (columns as ``account_rows``). u128 amounts past
    2**63 become Python ints in an object column, so nothing is rounded."""
    return _pandas().DataFrame(account_rows(accounts, names), columns=ACCOUNT_COLUMNS)


def events_frame(events: Iterable[Transfer | Trade]) -> Any:
    """Transfers or trades as a pandas DataFrame."""
    return _pandas().DataFrame(event_rows(events))


def statement_frame(entries: Iterable[StatementEntry]) -> Any:
    """A statement as a pandas DataFrame."""
    return _pandas().DataFrame(statement_rows(entries))


def instructions_frame(views: Iterable[InstructionView]) -> Any:
    """Instructions with their states (``Client.lookup_instructions``,
    ``Client.cycle_exceptions``) as a pandas DataFrame (columns as ``instruction_rows``)."""
    return _pandas().DataFrame(instruction_rows(views), columns=INSTRUCTION_COLUMNS)


def movements_frame(movements: Iterable[Movement]) -> Any:
    """A cycle report's movements (``Client.cycle_report(...).movements``) as a pandas
    DataFrame."""
    return _pandas().DataFrame(movement_rows(movements), columns=MOVEMENT_COLUMNS)
