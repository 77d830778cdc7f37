//! openraft's type configuration for Tally: what a Raft entry carries and what applying it
//! returns, plus short names for the openraft types the rest of the module uses.

use bytes::Bytes;
use tally_engine::Operation;

pub use super::replies::{BatchAnswer, Origin};

/// A replica's id in the cluster (openraft `NodeId`).
pub type NodeId = u64;

/// A replica as the membership knows it: where replicas reach it and where clients do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Node {
    /// The peer listener ("host:port"): replica traffic, mutual TLS.
    pub peer_addr: String,
    /// The client listener ("host:port"): what a follower tells a client to try instead.
    pub client_addr: String,
}

impl Node {
    pub fn new(client_addr: impl Into<String>, peer_addr: impl Into<String>) -> Node {
        Node {
            peer_addr: peer_addr.into(),
            client_addr: client_addr.into(),
        }
    }
}

openraft::declare_raft_types!(
    /// Tally's openraft types: u64 node ids, nodes known by address, entries that carry client
    /// batches, snapshots in files (the engine's streamed snapshot behind our meta header) that
    /// a peer can only append to, in order and within a bound.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = Node,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = super::snapshot_data::SnapshotData,
        AsyncRuntime = openraft::TokioRuntime,
);

/// openraft's log id: term, the leader's node id, and index.
pub type LogId = openraft::LogId<NodeId>;
/// openraft's vote: term, the candidate or leader, and whether a quorum granted it.
pub type Vote = openraft::Vote<NodeId>;
/// One Raft log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// What an entry carries: nothing (a new leader's blank entry), a request, or a membership.
pub type EntryPayload = openraft::EntryPayload<TypeConfig>;
/// The voters (one config, or two during joint consensus) and every node's address.
pub type Membership = openraft::Membership<NodeId, Node>;
/// A membership and the log id of the entry that carried it.
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
/// What a snapshot covers: the last log id and membership it includes, and its id.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
/// A snapshot's meta and bytes.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
/// The error every openraft storage method returns.
pub type StorageError = openraft::StorageError<NodeId>;

/// The application data of one Raft entry: client batches packed together by the leader.
///
/// One entry is one WAL record and one fdatasync on each replica (openraft 0.9 waits for the
/// flush of an entry before it appends the next), so the leader packs as many client batches
/// as fit into one entry; that is where throughput comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// The leader's clock (ns since the Unix epoch) when it packed the entry. Every batch in
    /// the entry is applied under it, on every replica: the engine never reads a clock.
    pub timestamp: u64,
    /// The batches, applied in this order.
    pub batches: Vec<ClientBatch>,
    /// A note for the verifiable log, in an entry of its own with no batch: a checkpoint or a
    /// witness's cosignature of one.
    pub log: Option<LogNote>,
}

/// What a request may carry for the verifiable log (docs/raft-entries.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogNote {
    /// A checkpoint the leader signed, kept by every replica whose own log has its root at its
    /// size (`Engine::record_checkpoint`).
    Checkpoint(tally_engine::checkpoint::SignedCheckpoint),
    /// A witness's cosignature of a kept checkpoint, checked by the gateway that proposed it
    /// against the witness keys it knows (`Engine::record_cosignature`).
    Cosignature(tally_engine::checkpoint::StoredCosignature),
    /// Reads a gateway served, for the access trail (`Engine::record_reads`).
    Reads(Vec<tally_engine::AccessEntry>),
    /// A checkpoint of the access trail the leader signed, kept like a log checkpoint
    /// (`Engine::record_access_checkpoint`).
    AccessCheckpoint(tally_engine::checkpoint::SignedCheckpoint),
}

/// One client's settlement batch: an operation and a body of 128-byte records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientBatch {
    pub operation: Operation,
    /// The records, exactly as the client sent them (`docs/records.md`). Not checked here: a
    /// malformed body is refused by the engine, deterministically, as a `BatchError`.
    pub body: Bytes,
    /// Who sent it and as which request: its outcome is kept in the replicated reply table,
    /// and a retry is answered from there (`replies.rs`). `None`: applied with no record.
    pub origin: Option<Origin>,
}

impl ClientBatch {
    /// A batch with no origin: applied every time it is proposed.
    pub fn new(operation: Operation, body: Bytes) -> ClientBatch {
        ClientBatch {
            operation,
            body,
            origin: None,
        }
    }
}

/// What applying one entry returned: one answer per client batch, in the request's order
/// (empty for blank and membership entries). Each client gets its own element back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    /// Per batch: applied (the failed events and the batch's timestamp range, or why the whole
    /// batch was refused), answered from the reply table, or refused there.
    pub batches: Vec<BatchAnswer>,
}
