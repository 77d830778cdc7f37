//! The staging thread: the only writer of segments. It turns queued appends into group
//! commits and hands them to the commit thread (`commit.rs`).
//!
//! One group commit = every record the thread could take from the queue without waiting,
//! packed back to back into one sector-aligned buffer, zero-padded to the next sector, and
//! written with one write linked to one fdatasync. While the commit thread has one group at
//! the disk, this thread fills the other of two buffers. Flush callbacks fire on whichever of
//! the two committed the group, after its fdatasync completion reported success, in append
//! order.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender};

use super::commit::{self, Committer, Group, Staged, ToCommit};
use super::record::{self, RecordKind};
use super::recovery::{encode_purged, PURGED_FILE, PURGED_MAGIC};
use super::segment::{self, purged_name, SegmentInfo};
use super::{AppendFlushed, Entry, LogId, Shared, Slot};
use crate::error::Poisoned;
use crate::limits::{GROUP_BYTES_MAX, RECORD_HEADER_BYTES, SECTOR_BYTES};
use crate::storage::{AlignedBuffer, Disk};
use crate::vote::write_meta;

/// Work for the WAL thread, in the order the API issued it.
pub(crate) enum Command {
    Append {
        entries: Vec<Entry>,
        append_flushed: AppendFlushed,
    },
    Truncate {
        since: u64,
        done: Sender<Result<(), Poisoned>>,
    },
    Purge {
        upto: LogId,
        done: Sender<Result<(), Poisoned>>,
    },
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    /// In log order; the last one is the tail that groups are appended to.
    segments: Vec<SegmentInfo>,
    /// CRC of the last record staged (the next record's chain).
    chain: u32,
    buffer: AlignedBuffer,
    /// Bytes of the current group in `buffer`.
    filled: usize,
    staged: Vec<Staged>,
    /// Callbacks of appends whose every record is in the current or an earlier group.
    waiting: Vec<AppendFlushed>,
    /// A copy of the shared poison, refreshed at every command.
    poisoned: Option<Poisoned>,
    to_commit: CommitSide,
    /// The buffer the commit thread gives back after each write.
    spare: Receiver<AlignedBuffer>,
    committer: Option<JoinHandle<()>>,
    /// Messages sent to the commit thread and not yet finished by it.
    outstanding: Arc<AtomicUsize>,
}

/// Where finished groups' messages go: to the commit thread, or, on a disk that wants no
/// threads (`Disk::single_threaded`), straight to a committer run on this thread.
enum CommitSide {
    Thread(Sender<ToCommit>),
    Here(Committer),
}

fn align_up(bytes: usize) -> usize {
    bytes.div_ceil(SECTOR_BYTES) * SECTOR_BYTES
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        disk: Arc<dyn Disk>,
        dir: PathBuf,
        segments: Vec<SegmentInfo>,
        chain: u32,
    ) -> std::io::Result<Writer> {
        // A group never spans segments, so small test segments need only small buffers.
        let buffer_bytes = GROUP_BYTES_MAX.min(shared.config.segment_bytes as usize);
        // Depth 1: one group queued while one is at the disk, so staging overlaps the I/O.
        let (to_commit, from_staging) = bounded(1);
        // Two buffers in rotation: the one being filled and the one being written.
        let (spare_sender, spare) = bounded(2);
        spare_sender
            .send(AlignedBuffer::new(buffer_bytes))
            .map_err(|_| std::io::Error::other("spare buffer channel closed"))?;
        let outstanding = Arc::new(AtomicUsize::new(0));
        let committer = Committer {
            outstanding: Arc::clone(&outstanding),
            shared: Arc::clone(&shared),
            spare: spare_sender,
        };
        let (to_commit, committer) = if disk.single_threaded() {
            (CommitSide::Here(committer), None)
        } else {
            let thread = std::thread::Builder::new()
                .name("tally-wal-commit".to_owned())
                .spawn(move || committer.run(from_staging))?;
            (CommitSide::Thread(to_commit), Some(thread))
        };
        Ok(Writer {
            shared,
            disk,
            dir,
            segments,
            chain,
            buffer: AlignedBuffer::new(buffer_bytes),
            filled: 0,
            staged: Vec::new(),
            waiting: Vec::new(),
            poisoned: None,
            to_commit,
            spare,
            committer,
            outstanding,
        })
    }

    pub(crate) fn run(mut self, receiver: Receiver<Command>) {
        let mut carried: Option<Command> = None;
        loop {
            let command = match carried.take() {
                Some(command) => command,
                None => match receiver.recv() {
                    Ok(command) => command,
                    // The Wal was dropped and the queue is drained.
                    Err(_) => break,
                },
            };
            carried = self.execute(command, Some(&receiver));
        }
        // Closing the channel lets the commit thread finish what is queued, then stop.
        let Writer {
            to_commit,
            committer,
            ..
        } = self;
        drop(to_commit);
        if let Some(committer) = committer {
            if committer.join().is_err() {
                tracing::error!("the WAL commit thread panicked");
            }
        }
    }

    /// Do one command. An append takes into its group every append already waiting in
    /// `queued` (group commit, on the WAL thread) and returns the first other command it met
    /// there, to be done next; without a queue (a single-threaded WAL: `Wal::submit`) each
    /// append is a group of its own.
    pub(crate) fn execute(
        &mut self,
        command: Command,
        queued: Option<&Receiver<Command>>,
    ) -> Option<Command> {
        let mut carried = None;
        match command {
            Command::Append {
                entries,
                append_flushed,
            } => {
                self.stage_append(entries, append_flushed);
                while let Some(queue) = queued.filter(|_| self.poisoned.is_none()) {
                    match queue.try_recv() {
                        Ok(Command::Append {
                            entries,
                            append_flushed,
                        }) => self.stage_append(entries, append_flushed),
                        Ok(other) => {
                            carried = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                // An error here has poisoned the WAL and failed the callbacks already.
                let _ = self.flush_group();
            }
            Command::Truncate { since, done } => {
                // The API waits on `done`; if it has gone there is nobody to tell.
                let _ = done.send(self.truncate(since));
            }
            Command::Purge { upto, done } => {
                let _ = done.send(self.purge(upto));
            }
        }
        carried
    }

    fn send(&mut self, message: ToCommit) {
        self.outstanding.fetch_add(1, Ordering::AcqRel);
        match &self.to_commit {
            CommitSide::Thread(to_commit) => {
                if to_commit.send(message).is_err() {
                    panic!("the WAL commit thread stopped while the WAL is open");
                }
            }
            CommitSide::Here(committer) => committer.handle(message),
        }
    }

    /// Hand callbacks to the commit thread, which fires them in order.
    fn send_callbacks(&mut self, callbacks: Vec<AppendFlushed>) {
        if !callbacks.is_empty() {
            self.send(ToCommit::Callbacks(callbacks));
        }
    }

    /// Wait until the commit thread has finished every group sent so far.
    fn barrier(&mut self) -> Result<(), Poisoned> {
        let (done, wait) = bounded(1);
        self.send(ToCommit::Barrier(done));
        if wait.recv().is_err() {
            panic!("the WAL commit thread stopped while the WAL is open");
        }
        self.adopt_poison();
        match &self.poisoned {
            Some(poisoned) => Err(poisoned.clone()),
            None => Ok(()),
        }
    }

    fn stage_append(&mut self, entries: Vec<Entry>, append_flushed: AppendFlushed) {
        self.adopt_poison();
        if self.poisoned.is_some() {
            self.send_callbacks(vec![append_flushed]);
            return;
        }
        for entry in &entries {
            let staged = self.stage(RecordKind::Entry, entry.index, entry.term, &entry.payload);
            if staged.is_err() {
                // Poisoned: the commit thread fails this callback, after the earlier ones.
                self.send_callbacks(vec![append_flushed]);
                return;
            }
        }
        self.waiting.push(append_flushed);
    }

    /// Put one record into the current group, first flushing the group and rotating to a new
    /// segment if it does not fit.
    fn stage(
        &mut self,
        kind: RecordKind,
        index: u64,
        term: u64,
        payload: &[u8],
    ) -> Result<(), Poisoned> {
        let record_bytes = RECORD_HEADER_BYTES + payload.len();
        let segment_bytes = self.shared.config.segment_bytes;
        loop {
            let fits_segment = self.segments.last().is_some_and(|tail| {
                tail.end + align_up(self.filled + record_bytes) as u64 <= segment_bytes
            });
            if !fits_segment {
                self.flush_group()?;
                self.rotate(index)?;
                continue;
            }
            if self.filled + record_bytes > self.buffer.capacity() {
                self.flush_group()?;
                continue;
            }
            break;
        }
        let group_first = self.filled == 0;
        let Some(tail) = self.segments.last_mut() else {
            unreachable!("the loop above ensures a tail segment")
        };
        let offset = tail.end + self.filled as u64;
        let out = &mut self.buffer.as_mut_slice()[self.filled..self.filled + record_bytes];
        self.chain = record::encode(out, kind, group_first, index, term, self.chain, payload);
        // Assertion in pairs: the record we just built decodes to what we meant to write.
        debug_assert!(matches!(
            record::decode(out, self.shared.config.entry_payload_bytes_max),
            Ok(h) if h.index == index && h.term == term && h.crc == self.chain
        ));
        self.filled += record_bytes;
        tail.crc_last = Some(self.chain);
        if kind == RecordKind::Entry {
            tail.index_max = Some(tail.index_max.map_or(index, |m| m.max(index)));
            self.staged.push(Staged {
                index,
                term,
                offset,
                length: payload.len() as u32,
            });
        }
        Ok(())
    }

    /// Start a new tail segment whose first record will have `first_index`.
    fn rotate(&mut self, first_index: u64) -> Result<(), Poisoned> {
        assert_eq!(self.filled, 0, "rotate only between groups");
        match segment::create(
            self.disk.as_ref(),
            &self.dir,
            first_index,
            self.shared.config.segment_bytes,
        ) {
            Ok(info) => {
                assert!(self
                    .segments
                    .last()
                    .is_none_or(|tail| tail.first_index < first_index));
                self.segments.push(info);
                Ok(())
            }
            Err(error) => Err(self.poison(error)),
        }
    }

    /// Hand the current group to the commit thread (one write + fdatasync, then publish and
    /// acknowledge there) and continue in the other buffer.
    fn flush_group(&mut self) -> Result<(), Poisoned> {
        self.adopt_poison();
        if let Some(poisoned) = &self.poisoned {
            return Err(poisoned.clone());
        }
        let flushed = std::mem::take(&mut self.waiting);
        if self.filled == 0 {
            self.send_callbacks(flushed);
            return Ok(());
        }
        let length = align_up(self.filled);
        self.buffer.as_mut_slice()[self.filled..length].fill(0);
        let Some(tail) = self.segments.last_mut() else {
            unreachable!("a staged group has a tail segment")
        };
        let segment = Arc::clone(&tail.handle);
        let offset = tail.end;
        tail.end += length as u64;
        self.filled = 0;
        let staged = std::mem::take(&mut self.staged);
        if self.outstanding.load(Ordering::Acquire) == 0 {
            // The commit thread is idle, every earlier group is durable and acknowledged, and
            // only this thread could give it new work: commit here and save two thread
            // wake-ups (the common case when appends come one at a time, as from openraft).
            let placeholder = AlignedBuffer::new(SECTOR_BYTES);
            let buffer = std::mem::replace(&mut self.buffer, placeholder);
            let group = Group {
                buffer,
                length,
                segment,
                offset,
                staged,
                flushed,
            };
            self.buffer = commit::commit(&self.shared, group);
            return Ok(());
        }
        let Ok(buffer) = self.spare.recv() else {
            panic!("the WAL commit thread stopped while the WAL is open");
        };
        let group = Group {
            buffer: std::mem::replace(&mut self.buffer, buffer),
            length,
            segment,
            offset,
            staged,
            flushed,
        };
        self.send(ToCommit::Group(group));
        Ok(())
    }

    /// Remember the first I/O error for good, fail every waiting callback (in order, through
    /// the commit thread), and refuse all further work.
    fn poison(&mut self, error: std::io::Error) -> Poisoned {
        tracing::error!(%error, "WAL I/O failed; poisoned until reopened");
        let poisoned = Poisoned {
            cause: Arc::new(error),
        };
        self.shared
            .lock()
            .poisoned
            .get_or_insert_with(|| poisoned.clone());
        self.adopt_poison();
        poisoned
    }

    /// Take over a poison set elsewhere (the commit thread's write error, a failed
    /// `save_vote` on the API thread): appends queued before it are not acknowledged after it.
    fn adopt_poison(&mut self) {
        if self.poisoned.is_some() {
            return;
        }
        let shared = self.shared.lock().poisoned.clone();
        if let Some(poisoned) = shared {
            self.poisoned = Some(poisoned);
            self.filled = 0;
            self.staged.clear();
            let waiting = std::mem::take(&mut self.waiting);
            self.send_callbacks(waiting);
        }
    }

    fn check(&mut self, result: std::io::Result<()>) -> Result<(), Poisoned> {
        result.map_err(|error| self.poison(error))
    }

    /// Remove entries `since..`; the API checked the range and all groups are flushed.
    fn truncate(&mut self, since: u64) -> Result<(), Poisoned> {
        assert_eq!(
            self.filled, 0,
            "every append is flushed before the next command"
        );
        // Every earlier group must be durable and published before the log is cut.
        self.barrier()?;
        // Whole segments at or above `since` go first, newest first, each removal made durable
        // before the next: a crash then leaves a prefix of the log, never a hole.
        while self
            .segments
            .last()
            .is_some_and(|tail| tail.first_index >= since)
        {
            if let Some(tail) = self.segments.pop() {
                let removed = self.disk.remove(&tail.handle.path);
                self.check(removed)?;
                let synced = self.disk.sync_dir(&self.dir);
                self.check(synced)?;
            }
        }
        self.chain = self
            .segments
            .last()
            .and_then(|tail| tail.crc_last)
            .unwrap_or(0);
        // Entries `since..` left in the remaining tail are cancelled by a durable mark.
        let mark_needed = {
            let view = self.shared.lock();
            let position = since.checked_sub(view.first).map(|p| p as usize);
            match position.and_then(|p| view.slots.get(p)).map(Slot::location) {
                Some(Some(location)) => self
                    .segments
                    .iter()
                    .any(|info| Arc::ptr_eq(&info.handle, &location.segment)),
                Some(None) => unreachable!("truncate runs after every queued group"),
                None => false,
            }
        };
        if mark_needed {
            self.stage(RecordKind::Truncate, since, 0, &[])?;
            self.flush_group()?;
            self.barrier()?;
        }
        self.shared.lock().truncate(since);
        Ok(())
    }

    /// Mark everything up to `upto` purged, then delete whole segments below it.
    fn purge(&mut self, upto: LogId) -> Result<(), Poisoned> {
        // Entries are purged only once durable and published.
        self.barrier()?;
        if self
            .shared
            .lock()
            .purged
            .is_some_and(|purged| purged.index >= upto.index)
        {
            return Ok(());
        }
        // The mark is durable before any deletion (see `Wal::purge`).
        let marked = write_meta(
            self.disk.as_ref(),
            &self.dir,
            PURGED_FILE,
            PURGED_MAGIC,
            &encode_purged(upto),
        );
        self.check(marked)?;
        // Each purged segment is renamed out of the log at once (recovery removes what a
        // crash leaves of it) and its space given back in the background: deleting it here
        // would stop this thread's group commits for the discards of a whole segment.
        let mut retired = Vec::new();
        while self.segments.len() > 1
            && self.segments[0]
                .index_max
                .is_none_or(|max| max <= upto.index)
        {
            let head = self.segments.remove(0);
            let to = purged_name(&head.handle.path);
            let result = self.disk.rename(&head.handle.path, &to);
            self.check(result)?;
            retired.push(to);
        }
        if !retired.is_empty() {
            let synced = self.disk.sync_dir(&self.dir);
            self.check(synced)?;
        }
        self.shared.lock().purge(upto);
        for path in retired {
            if let Err(error) = self.disk.reclaim(&path) {
                tracing::warn!(path = %path.display(), %error,
                    "a purged segment stays until the next start");
            }
        }
        Ok(())
    }
}
