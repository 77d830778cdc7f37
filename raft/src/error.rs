//! One error enum per operation. Business outcomes never appear here: these are all disk,
//! format or misuse conditions.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Why the WAL refuses further writes until it is reopened (redb's sticky `PreviousIo`):
/// after a failed write or fsync nobody knows what reached the disk, and Linux may already
/// have dropped the dirty pages, so retrying the fsync could report success for lost data.
#[derive(Debug, Clone, thiserror::Error)]
#[error("WAL poisoned by an earlier I/O error ({cause}); reopen it to recover from disk")]
pub struct Poisoned {
    /// The error that poisoned the WAL.
    pub cause: Arc<io::Error>,
}

/// Opening (recovering) a WAL failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error("invalid WAL configuration: {0}")]
    Config(String),
    #[error("I/O error while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// Recovery found damage it must not repair: data that may have been acknowledged.
    #[error("WAL corrupt in {} at byte {offset}: {reason}; refusing to start", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// `Wal::open_with_replay` had already handed over entries that a truncate mark in a
    /// later segment removes. The WAL never writes such a log (docs/wal.md, "Replay"), but
    /// recovery accepts it: `Wal::open` and reading the entries back works.
    #[error(
        "WAL replay overtaken: the truncate mark in {} at byte {offset} removes entries from \
         {since} on, and entries up to {replayed_to} (exclusive) were already replayed",
        path.display()
    )]
    ReplayOvertaken {
        path: PathBuf,
        offset: u64,
        since: u64,
        replayed_to: u64,
    },
}

/// `Wal::append` refused the entries; nothing was queued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    #[error(transparent)]
    Poisoned(#[from] Poisoned),
    #[error("entry index {got} does not follow the log (expected {expected})")]
    NotContiguous { expected: u64, got: u64 },
    #[error("entry {index} has {bytes} payload bytes, over the limit of {limit}")]
    EntryTooLarge {
        index: u64,
        bytes: usize,
        limit: usize,
    },
    #[error("the WAL thread has stopped")]
    Stopped,
}

/// Given to the append's flush callback instead of `Ok` when the entries are not durable.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FlushError {
    #[error(transparent)]
    Poisoned(#[from] Poisoned),
}

/// `Wal::truncate` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TruncateError {
    #[error(transparent)]
    Poisoned(#[from] Poisoned),
    #[error(
        "cannot truncate since {since}: the log holds ({first}..={last}) after purge {purged}"
    )]
    OutOfRange {
        since: u64,
        first: u64,
        last: u64,
        purged: u64,
    },
    #[error("the WAL thread has stopped")]
    Stopped,
}

/// `Wal::purge` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PurgeError {
    #[error(transparent)]
    Poisoned(#[from] Poisoned),
    #[error("the WAL thread has stopped")]
    Stopped,
}

/// Reading entries back failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("entry {index} is not in the log (it holds {first}..={last})")]
    OutOfRange { index: u64, first: u64, last: u64 },
    #[error("I/O error reading the WAL: {0}")]
    Io(#[from] io::Error),
    #[error("record of entry {index} in {} at byte {offset} is damaged: {reason}", path.display())]
    Corrupt {
        index: u64,
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

/// `Wal::save_vote` failed; the vote may or may not be durable, and the WAL is poisoned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VoteError {
    #[error(transparent)]
    Poisoned(#[from] Poisoned),
}

/// Writing or reading a snapshot file failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    #[error("I/O error on snapshot {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("snapshot payload of {bytes} bytes is over the limit of {limit}")]
    TooLarge { bytes: u64, limit: u64 },
}
