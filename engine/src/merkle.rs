//! The RFC 6962 / RFC 9162 Merkle tree: hashes, an append-only tree that keeps every complete
//! subtree, inclusion and consistency proofs, and their verification.
//!
//! Exactly the RFC's definitions (docs/verifiability.md): SHA-256; the hash of the empty tree
//! is `SHA-256()`; a leaf is `H(0x00 ‖ leaf)`; an interior node `H(0x01 ‖ left ‖ right)`; a
//! tree of `n > 1` leaves splits at the largest power of two below `n`. Proofs are the RFC's
//! `PATH` and `SUBPROOF`, checked by the algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2, so any
//! RFC 6962 verifier accepts what this module proves and this module accepts only what such a
//! verifier does. Pure and deterministic: no clock, no I/O.

use sha2::{Digest, Sha256};

/// A SHA-256 hash: a leaf, a node or a tree's root.
pub type Hash = [u8; 32];

/// The root of the empty tree: `SHA-256()` of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The hash of leaf `data`: `SHA-256(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(data);
    hasher.finalize().into()
}

/// The hash of an interior node: `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The largest power of two strictly below `n` (`n ≥ 2`): where the RFC splits a tree.
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// Why a proof does not verify, or cannot be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofError {
    /// The leaf index is not below the tree size, or the older size is above the newer.
    OutOfRange { index: u64, size: u64 },
    /// The proof has more or fewer hashes than the sizes call for.
    WrongLength,
    /// The hashes do not lead to the root (or roots) given.
    RootMismatch,
}

impl std::fmt::Display for ProofError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProofError::OutOfRange { index, size } => {
                write!(f, "{index} is out of range for a tree of size {size}")
            }
            ProofError::WrongLength => f.write_str("the proof has the wrong number of hashes"),
            ProofError::RootMismatch => f.write_str("the proof does not lead to the root"),
        }
    }
}

impl std::error::Error for ProofError {}

/// Where a [`Tree`] keeps the hashes of its lowest kept level: a vector, or (in the engine) an
/// arena whose chunks snapshots share.
pub trait Leaves {
    /// The number of hashes.
    fn count(&self) -> u64;
    /// Hash `index` (below `count`).
    fn leaf(&self, index: u64) -> Hash;
    /// Append a hash.
    fn append(&mut self, leaf: Hash);
}

impl Leaves for Vec<Hash> {
    fn count(&self) -> u64 {
        self.len() as u64
    }
    fn leaf(&self, index: u64) -> Hash {
        self[index as usize]
    }
    fn append(&mut self, leaf: Hash) {
        self.push(leaf);
    }
}

/// An append-only Merkle tree that keeps the hash of every complete subtree of at least
/// `2^BASE` leaves: those of exactly `2^BASE` leaves (a *group*) in `base`, and
/// `upper[k - 1][i]` covering leaves `i·2^(BASE+k) .. (i+1)·2^(BASE+k)`; plus the leaf hashes
/// of the incomplete group at the right edge (`tail`, fewer than `2^BASE`).
///
/// With `BASE = 0` the tree keeps every leaf hash (64 bytes per leaf: 32 in `base`, 32 above)
/// and answers everything from what it keeps ([`Tree::root`], [`Tree::inclusion_proof`],
/// [`Tree::consistency_proof`]). With `BASE > 0` it keeps about `64 / 2^BASE` bytes per leaf;
/// a leaf hash inside a complete group is then asked of the caller (`leaf`, the `*_with`
/// methods) — the engine rebuilds it from the stored event — fewer than `2^BASE` of them per
/// root (those of the group `size` ends in) and fewer than twice that per proof. Appending a
/// leaf costs one hash per level it completes (one on average); the root of any earlier size
/// and any proof take O(log n) lookups and at most O(log n + 2^BASE) hashes.
#[derive(Debug, Clone, Default)]
pub struct Tree<L: Leaves = Vec<Hash>, const BASE: u32 = 0> {
    base: L,
    tail: Vec<Hash>,
    upper: Vec<Vec<Hash>>,
}

impl Tree {
    pub fn new() -> Tree {
        Tree::default()
    }
}

impl<L: Leaves> Tree<L, 0> {
    /// The tree of the leaf hashes `leaves` already holds, its upper levels computed (one
    /// node hash per leaf, less one).
    pub fn with_leaves(leaves: L) -> Tree<L, 0> {
        Tree::with_groups(leaves, Vec::new())
    }

    /// The leaf hashes.
    pub fn leaves(&self) -> &L {
        &self.base
    }

    /// The root of the tree as it was at `size` leaves.
    pub fn root(&self, size: u64) -> Result<Hash, ProofError> {
        self.root_with(size, &|index| self.base.leaf(index))
    }

    /// RFC 6962's audit path: see [`Tree::inclusion_proof_with`].
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        self.inclusion_proof_with(index, size, &|index| self.base.leaf(index))
    }

    /// RFC 6962's consistency proof: see [`Tree::consistency_proof_with`].
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
        self.consistency_proof_with(old, new, &|index| self.base.leaf(index))
    }
}

/// The root of `hashes`, a complete subtree (a power of two of them).
fn subtree_root(hashes: &[Hash]) -> Hash {
    debug_assert!(hashes.len().is_power_of_two());
    if hashes.len() == 1 {
        return hashes[0];
    }
    let half = hashes.len() / 2;
    node_hash(
        &subtree_root(&hashes[..half]),
        &subtree_root(&hashes[half..]),
    )
}

impl<L: Leaves, const BASE: u32> Tree<L, BASE> {
    /// Leaves in a group: the subtrees `base` keeps one hash of.
    pub const GROUP: u64 = 1 << BASE;

    /// The tree whose complete groups' hashes `groups` holds, followed by the leaf hashes
    /// `tail` (fewer than a group), its upper levels computed (one node hash per group, less
    /// one). `tail` is cut to a group's length less one.
    pub fn with_groups(groups: L, mut tail: Vec<Hash>) -> Tree<L, BASE> {
        tail.truncate(Self::GROUP as usize - 1);
        let mut upper: Vec<Vec<Hash>> = Vec::new();
        let n = groups.count();
        if n >= 2 {
            upper.push(
                (0..n / 2)
                    .map(|i| node_hash(&groups.leaf(2 * i), &groups.leaf(2 * i + 1)))
                    .collect(),
            );
            while upper.last().is_some_and(|level| level.len() >= 2) {
                let below = upper.last().expect("a level was just checked");
                let next = below
                    .chunks_exact(2)
                    .map(|pair| node_hash(&pair[0], &pair[1]))
                    .collect();
                upper.push(next);
            }
        }
        Tree {
            base: groups,
            tail,
            upper,
        }
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        (self.base.count() << BASE) + self.tail.len() as u64
    }

    /// The hashes of the complete groups (the leaf hashes when `BASE` is 0).
    pub fn groups(&self) -> &L {
        &self.base
    }

    /// The groups' hashes, to freeze them (an arena's view for a snapshot): not to change them.
    pub(crate) fn groups_mut(&mut self) -> &mut L {
        &mut self.base
    }

    /// The leaf hashes after the last complete group.
    pub fn tail(&self) -> &[Hash] {
        &self.tail
    }

    /// Append a leaf by its hash ([`leaf_hash`]).
    pub fn push(&mut self, leaf: Hash) {
        if BASE == 0 {
            self.push_group(leaf);
            return;
        }
        self.tail.push(leaf);
        if self.tail.len() as u64 == Self::GROUP {
            let group = subtree_root(&self.tail);
            self.tail.clear();
            self.push_group(group);
        }
    }

    fn push_group(&mut self, group: Hash) {
        self.base.append(group);
        let n = self.base.count();
        if n % 2 == 1 {
            return;
        }
        let mut hash = node_hash(&self.base.leaf(n - 2), &group);
        let mut level = 0;
        loop {
            if self.upper.len() == level {
                self.upper.push(Vec::new());
            }
            let nodes = &mut self.upper[level];
            nodes.push(hash);
            if nodes.len() % 2 == 1 {
                return;
            }
            hash = node_hash(&nodes[nodes.len() - 2], &nodes[nodes.len() - 1]);
            level += 1;
        }
    }

    /// Bytes the levels above the groups and the tail take (the groups' store counts its own).
    pub fn upper_bytes(&self) -> usize {
        self.upper
            .iter()
            .map(|level| level.capacity() * std::mem::size_of::<Hash>())
            .sum::<usize>()
            + self.tail.capacity() * std::mem::size_of::<Hash>()
    }

    /// Leaf hash `index`: from the tail, or asked of `leaf` inside a complete group.
    fn leaf_at(&self, index: u64, leaf: &dyn Fn(u64) -> Hash) -> Hash {
        let grouped = self.base.count() << BASE;
        if index >= grouped {
            self.tail[(index - grouped) as usize]
        } else if BASE == 0 {
            self.base.leaf(index)
        } else {
            leaf(index)
        }
    }

    /// The hash of leaves `start..end` as the RFC defines it (`MTH(D[start:end])`), for the
    /// ranges its recursion visits: `start` a multiple of the largest power of two not above
    /// `end - start`'s span, which every range below is.
    fn range(&self, start: u64, end: u64, leaf: &dyn Fn(u64) -> Hash) -> Hash {
        let n = end - start;
        if n.is_power_of_two() && start.is_multiple_of(n) {
            let level = n.trailing_zeros();
            if level == 0 {
                return self.leaf_at(start, leaf);
            }
            // A complete subtree of a group or more lies in complete groups: kept.
            if level >= BASE {
                return if level == BASE {
                    self.base.leaf(start >> BASE)
                } else {
                    self.upper[(level - BASE - 1) as usize][(start >> level) as usize]
                };
            }
        }
        let k = split(n);
        node_hash(
            &self.range(start, start + k, leaf),
            &self.range(start + k, end, leaf),
        )
    }

    /// The root of the tree as it was at `size` leaves; `leaf` gives a leaf hash inside a
    /// complete group when `BASE > 0` (never called when it is 0).
    pub fn root_with(&self, size: u64, leaf: &dyn Fn(u64) -> Hash) -> Result<Hash, ProofError> {
        if size > self.size() {
            return Err(ProofError::OutOfRange {
                index: size,
                size: self.size(),
            });
        }
        Ok(if size == 0 {
            empty_root()
        } else {
            self.range(0, size, leaf)
        })
    }

    /// The RFC's audit path (`PATH(index, D[size])`): the hashes that lead from leaf `index`
    /// to the root at `size`, nearest the leaf first (`leaf` as for [`Tree::root_with`]).
    pub fn inclusion_proof_with(
        &self,
        index: u64,
        size: u64,
        leaf: &dyn Fn(u64) -> Hash,
    ) -> Result<Vec<Hash>, ProofError> {
        if index >= size || size > self.size() {
            return Err(ProofError::OutOfRange { index, size });
        }
        let mut proof = Vec::new();
        self.path(index, 0, size, leaf, &mut proof);
        Ok(proof)
    }

    fn path(
        &self,
        index: u64,
        start: u64,
        end: u64,
        leaf: &dyn Fn(u64) -> Hash,
        proof: &mut Vec<Hash>,
    ) {
        let n = end - start;
        if n == 1 {
            return;
        }
        let k = split(n);
        if index < k {
            self.path(index, start, start + k, leaf, proof);
            proof.push(self.range(start + k, end, leaf));
        } else {
            self.path(index - k, start + k, end, leaf, proof);
            proof.push(self.range(start, start + k, leaf));
        }
    }

    /// The RFC's consistency proof (`PROOF(old, D[new])`): the hashes that show the tree at
    /// `old` leaves is a prefix of the tree at `new`. Empty when `old` is 0 or `new` (`leaf`
    /// as for [`Tree::root_with`]).
    pub fn consistency_proof_with(
        &self,
        old: u64,
        new: u64,
        leaf: &dyn Fn(u64) -> Hash,
    ) -> Result<Vec<Hash>, ProofError> {
        if old > new || new > self.size() {
            return Err(ProofError::OutOfRange {
                index: old,
                size: new,
            });
        }
        let mut proof = Vec::new();
        if old > 0 && old < new {
            self.subproof(old, 0, new, true, leaf, &mut proof);
        }
        Ok(proof)
    }

    fn subproof(
        &self,
        old: u64,
        start: u64,
        end: u64,
        whole: bool,
        leaf: &dyn Fn(u64) -> Hash,
        proof: &mut Vec<Hash>,
    ) {
        let n = end - start;
        if old == n {
            if !whole {
                proof.push(self.range(start, end, leaf));
            }
            return;
        }
        let k = split(n);
        if old <= k {
            self.subproof(old, start, start + k, whole, leaf, proof);
            proof.push(self.range(start + k, end, leaf));
        } else {
            self.subproof(old - k, start + k, end, false, leaf, proof);
            proof.push(self.range(start, start + k, leaf));
        }
    }
}

/// Check that `leaf` (a leaf hash) is leaf `index` of the tree of `size` leaves whose root is
/// `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange { index, size });
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Check that the tree of `old` leaves with root `old_root` is a prefix of the tree of `new`
/// leaves with root `new_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::OutOfRange {
            index: old,
            size: new,
        });
    }
    if old == new || old == 0 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        if old == new && old_root != new_root {
            return Err(ProofError::RootMismatch);
        }
        return Ok(());
    }
    let Some((first, rest)) = proof.split_first() else {
        return Err(ProofError::WrongLength);
    };
    // When `old` is a power of two its root is the first hash of the path (left implicit).
    let (start, rest) = if old.is_power_of_two() {
        (old_root, proof)
    } else {
        (first, rest)
    };
    let (mut f, mut s) = (old - 1, new - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*start, *start);
    for c in rest {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if fr != *old_root || sr != *new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The RFC's definition, leaf by leaf: the reference the tree is checked against.
    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_le_bytes())).collect()
    }

    fn tree_of(leaves: &[Hash]) -> Tree {
        let mut tree = Tree::new();
        for leaf in leaves {
            tree.push(*leaf);
        }
        tree
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn hash(text: &str) -> Hash {
        hex(text).try_into().expect("32 bytes")
    }

    /// The RFC 6962 test vectors (the reference implementations' eight-leaf tree), from the
    /// data file the independent verifier reads too.
    #[test]
    fn rfc6962_test_vectors() {
        let vectors = include_str!("../../verifier/testdata/rfc6962.txt");
        let mut tree = Tree::new();
        let (mut roots, mut inclusions, mut consistencies) = (0, 0, 0);
        for line in vectors.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [] => {}
                [comment, ..] if comment.starts_with('#') => {}
                ["empty", root] => assert_eq!(empty_root(), hash(root)),
                ["leaf", data @ ..] => tree.push(leaf_hash(&hex(data.first().unwrap_or(&"")))),
                ["root", size, root] => {
                    let size: u64 = size.parse().expect("size");
                    assert_eq!(tree.root(size).expect("root"), hash(root), "root {size}");
                    roots += 1;
                }
                ["inclusion", index, size, path @ ..] => {
                    let (index, size): (u64, u64) = (index.parse().unwrap(), size.parse().unwrap());
                    let path: Vec<Hash> = path.iter().map(|h| hash(h)).collect();
                    assert_eq!(tree.inclusion_proof(index, size).unwrap(), path);
                    let leaf = tree.base[index as usize];
                    let root = tree.root(size).unwrap();
                    assert_eq!(verify_inclusion(index, size, &leaf, &path, &root), Ok(()));
                    inclusions += 1;
                }
                ["consistency", old, new, path @ ..] => {
                    let (old, new): (u64, u64) = (old.parse().unwrap(), new.parse().unwrap());
                    let path: Vec<Hash> = path.iter().map(|h| hash(h)).collect();
                    assert_eq!(tree.consistency_proof(old, new).unwrap(), path);
                    let (a, b) = (tree.root(old).unwrap(), tree.root(new).unwrap());
                    assert_eq!(verify_consistency(old, new, &a, &b, &path), Ok(()));
                    consistencies += 1;
                }
                other => panic!("unknown test vector line {other:?}"),
            }
        }
        assert_eq!((roots, inclusions, consistencies), (8, 5, 5));
    }

    #[test]
    fn the_tree_matches_the_rfcs_definition_at_every_size() {
        let leaves = leaves(300);
        let tree = tree_of(&leaves);
        for n in 0..=300 {
            assert_eq!(tree.root(n).unwrap(), reference_root(&leaves[..n as usize]));
        }
        assert!(tree.root(301).is_err());
    }

    /// A tree rebuilt from its leaf hashes (a restore) is the tree that grew leaf by leaf.
    #[test]
    fn a_tree_rebuilt_from_its_leaves_is_the_same_tree() {
        let leaves = leaves(300);
        for n in [0usize, 1, 2, 3, 4, 5, 7, 8, 9, 64, 255, 256, 257, 300] {
            let grown = tree_of(&leaves[..n]);
            let mut rebuilt = Tree::with_leaves(leaves[..n].to_vec());
            assert_eq!(rebuilt.upper, grown.upper, "size {n}");
            rebuilt.push(leaves[0]);
            let mut longer = leaves[..n].to_vec();
            longer.push(leaves[0]);
            assert_eq!(rebuilt.root(n as u64 + 1).unwrap(), reference_root(&longer));
        }
    }

    /// A tree that keeps only groups of 16 leaves (and asks for a group's leaves) gives the
    /// roots and proofs of the tree that keeps every leaf, at every size, whether it grew leaf
    /// by leaf or was rebuilt from its groups and tail; and asks for no leaf outside a
    /// complete group, nor for more than a group's leaves per root (two per proof).
    #[test]
    fn a_tree_of_groups_answers_as_the_whole_tree() {
        let leaves = leaves(300);
        let full = tree_of(&leaves);
        let asked = std::cell::Cell::new(0u64);
        for n in [
            0u64, 1, 2, 15, 16, 17, 31, 32, 33, 47, 64, 100, 255, 256, 257, 300,
        ] {
            let mut grouped: Tree<Vec<Hash>, 4> = Tree::default();
            for leaf in &leaves[..n as usize] {
                grouped.push(*leaf);
            }
            let complete = n / 16 * 16;
            let leaf = |index: u64| {
                assert!(index < complete, "leaf {index} asked of a tree of {n}");
                asked.set(asked.get() + 1);
                leaves[index as usize]
            };
            let groups: Vec<Hash> = (0..n / 16)
                .map(|g| full.range(g * 16, g * 16 + 16, &|_| unreachable!()))
                .collect();
            let rebuilt: Tree<Vec<Hash>, 4> =
                Tree::with_groups(groups, leaves[complete as usize..n as usize].to_vec());
            for tree in [&grouped, &rebuilt] {
                assert_eq!(tree.size(), n);
                assert_eq!(tree.groups().len() as u64, n / 16);
                for size in 0..=n {
                    asked.set(0);
                    assert_eq!(
                        tree.root_with(size, &leaf),
                        full.root(size),
                        "root {size}/{n}"
                    );
                    assert!(asked.get() <= 16);
                    for index in (0..size).step_by(7) {
                        asked.set(0);
                        assert_eq!(
                            tree.inclusion_proof_with(index, size, &leaf),
                            full.inclusion_proof(index, size),
                            "path {index} {size}/{n}"
                        );
                        assert!(asked.get() <= 32);
                    }
                    for old in (0..=size).step_by(5) {
                        assert_eq!(
                            tree.consistency_proof_with(old, size, &leaf),
                            full.consistency_proof(old, size),
                            "consistency {old} {size}/{n}"
                        );
                    }
                }
                assert!(tree.root_with(n + 1, &leaf).is_err());
            }
        }
    }

    #[test]
    fn degenerate_proofs_are_refused() {
        let tree = tree_of(&leaves(5));
        let root = tree.root(5).unwrap();
        let leaf = tree.base[0];
        assert!(tree.inclusion_proof(5, 5).is_err());
        assert!(tree.inclusion_proof(0, 6).is_err());
        assert!(verify_inclusion(0, 0, &leaf, &[], &root).is_err());
        assert!(verify_inclusion(5, 5, &leaf, &[], &root).is_err());
        // A one-leaf tree: its root is the leaf, the proof is empty.
        assert_eq!(verify_inclusion(0, 1, &leaf, &[], &leaf), Ok(()));
        assert!(verify_inclusion(0, 1, &leaf, &[leaf], &leaf).is_err());
        // Sizes 0 and equal sizes: empty proofs only, equal roots only.
        assert_eq!(verify_consistency(0, 5, &empty_root(), &root, &[]), Ok(()));
        assert!(verify_consistency(0, 5, &empty_root(), &root, &[root]).is_err());
        assert_eq!(verify_consistency(5, 5, &root, &root, &[]), Ok(()));
        assert!(verify_consistency(5, 5, &root, &leaf, &[]).is_err());
        assert!(verify_consistency(5, 5, &root, &root, &[root]).is_err());
        assert!(verify_consistency(3, 5, &tree.root(3).unwrap(), &root, &[]).is_err());
        assert!(verify_consistency(5, 3, &root, &tree.root(3).unwrap(), &[]).is_err());
        assert!(tree.consistency_proof(3, 6).is_err());
    }

    /// Every single-bit change to `proof` (and to the other inputs) must fail `verify`.
    fn every_bit_flip_fails(
        proof: &[Hash],
        inputs: &[Hash],
        verify: impl Fn(&[Hash], &[Hash]) -> bool,
    ) {
        assert!(verify(proof, inputs), "the honest proof verifies");
        for i in 0..proof.len() {
            for bit in 0..256 {
                let mut bad = proof.to_vec();
                bad[i][bit / 8] ^= 1 << (bit % 8);
                assert!(!verify(&bad, inputs), "hash {i} bit {bit} of the proof");
            }
        }
        for i in 0..inputs.len() {
            for bit in 0..256 {
                let mut bad = inputs.to_vec();
                bad[i][bit / 8] ^= 1 << (bit % 8);
                assert!(!verify(proof, &bad), "input {i} bit {bit}");
            }
        }
        if !proof.is_empty() {
            assert!(!verify(&proof[1..], inputs), "a hash left out");
            let mut longer = proof.to_vec();
            longer.push(inputs[0]);
            assert!(!verify(&longer, inputs), "a hash added");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// For random sizes m ≤ n: every inclusion proof into the tree at n and the
        /// consistency proof from m to n verify, and every single-bit change to one fails.
        #[test]
        fn proofs_verify_and_every_bit_flip_fails(n in 1u64..200, m in 0u64..200, at in 0u64..200) {
            let m = m % (n + 1);
            let index = at % n;
            let tree = tree_of(&leaves(n));
            let root = tree.root(n).unwrap();
            let old_root = tree.root(m).unwrap();

            let path = tree.inclusion_proof(index, n).unwrap();
            let leaf = tree.base[index as usize];
            every_bit_flip_fails(&path, &[leaf, root], |proof, inputs| {
                verify_inclusion(index, n, &inputs[0], proof, &inputs[1]).is_ok()
            });
            if n > 1 {
                let other = (index + 1) % n;
                prop_assert!(verify_inclusion(other, n, &leaf, &path, &root).is_err());
            }

            let proof = tree.consistency_proof(m, n).unwrap();
            prop_assert!(verify_consistency(m, n, &old_root, &root, &proof).is_ok());
            if m > 0 && m < n {
                every_bit_flip_fails(&proof, &[old_root, root], |proof, inputs| {
                    verify_consistency(m, n, &inputs[0], &inputs[1], proof).is_ok()
                });
                prop_assert!(verify_consistency(m - 1, n, &old_root, &root, &proof).is_err());
            }
        }
    }

    /// Proofs stay within 1 KiB at 10⁹ leaves: a path has one hash per level, at most 30.
    #[test]
    fn proofs_are_small_at_a_billion_events() {
        // The shape alone decides a proof's length: count it without building the tree.
        fn path_len(index: u64, n: u64) -> usize {
            if n == 1 {
                return 0;
            }
            let k = split(n);
            1 + if index < k {
                path_len(index, k)
            } else {
                path_len(index - k, n - k)
            }
        }
        fn subproof_len(m: u64, n: u64, whole: bool) -> usize {
            if m == n {
                return usize::from(!whole);
            }
            let k = split(n);
            1 + if m <= k {
                subproof_len(m, k, whole)
            } else {
                subproof_len(m - k, n - k, false)
            }
        }
        let n = 1_000_000_000u64;
        let longest_path = [0, 1, n / 2, n - 2, n - 1, 999_999_937]
            .into_iter()
            .map(|i| path_len(i, n))
            .max()
            .unwrap();
        let longest_consistency = [1, 3, 1 << 29, n / 3, n - 1, 999_999_937]
            .into_iter()
            .map(|m| subproof_len(m, n, true))
            .max()
            .unwrap();
        assert!(longest_path * 32 <= 1024, "{longest_path} hashes");
        assert!(
            longest_consistency * 32 <= 1024,
            "{longest_consistency} hashes"
        );
    }
}
