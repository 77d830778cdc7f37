//! Tally's gateway: the binary client protocol served on every node's port, with sessions,
//! authentication, role and scope checks, limits and back-pressure ("busy" instead of queues
//! that grow). Entry points: [`protocol`] (the codec, docs/protocol.md "Gateway protocol") and
//! [`Gateway`] (the server, a `tally_raft::net::ClientHandler` given to `Node::start`).
//! It never touches the disk and never decides a balance: it checks who may send what, then
//! hands batches to the leader's batcher and reads from the applied engine state.

#![warn(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod admin;
pub mod auth;
pub mod client;
pub mod connection;
pub mod limits;
mod operator;
pub mod protocol;
mod reply;
mod scope;
pub mod server;
mod session;

pub use auth::{
    credential_hash, credential_hash_hex, parse_hash, Credential, GatewayConfig, Role, Scope,
};
pub use server::Gateway;
