//! The gateway protocol's replies: the reply header, statuses, and each operation's reply
//! body (docs/protocol.md, "Gateway protocol"). Re-exported by [`crate::protocol`], which holds
//! the requests and the shared decoding rules.

use tally_engine::limits::RECORD_BYTES;
use tally_engine::records::{Account, RecordBytes, Trade, Transfer};
use tally_engine::{Balances, EventResult, QueryPage, StatementEntry, StatementEvent};

use crate::limits::{
    ADDRESS_BYTES_MAX, HEADER_BYTES, LOOKUP_IDS_MAX, MESSAGE_BYTES_MAX, REQUEST_EVENTS_MAX,
    STATEMENT_ENTRY_BYTES,
};
use crate::protocol::{check_count, check_records, put_str, DecodeError, Reader, PROTOCOL_VERSION};
use crate::query::{decode_query_reply_header, query_reply_header, QUERY_REPLY_HEADER_BYTES};

/// How a reply begins (its header's status byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    Ok = 0,
    /// This node does not lead: the refusal names the leader if known. A create request may
    /// still commit (it was proposed before leadership was lost): retry it at the leader with
    /// a new session; already-applied events answer `exists`.
    NotLeader = 1,
    /// A queue or limit is full (the batcher's queue, the session's in-flight requests, the
    /// sessions): nothing was done; retry later.
    Busy = 2,
    /// Malformed or over a limit; retrying unchanged fails again.
    BadRequest = 3,
    /// The credential is unknown, or the node has none configured.
    Unauthenticated = 4,
    /// The session's role or scope does not allow this request.
    Forbidden = 5,
    /// The session is unknown here (expired, never registered, or registered on another node
    /// or before a restart): register again.
    SessionUnknown = 6,
    /// The request's cluster id is not this cluster's.
    WrongCluster = 7,
    /// The node cannot serve now (shutting down, no quorum): retry, possibly elsewhere. For a
    /// create request the outcome is unknown: retry it (applied events answer `exists`).
    Unavailable = 8,
    /// Ordered, then refused whole by the engine: nothing changed.
    BatchRefused = 9,
    /// The account of a statement or balances-as-of request does not exist (or, for a
    /// reader, is outside its scope: the two are not told apart).
    NotFound = 10,
    /// A bug or a storage fault on the node.
    Internal = 11,
    /// A create request of a scoped submitter debits (or creates) an account outside its
    /// credential's scope: the whole request was refused before submission, nothing of it
    /// applied. The refusal names the first such event (`Refusal::event`) and why.
    OutOfScope = 12,
    /// The create request's number was already used, in this session, for a request with
    /// other contents (its reply is still cached or being served): nothing of this request
    /// was applied. Send it with a new number; the original, unchanged, still gets its reply.
    RequestNumberReused = 13,
}

impl Status {
    /// Whether a request refused with this status may succeed if sent again later or
    /// elsewhere, unchanged: the node was busy, not the leader, unavailable, or no longer had
    /// the session. Every other refusal is permanent: retrying it unchanged fails again
    /// (wrong credential, role, scope or cluster; a malformed or oversized request; a batch
    /// refused whole; an account not found; a bug). The client library retries exactly the
    /// transient ones; this is the one place that decides which they are.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Status::NotLeader | Status::Busy | Status::SessionUnknown | Status::Unavailable
        )
    }

    pub fn from_byte(byte: u8) -> Result<Status, DecodeError> {
        Ok(match byte {
            0 => Status::Ok,
            1 => Status::NotLeader,
            2 => Status::Busy,
            3 => Status::BadRequest,
            4 => Status::Unauthenticated,
            5 => Status::Forbidden,
            6 => Status::SessionUnknown,
            7 => Status::WrongCluster,
            8 => Status::Unavailable,
            9 => Status::BatchRefused,
            10 => Status::NotFound,
            11 => Status::Internal,
            12 => Status::OutOfScope,
            13 => Status::RequestNumberReused,
            other => return Err(DecodeError::UnknownStatus(other)),
        })
    }
}

/// The header of a reply (64 bytes):
///
/// ```text
/// offset size field
///      0    2 protocol version (2)
///      2    1 status
///      3    1 reserved, zero
///      4    4 body bytes: exactly the payload's length less 64
///      8   16 cluster id: the node's (so a client sees a mismatch)
///     24   16 client id, echoed
///     40    8 session (a register reply: the new session)
///     48    8 request number, echoed
///     56    8 commit index: a create reply's Raft log index; a read's applied index; else 0
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyHeader {
    pub status: Status,
    pub cluster_id: u128,
    pub client_id: u128,
    pub session: u64,
    pub request_number: u64,
    pub commit_index: u64,
}

/// A reply's payload: header and body.
pub fn encode_reply(header: &ReplyHeader, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    out.push(header.status as u8);
    out.push(0);
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&header.cluster_id.to_le_bytes());
    out.extend_from_slice(&header.client_id.to_le_bytes());
    out.extend_from_slice(&header.session.to_le_bytes());
    out.extend_from_slice(&header.request_number.to_le_bytes());
    out.extend_from_slice(&header.commit_index.to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Check and split a reply payload.
pub fn decode_reply(payload: &[u8]) -> Result<(ReplyHeader, &[u8]), DecodeError> {
    let mut reader = Reader::new(payload, "reply header");
    let version = reader.u16()?;
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::Version(version));
    }
    let status = Status::from_byte(reader.u8()?)?;
    reader.zeros(1)?;
    let body_bytes = reader.u32()? as usize;
    let header = ReplyHeader {
        status,
        cluster_id: reader.u128()?,
        client_id: reader.u128()?,
        session: reader.u64()?,
        request_number: reader.u64()?,
        commit_index: reader.u64()?,
    };
    if reader.bytes.len() != body_bytes {
        return Err(DecodeError::BodySize {
            declared: body_bytes,
            actual: reader.bytes.len(),
        });
    }
    Ok((header, reader.bytes))
}

/// What a session may do (docs/protocol.md, "Authentication and scopes").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Role {
    /// An exchange or clearing house: creates accounts, transfers and trades; reads nothing.
    Submitter = 1,
    /// A participant: reads the accounts (and their transfers and trades) in its scope only.
    Reader = 2,
    /// Runs the cluster: may do everything, including reading every account.
    Operator = 3,
}

impl Role {
    pub fn from_byte(byte: u8) -> Result<Role, DecodeError> {
        match byte {
            1 => Ok(Role::Submitter),
            2 => Ok(Role::Reader),
            3 => Ok(Role::Operator),
            other => Err(DecodeError::UnknownRole(other)),
        }
    }
}

/// A register reply's body (24 bytes): session u64, session idle timeout ms u32, role u8,
/// reserved 3, events per request max u32, in-flight requests per session max u32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registered {
    pub session: u64,
    pub session_idle_ms: u32,
    pub role: Role,
    pub request_events_max: u32,
    pub in_flight_max: u32,
}

pub fn encode_registered(registered: &Registered) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    out.extend_from_slice(&registered.session.to_le_bytes());
    out.extend_from_slice(&registered.session_idle_ms.to_le_bytes());
    out.extend_from_slice(&[registered.role as u8, 0, 0, 0]);
    out.extend_from_slice(&registered.request_events_max.to_le_bytes());
    out.extend_from_slice(&registered.in_flight_max.to_le_bytes());
    out
}

pub fn decode_registered(body: &[u8]) -> Result<Registered, DecodeError> {
    let mut reader = Reader::new(body, "register reply");
    let session = reader.u64()?;
    let session_idle_ms = reader.u32()?;
    let role = Role::from_byte(reader.u8()?)?;
    reader.zeros(3)?;
    let registered = Registered {
        session,
        session_idle_ms,
        role,
        request_events_max: reader.u32()?,
        in_flight_max: reader.u32()?,
    };
    reader.end()?;
    Ok(registered)
}

/// One failed event of a create request: its index in the request and its result code
/// (`EventResult::code`; a code this build does not know is kept as a number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    pub index: u32,
    pub code: u16,
}

impl Failure {
    pub fn result(self) -> Option<EventResult> {
        EventResult::from_code(self.code)
    }
}

/// A create reply's body: timestamp of the first event u64, of the last u64, failure count
/// u32, reserved u32, then per failed event (replies by exception) index u32, result code u16,
/// reserved u16. Events not listed succeeded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CreateReply {
    pub timestamp_first: u64,
    pub timestamp_last: u64,
    pub failures: Vec<Failure>,
}

pub fn encode_create_reply(reply: &CreateReply) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + 8 * reply.failures.len());
    out.extend_from_slice(&reply.timestamp_first.to_le_bytes());
    out.extend_from_slice(&reply.timestamp_last.to_le_bytes());
    out.extend_from_slice(&(reply.failures.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    for failure in &reply.failures {
        out.extend_from_slice(&failure.index.to_le_bytes());
        out.extend_from_slice(&failure.code.to_le_bytes());
        out.extend_from_slice(&[0u8; 2]);
    }
    out
}

pub fn decode_create_reply(body: &[u8]) -> Result<CreateReply, DecodeError> {
    let mut reader = Reader::new(body, "create reply");
    let timestamp_first = reader.u64()?;
    let timestamp_last = reader.u64()?;
    let count = reader.u32()? as usize;
    reader.zeros(4)?;
    check_count("failures", count, 0, REQUEST_EVENTS_MAX)?;
    check_count("failures", count, 0, reader.bytes.len() / 8)?;
    let mut failures = Vec::with_capacity(count);
    for _ in 0..count {
        let index = reader.u32()?;
        let code = reader.u16()?;
        reader.zeros(2)?;
        failures.push(Failure { index, code });
    }
    reader.end()?;
    Ok(CreateReply {
        timestamp_first,
        timestamp_last,
        failures,
    })
}

/// A lookup reply's body: the records found, 128 bytes each, in request order (ids not found,
/// or outside a reader's scope, are left out).
pub fn decode_lookup_reply(body: &[u8]) -> Result<Vec<RecordBytes>, DecodeError> {
    let count = check_records(body)?;
    check_count("lookup records", count, 0, LOOKUP_IDS_MAX)?;
    let (records, _) = body.as_chunks::<RECORD_BYTES>();
    Ok(records.to_vec())
}

const EVENT_TRANSFER: u8 = 1;
const EVENT_TRADE: u8 = 2;
const EVENT_TRANSFER_EXPIRED: u8 = 3;
const EVENT_TRADE_EXPIRED: u8 = 4;

fn put_balances(out: &mut Vec<u8>, balances: &Balances) {
    out.extend_from_slice(&balances.debits_pending.to_le_bytes());
    out.extend_from_slice(&balances.debits_posted.to_le_bytes());
    out.extend_from_slice(&balances.credits_pending.to_le_bytes());
    out.extend_from_slice(&balances.credits_posted.to_le_bytes());
}

fn get_balances(reader: &mut Reader<'_>) -> Result<Balances, DecodeError> {
    Ok(Balances {
        debits_pending: reader.u128()?,
        debits_posted: reader.u128()?,
        credits_pending: reader.u128()?,
        credits_posted: reader.u128()?,
    })
}

/// A statement reply's body: the query reply's header (entry count u32, flags u32 — bit 0:
/// more, the next page starts at `next` — next u64, 0 without more), then per entry (208
/// bytes): timestamp u64, event kind u8 (1 transfer, 2 trade, 3 pending transfer expired, 4
/// pending trade expired), reserved 7, balances after (debits pending, debits posted, credits
/// pending, credits posted: u128 each), then 128 bytes: the transfer's or trade's record, or
/// for an expiry the pending event's id (u128) and 112 zero bytes.
pub fn encode_statement_reply(page: &QueryPage<StatementEntry>) -> Vec<u8> {
    let entries = &page.items;
    let mut out = Vec::with_capacity(16 + entries.len() * STATEMENT_ENTRY_BYTES);
    out.extend_from_slice(&query_reply_header(entries.len(), page.next));
    for entry in entries {
        out.extend_from_slice(&entry.timestamp.to_le_bytes());
        let (kind, record) = event_record(&entry.event);
        out.extend_from_slice(&[kind, 0, 0, 0, 0, 0, 0, 0]);
        put_balances(&mut out, &entry.balances_after);
        out.extend_from_slice(&record);
    }
    out
}

/// A stored event's kind byte and record, as statement and events replies carry them: the
/// transfer's or trade's record, or for an expiry the pending event's id and zeros.
pub(crate) fn event_record(event: &StatementEvent) -> (u8, RecordBytes) {
    match *event {
        StatementEvent::Transfer(transfer) => (EVENT_TRANSFER, transfer.encode()),
        StatementEvent::Trade(trade) => (EVENT_TRADE, trade.encode()),
        StatementEvent::TransferExpired { pending_id } => {
            (EVENT_TRANSFER_EXPIRED, id_record(pending_id))
        }
        StatementEvent::TradeExpired { pending_id } => (EVENT_TRADE_EXPIRED, id_record(pending_id)),
    }
}

/// The stored event of a kind byte (1–4) and its record; any other kind is refused.
pub(crate) fn decode_event(kind: u8, record: &RecordBytes) -> Result<StatementEvent, DecodeError> {
    Ok(match kind {
        EVENT_TRANSFER => StatementEvent::Transfer(
            Transfer::decode(record).map_err(|_| DecodeError::Record("transfer"))?,
        ),
        EVENT_TRADE => {
            StatementEvent::Trade(Trade::decode(record).map_err(|_| DecodeError::Record("trade"))?)
        }
        EVENT_TRANSFER_EXPIRED | EVENT_TRADE_EXPIRED => {
            let mut id = Reader::new(record, "expiry");
            let pending_id = id.u128()?;
            id.zeros(RECORD_BYTES - 16)?;
            if kind == EVENT_TRANSFER_EXPIRED {
                StatementEvent::TransferExpired { pending_id }
            } else {
                StatementEvent::TradeExpired { pending_id }
            }
        }
        other => return Err(DecodeError::UnknownEventKind(other)),
    })
}

fn id_record(id: u128) -> RecordBytes {
    let mut record = [0u8; RECORD_BYTES];
    record[..16].copy_from_slice(&id.to_le_bytes());
    record
}

pub fn decode_statement_reply(body: &[u8]) -> Result<QueryPage<StatementEntry>, DecodeError> {
    let (count, next) = decode_query_reply_header(body)?;
    let mut reader = Reader::new(&body[QUERY_REPLY_HEADER_BYTES..], "statement reply");
    check_count(
        "statement entries",
        count,
        0,
        reader.bytes.len() / STATEMENT_ENTRY_BYTES,
    )?;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let timestamp = reader.u64()?;
        let kind = reader.u8()?;
        reader.zeros(7)?;
        let balances_after = get_balances(&mut reader)?;
        let record: RecordBytes = reader.array()?;
        let event = decode_event(kind, &record)?;
        entries.push(StatementEntry {
            timestamp,
            event,
            balances_after,
        });
    }
    reader.end()?;
    Ok(QueryPage {
        items: entries,
        next,
    })
}

/// A balances-as-of reply's body (64 bytes): debits pending, debits posted, credits pending,
/// credits posted, u128 each.
pub fn encode_balances(balances: &Balances) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    put_balances(&mut out, balances);
    out
}

pub fn decode_balances(body: &[u8]) -> Result<Balances, DecodeError> {
    let mut reader = Reader::new(body, "balances reply");
    let balances = get_balances(&mut reader)?;
    reader.end()?;
    Ok(balances)
}

/// The body of every reply whose status is not `Ok`: leader known u8 (0/1), event known u8
/// (0/1), reserved 2, event index u32 (0 when unknown), leader node id u64 (0 when unknown),
/// address length u16 + the leader's address (UTF-8, its single port: connect there), message
/// length u16 + UTF-8 message (why, for humans).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refusal {
    pub leader: Option<(u64, String)>,
    /// The index in the request of the event the refusal is about (`OutOfScope`: the first
    /// event outside the scope).
    pub event: Option<u32>,
    pub message: String,
}

pub fn encode_refusal(refusal: &Refusal) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + refusal.message.len());
    let (known, id, addr) = match &refusal.leader {
        Some((id, addr)) => (1, *id, addr.as_str()),
        None => (0, 0, ""),
    };
    let (event_known, event) = match refusal.event {
        Some(index) => (1, index),
        None => (0, 0),
    };
    out.extend_from_slice(&[known, event_known, 0, 0]);
    out.extend_from_slice(&event.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    put_str(&mut out, addr, ADDRESS_BYTES_MAX);
    put_str(&mut out, &refusal.message, MESSAGE_BYTES_MAX);
    out
}

pub fn decode_refusal(body: &[u8]) -> Result<Refusal, DecodeError> {
    let mut reader = Reader::new(body, "refusal");
    let known = reader.u8()?;
    let event_known = reader.u8()?;
    if known > 1 || event_known > 1 {
        return Err(DecodeError::ReservedNotZero("refusal"));
    }
    reader.zeros(2)?;
    let event = reader.u32()?;
    let id = reader.u64()?;
    let addr = reader.string(ADDRESS_BYTES_MAX)?;
    let message = reader.string(MESSAGE_BYTES_MAX)?;
    reader.end()?;
    if known == 0 && (id != 0 || !addr.is_empty()) {
        return Err(DecodeError::ReservedNotZero("refusal"));
    }
    if event_known == 0 && event != 0 {
        return Err(DecodeError::ReservedNotZero("refusal"));
    }
    Ok(Refusal {
        leader: (known == 1).then_some((id, addr)),
        event: (event_known == 1).then_some(event),
        message,
    })
}

/// Decode the records of a lookup reply of `what` (for clients and tests).
pub fn decode_accounts(body: &[u8]) -> Result<Vec<Account>, DecodeError> {
    decode_lookup_reply(body)?
        .iter()
        .map(|record| Account::decode(record).map_err(|_| DecodeError::Record("account")))
        .collect()
}

pub fn decode_transfers(body: &[u8]) -> Result<Vec<Transfer>, DecodeError> {
    decode_lookup_reply(body)?
        .iter()
        .map(|record| Transfer::decode(record).map_err(|_| DecodeError::Record("transfer")))
        .collect()
}

pub fn decode_trades(body: &[u8]) -> Result<Vec<Trade>, DecodeError> {
    decode_lookup_reply(body)?
        .iter()
        .map(|record| Trade::decode(record).map_err(|_| DecodeError::Record("trade")))
        .collect()
}
