//! Every limit of the durable storage layer, in one place, each with its reason.
//!
//! Units come last in each name. The compile-time assertions at the bottom say how the limits
//! relate; change one and the build tells you which others must move with it.

/// The unit of alignment for every write the WAL submits. O_DIRECT needs offsets, lengths and
/// buffer addresses aligned to the logical block size (512 or 4096 on the disks we run on);
/// 4096 satisfies both and equals the page size, so one buffer works for every backend. It is
/// also the unit in which recovery assumes a torn write can lose data (see docs/wal.md).
pub const SECTOR_BYTES: usize = 4096;

/// Bytes of one record header: magic, kind, flags, payload length, index, term, chain, CRC.
/// Fixed by the on-disk format (docs/wal.md); changing it changes the format.
pub const RECORD_HEADER_BYTES: usize = 40;

/// Largest payload of one log entry. The batcher packs up to 8189 events of 128 bytes
/// (1,048,192 bytes) plus its own small header into one entry; 1 MiB holds that with room to
/// spare, and bounds what a corrupt length field can make recovery read.
pub const ENTRY_PAYLOAD_BYTES_MAX: usize = 1024 * 1024;

/// Largest record on disk: header plus the largest payload, rounded up to whole sectors.
pub const RECORD_BYTES_MAX: usize =
    (RECORD_HEADER_BYTES + ENTRY_PAYLOAD_BYTES_MAX).div_ceil(SECTOR_BYTES) * SECTOR_BYTES;

/// Bytes the WAL thread gathers into one write + fdatasync (one group commit). Larger groups
/// amortise the 90–175 µs fsync better, but past a few MiB the disk's sequential rate
/// (1.0–1.5 GB/s) dominates and a larger buffer only adds latency to the first entry in it.
pub const GROUP_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Entries waiting for the WAL thread, counted in `append` calls. A full queue blocks `append`,
/// which is the back-pressure that keeps memory bounded when the disk falls behind. openraft
/// keeps at most a handful of appends in flight, so 1024 is never reached in normal operation.
pub const APPEND_QUEUE_DEPTH_MAX: usize = 1024;

/// Payload bytes of recently flushed entries kept in memory. openraft sends an entry to the
/// followers right after appending it; serving those reads from memory avoids reading back
/// what O_DIRECT just wrote (and doubling the disk traffic). 64 MiB holds 64 of the largest
/// entries: several group commits' worth, more than replication lags in normal operation.
pub const READ_CACHE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Default size of one preallocated segment. Large enough that rotating (create, fallocate,
/// fsync file, fsync directory: a few ms) costs under 1% at 1 GB/s, small enough that purge
/// frees space in useful steps and recovery can hold one segment in memory while scanning it.
pub const SEGMENT_BYTES_DEFAULT: u64 = 128 * 1024 * 1024;

/// Smallest allowed segment. Tests use tiny segments (with a smaller entry limit, see
/// `WalConfig`) to force rotation often; below 16 sectors rotation would dominate everything.
/// Whatever the size, `WalConfig::validate` checks that one largest record fits.
pub const SEGMENT_BYTES_MIN: u64 = 16 * SECTOR_BYTES as u64;

/// Largest allowed segment: recovery reads a whole segment into memory at once.
pub const SEGMENT_BYTES_MAX: u64 = 1024 * 1024 * 1024;

/// Largest small metadata file (vote, purge mark). They hold a few dozen bytes; anything larger
/// on disk is corruption and must not make us allocate.
pub const META_FILE_BYTES_MAX: usize = 4096;

/// Largest snapshot payload we agree to read back. The engine's state for the target workload
/// is a few GiB; a corrupt length field must not make us allocate terabytes.
pub const SNAPSHOT_PAYLOAD_BYTES_MAX: u64 = 64 * 1024 * 1024 * 1024;

/// Bytes moved per read or write call when streaming a snapshot file.
pub const SNAPSHOT_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// Bytes of a snapshot file written between two fsyncs while it is written. One fsync of a
/// whole gigabyte image at the end would leave that much dirty in the page cache (where the
/// filesystem refuses O_DIRECT), and the WAL's next fdatasync would wait behind its
/// write-back (a stop of commits for seconds on a shared disk); syncing every 32 MiB keeps
/// each write-back short.
pub const SNAPSHOT_SYNC_BYTES: u64 = 32 * 1024 * 1024;

/// Bytes of one write request of a snapshot file (O_DIRECT, one at a time: see
/// `DiskFile::write_direct_at`). A WAL group commit that arrives while a snapshot is written
/// waits behind at most one of them. Measured on the 2-core host, three writers of 1 GiB each
/// beside a 4 KiB write + fdatasync loop: the loop's p99 1.1 ms and max 1.6 ms with requests
/// of 256 KiB, max 7 ms with 1 MiB, and p50 16 ms, max 36 ms with page-cache writes synced
/// every 32 MiB (the way builds were written before); the writers took 1.5 s against 4.4 s.
pub const SNAPSHOT_WRITE_BYTES: usize = 256 * 1024;

/// A large file nothing reads again (a WAL segment behind the purge point, a snapshot older
/// than the current one) is deleted in the background by cutting this much off its end at a
/// time, each cut fsync'd and followed by `RECLAIM_PAUSE`, then unlinking what is left
/// (`storage::reclaim`). On a filesystem mounted with online discard (as on this host) an
/// unlink frees the whole file in one journal commit, whose discards hold up every fdatasync
/// behind it: three processes deleting 1 GiB each stalled a 4 KiB write + fdatasync loop for
/// up to 130 ms; in 16 MiB cuts 10 ms apart, for at most 7 ms.
pub const RECLAIM_STEP_BYTES: u64 = 16 * 1024 * 1024;

/// The pause after each cut of `RECLAIM_STEP_BYTES`: about a second per GiB deleted.
pub const RECLAIM_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// Depth of the io_uring submission queue: one write linked to one fdatasync is all the WAL
/// thread ever has in flight, so 8 leaves room without wasting locked memory.
pub const URING_QUEUE_DEPTH: u32 = 8;

const _: () = assert!(SECTOR_BYTES.is_power_of_two());
const _: () = assert!(SNAPSHOT_WRITE_BYTES.is_multiple_of(SECTOR_BYTES));
const _: () = assert!(SNAPSHOT_CHUNK_BYTES.is_multiple_of(SNAPSHOT_WRITE_BYTES));
const _: () = assert!(RECORD_HEADER_BYTES.is_multiple_of(8));
const _: () = assert!(RECORD_BYTES_MAX <= GROUP_BYTES_MAX);
const _: () = assert!(GROUP_BYTES_MAX.is_multiple_of(SECTOR_BYTES));
const _: () = assert!(SEGMENT_BYTES_MIN <= SEGMENT_BYTES_DEFAULT);
const _: () = assert!(SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_MAX);
const _: () = assert!(SEGMENT_BYTES_DEFAULT.is_multiple_of(SECTOR_BYTES as u64));
// A payload length must fit the u32 length field of the record header.
const _: () = assert!(ENTRY_PAYLOAD_BYTES_MAX <= u32::MAX as usize);
// 8189 events of 128 bytes plus a 384-byte entry header fit in one entry.
const _: () = assert!(8189 * 128 + 384 <= ENTRY_PAYLOAD_BYTES_MAX);
