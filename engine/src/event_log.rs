//! The verifiable log of applied events: one RFC 6962 leaf per event every batch applies,
//! failed events included, appended in apply order by every replica (docs/verifiability.md).
//!
//! A leaf (`LEAF_BYTES`, little-endian) says what happened to one event and where:
//!
//! ```text
//! 0   version u8 (1)
//! 1   kind u8: 1 account, 2 transfer, 3 trade (what the record is)
//! 2   result u16 (0 ok; docs/engine.md)
//! 4   index in its Raft entry u32 (counted through the entry's batches)
//! 8   commit index u64 (the Raft entry's)
//! 16  timestamp u64 (the event's; a failed event's is the one it would have had)
//! 24  record [128] (docs/records.md): as stored for an event that succeeded — what a lookup
//!     returns, an account with zero balances — and as sent for one that failed
//! ```
//!
//! The leaves' hashes live in an arena like the stored events, whose full chunks snapshots
//! share instead of copying (`Engine::freeze`); the tree's upper levels are derived, rebuilt at
//! restore. Each applied batch also keeps its position (`LogBatch`), so the leaf of a stored
//! event is found from its timestamp and its bytes rebuilt from the stored record: a proof by
//! event id needs no copy of the events as sent.

use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_channel::{Receiver, Sender};
use rkyv::{Archive, Deserialize, Serialize};

use crate::arena::{Arena, Shared};
use crate::checkpoint::{SignedCheckpoint, StoredCosignature};
use crate::engine::{Engine, Events};
use crate::merkle::{leaf_hash, Hash, Leaves, ProofError, Tree};
use crate::records::{self, RecordBytes};
use crate::result::EventResult;
use crate::state::EventKind;
use crate::Operation;

/// Bytes of a leaf.
pub const LEAF_BYTES: usize = 152;
/// The leaf layout's version byte.
pub const LEAF_VERSION: u8 = 1;

/// Where a batch sits in the replicated log: what `Engine::apply_at` stamps its leaves with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogPosition {
    /// The Raft entry's index.
    pub commit_index: u64,
    /// The batch's first event's index in the entry, counted through the entry's batches.
    pub index_in_entry: u32,
}

/// One applied batch's place in the log: its events are leaves `leaf_first..` (up to the next
/// batch's) with timestamps `timestamp_first..`, one apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub(crate) struct LogBatch {
    pub timestamp_first: u64,
    pub leaf_first: u64,
    pub commit_index: u64,
    pub index_in_entry: u32,
}

impl Leaves for Events<Hash> {
    fn count(&self) -> u64 {
        self.len() as u64
    }
    fn leaf(&self, index: u64) -> Hash {
        *self.get(index as u32)
    }
    fn append(&mut self, leaf: Hash) {
        self.push(leaf);
    }
}

/// The tree of applied events, its leaves hashed on the apply thread or on a stage of their
/// own (`Engine::start_leaf_hashing`), and where each batch of them sits.
#[derive(Debug, Default)]
pub(crate) struct EventLog {
    /// Shared with the hashing stage, which appends to it; it lags `size` by the batches the
    /// stage has not hashed yet ([`EventLog::settle`] waits for them).
    tree: Arc<Mutex<LeafTree>>,
    /// Leaves appended: events applied so far.
    pub(crate) size: u64,
    pub(crate) batches: Events<LogBatch>,
    /// The signed checkpoints the log has carried, in order of size.
    pub(crate) checkpoints: Events<SignedCheckpoint>,
    /// Witnesses' cosignatures of those checkpoints, in the order they came.
    pub(crate) cosignatures: Events<StoredCosignature>,
    stage: Option<Stage>,
}

/// The tree as the engine keeps it: leaf hashes in an arena whose chunks snapshots share.
pub(crate) type LeafTree = Tree<Events<Hash>>;

/// The apply side of a hashing stage: batches of leaves out, one acknowledgement back per
/// batch appended to the tree.
#[derive(Debug)]
struct Stage {
    leaves: Sender<Vec<[u8; LEAF_BYTES]>>,
    hashed: Receiver<()>,
}

/// Batches of leaves a hashing stage may hold before the apply waits for it: the most the
/// tree lags behind the applied state, and what a snapshot or a checkpoint waits for.
const STAGE_BATCHES: usize = 4;

/// The hashing stage's half: hash each batch of leaves and append the hashes to the tree, in
/// order. Run it ([`LeafHashWorker::run`]) on a thread of the caller's: the engine starts none.
pub struct LeafHashWorker {
    tree: Arc<Mutex<LeafTree>>,
    leaves: Receiver<Vec<[u8; LEAF_BYTES]>>,
    hashed: Sender<()>,
}

impl LeafHashWorker {
    /// Hash batches until the engine that started this stage drops it (or starts another).
    pub fn run(self) {
        for batch in self.leaves {
            let hashes: Vec<Hash> = batch.iter().map(|leaf| leaf_hash(leaf)).collect();
            let mut tree = lock(&self.tree);
            for hash in hashes {
                tree.push(hash);
            }
            drop(tree);
            if self.hashed.send(()).is_err() {
                return;
            }
        }
    }
}

/// The tree, locked. Poisoned only by a panic while appending (a broken invariant): the
/// hashes in it are still the ones appended, in order.
fn lock(tree: &Mutex<LeafTree>) -> MutexGuard<'_, LeafTree> {
    tree.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl EventLog {
    /// The tree as hashed so far (at most `STAGE_BATCHES` batches behind `size`).
    pub(crate) fn tree(&self) -> MutexGuard<'_, LeafTree> {
        lock(&self.tree)
    }

    /// Wait until every leaf appended is hashed into the tree.
    pub(crate) fn settle(&mut self) {
        if let Some(stage) = &self.stage {
            while self.tree().size() < self.size {
                assert!(
                    stage.hashed.recv().is_ok(),
                    "the leaf-hashing stage stopped with leaves not hashed"
                );
            }
            while stage.hashed.try_recv().is_ok() {}
        }
    }

    /// Append a batch's leaves: to the stage if there is one, else hashed here.
    fn append(&mut self, leaves: Vec<[u8; LEAF_BYTES]>) {
        self.size += leaves.len() as u64;
        match &self.stage {
            Some(stage) => {
                while stage.hashed.try_recv().is_ok() {}
                assert!(
                    stage.leaves.send(leaves).is_ok(),
                    "the leaf-hashing stage stopped"
                );
            }
            None => {
                let mut tree = self.tree();
                for leaf in &leaves {
                    tree.push(leaf_hash(leaf));
                }
            }
        }
    }
}

/// Why a replicated checkpoint was not kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckpointRefused {
    /// Not past the latest one kept (a checkpoint proposed twice, or by two leaders): harmless.
    NotNewer { latest: u64 },
    /// Its size is past this replica's log: the checkpoint and the log disagree.
    PastTheLog { size: u64, log: u64 },
    /// Its root is not this replica's root at its size: this replica's history and the one the
    /// leader signed differ — one of them diverged.
    RootMismatch { size: u64 },
}

impl std::fmt::Display for CheckpointRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckpointRefused::NotNewer { latest } => {
                write!(f, "not past the latest checkpoint (size {latest})")
            }
            CheckpointRefused::PastTheLog { size, log } => {
                write!(
                    f,
                    "checkpoint of size {size} is past this log's {log} leaves"
                )
            }
            CheckpointRefused::RootMismatch { size } => write!(
                f,
                "the checkpoint's root at size {size} is not this replica's: the histories differ"
            ),
        }
    }
}

impl std::error::Error for CheckpointRefused {}

impl CheckpointRefused {
    /// Whether it means this replica's history is not the one signed (it must stop applying).
    pub fn is_divergence(&self) -> bool {
        !matches!(self, CheckpointRefused::NotNewer { .. })
    }
}

/// One event's leaf and the proof that it is in the tree of some size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventProof {
    /// The leaf's bytes (the layout above).
    pub leaf: [u8; LEAF_BYTES],
    /// Its index in the tree.
    pub index: u64,
    /// The tree size the proof is for.
    pub size: u64,
    /// RFC 6962's audit path, nearest the leaf first.
    pub proof: Vec<Hash>,
}

/// The leaf bytes of one event.
pub(crate) fn leaf(
    kind: u8,
    result: EventResult,
    position: LogPosition,
    offset: u32,
    timestamp: u64,
    record: &RecordBytes,
) -> [u8; LEAF_BYTES] {
    let mut leaf = [0u8; LEAF_BYTES];
    leaf[0] = LEAF_VERSION;
    leaf[1] = kind;
    leaf[2..4].copy_from_slice(&(result as u16).to_le_bytes());
    leaf[4..8].copy_from_slice(&position.index_in_entry.wrapping_add(offset).to_le_bytes());
    leaf[8..16].copy_from_slice(&position.commit_index.to_le_bytes());
    leaf[16..24].copy_from_slice(&timestamp.to_le_bytes());
    leaf[24..].copy_from_slice(record);
    leaf
}

impl Engine {
    /// Hash this engine's leaves on a stage of their own from now on, instead of on the apply
    /// thread: run the returned worker on a thread of the caller's. The tree then lags the
    /// applied state by at most a few batches; what needs it whole (a snapshot's freeze, a
    /// replicated checkpoint) waits for the stage, and reads use the part hashed. Outputs do
    /// not change.
    pub fn start_leaf_hashing(&mut self) -> LeafHashWorker {
        self.log.settle();
        let (leaves_in, leaves_out) = crossbeam_channel::bounded(STAGE_BATCHES);
        let (hashed_in, hashed_out) = crossbeam_channel::unbounded();
        self.log.stage = Some(Stage {
            leaves: leaves_in,
            hashed: hashed_out,
        });
        LeafHashWorker {
            tree: Arc::clone(&self.log.tree),
            leaves: leaves_out,
            hashed: hashed_in,
        }
    }

    /// Hash leaves on the apply thread again (after waiting for the stage, if any).
    pub fn stop_leaf_hashing(&mut self) {
        self.log.settle();
        self.log.stage = None;
    }

    /// Append the leaves of the batch just applied: `body`'s events, `failures` theirs by
    /// exception, timestamps from `timestamp_first`; the events that succeeded are the last
    /// ones stored of their kinds (`stored_before`: each kind's count before the batch).
    pub(crate) fn log_batch(
        &mut self,
        operation: Operation,
        body: &[u8],
        failures: &[(u32, EventResult)],
        timestamp_first: u64,
        position: LogPosition,
        stored_before: [usize; 3],
    ) {
        let (records, _) = body.as_chunks::<{ crate::limits::RECORD_BYTES }>();
        self.log.batches.push(LogBatch {
            timestamp_first,
            leaf_first: self.log.size,
            commit_index: position.commit_index,
            index_in_entry: position.index_in_entry,
        });
        let [mut account, mut transfer, mut trade] = stored_before.map(|n| n as u32);
        let mut failures = failures.iter().peekable();
        let mut leaves = Vec::with_capacity(records.len());
        for (i, sent) in records.iter().enumerate() {
            let result = match failures.peek() {
                Some(&&(at, result)) if at as usize == i => {
                    failures.next();
                    result
                }
                _ => EventResult::Ok,
            };
            let (kind, sent) = match operation {
                Operation::CreateSettlements => records::settlement_event(sent),
                other => (other, *sent),
            };
            let record = if result != EventResult::Ok {
                sent
            } else {
                match kind {
                    Operation::CreateAccounts => {
                        account += 1;
                        self.account_leaf_record(account - 1)
                    }
                    Operation::CreateTransfers => {
                        transfer += 1;
                        self.stored_transfer_record(transfer - 1).encode()
                    }
                    _ => {
                        trade += 1;
                        self.stored_trade_record(trade - 1).encode()
                    }
                }
            };
            let timestamp = timestamp_first + i as u64;
            leaves.push(leaf(
                kind as u8, result, position, i as u32, timestamp, &record,
            ));
        }
        self.log.append(leaves);
    }

    /// An account's record as created: its stored record with zero balances.
    fn account_leaf_record(&self, slot: u32) -> RecordBytes {
        let mut account = self.accounts.get(slot).state;
        account.balances = Default::default();
        account.to_record().encode()
    }

    /// Keep `checkpoint`, a checkpoint of this log signed by the leader and replicated: its
    /// root must be this replica's root at its size (the replicas' check that they applied the
    /// same history), its size past the latest kept. Deterministic; refused, nothing changes.
    pub fn record_checkpoint(
        &mut self,
        checkpoint: SignedCheckpoint,
    ) -> Result<(), CheckpointRefused> {
        self.log.settle();
        if let Some(latest) = self.latest_checkpoint() {
            if checkpoint.size <= latest.1.size {
                return Err(CheckpointRefused::NotNewer {
                    latest: latest.1.size,
                });
            }
        }
        let log = self.log_size();
        let root = self
            .log_root(checkpoint.size)
            .map_err(|_| CheckpointRefused::PastTheLog {
                size: checkpoint.size,
                log,
            })?;
        if root != checkpoint.root {
            return Err(CheckpointRefused::RootMismatch {
                size: checkpoint.size,
            });
        }
        self.log.checkpoints.push(checkpoint);
        Ok(())
    }

    /// Keep a witness's `cosignature` of a checkpoint this log holds (checked against the
    /// witness's key by whoever proposed it: the gateway, against the keys it is configured
    /// with). Deterministic; `false`, nothing kept, for a checkpoint not held or a witness
    /// key that already cosigned it.
    pub fn record_cosignature(&mut self, cosignature: StoredCosignature) -> bool {
        let known = cosignature.checkpoint < self.checkpoints_count();
        let repeated = self.log.cosignatures.iter().any(|kept| {
            kept.checkpoint == cosignature.checkpoint && kept.key_id == cosignature.key_id
        });
        if !known || repeated {
            return false;
        }
        self.log.cosignatures.push(cosignature);
        true
    }

    /// The cosignatures kept of checkpoint `index`, in the order they came.
    pub fn cosignatures_of(&self, index: u64) -> Vec<StoredCosignature> {
        self.log
            .cosignatures
            .iter()
            .filter(|kept| kept.checkpoint == index)
            .copied()
            .collect()
    }

    /// Checkpoints kept.
    pub fn checkpoints_count(&self) -> u64 {
        self.log.checkpoints.len() as u64
    }

    /// Checkpoint `index` (from 0, oldest first).
    pub fn checkpoint(&self, index: u64) -> Option<SignedCheckpoint> {
        (index < self.checkpoints_count()).then(|| *self.log.checkpoints.get(index as u32))
    }

    /// The latest checkpoint and its index.
    pub fn latest_checkpoint(&self) -> Option<(u64, SignedCheckpoint)> {
        let count = self.checkpoints_count();
        count
            .checked_sub(1)
            .map(|i| (i, *self.log.checkpoints.get(i as u32)))
    }

    /// Leaves in the log: events applied so far.
    pub fn log_size(&self) -> u64 {
        self.log.size
    }

    /// The size and root of the tree as hashed so far (with a hashing stage, a few batches
    /// behind `log_size` at most): what a checkpoint can be made of now.
    pub fn log_head(&self) -> (u64, Hash) {
        let tree = self.log.tree();
        let size = tree.size();
        (size, tree.root(size).expect("the tree's own size"))
    }

    /// The log's root at `size` leaves (hashed already: see `log_head`).
    pub fn log_root(&self, size: u64) -> Result<Hash, ProofError> {
        self.log.tree().root(size)
    }

    /// RFC 6962's consistency proof from the log at `old` leaves to `new` (hashed already).
    pub fn log_consistency(&self, old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
        self.log.tree().consistency_proof(old, new)
    }

    /// The leaf of the stored transfer, trade or account `id` (`account` says which space),
    /// and its inclusion proof in the log at `size` leaves: `None` when no such event or
    /// account is stored; an error when `size` is not in `leaf index + 1 ..= log_size`.
    pub fn prove(
        &self,
        id: u128,
        account: bool,
        size: u64,
    ) -> Option<Result<EventProof, ProofError>> {
        let (kind, timestamp, record) = if account {
            let slot = self.find_account(id)?;
            let state = self.accounts.get(slot).state;
            (
                Operation::CreateAccounts,
                state.timestamp,
                self.account_leaf_record(slot),
            )
        } else {
            let event = self.find_event(id).1?;
            match event.kind() {
                EventKind::Transfer => {
                    let record = self.stored_transfer_record(event.slot());
                    (
                        Operation::CreateTransfers,
                        record.timestamp,
                        record.encode(),
                    )
                }
                EventKind::Trade => {
                    let record = self.stored_trade_record(event.slot());
                    (Operation::CreateTrades, record.timestamp, record.encode())
                }
                // A failed id has no stored record to rebuild its leaf from.
                _ => return None,
            }
        };
        let (batch, offset) = self.log_batch_of(timestamp)?;
        let index = batch.leaf_first + offset;
        let position = LogPosition {
            commit_index: batch.commit_index,
            index_in_entry: batch.index_in_entry,
        };
        let leaf = leaf(
            kind as u8,
            EventResult::Ok,
            position,
            offset as u32,
            timestamp,
            &record,
        );
        Some(
            self.log
                .tree()
                .inclusion_proof(index, size)
                .map(|proof| EventProof {
                    leaf,
                    index,
                    size,
                    proof,
                }),
        )
    }

    /// The logged batch holding the event stamped `timestamp`, and the event's offset in it.
    fn log_batch_of(&self, timestamp: u64) -> Option<(LogBatch, u64)> {
        let batches = &self.log.batches;
        // The last batch whose first timestamp is at or before `timestamp`.
        let at = batches
            .partition_point(|batch| batch.timestamp_first <= timestamp)
            .checked_sub(1)?;
        let batch = *batches.get(at as u32);
        let end = if at + 1 < batches.len() {
            batches.get(at as u32 + 1).leaf_first
        } else {
            self.log.size
        };
        let offset = timestamp - batch.timestamp_first;
        (batch.leaf_first + offset < end).then_some((batch, offset))
    }
}

/// A restored log from its leaf-hash arena, batches and checkpoints: the tree's upper levels
/// rebuilt.
pub(crate) fn restored_log(
    leaves: Arena<Hash, Shared<Hash>>,
    batches: Events<LogBatch>,
    checkpoints: Events<SignedCheckpoint>,
    cosignatures: Events<StoredCosignature>,
) -> EventLog {
    EventLog {
        size: leaves.len() as u64,
        tree: Arc::new(Mutex::new(Tree::with_leaves(leaves))),
        batches,
        checkpoints,
        cosignatures,
        stage: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::verify_inclusion;
    use crate::records::{encode_batch, Account, Trade, Transfer, TransferFlags};
    use crate::EngineConfig;

    const T0: u64 = 1_700_000_000_000_000_000;

    fn transfer(id: u128, debit: u128, credit: u128, flags: TransferFlags) -> Transfer {
        Transfer {
            id,
            debit_account_id: debit,
            credit_account_id: credit,
            amount: 5,
            ledger: 1,
            code: 1,
            flags,
            ..Transfer::default()
        }
    }

    fn trade(id: u128, cash_ledger: u32) -> Trade {
        Trade {
            id,
            instrument_debit_account_id: 5,
            instrument_credit_account_id: 6,
            cash_debit_account_id: 1,
            cash_credit_account_id: 2,
            instrument_ledger: 2,
            cash_ledger,
            quantity: 3,
            cash_amount: 30,
            code: 1,
            ..Trade::default()
        }
    }

    /// Accounts at entry 3; at entry 4 (from index 7 in it) transfers: one that succeeds, a
    /// linked chain that fails at its second event, one that succeeds, a repeated id; at entry
    /// 5 a trade that succeeds and one that fails.
    fn engine_with_history() -> (Engine, Vec<u8>, Vec<u8>, EventResult) {
        history(Engine::new(EngineConfig { hash_seed: 3 }))
    }

    fn history(mut engine: Engine) -> (Engine, Vec<u8>, Vec<u8>, EventResult) {
        let accounts: Vec<Account> = (1..=8u128)
            .map(|id| Account {
                id,
                ledger: if id <= 4 { 1 } else { 2 },
                code: 1,
                ..Account::default()
            })
            .collect();
        let at = |commit_index, index_in_entry| LogPosition {
            commit_index,
            index_in_entry,
        };
        let body = encode_batch(&accounts, Account::encode);
        let outcome = engine.apply_at(Operation::CreateAccounts, T0, &body, at(3, 0));
        assert!(outcome.is_ok_and(|o| o.failures.is_empty()));
        let linked = TransferFlags::LINKED;
        let none = TransferFlags::default();
        let transfers = encode_batch(
            &[
                transfer(10, 1, 2, none),
                transfer(11, 1, 2, linked),
                transfer(12, 1, 99, none),
                transfer(13, 2, 3, none),
                transfer(10, 1, 2, none),
            ],
            Transfer::encode,
        );
        let outcome = engine
            .apply_at(Operation::CreateTransfers, T0 + 100, &transfers, at(4, 7))
            .expect("a valid batch");
        assert_eq!(
            outcome.failures,
            vec![
                (1, EventResult::LinkedEventFailed),
                (2, EventResult::CreditAccountNotFound),
                (4, EventResult::Exists),
            ]
        );
        let trades = encode_batch(&[trade(20, 1), trade(21, 2)], Trade::encode);
        let outcome = engine
            .apply_at(Operation::CreateTrades, T0 + 200, &trades, at(5, 0))
            .expect("a valid batch");
        assert_eq!(outcome.failures.len(), 1);
        assert_eq!(outcome.failures[0].0, 1);
        (engine, transfers, trades, outcome.failures[0].1)
    }

    fn field<const N: usize>(leaf: &[u8; LEAF_BYTES], at: usize) -> [u8; N] {
        leaf[at..at + N].try_into().expect("in the leaf")
    }

    #[test]
    fn every_applied_event_is_a_leaf_and_every_stored_one_proves() {
        let (engine, ..) = engine_with_history();
        assert_eq!(engine.log_size(), 8 + 5 + 2);
        let size = engine.log_size();
        let root = engine.log_root(size).unwrap();
        let stored =
            (1..=8u128)
                .map(|id| (id, true))
                .chain([(10, false), (13, false), (20, false)]);
        for (id, account) in stored {
            let proof = engine.prove(id, account, size).unwrap().unwrap();
            let hash = leaf_hash(&proof.leaf);
            assert_eq!(
                engine.log.tree().leaves().leaf(proof.index),
                hash,
                "id {id}"
            );
            verify_inclusion(proof.index, size, &hash, &proof.proof, &root).unwrap();
            // The leaf says what the lookup says, where it was applied, and that it succeeded.
            let (kind, record, timestamp, commit) = if account {
                let mut a = engine.lookup_account(id).unwrap();
                a.debits_posted = 0;
                a.credits_posted = 0;
                a.debits_pending = 0;
                a.credits_pending = 0;
                (1, a.encode(), a.timestamp, 3)
            } else if id == 20 {
                let t = engine.lookup_trade(id).unwrap();
                (3, t.encode(), t.timestamp, 5)
            } else {
                let t = engine.lookup_transfer(id).unwrap();
                (2, t.encode(), t.timestamp, 4)
            };
            assert_eq!(proof.leaf[0], LEAF_VERSION);
            assert_eq!(proof.leaf[1], kind);
            assert_eq!(field::<2>(&proof.leaf, 2), [0, 0]);
            assert_eq!(u64::from_le_bytes(field(&proof.leaf, 8)), commit);
            assert_eq!(u64::from_le_bytes(field(&proof.leaf, 16)), timestamp);
            assert_eq!(field::<128>(&proof.leaf, 24), record);
        }
        // Transfer 13 is the batch's fourth event: leaf 8 + 3, index 7 + 3 in its entry.
        let proof = engine.prove(13, false, size).unwrap().unwrap();
        assert_eq!(proof.index, 11);
        assert_eq!(u32::from_le_bytes(field(&proof.leaf, 4)), 10);
        // An older tree holds it too; a tree that ends before it does not.
        assert!(engine.prove(13, false, 12).unwrap().is_ok());
        assert!(engine.prove(13, false, 11).unwrap().is_err());
        assert!(engine.prove(13, false, size + 1).unwrap().is_err());
        // Neither an event rolled back nor one never stored has a stored record to prove.
        assert!(engine.prove(11, false, size).is_none());
        assert!(engine.prove(12, false, size).is_none());
        assert!(engine.prove(99, true, size).is_none());
    }

    /// A failed event's leaf holds its result and the record as sent, at its own place.
    #[test]
    fn failed_events_are_leaves_with_their_result_and_the_record_sent() {
        let (engine, transfers, trades, trade_result) = engine_with_history();
        let first = engine.lookup_transfer(10).unwrap().timestamp;
        let record = |body: &[u8], i: usize| -> RecordBytes {
            body[i * 128..(i + 1) * 128].try_into().unwrap()
        };
        let position = LogPosition {
            commit_index: 4,
            index_in_entry: 7,
        };
        for (i, result) in [
            (1, EventResult::LinkedEventFailed),
            (2, EventResult::CreditAccountNotFound),
            (4, EventResult::Exists),
        ] {
            let bytes = leaf(
                2,
                result,
                position,
                i,
                first + u64::from(i),
                &record(&transfers, i as usize),
            );
            assert_eq!(
                engine.log.tree().leaves().leaf(8 + u64::from(i)),
                leaf_hash(&bytes)
            );
        }
        let trade_first = engine.lookup_trade(20).unwrap().timestamp;
        let position = LogPosition {
            commit_index: 5,
            index_in_entry: 0,
        };
        let bytes = leaf(
            3,
            trade_result,
            position,
            1,
            trade_first + 1,
            &record(&trades, 1),
        );
        assert_eq!(engine.log.tree().leaves().leaf(14), leaf_hash(&bytes));
    }

    fn signed(engine: &Engine, size: u64) -> SignedCheckpoint {
        let key = crate::checkpoint::NoteSigner::new("tally/test", &[5; 32]).unwrap();
        let checkpoint = crate::checkpoint::Checkpoint {
            origin: "tally/test".into(),
            size,
            root: engine.log_root(size).unwrap(),
            time_ns: T0 + size,
        };
        key.sign_checkpoint(&checkpoint).unwrap()
    }

    #[test]
    fn checkpoints_are_kept_only_when_they_are_this_history() {
        let (mut engine, ..) = engine_with_history();
        let digest = engine.digest();
        let mut forged = signed(&engine, 8);
        forged.root[0] ^= 1;
        assert_eq!(
            engine.record_checkpoint(forged),
            Err(CheckpointRefused::RootMismatch { size: 8 })
        );
        assert!(engine
            .record_checkpoint(forged)
            .unwrap_err()
            .is_divergence());
        let past = signed(&engine, 15);
        let mut past = past;
        past.size = 16;
        assert_eq!(
            engine.record_checkpoint(past),
            Err(CheckpointRefused::PastTheLog { size: 16, log: 15 })
        );
        assert_eq!(
            engine.digest(),
            digest,
            "a refused checkpoint changes nothing"
        );
        engine.record_checkpoint(signed(&engine, 8)).unwrap();
        let again = engine.record_checkpoint(signed(&engine, 8)).unwrap_err();
        assert_eq!(again, CheckpointRefused::NotNewer { latest: 8 });
        assert!(!again.is_divergence());
        engine.record_checkpoint(signed(&engine, 15)).unwrap();
        assert_eq!(engine.checkpoints_count(), 2);
        assert_ne!(engine.digest(), digest);
        assert_eq!(engine.checkpoint(1).map(|c| c.size), Some(15));
        assert_eq!(engine.checkpoint(2), None);
        // A witness's cosignature of a checkpoint held is kept once; of one not held, never.
        let cosignature = crate::checkpoint::StoredCosignature {
            checkpoint: 1,
            key_id: [1, 2, 3, 4],
            time: 77,
            signature: [5; 64],
        };
        assert!(engine.record_cosignature(cosignature));
        assert!(!engine.record_cosignature(cosignature));
        assert!(
            !engine.record_cosignature(crate::checkpoint::StoredCosignature {
                checkpoint: 2,
                ..cosignature
            })
        );
        assert_eq!(engine.cosignatures_of(1), vec![cosignature]);
        assert_eq!(engine.cosignatures_of(0), vec![]);
        assert_eq!(engine.latest_checkpoint().map(|c| c.0), Some(1));
        let restored = Engine::restore(&engine.snapshot(), EngineConfig::default()).unwrap();
        assert_eq!(restored.digest(), engine.digest());
        assert_eq!(restored.checkpoint(1), engine.checkpoint(1));
        assert_eq!(restored.cosignatures_of(1), vec![cosignature]);
    }

    /// Leaves hashed on a stage of their own make the same tree, the same proofs, the same
    /// snapshot and digest as leaves hashed on the apply thread.
    #[test]
    fn a_hashing_stage_builds_the_same_tree() {
        let (mut inline, ..) = engine_with_history();
        let mut staged = Engine::new(EngineConfig { hash_seed: 9 });
        let worker = staged.start_leaf_hashing();
        let thread = std::thread::spawn(move || worker.run());
        let (mut staged, ..) = history(staged);
        assert_eq!(staged.log_size(), inline.log_size());
        assert_eq!(
            staged.digest(),
            inline.digest(),
            "the digest waits for nothing"
        );
        // A checkpoint waits for the stage, then holds for both.
        let checkpoint = signed(&inline, 15);
        inline.record_checkpoint(checkpoint).unwrap();
        staged.record_checkpoint(checkpoint).unwrap();
        assert_eq!(staged.log_head(), inline.log_head());
        assert_eq!(staged.prove(13, false, 15), inline.prove(13, false, 15));
        assert_eq!(staged.snapshot(), inline.snapshot());
        drop(staged);
        thread.join().expect("the stage ends with its engine");
    }

    #[test]
    fn the_log_survives_a_snapshot_and_is_in_the_digest() {
        let (mut engine, ..) = engine_with_history();
        let restored = Engine::restore(&engine.snapshot(), EngineConfig::default()).unwrap();
        assert_eq!(restored.digest(), engine.digest());
        assert_eq!(restored.log_size(), engine.log_size());
        let size = engine.log_size();
        assert_eq!(restored.log_root(size), engine.log_root(size));
        for id in [10, 13] {
            assert_eq!(
                restored.prove(id, false, size),
                engine.prove(id, false, size)
            );
        }
        assert_eq!(
            restored.log_consistency(8, size),
            engine.log_consistency(8, size)
        );
        // One more event moves the root, and the digest with it.
        let mut grown = Engine::restore(&engine.snapshot(), EngineConfig::default()).unwrap();
        let body = encode_batch(
            &[transfer(30, 1, 2, TransferFlags::default())],
            Transfer::encode,
        );
        let outcome = grown.apply(Operation::CreateTransfers, T0 + 300, &body);
        assert!(outcome.is_ok_and(|o| o.failures.is_empty()));
        assert_ne!(grown.digest(), engine.digest());
        assert_eq!(grown.log_root(size), engine.log_root(size));
    }
}
