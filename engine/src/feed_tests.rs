//! The events query against a reference built from the other reads: accounts from
//! `query_accounts`, transfers and trades from their queries, expiries from every account's
//! statement, merged by timestamp in the test. Every range, limit and direction, paging by
//! `next`, a visibility filter, and the scan bound.

use std::collections::BTreeMap;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::feed::{FeedEntry, LedgerEvent};
use crate::records::{encode_batch, TradeFlags};
use crate::search::tests::all_pages;
use crate::*;

const SECOND: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * SECOND;

fn account(id: u128) -> Account {
    Account {
        id,
        ledger: if id.is_multiple_of(2) { 1 } else { 2 },
        code: 1,
        ..Account::default()
    }
}

/// 30 rounds, each: two new accounts, transfers among the accounts so far (some pending with
/// a 1-s timeout, so they expire in a later round), a pending trade with a timeout, a linked
/// chain that fails (undone: not stored).
fn history() -> Engine {
    let mut engine = Engine::new(EngineConfig { hash_seed: 5 });
    let mut rng = SmallRng::seed_from_u64(11);
    let mut next_id = 10_000u128;
    for round in 0..30u64 {
        let now = T0 + round * 2 * SECOND;
        // Even ids on ledger 1 (the transfers'), odd ones on ledger 2 (a trade's instrument).
        let new = [
            account(2 * round as u128 + 2),
            account(2 * round as u128 + 3),
        ];
        let outcome = engine
            .apply(
                Operation::CreateAccounts,
                now,
                &encode_batch(&new, Account::encode),
            )
            .expect("accounts");
        assert!(outcome.failures.is_empty());
        let evens = round as u128 + 1; // accounts 2, 4, …
        let mut batch = Vec::new();
        for _ in 0..rng.random_range(3..12) {
            let debit = 2 * rng.random_range(1..=evens);
            let mut credit = 2 * rng.random_range(1..=evens);
            if credit == debit {
                credit = if debit == 2 { 4 } else { 2 };
            }
            if evens == 1 {
                break;
            }
            next_id += 1;
            let pending = rng.random_bool(0.3);
            batch.push(Transfer {
                id: next_id,
                debit_account_id: debit,
                credit_account_id: credit,
                amount: rng.random_range(1..50),
                ledger: 1,
                code: 1,
                timeout: u32::from(pending),
                flags: if pending {
                    TransferFlags::PENDING
                } else {
                    TransferFlags::default()
                },
                ..Transfer::default()
            });
        }
        if evens > 1 && round % 4 == 1 {
            // A chain whose second transfer names no account: the first is undone.
            next_id += 2;
            batch.push(Transfer {
                id: next_id - 1,
                debit_account_id: 2,
                credit_account_id: 4,
                amount: 1,
                ledger: 1,
                code: 1,
                flags: TransferFlags::LINKED,
                ..Transfer::default()
            });
            batch.push(Transfer {
                id: next_id,
                debit_account_id: 2,
                credit_account_id: 999,
                amount: 1,
                ledger: 1,
                code: 1,
                ..Transfer::default()
            });
        }
        if !batch.is_empty() {
            engine
                .apply(
                    Operation::CreateTransfers,
                    now + SECOND / 2,
                    &encode_batch(&batch, Transfer::encode),
                )
                .expect("transfers");
        }
        if round >= 2 && round.is_multiple_of(3) {
            next_id += 1;
            let trade = Trade {
                id: next_id,
                instrument_debit_account_id: 3,
                instrument_credit_account_id: 5,
                cash_debit_account_id: 4,
                cash_credit_account_id: 2,
                instrument_ledger: 2,
                cash_ledger: 1,
                quantity: 1,
                cash_amount: 7,
                code: 1,
                timeout: u32::from(round.is_multiple_of(2)),
                flags: if round.is_multiple_of(2) {
                    TradeFlags::PENDING
                } else {
                    TradeFlags::default()
                },
                ..Trade::default()
            };
            let outcome = engine
                .apply(
                    Operation::CreateTrades,
                    now + SECOND * 3 / 4,
                    &encode_batch(&[trade], Trade::encode),
                )
                .expect("trades");
            assert!(outcome.failures.is_empty(), "{outcome:?}");
        }
    }
    engine
}

fn everything() -> QueryFilter {
    QueryFilter {
        limit: 8_189,
        ..QueryFilter::default()
    }
}

/// The reference: every applied event, by timestamp, from the other reads.
fn reference(engine: &Engine) -> Vec<FeedEntry> {
    let mut events = BTreeMap::new();
    let mut add = |timestamp: u64, event: LedgerEvent| {
        if let Some(before) = events.insert(timestamp, event) {
            assert_eq!(before, event, "two events at {timestamp}");
        }
    };
    let accounts = all_pages(&everything(), |f| {
        engine.query_accounts(f, |_| true).expect("a page")
    });
    for account in &accounts {
        add(account.timestamp, LedgerEvent::AccountCreated(*account));
    }
    for t in all_pages(&everything(), |f| {
        engine.query_transfers(f, |_| true).expect("a page")
    }) {
        add(
            t.timestamp,
            LedgerEvent::Applied(StatementEvent::Transfer(t)),
        );
    }
    for t in all_pages(&everything(), |f| {
        engine.query_trades(f, |_| true).expect("a page")
    }) {
        add(t.timestamp, LedgerEvent::Applied(StatementEvent::Trade(t)));
    }
    for account in &accounts {
        let page = engine
            .statement(&StatementFilter {
                account_id: account.id,
                limit: 8_189,
                ..StatementFilter::default()
            })
            .expect("a statement");
        assert!(page.next.is_none(), "the whole statement in one page");
        for entry in page.items {
            if let StatementEvent::TransferExpired { .. } | StatementEvent::TradeExpired { .. } =
                entry.event
            {
                add(entry.timestamp, LedgerEvent::Applied(entry.event));
            }
        }
    }
    events
        .into_iter()
        .map(|(timestamp, event)| FeedEntry { timestamp, event })
        .collect()
}

/// Whether an event touches account 4 (the visibility the test's reader has).
fn touches_4(engine: &Engine, event: &LedgerEvent) -> bool {
    match event {
        LedgerEvent::AccountCreated(a) => a.id == 4,
        LedgerEvent::Applied(StatementEvent::Transfer(t)) => {
            t.debit_account_id == 4 || t.credit_account_id == 4
        }
        LedgerEvent::Applied(StatementEvent::Trade(t)) => t.cash_debit_account_id == 4,
        LedgerEvent::Applied(StatementEvent::TransferExpired { pending_id }) => engine
            .lookup_transfer(*pending_id)
            .is_some_and(|t| t.debit_account_id == 4 || t.credit_account_id == 4),
        LedgerEvent::Applied(StatementEvent::TradeExpired { .. }) => true,
    }
}

#[test]
fn events_in_every_range_limit_and_direction_match_the_reference() {
    let engine = history();
    let all = reference(&engine);
    let kinds = |k: fn(&LedgerEvent) -> bool| all.iter().filter(|e| k(&e.event)).count();
    assert_eq!(kinds(|e| matches!(e, LedgerEvent::AccountCreated(_))), 60);
    assert!(kinds(|e| matches!(e, LedgerEvent::Applied(StatementEvent::Transfer(_)))) > 100);
    assert!(kinds(|e| matches!(e, LedgerEvent::Applied(StatementEvent::Trade(_)))) >= 9);
    assert!(
        kinds(|e| matches!(
            e,
            LedgerEvent::Applied(StatementEvent::TransferExpired { .. })
        )) > 10
    );
    assert!(kinds(|e| matches!(e, LedgerEvent::Applied(StatementEvent::TradeExpired { .. }))) >= 4);

    let mut rng = SmallRng::seed_from_u64(3);
    let (first, last) = (all[0].timestamp, all[all.len() - 1].timestamp);
    let mut ranges = vec![(0, 0), (first, last), (first + 1, last - 1), (last, 0)];
    for _ in 0..40 {
        let a = rng.random_range(first - 5..=last + 5);
        let b = rng.random_range(a..=last + 5);
        ranges.push((a, b));
    }
    for (min, max) in ranges {
        for limit in [1u32, 7, 64, 8_189] {
            for reversed in [false, true] {
                let filter = QueryFilter {
                    timestamp_min: min,
                    timestamp_max: max,
                    limit,
                    reversed,
                    ..QueryFilter::default()
                };
                let got = all_pages(&filter, |f| {
                    engine.query_events(f, |_| true).expect("a page")
                });
                let mut expected: Vec<FeedEntry> = all
                    .iter()
                    .filter(|e| e.timestamp >= min && (max == 0 || e.timestamp <= max))
                    .copied()
                    .collect();
                if reversed {
                    expected.reverse();
                }
                assert_eq!(
                    got, expected,
                    "{min}..={max} limit {limit} reversed {reversed}"
                );
                // A page holds `limit` unless it is the last.
                let page = engine.query_events(&filter, |_| true).expect("a page");
                if page.next.is_some() {
                    assert_eq!(page.items.len(), limit as usize);
                }
                let seen = all_pages(&filter, |f| {
                    engine
                        .query_events(f, |e| touches_4(&engine, e))
                        .expect("a page")
                });
                let expected: Vec<FeedEntry> = expected
                    .into_iter()
                    .filter(|e| touches_4(&engine, &e.event))
                    .collect();
                assert_eq!(seen, expected, "visible: {min}..={max} limit {limit}");
            }
        }
    }
}

#[test]
fn events_are_selected_by_time_only_and_bad_filters_are_refused() {
    let engine = history();
    for filter in [
        QueryFilter {
            ledger: 1,
            ..everything()
        },
        QueryFilter {
            code: 1,
            ..everything()
        },
        QueryFilter {
            user_data_64: 1,
            ..everything()
        },
        QueryFilter {
            user_data_128: 1,
            ..everything()
        },
        QueryFilter {
            user_data_32: 1,
            ..everything()
        },
        QueryFilter {
            limit: 0,
            ..everything()
        },
        QueryFilter {
            timestamp_min: 9,
            timestamp_max: 8,
            ..everything()
        },
    ] {
        assert!(
            engine.query_events(&filter, |_| true).is_err(),
            "{filter:?}"
        );
    }
}

#[test]
fn a_page_that_sees_nothing_stops_at_the_scan_bound_and_says_where_to_go_on() {
    // More events than one page examines, none visible: the first page is empty, bounded,
    // and not the last; following `next` ends with nothing.
    let mut engine = Engine::new(EngineConfig { hash_seed: 1 });
    let accounts = [account(2), account(4)];
    engine
        .apply(
            Operation::CreateAccounts,
            T0,
            &encode_batch(&accounts, Account::encode),
        )
        .expect("accounts");
    let per_batch = 8_000;
    let batches = crate::limits::QUERY_SCAN_MAX / per_batch + 1;
    for b in 0..batches {
        let batch: Vec<Transfer> = (0..per_batch)
            .map(|i| Transfer {
                id: 1 + (b * per_batch + i) as u128,
                debit_account_id: 2,
                credit_account_id: 4,
                amount: 1,
                ledger: 1,
                code: 1,
                ..Transfer::default()
            })
            .collect();
        engine
            .apply(
                Operation::CreateTransfers,
                T0 + (b as u64 + 1) * SECOND,
                &encode_batch(&batch, Transfer::encode),
            )
            .expect("transfers");
    }
    let page = engine
        .query_events(&everything(), |_| false)
        .expect("a page");
    assert!(page.items.is_empty());
    assert!(page.next.is_some(), "the scan bound was met before the end");
    let rest = all_pages(&everything(), |f| {
        engine.query_events(f, |_| false).expect("a page")
    });
    assert!(rest.is_empty());
}
