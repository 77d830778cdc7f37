//! An id index: open addressing with linear probing over 8-byte entries, `hash32 << 32 | slot+1`.
//!
//! Why not hashbrown (which this replaced): the index of events grows to hundreds of MB and is
//! probed at a random place per event. On this machine such a probe costs ~200 ns when it waits
//! alone and ~15 ns when it was prefetched; hashbrown offers no way to prefetch a probe, this
//! table does (`prefetch`), and its probe is a handful of instructions instead of SIMD group
//! matching. The 16-byte id lives only in the arena the slot points into; the entry keeps 32 bits
//! of the id's hash, so growing never reads the arena and a probe reads it only when 32 bits
//! match. Load stays at most 3/4 (linear probing degrades past that): 10.7–21 bytes per id.
//!
//! The hasher is seeded by the engine's configuration. No output of the engine ever depends on
//! the table's layout (the determinism test runs two seeds side by side).

use std::hash::BuildHasher;

/// An empty entry. Occupied entries store `slot + 1` in the low half, so they are never 0.
const EMPTY: u64 = 0;
const CAPACITY_MIN: usize = 1 << 10;

pub(crate) struct IdIndex {
    entries: Vec<u64>,
    /// `entries.len() - 1`; the length is a power of two.
    mask: usize,
    len: usize,
    hasher: foldhash::fast::FixedState,
}

/// Asks the CPU to bring the cache line holding `value` into cache, without waiting for it.
#[inline]
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        let address = (value as *const T).cast::<i8>();
        // SAFETY: a prefetch is only a hint: it never faults and changes no memory, and the
        // address comes from a reference, so it is valid anyway.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

#[inline]
fn entry(hash32: u32, slot: u32) -> u64 {
    assert!(slot < u32::MAX, "slot u32::MAX cannot be indexed");
    u64::from(hash32) << 32 | u64::from(slot + 1)
}

#[inline]
fn entry_hash32(entry: u64) -> u32 {
    (entry >> 32) as u32
}

#[inline]
fn entry_slot(entry: u64) -> u32 {
    (entry as u32) - 1
}

impl IdIndex {
    pub(crate) fn new(seed: u64) -> IdIndex {
        IdIndex {
            entries: vec![EMPTY; CAPACITY_MIN],
            mask: CAPACITY_MIN - 1,
            len: 0,
            hasher: foldhash::fast::FixedState::with_seed(seed),
        }
    }

    /// The 32 hash bits of `id` that the index keeps and places entries by.
    #[inline(always)]
    pub(crate) fn hash(&self, id: u128) -> u32 {
        let h = self.hasher.hash_one(id);
        (h ^ (h >> 32)) as u32
    }

    /// Where `hash32`'s probe starts: its low bits (the hash is already fully mixed).
    #[inline(always)]
    fn home(&self, hash32: u32) -> usize {
        hash32 as usize & self.mask
    }

    /// Asks the CPU to bring the first entry `hash32` would probe into cache, without waiting.
    #[inline(always)]
    pub(crate) fn prefetch(&self, hash32: u32) {
        prefetch(&self.entries[self.home(hash32)]);
    }

    /// The slot of the first entry whose stored hash bits are `hash32`, without reading the
    /// arena to confirm the id: a cheap guess for warming, to be confirmed by the caller.
    #[inline(always)]
    pub(crate) fn candidate(&self, hash32: u32) -> Option<u32> {
        let mut position = self.home(hash32);
        loop {
            let e = self.entries[position];
            if e == EMPTY {
                return None;
            }
            if entry_hash32(e) == hash32 {
                return Some(entry_slot(e));
            }
            position = (position + 1) & self.mask;
        }
    }

    #[inline(always)]
    pub(crate) fn find(&self, hash32: u32, id: u128, key_of: impl Fn(u32) -> u128) -> Option<u32> {
        let mut position = self.home(hash32);
        loop {
            let e = self.entries[position];
            if e == EMPTY {
                return None;
            }
            if entry_hash32(e) == hash32 && key_of(entry_slot(e)) == id {
                return Some(entry_slot(e));
            }
            position = (position + 1) & self.mask;
        }
    }

    /// Inserts a slot whose key is known to be absent.
    #[inline(always)]
    pub(crate) fn insert(&mut self, hash32: u32, slot: u32) {
        if (self.len + 1) * 4 > self.entries.len() * 3 {
            self.grow(self.entries.len() * 2);
        }
        self.place(entry(hash32, slot));
        self.len += 1;
    }

    #[inline(always)]
    fn place(&mut self, e: u64) {
        let mut position = self.home(entry_hash32(e));
        while self.entries[position] != EMPTY {
            position = (position + 1) & self.mask;
        }
        self.entries[position] = e;
    }

    fn grow(&mut self, capacity: usize) {
        // `vec![0; n]` of this size is fresh zero pages from the kernel, untouched until written.
        let entries = vec![EMPTY; capacity];
        crate::memory::advise_huge_pages(entries.as_ptr(), capacity);
        let old = std::mem::replace(&mut self.entries, entries);
        self.mask = capacity - 1;
        for e in old.into_iter().filter(|&e| e != EMPTY) {
            self.place(e);
        }
    }

    /// Removes the slot for `id` (rollback of a linked chain), shifting later entries of the
    /// probe run back so every remaining entry stays reachable from its home.
    pub(crate) fn remove(&mut self, id: u128, key_of: impl Fn(u32) -> u128) {
        let hash32 = self.hash(id);
        let mut hole = self.home(hash32);
        loop {
            let e = self.entries[hole];
            assert!(e != EMPTY, "index rollback of an id that is not indexed");
            if entry_hash32(e) == hash32 && key_of(entry_slot(e)) == id {
                break;
            }
            hole = (hole + 1) & self.mask;
        }
        self.entries[hole] = EMPTY;
        self.len -= 1;
        let mut next = (hole + 1) & self.mask;
        while self.entries[next] != EMPTY {
            let e = self.entries[next];
            let home = self.home(entry_hash32(e));
            // `e` may move into the hole unless its home lies cyclically in (hole, next].
            let stays = if hole <= next {
                hole < home && home <= next
            } else {
                hole < home || home <= next
            };
            if !stays {
                self.entries[hole] = e;
                self.entries[next] = EMPTY;
                hole = next;
            }
            next = (next + 1) & self.mask;
        }
    }

    /// Makes room for `additional` more ids without growing.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let needed = (self.len + additional) * 4 / 3 + 1;
        if needed > self.entries.len() {
            self.grow(needed.next_power_of_two());
            // `vec![0; n]` maps zero pages lazily; fault them in now (see `Arena::reserve`).
            for entry in self.entries.iter_mut().step_by(4096 / 8) {
                *entry = std::hint::black_box(*entry);
            }
        }
    }

    /// Makes room for `additional` more ids without growing, and without touching the memory:
    /// pages are faulted in as entries land on them. For a count that may be far too high (a
    /// snapshot's header, a log's size), where only what is used should become resident.
    pub(crate) fn make_room(&mut self, additional: usize) {
        let needed = (self.len + additional) * 4 / 3 + 1;
        if needed > self.entries.len() {
            self.grow(needed.next_power_of_two());
        }
    }

    pub(crate) fn bytes_allocated(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves find, insert and remove (with its backward shift) agree with a reference set,
    /// through growth and with many colliding hashes.
    #[test]
    fn index_matches_a_set() {
        let mut index = IdIndex::new(3);
        let keys: Vec<u128> = (0..5_000u128).map(|i| i * 7919 + (i << 70)).collect();
        let key_of = |slot: u32| keys[slot as usize];
        let mut present = std::collections::BTreeSet::new();
        for (slot, &id) in keys.iter().enumerate() {
            index.insert(index.hash(id), slot as u32);
            present.insert(slot as u32);
        }
        // Remove every third, then check every key.
        for slot in (0..keys.len() as u32).step_by(3) {
            index.remove(keys[slot as usize], key_of);
            present.remove(&slot);
        }
        for (slot, &id) in keys.iter().enumerate() {
            let expected = present.contains(&(slot as u32)).then_some(slot as u32);
            assert_eq!(
                index.find(index.hash(id), id, key_of),
                expected,
                "slot {slot}"
            );
        }
        // Collisions: every entry with the same hash bits still finds its own slot.
        let mut crowded = IdIndex::new(0);
        for slot in 0..64u32 {
            crowded.insert(42, slot);
        }
        for slot in 0..64u32 {
            assert_eq!(crowded.find(42, keys[slot as usize], key_of), Some(slot));
        }
    }
}
