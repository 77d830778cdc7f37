//! The admin HTTP port of `tally node` (`admin_listen`): what Prometheus and orchestrators ask.
//!
//! - `GET /metrics`: every metric in Prometheus's text format (catalog: docs/operations.md).
//! - `GET /health`: `200 ok` while the node can do its job; `503` with the reason once its WAL
//!   is poisoned or its Raft stopped on a fatal error (`Probe::health`). Neither heals without
//!   a restart (`tally node` exits on it by itself); for liveness probes.
//! - `GET /ready`: `200 ready` when the node knows a leader, is a member and has applied what
//!   it knows to be committed (`Probe::readiness`); `503` with the reason otherwise. For load
//!   balancers and rolling upgrades: wait for it before stopping the next node.
//!
//! The port carries no ledger data and accepts no writes; bind it to a management network. It
//! holds at most [`ADMIN_CONNECTIONS_MAX`] connections and closes one whose request headers do
//! not arrive within [`ADMIN_HEADER_READ_TIMEOUT`], so nobody who can reach it can pin the
//! node's sockets or memory through it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::node::Probe;
use anyhow::Context;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// Prometheus's text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn metrics(probe: Probe) -> impl IntoResponse {
    // A scrape takes the applied state's read lock for a moment; not on a runtime worker.
    match tokio::task::spawn_blocking(move || probe.scrape()).await {
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
            text,
        ),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("scrape failed: {error}\n"),
        ),
    }
}

async fn health(probe: Probe) -> (StatusCode, String) {
    match probe.health() {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {reason}\n"),
        ),
    }
}

async fn ready(probe: Probe) -> (StatusCode, String) {
    match probe.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}

/// The routes, for one node's probe.
pub fn router(probe: Probe) -> Router {
    let for_metrics = probe.clone();
    let for_health = probe.clone();
    Router::new()
        .route("/metrics", get(move || metrics(for_metrics.clone())))
        .route("/health", get(move || health(for_health.clone())))
        .route("/ready", get(move || ready(probe.clone())))
}

/// Bind the admin address (before the node starts, so a taken port fails the start at once).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on the admin address {addr}"))
}

/// Connections the admin port holds at once; one more is closed at once. Prometheus keeps
/// one per server, a supervisor or load balancer a few: 64 leaves room for all of them while a
/// stranger on the management network can hold only this many sockets, never the node's
/// client or peer budgets (those are separate).
pub const ADMIN_CONNECTIONS_MAX: usize = 64;

/// Time a connection has to send a request's headers (the first request's, and each next one
/// on a kept-alive connection, from its first byte); a connection that does not is closed. A
/// scrape's request is a few hundred bytes, so 5 s only ever cuts off a stalled or idle client.
pub const ADMIN_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Serve the routes on `listener` until `stop` is true: HTTP/1 on hyper, at most
/// [`ADMIN_CONNECTIONS_MAX`] connections, each closed if a request's headers do not arrive
/// within [`ADMIN_HEADER_READ_TIMEOUT`] or if its first request does not come within it.
pub fn serve(
    listener: TcpListener,
    probe: Probe,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    if let Ok(local) = listener.local_addr() {
        tracing::info!(%local, "admin HTTP: /metrics /health /ready");
    }
    serve_router(listener, router(probe), stop)
}

/// Serve `routes` on `listener` until `stop` is true, under [`serve`]'s limits: the node's
/// admin port, and `tally cdc --metrics`.
pub fn serve_router(
    listener: TcpListener,
    routes: Router,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let service = TowerToHyperService::new(routes);
    tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(ADMIN_CONNECTIONS_MAX));
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                () = async { let _ = stop.wait_for(|stop| *stop).await; } => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            tracing::warn!(%error, "admin HTTP: accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                        tracing::debug!(%peer, limit = ADMIN_CONNECTIONS_MAX,
                            "admin HTTP: too many connections; closing");
                        continue;
                    };
                    let service = service.clone();
                    connections.spawn(async move {
                        let _permit = permit;
                        let io = TokioIo::new(stream);
                        // Nothing at all within the header timeout (not even a first byte,
                        // which is when hyper's own header timer starts): closed too.
                        if tokio::time::timeout(ADMIN_HEADER_READ_TIMEOUT, io.inner().readable())
                            .await
                            .is_err()
                        {
                            return;
                        }
                        let connection = http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(ADMIN_HEADER_READ_TIMEOUT)
                            .serve_connection(io, service);
                        if let Err(error) = connection.await {
                            tracing::debug!(%peer, %error, "admin HTTP connection ended");
                        }
                    });
                }
            }
        }
        drop(listener);
        connections.shutdown().await;
    })
}
