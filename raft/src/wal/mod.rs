//! The write-ahead log: the Raft log of this node, durable before it is acknowledged.
//!
//! Shaped like openraft 0.9's storage-v2 `RaftLogStorage`, so the next issue can map it 1:1:
//! [`Wal::append`] with a flush callback, [`Wal::truncate`], [`Wal::purge`], [`Wal::save_vote`] /
//! [`Wal::read_vote`], [`Wal::log_state`], and a cloneable [`WalReader`] for reading ranges.
//!
//! Two threads own the writes. Appends queue through a bounded channel to the staging thread
//! (`writer.rs`), which packs everything queued into one aligned buffer (a group commit); the
//! commit thread (`commit.rs`) submits each group as one write + fdatasync, strictly one after
//! the other, then publishes the entries as durable and fires the flush callbacks, while the
//! staging thread already fills the other buffer. The byte layout and the recovery argument are
//! in docs/wal.md; `record.rs` holds the layout, `recovery.rs` the argument in code.
//!
//! On a disk that wants no threads (`Disk::single_threaded`: the deterministic simulator) the
//! same writer and committer run inside each call instead: an append is its own group, written
//! and synced, its callback fired, before `append` returns.

mod commit;
mod read_ahead;
pub mod record;
mod recovery;
pub mod segment;
mod writer;

use std::collections::VecDeque;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use bytes::Bytes;
use crossbeam_channel::{bounded, Sender};

use crate::error::{
    AppendError, FlushError, OpenError, Poisoned, PurgeError, ReadError, TruncateError, VoteError,
};
use crate::limits::{
    APPEND_QUEUE_DEPTH_MAX, ENTRY_PAYLOAD_BYTES_MAX, GROUP_BYTES_MAX, READ_CACHE_BYTES_MAX,
    RECORD_HEADER_BYTES, SECTOR_BYTES, SEGMENT_BYTES_DEFAULT, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN,
};
use crate::storage::{read_direct_up_to, AlignedBuffer, Backend, Disk};
use crate::vote::Vote;
use record::RecordKind;
use segment::SegmentFile;
use writer::Command;

/// Identifies a log entry: openraft's `LogId` without the leader's node id, which the next
/// issue keeps inside the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogId {
    pub index: u64,
    pub term: u64,
}

/// One log entry. The payload is opaque here (the next issue puts openraft's entry in it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub index: u64,
    pub term: u64,
    pub payload: Bytes,
}

/// openraft's `LogState`: the last purged entry and the last entry (or the purged one if the
/// log is empty).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LogState {
    pub purged: Option<LogId>,
    pub last: Option<LogId>,
}

/// Called once per [`Wal::append`] by the WAL thread: `Ok` once every entry of that append is
/// durable, `Err` if the WAL was poisoned first. Named after its caller, as `append_flushed`.
pub type AppendFlushed = Box<dyn FnOnce(Result<(), FlushError>) + Send + 'static>;

/// Sizes that tests shrink; production uses [`WalConfig::default`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalConfig {
    /// Size of every segment file; a multiple of `SECTOR_BYTES`.
    pub segment_bytes: u64,
    /// Largest payload of one entry; at most `ENTRY_PAYLOAD_BYTES_MAX`.
    pub entry_payload_bytes_max: usize,
}

impl Default for WalConfig {
    fn default() -> WalConfig {
        WalConfig {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            entry_payload_bytes_max: ENTRY_PAYLOAD_BYTES_MAX,
        }
    }
}

impl WalConfig {
    /// Bytes the largest record can occupy in a group, padding included.
    pub fn record_bytes_max(&self) -> usize {
        (RECORD_HEADER_BYTES + self.entry_payload_bytes_max).div_ceil(SECTOR_BYTES) * SECTOR_BYTES
    }

    fn validate(&self) -> Result<(), OpenError> {
        let problem = if !self.segment_bytes.is_multiple_of(SECTOR_BYTES as u64) {
            "segment_bytes must be a multiple of SECTOR_BYTES"
        } else if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            "segment_bytes outside SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX"
        } else if self.entry_payload_bytes_max > ENTRY_PAYLOAD_BYTES_MAX {
            "entry_payload_bytes_max over ENTRY_PAYLOAD_BYTES_MAX"
        } else if self.record_bytes_max() as u64 > self.segment_bytes {
            "a largest record does not fit in one segment"
        } else if self.record_bytes_max() > GROUP_BYTES_MAX {
            "a largest record does not fit in one group"
        } else {
            return Ok(());
        };
        Err(OpenError::Config(problem.to_owned()))
    }
}

/// Where a durable entry's record is.
#[derive(Clone, Debug)]
pub(crate) struct Location {
    pub segment: Arc<SegmentFile>,
    pub offset: u64,
    pub length: u32,
    pub term: u64,
}

/// An entry is `Pending` from `append` until its group's fdatasync succeeded, then `Durable`.
/// Pending entries are served from memory: openraft reads entries right after `append`
/// returns, before the flush.
/// A recently flushed entry stays `Cached` (durable, and still in memory for replication
/// reads) until `READ_CACHE_BYTES_MAX` pushes it out.
#[derive(Clone, Debug)]
pub(crate) enum Slot {
    Pending(Entry),
    Cached(Location, Entry),
    Durable(Location),
}

impl Slot {
    fn term(&self) -> u64 {
        match self {
            Slot::Pending(entry) | Slot::Cached(_, entry) => entry.term,
            Slot::Durable(location) => location.term,
        }
    }

    /// Where the record is on disk, once it is durable.
    pub(crate) fn location(&self) -> Option<&Location> {
        match self {
            Slot::Pending(_) => None,
            Slot::Cached(location, _) | Slot::Durable(location) => Some(location),
        }
    }

    fn cached_bytes(&self) -> usize {
        match self {
            Slot::Cached(_, entry) => entry.payload.len(),
            _ => 0,
        }
    }
}

/// The in-memory view of the log, shared by the API, readers and the WAL thread.
#[derive(Debug)]
pub(crate) struct LogView {
    /// Index of `slots[0]`; when `slots` is empty, the index the next entry must have.
    pub first: u64,
    pub slots: VecDeque<Slot>,
    pub purged: Option<LogId>,
    pub poisoned: Option<Poisoned>,
    /// Payload bytes held by `Slot::Cached` slots.
    pub cached_bytes: usize,
    /// Every `Slot::Cached` slot has an index at or above this.
    pub cached_from: u64,
}

impl LogView {
    /// Turn the flushed entry at `index` (pending until now) into a cached durable slot, and
    /// push the oldest cached entries out to keep within `READ_CACHE_BYTES_MAX`.
    pub(crate) fn publish(&mut self, index: u64, location: Location) {
        let position = index.checked_sub(self.first).map(|p| p as usize);
        let slot = position.and_then(|p| self.slots.get_mut(p));
        let Some(slot) = slot else {
            panic!("entry {index} written but not in the log view");
        };
        let Slot::Pending(entry) = slot else {
            panic!("entry {index} written but not pending in the log view");
        };
        assert_eq!((entry.index, entry.term), (index, location.term));
        let entry = entry.clone();
        self.cached_bytes += entry.payload.len();
        *slot = Slot::Cached(location, entry);
        while self.cached_bytes > READ_CACHE_BYTES_MAX && self.cached_from <= index {
            if let Some(p) = self.cached_from.checked_sub(self.first) {
                if let Some(slot) = self.slots.get_mut(p as usize) {
                    if let Slot::Cached(location, entry) = slot {
                        self.cached_bytes -= entry.payload.len();
                        *slot = Slot::Durable(location.clone());
                    }
                }
            }
            self.cached_from += 1;
        }
    }

    /// Remove the slots from `since` on (truncate).
    pub(crate) fn truncate(&mut self, since: u64) {
        let keep = since.saturating_sub(self.first) as usize;
        if keep < self.slots.len() {
            let dropped: usize = self.slots.range(keep..).map(Slot::cached_bytes).sum();
            self.cached_bytes -= dropped;
            self.slots.truncate(keep);
        }
        self.cached_from = self.cached_from.min(since);
    }

    /// Remove the slots up to and including `upto` (purge).
    pub(crate) fn purge(&mut self, upto: LogId) {
        let count = (upto.index + 1)
            .saturating_sub(self.first)
            .min(self.slots.len() as u64);
        let dropped: usize = self
            .slots
            .drain(..count as usize)
            .map(|slot| slot.cached_bytes())
            .sum();
        self.cached_bytes -= dropped;
        self.first = self.first.max(upto.index + 1);
        self.cached_from = self.cached_from.max(self.first);
        self.purged = Some(upto);
    }

    fn next_index(&self) -> u64 {
        self.first + self.slots.len() as u64
    }

    fn last(&self) -> Option<LogId> {
        match self.slots.back() {
            Some(slot) => Some(LogId {
                index: self.next_index() - 1,
                term: slot.term(),
            }),
            None => self.purged,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub config: WalConfig,
    pub log: Mutex<LogView>,
    /// Group commits that completed (one fdatasync each), for metrics and the benchmark.
    pub groups_committed: AtomicU64,
    /// Bytes written by those group commits, padding included.
    pub bytes_committed: AtomicU64,
    /// The same work for Prometheus, with each group commit's latency.
    pub metrics: crate::metrics::WalMetrics,
}

/// Counters of the WAL thread's work since open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct WalStats {
    /// Group commits (each one write + one fdatasync).
    pub groups: u64,
    /// Bytes those writes carried, headers and padding included.
    pub bytes: u64,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, LogView> {
        // Only a panic in the WAL thread (a broken invariant) can poison this lock, and such a
        // panic is never caught; continuing to read the view is still sound.
        match self.log.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// The durable log of one node. See the module docs; `docs/wal.md` for layout and recovery.
pub struct Wal {
    shared: Arc<Shared>,
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    /// Who writes; `None` once stopped.
    writing: Option<Writing>,
    vote: Option<Vote>,
}

/// Who does a WAL's writes.
enum Writing {
    /// The WAL thread, fed in API order through `sender`.
    Thread {
        sender: Sender<Command>,
        thread: JoinHandle<()>,
    },
    /// Each call, itself: on a disk that wants no threads (`Disk::single_threaded`).
    Here(Box<Mutex<writer::Writer>>),
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("disk", &self.disk)
            .finish()
    }
}

impl Wal {
    /// Open the WAL in `dir` (created if missing), recovering what is on disk.
    ///
    /// Recovery contract (the case-by-case argument is in docs/wal.md):
    /// - Every entry whose flush callback reported `Ok` before a crash is recovered.
    /// - An invalid record at the very tail (a torn write) is cut off and zeroed, and the next
    ///   append continues after the last valid record.
    /// - An invalid record followed by valid data, or a record whose index or chain does not
    ///   follow its predecessor, is corruption: `OpenError::Corrupt` names the segment and the
    ///   byte offset, and nothing is repaired.
    pub fn open(disk: Arc<dyn Disk>, dir: &Path, config: WalConfig) -> Result<Wal, OpenError> {
        Wal::open_inner(disk, dir, config, None)
    }

    /// Open the WAL as [`Wal::open`] does and replay the log while recovery reads it: every
    /// entry the recovered log holds from index `from` on (all of them for 0) goes to
    /// `visit`, in order, before this returns. The entries are exactly those
    /// `reader().read(from.max(first)..last + 1)` would return after [`Wal::open`], but read
    /// from disk once instead of twice, and `visit` runs while the next segment is read.
    ///
    /// Contract:
    /// - `visit` runs on this thread, segment by segment, as soon as each segment is scanned
    ///   and verified (checksum, index, chain); recovery is exactly as strict as in
    ///   [`Wal::open`], and so is the torn-tail cut.
    /// - On `Err` (corruption further on, an I/O error) some entries may already have been
    ///   visited: whatever was built from them must be thrown away, as the node cannot start.
    /// - Payloads are zero-copy slices of a segment-sized read buffer; keeping one alive
    ///   keeps that buffer alive (copy what must outlive the visit).
    /// - `OpenError::ReplayOvertaken` if a truncate mark in a later segment removes entries
    ///   already visited: never the case for a log this WAL wrote (docs/wal.md, "Replay").
    pub fn open_with_replay(
        disk: Arc<dyn Disk>,
        dir: &Path,
        config: WalConfig,
        from: u64,
        mut visit: impl FnMut(Entry),
    ) -> Result<Wal, OpenError> {
        let mut replay = recovery::Replay::new(from, &mut visit);
        Wal::open_inner(disk, dir, config, Some(&mut replay))
    }

    fn open_inner(
        disk: Arc<dyn Disk>,
        dir: &Path,
        config: WalConfig,
        replay: Option<&mut recovery::Replay<'_>>,
    ) -> Result<Wal, OpenError> {
        config.validate()?;
        disk.create_dir_all(dir).map_err(|source| OpenError::Io {
            context: format!("creating {}", dir.display()),
            source,
        })?;
        let recovered = recovery::recover(disk.as_ref(), dir, &config, replay)?;
        tracing::info!(
            dir = %dir.display(),
            backend = disk.backend().name(),
            first = recovered.view.first,
            entries = recovered.view.slots.len(),
            "WAL opened"
        );
        let vote = recovered.vote;
        let shared = Arc::new(Shared {
            config,
            log: Mutex::new(recovered.view),
            groups_committed: AtomicU64::new(0),
            bytes_committed: AtomicU64::new(0),
            metrics: crate::metrics::WalMetrics::new(),
        });
        let writer = writer::Writer::new(
            Arc::clone(&shared),
            Arc::clone(&disk),
            dir.to_path_buf(),
            recovered.segments,
            recovered.chain,
        )
        .map_err(|source| OpenError::Io {
            context: "starting the WAL commit thread".to_owned(),
            source,
        })?;
        let writing = if disk.single_threaded() {
            Writing::Here(Box::new(Mutex::new(writer)))
        } else {
            let (sender, receiver) = bounded(APPEND_QUEUE_DEPTH_MAX);
            let thread = std::thread::Builder::new()
                .name("tally-wal".to_owned())
                .spawn(move || writer.run(receiver))
                .map_err(|source| OpenError::Io {
                    context: "starting the WAL thread".to_owned(),
                    source,
                })?;
            Writing::Thread { sender, thread }
        };
        Ok(Wal {
            shared,
            disk,
            dir: dir.to_path_buf(),
            writing: Some(writing),
            vote,
        })
    }

    /// Which storage backend this WAL writes through (for the log and the metric).
    pub fn backend(&self) -> Backend {
        self.disk.backend()
    }

    /// Group commits and bytes written since open.
    pub fn stats(&self) -> WalStats {
        WalStats {
            groups: self.shared.groups_committed.load(Ordering::Relaxed),
            bytes: self.shared.bytes_committed.load(Ordering::Relaxed),
        }
    }

    /// The WAL's Prometheus metrics (unregistered: the node registers them).
    pub fn metrics(&self) -> crate::metrics::WalMetrics {
        self.shared.metrics.clone()
    }

    /// A cloneable reader (openraft's `LogReader`).
    pub fn reader(&self) -> WalReader {
        WalReader {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The last purged and the last entry.
    pub fn log_state(&self) -> LogState {
        self.reader().log_state()
    }

    fn check_poisoned(&self) -> Result<(), Poisoned> {
        match &self.shared.lock().poisoned {
            Some(poisoned) => Err(poisoned.clone()),
            None => Ok(()),
        }
    }

    /// Queue `entries` for the disk; `append_flushed` fires once they are durable.
    ///
    /// Durability contract:
    /// - `append_flushed(Ok(()))` fires only after the fdatasync completion of every group
    ///   holding these entries reported success; callbacks fire in append order.
    /// - After any write or fsync error the WAL is poisoned: this and every queued callback
    ///   gets `Err`, and no later append is accepted until the WAL is reopened.
    /// - The entries are readable (from memory) as soon as this returns.
    ///
    /// Blocks while `APPEND_QUEUE_DEPTH_MAX` appends wait for the disk (back-pressure).
    pub fn append<I>(
        &mut self,
        entries: I,
        append_flushed: impl FnOnce(Result<(), FlushError>) + Send + 'static,
    ) -> Result<(), AppendError>
    where
        I: IntoIterator<Item = Entry>,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let limit = self.shared.config.entry_payload_bytes_max;
        {
            let mut view = self.shared.lock();
            if let Some(poisoned) = &view.poisoned {
                return Err(AppendError::Poisoned(poisoned.clone()));
            }
            for (expected, entry) in (view.next_index()..).zip(&entries) {
                if entry.index != expected {
                    return Err(AppendError::NotContiguous {
                        expected,
                        got: entry.index,
                    });
                }
                if entry.payload.len() > limit {
                    return Err(AppendError::EntryTooLarge {
                        index: entry.index,
                        bytes: entry.payload.len(),
                        limit,
                    });
                }
            }
            view.slots
                .extend(entries.iter().cloned().map(Slot::Pending));
        }
        self.submit(Command::Append {
            entries,
            append_flushed: Box::new(append_flushed),
        })
        .map_err(|Stopped| AppendError::Stopped)
    }

    /// Hand `command` to the writer: queued for the WAL thread, or done here on a disk that
    /// wants no threads.
    fn submit(&self, command: Command) -> Result<(), Stopped> {
        match self.writing.as_ref().ok_or(Stopped)? {
            Writing::Thread { sender, .. } => sender.send(command).map_err(|_| Stopped),
            Writing::Here(writer) => {
                // Only a panic inside the writer poisons this lock, and that already failed
                // the call that caused it: its state is as consistent as the thread's would be.
                let mut writer = writer.lock().unwrap_or_else(|p| p.into_inner());
                writer.execute(command, None);
                Ok(())
            }
        }
    }

    /// Remove every entry with index `since` or above (openraft `truncate`).
    ///
    /// Durability contract:
    /// - When this returns `Ok` the removal is durable (segments deleted with a directory
    ///   fsync, or a truncate mark written and fdatasync'd).
    /// - A crash during the call leaves the log cut at some index between `since` and its old
    ///   end: a prefix of the old log, never a gap.
    pub fn truncate(&mut self, since: u64) -> Result<(), TruncateError> {
        self.check_poisoned()?;
        {
            let view = self.shared.lock();
            let purged = view.purged.map_or(0, |id| id.index);
            let next = view.next_index();
            if since > next || (view.purged.is_some() && since <= purged) || since < view.first {
                return Err(TruncateError::OutOfRange {
                    since,
                    first: view.first,
                    last: next.saturating_sub(1),
                    purged,
                });
            }
            if since == next {
                return Ok(());
            }
        }
        let (done, result) = bounded(1);
        self.submit(Command::Truncate { since, done })
            .map_err(|Stopped| TruncateError::Stopped)?;
        result
            .recv()
            .map_err(|_| TruncateError::Stopped)?
            .map_err(TruncateError::Poisoned)
    }

    /// Allow every entry up to and including `upto` to be deleted (openraft `purge`, after a
    /// snapshot covers them). Whole segments are deleted; reads below `upto` fail afterwards.
    ///
    /// Durability contract:
    /// - The purge mark (the `purged` file) is durable before any segment is deleted, so a
    ///   crash mid-purge never shows a gap that recovery would mistake for lost data.
    pub fn purge(&mut self, upto: LogId) -> Result<(), PurgeError> {
        self.check_poisoned()?;
        let (done, result) = bounded(1);
        self.submit(Command::Purge { upto, done })
            .map_err(|Stopped| PurgeError::Stopped)?;
        result
            .recv()
            .map_err(|_| PurgeError::Stopped)?
            .map_err(PurgeError::Poisoned)
    }

    /// Save the vote.
    ///
    /// Durability contract:
    /// - The vote is durable before this returns `Ok` (temporary file fsync'd, renamed over
    ///   the old one, directory fsync'd).
    /// - On `Err` the WAL is poisoned: a node that cannot persist its vote must not vote.
    pub fn save_vote(&mut self, vote: &Vote) -> Result<(), VoteError> {
        self.check_poisoned()?;
        if let Err(error) = vote.save(self.disk.as_ref(), &self.dir) {
            let poisoned = Poisoned {
                cause: Arc::new(error),
            };
            self.shared.lock().poisoned.get_or_insert(poisoned.clone());
            return Err(VoteError::Poisoned(poisoned));
        }
        self.vote = Some(*vote);
        Ok(())
    }

    /// The last vote saved, if any.
    pub fn read_vote(&self) -> Option<Vote> {
        self.vote
    }

    /// Wait until the WAL thread has finished everything queued, and stop it.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        // Dropping the sender ends the WAL thread once it has drained the queue, so every
        // queued append still gets its callback.
        if let Some(Writing::Thread { sender, thread }) = self.writing.take() {
            drop(sender);
            if thread.join().is_err() {
                tracing::error!("the WAL thread panicked");
            }
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The writer is gone: the WAL was stopped.
struct Stopped;

/// Reads entries and the log state; cheap to clone, usable from any thread.
#[derive(Clone, Debug)]
pub struct WalReader {
    shared: Arc<Shared>,
}

/// Reads closer together than this are merged into one, so a replay is a sequential scan.
const READ_GAP_BYTES_MAX: u64 = SECTOR_BYTES as u64;
/// Upper bound on one merged read.
const READ_SPAN_BYTES_MAX: u64 = GROUP_BYTES_MAX as u64;

impl WalReader {
    /// Bytes written by group commits since open (records, padding, marks).
    pub fn bytes_committed(&self) -> u64 {
        self.shared.bytes_committed.load(Ordering::Relaxed)
    }

    /// Why the WAL refuses writes, if it does: it was poisoned by an I/O error and must be
    /// reopened (which, for a node, means restarting it). For health checks.
    pub fn poisoned(&self) -> Option<Poisoned> {
        self.shared.lock().poisoned.clone()
    }

    /// The last purged and the last entry.
    pub fn log_state(&self) -> LogState {
        let view = self.shared.lock();
        LogState {
            purged: view.purged,
            last: view.last(),
        }
    }

    /// The entries with index in `range`, in order. Every index of the range must be in the
    /// log. Records read from disk are verified (checksum, index, term) before they are
    /// returned, the pair of the check made when they were written.
    pub fn read(&self, range: Range<u64>) -> Result<Vec<Entry>, ReadError> {
        let slots: Vec<Slot> = {
            let view = self.shared.lock();
            let next = view.next_index();
            for index in [range.start, range.end.saturating_sub(1)] {
                if range.start < range.end && (index < view.first || index >= next) {
                    return Err(ReadError::OutOfRange {
                        index,
                        first: view.first,
                        last: next.saturating_sub(1),
                    });
                }
            }
            if range.start >= range.end {
                return Ok(Vec::new());
            }
            let start = (range.start - view.first) as usize;
            let end = (range.end - view.first) as usize;
            view.slots.range(start..end).cloned().collect()
        };
        let mut entries = Vec::with_capacity(slots.len());
        let mut at = 0;
        while at < slots.len() {
            let index = range.start + at as u64;
            match &slots[at] {
                Slot::Pending(entry) | Slot::Cached(_, entry) => {
                    entries.push(entry.clone());
                    at += 1;
                }
                Slot::Durable(first) => {
                    // Merge the following durable records of the same segment into one read.
                    let mut span_end =
                        first.offset + (RECORD_HEADER_BYTES as u64) + u64::from(first.length);
                    let mut count = 1;
                    while let Some(Slot::Durable(next)) = slots.get(at + count) {
                        let next_end =
                            next.offset + RECORD_HEADER_BYTES as u64 + u64::from(next.length);
                        if !Arc::ptr_eq(&next.segment, &first.segment)
                            || next.offset < span_end
                            || next.offset - span_end > READ_GAP_BYTES_MAX
                            || next_end - first.offset > READ_SPAN_BYTES_MAX
                        {
                            break;
                        }
                        span_end = next_end;
                        count += 1;
                    }
                    // One aligned O_DIRECT read covering the records (see `read_direct_at`);
                    // the payloads are slices of it, no copy.
                    let sector = SECTOR_BYTES as u64;
                    let aligned_start = first.offset / sector * sector;
                    let aligned_end = span_end.div_ceil(sector) * sector;
                    let mut buffer = AlignedBuffer::new((aligned_end - aligned_start) as usize);
                    let n = read_direct_up_to(
                        first.segment.file.as_ref(),
                        buffer.as_mut_slice(),
                        aligned_start,
                    )?;
                    if (n as u64) < span_end - aligned_start {
                        return Err(ReadError::Io(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "segment shorter than its index says",
                        )));
                    }
                    let span = Bytes::from_owner(buffer);
                    let skew = (first.offset - aligned_start) as usize;
                    for (k, slot) in slots[at..at + count].iter().enumerate() {
                        let Slot::Durable(location) = slot else {
                            unreachable!("merged only durable slots")
                        };
                        let relative = skew + (location.offset - first.offset) as usize;
                        entries.push(Self::verify(
                            &span,
                            relative,
                            location,
                            index + k as u64,
                            self.shared.config.entry_payload_bytes_max,
                        )?);
                    }
                    at += count;
                }
            }
        }
        Ok(entries)
    }

    fn verify(
        span: &Bytes,
        relative: usize,
        location: &Location,
        index: u64,
        payload_bytes_max: usize,
    ) -> Result<Entry, ReadError> {
        let corrupt = |reason: String| ReadError::Corrupt {
            index,
            path: location.segment.path.clone(),
            offset: location.offset,
            reason,
        };
        let header = record::decode(&span[relative..], payload_bytes_max)
            .map_err(|invalid| corrupt(invalid.to_string()))?;
        if header.kind != RecordKind::Entry
            || header.index != index
            || header.term != location.term
            || header.length != location.length
        {
            return Err(corrupt(format!(
                "record holds index {} term {}, expected index {index} term {}",
                header.index, header.term, location.term
            )));
        }
        let start = relative + RECORD_HEADER_BYTES;
        Ok(Entry {
            index,
            term: header.term,
            payload: span.slice(start..start + header.length as usize),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::sim::SimDisk;

    fn view_with_pending(count: u64, payload: &Bytes) -> LogView {
        let slots = (0..count)
            .map(|index| {
                Slot::Pending(Entry {
                    index,
                    term: 1,
                    payload: payload.clone(),
                })
            })
            .collect();
        LogView {
            first: 0,
            slots,
            purged: None,
            poisoned: None,
            cached_bytes: 0,
            cached_from: 0,
        }
    }

    /// The in-memory copy of flushed entries stays within READ_CACHE_BYTES_MAX, keeps the
    /// newest entries, and its byte count follows truncate and purge exactly.
    #[test]
    fn read_cache_is_bounded_and_accounted() {
        let disk = SimDisk::new();
        let file = disk.open(Path::new("/x"), true).expect("sim file");
        let segment = Arc::new(SegmentFile {
            path: PathBuf::from("/x"),
            file,
        });
        let mib = Bytes::from(vec![7u8; 1024 * 1024]);
        let count = (READ_CACHE_BYTES_MAX / mib.len()) as u64 + 36;
        let mut view = view_with_pending(count, &mib);
        for index in 0..count {
            let location = Location {
                segment: Arc::clone(&segment),
                offset: 0,
                length: 0,
                term: 1,
            };
            view.publish(index, location);
            assert!(view.cached_bytes <= READ_CACHE_BYTES_MAX);
        }
        let cached = |view: &LogView| {
            view.slots
                .iter()
                .filter(|s| matches!(s, Slot::Cached(..)))
                .count()
        };
        assert_eq!(cached(&view) * mib.len(), view.cached_bytes);
        assert_eq!(view.cached_bytes, READ_CACHE_BYTES_MAX);
        assert!(matches!(view.slots.back(), Some(Slot::Cached(..))));
        assert!(matches!(view.slots.front(), Some(Slot::Durable(_))));
        view.truncate(count - 10);
        assert_eq!(view.cached_bytes, READ_CACHE_BYTES_MAX - 10 * mib.len());
        view.purge(LogId {
            index: count - 20,
            term: 1,
        });
        assert_eq!(cached(&view) * mib.len(), view.cached_bytes);
        assert_eq!(view.cached_bytes, 9 * mib.len());
    }
}
