//! A chunked arena: append-only storage addressed by `u32`, whose chunks never move.
//!
//! A `Vec` that doubles copies the whole ledger history at each growth (a latency spike and a
//! transient second copy in memory); chunks of `ARENA_CHUNK_ELEMENTS` do neither.

use crate::limits::ARENA_CHUNK_ELEMENTS;

const SHIFT: u32 = ARENA_CHUNK_ELEMENTS.trailing_zeros();
const MASK: usize = ARENA_CHUNK_ELEMENTS - 1;

#[derive(Debug)]
pub(crate) struct Arena<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Arena<T> {
    fn default() -> Self {
        Arena {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Arena<T> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends and returns the new element's index. The caller checks capacity limits first.
    #[inline(always)]
    pub(crate) fn push(&mut self, value: T) -> u32 {
        let index = self.len;
        assert!(index < u32::MAX as usize, "arena index space exhausted");
        let chunk = index >> SHIFT;
        if chunk == self.chunks.len() {
            self.chunks.push(Vec::with_capacity(ARENA_CHUNK_ELEMENTS));
        }
        let chunk = &mut self.chunks[chunk];
        debug_assert!(chunk.len() < ARENA_CHUNK_ELEMENTS);
        chunk.push(value);
        self.len += 1;
        index as u32
    }

    /// Removes the last element (rollback of a linked chain). Chunks stay allocated.
    pub(crate) fn pop(&mut self) -> Option<T> {
        let index = self.len.checked_sub(1)?;
        let value = self.chunks[index >> SHIFT].pop()?;
        self.len = index;
        Some(value)
    }

    /// Allocates chunks for `additional` more elements now and touches every page of them, so
    /// appends never wait for the kernel to fault memory in (on this VM a first touch costs more
    /// than the append itself). A replica calls this once at start, like a fixed-size ledger.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let wanted = (self.len + additional).div_ceil(ARENA_CHUNK_ELEMENTS);
        while self.chunks.len() < wanted {
            let mut chunk: Vec<T> = Vec::with_capacity(ARENA_CHUNK_ELEMENTS);
            // One write per page is enough to fault it in. `black_box` keeps the compiler from
            // turning allocate-then-zero into `calloc`, which would touch nothing.
            let per_page = (4096 / std::mem::size_of::<T>().max(1)).max(1);
            for element in chunk.spare_capacity_mut().iter_mut().step_by(per_page) {
                *element = std::mem::MaybeUninit::zeroed();
                std::hint::black_box(element);
            }
            self.chunks.push(chunk);
        }
    }

    #[inline(always)]
    pub(crate) fn get(&self, index: u32) -> &T {
        let index = index as usize;
        &self.chunks[index >> SHIFT][index & MASK]
    }

    #[inline(always)]
    pub(crate) fn get_mut(&mut self, index: u32) -> &mut T {
        let index = index as usize;
        &mut self.chunks[index >> SHIFT][index & MASK]
    }

    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = &T> + '_ {
        ArenaIter {
            inner: self.chunks.iter().flatten(),
            remaining: self.len,
        }
    }

    /// Bytes held, counting each chunk's full capacity.
    pub(crate) fn bytes_allocated(&self) -> usize {
        self.chunks.capacity() * std::mem::size_of::<Vec<T>>()
            + self
                .chunks
                .iter()
                .map(|c| c.capacity() * std::mem::size_of::<T>())
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

    /// Proves push, get, pop and iteration agree across chunk boundaries.
    #[test]
    fn arena_crosses_chunks() {
        let mut arena = Arena::default();
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
