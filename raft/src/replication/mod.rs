//! Replication: openraft 0.9 (storage-v2) on Tally's WAL and engine.
//!
//! - [`types`]: the openraft type config: a Raft entry carries a [`Request`] (client batches
//!   packed by the leader, stamped with its timestamp); applying it returns a [`Response`].
//! - [`codec`]: openraft entries as WAL records (docs/raft-entries.md).
//! - [`log_store`]: [`LogStore`], openraft's `RaftLogStorage` on the [`Wal`](crate::Wal).
//! - [`state_machine`]: [`StateMachine`], openraft's `RaftStateMachine` wrapping the engine,
//!   with snapshots ([`snapshot_image`]) written through [`crate::snapshot_file`], held in
//!   memory as a [`SnapshotBuffer`] (received chunks only in order, within a bound).
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
pub mod snapshot_buffer;
pub mod snapshot_image;
pub mod state_machine;
pub mod types;

use std::path::Path;
use std::sync::Arc;

use tally_engine::EngineConfig;

pub use error::{
    DecodeError, EncodeError, InstallError, LogStoreOpenError, StateMachineOpenError,
    StorageOpenError,
};
pub use log_store::{CommittedIndex, LogReader, LogStore};
pub use snapshot_buffer::SnapshotBuffer;
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

/// Open the log store and the state machine of the node whose data directory is `data_dir`.
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
    let log_store = LogStore::open(Arc::clone(&disk), data_dir, wal_config)?;
    let state_machine = StateMachine::open(disk, data_dir, engine_config)?;
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
