//! The commit thread: writes group commits one at a time, then publishes and acknowledges.
//!
//! The staging thread (`writer.rs`) packs the next group into a second buffer while this
//! thread has the previous one at the disk, so copying and checksumming overlap the I/O. Groups
//! are written strictly one after the other: a group is written only after the previous
//! group's fdatasync succeeded. That is the "one group in flight" on which the recovery
//! argument rests (docs/wal.md). While this thread is idle the staging thread may run
//! [`commit`] itself (it saves two thread wake-ups per fsync); it never does so while this
//! thread has unfinished work, so the two never submit at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::segment::SegmentFile;
use super::{AppendFlushed, Location, Shared};
use crate::error::{FlushError, Poisoned};
use crate::storage::AlignedBuffer;

/// An entry record in a group, to publish as durable after the group's fdatasync.
pub(crate) struct Staged {
    pub index: u64,
    pub term: u64,
    pub offset: u64,
    pub length: u32,
}

/// One group commit, ready for the disk.
pub(crate) struct Group {
    pub buffer: AlignedBuffer,
    /// Bytes to write: the records and the zero padding up to the sector boundary.
    pub length: usize,
    pub segment: Arc<SegmentFile>,
    pub offset: u64,
    pub staged: Vec<Staged>,
    /// Callbacks of the appends whose last record is in this group.
    pub flushed: Vec<AppendFlushed>,
}

/// Work for the commit thread, in order.
pub(crate) enum ToCommit {
    Group(Group),
    /// Callbacks with nothing left to write: `Ok` once every earlier group is durable, or
    /// `Err` if the WAL is poisoned by then.
    Callbacks(Vec<AppendFlushed>),
    /// Answered once every earlier message is done.
    Barrier(Sender<()>),
}

pub(crate) struct Committer {
    pub shared: Arc<Shared>,
    /// Buffers go back to the staging thread after their write.
    pub spare: Sender<AlignedBuffer>,
    /// Messages sent to this thread and not yet finished (callbacks fired). While it is zero
    /// the thread is idle and the staging thread may commit a group itself (see
    /// `Writer::flush_group`).
    pub outstanding: Arc<AtomicUsize>,
}

impl Committer {
    pub(crate) fn run(self, receiver: Receiver<ToCommit>) {
        for message in receiver {
            self.handle(message);
        }
    }

    /// Finish one message: on the commit thread, or on the staging thread itself where the
    /// disk wants no threads (`Disk::single_threaded`).
    pub(crate) fn handle(&self, message: ToCommit) {
        match message {
            ToCommit::Group(group) => {
                let buffer = commit(&self.shared, group);
                // The staging thread may have stopped; the buffer is then simply freed.
                let _ = self.spare.send(buffer);
            }
            ToCommit::Callbacks(callbacks) => {
                let result = self
                    .poisoned()
                    .map_or(Ok(()), |p| Err(FlushError::Poisoned(p)));
                for append_flushed in callbacks {
                    append_flushed(result.clone());
                }
            }
            ToCommit::Barrier(done) => {
                // The staging thread waits on it; if it has gone there is nobody to tell.
                let _ = done.send(());
            }
        }
        self.outstanding.fetch_sub(1, Ordering::AcqRel);
    }

    fn poisoned(&self) -> Option<Poisoned> {
        self.shared.lock().poisoned.clone()
    }
}

/// Write one group (one write + fdatasync), publish its entries, fire its callbacks; returns
/// the buffer for reuse. Called by the commit thread, or by the staging thread while the
/// commit thread is idle; never by both at once.
pub(crate) fn commit(shared: &Shared, group: Group) -> AlignedBuffer {
    let Group {
        buffer,
        length,
        segment,
        offset,
        staged,
        flushed,
    } = group;
    // After an error nothing more is written: the disk's state is unknown until reopen.
    let poisoned = shared.lock().poisoned.clone();
    let started = std::time::Instant::now();
    let result = match poisoned {
        Some(poisoned) => Err(poisoned),
        None => match segment
            .file
            .write_sync_at(&buffer.as_slice()[..length], offset)
        {
            Ok(()) => Ok(()),
            Err(error) => {
                tracing::error!(%error, "WAL write failed; poisoned until reopened");
                let poisoned = Poisoned {
                    cause: Arc::new(error),
                };
                Err(shared.lock().poisoned.get_or_insert(poisoned).clone())
            }
        },
    };
    match result {
        Ok(()) => {
            shared.groups_committed.fetch_add(1, Ordering::Relaxed);
            shared
                .bytes_committed
                .fetch_add(length as u64, Ordering::Relaxed);
            shared
                .metrics
                .fsync_seconds
                .observe(started.elapsed().as_secs_f64());
            shared.metrics.bytes_written.inc_by(length as u64);
            let mut view = shared.lock();
            for staged in staged {
                let location = Location {
                    segment: Arc::clone(&segment),
                    offset: staged.offset,
                    length: staged.length,
                    term: staged.term,
                };
                view.publish(staged.index, location);
            }
            drop(view);
            // Durability contract: these callbacks fire only here, after the fdatasync of
            // every group holding their entries reported success.
            for append_flushed in flushed {
                append_flushed(Ok(()));
            }
        }
        Err(poisoned) => {
            for append_flushed in flushed {
                append_flushed(Err(FlushError::Poisoned(poisoned.clone())));
            }
        }
    }
    buffer
}
