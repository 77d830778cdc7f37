//! What a page of a query by field costs the node that serves it (it holds the applied state
//! while it reads): a filter that matches nothing (the page examines its whole bound,
//! `QUERY_SCAN_MAX` records), one that matches everything (a full page of 8,189 records), and a
//! page of positions now and as of the middle of the history (each account's history walked
//! back to it, counted against the same bound).
//!
//! 10,000 accounts; `TALLY_BENCH_TRANSFERS` transfers (default 10M) applied in full batches;
//! medians of 7 pages. Queries keep no index: memory per stored event is unchanged.
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
}
