//! The gateway protocol: what clients send to a node's gateway and what it answers, byte by
//! byte (docs/protocol.md, "Gateway protocol"). Every message is one frame
//! (`tally_raft::net::frame`: magic, version, kind, length, request id, CRC32C over header and
//! payload) whose kind is the operation (`KIND_*`, all ≥ 64; a reply's kind is its request's
//! plus one). The payload starts with a 64-byte gateway header, then the operation's body.
//!
//! Request header (reply header below):
//!
//! ```text
//! offset size field
//!      0    2 protocol version (1)
//!      2    2 flags: bit 0 linearizable read; other bits zero
//!      4    4 body bytes: exactly the payload's length less 64
//!      8   16 cluster id: must equal the node's, so staging and production never mix
//!     24   16 client id: chosen by the client (random), fixed for its sessions
//!     40    8 session: from the register reply (0 in a register request)
//!     48    8 request number: per session, chosen by the client, a new number per request
//!     56    8 reserved, zero
//! ```
//!
//! Decoders are bounded: they check every count against its limit and against the bytes left
//! before allocating, refuse unknown kinds, flags and non-zero reserved bytes, and never panic
//! on any input (property tests in `protocol_tests.rs`, fuzz target in `gateway/fuzz`).

use bytes::Bytes;
use tally_engine::limits::RECORD_BYTES;
use tally_engine::records::{Account, RecordBytes, Trade, Transfer};
use tally_engine::{Balances, EventResult, StatementEntry, StatementEvent, StatementFilter};
use tally_raft::net::Frame;

use crate::limits::{
    ADDRESS_BYTES_MAX, CREDENTIAL_BYTES_MAX, CREDENTIAL_BYTES_MIN, HEADER_BYTES, LOOKUP_IDS_MAX,
    MESSAGE_BYTES_MAX, REQUEST_BODY_BYTES_MAX, REQUEST_EVENTS_MAX, STATEMENT_ENTRY_BYTES,
};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// Request flag: serve the read only on the leader after confirming leadership with a quorum
/// (openraft's read index), so it reflects every write acknowledged before it was sent.
pub const FLAG_LINEARIZABLE: u16 = 1;
const FLAGS_KNOWN: u16 = FLAG_LINEARIZABLE;

pub const KIND_REGISTER: u8 = 64;
pub const KIND_HEARTBEAT: u8 = 66;
pub const KIND_CREATE_ACCOUNTS: u8 = 68;
pub const KIND_CREATE_TRANSFERS: u8 = 70;
pub const KIND_CREATE_TRADES: u8 = 72;
pub const KIND_LOOKUP_ACCOUNTS: u8 = 74;
pub const KIND_LOOKUP_TRANSFERS: u8 = 76;
pub const KIND_LOOKUP_TRADES: u8 = 78;
pub const KIND_STATEMENT: u8 = 80;
pub const KIND_BALANCES_AS_OF: u8 = 82;

/// The kind of the reply to a frame of `kind`: the request's plus one. A frame with an odd or
/// unknown kind (≥ 64) is answered `BadRequest` with kind `kind | 1`.
pub const fn reply_kind(kind: u8) -> u8 {
    kind | 1
}

/// A gateway operation; its frame kind is [`Operation::kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    Register,
    Heartbeat,
    CreateAccounts,
    CreateTransfers,
    CreateTrades,
    LookupAccounts,
    LookupTransfers,
    LookupTrades,
    Statement,
    BalancesAsOf,
}

impl Operation {
    pub const ALL: [Operation; 10] = [
        Operation::Register,
        Operation::Heartbeat,
        Operation::CreateAccounts,
        Operation::CreateTransfers,
        Operation::CreateTrades,
        Operation::LookupAccounts,
        Operation::LookupTransfers,
        Operation::LookupTrades,
        Operation::Statement,
        Operation::BalancesAsOf,
    ];

    pub const fn kind(self) -> u8 {
        match self {
            Operation::Register => KIND_REGISTER,
            Operation::Heartbeat => KIND_HEARTBEAT,
            Operation::CreateAccounts => KIND_CREATE_ACCOUNTS,
            Operation::CreateTransfers => KIND_CREATE_TRANSFERS,
            Operation::CreateTrades => KIND_CREATE_TRADES,
            Operation::LookupAccounts => KIND_LOOKUP_ACCOUNTS,
            Operation::LookupTransfers => KIND_LOOKUP_TRANSFERS,
            Operation::LookupTrades => KIND_LOOKUP_TRADES,
            Operation::Statement => KIND_STATEMENT,
            Operation::BalancesAsOf => KIND_BALANCES_AS_OF,
        }
    }

    pub const fn reply_kind(self) -> u8 {
        reply_kind(self.kind())
    }

    pub fn from_kind(kind: u8) -> Option<Operation> {
        Operation::ALL.into_iter().find(|op| op.kind() == kind)
    }

    /// The engine operation of a create request.
    pub fn engine_operation(self) -> Option<tally_engine::Operation> {
        match self {
            Operation::CreateAccounts => Some(tally_engine::Operation::CreateAccounts),
            Operation::CreateTransfers => Some(tally_engine::Operation::CreateTransfers),
            Operation::CreateTrades => Some(tally_engine::Operation::CreateTrades),
            _ => None,
        }
    }
}

/// Why a payload could not be decoded. The gateway answers `BadRequest` with this text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("{what}: {needed} bytes needed, {available} left")]
    Short {
        what: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("protocol version {0} is not spoken here (this node speaks {PROTOCOL_VERSION})")]
    Version(u16),
    #[error("unknown flags {0:#06x}")]
    UnknownFlags(u16),
    #[error("reserved bytes of the {0} are not zero")]
    ReservedNotZero(&'static str),
    #[error("the header declares {declared} body bytes, the frame carries {actual}")]
    BodySize { declared: usize, actual: usize },
    #[error("unknown operation (frame kind {0})")]
    UnknownKind(u8),
    #[error("unknown status {0}")]
    UnknownStatus(u8),
    #[error("unknown role {0}")]
    UnknownRole(u8),
    #[error("unknown statement event kind {0}")]
    UnknownEventKind(u8),
    #[error("a body of {bytes} bytes is not a whole number of 128-byte records")]
    NotWholeRecords { bytes: usize },
    #[error("{what}: {count} is outside {min}..={max}")]
    Count {
        what: &'static str,
        count: usize,
        min: usize,
        max: usize,
    },
    #[error("{what}: {bytes} bytes left over")]
    TrailingBytes { what: &'static str, bytes: usize },
    #[error("{0} is not UTF-8")]
    Utf8(&'static str),
    #[error("{0}: a record has unknown flag bits")]
    Record(&'static str),
}

/// A bounded reader over a byte slice: every read checks the bytes left.
struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { bytes, what }
    }
    fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        if count > self.bytes.len() {
            return Err(DecodeError::Short {
                what: self.what,
                needed: count,
                available: self.bytes.len(),
            });
        }
        let (head, rest) = self.bytes.split_at(count);
        self.bytes = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn u128(&mut self) -> Result<u128, DecodeError> {
        Ok(u128::from_le_bytes(self.array()?))
    }
    fn zeros(&mut self, count: usize) -> Result<(), DecodeError> {
        if self.take(count)?.iter().any(|byte| *byte != 0) {
            return Err(DecodeError::ReservedNotZero(self.what));
        }
        Ok(())
    }
    fn string(&mut self, limit: usize) -> Result<String, DecodeError> {
        let length = usize::from(self.u16()?);
        check_count(self.what, length, 0, limit)?;
        let bytes = self.take(length)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Utf8(self.what))
    }
    fn end(&self) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                what: self.what,
                bytes: self.bytes.len(),
            })
        }
    }
}

fn check_count(
    what: &'static str,
    count: usize,
    min: usize,
    max: usize,
) -> Result<(), DecodeError> {
    if count < min || count > max {
        return Err(DecodeError::Count {
            what,
            count,
            min,
            max,
        });
    }
    Ok(())
}

fn put_str(out: &mut Vec<u8>, text: &str, limit: usize) {
    let mut end = text.len().min(limit);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_le_bytes());
    out.extend_from_slice(&text.as_bytes()[..end]);
}

/// The header of a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestHeader {
    /// `FLAG_*` bits.
    pub flags: u16,
    pub cluster_id: u128,
    pub client_id: u128,
    pub session: u64,
    pub request_number: u64,
}

/// Write the request header for a body of `body_bytes` into `out`.
pub fn encode_request_header(header: &RequestHeader, body_bytes: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    out.extend_from_slice(&header.flags.to_le_bytes());
    out.extend_from_slice(&u32::try_from(body_bytes).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&header.cluster_id.to_le_bytes());
    out.extend_from_slice(&header.client_id.to_le_bytes());
    out.extend_from_slice(&header.session.to_le_bytes());
    out.extend_from_slice(&header.request_number.to_le_bytes());
    out.extend_from_slice(&[0u8; 8]);
}

/// A request's payload: header and body.
pub fn encode_request(header: &RequestHeader, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    encode_request_header(header, body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

/// A request's whole frame; `frame_request_id` pairs the reply with it on the connection.
pub fn request_frame(
    operation: Operation,
    frame_request_id: u64,
    header: &RequestHeader,
    body: &[u8],
) -> Frame {
    Frame {
        kind: operation.kind(),
        request_id: frame_request_id,
        payload: Bytes::from(encode_request(header, body)),
    }
}

/// Check and split a request payload: header (version, flags, reserved bytes, body size
/// against the limit and against the payload) and body.
pub fn decode_request_header(payload: &[u8]) -> Result<(RequestHeader, &[u8]), DecodeError> {
    let mut reader = Reader::new(payload, "request header");
    let version = reader.u16()?;
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::Version(version));
    }
    let flags = reader.u16()?;
    if flags & !FLAGS_KNOWN != 0 {
        return Err(DecodeError::UnknownFlags(flags));
    }
    let body_bytes = reader.u32()? as usize;
    check_count("request body bytes", body_bytes, 0, REQUEST_BODY_BYTES_MAX)?;
    let header = RequestHeader {
        flags,
        cluster_id: reader.u128()?,
        client_id: reader.u128()?,
        session: reader.u64()?,
        request_number: reader.u64()?,
    };
    reader.zeros(8)?;
    if reader.bytes.len() != body_bytes {
        return Err(DecodeError::BodySize {
            declared: body_bytes,
            actual: reader.bytes.len(),
        });
    }
    Ok((header, reader.bytes))
}

/// Which records a lookup asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupKind {
    Accounts,
    Transfers,
    Trades,
}

/// A request's body, decoded and checked against the limits. Create bodies are not decoded
/// record by record: the engine checks every record and answers per event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    Register {
        credential: &'a [u8],
    },
    Heartbeat,
    /// 1..=`REQUEST_EVENTS_MAX` whole 128-byte records.
    Create {
        operation: tally_engine::Operation,
        body: &'a [u8],
    },
    Lookup {
        what: LookupKind,
        ids: Vec<u128>,
    },
    Statement(StatementFilter),
    BalancesAsOf {
        account_id: u128,
        timestamp: u64,
    },
}

/// Decode a whole request frame's payload: header, then the body of operation `kind`.
pub fn decode_request(
    kind: u8,
    payload: &[u8],
) -> Result<(RequestHeader, Request<'_>), DecodeError> {
    let operation = Operation::from_kind(kind).ok_or(DecodeError::UnknownKind(kind))?;
    let (header, body) = decode_request_header(payload)?;
    Ok((header, decode_request_body(operation, body)?))
}

/// Decode the body of `operation`.
pub fn decode_request_body(operation: Operation, body: &[u8]) -> Result<Request<'_>, DecodeError> {
    let lookup = |what| -> Result<Request<'_>, DecodeError> {
        Ok(Request::Lookup {
            what,
            ids: decode_ids(body)?,
        })
    };
    match operation {
        Operation::Register => {
            check_count(
                "credential bytes",
                body.len(),
                CREDENTIAL_BYTES_MIN,
                CREDENTIAL_BYTES_MAX,
            )?;
            Ok(Request::Register { credential: body })
        }
        Operation::Heartbeat => {
            Reader::new(body, "heartbeat body").end()?;
            Ok(Request::Heartbeat)
        }
        Operation::CreateAccounts | Operation::CreateTransfers | Operation::CreateTrades => {
            let events = check_records(body)?;
            check_count("events", events, 1, REQUEST_EVENTS_MAX)?;
            let operation = operation
                .engine_operation()
                .ok_or(DecodeError::UnknownKind(operation.kind()))?;
            Ok(Request::Create { operation, body })
        }
        Operation::LookupAccounts => lookup(LookupKind::Accounts),
        Operation::LookupTransfers => lookup(LookupKind::Transfers),
        Operation::LookupTrades => lookup(LookupKind::Trades),
        Operation::Statement => decode_statement_request(body).map(Request::Statement),
        Operation::BalancesAsOf => {
            let mut reader = Reader::new(body, "balances-as-of request");
            let account_id = reader.u128()?;
            let timestamp = reader.u64()?;
            reader.zeros(8)?;
            reader.end()?;
            Ok(Request::BalancesAsOf {
                account_id,
                timestamp,
            })
        }
    }
}

/// The number of whole records in `body`, or why it is not whole records.
pub fn check_records(body: &[u8]) -> Result<usize, DecodeError> {
    if !body.len().is_multiple_of(RECORD_BYTES) {
        return Err(DecodeError::NotWholeRecords { bytes: body.len() });
    }
    Ok(body.len() / RECORD_BYTES)
}

/// A lookup body: ids, 16 bytes each.
pub fn encode_ids(ids: &[u128]) -> Vec<u8> {
    ids.iter().flat_map(|id| id.to_le_bytes()).collect()
}

fn decode_ids(body: &[u8]) -> Result<Vec<u128>, DecodeError> {
    if !body.len().is_multiple_of(16) {
        return Err(DecodeError::TrailingBytes {
            what: "lookup ids",
            bytes: body.len() % 16,
        });
    }
    check_count("lookup ids", body.len() / 16, 1, LOOKUP_IDS_MAX)?;
    let mut reader = Reader::new(body, "lookup ids");
    let mut ids = Vec::with_capacity(body.len() / 16);
    while !reader.bytes.is_empty() {
        ids.push(reader.u128()?);
    }
    Ok(ids)
}

const STATEMENT_REVERSED: u32 = 1;

/// A statement request body (40 bytes): account id u128, timestamp min u64, timestamp max u64
/// (0 = no bound), limit u32 (1..=8,189), flags u32 (bit 0: newest first).
pub fn encode_statement_request(filter: &StatementFilter) -> Vec<u8> {
    let mut out = Vec::with_capacity(40);
    out.extend_from_slice(&filter.account_id.to_le_bytes());
    out.extend_from_slice(&filter.timestamp_min.to_le_bytes());
    out.extend_from_slice(&filter.timestamp_max.to_le_bytes());
    out.extend_from_slice(&filter.limit.to_le_bytes());
    let flags = if filter.reversed {
        STATEMENT_REVERSED
    } else {
        0
    };
    out.extend_from_slice(&flags.to_le_bytes());
    out
}

fn decode_statement_request(body: &[u8]) -> Result<StatementFilter, DecodeError> {
    let mut reader = Reader::new(body, "statement request");
    let account_id = reader.u128()?;
    let timestamp_min = reader.u64()?;
    let timestamp_max = reader.u64()?;
    let limit = reader.u32()?;
    check_count(
        "statement limit",
        limit as usize,
        1,
        tally_engine::limits::STATEMENT_ENTRIES_MAX as usize,
    )?;
    let flags = reader.u32()?;
    if flags & !STATEMENT_REVERSED != 0 {
        return Err(DecodeError::UnknownFlags(
            u16::try_from(flags).unwrap_or(u16::MAX),
        ));
    }
    reader.end()?;
    Ok(StatementFilter {
        account_id,
        timestamp_min,
        timestamp_max,
        limit,
        reversed: flags & STATEMENT_REVERSED != 0,
    })
}

/// A balances-as-of request body (32 bytes): account id u128, timestamp u64, reserved u64.
pub fn encode_balances_as_of_request(account_id: u128, timestamp: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    out.extend_from_slice(&account_id.to_le_bytes());
    out.extend_from_slice(&timestamp.to_le_bytes());
    out.extend_from_slice(&[0u8; 8]);
    out
}

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
}

impl Status {
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
            other => return Err(DecodeError::UnknownStatus(other)),
        })
    }
}

/// The header of a reply (64 bytes):
///
/// ```text
/// offset size field
///      0    2 protocol version (1)
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

/// A statement reply's body: entry count u32, reserved u32, then per entry (208 bytes):
/// timestamp u64, event kind u8 (1 transfer, 2 trade, 3 pending transfer expired, 4 pending
/// trade expired), reserved 7, balances after (debits pending, debits posted, credits
/// pending, credits posted: u128 each), then 128 bytes: the transfer's or trade's record, or
/// for an expiry the pending event's id (u128) and 112 zero bytes.
pub fn encode_statement_reply(entries: &[StatementEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + entries.len() * STATEMENT_ENTRY_BYTES);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    for entry in entries {
        out.extend_from_slice(&entry.timestamp.to_le_bytes());
        let (kind, record) = match entry.event {
            StatementEvent::Transfer(transfer) => (EVENT_TRANSFER, transfer.encode()),
            StatementEvent::Trade(trade) => (EVENT_TRADE, trade.encode()),
            StatementEvent::TransferExpired { pending_id } => {
                (EVENT_TRANSFER_EXPIRED, id_record(pending_id))
            }
            StatementEvent::TradeExpired { pending_id } => {
                (EVENT_TRADE_EXPIRED, id_record(pending_id))
            }
        };
        out.extend_from_slice(&[kind, 0, 0, 0, 0, 0, 0, 0]);
        put_balances(&mut out, &entry.balances_after);
        out.extend_from_slice(&record);
    }
    out
}

fn id_record(id: u128) -> RecordBytes {
    let mut record = [0u8; RECORD_BYTES];
    record[..16].copy_from_slice(&id.to_le_bytes());
    record
}

pub fn decode_statement_reply(body: &[u8]) -> Result<Vec<StatementEntry>, DecodeError> {
    let mut reader = Reader::new(body, "statement reply");
    let count = reader.u32()? as usize;
    reader.zeros(4)?;
    let max = tally_engine::limits::STATEMENT_ENTRIES_MAX as usize;
    check_count("statement entries", count, 0, max)?;
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
        let event = match kind {
            EVENT_TRANSFER => StatementEvent::Transfer(
                Transfer::decode(&record).map_err(|_| DecodeError::Record("statement"))?,
            ),
            EVENT_TRADE => StatementEvent::Trade(
                Trade::decode(&record).map_err(|_| DecodeError::Record("statement"))?,
            ),
            EVENT_TRANSFER_EXPIRED | EVENT_TRADE_EXPIRED => {
                let mut id = Reader::new(&record, "statement expiry");
                let pending_id = id.u128()?;
                id.zeros(RECORD_BYTES - 16)?;
                if kind == EVENT_TRANSFER_EXPIRED {
                    StatementEvent::TransferExpired { pending_id }
                } else {
                    StatementEvent::TradeExpired { pending_id }
                }
            }
            other => return Err(DecodeError::UnknownEventKind(other)),
        };
        entries.push(StatementEntry {
            timestamp,
            event,
            balances_after,
        });
    }
    reader.end()?;
    Ok(entries)
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

/// The body of every reply whose status is not `Ok`: leader known u8 (0/1), reserved 7,
/// leader node id u64 (0 when unknown), address length u16 + the leader's address (UTF-8,
/// its single port: connect there), message length u16 + UTF-8 message (why, for humans).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refusal {
    pub leader: Option<(u64, String)>,
    pub message: String,
}

pub fn encode_refusal(refusal: &Refusal) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + refusal.message.len());
    let (known, id, addr) = match &refusal.leader {
        Some((id, addr)) => (1, *id, addr.as_str()),
        None => (0, 0, ""),
    };
    out.extend_from_slice(&[known, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&id.to_le_bytes());
    put_str(&mut out, addr, ADDRESS_BYTES_MAX);
    put_str(&mut out, &refusal.message, MESSAGE_BYTES_MAX);
    out
}

pub fn decode_refusal(body: &[u8]) -> Result<Refusal, DecodeError> {
    let mut reader = Reader::new(body, "refusal");
    let known = reader.u8()?;
    if known > 1 {
        return Err(DecodeError::ReservedNotZero("refusal"));
    }
    reader.zeros(7)?;
    let id = reader.u64()?;
    let addr = reader.string(ADDRESS_BYTES_MAX)?;
    let message = reader.string(MESSAGE_BYTES_MAX)?;
    reader.end()?;
    if known == 0 && (id != 0 || !addr.is_empty()) {
        return Err(DecodeError::ReservedNotZero("refusal"));
    }
    Ok(Refusal {
        leader: (known == 1).then_some((id, addr)),
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

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
