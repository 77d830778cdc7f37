//! The sections of a snapshot, one at a time: what lets a snapshot writer take the sections
//! unchanged since an earlier snapshot from where it kept them (incremental snapshots, see
//! `snapshot.rs` for the format and `FrozenState::sections`).

use std::sync::atomic::{AtomicU64, Ordering};

use rkyv::util::AlignedVec;

use crate::snapshot::{Record, SECTION_HASH_BYTES};
use crate::state::{AccountState, Expiry, StoredTrade, StoredTransfer};

/// Engines made in this process: tells apart the sections of two engines whose arenas
/// happen to carry the same stamps ([`SectionVersion`]).
static ENGINES: AtomicU64 = AtomicU64::new(0);

/// A number no other engine of this process has.
pub(crate) fn engine_instance() -> u64 {
    ENGINES.fetch_add(1, Ordering::Relaxed)
}

/// Append `records` as one section in its stored form (length, archive, hash) to `out`,
/// through `scratch` and `archived` (kept between sections: see [`Record`]).
pub(crate) fn encode_section<T: Record>(
    records: &[T],
    scratch: &mut Vec<T>,
    archived: &mut AlignedVec,
    out: &mut Vec<u8>,
) {
    scratch.clear();
    scratch.extend_from_slice(records);
    *archived = T::archive(scratch, std::mem::take(archived));
    let start = out.len();
    out.extend_from_slice(&(archived.len() as u64).to_le_bytes());
    out.extend_from_slice(archived);
    let hash = blake3::hash(&out[start..]);
    out.extend_from_slice(hash.as_bytes());
}

/// Buffers [`FrozenState::encode_section`] keeps between sections, so encoding a snapshot
/// allocates them once, not once per multi-megabyte section.
#[derive(Default)]
pub struct SectionEncoder {
    pub(crate) archived: AlignedVec,
    pub(crate) accounts: Vec<AccountState>,
    pub(crate) transfers: Vec<StoredTransfer>,
    pub(crate) trades: Vec<StoredTrade>,
    pub(crate) expiries: Vec<Expiry>,
    pub(crate) failed: Vec<u128>,
    pub(crate) leaves: Vec<crate::merkle::Hash>,
    pub(crate) log_batches: Vec<crate::event_log::LogBatch>,
    pub(crate) checkpoints: Vec<crate::checkpoint::SignedCheckpoint>,
    pub(crate) cosignatures: Vec<crate::checkpoint::StoredCosignature>,
    pub(crate) access_reads: Vec<crate::access_log::AccessRead>,
    pub(crate) access_touches: Vec<crate::access_log::AccessTouch>,
    pub(crate) kept: Vec<crate::event_log::KeptLeaf>,
    pub(crate) settlement_cycles: Vec<crate::settlement_store::StoredCycle>,
    pub(crate) settlement_instructions: Vec<crate::settlement_store::StoredInstruction>,
    pub(crate) settlement_commands: Vec<crate::settlement_store::StoredCommand>,
}

/// The kinds of records a snapshot holds, in the order their sections come.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SectionKind {
    Accounts,
    Transfers,
    Trades,
    Expiries,
    /// The ids of transiently failed events (format 4 on).
    FailedIds,
    /// The verifiable log's group hashes (format 8; every leaf's hash in formats 6 and 7).
    LogLeaves,
    /// The verifiable log's batch positions (format 6 on).
    LogBatches,
    /// The log's signed checkpoints (format 6 on).
    Checkpoints,
    /// Witnesses' cosignatures of the checkpoints (format 6 on).
    Cosignatures,
    /// The access trail's reads (format 7 on).
    AccessReads,
    /// The accounts those reads touched (format 7 on).
    AccessTouches,
    /// The access trail's signed checkpoints (format 7 on).
    AccessCheckpoints,
    /// The hashes of the log's leaves a restore cannot rebuild (format 8 on).
    LogKept,
    /// The settlement book's cycles, in cycle order (format 9 on).
    SettlementCycles,
    /// The settlement book's instructions and where each stands, in id order (format 9 on).
    SettlementInstructions,
    /// The settlement commands the book applied, in id order (format 9 on).
    SettlementCommands,
}

impl SectionKind {
    /// Its name in file names and messages.
    pub fn name(self) -> &'static str {
        match self {
            SectionKind::Accounts => "accounts",
            SectionKind::Transfers => "transfers",
            SectionKind::Trades => "trades",
            SectionKind::Expiries => "expiries",
            SectionKind::FailedIds => "failed-ids",
            SectionKind::LogLeaves => "log-leaves",
            SectionKind::LogBatches => "log-batches",
            SectionKind::Checkpoints => "checkpoints",
            SectionKind::Cosignatures => "cosignatures",
            SectionKind::AccessReads => "access-reads",
            SectionKind::AccessTouches => "access-touches",
            SectionKind::AccessCheckpoints => "access-checkpoints",
            SectionKind::LogKept => "log-kept",
            SectionKind::SettlementCycles => "settlement-cycles",
            SectionKind::SettlementInstructions => "settlement-instructions",
            SectionKind::SettlementCommands => "settlement-commands",
        }
    }
}

/// What a section of stored events holds, across the views of one engine: two sections of
/// the same kind and position with equal versions hold the same records, byte for byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SectionVersion {
    pub(crate) engine: u64,
    pub(crate) written: u64,
}

/// One section of a frozen state ([`FrozenState::sections`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Section {
    pub kind: SectionKind,
    /// Its position among the sections of its kind.
    pub index: usize,
    pub records: usize,
    /// For a whole chunk of stored events (never accounts or the settlement book, never a
    /// chunk still filling): its version, equal in a later view only if nothing in it was
    /// written since.
    pub version: Option<SectionVersion>,
}

/// The hash a section in its stored form ends with.
pub fn section_hash(stored: &[u8]) -> [u8; 32] {
    let mut hash = [0u8; SECTION_HASH_BYTES];
    hash.copy_from_slice(&stored[stored.len() - SECTION_HASH_BYTES..]);
    hash
}

/// The trailer of a snapshot (versions 3 and 4): the BLAKE3 of its header and its sections' hashes.
#[derive(Debug, Clone)]
pub struct TrailerHasher(blake3::Hasher);

impl TrailerHasher {
    pub fn new(header: &[u8]) -> TrailerHasher {
        let mut hasher = blake3::Hasher::new();
        hasher.update(header);
        TrailerHasher(hasher)
    }

    /// The next section's hash.
    pub fn section(&mut self, hash: &[u8; 32]) {
        self.0.update(hash);
    }

    pub fn finish(&self) -> [u8; 32] {
        *self.0.finalize().as_bytes()
    }
}
