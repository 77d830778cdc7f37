//! The client side of the replica RPCs: openraft's `RaftNetworkFactory` ([`Network`]) and one
//! `RaftNetwork` per target ([`PeerClient`]), over a lazily opened TCP connection.
//!
//! - One RPC at a time per client: openraft calls a client's methods one after another (a
//!   replication stream, a snapshot stream, one vote), so a client owns one connection and
//!   never has to match answers out of order. The connection is taken out of the client for
//!   the duration of a call and put back only after a whole answer was read: a call that is
//!   cancelled (openraft's own timeout drops the future) or fails leaves no connection behind,
//!   so a late answer can never be read as the answer to the next request.
//! - Errors are what openraft expects: a refused, reset or closed connection is
//!   `RPCError::Unreachable` (openraft then waits [`RaftNetwork::backoff`]), a damaged or
//!   unexpected answer is `RPCError::Network`, no answer within `RPCOption::hard_ttl()` is
//!   `RPCError::Timeout`, and an error answer from the peer is a `RemoteError` carrying the
//!   peer's `Fatal` or `SnapshotMismatch`.
//! - A dropped client leaves its connection to the next client of the same peer (openraft
//!   makes a new client for each vote and each `ensure_linearizable` round), after checking
//!   that the peer has not closed it meanwhile.
//! - Reconnecting backs off exponentially (`RECONNECT_BACKOFF_MIN` doubling to
//!   `RECONNECT_BACKOFF_MAX`): while a peer is down a call fails at once instead of blocking.
//!
//! ## Snapshot transfer
//!
//! openraft 0.9.25 (without the `generic-snapshot-data` feature, which we do not enable)
//! sends a snapshot through `RaftNetwork::full_snapshot`, whose default implementation is
//! openraft's `Chunked` helper: `install_snapshot` once per `snapshot_max_chunk_size` chunk,
//! each under a timeout of `install_snapshot_timeout` (200 ms by default), with a 1 ms sleep
//! between chunks. That timeout also covers the *last* chunk, whose answer comes only after the
//! receiver decoded the whole image, restored the engine from it and wrote it to disk with an
//! fsync: seconds for a multi-hundred-MB state. With the default it times out every time, the
//! leader starts over with the whole snapshot, and the follower never catches up; raising it
//! to cover the install lets a stuck peer hold every chunk that long.
//!
//! So [`PeerClient`] overrides `full_snapshot` with its own loop over the same chunk RPC:
//! chunks of `min(snapshot_max_chunk_size, SNAPSHOT_CHUNK_BYTES_MAX)` bytes, each under
//! `hard_ttl` (openraft passes `install_snapshot_timeout`), the last one under that plus
//! `SNAPSHOT_INSTALL_TIMEOUT_BASE` and its size at `SNAPSHOT_INSTALL_BYTES_PER_SECOND_MIN`;
//! a `SnapshotMismatch` restarts at offset 0; openraft's `cancel` future stops it at once.
//! The receiver is openraft's own: [`super::rpc::answer`] hands each chunk to
//! `Raft::install_snapshot`, which assembles the chunks and calls `install_full_snapshot` on the
//! last one. Frames stay bounded (a chunk, not the whole image, is one frame), and a snapshot
//! stream has its own client and connection, so heartbeats are never queued behind it.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    ReplicationClosed, SnapshotMismatch, StreamingError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::OptionalSend;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::frame::{read_frame, write_frame, Frame, FrameError};
use super::limits::{
    APPEND_ENTRIES_MAX, FRAME_PAYLOAD_BYTES_MAX, IDLE_CONNECTIONS_PER_PEER_MAX,
    RECONNECT_BACKOFF_MAX, RECONNECT_BACKOFF_MIN, SNAPSHOT_CHUNK_BYTES_MAX,
    SNAPSHOT_INSTALL_BYTES_PER_SECOND_MIN, SNAPSHOT_INSTALL_TIMEOUT_BASE,
};
use super::rpc::{self, ErrorAnswer};
use super::tls::{self, peer_name, Stream};
use crate::replication::types::{Node, NodeId, Snapshot, TypeConfig, Vote};
use crate::replication::{DecodeError, EncodeError};
use crate::snapshot_file::ChunkSource;

/// Times a snapshot transfer restarts at offset 0 after the receiver reported a mismatch (it
/// was receiving another snapshot, or restarted). More means something else keeps interfering.
const SNAPSHOT_RESTARTS_MAX: usize = 3;

/// openraft's network factory: a [`PeerClient`] per target and purpose. Cheap to clone; holds
/// the local node's id (for timeout errors), its TLS identity, the addresses it dials instead
/// of the membership's and the idle connections its clients left behind.
#[derive(Clone)]
pub struct Network {
    id: NodeId,
    tls: Option<Arc<ClientConfig>>,
    dial: Arc<BTreeMap<NodeId, String>>,
    idle: Arc<IdleConnections>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("id", &self.id)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Network {
    /// The network of node `id`: mutual TLS with the configuration `tls` (the cluster CA as
    /// roots, this node's certificate as client identity), or plain TCP if `None`.
    pub fn new(id: NodeId, tls: Option<Arc<ClientConfig>>) -> Network {
        Network {
            id,
            tls,
            dial: Arc::new(BTreeMap::new()),
            idle: Arc::new(IdleConnections::default()),
        }
    }

    /// Dial peer `id` at `address` instead of the peer address its membership entry names
    /// (config `[dial]`: a tunnel, a sidecar, another network path; the fault tests put a
    /// proxy there). The peer still has to prove it is `node-<id>.tally`, so a wrong address
    /// reaches no other node's Raft.
    pub fn with_dial(mut self, dial: BTreeMap<NodeId, String>) -> Network {
        self.dial = Arc::new(dial);
        self
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        let mut node = node.clone();
        if let Some(address) = self.dial.get(&target) {
            node.peer_addr.clone_from(address);
        }
        PeerClient {
            id: self.id,
            target,
            node,
            tls: self.tls.clone(),
            connection: None,
            idle: Arc::clone(&self.idle),
            next_request_id: 1,
            failures: 0,
            retry_at: None,
            append_entries_limit: APPEND_ENTRIES_MAX,
        }
    }
}

/// Connections of dropped clients, by peer and address, for the next client to the same peer.
/// openraft makes a new client for every election's vote and every `ensure_linearizable`
/// round; reusing connections spares each of those a TCP handshake (a round trip) per peer.
#[derive(Debug, Default)]
struct IdleConnections {
    by_peer: Mutex<BTreeMap<(NodeId, String), Vec<Stream>>>,
}

impl IdleConnections {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<(NodeId, String), Vec<Stream>>> {
        // Only a panic inside `take` or `put` (which do not panic) could poison this, and the
        // map stays consistent whatever happened: keep using it.
        self.by_peer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn take(&self, target: NodeId, addr: &str) -> Option<Stream> {
        self.lock().get_mut(&(target, addr.to_owned()))?.pop()
    }

    fn put(&self, target: NodeId, addr: &str, stream: Stream) {
        let mut by_peer = self.lock();
        let idle = by_peer.entry((target, addr.to_owned())).or_default();
        if idle.len() < IDLE_CONNECTIONS_PER_PEER_MAX {
            idle.push(stream);
        }
    }
}

/// Whether a connection kept idle is still open: no bytes may arrive on an idle connection,
/// so "nothing to read" is the only healthy state. The end of the stream (a peer that
/// restarted or stopped) or stray bytes mean it must not carry the next request. (TLS sends
/// nothing unasked after the handshake: the listeners issue no session tickets.)
fn is_open(stream: &Stream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.tcp().try_read(&mut byte), Err(error) if error.kind() == io::ErrorKind::WouldBlock)
}

/// openraft's `RaftNetwork` to one target: one connection, one RPC at a time. See the module
/// docs.
#[derive(Debug)]
pub struct PeerClient {
    id: NodeId,
    target: NodeId,
    node: Node,
    /// Mutual TLS (the target must prove it is `tls::peer_name(target)`), or plain TCP.
    tls: Option<Arc<ClientConfig>>,
    /// The open connection, absent between a failure and the next call (and during a call).
    connection: Option<Stream>,
    /// Where the connection goes when this client is dropped, and comes from for a new one.
    idle: Arc<IdleConnections>,
    next_request_id: u64,
    /// Connection attempts that failed in a row.
    failures: u32,
    /// No connection attempt before this instant (backoff after a failure).
    retry_at: Option<Instant>,
    /// Entries this peer is sent in one AppendEntries: halved when one times out, doubled
    /// back after each that succeeds at the limit (see `append_entries`).
    append_entries_limit: usize,
}

/// Why a call got no answer, before it is turned into the error type of the openraft method.
#[derive(Debug)]
enum CallError {
    /// The peer refused, reset or closed the connection, or we are backing off from it.
    Unreachable(io::Error),
    /// The exchange failed otherwise (a damaged frame, an unexpected answer).
    Network(io::Error),
    /// No answer within the time allowed.
    Timeout(Duration),
    /// The peer answered with an error.
    Remote(ErrorAnswer),
    /// The request breaks a limit of the protocol (a bug upstream; never sent).
    Encode(EncodeError),
}

fn is_unreachable(error: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionRefused
            | ConnectionReset
            | ConnectionAborted
            | BrokenPipe
            | NotConnected
            | UnexpectedEof
            | AddrNotAvailable
            | HostUnreachable
            | NetworkUnreachable
    )
}

fn io_error(error: io::Error) -> CallError {
    if is_unreachable(&error) {
        CallError::Unreachable(error)
    } else {
        CallError::Network(error)
    }
}

fn frame_error(error: FrameError) -> CallError {
    match error {
        FrameError::Io(error) => io_error(error),
        FrameError::Truncated => CallError::Unreachable(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the peer closed the connection in the middle of an answer",
        )),
        other => CallError::Network(io::Error::other(other.to_string())),
    }
}

fn decode_error(what: &'static str) -> impl FnOnce(DecodeError) -> CallError {
    move |error| CallError::Network(io::Error::other(format!("{what} does not decode: {error}")))
}

/// How long openraft waits before calling an unreachable peer again: from
/// `RECONNECT_BACKOFF_MIN`, doubling per failure, up to `RECONNECT_BACKOFF_MAX`. The
/// simulator's network uses it too, so its replication recovers from a lost message as a
/// node's does.
pub fn reconnect_backoff() -> Backoff {
    Backoff::new((1..).map(backoff_delay))
}

/// The entries a peer is sent in one AppendEntries after a call that carried `entries` under
/// the limit `limit` ended so: half as many after a timeout (at least one), twice the limit
/// after a success at it (at most `APPEND_ENTRIES_MAX`), else unchanged.
fn next_append_limit<T>(limit: usize, entries: usize, answer: &Result<T, CallError>) -> usize {
    match answer {
        Err(CallError::Timeout(_)) if entries > 1 => (entries / 2).min(limit),
        Ok(_) if entries >= limit => limit.saturating_mul(2).min(APPEND_ENTRIES_MAX),
        _ => limit,
    }
}

/// Backoff before connection attempt `failures + 1`.
fn backoff_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    RECONNECT_BACKOFF_MIN
        .saturating_mul(1 << doublings)
        .min(RECONNECT_BACKOFF_MAX)
}

/// The API errors a method's `RaftError` may carry, built from an error answer.
trait ApiError: std::error::Error + Sized {
    fn from_mismatch(mismatch: SnapshotMismatch) -> Option<Self>;
}

impl ApiError for openraft::error::Infallible {
    fn from_mismatch(_: SnapshotMismatch) -> Option<Self> {
        None
    }
}

impl ApiError for InstallSnapshotError {
    fn from_mismatch(mismatch: SnapshotMismatch) -> Option<Self> {
        Some(InstallSnapshotError::SnapshotMismatch(mismatch))
    }
}

impl Drop for PeerClient {
    fn drop(&mut self) {
        if let Some(stream) = self.connection.take() {
            self.idle.put(self.target, &self.node.peer_addr, stream);
        }
    }
}

impl PeerClient {
    /// A connection: the one kept from the last call, an idle one another client left, or a
    /// new one unless backing off.
    async fn connection(&mut self) -> Result<Stream, CallError> {
        let kept = self.connection.take();
        let reused = kept.or_else(|| self.idle.take(self.target, &self.node.peer_addr));
        if let Some(stream) = reused.filter(is_open) {
            return Ok(stream);
        }
        let now = Instant::now();
        if let Some(at) = self.retry_at.filter(|at| *at > now) {
            return Err(CallError::Unreachable(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!(
                    "node {} at {} failed {} times; next attempt in {:?}",
                    self.target,
                    self.node.peer_addr,
                    self.failures,
                    at - now
                ),
            )));
        }
        // Counted before the attempt, so an attempt cut short by a timeout counts too.
        self.failures = self.failures.saturating_add(1);
        self.retry_at = Some(now + backoff_delay(self.failures));
        let stream = TcpStream::connect(self.node.peer_addr.as_str())
            .await
            .map_err(CallError::Unreachable)?;
        stream.set_nodelay(true).map_err(io_error)?;
        let stream = match &self.tls {
            None => Stream::Plain(stream),
            Some(config) => {
                let name = ServerName::try_from(peer_name(self.target)).map_err(|error| {
                    CallError::Network(io::Error::other(format!("peer name: {error}")))
                })?;
                // A handshake that fails (the address now answers with another node's or
                // another cluster's certificate) is treated like a refused connection: backed
                // off and retried, and logged, since it needs an operator.
                let connected = tokio_rustls::TlsConnector::from(Arc::clone(config))
                    .connect(name, stream)
                    .await
                    .map_err(|error| {
                        let error = tls::explain(error);
                        tracing::warn!(target = self.target, addr = %self.node.peer_addr, %error,
                            "TLS handshake with replica failed");
                        CallError::Unreachable(io::Error::new(
                            io::ErrorKind::ConnectionRefused,
                            error,
                        ))
                    })?;
                Stream::TlsClient(Box::new(connected))
            }
        };
        self.failures = 0;
        self.retry_at = None;
        tracing::debug!(target = self.target, addr = %self.node.peer_addr, "connected to replica");
        Ok(stream)
    }

    /// Send one request and read its answer. On success the connection is kept for the next
    /// call; on any failure (or if this future is dropped) it is closed.
    async fn exchange(&mut self, kind: u8, payload: Vec<u8>) -> Result<Frame, CallError> {
        let mut stream = self.connection().await?;
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        let request = Frame {
            kind,
            request_id,
            payload: Bytes::from(payload),
        };
        write_frame(&mut stream, &request).await.map_err(io_error)?;
        let answer = read_frame(&mut stream, FRAME_PAYLOAD_BYTES_MAX)
            .await
            .map_err(frame_error)?
            .ok_or_else(|| {
                CallError::Unreachable(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection before answering",
                ))
            })?;
        if answer.request_id != request_id {
            return Err(CallError::Network(io::Error::other(format!(
                "answer to request {} arrived for request {request_id}",
                answer.request_id
            ))));
        }
        self.connection = Some(stream);
        Ok(answer)
    }

    /// One RPC under `ttl`: the answer's payload if it is of `answer_kind`.
    async fn call(
        &mut self,
        kind: u8,
        payload: Result<Vec<u8>, EncodeError>,
        answer_kind: u8,
        ttl: Duration,
    ) -> Result<Bytes, CallError> {
        let payload = payload.map_err(CallError::Encode)?;
        let answer = tokio::time::timeout(ttl, self.exchange(kind, payload))
            .await
            .map_err(|_| CallError::Timeout(ttl))??;
        match answer.kind {
            kind if kind == answer_kind => Ok(answer.payload),
            rpc::KIND_ERROR => Err(CallError::Remote(
                rpc::decode_error_answer(&answer.payload).map_err(decode_error("error answer"))?,
            )),
            other => {
                self.connection = None;
                Err(CallError::Network(io::Error::other(format!(
                    "answer of kind {other} to a request of kind {kind}"
                ))))
            }
        }
    }

    fn log_failure(&self, action: RPCTypes, error: &CallError) {
        // Unreachable peers are the normal state of a down replica: openraft retries.
        match error {
            CallError::Unreachable(_) | CallError::Timeout(_) => {
                tracing::debug!(target = self.target, %action, ?error, "replica RPC failed");
            }
            _ => tracing::warn!(target = self.target, %action, ?error, "replica RPC failed"),
        }
    }

    fn rpc_error<E: ApiError>(
        &self,
        action: RPCTypes,
        error: CallError,
    ) -> RPCError<NodeId, Node, RaftError<NodeId, E>> {
        self.log_failure(action, &error);
        match error {
            CallError::Unreachable(error) => RPCError::Unreachable(Unreachable::new(&error)),
            CallError::Network(error) => RPCError::Network(NetworkError::new(&error)),
            CallError::Encode(error) => RPCError::Network(NetworkError::new(&error)),
            CallError::Timeout(timeout) => RPCError::Timeout(Timeout {
                action,
                id: self.id,
                target: self.target,
                timeout,
            }),
            CallError::Remote(answer) => {
                let source = if let Some(fatal) = answer.to_fatal() {
                    RaftError::Fatal(fatal)
                } else if let Some(api) = answer.to_snapshot_mismatch().and_then(E::from_mismatch) {
                    RaftError::APIError(api)
                } else {
                    return RPCError::Network(NetworkError::new(&answer));
                };
                RPCError::RemoteError(RemoteError::new_with_node(
                    self.target,
                    self.node.clone(),
                    source,
                ))
            }
        }
    }

    fn streaming_error(&self, error: CallError) -> StreamingError<TypeConfig, Fatal<NodeId>> {
        self.log_failure(RPCTypes::InstallSnapshot, &error);
        match error {
            CallError::Unreachable(error) => Unreachable::new(&error).into(),
            CallError::Network(error) => NetworkError::new(&error).into(),
            CallError::Encode(error) => NetworkError::new(&error).into(),
            CallError::Timeout(timeout) => Timeout {
                action: RPCTypes::InstallSnapshot,
                id: self.id,
                target: self.target,
                timeout,
            }
            .into(),
            CallError::Remote(answer) => match answer.to_fatal() {
                Some(fatal) => {
                    RemoteError::new_with_node(self.target, self.node.clone(), fatal).into()
                }
                None => NetworkError::new(&answer).into(),
            },
        }
    }

    /// Send one snapshot chunk and read the receiver's vote.
    async fn send_chunk(
        &mut self,
        payload: Result<Vec<u8>, EncodeError>,
        ttl: Duration,
    ) -> Result<InstallSnapshotResponse<NodeId>, CallError> {
        let answer = self
            .call(
                rpc::KIND_INSTALL_SNAPSHOT,
                payload,
                rpc::KIND_INSTALL_SNAPSHOT_RESPONSE,
                ttl,
            )
            .await?;
        rpc::decode_install_snapshot_response(&answer).map_err(decode_error("snapshot answer"))
    }

    /// Stream the image in `source` chunk by chunk, each read from its file on a blocking
    /// thread as it is due (see the module docs). Returns the receiver's vote: the leader's own
    /// once the snapshot is installed, or a higher one that ended the transfer.
    async fn stream_snapshot(
        &mut self,
        vote: &Vote,
        meta: &crate::replication::types::SnapshotMeta,
        source: &ChunkSource,
        option: &RPCOption,
    ) -> Result<Vote, CallError> {
        let chunk_bytes = option
            .snapshot_chunk_size()
            .unwrap_or(SNAPSHOT_CHUNK_BYTES_MAX)
            .clamp(1, SNAPSHOT_CHUNK_BYTES_MAX);
        let image_bytes = source.payload_bytes();
        let install_time = SNAPSHOT_INSTALL_TIMEOUT_BASE
            + Duration::from_secs(image_bytes / SNAPSHOT_INSTALL_BYTES_PER_SECOND_MIN);
        let mut restarts = 0;
        let mut offset = 0u64;
        loop {
            let started = std::time::Instant::now();
            let chunk = {
                let source = source.clone();
                tokio::task::spawn_blocking(move || source.read(offset, chunk_bytes))
                    .await
                    .map_err(io::Error::other)
                    .and_then(|read| read)
                    .map_err(|error| {
                        CallError::Network(io::Error::other(format!(
                            "reading the snapshot to send at offset {offset}: {error}"
                        )))
                    })?
            };
            let end = offset + chunk.len() as u64;
            let done = end == image_bytes;
            let ttl = if done {
                option.hard_ttl() + install_time
            } else {
                option.hard_ttl()
            };
            let read = started.elapsed();
            let payload = rpc::encode_install_snapshot(vote, meta, offset, done, &chunk);
            let sent = self.send_chunk(payload, ttl).await;
            tracing::debug!(
                target = self.target,
                offset,
                bytes = chunk.len(),
                read_us = read.as_micros() as u64,
                answered_us = (started.elapsed() - read).as_micros() as u64,
                ok = sent.is_ok(),
                "snapshot chunk"
            );
            match sent {
                Ok(answer) if answer.vote > *vote || done => return Ok(answer.vote),
                Ok(_) => offset = end,
                Err(CallError::Remote(ErrorAnswer::SnapshotMismatch { expect, got }))
                    if restarts < SNAPSHOT_RESTARTS_MAX =>
                {
                    tracing::info!(target = self.target, %expect, %got, "snapshot restarts at 0");
                    restarts += 1;
                    offset = 0;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        request: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        let action = RPCTypes::AppendEntries;
        // More entries than one message may carry, or than this peer took in time lately:
        // openraft splits the request when told so (and keeps to the hint for a few calls).
        //
        // Why the second: a call that times out drops its connection (its answer is never
        // read), so the next one connects and shakes hands again, then sends the same entries,
        // all within the same timeout (the heartbeat interval). A follower that must catch up
        // on a loaded host (after a partition heals, say) could fail that every time and never
        // catch up — the leader sending it the same 8 MiB for ever. Halving the entries per
        // call after each timeout makes every retry lighter until one fits; each call that
        // succeeds at the limit doubles it back.
        let entries = request.entries.len();
        if entries > self.append_entries_limit {
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(self.append_entries_limit as u64),
            ));
        }
        let answer = self
            .call(
                rpc::KIND_APPEND_ENTRIES,
                rpc::encode_append_entries(&request),
                rpc::KIND_APPEND_ENTRIES_RESPONSE,
                option.hard_ttl(),
            )
            .await;
        self.append_entries_limit = next_append_limit(self.append_entries_limit, entries, &answer);
        let answer = answer.map_err(|error| self.rpc_error(action, error))?;
        rpc::decode_append_entries_response(&answer)
            .map_err(decode_error("AppendEntries answer"))
            .map_err(|error| self.rpc_error(action, error))
    }

    async fn install_snapshot(
        &mut self,
        request: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let payload = rpc::encode_install_snapshot(
            &request.vote,
            &request.meta,
            request.offset,
            request.done,
            &request.data,
        );
        self.send_chunk(payload, option.hard_ttl())
            .await
            .map_err(|error| self.rpc_error(RPCTypes::InstallSnapshot, error))
    }

    async fn vote(
        &mut self,
        request: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        let action = RPCTypes::Vote;
        let answer = self
            .call(
                rpc::KIND_VOTE,
                Ok(rpc::encode_vote_request(&request)),
                rpc::KIND_VOTE_RESPONSE,
                option.hard_ttl(),
            )
            .await
            .map_err(|error| self.rpc_error(action, error))?;
        rpc::decode_vote_response(&answer)
            .map_err(decode_error("Vote answer"))
            .map_err(|error| self.rpc_error(action, error))
    }

    /// Streams the snapshot in chunks with timeouts of our own; see the module docs for why
    /// openraft's default (`Chunked`) is not used.
    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let meta = snapshot.meta;
        let mut data = snapshot.snapshot;
        let source = data.chunks().map_err(|error| {
            self.streaming_error(CallError::Network(io::Error::other(format!(
                "opening the snapshot to send: {error}"
            ))))
        })?;
        tracing::info!(target = self.target, snapshot = %meta, bytes = source.payload_bytes(), "sending snapshot");
        let result = tokio::select! {
            closed = cancel => return Err(closed.into()),
            result = self.stream_snapshot(&vote, &meta, &source, &option) => result,
        };
        let answered = result.map_err(|error| self.streaming_error(error))?;
        tracing::info!(target = self.target, snapshot = %meta, "snapshot sent");
        Ok(SnapshotResponse::new(answered))
    }

    fn backoff(&self) -> Backoff {
        reconnect_backoff()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves reconnect backoff starts at the minimum, doubles, and stays at the maximum.
    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let delays: Vec<_> = (1..=12).map(backoff_delay).collect();
        assert_eq!(delays[0], RECONNECT_BACKOFF_MIN);
        assert_eq!(delays[1], RECONNECT_BACKOFF_MIN * 2);
        assert_eq!(delays[2], RECONNECT_BACKOFF_MIN * 4);
        assert!(delays.windows(2).all(|pair| pair[0] <= pair[1]));
        assert_eq!(delays[11], RECONNECT_BACKOFF_MAX);
        assert_eq!(backoff_delay(u32::MAX), RECONNECT_BACKOFF_MAX);
    }

    /// Proves a peer that times out is sent fewer entries each time, down to one, and more
    /// again once it keeps up: from a timed-out message of 8 entries, the retries carry 4, 2
    /// and 1; successes at the limit double it back to the protocol's maximum, and no further.
    #[test]
    fn append_entries_shrink_on_timeouts_and_grow_back() {
        let timeout: Result<(), CallError> = Err(CallError::Timeout(Duration::from_millis(200)));
        let ok: Result<(), CallError> = Ok(());
        let mut limit = APPEND_ENTRIES_MAX;
        let mut sent = Vec::new();
        let mut entries = 8;
        for _ in 0..5 {
            sent.push(entries);
            limit = next_append_limit(limit, entries, &timeout);
            entries = entries.min(limit);
        }
        assert_eq!(sent, [8, 4, 2, 1, 1]);
        assert_eq!(limit, 1);
        // A heartbeat timing out changes nothing; neither does a success below the limit.
        assert_eq!(next_append_limit(4, 0, &timeout), 4);
        assert_eq!(next_append_limit(4, 3, &ok), 4);
        let mut steps = 0;
        while limit < APPEND_ENTRIES_MAX {
            limit = next_append_limit(limit, limit, &ok);
            steps += 1;
        }
        assert_eq!(steps, APPEND_ENTRIES_MAX.trailing_zeros());
        assert_eq!(next_append_limit(limit, limit, &ok), APPEND_ENTRIES_MAX);
        // Other failures (unreachable, refused) say nothing about the message's size.
        let refused: Result<(), CallError> = Err(CallError::Unreachable(io::Error::other("down")));
        assert_eq!(next_append_limit(64, 64, &refused), 64);
    }
}
