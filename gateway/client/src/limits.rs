//! The client protocol's limits, units last, each with its reason: what a request may carry
//! and what a reply may hold. The node's own limits (sessions, caches) are the gateway's.

use tally_engine::limits::{BATCH_EVENTS_MAX, RECORD_BYTES};

/// Bytes of the gateway header at the start of every request and reply payload
/// (docs/protocol.md, "Gateway protocol").
pub const HEADER_BYTES: usize = 64;

/// Events in one create request: one engine batch (8,189 records, just under 1 MiB), which is
/// also what one Raft entry holds, so a request is never split between entries.
pub const REQUEST_EVENTS_MAX: usize = BATCH_EVENTS_MAX;

/// Ids in one lookup request: as many as events in a create request, so a lookup's reply
/// (128 bytes per record) is never larger than a full create request.
pub const LOOKUP_IDS_MAX: usize = BATCH_EVENTS_MAX;

/// Body bytes of any request: the largest is a full create request (lookups: 16 bytes per id).
pub const REQUEST_BODY_BYTES_MAX: usize = REQUEST_EVENTS_MAX * RECORD_BYTES;

/// Bytes of a credential presented at registration. 16 bytes is the least that resists
/// guessing (128 bits); 256 leaves room for any token format without letting a client make
/// the node hash megabytes before it is authenticated.
pub const CREDENTIAL_BYTES_MIN: usize = 16;
pub const CREDENTIAL_BYTES_MAX: usize = 256;

/// Bytes of the message in a refusal (longer ones are cut at a character boundary).
pub const MESSAGE_BYTES_MAX: usize = 1024;

/// Bytes of a leader address in a `NotLeader` refusal (a host:port or DNS name).
pub const ADDRESS_BYTES_MAX: usize = 256;

/// Members named in one admin request or node-state reply: the membership's own limit.
pub const MEMBERS_MAX: usize = 64;

/// Bytes of one statement entry in a reply: timestamp, kind, reserved, balances after, and
/// the event's 128-byte record.
pub const STATEMENT_ENTRY_BYTES: usize = 8 + 8 + 64 + RECORD_BYTES;

/// Bytes of a reply payload a client accepts: the largest reply is a statement of
/// `STATEMENT_ENTRIES_MAX` entries (about 1.7 MB); anything larger closes the connection.
pub const REPLY_PAYLOAD_BYTES_MAX: usize = 2 * 1024 * 1024;

// The largest reply (a statement of `STATEMENT_ENTRIES_MAX` entries) and a full lookup fit.
const _: () = assert!(
    HEADER_BYTES
        + 16
        + tally_engine::limits::STATEMENT_ENTRIES_MAX as usize * STATEMENT_ENTRY_BYTES
        <= REPLY_PAYLOAD_BYTES_MAX
);
const _: () = assert!(HEADER_BYTES + LOOKUP_IDS_MAX * RECORD_BYTES <= REPLY_PAYLOAD_BYTES_MAX);
const _: () = assert!(LOOKUP_IDS_MAX * 16 <= REQUEST_BODY_BYTES_MAX);
const _: () = assert!(CREDENTIAL_BYTES_MAX <= REQUEST_BODY_BYTES_MAX);
const _: () = assert!(CREDENTIAL_BYTES_MIN <= CREDENTIAL_BYTES_MAX);
// The body size travels as a u32.
const _: () = assert!(REQUEST_BODY_BYTES_MAX <= u32::MAX as usize);
