//! Statements and balances-as-of over long histories: through the marks (every 64th change
//! of an account, every change with the `history` flag), against the plain walk back from the
//! newest event, with chains rolled back across mark boundaries and after a restore.

use crate::records::encode_batch;
use crate::state::HISTORY_MARK_EVERY;
use crate::*;

const SECOND: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * SECOND;

fn transfer(id: u128, debit: u128, credit: u128, amount: u128, n: u64) -> Transfer {
    Transfer {
        id,
        debit_account_id: debit,
        credit_account_id: credit,
        amount,
        ledger: 1,
        code: 1 + (n % 3) as u16,
        user_data_64: n % 5,
        ..Transfer::default()
    }
}

/// Accounts 1 and 2 without the `history` flag, 3 with it; 400 batches of transfers between
/// them, with pending transfers posted and voided, and a linked chain that fails (its first
/// transfer stored, then undone) in every seventh batch.
fn busy_engine() -> Engine {
    let mut engine = Engine::new(EngineConfig { hash_seed: 3 });
    let accounts: Vec<Account> = [(1, AccountFlags::default()), (2, AccountFlags::default())]
        .into_iter()
        .chain([(3, AccountFlags::HISTORY)])
        .map(|(id, flags)| Account {
            id,
            ledger: 1,
            code: 1,
            flags,
            ..Account::default()
        })
        .collect();
    let outcome = engine
        .apply(
            Operation::CreateAccounts,
            T0,
            &encode_batch(&accounts, Account::encode),
        )
        .expect("valid");
    assert!(outcome.failures.is_empty());
    for n in 0..400u64 {
        let id = 1_000 + u128::from(n) * 10;
        let mut batch = vec![
            transfer(id, 1, 2, u128::from(n) + 1, n),
            transfer(id + 1, 2, 3, 1, n),
        ];
        if n % 5 == 0 {
            batch.push(Transfer {
                flags: TransferFlags::PENDING,
                ..transfer(id + 2, 3, 1, 4, n)
            });
            let settle = if n % 10 == 0 {
                TransferFlags::POST_PENDING_TRANSFER
            } else {
                TransferFlags::VOID_PENDING_TRANSFER
            };
            batch.push(Transfer {
                pending_id: id + 2,
                flags: settle,
                amount: if n % 10 == 0 { 3 } else { 0 },
                ..transfer(id + 3, 3, 1, 0, n)
            });
        }
        if n % 7 == 0 {
            // A chain whose second transfer names no account: the first is undone.
            batch.push(Transfer {
                flags: TransferFlags::LINKED,
                ..transfer(id + 4, 1, 2, 5, n)
            });
            batch.push(transfer(id + 5, 1, 99, 5, n));
        }
        let outcome = engine
            .apply(
                Operation::CreateTransfers,
                T0 + (n + 1) * SECOND,
                &encode_batch(&batch, Transfer::encode),
            )
            .expect("valid");
        let expected = if n % 7 == 0 { 2 } else { 0 };
        assert_eq!(outcome.failures.len(), expected, "batch {n}: {outcome:?}");
    }
    engine
}

/// The account's whole statement, oldest first, by the plain walk back from its newest event,
/// following each page's `next`.
fn whole(engine: &Engine, id: u128) -> Vec<StatementEntry> {
    let mut entries = Vec::new();
    let mut max = 0;
    loop {
        let page = engine
            .statement(&StatementFilter {
                account_id: id,
                timestamp_max: max,
                limit: 8_189,
                reversed: true,
                ..StatementFilter::default()
            })
            .expect("a statement");
        entries.extend(page.items);
        match page.next {
            Some(next) => max = next,
            None => break,
        }
    }
    entries.reverse();
    entries
}

fn check(engine: &Engine) {
    for id in [1u128, 2, 3] {
        let all = whole(engine, id);
        assert!(
            all.len() > 3 * HISTORY_MARK_EVERY as usize,
            "{id}: {}",
            all.len()
        );
        let slot = engine.find_account(id).expect("exists");
        let marks = engine.accounts.get(slot).history.events.len();
        let expected_marks = if id == 3 {
            all.len()
        } else {
            all.len() / HISTORY_MARK_EVERY as usize
        };
        assert_eq!(marks, expected_marks, "account {id}'s marks");
        let current = engine.lookup_account(id).expect("exists");
        let last = all.last().expect("entries").balances_after;
        assert_eq!(
            (last.debits_posted, last.credits_posted, last.debits_pending),
            (
                current.debits_posted,
                current.credits_posted,
                current.debits_pending
            )
        );
        // Balances as of every time (and just before it): the last entry at or before it.
        for (i, entry) in all.iter().enumerate() {
            let got = engine.balances_as_of(id, entry.timestamp).expect("as of");
            assert_eq!(got, entry.balances_after, "{id} as of entry {i}");
            let before = engine
                .balances_as_of(id, entry.timestamp - 1)
                .expect("as of");
            let expected = i
                .checked_sub(1)
                .map_or(Balances::default(), |p| all[p].balances_after);
            assert_eq!(before, expected, "{id} as of just before entry {i}");
        }
        // Ranges, limits and both directions against the whole statement.
        let times: Vec<u64> = all.iter().map(|e| e.timestamp).collect();
        let mut bounds = vec![0u64, 1, T0, u64::MAX];
        for t in times.iter().step_by(29) {
            bounds.extend([t - 1, *t, t + 1]);
        }
        for (k, &min) in bounds.iter().enumerate() {
            for &max in bounds.iter().skip(k % 5).step_by(7) {
                if max != 0 && min > max {
                    continue;
                }
                for limit in [1u32, 7, 64, 65, 8_189] {
                    for reversed in [false, true] {
                        let filter = StatementFilter {
                            account_id: id,
                            timestamp_min: min,
                            timestamp_max: max,
                            limit,
                            reversed,
                            ..StatementFilter::default()
                        };
                        let upper = if max == 0 { u64::MAX } else { max };
                        let in_range = all
                            .iter()
                            .filter(|e| min <= e.timestamp && e.timestamp <= upper);
                        let in_range: Vec<StatementEntry> = in_range.copied().collect();
                        let ordered: Vec<StatementEntry> = if reversed {
                            in_range.iter().rev().copied().collect()
                        } else {
                            in_range
                        };
                        let expected = &ordered[..ordered.len().min(limit as usize)];
                        let got = engine.statement(&filter).expect("a statement");
                        assert_eq!(got.items, expected, "{filter:?}");
                        // `next` is the first entry left over, if any (no page here is long
                        // enough to meet the walk bound).
                        let left = ordered.get(limit as usize).map(|e| e.timestamp);
                        assert_eq!(got.next, left, "{filter:?}");
                    }
                }
            }
        }
        // Oldest first in pages of 50, each starting at the page before's `next`: the whole
        // statement.
        let mut paged = Vec::new();
        let mut from = 0;
        loop {
            let page = engine
                .statement(&StatementFilter {
                    account_id: id,
                    timestamp_min: from,
                    limit: 50,
                    ..StatementFilter::default()
                })
                .expect("a page");
            assert!(page.items.len() == 50 || page.next.is_none());
            paged.extend(page.items);
            match page.next {
                Some(next) => from = next,
                None => break,
            }
        }
        assert_eq!(paged, all, "account {id} in pages");
        // The account filter through the marks: credits only, and one code.
        let credits = engine
            .statement(&StatementFilter {
                account_id: id,
                limit: 8_189,
                credits: true,
                code: 2,
                ..StatementFilter::default()
            })
            .expect("a statement")
            .items;
        let expected: Vec<StatementEntry> = all
            .iter()
            .filter(|e| match e.event {
                StatementEvent::Transfer(t) => t.credit_account_id == id && t.code == 2,
                _ => false,
            })
            .copied()
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(credits, expected, "account {id}: credits with code 2");
    }
}

/// Proves statements and balances-as-of through the marks equal the plain walk, for every
/// range, limit and direction tried, paged or not, with chains undone across marks, and
/// again on an engine restored from a snapshot (whose marks are rebuilt, not stored).
#[test]
fn statements_and_as_of_through_marks() {
    let mut engine = busy_engine();
    check(&engine);
    let snapshot = engine.snapshot();
    let restored = Engine::restore(&snapshot, EngineConfig { hash_seed: 3 }).expect("restores");
    check(&restored);
    for id in [1u128, 2, 3] {
        assert_eq!(whole(&engine, id), whole(&restored, id));
    }
}

/// Proves a statement's walk is bounded: account 1's history is longer than one page may walk
/// (`QUERY_SCAN_MAX`), and a filter keeps one event in 100,000 of it. Each page, either way,
/// stops at the bound with what it found (fewer than its limit, perhaps none) and a `next`;
/// following `next` gives exactly the kept events, in order, then ends.
#[test]
fn a_rare_filter_over_a_long_history_answers_in_bounded_pages() {
    let mut engine = Engine::new(EngineConfig { hash_seed: 9 });
    let accounts: Vec<Account> = (1..=2)
        .map(|id| Account {
            id,
            ledger: 1,
            code: 1,
            ..Account::default()
        })
        .collect();
    engine
        .apply(
            Operation::CreateAccounts,
            T0,
            &encode_batch(&accounts, Account::encode),
        )
        .expect("valid");
    let total = crate::limits::QUERY_SCAN_MAX * 5 / 2;
    let rare = |n: usize| n % 100_000 == 99_999;
    for (b, chunk) in (0..total).collect::<Vec<_>>().chunks(8_000).enumerate() {
        let batch: Vec<Transfer> = chunk
            .iter()
            .map(|&n| Transfer {
                code: if rare(n) { 2 } else { 1 },
                ..transfer(n as u128 + 1, 1, 2, 1, 0)
            })
            .collect();
        engine
            .apply(
                Operation::CreateTransfers,
                T0 + (b as u64 + 1) * SECOND,
                &encode_batch(&batch, Transfer::encode),
            )
            .expect("valid");
    }
    let expected: Vec<u128> = (0..total)
        .filter(|&n| rare(n))
        .map(|n| n as u128 + 1)
        .collect();
    assert_eq!(expected.len(), 13);
    for reversed in [false, true] {
        let first = StatementFilter {
            account_id: 1,
            limit: 8_189,
            reversed,
            code: 2,
            ..StatementFilter::default()
        };
        let (mut got, mut pages, mut current) = (Vec::new(), 0, first);
        loop {
            let page = engine.statement(&current).expect("a page");
            pages += 1;
            got.extend(page.items.iter().map(|e| match e.event {
                StatementEvent::Transfer(t) => t.id,
                other => panic!("{other:?}"),
            }));
            match page.next {
                Some(next) if reversed => current.timestamp_max = next,
                Some(next) => current.timestamp_min = next,
                None => break,
            }
            assert!(pages < 100, "no end");
        }
        if reversed {
            got.reverse();
        }
        assert_eq!(got, expected, "reversed {reversed}");
        // 1.3M events at 524,288 a page: three pages, the first two stopped by the bound.
        assert_eq!(pages, 3, "reversed {reversed}");
    }
}
