//! Helpers shared by the WAL integration tests: one harness per storage backend, so every
//! format test runs unchanged on io_uring, on the pwrite fallback and on the simulated disk.

#![allow(dead_code)] // Each test binary uses a different subset.

pub mod single_node;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tally_raft::limits::SECTOR_BYTES;
use tally_raft::storage::sim::SimDisk;
use tally_raft::storage::sync::SyncDisk;
use tally_raft::storage::uring::UringDisk;
use tally_raft::storage::Disk;
use tally_raft::wal::record;
use tally_raft::{Entry, FlushError, Wal, WalConfig};

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Uring,
    Sync,
    Sim,
}

/// A disk and a WAL directory on it.
pub struct Harness {
    pub disk: Arc<dyn Disk>,
    pub sim: Option<SimDisk>,
    pub dir: PathBuf,
    _temporary: Option<tempfile::TempDir>,
}

/// Small segments and entries, so tests rotate often and stay fast.
pub fn config() -> WalConfig {
    WalConfig {
        segment_bytes: 64 * 1024,
        entry_payload_bytes_max: 8 * 1024,
    }
}

impl Harness {
    pub fn new(kind: Kind) -> Harness {
        match kind {
            Kind::Sim => {
                let sim = SimDisk::new();
                Harness::on_sim(sim)
            }
            Kind::Uring | Kind::Sync => {
                let temporary = tempfile::tempdir().expect("temporary directory");
                let disk: Arc<dyn Disk> = match kind {
                    // The suite must prove the io_uring path, so it fails loudly where the
                    // ring cannot be set up instead of quietly testing the fallback twice.
                    Kind::Uring => {
                        Arc::new(UringDisk::new().expect("io_uring must work on this machine"))
                    }
                    _ => Arc::new(SyncDisk::new()),
                };
                let dir = temporary.path().join("wal");
                Harness {
                    disk,
                    sim: None,
                    dir,
                    _temporary: Some(temporary),
                }
            }
        }
    }

    pub fn on_sim(sim: SimDisk) -> Harness {
        Harness {
            disk: Arc::new(sim.clone()),
            sim: Some(sim),
            dir: PathBuf::from("/wal"),
            _temporary: None,
        }
    }

    pub fn open(&self) -> Wal {
        Wal::open(Arc::clone(&self.disk), &self.dir, config()).expect("WAL opens")
    }

    pub fn try_open(&self) -> Result<Wal, tally_raft::OpenError> {
        Wal::open(Arc::clone(&self.disk), &self.dir, config())
    }

    /// Segment paths in log order.
    pub fn segments(&self) -> Vec<PathBuf> {
        let mut names: Vec<String> = self
            .disk
            .list(&self.dir)
            .expect("list")
            .into_iter()
            .filter(|n| n.ends_with(".wal"))
            .collect();
        names.sort();
        names.into_iter().map(|name| self.dir.join(name)).collect()
    }

    pub fn read_file(&self, path: &Path) -> Vec<u8> {
        let file = self.disk.open(path, false).expect("open");
        let mut bytes = vec![0u8; file.len().expect("len") as usize];
        tally_raft::storage::read_exact_at(file.as_ref(), &mut bytes, 0).expect("read");
        bytes
    }

    /// Replace a file's content (as an outside actor would: a bad disk, an operator).
    pub fn write_file(&self, path: &Path, bytes: &[u8]) {
        let file = self.disk.open(path, false).expect("open");
        file.set_len(bytes.len() as u64).expect("set_len");
        file.write_at(bytes, 0).expect("write");
        file.sync().expect("sync");
    }

    pub fn edit(&self, path: &Path, change: impl FnOnce(&mut Vec<u8>)) {
        let mut bytes = self.read_file(path);
        change(&mut bytes);
        self.write_file(path, &bytes);
    }
}

pub fn entry(index: u64, term: u64, payload: Vec<u8>) -> Entry {
    Entry {
        index,
        term,
        payload: Bytes::from(payload),
    }
}

/// A payload that differs per index and per `salt`, of `length` bytes.
pub fn payload(index: u64, salt: u64, length: usize) -> Vec<u8> {
    let mut x =
        index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xD6E8_FEB8_6659_FD93) | 1;
    (0..length)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Append and wait for the flush callback.
pub fn append_wait(wal: &mut Wal, entries: Vec<Entry>) -> Result<(), FlushError> {
    let (sender, receiver) = crossbeam_channel::bounded(1);
    wal.append(entries, move |result| {
        let _ = sender.send(result);
    })
    .expect("append accepted");
    receiver.recv().expect("callback fires")
}

/// (offset, index) of every record in a segment image, found by walking the format.
pub fn record_offsets(bytes: &[u8]) -> Vec<(usize, u64)> {
    let mut found = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match record::decode(&bytes[at..], config().entry_payload_bytes_max) {
            Ok(header) => {
                found.push((at, header.index));
                at += header.record_bytes();
            }
            Err(_) if at % SECTOR_BYTES != 0 => at = at.div_ceil(SECTOR_BYTES) * SECTOR_BYTES,
            Err(_) => break,
        }
    }
    found
}

/// Runs each named test function once per backend, in modules `uring`, `sync` and `sim`.
#[macro_export]
macro_rules! for_each_backend {
    ($($test:ident),* $(,)?) => {
        mod uring { $(#[test] fn $test() { super::$test($crate::common::Kind::Uring) })* }
        mod sync { $(#[test] fn $test() { super::$test($crate::common::Kind::Sync) })* }
        mod sim { $(#[test] fn $test() { super::$test($crate::common::Kind::Sim) })* }
    };
}

/// The seed of a run: `TALLY_SEED` to reproduce one, else a fresh one (printed either way).
pub fn seed() -> u64 {
    let seed = std::env::var("TALLY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("seed {seed} (rerun with TALLY_SEED={seed})");
    seed
}
