//! A heap buffer aligned to `SECTOR_BYTES`, as O_DIRECT requires of the memory it writes from.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

use crate::limits::SECTOR_BYTES;

/// A zero-initialised, sector-aligned byte buffer of fixed capacity (a multiple of the sector).
pub struct AlignedBuffer {
    pointer: NonNull<u8>,
    capacity: usize,
}

// SAFETY: the buffer owns its allocation exclusively (like a Box<[u8]>); moving it to another
// thread moves that ownership.
unsafe impl Send for AlignedBuffer {}
// SAFETY: shared references only allow reads through `as_slice`, like &[u8].
unsafe impl Sync for AlignedBuffer {}

impl AlignedBuffer {
    /// Allocate `capacity` zeroed bytes; `capacity` must be a non-zero multiple of the sector.
    pub fn new(capacity: usize) -> AlignedBuffer {
        assert!(
            capacity > 0 && capacity.is_multiple_of(SECTOR_BYTES),
            "bad capacity {capacity}"
        );
        let layout = Self::layout(capacity);
        // SAFETY: the layout has a non-zero size (asserted above).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(pointer) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        AlignedBuffer { pointer, capacity }
    }

    fn layout(capacity: usize) -> Layout {
        match Layout::from_size_align(capacity, SECTOR_BYTES) {
            Ok(layout) => layout,
            Err(error) => panic!("aligned buffer layout of {capacity} bytes: {error}"),
        }
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The whole buffer.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `pointer` is valid for `capacity` initialised bytes (zeroed at allocation)
        // for as long as `self` lives, and `&self` forbids concurrent mutation.
        unsafe { std::slice::from_raw_parts(self.pointer.as_ptr(), self.capacity) }
    }

    /// The whole buffer, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.pointer.as_ptr(), self.capacity) }
    }
}

impl Drop for AlignedBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout and not freed before.
        unsafe { alloc::dealloc(self.pointer.as_ptr(), Self::layout(self.capacity)) }
    }
}

impl AsRef<[u8]> for AlignedBuffer {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::fmt::Debug for AlignedBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuffer({} bytes)", self.capacity)
    }
}
