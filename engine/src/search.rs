//! Queries by field: accounts, transfers and trades whose fields match a filter, in timestamp
//! order, a page at a time (TigerBeetle's `query_accounts` / `query_transfers`), and every
//! account's position as of a time (the export and reconciliation read).
//!
//! No secondary index: the stored records are in timestamp order in their arenas, so a page
//! starts with a binary search for its first timestamp and then scans. A page examines at
//! most [`QUERY_SCAN_MAX`] records — a position as of a past time counts each event its
//! account's history is walked back over as [`QUERY_WALK_COST`] records — (the applied state is held while it does, so a
//! page's cost is bounded whatever the filter) and says where the next page starts: a page can hold
//! fewer than `limit` matches, even none, and still not be the last. Readers follow `next`
//! until it is `None`.

use crate::engine::Engine;
use crate::limits::{QUERY_SCAN_MAX, QUERY_WALK_COST, STATEMENT_ENTRIES_MAX};
use crate::query::QueryError;
use crate::records::{Account, Trade, Transfer};
use crate::state::Balances;

/// Which records a query returns: every non-zero field must equal the record's (zero: any),
/// and the record's timestamp must be in `timestamp_min..=timestamp_max`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueryFilter {
    pub user_data_128: u128,
    pub user_data_64: u64,
    /// Transfers only (accounts and trades have no such field: a non-zero value is refused).
    pub user_data_32: u32,
    /// A trade matches on either of its ledgers.
    pub ledger: u32,
    pub code: u16,
    /// Oldest timestamp included.
    pub timestamp_min: u64,
    /// Newest timestamp included; 0 means no upper bound.
    pub timestamp_max: u64,
    /// Records returned at most (1..=8,189).
    pub limit: u32,
    /// Newest first instead of oldest first.
    pub reversed: bool,
}

/// One page of a query's results and where the next page starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryPage<T> {
    pub items: Vec<T>,
    /// `None`: the range is done. Else the next page's `timestamp_min` (oldest first) or
    /// `timestamp_max` (newest first); set it in the filter and ask again.
    pub next: Option<u64>,
}

impl QueryFilter {
    /// The filter for the page after one that answered `next`.
    pub fn after(&self, next: u64) -> QueryFilter {
        let mut filter = *self;
        if self.reversed {
            filter.timestamp_max = next;
        } else {
            filter.timestamp_min = next;
        }
        filter
    }

    /// The newest timestamp included, 0 read as no bound; refuses a filter that can match
    /// nothing by construction (a zero limit, an empty range).
    pub(crate) fn bounds(&self) -> Result<(u64, u64), QueryError> {
        if self.limit == 0 {
            return Err(QueryError::LimitMustNotBeZero);
        }
        let max = if self.timestamp_max == 0 {
            u64::MAX
        } else {
            self.timestamp_max
        };
        if self.timestamp_min > max {
            return Err(QueryError::TimestampMinExceedsMax);
        }
        Ok((self.timestamp_min, max))
    }

    pub(crate) fn refuse_field(&self, field: &'static str, value: bool) -> Result<(), QueryError> {
        if value {
            Err(QueryError::FieldNotInRecord(field))
        } else {
            Ok(())
        }
    }
}

/// An account and its balances at the time asked (the account record's own balance fields
/// are its current ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub account: Account,
    pub balances: Balances,
}

/// Scans `len` records in timestamp order (`timestamp(i)` increasing in `i`) within
/// `filter`'s range, oldest or newest first, handing each to `take` (which says whether it
/// kept the record and what reading it cost: 1, or more for a record whose reading walks a
/// history) until `limit` are kept or `QUERY_SCAN_MAX` spent. Returns the next page's bound, if
/// any record of the range is left.
fn scan(
    filter: &QueryFilter,
    len: usize,
    timestamp: impl Fn(usize) -> u64,
    mut take: impl FnMut(usize) -> (bool, usize),
) -> Result<Option<u64>, QueryError> {
    let (min, max) = filter.bounds()?;
    let limit = filter.limit.min(STATEMENT_ENTRIES_MAX) as usize;
    // The first index at or after `min`, and the first after `max`.
    let first = partition_point(len, |i| timestamp(i) < min);
    let end = partition_point(len, |i| timestamp(i) <= max);
    let (mut kept, mut spent) = (0usize, 0usize);
    let mut step = |i: usize| {
        let (taken, cost) = take(i);
        kept += usize::from(taken);
        spent += cost;
        kept == limit || spent >= QUERY_SCAN_MAX
    };
    if !filter.reversed {
        for i in first..end {
            if step(i) && i + 1 < end {
                return Ok(Some(timestamp(i) + 1));
            }
        }
    } else {
        for i in (first..end).rev() {
            if step(i) && i > first {
                return Ok(Some(timestamp(i) - 1));
            }
        }
    }
    Ok(None)
}

/// `slice::partition_point` over indexes `0..len`.
pub(crate) fn partition_point(len: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut low, mut high) = (0usize, len);
    while low < high {
        let mid = low + (high - low) / 2;
        if pred(mid) {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    low
}

/// A field the filter names (non-zero) and the record's value differ.
fn differs<T: Default + PartialEq>(wanted: T, value: T) -> bool {
    wanted != T::default() && wanted != value
}

/// A page of `len` records in timestamp order: those `differs` does not rule out, built by
/// `record`, that `visible` lets through (each examined record costs 1).
fn page<T>(
    filter: &QueryFilter,
    len: usize,
    timestamp: impl Fn(u32) -> u64,
    differs: impl Fn(u32) -> bool,
    record: impl Fn(u32) -> T,
    visible: impl Fn(&T) -> bool,
) -> Result<QueryPage<T>, QueryError> {
    let mut items = Vec::new();
    let next = scan(
        filter,
        len,
        |i| timestamp(i as u32),
        |i| {
            if differs(i as u32) {
                return (false, 1);
            }
            let record = record(i as u32);
            let kept = visible(&record);
            if kept {
                items.push(record);
            }
            (kept, 1)
        },
    )?;
    Ok(QueryPage { items, next })
}

impl Engine {
    /// Accounts matching `filter` that `visible` lets through, in creation order.
    pub fn query_accounts(
        &self,
        filter: &QueryFilter,
        visible: impl Fn(&Account) -> bool,
    ) -> Result<QueryPage<Account>, QueryError> {
        filter.refuse_field("user_data_32", filter.user_data_32 != 0)?;
        page(
            filter,
            self.accounts.len(),
            |i| self.accounts.get(i).timestamp,
            |i| self.account_differs(filter, i),
            |i| self.accounts.get(i).to_record(),
            visible,
        )
    }

    /// Every account matching `filter` (created at or before `at`) that `visible` lets
    /// through, with its balances after every change up to `at` (0: now).
    pub fn query_positions(
        &self,
        filter: &QueryFilter,
        at: u64,
        visible: impl Fn(&Account) -> bool,
    ) -> Result<QueryPage<Position>, QueryError> {
        filter.refuse_field("user_data_32", filter.user_data_32 != 0)?;
        let mut clipped = *filter;
        if at != 0 && (clipped.timestamp_max == 0 || clipped.timestamp_max > at) {
            clipped.timestamp_max = at;
        }
        let mut items = Vec::new();
        let next = scan(
            &clipped,
            self.accounts.len(),
            |i| self.accounts.get(i as u32).timestamp,
            |i| {
                if self.account_differs(filter, i as u32) {
                    return (false, 1);
                }
                let account = self.accounts.get(i as u32).to_record();
                if !visible(&account) {
                    return (false, 1);
                }
                // Walking an account's history back to `at` costs what it walks.
                let (balances, walked) = if at == 0 {
                    (self.accounts.get(i as u32).balances, 0)
                } else {
                    self.balances_of_slot_as_of(i as u32, at)
                };
                items.push(Position { account, balances });
                (true, 1 + walked * QUERY_WALK_COST)
            },
        )?;
        Ok(QueryPage { items, next })
    }

    /// Transfers matching `filter` that `visible` lets through, in timestamp order.
    pub fn query_transfers(
        &self,
        filter: &QueryFilter,
        visible: impl Fn(&Transfer) -> bool,
    ) -> Result<QueryPage<Transfer>, QueryError> {
        page(
            filter,
            self.transfers.len(),
            |i| self.transfers.get(i).timestamp,
            |i| {
                let t = self.transfers.get(i);
                differs(filter.user_data_128, t.user_data_128)
                    || differs(filter.user_data_64, t.user_data_64)
                    || differs(filter.user_data_32, t.user_data_32)
                    || differs(filter.ledger, t.ledger)
                    || differs(filter.code, t.code)
            },
            |i| self.stored_transfer_record(i),
            visible,
        )
    }

    /// Trades matching `filter` (its ledger: either of the trade's) that `visible` lets
    /// through, in timestamp order.
    pub fn query_trades(
        &self,
        filter: &QueryFilter,
        visible: impl Fn(&Trade) -> bool,
    ) -> Result<QueryPage<Trade>, QueryError> {
        filter.refuse_field("user_data_128", filter.user_data_128 != 0)?;
        filter.refuse_field("user_data_32", filter.user_data_32 != 0)?;
        page(
            filter,
            self.trades.len(),
            |i| self.trades.get(i).timestamp,
            |i| {
                let t = self.trades.get(i);
                differs(filter.user_data_64, t.user_data_64)
                    || differs(filter.code, t.code)
                    || filter.ledger != 0
                        && self.accounts.get(t.accounts[0]).ledger != filter.ledger
                        && self.accounts.get(t.accounts[2]).ledger != filter.ledger
            },
            |i| self.stored_trade_record(i),
            visible,
        )
    }

    fn account_differs(&self, filter: &QueryFilter, slot: u32) -> bool {
        let a = self.accounts.get(slot);
        differs(filter.user_data_128, a.user_data_128)
            || differs(filter.user_data_64, a.user_data_64)
            || differs(filter.ledger, a.ledger)
            || differs(filter.code, a.code)
    }
}

#[cfg(test)]
#[path = "search_tests.rs"]
pub(crate) mod tests;
