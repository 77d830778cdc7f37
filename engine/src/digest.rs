//! The state digest: a BLAKE3 hash of the state's canonical encoding, equal on every replica
//! that applied the same log (what replicas and the history checks compare).

use crate::engine::Engine;

impl Engine {
    /// A BLAKE3 hash of the canonical little-endian encoding of the whole state, the
    /// verifiable log, the access trail and the settlement book included: equal on every
    /// replica that applied the same log, whatever its hasher seed, build or machine.
    pub fn digest(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        // v3: the settlement book joined the state.
        hasher.update(b"tally-state-v3");
        hasher.update(&self.ledger_digest());
        // The log's size, batch positions and checkpoints; not its root, which a hashing
        // stage may not have reached yet: replicas compare roots through the checkpoints they
        // keep (each kept only if its root is the replica's own).
        let log = &self.log;
        let counts = [
            log.size as usize,
            log.batches.len(),
            log.checkpoints.len(),
            log.cosignatures.len(),
        ];
        for count in counts {
            hasher.update(&(count as u64).to_le_bytes());
        }
        for checkpoint in log.checkpoints.iter() {
            hasher.update(&checkpoint.encode());
        }
        for cosignature in log.cosignatures.iter() {
            hasher.update(&cosignature.encode());
        }
        // The hashes of the leaves that cannot be rebuilt (failed events, accounts).
        hasher.update(&(log.kept.len() as u64).to_le_bytes());
        for kept in log.kept.iter() {
            hasher.update(&kept.index.to_le_bytes());
            hasher.update(&kept.hash);
        }
        for batch in self.log.batches.iter() {
            hasher.update(&batch.timestamp_first.to_le_bytes());
            hasher.update(&batch.leaf_first.to_le_bytes());
            hasher.update(&batch.commit_index.to_le_bytes());
            hasher.update(&batch.index_in_entry.to_le_bytes());
        }
        // The access trail whole: it is hashed as it is recorded.
        self.access.digest_into(&mut hasher);
        // The settlement book whole (its fail limit, cycles, instructions and commands), an
        // entry at a time.
        self.settlement.digest_into(&mut hasher);
        *hasher.finalize().as_bytes()
    }

    /// The [`Engine::digest`] of the ledger alone — accounts, events, expiries, failed ids,
    /// the clock — without the verifiable log: equal for two engines whose events differ only
    /// in what was refused (a refused event is a leaf of the log, and changes nothing else).
    /// Not the settlement book either: like the log and the access trail it is a structure
    /// beside the ledger, in [`Engine::digest`]; what a run settles reaches this digest as the
    /// events it posts. (It also keeps this digest comparable between an engine and its
    /// restore from a format before the book, which has an empty one.)
    pub fn ledger_digest(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"tally-state-v1");
        hasher.update(&self.last_timestamp.to_le_bytes());
        for count in [
            self.accounts.len(),
            self.transfers.len(),
            self.trades.len(),
            self.expiries.len(),
            self.failed.len(),
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
        for id in self.failed.iter() {
            hasher.update(&id.to_le_bytes());
        }
        *hasher.finalize().as_bytes()
    }
}
