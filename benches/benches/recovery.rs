//! Recovery speed: a WAL holding 10M transfers (in entries of 8,189) is reopened and replayed
//! into a fresh engine, as a restarting replica without a snapshot would.
//!
//! Phase 1 (untimed for the result, but reported): write the WAL durably. Phase 2 (timed), two
//! ways side by side, into a fresh engine each time (reserved up front, untimed):
//! - one-pass: `Wal::open_with_replay`, which hands each segment's entries to the engine as
//!   soon as the recovery scan has verified it, while a thread reads the next segment;
//! - two-pass (the way before): `Wal::open` (the recovery scan), then one thread reads the
//!   entries back (O_DIRECT, verified again) while this thread applies them.
//!
//! Reported: events/s of each whole replay (open + scan + apply), its phases, and the ratio.
//!
//! Entry payloads here use the benchmark's own framing, `operation u8 | 7 zero bytes |
//! entry timestamp u64 | records`, standing in for the Raft entry format of the next issue.
//!
//! Run: `cargo bench -p tally-benches --bench recovery` (`TALLY_BENCH_TRANSFERS`,
//! `TALLY_BENCH_ACCOUNTS` and `TALLY_BENCH_DIR` override the defaults; `TALLY_BENCH_REPS`
//! pairs of measurements, default 3, the order alternating; `TALLY_BENCH_SETTLE_SECONDS`
//! of rest between writing and replaying, default 10).

use std::time::Instant;

use bytes::Bytes;
use tally_benches::{account_batch, thread_cpu_seconds, Skew, TransferWorkload, EPOCH};
use tally_engine::limits::BATCH_EVENTS_MAX;
use tally_engine::{Engine, EngineConfig, Operation};
use tally_raft::storage::open_default;
use tally_raft::{Entry, Wal, WalConfig};

const HEADER_BYTES: usize = 16;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn frame(operation: Operation, timestamp: u64, body: &[u8]) -> Bytes {
    let mut payload = Vec::with_capacity(HEADER_BYTES + body.len());
    payload.push(operation as u8);
    payload.extend_from_slice(&[0; 7]);
    payload.extend_from_slice(&timestamp.to_le_bytes());
    payload.extend_from_slice(body);
    Bytes::from(payload)
}

fn unframe(payload: &[u8]) -> (Operation, u64, &[u8]) {
    let operation = match payload[0] {
        1 => Operation::CreateAccounts,
        2 => Operation::CreateTransfers,
        3 => Operation::CreateTrades,
        other => panic!("unknown operation {other} in the benchmark's own WAL"),
    };
    let mut timestamp = [0u8; 8];
    timestamp.copy_from_slice(&payload[8..16]);
    (
        operation,
        u64::from_le_bytes(timestamp),
        &payload[HEADER_BYTES..],
    )
}

fn main() {
    let transfers = env_or("TALLY_BENCH_TRANSFERS", 10_000_000);
    let accounts = env_or("TALLY_BENCH_ACCOUNTS", 10_000);
    let base = std::env::var("TALLY_BENCH_DIR").unwrap_or_else(|_| "target/bench-recovery".into());
    let dir = std::path::PathBuf::from(base).join(format!("wal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    // Phase 1: the log a replica would have: account creation, then the transfers.
    let write_started = Instant::now();
    let mut wal = Wal::open(open_default(), &dir, WalConfig::default()).expect("WAL opens");
    println!("backend: {}", wal.backend().name());
    let mut index = 0u64;
    let mut timestamp = EPOCH;
    let mut pending = Vec::new();
    let (done_sender, done) = crossbeam_channel::unbounded();
    let append = |wal: &mut Wal, payload: Bytes, index: &mut u64| {
        let sender = done_sender.clone();
        wal.append(
            [Entry {
                index: *index,
                term: 1,
                payload,
            }],
            move |result| sender.send(result).expect("bench is waiting"),
        )
        .expect("append accepted");
        *index += 1;
    };
    let mut remaining = accounts;
    let mut next_account = 1u128;
    while remaining > 0 {
        let n = remaining.min(BATCH_EVENTS_MAX);
        let body = account_batch(next_account, n, 1);
        append(
            &mut wal,
            frame(Operation::CreateAccounts, timestamp, &body),
            &mut index,
        );
        pending.push(());
        next_account += n as u128;
        remaining -= n;
        timestamp += 1_000_000;
    }
    let mut workload = TransferWorkload::new(accounts, Skew::Uniform, 11);
    let mut written = 0;
    while written < transfers {
        let n = (transfers - written).min(BATCH_EVENTS_MAX);
        let body = workload.transfers(n);
        append(
            &mut wal,
            frame(Operation::CreateTransfers, timestamp, &body),
            &mut index,
        );
        pending.push(());
        written += n;
        timestamp += 1_000_000;
    }
    for _ in &pending {
        done.recv()
            .expect("flush callback")
            .expect("append durable");
    }
    let stats = wal.stats();
    wal.close();
    let write_seconds = write_started.elapsed().as_secs_f64();
    println!(
        "wrote {index} entries ({transfers} transfers, {:.0} MB) durably in {write_seconds:.2}s \
         (generation included), {} group commits",
        stats.bytes as f64 / 1e6,
        stats.groups
    );

    // Right after 1.3 GB of writes the virtual disk reads slowly for a while (the host is
    // still writing back, it seems): the first replay measured then was up to 2x slower,
    // whichever way it ran. Let it settle first.
    let settle_seconds = env_or("TALLY_BENCH_SETTLE_SECONDS", 10);
    std::thread::sleep(std::time::Duration::from_secs(settle_seconds as u64));

    // Phase 2: recovery, both ways, in the same run (the disk's speed drifts a lot within
    // minutes, so only figures taken side by side compare). The order alternates per rep.
    let reps = env_or("TALLY_BENCH_REPS", 3);
    let mut results: Vec<(&str, f64)> = Vec::new();
    for rep in 0..reps {
        for one_pass in [rep % 2 == 0, rep % 2 != 0] {
            let mut engine = Engine::new(EngineConfig { hash_seed: 7 });
            let reserve_started = Instant::now();
            engine.reserve(accounts, transfers);
            let reserve_seconds = reserve_started.elapsed().as_secs_f64();
            let (name, (seconds, events)) = if one_pass {
                ("one-pass", replay_one_pass(&dir, &mut engine))
            } else {
                ("two-pass", replay_two_pass(&dir, &mut engine))
            };
            assert_eq!(events, transfers + accounts, "every event replayed");
            println!("  (engine reserve for {transfers} transfers before it: {reserve_seconds:.2}s, untimed)");
            results.push((name, events as f64 / seconds));
            drop(engine);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let rates = |name: &str| -> Vec<f64> {
        results
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, rate)| *rate)
            .collect()
    };
    let (one, two) = (rates("one-pass"), rates("two-pass"));
    let ratios: Vec<String> = one
        .iter()
        .zip(&two)
        .map(|(one, two)| format!("{:.2}x", one / two))
        .collect();
    println!(
        "summary: one-pass {} M events/s, two-pass {} M events/s, one-pass / two-pass per rep: {}",
        list(&one),
        list(&two),
        ratios.join(" ")
    );
}

fn list(rates: &[f64]) -> String {
    let all: Vec<String> = rates.iter().map(|r| format!("{:.2}", r / 1e6)).collect();
    all.join(" ")
}

/// Apply one entry of the benchmark's WAL; returns its events.
fn apply(engine: &mut Engine, payload: &[u8]) -> usize {
    let (operation, entry_timestamp, body) = unframe(payload);
    let outcome = engine
        .apply(operation, entry_timestamp, body)
        .expect("valid batch");
    assert!(
        outcome.failures.is_empty(),
        "replay must reproduce the original results"
    );
    body.len() / 128
}

/// `Wal::open_with_replay`: the recovery scan hands each verified segment to the engine
/// while the read-ahead thread reads the next one. Returns (seconds, events).
fn replay_one_pass(dir: &std::path::Path, engine: &mut Engine) -> (f64, usize) {
    let started = Instant::now();
    let mut events = 0usize;
    let mut apply_cpu = 0.0;
    let mut apply_wall = 0.0;
    let mut first_entry = None;
    let mut last_entry = started;
    let wal = Wal::open_with_replay(open_default(), dir, WalConfig::default(), 0, |entry| {
        let wall = Instant::now();
        first_entry.get_or_insert_with(|| started.elapsed().as_secs_f64());
        let cpu = thread_cpu_seconds();
        events += apply(engine, &entry.payload);
        apply_cpu += thread_cpu_seconds() - cpu;
        last_entry = Instant::now();
        apply_wall += (last_entry - wall).as_secs_f64();
    })
    .expect("WAL reopens with replay");
    let total = started.elapsed().as_secs_f64();
    let after_last = last_entry.elapsed().as_secs_f64();
    drop(wal);
    println!(
        "one-pass (Wal::open_with_replay): {events} events in {total:.2}s = {:.2} M events/s \
         (first entry after {:.2}s; apply {apply_wall:.2}s wall, {apply_cpu:.2}s CPU = {:.2} M \
         events/s; waiting for read + scan {:.2}s; open's tail after the last entry {after_last:.2}s)",
        events as f64 / total / 1e6,
        first_entry.unwrap_or(0.0),
        events as f64 / apply_cpu / 1e6,
        total - apply_wall - after_last,
    );
    (total, events)
}

/// The way before `open_with_replay`: `Wal::open` (the recovery scan) then a thread reading
/// every entry back (O_DIRECT, verified again) while this thread applies. Returns (seconds,
/// events).
fn replay_two_pass(dir: &std::path::Path, engine: &mut Engine) -> (f64, usize) {
    let started = Instant::now();
    let wal = Wal::open(open_default(), dir, WalConfig::default()).expect("WAL reopens");
    let open_seconds = started.elapsed().as_secs_f64();
    let reader = wal.reader();
    let last = reader.log_state().last.expect("log is not empty").index;
    let (sender, receiver) = crossbeam_channel::bounded::<Vec<Entry>>(4);
    let read_thread = std::thread::spawn(move || {
        let started = Instant::now();
        let mut next = 0;
        while next <= last {
            let end = (next + 16).min(last + 1);
            let entries = reader.read(next..end).expect("entries read back");
            sender.send(entries).expect("applier is running");
            next = end;
        }
        started.elapsed().as_secs_f64()
    });
    let mut events = 0usize;
    let mut apply_cpu = 0.0;
    for entries in receiver {
        for entry in entries {
            let cpu = thread_cpu_seconds();
            events += apply(engine, &entry.payload);
            apply_cpu += thread_cpu_seconds() - cpu;
        }
    }
    let read_seconds = read_thread.join().expect("reader thread");
    let total = started.elapsed().as_secs_f64();
    drop(wal);
    println!(
        "two-pass (Wal::open, then WalReader::read): {events} events in {total:.2}s = {:.2} M \
         events/s (open/recovery scan {open_seconds:.2}s, read {read_seconds:.2}s on its own \
         thread, apply {apply_cpu:.2}s CPU = {:.2} M events/s)",
        events as f64 / total / 1e6,
        events as f64 / apply_cpu / 1e6
    );
    (total, events)
}
