# %% [markdown]
# # Settle a day and print the positions
#
# A notebook-style walk through the Python client (cells split by `# %%`; run it whole with
# `python examples/settle_and_positions.py`, or cell by cell in an editor that knows the
# marks). It needs a running node: see clients/python/README.md, "Run the example", for the
# three commands that start one; the example reads where it is from the environment:
# `TALLY_CLUSTER`, `TALLY_CLUSTER_ID`, `TALLY_CREDENTIAL` (an operator's secret) and
# `TALLY_CA` (or `TALLY_INSECURE_PLAINTEXT=1` for a plaintext node).
#
# It opens accounts for two participants in cash (ledger 1, minor units) and shares of one
# instrument (ledger 2), funds them, settles transfers and a delivery-versus-payment trade
# with its fee, and prints everyone's positions as a table (a pandas DataFrame when pandas is
# installed, `tally_client.frames.accounts_frame`).

# %%
import os
import random

from tally_client import (
    Account,
    AccountFlags,
    Client,
    Trade,
    TradeFlags,
    Transfer,
)
from tally_client.frames import account_rows, table

client = Client(
    os.environ.get("TALLY_CLUSTER", "127.0.0.1:7101"),
    cluster_id=int(os.environ.get("TALLY_CLUSTER_ID", "0x7a11"), 0),
    credential=os.environ["TALLY_CREDENTIAL"],
    ca=os.environ.get("TALLY_CA"),
    insecure_plaintext=os.environ.get("TALLY_INSECURE_PLAINTEXT") == "1",
)
print(f"session on {client.current_node} as {client.role.name.lower()}")

# %% [markdown]
# ## Accounts
# Ids are the caller's (u128): a fresh range per run, so the example can run again.

# %%
CASH, SHARES = 1, 2
base = random.getrandbits(48) << 16
names = {
    base + 1: "bank (cash)",
    base + 2: "fund A cash",
    base + 3: "fund B cash",
    base + 4: "depository (shares)",
    base + 5: "fund A shares",
    base + 6: "fund B shares",
    base + 7: "exchange fees",
}
ledgers = {base + 1: CASH, base + 2: CASH, base + 3: CASH, base + 4: SHARES,
           base + 5: SHARES, base + 6: SHARES, base + 7: CASH}  # fmt: skip
created = client.create_accounts(
    [
        Account(
            id=account_id,
            ledger=ledgers[account_id],
            code=10,
            # Funds may not go below zero; every account keeps its balances' history.
            flags=AccountFlags.HISTORY
            | (AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS if "fund" in name else 0),
        )
        for account_id, name in names.items()
    ]
)
assert created.ok, created.failures

# %% [markdown]
# ## Fund the participants, then settle
# One batch of transfers: cash from the bank, shares from the depository. Then a trade:
# fund A sells 100 shares to fund B for 25,000.00, linked with the exchange's fee on B, so
# both settle or neither does.

# %%
funding = client.create_transfers(
    [
        Transfer(id=base + 100, debit_account_id=base + 1, credit_account_id=base + 2,
                 amount=1_000_000, ledger=CASH, code=1),
        Transfer(id=base + 101, debit_account_id=base + 1, credit_account_id=base + 3,
                 amount=5_000_000, ledger=CASH, code=1),
        Transfer(id=base + 102, debit_account_id=base + 4, credit_account_id=base + 5,
                 amount=500, ledger=SHARES, code=1),
    ]
)  # fmt: skip
assert funding.ok, funding.failures

trade = Trade(
    id=base + 200,
    instrument_debit_account_id=base + 5,  # the seller delivers shares
    instrument_credit_account_id=base + 6,
    cash_debit_account_id=base + 3,  # the buyer pays
    cash_credit_account_id=base + 2,
    instrument_ledger=SHARES,
    cash_ledger=CASH,
    quantity=100,
    cash_amount=2_500_000,
    code=7,
    flags=TradeFlags.LINKED,
    user_data_64=20261209,  # the intended settlement date
)
fee = Transfer(id=base + 201, debit_account_id=base + 3, credit_account_id=base + 7,
               amount=1_250, ledger=CASH, code=2)  # fmt: skip
settled = client.create_settlements([trade, fee])
print(f"settled at commit index {settled.commit_index}: {settled.ok}")

# A payment fund A cannot cover fails on its own, as a result, not an exception.
overdraft = client.create_transfers(
    [Transfer(id=base + 300, debit_account_id=base + 2, credit_account_id=base + 1,
              amount=99_000_000, ledger=CASH, code=1)]
)  # fmt: skip
print("overdraft:", [(f.index, f.result) for f in overdraft.failures])

# %% [markdown]
# ## Positions
# Lookups return the accounts' balances. `account_rows` makes plain rows (no dependency);
# with pandas installed, `tally_client.frames.accounts_frame` gives the same as a DataFrame.

# %%
rows = account_rows(client.lookup_accounts(list(names)), names=names)
print(table(rows, ["name", "ledger", "debits_posted", "credits_posted", "balance"]))

# %%
statement = client.statement(base + 3)
print(f"fund B cash: {len(statement)} changes; after the last: {statement[-1].balances_after}")
client.close()
