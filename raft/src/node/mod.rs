//! A Tally node: one replica's storage, openraft, the replica network, the batcher and the
//! client protocol, started and stopped together.
//!
//! - [`protocol`]: the client protocol's messages (docs/protocol.md).
//! - [`batcher`]: packs client batches into Raft entries on the leader.
//! - [`service`]: serves the client protocol on the node's port.
//! - [`client`]: a client of that protocol, for the CLI, tests and drivers.
//!
//! Lifecycle: [`Node::start`] opens the data directory (restoring the newest snapshot and the
//! log after it), starts openraft and serves on the listen address; if the node is fresh and
//! the config names bootstrap members, it initializes the cluster. [`Node::shutdown`] stops
//! accepting batches, lets the queued and in-flight ones commit and answer, stops openraft
//! (whose log store flushes and closes the WAL) and stops serving.

pub mod batcher;
pub mod client;
pub mod protocol;
pub mod service;

pub use batcher::{Batcher, BatcherConfig};
pub use service::Service;
