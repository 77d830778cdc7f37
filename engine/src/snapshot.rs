//! Snapshots (the whole state to bytes and back, streamed) and the state digest.
//!
//! A snapshot holds only what cannot be derived: accounts, transfers, trades, expiries, the
//! clock, the verifiable log's and access trail's parts and the settlement book. Indexes and
//! per-account histories are rebuilt on restore by replaying every event's effect in
//! timestamp order — and the replayed balances must equal the stored ones, so a restored
//! engine has proven its own consistency.
//!
//! A snapshot is written and read as a stream (`FrozenState::write_to`,
//! `Engine::restore_from`): neither side ever holds the whole image in memory, only one
//! section of at most `SECTION_RECORDS` records. Layout (version 9), all little-endian:
//!
//! ```text
//! header   magic "TALLYSNP" (8) | format version u32 (4) | reserved u32 (0)
//!          | last_timestamp u64 | accounts u64 | transfers u64 | trades u64 | expiries u64
//!          | failed_ids u64 | log_leaves u64 | log_batches u64 | checkpoints u64
//!          | cosignatures u64 | access_reads u64 | access_touches u64
//!          | access_checkpoints u64 | log_kept u64 | settlement_cycles u64
//!          | settlement_instructions u64 | settlement_commands u64 | settlement_max_age u64
//! sections the accounts, then the transfers, trades, expiries, failed ids (u128 each), the
//!          verifiable log's group hashes (32 bytes each, one per complete group of 16
//!          leaves: `log_leaves / 16` of them), its batch positions, its signed checkpoints
//!          and their witnesses' cosignatures (`event_log.rs`), the access trail's reads, the
//!          accounts they touched and its checkpoints (`access_log.rs`), the log's kept leaf
//!          hashes (index u64 and hash: the leaves a restore cannot rebuild), the settlement
//!          book's cycles, instructions and commands (`settlement_store.rs`: `StoredCycle`,
//!          `StoredInstruction`, `StoredCommand`; cycles in cycle order, the others in id
//!          order), each kind in slot order
//!          cut into sections of SECTION_RECORDS records (the last one of a kind shorter,
//!          none for a kind with no records); a section is
//!          bytes u64 | rkyv archive of a Vec of the records (`bytes` long)
//!          | BLAKE3 of the two fields before (32)
//! trailer  BLAKE3 of the header followed by every section's hash, in order (32)
//! ```
//!
//! The book's fail limit (`settlement_max_age`, 1 to 65535) is a header field, not a section
//! of one entry: it is one scalar of the whole book, as `last_timestamp` is of the engine, and
//! the header is where a restore learns such scalars before any section; a section would cost
//! a count that must be 1, a section's frame and a special case in the reader for two bytes,
//! and an empty book would still write one. So an engine that never used settlement
//! writes no settlement section at all. Version 8 (no settlement counts and limit) restores
//! with an empty book and the default limit (`limits::SETTLEMENT_MAX_AGE_DEFAULT`).
//!
//! Version 7 (no `log_kept`; the log's sections hold every leaf's hash, from which a restore
//! makes the groups and picks the kept ones), version 6 (also no access counts or sections:
//! it restores with an empty access trail) and
//! versions 4 and 5 (no log counts, no log sections: they restore with an empty log) are
//! still read.
//!
//! A section of stored events is one arena chunk, and its hash covers it alone, so a writer
//! may take a section unchanged since an earlier snapshot from where that one keeps it
//! instead of writing it again ([`FrozenState::sections`]: incremental snapshots), and the
//! trailer still binds every section to its place. Version 3 (the same without `failed_ids`:
//! a header of 56 bytes, no failed-id sections) and version 2 (also one BLAKE3 of every byte
//! before the trailer, no section hashes) are still read.
//!
//! Reading checks each section's structure (rkyv's validation) and hash as it arrives and the
//! trailer at the end, before the engine is handed out: a damaged snapshot never yields an
//! engine. docs/wal.md ("Snapshot files") has the file around it.

use std::io::{self, Read, Write};

use rkyv::util::AlignedVec;

use crate::access_log::{AccessLog, AccessRead, AccessTouch};
use crate::arena::Frozen;
use crate::checkpoint::{SignedCheckpoint, StoredCosignature};
use crate::engine::{Engine, EngineConfig};
use crate::event_log::{KeptLeaf, LogBatch, LogParts};
use crate::memory::ChunkSupply;
use crate::merkle::Hash;
use crate::settlement_store::{BookRestore, StoredCommand, StoredCycle, StoredInstruction};
use crate::snapshot_read::{Records, TRAILER_BYTES};
pub use crate::snapshot_read::{SnapshotSection, SnapshotSections};
use crate::snapshot_restore::{file_records, RestoredIndex, RestoredLog};
use crate::snapshot_sections::encode_section;
pub use crate::snapshot_sections::{
    section_hash, Section, SectionEncoder, SectionKind, SectionVersion, TrailerHasher,
};
use crate::state::{AccountState, EventRef, Expiry, StoredTrade, StoredTransfer};

pub(crate) const MAGIC: &[u8; 8] = b"TALLYSNP";
pub(crate) const FORMAT_VERSION: u32 = 9;
/// The format before the settlement book: read, never written.
pub(crate) const FORMAT_VERSION_NO_SETTLEMENT: u32 = 8;
/// The format whose log sections hold every leaf's hash: read, never written.
pub(crate) const FORMAT_VERSION_ALL_LEAVES: u32 = 7;
/// The format before the access trail: read, never written.
pub(crate) const FORMAT_VERSION_NO_ACCESS: u32 = 6;
/// The format before the verifiable log's leaves and batches: read, never written.
pub(crate) const FORMAT_VERSION_NO_LOG: u32 = 5;
/// The format before a trade's `user_data_64`: read, never written.
pub(crate) const FORMAT_VERSION_NO_TRADE_USER_DATA: u32 = 4;
/// The format before failed ids: read, never written.
pub(crate) const FORMAT_VERSION_NO_FAILED_IDS: u32 = 3;
/// The format before section hashes: read, never written.
pub(crate) const FORMAT_VERSION_WHOLE_HASH: u32 = 2;
/// Bytes of a snapshot's header.
pub const SNAPSHOT_HEADER_BYTES: usize = 8 + 4 + 4 + 8 + KINDS * 8 + 8;
pub(crate) const HEADER_BYTES: usize = SNAPSHOT_HEADER_BYTES;
/// Bytes of a header of version 8 (no settlement counts, no `settlement_max_age`).
pub(crate) const HEADER_BYTES_NO_SETTLEMENT: usize = HEADER_BYTES - 32;
/// Bytes of a header of version 7 (no `log_kept` count either).
pub(crate) const HEADER_BYTES_ALL_LEAVES: usize = HEADER_BYTES_NO_SETTLEMENT - 8;
/// Bytes of a header of version 6 (no access counts).
pub(crate) const HEADER_BYTES_NO_ACCESS: usize = HEADER_BYTES_ALL_LEAVES - 24;
/// Bytes of a header of versions 4 and 5 (no log counts).
pub(crate) const HEADER_BYTES_NO_LOG: usize = HEADER_BYTES_NO_ACCESS - 32;
/// Bytes of a header of versions 2 and 3 (no `failed_ids` count either).
pub(crate) const HEADER_BYTES_OLD: usize = HEADER_BYTES_NO_LOG - 8;
/// Kinds of records a snapshot holds: accounts, transfers, trades, expiries, failed ids,
/// log groups, log batches, checkpoints, cosignatures, access reads, access touches, access
/// checkpoints, kept log leaves, settlement cycles, instructions and commands.
pub(crate) const KINDS: usize = 16;
/// Bytes of a section's hash.
pub const SECTION_HASH_BYTES: usize = 32;

/// Records per section: what a writer or a reader holds at once besides the state (a
/// section of transfers is some 7 MB).
pub(crate) const SECTION_RECORDS: usize = crate::limits::ARENA_CHUNK_ELEMENTS;

/// Why snapshot bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The bytes end before the snapshot does.
    Truncated,
    BadMagic,
    UnsupportedVersion {
        version: u32,
    },
    /// A section's length is not what its records can take.
    LengthMismatch {
        header: u64,
        actual: usize,
    },
    ChecksumMismatch,
    /// Bytes follow the trailer.
    TrailingBytes,
    /// Reading the bytes failed (the source's own error, e.g. a file's damaged checksum).
    Read(String),
    /// The payload does not describe a valid state.
    Invalid(String),
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::Truncated => write!(f, "the snapshot is truncated"),
            SnapshotError::BadMagic => write!(f, "not a Tally snapshot (bad magic)"),
            SnapshotError::UnsupportedVersion { version } => {
                write!(f, "snapshot format version {version} is not supported")
            }
            SnapshotError::LengthMismatch { header, actual } => {
                write!(
                    f,
                    "a snapshot section says {header} bytes where at most {actual} fit"
                )
            }
            SnapshotError::ChecksumMismatch => write!(f, "snapshot checksum mismatch"),
            SnapshotError::TrailingBytes => write!(f, "bytes follow the snapshot's end"),
            SnapshotError::Read(why) => write!(f, "reading the snapshot failed: {why}"),
            SnapshotError::Invalid(why) => write!(f, "snapshot describes an invalid state: {why}"),
        }
    }
}

impl std::error::Error for SnapshotError {}

impl From<io::Error> for SnapshotError {
    fn from(error: io::Error) -> SnapshotError {
        if error.kind() == io::ErrorKind::UnexpectedEof {
            SnapshotError::Truncated
        } else {
            SnapshotError::Read(error.to_string())
        }
    }
}

pub(crate) fn invalid(why: impl Into<String>) -> SnapshotError {
    SnapshotError::Invalid(why.into())
}

/// A record kind kept in snapshots, archived a section at a time with rkyv (concrete calls
/// per kind: rkyv's generic bounds say nothing a reader needs).
/// Both directions reuse one buffer for every section: a fresh multi-megabyte allocation per
/// section would be fresh pages for the kernel to zero each time.
pub(crate) trait Record: Copy + Sized {
    /// Archive `section` into `out` (emptied first, its allocation kept). A `Vec`'s archive,
    /// read back as one by `unarchive`.
    #[allow(clippy::ptr_arg)]
    fn archive(section: &Vec<Self>, out: AlignedVec) -> AlignedVec;
    /// Check an archived section of exactly `records` records (rkyv's validation) and hand
    /// them to `take` in order, without collecting them first.
    fn unarchive(
        bytes: &[u8],
        records: usize,
        take: impl FnMut(Self) -> Result<(), SnapshotError>,
    ) -> Result<(), SnapshotError>;
}

macro_rules! record {
    ($type:ty, $name:literal) => {
        impl Record for $type {
            fn archive(
                section: &Vec<Self>,
                mut out: rkyv::util::AlignedVec,
            ) -> rkyv::util::AlignedVec {
                out.clear();
                rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(section, out)
                    .expect("serializing plain in-memory data cannot fail")
            }
            fn unarchive(
                bytes: &[u8],
                records: usize,
                mut take: impl FnMut(Self) -> Result<(), $crate::snapshot::SnapshotError>,
            ) -> Result<(), $crate::snapshot::SnapshotError> {
                let undecodable = |error: rkyv::rancor::Error| {
                    $crate::snapshot::invalid(format!(
                        "a section of {}s does not decode: {error}",
                        $name
                    ))
                };
                let section =
                    rkyv::access::<rkyv::vec::ArchivedVec<rkyv::Archived<Self>>, _>(bytes)
                        .map_err(undecodable)?;
                if section.len() != records {
                    return Err($crate::snapshot::invalid(format!(
                        "a section holds {} {}s where {records} were due",
                        section.len(),
                        $name
                    )));
                }
                for record in section.iter() {
                    take(
                        rkyv::deserialize::<Self, rkyv::rancor::Error>(record)
                            .map_err(undecodable)?,
                    )?;
                }
                Ok(())
            }
        }
    };
}
pub(crate) use record;
record!(AccountState, "account");
record!(StoredTransfer, "transfer");
record!(StoredTrade, "trade");
record!(Expiry, "expiry");
record!(u128, "failed id");
record!(Hash, "log leaf");
record!(KeptLeaf, "kept log leaf");
record!(LogBatch, "log batch");
record!(SignedCheckpoint, "checkpoint");
record!(StoredCosignature, "cosignature");
record!(AccessRead, "access read");
record!(AccessTouch, "access touch");
record!(StoredCycle, "settlement cycle");
record!(StoredInstruction, "settlement instruction");
record!(StoredCommand, "settlement command");

/// What a snapshot's header says a restore begins with ([`Engine::restore_begin`]).
#[derive(Clone, Copy, Debug)]
pub struct RestoreStart {
    pub(crate) last_timestamp: u64,
    /// Records of each kind: accounts, transfers, trades, expiries, failed ids, … (`KINDS`).
    pub(crate) counts: [u64; KINDS],
    /// Leaves in the verifiable log.
    pub(crate) log_size: u64,
    /// Whether the log's sections hold group hashes (format 8 on), not every leaf's hash.
    pub(crate) log_grouped: bool,
    /// The settlement book's fail limit (the default for a format before 9).
    pub(crate) settlement_max_age: u16,
}

/// The engine's stored state frozen at one point (`Engine::freeze`): what a snapshot holds,
/// readable while the engine goes on applying. Taking it copies the accounts' stored state
/// and one pointer per chunk of stored events — not the events: the stored-event arenas share
/// their chunks with it and copy a chunk only when they write to one it holds (the open
/// chunk's next append, a pending event's status change). So the pause it costs the apply
/// path grows with the number of accounts, not with the length of the history — and with the
/// settlement book, which it copies whole in its stored form (see `Engine::freeze`).
#[derive(Clone, Debug)]
pub struct FrozenState {
    engine: u64,
    last_timestamp: u64,
    accounts: Vec<AccountState>,
    transfers: Frozen<StoredTransfer>,
    trades: Frozen<StoredTrade>,
    expiries: Frozen<Expiry>,
    failed: Frozen<u128>,
    log_size: u64,
    log_groups: Frozen<Hash>,
    log_kept: Frozen<KeptLeaf>,
    log_batches: Frozen<LogBatch>,
    checkpoints: Frozen<SignedCheckpoint>,
    cosignatures: Frozen<StoredCosignature>,
    access_reads: Frozen<AccessRead>,
    access_touches: Frozen<AccessTouch>,
    access_checkpoints: Frozen<SignedCheckpoint>,
    settlement_max_age: u16,
    settlement_cycles: Vec<StoredCycle>,
    settlement_instructions: Vec<StoredInstruction>,
    settlement_commands: Vec<StoredCommand>,
}

impl FrozenState {
    /// Write the snapshot (the format `Engine::restore_from` reads) to `out`, a section at a
    /// time; returns its length in bytes. Takes time in proportion to the state and no
    /// memory beyond one section; needs no access to the engine.
    pub fn write_to(&self, mut out: impl Write) -> io::Result<u64> {
        let header = self.header();
        out.write_all(&header)?;
        let mut trailer = TrailerHasher::new(&header);
        let mut bytes = (HEADER_BYTES + TRAILER_BYTES) as u64;
        let mut encoder = SectionEncoder::default();
        let mut stored = Vec::new();
        for section in self.sections() {
            stored.clear();
            self.encode_section(&section, &mut encoder, &mut stored);
            trailer.section(&section_hash(&stored));
            out.write_all(&stored)?;
            bytes += stored.len() as u64;
        }
        out.write_all(&trailer.finish())?;
        out.flush()?;
        Ok(bytes)
    }

    /// The snapshot's header ([`SNAPSHOT_HEADER_BYTES`]).
    pub fn header(&self) -> Vec<u8> {
        let mut header = Vec::with_capacity(HEADER_BYTES);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        header.extend_from_slice(&self.last_timestamp.to_le_bytes());
        for count in [
            self.accounts.len(),
            self.transfers.len(),
            self.trades.len(),
            self.expiries.len(),
            self.failed.len(),
            self.log_size as usize,
            self.log_batches.len(),
            self.checkpoints.len(),
            self.cosignatures.len(),
            self.access_reads.len(),
            self.access_touches.len(),
            self.access_checkpoints.len(),
            self.log_kept.len(),
            self.settlement_cycles.len(),
            self.settlement_instructions.len(),
            self.settlement_commands.len(),
            usize::from(self.settlement_max_age),
        ] {
            header.extend_from_slice(&(count as u64).to_le_bytes());
        }
        header
    }

    /// The snapshot's sections, in the order they are written: a writer that still has a
    /// section of the same kind, position and [`SectionVersion`] from an earlier snapshot of
    /// this engine may use it instead of encoding it again (the same bytes, hash included).
    pub fn sections(&self) -> Vec<Section> {
        let mut sections = Vec::new();
        // Kinds held in a vector of their own, cut into sections with no version (written
        // anew in every snapshot).
        let whole = |sections: &mut Vec<Section>, kind, len: usize| {
            for index in 0..len.div_ceil(SECTION_RECORDS) {
                let records = (len - index * SECTION_RECORDS).min(SECTION_RECORDS);
                sections.push(Section {
                    kind,
                    index,
                    records,
                    version: None,
                });
            }
        };
        whole(&mut sections, SectionKind::Accounts, self.accounts.len());
        let mut events = |kind, chunks: usize, chunk: &dyn Fn(usize) -> (usize, u64)| {
            for index in 0..chunks {
                let (records, written) = chunk(index);
                sections.push(Section {
                    kind,
                    index,
                    records,
                    version: (records == SECTION_RECORDS).then_some(SectionVersion {
                        engine: self.engine,
                        written,
                    }),
                });
            }
        };
        events(SectionKind::Transfers, self.transfers.chunk_count(), &|i| {
            let (records, written) = self.transfers.chunk(i);
            (records.len(), written)
        });
        events(SectionKind::Trades, self.trades.chunk_count(), &|i| {
            let (records, written) = self.trades.chunk(i);
            (records.len(), written)
        });
        events(SectionKind::Expiries, self.expiries.chunk_count(), &|i| {
            let (records, written) = self.expiries.chunk(i);
            (records.len(), written)
        });
        events(SectionKind::FailedIds, self.failed.chunk_count(), &|i| {
            let (records, written) = self.failed.chunk(i);
            (records.len(), written)
        });
        events(
            SectionKind::LogLeaves,
            self.log_groups.chunk_count(),
            &|i| {
                let (records, written) = self.log_groups.chunk(i);
                (records.len(), written)
            },
        );
        events(
            SectionKind::LogBatches,
            self.log_batches.chunk_count(),
            &|i| {
                let (records, written) = self.log_batches.chunk(i);
                (records.len(), written)
            },
        );
        events(
            SectionKind::Checkpoints,
            self.checkpoints.chunk_count(),
            &|i| {
                let (records, written) = self.checkpoints.chunk(i);
                (records.len(), written)
            },
        );
        events(
            SectionKind::Cosignatures,
            self.cosignatures.chunk_count(),
            &|i| {
                let (records, written) = self.cosignatures.chunk(i);
                (records.len(), written)
            },
        );
        events(
            SectionKind::AccessReads,
            self.access_reads.chunk_count(),
            &|i| {
                let (records, written) = self.access_reads.chunk(i);
                (records.len(), written)
            },
        );
        events(
            SectionKind::AccessTouches,
            self.access_touches.chunk_count(),
            &|i| {
                let (records, written) = self.access_touches.chunk(i);
                (records.len(), written)
            },
        );
        events(
            SectionKind::AccessCheckpoints,
            self.access_checkpoints.chunk_count(),
            &|i| {
                let (records, written) = self.access_checkpoints.chunk(i);
                (records.len(), written)
            },
        );
        events(SectionKind::LogKept, self.log_kept.chunk_count(), &|i| {
            let (records, written) = self.log_kept.chunk(i);
            (records.len(), written)
        });
        let book = [
            (SectionKind::SettlementCycles, self.settlement_cycles.len()),
            (
                SectionKind::SettlementInstructions,
                self.settlement_instructions.len(),
            ),
            (
                SectionKind::SettlementCommands,
                self.settlement_commands.len(),
            ),
        ];
        for (kind, len) in book {
            whole(&mut sections, kind, len);
        }
        sections
    }

    /// Append `section` in its stored form (length, archive, hash: [`section_hash`] reads
    /// the hash back) to `out`.
    pub fn encode_section(
        &self,
        section: &Section,
        encoder: &mut SectionEncoder,
        out: &mut Vec<u8>,
    ) {
        let SectionEncoder {
            archived,
            accounts,
            transfers,
            trades,
            expiries,
            failed,
            leaves,
            log_batches,
            checkpoints,
            cosignatures,
            access_reads,
            access_touches,
            kept,
            settlement_cycles,
            settlement_instructions,
            settlement_commands,
        } = encoder;
        match section.kind {
            SectionKind::Accounts => {
                encode_section(slice(&self.accounts, section), accounts, archived, out);
            }
            SectionKind::Transfers => {
                encode_section(
                    self.transfers.chunk(section.index).0,
                    transfers,
                    archived,
                    out,
                );
            }
            SectionKind::Trades => {
                encode_section(self.trades.chunk(section.index).0, trades, archived, out);
            }
            SectionKind::Expiries => {
                encode_section(
                    self.expiries.chunk(section.index).0,
                    expiries,
                    archived,
                    out,
                );
            }
            SectionKind::FailedIds => {
                encode_section(self.failed.chunk(section.index).0, failed, archived, out);
            }
            SectionKind::LogLeaves => {
                let chunk = self.log_groups.chunk(section.index).0;
                encode_section(chunk, leaves, archived, out);
            }
            SectionKind::LogBatches => {
                let chunk = self.log_batches.chunk(section.index).0;
                encode_section(chunk, log_batches, archived, out);
            }
            SectionKind::Checkpoints => {
                let chunk = self.checkpoints.chunk(section.index).0;
                encode_section(chunk, checkpoints, archived, out);
            }
            SectionKind::Cosignatures => {
                let chunk = self.cosignatures.chunk(section.index).0;
                encode_section(chunk, cosignatures, archived, out);
            }
            SectionKind::AccessReads => {
                let chunk = self.access_reads.chunk(section.index).0;
                encode_section(chunk, access_reads, archived, out);
            }
            SectionKind::AccessTouches => {
                let chunk = self.access_touches.chunk(section.index).0;
                encode_section(chunk, access_touches, archived, out);
            }
            SectionKind::AccessCheckpoints => {
                let chunk = self.access_checkpoints.chunk(section.index).0;
                encode_section(chunk, checkpoints, archived, out);
            }
            SectionKind::LogKept => {
                encode_section(self.log_kept.chunk(section.index).0, kept, archived, out);
            }
            SectionKind::SettlementCycles => {
                let records = slice(&self.settlement_cycles, section);
                encode_section(records, settlement_cycles, archived, out);
            }
            SectionKind::SettlementInstructions => {
                let records = slice(&self.settlement_instructions, section);
                encode_section(records, settlement_instructions, archived, out);
            }
            SectionKind::SettlementCommands => {
                let records = slice(&self.settlement_commands, section);
                encode_section(records, settlement_commands, archived, out);
            }
        }
    }

    /// The snapshot as bytes in memory (`write_to` into a vector): for tests and small states.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        self.write_to(&mut bytes)
            .expect("writing to memory cannot fail");
        bytes
    }

    /// Events (transfers, trades, expiries) in the frozen state.
    pub fn events(&self) -> usize {
        self.transfers.len() + self.trades.len() + self.expiries.len()
    }
}

/// The records of a kind held in one vector (accounts, the settlement book's) that `section`
/// covers.
fn slice<'a, T>(all: &'a [T], section: &Section) -> &'a [T] {
    let start = section.index * SECTION_RECORDS;
    &all[start..(start + SECTION_RECORDS).min(all.len())]
}

impl Engine {
    /// The stored state as it is now, frozen for a snapshot (see [`FrozenState`]).
    pub fn freeze(&mut self) -> FrozenState {
        FrozenState {
            engine: self.instance,
            last_timestamp: self.last_timestamp,
            accounts: self.accounts.iter().map(|slot| slot.state).collect(),
            transfers: self.transfers.freeze(),
            trades: self.trades.freeze(),
            expiries: self.expiries.freeze(),
            failed: self.failed.freeze(),
            log_size: self.log.size,
            log_groups: {
                // A snapshot holds the log whole: wait for the leaves being hashed.
                self.log.settle();
                let groups = self.log.tree().groups_mut().freeze();
                groups
            },
            log_kept: self.log.kept.freeze(),
            log_batches: self.log.batches.freeze(),
            checkpoints: self.log.checkpoints.freeze(),
            cosignatures: self.log.cosignatures.freeze(),
            access_reads: self.access.reads.freeze(),
            access_touches: self.access.touches.freeze(),
            access_checkpoints: self.access.checkpoints.freeze(),
            // The settlement book is copied whole, in its stored form: O(book) on the apply
            // path — 149 ms per million open instructions measured (benches/benches/
            // netting.rs, `book_stored_form`), against a pause that does not grow with the
            // events' history for everything else. docs/wal.md says where that could go.
            settlement_max_age: self.settlement.max_age(),
            settlement_cycles: self.settlement.stored_cycles(),
            settlement_instructions: self.settlement.stored_instructions(),
            settlement_commands: self.settlement.stored_commands(),
        }
    }

    /// The whole state as bytes. Restore with `Engine::restore`.
    pub fn snapshot(&mut self) -> Vec<u8> {
        self.freeze().snapshot()
    }

    /// Rebuilds an engine from `snapshot` bytes in memory (`restore_from` on a slice).
    pub fn restore(bytes: &[u8], config: EngineConfig) -> Result<Engine, SnapshotError> {
        Engine::restore_from(bytes, config)
    }

    /// Rebuilds an engine from a snapshot read from `input` to its end, verifying structure,
    /// checksum, that nothing follows it, and that the replayed history ends at the stored
    /// balances. Memory: the engine it builds, plus one section. (`restore_begin` and
    /// `restore_sections` do the same in two halves a caller can run on two threads.)
    pub fn restore_from(input: impl Read, config: EngineConfig) -> Result<Engine, SnapshotError> {
        let (start, sections) = Engine::restore_begin(input)?;
        Engine::restore_sections(start, config, None, sections, None)
    }

    /// Rebuilds an engine from the sections [`Engine::restore_begin`] found, in their order
    /// (from its iterator, or handed over from a thread that drives it): checks each record's
    /// references, files it, and replays the history, which must end at the stored balances.
    /// The first error among the sections, or found in them, is the restore's. With `supply`,
    /// the arenas' chunks come from it while events are filed (most of a large restore is
    /// otherwise the kernel zeroing fresh pages); its maker returns when the events are in.
    /// With `spent`, each section is sent back once filed (`SnapshotSections::reuse`).
    pub fn restore_sections(
        start: RestoreStart,
        config: EngineConfig,
        supply: Option<ChunkSupply>,
        sections: impl IntoIterator<Item = Result<SnapshotSection, SnapshotError>>,
        spent: Option<crossbeam_channel::Sender<SnapshotSection>>,
    ) -> Result<Engine, SnapshotError> {
        let counts = start.counts;
        let [accounts, transfers, trades, _, failed, ..] = counts;
        let mut engine = Engine::new(config);
        engine.last_timestamp = start.last_timestamp;
        // Index tables sized once for the counts the header claims (see `make_room`: a
        // damaged header costs address space, not memory, and fails further on).
        engine.make_room(accounts as usize, (transfers + trades + failed) as usize);
        let mut index = RestoredIndex::default();
        if let Some(supply) = supply {
            engine.take_chunks_from(supply);
        }
        let mut stored_balances = Vec::new();
        let mut log = RestoredLog::default();
        // The book restores into the new engine's (which gives it the node's hash seed).
        let mut book = BookRestore::new(
            std::mem::take(&mut engine.settlement),
            start.settlement_max_age,
        )?;
        let mut events_indexed = false;
        for section in sections {
            let SnapshotSection(records) = section?;
            // Transfers and trades are in: finish their index before what names them.
            let after_events = !matches!(
                records,
                Records::Accounts(_) | Records::Transfers(_) | Records::Trades(_)
            );
            if after_events && !events_indexed {
                index.finish(&mut engine)?;
                engine.stop_taking_chunks();
                events_indexed = true;
            }
            file_records(
                &mut engine,
                &mut log,
                &mut index,
                &mut stored_balances,
                &mut book,
                &start,
                &records,
            )?;
            if let Some(spent) = &spent {
                let _ = spent.try_send(SnapshotSection(records));
            }
        }
        if !events_indexed {
            index.finish(&mut engine)?;
            engine.stop_taking_chunks();
        }
        // Every record the header counts (sections handed over a channel that closed early
        // would leave some out).
        let [cycles, instructions, commands] = book.filed();
        let filed = [
            engine.accounts.len() as u64,
            engine.transfers.len() as u64,
            engine.trades.len() as u64,
            engine.expiries.len() as u64,
            engine.failed.len() as u64,
            log.0.len() as u64,
            log.1.len() as u64,
            log.2.len() as u64,
            log.3.len() as u64,
            log.4.len() as u64,
            log.5.len() as u64,
            log.6.len() as u64,
            log.7.len() as u64,
            cycles,
            instructions,
            commands,
        ];
        if filed != counts {
            return Err(SnapshotError::Truncated);
        }
        engine.settlement = book.finish();
        let RestoredLog(leaves, batches, checkpoints, cosignatures, reads, touches, access, kept) =
            log;
        engine.access =
            AccessLog::restored(config.hash_seed, reads, touches, access).map_err(invalid)?;
        let parts = LogParts(batches, kept, checkpoints, cosignatures);
        if start.log_grouped {
            engine.restore_log(start.log_size, leaves, parts)?;
        } else {
            engine.restore_log_from_leaves(leaves, parts)?;
        }
        engine.replay_restored(&stored_balances)?;
        Ok(engine)
    }

    pub(crate) fn index_restored_event(
        &mut self,
        hash: u32,
        id: u128,
        event: EventRef,
    ) -> Result<(), SnapshotError> {
        let (hash, existing) = self.find_event_hashed(hash, id);
        if existing.is_some() || id == 0 || id == u128::MAX {
            return Err(invalid(format!("event id {id} invalid or repeated")));
        }
        self.event_index.insert(hash, event.0);
        Ok(())
    }
}

#[cfg(test)]
#[path = "snapshot_settlement_tests.rs"]
mod settlement_tests;
