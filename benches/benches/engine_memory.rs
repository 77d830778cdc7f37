//! Memory per account and per stored transfer, indexes and history included, and the
//! throughput of one long run.
//!
//! Creates `ACCOUNTS` accounts, then applies `TRANSFERS` uniform transfers in full batches, and
//! prints the engine's own accounting by part (allocator capacity, not length) and the
//! process's resident set growth. Then `FAILED` transfers that fail transiently (a credit
//! account that does not exist), whose ids the engine remembers: bytes per failed id, and the
//! cost of answering a retry of each (`id_already_failed`, one index probe).
//!
//! Last, the replicated reply table (`tally_raft::replication::replies`) filled to its client
//! bound with its per-client window of answers: resident growth per client and per answer
//! against its own accounting, and the rate of recording and of answering a retry.
//!
//! Run: `cargo bench -p tally-benches --bench engine_memory` (env `TALLY_BENCH_ACCOUNTS`,
//! `TALLY_BENCH_TRANSFERS`, `TALLY_BENCH_FAILED` override the sizes).

use std::time::Instant;

use tally_benches::{engine_with_accounts, rss_bytes, Skew, TransferWorkload, EPOCH};
use tally_engine::limits::BATCH_EVENTS_MAX;
use tally_engine::{EventResult, Operation, Transfer};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; this binary takes no arguments of its own.
    let accounts = env_or("TALLY_BENCH_ACCOUNTS", 1_000_000);
    let transfers = env_or("TALLY_BENCH_TRANSFERS", 10_000_000);
    let failed = env_or("TALLY_BENCH_FAILED", 1_000_000);

    let rss_start = rss_bytes();
    let started = Instant::now();
    let mut engine = engine_with_accounts(accounts);
    let accounts_elapsed = started.elapsed();
    let after_accounts = engine.memory_usage();
    let rss_accounts = rss_bytes();

    let mut workload = TransferWorkload::new(accounts, Skew::Uniform, 9);
    let mut applied = 0;
    let mut apply_seconds = 0.0;
    let mut timestamp = EPOCH + 1_000_000_000;
    while applied < transfers {
        let n = (transfers - applied).min(BATCH_EVENTS_MAX);
        let body = workload.transfers(n);
        let start = Instant::now();
        let outcome = engine
            .apply(Operation::CreateTransfers, timestamp, &body)
            .expect("valid batch");
        apply_seconds += start.elapsed().as_secs_f64();
        assert!(outcome.failures.is_empty());
        applied += n;
        timestamp += 1_000_000;
    }
    let usage = engine.memory_usage();
    let rss_end = rss_bytes();

    let per_account = after_accounts.total() as f64 / accounts as f64;
    let transfer_bytes = usage.total() - after_accounts.total();
    println!(
        "accounts: {accounts}, created in {:.2}s",
        accounts_elapsed.as_secs_f64()
    );
    println!(
        "transfers: {transfers}, applied at {:.0} transfers/s (apply time only)",
        transfers as f64 / apply_seconds
    );
    println!("engine accounting after accounts: {after_accounts:?}");
    println!("engine accounting after transfers: {usage:?}");
    println!("bytes per account (state + index + empty history): {per_account:.1}");
    println!(
        "bytes per stored transfer (arena + id index + 2 history entries): {:.1}",
        transfer_bytes as f64 / transfers as f64
    );
    println!(
        "  of which: transfer {:.1}, id index {:.1}, histories {:.1}",
        (usage.transfers - after_accounts.transfers) as f64 / transfers as f64,
        (usage.event_index - after_accounts.event_index) as f64 / transfers as f64,
        (usage.account_histories - after_accounts.account_histories) as f64 / transfers as f64,
    );
    println!(
        "process RSS: start {:.0} MiB, after accounts {:.0} MiB, end {:.0} MiB; growth per transfer {:.1} bytes",
        rss_start as f64 / 1048576.0,
        rss_accounts as f64 / 1048576.0,
        rss_end as f64 / 1048576.0,
        (rss_end - rss_accounts) as f64 / transfers as f64
    );

    failed_ids(&mut engine, accounts, failed, timestamp);
    drop(engine);
    reply_table();
}

/// Fills a reply table with `REPLY_CLIENTS_MAX` clients of `REPLIES_PER_CLIENT_MAX` answers
/// each (no failures: a create that succeeded whole, the common case), then answers a retry of
/// every one; prints resident growth and the table's accounting per client and per answer.
fn reply_table() {
    use tally_raft::replication::replies::{
        Origin, ReplyTable, REPLIES_PER_CLIENT_MAX, REPLY_CLIENTS_MAX,
    };
    let origin = |client: usize, number: usize| Origin {
        client: (client as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835),
        number: number as u64,
        digest: (number as u128) << 64 | client as u128,
    };
    let outcome = Ok(tally_engine::BatchOutcome {
        failures: Vec::new(),
        timestamp_first: EPOCH,
        timestamp_last: EPOCH + 8_188,
    });
    let rss_before = rss_bytes();
    let mut table = ReplyTable::default();
    let answers = REPLY_CLIENTS_MAX * REPLIES_PER_CLIENT_MAX;
    let start = Instant::now();
    let mut log_index = 1;
    for number in 1..=REPLIES_PER_CLIENT_MAX {
        for client in 0..REPLY_CLIENTS_MAX {
            table.record(&origin(client, number), log_index, &outcome);
            log_index += 1;
        }
    }
    let recorded = answers as f64 / start.elapsed().as_secs_f64();
    let rss_after = rss_bytes();
    let start = Instant::now();
    for number in 1..=REPLIES_PER_CLIENT_MAX {
        for client in 0..REPLY_CLIENTS_MAX {
            let answer = table.answer(&origin(client, number), log_index);
            assert!(answer.is_some());
            log_index += 1;
        }
    }
    let answered = answers as f64 / start.elapsed().as_secs_f64();
    // What a snapshot's view of the table costs the apply path (`get_snapshot_builder`).
    let start = Instant::now();
    let copy = table.clone();
    let copied = start.elapsed();
    drop(copy);
    assert_eq!(table.clients(), REPLY_CLIENTS_MAX);
    println!(
        "reply table: {} clients × {} answers; accounted {:.1} MiB, resident growth {:.1} MiB \
         ({:.1} bytes per answer, {:.0} per client); recorded at {recorded:.0}/s, retries \
         answered at {answered:.0}/s; a snapshot's copy of it took {:.1} ms",
        REPLY_CLIENTS_MAX,
        REPLIES_PER_CLIENT_MAX,
        table.bytes() as f64 / 1048576.0,
        rss_after.saturating_sub(rss_before) as f64 / 1048576.0,
        rss_after.saturating_sub(rss_before) as f64 / answers as f64,
        rss_after.saturating_sub(rss_before) as f64 / REPLY_CLIENTS_MAX as f64,
        copied.as_secs_f64() * 1e3,
    );
}

/// Applies `count` transfers that fail `credit_account_not_found` (ids never used before),
/// then the same records again (each answers `id_already_failed`); prints bytes per
/// remembered id and the rate of each pass.
fn failed_ids(
    engine: &mut tally_engine::Engine,
    accounts: usize,
    count: usize,
    mut timestamp: u64,
) {
    if count == 0 {
        return;
    }
    let before = engine.memory_usage();
    let batches: Vec<Vec<u8>> = (0..count)
        .step_by(BATCH_EVENTS_MAX)
        .map(|first| {
            (first..(first + BATCH_EVENTS_MAX).min(count))
                .flat_map(|i| {
                    Transfer {
                        id: (1u128 << 100) + i as u128,
                        debit_account_id: 1,
                        credit_account_id: accounts as u128 + 1 + i as u128,
                        amount: 1,
                        ledger: 1,
                        code: 1,
                        ..Transfer::default()
                    }
                    .encode()
                })
                .collect()
        })
        .collect();
    let pass = |engine: &mut tally_engine::Engine, timestamp: &mut u64, expected: EventResult| {
        let start = Instant::now();
        for body in &batches {
            let outcome = engine
                .apply(Operation::CreateTransfers, *timestamp, body)
                .expect("valid batch");
            assert!(outcome.failures.iter().all(|&(_, r)| r == expected));
            assert_eq!(outcome.failures.len(), body.len() / 128);
            *timestamp += 1_000_000;
        }
        count as f64 / start.elapsed().as_secs_f64()
    };
    let failing = pass(engine, &mut timestamp, EventResult::CreditAccountNotFound);
    let after = engine.memory_usage();
    let retried = pass(engine, &mut timestamp, EventResult::IdAlreadyFailed);
    println!(
        "failed ids: {count}, failing at {failing:.0}/s, retries answered id_already_failed at {retried:.0}/s"
    );
    // The ids share the event index with the stored events, which grows in steps (and moves
    // its entries over many inserts), so its delta over one pass says little: its bytes per
    // entry over everything it holds are the failed id's share.
    let entries = engine.transfers_count() + engine.trades_count() + count;
    let index_per_entry = after.event_index as f64 / entries as f64;
    let id = (after.failed_ids - before.failed_ids) as f64 / count as f64;
    println!(
        "bytes per failed id: {:.1} (id {id:.1}, id index {index_per_entry:.1} per entry)",
        id + index_per_entry,
    );
}
