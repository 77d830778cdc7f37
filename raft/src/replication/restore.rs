//! Restoring a node's data directory from a snapshot file: the way back from losing a whole
//! cluster (or a majority of it) when snapshot files were kept (docs/operations.md, "Back up
//! and restore").
//!
//! [`restore_from_snapshot`] turns an empty data directory into one that starts exactly at a
//! snapshot: the file is checked end to end (its checksums, its meta against its name, and the
//! engine's own restore, which verifies every balance), this node must be a member of the
//! membership the snapshot carries, and then the data directory gets
//! - the snapshot file under `snapshots/`, durable (see `SnapshotWriter::finish`), and
//! - a WAL whose only content is a vote for this node at the snapshot's term.
//!
//! At start, openraft finds the state machine ahead of the empty log and purges the log up to
//! the snapshot; elections then begin at the snapshot's term + 1, so every new entry's log id
//! is above the snapshot's (a vote below it would let a new leader write entries that sort
//! before what is already applied). Restore every voter of the snapshot's membership from the
//! same file, at the same addresses, and start them: they elect a leader and continue from
//! the snapshot. Writes acknowledged after the snapshot was taken are not in it.

use std::path::Path;
use std::sync::Arc;

use tally_engine::{Engine, EngineConfig};

use super::snapshot_image::read_head;
use super::types::NodeId;
use super::{SNAPSHOT_DIR, WAL_DIR};
use crate::snapshot_file::SnapshotFiles;
use crate::storage::Disk;
use crate::vote::Vote;
use crate::wal::{Wal, WalConfig};

/// What a restore put in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    pub last_index: u64,
    pub last_term: u64,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    pub accounts: u64,
    pub transfers: u64,
}

/// Why a restore was refused; nothing was written unless the error says so.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    #[error("{0} is not a snapshot file name (snapshot-<index>-<term>.snap)")]
    NotASnapshotName(String),
    #[error("the data directory {0} is not empty: restore only into an empty one")]
    NotEmpty(String),
    #[error("reading the snapshot: {0}")]
    Read(#[from] crate::error::SnapshotError),
    #[error("the snapshot file {0} is damaged (checksum or header)")]
    Damaged(String),
    #[error("the snapshot image does not decode: {0}")]
    Image(#[from] super::error::DecodeError),
    #[error("the snapshot's meta ({meta}) does not match its file name")]
    NameMismatch { meta: String },
    #[error("the engine refused the snapshot: {0}")]
    Engine(#[from] tally_engine::SnapshotError),
    #[error("node {id} is not a member of the snapshot's cluster (voters {voters:?}, learners {learners:?})")]
    NotAMember {
        id: NodeId,
        voters: Vec<NodeId>,
        learners: Vec<NodeId>,
    },
    #[error("writing the data directory: {0}")]
    Write(String),
}

/// Restore node `id`'s empty data directory `data_dir` from the snapshot file `file` (see the
/// module docs).
pub fn restore_from_snapshot(
    disk: Arc<dyn Disk>,
    data_dir: &Path,
    id: NodeId,
    file: &Path,
    engine_config: EngineConfig,
) -> Result<Restored, RestoreError> {
    let shown = file.display().to_string();
    let snapshot_id =
        SnapshotFiles::id_of(file).ok_or_else(|| RestoreError::NotASnapshotName(shown.clone()))?;
    let source_dir = file.parent().unwrap_or_else(|| Path::new("."));
    let source = SnapshotFiles::new(Arc::clone(&disk), source_dir)?;
    let file = source
        .open(snapshot_id)?
        .ok_or_else(|| RestoreError::Damaged(shown.clone()))?;
    let mut reader = file.reader();
    // The file's CRC is checked by the read that reaches its end: a failure there is damage.
    let damaged = || RestoreError::Damaged(shown.clone());
    let meta = read_head(&mut reader)
        .map_err(|error| match error {
            super::error::DecodeError::Read(_) => damaged(),
            error => error.into(),
        })?
        .meta;
    let named = meta
        .last_log_id
        .map(|log_id| (log_id.index, log_id.leader_id.term));
    if named != Some((snapshot_id.index, snapshot_id.term)) {
        return Err(RestoreError::NameMismatch {
            meta: meta.to_string(),
        });
    }
    let engine = Engine::restore_from(&mut reader, engine_config).map_err(|error| match error {
        tally_engine::SnapshotError::Read(_) => damaged(),
        error => error.into(),
    })?;
    let membership = meta.last_membership.membership();
    let voters: Vec<NodeId> = membership.voter_ids().collect();
    let learners: Vec<NodeId> = membership.learner_ids().collect();
    if !membership.nodes().any(|(member, _)| *member == id) {
        return Err(RestoreError::NotAMember {
            id,
            voters,
            learners,
        });
    }
    // A directory that cannot be listed does not exist yet (creating it below reports any
    // other problem).
    let listed = disk.list(data_dir).unwrap_or_default();
    if !listed.is_empty() {
        return Err(RestoreError::NotEmpty(data_dir.display().to_string()));
    }
    let write = |error: &dyn std::fmt::Display| RestoreError::Write(error.to_string());
    disk.create_dir_all(data_dir).map_err(|e| write(&e))?;
    let files = SnapshotFiles::new(Arc::clone(&disk), &data_dir.join(SNAPSHOT_DIR))?;
    let mut copy = files.create()?;
    std::io::copy(&mut file.reader(), &mut copy).map_err(|e| write(&e))?;
    copy.finish(snapshot_id)?;
    let mut wal = Wal::open(
        Arc::clone(&disk),
        &data_dir.join(WAL_DIR),
        WalConfig::default(),
    )
    .map_err(|e| write(&e))?;
    wal.save_vote(&Vote {
        term: snapshot_id.term,
        node_id: id,
        committed: false,
    })
    .map_err(|e| write(&e))?;
    wal.close();
    disk.sync_dir(data_dir).map_err(|e| write(&e))?;
    Ok(Restored {
        last_index: snapshot_id.index,
        last_term: snapshot_id.term,
        voters,
        learners,
        accounts: engine.accounts_count() as u64,
        transfers: engine.transfers_count() as u64,
    })
}
