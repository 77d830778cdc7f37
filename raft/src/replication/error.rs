//! One error enum per operation of the replication layer. openraft's trait methods return its
//! own `StorageError`; these are the causes we put inside it, and the errors of our own entry
//! points (opening the storage, encoding, decoding).

use std::path::PathBuf;

/// An entry or snapshot meta could not be encoded: it breaks a limit of the format. The batcher
/// and the membership API check these before proposing, so this is a bug upstream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    #[error("{what}: {count} is over the limit of {limit}")]
    OverLimit {
        what: &'static str,
        count: usize,
        limit: usize,
    },
}

/// Bytes that do not decode as an entry payload or a snapshot image. On the read path this is
/// corruption (the WAL's CRC passed, so the bytes are what we wrote), never a torn write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("truncated: {needed} more bytes needed at offset {at}")]
    Truncated { at: usize, needed: usize },
    #[error("{count} bytes left over after the end at offset {at}")]
    TrailingBytes { at: usize, count: usize },
    #[error("bad magic")]
    BadMagic,
    #[error("unknown format version {0}")]
    UnknownVersion(u32),
    #[error("unknown entry kind {0}")]
    UnknownKind(u8),
    #[error("unknown operation {0}")]
    UnknownOperation(u8),
    #[error("reserved bytes at offset {at} are not zero")]
    ReservedNotZero { at: usize },
    #[error("bad flag byte {value} at offset {at}")]
    BadFlag { at: usize, value: u8 },
    #[error("{what}: {count} is over the limit of {limit}")]
    OverLimit {
        what: &'static str,
        count: u64,
        limit: usize,
    },
    #[error("{what} is not UTF-8")]
    NotUtf8 { what: &'static str },
    #[error("node {0} is not in ascending order (or repeated) in the membership")]
    NodesOutOfOrder(u64),
    #[error("voter {0} has no node entry in the membership")]
    VoterWithoutNode(u64),
    /// Well-formed bytes whose content breaks a rule of the layout.
    #[error("invalid: {0}")]
    Invalid(&'static str),
    /// Reading the bytes from a file failed.
    #[error("reading: {0}")]
    Read(String),
}

/// Opening the log store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogStoreOpenError {
    #[error(transparent)]
    Wal(#[from] crate::error::OpenError),
    #[error("openraft metadata file {} unreadable: {reason}", path.display())]
    Meta { path: PathBuf, reason: String },
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("finishing an interrupted purge: {0}")]
    Purge(#[from] crate::error::PurgeError),
}

/// Opening the state machine (restoring the newest snapshot) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateMachineOpenError {
    #[error(transparent)]
    Files(#[from] crate::error::SnapshotError),
    #[error("snapshot {index}-{term}: {source}")]
    Image {
        index: u64,
        term: u64,
        #[source]
        source: DecodeError,
    },
    #[error("snapshot {index}-{term}: its meta says {meta}")]
    NameMismatch { index: u64, term: u64, meta: String },
    #[error("snapshot {index}-{term}: the engine refused it: {source}")]
    Engine {
        index: u64,
        term: u64,
        #[source]
        source: tally_engine::SnapshotError,
    },
}

/// Opening a node's storage (log store and state machine together) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageOpenError {
    #[error(transparent)]
    Log(#[from] LogStoreOpenError),
    #[error(transparent)]
    StateMachine(#[from] StateMachineOpenError),
    /// A committed entry of the local log did not decode while it was replayed at start.
    #[error("replaying the committed log: entry {index} does not decode: {source}")]
    Replay {
        index: u64,
        #[source]
        source: DecodeError,
    },
    /// The log was purged past what the newest valid snapshot covers: the entries in between
    /// are gone, so the state cannot be rebuilt on this node.
    #[error(
        "the newest valid snapshot ends at index {applied:?} but the log was purged up to {purged}; \
         the entries in between are lost on this node (restore it from a peer)"
    )]
    SnapshotBehindLog { applied: Option<u64>, purged: u64 },
}

/// A snapshot handed to `install_snapshot` does not match the meta it came with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    #[error("snapshot bytes do not decode: {0}")]
    Image(#[from] DecodeError),
    #[error("snapshot bytes carry meta {carried}, but it was sent as {sent}")]
    MetaMismatch { carried: String, sent: String },
    #[error("the engine refused the snapshot: {0}")]
    Engine(#[from] tally_engine::SnapshotError),
    #[error("snapshot {sent} is older than the current snapshot")]
    OlderThanCurrent { sent: String },
}
