//! Idempotency (docs/engine.md "Idempotency", docs/faults.md "At most once"): a retry of a stored
//! event gets `exists` and changes nothing; the same id with another body gets the
//! `exists_with_different_*` code of the first field that differs (`exists_with_different_fields`
//! when the other kind holds the id); a failed event's id may be used again unless it failed
//! transiently (`id_already_failed`).
//!
//! "Changes nothing" is checked against a control engine that got, instead of the retry, a batch
//! of the same size whose events all fail structurally: applying any batch advances time, so
//! the two digests are equal exactly when the retry changed nothing else.

use tally_engine::records::encode_batch;
use tally_engine::{
    Account, AccountFlags, Engine, EngineConfig, EventResult as R, Operation, Trade, TradeFlags,
    Transfer, TransferFlags,
};

#[derive(Clone)]
enum B {
    Accounts(Vec<Account>),
    Transfers(Vec<Transfer>),
    Trades(Vec<Trade>),
}

impl B {
    fn op_body(&self) -> (Operation, Vec<u8>) {
        match self {
            B::Accounts(v) => (Operation::CreateAccounts, encode_batch(v, |a| a.encode())),
            B::Transfers(v) => (Operation::CreateTransfers, encode_batch(v, |t| t.encode())),
            B::Trades(v) => (Operation::CreateTrades, encode_batch(v, |d| d.encode())),
        }
    }
    /// A batch of the same size and operation whose events all fail (`id_must_not_be_zero`).
    fn control(&self) -> B {
        match self {
            B::Accounts(v) => B::Accounts(vec![Account::default(); v.len()]),
            B::Transfers(v) => B::Transfers(vec![Transfer::default(); v.len()]),
            B::Trades(v) => B::Trades(vec![Trade::default(); v.len()]),
        }
    }
}

fn apply(engine: &mut Engine, batch: &B) -> Vec<(u32, R)> {
    let (op, body) = batch.op_body();
    engine
        .apply(op, 0, &body)
        .expect("well-formed batch")
        .failures
}

/// Accounts 1–4 on ledger 1 (4 limited to its credits), 5–6 on ledger 2, all funded.
fn setup() -> Vec<B> {
    let a = |id, ledger, flags| Account {
        id,
        ledger,
        code: 1,
        flags,
        ..Account::default()
    };
    let none = AccountFlags::default();
    vec![
        B::Accounts(vec![
            a(1, 1, none),
            a(2, 1, none),
            a(3, 1, none),
            a(4, 1, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
            a(5, 2, none),
            a(6, 2, none),
        ]),
        B::Transfers(vec![t(900, 1, 4, 10, TransferFlags::default())]),
    ]
}

fn t(id: u128, debit: u128, credit: u128, amount: u128, flags: TransferFlags) -> Transfer {
    Transfer {
        id,
        debit_account_id: debit,
        credit_account_id: credit,
        amount,
        ledger: 1,
        code: 1,
        flags,
        ..Transfer::default()
    }
}

fn post(id: u128, pending_id: u128, amount: u128) -> Transfer {
    Transfer {
        id,
        pending_id,
        amount,
        flags: TransferFlags::POST_PENDING_TRANSFER,
        ..Transfer::default()
    }
}

fn void(id: u128, pending_id: u128, amount: u128) -> Transfer {
    Transfer {
        id,
        pending_id,
        amount,
        flags: TransferFlags::VOID_PENDING_TRANSFER,
        ..Transfer::default()
    }
}

/// Seller 1 delivers `quantity` on ledger 1 to buyer 2; buyer 5 pays `cash` on ledger 2 to seller 6.
fn trade(id: u128, quantity: u64, cash: u64, flags: TradeFlags) -> Trade {
    Trade {
        id,
        instrument_debit_account_id: 1,
        instrument_credit_account_id: 2,
        cash_debit_account_id: 5,
        cash_credit_account_id: 6,
        instrument_ledger: 1,
        cash_ledger: 2,
        quantity,
        cash_amount: cash,
        code: 1,
        flags,
        ..Trade::default()
    }
}

/// Runs `setup()` then `history`, then `retry`, expecting `expected` failures for the retry. If
/// every expected result is a failure, the retry must have changed nothing but time.
fn check(name: &str, history: &[B], retry: B, expected: &[(u32, R)]) {
    let mut engine = Engine::new(EngineConfig { hash_seed: 1 });
    let mut control = Engine::new(EngineConfig { hash_seed: 2 });
    for batch in setup().iter().chain(history) {
        let a = apply(&mut engine, batch);
        let b = apply(&mut control, batch);
        assert_eq!(a, b, "{name}: setup differs between engines");
        assert_eq!(a, vec![], "{name}: setup batch failed");
    }
    let got = apply(&mut engine, &retry);
    assert_eq!(got, expected, "{name}: retry results");
    let n = match &retry {
        B::Accounts(v) => v.len(),
        B::Transfers(v) => v.len(),
        B::Trades(v) => v.len(),
    };
    // (A transient failure is remembered, a change the control batch does not make.)
    if expected.len() == n && !expected.iter().any(|(_, r)| r.is_transient()) {
        let control_results = apply(&mut control, &retry.control());
        assert_eq!(
            control_results.len(),
            n,
            "{name}: control batch should fail entirely"
        );
        // The ledger's digest: each refused event is a leaf of the verifiable log, whose
        // bytes (the record sent, the result) differ between the two batches by design.
        assert_eq!(
            engine.ledger_digest(),
            control.ledger_digest(),
            "{name}: a refused retry changed the state"
        );
    }
}

/// Proves an identical account retry gets `exists`, also after the account was used, and any
/// changed field gets its `exists_with_different_*` code; nothing changes either way.
#[test]
fn account_retries() {
    let a1 = Account {
        id: 1,
        ledger: 1,
        code: 1,
        ..Account::default()
    };
    let a4 = Account {
        id: 4,
        ledger: 1,
        code: 1,
        flags: AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
        ..Account::default()
    };
    check(
        "account identical",
        &[],
        B::Accounts(vec![a1]),
        &[(0, R::Exists)],
    );
    check(
        "account with flags identical",
        &[],
        B::Accounts(vec![a4]),
        &[(0, R::Exists)],
    );
    check(
        "account user_data",
        &[],
        B::Accounts(vec![Account {
            user_data_128: 1,
            ..a1
        }]),
        &[(0, R::ExistsWithDifferentUserData128)],
    );
    check(
        "account ledger",
        &[],
        B::Accounts(vec![Account { ledger: 2, ..a1 }]),
        &[(0, R::ExistsWithDifferentLedger)],
    );
    check(
        "account code",
        &[],
        B::Accounts(vec![Account { code: 2, ..a1 }]),
        &[(0, R::ExistsWithDifferentCode)],
    );
    check(
        "account flags",
        &[],
        B::Accounts(vec![Account {
            flags: AccountFlags::HISTORY,
            ..a1
        }]),
        &[(0, R::ExistsWithDifferentFlags)],
    );
    check(
        "account limit",
        &[],
        B::Accounts(vec![Account { limit: 5, ..a4 }]),
        &[(0, R::ExistsWithDifferentLimit)],
    );
    // The setup already moved money through both: a retry with zero balances still matches.
    check(
        "account retry after use",
        &[],
        B::Accounts(vec![a1, a4]),
        &[(0, R::Exists), (1, R::Exists)],
    );
    // Closed by a pending closing transfer since: the client's retry is still its original body.
    let closing = t(
        10,
        1,
        2,
        1,
        TransferFlags::PENDING | TransferFlags::CLOSING_DEBIT,
    );
    check(
        "account retry after closing",
        &[B::Transfers(vec![closing])],
        B::Accounts(vec![a1]),
        &[(0, R::Exists)],
    );
    // Retries inside the creating batch.
    check(
        "account retry in the same batch",
        &[],
        B::Accounts(vec![
            Account { id: 7, ..a1 },
            Account { id: 7, ..a1 },
            Account {
                id: 7,
                user_data_64: 9,
                ..a1
            },
        ]),
        &[(1, R::Exists), (2, R::ExistsWithDifferentUserData64)],
    );
}

/// Proves transfer retries: identical gets `exists` even when the transfer could no longer
/// succeed (accounts closed, funds gone), any changed field gets its `exists_with_different_*`.
#[test]
fn transfer_retries() {
    let x = t(10, 4, 1, 10, TransferFlags::default()); // spends all of account 4's credits
    let done = [B::Transfers(vec![x])];
    check(
        "transfer identical",
        &done,
        B::Transfers(vec![x]),
        &[(0, R::Exists)],
    );
    check(
        "transfer amount",
        &done,
        B::Transfers(vec![Transfer { amount: 9, ..x }]),
        &[(0, R::ExistsWithDifferentAmount)],
    );
    check(
        "transfer user_data_32",
        &done,
        B::Transfers(vec![Transfer {
            user_data_32: 1,
            ..x
        }]),
        &[(0, R::ExistsWithDifferentUserData32)],
    );
    check(
        "transfer code",
        &done,
        B::Transfers(vec![Transfer { code: 2, ..x }]),
        &[(0, R::ExistsWithDifferentCode)],
    );
    check(
        "transfer accounts",
        &done,
        B::Transfers(vec![Transfer {
            credit_account_id: 2,
            ..x
        }]),
        &[(0, R::ExistsWithDifferentCreditAccountId)],
    );
    check(
        "transfer flags",
        &done,
        B::Transfers(vec![Transfer {
            flags: TransferFlags::PENDING,
            ..x
        }]),
        &[(0, R::ExistsWithDifferentFlags)],
    );
    // The account now closed by a pending closing transfer: exists still comes first.
    let close = t(
        11,
        1,
        2,
        1,
        TransferFlags::PENDING | TransferFlags::CLOSING_CREDIT | TransferFlags::CLOSING_DEBIT,
    );
    check(
        "transfer retry on a closed account",
        &[B::Transfers(vec![x, close])],
        B::Transfers(vec![x]),
        &[(0, R::Exists)],
    );
    // A pending transfer's retry after it was posted.
    let p = t(12, 1, 2, 10, TransferFlags::PENDING);
    check(
        "pending retry after post",
        &[B::Transfers(vec![p, post(13, 12, 0)])],
        B::Transfers(vec![p]),
        &[(0, R::Exists)],
    );
    // A transfer id held by a trade, and a trade id held by a transfer.
    check(
        "transfer id held by a trade",
        &[B::Trades(vec![trade(20, 1, 1, TradeFlags::default())])],
        B::Transfers(vec![t(20, 1, 2, 1, TransferFlags::default())]),
        &[(0, R::ExistsWithDifferentFields)],
    );
    check(
        "trade id held by a transfer",
        &done,
        B::Trades(vec![trade(10, 1, 1, TradeFlags::default())]),
        &[(0, R::ExistsWithDifferentFields)],
    );
}

/// Proves post and void retries: zero in an inherited field (accounts, ledger, code, a post's
/// amount) matches the stored value, and so does the stored value written out; anything else
/// is the `exists_with_different_*` of the first field that differs.
#[test]
fn post_and_void_retries() {
    let p = t(10, 1, 2, 10, TransferFlags::PENDING);
    let q = t(11, 1, 2, 10, TransferFlags::PENDING);
    let full = post(20, 10, u128::MAX);
    let partial = post(21, 11, 3);
    let history = [B::Transfers(vec![p, q, full, partial])];
    let explicit = Transfer {
        debit_account_id: 1,
        credit_account_id: 2,
        ledger: 1,
        code: 1,
        ..full
    };
    check(
        "post identical",
        &history,
        B::Transfers(vec![full]),
        &[(0, R::Exists)],
    );
    check(
        "post with inherited fields written out",
        &history,
        B::Transfers(vec![explicit]),
        &[(0, R::Exists)],
    );
    check(
        "post (amount u128::MAX: all) retried with the full amount",
        &history,
        B::Transfers(vec![Transfer { amount: 10, ..full }]),
        &[(0, R::Exists)],
    );
    check(
        "post of everything retried as a post of nothing",
        &history,
        B::Transfers(vec![Transfer { amount: 0, ..full }]),
        &[(0, R::ExistsWithDifferentAmount)],
    );
    check(
        "post retried with less",
        &history,
        B::Transfers(vec![Transfer { amount: 9, ..full }]),
        &[(0, R::ExistsWithDifferentAmount)],
    );
    check(
        "partial post identical",
        &history,
        B::Transfers(vec![partial]),
        &[(0, R::Exists)],
    );
    check(
        "partial post other amount",
        &history,
        B::Transfers(vec![Transfer {
            amount: 4,
            ..partial
        }]),
        &[(0, R::ExistsWithDifferentAmount)],
    );
    check(
        "post other pending_id",
        &history,
        B::Transfers(vec![Transfer {
            pending_id: 11,
            ..full
        }]),
        &[(0, R::ExistsWithDifferentPendingId)],
    );
    check(
        "post wrong account",
        &history,
        B::Transfers(vec![Transfer {
            debit_account_id: 3,
            ..full
        }]),
        &[(0, R::ExistsWithDifferentDebitAccountId)],
    );
    check(
        "post became void",
        &history,
        B::Transfers(vec![void(20, 10, 0)]),
        &[(0, R::ExistsWithDifferentFlags)],
    );

    let v = void(22, 12, 0);
    let history = [B::Transfers(vec![
        t(12, 1, 2, 10, TransferFlags::PENDING),
        v,
    ])];
    // A void's 0 means the pending amount: it matches the stored void, which moved all of it.
    check(
        "void identical (amount 0)",
        &history,
        B::Transfers(vec![v]),
        &[(0, R::Exists)],
    );
    check(
        "void with the pending amount",
        &history,
        B::Transfers(vec![Transfer { amount: 10, ..v }]),
        &[(0, R::Exists)],
    );
    check(
        "void other amount",
        &history,
        B::Transfers(vec![Transfer { amount: 9, ..v }]),
        &[(0, R::ExistsWithDifferentAmount)],
    );
}

/// Proves a balancing transfer's retry matches when its amount is at least the stored (capped)
/// amount, and not below it.
#[test]
fn balancing_retries() {
    // Account 4 has 10 credits posted and no limit: the transfer is capped at 10.
    let b = t(10, 4, 1, 1_000, TransferFlags::BALANCING_DEBIT);
    let history = [B::Transfers(vec![b])];
    check(
        "balancing identical",
        &history,
        B::Transfers(vec![b]),
        &[(0, R::Exists)],
    );
    check(
        "balancing with the capped amount",
        &history,
        B::Transfers(vec![Transfer { amount: 10, ..b }]),
        &[(0, R::Exists)],
    );
    check(
        "balancing with more",
        &history,
        B::Transfers(vec![Transfer {
            amount: u128::MAX,
            ..b
        }]),
        &[(0, R::Exists)],
    );
    check(
        "balancing with less",
        &history,
        B::Transfers(vec![Transfer { amount: 9, ..b }]),
        &[(0, R::ExistsWithDifferentAmount)],
    );
    check(
        "balancing without the flag",
        &history,
        B::Transfers(vec![Transfer {
            amount: 10,
            flags: TransferFlags::default(),
            ..b
        }]),
        &[(0, R::ExistsWithDifferentFlags)],
    );
}

/// Proves trade retries: identical gets `exists`, a changed quantity does not; a post's retry
/// may leave the inherited account ids and amounts zero.
#[test]
fn trade_retries() {
    let d = trade(10, 5, 50, TradeFlags::default());
    let p = trade(11, 5, 50, TradeFlags::PENDING);
    let post = Trade {
        id: 12,
        pending_id: 11,
        code: 1,
        flags: TradeFlags::POST_PENDING_TRADE,
        ..Trade::default()
    };
    let history = [B::Trades(vec![d, p, post])];
    check(
        "trade identical",
        &history,
        B::Trades(vec![d]),
        &[(0, R::Exists)],
    );
    check(
        "trade quantity",
        &history,
        B::Trades(vec![Trade { quantity: 6, ..d }]),
        &[(0, R::ExistsWithDifferentQuantity)],
    );
    check(
        "trade cash",
        &history,
        B::Trades(vec![Trade {
            cash_amount: 49,
            ..d
        }]),
        &[(0, R::ExistsWithDifferentCashAmount)],
    );
    check(
        "trade user data",
        &history,
        B::Trades(vec![Trade {
            user_data_64: 20_261_207,
            ..d
        }]),
        &[(0, R::ExistsWithDifferentUserData64)],
    );
    check(
        "trade ledgers",
        &history,
        B::Trades(vec![Trade {
            cash_ledger: 3,
            ..d
        }]),
        &[(0, R::ExistsWithDifferentLedger)],
    );
    check(
        "trade buyer",
        &history,
        B::Trades(vec![Trade {
            instrument_credit_account_id: 3,
            ..d
        }]),
        &[(0, R::ExistsWithDifferentInstrumentCreditAccountId)],
    );
    check(
        "pending trade identical after post",
        &history,
        B::Trades(vec![p]),
        &[(0, R::Exists)],
    );
    check(
        "trade post identical",
        &history,
        B::Trades(vec![post]),
        &[(0, R::Exists)],
    );
    let explicit = Trade {
        quantity: 5,
        cash_amount: 50,
        ..trade(12, 5, 50, TradeFlags::POST_PENDING_TRADE)
    };
    check(
        "trade post written out",
        &history,
        B::Trades(vec![Trade {
            pending_id: 11,
            ..explicit
        }]),
        &[(0, R::Exists)],
    );
    check(
        "trade post other quantity",
        &history,
        B::Trades(vec![Trade {
            quantity: 4,
            ..post
        }]),
        &[(0, R::ExistsWithDifferentQuantity)],
    );
}

/// Proves an event that failed for a reason that cannot change is not stored: its id
/// (transfer, trade or account) can be used again, also when it failed only because its
/// linked chain failed.
#[test]
fn permanently_failed_ids_are_reusable() {
    check(
        "rolled-back chain id reused",
        &[],
        B::Transfers(vec![
            t(10, 1, 2, 5, TransferFlags::LINKED),
            t(11, 4, 2, 1_000, TransferFlags::default()), // exceeds account 4's credits
            t(10, 1, 2, 6, TransferFlags::default()),
        ]),
        &[(0, R::LinkedEventFailed), (1, R::ExceedsCredits)],
    );
    check(
        "failed trade id reused",
        &[],
        B::Trades(vec![
            trade(30, 0, 1, TradeFlags::default()),
            trade(30, 1, 1, TradeFlags::default()),
        ]),
        &[(0, R::QuantityMustNotBeZero)],
    );
    let a = Account {
        id: 8,
        ledger: 1,
        code: 0,
        ..Account::default()
    };
    check(
        "failed account id reused",
        &[],
        B::Accounts(vec![a, Account { code: 1, ..a }]),
        &[(0, R::CodeMustNotBeZero)],
    );
    check(
        "failed post id reused for another post",
        &[B::Transfers(vec![t(12, 1, 2, 10, TransferFlags::PENDING)])],
        B::Transfers(vec![post(13, 12, 11), post(13, 12, 10)]),
        &[(0, R::ExceedsPendingTransferAmount)],
    );
}

/// Proves an event that failed for a reason that could pass later (`is_transient`: a missing
/// account or pending event, a closed account, a limit, an overflow) leaves its id taken:
/// any later use of it, the same record once the reason is gone included, gets
/// `id_already_failed` and changes nothing; so one id never has two outcomes. Holds for
/// trades, across transfers and trades (one id space), and when the chain rolled back.
#[test]
fn transiently_failed_ids_answer_id_already_failed() {
    let missing = t(10, 1, 9, 5, TransferFlags::default()); // credit account 9 does not exist
    check(
        "a missing account, then the retry and the corrected retry",
        &[],
        B::Transfers(vec![
            missing,
            missing,
            Transfer {
                credit_account_id: 2,
                ..missing
            },
        ]),
        &[
            (0, R::CreditAccountNotFound),
            (1, R::IdAlreadyFailed),
            (2, R::IdAlreadyFailed),
        ],
    );
    let short = t(11, 4, 2, 1_000, TransferFlags::default()); // exceeds account 4's credits
    check(
        "short of funds in a rolled-back chain; funds arrive; the retry",
        &[],
        B::Transfers(vec![
            t(10, 1, 2, 5, TransferFlags::LINKED),
            short,
            t(12, 1, 4, 5_000, TransferFlags::default()),
            t(10, 1, 2, 5, TransferFlags::default()),
            short,
        ]),
        &[
            (0, R::LinkedEventFailed),
            (1, R::ExceedsCredits),
            (4, R::IdAlreadyFailed),
        ],
    );
    check(
        "a failed transfer's id used by a trade",
        &[],
        B::Transfers(vec![t(13, 4, 2, 1_000, TransferFlags::default())]),
        &[(0, R::ExceedsCredits)],
    );
    let no_cash = Trade {
        cash_credit_account_id: 9,
        ..trade(31, 1, 1, TradeFlags::default())
    };
    check(
        "a trade with a missing account, then corrected",
        &[],
        B::Trades(vec![no_cash, trade(31, 1, 1, TradeFlags::default())]),
        &[(0, R::CashCreditAccountNotFound), (1, R::IdAlreadyFailed)],
    );
    check(
        "a post of a pending transfer not yet created",
        &[],
        B::Transfers(vec![
            post(14, 15, 10),
            t(15, 1, 2, 10, TransferFlags::PENDING),
            post(14, 15, 10),
        ]),
        &[(0, R::PendingTransferNotFound), (2, R::IdAlreadyFailed)],
    );

    // The id is not an event: lookups find nothing; a trade cannot take it (one id space);
    // and it survives a snapshot.
    let mut engine = Engine::new(EngineConfig { hash_seed: 7 });
    for batch in setup() {
        assert_eq!(apply(&mut engine, &batch), vec![]);
    }
    let batch = B::Transfers(vec![missing]);
    assert_eq!(
        apply(&mut engine, &batch),
        vec![(0, R::CreditAccountNotFound)]
    );
    assert!(engine.lookup_transfer(10).is_none());
    let as_trade = B::Trades(vec![trade(10, 1, 1, TradeFlags::default())]);
    assert_eq!(apply(&mut engine, &as_trade), vec![(0, R::IdAlreadyFailed)]);
    let mut restored =
        Engine::restore(&engine.snapshot(), EngineConfig { hash_seed: 8 }).expect("restores");
    assert_eq!(restored.digest(), engine.digest());
    assert_eq!(apply(&mut restored, &batch), vec![(0, R::IdAlreadyFailed)]);
}

/// Proves an `exists` inside a linked chain fails the chain like any other non-ok result (the
/// spec says "if any event of a chain fails"; `exists` is reported as a failure).
#[test]
fn exists_fails_a_chain() {
    let x = t(10, 1, 2, 5, TransferFlags::default());
    check(
        "exists in a chain",
        &[B::Transfers(vec![x])],
        B::Transfers(vec![t(11, 1, 2, 5, TransferFlags::LINKED), x]),
        &[(0, R::LinkedEventFailed), (1, R::Exists)],
    );
}

/// Proves a retry of an account with the `closed` flag set is refused, not taken as `exists`:
/// `closed` is state that only closing transfers set, so no create request may carry it (found
/// by the model test: the engine used to ignore the flag when comparing a retry). A retry of
/// the original body after a closing transfer closed the account still gets `exists`: see
/// `account_retries`.
#[test]
fn regression_account_retry_with_closed_flag_is_refused() {
    let open = Account {
        id: 7,
        ledger: 1,
        code: 1,
        ..Account::default()
    };
    let closed = Account {
        flags: AccountFlags::CLOSED,
        ..open
    };
    check(
        "created open, retried closed",
        &[B::Accounts(vec![open])],
        B::Accounts(vec![closed]),
        &[(0, R::ClosedFlagMustNotBeSet)],
    );
    check(
        "created closed",
        &[],
        B::Accounts(vec![closed, open]),
        &[(0, R::ClosedFlagMustNotBeSet)],
    );
}
