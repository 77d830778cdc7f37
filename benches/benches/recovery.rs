//! Recovery speed: a WAL holding 10M transfers (in entries of 8,189) is reopened and replayed
//! into a fresh engine, as a restarting replica without a snapshot would.
//!
//! Phase 1 (untimed for the result, but reported): write the WAL durably. Phase 2 (timed):
//! `Wal::open` (the recovery scan), then one thread reads entries back (O_DIRECT, verified)
//! while this thread applies them to the engine, through a bounded channel. Reported: events/s
//! of the whole replay, and of the open, read and apply parts.
//!
//! Entry payloads here use the benchmark's own framing, `operation u8 | 7 zero bytes |
//! entry timestamp u64 | records`, standing in for the Raft entry format of the next issue.
//!
//! Run: `cargo bench -p tally-benches --bench recovery` (`TALLY_BENCH_TRANSFERS`,
//! `TALLY_BENCH_ACCOUNTS` and `TALLY_BENCH_DIR` override the defaults).

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

    // Phase 2: recovery.
    let mut engine = Engine::new(EngineConfig { hash_seed: 7 });
    let reserve_started = Instant::now();
    engine.reserve(accounts, transfers);
    let reserve_seconds = reserve_started.elapsed().as_secs_f64();

    let started = Instant::now();
    let wal = Wal::open(open_default(), &dir, WalConfig::default()).expect("WAL reopens");
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
            let (operation, entry_timestamp, body) = unframe(&entry.payload);
            let cpu = thread_cpu_seconds();
            let outcome = engine
                .apply(operation, entry_timestamp, body)
                .expect("valid batch");
            apply_cpu += thread_cpu_seconds() - cpu;
            assert!(
                outcome.failures.is_empty(),
                "replay must reproduce the original results"
            );
            events += body.len() / 128;
        }
    }
    let read_seconds = read_thread.join().expect("reader thread");
    let total_seconds = started.elapsed().as_secs_f64();
    drop(wal);
    let _ = std::fs::remove_dir_all(&dir);

    println!("engine reserve (prefault) for {transfers} transfers: {reserve_seconds:.2}s (before replay)");
    println!(
        "replayed {events} events in {total_seconds:.2}s: {:.2} M events/s \
         (open/recovery scan {open_seconds:.2}s, read {read_seconds:.2}s on its own thread, \
         apply {apply_cpu:.2}s CPU = {:.2} M events/s)",
        events as f64 / total_seconds / 1e6,
        events as f64 / apply_cpu / 1e6
    );
}
