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
//! Each applied batch keeps its position (`LogBatch`), so the leaf of a stored transfer or
//! trade is found from its timestamp and its bytes rebuilt from the stored record: the log
//! keeps no copy of the events as sent, and no hash of such a leaf. The tree keeps one hash
//! per group of `2^LEAF_GROUP_LEVEL` leaves (in an arena like the stored events, whose full
//! chunks snapshots share instead of copying, `Engine::freeze`) and the levels above it
//! (derived, rebuilt at restore); a root or proof that needs leaves inside a group rebuilds
//! them (`Engine::log_leaf_hash`). The leaves that cannot be rebuilt keep their hashes
//! (`KeptLeaf`): failed events (their record as sent is not stored) and accounts (an account's
//! flags change when it is closed or reopened). That is ~4 bytes per event instead of ~64
//! (docs/performance.md, "Memory per stored transfer").

use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_channel::{Receiver, Sender};
use rkyv::{Archive, Deserialize, Serialize};

use crate::checkpoint::{SignedCheckpoint, StoredCosignature};
use crate::engine::{Engine, Events};
use crate::merkle::{leaf_hash, Hash, Leaves, ProofError, Tree};
use crate::records::{self, RecordBytes};
use crate::result::EventResult;
use crate::snapshot::{invalid, SnapshotError};
use crate::state::EventKind;
use crate::Operation;

/// Bytes of a leaf.
pub const LEAF_BYTES: usize = 152;
/// The leaf layout's version byte.
pub const LEAF_VERSION: u8 = 1;

/// Leaves per group of the tree, as a power of two: the tree keeps one hash per 16 leaves,
/// and rebuilds at most 15 leaves for a root, 30 for a proof.
pub const LEAF_GROUP_LEVEL: u32 = 4;

/// The hash of a leaf that cannot be rebuilt from the stored state (a failed event's, an
/// account's), by its index in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub(crate) struct KeptLeaf {
    pub index: u64,
    pub hash: Hash,
}

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
    /// The hashes of the leaves that cannot be rebuilt, in leaf order.
    pub(crate) kept: Events<KeptLeaf>,
    /// The signed checkpoints the log has carried, in order of size.
    pub(crate) checkpoints: Events<SignedCheckpoint>,
    /// Witnesses' cosignatures of those checkpoints, in the order they came.
    pub(crate) cosignatures: Events<StoredCosignature>,
    stage: Option<Stage>,
}

/// The tree as the engine keeps it: group hashes in an arena whose chunks snapshots share.
pub(crate) type LeafTree = Tree<Events<Hash>, LEAF_GROUP_LEVEL>;

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

    /// The kept hash of leaf `index`, if it is one that cannot be rebuilt.
    pub(crate) fn kept_hash(&self, index: u64) -> Option<Hash> {
        let at = self.kept.partition_point(|kept| kept.index < index);
        (at < self.kept.len())
            .then(|| *self.kept.get(at as u32))
            .filter(|kept| kept.index == index)
            .map(|kept| kept.hash)
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
pub(crate) fn checkpoint_fits(
    checkpoint: &SignedCheckpoint,
    latest: Option<u64>,
    log: u64,
    root_at: impl FnOnce(u64) -> Result<Hash, ProofError>,
) -> Result<(), CheckpointRefused> {
    if let Some(latest) = latest.filter(|&latest| checkpoint.size <= latest) {
        return Err(CheckpointRefused::NotNewer { latest });
    }
    let root = root_at(checkpoint.size).map_err(|_| CheckpointRefused::PastTheLog {
        size: checkpoint.size,
        log,
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
        // What a settlement run made during the batch (`Engine::generated`), logged after it.
        let generated = std::mem::take(&mut self.generated);
        let (records, _) = body.as_chunks::<{ crate::limits::RECORD_BYTES }>();
        self.log.batches.push(LogBatch {
            timestamp_first,
            leaf_first: self.log.size,
            commit_index: position.commit_index,
            index_in_entry: position.index_in_entry,
        });
        let [mut account, mut transfer, mut trade] = stored_before.map(|n| n as u32);
        let mut failures = failures.iter().peekable();
        let mut leaves = Vec::with_capacity(records.len() + generated.len());
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
                    // As stored: with the timestamp the engine gave it.
                    Operation::CreateInstructions => self
                        .settlement
                        .instruction(records::raw_id(&sent))
                        .expect("an instruction taken is in the book")
                        .instruction
                        .encode(),
                    Operation::SettlementCommands => *self
                        .settlement
                        .command(records::raw_id(&sent))
                        .expect("a command applied is in the book"),
                    _ => {
                        trade += 1;
                        self.stored_trade_record(trade - 1).encode()
                    }
                }
            };
            let timestamp = timestamp_first + i as u64;
            let bytes = leaf(kind as u8, result, position, i as u32, timestamp, &record);
            // Only a stored transfer's or trade's leaf can be rebuilt later: keep the others'
            // hashes (the exceptions; a hashing stage hashes them again for the tree).
            if result != EventResult::Ok || kept_kind(kind) {
                self.log.kept.push(KeptLeaf {
                    index: self.log.size + leaves.len() as u64,
                    hash: leaf_hash(&bytes),
                });
            }
            leaves.push(bytes);
        }
        // What a settlement run made: after the batch's own events, timestamps going on.
        for (j, made) in generated.iter().enumerate() {
            let i = records.len() + j;
            let (kind, record) = match *made {
                crate::cycle::Generated::Account(slot) => (
                    Operation::CreateAccounts as u8,
                    self.account_leaf_record(slot),
                ),
                crate::cycle::Generated::Transfer(slot) => (
                    Operation::CreateTransfers as u8,
                    self.stored_transfer_record(slot).encode(),
                ),
                crate::cycle::Generated::Run(cycle) => (
                    crate::cycle::RUN_LEAF_KIND,
                    self.settlement
                        .run_record(cycle)
                        .expect("a run's record is kept")
                        .leaf_record(),
                ),
            };
            let timestamp = timestamp_first + i as u64;
            let bytes = leaf(
                kind,
                EventResult::Ok,
                position,
                i as u32,
                timestamp,
                &record,
            );
            if kind != Operation::CreateTransfers as u8 {
                self.log.kept.push(KeptLeaf {
                    index: self.log.size + leaves.len() as u64,
                    hash: leaf_hash(&bytes),
                });
            }
            leaves.push(bytes);
        }
        self.log.append(leaves);
        self.generated = generated;
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
        let tree = self.log.tree();
        checkpoint_fits(&checkpoint, latest, tree.size(), |size| {
            tree.root_with(size, &|index| self.log_leaf_hash(index))
        })?;
        drop(tree);
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
        let root = tree.root_with(size, &|index| self.log_leaf_hash(index));
        (size, root.expect("the tree's own size"))
    }

    /// The log's root at `size` leaves (hashed already: see `log_head`).
    pub fn log_root(&self, size: u64) -> Result<Hash, ProofError> {
        self.log
            .tree()
            .root_with(size, &|index| self.log_leaf_hash(index))
    }

    /// RFC 6962's consistency proof from the log at `old` leaves to `new` (hashed already).
    pub fn log_consistency(&self, old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
        self.log
            .tree()
            .consistency_proof_with(old, new, &|index| self.log_leaf_hash(index))
    }

    /// The hash of leaf `index` (below `log_size`): kept, or rebuilt from the stored transfer
    /// or trade it is the leaf of (what the tree asks for inside a complete group).
    pub(crate) fn log_leaf_hash(&self, index: u64) -> Hash {
        self.rebuilt_leaf_hash(index)
            .expect("a leaf not kept is a stored transfer's or trade's, in a logged batch")
    }

    /// [`Engine::log_leaf_hash`], or `None` where the state cannot give it (a restored log
    /// whose parts do not fit: refused, not trusted).
    fn rebuilt_leaf_hash(&self, index: u64) -> Option<Hash> {
        if let Some(hash) = self.log.kept_hash(index) {
            return Some(hash);
        }
        let batches = &self.log.batches;
        let at = batches
            .partition_point(|batch| batch.leaf_first <= index)
            .checked_sub(1)?;
        let batch = *batches.get(at as u32);
        let offset = index - batch.leaf_first;
        let timestamp = batch.timestamp_first.checked_add(offset)?;
        let (kind, record) = self.stored_event_record(timestamp)?;
        let position = LogPosition {
            commit_index: batch.commit_index,
            index_in_entry: batch.index_in_entry,
        };
        Some(leaf_hash(&leaf(
            kind as u8,
            EventResult::Ok,
            position,
            offset as u32,
            timestamp,
            &record,
        )))
    }

    /// A restored log's check that its parts fit: the root at its latest checkpoint's size,
    /// from its groups and the leaves rebuilt from the stored events, is the checkpoint's.
    fn check_restored_log(&self) -> Result<(), SnapshotError> {
        let Some((index, checkpoint)) = self.latest_checkpoint() else {
            return Ok(());
        };
        let missing = std::cell::Cell::new(false);
        let root = self.log.tree().root_with(checkpoint.size, &|leaf| {
            self.rebuilt_leaf_hash(leaf).unwrap_or_else(|| {
                missing.set(true);
                Hash::default()
            })
        });
        if missing.get() || root != Ok(checkpoint.root) {
            return Err(invalid(format!(
                "the log's tree does not give checkpoint {index}'s root"
            )));
        }
        Ok(())
    }

    /// The stored transfer or trade stamped `timestamp`, as a lookup returns it.
    fn stored_event_record(&self, timestamp: u64) -> Option<(Operation, RecordBytes)> {
        let slot = self.transfers.partition_point(|t| t.timestamp < timestamp);
        if slot < self.transfers.len() && self.transfers.get(slot as u32).timestamp == timestamp {
            let record = self.stored_transfer_record(slot as u32).encode();
            return Some((Operation::CreateTransfers, record));
        }
        let slot = self.trades.partition_point(|t| t.timestamp < timestamp);
        (slot < self.trades.len() && self.trades.get(slot as u32).timestamp == timestamp).then(
            || {
                (
                    Operation::CreateTrades,
                    self.stored_trade_record(slot as u32).encode(),
                )
            },
        )
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
        let mut account_slot = None;
        let (kind, timestamp, mut record) = if account {
            let slot = self.find_account(id)?;
            account_slot = Some(slot);
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
        let bytes = |record: &RecordBytes| {
            leaf(
                kind as u8,
                EventResult::Ok,
                position,
                offset as u32,
                timestamp,
                record,
            )
        };
        // An account's leaf is as it was created: closing or reopening it since changed its
        // `closed` flag (the one flag that changes), which its kept hash tells.
        if let Some(slot) = account_slot {
            if self.log.kept_hash(index) != Some(leaf_hash(&bytes(&record))) {
                let mut state = self.accounts.get(slot).state;
                state.balances = Default::default();
                state.flags ^= records::AccountFlags::CLOSED.0;
                record = state.to_record().encode();
            }
        }
        let leaf = bytes(&record);
        Some(
            self.log
                .tree()
                .inclusion_proof_with(index, size, &|index| self.log_leaf_hash(index))
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

impl Engine {
    /// Put back a restored log of `size` leaves from its group hashes, batches, kept leaves
    /// and checkpoints (the stored events restored already): the leaves after the last
    /// complete group rebuilt, the tree's upper levels computed.
    pub(crate) fn restore_log(
        &mut self,
        size: u64,
        groups: Events<Hash>,
        parts: LogParts,
    ) -> Result<(), SnapshotError> {
        let LogParts(batches, kept, checkpoints, cosignatures) = parts;
        self.log = EventLog {
            size,
            tree: Arc::default(),
            batches,
            kept,
            checkpoints,
            cosignatures,
            stage: None,
        };
        let grouped = size & !(LeafTree::GROUP - 1);
        let tail: Option<Vec<Hash>> = (grouped..size).map(|i| self.rebuilt_leaf_hash(i)).collect();
        let tail =
            tail.ok_or_else(|| invalid("the log's last leaves are neither stored nor kept"))?;
        self.log.tree = Arc::new(Mutex::new(Tree::with_groups(groups, tail)));
        self.check_restored_log()
    }

    /// Put back a log restored from a snapshot of format 6 or 7, which holds every leaf's
    /// hash: the groups made of them, the leaves that cannot be rebuilt kept, and every other
    /// leaf checked to be the one its stored event rebuilds (else the snapshot is refused).
    pub(crate) fn restore_log_from_leaves(
        &mut self,
        leaves: Events<Hash>,
        parts: LogParts,
    ) -> Result<(), SnapshotError> {
        let LogParts(batches, _, checkpoints, cosignatures) = parts;
        let size = leaves.len() as u64;
        self.log = EventLog {
            size,
            tree: Arc::default(),
            batches,
            kept: Events::default(),
            checkpoints,
            cosignatures,
            stage: None,
        };
        if size > 0 && self.log.batches.len() == 0 {
            return Err(invalid("log leaves without batches"));
        }
        // Walk the leaves with their batches and timestamps; the stored transfers and trades
        // are in timestamp order too.
        let mut tree = LeafTree::default();
        let (mut batch, mut transfer, mut trade) = (0u32, 0u32, 0u32);
        let batches = self.log.batches.len() as u32;
        for index in 0..size {
            while batch + 1 < batches && self.log.batches.get(batch + 1).leaf_first <= index {
                batch += 1;
            }
            let at = self.log.batches.get(batch);
            let timestamp = at.timestamp_first.saturating_add(index - at.leaf_first);
            while transfer < self.transfers.len() as u32
                && self.transfers.get(transfer).timestamp < timestamp
            {
                transfer += 1;
            }
            while trade < self.trades.len() as u32 && self.trades.get(trade).timestamp < timestamp {
                trade += 1;
            }
            let stored = (transfer < self.transfers.len() as u32
                && self.transfers.get(transfer).timestamp == timestamp)
                || (trade < self.trades.len() as u32
                    && self.trades.get(trade).timestamp == timestamp);
            let hash = *leaves.get(index as u32);
            if !stored {
                self.log.kept.push(KeptLeaf { index, hash });
            } else if self.log_leaf_hash(index) != hash {
                return Err(invalid(format!(
                    "log leaf {index} is not its stored event's"
                )));
            }
            tree.push(hash);
        }
        self.log.tree = Arc::new(Mutex::new(tree));
        self.check_restored_log()
    }
}

/// A restored log's batches, kept leaves, checkpoints and cosignatures.
pub(crate) struct LogParts(
    pub(crate) Events<LogBatch>,
    pub(crate) Events<KeptLeaf>,
    pub(crate) Events<SignedCheckpoint>,
    pub(crate) Events<StoredCosignature>,
);

/// Whether a successful event's leaf is kept (its hash stored): every kind but a transfer's
/// and a trade's, whose leaves are rebuilt from the stored event.
fn kept_kind(kind: Operation) -> bool {
    !matches!(kind, Operation::CreateTransfers | Operation::CreateTrades)
}

#[cfg(test)]
#[path = "event_log_tests.rs"]
mod tests;
