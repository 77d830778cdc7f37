"""Tables of results: rows with names and balances, a text table, and DataFrames when pandas
is installed — or, without it, an ImportError that says how to get it (the client itself
never needs pandas)."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tally_client import Account, Balances, StatementEntry, StatementEvent, Transfer
from tally_client.frames import (
    account_rows,
    accounts_frame,
    event_rows,
    statement_rows,
    table,
)

ACCOUNTS = [
    Account(id=1, ledger=1, code=10, credits_posted=(1 << 100), debits_posted=5),
    Account(id=2, ledger=2, code=10, debits_posted=40),
]


def test_rows_and_text_table():
    rows = account_rows(ACCOUNTS, names={1: "fund A"})
    assert rows[0]["balance"] == (1 << 100) - 5 and rows[0]["name"] == "fund A"
    assert rows[1]["balance"] == -40 and rows[1]["name"] == ""
    text = table(rows, ["id", "name", "balance"]).splitlines()
    assert text[0].split() == ["id", "name", "balance"]
    assert text[1].split() == ["1", "fund", "A", str((1 << 100) - 5)]
    assert text[2].endswith("-40") and len(text) == 3
    transfer = Transfer(id=9, debit_account_id=1, credit_account_id=2, amount=3, ledger=1, code=1)
    assert event_rows([transfer])[0]["amount"] == 3
    entry = StatementEntry(7, StatementEvent.TRANSFER, Balances(0, 3, 0, 0), transfer=transfer)
    assert statement_rows([entry])[0] == {
        "timestamp": 7,
        "kind": "transfer",
        "id": 9,
        "debits_pending": 0,
        "debits_posted": 3,
        "credits_pending": 0,
        "credits_posted": 0,
    }


def test_dataframes_with_pandas():
    assert importlib.util.find_spec("pandas") is not None, (
        "pandas is not in the tests' environment: install it with "
        "`bash deploy/local/install-python.sh` (`.ci/run` does this before the tests)"
    )
    frame = accounts_frame(ACCOUNTS)
    assert list(frame["balance"]) == [(1 << 100) - 5, -40]  # no rounding past 2**63


def test_dataframes_without_pandas_name_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'tally-client\[pandas\]'"):
        accounts_frame(ACCOUNTS)
