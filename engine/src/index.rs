//! An id index that stores only `u32` slots and finds keys through the arena they point into.
//!
//! Storing the 16-byte id again in the table would cost 16+ bytes per event; a `u32` slot plus
//! hashbrown's one control byte costs about 6. Lookups that miss (the common case when creating
//! events) almost never touch the arena, thanks to hashbrown's 7-bit tags.
//!
//! The hasher is seeded by the engine's configuration. No output of the engine ever depends on
//! the table's iteration order (the determinism test runs two seeds side by side).

use std::hash::BuildHasher;

use hashbrown::HashTable;

pub(crate) struct IdIndex {
    table: HashTable<u32>,
    hasher: foldhash::fast::FixedState,
}

impl IdIndex {
    pub(crate) fn new(seed: u64) -> IdIndex {
        IdIndex {
            table: HashTable::new(),
            hasher: foldhash::fast::FixedState::with_seed(seed),
        }
    }

    #[inline]
    pub(crate) fn hash(&self, id: u128) -> u64 {
        self.hasher.hash_one(id)
    }

    #[inline]
    pub(crate) fn find(&self, hash: u64, id: u128, key_of: impl Fn(u32) -> u128) -> Option<u32> {
        self.table.find(hash, |&slot| key_of(slot) == id).copied()
    }

    /// Inserts a slot whose key is known to be absent.
    #[inline]
    pub(crate) fn insert(&mut self, hash: u64, slot: u32, key_of: impl Fn(u32) -> u128) {
        let hasher = &self.hasher;
        self.table
            .insert_unique(hash, slot, |&s| hasher.hash_one(key_of(s)));
    }

    /// Removes the slot for `id` (rollback of a linked chain).
    pub(crate) fn remove(&mut self, id: u128, key_of: impl Fn(u32) -> u128) {
        let hash = self.hash(id);
        match self.table.find_entry(hash, |&slot| key_of(slot) == id) {
            Ok(entry) => {
                entry.remove();
            }
            Err(_) => panic!("index rollback of an id that is not indexed"),
        }
    }

    pub(crate) fn bytes_allocated(&self) -> usize {
        self.table.allocation_size()
    }
}
