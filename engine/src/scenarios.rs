//! Narrated scenarios over the public API: each shows one rule of `docs/engine.md` end to end.
//! The randomized comparison against a reference model lives in `engine/tests/`.

use crate::records::encode_batch;
use crate::*;

const SECOND: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * SECOND;
const USD: u32 = 1;
const ACME: u32 = 2;

fn account(id: u128, ledger: u32, flags: AccountFlags) -> Account {
    Account {
        id,
        ledger,
        code: 1,
        flags,
        ..Account::default()
    }
}

fn transfer(id: u128, debit: u128, credit: u128, amount: u128) -> Transfer {
    Transfer {
        id,
        debit_account_id: debit,
        credit_account_id: credit,
        amount,
        ledger: USD,
        code: 1,
        ..Transfer::default()
    }
}

fn failures(outcome: BatchOutcome) -> Vec<(u32, EventResult)> {
    outcome.failures
}

/// Builds the same small world for every scenario: a bank (1), Alice (2, no overdraft),
/// Bob (3, no overdraft) on USD, and their ACME share accounts 12 and 13 plus an issuer 11.
fn world() -> Engine {
    let mut engine = Engine::new(EngineConfig { hash_seed: 7 });
    let must = AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS;
    let accounts = [
        account(1, USD, AccountFlags::default()),
        account(2, USD, must | AccountFlags::HISTORY),
        account(3, USD, must),
        account(11, ACME, AccountFlags::default()),
        account(12, ACME, must),
        account(13, ACME, must),
    ];
    let outcome = engine
        .apply(
            Operation::CreateAccounts,
            T0,
            &encode_batch(&accounts, Account::encode),
        )
        .expect("valid batch");
    assert_eq!(failures(outcome), vec![]);
    let funding = [
        transfer(100, 1, 2, 1_000),
        Transfer {
            ledger: ACME,
            ..transfer(101, 11, 13, 50)
        },
    ];
    let outcome = engine
        .apply(
            Operation::CreateTransfers,
            T0,
            &encode_batch(&funding, Transfer::encode),
        )
        .expect("valid batch");
    assert_eq!(failures(outcome), vec![]);
    engine
}

fn balance(engine: &Engine, id: u128) -> (u128, u128, u128, u128) {
    let a = engine.lookup_account(id).expect("account exists");
    (
        a.debits_pending,
        a.debits_posted,
        a.credits_pending,
        a.credits_posted,
    )
}

/// Proves insufficient funds is a result, linked chains roll back as a whole, and a retry of
/// the same id is `exists` while a changed body is `exists_with_different_fields`.
#[test]
fn chains_funds_and_retries() {
    let mut engine = world();
    let batch = [
        transfer(200, 2, 3, 600),
        Transfer {
            flags: TransferFlags::LINKED,
            ..transfer(201, 2, 3, 300)
        },
        transfer(202, 2, 3, 300), // Alice has 100 left: the chain 201+202 fails as a whole.
        transfer(200, 2, 3, 600),
        transfer(200, 2, 3, 601),
    ];
    let outcome = engine
        .apply(
            Operation::CreateTransfers,
            T0 + SECOND,
            &encode_batch(&batch, Transfer::encode),
        )
        .expect("valid batch");
    assert_eq!(
        failures(outcome),
        vec![
            (1, EventResult::LinkedEventFailed),
            (2, EventResult::ExceedsCredits),
            (3, EventResult::Exists),
            (4, EventResult::ExistsWithDifferentAmount),
        ]
    );
    assert_eq!(balance(&engine, 2), (0, 600, 0, 1_000));
    assert_eq!(balance(&engine, 3), (0, 0, 0, 600));
    assert!(engine.lookup_transfer(201).is_none());
}

/// Proves a pending transfer reserves funds, a partial post releases the rest, and an unposted
/// pending transfer expires by the entry timestamps alone.
#[test]
fn pending_post_and_expiry() {
    let mut engine = world();
    let batch = [
        Transfer {
            flags: TransferFlags::PENDING,
            ..transfer(300, 2, 3, 700)
        },
        Transfer {
            flags: TransferFlags::PENDING,
            timeout: 5,
            ..transfer(301, 2, 3, 300)
        },
        transfer(302, 2, 3, 1), // Everything is reserved.
    ];
    let outcome = engine
        .apply(
            Operation::CreateTransfers,
            T0 + SECOND,
            &encode_batch(&batch, Transfer::encode),
        )
        .expect("valid batch");
    assert_eq!(failures(outcome), vec![(2, EventResult::ExceedsCredits)]);
    let post = Transfer {
        id: 303,
        pending_id: 300,
        amount: 500,
        flags: TransferFlags::POST_PENDING_TRANSFER,
        ..Transfer::default()
    };
    let outcome = engine
        .apply(
            Operation::CreateTransfers,
            T0 + 2 * SECOND,
            &encode_batch(&[post], Transfer::encode),
        )
        .expect("valid batch");
    assert_eq!(failures(outcome), vec![]);
    assert_eq!(balance(&engine, 2), (300, 500, 0, 1_000));
    let stored = engine.lookup_transfer(303).expect("stored");
    assert_eq!(
        (
            stored.debit_account_id,
            stored.credit_account_id,
            stored.ledger
        ),
        (2, 3, USD)
    );
    // Six seconds after 301 was created its reservation is released before the next batch.
    let late_post = Transfer {
        id: 304,
        pending_id: 301,
        flags: TransferFlags::POST_PENDING_TRANSFER,
        ..Transfer::default()
    };
    let outcome = engine
        .apply(
            Operation::CreateTransfers,
            T0 + 7 * SECOND,
            &encode_batch(&[late_post], Transfer::encode),
        )
        .expect("valid batch");
    assert_eq!(
        failures(outcome),
        vec![(0, EventResult::PendingTransferExpired)]
    );
    assert_eq!(balance(&engine, 2), (0, 500, 0, 1_000));
    // The statement shows every change with the balances after it, expiry included.
    let statement = engine
        .statement(&StatementFilter {
            account_id: 2,
            limit: 10,
            ..StatementFilter::default()
        })
        .expect("account exists")
        .items;
    let kinds: Vec<_> = statement
        .iter()
        .map(|e| match e.event {
            StatementEvent::Transfer(t) => t.id,
            StatementEvent::TransferExpired { pending_id } => pending_id + 1_000_000,
            _ => 0,
        })
        .collect();
    assert_eq!(kinds, vec![100, 300, 301, 303, 1_000_301]);
    assert_eq!(
        statement[4].balances_after,
        engine.balances_as_of(2, u64::MAX).expect("exists")
    );
    assert_eq!(
        engine.balances_as_of(2, T0 + SECOND + 10).expect("exists"),
        Balances {
            debits_pending: 1_000,
            debits_posted: 0,
            credits_pending: 0,
            credits_posted: 1_000
        }
    );
    // 301 (event 1 of the batch at T0 + 1 s, timeout 5 s) expired at T0 + 6 s + 1 ns: its
    // release is stamped there although the batch that carried it came a second later.
    let expires_at = T0 + 6 * SECOND + 1;
    let reserved = |at: u64| engine.balances_as_of(2, at).expect("exists").debits_pending;
    assert_eq!(
        reserved(expires_at - 1),
        300,
        "still reserved before its timeout"
    );
    assert_eq!(reserved(expires_at), 0, "released at its timeout");
    assert_eq!(reserved(T0 + 6 * SECOND + SECOND / 2), 0);
}

/// Proves an entry with no batch (the leader's expiry clock) expires exactly what is due at
/// its timestamp, stamped at each timeout, and that `next_expiry` names the earliest timeout.
#[test]
fn expiry_without_events() {
    let mut engine = world();
    let pending = Transfer {
        flags: TransferFlags::PENDING,
        timeout: 5,
        ..transfer(310, 2, 3, 300)
    };
    engine
        .apply(
            Operation::CreateTransfers,
            T0 + SECOND,
            &encode_batch(&[pending], Transfer::encode),
        )
        .expect("valid batch");
    let created = engine.lookup_transfer(310).expect("stored").timestamp;
    let expires_at = created + 5 * SECOND;
    assert_eq!(engine.next_expiry(), Some(expires_at));
    assert_eq!(engine.expire_due(expires_at - 1), 0, "not due yet");
    assert_eq!(balance(&engine, 2).0, 300);
    assert_eq!(engine.expire_due(expires_at + SECOND), 1);
    assert_eq!(engine.next_expiry(), None);
    assert_eq!(balance(&engine, 2).0, 0);
    let at = |t: u64| engine.balances_as_of(2, t).expect("exists").debits_pending;
    assert_eq!((at(expires_at - 1), at(expires_at)), (300, 0));
    assert_eq!(
        engine.expire_due(expires_at + 2 * SECOND),
        0,
        "nothing left"
    );
}

/// Proves a trade settles both legs or neither, and names the leg that failed; and that a
/// trade whose accounts are not on the ledgers it names fails by name and moves nothing.
#[test]
fn trade_is_delivery_versus_payment() {
    let mut engine = world();
    let trade = |id: u128, quantity: u64, cash: u64| Trade {
        id,
        instrument_debit_account_id: 13,  // Bob sells ACME
        instrument_credit_account_id: 12, // to Alice
        cash_debit_account_id: 2,         // who pays
        cash_credit_account_id: 3,        // Bob.
        instrument_ledger: ACME,
        cash_ledger: USD,
        quantity,
        cash_amount: cash,
        code: 1,
        ..Trade::default()
    };
    let batch = [trade(400, 10, 900), trade(401, 10, 200), trade(402, 41, 1)];
    let outcome = engine
        .apply(
            Operation::CreateTrades,
            T0 + SECOND,
            &encode_batch(&batch, Trade::encode),
        )
        .expect("valid batch");
    assert_eq!(
        failures(outcome),
        vec![
            (1, EventResult::CashExceedsCredits),
            (2, EventResult::InstrumentExceedsCredits)
        ]
    );
    assert_eq!(balance(&engine, 12), (0, 0, 0, 10));
    assert_eq!(balance(&engine, 13), (0, 10, 0, 50));
    assert_eq!(balance(&engine, 2), (0, 900, 0, 1_000));
    assert_eq!(balance(&engine, 3), (0, 0, 0, 900));

    // The legs the wrong way round: the account pairs swapped (Alice would deliver 900 USD
    // "shares" for 10 ACME "dollars"), or the ledgers swapped, fail by name and move nothing.
    let before = [12, 13, 2, 3].map(|id| balance(&engine, id));
    let pairs_swapped = Trade {
        instrument_debit_account_id: 2,
        instrument_credit_account_id: 3,
        cash_debit_account_id: 13,
        cash_credit_account_id: 12,
        ..trade(403, 10, 900)
    };
    let ledgers_swapped = Trade {
        instrument_ledger: USD,
        cash_ledger: ACME,
        ..trade(404, 10, 900)
    };
    let outcome = engine
        .apply(
            Operation::CreateTrades,
            T0 + 2 * SECOND,
            &encode_batch(&[pairs_swapped, ledgers_swapped], Trade::encode),
        )
        .expect("valid batch");
    assert_eq!(
        failures(outcome),
        vec![
            (
                0,
                EventResult::InstrumentAccountsMustBeOnTheInstrumentLedger
            ),
            (
                1,
                EventResult::InstrumentAccountsMustBeOnTheInstrumentLedger
            ),
        ]
    );
    assert_eq!(
        [12, 13, 2, 3].map(|id| balance(&engine, id)),
        before,
        "nothing moved"
    );
    assert_eq!(engine.lookup_trade(403), None);
    assert_eq!(
        engine
            .lookup_trade(400)
            .map(|t| (t.instrument_ledger, t.cash_ledger)),
        Some((ACME, USD))
    );
}

/// Proves a snapshot restores to the same digest and the same answers, with another seed.
#[test]
fn snapshot_restores_digest() {
    let mut engine = world();
    let restored =
        Engine::restore(&engine.snapshot(), EngineConfig { hash_seed: 99 }).expect("valid");
    assert_eq!(restored.digest(), engine.digest());
    assert_eq!(restored.lookup_account(2), engine.lookup_account(2));
    let mut bytes = engine.snapshot();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    assert_eq!(
        Engine::restore(&bytes, EngineConfig::default()).err(),
        Some(SnapshotError::ChecksumMismatch)
    );
}
