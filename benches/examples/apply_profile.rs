//! Profiling aid: applies uniform transfers and reports apply time only. With `cold`, every batch
//! is generated before any is applied (bodies come from DRAM, as after a network read); with
//! `hot`, each batch is generated right before it is applied (bodies in cache).
//! Run: `cargo run --release -p tally-benches --example apply_profile -- ACCOUNTS TRANSFERS hot|cold`
use std::time::{Duration, Instant};
use tally_benches::{engine_with_accounts, thread_cpu_seconds, Skew, TransferWorkload, EPOCH};
use tally_engine::limits::BATCH_EVENTS_MAX;
use tally_engine::Operation;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let accounts = args.first().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let transfers: usize = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let hot = args.get(2).map(String::as_str) != Some("cold");
    let mut engine = engine_with_accounts(accounts);
    if std::env::var_os("NO_RESERVE").is_none() {
        engine.reserve(0, transfers + BATCH_EVENTS_MAX);
    }
    let mut workload = TransferWorkload::new(accounts, Skew::Uniform, 5);
    let batches = transfers.div_ceil(BATCH_EVENTS_MAX);
    let mut cold: Vec<Vec<u8>> = if hot {
        Vec::new()
    } else {
        (0..batches)
            .map(|_| workload.transfers(BATCH_EVENTS_MAX))
            .collect()
    };
    cold.reverse();
    let mut elapsed = Duration::ZERO;
    let mut cpu = 0.0;
    for i in 0..batches {
        let body = if hot {
            workload.transfers(BATCH_EVENTS_MAX)
        } else {
            cold.pop().expect("generated")
        };
        let start = Instant::now();
        let cpu_start = thread_cpu_seconds();
        let outcome = engine
            .apply(
                Operation::CreateTransfers,
                EPOCH + i as u64 * 1_000_000,
                &body,
            )
            .expect("valid batch");
        cpu += thread_cpu_seconds() - cpu_start;
        elapsed += start.elapsed();
        assert!(outcome.failures.is_empty());
    }
    let seconds = elapsed.as_secs_f64();
    let events = batches * BATCH_EVENTS_MAX;
    println!(
        "{events} transfers, apply {seconds:.3}s wall ({:.0}/s), {cpu:.3}s CPU ({:.0}/s)",
        events as f64 / seconds,
        events as f64 / cpu
    );
}
