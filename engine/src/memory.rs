//! What the engine's state costs in memory, by part.

use crate::engine::Engine;
use crate::state::{Balances, EventRef};

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
        }
    }
}
