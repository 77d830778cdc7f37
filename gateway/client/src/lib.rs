//! Tally's client library: everything a program needs to use a Tally cluster, and nothing of
//! the server. [`protocol`] is the client protocol's codec (docs/protocol.md, "Gateway
//! protocol"), for every role: submitters, readers and operators; [`connection`] one TLS
//! connection to a node with many requests in flight; [`client`] the [`Client`] that finds the
//! leader, keeps a session, packs concurrent calls into requests and retries without ever
//! applying anything twice. `tally client`, `tally admin`, the load generator and the tests use
//! it; it depends on neither openraft, io-uring, prometheus nor `tally-raft`
//! (`tests/tidy.rs` keeps it so).

#![warn(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod access_trail;
pub mod client;
pub mod connection;
pub mod limits;
mod operator;
pub mod proofs;
pub mod protocol;
pub mod query;
mod reply;

pub use client::{Client, ClientConfig, ClientError, Created, HistoryReached, Reads};
pub use tally_wire::tls::ClientTls;
