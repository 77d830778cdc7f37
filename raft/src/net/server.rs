//! The server side of a node's two listeners: the **peer** listener (replica RPCs, answered
//! with the local Raft by [`super::rpc::answer`]) and the **client** listener (frames handed to
//! the node's [`ClientHandler`]). Each says who may speak on it (docs/security.md):
//! - Peer listener ([`serve_peers`]): only a replica holding a certificate of the cluster CA
//!   that names a member of the current membership (`tls::peer_identity`). The TLS handshake
//!   refuses a peer with no certificate or one from another CA; a certificate naming a node
//!   that is not (or no longer) a member is refused right after it, before any frame is read,
//!   and checked again before each request (a node removed while connected is cut off). Each
//!   request must come from the node the certificate names. Only replica frame kinds.
//! - Client listener ([`serve_clients`]): TLS (the client verifies the node); who the client
//!   is, is the handler's business (credentials, sessions). Only client frame kinds.
//! - Without TLS (`insecure_plaintext`) both listeners serve plain TCP and the peer listener
//!   cannot tell who connects: for tests and trusted networks only, and said loudly.
//!
//! Per connection, a reader loop and a writer task joined by a bounded [`Replies`] channel:
//! - Frames are handled in arrival order, each awaited before the next is read. A replica
//!   request is answered inline: openraft's calls on one client are sequential anyway, and a
//!   slow answer (a snapshot being installed) holds only the connection it came on.
//! - A frame that fails its checks (magic, version, length limit — per kind, before the payload
//!   is allocated: the client handler sets its kinds' limits — checksum) closes that connection
//!   only: the stream is no longer at a frame boundary. It is logged; the node and its other
//!   connections are untouched, and the peer reconnects.
//! - Each listener has its own connection budget (`PEER_CONNECTIONS_MAX`,
//!   `CLIENT_CONNECTIONS_MAX`): clients cannot starve replication of sockets, nor the reverse.
//!   One more is closed at once.
//! - A connection must finish its TLS handshake and deliver its first frame within
//!   `FIRST_FRAME_TIMEOUT`, or it is closed (a slow or idle stranger holds a slot only that
//!   long).
//! - Every refusal is counted in `tally_connections_refused_total{listener, reason}`.
//! - When `shutdown` becomes true the server stops accepting, closes its connections and
//!   returns once they are gone.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::ServerConfig;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::frame::{read_frame_limited, write_frame, Frame, FrameError};
use super::limits::{
    ACCEPT_ERROR_PAUSE, CLIENT_CONNECTIONS_MAX, FIRST_FRAME_TIMEOUT, FRAME_PAYLOAD_BYTES_MAX,
    PEER_CONNECTIONS_MAX, REPLIES_QUEUE_DEPTH,
};
use super::tls::{self, Stream};
use super::{rpc, ClientHandler, Replies, RAFT_KIND_LAST};
use crate::metrics::{Listener, NodeMetrics, Refused, Reject};
use crate::replication::types::{NodeId, TypeConfig};

/// Resolves once `shutdown` is true, or its sender is gone (nobody can stop us any more, so
/// the owner is gone: stop too).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// The first byte of a TLS ClientHello: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// A fatal TLS alert record (TLS 1.2 record version, as servers send before they know the
/// version): `protocol_version` (70).
const TLS_ALERT_PROTOCOL_VERSION: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 70];

/// What a connection's frames go to.
#[derive(Clone)]
enum Serving {
    Peers(openraft::Raft<TypeConfig>),
    Clients(Arc<dyn ClientHandler>),
}

impl Serving {
    fn listener(&self) -> Listener {
        match self {
            Serving::Peers(_) => Listener::Peer,
            Serving::Clients(_) => Listener::Client,
        }
    }
}

/// Serve replica RPCs on `listener` until `shutdown` becomes true, with mutual TLS under
/// `tls` (a config that requires a client certificate of the cluster CA), or plain TCP if
/// `None`. See the module docs.
pub async fn serve_peers(
    listener: TcpListener,
    raft: openraft::Raft<TypeConfig>,
    tls: Option<Arc<ServerConfig>>,
    metrics: NodeMetrics,
    shutdown: watch::Receiver<bool>,
) {
    serve(
        listener,
        Serving::Peers(raft),
        tls,
        PEER_CONNECTIONS_MAX,
        metrics,
        shutdown,
    )
    .await;
}

/// Serve the client protocol on `listener` until `shutdown` becomes true, with TLS under
/// `tls`, or plain TCP if `None`. See the module docs.
pub async fn serve_clients(
    listener: TcpListener,
    clients: Arc<dyn ClientHandler>,
    tls: Option<Arc<ServerConfig>>,
    metrics: NodeMetrics,
    shutdown: watch::Receiver<bool>,
) {
    serve(
        listener,
        Serving::Clients(clients),
        tls,
        CLIENT_CONNECTIONS_MAX,
        metrics,
        shutdown,
    )
    .await;
}

async fn serve(
    listener: TcpListener,
    serving: Serving,
    tls: Option<Arc<ServerConfig>>,
    connections_max: usize,
    metrics: NodeMetrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(connections_max));
    let mut connections = JoinSet::new();
    let local = listener.local_addr().ok();
    let which = serving.listener();
    tracing::info!(
        ?local,
        listener = which.label(),
        tls = tls.is_some(),
        "serving"
    );
    loop {
        tokio::select! {
            () = stopped(&mut shutdown) => break,
            // Reap finished connections so the set does not grow with the node's uptime.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                        tracing::debug!(%peer, listener = which.label(), limit = connections_max,
                            "too many connections; closing");
                        metrics.refuse(which, Refused::Budget);
                        continue;
                    };
                    metrics.connections_accepted.inc();
                    let open = OpenConnection::new(&metrics);
                    let (serving, tls, metrics, shutdown) =
                        (serving.clone(), tls.clone(), metrics.clone(), shutdown.clone());
                    connections.spawn(async move {
                        let _open = open;
                        connection(stream, peer, serving, tls, metrics, shutdown, permit).await;
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
    tracing::info!(?local, listener = which.label(), "stopped serving");
}

/// Counts an open connection in `tally_connections` until dropped.
struct OpenConnection(prometheus::IntGauge);

impl OpenConnection {
    fn new(metrics: &NodeMetrics) -> OpenConnection {
        metrics.connections.inc();
        OpenConnection(metrics.connections.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The ids of the nodes in `raft`'s current membership (voters and learners).
fn members(raft: &openraft::Raft<TypeConfig>) -> Vec<NodeId> {
    let metrics = raft.metrics();
    let metrics = metrics.borrow();
    metrics
        .membership_config
        .membership()
        .nodes()
        .map(|(id, _)| *id)
        .collect()
}

/// Whether the peer named `id` by its certificate may speak now: a member of the current
/// membership, or anyone of the cluster CA while this node has no membership yet (a fresh
/// node waiting to be added: it has nothing to protect, and the leader adding it must reach
/// it before it learns the membership).
fn may_speak(raft: &openraft::Raft<TypeConfig>, id: NodeId) -> bool {
    let members = members(raft);
    members.is_empty() || members.contains(&id)
}

/// The TLS handshake (if any) and, on the peer listener, the peer's identity. `Err` is the
/// refusal to count.
async fn accept(
    stream: TcpStream,
    serving: &Serving,
    tls: Option<Arc<ServerConfig>>,
) -> Result<(Stream, Option<NodeId>), (Refused, String)> {
    let stream = match tls {
        None => Stream::Plain(stream),
        Some(config) => {
            // A client speaking plain frames to a TLS port gets a TLS alert record, as from
            // any TLS server, which the client library recognises and reports as such (rustls
            // itself closes without a word on a first byte that is not a handshake record).
            let mut first = [0u8; 1];
            if matches!(stream.peek(&mut first).await, Ok(1) if first[0] != TLS_HANDSHAKE_RECORD) {
                let mut stream = stream;
                let _ = stream.write_all(&TLS_ALERT_PROTOCOL_VERSION).await;
                let _ = stream.shutdown().await;
                return Err((Refused::Handshake, "not TLS".to_owned()));
            }
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let stream = acceptor
                .accept(stream)
                .await
                .map_err(|error| (Refused::Handshake, tls::explain(error).to_string()))?;
            Stream::TlsServer(Box::new(stream))
        }
    };
    let Serving::Peers(raft) = serving else {
        return Ok((stream, None));
    };
    if matches!(stream, Stream::Plain(_)) {
        return Ok((stream, None));
    }
    let Some(certificate) = stream.peer_certificate() else {
        return Err((Refused::Handshake, "no peer certificate".to_owned()));
    };
    let Some(id) = tls::peer_identity(certificate) else {
        return Err((
            Refused::NotMember,
            "the certificate names no node (node-<id>.tally)".to_owned(),
        ));
    };
    if !may_speak(raft, id) {
        return Err((
            Refused::NotMember,
            format!("node {id} is not a member of the current membership"),
        ));
    }
    Ok((stream, Some(id)))
}

/// One connection: handshake, then the reader loop here and the writer in its own task.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    serving: Serving,
    tls: Option<Arc<ServerConfig>>,
    metrics: NodeMetrics,
    mut shutdown: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "could not set TCP_NODELAY");
    }
    let which = serving.listener();
    let refuse = |reason: Refused, why: &str| {
        tracing::warn!(%peer, listener = which.label(), reason = reason.label(), why, "refused a connection");
        metrics.refuse(which, reason);
    };
    let deadline = tokio::time::Instant::now() + FIRST_FRAME_TIMEOUT;
    let accepted = tokio::select! {
        () = stopped(&mut shutdown) => return,
        accepted = tokio::time::timeout_at(deadline, accept(stream, &serving, tls)) => accepted,
    };
    let (stream, identity) = match accepted {
        Ok(Ok(accepted)) => accepted,
        Ok(Err((reason, why))) => return refuse(reason, &why),
        Err(_) => return refuse(Refused::Timeout, "no TLS handshake in time"),
    };
    let (mut reader, mut writer) = tokio::io::split(stream);
    // Replica RPCs may carry up to the frame limit; client kinds as much as their handler says.
    // A frame of the other listener's kinds is refused before its payload is read.
    let payload_bytes_max = |kind: u8| match &serving {
        Serving::Peers(_) if kind <= RAFT_KIND_LAST => FRAME_PAYLOAD_BYTES_MAX,
        Serving::Clients(clients) if kind > RAFT_KIND_LAST => {
            clients.payload_bytes_max(kind).min(FRAME_PAYLOAD_BYTES_MAX)
        }
        _ => 0,
    };
    let (replies, mut outgoing): (Replies, _) = mpsc::channel::<Frame>(REPLIES_QUEUE_DEPTH);
    let mut writer_task = tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            if let Err(error) = write_frame(&mut writer, &frame).await {
                tracing::debug!(%peer, %error, "connection closed while writing");
                return;
            }
        }
    });
    let mut first = true;
    // After answering an oversized frame: its payload bytes still arriving, read and dropped
    // (briefly, boundedly) so closing does not reset the connection under the answer.
    let mut drain = 0usize;
    loop {
        let read = async {
            let read = read_frame_limited(&mut reader, &payload_bytes_max);
            if first {
                tokio::time::timeout_at(deadline, read).await.ok()
            } else {
                Some(read.await)
            }
        };
        let frame = tokio::select! {
            () = stopped(&mut shutdown) => break,
            read = read => match read {
                None => {
                    refuse(Refused::Timeout, "no first frame in time");
                    break;
                }
                Some(Ok(Some(frame))) => frame,
                Some(Ok(None)) => break,
                Some(Err(error)) => {
                    tracing::warn!(%peer, %error, "closing connection: unreadable frame");
                    match error {
                        FrameError::TooLarge { kind, request_id, length, limit } => {
                            metrics.reject(Reject::TooLarge);
                            // The client hears why before the connection closes.
                            if let Serving::Clients(clients) = &serving {
                                if let Some(answer) = clients.too_large(kind, request_id, length, limit) {
                                    if replies.try_send(answer).is_ok() {
                                        drain = length.min(2 * FRAME_PAYLOAD_BYTES_MAX);
                                    }
                                }
                            }
                        }
                        FrameError::Io(_) | FrameError::Truncated => {}
                        _ => metrics.reject(Reject::Malformed),
                    }
                    break;
                }
            },
        };
        first = false;
        let peer_kind = frame.kind <= RAFT_KIND_LAST;
        if peer_kind != matches!(serving, Serving::Peers(_)) {
            refuse(
                Refused::Kind,
                &format!("frame kind {} does not belong on this listener", frame.kind),
            );
            break;
        }
        match &serving {
            Serving::Peers(raft) => {
                // A node removed while connected is cut off at its next request.
                if let Some(id) = identity.filter(|id| !may_speak(raft, *id)) {
                    refuse(
                        Refused::NotMember,
                        &format!("node {id} left the membership"),
                    );
                    break;
                }
                let answer = tokio::select! {
                    () = stopped(&mut shutdown) => break,
                    answer = rpc::answer(raft, frame, identity) => answer,
                };
                // A peer that does not read fills the queue; shutting down must not wait for it.
                let sent = tokio::select! {
                    () = stopped(&mut shutdown) => break,
                    sent = replies.send(answer) => sent,
                };
                if sent.is_err() {
                    break;
                }
            }
            Serving::Clients(clients) => {
                tokio::select! {
                    () = stopped(&mut shutdown) => break,
                    () = clients.handle(frame, replies.clone()) => {}
                }
            }
        }
    }
    drop(replies);
    // Let queued answers go out unless the node is stopping (handlers' spawned tasks may hold
    // more senders; the writer ends when the last is dropped).
    tokio::select! {
        () = stopped(&mut shutdown) => writer_task.abort(),
        _ = &mut writer_task => {}
    }
    if drain > 0 {
        let _ = tokio::time::timeout(OVERSIZED_DRAIN_TIME, async {
            let mut sink = vec![0u8; 64 * 1024];
            while drain > 0 {
                match tokio::io::AsyncReadExt::read(&mut reader, &mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(read) => drain = drain.saturating_sub(read),
                }
            }
        })
        .await;
    }
}

/// How long the payload of an oversized frame is drained after its answer is sent.
const OVERSIZED_DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(1);
