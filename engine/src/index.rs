//! An id index: the 16-byte id lives only in the arena; the table keeps a `u32` slot and 32
//! bits of the id's hash per entry.
//!
//! Keeping the hash bits means growing the table never reads the arena (a random cache miss per
//! entry, which made every doubling cost ~100 ns per stored event), and a lookup reads the
//! arena only when 32 hash bits already match. 8 bytes per entry plus hashbrown's control byte
//! cost about 10–20 bytes per event, against 32+ for storing `(u128, u32)`.
//!
//! The hasher is seeded by the engine's configuration. No output of the engine ever depends on
//! the table's iteration order (the determinism test runs two seeds side by side).

use std::hash::BuildHasher;

use hashbrown::HashTable;

pub(crate) struct IdIndex {
    /// `hash32 << 32 | slot`.
    table: HashTable<u64>,
    hasher: foldhash::fast::FixedState,
}

/// The 64-bit hash hashbrown sees, spread from the 32 bits we keep. Bijective on the 32 bits,
/// so equal stored bits always give equal table hashes.
#[inline]
fn table_hash(hash32: u32) -> u64 {
    u64::from(hash32).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(hash32)
}

#[inline]
fn entry(hash32: u32, slot: u32) -> u64 {
    u64::from(hash32) << 32 | u64::from(slot)
}

#[inline]
fn entry_hash32(entry: u64) -> u32 {
    (entry >> 32) as u32
}

#[inline]
fn entry_slot(entry: u64) -> u32 {
    entry as u32
}

impl IdIndex {
    pub(crate) fn new(seed: u64) -> IdIndex {
        IdIndex {
            table: HashTable::new(),
            hasher: foldhash::fast::FixedState::with_seed(seed),
        }
    }

    /// The 32 hash bits of `id` that the index keeps.
    #[inline]
    pub(crate) fn hash(&self, id: u128) -> u32 {
        let h = self.hasher.hash_one(id);
        (h ^ (h >> 32)) as u32
    }

    #[inline]
    pub(crate) fn find(&self, hash32: u32, id: u128, key_of: impl Fn(u32) -> u128) -> Option<u32> {
        self.table
            .find(table_hash(hash32), |&e| {
                entry_hash32(e) == hash32 && key_of(entry_slot(e)) == id
            })
            .map(|&e| entry_slot(e))
    }

    /// Inserts a slot whose key is known to be absent.
    #[inline]
    pub(crate) fn insert(&mut self, hash32: u32, slot: u32) {
        self.table
            .insert_unique(table_hash(hash32), entry(hash32, slot), |&e| {
                table_hash(entry_hash32(e))
            });
    }

    /// Removes the slot for `id` (rollback of a linked chain).
    pub(crate) fn remove(&mut self, id: u128, key_of: impl Fn(u32) -> u128) {
        let hash32 = self.hash(id);
        match self.table.find_entry(table_hash(hash32), |&e| {
            entry_hash32(e) == hash32 && key_of(entry_slot(e)) == id
        }) {
            Ok(found) => {
                found.remove();
            }
            Err(_) => panic!("index rollback of an id that is not indexed"),
        }
    }

    /// Makes room for `additional` more ids without growing.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.table
            .reserve(additional, |&e| table_hash(entry_hash32(e)));
    }

    pub(crate) fn bytes_allocated(&self) -> usize {
        self.table.allocation_size()
    }
}
