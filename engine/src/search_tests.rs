use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::records::{encode_batch, TradeFlags, TransferFlags};
use crate::{EngineConfig, Operation};

const T0: u64 = 1_700_000_000_000_000_000;
const ACCOUNTS: u128 = 60;

/// Accounts 1..=60 on ledgers 1–3 (id % 3 + 1), codes 1–4, user data from a few values;
/// transfers and trades between them with fields from small sets, so filters match often,
/// seldom and never. Returns the engine and every stored transfer's and trade's id.
fn ledger(transfers: usize, seed: u64) -> (Engine, Vec<u128>, Vec<u128>) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut engine = Engine::new(EngineConfig { hash_seed: 7 });
    let accounts: Vec<Account> = (1..=ACCOUNTS)
        .map(|id| Account {
            id,
            ledger: (id % 3 + 1) as u32,
            code: (id % 4 + 1) as u16,
            user_data_128: id % 5,
            user_data_64: (id % 2) as u64,
            ..Account::default()
        })
        .collect();
    let mut timestamp = T0;
    for chunk in accounts.chunks(25) {
        engine
            .apply(
                Operation::CreateAccounts,
                timestamp,
                &encode_batch(chunk, Account::encode),
            )
            .expect("accounts");
        timestamp += 1_000_000;
    }
    let mut transfer_ids = Vec::new();
    let mut next_id = 1_000u128;
    while transfer_ids.len() < transfers {
        let batch: Vec<Transfer> = (0..1_000.min(transfers - transfer_ids.len()))
            .map(|_| {
                let debit = rng.random_range(1..=ACCOUNTS);
                // Another account of the same ledger (ids congruent mod 3).
                let credit = (debit + 3 * rng.random_range(1..=19u128) - 1) % ACCOUNTS + 1;
                next_id += 1;
                Transfer {
                    id: next_id,
                    debit_account_id: debit,
                    credit_account_id: credit,
                    amount: rng.random_range(1..100),
                    user_data_128: rng.random_range(0..3),
                    user_data_64: rng.random_range(0..3),
                    user_data_32: rng.random_range(0..3),
                    ledger: (debit % 3 + 1) as u32,
                    code: rng.random_range(1..5),
                    flags: TransferFlags::default(),
                    ..Transfer::default()
                }
            })
            .collect();
        let outcome = engine
            .apply(
                Operation::CreateTransfers,
                timestamp,
                &encode_batch(&batch, Transfer::encode),
            )
            .expect("transfers");
        assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
        transfer_ids.extend(batch.iter().map(|t| t.id));
        timestamp += 1_000_000_000;
    }
    // Trades: instrument on ledger 2 (ids ≡ 1 mod 3), cash on ledger 1 (ids ≡ 0 mod 3).
    let trades: Vec<Trade> = (0..300u128)
        .map(|i| Trade {
            id: (1 << 100) + i,
            instrument_debit_account_id: 1 + 3 * (i % 19),
            instrument_credit_account_id: 4 + 3 * (i % 19),
            cash_debit_account_id: 6 + 3 * (i % 18),
            cash_credit_account_id: 3 + 3 * (i % 18),
            instrument_ledger: 2,
            cash_ledger: 1,
            quantity: 1,
            cash_amount: 10,
            user_data_64: (i % 3) as u64,
            code: (i % 2 + 1) as u16,
            flags: TradeFlags::default(),
            ..Trade::default()
        })
        .collect();
    let outcome = engine
        .apply(
            Operation::CreateTrades,
            timestamp,
            &encode_batch(&trades, Trade::encode),
        )
        .expect("trades");
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    let trade_ids = trades.iter().map(|t| t.id).collect();
    (engine, transfer_ids, trade_ids)
}

fn in_range(filter: &QueryFilter, timestamp: u64) -> bool {
    timestamp >= filter.timestamp_min
        && (filter.timestamp_max == 0 || timestamp <= filter.timestamp_max)
}

/// Every page of a query, following `next`; also checks each page's size.
pub(crate) fn all_pages<T>(
    filter: &QueryFilter,
    mut page: impl FnMut(&QueryFilter) -> QueryPage<T>,
) -> Vec<T> {
    let mut out = Vec::new();
    let mut current = *filter;
    for _ in 0..100_000 {
        let got = page(&current);
        assert!(got.items.len() <= filter.limit as usize);
        out.extend(got.items);
        match got.next {
            Some(next) => current = filter.after(next),
            None => return out,
        }
    }
    panic!("a query that never ends");
}

/// The reference's records in the order the filter asks.
fn ordered<T>(mut records: Vec<T>, filter: &QueryFilter) -> Vec<T> {
    if filter.reversed {
        records.reverse();
    }
    records
}

fn random_filter(rng: &mut SmallRng, first: u64, last: u64) -> QueryFilter {
    let pick = |rng: &mut SmallRng, values: u32| -> u32 {
        if rng.random_bool(0.5) {
            0
        } else {
            rng.random_range(1..=values)
        }
    };
    let (a, b) = (
        rng.random_range(first..=last),
        rng.random_range(first..=last),
    );
    QueryFilter {
        user_data_128: u128::from(pick(rng, 2)),
        user_data_64: u64::from(pick(rng, 2)),
        user_data_32: 0,
        ledger: pick(rng, 3),
        code: pick(rng, 4) as u16,
        timestamp_min: if rng.random_bool(0.5) { 0 } else { a.min(b) },
        timestamp_max: if rng.random_bool(0.5) { 0 } else { a.max(b) },
        limit: rng.random_range(1..=40),
        reversed: rng.random_bool(0.5),
    }
}

#[test]
fn every_page_of_every_filter_is_what_the_reference_finds() {
    let (engine, transfer_ids, trade_ids) = ledger(5_000, 1);
    let transfers: Vec<Transfer> = transfer_ids
        .iter()
        .map(|&id| engine.lookup_transfer(id).unwrap())
        .collect();
    let trades: Vec<Trade> = trade_ids
        .iter()
        .map(|&id| engine.lookup_trade(id).unwrap())
        .collect();
    let accounts: Vec<Account> = (1..=ACCOUNTS)
        .map(|id| engine.lookup_account(id).unwrap())
        .collect();
    let (first, last) = (T0, transfers.last().unwrap().timestamp + 10);
    let mut rng = SmallRng::seed_from_u64(2);
    let mut matched = 0;
    for round in 0..300 {
        let mut filter = random_filter(&mut rng, first, last);
        // Transfers: every field.
        filter.user_data_32 = rng.random_range(0..3);
        let expected: Vec<Transfer> = ordered(
            transfers
                .iter()
                .filter(|t| {
                    in_range(&filter, t.timestamp)
                        && !differs(filter.user_data_128, t.user_data_128)
                        && !differs(filter.user_data_64, t.user_data_64)
                        && !differs(filter.user_data_32, t.user_data_32)
                        && !differs(filter.ledger, t.ledger)
                        && !differs(filter.code, t.code)
                })
                .copied()
                .collect(),
            &filter,
        );
        let got = all_pages(&filter, |f| engine.query_transfers(f, |_| true).unwrap());
        assert_eq!(got, expected, "round {round}: {filter:?}");
        matched += got.len();
        // Accounts and trades have no user_data_32 (and trades no user_data_128).
        filter.user_data_32 = 0;
        let expected: Vec<Account> = ordered(
            accounts
                .iter()
                .filter(|a| {
                    in_range(&filter, a.timestamp)
                        && !differs(filter.user_data_128, a.user_data_128)
                        && !differs(filter.user_data_64, a.user_data_64)
                        && !differs(filter.ledger, a.ledger)
                        && !differs(filter.code, a.code)
                })
                .copied()
                .collect(),
            &filter,
        );
        let got = all_pages(&filter, |f| engine.query_accounts(f, |_| true).unwrap());
        assert_eq!(got, expected, "round {round}: {filter:?}");
        filter.user_data_128 = 0;
        let expected: Vec<Trade> = ordered(
            trades
                .iter()
                .filter(|t| {
                    in_range(&filter, t.timestamp)
                        && !differs(filter.user_data_64, t.user_data_64)
                        && !differs(filter.code, t.code)
                        && (filter.ledger == 0
                            || filter.ledger == t.instrument_ledger
                            || filter.ledger == t.cash_ledger)
                })
                .copied()
                .collect(),
            &filter,
        );
        let got = all_pages(&filter, |f| engine.query_trades(f, |_| true).unwrap());
        assert_eq!(got, expected, "round {round}: {filter:?}");
    }
    assert!(
        matched > 5_000,
        "the filters matched too little to mean much: {matched}"
    );
}

#[test]
fn a_reader_sees_only_what_it_may_and_pages_count_only_that() {
    let (engine, ..) = ledger(2_000, 3);
    let filter = QueryFilter {
        limit: 7,
        ..QueryFilter::default()
    };
    let visible = |t: &Transfer| t.debit_account_id == 5 || t.credit_account_id == 5;
    let got = all_pages(&filter, |f| engine.query_transfers(f, visible).unwrap());
    assert!(!got.is_empty());
    assert!(got.iter().all(visible));
    let all = all_pages(&filter, |f| engine.query_transfers(f, |_| true).unwrap());
    assert_eq!(got, all.into_iter().filter(visible).collect::<Vec<_>>());
    // A page stops at `limit` visible records, not at `limit` examined ones.
    let first = engine.query_transfers(&filter, visible).unwrap();
    assert_eq!(first.items.len(), 7);
}

#[test]
fn positions_are_the_balances_as_of_the_time_asked() {
    let (engine, transfer_ids, _) = ledger(3_000, 4);
    let middle = engine
        .lookup_transfer(transfer_ids[1_500])
        .unwrap()
        .timestamp;
    for at in [0, middle, T0 - 1] {
        let filter = QueryFilter {
            ledger: 2,
            limit: 9,
            ..QueryFilter::default()
        };
        let got = all_pages(&filter, |f| {
            engine.query_positions(f, at, |_| true).unwrap()
        });
        // Before any account existed there is none to show.
        if at == T0 - 1 {
            assert!(got.is_empty());
            continue;
        }
        let expected: Vec<u128> = (1..=ACCOUNTS).filter(|id| id % 3 + 1 == 2).collect();
        assert_eq!(
            got.iter().map(|p| p.account.id).collect::<Vec<_>>(),
            expected
        );
        for position in &got {
            let id = position.account.id;
            let want = if at == 0 {
                let a = engine.lookup_account(id).unwrap();
                Balances {
                    debits_pending: a.debits_pending,
                    debits_posted: a.debits_posted,
                    credits_pending: a.credits_pending,
                    credits_posted: a.credits_posted,
                }
            } else {
                engine.balances_as_of(id, at).unwrap()
            };
            assert_eq!(position.balances, want, "account {id} at {at}");
        }
    }
    // As of the middle, the balances differ from now's for some account (the test would
    // prove nothing if the history did not move them).
    let filter = QueryFilter {
        limit: 100,
        ..QueryFilter::default()
    };
    let then = engine.query_positions(&filter, middle, |_| true).unwrap();
    let now = engine.query_positions(&filter, 0, |_| true).unwrap();
    assert_ne!(then.items, now.items);
}

#[test]
fn a_page_examines_a_bounded_number_of_records_and_says_where_to_go_on() {
    let (engine, transfer_ids, _) = ledger(QUERY_SCAN_MAX + 10_000, 5);
    // No transfer has code 9: the first page examines its budget, finds nothing, and says
    // where the next starts; the second finishes the range.
    let filter = QueryFilter {
        code: 9,
        limit: 10,
        ..QueryFilter::default()
    };
    let first = engine.query_transfers(&filter, |_| true).unwrap();
    assert!(first.items.is_empty());
    let next = first.next.expect("more to scan");
    // Just after the last one examined.
    let last_examined = engine
        .lookup_transfer(transfer_ids[QUERY_SCAN_MAX - 1])
        .unwrap()
        .timestamp;
    assert_eq!(next, last_examined + 1);
    let second = engine
        .query_transfers(&filter.after(next), |_| true)
        .unwrap();
    assert!(second.items.is_empty());
    assert_eq!(second.next, None);
    // Newest first alike.
    let reversed = QueryFilter {
        reversed: true,
        ..filter
    };
    let first = engine.query_transfers(&reversed, |_| true).unwrap();
    let next = first.next.expect("more to scan");
    let last_examined = engine
        .lookup_transfer(transfer_ids[transfer_ids.len() - QUERY_SCAN_MAX])
        .unwrap()
        .timestamp;
    assert_eq!(next, last_examined - 1);
    let second = engine
        .query_transfers(&reversed.after(next), |_| true)
        .unwrap();
    assert!(second.items.is_empty());
    assert_eq!(second.next, None);
    // Positions before the first transfer: every account has ~9,000 changes after it, but a
    // walk starts at the account's oldest mark after the time (every 64th change), so each
    // account costs at most 1 + 64 × QUERY_WALK_COST records and one page holds them all,
    // each with nothing moved yet (without the marks this took several pages).
    let before = engine.lookup_transfer(transfer_ids[0]).unwrap().timestamp - 1;
    let all = QueryFilter {
        limit: 8_189,
        ..QueryFilter::default()
    };
    let first = engine.query_positions(&all, before, |_| true).unwrap();
    assert!(first.next.is_none() && first.items.len() == ACCOUNTS as usize);
    let positions = all_pages(&all, |f| {
        engine.query_positions(f, before, |_| true).unwrap()
    });
    assert_eq!(positions.len(), ACCOUNTS as usize);
    assert!(positions.iter().all(|p| p.balances == Balances::default()));
}

#[test]
fn filters_that_cannot_match_are_refused_with_a_reason() {
    let (engine, ..) = ledger(10, 6);
    let base = QueryFilter {
        limit: 1,
        ..QueryFilter::default()
    };
    let zero = QueryFilter { limit: 0, ..base };
    assert_eq!(
        engine.query_transfers(&zero, |_| true),
        Err(QueryError::LimitMustNotBeZero)
    );
    let backwards = QueryFilter {
        timestamp_min: 5,
        timestamp_max: 4,
        ..base
    };
    assert_eq!(
        engine.query_accounts(&backwards, |_| true),
        Err(QueryError::TimestampMinExceedsMax)
    );
    let udata32 = QueryFilter {
        user_data_32: 1,
        ..base
    };
    assert_eq!(
        engine.query_accounts(&udata32, |_| true),
        Err(QueryError::FieldNotInRecord("user_data_32"))
    );
    let udata128 = QueryFilter {
        user_data_128: 1,
        ..base
    };
    assert_eq!(
        engine.query_trades(&udata128, |_| true),
        Err(QueryError::FieldNotInRecord("user_data_128"))
    );
}
