//! The operators' operations of the gateway protocol (docs/protocol.md, "Operator
//! operations"): a node's state (`KIND_NODE_STATE`) and cluster administration
//! (`KIND_ADMIN`). Both need a session of the operator role. They are ordinary gateway
//! requests — same header, same statuses, same refusal body — so an operator's tool is an
//! ordinary client. Re-exported by [`crate::protocol`].
//!
//! Like every decoder here these are bounded: counts are checked against their limits and
//! against the bytes left before anything is allocated.

use tally_engine::LedgerTotals;

use crate::limits::{ADDRESS_BYTES_MAX, MEMBERS_MAX};
use crate::protocol::{check_count, put_str, DecodeError, Reader};

/// A node-state request's body (8 bytes): flags u8 (bit 0: audit — include the state digest
/// and the per-ledger totals, O(state)), reserved 7.
pub const STATE_AUDIT: u8 = 1;

pub fn encode_node_state_request(audit: bool) -> Vec<u8> {
    let mut out = vec![0u8; 8];
    out[0] = if audit { STATE_AUDIT } else { 0 };
    out
}

pub fn decode_node_state_request(body: &[u8]) -> Result<bool, DecodeError> {
    let mut reader = Reader::new(body, "node-state request");
    let flags = reader.u8()?;
    if flags & !STATE_AUDIT != 0 {
        return Err(DecodeError::UnknownFlags(u16::from(flags)));
    }
    reader.zeros(7)?;
    reader.end()?;
    Ok(flags & STATE_AUDIT != 0)
}

/// A member's two addresses: where clients connect, and where replicas do.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Member {
    pub client: String,
    pub peer: String,
}

impl Member {
    pub fn new(client: impl Into<String>, peer: impl Into<String>) -> Member {
        Member {
            client: client.into(),
            peer: peer.into(),
        }
    }
}

/// A cluster administration command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admin {
    /// Initialize a fresh cluster with these voters (any node of them may take it; refused
    /// once the node has a log).
    Initialize(Vec<(u64, Member)>),
    /// Add a node as a learner and wait until it has caught up with the leader's log.
    AddLearner(u64, Member),
    /// Make exactly these nodes the voters (joint consensus; others become learners).
    ChangeVoters(Vec<u64>),
    /// Build a snapshot now on the node asked (and purge its log up to it, as its config says).
    Snapshot,
    /// Remove these nodes from the cluster (voters through joint consensus, and learners).
    RemoveNodes(Vec<u64>),
}

const ADMIN_INITIALIZE: u8 = 1;
const ADMIN_ADD_LEARNER: u8 = 2;
const ADMIN_CHANGE_VOTERS: u8 = 3;
const ADMIN_SNAPSHOT: u8 = 4;
const ADMIN_REMOVE_NODES: u8 = 5;

impl Admin {
    /// The command's name, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Admin::Initialize(_) => "initialize",
            Admin::AddLearner(..) => "add_learner",
            Admin::ChangeVoters(_) => "change_voters",
            Admin::Snapshot => "snapshot",
            Admin::RemoveNodes(_) => "remove_nodes",
        }
    }
}

fn put_member(out: &mut Vec<u8>, member: &Member) {
    put_str(out, &member.client, ADDRESS_BYTES_MAX);
    put_str(out, &member.peer, ADDRESS_BYTES_MAX);
}

fn get_member(reader: &mut Reader<'_>) -> Result<Member, DecodeError> {
    let client = reader.string(ADDRESS_BYTES_MAX)?;
    let peer = reader.string(ADDRESS_BYTES_MAX)?;
    Ok(Member { client, peer })
}

fn put_ids(out: &mut Vec<u8>, ids: &[u64]) {
    out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
    for id in ids {
        out.extend_from_slice(&id.to_le_bytes());
    }
}

fn get_ids(reader: &mut Reader<'_>, what: &'static str) -> Result<Vec<u64>, DecodeError> {
    let count = reader.u32()? as usize;
    check_count(what, count, 0, MEMBERS_MAX)?;
    check_count(what, count, 0, reader.bytes.len() / 8)?;
    (0..count).map(|_| reader.u64()).collect()
}

/// An admin request's body: command u8 (1 initialize, 2 add learner, 3 change voters,
/// 4 snapshot, 5 remove nodes), reserved 7, then the command's arguments: initialize — count
/// u32 and per member id u64, client address, peer address (u16 length + UTF-8 each); add
/// learner — id u64 and the two addresses; change voters and remove nodes — count u32 and the
/// ids, u64 each; snapshot — nothing.
pub fn encode_admin(admin: &Admin) -> Vec<u8> {
    let mut out = vec![0u8; 8];
    match admin {
        Admin::Initialize(members) => {
            out[0] = ADMIN_INITIALIZE;
            out.extend_from_slice(&(members.len() as u32).to_le_bytes());
            for (id, member) in members {
                out.extend_from_slice(&id.to_le_bytes());
                put_member(&mut out, member);
            }
        }
        Admin::AddLearner(id, member) => {
            out[0] = ADMIN_ADD_LEARNER;
            out.extend_from_slice(&id.to_le_bytes());
            put_member(&mut out, member);
        }
        Admin::ChangeVoters(ids) => {
            out[0] = ADMIN_CHANGE_VOTERS;
            put_ids(&mut out, ids);
        }
        Admin::Snapshot => out[0] = ADMIN_SNAPSHOT,
        Admin::RemoveNodes(ids) => {
            out[0] = ADMIN_REMOVE_NODES;
            put_ids(&mut out, ids);
        }
    }
    out
}

pub fn decode_admin(body: &[u8]) -> Result<Admin, DecodeError> {
    let mut reader = Reader::new(body, "admin request");
    let command = reader.u8()?;
    reader.zeros(7)?;
    let admin = match command {
        ADMIN_INITIALIZE => {
            let count = reader.u32()? as usize;
            check_count("members", count, 1, MEMBERS_MAX)?;
            // Each member takes at least 12 bytes (id and two empty addresses).
            check_count("members", count, 1, reader.bytes.len() / 12)?;
            let mut members = Vec::with_capacity(count);
            for _ in 0..count {
                let id = reader.u64()?;
                members.push((id, get_member(&mut reader)?));
            }
            Admin::Initialize(members)
        }
        ADMIN_ADD_LEARNER => {
            let id = reader.u64()?;
            Admin::AddLearner(id, get_member(&mut reader)?)
        }
        ADMIN_CHANGE_VOTERS => Admin::ChangeVoters(get_ids(&mut reader, "voters")?),
        ADMIN_SNAPSHOT => Admin::Snapshot,
        ADMIN_REMOVE_NODES => Admin::RemoveNodes(get_ids(&mut reader, "nodes")?),
        other => return Err(DecodeError::UnknownAdmin(other)),
    };
    reader.end()?;
    Ok(admin)
}

/// A position in the replicated log: the term and node of the leader that wrote the entry,
/// and its index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPosition {
    pub term: u64,
    pub leader: u64,
    pub index: u64,
}

/// A node's own view of itself and of the cluster, as a node-state reply carries it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeState {
    pub node_id: u64,
    /// "Leader", "Follower", "Candidate", "Learner" or "Shutdown".
    pub role: String,
    pub term: u64,
    pub leader: Option<u64>,
    pub last_applied: Option<LogPosition>,
    /// The newest snapshot this node has (built or installed).
    pub snapshot: Option<LogPosition>,
    /// The log is purged up to here: a follower behind it can only catch up by snapshot.
    pub purged: Option<LogPosition>,
    /// The engine's state digest at `last_applied` (audit only; else zero): equal on
    /// replicas at the same index.
    pub digest: [u8; 32],
    pub accounts: u64,
    pub transfers: u64,
    pub trades: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    /// Per ledger, the sums of the four balances over its accounts (audit only).
    pub ledger_totals: Vec<LedgerTotals>,
    /// Index of the last entry in this node's log.
    pub last_log_index: Option<u64>,
    /// The commit index this node knows (the leader's, or what the leader told it).
    pub committed_index: Option<u64>,
    /// Every member's client address (voters and learners), for reaching the others.
    pub addresses: Vec<(u64, String)>,
    /// Leader only: per follower, the last index known replicated there.
    pub replication: Vec<(u64, Option<u64>)>,
    /// The verifier key (public) of the cluster's checkpoint key, as `tally verify --key`
    /// takes it; empty on a node without one.
    pub log_key: String,
    /// Leaves in this node's verifiable log (events applied) and checkpoints it keeps.
    pub log_size: u64,
    pub checkpoints: u64,
}

impl NodeState {
    /// The applied index (0 before anything is applied).
    pub fn applied_index(&self) -> u64 {
        self.last_applied.map_or(0, |position| position.index)
    }
}

const ROLE_BYTES_MAX: usize = 32;
/// Bytes of a verifier key in a node state (a name of up to ~400 bytes, and the key).
const LOG_KEY_BYTES_MAX: usize = 512;
/// Bytes of one ledger's totals: ledger u32 and four u128 sums.
const LEDGER_TOTALS_BYTES: usize = 4 + 4 * 16;

fn put_index(out: &mut Vec<u8>, index: Option<u64>) {
    out.extend_from_slice(&[u8::from(index.is_some()), 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&index.unwrap_or(0).to_le_bytes());
}

fn get_index(reader: &mut Reader<'_>) -> Result<Option<u64>, DecodeError> {
    let present = reader.u8()?;
    reader.zeros(7)?;
    let index = reader.u64()?;
    match present {
        0 if index == 0 => Ok(None),
        1 => Ok(Some(index)),
        _ => Err(DecodeError::ReservedNotZero("node state")),
    }
}

fn put_position(out: &mut Vec<u8>, position: Option<LogPosition>) {
    out.extend_from_slice(&[u8::from(position.is_some()), 0, 0, 0, 0, 0, 0, 0]);
    let position = position.unwrap_or_default();
    for value in [position.term, position.leader, position.index] {
        out.extend_from_slice(&value.to_le_bytes());
    }
}

fn get_position(reader: &mut Reader<'_>) -> Result<Option<LogPosition>, DecodeError> {
    let present = reader.u8()?;
    reader.zeros(7)?;
    let position = LogPosition {
        term: reader.u64()?,
        leader: reader.u64()?,
        index: reader.u64()?,
    };
    match present {
        0 if position == LogPosition::default() => Ok(None),
        1 => Ok(Some(position)),
        _ => Err(DecodeError::ReservedNotZero("node state")),
    }
}

/// A node-state reply's body: node id u64, role (u16 length + UTF-8, ≤ 32), term u64, leader
/// (present u8, reserved 7, id u64), last applied, snapshot and purged (each present u8,
/// reserved 7, term u64, leader u64, index u64), digest 32 bytes, accounts, transfers and
/// trades u64 each, voters and learners (count u32 + ids u64 each), ledger totals (count u32,
/// per ledger: ledger u32, debits pending, debits posted, credits pending, credits posted u128
/// each), last log index and committed index (present u8, reserved 7, index u64 each),
/// addresses (count u32, per member: id u64, client address u16 length + UTF-8), replication
/// (count u32, per follower: id u64, matched index as above), the checkpoint key's verifier
/// key (u16 length + UTF-8, ≤ 512 bytes; empty: none), log leaves u64, checkpoints u64.
pub fn encode_node_state(state: &NodeState) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + state.ledger_totals.len() * LEDGER_TOTALS_BYTES);
    out.extend_from_slice(&state.node_id.to_le_bytes());
    put_str(&mut out, &state.role, ROLE_BYTES_MAX);
    out.extend_from_slice(&state.term.to_le_bytes());
    put_index(&mut out, state.leader);
    for position in [state.last_applied, state.snapshot, state.purged] {
        put_position(&mut out, position);
    }
    out.extend_from_slice(&state.digest);
    for count in [state.accounts, state.transfers, state.trades] {
        out.extend_from_slice(&count.to_le_bytes());
    }
    put_ids(&mut out, &state.voters);
    put_ids(&mut out, &state.learners);
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
    put_index(&mut out, state.last_log_index);
    put_index(&mut out, state.committed_index);
    out.extend_from_slice(&(state.addresses.len() as u32).to_le_bytes());
    for (id, addr) in &state.addresses {
        out.extend_from_slice(&id.to_le_bytes());
        put_str(&mut out, addr, ADDRESS_BYTES_MAX);
    }
    out.extend_from_slice(&(state.replication.len() as u32).to_le_bytes());
    for (id, matched) in &state.replication {
        out.extend_from_slice(&id.to_le_bytes());
        put_index(&mut out, *matched);
    }
    put_str(&mut out, &state.log_key, LOG_KEY_BYTES_MAX);
    out.extend_from_slice(&state.log_size.to_le_bytes());
    out.extend_from_slice(&state.checkpoints.to_le_bytes());
    out
}

pub fn decode_node_state(body: &[u8]) -> Result<NodeState, DecodeError> {
    let mut reader = Reader::new(body, "node state");
    let node_id = reader.u64()?;
    let role = reader.string(ROLE_BYTES_MAX)?;
    let term = reader.u64()?;
    let leader = get_index(&mut reader)?;
    let last_applied = get_position(&mut reader)?;
    let snapshot = get_position(&mut reader)?;
    let purged = get_position(&mut reader)?;
    let digest = reader.array::<32>()?;
    let accounts = reader.u64()?;
    let transfers = reader.u64()?;
    let trades = reader.u64()?;
    let voters = get_ids(&mut reader, "voters")?;
    let learners = get_ids(&mut reader, "learners")?;
    let count = reader.u32()? as usize;
    check_count(
        "ledger totals",
        count,
        0,
        reader.bytes.len() / LEDGER_TOTALS_BYTES,
    )?;
    let mut ledger_totals = Vec::with_capacity(count);
    for _ in 0..count {
        ledger_totals.push(LedgerTotals {
            ledger: reader.u32()?,
            debits_pending: reader.u128()?,
            debits_posted: reader.u128()?,
            credits_pending: reader.u128()?,
            credits_posted: reader.u128()?,
        });
    }
    let last_log_index = get_index(&mut reader)?;
    let committed_index = get_index(&mut reader)?;
    let count = reader.u32()? as usize;
    check_count("addresses", count, 0, MEMBERS_MAX)?;
    check_count("addresses", count, 0, reader.bytes.len() / 10)?;
    let mut addresses = Vec::with_capacity(count);
    for _ in 0..count {
        let id = reader.u64()?;
        addresses.push((id, reader.string(ADDRESS_BYTES_MAX)?));
    }
    let count = reader.u32()? as usize;
    check_count("replication", count, 0, MEMBERS_MAX)?;
    check_count("replication", count, 0, reader.bytes.len() / 24)?;
    let mut replication = Vec::with_capacity(count);
    for _ in 0..count {
        let id = reader.u64()?;
        replication.push((id, get_index(&mut reader)?));
    }
    let log_key = reader.string(LOG_KEY_BYTES_MAX)?;
    let log_size = reader.u64()?;
    let checkpoints = reader.u64()?;
    reader.end()?;
    Ok(NodeState {
        node_id,
        role,
        term,
        leader,
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
        log_key,
        log_size,
        checkpoints,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves every admin command and a full node state survive encode → decode unchanged,
    /// and that a truncated body or a count beyond the bytes left is refused, not allocated.
    #[test]
    fn operator_bodies_round_trip_and_truncations_are_refused() {
        let member = Member::new("10.0.0.4:7000", "10.0.0.4:7100");
        for admin in [
            Admin::Initialize(vec![(1, member.clone()), (2, Member::new("a", "b"))]),
            Admin::AddLearner(4, member.clone()),
            Admin::ChangeVoters(vec![1, 2, 3]),
            Admin::Snapshot,
            Admin::RemoveNodes(vec![4]),
        ] {
            let body = encode_admin(&admin);
            assert_eq!(decode_admin(&body), Ok(admin.clone()));
            for cut in 0..body.len() {
                assert!(
                    decode_admin(&body[..cut]).is_err(),
                    "{admin:?} cut at {cut}"
                );
            }
        }
        let state = NodeState {
            node_id: 2,
            role: "Leader".into(),
            term: 7,
            leader: Some(2),
            last_applied: Some(LogPosition {
                term: 7,
                leader: 2,
                index: 99,
            }),
            snapshot: None,
            purged: Some(LogPosition {
                term: 6,
                leader: 1,
                index: 50,
            }),
            digest: [9; 32],
            accounts: 10,
            transfers: 20,
            trades: 3,
            voters: vec![1, 2, 3],
            learners: vec![4],
            ledger_totals: vec![LedgerTotals {
                ledger: 1,
                debits_pending: 1,
                debits_posted: 2,
                credits_pending: 1,
                credits_posted: 2,
            }],
            last_log_index: Some(100),
            committed_index: Some(99),
            addresses: vec![(1, "a:1".into()), (2, "b:2".into())],
            replication: vec![(1, Some(99)), (3, None)],
            log_key: "tally/cluster-0x7a11+1a2b3c4d+AQID".into(),
            log_size: 1_000,
            checkpoints: 4,
        };
        let body = encode_node_state(&state);
        assert_eq!(decode_node_state(&body), Ok(state));
        for cut in 0..body.len() {
            assert!(decode_node_state(&body[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge = encode_admin(&Admin::ChangeVoters(vec![1]));
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_admin(&huge).is_err());
        assert_eq!(
            decode_node_state_request(&encode_node_state_request(true)),
            Ok(true)
        );
        assert!(decode_node_state_request(&[2, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }
}
