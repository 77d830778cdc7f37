//! Replication: openraft 0.9 (storage-v2) on Tally's WAL and engine.
//!
//! - [`types`]: the openraft type config: a Raft entry carries a [`Request`] (client batches
//!   packed by the leader, stamped with its timestamp); applying it returns a [`Response`].
//! - [`codec`]: openraft entries as WAL records (docs/raft-entries.md).
//! - [`log_store`]: [`LogStore`], openraft's `RaftLogStorage` on the [`Wal`](crate::Wal).
//! - [`state_machine`]: [`StateMachine`], openraft's `RaftStateMachine` wrapping the engine,
//!   with snapshots ([`snapshot_image`]) streamed to and from files ([`crate::snapshot_file`]),
//!   handed to openraft as [`SnapshotData`] (a file; received chunks only in order, within a
//!   bound).
//!
//! A node's data directory:
//! ```text
//! {data}/wal/        the WAL (docs/wal.md)
//! {data}/raft/       what openraft needs beyond the WAL: `purged-log-id`
//! {data}/snapshots/  snapshot files, newest valid one restored at start
//! ```
//! Entry point: [`open_storage`], which opens both halves and checks they fit together.

pub mod codec;
pub mod error;
pub mod limits;
pub mod log_store;
pub mod restore;
pub mod snapshot_data;
pub mod snapshot_image;
pub mod state_machine;
pub mod types;

use std::path::Path;
use std::sync::Arc;

use tally_engine::limits::RECORD_BYTES;
use tally_engine::EngineConfig;

pub use error::{
    DecodeError, EncodeError, InstallError, LogStoreOpenError, StateMachineOpenError,
    StorageOpenError,
};
pub use log_store::{CommittedIndex, LogReader, LogStore};
pub use snapshot_data::{read_image, SnapshotData};
pub use state_machine::{Applied, AppliedView, SnapshotBuilder, StateMachine};
pub use types::{ClientBatch, NodeId, Request, Response, TypeConfig};

use crate::storage::Disk;
use crate::wal::WalConfig;

/// The WAL's directory inside a node's data directory.
pub const WAL_DIR: &str = "wal";
/// openraft metadata the WAL does not keep, inside a node's data directory.
pub const RAFT_META_DIR: &str = "raft";
/// Snapshot files, inside a node's data directory.
pub const SNAPSHOT_DIR: &str = "snapshots";

/// Applies the committed entries of the local log to the state machine as the WAL hands them
/// over at start: those after the restored snapshot, up to the commit index recorded by an
/// earlier run, and only while they follow on without a hole.
struct Replay<'a> {
    state_machine: &'a StateMachine,
    /// The index the next entry applied must have.
    next: u64,
    committed: Option<u64>,
    failed: Option<(u64, DecodeError)>,
}

impl Replay<'_> {
    fn visit(&mut self, record: crate::wal::Entry) {
        let Some(committed) = self.committed else {
            return;
        };
        // Past the recorded commit index, after a hole (a log purged past the snapshot, which
        // `open_storage` refuses below) or after a failure: nothing more is applied here.
        if record.index > committed || record.index != self.next || self.failed.is_some() {
            return;
        }
        match codec::decode_entry(&record) {
            Ok(entry) => {
                self.state_machine.replay(entry);
                self.next += 1;
            }
            Err(error) => self.failed = Some((record.index, error)),
        }
    }
}

/// Open the log store and the state machine of the node whose data directory is `data_dir`.
///
/// The state machine opens first (its newest snapshot restored); then the log, read once from
/// disk, applies its committed entries after the snapshot as they are read (up to the commit
/// index an earlier run recorded: `LogStore::recorded_commit`), so a restarted node is where it
/// stopped before openraft starts, at the disk's speed. Entries past the recorded index are
/// applied through Raft once a leader is heard.
///
/// Besides each half's own recovery, this checks that they fit: the newest valid snapshot
/// must reach the log's purge point, or the entries in between are gone on this node and its
/// state cannot be rebuilt (a damaged newest snapshot, or a snapshots directory restored from
/// an old backup). That is refused rather than started from a state with a hole.
pub fn open_storage(
    disk: Arc<dyn Disk>,
    data_dir: &Path,
    wal_config: WalConfig,
    engine_config: EngineConfig,
) -> Result<(LogStore, StateMachine), StorageOpenError> {
    let state_machine = StateMachine::open(Arc::clone(&disk), data_dir, engine_config)?;
    let from = state_machine
        .last_applied()
        .map_or(0, |applied| applied.index + 1);
    let mut replay = Replay {
        state_machine: &state_machine,
        next: from,
        committed: LogStore::recorded_commit(disk.as_ref(), data_dir)?,
        failed: None,
    };
    state_machine.take_chunks();
    // Without this the event index doubles its table ~14 times on the way to 10M events.
    // An estimate only (records of 128 bytes in the segments the replay reads; entries that
    // are not event batches count too), so a failure to list is no reason not to start.
    match crate::wal::segment::bytes_from(disk.as_ref(), &data_dir.join(WAL_DIR), from) {
        Ok(bytes) => state_machine.make_room((bytes / RECORD_BYTES as u64) as usize),
        Err(error) => tracing::warn!(%error, "could not size the replay from the WAL's segments"),
    }
    let started = std::time::Instant::now();
    let log_store = LogStore::open_with_replay(disk, data_dir, wal_config, from, |entry| {
        replay.visit(entry)
    })?;
    state_machine.stop_taking_chunks();
    if let Some((index, source)) = replay.failed {
        return Err(StorageOpenError::Replay { index, source });
    }
    // Everything applied is committed: a snapshot holds only applied entries, and the replay
    // stops at the recorded commit index.
    if let Some(applied) = state_machine.last_applied() {
        log_store.note_committed(applied.index);
    }
    if replay.next > from {
        tracing::info!(
            entries = replay.next - from,
            through = replay.next - 1,
            seconds = started.elapsed().as_secs_f64(),
            "committed log applied while it was read"
        );
    }
    if let Some(purged) = log_store.purged() {
        let applied = state_machine.last_applied().map(|id| id.index);
        if applied.is_none_or(|applied| applied < purged.index) {
            return Err(StorageOpenError::SnapshotBehindLog {
                applied,
                purged: purged.index,
            });
        }
    }
    Ok((log_store, state_machine))
}
