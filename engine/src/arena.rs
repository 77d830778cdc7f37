//! A chunked arena: append-only storage addressed by `u32`, whose chunks never move.
//!
//! A `Vec` that doubles copies the whole ledger history at each growth (a latency spike and a
//! transient second copy in memory); chunks of `ARENA_CHUNK_ELEMENTS` do neither.
//!
//! An arena of stored events keeps its chunks behind `Arc` ([`Shared`]), so a snapshot can
//! take a frozen view of it ([`Arena::freeze`]) by cloning one pointer per chunk, whatever
//! the history's length, while the engine goes on applying: a write to a chunk the view still
//! holds copies that one chunk first (copy on write, at most once per chunk per view). Stored
//! events almost never change after they are stored (a pending one's status does), so a view
//! costs the live arena the open chunk's copy and little else. Accounts, changed by every
//! event, keep plain chunks (no atomic on their hot path).
//!
//! A view would still cost one pointer clone per chunk — a cache miss each on a large ledger
//! (0.2 µs per chunk here: 0.44 ms at 100M events). So a shared arena also keeps its frozen
//! spine in groups of `GROUP_CHUNKS` chunks: once a group's chunks are all full, the arena
//! keeps one shared list of their pointers, and a view clones one pointer per such group plus
//! the chunks of the last, still-filling group — at most `GROUP_CHUNKS` + events/4M clones.
//! A write to a chunk of a kept group (a pending event's status, a rollback's pop) drops the
//! group's list first, so the write is in place unless a view holds the chunk; the next view
//! lists that group again (`GROUP_CHUNKS` clones).
//!
//! A shared chunk also carries the arena's view generation of its last write ([`Full`]): two
//! views of one arena whose chunk at one position has the same stamp hold the same elements
//! there, which is what lets a snapshot write only the chunks written since the last one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::Receiver;

use crate::limits::ARENA_CHUNK_ELEMENTS;

const SHIFT: u32 = ARENA_CHUNK_ELEMENTS.trailing_zeros();
const MASK: usize = ARENA_CHUNK_ELEMENTS - 1;
/// Chunks per group of a shared arena's frozen spine (module docs).
const GROUP_CHUNKS: usize = 64;
const GROUP_ELEMENTS: usize = GROUP_CHUNKS * ARENA_CHUNK_ELEMENTS;

/// How an arena holds a chunk: owned (`Vec<T>`) or shared with frozen views ([`Shared`]).
pub(crate) trait Chunk<T>: Sized {
    /// Whether views share this chunk (then `share` clones a pointer, never the elements).
    const SHARED: bool;
    /// Another handle on the same elements, for a view (only when `SHARED`).
    fn share(&self) -> Self;
    /// A chunk of `elements` written at view generation `generation`.
    fn new(elements: Vec<T>, generation: u64) -> Self;
    fn elements(&self) -> &Vec<T>;
    /// The chunk to write at view generation `generation`; if a frozen view still holds it,
    /// first copied into `empty()` (a fresh chunk, as `Arena::fresh_chunk` gives).
    fn elements_mut(&mut self, empty: impl FnOnce() -> Vec<T>, generation: u64) -> &mut Vec<T>;
}

impl<T> Chunk<T> for Vec<T> {
    const SHARED: bool = false;
    fn share(&self) -> Self {
        unreachable!("owned chunks are never shared")
    }
    fn new(elements: Vec<T>, _: u64) -> Self {
        elements
    }
    #[inline(always)]
    fn elements(&self) -> &Vec<T> {
        self
    }
    #[inline(always)]
    fn elements_mut(&mut self, _: impl FnOnce() -> Vec<T>, _: u64) -> &mut Vec<T> {
        self
    }
}

/// A chunk shared with frozen views, copied on write while one holds it. A clone is another
/// pointer to the same elements.
#[derive(Debug)]
pub(crate) struct Shared<T>(Arc<Full<T>>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(Arc::clone(&self.0))
    }
}

/// A chunk's elements; a copy keeps the whole chunk's capacity, so appends to the open chunk
/// after a copy never reallocate. `written`: the arena's view generation at the chunk's last
/// write (every view taken since holds these very elements if it holds this stamp).
#[derive(Debug)]
pub(crate) struct Full<T> {
    elements: Vec<T>,
    written: u64,
}

/// An empty chunk with room for `ARENA_CHUNK_ELEMENTS`.
fn chunk_vec<T>() -> Vec<T> {
    Vec::with_capacity(ARENA_CHUNK_ELEMENTS)
}

impl<T: Clone> Chunk<T> for Shared<T> {
    const SHARED: bool = true;
    fn share(&self) -> Self {
        self.clone()
    }
    fn new(elements: Vec<T>, generation: u64) -> Self {
        Shared(Arc::new(Full {
            elements,
            written: generation,
        }))
    }
    #[inline(always)]
    fn elements(&self) -> &Vec<T> {
        &self.0.elements
    }
    #[inline(always)]
    fn elements_mut(&mut self, empty: impl FnOnce() -> Vec<T>, generation: u64) -> &mut Vec<T> {
        if Arc::get_mut(&mut self.0).is_none() {
            let mut copy = empty();
            copy.extend_from_slice(&self.0.elements);
            self.0 = Arc::new(Full {
                elements: copy,
                written: generation,
            });
        }
        let full = Arc::get_mut(&mut self.0).expect("a chunk just copied is held only here");
        full.written = generation;
        &mut full.elements
    }
}

#[derive(Debug)]
pub(crate) struct Arena<T, C: Chunk<T> = Vec<T>> {
    chunks: Vec<C>,
    len: usize,
    /// Empty chunks whose memory a maker thread has faulted in (`take_chunks_from`).
    spares: Option<Receiver<Vec<T>>>,
    /// Views taken so far (`freeze`), stamped on every chunk written (`Full::written`).
    generation: AtomicU64,
    /// Shared arenas: per group of `GROUP_CHUNKS` full chunks, the list of their pointers a
    /// view clones whole, while no write touched the group since it was listed (module docs).
    /// Invariant: a list holds exactly the arena's current chunks of its group.
    groups: Vec<Option<Arc<[C]>>>,
}

impl<T, C: Chunk<T>> Default for Arena<T, C> {
    fn default() -> Self {
        Arena {
            chunks: Vec::new(),
            len: 0,
            spares: None,
            generation: AtomicU64::new(0),
            groups: Vec::new(),
        }
    }
}

/// Spare chunks a maker keeps ready for one arena: enough to stay ahead of a restore.
pub(crate) const SPARES: usize = 2;

/// An empty chunk faulted in (huge pages where the kernel has them), for a `ChunkMaker`.
pub(crate) fn faulted_chunk<T>() -> Vec<T> {
    let chunk = chunk_vec::<T>();
    crate::memory::advise_huge_pages(chunk.as_ptr(), ARENA_CHUNK_ELEMENTS);
    crate::memory::populate(chunk.as_ptr(), ARENA_CHUNK_ELEMENTS);
    chunk
}

/// A frozen view of a shared arena: its elements as they were when it was taken, whatever is
/// written to the arena afterwards.
#[derive(Debug, Clone)]
pub(crate) struct Frozen<T> {
    /// The groups whose pointer lists the arena kept, then the remaining chunks one by one.
    groups: Vec<Arc<[Shared<T>]>>,
    rest: Vec<Shared<T>>,
    len: usize,
}

impl<T: Clone> Arena<T, Shared<T>> {
    /// A frozen view of the arena as it is now. Cost: one pointer clone per group of
    /// `GROUP_CHUNKS` full chunks, one per chunk of the last group, and a list for each group
    /// written since the last view (`GROUP_CHUNKS` clones each).
    pub(crate) fn freeze(&mut self) -> Frozen<T> {
        self.generation.fetch_add(1, Ordering::Relaxed);
        let full_groups = self.len / GROUP_ELEMENTS;
        for group in 0..full_groups {
            self.list_group(group);
        }
        let groups = self.groups[..full_groups]
            .iter()
            .map(|list| Arc::clone(list.as_ref().expect("every full group was just listed")))
            .collect();
        let rest = self.chunks[full_groups * GROUP_CHUNKS..self.len.div_ceil(ARENA_CHUNK_ELEMENTS)]
            .iter()
            .map(Shared::share)
            .collect();
        Frozen {
            groups,
            rest,
            len: self.len,
        }
    }
}

impl<T> Frozen<T> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn full(&self, index: usize) -> &Full<T> {
        let listed = self.groups.len() * GROUP_CHUNKS;
        if index < listed {
            &self.groups[index / GROUP_CHUNKS][index % GROUP_CHUNKS].0
        } else {
            &self.rest[index - listed].0
        }
    }

    /// The elements, in order (the view's length: the open chunk may hold more by now only in
    /// the arena's copy of it, never in this one).
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = &T> + '_ {
        ArenaIter {
            inner: (0..self.chunk_count()).flat_map(|i| self.full(i).elements.iter()),
            remaining: self.len,
        }
    }

    /// Chunk `index`'s elements in the view (the last one possibly partly filled) and the
    /// generation of its last write: equal stamps at one position of two views of the same
    /// arena mean equal elements there.
    pub(crate) fn chunk(&self, index: usize) -> (&[T], u64) {
        let chunk = self.full(index);
        let end = (self.len - index * ARENA_CHUNK_ELEMENTS).min(ARENA_CHUNK_ELEMENTS);
        (&chunk.elements[..end], chunk.written)
    }

    /// Chunks in the view.
    pub(crate) fn chunk_count(&self) -> usize {
        self.len.div_ceil(ARENA_CHUNK_ELEMENTS)
    }
}

impl<T, C: Chunk<T>> Arena<T, C> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The number of elements from the start for which `pred` holds, `pred` holding for a
    /// prefix of the arena (`slice::partition_point`): a binary search.
    pub(crate) fn partition_point(&self, pred: impl Fn(&T) -> bool) -> usize {
        let (mut low, mut high) = (0usize, self.len);
        while low < high {
            let mid = low + (high - low) / 2;
            if pred(self.get(mid as u32)) {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        low
    }

    /// Appends and returns the new element's index. The caller checks capacity limits first.
    #[inline(always)]
    pub(crate) fn push(&mut self, value: T) -> u32 {
        let index = self.len;
        assert!(index < u32::MAX as usize, "arena index space exhausted");
        let chunk = index >> SHIFT;
        if chunk == self.chunks.len() {
            self.chunks
                .push(C::new(Self::fresh_chunk(&self.spares), self.generation()));
        }
        if C::SHARED && index.is_multiple_of(GROUP_ELEMENTS) && index > 0 {
            // The group before is full now: list it once here rather than in the next view.
            self.list_group(index / GROUP_ELEMENTS - 1);
        }
        let chunk = self.write(chunk);
        debug_assert!(chunk.len() < ARENA_CHUNK_ELEMENTS);
        chunk.push(value);
        self.len += 1;
        index as u32
    }

    /// Chunk `chunk`'s elements to write: its group's list dropped first (its invariant), then
    /// copied if a view still holds it, stamped with the current generation.
    #[inline(always)]
    fn write(&mut self, chunk: usize) -> &mut Vec<T> {
        if let Some(list) = self.groups.get_mut(chunk / GROUP_CHUNKS) {
            *list = None;
        }
        let spares = &self.spares;
        let generation = self.generation();
        self.chunks[chunk].elements_mut(|| Self::fresh_chunk(spares), generation)
    }

    /// Makes sure full group `group` of a shared arena has its list of chunk pointers.
    fn list_group(&mut self, group: usize) {
        if self.groups.len() <= group {
            self.groups.resize(group + 1, None);
        }
        if self.groups[group].is_none() {
            let chunks = &self.chunks[group * GROUP_CHUNKS..(group + 1) * GROUP_CHUNKS];
            self.groups[group] = Some(chunks.iter().map(C::share).collect());
        }
    }

    /// The view generation a write now is stamped with.
    #[inline(always)]
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// An empty chunk: a spare the helper faulted in if one is ready, else a new allocation
    /// (faulted in by the writes that fill it). Never waits for the helper.
    fn fresh_chunk(spares: &Option<Receiver<Vec<T>>>) -> Vec<T> {
        spares
            .as_ref()
            .and_then(|spares| spares.try_recv().ok())
            .unwrap_or_else(chunk_vec)
    }

    /// Removes the last element (rollback of a linked chain). Chunks stay allocated.
    pub(crate) fn pop(&mut self) -> Option<T> {
        let index = self.len.checked_sub(1)?;
        let value = self.write(index >> SHIFT).pop()?;
        self.len = index;
        Some(value)
    }

    /// Takes fresh chunks from `spares` (filled by a `ChunkMaker` on a thread the caller
    /// runs) until `stop_taking_chunks`: for a bulk fill (a restore, a replay), where most of
    /// the time otherwise goes to the kernel zeroing fresh pages on the filling thread (~1 GB/s
    /// on this host's virtual machine). Not for the apply path at a steady rate: measured
    /// there, the maker's bursts of zeroing on a 2-core host stalled batches for tens of ms
    /// every time a chunk opened, worse than the faults it saves. Memory placement only:
    /// changes no output.
    pub(crate) fn take_chunks_from(&mut self, spares: Receiver<Vec<T>>) {
        self.spares = Some(spares);
    }

    /// Ends `take_chunks_from`: the maker stops at its next send, and the spares it made
    /// are freed.
    pub(crate) fn stop_taking_chunks(&mut self) {
        self.spares = None;
    }

    /// Allocates chunks for `additional` more elements now and touches every page of them, so
    /// appends never wait for the kernel to fault memory in (on this VM a first touch costs more
    /// than the append itself). A replica calls this once at start, like a fixed-size ledger.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let wanted = (self.len + additional).div_ceil(ARENA_CHUNK_ELEMENTS);
        while self.chunks.len() < wanted {
            let mut chunk: Vec<T> = chunk_vec();
            // One write per page is enough to fault it in. `black_box` keeps the compiler from
            // turning allocate-then-zero into `calloc`, which would touch nothing.
            let per_page = (4096 / std::mem::size_of::<T>().max(1)).max(1);
            for element in chunk.spare_capacity_mut().iter_mut().step_by(per_page) {
                *element = std::mem::MaybeUninit::zeroed();
                std::hint::black_box(element);
            }
            self.chunks.push(C::new(chunk, self.generation()));
        }
    }

    #[inline(always)]
    pub(crate) fn get(&self, index: u32) -> &T {
        let index = index as usize;
        &self.chunks[index >> SHIFT].elements()[index & MASK]
    }

    #[inline(always)]
    pub(crate) fn get_mut(&mut self, index: u32) -> &mut T {
        let index = index as usize;
        &mut self.write(index >> SHIFT)[index & MASK]
    }

    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = &T> + '_ {
        ArenaIter {
            inner: self.chunks.iter().flat_map(|chunk| chunk.elements().iter()),
            remaining: self.len,
        }
    }

    /// Bytes held, counting each chunk's full capacity.
    pub(crate) fn bytes_allocated(&self) -> usize {
        self.chunks.capacity() * std::mem::size_of::<C>()
            + self
                .chunks
                .iter()
                .map(|c| c.elements().capacity() * std::mem::size_of::<T>())
                .sum::<usize>()
    }
}

struct ArenaIter<I> {
    inner: I,
    remaining: usize,
}

impl<'a, T: 'a, I: Iterator<Item = &'a T>> Iterator for ArenaIter<I> {
    type Item = &'a T;
    fn next(&mut self) -> Option<&'a T> {
        let item = self.inner.next()?;
        self.remaining -= 1;
        Some(item)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<'a, T: 'a, I: Iterator<Item = &'a T>> ExactSizeIterator for ArenaIter<I> {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves a frozen view keeps the elements as they were — through appends into the open
    /// chunk, writes to old chunks and pops — while the arena sees every change, and that a
    /// copied chunk keeps its full capacity.
    #[test]
    fn frozen_views_do_not_see_later_writes() {
        frozen_views_do_not_see_later_writes_with(&mut Arena::default());
    }

    /// The same with chunks (new ones and the copies a view forces) taken from spares a
    /// maker thread faulted in; the maker keeps `SPARES` ready until the arena stops taking.
    #[test]
    fn frozen_views_do_not_see_later_writes_with_prefaulted_chunks() {
        let (to, spares) = crossbeam_channel::bounded(SPARES);
        let maker = std::thread::spawn(move || while to.send(faulted_chunk::<u64>()).is_ok() {});
        let mut arena: Arena<u64, Shared<u64>> = Arena::default();
        arena.take_chunks_from(spares.clone());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while spares.len() < SPARES {
            assert!(
                std::time::Instant::now() < deadline,
                "no spare chunk in 30 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let spare = spares.try_recv().expect("a spare chunk");
        assert!(spare.is_empty() && spare.capacity() == ARENA_CHUNK_ELEMENTS);
        drop(spares);
        frozen_views_do_not_see_later_writes_with(&mut arena);
        arena.stop_taking_chunks();
        maker
            .join()
            .expect("the maker ends once the arena stops taking");
        arena.push(5);
    }

    fn frozen_views_do_not_see_later_writes_with(arena: &mut Arena<u64, Shared<u64>>) {
        let n = ARENA_CHUNK_ELEMENTS + 10;
        for i in 0..n {
            arena.push(i as u64);
        }
        let view = arena.freeze();
        *arena.get_mut(3) = 1_000;
        arena.pop();
        arena.push(2_000);
        arena.push(3_000);
        assert_eq!(view.len(), n);
        assert!(view.iter().copied().eq(0..n as u64));
        assert_eq!(*arena.get(3), 1_000);
        assert_eq!(*arena.get((n - 1) as u32), 2_000);
        assert_eq!(arena.len(), n + 1);
        assert_eq!(
            arena.chunks[1].elements().capacity(),
            ARENA_CHUNK_ELEMENTS,
            "the open chunk's copy has room for the whole chunk"
        );
        drop(view);
        // No view left: writes go in place.
        let before = arena.chunks[0].elements().as_ptr();
        *arena.get_mut(4) = 4_000;
        assert_eq!(arena.chunks[0].elements().as_ptr(), before);
    }

    /// Proves two views of an arena show a chunk with the same stamp only where nothing was
    /// written to it between them: a status change in a full chunk, an append to the open
    /// one and a pop each change the stamp, in place or on a copy.
    #[test]
    fn stamps_change_exactly_where_written() {
        let mut arena: Arena<u64, Shared<u64>> = Arena::default();
        for i in 0..(ARENA_CHUNK_ELEMENTS * 3 + 5) as u64 {
            arena.push(i);
        }
        let stamps = |view: &Frozen<u64>| -> Vec<u64> {
            (0..view.chunk_count()).map(|i| view.chunk(i).1).collect()
        };
        let first = arena.freeze();
        assert_eq!(first.chunk_count(), 4);
        assert_eq!(first.chunk(3).0.len(), 5);
        // Nothing written: equal stamps.
        let second = arena.freeze();
        assert_eq!(stamps(&first), stamps(&second));
        // A change in chunk 1 while a view holds it (copy), an append to the open chunk.
        *arena.get_mut(ARENA_CHUNK_ELEMENTS as u32 + 2) = 7;
        arena.push(99);
        drop(first);
        let third = arena.freeze();
        let (before, after) = (stamps(&second), stamps(&third));
        assert_eq!(before[0], after[0]);
        assert_ne!(before[1], after[1]);
        assert_eq!(before[2], after[2]);
        assert_ne!(before[3], after[3]);
        assert_eq!(third.chunk(1).0[2], 7);
        assert_eq!(second.chunk(1).0[2], ARENA_CHUNK_ELEMENTS as u64 + 2);
        // No view holds chunk 2 any more: an in-place write stamps it too.
        drop(second);
        drop(third);
        *arena.get_mut(2 * ARENA_CHUNK_ELEMENTS as u32) = 8;
        let fourth = arena.freeze();
        assert_ne!(after[2], stamps(&fourth)[2]);
        assert_eq!(after[0], stamps(&fourth)[0]);
        arena.pop();
        assert_ne!(stamps(&fourth)[3], stamps(&arena.freeze())[3]);
    }

    /// Proves a view of an arena of several full groups clones one pointer per full group and
    /// one per chunk of the last group, and that the kept lists follow every write: a write to
    /// a listed group is in place when no view holds it, copied when one does (that view keeps
    /// the old value, the next one sees the new), and a rollback's pop back across a group's
    /// end is seen by the next view.
    #[test]
    fn views_clone_a_pointer_per_group_and_follow_writes() {
        let mut arena: Arena<u64, Shared<u64>> = Arena::default();
        let n = GROUP_ELEMENTS * 2 + 3 * ARENA_CHUNK_ELEMENTS + 5;
        for i in 0..n as u64 {
            arena.push(i);
        }
        let first = arena.freeze();
        assert_eq!((first.groups.len(), first.rest.len()), (2, 4));
        assert!(first.iter().copied().eq(0..n as u64));
        // A view holds group 0: the write copies its chunk, the view keeps the old value.
        let before = arena.chunks[1].elements().as_ptr();
        *arena.get_mut(ARENA_CHUNK_ELEMENTS as u32 + 1) = 7;
        assert_ne!(arena.chunks[1].elements().as_ptr(), before);
        let second = arena.freeze();
        assert_eq!(first.chunk(1).0[1], ARENA_CHUNK_ELEMENTS as u64 + 1);
        assert_eq!(second.chunk(1).0[1], 7);
        assert_ne!(first.chunk(1).1, second.chunk(1).1);
        assert_eq!(first.chunk(70).1, second.chunk(70).1);
        // No view left: a write to a listed group is in place.
        drop((first, second));
        let before = arena.chunks[65].elements().as_ptr();
        *arena.get_mut(65 * ARENA_CHUNK_ELEMENTS as u32) = 8;
        assert_eq!(arena.chunks[65].elements().as_ptr(), before);
        assert_eq!(arena.freeze().chunk(65).0[0], 8);
        // Back across group 2's start and forward again.
        let third = arena.freeze();
        while arena.len() > GROUP_ELEMENTS * 2 - 1 {
            arena.pop();
        }
        arena.push(9);
        let fourth = arena.freeze();
        assert_eq!((fourth.groups.len(), fourth.rest.len()), (2, 0));
        assert_eq!(fourth.len(), GROUP_ELEMENTS * 2);
        assert_eq!(fourth.chunk(127).0[ARENA_CHUNK_ELEMENTS - 1], 9);
        assert_eq!(
            third.chunk(127).0[ARENA_CHUNK_ELEMENTS - 1],
            (GROUP_ELEMENTS * 2 - 1) as u64
        );
        assert_eq!(third.len(), n);
    }

    /// Proves push, get, pop and iteration agree across chunk boundaries.
    #[test]
    fn arena_crosses_chunks() {
        let mut arena: Arena<u64> = Arena::default();
        let n = ARENA_CHUNK_ELEMENTS * 2 + 3;
        for i in 0..n {
            assert_eq!(arena.push(i as u64), i as u32);
        }
        assert_eq!(arena.len(), n);
        assert_eq!(
            *arena.get(ARENA_CHUNK_ELEMENTS as u32),
            ARENA_CHUNK_ELEMENTS as u64
        );
        assert!(arena.iter().copied().eq(0..n as u64));
        for i in (ARENA_CHUNK_ELEMENTS * 2 - 1..n).rev() {
            assert_eq!(arena.pop(), Some(i as u64));
        }
        assert_eq!(arena.chunks.len(), 3);
        arena.reserve(ARENA_CHUNK_ELEMENTS * 2);
        assert_eq!(arena.chunks.len(), 4);
        assert_eq!(arena.push(7), (ARENA_CHUNK_ELEMENTS * 2 - 1) as u32);
        assert_eq!(arena.iter().len(), ARENA_CHUNK_ELEMENTS * 2);
    }
}
