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
pub mod replies;
pub mod restore;
pub mod snapshot_data;
pub mod snapshot_image;
pub mod state_machine;
mod threads;
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
pub use types::{BatchAnswer, ClientBatch, NodeId, Origin, Request, Response, TypeConfig};

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
/// The state machine's newest snapshot is restored on this thread while the WAL's recovery
/// scan reads the log on another; the log's committed entries after the snapshot (up to the
/// commit index an earlier run recorded: `LogStore::recorded_commit`) are applied as they are
/// read, once the restore is done, so a restarted node is where it stopped before openraft
/// starts, at the disk's speed. Entries past the recorded index are applied through Raft once
/// a leader is heard. The scan starts its replay where the newest snapshot file's name says
/// the state will end; if the restore ends elsewhere (a damaged newest snapshot), the log is
/// read again from the right place.
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
    let committed = LogStore::recorded_commit(disk.as_ref(), data_dir)?;
    let expected = StateMachine::replay_start_by_name(Arc::clone(&disk), data_dir);
    let (state_machine, opened, next, replay_time) = std::thread::scope(|scope| {
        let (queue, queued) = crossbeam_channel::bounded(REPLAY_QUEUE_ENTRIES);
        // Without a snapshot there is no restore to overlap: the log is read below, on this
        // thread, as it was before the restore ran beside it.
        let scan = (expected > 0).then(|| {
            std::thread::Builder::new()
                .name("tally-wal-open".to_owned())
                .spawn_scoped(scope, {
                    let disk = Arc::clone(&disk);
                    move || {
                        LogStore::open_with_replay(disk, data_dir, wal_config, expected, |entry| {
                            // Refused only once the restore failed or ended elsewhere: then
                            // the scan just finishes.
                            let _ = queue.send(entry);
                        })
                    }
                })
        });
        // On an error, `queued` is dropped before the scope joins the scan: it never waits
        // on a full queue.
        let state_machine = StateMachine::open(Arc::clone(&disk), data_dir, engine_config)?;
        let restored = std::time::Instant::now();
        let from = state_machine
            .last_applied()
            .map_or(0, |applied| applied.index + 1);
        let mut replay = Replay {
            state_machine: &state_machine,
            next: from,
            committed,
            failed: None,
        };
        let opened = match scan {
            Some(Ok(scan)) if from == expected => {
                prepare_replay(&state_machine, disk.as_ref(), data_dir, from);
                for entry in &queued {
                    replay.visit(entry);
                }
                state_machine.stop_taking_chunks();
                scan.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }
            other => {
                drop(queued);
                match other {
                    Some(Err(error)) => tracing::warn!(%error,
                        "no thread for the WAL's recovery scan: it runs after the restore"),
                    // The scan read from the wrong place: its log store is dropped and the
                    // log read again.
                    Some(Ok(scan)) => drop(
                        scan.join()
                            .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                    ),
                    None => {}
                }
                prepare_replay(&state_machine, disk.as_ref(), data_dir, from);
                let opened = LogStore::open_with_replay(
                    Arc::clone(&disk),
                    data_dir,
                    wal_config,
                    from,
                    |entry| replay.visit(entry),
                );
                state_machine.stop_taking_chunks();
                opened
            }
        };
        let (next, failed) = (replay.next, replay.failed);
        if let Some((index, source)) = failed {
            return Err(StorageOpenError::Replay { index, source });
        }
        Ok::<_, StorageOpenError>((state_machine, opened, next, restored.elapsed()))
    })?;
    let mut log_store = opened?;
    log_store.wait_for_installs(state_machine.install_pending());
    let from = state_machine
        .last_applied()
        .map_or(0, |applied| applied.index + 1);
    // Everything applied is committed: a snapshot holds only applied entries, and the replay
    // stops at the recorded commit index.
    if let Some(applied) = state_machine.last_applied() {
        log_store.note_committed(applied.index);
    }
    if next > from {
        tracing::info!(
            entries = next - from,
            through = next - 1,
            seconds = replay_time.as_secs_f64(),
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

/// Entries the WAL's recovery scan may read ahead of the replay while the restore runs. Each
/// pins the segment-sized read buffer it was read into (docs/wal.md), so few.
const REPLAY_QUEUE_ENTRIES: usize = 64;

/// Ready the state machine for applying the log from `from` in bulk: its arena chunks faulted
/// in by a helper thread, its event index sized for the records the WAL holds from there.
fn prepare_replay(state_machine: &StateMachine, disk: &dyn Disk, data_dir: &Path, from: u64) {
    state_machine.take_chunks();
    // Without this the event index doubles its table ~14 times on the way to 10M events.
    // An estimate only (records of 128 bytes in the segments the replay reads; entries that
    // are not event batches count too), so a failure to list is no reason not to start.
    match crate::wal::segment::bytes_from(disk, &data_dir.join(WAL_DIR), from) {
        Ok(bytes) => state_machine.make_room((bytes / RECORD_BYTES as u64) as usize),
        // A new node has no WAL directory yet: nothing to replay, nothing to warn about.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => tracing::warn!(%error, "could not size the replay from the WAL's segments"),
    }
}
