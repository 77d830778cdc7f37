//! The access trail: a second RFC 6962 log, of reads. Every read a gateway serves (lookups,
//! statements, balances, proofs, this trail itself) reaches every replica in a Raft entry of
//! reads (`Engine::record_reads`) and becomes one leaf here, naming who read, how, when, and
//! every account the read touched (docs/verifiability.md, "The access trail").
//!
//! A leaf (little-endian) is
//!
//! ```text
//! 0   version u8 (1)
//! 1   operation u8 (the read's request kind, docs/protocol.md)
//! 2   reserved u16 (0)
//! 4   index in its Raft entry u32
//! 8   commit index u64 (the Raft entry's)
//! 16  time u64 (the entry's timestamp, ns since the Unix epoch)
//! 24  credential id [16] (the first 16 bytes of the credential's configured hash)
//! 40  credential name [32] (UTF-8, zero padded; cut at 32 bytes)
//! 72  accounts u32, then per account in increasing id order:
//!     account id u128 | previous u64: the leaf index of the previous read of that account,
//!     u64::MAX for none
//! ```
//!
//! The `previous` links chain each account's reads, newest to oldest, inside the signed tree:
//! a trail handed to a reader with one read left out breaks the chain at that point, and one
//! with a read altered breaks its inclusion proof. The leaves' hashes are derived (rebuilt at
//! restore from the reads and their accounts, which snapshots hold).

use rkyv::{Archive, Deserialize, Serialize};

use crate::checkpoint::SignedCheckpoint;
use crate::engine::{Engine, Events};
use crate::event_log::{checkpoint_fits, CheckpointRefused};
use crate::merkle::{leaf_hash, Hash, ProofError, Tree};

/// The access leaf layout's version byte.
pub const ACCESS_LEAF_VERSION: u8 = 1;
/// Bytes of an access leaf before its accounts.
pub const ACCESS_LEAF_HEADER_BYTES: usize = 76;
/// Bytes per account in an access leaf.
pub const ACCESS_LEAF_ACCOUNT_BYTES: usize = 24;
/// Bytes of a credential's name in a leaf.
pub const ACCESS_NAME_BYTES: usize = 32;
/// "No earlier read of this account", in a leaf's `previous`.
pub const NO_PREVIOUS: u64 = u64::MAX;
/// What the access log's checkpoints name after the event log's origin: the same key signs
/// both, under two names (two key ids), so a checkpoint of one never passes for the other.
pub const ACCESS_ORIGIN_SUFFIX: &str = "/reads";

/// One read as a gateway reports it, in a Raft entry of reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessEntry {
    /// The read's request kind.
    pub operation: u8,
    /// The first 16 bytes of the credential's configured hash.
    pub credential: [u8; 16],
    /// The credential's name, zero padded (cut at 32 bytes).
    pub name: [u8; ACCESS_NAME_BYTES],
    /// The accounts the read touched (the engine sorts them and drops repeats).
    pub accounts: Vec<u128>,
}

impl AccessEntry {
    /// A credential's name as a leaf holds it: its first 32 bytes, zero padded.
    pub fn name_field(name: &str) -> [u8; ACCESS_NAME_BYTES] {
        let mut field = [0u8; ACCESS_NAME_BYTES];
        let mut end = name.len().min(ACCESS_NAME_BYTES);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        field[..end].copy_from_slice(&name.as_bytes()[..end]);
        field
    }
}

/// One recorded read: the fixed part of its leaf and where its accounts are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub(crate) struct AccessRead {
    pub time: u64,
    pub commit_index: u64,
    pub index_in_entry: u32,
    pub operation: u8,
    pub credential: [u8; 16],
    pub name: [u8; ACCESS_NAME_BYTES],
    /// Its accounts are `touches[touched_first..touched_first + touched]`.
    pub touched_first: u64,
    pub touched: u32,
}

/// One account a read touched, and the previous read of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub(crate) struct AccessTouch {
    pub account: u128,
    pub previous: u64,
}

/// Touches the log may hold: arena slots are u32.
const TOUCHES_MAX: u64 = u32::MAX as u64 - 1;

/// The access log's state.
#[derive(Debug)]
pub(crate) struct AccessLog {
    tree: Tree,
    pub(crate) reads: Events<AccessRead>,
    pub(crate) touches: Events<AccessTouch>,
    pub(crate) checkpoints: Events<SignedCheckpoint>,
    /// Per account, the leaf index of its latest read (derived; seeded like the engine's
    /// indexes, account ids being the clients').
    latest: Latest,
}

type Latest = hashbrown::HashMap<u128, u64, foldhash::fast::FixedState>;

/// One read of an account, with its inclusion proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessProof {
    /// The leaf's index in the access log.
    pub index: u64,
    /// The leaf's bytes (the layout above).
    pub leaf: Vec<u8>,
    /// RFC 6962's audit path at the tree size asked for, nearest the leaf first.
    pub proof: Vec<Hash>,
}

impl AccessLog {
    /// An empty log for an engine of hash seed `hash_seed` (its account map's own seed is
    /// derived from it).
    pub(crate) fn new(hash_seed: u64) -> AccessLog {
        let seed = hash_seed.rotate_left(16) ^ 0xacce55;
        AccessLog {
            tree: Tree::new(),
            reads: Events::default(),
            touches: Events::default(),
            checkpoints: Events::default(),
            latest: Latest::with_hasher(foldhash::fast::FixedState::with_seed(seed)),
        }
    }

    /// A log (for an engine of hash seed `seed`) from a snapshot's reads, touches and checkpoints,
    /// its tree and links rebuilt; `Err` names what does not hold together.
    pub(crate) fn restored(
        seed: u64,
        reads: Events<AccessRead>,
        touches: Events<AccessTouch>,
        checkpoints: Events<SignedCheckpoint>,
    ) -> Result<AccessLog, String> {
        let mut log = AccessLog {
            reads,
            touches,
            checkpoints,
            ..AccessLog::new(seed)
        };
        let mut next_touch = 0u64;
        for index in 0..log.reads.len() as u64 {
            let read = *log.reads.get(index as u32);
            if read.touched_first != next_touch
                || read.touched_first + u64::from(read.touched) > log.touches.len() as u64
            {
                return Err(format!(
                    "access read {index}: its accounts are out of place"
                ));
            }
            next_touch += u64::from(read.touched);
            let mut last = None;
            for at in read.touched_first..next_touch {
                let touch = *log.touches.get(at as u32);
                let expected = log.latest.get(&touch.account).copied();
                if last.is_some_and(|last| touch.account <= last)
                    || touch.previous != expected.unwrap_or(NO_PREVIOUS)
                {
                    return Err(format!(
                        "access read {index}: its accounts' links are not the log's"
                    ));
                }
                last = Some(touch.account);
                log.latest.insert(touch.account, index);
            }
            let leaf = log.leaf(index);
            log.tree.push(leaf_hash(&leaf));
        }
        if next_touch != log.touches.len() as u64 {
            return Err("access touches past the last read".to_owned());
        }
        let mut previous = None;
        for checkpoint in log.checkpoints.iter() {
            if checkpoint.size > log.tree.size() || previous.is_some_and(|p| checkpoint.size <= p) {
                return Err("access checkpoints out of order or past the reads".to_owned());
            }
            previous = Some(checkpoint.size);
        }
        Ok(log)
    }

    /// Leaf `index`'s bytes.
    fn leaf(&self, index: u64) -> Vec<u8> {
        let read = self.reads.get(index as u32);
        let mut leaf = Vec::with_capacity(
            ACCESS_LEAF_HEADER_BYTES + read.touched as usize * ACCESS_LEAF_ACCOUNT_BYTES,
        );
        leaf.push(ACCESS_LEAF_VERSION);
        leaf.push(read.operation);
        leaf.extend_from_slice(&[0, 0]);
        leaf.extend_from_slice(&read.index_in_entry.to_le_bytes());
        leaf.extend_from_slice(&read.commit_index.to_le_bytes());
        leaf.extend_from_slice(&read.time.to_le_bytes());
        leaf.extend_from_slice(&read.credential);
        leaf.extend_from_slice(&read.name);
        leaf.extend_from_slice(&read.touched.to_le_bytes());
        for at in read.touched_first..read.touched_first + u64::from(read.touched) {
            let touch = self.touches.get(at as u32);
            leaf.extend_from_slice(&touch.account.to_le_bytes());
            leaf.extend_from_slice(&touch.previous.to_le_bytes());
        }
        leaf
    }

    /// The previous read of `account` before leaf `index` (which touched it), if any.
    fn previous(&self, index: u64, account: u128) -> Option<u64> {
        // A read's touches are sorted by account: a binary search over its run of them.
        let read = self.reads.get(index as u32);
        let (mut low, mut high) = (
            read.touched_first,
            read.touched_first + u64::from(read.touched),
        );
        while low < high {
            let mid = low + (high - low) / 2;
            let touch = self.touches.get(mid as u32);
            match touch.account.cmp(&account) {
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid,
                std::cmp::Ordering::Equal => {
                    return Some(touch.previous).filter(|&previous| previous != NO_PREVIOUS)
                }
            }
        }
        None
    }

    pub(crate) fn bytes_allocated(&self) -> usize {
        self.reads.bytes_allocated()
            + self.touches.bytes_allocated()
            + self.checkpoints.bytes_allocated()
            + self.tree.leaves().capacity() * std::mem::size_of::<Hash>()
            + self.tree.upper_bytes()
            + self.latest.capacity() * 32
    }

    /// What the state digest covers: sizes, root and checkpoints.
    pub(crate) fn digest_into(&self, hasher: &mut blake3::Hasher) {
        let size = self.tree.size();
        hasher.update(&size.to_le_bytes());
        hasher.update(&(self.touches.len() as u64).to_le_bytes());
        hasher.update(&self.tree.root(size).expect("its own size"));
        hasher.update(&(self.checkpoints.len() as u64).to_le_bytes());
        for checkpoint in self.checkpoints.iter() {
            hasher.update(&checkpoint.encode());
        }
    }
}

impl Engine {
    /// Record `entries`, the reads a gateway served, carried by the Raft entry `commit_index`
    /// stamped `time`: one leaf each, in order. Deterministic: every replica builds the same
    /// leaves, links included. A read that touched no account is still a leaf (it says who
    /// asked); accounts past the log's capacity are not recorded (four billion touches: far
    /// past any memory this engine runs in).
    pub fn record_reads(&mut self, entries: &[AccessEntry], time: u64, commit_index: u64) {
        let log = &mut self.access;
        for (index_in_entry, entry) in entries.iter().enumerate() {
            // The recorder sends each read's accounts sorted and without repeats; anything else
            // is put so here (every replica alike) rather than trusted.
            let accounts: std::borrow::Cow<'_, [u128]> =
                if entry.accounts.windows(2).all(|pair| pair[0] < pair[1]) {
                    std::borrow::Cow::Borrowed(&entry.accounts)
                } else {
                    let mut sorted = entry.accounts.clone();
                    sorted.sort_unstable();
                    sorted.dedup();
                    std::borrow::Cow::Owned(sorted)
                };
            let room = TOUCHES_MAX.saturating_sub(log.touches.len() as u64);
            let accounts = &accounts[..accounts.len().min(room.min(u64::from(u32::MAX)) as usize)];
            let index = log.tree.size();
            let touched_first = log.touches.len() as u64;
            for &account in accounts {
                let previous = log.latest.insert(account, index).unwrap_or(NO_PREVIOUS);
                log.touches.push(AccessTouch { account, previous });
            }
            log.reads.push(AccessRead {
                time,
                commit_index,
                index_in_entry: index_in_entry as u32,
                operation: entry.operation,
                credential: entry.credential,
                name: entry.name,
                touched_first,
                touched: accounts.len() as u32,
            });
            let leaf = log.leaf(index);
            log.tree.push(leaf_hash(&leaf));
        }
    }

    /// Reads recorded: the access log's size.
    pub fn access_size(&self) -> u64 {
        self.access.tree.size()
    }

    /// The access log's root at `size` reads.
    pub fn access_root(&self, size: u64) -> Result<Hash, ProofError> {
        self.access.tree.root(size)
    }

    /// RFC 6962's consistency proof of the access log from `old` reads to `new`.
    pub fn access_consistency(&self, old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
        self.access.tree.consistency_proof(old, new)
    }

    /// Keep `checkpoint` of the access log, signed by the leader and replicated, under the
    /// rules of [`Engine::record_checkpoint`]: past the latest kept, and this replica's root.
    pub fn record_access_checkpoint(
        &mut self,
        checkpoint: SignedCheckpoint,
    ) -> Result<(), CheckpointRefused> {
        let latest = self
            .latest_access_checkpoint()
            .map(|(_, latest)| latest.size);
        let tree = &self.access.tree;
        checkpoint_fits(&checkpoint, latest, tree.size(), |size| tree.root(size))?;
        self.access.checkpoints.push(checkpoint);
        Ok(())
    }

    /// The latest checkpoint of the access log and its index.
    pub fn latest_access_checkpoint(&self) -> Option<(u64, SignedCheckpoint)> {
        let count = self.access.checkpoints.len() as u64;
        count
            .checked_sub(1)
            .map(|i| (i, *self.access.checkpoints.get(i as u32)))
    }

    /// Access checkpoint `index` (from 0, oldest first).
    pub fn access_checkpoint(&self, index: u64) -> Option<SignedCheckpoint> {
        (index < self.access.checkpoints.len() as u64)
            .then(|| *self.access.checkpoints.get(index as u32))
    }

    /// The reads of `account` in the access log at `size` reads, newest first, from the
    /// newest one before leaf `before` on, at most `limit` of them and about `bytes_max` bytes
    /// of leaves (at least one), each with its inclusion proof at `size`. The chain they form
    /// (each leaf's `previous` for `account` is the next one's index) is what a reader checks.
    pub fn access_trail(
        &self,
        account: u128,
        size: u64,
        before: u64,
        limit: usize,
        bytes_max: usize,
    ) -> Result<Vec<AccessProof>, ProofError> {
        let log = &self.access;
        let end = size.min(before);
        let mut next = log.latest.get(&account).copied();
        // Walk back past the reads at or after `end`.
        while let Some(index) = next.filter(|&index| index >= end) {
            next = log.previous(index, account);
        }
        let mut trail = Vec::new();
        let mut bytes = 0;
        while let Some(index) = next {
            if trail.len() >= limit || (bytes >= bytes_max && !trail.is_empty()) {
                break;
            }
            let leaf = log.leaf(index);
            bytes += leaf.len() + 33 * 32;
            if bytes > bytes_max && !trail.is_empty() {
                break;
            }
            trail.push(AccessProof {
                index,
                proof: log.tree.inclusion_proof(index, size)?,
                leaf,
            });
            next = log.previous(index, account);
        }
        Ok(trail)
    }
}

#[cfg(test)]
#[path = "access_log_tests.rs"]
mod tests;
