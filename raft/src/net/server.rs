//! The server side of a node's port: accept connections, read frames, answer replica RPCs with
//! the local Raft ([`super::rpc::answer`]) and hand client frames to the [`ClientHandler`].
//!
//! Per connection, a reader loop and a writer task joined by a bounded [`Replies`] channel:
//! - Frames are handled in arrival order, each awaited before the next is read. A replica
//!   request is answered inline: openraft's calls on one client are sequential anyway, and a
//!   slow answer (a snapshot being installed) holds only the connection it came on.
//! - A frame that fails its checks (magic, version, length limit — per kind: the client
//!   handler may set a smaller one for its kinds — checksum) closes that connection only: the stream is no longer at a frame boundary. It is logged; the node and
//!   its other connections are untouched, and the peer reconnects.
//! - At most `CONNECTIONS_MAX` connections; one more is closed at once.
//! - When `shutdown` becomes true the server stops accepting, closes its connections and
//!   returns once they are gone.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::frame::{read_frame_limited, write_frame, Frame, FrameError};
use super::limits::{
    ACCEPT_ERROR_PAUSE, CONNECTIONS_MAX, FRAME_PAYLOAD_BYTES_MAX, REPLIES_QUEUE_DEPTH,
};
use super::{rpc, ClientHandler, Replies, RAFT_KIND_LAST};
use crate::metrics::{NodeMetrics, Reject};
use crate::replication::types::TypeConfig;

/// Resolves once `shutdown` is true, or its sender is gone (nobody can stop us any more, so
/// the owner is gone: stop too).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Serve the node's port on `listener` until `shutdown` becomes true: replica RPCs (frame kinds
/// `1..=RAFT_KIND_LAST`) are answered by `raft`, every other kind goes to `clients` (a
/// connection sending one to a server without a client handler is closed). See the module docs.
pub async fn serve(
    listener: TcpListener,
    raft: openraft::Raft<TypeConfig>,
    clients: Option<Arc<dyn ClientHandler>>,
    metrics: NodeMetrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let mut connections = JoinSet::new();
    let local = listener.local_addr().ok();
    tracing::info!(?local, "serving");
    loop {
        tokio::select! {
            () = stopped(&mut shutdown) => break,
            // Reap finished connections so the set does not grow with the node's uptime.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                        tracing::warn!(%peer, limit = CONNECTIONS_MAX, "too many connections; closing");
                        continue;
                    };
                    metrics.connections_accepted.inc();
                    let open = OpenConnection::new(&metrics);
                    let (raft, clients, metrics, shutdown) =
                        (raft.clone(), clients.clone(), metrics.clone(), shutdown.clone());
                    connections.spawn(async move {
                        let _open = open;
                        connection(stream, peer, raft, clients, metrics, shutdown, permit).await;
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
    tracing::info!(?local, "stopped serving");
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

/// One connection: the reader loop here, the writer in its own task.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    raft: openraft::Raft<TypeConfig>,
    clients: Option<Arc<dyn ClientHandler>>,
    metrics: NodeMetrics,
    mut shutdown: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "could not set TCP_NODELAY");
    }
    let (mut reader, mut writer) = stream.into_split();
    // Replica RPCs may carry up to the frame limit; client kinds as much as their handler says.
    let payload_bytes_max = |kind: u8| match &clients {
        Some(clients) if kind > RAFT_KIND_LAST => {
            clients.payload_bytes_max(kind).min(FRAME_PAYLOAD_BYTES_MAX)
        }
        _ => FRAME_PAYLOAD_BYTES_MAX,
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
    loop {
        let frame = tokio::select! {
            () = stopped(&mut shutdown) => break,
            read = read_frame_limited(&mut reader, &payload_bytes_max) => match read {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(%peer, %error, "closing connection: unreadable frame");
                    match error {
                        FrameError::TooLarge { .. } => metrics.reject(Reject::TooLarge),
                        FrameError::Io(_) | FrameError::Truncated => {}
                        _ => metrics.reject(Reject::Malformed),
                    }
                    break;
                }
            },
        };
        if frame.kind <= RAFT_KIND_LAST {
            let answer = tokio::select! {
                () = stopped(&mut shutdown) => break,
                answer = rpc::answer(&raft, frame) => answer,
            };
            // A peer that does not read fills the queue; shutting down must not wait for it.
            let sent = tokio::select! {
                () = stopped(&mut shutdown) => break,
                sent = replies.send(answer) => sent,
            };
            if sent.is_err() {
                break;
            }
        } else if let Some(clients) = &clients {
            tokio::select! {
                () = stopped(&mut shutdown) => break,
                () = clients.handle(frame, replies.clone()) => {}
            }
        } else {
            tracing::warn!(%peer, kind = frame.kind, "closing connection: client frame on a replica-only server");
            break;
        }
    }
    drop(replies);
    // Let queued answers go out unless the node is stopping (handlers' spawned tasks may hold
    // more senders; the writer ends when the last is dropped).
    tokio::select! {
        () = stopped(&mut shutdown) => writer_task.abort(),
        _ = &mut writer_task => {}
    }
}
