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
//! The port carries no ledger data and accepts no writes; bind it to a management network.

use std::net::SocketAddr;

use crate::node::Probe;
use anyhow::Context;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Prometheus's text exposition format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

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

/// Serve the routes on `listener` until `stop` is true.
pub fn serve(
    listener: TcpListener,
    probe: Probe,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    if let Ok(local) = listener.local_addr() {
        tracing::info!(%local, "admin HTTP: /metrics /health /ready");
    }
    tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        if let Err(error) = axum::serve(listener, router(probe))
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::warn!(%error, "admin HTTP server stopped");
        }
    })
}
