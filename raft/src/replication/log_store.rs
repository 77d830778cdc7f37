//! openraft's log storage (`RaftLogStorage`, `RaftLogReader`) on Tally's WAL.
//!
//! The WAL was shaped after openraft's storage-v2 API, so most methods map one to one. What
//! this layer adds:
//! - the entry codec (`codec.rs`): openraft entries in, WAL records out, and back;
//! - the leader's node id of the last purged log id, which the WAL's purge mark (index and
//!   term only) does not keep: a small metadata file, `{data}/raft/purged-log-id`;
//! - the vote is saved only after every earlier append is durable, because openraft requires
//!   all log and vote I/O to complete in the order it was submitted, and the WAL writes the
//!   vote file directly while appends wait in its queue;
//! - reads clamped to what the log holds (openraft asks for ranges that may have been purged
//!   meanwhile) and limited in bytes for replication.
//!
//! The methods block on disk I/O where the WAL does (`save_vote`, `truncate`, `purge`, reads of
//! entries no longer cached): these are rare, short (one or two fsyncs) or off the hot path.
//! `append` does not wait for the disk.

// openraft's storage traits return its `StorageError` (224 bytes) by value; the helpers here
// produce exactly that error for them, so boxing it would only add a conversion.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError};
use tokio::sync::watch;

use super::codec::{decode_entry, encode_entry};
use super::error::LogStoreOpenError;
use super::limits::{
    COMMIT_MARK_INTERVAL, LOG_READ_ATTEMPTS_MAX, REPLICATION_READ_BYTES_MAX,
    REPLICATION_READ_ENTRIES_STEP,
};
use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use super::{RAFT_META_DIR, WAL_DIR};
use crate::error::ReadError;
use crate::storage::Disk;
use crate::vote::{read_meta, write_meta, MetaError};
use crate::wal::{self, Wal, WalConfig, WalReader};

/// Name of the file (in `{data}/raft/`) holding openraft's last purged log id.
pub const PURGED_LOG_ID_FILE: &str = "purged-log-id";
const PURGED_LOG_ID_MAGIC: u32 = 0x494C_5054; // "TPLI"
/// Name of the file (in `{data}/raft/`) holding a commit index this node knew (see
/// [`CommitMarker`]).
pub const COMMITTED_INDEX_FILE: &str = "committed-index";
const COMMITTED_INDEX_MAGIC: u32 = 0x4943_5054; // "TPCI"

/// openraft's log storage on the WAL of one node. See the module docs.
pub struct LogStore {
    wal: Wal,
    reader: LogReader,
    disk: Arc<dyn Disk>,
    meta_dir: PathBuf,
    /// openraft's last purged log id, with the leader's node id the WAL's purge mark lacks.
    /// Durable (in `PURGED_LOG_ID_FILE`) before the WAL purges anything up to it.
    purged: Option<LogId>,
    /// `append` calls handed to the WAL so far.
    appends_submitted: u64,
    /// Appends whose flush callback has fired (durable, or failed by a poisoned WAL). The WAL
    /// fires callbacks in append order, so this is a prefix count.
    appends_completed: Arc<watch::Sender<u64>>,
    /// The commit index openraft last told `save_committed`, plus one (0: none), for metrics
    /// and readiness, and recorded on disk about once a second by `commit_marker`.
    committed: Arc<std::sync::atomic::AtomicU64>,
    commit_marker: CommitMarker,
    /// The state machine's count of received snapshots not yet durable (`open_storage`
    /// connects it): a purge waits while it is above zero.
    install_pending: Option<watch::Receiver<u32>>,
}

/// Records the commit index openraft told `save_committed` in `COMMITTED_INDEX_FILE`, on a
/// thread of its own: every `COMMIT_MARK_INTERVAL` when it moved, and once more when the log
/// store is dropped (a clean stop records the last one). On a disk that wants no threads
/// (`Disk::single_threaded`) `save_committed` records it itself, at most once per interval of
/// tokio's clock (the simulator's), and the drop records the last one the same way.
///
/// Contract: the recorded index is one openraft reported committed on this node, so every
/// entry of this node's log up to it is committed (Raft never lets a follower commit past the
/// entries it holds from the leader, and committed entries are never truncated:
/// `truncate` refuses it). It may lag the real commit index — by up to the interval after a
/// crash — never lead it. So a restart may apply the log up to it without waiting for a
/// leader (`open_storage`). Not on the commit path: no fsync per commit.
#[derive(Debug)]
enum CommitMarker {
    /// A thread of its own records the index; `stop` tells it to record once more and end.
    Thread {
        stop: Arc<std::sync::atomic::AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
    /// `save_committed` records it (`CommitMarker::published`).
    Here {
        recorder: Recorder,
        /// When it last recorded, on tokio's clock (`None`: not yet).
        at: Option<tokio::time::Instant>,
    },
}

/// What one recording needs, and what was recorded last.
#[derive(Debug)]
struct Recorder {
    disk: Arc<dyn Disk>,
    meta_dir: PathBuf,
    committed: Arc<std::sync::atomic::AtomicU64>,
    /// The published index (`committed`) recorded last.
    recorded: u64,
}

impl Recorder {
    /// Record the published commit index if it moved since the last time.
    fn record(&mut self) {
        let now = self.committed.load(std::sync::atomic::Ordering::Relaxed);
        if now <= self.recorded {
            return;
        }
        let index = (now - 1).to_le_bytes();
        match write_meta(
            self.disk.as_ref(),
            &self.meta_dir,
            COMMITTED_INDEX_FILE,
            COMMITTED_INDEX_MAGIC,
            &index,
        ) {
            Ok(()) => self.recorded = now,
            Err(error) => tracing::warn!(%error,
                "the commit index could not be recorded; a restart applies more of the log \
                 through Raft instead"),
        }
    }
}

impl CommitMarker {
    fn start(
        disk: Arc<dyn Disk>,
        meta_dir: PathBuf,
        committed: Arc<std::sync::atomic::AtomicU64>,
    ) -> std::io::Result<CommitMarker> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut recorder = Recorder {
            disk,
            meta_dir,
            recorded: committed.load(Relaxed),
            committed,
        };
        if recorder.disk.single_threaded() {
            return Ok(CommitMarker::Here { recorder, at: None });
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("commit-mark".to_owned())
            .spawn(move || loop {
                let last_round = stopping.load(Relaxed);
                recorder.record();
                if last_round {
                    return;
                }
                std::thread::park_timeout(COMMIT_MARK_INTERVAL);
            })?;
        Ok(CommitMarker::Thread {
            stop,
            thread: Some(thread),
        })
    }

    /// The index was published: a marker without a thread records it if an interval passed.
    fn published(&mut self) {
        if let CommitMarker::Here { recorder, at } = self {
            let now = tokio::time::Instant::now();
            if at.is_none_or(|at| now >= at + COMMIT_MARK_INTERVAL) {
                recorder.record();
                *at = Some(now);
            }
        }
    }
}

impl Drop for CommitMarker {
    fn drop(&mut self) {
        match self {
            CommitMarker::Thread { stop, thread } => {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                if let Some(thread) = thread.take() {
                    thread.thread().unpark();
                    let _ = thread.join();
                }
            }
            CommitMarker::Here { recorder, .. } => recorder.record(),
        }
    }
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("wal", &self.wal)
            .field("purged", &self.purged)
            .field("appends_submitted", &self.appends_submitted)
            .finish()
    }
}

/// Reads entries for openraft (replication, applying); cheap to clone.
#[derive(Clone, Debug)]
pub struct LogReader {
    wal: WalReader,
}

fn to_wal_log_id(log_id: &LogId) -> wal::LogId {
    wal::LogId {
        index: log_id.index,
        term: log_id.leader_id.term,
    }
}

fn to_wal_vote(vote: &Vote) -> crate::vote::Vote {
    crate::vote::Vote {
        term: vote.leader_id.term,
        node_id: vote.leader_id.node_id,
        committed: vote.committed,
    }
}

fn from_wal_vote(vote: &crate::vote::Vote) -> Vote {
    Vote {
        leader_id: openraft::LeaderId::new(vote.term, vote.node_id),
        committed: vote.committed,
    }
}

fn encode_purged(log_id: &LogId) -> Vec<u8> {
    let mut payload = Vec::with_capacity(24);
    payload.extend_from_slice(&log_id.leader_id.term.to_le_bytes());
    payload.extend_from_slice(&log_id.leader_id.node_id.to_le_bytes());
    payload.extend_from_slice(&log_id.index.to_le_bytes());
    payload
}

fn decode_purged(payload: &[u8]) -> Option<LogId> {
    if payload.len() != 24 {
        return None;
    }
    let word = |at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&payload[at..at + 8]);
        u64::from_le_bytes(bytes)
    };
    Some(LogId::new(
        openraft::CommittedLeaderId::new(word(0), word(8)),
        word(16),
    ))
}

/// The WAL holds no entry: its last log id is its purge mark (or there is neither).
fn is_empty(state: &wal::LogState) -> bool {
    state.last == state.purged
}

/// The index the next appended entry must have.
fn next_index(state: &wal::LogState) -> u64 {
    state.last.map_or(0, |last| last.index + 1)
}

impl LogStore {
    /// Open (recovering) the log of the node whose data directory is `data_dir`: the WAL in
    /// `{data_dir}/wal/`, openraft's metadata in `{data_dir}/raft/`.
    ///
    /// Recovery contract, on top of the WAL's (docs/wal.md):
    /// - A purge interrupted between recording the purged log id and the WAL's own purge is
    ///   finished here, so the log never reports a purge point it still holds entries below.
    pub fn open(
        disk: Arc<dyn Disk>,
        data_dir: &Path,
        config: WalConfig,
    ) -> Result<LogStore, LogStoreOpenError> {
        Self::open_inner(disk, data_dir, config, None)
    }

    /// Open as [`LogStore::open`] does, handing every entry of the recovered log from index
    /// `from` on to `visit`, in order, while the WAL reads it (`Wal::open_with_replay`: the log
    /// is read from disk once). On `Err`, whatever `visit` built must be thrown away.
    pub fn open_with_replay(
        disk: Arc<dyn Disk>,
        data_dir: &Path,
        config: WalConfig,
        from: u64,
        mut visit: impl FnMut(wal::Entry),
    ) -> Result<LogStore, LogStoreOpenError> {
        Self::open_inner(disk, data_dir, config, Some((from, &mut visit)))
    }

    /// The commit index recorded in `{data_dir}/raft/` by an earlier run (see
    /// [`CommitMarker`]): every entry of this node's log up to it is committed.
    pub fn recorded_commit(
        disk: &dyn Disk,
        data_dir: &Path,
    ) -> Result<Option<u64>, LogStoreOpenError> {
        let meta_dir = data_dir.join(RAFT_META_DIR);
        let meta = |reason: String| LogStoreOpenError::Meta {
            path: meta_dir.join(COMMITTED_INDEX_FILE),
            reason,
        };
        match read_meta(disk, &meta_dir, COMMITTED_INDEX_FILE, COMMITTED_INDEX_MAGIC) {
            Ok(None) => Ok(None),
            Ok(Some(payload)) => <[u8; 8]>::try_from(payload.as_slice())
                .map(|bytes| Some(u64::from_le_bytes(bytes)))
                .map_err(|_| meta(format!("{} bytes where 8 were due", payload.len()))),
            Err(MetaError::Io(error)) => Err(meta(error.to_string())),
            Err(MetaError::Corrupt(reason)) => Err(meta(reason.to_owned())),
        }
    }

    fn open_inner(
        disk: Arc<dyn Disk>,
        data_dir: &Path,
        config: WalConfig,
        replay: Option<(u64, &mut dyn FnMut(wal::Entry))>,
    ) -> Result<LogStore, LogStoreOpenError> {
        let meta_dir = data_dir.join(RAFT_META_DIR);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LogStoreOpenError::Io { path, source }
        };
        disk.create_dir_all(&meta_dir).map_err(io(&meta_dir))?;
        let wal_dir = data_dir.join(WAL_DIR);
        let mut wal = match replay {
            None => Wal::open(Arc::clone(&disk), &wal_dir, config)?,
            Some((from, visit)) => {
                Wal::open_with_replay(Arc::clone(&disk), &wal_dir, config, from, visit)?
            }
        };
        // A new directory's name is durable only once its parent is synced.
        disk.sync_dir(data_dir).map_err(io(data_dir))?;
        let purged = Self::read_purged(disk.as_ref(), &meta_dir)?;
        if let Some(recorded) = purged {
            let wal_purged = wal.log_state().purged;
            // The WAL's mark may be ahead of the recorded one: a log that began past its end
            // (see `start_log_at`). Behind it means a purge was cut short by a crash.
            if wal_purged.is_none_or(|mark| mark.index < recorded.index) {
                tracing::info!(purged = %recorded, "finishing an interrupted purge");
                wal.purge(to_wal_log_id(&recorded))?;
            }
        }
        let reader = LogReader { wal: wal.reader() };
        let (appends_completed, _) = watch::channel(0);
        let committed: Arc<std::sync::atomic::AtomicU64> = Arc::default();
        let commit_marker =
            CommitMarker::start(Arc::clone(&disk), meta_dir.clone(), Arc::clone(&committed))
                .map_err(io(&meta_dir))?;
        Ok(LogStore {
            wal,
            reader,
            disk,
            meta_dir,
            purged,
            appends_submitted: 0,
            appends_completed: Arc::new(appends_completed),
            committed,
            commit_marker,
            install_pending: None,
        })
    }

    fn read_purged(disk: &dyn Disk, meta_dir: &Path) -> Result<Option<LogId>, LogStoreOpenError> {
        let path = meta_dir.join(PURGED_LOG_ID_FILE);
        let meta = |reason: String| LogStoreOpenError::Meta {
            path: path.clone(),
            reason,
        };
        match read_meta(disk, meta_dir, PURGED_LOG_ID_FILE, PURGED_LOG_ID_MAGIC) {
            Ok(None) => Ok(None),
            Ok(Some(payload)) => decode_purged(&payload)
                .map(Some)
                .ok_or_else(|| meta("bad purged log id fields".to_owned())),
            Err(MetaError::Io(error)) => Err(meta(error.to_string())),
            Err(MetaError::Corrupt(reason)) => Err(meta(reason.to_owned())),
        }
    }

    /// Hold purges while `install_pending` counts a received snapshot not yet durable (see
    /// `purge`).
    pub(crate) fn wait_for_installs(&mut self, install_pending: watch::Receiver<u32>) {
        self.install_pending = Some(install_pending);
    }

    /// openraft's last purged log id.
    pub fn purged(&self) -> Option<LogId> {
        self.purged
    }

    /// The commit index this node knows, as openraft last saved it: a handle that stays
    /// valid after the log store moves into openraft.
    pub fn committed_index(&self) -> CommittedIndex {
        CommittedIndex(Arc::clone(&self.committed))
    }

    /// Record that the log is known committed up to `index` (what a restart applied from the
    /// log or restored from a snapshot: `open_storage`), so readiness need not wait for
    /// openraft to report a commit index it already has. Only ever raises the index.
    pub(crate) fn note_committed(&self, index: u64) {
        self.committed.fetch_max(
            index.saturating_add(1),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// The WAL underneath (backend, statistics, health through [`Wal::reader`]).
    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// Wait until the WAL thread has finished everything queued, and stop it.
    pub fn close(self) {
        self.wal.close();
    }

    /// Let an empty log begin at `index` instead of where it would (0, or after its purge
    /// mark). openraft's storage suite appends to an empty log past its end, and a follower
    /// whose log was wiped by a snapshot may too; the WAL only appends contiguously, so its
    /// purge mark is moved to `index - 1` first. The recorded openraft purge point (what
    /// `get_log_state` reports) does not change: nothing openraft knows of was purged.
    fn start_log_at(&mut self, index: u64) -> Result<(), StorageError> {
        let state = self.wal.log_state();
        if index > next_index(&state) && is_empty(&state) {
            let mark = wal::LogId {
                index: index - 1,
                term: 0,
            };
            self.wal
                .purge(mark)
                .map_err(|error| StorageIOError::write_logs(&error))?;
        }
        Ok(())
    }

    /// Block until every append submitted so far has completed (durable, or failed).
    async fn wait_for_appends(&self) -> Result<(), StorageError> {
        let submitted = self.appends_submitted;
        let mut completed = self.appends_completed.subscribe();
        completed
            .wait_for(|count| *count >= submitted)
            .await
            .map(|_| ())
            .map_err(|error| StorageIOError::write_vote(&error).into())
    }
}

/// A live view of the commit index a [`LogStore`] was told (see `save_committed`).
#[derive(Clone, Debug, Default)]
pub struct CommittedIndex(Arc<std::sync::atomic::AtomicU64>);

impl CommittedIndex {
    pub fn get(&self) -> Option<u64> {
        self.0
            .load(std::sync::atomic::Ordering::Relaxed)
            .checked_sub(1)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    /// - `last_purged_log_id` is the recorded purge point (durable before the WAL purged).
    /// - `last_log_id` is the last entry in the WAL, durable or not (openraft's contract: the
    ///   entries are readable once `append` returns), or the purge point if there is none.
    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let state = self.wal.log_state();
        let last_log_id = match state.last {
            Some(last) if !is_empty(&state) => Some(self.reader.log_id_at(last.index)?),
            _ => self.purged,
        };
        Ok(LogState {
            last_purged_log_id: self.purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        self.reader.clone()
    }

    /// - The vote is durable (file fsync'd, renamed, directory fsync'd) before this returns.
    /// - It is written only after every earlier `append` has been flushed (or failed), so log
    ///   and vote I/O complete in submission order, as openraft requires.
    /// - On error the WAL is poisoned; no later write is accepted.
    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.wait_for_appends().await?;
        self.wal
            .save_vote(&to_wal_vote(vote))
            .map_err(|error| StorageIOError::write_vote(&error).into())
    }

    /// - Returns the last vote whose `save_vote` returned `Ok` (read from disk at open).
    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.wal.read_vote().as_ref().map(from_wal_vote))
    }

    // `read_committed` keeps openraft's default (not saved), and `save_committed` publishes
    // the index in memory for metrics and readiness; `CommitMarker` records it on disk about
    // once a second, off the commit path (writing it durably per commit would cost two fsyncs
    // per commit advance). At start `open_storage` applies the log up to the recorded index
    // while the WAL is read, and openraft takes what is applied as committed; the rest is
    // applied once a leader tells the node the commit index.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let published = committed.map_or(0, |id| id.index.saturating_add(1));
        self.committed
            .store(published, std::sync::atomic::Ordering::Relaxed);
        self.commit_marker.published();
        Ok(())
    }

    /// - `callback` fires only after the fdatasync covering every one of these entries
    ///   reported success (the WAL's contract), or with an error once the WAL is poisoned.
    /// - The entries are readable when this returns, before they are durable.
    /// - The entries must follow the log (no hole); only an empty log may begin past its end.
    ///   Entries at or below the purge point are skipped (they are inside the snapshot).
    /// - Does not wait for the disk; blocks only while the WAL's bounded queue is full.
    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut records = Vec::new();
        for entry in entries {
            // An entry at or below the purge point is already inside the snapshot the log was
            // purged for, and nobody may read it back (openraft reads only past the purge
            // point): storing it would equal storing then purging it. openraft's own suite
            // appends such entries; a running follower never does (it appends only after the
            // matching log id, which is at or past its purge point). It is skipped, and the
            // callback still fires in order after every earlier append.
            if self
                .purged
                .is_some_and(|purged| entry.log_id.index <= purged.index)
            {
                tracing::debug!(log_id = %entry.log_id, "append below the purge point skipped");
                continue;
            }
            let record = encode_entry(&entry)
                .map_err(|error| StorageIOError::write_log_entry(entry.log_id, &error))?;
            records.push(record);
        }
        if let Some(first) = records.first() {
            self.start_log_at(first.index)?;
        }
        let completed = Arc::clone(&self.appends_completed);
        self.wal
            .append(records, move |flushed| {
                completed.send_modify(|count| *count += 1);
                callback.log_io_completed(flushed.map_err(io::Error::other));
            })
            .map_err(|error| StorageIOError::write_logs(&error))?;
        self.appends_submitted += 1;
        Ok(())
    }

    /// - When this returns the removal of every entry from `log_id.index` on is durable (the
    ///   WAL's contract); a crash during the call leaves a prefix of the old log.
    /// - Never removes an entry at or below the commit index this store was told
    ///   (`save_committed`): such a truncation is refused with a `StorageError`, logged with
    ///   both indexes, and nothing is removed. openraft never asks for it (committed entries are
    ///   never in conflict), so the request means a peer or openraft broke Raft's rules, and
    ///   the error makes openraft stop (Fatal) rather than lose acknowledged transfers.
    /// - Never removes an entry at or below the purge point either (those are inside the
    ///   snapshot, so they were committed): refused the same way.
    /// - The commit index is not durable (see `save_committed`): after a restart this guard
    ///   holds from the first commit index the leader sends on; until then only the purge
    ///   point guards.
    /// - A truncation past the last entry changes nothing.
    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let floors = [
            ("committed", self.committed_index().get()),
            ("purged", self.purged.map(|purged| purged.index)),
        ];
        for (what, floor) in floors {
            if let Some(floor) = floor.filter(|floor| log_id.index <= *floor) {
                tracing::error!(
                    truncate_from = log_id.index,
                    floor_index = floor,
                    floor = what,
                    "refusing to truncate the log at or below its {what} index"
                );
                let error = io::Error::other(format!(
                    "refused to truncate the log from index {} at or below the {what} index {floor}",
                    log_id.index
                ));
                return Err(StorageIOError::write_logs(&error).into());
            }
        }
        if log_id.index >= next_index(&self.wal.log_state()) {
            return Ok(());
        }
        self.wal
            .truncate(log_id.index)
            .map_err(|error| StorageIOError::write_logs(&error).into())
    }

    /// - A purge waits while a received snapshot is not yet durable: openraft 0.9 orders the
    ///   purge for an installed snapshot right after handing the install to the state
    ///   machine, and a crash between a durable purge and a durable snapshot would leave
    ///   neither the entries nor the state that replaced them (found by the simulator,
    ///   `tests/sim_cluster.rs`). An image openraft drops without installing it (not
    ///   newer than what is committed) holds nothing back once dropped (`InstallHold`).
    /// - The purged log id is durable (its own file, written atomically) before the WAL
    ///   deletes anything; the WAL's purge mark is durable before it deletes a segment.
    /// - A crash between the two is finished by `open`.
    /// - A purge at or below the current purge point changes nothing.
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        if self
            .purged
            .is_some_and(|purged| purged.index >= log_id.index)
        {
            return Ok(());
        }
        if let Some(pending) = &self.install_pending {
            let mut pending = pending.clone();
            // A closed channel (no state machine any more) holds nothing back.
            let _ = pending.wait_for(|held| *held == 0).await;
        }
        write_meta(
            self.disk.as_ref(),
            &self.meta_dir,
            PURGED_LOG_ID_FILE,
            PURGED_LOG_ID_MAGIC,
            &encode_purged(&log_id),
        )
        .map_err(|error| StorageIOError::write_logs(&error))?;
        self.purged = Some(log_id);
        self.wal
            .purge(to_wal_log_id(&log_id))
            .map_err(|error| StorageIOError::write_logs(&error).into())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.reader.try_get_log_entries(range).await
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        self.reader.limited_get_log_entries(start, end).await
    }
}

impl LogReader {
    /// The WAL records with index in `start..end` that the log holds (a purged or not yet
    /// written part of the range is left out), in order.
    fn read_records(&self, start: u64, end: u64) -> Result<Vec<wal::Entry>, StorageError> {
        // Bounds learnt from a read that lost a race with a purge or truncate.
        let mut learnt: Option<(u64, u64)> = None;
        for _ in 0..LOG_READ_ATTEMPTS_MAX {
            let (first, next) = learnt.take().unwrap_or_else(|| {
                let state = self.wal.log_state();
                (
                    state.purged.map_or(0, |id| id.index + 1),
                    next_index(&state),
                )
            });
            let (from, to) = (start.max(first), end.min(next));
            if from >= to {
                return Ok(Vec::new());
            }
            match self.wal.read(from..to) {
                Ok(records) => return Ok(records),
                Err(ReadError::OutOfRange { first, last, .. }) => {
                    learnt = Some((first, last.saturating_add(1)));
                }
                Err(error) => return Err(StorageIOError::read_logs(&error).into()),
            }
        }
        let error = io::Error::other(format!("the log kept moving while reading {start}..{end}"));
        Err(StorageIOError::read_logs(&error).into())
    }

    fn decode(record: &wal::Entry) -> Result<Entry, StorageError> {
        decode_entry(record)
            .map_err(|error| StorageIOError::read_log_at_index(record.index, &error).into())
    }

    /// The log id of the entry at `index`, which must be in the log.
    fn log_id_at(&self, index: u64) -> Result<LogId, StorageError> {
        match self.read_records(index, index + 1)?.first() {
            Some(record) => Ok(Self::decode(record)?.log_id),
            None => {
                let error = io::Error::other(format!("entry {index} is not in the log"));
                Err(StorageIOError::read_log_at_index(index, &error).into())
            }
        }
    }
}

/// `range` as `start..end`.
fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(start) => *start,
        Bound::Excluded(start) => start.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(end) => end.saturating_add(1),
        Bound::Excluded(end) => *end,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogReader {
    /// Entries of `range` that the log holds; a purged or missing part is left out.
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let (start, end) = bounds(&range);
        self.read_records(start, end)?
            .iter()
            .map(Self::decode)
            .collect()
    }

    /// Entries from `start` on, contiguous, until `end` or until their payloads reach
    /// `REPLICATION_READ_BYTES_MAX` (at least one entry if `start` is in the log): the size
    /// of one AppendEntries message to a follower that is catching up.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let mut entries = Vec::new();
        let mut bytes = 0;
        let mut at = start;
        while at < end {
            let step_end = end.min(at.saturating_add(REPLICATION_READ_ENTRIES_STEP));
            let records = self.read_records(at, step_end)?;
            for record in &records {
                // Stop at a gap (a purge raced with us): the result must be contiguous.
                if record.index != at
                    || (!entries.is_empty()
                        && bytes + record.payload.len() > REPLICATION_READ_BYTES_MAX)
                {
                    return Ok(entries);
                }
                bytes += record.payload.len();
                entries.push(Self::decode(record)?);
                at += 1;
            }
            if records.is_empty() {
                break;
            }
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::sim::SimDisk;
    use openraft::storage::RaftLogStorageExt;

    fn blank(term: u64, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(term, 2), index),
            payload: openraft::EntryPayload::Blank,
        }
    }

    /// Proves a purge cut short after the purged log id was recorded but before the WAL purged
    /// is finished at open: the log then starts after the recorded point, and reports it with
    /// the leader's node id.
    #[tokio::test]
    async fn interrupted_purge_is_finished_at_open() {
        let disk: Arc<dyn Disk> = Arc::new(SimDisk::new());
        let data = Path::new("/node");
        let config = WalConfig {
            segment_bytes: 64 * 1024,
            entry_payload_bytes_max: 4096,
        };
        let purged = LogId::new(openraft::CommittedLeaderId::new(1, 2), 5);
        {
            let mut store = LogStore::open(Arc::clone(&disk), data, config).unwrap();
            store
                .blocking_append((0..10).map(|index| blank(1, index)))
                .await
                .unwrap();
            // What `purge` does first, and then "crash".
            let meta_dir = data.join(RAFT_META_DIR);
            let payload = encode_purged(&purged);
            write_meta(
                disk.as_ref(),
                &meta_dir,
                PURGED_LOG_ID_FILE,
                PURGED_LOG_ID_MAGIC,
                &payload,
            )
            .unwrap();
            store.close();
        }
        let mut store = LogStore::open(Arc::clone(&disk), data, config).unwrap();
        assert_eq!(store.wal().log_state().purged.map(|id| id.index), Some(5));
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(purged));
        assert_eq!(state.last_log_id, Some(blank(1, 9).log_id));
        let entries = store.try_get_log_entries(0..10).await.unwrap();
        let indexes: Vec<u64> = entries.iter().map(|entry| entry.log_id.index).collect();
        assert_eq!(indexes, (6..10).collect::<Vec<u64>>());
    }

    /// Proves `save_vote` waits for earlier appends: when it returns, every entry appended
    /// before it is durable (its callback has fired).
    #[tokio::test]
    async fn vote_is_saved_after_earlier_appends() {
        let disk: Arc<dyn Disk> = Arc::new(SimDisk::new());
        let mut store =
            LogStore::open(Arc::clone(&disk), Path::new("/node"), WalConfig::default()).unwrap();
        store
            .blocking_append((0..3).map(|index| blank(1, index)))
            .await
            .unwrap();
        store.save_vote(&Vote::new(2, 1)).await.unwrap();
        assert_eq!(*store.appends_completed.borrow(), store.appends_submitted);
        assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(2, 1)));
    }
}
