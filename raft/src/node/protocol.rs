//! The node's client protocol: what clients, operators and tests send to a node, and what it
//! answers. Every message is one frame (`net::frame`) on the node's single port; a request's
//! kind is even, its answer's kind is the request's plus one, and the answer carries the
//! request's id, so a client may keep many requests in flight on one connection and match
//! the answers as they come (they may come out of order). Byte layouts: docs/protocol.md.
//!
//! Every answer starts with a [`Status`]. Anything but `Ok` is followed by the leader the node
//! knows of (so a client can go there) and a human-readable message; `Ok` is followed by the
//! request's own answer.

use bytes::Bytes;
use tally_engine::limits::{BATCH_EVENTS_MAX, RECORD_BYTES};
use tally_engine::{EventResult, LedgerTotals, Operation};

use crate::replication::codec::Reader;
use crate::replication::error::DecodeError;
use crate::replication::limits::{MEMBERSHIP_NODES_MAX, NODE_ADDRESS_BYTES_MAX};
use crate::replication::types::{LogId, Node, NodeId};

/// Submit one batch of 128-byte records (`docs/records.md`) for `operation`.
pub const KIND_SUBMIT: u8 = 32;
/// Look accounts up by id.
pub const KIND_LOOKUP_ACCOUNTS: u8 = 34;
/// Look transfers up by id.
pub const KIND_LOOKUP_TRANSFERS: u8 = 36;
/// The node's role, leader, applied log id, state digest, membership and ledger totals.
pub const KIND_STATE: u8 = 38;
/// Cluster administration: initialize, add a learner, change the voters, snapshot.
pub const KIND_ADMIN: u8 = 40;
/// A request kind's name for metrics (`tally_requests_total{kind}`); answers are named after
/// their requests.
pub fn kind_label(kind: u8) -> &'static str {
    match kind & !1 {
        KIND_SUBMIT => "submit",
        KIND_LOOKUP_ACCOUNTS => "lookup_accounts",
        KIND_LOOKUP_TRANSFERS => "lookup_transfers",
        KIND_STATE => "state",
        KIND_ADMIN => "admin",
        _ => "unknown",
    }
}

/// The answer to a request of `kind`.
pub const fn answer_kind(kind: u8) -> u8 {
    kind + 1
}

/// Read flag: serve only after confirming leadership with a quorum (openraft's read index),
/// so the answer reflects every write acknowledged before the read was sent. Without it the
/// node answers from its own applied state, which on a follower may lag (stale read).
pub const READ_LINEARIZABLE: u8 = 1;

/// State flag: include the state digest and the per-ledger totals (O(state): for tests,
/// operators and audits, not for every poll).
pub const STATE_AUDIT: u8 = 2;

/// Ids in one lookup: as many as records in one batch.
pub const LOOKUP_IDS_MAX: usize = BATCH_EVENTS_MAX;

/// How an answer begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    Ok = 0,
    /// This node is not the leader; the answer names the leader if it knows one. For a submit,
    /// the batch may still commit (it was proposed before leadership was lost): retry it at
    /// the leader, where already-applied events answer `exists`.
    NotLeader = 1,
    /// The request is malformed or breaks a limit; retrying it unchanged fails again.
    BadRequest = 2,
    /// The node cannot serve now (shutting down, no quorum, timed out): retry, possibly elsewhere.
    Unavailable = 3,
    /// The batch was ordered and refused as a whole by the engine (e.g. not whole records);
    /// it changed nothing.
    BatchRefused = 4,
    /// A bug or a storage fault on the node; the message says which.
    Internal = 5,
    /// The credential is not an operator's of this node (or the node has none configured).
    Unauthenticated = 6,
}

impl Status {
    /// The status's name for metrics (`tally_requests_total{status}`).
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::NotLeader => "not_leader",
            Status::BadRequest => "bad_request",
            Status::Unavailable => "unavailable",
            Status::BatchRefused => "batch_refused",
            Status::Internal => "internal",
            Status::Unauthenticated => "unauthenticated",
        }
    }

    fn from_byte(byte: u8) -> Result<Status, DecodeError> {
        Ok(match byte {
            0 => Status::Ok,
            1 => Status::NotLeader,
            2 => Status::BadRequest,
            3 => Status::Unavailable,
            4 => Status::BatchRefused,
            5 => Status::Internal,
            6 => Status::Unauthenticated,
            other => return Err(DecodeError::UnknownKind(other)),
        })
    }
}

/// A refused request: why, and where the leader is if the node knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: Status,
    pub leader: Option<(NodeId, String)>,
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.status, self.message)?;
        if let Some((id, addr)) = &self.leader {
            write!(f, " (leader: node {id} at {addr})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Refusal {}

impl Refusal {
    pub fn new(status: Status, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            leader: None,
            message: message.into(),
        }
    }
}

/// An administrative command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admin {
    /// Initialize a fresh cluster with these voters (id, client and peer addresses).
    Initialize(Vec<(NodeId, Node)>),
    /// Add a node as a learner and wait until it has caught up.
    AddLearner(NodeId, Node),
    /// Make exactly these nodes the voters (joint consensus; others stay or become learners).
    ChangeVoters(Vec<NodeId>),
    /// Build a snapshot now (and purge the log up to it, as the node's config says).
    Snapshot,
    /// Remove these nodes from the cluster (voters through joint consensus, and learners).
    RemoveNodes(Vec<NodeId>),
}

const ADMIN_INITIALIZE: u8 = 1;
const ADMIN_ADD_LEARNER: u8 = 2;
const ADMIN_CHANGE_VOTERS: u8 = 3;
const ADMIN_SNAPSHOT: u8 = 4;
const ADMIN_REMOVE_NODES: u8 = 5;

/// A request, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Submit { operation: Operation, body: Bytes },
    LookupAccounts { flags: u8, ids: Vec<u128> },
    LookupTransfers { flags: u8, ids: Vec<u128> },
    State { flags: u8 },
    Admin(Admin),
}

/// The node's state as `KIND_STATE` answers it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeState {
    pub node_id: NodeId,
    /// openraft's server state: "Leader", "Follower", "Candidate", "Learner", "Shutdown".
    pub role: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub last_applied: Option<LogId>,
    /// The newest snapshot this node has (built or installed).
    pub snapshot: Option<LogId>,
    /// The log is purged up to here: a follower behind it can only catch up by snapshot.
    pub purged: Option<LogId>,
    /// The engine's state digest at `last_applied`: equal on replicas at the same index.
    pub digest: [u8; 32],
    pub accounts: u64,
    pub transfers: u64,
    pub trades: u64,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    pub ledger_totals: Vec<LedgerTotals>,
    /// Index of the last entry in this node's log.
    pub last_log_index: Option<u64>,
    /// The commit index this node knows (the leader's, or what the leader told it).
    pub committed_index: Option<u64>,
    /// Every member's address (voters and learners), for reaching the others.
    pub addresses: Vec<(NodeId, String)>,
    /// Leader only: per follower, the last index known replicated there.
    pub replication: Vec<(NodeId, Option<u64>)>,
}

/// Bytes of a request's fixed header: the kind byte's companion (operation or flags), padding.
const REQUEST_HEADER_BYTES: usize = 8;

fn header(first: u8) -> Vec<u8> {
    let mut out = vec![0u8; REQUEST_HEADER_BYTES];
    out[0] = first;
    out
}

fn put_str(out: &mut Vec<u8>, text: &str, limit: usize) {
    let bytes = &text.as_bytes()[..text.len().min(limit)];
    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn u16(reader: &mut Reader<'_>) -> Result<u16, DecodeError> {
    let bytes = reader.take(2)?;
    Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
}

fn u128(reader: &mut Reader<'_>) -> Result<u128, DecodeError> {
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(reader.take(16)?);
    Ok(u128::from_le_bytes(bytes))
}

fn get_str(
    reader: &mut Reader<'_>,
    what: &'static str,
    limit: usize,
) -> Result<String, DecodeError> {
    let length = u16(reader)? as usize;
    if length > limit {
        return Err(DecodeError::OverLimit {
            what,
            count: length as u64,
            limit,
        });
    }
    String::from_utf8(reader.take(length)?.to_vec()).map_err(|_| DecodeError::NotUtf8 { what })
}

/// The text limit of a refusal's message.
const MESSAGE_BYTES_MAX: usize = 4096;

/// Bytes of an operator credential: as the gateway's (at least 16, so it cannot be guessed;
/// at most 256, so checking it is cheap).
pub const CREDENTIAL_BYTES_MIN: usize = 16;
pub const CREDENTIAL_BYTES_MAX: usize = 256;

/// Encode a request as (kind, payload), presenting `credential` (an operator's secret).
pub fn encode_request(request: &Request, credential: &[u8]) -> (u8, Vec<u8>) {
    let (kind, mut out) = encode_request_body(request);
    let credential = &credential[..credential.len().min(CREDENTIAL_BYTES_MAX)];
    let mut presented = Vec::with_capacity(2 + credential.len());
    presented.extend_from_slice(&(credential.len() as u16).to_le_bytes());
    presented.extend_from_slice(credential);
    out.splice(REQUEST_HEADER_BYTES..REQUEST_HEADER_BYTES, presented);
    (kind, out)
}

fn encode_request_body(request: &Request) -> (u8, Vec<u8>) {
    match request {
        Request::Submit { operation, body } => {
            let mut out = header(*operation as u8);
            out.extend_from_slice(body);
            (KIND_SUBMIT, out)
        }
        Request::LookupAccounts { flags, ids } | Request::LookupTransfers { flags, ids } => {
            let mut out = header(*flags);
            for id in ids {
                out.extend_from_slice(&id.to_le_bytes());
            }
            let kind = match request {
                Request::LookupAccounts { .. } => KIND_LOOKUP_ACCOUNTS,
                _ => KIND_LOOKUP_TRANSFERS,
            };
            (kind, out)
        }
        Request::State { flags } => (KIND_STATE, header(*flags)),
        Request::Admin(admin) => {
            let mut out;
            match admin {
                Admin::Initialize(members) => {
                    out = header(ADMIN_INITIALIZE);
                    out.extend_from_slice(&(members.len() as u32).to_le_bytes());
                    for (id, node) in members {
                        out.extend_from_slice(&id.to_le_bytes());
                        put_node(&mut out, node);
                    }
                }
                Admin::AddLearner(id, node) => {
                    out = header(ADMIN_ADD_LEARNER);
                    out.extend_from_slice(&id.to_le_bytes());
                    put_node(&mut out, node);
                }
                Admin::ChangeVoters(ids) | Admin::RemoveNodes(ids) => {
                    out = header(if matches!(admin, Admin::RemoveNodes(_)) {
                        ADMIN_REMOVE_NODES
                    } else {
                        ADMIN_CHANGE_VOTERS
                    });
                    out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
                    for id in ids {
                        out.extend_from_slice(&id.to_le_bytes());
                    }
                }
                Admin::Snapshot => out = header(ADMIN_SNAPSHOT),
            }
            (KIND_ADMIN, out)
        }
    }
}

fn ids(reader: &mut Reader<'_>) -> Result<Vec<u128>, DecodeError> {
    let count = reader.remaining() / 16;
    if count > LOOKUP_IDS_MAX {
        return Err(DecodeError::OverLimit {
            what: "lookup ids",
            count: count as u64,
            limit: LOOKUP_IDS_MAX,
        });
    }
    let ids = (0..count).map(|_| u128(reader)).collect::<Result<_, _>>()?;
    reader.finish()?;
    Ok(ids)
}

/// Decode a request frame's kind and payload into the credential it presents and the
/// request. Never panics; a submit's body is not checked here (the engine refuses a malformed
/// one, deterministically, when it applies it).
pub fn decode_request(kind: u8, payload: &Bytes) -> Result<(Bytes, Request), DecodeError> {
    let mut reader = Reader::new(payload);
    let first = reader.u8()?;
    reader.reserved(REQUEST_HEADER_BYTES - 1)?;
    let length = u16(&mut reader)? as usize;
    if !(CREDENTIAL_BYTES_MIN..=CREDENTIAL_BYTES_MAX).contains(&length) {
        return Err(DecodeError::OverLimit {
            what: "credential bytes (16..=256)",
            count: length as u64,
            limit: CREDENTIAL_BYTES_MAX,
        });
    }
    let start = reader.at;
    reader.take(length)?;
    let credential = payload.slice(start..start + length);
    decode_request_body(kind, first, payload, reader).map(|request| (credential, request))
}

fn decode_request_body(
    kind: u8,
    first: u8,
    payload: &Bytes,
    mut reader: Reader<'_>,
) -> Result<Request, DecodeError> {
    match kind {
        KIND_SUBMIT => {
            let operation = Operation::try_from(first).map_err(DecodeError::UnknownOperation)?;
            Ok(Request::Submit {
                operation,
                body: payload.slice(reader.at..),
            })
        }
        KIND_LOOKUP_ACCOUNTS => Ok(Request::LookupAccounts {
            flags: first,
            ids: ids(&mut reader)?,
        }),
        KIND_LOOKUP_TRANSFERS => Ok(Request::LookupTransfers {
            flags: first,
            ids: ids(&mut reader)?,
        }),
        KIND_STATE => {
            reader.finish()?;
            Ok(Request::State { flags: first })
        }
        KIND_ADMIN => {
            let admin = match first {
                ADMIN_INITIALIZE => {
                    let count = reader.count("members", MEMBERSHIP_NODES_MAX, 12)?;
                    let mut members = Vec::with_capacity(count);
                    for _ in 0..count {
                        let id = reader.u64()?;
                        members.push((id, get_node(&mut reader)?));
                    }
                    Admin::Initialize(members)
                }
                ADMIN_ADD_LEARNER => {
                    let id = reader.u64()?;
                    Admin::AddLearner(id, get_node(&mut reader)?)
                }
                ADMIN_CHANGE_VOTERS => {
                    let count = reader.count("voters", MEMBERSHIP_NODES_MAX, 8)?;
                    Admin::ChangeVoters((0..count).map(|_| reader.u64()).collect::<Result<_, _>>()?)
                }
                ADMIN_REMOVE_NODES => {
                    let count = reader.count("nodes", MEMBERSHIP_NODES_MAX, 8)?;
                    Admin::RemoveNodes((0..count).map(|_| reader.u64()).collect::<Result<_, _>>()?)
                }
                ADMIN_SNAPSHOT => Admin::Snapshot,
                other => return Err(DecodeError::UnknownKind(other)),
            };
            reader.finish()?;
            Ok(Request::Admin(admin))
        }
        other => Err(DecodeError::UnknownKind(other)),
    }
}

/// A member's addresses: its client address, then its peer address.
fn put_node(out: &mut Vec<u8>, node: &Node) {
    put_str(out, &node.client_addr, NODE_ADDRESS_BYTES_MAX);
    put_str(out, &node.peer_addr, NODE_ADDRESS_BYTES_MAX);
}

fn get_node(reader: &mut Reader<'_>) -> Result<Node, DecodeError> {
    let client_addr = get_str(reader, "client address", NODE_ADDRESS_BYTES_MAX)?;
    let peer_addr = get_str(reader, "peer address", NODE_ADDRESS_BYTES_MAX)?;
    Ok(Node::new(client_addr, peer_addr))
}

/// The payload of a refusal answer.
pub fn encode_refusal(refusal: &Refusal) -> Vec<u8> {
    let mut out = vec![0u8; 8];
    out[0] = refusal.status as u8;
    match &refusal.leader {
        Some((id, addr)) => {
            out[1] = 1;
            out.extend_from_slice(&id.to_le_bytes());
            put_str(&mut out, addr, NODE_ADDRESS_BYTES_MAX);
        }
        None => {
            out.extend_from_slice(&0u64.to_le_bytes());
            put_str(&mut out, "", 0);
        }
    }
    put_str(&mut out, &refusal.message, MESSAGE_BYTES_MAX);
    out
}

/// The start of an `Ok` answer; the request's own answer follows.
pub fn ok_header() -> Vec<u8> {
    vec![0u8; 8]
}

/// Split an answer payload into its `Ok` body, or the refusal it carries.
pub fn decode_answer(payload: &[u8]) -> Result<Result<&[u8], Refusal>, DecodeError> {
    let mut reader = Reader::new(payload);
    let status = Status::from_byte(reader.u8()?)?;
    let has_leader = reader.u8()?;
    reader.reserved(6)?;
    if status == Status::Ok {
        return Ok(Ok(&payload[8..]));
    }
    let id = reader.u64()?;
    let addr = get_str(&mut reader, "leader address", NODE_ADDRESS_BYTES_MAX)?;
    let message = get_str(&mut reader, "message", MESSAGE_BYTES_MAX)?;
    reader.finish()?;
    let leader = match has_leader {
        0 => None,
        1 => Some((id, addr)),
        value => return Err(DecodeError::BadFlag { at: 1, value }),
    };
    Ok(Err(Refusal {
        status,
        leader,
        message,
    }))
}

/// A committed batch's answer: the batch's timestamp range and its failed events by index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubmitAnswer {
    pub timestamp_first: u64,
    pub timestamp_last: u64,
    pub failures: Vec<(u32, EventResult)>,
}

pub fn encode_submit_answer(answer: &SubmitAnswer, out: &mut Vec<u8>) {
    out.extend_from_slice(&answer.timestamp_first.to_le_bytes());
    out.extend_from_slice(&answer.timestamp_last.to_le_bytes());
    out.extend_from_slice(&(answer.failures.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    for (index, result) in &answer.failures {
        out.extend_from_slice(&index.to_le_bytes());
        out.extend_from_slice(&result.code().to_le_bytes());
        out.extend_from_slice(&[0u8; 2]);
    }
}

pub fn decode_submit_answer(body: &[u8]) -> Result<SubmitAnswer, DecodeError> {
    let mut reader = Reader::new(body);
    let timestamp_first = reader.u64()?;
    let timestamp_last = reader.u64()?;
    let count = reader.count("failures", BATCH_EVENTS_MAX, 8)?;
    reader.reserved(4)?;
    let mut failures = Vec::with_capacity(count);
    for _ in 0..count {
        let index = reader.u32()?;
        let code = u16(&mut reader)?;
        reader.reserved(2)?;
        let result = EventResult::from_code(code).ok_or(DecodeError::OverLimit {
            what: "event result code",
            count: u64::from(code),
            limit: EventResult::ALL.len() - 1,
        })?;
        failures.push((index, result));
    }
    reader.finish()?;
    Ok(SubmitAnswer {
        timestamp_first,
        timestamp_last,
        failures,
    })
}

/// Lookups answer the records found, in request order, each `RECORD_BYTES` long.
pub fn decode_records(body: &[u8]) -> Result<Vec<[u8; RECORD_BYTES]>, DecodeError> {
    let (records, rest) = body.as_chunks::<RECORD_BYTES>();
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes {
            at: body.len() - rest.len(),
            count: rest.len(),
        });
    }
    Ok(records.to_vec())
}

fn put_index(out: &mut Vec<u8>, index: Option<u64>) {
    out.push(u8::from(index.is_some()));
    out.extend_from_slice(&index.unwrap_or(0).to_le_bytes());
}

fn get_index(reader: &mut Reader<'_>) -> Result<Option<u64>, DecodeError> {
    let present = reader.u8()?;
    let index = reader.u64()?;
    match present {
        0 => Ok(None),
        1 => Ok(Some(index)),
        value => Err(DecodeError::BadFlag {
            at: reader.at,
            value,
        }),
    }
}

fn put_log_id(out: &mut Vec<u8>, log_id: Option<&LogId>) {
    match log_id {
        Some(id) => {
            out.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
            out.extend_from_slice(&id.leader_id.term.to_le_bytes());
            out.extend_from_slice(&id.leader_id.node_id.to_le_bytes());
            out.extend_from_slice(&id.index.to_le_bytes());
        }
        None => out.extend_from_slice(&[0u8; 32]),
    }
}

fn get_log_id(reader: &mut Reader<'_>) -> Result<Option<LogId>, DecodeError> {
    let present = reader.u8()?;
    reader.reserved(7)?;
    let term = reader.u64()?;
    let node = reader.u64()?;
    let index = reader.u64()?;
    match present {
        0 => Ok(None),
        1 => Ok(Some(LogId::new(
            openraft::CommittedLeaderId::new(term, node),
            index,
        ))),
        value => Err(DecodeError::BadFlag {
            at: reader.at,
            value,
        }),
    }
}

pub fn encode_state(state: &NodeState, out: &mut Vec<u8>) {
    out.extend_from_slice(&state.node_id.to_le_bytes());
    put_str(out, &state.role, 32);
    out.extend_from_slice(&state.term.to_le_bytes());
    out.extend_from_slice(&state.leader.map_or(0u64, |_| 1).to_le_bytes());
    out.extend_from_slice(&state.leader.unwrap_or(0).to_le_bytes());
    put_log_id(out, state.last_applied.as_ref());
    put_log_id(out, state.snapshot.as_ref());
    put_log_id(out, state.purged.as_ref());
    out.extend_from_slice(&state.digest);
    for count in [state.accounts, state.transfers, state.trades] {
        out.extend_from_slice(&count.to_le_bytes());
    }
    for ids in [&state.voters, &state.learners] {
        out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
        for id in ids {
            out.extend_from_slice(&id.to_le_bytes());
        }
    }
    out.extend_from_slice(&(state.ledger_totals.len() as u32).to_le_bytes());
    for totals in &state.ledger_totals {
        out.extend_from_slice(&totals.ledger.to_le_bytes());
        for sum in [
            totals.debits_pending,
            totals.debits_posted,
            totals.credits_pending,
            totals.credits_posted,
        ] {
            out.extend_from_slice(&sum.to_le_bytes());
        }
    }
    put_index(out, state.last_log_index);
    put_index(out, state.committed_index);
    out.extend_from_slice(&(state.addresses.len() as u32).to_le_bytes());
    for (id, addr) in &state.addresses {
        out.extend_from_slice(&id.to_le_bytes());
        put_str(out, addr, NODE_ADDRESS_BYTES_MAX);
    }
    out.extend_from_slice(&(state.replication.len() as u32).to_le_bytes());
    for (id, matched) in &state.replication {
        out.extend_from_slice(&id.to_le_bytes());
        put_index(out, *matched);
    }
}

pub fn decode_state(body: &[u8]) -> Result<NodeState, DecodeError> {
    let mut reader = Reader::new(body);
    let node_id = reader.u64()?;
    let role = get_str(&mut reader, "role", 32)?;
    let term = reader.u64()?;
    let has_leader = reader.u64()?;
    let leader_id = reader.u64()?;
    let last_applied = get_log_id(&mut reader)?;
    let snapshot = get_log_id(&mut reader)?;
    let purged = get_log_id(&mut reader)?;
    let mut digest = [0u8; 32];
    digest.copy_from_slice(reader.take(32)?);
    let accounts = reader.u64()?;
    let transfers = reader.u64()?;
    let trades = reader.u64()?;
    let mut lists = [Vec::new(), Vec::new()];
    for list in &mut lists {
        let count = reader.count("members", MEMBERSHIP_NODES_MAX, 8)?;
        *list = (0..count).map(|_| reader.u64()).collect::<Result<_, _>>()?;
    }
    let [voters, learners] = lists;
    let count = reader.count("ledgers", usize::MAX / 68, 68)?;
    let mut ledger_totals = Vec::with_capacity(count);
    for _ in 0..count {
        ledger_totals.push(LedgerTotals {
            ledger: reader.u32()?,
            debits_pending: u128(&mut reader)?,
            debits_posted: u128(&mut reader)?,
            credits_pending: u128(&mut reader)?,
            credits_posted: u128(&mut reader)?,
        });
    }
    let last_log_index = get_index(&mut reader)?;
    let committed_index = get_index(&mut reader)?;
    let count = reader.count("addresses", MEMBERSHIP_NODES_MAX, 10)?;
    let mut addresses = Vec::with_capacity(count);
    for _ in 0..count {
        let id = reader.u64()?;
        addresses.push((id, get_str(&mut reader, "address", NODE_ADDRESS_BYTES_MAX)?));
    }
    let count = reader.count("followers", MEMBERSHIP_NODES_MAX, 17)?;
    let mut replication = Vec::with_capacity(count);
    for _ in 0..count {
        let id = reader.u64()?;
        replication.push((id, get_index(&mut reader)?));
    }
    reader.finish()?;
    Ok(NodeState {
        node_id,
        role,
        term,
        leader: (has_leader != 0).then_some(leader_id),
        last_applied,
        snapshot,
        purged,
        digest,
        accounts,
        transfers,
        trades,
        voters,
        learners,
        ledger_totals,
        last_log_index,
        committed_index,
        addresses,
        replication,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn requests() -> Vec<Request> {
        vec![
            Request::Submit {
                operation: Operation::CreateTransfers,
                body: Bytes::from(vec![7u8; 256]),
            },
            Request::LookupAccounts {
                flags: READ_LINEARIZABLE,
                ids: vec![1, u128::MAX],
            },
            Request::LookupTransfers {
                flags: 0,
                ids: vec![],
            },
            Request::State { flags: 0 },
            Request::Admin(Admin::Initialize(vec![
                (1, Node::new("127.0.0.1:7001", "127.0.0.1:7201")),
                (2, Node::new("n2:7002", "n2:7202")),
            ])),
            Request::Admin(Admin::AddLearner(
                4,
                Node::new("10.0.0.4:7000", "10.0.0.4:7200"),
            )),
            Request::Admin(Admin::ChangeVoters(vec![1, 2, 3])),
            Request::Admin(Admin::Snapshot),
            Request::Admin(Admin::RemoveNodes(vec![4, 5])),
        ]
    }

    /// Proves every request kind round-trips through its encoding.
    #[test]
    fn requests_round_trip() {
        for request in requests() {
            let (kind, payload) = encode_request(&request, b"an operator's secret");
            assert_eq!(kind % 2, 0);
            let (credential, decoded) =
                decode_request(kind, &Bytes::from(payload)).expect("decodes");
            assert_eq!(decoded, request);
            assert_eq!(&credential[..], b"an operator's secret");
        }
    }

    /// Proves answers round-trip: refusals with and without a leader, submit answers, states.
    #[test]
    fn answers_round_trip() {
        for refusal in [
            Refusal {
                status: Status::NotLeader,
                leader: Some((3, "127.0.0.1:7003".into())),
                message: "not the leader".into(),
            },
            Refusal::new(Status::Unavailable, "shutting down"),
        ] {
            let payload = encode_refusal(&refusal);
            assert_eq!(decode_answer(&payload).expect("decodes"), Err(refusal));
        }
        let answer = SubmitAnswer {
            timestamp_first: 10,
            timestamp_last: 20,
            failures: vec![(0, EventResult::Exists), (7, EventResult::ExceedsCredits)],
        };
        let mut out = ok_header();
        encode_submit_answer(&answer, &mut out);
        let body = decode_answer(&out).expect("decodes").expect("ok");
        assert_eq!(decode_submit_answer(body).expect("decodes"), answer);

        let state = NodeState {
            node_id: 2,
            role: "Leader".into(),
            term: 5,
            leader: Some(2),
            last_applied: Some(LogId::new(openraft::CommittedLeaderId::new(5, 2), 99)),
            snapshot: Some(LogId::new(openraft::CommittedLeaderId::new(4, 1), 50)),
            purged: None,
            digest: [9; 32],
            accounts: 1,
            transfers: 2,
            trades: 3,
            voters: vec![1, 2, 3],
            learners: vec![4],
            ledger_totals: vec![LedgerTotals {
                ledger: 1,
                debits_pending: 1,
                debits_posted: 2,
                credits_pending: 3,
                credits_posted: u128::MAX,
            }],
            last_log_index: Some(101),
            committed_index: Some(100),
            addresses: vec![(1, "10.0.0.1:7000".into()), (4, "node4:7000".into())],
            replication: vec![(1, Some(100)), (3, None), (4, Some(7))],
        };
        let mut out = Vec::new();
        encode_state(&state, &mut out);
        assert_eq!(decode_state(&out).expect("decodes"), state);
    }

    proptest! {
        /// Proves random bytes never panic any decoder.
        #[test]
        fn random_bytes_never_panic(kind in 30u8..44, bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let payload = Bytes::from(bytes);
            let _ = decode_request(kind, &payload);
            let _ = decode_answer(&payload);
            let _ = decode_submit_answer(&payload);
            let _ = decode_state(&payload);
            let _ = decode_records(&payload);
        }
    }
}
