//! openraft's state machine (`RaftStateMachine`, `RaftSnapshotBuilder`) wrapping the engine.
//!
//! The engine lives in memory and is not written to disk as it applies; snapshots are. So the
//! durable state of a replica is its newest snapshot file plus its log, and every snapshot is
//! durable before openraft hears of it (built or installed), because openraft purges the log up
//! to a snapshot as soon as it has one. At start the newest valid snapshot is restored
//! (`StateMachine::open`) and openraft re-applies the committed log after it.
//!
//! A snapshot image (`snapshot_image.rs`) holds the engine's snapshot *and* the applied state
//! (last applied log id, last membership), so the two are always restored together.
//!
//! Snapshot files are written through `snapshot_file.rs` in `{data}/snapshots/`, and a
//! snapshot is never held in memory whole: building freezes a view of the engine on the state
//! machine's task (`Engine::freeze`: a pause that does not grow with the history) and streams
//! it to a file on a low-priority thread while applies go on; openraft gets the file
//! (`SnapshotData`), which the network sends in chunks read from it; a received snapshot is
//! written to a partial file as it arrives, restored from that file, and kept by renaming it.
//! An install frees the old state before it restores the new one (a failed install stops
//! openraft; a restart rebuilds from this replica's own snapshot and log); meanwhile the state
//! is empty, marked `Applied::installing`, and client reads are refused as unavailable. So
//! building, sending and installing cost the state's memory once, plus a chunk.

// openraft's traits take its 224-byte `StorageError` by value: boxing would add a conversion.
#![allow(clippy::result_large_err)]

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use tally_engine::{CheckpointRefused, Engine, EngineConfig, LogPosition};

mod log_notes;

use super::error::{InstallError, StateMachineOpenError};
use super::limits::{SNAPSHOTS_KEPT, SNAPSHOT_RECEIVE_BYTES_MAX};
use super::replies::{BatchAnswer, ReplyTable};
use super::snapshot_data::SnapshotData;
use super::snapshot_image::{encode_head, read_head};
use super::threads::{blocking, chunk_supply, hash_leaves_aside, in_background, restore_engine};
use super::types::{
    ClientBatch, Entry, LogId, Response, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use super::SNAPSHOT_DIR;
use crate::metrics::watching_resident;
use crate::snapshot_file::{SnapshotFile, SnapshotFiles};
use crate::snapshot_split::{write_frozen, KeptSections};
use crate::storage::Disk;
use crate::wal;

/// What the replica has applied: the engine, and the log id and membership it reached.
pub struct Applied {
    /// Empty while `installing`.
    engine: Engine,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    /// A snapshot is being installed: the old state is gone, the new one not yet in.
    installing: bool,
    /// Each client's last answers, built from the log like the engine (`replies.rs`).
    replies: ReplyTable,
    /// Set when a replicated checkpoint's root was not this replica's own at its size: this
    /// replica's history is not the one the leader signed. It applies nothing more (`apply`
    /// fails, which stops openraft on this node) until an operator rebuilds it.
    diverged: Option<(LogId, CheckpointRefused)>,
}

impl std::fmt::Debug for Applied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applied")
            .field("last_applied", &self.last_applied)
            .field("membership", &self.membership)
            .field("accounts", &self.engine.accounts_count())
            .field("transfers", &self.engine.transfers_count())
            .field("trades", &self.engine.trades_count())
            .finish()
    }
}

impl Applied {
    /// The engine, for queries; `None` while a snapshot is being installed (there is no
    /// state to answer from: a reader should refuse as unavailable, and retry).
    pub fn engine(&self) -> Option<&Engine> {
        (!self.installing).then_some(&self.engine)
    }

    /// The last log entry applied to the engine.
    pub fn last_applied(&self) -> Option<LogId> {
        self.last_applied
    }

    /// The last membership applied, with the log id of its entry.
    pub fn membership(&self) -> &StoredMembership {
        &self.membership
    }

    /// The replicated reply table.
    pub fn replies(&self) -> &ReplyTable {
        &self.replies
    }

    /// The entry whose checkpoint showed this replica's history differs from the one signed,
    /// and how, if one did (then nothing more is applied here).
    pub fn diverged(&self) -> Option<&(LogId, CheckpointRefused)> {
        self.diverged.as_ref()
    }

    /// Apply the entry after the last applied one: each client batch of a request through
    /// `Engine::apply` under the entry's timestamp (a request with no batch is the leader's
    /// expiry tick: `Engine::expire_due`); a membership entry is recorded. A batch whose
    /// origin the reply table holds is answered from there instead (`apply_batch`).
    fn apply_entry(&mut self, entry: Entry) -> Response {
        assert!(
            self.last_applied < Some(entry.log_id),
            "entry {} applied after {:?}: entries are applied in log order",
            entry.log_id,
            self.last_applied
        );
        self.last_applied = Some(entry.log_id);
        match entry.payload {
            EntryPayload::Blank => Response::default(),
            EntryPayload::Normal(request) if request.batches.is_empty() => {
                self.engine.expire_due(request.timestamp);
                if let Some(note) = request.log {
                    self.apply_log_note(entry.log_id, request.timestamp, note);
                }
                Response::default()
            }
            EntryPayload::Normal(request) => {
                // Each event's index in the entry, counted through its batches (every batch's
                // records, applied or answered from the reply table): the leaves' positions.
                let mut index_in_entry = 0u32;
                let batches = request
                    .batches
                    .iter()
                    .map(|batch| {
                        let position = LogPosition {
                            commit_index: entry.log_id.index,
                            index_in_entry,
                        };
                        let records = batch.body.len() / tally_engine::limits::RECORD_BYTES;
                        index_in_entry = index_in_entry.saturating_add(records as u32);
                        self.apply_batch(batch, request.timestamp, position)
                    })
                    .collect();
                Response { batches }
            }
            EntryPayload::Membership(membership) => {
                self.membership = StoredMembership::new(Some(entry.log_id), membership);
                Response::default()
            }
        }
    }
}

impl Applied {
    /// One client batch of the entry at `position`: the recorded answer if the reply table
    /// holds its origin's number (a replay, or a reused number refused), else applied by the
    /// engine and its outcome recorded.
    fn apply_batch(
        &mut self,
        batch: &ClientBatch,
        timestamp: u64,
        position: LogPosition,
    ) -> BatchAnswer {
        let log_index = position.commit_index;
        if let Some(origin) = &batch.origin {
            if let Some(answer) = self.replies.answer(origin, log_index) {
                return answer;
            }
        }
        let outcome = self
            .engine
            .apply_at(batch.operation, timestamp, &batch.body, position);
        if let Some(origin) = &batch.origin {
            self.replies.record(origin, log_index, &outcome);
        }
        BatchAnswer::Applied(outcome)
    }
}

/// A read handle on the applied state, for queries and for comparing replicas (the digest);
/// cheap to clone. Readers and `apply` take turns per entry.
#[derive(Clone, Debug)]
pub struct AppliedView {
    applied: Arc<RwLock<Applied>>,
}

impl AppliedView {
    /// Run `read` on the applied state, consistent for its duration.
    pub fn read<R>(&self, read: impl FnOnce(&Applied) -> R) -> R {
        read(&read_lock(&self.applied))
    }

    /// The last applied log id and the engine's state digest at that point: equal on every
    /// replica that applied the same log.
    pub fn digest(&self) -> (Option<LogId>, [u8; 32]) {
        self.read(|applied| (applied.last_applied, applied.engine.digest()))
    }
}

// A panic while the lock is held is a broken invariant inside `apply` (the engine asserts),
// which may have left the engine half-way through a batch: nobody may read it after that.
fn read_lock(lock: &RwLock<Applied>) -> RwLockReadGuard<'_, Applied> {
    lock.read()
        .expect("the applied state is poisoned by a panic while applying")
}

fn write_lock(lock: &RwLock<Applied>) -> RwLockWriteGuard<'_, Applied> {
    lock.write()
        .expect("the applied state is poisoned by a panic while applying")
}

/// The snapshot files and which one is current, shared with snapshot builders.
#[derive(Debug)]
struct Snapshots {
    files: SnapshotFiles,
    /// Meta of the newest snapshot on disk, if any.
    current: Mutex<Option<SnapshotMeta>>,
    /// The sections of the last snapshot built here, for the next build to take again.
    kept: Mutex<KeptSections>,
    metrics: crate::metrics::SnapshotMetrics,
    /// Received snapshots complete and not yet durable (nor dropped uninstalled); purges wait
    /// while any is counted (`LogStore::purge`, `snapshot_data::InstallHold`).
    install_pending: Arc<tokio::sync::watch::Sender<u32>>,
}

/// The snapshot file name's log id for `meta` (a snapshot of nothing applied is named 0-0;
/// the log id inside the image tells it apart).
fn file_id(meta: &SnapshotMeta) -> wal::LogId {
    meta.last_log_id
        .map_or(wal::LogId { index: 0, term: 0 }, |id| wal::LogId {
            index: id.index,
            term: id.leader_id.term,
        })
}

impl Snapshots {
    /// Whether snapshot work runs within the call instead of on threads of its own
    /// (`Disk::single_threaded`: the deterministic simulator).
    fn single_threaded(&self) -> bool {
        self.files.disk.single_threaded()
    }

    fn lock(&self) -> MutexGuard<'_, Option<SnapshotMeta>> {
        // Only a panic while writing a file can poison this; the files on disk are still
        // consistent (writes are atomic), and so is the meta recorded before it.
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Make the snapshot file of `meta` (`payload_bytes` long, durable: `SnapshotWriter::
    /// finish`) the current snapshot, and delete older ones.
    ///
    /// Durability contract:
    /// - The file is durable (written to a partial file, fsync'd, renamed, directory fsync'd)
    ///   before it becomes current; only then are older snapshots deleted.
    /// - A snapshot older than the current one (a build that finished after a newer snapshot
    ///   was installed) does not become current, and its file is removed at once (file
    ///   names and log ids may disagree on which is newer): returns `Ok(false)`.
    fn make_current(
        &self,
        meta: &SnapshotMeta,
        payload_bytes: u64,
        origin: &str,
    ) -> Result<bool, StorageError> {
        let mut current = self.lock();
        if self.is_older(&current, meta) {
            // Its file (written before this check) must not outlive the decision: it would
            // count as the newest where names and log ids disagree on the order.
            if let Err(error) = self.files.remove(file_id(meta)) {
                tracing::warn!(%error, snapshot = %meta, "an outdated snapshot file stays until the next prune");
            }
            return Ok(false);
        }
        *current = Some(meta.clone());
        self.metrics.saved.with_label_values(&[origin]).inc();
        self.metrics
            .size_bytes
            .set(i64::try_from(payload_bytes).unwrap_or(i64::MAX));
        self.files
            .prune(SNAPSHOTS_KEPT)
            .map_err(|error| StorageIOError::write_snapshot(Some(meta.signature()), &error))?;
        Ok(true)
    }

    fn is_older(&self, current: &Option<SnapshotMeta>, meta: &SnapshotMeta) -> bool {
        current
            .as_ref()
            .is_some_and(|current| current.last_log_id > meta.last_log_id)
    }

    /// Write `frozen` as a new snapshot of `meta`, incrementally (`snapshot_split`: the
    /// chunks of events unchanged since the last build are taken from its section files),
    /// and make it current; the file, to send. Runs for as long as writing what changed
    /// takes: on a thread of its own.
    fn build(
        &self,
        meta: &SnapshotMeta,
        replies: &ReplyTable,
        frozen: &tally_engine::FrozenState,
    ) -> Result<SnapshotFile, StorageError> {
        let failed = |error: &dyn std::error::Error| -> StorageError {
            let error = std::io::Error::other(error.to_string());
            StorageIOError::write_snapshot(Some(meta.signature()), &error).into()
        };
        let head = encode_head(meta, replies).map_err(|error| failed(&error))?;
        // One build at a time takes and renews the kept sections.
        let mut kept = self
            .kept
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (file, written, taken) =
            write_frozen(&self.files, file_id(meta), &head, frozen, &mut kept)
                .map_err(|error| failed(&error))?;
        drop(kept);
        self.metrics
            .written
            .with_label_values(&["written"])
            .inc_by(written);
        self.metrics
            .written
            .with_label_values(&["kept"])
            .inc_by(taken);
        tracing::info!(snapshot = %meta, written_bytes = written, kept_bytes = taken,
            "snapshot written");
        self.make_current(meta, file.payload_bytes(), "built")?;
        Ok(file)
    }

    /// Check a snapshot received as `meta` and restore the engine from it, streaming from its
    /// file; then keep the file as the current snapshot (`make_current`).
    fn install(
        &self,
        sent: &SnapshotMeta,
        mut snapshot: SnapshotData,
        config: EngineConfig,
    ) -> Result<(Engine, ReplyTable), StorageError> {
        let refused = |error: InstallError| -> StorageError {
            StorageIOError::read_snapshot(Some(sent.signature()), &error).into()
        };
        let io_failed = |error: std::io::Error| -> StorageError {
            StorageIOError::read_snapshot(Some(sent.signature()), &error).into()
        };
        // openraft installs only snapshots past what is applied, and the current snapshot
        // is never past what is applied; an older one would move the state backwards.
        if self.is_older(&self.lock(), sent) {
            return Err(refused(InstallError::OlderThanCurrent {
                sent: sent.to_string(),
            }));
        }
        // A snapshot handed over as another node's stored file (not received here in chunks)
        // is copied into this node's directory as it is read.
        let mut copy = if snapshot.is_stored() {
            Some(self.files.create().map_err(|error| {
                StorageError::from(StorageIOError::write_snapshot(
                    Some(sent.signature()),
                    &error,
                ))
            })?)
        } else {
            None
        };
        let mut reader = Tee {
            reader: snapshot.reader().map_err(io_failed)?,
            copy: copy.as_mut(),
        };
        let carried = read_head(&mut reader).map_err(|e| refused(e.into()))?;
        if carried.meta != *sent {
            return Err(refused(InstallError::MetaMismatch {
                carried: carried.meta.to_string(),
                sent: sent.to_string(),
            }));
        }
        let engine = restore_engine(&mut reader, config).map_err(|e| refused(e.into()))?;
        let payload_bytes = snapshot.len();
        let kept = snapshot
            .into_received()
            .or(copy)
            .expect("received or copied");
        kept.finish(file_id(sent)).map_err(|error| {
            StorageError::from(StorageIOError::write_snapshot(
                Some(sent.signature()),
                &error,
            ))
        })?;
        if !self.make_current(sent, payload_bytes, "installed")? {
            return Err(refused(InstallError::OlderThanCurrent {
                sent: sent.to_string(),
            }));
        }
        Ok((engine, carried.replies))
    }

    fn record_growth(&self, phase: &str, bytes: u64) {
        self.metrics
            .rss_growth
            .with_label_values(&[phase])
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// The current snapshot's file, its header and meta checked.
    fn load_current(&self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let current = self.lock();
        let Some(meta) = current.as_ref() else {
            return Ok(None);
        };
        let failed = |error: &dyn std::error::Error| -> StorageError {
            let error = std::io::Error::other(error.to_string());
            StorageIOError::read_snapshot(Some(meta.signature()), &error).into()
        };
        let file = self
            .files
            .open(file_id(meta))
            .map_err(|error| failed(&error))?
            .ok_or_else(|| {
                failed(&std::io::Error::other(
                    "the current snapshot file is damaged",
                ))
            })?;
        let carried = read_head(&mut file.reader())
            .map_err(|error| failed(&error))?
            .meta;
        // Assertion in pairs: the meta written into the image is the meta we recorded.
        if carried != *meta {
            return Err(failed(&std::io::Error::other(format!(
                "the current snapshot file carries {carried}, expected {meta}"
            ))));
        }
        Ok(Some(Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(SnapshotData::stored(file)),
        }))
    }
}

/// A reader that copies what it reads into a snapshot file being written.
struct Tee<'a, R> {
    reader: R,
    copy: Option<&'a mut crate::snapshot_file::SnapshotWriter>,
}

impl<R: std::io::Read> std::io::Read for Tee<'_, R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.reader.read(buffer)?;
        if let Some(copy) = self.copy.as_mut() {
            copy.write_all(&buffer[..read])?;
        }
        Ok(read)
    }
}

/// openraft's state machine: the engine plus the applied log id and membership, with
/// snapshots on disk. See the module docs.
#[derive(Debug)]
pub struct StateMachine {
    applied: Arc<RwLock<Applied>>,
    snapshots: Arc<Snapshots>,
    /// Cycle runs' apply time (`tally_settlement_run_seconds`) and the book's gauges.
    settlement_metrics: crate::settlement_metrics::SettlementMetrics,
    engine_config: EngineConfig,
    /// Bound of a snapshot received from a peer (`SNAPSHOT_RECEIVE_BYTES_MAX` unless a test
    /// lowers it to reach it).
    snapshot_receive_bytes_max: u64,
}

impl StateMachine {
    /// The index the log replay will start from after `open`, as far as the snapshot files'
    /// names tell before any of them is read: the one after the newest snapshot's (0 for none,
    /// or for a snapshot of nothing applied). `open` may still restore an older snapshot, if
    /// the newest is damaged: `last_applied` after it is the truth.
    pub(crate) fn replay_start_by_name(disk: Arc<dyn Disk>, data_dir: &Path) -> u64 {
        let newest = SnapshotFiles::new(disk, &data_dir.join(SNAPSHOT_DIR))
            .and_then(|files| files.list())
            .ok()
            .and_then(|ids| ids.first().copied());
        match newest {
            Some(id) if id != (wal::LogId { index: 0, term: 0 }) => id.index + 1,
            _ => 0,
        }
    }

    /// Open the state machine of the node whose data directory is `data_dir`: restore the
    /// newest valid snapshot in `{data_dir}/snapshots/` (damaged newer ones are skipped and
    /// logged), or start empty.
    pub fn open(
        disk: Arc<dyn Disk>,
        data_dir: &Path,
        engine_config: EngineConfig,
    ) -> Result<StateMachine, StateMachineOpenError> {
        let files = SnapshotFiles::new(Arc::clone(&disk), &data_dir.join(SNAPSHOT_DIR))?;
        files.remove_partial()?;
        // A new directory's name is durable only once its parent is synced.
        disk.sync_dir(data_dir)
            .map_err(|source| crate::error::SnapshotError::Io {
                path: data_dir.to_path_buf(),
                source,
            })?;
        let metrics = crate::metrics::SnapshotMetrics::new();
        let started = std::time::Instant::now();
        let (applied, current) = match restore_newest(&files, engine_config)? {
            None => (
                Applied {
                    engine: Engine::new(engine_config),
                    last_applied: None,
                    membership: StoredMembership::default(),
                    installing: false,
                    replies: ReplyTable::default(),
                    diverged: None,
                },
                None,
            ),
            Some((meta, replies, engine, payload_bytes)) => {
                tracing::info!(
                    snapshot = %meta,
                    seconds = started.elapsed().as_secs_f64(),
                    "state restored from snapshot"
                );
                metrics
                    .size_bytes
                    .set(i64::try_from(payload_bytes).unwrap_or(i64::MAX));
                let applied = Applied {
                    engine,
                    last_applied: meta.last_log_id,
                    membership: meta.last_membership.clone(),
                    installing: false,
                    replies,
                    diverged: None,
                };
                (applied, Some(meta))
            }
        };
        let mut applied = applied;
        hash_leaves_aside(&mut applied.engine, disk.single_threaded());
        Ok(StateMachine {
            applied: Arc::new(RwLock::new(applied)),
            snapshots: Arc::new(Snapshots {
                files,
                current: Mutex::new(current),
                kept: Mutex::default(),
                metrics,
                install_pending: Arc::new(tokio::sync::watch::Sender::new(0)),
            }),
            settlement_metrics: crate::settlement_metrics::SettlementMetrics::new(),
            engine_config,
            snapshot_receive_bytes_max: SNAPSHOT_RECEIVE_BYTES_MAX,
        })
    }

    /// Net settlement's metrics, for the node to register and refresh at each scrape.
    pub fn settlement_metrics(&self) -> crate::settlement_metrics::SettlementMetrics {
        self.settlement_metrics.clone()
    }

    /// Lower the bound of a snapshot received from a peer below `SNAPSHOT_RECEIVE_BYTES_MAX`
    /// (tests reach it this way without sending gigabytes). A larger value is clamped to it.
    pub fn set_snapshot_receive_bytes_max(&mut self, bytes_max: u64) {
        self.snapshot_receive_bytes_max = bytes_max.min(SNAPSHOT_RECEIVE_BYTES_MAX);
    }

    /// The snapshot store's metrics (unregistered: the node registers them).
    pub fn snapshot_metrics(&self) -> crate::metrics::SnapshotMetrics {
        self.snapshots.metrics.clone()
    }

    /// How many received snapshots wait to be made durable: what a purge waits on.
    pub(crate) fn install_pending(&self) -> tokio::sync::watch::Receiver<u32> {
        self.snapshots.install_pending.subscribe()
    }

    /// A read handle on the applied state.
    pub fn view(&self) -> AppliedView {
        AppliedView {
            applied: Arc::clone(&self.applied),
        }
    }

    /// The last applied log id.
    pub fn last_applied(&self) -> Option<LogId> {
        read_lock(&self.applied).last_applied
    }

    /// Apply a committed entry of the local log while the storage opens, before openraft
    /// starts (`open_storage`): the entry after the last applied one.
    pub(crate) fn replay(&self, entry: Entry) {
        write_lock(&self.applied).apply_entry(entry);
    }

    /// Have a maker thread fault the engine's arena chunks in ahead while the log is replayed
    /// into it at start (`Engine::take_chunks_from`), until `stop_taking_chunks`.
    pub(crate) fn take_chunks(&self) {
        if let Some(supply) = chunk_supply() {
            write_lock(&self.applied).engine.take_chunks_from(supply);
        }
    }

    /// Ends `take_chunks`: its maker thread returns.
    pub(crate) fn stop_taking_chunks(&self) {
        write_lock(&self.applied).engine.stop_taking_chunks();
    }

    /// Size the engine's indexes for `events` more events without touching their memory
    /// (`Engine::make_room`), so a replay of that many never rehashes the event index.
    pub(crate) fn make_room(&self, events: usize) {
        write_lock(&self.applied).engine.make_room(0, events);
    }
}

/// Restore the newest snapshot in `files` that restores, streamed from its file: its meta,
/// engine and payload length. A newer one that does not (a damaged file, a meta that does not
/// match its name, a state the engine refuses) is skipped with the reason logged: every
/// snapshot is only a shortcut through the log, and `open_storage` refuses to start if the
/// one used leaves a hole before the log's purge point.
fn restore_newest(
    files: &SnapshotFiles,
    engine_config: EngineConfig,
) -> Result<Option<(SnapshotMeta, ReplyTable, Engine, u64)>, StateMachineOpenError> {
    for id in files.list()? {
        let Some(file) = files.open(id)? else {
            continue;
        };
        let mut reader = file.reader();
        let restored = read_head(&mut reader)
            .map_err(|source| StateMachineOpenError::Image {
                index: id.index,
                term: id.term,
                source,
            })
            .and_then(|head| {
                let meta = head.meta;
                if file_id(&meta) != id {
                    return Err(StateMachineOpenError::NameMismatch {
                        index: id.index,
                        term: id.term,
                        meta: meta.to_string(),
                    });
                }
                let engine = restore_engine(&mut reader, engine_config).map_err(|source| {
                    StateMachineOpenError::Engine {
                        index: id.index,
                        term: id.term,
                        source,
                    }
                })?;
                Ok((meta, head.replies, engine, file.payload_bytes()))
            });
        match restored {
            Ok(restored) => return Ok(Some(restored)),
            Err(error) => {
                tracing::warn!(path = %file.path().display(), %error, "snapshot not restored; trying an older one");
            }
        }
    }
    Ok(None)
}

/// Builds one snapshot from the frozen view of the state taken when it was created.
#[derive(Debug)]
pub struct SnapshotBuilder {
    meta: SnapshotMeta,
    replies: ReplyTable,
    frozen: Arc<tally_engine::FrozenState>,
    snapshots: Arc<Snapshots>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    /// - The returned snapshot's file is durable before this returns (see `Snapshots::save`).
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let meta = self.meta.clone();
        let replies = std::mem::take(&mut self.replies);
        let frozen = Arc::clone(&self.frozen);
        let snapshots = Arc::clone(&self.snapshots);
        let (file, growth) = in_background(self.snapshots.single_threaded(), move || {
            let (file, growth) = watching_resident(|| snapshots.build(&meta, &replies, &frozen));
            snapshots.record_growth("build", growth);
            Ok((file?, growth))
        })
        .await?;
        tracing::info!(snapshot = %self.meta, bytes = file.payload_bytes(),
            rss_growth_bytes = growth, "snapshot built");
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(SnapshotData::stored(file)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let applied = read_lock(&self.applied);
        Ok((applied.last_applied, applied.membership.clone()))
    }

    /// Apply committed entries in log order: each client batch of a request goes through
    /// `Engine::apply` under the entry's timestamp; a membership entry is recorded. Not
    /// durable by itself: the log and the next snapshot are (see the module docs).
    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // One entry at a time under the lock, so readers interleave with a long apply. A
        // replica whose history diverged applies nothing more: the error stops openraft here.
        let mut responses = Vec::new();
        for entry in entries {
            let mut applied = write_lock(&self.applied);
            if let Some((log_id, refused)) = applied.diverged.clone() {
                return Err(StorageIOError::apply(log_id, &refused).into());
            }
            // A settlement cycle run holds the apply path like nothing else: timed.
            let runs = applied.engine.settlement().run_records().len();
            let started = std::time::Instant::now();
            responses.push(applied.apply_entry(entry));
            if applied.engine.settlement().run_records().len() != runs {
                let seconds = started.elapsed().as_secs_f64();
                self.settlement_metrics.run_seconds.observe(seconds);
            }
        }
        Ok(responses)
    }

    /// Freezes the engine's state now (a consistent view, on this task: the only part of a
    /// snapshot that holds up applies, measured in `tally_snapshot_apply_pause_seconds`); the
    /// builder serialises and writes it while applies go on (`Engine::freeze`).
    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        // A write lock: freezing updates the arenas' kept pointer lists (`Engine::freeze`).
        // The pause is the time it is held: waiting for it is the snapshot waiting for an
        // apply, not the other way round.
        let mut applied = write_lock(&self.applied);
        let started = std::time::Instant::now();
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.membership.clone(),
            snapshot_id: match applied.last_applied {
                // Equal log ids mean equal states (the engine is deterministic), so the id
                // names the state, not the build.
                Some(id) => format!(
                    "{}-{}-{}",
                    id.index, id.leader_id.term, id.leader_id.node_id
                ),
                None => "empty".to_owned(),
            },
        };
        let frozen = applied.engine.freeze();
        // One pointer per client: answers are shared with the live table (`ReplyTable`).
        let replies = applied.replies.clone();
        drop(applied);
        let pause = started.elapsed();
        self.snapshots
            .metrics
            .apply_pause
            .observe(pause.as_secs_f64());
        tracing::info!(
            snapshot = %meta,
            events = frozen.events(),
            pause_us = pause.as_micros() as u64,
            "snapshot view taken"
        );
        SnapshotBuilder {
            meta,
            replies,
            frozen: Arc::new(frozen),
            snapshots: Arc::clone(&self.snapshots),
        }
    }

    /// - The data takes chunks only in order (each at the offset where the bytes received so
    ///   far end, or at 0 to start over) and only up to the receive bound; anything else is an
    ///   I/O error that changes nothing (`SnapshotData`). They go to a partial file in the
    ///   snapshots directory, not to memory.
    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>, StorageError> {
        let writer =
            self.snapshots.files.create().map_err(|error| {
                StorageError::from(StorageIOError::write_snapshot(None, &error))
            })?;
        Ok(Box::new(
            SnapshotData::receiving(writer, self.snapshot_receive_bytes_max)
                .announcing_install(Arc::clone(&self.snapshots.install_pending)),
        ))
    }

    /// - The snapshot's bytes must carry exactly `meta` (checked) and restore in the engine
    ///   (its checksum and structure are verified by `Engine::restore_from`, streaming from the
    ///   received file).
    /// - The snapshot file is durable (the received file finished and renamed) before the
    ///   state is replaced, and every older snapshot is deleted after it; a crash in between
    ///   restores this snapshot at start.
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        mut snapshot: Box<SnapshotData>,
    ) -> Result<(), StorageError> {
        // Purges wait until this returns: the snapshot durable and current, or failed.
        let _hold = snapshot.take_hold();
        let sent = meta.clone();
        let snapshots = Arc::clone(&self.snapshots);
        let config = self.engine_config;
        // The old state goes first, so the replica never holds two (module docs). Until the
        // new one is in, the state is the empty one at no log id, marked as installing.
        let old = {
            let mut applied = write_lock(&self.applied);
            applied.installing = true;
            applied.last_applied = None;
            applied.replies = ReplyTable::default();
            std::mem::replace(&mut applied.engine, Engine::new(config))
        };
        let (engine, replies) = blocking(self.snapshots.single_threaded(), move || {
            // Growth from the resident memory with the old state still in: freeing it takes a
            // while, so here rather than while readers wait for the lock.
            let (engine, growth) = watching_resident(|| {
                drop(old);
                snapshots.install(&sent, *snapshot, config)
            });
            snapshots.record_growth("install", growth);
            engine
        })
        .await?;
        let mut engine = engine;
        hash_leaves_aside(&mut engine, self.snapshots.single_threaded());
        let mut applied = write_lock(&self.applied);
        applied.engine = engine;
        applied.replies = replies;
        applied.last_applied = meta.last_log_id;
        applied.membership = meta.last_membership.clone();
        applied.installing = false;
        drop(applied);
        tracing::info!(snapshot = %meta, "snapshot installed");
        Ok(())
    }

    /// - Read back from its file and checked against the recorded meta.
    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let snapshots = Arc::clone(&self.snapshots);
        blocking(self.snapshots.single_threaded(), move || {
            snapshots.load_current()
        })
        .await
    }
}
