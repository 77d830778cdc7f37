//! Limits of the network between Tally processes, units last, each with its reason, and the
//! openraft timing that goes with them (used by [`super::recommended_config`]).

use std::time::Duration;

use crate::limits::ENTRY_PAYLOAD_BYTES_MAX;
use crate::replication::limits::{REPLICATION_READ_BYTES_MAX, SNAPSHOT_META_BYTES_MAX};

/// Entries in one AppendEntries message. openraft sends at most `max_payload_entries` (300 by
/// default, and in [`super::recommended_config`]); the log store also stops at
/// `REPLICATION_READ_BYTES_MAX` bytes. The limit only bounds what a decoder allocates for a
/// damaged count.
pub const APPEND_ENTRIES_MAX: usize = 4096;

/// Bytes of an AppendEntries message before its entries: vote, prev log id, leader commit,
/// entry count and reserved (docs/protocol.md).
pub const APPEND_ENTRIES_HEADER_BYTES: usize = 24 + 32 + 32 + 8;

/// Bytes in front of each entry's payload in an AppendEntries message: index, term, length.
pub const APPEND_ENTRY_HEADER_BYTES: usize = 24;

/// The largest AppendEntries message: every entry header, plus the payload bytes the log store
/// returns at most for one message.
pub const APPEND_ENTRIES_BYTES_MAX: usize = APPEND_ENTRIES_HEADER_BYTES
    + APPEND_ENTRIES_MAX * APPEND_ENTRY_HEADER_BYTES
    + REPLICATION_READ_BYTES_MAX;

/// Bytes of snapshot data in one InstallSnapshot chunk. A leader clamps openraft's
/// `snapshot_max_chunk_size` to this. 4 MiB is a few milliseconds on the wire, so a chunk's
/// acknowledgement measures progress often, and the receiver's frame buffer stays small.
pub const SNAPSHOT_CHUNK_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Bytes of an InstallSnapshot chunk before its data: vote, offset, done, reserved, meta length.
pub const INSTALL_SNAPSHOT_HEADER_BYTES: usize = 24 + 8 + 8 + 4;

/// Bytes of an error message carried in an error answer (a storage error's text, why a request
/// did not decode). Longer messages are cut at a character boundary by the sender.
pub const ERROR_MESSAGE_BYTES_MAX: usize = 4096;

/// Largest frame payload a Tally connection accepts (checked before allocating): it must hold
/// the largest AppendEntries message and the largest snapshot chunk. Client frames (a batch of
/// at most one entry's worth of records) are far smaller. 16 MiB per connection is the memory
/// a peer can make us commit to one frame.
pub const FRAME_PAYLOAD_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Connections the peer listener keeps open at once. A replica keeps a few to every peer (two
/// replication streams, votes, `ensure_linearizable` rounds: at most
/// `IDLE_CONNECTIONS_PER_PEER_MAX` idle plus the ones in use); 64 covers a 7-node cluster with
/// room for reconnections, and is all a stranger can occupy, for at most
/// `FIRST_FRAME_TIMEOUT` each. One more is refused (closed at once) rather than queued.
pub const PEER_CONNECTIONS_MAX: usize = 64;

/// Connections the client listener keeps open at once: clients, operators, load generators.
/// Its own budget, so a flood of clients never takes the sockets replication needs.
pub const CLIENT_CONNECTIONS_MAX: usize = 1024;

/// Time from accepting a connection to its first complete frame, TLS handshake included. A
/// connection that has not got that far is closed: a stranger that opens connections and
/// sends nothing (slowloris) holds a slot this long. Generous for a handshake on a congested
/// LAN (a few round trips), short enough that a flood of idle connections drains quickly.
pub const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle connections a node keeps to one peer for its next clients (see `network.rs`). openraft
/// runs at most a few RPCs to one peer at once outside its two replication streams (a vote, a
/// round of `ensure_linearizable`); more idle ones would only hold sockets.
pub const IDLE_CONNECTIONS_PER_PEER_MAX: usize = 4;

/// Response frames waiting for a connection's writer. A handler that finds it full waits,
/// which stops that connection's reader: back-pressure on a client that does not read.
pub const REPLIES_QUEUE_DEPTH: usize = 256;

/// First wait before reconnecting to a peer that refused or dropped a connection; doubled at
/// each further failure up to `RECONNECT_BACKOFF_MAX`. Short enough that a restarted peer is
/// reached at once, long enough that a down peer is not hammered.
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(10);

/// Longest wait between reconnection attempts to a peer that stays down. Half the shortest
/// election timeout: a replica that restarts hears from the leader (whose replication stream
/// to it waits this long between attempts) before its own election timer runs out, instead of
/// campaigning and disturbing the cluster with a higher term.
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_millis(500);

/// Pause after `accept` fails (out of file descriptors, usually), so the loop does not spin.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Time allowed for the last snapshot chunk to be answered, on top of the per-chunk timeout:
/// the receiver then decodes the whole image, restores the engine from it and writes it to a
/// snapshot file with an fsync before answering. A fixed base for the fsyncs and the engine's
/// setup, plus the size at the slowest rate these steps run at (below).
pub const SNAPSHOT_INSTALL_TIMEOUT_BASE: Duration = Duration::from_secs(10);

/// The slowest rate (bytes per second) at which a replica is expected to verify, restore and
/// write a received snapshot; 32 MiB/s is far below a disk's sequential rate and the engine's
/// restore, so a healthy follower is never timed out, only a stuck one.
pub const SNAPSHOT_INSTALL_BYTES_PER_SECOND_MIN: u64 = 32 * 1024 * 1024;

/// The recommended openraft `heartbeat_interval`, in milliseconds. openraft also uses it as
/// the timeout of every AppendEntries call, so it must cover sending the largest AppendEntries
/// (8 MiB: ~70 ms at 1 Gbit/s) plus the follower's fdatasync; at 50 ms (openraft's default) a
/// catching-up follower would time out and be sent the same message again forever.
pub const HEARTBEAT_INTERVAL_MS: u64 = 200;

/// The recommended openraft `election_timeout_min`, in milliseconds: five heartbeats, so a
/// heartbeat delayed by one large message does not start an election. It is also openraft's
/// timeout for a vote request.
pub const ELECTION_TIMEOUT_MS_MIN: u64 = 1000;

/// The recommended openraft `election_timeout_max`, in milliseconds: twice the minimum, so
/// candidates rarely time out together (split votes).
pub const ELECTION_TIMEOUT_MS_MAX: u64 = 2000;

/// The recommended openraft `install_snapshot_timeout`, in milliseconds: with our transfer
/// (`network.rs`) it is the timeout of each snapshot chunk but the last (which adds the install
/// time above). One 4 MiB chunk takes ~35 ms at 1 Gbit/s; 5 s tolerates a congested link.
pub const SNAPSHOT_CHUNK_TIMEOUT_MS: u64 = 5000;

/// The recommended openraft `max_payload_entries`: openraft's default. The log store's byte
/// budget (`REPLICATION_READ_BYTES_MAX`) is what really bounds a message of large entries.
pub const MAX_PAYLOAD_ENTRIES: u64 = 300;

// The largest AppendEntries message and the largest snapshot chunk fit in one frame.
const _: () = assert!(APPEND_ENTRIES_BYTES_MAX <= FRAME_PAYLOAD_BYTES_MAX);
const _: () = assert!(
    INSTALL_SNAPSHOT_HEADER_BYTES + SNAPSHOT_META_BYTES_MAX + SNAPSHOT_CHUNK_BYTES_MAX
        <= FRAME_PAYLOAD_BYTES_MAX
);
// One largest entry always fits one message.
const _: () = assert!(
    APPEND_ENTRIES_HEADER_BYTES + APPEND_ENTRY_HEADER_BYTES + ENTRY_PAYLOAD_BYTES_MAX
        <= FRAME_PAYLOAD_BYTES_MAX
);
// openraft never sends more entries than a message may hold.
const _: () = assert!(MAX_PAYLOAD_ENTRIES as usize <= APPEND_ENTRIES_MAX);
// Every replica's connections fit the peer budget in a 7-node cluster.
const _: () = assert!(6 * (IDLE_CONNECTIONS_PER_PEER_MAX + 4) <= PEER_CONNECTIONS_MAX);
// A frame's length field is a u32.
const _: () = assert!(FRAME_PAYLOAD_BYTES_MAX <= u32::MAX as usize);
// openraft refuses a config whose heartbeat is not below the election timeout.
const _: () = assert!(HEARTBEAT_INTERVAL_MS * 5 <= ELECTION_TIMEOUT_MS_MIN);
const _: () = assert!(ELECTION_TIMEOUT_MS_MIN < ELECTION_TIMEOUT_MS_MAX);
// A restarted replica is reached again before it times out and campaigns.
const _: () = assert!(RECONNECT_BACKOFF_MAX.as_millis() * 2 <= ELECTION_TIMEOUT_MS_MIN as u128);
