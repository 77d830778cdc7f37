//! The network between Tally processes: checksummed frames over TLS on TCP ([`frame`],
//! [`tls`]). Replica-to-replica Raft RPCs travel on a node's peer listener (mutual TLS, members
//! only), the client protocol on its client listener; the frame's kind byte says which message
//! a payload is: kinds `1..=RAFT_KIND_LAST` are Raft RPCs and are only accepted on the peer
//! listener, the rest belong to the node's [`ClientHandler`] and only to the client listener.
//!
//! - [`rpc`]: the replica RPCs' payloads and [`rpc::answer`], the server side of one RPC.
//! - [`network`]: [`Network`], openraft's `RaftNetworkFactory` (the client side), and why
//!   snapshots are streamed the way they are.
//! - [`server`]: [`serve_peers`] and [`serve_clients`], the accept loops, who may speak on
//!   each, and the per-connection reader and writer.
//! - [`tls`]: certificates, node identities, the TLS configurations and [`Stream`].
//! - [`limits`]: frame, message and connection limits, and the openraft timing that fits them
//!   ([`recommended_config`]).
//!
//! Layouts: docs/protocol.md.

pub mod limits;
pub mod network;
pub mod rpc;
pub mod rpc_samples;
pub mod server;
pub mod tls;

pub use tally_wire::frame;

use std::future::Future;
use std::pin::Pin;

pub use frame::{
    read_frame, read_frame_limited, write_frame, Frame, FrameError, FRAME_HEADER_BYTES,
};
pub use network::{reconnect_backoff, Network, PeerClient};
pub use server::{serve_clients, serve_peers};
pub use tls::{ClientTls, NodeTls, Stream, TlsFiles};

/// Frame kinds up to this one are replica-to-replica Raft RPCs (requests and responses).
pub const RAFT_KIND_LAST: u8 = 31;

/// Where a handler sends its responses on a connection: they are written in the order sent,
/// each carrying its request's id, so a client may keep many requests in flight.
pub type Replies = tokio::sync::mpsc::Sender<Frame>;

/// The node's client protocol, served on the client listener.
///
/// The server calls `handle` for each client frame of a connection in arrival order and awaits
/// it before reading the next frame. A handler does there whatever must keep the connection's
/// order (queueing a batch into the batcher, which also applies back-pressure by waiting for
/// room) and spawns the rest (waiting for the commit), replying later through `replies`.
pub trait ClientHandler: Send + Sync + 'static {
    fn handle(
        &self,
        frame: Frame,
        replies: Replies,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;

    /// The node is shutting down: refuse new writes from now on (requests already queued are
    /// still answered).
    fn stop_accepting(&self) {}

    /// The largest payload a frame of `kind` may carry, checked before the payload is read or
    /// allocated (capped at `FRAME_PAYLOAD_BYTES_MAX`). A larger frame closes its connection,
    /// after [`ClientHandler::too_large`]'s answer if it gives one.
    fn payload_bytes_max(&self, _kind: u8) -> usize {
        limits::FRAME_PAYLOAD_BYTES_MAX
    }

    /// The answer to a frame whose header declared `length` payload bytes, over `limit`
    /// (the payload is not read): sent before the connection closes, so the client learns
    /// why rather than guessing from a closed socket. `None`: close without a word.
    fn too_large(
        &self,
        _kind: u8,
        _request_id: u64,
        _length: usize,
        _limit: usize,
    ) -> Option<Frame> {
        None
    }
}

/// Start openraft for node `id` on its storage, with the peer network that dials the other
/// members (mutual TLS with this node's certificate from `tls`; plain TCP if `None`; the
/// peers in `dial` at the address given there, see [`Network::with_dial`]). The one
/// place a replica's Raft and its peer network meet: whoever assembles a node never handles
/// the peer network itself.
pub async fn start_raft(
    id: crate::replication::types::NodeId,
    config: std::sync::Arc<openraft::Config>,
    tls: Option<&NodeTls>,
    dial: std::collections::BTreeMap<crate::replication::types::NodeId, String>,
    log_store: crate::replication::LogStore,
    state_machine: crate::replication::StateMachine,
) -> Result<
    openraft::Raft<crate::replication::TypeConfig>,
    openraft::error::Fatal<crate::replication::types::NodeId>,
> {
    openraft::Raft::new(
        id,
        config,
        Network::new(id, tls.map(|tls| std::sync::Arc::clone(&tls.peer_client))).with_dial(dial),
        log_store,
        state_machine,
    )
    .await
}

/// The openraft configuration a Tally node should run with (not yet validated; `validate()`
/// it). What differs from openraft's defaults, and why (details in [`limits`]):
/// - `heartbeat_interval` 200 ms: openraft also times every AppendEntries call out after it,
///   and the largest message (8 MiB) plus the follower's fdatasync must fit.
/// - `election_timeout` 1–2 s: several heartbeats, so one slow message starts no election.
/// - `install_snapshot_timeout` 5 s: the timeout of each snapshot chunk; the last chunk gets
///   more for the install, in proportion to the snapshot's size (`network.rs`).
/// - `snapshot_max_chunk_size` 4 MiB: the largest chunk a frame is sized for.
pub fn recommended_config(cluster_name: &str) -> openraft::Config {
    openraft::Config {
        cluster_name: cluster_name.to_owned(),
        heartbeat_interval: limits::HEARTBEAT_INTERVAL_MS,
        election_timeout_min: limits::ELECTION_TIMEOUT_MS_MIN,
        election_timeout_max: limits::ELECTION_TIMEOUT_MS_MAX,
        install_snapshot_timeout: limits::SNAPSHOT_CHUNK_TIMEOUT_MS,
        snapshot_max_chunk_size: limits::SNAPSHOT_CHUNK_BYTES_MAX as u64,
        max_payload_entries: limits::MAX_PAYLOAD_ENTRIES,
        ..openraft::Config::default()
    }
}
