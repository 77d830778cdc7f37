//! Tally's gateway: the server side of the one client protocol (its codec is the client
//! crate's, `tally_client::protocol`; docs/protocol.md "Gateway protocol"), served on every
//! node's client listener, with sessions, authentication, role and scope checks, limits and
//! back-pressure ("busy" instead of queues that grow), and the operators' node state and
//! administration. Entry points: [`Gateway`] (a `tally_raft::net::ClientHandler` built from the
//! node's parts) and [`Batcher`], which packs the client batches queued on the leader into Raft
//! entries. It never touches the disk and never decides a balance: it checks who may send
//! what, then hands batches to the batcher, reads from the applied engine state and asks
//! openraft for administration.

#![warn(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod admin;
pub mod auth;
pub mod batcher;
pub mod limits;
pub mod metrics;
mod scope;
pub mod server;
mod session;

pub use auth::{
    credential_hash, credential_hash_hex, parse_hash, Credential, GatewayConfig, Role, Scope,
};
pub use batcher::{Batcher, BatcherConfig, BatcherError, CommittedBatch};
pub use metrics::GatewayMetrics;
pub use server::{Gateway, GatewayParts};
