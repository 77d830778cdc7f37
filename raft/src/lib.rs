//! Tally's durable storage: the write-ahead log that is the Raft log, the vote, snapshot files.
//! Entry point: [`wal::Wal::open`] on a [`storage::Disk`] ([`storage::open_default`] in
//! production: io_uring, or pwrite + fdatasync where io_uring is unavailable).
//! This is the only crate that touches the disk. It must not interpret entry or snapshot
//! payloads (the engine owns their meaning), and must never acknowledge an append before the
//! fdatasync that covers it has reported success.

pub mod error;
pub mod limits;
pub mod snapshot_file;
pub mod storage;
pub mod vote;
pub mod wal;

pub use error::{
    AppendError, FlushError, OpenError, Poisoned, PurgeError, ReadError, SnapshotError,
    TruncateError, VoteError,
};
pub use vote::Vote;
pub use wal::{AppendFlushed, Entry, LogId, LogState, Wal, WalConfig, WalReader, WalStats};
