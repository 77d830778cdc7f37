//! Read-ahead for recovery: a thread that reads each segment whole, one segment ahead of the
//! scan, into a small pool of recycled buffers.
//!
//! Why a thread: the recovery scan (and a replay's applier behind it) is CPU work, the read is
//! the disk's; overlapping them makes open cost about the larger of the two instead of their
//! sum. Why recycled buffers: on this machine the first touch of fresh memory costs about as
//! much as the disk read itself (1–2 GB/s of page faults against 1 GB/s from the disk), so
//! allocating a new 128 MiB buffer per segment doubled the cost of a scan. A buffer goes back
//! to the pool when the last `Bytes` slice of it (an entry handed to a replay) is dropped.
//!
//! Memory stays bounded: the channel to the scan is a rendezvous, so at most one segment is
//! being read while the scan (and the replay) work on the previous one. A replay that keeps
//! entries keeps their segment's buffer, and the reader then allocates a new one.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::{unbounded, Receiver, Sender};

use super::record::{self, RecordKind};
use super::segment::{segment_name, SegmentFile, SegmentInfo};
use super::WalConfig;
use crate::error::OpenError;
use crate::limits::SECTOR_BYTES;
use crate::storage::{read_direct_up_to, AlignedBuffer, Disk};

/// One segment read whole into memory (one large O_DIRECT read where possible).
pub(crate) struct Loaded {
    pub info: SegmentInfo,
    /// The segment's bytes (at most `segment_bytes`); entries handed to a replay are
    /// zero-copy slices of it.
    pub bytes: Bytes,
    /// Whether the next segment may begin with a truncate mark, which can remove entries of
    /// this one (see `Scan::hand_over`); `true` where that could not be read. Only a hint for
    /// when a replay may hand this segment's entries over: the scan decides what is valid.
    pub next_may_cut: bool,
}

/// A buffer of the pool, lent to a `Bytes`; returns to the pool when dropped.
struct Pooled {
    buffer: Option<AlignedBuffer>,
    home: Sender<AlignedBuffer>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref().map_or(&[], AlignedBuffer::as_slice)
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            // Once the reader has finished nobody takes buffers back; then it is just freed.
            let _ = self.home.send(buffer);
        }
    }
}

/// Buffers that came back, and the way back for the ones lent out.
pub(crate) struct Pool {
    home: Sender<AlignedBuffer>,
    returned: Receiver<AlignedBuffer>,
    capacity: usize,
}

impl Pool {
    /// A pool of buffers that each hold one whole segment of `config`.
    pub(crate) fn new(config: &WalConfig) -> Pool {
        // Unbounded only in type: it never holds more buffers than were lent out, which the
        // rendezvous with the scan bounds (see the module docs).
        let (home, returned) = unbounded();
        Pool {
            home,
            returned,
            capacity: (config.segment_bytes as usize).max(SECTOR_BYTES),
        }
    }

    fn take(&self) -> AlignedBuffer {
        match self.returned.try_recv() {
            Ok(buffer) => buffer,
            Err(_) => AlignedBuffer::new(self.capacity),
        }
    }

    fn lend(&self, buffer: AlignedBuffer, length: usize) -> Bytes {
        Bytes::from_owner(Pooled {
            buffer: Some(buffer),
            home: self.home.clone(),
        })
        .slice(..length)
    }
}

fn io_error(context: String) -> impl FnOnce(std::io::Error) -> OpenError {
    move |source| OpenError::Io { context, source }
}

/// Read segment `first_index` of `dir` whole, into a buffer from `pool`.
pub(crate) fn load_segment(
    disk: &dyn Disk,
    dir: &Path,
    first_index: u64,
    config: &WalConfig,
    pool: &Pool,
) -> Result<Loaded, OpenError> {
    let path = dir.join(segment_name(first_index));
    let file = disk
        .open(&path, false)
        .map_err(io_error(format!("opening {}", path.display())))?;
    let length = file
        .len()
        .map_err(io_error(format!("sizing {}", path.display())))?;
    let wanted = length.min(config.segment_bytes) as usize;
    let mut buffer = pool.take();
    // A recycled buffer holds an earlier segment's bytes past `wanted`; only the bytes this
    // read returned are ever looked at (`lend` cuts the slice to them).
    let aligned = wanted.div_ceil(SECTOR_BYTES).max(1) * SECTOR_BYTES;
    let n = read_direct_up_to(file.as_ref(), &mut buffer.as_mut_slice()[..aligned], 0)
        .map_err(io_error(format!("reading {}", path.display())))?;
    Ok(Loaded {
        info: SegmentInfo {
            first_index,
            handle: Arc::new(SegmentFile { path, file }),
            end: 0,
            index_max: None,
            crc_last: None,
        },
        bytes: pool.lend(buffer, n.min(wanted)),
        next_may_cut: false,
    })
}

/// Whether segment `first_index` begins with a truncate mark, from its first sector. Any
/// failure answers `true`, the cautious answer; the segment's own load reports errors.
fn begins_with_mark(disk: &dyn Disk, dir: &Path, first_index: u64, config: &WalConfig) -> bool {
    let path = dir.join(segment_name(first_index));
    let Ok(file) = disk.open(&path, false) else {
        return true;
    };
    let mut head = AlignedBuffer::new(SECTOR_BYTES);
    match read_direct_up_to(file.as_ref(), head.as_mut_slice(), 0) {
        Ok(n) => match record::decode(&head.as_slice()[..n], config.entry_payload_bytes_max) {
            Ok(header) => header.kind == RecordKind::Truncate,
            // No valid mark at offset 0: a mark has no payload, so it decodes from these
            // bytes if it is there (a longer first entry fails here and is no mark anyway).
            Err(_) => false,
        },
        Err(_) => true,
    }
}

/// The body of the read-ahead thread: load the segments `firsts` in order and hand each to
/// `sender`. Stops after the first error (sent like a segment, so it surfaces in log order,
/// behind any corruption the scan finds first) or when the scan hangs up.
pub(crate) fn read_segments(
    disk: &dyn Disk,
    dir: &Path,
    firsts: &[u64],
    config: &WalConfig,
    sender: Sender<Result<Loaded, OpenError>>,
) {
    let pool = Pool::new(config);
    for (position, &first_index) in firsts.iter().enumerate() {
        let mut loaded = load_segment(disk, dir, first_index, config, &pool);
        if let (Ok(loaded), Some(&next)) = (&mut loaded, firsts.get(position + 1)) {
            loaded.next_may_cut = begins_with_mark(disk, dir, next, config);
        }
        let failed = loaded.is_err();
        if sender.send(loaded).is_err() || failed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::SEGMENT_BYTES_MIN;

    /// A buffer lent out as `Bytes` comes back to the pool only once its last slice (an entry
    /// a replay still holds) is dropped, and is then reused instead of fresh memory.
    #[test]
    fn lent_buffers_return_when_their_last_slice_drops() {
        let config = WalConfig {
            segment_bytes: SEGMENT_BYTES_MIN,
            entry_payload_bytes_max: 1024,
        };
        let pool = Pool::new(&config);
        let buffer = pool.take();
        let address = buffer.as_slice().as_ptr();
        let bytes = pool.lend(buffer, 100);
        assert_eq!(bytes.len(), 100);
        let entry = bytes.slice(10..20);
        drop(bytes);
        assert!(pool.returned.is_empty(), "a slice still holds the buffer");
        drop(entry);
        let again = pool.take();
        assert_eq!(again.as_slice().as_ptr(), address);
        assert_eq!(again.capacity(), SEGMENT_BYTES_MIN as usize);
    }
}
