//! Reading a snapshot's sections: the bytes read, each section's BLAKE3 and the trailer
//! checked, each section's archive validated and decoded ([`SnapshotSections`]), apart from
//! filing the records into the arenas and indexes (`Engine::restore_sections`), so that a
//! caller can run the two on two threads: on the 10M-transfer restore the halves are of a
//! size, and the restore then takes about the longer of them instead of their sum.

use std::io::{self, Read};

use rkyv::util::AlignedVec;

use rkyv::{Archive, Deserialize, Serialize};

use crate::access_log::{AccessRead, AccessTouch};
use crate::checkpoint::{SignedCheckpoint, StoredCosignature};
use crate::engine::Engine;
use crate::event_log::{KeptLeaf, LogBatch};
use crate::merkle::Hash;
use crate::settlement_store::{StoredCommand, StoredCycle, StoredInstruction};
use crate::snapshot::{
    invalid, Record, RestoreStart, SnapshotError, FORMAT_VERSION, FORMAT_VERSION_ALL_LEAVES,
    FORMAT_VERSION_NO_ACCESS, FORMAT_VERSION_NO_FAILED_IDS, FORMAT_VERSION_NO_LOG,
    FORMAT_VERSION_NO_SETTLEMENT, FORMAT_VERSION_NO_TRADE_USER_DATA, FORMAT_VERSION_WHOLE_HASH,
    HEADER_BYTES, HEADER_BYTES_ALL_LEAVES, HEADER_BYTES_NO_ACCESS, HEADER_BYTES_NO_LOG,
    HEADER_BYTES_NO_SETTLEMENT, HEADER_BYTES_OLD, KINDS, MAGIC, SECTION_HASH_BYTES,
    SECTION_RECORDS,
};
use crate::snapshot_sections::TrailerHasher;
use crate::state::{AccountState, Expiry, PendingStatus, StoredTrade, StoredTransfer, SLOT_NONE};

impl Engine {
    /// Reads a snapshot's header from `input`: what the restore needs to begin, and the
    /// sections to read (the rest of `input`), for [`Engine::restore_sections`].
    pub fn restore_begin<R: Read>(
        input: R,
    ) -> Result<(RestoreStart, SnapshotSections<R>), SnapshotError> {
        let mut input = Hashed {
            inner: input,
            hasher: Some(blake3::Hasher::new()),
        };
        // Magic and version first: they say how long the rest of the header is.
        let mut header = [0u8; HEADER_BYTES];
        input.read_exact(&mut header[..16])?;
        if &header[0..8] != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let word = |at: usize| {
            u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let version = word(8);
        let header_bytes = match version {
            FORMAT_VERSION => HEADER_BYTES,
            FORMAT_VERSION_NO_SETTLEMENT => HEADER_BYTES_NO_SETTLEMENT,
            FORMAT_VERSION_ALL_LEAVES => HEADER_BYTES_ALL_LEAVES,
            FORMAT_VERSION_NO_ACCESS => HEADER_BYTES_NO_ACCESS,
            FORMAT_VERSION_NO_LOG | FORMAT_VERSION_NO_TRADE_USER_DATA => HEADER_BYTES_NO_LOG,
            FORMAT_VERSION_NO_FAILED_IDS | FORMAT_VERSION_WHOLE_HASH => HEADER_BYTES_OLD,
            _ => return Err(SnapshotError::UnsupportedVersion { version }),
        };
        if word(12) != 0 {
            return Err(SnapshotError::UnsupportedVersion { version });
        }
        input.read_exact(&mut header[16..header_bytes])?;
        let header = &header[..header_bytes];
        let long = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&header[at..at + 8]);
            u64::from_le_bytes(bytes)
        };
        // Versions 3 on: each section's hash, then one over the header and those hashes.
        let sections_hash = (version != FORMAT_VERSION_WHOLE_HASH).then(|| {
            input.hasher = None;
            TrailerHasher::new(header)
        });
        let [accounts, transfers, trades, expiries] = [24, 32, 40, 48].map(long);
        let failed = if version >= FORMAT_VERSION_NO_TRADE_USER_DATA {
            long(56)
        } else {
            0
        };
        // A snapshot from before the verifiable log restores with an empty one.
        let [leaves, log_batches, checkpoints, cosignatures] =
            if version >= FORMAT_VERSION_NO_ACCESS {
                [64, 72, 80, 88].map(long)
            } else {
                [0, 0, 0, 0]
            };
        // And one from before the access trail with an empty trail.
        let [access_reads, access_touches, access_checkpoints] =
            if version >= FORMAT_VERSION_ALL_LEAVES {
                [96, 104, 112].map(long)
            } else {
                [0, 0, 0]
            };
        // Format 8 on keeps a hash per group of leaves and the kept leaves; older formats a
        // hash per leaf (a restore makes the groups and picks the kept leaves).
        let log_grouped = version >= FORMAT_VERSION_NO_SETTLEMENT;
        let log_kept = if log_grouped { long(120) } else { 0 };
        let log_sections = if log_grouped {
            leaves >> crate::event_log::LEAF_GROUP_LEVEL
        } else {
            leaves
        };
        // And one from before the settlement book with an empty book, its fail limit the
        // default.
        let (book, settlement_max_age) = if version >= FORMAT_VERSION {
            let limit = long(152);
            let max_age = u16::try_from(limit)
                .map_err(|_| invalid(format!("settlement max age {limit} is past 65535")))?;
            ([128, 136, 144].map(long), max_age)
        } else {
            ([0; 3], crate::limits::SETTLEMENT_MAX_AGE_DEFAULT)
        };
        let [settlement_cycles, settlement_instructions, settlement_commands] = book;
        // Slots are u32 with `SLOT_NONE` reserved; event slots have 30 bits (`EventRef`); a
        // log holds one leaf per event ever applied, at most a batch per leaf.
        if accounts >= u64::from(SLOT_NONE)
            || [transfers, trades, expiries, failed]
                .iter()
                .any(|&n| n >= 1 << 30)
            || leaves >= u64::from(u32::MAX)
            || log_batches > leaves
            || checkpoints > leaves
            || cosignatures >= 1 << 32
            || access_reads >= u64::from(u32::MAX)
            || access_touches >= u64::from(u32::MAX)
            || access_checkpoints > access_reads
            || log_kept > leaves
            || book.iter().any(|&n| n >= u64::from(u32::MAX))
        {
            return Err(invalid("more records than slots"));
        }
        let counts = [
            accounts,
            transfers,
            trades,
            expiries,
            failed,
            log_sections,
            log_batches,
            checkpoints,
            cosignatures,
            access_reads,
            access_touches,
            access_checkpoints,
            log_kept,
            settlement_cycles,
            settlement_instructions,
            settlement_commands,
        ];
        let start = RestoreStart {
            last_timestamp: long(16),
            counts,
            log_size: leaves,
            log_grouped,
            settlement_max_age,
        };
        // Trades gained `user_data_64` in format 5.
        let trades_v4 = version <= FORMAT_VERSION_NO_TRADE_USER_DATA;
        Ok((
            start,
            SnapshotSections::new(input, counts, sections_hash, trades_v4),
        ))
    }
}

/// A stored trade as formats 2 to 4 archived it (no `user_data_64`): read and widened.
#[derive(Clone, Copy, Debug, Archive, Serialize, Deserialize)]
pub(crate) struct StoredTradeV4 {
    id: u128,
    quantity: u64,
    cash_amount: u64,
    timestamp: u64,
    accounts: [u32; 4],
    pending: u32,
    timeout: u32,
    code: u16,
    flags: u16,
    status: PendingStatus,
    previous: [u32; 4],
}

crate::snapshot::record!(StoredTradeV4, "trade");

impl Kind for StoredTradeV4 {
    fn wrap(records: Vec<Self>) -> Records {
        Records::Trades(records.into_iter().map(StoredTrade::from).collect())
    }
    fn unwrap(_: Records) -> Option<Vec<Self>> {
        None
    }
}

impl From<StoredTradeV4> for StoredTrade {
    fn from(old: StoredTradeV4) -> StoredTrade {
        StoredTrade {
            id: old.id,
            quantity: old.quantity,
            cash_amount: old.cash_amount,
            timestamp: old.timestamp,
            user_data_64: 0,
            accounts: old.accounts,
            pending: old.pending,
            timeout: old.timeout,
            code: old.code,
            flags: old.flags,
            status: old.status,
            previous: old.previous,
        }
    }
}

/// Bytes of a snapshot's trailer.
pub(crate) const TRAILER_BYTES: usize = 32;

/// Bytes an archived section of `records` records may take: the archived records (rkyv lays
/// a record out in declaration order, so its archived size may exceed its size in memory: a
/// `StoredInstruction` is 192 bytes in memory, 224 archived), the vector's root and alignment
/// padding (a section claiming more is damaged, and is refused before any buffer grows to it).
fn section_bytes_max<T: rkyv::Archive>(records: usize) -> u64 {
    (records * std::mem::size_of::<rkyv::Archived<T>>() + 256) as u64
}

/// A reader that hashes (BLAKE3) what it hands out, while `hasher` is set (version 2's
/// trailer is the hash of every byte before it).
pub(crate) struct Hashed<R> {
    pub(crate) inner: R,
    pub(crate) hasher: Option<blake3::Hasher>,
}

impl<R: Read> Read for Hashed<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buffer)?;
        if let Some(hasher) = self.hasher.as_mut() {
            hasher.update(&buffer[..read]);
        }
        Ok(read)
    }
}

/// One decoded section, in the order the snapshot holds them.
pub(crate) enum Records {
    Accounts(Vec<AccountState>),
    Transfers(Vec<StoredTransfer>),
    Trades(Vec<StoredTrade>),
    Expiries(Vec<Expiry>),
    Failed(Vec<u128>),
    Leaves(Vec<Hash>),
    LogBatches(Vec<LogBatch>),
    Checkpoints(Vec<SignedCheckpoint>),
    Cosignatures(Vec<StoredCosignature>),
    AccessReads(Vec<AccessRead>),
    AccessTouches(Vec<AccessTouch>),
    AccessCheckpoints(Vec<SignedCheckpoint>),
    LogKept(Vec<KeptLeaf>),
    SettlementCycles(Vec<StoredCycle>),
    SettlementInstructions(Vec<StoredInstruction>),
    SettlementCommands(Vec<StoredCommand>),
}

/// A record kind as a section of [`Records`].
trait Kind: Record + Send + rkyv::Archive {
    fn wrap(records: Vec<Self>) -> Records;
    /// The vector of a filed section of this kind, for reuse.
    fn unwrap(records: Records) -> Option<Vec<Self>>;
}

macro_rules! kind {
    ($type:ty, $variant:ident) => {
        impl Kind for $type {
            fn wrap(records: Vec<Self>) -> Records {
                Records::$variant(records)
            }
            fn unwrap(records: Records) -> Option<Vec<Self>> {
                match records {
                    Records::$variant(records) => Some(records),
                    _ => None,
                }
            }
        }
    };
}
kind!(AccountState, Accounts);
kind!(StoredTransfer, Transfers);
kind!(StoredTrade, Trades);
kind!(Expiry, Expiries);
kind!(u128, Failed);
kind!(Hash, Leaves);
kind!(LogBatch, LogBatches);
kind!(SignedCheckpoint, Checkpoints);
kind!(StoredCosignature, Cosignatures);
kind!(AccessRead, AccessReads);
kind!(AccessTouch, AccessTouches);
kind!(KeptLeaf, LogKept);
kind!(StoredCycle, SettlementCycles);
kind!(StoredInstruction, SettlementInstructions);
kind!(StoredCommand, SettlementCommands);

/// A section of checkpoints as the access trail's: archived as the log's, filed apart.
fn access_checkpoints(records: Records) -> Records {
    match records {
        Records::Checkpoints(records) => Records::AccessCheckpoints(records),
        other => other,
    }
}

/// A snapshot's sections, read, checked and decoded one at a time, in order: an iterator of
/// [`SnapshotSection`]s that ends by checking the trailer and that nothing follows it (an error
/// there is its last item). `Engine::restore_sections` files what it yields. Drive it on the
/// restoring thread (`Engine::restore_from`), or on a thread of the caller's and hand the
/// sections over a channel, so reading and checking overlap the filing (the engine keeps no
/// thread of its own, as it keeps no file or clock).
pub struct SnapshotSections<R> {
    input: Hashed<R>,
    /// Records of each kind still to read (`KINDS`, in the order `RestoreStart::counts` has
    /// them).
    left: [u64; KINDS],
    kind: usize,
    buffer: AlignedVec<16>,
    /// Versions 3 and 4: each section's hash, then the trailer over them; version 2: `input`
    /// hashes the whole stream.
    sections_hash: Option<TrailerHasher>,
    done: bool,
    /// Sections filed already, whose vectors are filled again (`SnapshotSections::reuse`).
    spares: Option<crossbeam_channel::Receiver<SnapshotSection>>,
    /// Trades in the layout before format 5 (`StoredTradeV4`).
    trades_v4: bool,
}

/// One decoded section of a snapshot, as [`SnapshotSections`] yields it.
pub struct SnapshotSection(pub(crate) Records);

impl<R: Read> SnapshotSections<R> {
    pub(crate) fn new(
        input: Hashed<R>,
        counts: [u64; KINDS],
        sections_hash: Option<TrailerHasher>,
        trades_v4: bool,
    ) -> SnapshotSections<R> {
        SnapshotSections {
            input,
            left: counts,
            kind: 0,
            buffer: AlignedVec::new(),
            sections_hash,
            done: false,
            spares: None,
            trades_v4,
        }
    }

    /// Fill the vectors of sections sent back on `spares` (by `Engine::restore_sections`'s
    /// `spent`) instead of new ones: on another thread than the filing, a fresh vector per
    /// section is a fresh 7 MB for the kernel to zero, on a machine whose cores are busy.
    pub fn reuse(&mut self, spares: crossbeam_channel::Receiver<SnapshotSection>) {
        self.spares = Some(spares);
    }

    /// The next section of kind `T` (`records` of them), read and checked.
    fn section<T: Kind>(&mut self, records: usize) -> Result<Records, SnapshotError> {
        let length = read_u64(&mut self.input)?;
        let bytes_max = section_bytes_max::<T>(records);
        if length > bytes_max {
            return Err(SnapshotError::LengthMismatch {
                header: length,
                actual: bytes_max as usize,
            });
        }
        // Sections of one kind are mostly the same length: the buffer is zeroed only when its
        // length changes (`read_exact` overwrites all of it).
        if self.buffer.len() != length as usize {
            self.buffer.clear();
            self.buffer.resize(length as usize, 0);
        }
        self.input.read_exact(&mut self.buffer)?;
        if let Some(trailer) = self.sections_hash.as_mut() {
            let mut hash = [0u8; SECTION_HASH_BYTES];
            self.input.read_exact(&mut hash)?;
            let mut hasher = blake3::Hasher::new();
            hasher.update(&length.to_le_bytes());
            hasher.update(&self.buffer);
            if hasher.finalize().as_bytes() != &hash {
                return Err(SnapshotError::ChecksumMismatch);
            }
            trailer.section(&hash);
        }
        let mut section = self
            .spares
            .as_ref()
            .and_then(|spares| spares.try_recv().ok())
            .and_then(|SnapshotSection(spare)| T::unwrap(spare))
            .unwrap_or_default();
        section.clear();
        T::unarchive(&self.buffer, records, |record| {
            section.push(record);
            Ok(())
        })?;
        Ok(T::wrap(section))
    }

    /// After the last section: the trailer, and nothing after it.
    fn finish(&mut self) -> Result<(), SnapshotError> {
        let expected = match (self.sections_hash.as_ref(), self.input.hasher.take()) {
            (Some(sections), _) => sections.finish(),
            (None, whole) => *whole.unwrap_or_default().finalize().as_bytes(),
        };
        let inner = &mut self.input.inner;
        let mut trailer = [0u8; TRAILER_BYTES];
        inner.read_exact(&mut trailer)?;
        if expected != trailer {
            return Err(SnapshotError::ChecksumMismatch);
        }
        if inner.read(&mut [0u8; 1])? != 0 {
            return Err(SnapshotError::TrailingBytes);
        }
        Ok(())
    }
}

impl<R: Read> Iterator for SnapshotSections<R> {
    type Item = Result<SnapshotSection, SnapshotError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        while self.kind < self.left.len() && self.left[self.kind] == 0 {
            self.kind += 1;
        }
        if self.kind == self.left.len() {
            self.done = true;
            return self.finish().err().map(Err);
        }
        let records = self.left[self.kind].min(SECTION_RECORDS as u64) as usize;
        let section = match self.kind {
            0 => self.section::<AccountState>(records),
            1 => self.section::<StoredTransfer>(records),
            2 if self.trades_v4 => self.section::<StoredTradeV4>(records),
            2 => self.section::<StoredTrade>(records),
            3 => self.section::<Expiry>(records),
            4 => self.section::<u128>(records),
            5 => self.section::<Hash>(records),
            6 => self.section::<LogBatch>(records),
            7 => self.section::<SignedCheckpoint>(records),
            8 => self.section::<StoredCosignature>(records),
            9 => self.section::<AccessRead>(records),
            10 => self.section::<AccessTouch>(records),
            11 => self
                .section::<SignedCheckpoint>(records)
                .map(access_checkpoints),
            12 => self.section::<KeptLeaf>(records),
            13 => self.section::<StoredCycle>(records),
            14 => self.section::<StoredInstruction>(records),
            _ => self.section::<StoredCommand>(records),
        };
        self.left[self.kind] -= records as u64;
        if section.is_err() {
            self.done = true;
        }
        Some(section.map(SnapshotSection))
    }
}

pub(crate) fn read_u64(input: &mut impl Read) -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    input.read_exact(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{encode_batch, Account, Trade};
    use crate::snapshot::SNAPSHOT_HEADER_BYTES;
    use crate::snapshot_sections::section_hash;
    use crate::{EngineConfig, Operation};

    /// Proves a format-4 snapshot, whose trades have no `user_data_64`, still restores: the
    /// same state with its trades' user data 0; and a format-5 one (the same header, trades
    /// with user data) with its trades' user data. The image is this engine's own, its trade
    /// section archived again in the old layout for format 4 and the hashes made anew.
    /// (Regression: format 5's trades were read in format 4's layout once format 6 came.)
    #[test]
    fn format_4_trades_restore_with_no_user_data() {
        for version in [FORMAT_VERSION_NO_TRADE_USER_DATA, FORMAT_VERSION_NO_LOG] {
            restore_old_format(version);
        }
    }

    fn restore_old_format(version: u32) {
        let mut engine = Engine::new(EngineConfig::default());
        let accounts: Vec<Account> = (1..=4u128)
            .map(|id| Account {
                id,
                ledger: if id <= 2 { 1 } else { 2 },
                code: 1,
                ..Account::default()
            })
            .collect();
        let trade = |id| Trade {
            id,
            instrument_debit_account_id: 1,
            instrument_credit_account_id: 2,
            cash_debit_account_id: 3,
            cash_credit_account_id: 4,
            instrument_ledger: 1,
            cash_ledger: 2,
            quantity: 5,
            cash_amount: 50,
            code: 1,
            user_data_64: 7,
            ..Trade::default()
        };
        let at = 1 << 40;
        let body = encode_batch(&accounts, Account::encode);
        assert!(engine.apply(Operation::CreateAccounts, at, &body).is_ok());
        let body = encode_batch(&[trade(10), trade(11)], Trade::encode);
        let outcome = engine.apply(Operation::CreateTrades, at + 10, &body);
        assert!(outcome.is_ok_and(|o| o.failures.is_empty()));

        let image = engine.snapshot();
        // Format 4's header is format 6's without the two log counts, and it has no log
        // sections.
        let mut old = image[..HEADER_BYTES_NO_LOG].to_vec();
        old[8..12].copy_from_slice(&version.to_le_bytes());
        let mut trailer = TrailerHasher::new(&old);
        let mut at = SNAPSHOT_HEADER_BYTES;
        let leaves = engine.log_size();
        // One section per kind present: accounts, then trades.
        for kind in 0..2 {
            let length = u64::from_le_bytes(image[at..at + 8].try_into().expect("8")) as usize;
            let mut archive = AlignedVec::<16>::new();
            archive.extend_from_slice(&image[at + 8..at + 8 + length]);
            let mut section = Vec::new();
            if kind == 1 && version == FORMAT_VERSION_NO_TRADE_USER_DATA {
                let mut trades = Vec::new();
                StoredTrade::unarchive(&archive, 2, |t| {
                    trades.push(t);
                    Ok(())
                })
                .expect("a trade section");
                let widened: Vec<StoredTradeV4> = trades
                    .iter()
                    .map(|t| StoredTradeV4 {
                        id: t.id,
                        quantity: t.quantity,
                        cash_amount: t.cash_amount,
                        timestamp: t.timestamp,
                        accounts: t.accounts,
                        pending: t.pending,
                        timeout: t.timeout,
                        code: t.code,
                        flags: t.flags,
                        status: t.status,
                        previous: t.previous,
                    })
                    .collect();
                let bytes = StoredTradeV4::archive(&widened, AlignedVec::new());
                section.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
                section.extend_from_slice(&bytes);
            } else {
                section.extend_from_slice(&image[at..at + 8 + length]);
            }
            let hash = *blake3::hash(&section).as_bytes();
            section.extend_from_slice(&hash);
            trailer.section(&section_hash(&section));
            old.extend_from_slice(&section);
            at += 8 + length + SECTION_HASH_BYTES;
        }
        // Then the log's sections (its batch positions, the accounts' kept leaves), left out.
        let log_sections = 8 + SECTION_HASH_BYTES;
        assert!(image.len() - TRAILER_BYTES - at > 2 * log_sections + leaves as usize * 16);
        old.extend_from_slice(&trailer.finish());
        let restored = Engine::restore(&old, EngineConfig::default()).expect("an old format");
        // The same ledger, with an empty verifiable log (format 4 has none): the digest covers
        // the log, so it differs; the accounts and events do not.
        assert_eq!(restored.log_size(), 0);
        for id in 1..=4 {
            assert_eq!(restored.lookup_account(id), engine.lookup_account(id));
        }
        let user_data = if version == FORMAT_VERSION_NO_TRADE_USER_DATA {
            0
        } else {
            7
        };
        for id in [10, 11] {
            let trade = restored.lookup_trade(id).expect("restored");
            assert_eq!(trade.user_data_64, user_data, "format {version}");
            let original = engine.lookup_trade(id).expect("applied");
            assert_eq!(
                Trade {
                    user_data_64: 7,
                    ..trade
                },
                original
            );
        }
    }
}
