"""Tally's Python client: the gateway protocol (docs/protocol.md) in pure Python, standard
library only, for back offices, notebooks and scheduled scripts.

>>> from tally_client import Client, Account, Transfer
>>> client = Client(["127.0.0.1:7101"], cluster_id=0x7A11,
...                 credential="my-operator-secret-0123", ca="pki/ca.pem")  # doctest: +SKIP
>>> client.create_accounts([Account(id=1, ledger=1, code=10),
...                         Account(id=2, ledger=1, code=10)]).ok        # doctest: +SKIP
True
>>> client.create_transfers([Transfer(id=100, debit_account_id=1, credit_account_id=2,
...                                   amount=250, ledger=1, code=1)]).ok # doctest: +SKIP
True
>>> [a.credits_posted for a in client.lookup_accounts([1, 2])]          # doctest: +SKIP
[0, 250]

Modules: ``records`` (the 128-byte records as dataclasses, their layouts and codecs),
``protocol`` (frames, headers, reply bodies), ``query`` (queries by field: a filter, a page
of records and where the next one starts, positions as of a time), ``settlement`` (net
settlement's reads: an instruction's state, a cycle's summary and run record, a run's report),
``connection`` (TLS or plain TCP), ``client`` (sessions, leader following, retries),
``errors``, ``results`` (result codes' names), ``frames`` (pandas DataFrames, when pandas is
installed).
"""

from .client import Client, Created, Failure
from .connection import Tls
from .errors import (
    BadRequest,
    BatchRefused,
    ClientClosed,
    DeadlineExceeded,
    DecodeError,
    Forbidden,
    Internal,
    InvalidRequest,
    NotFound,
    OutOfScope,
    RecordError,
    Refused,
    RequestNumberReused,
    TallyError,
    TlsError,
    Unauthenticated,
    WrongCluster,
)
from .protocol import (
    LATEST,
    AccessTrail,
    Balances,
    Checkpoint,
    NodeState,
    Proofs,
    Role,
    StatementEntry,
    StatementEvent,
    Status,
)
from .query import LedgerEvent, Position, QueryFilter, QueryPage
from .records import (
    Account,
    AccountFlags,
    CommandKind,
    Instruction,
    InstructionFlags,
    Party,
    SettlementCommand,
    Trade,
    TradeFlags,
    Transfer,
    TransferFlags,
)
from .results import result_name
from .settlement import (
    CycleReport,
    CycleSummary,
    InstructionStatus,
    InstructionView,
    Movement,
    Phase,
    RunRecord,
    ShortLeg,
)

__all__ = [
    "LATEST",
    "AccessTrail",
    "Account",
    "AccountFlags",
    "BadRequest",
    "Balances",
    "BatchRefused",
    "Checkpoint",
    "Client",
    "ClientClosed",
    "CommandKind",
    "Created",
    "CycleReport",
    "CycleSummary",
    "DeadlineExceeded",
    "DecodeError",
    "Failure",
    "Forbidden",
    "Instruction",
    "InstructionFlags",
    "InstructionStatus",
    "InstructionView",
    "Internal",
    "InvalidRequest",
    "LedgerEvent",
    "Movement",
    "NodeState",
    "NotFound",
    "OutOfScope",
    "Party",
    "Phase",
    "Position",
    "Proofs",
    "QueryFilter",
    "QueryPage",
    "RecordError",
    "Refused",
    "RequestNumberReused",
    "Role",
    "RunRecord",
    "SettlementCommand",
    "ShortLeg",
    "StatementEntry",
    "StatementEvent",
    "Status",
    "TallyError",
    "Tls",
    "TlsError",
    "Trade",
    "TradeFlags",
    "Transfer",
    "TransferFlags",
    "Unauthenticated",
    "WrongCluster",
    "result_name",
]
