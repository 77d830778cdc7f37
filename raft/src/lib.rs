//! Tally's durable storage and replication: the write-ahead log that is the Raft log, the vote,
//! snapshot files, and (in `replication`) openraft's log storage and state machine on them.
//! Entry points: [`wal::Wal::open`] (or [`wal::Wal::open_with_replay`], which hands the log to
//! a visitor while recovery reads it) on a [`storage::Disk`] ([`storage::open_default`] in
//! production: io_uring, or pwrite + fdatasync where io_uring is unavailable), and
//! [`replication::open_storage`] for a replica's whole data directory.
//! This is the only crate that touches the disk. The WAL and storage layers never interpret
//! entry or snapshot payloads (`replication` does, and the engine decides every balance), and
//! nothing acknowledges an append before the fdatasync that covers it has reported success.

pub mod error;
pub mod limits;
pub mod metrics;
pub mod net;
pub mod replication;
pub mod settlement_metrics;
pub mod snapshot_file;
pub mod snapshot_split;
pub mod storage;
pub mod vote;
pub mod wal;

pub use error::{
    AppendError, FlushError, OpenError, Poisoned, PurgeError, ReadError, SnapshotError,
    TruncateError, VoteError,
};
pub use vote::Vote;
pub use wal::{AppendFlushed, Entry, LogId, LogState, Wal, WalConfig, WalReader, WalStats};
