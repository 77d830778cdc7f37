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

/// Whether `checkpoint` may be kept for a log whose latest kept checkpoint has size `latest`
/// and whose tree is `tree`: past the latest, within the tree, and the tree's root at its size
/// (the rule both logs keep their checkpoints by).
pub(crate) fn checkpoint_fits<L: Leaves>(
    checkpoint: &SignedCheckpoint,
    latest: Option<u64>,
    tree: &Tree<L>,
) -> Result<(), CheckpointRefused> {
    if let Some(latest) = latest.filter(|&latest| checkpoint.size <= latest) {
        return Err(CheckpointRefused::NotNewer { latest });
    }
    let root = tree
        .root(checkpoint.size)
        .map_err(|_| CheckpointRefused::PastTheLog {
            size: checkpoint.size,
            log: tree.size(),
        })?;
    if root != checkpoint.root {
        return Err(CheckpointRefused::RootMismatch {
            size: checkpoint.size,
        });
    }
    Ok(())
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
        let latest = self.latest_checkpoint().map(|(_, latest)| latest.size);
        checkpoint_fits(&checkpoint, latest, &*self.log.tree())?;
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

    /// The oldest checkpoint covering every event of the Raft entries up to `commit_index` (a
    /// create reply's commit position: the handle to its checkpoint), and its index; `None`
    /// while none does yet (the leader signs one within about a second). Answers for entries
    /// this replica applied: its caller checks that it applied `commit_index`.
    pub fn checkpoint_covering(&self, commit_index: u64) -> Option<(u64, SignedCheckpoint)> {
        let batches = &self.log.batches;
        let after = batches.partition_point(|batch| batch.commit_index <= commit_index);
        let leaves = if after < batches.len() {
            batches.get(after as u32).leaf_first
        } else {
            self.log.size
        };
        let checkpoints = &self.log.checkpoints;
        let at = checkpoints.partition_point(|checkpoint| checkpoint.size < leaves);
        (at < checkpoints.len()).then(|| (at as u64, *checkpoints.get(at as u32)))
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
#[path = "event_log_tests.rs"]
mod tests;
