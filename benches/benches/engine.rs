//! Criterion benchmarks of `Engine::apply`: events per second on one core.
//!
//! Each iteration applies one full batch (8,189 events) to an engine that keeps growing, as a
//! replica's does; batch generation is outside the timed region. The engine is rebuilt (untimed)
//! once it holds `STORED_EVENTS_RESET` events so memory stays bounded however long Criterion
//! runs; the figures are therefore for an engine holding 0–2M events. Like a replica at start,
//! the benchmark reserves the engine's capacity up front (`Engine::reserve`, untimed), so the
//! timed region never waits for page faults; `engine_memory` measures growth without it.
//!
//! Run: `cargo bench -p tally-benches --bench engine`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tally_benches::{
    engine_with_accounts, events_in, Skew, TradeWorkload, TransferWorkload, EPOCH,
};
use tally_engine::limits::BATCH_EVENTS_MAX;
use tally_engine::{Engine, Operation};

const STORED_EVENTS_RESET: usize = 2_000_000;

/// Times `apply` of the bodies `next` produces, one Criterion iteration per call of `next`.
fn run(
    c: &mut Criterion,
    name: &str,
    events_per_iteration: usize,
    make_engine: impl Fn() -> Engine,
    operation: Operation,
    mut next: impl FnMut() -> Vec<Vec<u8>>,
) {
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(events_per_iteration as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.warm_up_time(Duration::from_secs(2));
    // A replica reserves its capacity at start; so does the benchmark, untimed.
    let make_engine = || {
        let mut engine = make_engine();
        engine.reserve(0, STORED_EVENTS_RESET + 2 * BATCH_EVENTS_MAX);
        engine
    };
    let mut engine = make_engine();
    let mut timestamp = EPOCH + 1_000_000_000;
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                if engine.transfers_count() + engine.trades_count() > STORED_EVENTS_RESET {
                    engine = make_engine();
                }
                let bodies = next();
                let start = Instant::now();
                for body in &bodies {
                    let outcome = engine
                        .apply(operation, timestamp, body)
                        .expect("valid batch");
                    assert!(outcome.failures.is_empty(), "{:?}", &outcome.failures[..1]);
                    timestamp += 1_000_000;
                }
                elapsed += start.elapsed();
                assert_eq!(
                    bodies.iter().map(|b| events_in(b)).sum::<usize>(),
                    events_per_iteration
                );
            }
            elapsed
        })
    });
    group.finish();
}

fn transfers(c: &mut Criterion, name: &str, accounts: usize, skew: Skew) {
    let mut workload = TransferWorkload::new(accounts, skew, 1);
    run(
        c,
        name,
        BATCH_EVENTS_MAX,
        || engine_with_accounts(accounts),
        Operation::CreateTransfers,
        || vec![workload.transfers(BATCH_EVENTS_MAX)],
    );
}

fn engine_benches(c: &mut Criterion) {
    transfers(c, "transfers_10k_accounts_uniform", 10_000, Skew::Uniform);
    transfers(c, "transfers_1m_accounts_uniform", 1_000_000, Skew::Uniform);
    transfers(c, "transfers_10k_accounts_zipf", 10_000, Skew::Zipf(1.0));

    let mut trades = TradeWorkload::new(10_000, 2);
    run(
        c,
        "trades_10k_participants",
        BATCH_EVENTS_MAX,
        || TradeWorkload::engine(10_000),
        Operation::CreateTrades,
        || vec![trades.trades(BATCH_EVENTS_MAX)],
    );

    let half = BATCH_EVENTS_MAX / 2;
    let mut two_phase = TransferWorkload::new(10_000, Skew::Uniform, 3);
    run(
        c,
        "pending_then_post_10k_accounts",
        2 * half,
        || engine_with_accounts(10_000),
        Operation::CreateTransfers,
        || {
            let (pending, posts) = two_phase.pending_then_post(half);
            vec![pending, posts]
        },
    );
}

criterion_group!(benches, engine_benches);
criterion_main!(benches);
