//! Durable append throughput of the WAL, io_uring vs the pwrite fallback, next to the raw
//! sequential write + fdatasync rate of the same disk, and the WAL's sequential scan speed.
//!
//! Run: `cargo bench -p tally-raft --bench wal` (set `TALLY_BENCH_DIR` to pick the disk,
//! default: a temporary directory under /work; `TALLY_BENCH_SECONDS` per measurement, default 1; `TALLY_BENCH_REPS`, default 5).
//! Events are 128 bytes; an entry holds 1, 64, 1024 or 8189 of them.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tally_raft::storage::sync::SyncDisk;
use tally_raft::storage::uring::UringDisk;
use tally_raft::storage::{AlignedBuffer, Disk};
use tally_raft::{Entry, Wal, WalConfig};

const EVENT_BYTES: usize = 128;
const MIB: f64 = 1024.0 * 1024.0;

fn seconds() -> Duration {
    let seconds = std::env::var("TALLY_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    Duration::from_secs_f64(seconds)
}

/// Raw rate: `chunk`-byte O_DIRECT pwrites each followed by fdatasync into a preallocated
/// file, the same conditions the WAL writes under. Returns bytes per second.
fn raw_rate(dir: &Path, chunk: usize) -> f64 {
    let path = dir.join("raw.bin");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .expect("open raw file");
    let total: usize = 1 << 30;
    // SAFETY: fallocate on a descriptor we own.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, total as libc::off_t) };
    assert_eq!(rc, 0, "fallocate");
    file.sync_all().expect("sync");
    let mut buffer = AlignedBuffer::new(chunk);
    buffer.as_mut_slice().fill(0x5A);
    let start = Instant::now();
    let mut offset = 0usize;
    while start.elapsed() < seconds() && offset + chunk <= total {
        // SAFETY: the buffer is valid for `chunk` bytes during the call.
        let n = unsafe {
            libc::pwrite(
                file.as_raw_fd(),
                buffer.as_slice().as_ptr().cast(),
                chunk,
                offset as libc::off_t,
            )
        };
        assert_eq!(n, chunk as isize, "pwrite");
        // SAFETY: plain fdatasync on our descriptor.
        assert_eq!(unsafe { libc::fdatasync(file.as_raw_fd()) }, 0, "fdatasync");
        offset += chunk;
    }
    let rate = offset as f64 / start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path).expect("remove raw file");
    rate
}

/// The backend alone: `chunk`-byte `write_sync_at` calls into a fresh preallocated segment,
/// without the WAL around it. Returns bytes per second.
fn backend_rate(disk: &dyn Disk, dir: &Path, chunk: usize) -> f64 {
    std::fs::create_dir_all(dir).expect("dir");
    let path = dir.join("backend.bin");
    let file = disk.open(&path, true).expect("open");
    let total = 1u64 << 30;
    file.allocate(total).expect("allocate");
    file.sync().expect("sync");
    let mut buffer = AlignedBuffer::new(chunk);
    buffer.as_mut_slice().fill(0x5A);
    let start = Instant::now();
    let mut offset = 0u64;
    while start.elapsed() < seconds() && offset + chunk as u64 <= total {
        file.write_sync_at(buffer.as_slice(), offset)
            .expect("write_sync_at");
        offset += chunk as u64;
    }
    let rate = offset as f64 / start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path).expect("remove");
    rate
}

struct Row {
    events_per_second: f64,
    fsyncs_per_second: f64,
    payload_mib_per_second: f64,
    disk_mib_per_second: f64,
}

/// Durable appends of one entry each, at most `in_flight` unflushed at a time (1 is what
/// openraft 0.9 does: it waits for each flush before the next append).
fn config() -> WalConfig {
    let mut config = WalConfig::default();
    if let Some(mib) = std::env::var("TALLY_BENCH_SEGMENT_MIB")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        config.segment_bytes = mib << 20;
    }
    config
}

fn run(disk: Arc<dyn Disk>, dir: &Path, events_per_entry: usize, in_flight: usize) -> Row {
    let _ = std::fs::remove_dir_all(dir);
    let mut wal = Wal::open(disk, dir, config()).expect("open");
    let payload = Bytes::from(vec![0xA5u8; events_per_entry * EVENT_BYTES]);
    let (sender, receiver) = crossbeam_channel::unbounded::<()>();
    let start = Instant::now();
    let mut index = 0u64;
    let mut outstanding = 0usize;
    while start.elapsed() < seconds() {
        while outstanding >= in_flight {
            receiver.recv().expect("callback");
            outstanding -= 1;
        }
        let sender = sender.clone();
        let entry = Entry {
            index,
            term: 1,
            payload: payload.clone(),
        };
        wal.append([entry], move |result| {
            result.expect("durable");
            let _ = sender.send(());
        })
        .expect("append");
        index += 1;
        outstanding += 1;
    }
    for _ in 0..outstanding {
        receiver.recv().expect("callback");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let stats = wal.stats();
    drop(wal);
    let _ = std::fs::remove_dir_all(dir);
    Row {
        events_per_second: (index as f64 * events_per_entry as f64) / elapsed,
        fsyncs_per_second: stats.groups as f64 / elapsed,
        payload_mib_per_second: (index as f64 * payload.len() as f64) / elapsed / MIB,
        disk_mib_per_second: stats.bytes as f64 / elapsed / MIB,
    }
}

/// Write `events` events in 8189-event entries, then time reopening (the recovery scan) and
/// reading every entry back in order.
fn scan(disk: Arc<dyn Disk>, dir: &Path, events: u64) {
    let _ = std::fs::remove_dir_all(dir);
    let events_per_entry = 8189u64;
    let entries = events.div_ceil(events_per_entry);
    {
        let mut wal = Wal::open(Arc::clone(&disk), dir, WalConfig::default()).expect("open");
        let payload = Bytes::from(vec![0x3Cu8; events_per_entry as usize * EVENT_BYTES]);
        let (sender, receiver) = crossbeam_channel::unbounded::<()>();
        for index in 0..entries {
            let sender = sender.clone();
            wal.append(
                [Entry {
                    index,
                    term: 1,
                    payload: payload.clone(),
                }],
                move |result| {
                    result.expect("durable");
                    let _ = sender.send(());
                },
            )
            .expect("append");
        }
        for _ in 0..entries {
            receiver.recv().expect("callback");
        }
    }
    // Drop the page cache's copy where we can (needs root), so reads come from the disk.
    let dropped = std::fs::write("/proc/sys/vm/drop_caches", "1").is_ok();
    let start = Instant::now();
    let wal = Wal::open(disk, dir, WalConfig::default()).expect("reopen");
    let opened = start.elapsed().as_secs_f64();
    let reader = wal.reader();
    let mut events_read = 0u64;
    let mut index = 0;
    while index < entries {
        let end = (index + 64).min(entries);
        for entry in reader.read(index..end).expect("read") {
            events_read += entry.payload.len() as u64 / EVENT_BYTES as u64;
        }
        index = end;
    }
    let total = start.elapsed().as_secs_f64();
    println!(
        "scan: {events_read} events ({entries} entries, {:.0} MiB): open (recovery scan) {opened:.2} s, \
         open + read all {total:.2} s = {:.1} M events/s (page cache dropped first: {dropped})",
        (entries * events_per_entry * EVENT_BYTES as u64) as f64 / MIB,
        events_read as f64 / total / 1e6,
    );
    drop(wal);
    let _ = std::fs::remove_dir_all(dir);
}

/// CPU cost of a group: CRC32C and memcpy speed on this machine, in GB/s.
fn cpu_rates() -> (f64, f64) {
    let source = vec![0x5Au8; 8 << 20];
    let mut target = vec![0u8; 8 << 20];
    let start = Instant::now();
    let mut crc = 0;
    for _ in 0..32 {
        crc ^= crc32c::crc32c(&source);
    }
    let crc_rate = 32.0 * source.len() as f64 / start.elapsed().as_secs_f64() / 1e9;
    let start = Instant::now();
    for _ in 0..32 {
        target.copy_from_slice(&source);
        std::hint::black_box(&mut target);
    }
    let copy_rate = 32.0 * source.len() as f64 / start.elapsed().as_secs_f64() / 1e9;
    std::hint::black_box(crc);
    (crc_rate, copy_rate)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; filters go through environment variables instead.
    let base = match std::env::var("TALLY_BENCH_DIR") {
        Ok(dir) => std::path::PathBuf::from(dir),
        Err(_) => std::path::PathBuf::from("/work"),
    };
    let repetitions: usize = std::env::var("TALLY_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let temporary = tempfile::tempdir_in(&base).expect("temporary directory");
    let dir = temporary.path();
    println!(
        "WAL benchmark in {} ({} s per measurement, median of {repetitions} interleaved repetitions)",
        dir.display(),
        seconds().as_secs_f64()
    );
    let (crc_rate, copy_rate) = cpu_rates();
    println!("cpu: crc32c {crc_rate:.1} GB/s, memcpy {copy_rate:.1} GB/s");
    let backends: Vec<(&str, Arc<dyn Disk>)> = vec![
        (
            "io_uring",
            Arc::new(UringDisk::new().expect("io_uring available")),
        ),
        ("pwrite_fdatasync", Arc::new(SyncDisk::new())),
    ];
    // TALLY_BENCH_ONLY=8189 runs only that entry size (for quick comparisons).
    let only: Option<usize> = std::env::var("TALLY_BENCH_ONLY")
        .ok()
        .and_then(|s| s.parse().ok());
    let mut configurations = Vec::new();
    for backend in 0..backends.len() {
        for in_flight in [1, 16] {
            for events_per_entry in [1, 64, 1024, 8189]
                .into_iter()
                .filter(|&n| only.is_none_or(|o| o == n))
            {
                configurations.push((backend, in_flight, events_per_entry));
            }
        }
    }
    // The disk of this machine is noisy (a shared virtual disk): every repetition measures
    // the raw rate and then every configuration once, and we report medians.
    let mut raw_1m = Vec::new();
    let mut raw_8m = Vec::new();
    let mut backend_1m: Vec<Vec<f64>> = backends.iter().map(|_| Vec::new()).collect();
    let mut rows: Vec<Vec<Row>> = configurations.iter().map(|_| Vec::new()).collect();
    let mut paired_raw: Vec<Vec<f64>> = configurations.iter().map(|_| Vec::new()).collect();
    for _ in 0..repetitions {
        raw_1m.push(raw_rate(dir, 1 << 20) / MIB);
        raw_8m.push(raw_rate(dir, 8 << 20) / MIB);
        for (k, (_, disk)) in backends.iter().enumerate() {
            backend_1m[k].push(backend_rate(disk.as_ref(), &dir.join("backend"), 1 << 20) / MIB);
        }
        for (k, &(backend, in_flight, events_per_entry)) in configurations.iter().enumerate() {
            // The raw rate right before each measurement: the ratio of the two is what stays
            // meaningful when the disk's speed drifts between seconds.
            paired_raw[k].push(raw_rate(dir, 8 << 20) / MIB);
            rows[k].push(run(
                Arc::clone(&backends[backend].1),
                &dir.join("wal"),
                events_per_entry,
                in_flight,
            ));
        }
    }
    let raw_range = |values: &[f64]| {
        let min = values.iter().copied().fold(f64::MAX, f64::min);
        let max = values.iter().copied().fold(0.0, f64::max);
        (min, max)
    };
    let (min_1m, max_1m) = raw_range(&raw_1m);
    let (min_8m, max_8m) = raw_range(&raw_8m);
    let raw_1m_median = median(&mut raw_1m);
    let raw_8m_median = median(&mut raw_8m);
    println!(
        "raw O_DIRECT write + fdatasync (median, min..max): 1 MiB writes {raw_1m_median:.0} MiB/s \
         ({min_1m:.0}..{max_1m:.0}), 8 MiB writes {raw_8m_median:.0} MiB/s ({min_8m:.0}..{max_8m:.0})"
    );
    for (k, (name, _)) in backends.iter().enumerate() {
        let (min, max) = raw_range(&backend_1m[k]);
        println!(
            "backend alone, {name} write_sync_at of 1 MiB: {:.0} MiB/s ({min:.0}..{max:.0})",
            median(&mut backend_1m[k])
        );
    }
    // "% raw": against the better of the two raw medians; "% paired raw": median over
    // repetitions of (this measurement / the 8 MiB raw rate measured just before it).
    let raw_best = raw_1m_median.max(raw_8m_median);
    println!(
        "{:<17} {:>9} {:>7} {:>13} {:>10} {:>12} {:>10} {:>8} {:>16} {:>13}",
        "backend",
        "in_flight",
        "ev/ent",
        "events/s",
        "fsyncs/s",
        "payload MB/s",
        "disk MiB/s",
        "% raw",
        "events/s min..max",
        "% paired raw"
    );
    for (k, &(backend, in_flight, events_per_entry)) in configurations.iter().enumerate() {
        let samples = &rows[k];
        let mut events: Vec<f64> = samples.iter().map(|r| r.events_per_second).collect();
        let (events_min, events_max) = raw_range(&events);
        let events = median(&mut events);
        let fsyncs = median(
            &mut samples
                .iter()
                .map(|r| r.fsyncs_per_second)
                .collect::<Vec<_>>(),
        );
        let payload = median(
            &mut samples
                .iter()
                .map(|r| r.payload_mib_per_second)
                .collect::<Vec<_>>(),
        );
        let disk = median(
            &mut samples
                .iter()
                .map(|r| r.disk_mib_per_second)
                .collect::<Vec<_>>(),
        );
        let mut ratios: Vec<f64> = samples
            .iter()
            .zip(&paired_raw[k])
            .map(|(row, raw)| 100.0 * row.disk_mib_per_second / raw)
            .collect();
        let ratio = median(&mut ratios);
        println!(
            "{:<17} {:>9} {:>7} {:>13.0} {:>10.0} {:>12.1} {:>10.1} {:>7.0}% {:>8.2}M..{:.2}M {:>12.0}%",
            backends[backend].0,
            in_flight,
            events_per_entry,
            events,
            fsyncs,
            payload * MIB / 1e6,
            disk,
            100.0 * disk / raw_best,
            events_min / 1e6,
            events_max / 1e6,
            ratio,
        );
    }
    if std::env::var("TALLY_BENCH_NO_SCAN").is_err() {
        scan(Arc::clone(&backends[0].1), &dir.join("scan"), 10_000_000);
    }
}
