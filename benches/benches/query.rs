//! What a page of a query by field costs the node that serves it (it holds the applied state
//! while it reads): a filter that matches nothing (the page examines its whole bound,
//! `QUERY_SCAN_MAX` records), one that matches everything (a full page of 8,189 records), and a
//! page of positions now and as of the middle of the history (each account's history walked
//! back to it, counted against the same bound).
//!
//! 10,000 accounts; `TALLY_BENCH_TRANSFERS` transfers (default 10M) applied in full batches;
//! medians of 7 pages. Queries keep no index: memory per stored event is unchanged.
//!
//! Then a long statement: two accounts with `TALLY_BENCH_STATEMENT` transfers between them
//! (default 1M, so each has 1M changes), one account's whole statement read in pages of 8,189,
//! oldest first (each page from one past the last) and newest first, and a balance as of
//! the oldest change: what the history marks (every 64th change) make of an old start.
//!
//! Run: `cargo bench -p tally-benches --bench query`.

use std::time::{Duration, Instant};

use tally_benches::{engine_with_accounts, Skew, TransferWorkload, EPOCH};
use tally_engine::limits::{BATCH_EVENTS_MAX, QUERY_SCAN_MAX};
use tally_engine::{Operation, QueryFilter};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn timed<T>(mut page: impl FnMut() -> T) -> (Duration, T) {
    let mut samples = Vec::new();
    let mut last = None;
    for _ in 0..7 {
        let started = Instant::now();
        last = Some(page());
        samples.push(started.elapsed());
    }
    (median(samples), last.expect("seven pages"))
}

fn main() {
    let transfers: usize = std::env::var("TALLY_BENCH_TRANSFERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000_000);
    let accounts = 10_000;
    let mut engine = engine_with_accounts(accounts);
    let mut workload = TransferWorkload::new(accounts, Skew::Uniform, 7);
    let mut timestamp = EPOCH + 1_000_000_000;
    let mut applied = 0;
    let mut middle = 0;
    while applied < transfers {
        let n = (transfers - applied).min(BATCH_EVENTS_MAX);
        let outcome = engine
            .apply(
                Operation::CreateTransfers,
                timestamp,
                &workload.transfers(n),
            )
            .expect("valid batch");
        assert!(outcome.failures.is_empty());
        applied += n;
        if middle == 0 && applied >= transfers / 2 {
            middle = timestamp + n as u64;
        }
        timestamp += 1_000_000;
    }
    let page = QueryFilter {
        limit: 8_189,
        ..QueryFilter::default()
    };
    println!("{transfers} transfers, {accounts} accounts; one page each, median of 7:");
    let none = QueryFilter { code: 2, ..page };
    let (took, got) = timed(|| engine.query_transfers(&none, |_| true).unwrap());
    assert!(got.items.is_empty() && got.next.is_some());
    println!(
        "  transfers, no match: {:>8.2} ms for {QUERY_SCAN_MAX} examined ({:.1} M records/s)",
        took.as_secs_f64() * 1e3,
        QUERY_SCAN_MAX as f64 / took.as_secs_f64() / 1e6
    );
    let every = QueryFilter { code: 1, ..page };
    let (took, got) = timed(|| engine.query_transfers(&every, |_| true).unwrap());
    assert_eq!(got.items.len(), 8_189);
    println!(
        "  transfers, all match: {:>7.2} ms for a page of 8,189",
        took.as_secs_f64() * 1e3
    );
    let (took, got) = timed(|| engine.query_positions(&page, 0, |_| true).unwrap());
    assert_eq!(got.items.len(), 8_189);
    println!(
        "  positions now:        {:>7.2} ms for a page of 8,189",
        took.as_secs_f64() * 1e3
    );
    let (took, got) = timed(|| engine.query_positions(&page, middle, |_| true).unwrap());
    println!(
        "  positions, middle:    {:>7.2} ms for a page of {} (each history walked back ~{} events)",
        took.as_secs_f64() * 1e3,
        got.items.len(),
        transfers / accounts,
    );
    long_statement();
}

/// One account's whole statement in pages, both ways, over `TALLY_BENCH_STATEMENT` changes.
fn long_statement() {
    use tally_engine::records::{encode_batch, Transfer};
    use tally_engine::StatementFilter;
    let changes: usize = std::env::var("TALLY_BENCH_STATEMENT")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let mut engine = engine_with_accounts(2);
    let mut timestamp = EPOCH + 1_000_000_000;
    let mut applied = 0;
    while applied < changes {
        let n = (changes - applied).min(BATCH_EVENTS_MAX);
        let batch: Vec<Transfer> = (applied..applied + n)
            .map(|i| Transfer {
                id: 1 + i as u128,
                debit_account_id: 1 + (i % 2) as u128,
                credit_account_id: 2 - (i % 2) as u128,
                amount: 1,
                ledger: 1,
                code: 1,
                ..Transfer::default()
            })
            .collect();
        let outcome = engine
            .apply(
                Operation::CreateTransfers,
                timestamp,
                &encode_batch(&batch, Transfer::encode),
            )
            .expect("valid batch");
        assert!(outcome.failures.is_empty());
        applied += n;
        timestamp += 1_000_000;
    }
    let page = StatementFilter {
        account_id: 1,
        limit: 8_189,
        ..StatementFilter::default()
    };
    let started = Instant::now();
    let (mut pages, mut read, mut from) = (0, 0, 0);
    loop {
        let got = engine
            .statement(&StatementFilter {
                timestamp_min: from,
                ..page
            })
            .unwrap();
        pages += 1;
        read += got.items.len();
        match got.next {
            Some(next) => from = next,
            None => break,
        }
    }
    let oldest_first = started.elapsed();
    assert_eq!(read, changes);
    let started = Instant::now();
    let (mut max, mut newest_read) = (0, 0);
    loop {
        let got = engine
            .statement(&StatementFilter {
                timestamp_max: max,
                reversed: true,
                ..page
            })
            .unwrap();
        newest_read += got.items.len();
        match got.next {
            Some(next) => max = next,
            None => break,
        }
    }
    let newest_first = started.elapsed();
    assert_eq!(newest_read, changes);
    let (took, _) = timed(|| engine.balances_as_of(1, EPOCH + 1_000_000_000).unwrap());
    println!("one account's statement over {changes} changes, pages of 8,189:");
    println!(
        "  oldest first: {pages} pages in {:>8.1} ms ({:.2} ms a page)",
        oldest_first.as_secs_f64() * 1e3,
        oldest_first.as_secs_f64() * 1e3 / pages as f64
    );
    println!(
        "  newest first: {pages} pages in {:>8.1} ms",
        newest_first.as_secs_f64() * 1e3
    );
    println!(
        "  balances as of its first change: {:.3} ms",
        took.as_secs_f64() * 1e3
    );
}
