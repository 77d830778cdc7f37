//! Tally's settlement engine: the deterministic state machine every replica runs in log order.
//!
//! It owns the data model (accounts, transfers, DvP trades), validation with one result code per
//! event, `Engine::apply`, queries (lookups, statements, balances as of a time), snapshots and the
//! state digest. Entry point: [`Engine::apply`].
//!
//! It must not do I/O, read a clock, use randomness, or let hash-map iteration order reach any
//! output: same log ⇒ same results, state and digest on every machine.

#![warn(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod access_log;
mod account;
mod arena;
pub mod checkpoint;
pub mod cycle;
mod digest;
mod engine;
mod event_log;
mod feed;
mod index;
mod leg;
pub mod limits;
mod memory;
pub mod merkle;
pub mod netting;
mod pending;
pub mod query;
pub mod records;
mod result;
pub mod search;
pub mod settlement;
mod settlement_run;
pub mod settlement_store;
pub mod settlement_wire;
mod snapshot;
mod snapshot_read;
mod snapshot_restore;
mod snapshot_sections;
mod state;
mod trade;
mod transfer;
mod warm;
pub mod witness;

pub use access_log::{
    AccessEntry, AccessProof, ACCESS_LEAF_ACCOUNT_BYTES, ACCESS_LEAF_HEADER_BYTES,
    ACCESS_LEAF_VERSION, ACCESS_NAME_BYTES, ACCESS_ORIGIN_SUFFIX, NO_PREVIOUS,
};
pub use engine::{BatchError, BatchOutcome, Engine, EngineConfig, Operation};
pub use event_log::{
    CheckpointRefused, EventProof, LeafHashWorker, LogPosition, LEAF_BYTES, LEAF_VERSION,
};
pub use feed::{FeedEntry, LedgerEvent};
pub use memory::{chunk_supply, ChunkMaker, ChunkSupply, MemoryUsage};
pub use query::{LedgerTotals, QueryError, StatementEntry, StatementEvent, StatementFilter};
pub use records::{
    Account, AccountFlags, InstructionFlags, RecordError, Settlement, Trade, TradeFlags, Transfer,
    TransferFlags,
};
pub use result::EventResult;
pub use search::{Position, QueryFilter, QueryPage};
pub use snapshot::{
    section_hash, FrozenState, RestoreStart, Section, SectionEncoder, SectionKind, SectionVersion,
    SnapshotError, SnapshotSection, SnapshotSections, TrailerHasher, SECTION_HASH_BYTES,
    SNAPSHOT_HEADER_BYTES,
};
pub use state::Balances;
#[cfg(test)]
mod feed_tests;
#[cfg(test)]
mod query_tests;
#[cfg(test)]
mod scenarios;
