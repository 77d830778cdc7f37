//! Snapshots (the whole state to bytes and back) and the state digest.
//!
//! A snapshot holds only what cannot be derived: accounts, transfers, trades, expiries and the
//! clock. Indexes and per-account histories are rebuilt on restore by replaying every event's
//! effect in timestamp order — and the replayed balances must equal the stored ones, so a
//! restored engine has proven its own consistency.
//!
//! Layout: `magic (8) | format version u32 | reserved u32 (0) | payload bytes u64 |
//! BLAKE3(payload) (32) | payload (rkyv)`, all little-endian.

use rkyv::rancor;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use crate::arena::Frozen;
use crate::engine::{Engine, EngineConfig};
use crate::records::{TradeFlags, TransferFlags};
use crate::state::{
    AccountSlot, AccountState, Balances, EventKind, EventRef, Expiry, PendingStatus, StoredTrade,
    StoredTransfer, SLOT_NONE,
};
use crate::transfer::expires_at;

const MAGIC: &[u8; 8] = b"TALLYSNP";
const FORMAT_VERSION: u32 = 1;
const HEADER_BYTES: usize = 8 + 4 + 4 + 8 + 32;

#[derive(Archive, Serialize, Deserialize)]
struct SnapshotState {
    last_timestamp: u64,
    accounts: Vec<AccountState>,
    transfers: Vec<StoredTransfer>,
    trades: Vec<StoredTrade>,
    expiries: Vec<Expiry>,
}

/// Why snapshot bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotError {
    TooShort {
        bytes: usize,
    },
    BadMagic,
    UnsupportedVersion {
        version: u32,
    },
    LengthMismatch {
        header: u64,
        actual: usize,
    },
    ChecksumMismatch,
    /// The payload passed its checksum but does not describe a valid state.
    Invalid(String),
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::TooShort { bytes } => {
                write!(f, "snapshot of {bytes} bytes is too short")
            }
            SnapshotError::BadMagic => write!(f, "not a Tally snapshot (bad magic)"),
            SnapshotError::UnsupportedVersion { version } => {
                write!(f, "snapshot format version {version} is not supported")
            }
            SnapshotError::LengthMismatch { header, actual } => {
                write!(
                    f,
                    "snapshot header says {header} payload bytes, found {actual}"
                )
            }
            SnapshotError::ChecksumMismatch => write!(f, "snapshot checksum mismatch"),
            SnapshotError::Invalid(why) => write!(f, "snapshot describes an invalid state: {why}"),
        }
    }
}

impl std::error::Error for SnapshotError {}

fn invalid(why: impl Into<String>) -> SnapshotError {
    SnapshotError::Invalid(why.into())
}

/// The engine's stored state frozen at one point (`Engine::freeze`): what a snapshot holds,
/// readable while the engine goes on applying. Taking it copies the accounts' stored state
/// and one pointer per chunk of stored events — not the events: the stored-event arenas share
/// their chunks with it and copy a chunk only when they write to one it holds (the open
/// chunk's next append, a pending event's status change). So the pause it costs the apply
/// path grows with the number of accounts, not with the length of the history.
#[derive(Clone, Debug)]
pub struct FrozenState {
    last_timestamp: u64,
    accounts: Vec<AccountState>,
    transfers: Frozen<StoredTransfer>,
    trades: Frozen<StoredTrade>,
    expiries: Frozen<Expiry>,
}

impl FrozenState {
    /// The snapshot's bytes (the format `Engine::restore` reads). Serialising takes time in
    /// proportion to the state; it needs no access to the engine.
    pub fn snapshot(&self) -> Vec<u8> {
        let state = SnapshotState {
            last_timestamp: self.last_timestamp,
            accounts: self.accounts.clone(),
            transfers: self.transfers.iter().copied().collect(),
            trades: self.trades.iter().copied().collect(),
            expiries: self.expiries.iter().copied().collect(),
        };
        let payload = rkyv::to_bytes::<rancor::Error>(&state)
            .expect("serializing plain in-memory data cannot fail");
        let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(blake3::hash(&payload).as_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// Events (transfers, trades, expiries) in the frozen state.
    pub fn events(&self) -> usize {
        self.transfers.len() + self.trades.len() + self.expiries.len()
    }
}

impl Engine {
    /// The stored state as it is now, frozen for a snapshot (see [`FrozenState`]).
    pub fn freeze(&self) -> FrozenState {
        FrozenState {
            last_timestamp: self.last_timestamp,
            accounts: self.accounts.iter().map(|slot| slot.state).collect(),
            transfers: self.transfers.freeze(),
            trades: self.trades.freeze(),
            expiries: self.expiries.freeze(),
        }
    }

    /// The whole state as bytes. Restore with `Engine::restore`.
    pub fn snapshot(&self) -> Vec<u8> {
        self.freeze().snapshot()
    }

    /// Rebuilds an engine from `snapshot` bytes, verifying checksum, structure and that the
    /// replayed history ends at the stored balances.
    pub fn restore(bytes: &[u8], config: EngineConfig) -> Result<Engine, SnapshotError> {
        if bytes.len() < HEADER_BYTES {
            return Err(SnapshotError::TooShort { bytes: bytes.len() });
        }
        let (header, payload) = bytes.split_at(HEADER_BYTES);
        if &header[0..8] != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let word = |at: usize| {
            u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let version = word(8);
        if version != FORMAT_VERSION || word(12) != 0 {
            return Err(SnapshotError::UnsupportedVersion { version });
        }
        let mut length = [0u8; 8];
        length.copy_from_slice(&header[16..24]);
        let length = u64::from_le_bytes(length);
        if length != payload.len() as u64 {
            return Err(SnapshotError::LengthMismatch {
                header: length,
                actual: payload.len(),
            });
        }
        if blake3::hash(payload).as_bytes() != &header[24..56] {
            return Err(SnapshotError::ChecksumMismatch);
        }
        let mut aligned = AlignedVec::<16>::with_capacity(payload.len());
        aligned.extend_from_slice(payload);
        let state = rkyv::from_bytes::<SnapshotState, rancor::Error>(&aligned)
            .map_err(|e| invalid(format!("payload does not decode: {e}")))?;
        Engine::rebuild(state, config)
    }

    fn rebuild(state: SnapshotState, config: EngineConfig) -> Result<Engine, SnapshotError> {
        let mut engine = Engine::new(config);
        engine.last_timestamp = state.last_timestamp;
        let accounts_len = state.accounts.len() as u32;
        for account in &state.accounts {
            if engine.find_account(account.id).is_some()
                || account.id == 0
                || account.id == u128::MAX
            {
                return Err(invalid(format!(
                    "account id {} invalid or repeated",
                    account.id
                )));
            }
            let slot = engine.accounts.push(AccountSlot::new(AccountState {
                balances: Balances::default(),
                ..*account
            }));
            let hash = engine.account_index.hash(account.id);
            engine.account_index.insert(hash, slot);
        }
        // Validate references before anything follows them.
        let transfers_len = state.transfers.len() as u32;
        for (i, t) in state.transfers.iter().enumerate() {
            let pending_ok = t.pending == SLOT_NONE || (t.pending as usize) < i;
            if t.debit_account >= accounts_len || t.credit_account >= accounts_len || !pending_ok {
                return Err(invalid(format!("transfer {i} references a missing slot")));
            }
            if TransferFlags(t.flags).intersects(
                TransferFlags::POST_PENDING_TRANSFER | TransferFlags::VOID_PENDING_TRANSFER,
            ) == (t.pending == SLOT_NONE)
            {
                return Err(invalid(format!(
                    "transfer {i} post/void flags disagree with its pending slot"
                )));
            }
        }
        for (i, t) in state.trades.iter().enumerate() {
            let pending_ok = t.pending == SLOT_NONE || (t.pending as usize) < i;
            if t.accounts.iter().any(|&a| a >= accounts_len) || !pending_ok {
                return Err(invalid(format!("trade {i} references a missing slot")));
            }
            if TradeFlags(t.flags)
                .intersects(TradeFlags::POST_PENDING_TRADE | TradeFlags::VOID_PENDING_TRADE)
                == (t.pending == SLOT_NONE)
            {
                return Err(invalid(format!(
                    "trade {i} post/void flags disagree with its pending slot"
                )));
            }
        }
        for (i, e) in state.expiries.iter().enumerate() {
            let ok = match e.pending.kind() {
                Some(EventKind::Transfer) => e.pending.slot() < transfers_len,
                Some(EventKind::Trade) => e.pending.slot() < state.trades.len() as u32,
                _ => false,
            };
            if !ok {
                return Err(invalid(format!("expiry {i} references a missing event")));
            }
        }
        for t in state.transfers {
            let slot = engine.transfers.push(t);
            engine.index_restored_event(t.id, EventRef::transfer(slot))?;
            if t.status == PendingStatus::Pending {
                if let Some(at) = expires_at(t.timestamp, t.timeout) {
                    engine
                        .expiry_queue
                        .insert((at, t.timestamp, EventRef::transfer(slot)));
                }
            }
        }
        for t in state.trades {
            let slot = engine.trades.push(t);
            engine.index_restored_event(t.id, EventRef::trade(slot))?;
            if t.status == PendingStatus::Pending {
                if let Some(at) = expires_at(t.timestamp, t.timeout) {
                    engine
                        .expiry_queue
                        .insert((at, t.timestamp, EventRef::trade(slot)));
                }
            }
        }
        for expiry in state.expiries {
            engine.expiries.push(expiry);
        }

        // Replay every event's effect in timestamp order (the three streams are each in
        // timestamp order; a merge interleaves them), rebuilding histories and balances.
        let mut cursors = [0u32; 3];
        let lens = [
            engine.transfers.len() as u32,
            engine.trades.len() as u32,
            engine.expiries.len() as u32,
        ];
        let mut previous = 0u64;
        loop {
            let candidates = [
                (cursors[0] < lens[0]).then(|| EventRef::transfer(cursors[0])),
                (cursors[1] < lens[1]).then(|| EventRef::trade(cursors[1])),
                (cursors[2] < lens[2]).then(|| EventRef::expiry(cursors[2])),
            ];
            let Some((stream, event)) = candidates
                .iter()
                .enumerate()
                .filter_map(|(i, e)| e.map(|e| (i, e)))
                .min_by_key(|&(_, e)| engine.event_timestamp(e))
            else {
                break;
            };
            let timestamp = engine.event_timestamp(event);
            if timestamp <= previous || timestamp > engine.last_timestamp {
                return Err(invalid(format!(
                    "event timestamps out of order at {timestamp}"
                )));
            }
            previous = timestamp;
            cursors[stream] += 1;
            let (accounts, count) = engine.event_accounts(event);
            for &account in &accounts[..count] {
                let delta = engine.effect(account, event);
                let slot = engine.accounts.get_mut(account);
                slot.state.balances = slot.state.balances.wrapping_add(delta);
            }
            // Rebuilds the links too: they are derived, whatever the snapshot held.
            engine.record_history(&accounts[..count], event);
        }
        for (slot, stored) in state.accounts.iter().enumerate() {
            if engine.accounts.get(slot as u32).balances != stored.balances {
                return Err(invalid(format!(
                    "account {} balances do not match the replay of its events",
                    stored.id
                )));
            }
        }
        Ok(engine)
    }

    fn index_restored_event(&mut self, id: u128, event: EventRef) -> Result<(), SnapshotError> {
        let (hash, existing) = self.find_event(id);
        if existing.is_some() || id == 0 || id == u128::MAX {
            return Err(invalid(format!("event id {id} invalid or repeated")));
        }
        self.event_index.insert(hash, event.0);
        Ok(())
    }

    /// A BLAKE3 hash of the canonical little-endian encoding of the whole state: equal on every
    /// replica that applied the same log, whatever its hasher seed, build or machine.
    pub fn digest(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"tally-state-v1");
        hasher.update(&self.last_timestamp.to_le_bytes());
        for count in [
            self.accounts.len(),
            self.transfers.len(),
            self.trades.len(),
            self.expiries.len(),
        ] {
            hasher.update(&(count as u64).to_le_bytes());
        }
        for account in self.accounts.iter() {
            hasher.update(&account.to_record().encode());
        }
        for (slot, transfer) in self.transfers.iter().enumerate() {
            hasher.update(&self.stored_transfer_record(slot as u32).encode());
            hasher.update(&[transfer.status as u8]);
        }
        for (slot, trade) in self.trades.iter().enumerate() {
            hasher.update(&self.stored_trade_record(slot as u32).encode());
            hasher.update(&[trade.status as u8]);
        }
        for expiry in self.expiries.iter() {
            hasher.update(&expiry.pending.0.to_le_bytes());
            hasher.update(&expiry.timestamp.to_le_bytes());
        }
        *hasher.finalize().as_bytes()
    }
}
