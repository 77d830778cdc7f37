//! The gateway protocol: what clients send to a node's gateway and what it answers, byte by
//! byte (docs/protocol.md, "Gateway protocol"). Every message is one frame
//! (`tally_wire::frame`: magic, version, kind, length, request id, CRC32C over header and
//! payload) whose kind is the operation (`KIND_*`, all ≥ 64; a reply's kind is its request's
//! plus one). The payload starts with a 64-byte gateway header, then the operation's body.
//!
//! Request header (reply header below):
//!
//! ```text
//! offset size field
//!      0    2 protocol version (2)
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
//! on any input (property tests in `protocol_tests.rs`, fuzz target `gateway` in `tests/fuzz`).

use bytes::Bytes;
use tally_engine::limits::RECORD_BYTES;
use tally_engine::StatementFilter;
use tally_wire::Frame;

pub use crate::operator::*;
pub use crate::reply::*;

use crate::limits::{
    CREDENTIAL_BYTES_MAX, CREDENTIAL_BYTES_MIN, HEADER_BYTES, LOOKUP_IDS_MAX,
    REQUEST_BODY_BYTES_MAX, REQUEST_EVENTS_MAX,
};

/// The protocol version this build speaks. Version 2: a new trade record names its instrument
/// and cash ledgers in the bytes a post or void uses for its pending id (docs/records.md), and
/// request numbers belong to the client, not the session (docs/protocol.md). A version-1 peer
/// is refused by name rather than have its trades read with ledgers 0.
pub const PROTOCOL_VERSION: u16 = 2;

/// Request flag: serve the read only on the leader after confirming leadership with a quorum
/// (openraft's read index), so it reflects every write acknowledged before it was sent.
pub const FLAG_LINEARIZABLE: u16 = 1;
/// Request flag, on a create: apply this request only after the session's earlier create
/// requests. Once a create of the session is refused before it reaches the log (busy, not
/// leader, out of scope, malformed, …), the node refuses every later create carrying this flag
/// (`Busy`, naming the refused request number) until that number or an unflagged create is
/// admitted again. So a client may keep several requests in flight on one connection and
/// still have them applied in the order sent: a refusal never lets a later request overtake.
pub const FLAG_IN_ORDER: u16 = 2;
const FLAGS_KNOWN: u16 = FLAG_LINEARIZABLE | FLAG_IN_ORDER;

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
/// Operators only: the node's own state (`operator::NodeState`).
pub const KIND_NODE_STATE: u8 = 84;
/// Operators only: cluster administration (`operator::Admin`).
pub const KIND_ADMIN: u8 = 86;
/// End this session now (a client done with the cluster), rather than at its idle timeout.
pub const KIND_END_SESSION: u8 = 88;
/// Transfers and trades in one create request (`tally_engine::Operation::CreateSettlements`).
pub const KIND_CREATE_SETTLEMENTS: u8 = 90;
/// A signed checkpoint of the verifiable log, by index (`proofs`).
pub const KIND_CHECKPOINT: u8 = 92;
/// Inclusion proofs of stored events or accounts against a checkpoint (`proofs`).
pub const KIND_PROVE: u8 = 94;
/// A consistency proof between two sizes of the verifiable log (`proofs`).
pub const KIND_CONSISTENCY: u8 = 96;
/// A witness's cosignature of a checkpoint, for the cluster to keep with it (`proofs`).
pub const KIND_COSIGN: u8 = 98;
/// The reads of an account in the access trail, with their proofs (`access_trail`).
pub const KIND_ACCESS_TRAIL: u8 = 100;
/// Settlement instructions for net settlement (`tally_engine::Operation::CreateInstructions`).
pub const KIND_CREATE_INSTRUCTIONS: u8 = 102;
/// Settlement commands (`tally_engine::Operation::SettlementCommands`): a cycle's lifecycle
/// (operators only), holds, releases and cancellations of instructions.
pub const KIND_SETTLEMENT_COMMANDS: u8 = 104;
/// Settlement instructions by id, each with where it stands (`tally_engine::settlement_wire`).
pub const KIND_LOOKUP_INSTRUCTIONS: u8 = 106;
/// A settlement cycle's summary: phase, counts by status, run record, a page of exceptions.
pub const KIND_SETTLEMENT_CYCLE: u8 = 108;
/// Accounts by field, a page at a time (`query`).
pub const KIND_QUERY_ACCOUNTS: u8 = 110;
/// Transfers by field, a page at a time (`query`).
pub const KIND_QUERY_TRANSFERS: u8 = 112;
/// Trades by field, a page at a time (`query`).
pub const KIND_QUERY_TRADES: u8 = 114;
/// Accounts by field with their balances as of a time, a page at a time (`query`).
pub const KIND_QUERY_POSITIONS: u8 = 116;
/// Every applied event (accounts created, transfers, trades, expiries) by time, a page at a
/// time: the change feed's read (`query`).
pub const KIND_QUERY_EVENTS: u8 = 118;

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
    NodeState,
    Admin,
    EndSession,
    CreateSettlements,
    Checkpoint,
    Prove,
    Consistency,
    Cosign,
    AccessTrail,
    CreateInstructions,
    SettlementCommands,
    LookupInstructions,
    SettlementCycle,
    QueryAccounts,
    QueryTransfers,
    QueryTrades,
    QueryPositions,
    QueryEvents,
}

impl Operation {
    pub const ALL: [Operation; 28] = [
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
        Operation::NodeState,
        Operation::Admin,
        Operation::EndSession,
        Operation::CreateSettlements,
        Operation::Checkpoint,
        Operation::Prove,
        Operation::Consistency,
        Operation::Cosign,
        Operation::AccessTrail,
        Operation::CreateInstructions,
        Operation::SettlementCommands,
        Operation::LookupInstructions,
        Operation::SettlementCycle,
        Operation::QueryAccounts,
        Operation::QueryTransfers,
        Operation::QueryTrades,
        Operation::QueryPositions,
        Operation::QueryEvents,
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
            Operation::NodeState => KIND_NODE_STATE,
            Operation::Admin => KIND_ADMIN,
            Operation::EndSession => KIND_END_SESSION,
            Operation::CreateSettlements => KIND_CREATE_SETTLEMENTS,
            Operation::Checkpoint => KIND_CHECKPOINT,
            Operation::Prove => KIND_PROVE,
            Operation::Consistency => KIND_CONSISTENCY,
            Operation::Cosign => KIND_COSIGN,
            Operation::AccessTrail => KIND_ACCESS_TRAIL,
            Operation::CreateInstructions => KIND_CREATE_INSTRUCTIONS,
            Operation::SettlementCommands => KIND_SETTLEMENT_COMMANDS,
            Operation::LookupInstructions => KIND_LOOKUP_INSTRUCTIONS,
            Operation::SettlementCycle => KIND_SETTLEMENT_CYCLE,
            Operation::QueryAccounts => KIND_QUERY_ACCOUNTS,
            Operation::QueryTransfers => KIND_QUERY_TRANSFERS,
            Operation::QueryTrades => KIND_QUERY_TRADES,
            Operation::QueryPositions => KIND_QUERY_POSITIONS,
            Operation::QueryEvents => KIND_QUERY_EVENTS,
        }
    }

    pub const fn reply_kind(self) -> u8 {
        reply_kind(self.kind())
    }

    pub fn from_kind(kind: u8) -> Option<Operation> {
        Operation::ALL.into_iter().find(|op| op.kind() == kind)
    }

    /// The create request of an engine operation.
    pub const fn from_engine(operation: tally_engine::Operation) -> Operation {
        match operation {
            tally_engine::Operation::CreateAccounts => Operation::CreateAccounts,
            tally_engine::Operation::CreateTransfers => Operation::CreateTransfers,
            tally_engine::Operation::CreateTrades => Operation::CreateTrades,
            tally_engine::Operation::CreateSettlements => Operation::CreateSettlements,
            tally_engine::Operation::CreateInstructions => Operation::CreateInstructions,
            tally_engine::Operation::SettlementCommands => Operation::SettlementCommands,
        }
    }

    /// The engine operation of a create request.
    pub fn engine_operation(self) -> Option<tally_engine::Operation> {
        match self {
            Operation::CreateAccounts => Some(tally_engine::Operation::CreateAccounts),
            Operation::CreateTransfers => Some(tally_engine::Operation::CreateTransfers),
            Operation::CreateTrades => Some(tally_engine::Operation::CreateTrades),
            Operation::CreateSettlements => Some(tally_engine::Operation::CreateSettlements),
            Operation::CreateInstructions => Some(tally_engine::Operation::CreateInstructions),
            Operation::SettlementCommands => Some(tally_engine::Operation::SettlementCommands),
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
    #[error("unknown admin command {0}")]
    UnknownAdmin(u8),
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
    /// Fields that each decode but do not go together.
    #[error("{0}")]
    Conflict(&'static str),
}

/// A bounded reader over a byte slice: every read checks the bytes left.
pub(crate) struct Reader<'a> {
    pub(crate) bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { bytes, what }
    }
    pub(crate) fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
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
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub(crate) fn u128(&mut self) -> Result<u128, DecodeError> {
        Ok(u128::from_le_bytes(self.array()?))
    }
    pub(crate) fn zeros(&mut self, count: usize) -> Result<(), DecodeError> {
        if self.take(count)?.iter().any(|byte| *byte != 0) {
            return Err(DecodeError::ReservedNotZero(self.what));
        }
        Ok(())
    }
    pub(crate) fn string(&mut self, limit: usize) -> Result<String, DecodeError> {
        let length = usize::from(self.u16()?);
        check_count(self.what, length, 0, limit)?;
        let bytes = self.take(length)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Utf8(self.what))
    }
    pub(crate) fn end(&self) -> Result<(), DecodeError> {
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

pub(crate) fn check_count(
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

pub(crate) fn put_str(out: &mut Vec<u8>, text: &str, limit: usize) {
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
    /// Settlement instructions, each answered with its state (192 bytes).
    Instructions,
}

/// A request's body, decoded and checked against the limits. Create bodies are not decoded
/// record by record: the engine checks every record and answers per event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    Register {
        credential: &'a [u8],
    },
    Heartbeat,
    EndSession,
    /// 0..=`REQUEST_EVENTS_MAX` whole 128-byte records (none: an empty batch, answered
    /// with no failures and nothing logged).
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
    /// A page of records matching a filter (`query`).
    Query {
        kind: crate::query::QueryKind,
        filter: tally_engine::QueryFilter,
    },
    /// A settlement cycle's summary, with at most `limit` exceptions after id `after`.
    SettlementCycle {
        cycle: u32,
        limit: u32,
        after: u128,
    },
    /// The node's own state; `audit` adds the digest and ledger totals.
    NodeState {
        audit: bool,
    },
    Admin(Admin),
    /// A checkpoint by index or the one covering a commit index.
    Checkpoint {
        which: crate::proofs::WhichCheckpoint,
    },
    Prove(crate::proofs::ProveRequest),
    AccessTrail(crate::access_trail::AccessTrailRequest),
    Consistency {
        old: u64,
        new: u64,
    },
    /// Witness cosignature `line` of checkpoint `checkpoint`.
    Cosign {
        checkpoint: u64,
        line: String,
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
        Operation::EndSession => {
            Reader::new(body, "end-session body").end()?;
            Ok(Request::EndSession)
        }
        Operation::CreateAccounts
        | Operation::CreateTransfers
        | Operation::CreateTrades
        | Operation::CreateSettlements
        | Operation::CreateInstructions
        | Operation::SettlementCommands => {
            let events = check_records(body)?;
            check_count("events", events, 0, REQUEST_EVENTS_MAX)?;
            let operation = operation
                .engine_operation()
                .ok_or(DecodeError::UnknownKind(operation.kind()))?;
            Ok(Request::Create { operation, body })
        }
        Operation::LookupAccounts => lookup(LookupKind::Accounts),
        Operation::LookupTransfers => lookup(LookupKind::Transfers),
        Operation::LookupTrades => lookup(LookupKind::Trades),
        Operation::LookupInstructions => lookup(LookupKind::Instructions),
        Operation::SettlementCycle => {
            let mut reader = Reader::new(body, "settlement cycle request");
            let cycle = reader.u32()?;
            let limit = reader.u32()?;
            let after = reader.u128()?;
            reader.end()?;
            check_count(
                "settlement cycle page",
                limit as usize,
                1,
                tally_engine::limits::STATEMENT_ENTRIES_MAX as usize,
            )?;
            Ok(Request::SettlementCycle {
                cycle,
                limit,
                after,
            })
        }
        Operation::Statement => decode_statement_request(body).map(Request::Statement),
        Operation::QueryAccounts
        | Operation::QueryTransfers
        | Operation::QueryTrades
        | Operation::QueryPositions
        | Operation::QueryEvents => {
            use crate::query::{decode_query_request, QueryKind};
            let positions = operation == Operation::QueryPositions;
            let (filter, at) = decode_query_request(body, positions)?;
            let kind = match operation {
                Operation::QueryAccounts => QueryKind::Accounts,
                Operation::QueryTransfers => QueryKind::Transfers,
                Operation::QueryTrades => QueryKind::Trades,
                Operation::QueryEvents => QueryKind::Events,
                _ => QueryKind::Positions { at },
            };
            Ok(Request::Query { kind, filter })
        }
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
        Operation::NodeState => {
            decode_node_state_request(body).map(|audit| Request::NodeState { audit })
        }
        Operation::Admin => decode_admin(body).map(Request::Admin),
        Operation::Checkpoint => crate::proofs::decode_checkpoint_request(body)
            .map(|which| Request::Checkpoint { which }),
        Operation::Prove => crate::proofs::decode_prove_request(body).map(Request::Prove),
        Operation::Consistency => crate::proofs::decode_consistency_request(body)
            .map(|(old, new)| Request::Consistency { old, new }),
        Operation::Cosign => crate::proofs::decode_cosign_request(body)
            .map(|(checkpoint, line)| Request::Cosign { checkpoint, line }),
        Operation::AccessTrail => {
            crate::access_trail::decode_access_trail_request(body).map(Request::AccessTrail)
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
const STATEMENT_DEBITS: u32 = 1 << 1;
const STATEMENT_CREDITS: u32 = 1 << 2;

/// A statement request body (72 bytes): account id u128, timestamp min u64, timestamp max u64
/// (0 = no bound), limit u32 (1..=8,189), flags u32 (bit 0: newest first; bit 1: debits; bit
/// 2: credits), then the account filter: user_data_128 u128, user_data_64 u64, user_data_32
/// u32, code u16, reserved u16. A body of the first 40 bytes only (before the account filter
/// existed) is read with the filter's fields zero.
pub fn encode_statement_request(filter: &StatementFilter) -> Vec<u8> {
    let mut out = Vec::with_capacity(72);
    out.extend_from_slice(&filter.account_id.to_le_bytes());
    out.extend_from_slice(&filter.timestamp_min.to_le_bytes());
    out.extend_from_slice(&filter.timestamp_max.to_le_bytes());
    out.extend_from_slice(&filter.limit.to_le_bytes());
    let mut flags = 0;
    for (set, bit) in [
        (filter.reversed, STATEMENT_REVERSED),
        (filter.debits, STATEMENT_DEBITS),
        (filter.credits, STATEMENT_CREDITS),
    ] {
        if set {
            flags |= bit;
        }
    }
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&filter.user_data_128.to_le_bytes());
    out.extend_from_slice(&filter.user_data_64.to_le_bytes());
    out.extend_from_slice(&filter.user_data_32.to_le_bytes());
    out.extend_from_slice(&filter.code.to_le_bytes());
    out.extend_from_slice(&[0u8; 2]);
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
    let known = STATEMENT_REVERSED | STATEMENT_DEBITS | STATEMENT_CREDITS;
    if flags & !known != 0 {
        return Err(DecodeError::UnknownFlags(
            u16::try_from(flags).unwrap_or(u16::MAX),
        ));
    }
    let mut filter = StatementFilter {
        account_id,
        timestamp_min,
        timestamp_max,
        limit,
        reversed: flags & STATEMENT_REVERSED != 0,
        debits: flags & STATEMENT_DEBITS != 0,
        credits: flags & STATEMENT_CREDITS != 0,
        ..StatementFilter::default()
    };
    if !reader.bytes.is_empty() {
        filter.user_data_128 = reader.u128()?;
        filter.user_data_64 = reader.u64()?;
        filter.user_data_32 = reader.u32()?;
        filter.code = reader.u16()?;
        reader.zeros(2)?;
    }
    reader.end()?;
    Ok(filter)
}

/// A balances-as-of request body (32 bytes): account id u128, timestamp u64, reserved u64.
pub fn encode_balances_as_of_request(account_id: u128, timestamp: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    out.extend_from_slice(&account_id.to_le_bytes());
    out.extend_from_slice(&timestamp.to_le_bytes());
    out.extend_from_slice(&[0u8; 8]);
    out
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
