//! Every limit of the gateway's server, units last, each with its reason; the protocol's own
//! limits (what a request may carry) are the client crate's and are re-exported here.
//! Connections are limited by the node's server (`tally_raft::net::limits`).

use std::time::Duration;

use tally_raft::net::limits::FRAME_PAYLOAD_BYTES_MAX;

pub use tally_client::limits::*;

/// Payload bytes of a register frame: its header and the longest credential. A stranger has
/// no session yet, so registration is all it can do; the frame reader refuses a longer
/// register frame from its header, before the payload is allocated, so a stranger cannot make
/// the node buffer a full request's megabyte under the register kind.
pub const REGISTER_PAYLOAD_BYTES_MAX: usize = HEADER_BYTES + CREDENTIAL_BYTES_MAX;

/// Sessions registered at once on one node. Each may pin up to `REPLY_CACHE_BYTES_MAX` of
/// cached replies, so this bounds the cache at 256 MiB; a registration past it (after idle
/// sessions are expired) is answered `Busy`.
pub const SESSIONS_MAX: usize = 256;

/// Sessions registered at once under one credential. A client holds one session (one
/// connection; `client::Client` packs every call into it), so 64 leaves room for a fleet of
/// one participant's processes, while a quarter of the table means one credential — a reader
/// whose secret leaked, a client that leaks sessions — can never hold every session: the
/// other credentials keep at least 192. One more is answered `Busy` (after idle sessions are
/// expired), naming the credential's limit.
pub const SESSIONS_PER_CREDENTIAL_MAX: usize = 64;

/// Requests of one session being served at once (writes queued or in flight, reads running).
/// Enough to keep the batcher fed from one session (it packs 2 entries' worth in flight);
/// more only queues inside the node. One more is answered `Busy`.
pub const SESSION_IN_FLIGHT_MAX: usize = 16;

/// Write replies cached per session, newest request numbers kept: a client that retries after
/// a lost reply gets the cached reply as long as it has fewer than this many newer writes.
/// Past the window a duplicate is executed again, which is still safe: its events answer
/// `exists` (event ids are the idempotency key).
pub const REPLY_CACHE_REPLIES_MAX: usize = 32;

/// Bytes of cached replies per session (a reply lists failed events only, 8 bytes each, so a
/// full request that failed entirely is 64 KiB). Oldest replies go first past it.
pub const REPLY_CACHE_BYTES_MAX: usize = 1024 * 1024;

/// How long a session lives without any request (a heartbeat counts), by default. Configurable
/// per node (`[gateway] session_idle_ms`).
pub const SESSION_IDLE_DEFAULT: Duration = Duration::from_secs(60);

// A full create request fits in one frame, and so does the largest reply (a statement of
// `STATEMENT_ENTRIES_MAX` entries).
const _: () = assert!(HEADER_BYTES + REQUEST_BODY_BYTES_MAX <= FRAME_PAYLOAD_BYTES_MAX);
const _: () = assert!(
    HEADER_BYTES + 8 + tally_engine::limits::STATEMENT_ENTRIES_MAX as usize * STATEMENT_ENTRY_BYTES
        <= FRAME_PAYLOAD_BYTES_MAX
);
// A full request fits one batch of the batcher (one WAL entry less its headers).
const _: () = assert!(
    REQUEST_BODY_BYTES_MAX
        <= tally_raft::limits::ENTRY_PAYLOAD_BYTES_MAX
            - crate::batcher::ENTRY_OVERHEAD_BYTES
            - crate::batcher::BATCH_OVERHEAD_BYTES
);
// Registration fits its own tight limit, which is far below every other kind's.
const _: () = assert!(REGISTER_PAYLOAD_BYTES_MAX < HEADER_BYTES + REQUEST_BODY_BYTES_MAX);
// One credential holds at most a quarter of the session table.
const _: () = assert!(SESSIONS_PER_CREDENTIAL_MAX >= 1);
const _: () = assert!(SESSIONS_PER_CREDENTIAL_MAX * 4 <= SESSIONS_MAX);
const _: () = assert!(MEMBERS_MAX == tally_raft::replication::limits::MEMBERSHIP_NODES_MAX);
const _: () = assert!(ADDRESS_BYTES_MAX >= tally_raft::replication::limits::NODE_ADDRESS_BYTES_MAX);
// What the client accepts as a reply fits a frame the node may send.
const _: () = assert!(REPLY_PAYLOAD_BYTES_MAX <= FRAME_PAYLOAD_BYTES_MAX);
