//! Every applied event in commit order, a page at a time: the change feed's and the event
//! export's read. Accounts created, transfers, trades and expiries are each stored in
//! timestamp order in their own arena, and every timestamp is distinct (the engine hands them
//! out one by one: docs/engine.md), so one page is a merge of the four arenas from a binary
//! search for its first timestamp. Like a query page it examines at most [`QUERY_SCAN_MAX`]
//! records and says where the next page starts.
//!
//! Events that failed are not stored (their id and result went back to the submitter, their
//! leaf hash into the verifiable log): the feed holds what changed the ledger.

use crate::engine::Engine;
use crate::limits::{QUERY_SCAN_MAX, STATEMENT_ENTRIES_MAX};
use crate::query::{QueryError, StatementEvent};
use crate::records::Account;
use crate::search::{partition_point, QueryFilter, QueryPage};
use crate::state::EventRef;

/// An applied event: an account created, or a transfer, trade or expiry as a statement names
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LedgerEvent {
    /// The account as created (its balance fields are its current ones: ask a statement or
    /// a position for its balances at a time).
    AccountCreated(Account),
    Applied(StatementEvent),
}

/// An applied event and its timestamp: its position in the feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedEntry {
    pub timestamp: u64,
    pub event: LedgerEvent,
}

/// The arenas a page merges, in the order of [`Engine::source_timestamp`].
const SOURCES: usize = 4;

impl Engine {
    /// The applied events with a timestamp in `filter`'s range that `visible` lets through, in
    /// timestamp order (newest first when `filter.reversed`), at most `filter.limit` of them.
    /// Events are selected by time only: a non-zero field of `filter` is refused.
    pub fn query_events(
        &self,
        filter: &QueryFilter,
        visible: impl Fn(&LedgerEvent) -> bool,
    ) -> Result<QueryPage<FeedEntry>, QueryError> {
        filter.refuse_field("user_data_128", filter.user_data_128 != 0)?;
        filter.refuse_field("user_data_64", filter.user_data_64 != 0)?;
        filter.refuse_field("user_data_32", filter.user_data_32 != 0)?;
        filter.refuse_field("ledger", filter.ledger != 0)?;
        filter.refuse_field("code", filter.code != 0)?;
        let (min, max) = filter.bounds()?;
        let limit = filter.limit.min(STATEMENT_ENTRIES_MAX) as usize;
        let lens = [
            self.accounts.len(),
            self.transfers.len(),
            self.trades.len(),
            self.expiries.len(),
        ];
        // Per arena, the records still to read: `low..high`.
        let mut low = [0usize; SOURCES];
        let mut high = [0usize; SOURCES];
        for source in 0..SOURCES {
            let at = |i: usize| self.source_timestamp(source, i);
            low[source] = partition_point(lens[source], |i| at(i) < min);
            high[source] = partition_point(lens[source], |i| at(i) <= max);
        }
        let mut items = Vec::new();
        let mut spent = 0usize;
        loop {
            let candidates = (0..SOURCES).filter(|&s| low[s] < high[s]);
            let next = if filter.reversed {
                candidates.max_by_key(|&s| self.source_timestamp(s, high[s] - 1))
            } else {
                candidates.min_by_key(|&s| self.source_timestamp(s, low[s]))
            };
            let Some(source) = next else {
                return Ok(QueryPage { items, next: None });
            };
            let index = if filter.reversed {
                high[source] -= 1;
                high[source]
            } else {
                low[source] += 1;
                low[source] - 1
            };
            let timestamp = self.source_timestamp(source, index);
            let event = self.source_event(source, index);
            spent += 1;
            if visible(&event) {
                items.push(FeedEntry { timestamp, event });
            }
            if items.len() == limit || spent >= QUERY_SCAN_MAX {
                let more = (0..SOURCES).any(|s| low[s] < high[s]);
                // Another event is left on the far side of `timestamp`, so it is not at
                // the end of u64's range.
                let next = more.then(|| {
                    if filter.reversed {
                        timestamp - 1
                    } else {
                        timestamp + 1
                    }
                });
                return Ok(QueryPage { items, next });
            }
        }
    }

    /// The timestamp of record `index` of arena `source` (accounts, transfers, trades,
    /// expiries).
    fn source_timestamp(&self, source: usize, index: usize) -> u64 {
        let slot = index as u32;
        match source {
            0 => self.accounts.get(slot).timestamp,
            1 => self.transfers.get(slot).timestamp,
            2 => self.trades.get(slot).timestamp,
            _ => self.expiries.get(slot).timestamp,
        }
    }

    fn source_event(&self, source: usize, index: usize) -> LedgerEvent {
        let slot = index as u32;
        match source {
            0 => LedgerEvent::AccountCreated(self.accounts.get(slot).to_record()),
            1 => LedgerEvent::Applied(self.statement_event(EventRef::transfer(slot))),
            2 => LedgerEvent::Applied(self.statement_event(EventRef::trade(slot))),
            _ => LedgerEvent::Applied(self.statement_event(EventRef::expiry(slot))),
        }
    }
}
