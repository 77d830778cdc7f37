//! What a snapshot costs the apply path, as the state grows: the pause of taking its frozen
//! view (`Engine::freeze`, done while the state machine is held) and the first batch applied
//! after it (which copies the open chunk it shares with the view), against serialising the
//! whole state (`FrozenState::snapshot`, done off the apply path, and what the apply path paid
//! before frozen views).
//!
//! 10,000 accounts; transfers applied in full batches up to each size in `TALLY_BENCH_SIZES`
//! (comma-separated, default 1M,3M,10M); at each size the median of 5 freezes is reported.
//!
//! Run: `cargo bench -p tally-benches --bench snapshot_pause`.

use std::time::{Duration, Instant};

use tally_benches::{engine_with_accounts, Skew, TransferWorkload, EPOCH};
use tally_engine::limits::BATCH_EVENTS_MAX;
use tally_engine::Operation;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let sizes: Vec<usize> = std::env::var("TALLY_BENCH_SIZES")
        .unwrap_or_else(|_| "1000000,3000000,10000000".to_owned())
        .split(',')
        .filter_map(|size| size.trim().parse().ok())
        .collect();
    let accounts = 10_000;
    let mut engine = engine_with_accounts(accounts);
    let mut workload = TransferWorkload::new(accounts, Skew::Uniform, 7);
    let mut timestamp = EPOCH + 1_000_000_000;
    let mut applied = 0;
    let mut apply = |engine: &mut tally_engine::Engine, n: usize| {
        let body = workload.transfers(n);
        let started = Instant::now();
        let outcome = engine
            .apply(Operation::CreateTransfers, timestamp, &body)
            .expect("valid batch");
        assert!(outcome.failures.is_empty());
        timestamp += 1_000_000;
        started.elapsed()
    };
    println!(
        "{:>12}  {:>14}  {:>20}  {:>18}  {:>16}",
        "transfers",
        "freeze (pause)",
        "next batch after it",
        "batch without one",
        "serialise (off)"
    );
    for size in sizes {
        while applied < size {
            let n = (size - applied).min(BATCH_EVENTS_MAX);
            apply(&mut engine, n);
            applied += n;
        }
        let (mut freezes, mut after, mut plain) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..5 {
            plain.push(apply(&mut engine, BATCH_EVENTS_MAX));
            let started = Instant::now();
            let frozen = engine.freeze();
            freezes.push(started.elapsed());
            after.push(apply(&mut engine, BATCH_EVENTS_MAX));
            drop(frozen);
            applied += 2 * BATCH_EVENTS_MAX;
        }
        let frozen = engine.freeze();
        let started = Instant::now();
        let bytes = frozen.snapshot().len();
        let serialise = started.elapsed();
        drop(frozen);
        println!(
            "{applied:>12}  {:>11.3} ms  {:>17.3} ms  {:>15.3} ms  {:>10.0} ms ({} MB)",
            median(freezes).as_secs_f64() * 1e3,
            median(after).as_secs_f64() * 1e3,
            median(plain).as_secs_f64() * 1e3,
            serialise.as_secs_f64() * 1e3,
            bytes / 1_000_000,
        );
    }
}
