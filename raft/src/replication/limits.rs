//! Limits of the replication layer, units last, each with its reason. (The WAL's own limits are
//! in `crate::limits`; these are the ones only openraft's entries and snapshots need.)

use crate::limits::{ENTRY_PAYLOAD_BYTES_MAX, SNAPSHOT_PAYLOAD_BYTES_MAX};
use tally_engine::limits::RECORD_BYTES;

/// Client batches packed into one Raft entry. A batch holds at least one 128-byte record and
/// the WAL takes at most `ENTRY_PAYLOAD_BYTES_MAX` per entry, so 8192 is as many as can ever
/// fit; the limit only bounds what a decoder allocates for a damaged count.
pub const ENTRY_BATCHES_MAX: usize = 8192;
/// Reads in one entry of the access trail (`LogNote::Reads`).
pub const ENTRY_READS_MAX: usize = 8192;
/// Accounts one read in the access trail names: a lookup of 8,189 trades touches four
/// accounts each.
pub const READ_ACCOUNTS_MAX: usize = 4 * 8192;

/// Configurations in one membership: openraft's joint consensus holds at most two (old and
/// new); a uniform membership holds one.
pub const MEMBERSHIP_CONFIGS_MAX: usize = 2;

/// Nodes (voters and learners) in one membership. Tally runs 3 or 5 voters plus a learner or
/// two while one is being added; 64 leaves room and bounds what a decoder allocates.
pub const MEMBERSHIP_NODES_MAX: usize = 64;

/// Bytes of one node's address ("host:port"; a DNS name is at most 253 bytes).
pub const NODE_ADDRESS_BYTES_MAX: usize = 255;

/// Bytes of a snapshot id (openraft's `SnapshotId`, a string we build from the log id).
pub const SNAPSHOT_ID_BYTES_MAX: usize = 128;

/// Payload bytes `limited_get_log_entries` returns at once, i.e. roughly the size of one
/// AppendEntries message to a follower that is catching up. openraft asks for up to
/// `max_payload_entries` (300 by default) entries, which with 1 MiB entries would be 300 MiB in
/// one message; 8 MiB keeps a message to a few milliseconds on the wire and a bounded buffer.
pub const REPLICATION_READ_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Entries read from the WAL per step while filling `REPLICATION_READ_BYTES_MAX`, so a read
/// of small entries is still a few large reads and a read of large ones stops near the budget.
pub const REPLICATION_READ_ENTRIES_STEP: u64 = 8;

/// Times a log read is retried when a concurrent purge or truncate moved the log's bounds
/// between computing the range and reading it. Each retry recomputes the bounds, so one retry
/// suffices unless the log keeps moving; three bounds the loop.
pub const LOG_READ_ATTEMPTS_MAX: usize = 3;

/// How often the commit index this node knows is recorded on disk (when it moved), so that a
/// restart applies the log up to it in one pass while the log is read (`open_storage`). A crash
/// loses at most this much of the record: those entries are applied through Raft instead, once
/// a leader is heard.
pub const COMMIT_MARK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Snapshot files kept on disk. openraft's contract for `install_snapshot` is that every other
/// snapshot is deleted, and the log is purged up to the newest one, so an older snapshot could
/// not be replayed forward anyway.
pub const SNAPSHOTS_KEPT: usize = 1;

// A full entry of one-record batches must not be refused by the count limit.
const _: () = assert!(ENTRY_BATCHES_MAX * RECORD_BYTES >= ENTRY_PAYLOAD_BYTES_MAX);
// One largest entry always fits one replication read, so a read never returns nothing.
const _: () = assert!(ENTRY_PAYLOAD_BYTES_MAX <= REPLICATION_READ_BYTES_MAX);
const _: () = assert!(MEMBERSHIP_CONFIGS_MAX >= 2);

/// Bytes of a snapshot image's meta section (log ids, membership, snapshot id). The largest
/// membership the limits allow is about 18 KiB; 64 KiB bounds what a damaged length can claim.
pub const SNAPSHOT_META_BYTES_MAX: usize = 64 * 1024;

const _: () = assert!(
    2 * 32
        + 8
        + MEMBERSHIP_CONFIGS_MAX * (4 + 8 * MEMBERSHIP_NODES_MAX)
        + MEMBERSHIP_NODES_MAX * (12 + NODE_ADDRESS_BYTES_MAX)
        + 4
        + SNAPSHOT_ID_BYTES_MAX
        <= SNAPSHOT_META_BYTES_MAX
);

/// Bytes of a snapshot image a replica agrees to receive from a peer, held in memory until the
/// last chunk arrives. The InstallSnapshot protocol announces no total (docs/protocol.md), so
/// this node-wide bound is what a peer can make a replica hold for one snapshot. It equals the
/// largest snapshot file we read back: a larger image could be received but never reopened.
/// Chunks must also arrive in order (`SnapshotBuffer`), so reaching it takes sending it.
pub const SNAPSHOT_RECEIVE_BYTES_MAX: u64 = SNAPSHOT_PAYLOAD_BYTES_MAX;

/// Largest term accepted from a peer or read from disk. openraft adds one to a term when it
/// campaigns; a term at `u64::MAX` would overflow (and, without overflow checks, wrap to 0 and
/// make a node forget every vote). A term grows by one per election: at one election per
/// millisecond, 2^62 lasts over a hundred million years, so only a wrong peer gets near it.
pub const TERM_MAX: u64 = 1 << 62;

/// Largest log index accepted from a peer or read from disk. openraft computes `index + 1`
/// (the next index) all over; an index at `u64::MAX` would overflow. One entry per fdatasync
/// (some 10,000 a second) reaches 2^62 in over ten million years.
pub const LOG_INDEX_MAX: u64 = 1 << 62;

const _: () = assert!(SNAPSHOT_RECEIVE_BYTES_MAX <= SNAPSHOT_PAYLOAD_BYTES_MAX);
// Room for the arithmetic openraft does on terms and indexes (+1, and sums of a few).
const _: () = assert!(TERM_MAX <= u64::MAX / 2);
const _: () = assert!(LOG_INDEX_MAX <= u64::MAX / 2);
