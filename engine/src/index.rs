//! An id index: open addressing with linear probing over 8-byte entries, `hash32 << 32 | slot+1`.
//!
//! Why not hashbrown (which this replaced): the index of events grows to hundreds of MB and is
//! probed at a random place per event. On this machine such a probe costs ~200 ns when it waits
//! alone and ~15 ns when it was prefetched; hashbrown offers no way to prefetch a probe, this
//! table does (`prefetch`), and its probe is a handful of instructions instead of SIMD group
//! matching. The 16-byte id lives only in the arena the slot points into; the entry keeps 32 bits
//! of the id's hash, so growing never reads the arena and a probe reads it only when 32 bits
//! match. Load stays at most 3/4 (linear probing degrades past that): 10.7–21 bytes per id, and
//! up to 32 while the next table is prepared or filled (from 5/8 load until the move ends).
//!
//! Growing is incremental: the insert that crosses 3/4 load allocates the table twice the size
//! and each insert after it moves `MIGRATE_SLOTS` slots of the old table into it (`Migration`),
//! so no insert pays for rehashing the whole index — at 10M events that was a stall of
//! hundreds of ms on the apply path, every doubling. Until the move ends a lookup that misses
//! the new table probes the old one too. The old table is never reordered meanwhile: a removal
//! leaves a tombstone there instead of shifting entries back, and the move stops only where a
//! probe run ends (an empty slot), so every entry not yet moved stays reachable from its home.
//!
//! The new table is made ready before it is needed: from 5/8 load on, each insert faults in
//! a share of the next table (`Prepared`: huge pages, one 2 MiB piece at a time), so when 3/4
//! is crossed the move writes into memory that is already resident and mapped by few TLB
//! entries. Into a fresh 4 KiB-page table every moved entry paid a TLB miss and one in
//! ~200 a page fault: at 6.3M events the move halved the apply rate for a second.
//!
//! The hasher is seeded by the engine's configuration. No output of the engine ever depends on
//! the table's layout (the determinism test runs two seeds side by side).

use std::hash::BuildHasher;

/// An empty entry. Occupied entries store `slot + 1` in the low half, so they are never 0.
const EMPTY: u64 = 0;
/// A removed entry of an old table being moved (`Migration`): probes go on past it, the move
/// skips it. Never stored in the live table, and never compared as an entry.
const TOMBSTONE: u64 = u64::MAX;
const CAPACITY_MIN: usize = 1 << 10;
/// Old-table slots each insert moves while a growth is under way: the old table of `C` slots
/// is moved in `C / 16` inserts, long before the new one (`2C` slots, holding `3C/4` ids
/// when it began) needs to grow in turn (`3C/2` ids).
const MIGRATE_SLOTS: usize = 16;
/// Tables smaller than this grow into a table allocated on the spot (faulting in at most a
/// few MiB is cheaper than keeping a prepared one around).
const PREPARE_MIN: usize = 1 << 18;
/// Bytes of the prepared table faulted in at a time: one huge page.
const PREPARE_STEP_BYTES: usize = 2 << 20;

pub(crate) struct IdIndex {
    entries: Vec<u64>,
    /// `entries.len() - 1`; the length is a power of two.
    mask: usize,
    /// Ids indexed, in either table.
    len: usize,
    hasher: foldhash::fast::FixedState,
    /// The table being moved into `entries`, while a growth is under way.
    migration: Option<Migration>,
    /// The next table, being faulted in ahead of the growth that will use it.
    prepared: Option<Prepared>,
}

/// An empty table twice the size of `entries`, faulted in piece by piece from 5/8 load on.
struct Prepared {
    entries: Vec<u64>,
    /// Elements from the start faulted in so far.
    populated: usize,
}

/// An old table and how far it has been moved.
struct Migration {
    old: Vec<u64>,
    /// `old.len() - 1`.
    mask: usize,
    /// The next old slot to move. Between inserts it is always an empty slot, so the slots
    /// moved are whole probe runs.
    cursor: usize,
    /// Old slots not looked at yet.
    remaining: usize,
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
            migration: None,
            prepared: None,
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

    /// Asks the CPU to bring the first entry `hash32` would probe into cache (in both tables
    /// while a growth is under way), without waiting.
    #[inline(always)]
    pub(crate) fn prefetch(&self, hash32: u32) {
        prefetch(&self.entries[self.home(hash32)]);
        if let Some(migration) = &self.migration {
            prefetch(&migration.old[hash32 as usize & migration.mask]);
        }
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
        let found = probe(&self.entries, self.mask, hash32, id, &key_of).map(|(_, slot)| slot);
        match &self.migration {
            Some(migration) if found.is_none() => {
                probe(&migration.old, migration.mask, hash32, id, &key_of).map(|(_, slot)| slot)
            }
            _ => found,
        }
    }

    /// Inserts a slot whose key is known to be absent.
    #[inline(always)]
    pub(crate) fn insert(&mut self, hash32: u32, slot: u32) {
        if (self.len + 1) * 4 > self.entries.len() * 3 {
            self.start_growth();
        } else if self.len * 8 >= self.entries.len() * 5 && self.entries.len() >= PREPARE_MIN {
            self.prepare();
        }
        self.place(entry(hash32, slot));
        self.len += 1;
        if self.migration.is_some() {
            self.migrate(MIGRATE_SLOTS);
        }
    }

    /// Faults in the prepared table's share for the load reached: none of it at 5/8, all of
    /// it at 3/4 (one huge page per `C / 8 / (16 C / 2 MiB)` = 16,384 inserts).
    fn prepare(&mut self) {
        let capacity = self.entries.len() * 2;
        let prepared = self.prepared.get_or_insert_with(|| {
            let entries = vec![EMPTY; capacity];
            // Huge pages are safe here: each is faulted in whole, by `populate`, one per call.
            crate::memory::advise_huge_pages(entries.as_ptr(), capacity);
            Prepared {
                entries,
                populated: 0,
            }
        });
        // Only `start_growth` (which takes it) and `grow` (which drops it) change the capacity.
        debug_assert_eq!(prepared.entries.len(), capacity);
        let start = capacity / 2 * 5 / 8;
        let span = capacity / 2 / 8;
        let due = capacity / span * self.len.saturating_sub(start).min(span);
        if prepared.populated < due {
            let step = (PREPARE_STEP_BYTES / 8).min(capacity - prepared.populated);
            crate::memory::populate(prepared.entries[prepared.populated..].as_ptr(), step);
            prepared.populated += step;
        }
    }

    /// Switches to the table twice the size (the prepared one when it was made ready) and
    /// starts moving the old one into it.
    #[cold]
    fn start_growth(&mut self) {
        self.finish_migration();
        let capacity = self.entries.len() * 2;
        let entries = match self.prepared.take() {
            Some(prepared) => {
                debug_assert_eq!(prepared.entries.len(), capacity);
                let rest = capacity - prepared.populated;
                crate::memory::populate(prepared.entries[prepared.populated..].as_ptr(), rest);
                prepared.entries
            }
            // A table below `PREPARE_MIN`. No huge pages here, unlike a bulk `grow`: inserts
            // land at random places, so the first few dozen would each fault a 2 MiB page in
            // (~2 ms apiece on this host), a stall of tens to hundreds of ms together; 4 KiB
            // pages spread that out.
            None => vec![EMPTY; capacity],
        };
        let old = std::mem::replace(&mut self.entries, entries);
        self.mask = capacity - 1;
        // Load is at most 3/4, so there is an empty slot to start from.
        let cursor = old
            .iter()
            .position(|&e| e == EMPTY)
            .expect("a table at most 3/4 full has an empty slot");
        self.migration = Some(Migration {
            mask: old.len() - 1,
            remaining: old.len(),
            cursor,
            old,
        });
    }

    /// Moves at least `budget` old slots (more to end on a run's end), or the rest.
    fn migrate(&mut self, budget: usize) {
        let Some(mut migration) = self.migration.take() else {
            return;
        };
        let mut moved = 0;
        while migration.remaining > 0 {
            let e = migration.old[migration.cursor];
            if e != EMPTY && e != TOMBSTONE {
                self.place(e);
            }
            migration.cursor = (migration.cursor + 1) & migration.mask;
            migration.remaining -= 1;
            moved += 1;
            if moved >= budget && migration.old[migration.cursor] == EMPTY {
                break;
            }
        }
        if migration.remaining > 0 {
            self.migration = Some(migration);
        }
    }

    fn finish_migration(&mut self) {
        self.migrate(usize::MAX);
    }

    #[inline(always)]
    fn place(&mut self, e: u64) {
        let mut position = self.home(entry_hash32(e));
        while self.entries[position] != EMPTY {
            position = (position + 1) & self.mask;
        }
        self.entries[position] = e;
    }

    /// Rehashes everything into a table of `capacity` at once (for `reserve`/`make_room`,
    /// before a bulk fill).
    fn grow(&mut self, capacity: usize) {
        self.finish_migration();
        self.prepared = None;
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
    /// While a growth is under way the id may be in the new table (moved or inserted since),
    /// in the old one (not moved yet) or in both (moved): it leaves both, as a tombstone in
    /// the old one.
    pub(crate) fn remove(&mut self, id: u128, key_of: impl Fn(u32) -> u128) {
        let hash32 = self.hash(id);
        let in_old = self.migration.as_mut().is_some_and(|migration| {
            match probe(&migration.old, migration.mask, hash32, id, &key_of) {
                Some((position, _)) => {
                    migration.old[position] = TOMBSTONE;
                    true
                }
                None => false,
            }
        });
        let Some((mut hole, _)) = probe(&self.entries, self.mask, hash32, id, &key_of) else {
            assert!(in_old, "index rollback of an id that is not indexed");
            self.len -= 1;
            return;
        };
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
        let capacity = self.entries.len();
        self.make_room(additional);
        if self.entries.len() > capacity {
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
        let old = self.migration.as_ref().map_or(0, |m| m.old.capacity());
        let prepared = self.prepared.as_ref().map_or(0, |p| p.entries.capacity());
        (self.entries.capacity() + old + prepared) * std::mem::size_of::<u64>()
    }
}

/// The position and slot of `id` in `table`, probing from its home past tombstones.
#[inline(always)]
fn probe(
    table: &[u64],
    mask: usize,
    hash32: u32,
    id: u128,
    key_of: &impl Fn(u32) -> u128,
) -> Option<(usize, u32)> {
    let mut position = hash32 as usize & mask;
    loop {
        let e = table[position];
        if e == EMPTY {
            return None;
        }
        if e != TOMBSTONE && entry_hash32(e) == hash32 && key_of(entry_slot(e)) == id {
            return Some((position, entry_slot(e)));
        }
        position = (position + 1) & mask;
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
        assert_finds_exactly(&index, &keys, &present);
        // Collisions: every entry with the same hash bits still finds its own slot.
        let mut crowded = IdIndex::new(0);
        for slot in 0..64u32 {
            crowded.insert(42, slot);
        }
        for slot in 0..64u32 {
            assert_eq!(crowded.find(42, keys[slot as usize], key_of), Some(slot));
        }
    }

    /// Proves lookups, inserts and removals stay right while growths are under way (ids in
    /// the new table, the old one, or both), against a reference set, through several
    /// doublings with removals interleaved, including removals of ids not moved yet.
    #[test]
    fn index_matches_a_set_while_it_grows() {
        let keys: Vec<u128> = (0..40_000u128)
            .map(|i| i * 104_729 + (i << 80) + 1)
            .collect();
        let key_of = |slot: u32| keys[slot as usize];
        let mut index = IdIndex::new(11);
        let mut present = std::collections::BTreeSet::new();
        let mut growths_seen = 0;
        for (slot, &id) in keys.iter().enumerate() {
            let slot = slot as u32;
            let was_migrating = index.migration.is_some();
            index.insert(index.hash(id), slot);
            present.insert(slot);
            if !was_migrating && index.migration.is_some() {
                growths_seen += 1;
            }
            // While moving: remove an older id (often one not moved yet), and look some up.
            if index.migration.is_some() && slot.is_multiple_of(5) {
                let victim = slot / 3;
                if present.remove(&victim) {
                    index.remove(keys[victim as usize], key_of);
                }
            }
            if slot.is_multiple_of(97) {
                for probe_slot in [slot / 2, slot / 3, slot, slot / 7] {
                    let id = keys[probe_slot as usize];
                    let expected = present.contains(&probe_slot).then_some(probe_slot);
                    assert_eq!(index.find(index.hash(id), id, key_of), expected);
                }
            }
        }
        assert!(growths_seen >= 4, "only {growths_seen} growths");
        assert_eq!(index.len, present.len());
        assert_finds_exactly(&index, &keys, &present);
    }

    /// Proves no insert rehashes the whole index: the one that crosses 3/4 load only starts
    /// the growth, and the old table is fully moved (and freed) within `capacity /
    /// MIGRATE_SLOTS` further inserts, each moving a bounded stretch.
    #[test]
    fn growth_is_spread_over_inserts() {
        let mut index = IdIndex::new(5);
        let capacity = index.entries.len();
        let mut slot = 0u32;
        while index.migration.is_none() {
            index.insert(index.hash(u128::from(slot) + 1), slot);
            slot += 1;
        }
        assert_eq!(
            slot as usize,
            capacity * 3 / 4 + 1,
            "growth starts past 3/4 load"
        );
        assert_eq!(index.entries.len(), capacity * 2);
        let remaining = index.migration.as_ref().expect("moving").remaining;
        assert!(
            remaining >= capacity - 2 * MIGRATE_SLOTS,
            "the first insert moved only a stretch: {remaining} of {capacity} left"
        );
        let mut inserts = 0;
        while index.migration.is_some() {
            index.insert(index.hash(u128::from(slot) + 1), slot);
            slot += 1;
            inserts += 1;
        }
        assert!(
            inserts <= capacity / MIGRATE_SLOTS + 1,
            "{inserts} inserts to move {capacity} slots"
        );
    }

    /// Proves a table of at least `PREPARE_MIN` slots grows into the table prepared for it,
    /// wholly faulted in by the time 3/4 load is crossed, and that every id stays findable
    /// through that growth.
    #[test]
    fn growth_uses_the_prepared_table() {
        let keys: Vec<u128> = (0..(PREPARE_MIN * 3 / 4 + 4096) as u128)
            .map(|i| i * 7_919 + (i << 64) + 1)
            .collect();
        let mut index = IdIndex::new(9);
        let mut prepared_seen = false;
        for (slot, &id) in keys.iter().enumerate() {
            if index.entries.len() == PREPARE_MIN && (slot + 1) * 4 > PREPARE_MIN * 3 {
                let prepared = index.prepared.as_ref().expect("the next table is prepared");
                assert_eq!(prepared.entries.len(), PREPARE_MIN * 2);
                assert_eq!(prepared.populated, PREPARE_MIN * 2, "wholly faulted in");
                prepared_seen = true;
            }
            if index.entries.len() == PREPARE_MIN && slot * 8 < PREPARE_MIN * 5 {
                assert!(
                    index.prepared.is_none(),
                    "prepared before 5/8 load at {slot}"
                );
            }
            index.insert(index.hash(id), slot as u32);
        }
        assert!(prepared_seen);
        assert_eq!(index.entries.len(), PREPARE_MIN * 2);
        assert!(index.prepared.is_none());
        let present = (0..keys.len() as u32).collect();
        assert_finds_exactly(&index, &keys, &present);
    }

    /// Every key is found at its slot if it is in `present`, and not found otherwise.
    fn assert_finds_exactly(
        index: &IdIndex,
        keys: &[u128],
        present: &std::collections::BTreeSet<u32>,
    ) {
        for (slot, &id) in keys.iter().enumerate() {
            let expected = present.contains(&(slot as u32)).then_some(slot as u32);
            let found = index.find(index.hash(id), id, |slot| keys[slot as usize]);
            assert_eq!(found, expected, "slot {slot}");
        }
    }
}
