//! What the engine's state costs in memory, by part, and how its large tables are backed.

use crossbeam_channel::{bounded, Receiver, Select, Sender};

use crate::arena::{faulted_chunk, SPARES};
use crate::engine::Engine;
use crate::state::{Balances, EventRef, StoredTrade, StoredTransfer};

/// Heap bytes held by each part of the state (capacity, not length: what the allocator gave).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    pub accounts: usize,
    pub account_index: usize,
    pub account_histories: usize,
    pub transfers: usize,
    pub trades: usize,
    pub event_index: usize,
    pub expiries: usize,
    /// The ids of transiently failed events (`EventResult::is_transient`), 16 bytes each in
    /// 1 MiB chunks; their index entries are in `event_index`.
    pub failed_ids: usize,
    /// The verifiable log: 32 bytes of leaf hash per event in 2 MiB chunks, about as much
    /// again for the tree's upper levels, and each batch's position and each checkpoint.
    pub log: usize,
}

impl MemoryUsage {
    pub fn total(&self) -> usize {
        self.accounts
            + self.account_index
            + self.account_histories
            + self.transfers
            + self.trades
            + self.event_index
            + self.expiries
            + self.failed_ids
            + self.log
    }
}

impl Engine {
    /// Heap bytes held by the state, by part. O(accounts).
    pub fn memory_usage(&self) -> MemoryUsage {
        let histories: usize = self
            .accounts
            .iter()
            .map(|slot| &slot.history)
            .map(|h| {
                h.events.capacity() * std::mem::size_of::<EventRef>()
                    + h.balances_after.capacity() * std::mem::size_of::<Balances>()
            })
            .sum::<usize>();
        MemoryUsage {
            accounts: self.accounts.bytes_allocated(),
            account_index: self.account_index.bytes_allocated(),
            account_histories: histories,
            transfers: self.transfers.bytes_allocated(),
            trades: self.trades.bytes_allocated(),
            event_index: self.event_index.bytes_allocated(),
            // An expiry record is 32 bytes; a B-tree key is 24 bytes plus node overhead, counted
            // as 2x: an estimate, since BTreeSet does not report its allocation.
            expiries: self.expiries.bytes_allocated() + self.expiry_queue.len() * 48,
            failed_ids: self.failed.bytes_allocated(),
            log: {
                let tree = self.log.tree();
                tree.groups().bytes_allocated() + tree.upper_bytes()
            } + self.log.batches.bytes_allocated()
                + self.log.kept.bytes_allocated()
                + self.log.checkpoints.bytes_allocated()
                + self.access.bytes_allocated(),
        }
    }
}

/// The size of a transparent huge page on x86-64 and arm64 with 4 KiB base pages.
const HUGE_PAGE_BYTES: usize = 2 << 20;

/// Asks Linux to back the 2 MiB-aligned part of a fresh allocation of `elements` values at
/// `start` with transparent huge pages (`madvise(MADV_HUGEPAGE)`; this host's default is
/// "madvise": only what asks gets them). Called before the allocation is first written.
///
/// Where: an index table sized for a bulk fill (probed at a random place per event: with
/// 4 KiB pages most such probes also miss the TLB), and arena chunks filled in bulk by a
/// restore or replay, where a huge page is one fault instead of 512. Not for memory the apply
/// path fills as it goes (an open chunk, an index table after a doubling): there a fault
/// zeroes 2 MiB at once (~2 ms on this host), a stall on the batch in flight.
/// A hint only: where huge pages are off or none is free, nothing changes but speed.
pub(crate) fn advise_huge_pages<T>(start: *const T, elements: usize) {
    let (start, end) = range(start, elements);
    advise(
        start.next_multiple_of(HUGE_PAGE_BYTES),
        end / HUGE_PAGE_BYTES * HUGE_PAGE_BYTES,
        Advice::HugePages,
    );
}

/// Faults in the pages of `elements` values at `start` as if each were written, without
/// writing (`madvise(MADV_POPULATE_WRITE)`, Linux 5.14+): lets another thread pay the
/// kernel's page zeroing for memory the caller is about to fill. Pages already present are
/// left as they are and contents never change; an error (an older kernel) only means
/// nothing was prefaulted.
pub(crate) fn populate<T>(start: *const T, elements: usize) {
    let (start, end) = range(start, elements);
    advise(start / 4096 * 4096, end, Advice::Populate);
}

/// The addresses `elements` values at `start` span.
fn range<T>(start: *const T, elements: usize) -> (usize, usize) {
    let start = start as usize;
    (start, start + elements * std::mem::size_of::<T>())
}

enum Advice {
    HugePages,
    Populate,
}

/// `madvise(first..last, advice)` if the range is not empty; the result is ignored (both
/// are hints: an error leaves the pages as they were).
fn advise(first: usize, last: usize, advice: Advice) {
    #[cfg(target_os = "linux")]
    if first < last {
        let advice = match advice {
            Advice::HugePages => libc::MADV_HUGEPAGE,
            Advice::Populate => libc::MADV_POPULATE_WRITE,
        };
        // SAFETY: both advices change only how the kernel backs the range (huge pages; pages
        // faulted in, zeroed if new, untouched if present), never its contents or who may
        // use it, and every caller's range lies inside one live allocation.
        unsafe {
            libc::madvise(first as *mut libc::c_void, last - first, advice);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (first, last, advice);
}

/// Fresh chunks for the stored-event arenas of an engine being filled in bulk
/// (`Engine::take_chunks_from`, `Engine::restore_sections`), faulted in by a
/// `ChunkMaker` on another thread so the kernel's page zeroing runs beside the fill.
pub struct ChunkSupply {
    transfers: Receiver<Vec<StoredTransfer>>,
    trades: Receiver<Vec<StoredTrade>>,
}

/// Keeps a `ChunkSupply` stocked. The engine starts no thread (it is sans-IO): the caller
/// runs `run` on one, and it returns once the engine stops taking chunks.
pub struct ChunkMaker {
    transfers: Sender<Vec<StoredTransfer>>,
    trades: Sender<Vec<StoredTrade>>,
}

/// A supply and the maker that fills it.
pub fn chunk_supply() -> (ChunkSupply, ChunkMaker) {
    let (transfers_to, transfers) = bounded(SPARES);
    let (trades_to, trades) = bounded(SPARES);
    (
        ChunkSupply { transfers, trades },
        ChunkMaker {
            transfers: transfers_to,
            trades: trades_to,
        },
    )
}

impl ChunkMaker {
    /// Makes chunks for whichever arena has room for one, blocking while both are stocked;
    /// returns when the supply is dropped (`Engine::stop_taking_chunks` or the engine's end).
    ///
    /// Each chunk is made *before* it is offered: a `Select` reserves its slot in the channel
    /// when it returns, and a receiver's `try_recv` spins on a reserved slot until its value
    /// is written. Faulting a chunk in after the reservation (milliseconds) made the restore
    /// of 10M events spin in `try_recv` for ~0.8 s.
    pub fn run(self) {
        let mut transfers = faulted_chunk();
        let mut trades = faulted_chunk();
        loop {
            let mut select = Select::new();
            let to_transfers = select.send(&self.transfers);
            let to_trades = select.send(&self.trades);
            let operation = select.select();
            let sent = if operation.index() == to_transfers {
                let sent = operation.send(&self.transfers, std::mem::take(&mut transfers));
                sent.is_ok() && {
                    transfers = faulted_chunk();
                    true
                }
            } else {
                debug_assert_eq!(operation.index(), to_trades);
                let sent = operation.send(&self.trades, std::mem::take(&mut trades));
                sent.is_ok() && {
                    trades = faulted_chunk();
                    true
                }
            };
            if !sent {
                return;
            }
        }
    }
}

impl Engine {
    /// Takes fresh chunks for the stored-event arenas from `supply` until
    /// `stop_taking_chunks`: for filling an engine in bulk (a replay of the log), not for the
    /// steady apply path (see `Arena::take_chunks_from`). Optional; changes no output.
    pub fn take_chunks_from(&mut self, supply: ChunkSupply) {
        self.transfers.take_chunks_from(supply.transfers);
        self.trades.take_chunks_from(supply.trades);
    }

    /// Ends `take_chunks_from`; its maker returns.
    pub fn stop_taking_chunks(&mut self) {
        self.transfers.stop_taking_chunks();
        self.trades.stop_taking_chunks();
    }
}
