//! Read-only queries: lookups, balances as of a time, statements, ledger totals.

use std::collections::BTreeMap;

use crate::engine::Engine;
use crate::limits::{QUERY_SCAN_MAX, STATEMENT_ENTRIES_MAX};
use crate::records::{Account, Trade, TradeFlags, Transfer, TransferFlags};
use crate::search::QueryPage;
use crate::state::{Balances, EventKind, EventRef, EVENT_NONE};

/// Which part of an account's history a statement covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatementFilter {
    pub account_id: u128,
    /// Oldest timestamp included.
    pub timestamp_min: u64,
    /// Newest timestamp included; 0 means no upper bound.
    pub timestamp_max: u64,
    /// Entries returned at most (capped at `STATEMENT_ENTRIES_MAX`).
    pub limit: u32,
    /// Newest first (the newest `limit` entries of the range) instead of oldest first.
    pub reversed: bool,
    /// The account filter (TigerBeetle's `AccountFilter`): a non-zero field keeps only the
    /// events whose own field equals it. For an expiry, the pending event it released is
    /// compared. Trades have no `user_data_128` and no `user_data_32`: a non-zero one leaves
    /// them out.
    pub user_data_128: u128,
    pub user_data_64: u64,
    pub user_data_32: u32,
    pub code: u16,
    /// Only events where the account is on the debit side (of a transfer, or of either of a
    /// trade's legs).
    pub debits: bool,
    /// Only events where the account is on the credit side. Both or neither: every side.
    pub credits: bool,
}

impl StatementFilter {
    /// Whether the account filter keeps every event of the range (the common case: no field
    /// is compared).
    fn keeps_all(&self) -> bool {
        self.user_data_128 == 0
            && self.user_data_64 == 0
            && self.user_data_32 == 0
            && self.code == 0
            && self.debits == self.credits
    }

    /// Whether the account filter keeps an event with these fields.
    fn keeps(&self, fields: &EventFields) -> bool {
        // A field the record lacks (`None`) matches only a filter that leaves it at zero.
        let matches = |wanted: u128, has: Option<u128>| wanted == 0 || has == Some(wanted);
        let side = self.debits == self.credits
            || (self.debits && fields.debit)
            || (self.credits && fields.credit);
        side && matches(self.user_data_128, fields.user_data_128)
            && (self.user_data_64 == 0 || self.user_data_64 == fields.user_data_64)
            && matches(
                self.user_data_32.into(),
                fields.user_data_32.map(u128::from),
            )
            && (self.code == 0 || self.code == fields.code)
    }
}

/// What the account filter compares of an event, as seen from one account.
struct EventFields {
    /// The account is on a debit side.
    debit: bool,
    /// The account is on a credit side.
    credit: bool,
    /// `None`: the record has no such field (a trade).
    user_data_128: Option<u128>,
    user_data_64: u64,
    user_data_32: Option<u32>,
    code: u16,
}

impl EventFields {
    fn of_transfer(t: &Transfer, account_id: u128) -> EventFields {
        EventFields {
            debit: t.debit_account_id == account_id,
            credit: t.credit_account_id == account_id,
            user_data_128: Some(t.user_data_128),
            user_data_64: t.user_data_64,
            user_data_32: Some(t.user_data_32),
            code: t.code,
        }
    }

    fn of_trade(t: &Trade, account_id: u128) -> EventFields {
        EventFields {
            debit: t.instrument_debit_account_id == account_id
                || t.cash_debit_account_id == account_id,
            credit: t.instrument_credit_account_id == account_id
                || t.cash_credit_account_id == account_id,
            user_data_128: None,
            user_data_64: t.user_data_64,
            user_data_32: None,
            code: t.code,
        }
    }
}

/// What changed an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatementEvent {
    Transfer(Transfer),
    Trade(Trade),
    /// The pending transfer `pending_id` expired; its reservation was released.
    TransferExpired {
        pending_id: u128,
    },
    /// The pending trade `pending_id` expired; both legs' reservations were released.
    TradeExpired {
        pending_id: u128,
    },
}

/// One line of a statement: an event and the account's balances right after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatementEntry {
    pub timestamp: u64,
    pub event: StatementEvent,
    pub balances_after: Balances,
}

/// Per-ledger sums over all accounts (wrapping), for conservation checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LedgerTotals {
    pub ledger: u32,
    pub debits_pending: u128,
    pub debits_posted: u128,
    pub credits_pending: u128,
    pub credits_posted: u128,
}

/// Why a query could not be answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueryError {
    AccountNotFound,
    LimitMustNotBeZero,
    TimestampMinExceedsMax,
    /// A query filter names a field the queried records do not have (e.g. `user_data_32`
    /// of accounts).
    FieldNotInRecord(&'static str),
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryError::AccountNotFound => f.write_str("account not found"),
            QueryError::LimitMustNotBeZero => f.write_str("limit must not be zero"),
            QueryError::TimestampMinExceedsMax => {
                f.write_str("timestamp_min exceeds timestamp_max")
            }
            QueryError::FieldNotInRecord(field) => write!(
                f,
                "{field} must be zero: the records queried have no such field"
            ),
        }
    }
}

impl std::error::Error for QueryError {}

impl Engine {
    pub fn lookup_account(&self, id: u128) -> Option<Account> {
        self.find_account(id)
            .map(|slot| self.accounts.get(slot).to_record())
    }

    /// The stored transfer: inherited fields filled in, `amount` as actually moved.
    pub fn lookup_transfer(&self, id: u128) -> Option<Transfer> {
        match self.find_event(id).1 {
            Some(e) if e.kind() == EventKind::Transfer => {
                Some(self.stored_transfer_record(e.slot()))
            }
            _ => None,
        }
    }

    pub fn lookup_trade(&self, id: u128) -> Option<Trade> {
        match self.find_event(id).1 {
            Some(e) if e.kind() == EventKind::Trade => Some(self.stored_trade_record(e.slot())),
            _ => None,
        }
    }

    /// The account's balances after every change with a timestamp ≤ `timestamp` (zero before
    /// the account's first change): a walk back from the oldest mark after `timestamp`
    /// (`AccountHistory`), O(log marks + HISTORY_MARK_EVERY) whatever the time's age.
    pub fn balances_as_of(&self, account_id: u128, timestamp: u64) -> Result<Balances, QueryError> {
        let account = self
            .find_account(account_id)
            .ok_or(QueryError::AccountNotFound)?;
        Ok(self.balances_of_slot_as_of(account, timestamp).0)
    }

    /// `balances_as_of` of the account in `account`'s slot, and the events it walked back
    /// over to find them.
    pub(crate) fn balances_of_slot_as_of(&self, account: u32, timestamp: u64) -> (Balances, usize) {
        let (start, mut balances) = self.history_after(account, timestamp);
        let mut walked = 0;
        for event in self.history_back_from(account, start) {
            if self.event_timestamp(event) <= timestamp {
                break;
            }
            balances = balances.wrapping_sub(self.effect(account, event));
            walked += 1;
        }
        (balances, walked)
    }

    /// Where a walk back through `account`'s history starts to reach every event at or
    /// before `timestamp` soon: the oldest mark newer than it (its event and the balances
    /// after it), or the newest event and the current balances when no mark is newer. At most
    /// `HISTORY_MARK_EVERY` events newer than `timestamp` lie between it and them.
    fn history_after(&self, account: u32, timestamp: u64) -> (u32, Balances) {
        let marks = &self.accounts.get(account).history.events;
        let first_newer = marks.partition_point(|&e| self.event_timestamp(e) <= timestamp);
        self.mark_or_newest(account, first_newer)
    }

    /// `account`'s mark `index` (its event and the balances after it), or past the last mark
    /// its newest event and current balances: where a walk back starts.
    fn mark_or_newest(&self, account: u32, index: usize) -> (u32, Balances) {
        let slot = self.accounts.get(account);
        match slot.history.events.get(index) {
            Some(mark) => (mark.0, slot.history.balances_after[index]),
            None => (slot.history.last_event, slot.balances),
        }
    }

    /// The account's events in a time range that its account filter keeps, each with the
    /// balances after it: the oldest `limit` of them, or the newest `limit` when `reversed`
    /// (then newest first), and where the next page starts. Either way the walk starts at a
    /// mark (`history_after`) and covers at most `HISTORY_MARK_EVERY` events outside the
    /// range plus the range's events up to the last one returned: a long statement read in
    /// pages costs each page its own length. A page walks at most [`QUERY_SCAN_MAX`] events
    /// of the range (the applied state is held while it does), so a filter that keeps few
    /// events of a long range answers in bounded pages, each perhaps short or empty, until
    /// `next` is `None`; `next` is the following page's `timestamp_min` (oldest first) or
    /// `timestamp_max` (newest first), as for queries ([`QueryFilter::after`]).
    ///
    /// [`QueryFilter::after`]: crate::QueryFilter::after
    pub fn statement(
        &self,
        filter: &StatementFilter,
    ) -> Result<QueryPage<StatementEntry>, QueryError> {
        let account = self
            .find_account(filter.account_id)
            .ok_or(QueryError::AccountNotFound)?;
        if filter.limit == 0 {
            return Err(QueryError::LimitMustNotBeZero);
        }
        let max = if filter.timestamp_max == 0 {
            u64::MAX
        } else {
            filter.timestamp_max
        };
        if filter.timestamp_min > max {
            return Err(QueryError::TimestampMinExceedsMax);
        }
        let limit = filter.limit.min(STATEMENT_ENTRIES_MAX) as usize;
        let mut items = Vec::with_capacity(limit.min(64));
        let mut walked = 0usize;
        if filter.reversed {
            let (start, balances) = self.history_after(account, max);
            let mut next = None;
            self.statement_back(account, filter, start, balances, max, |timestamp, entry| {
                if let Some(entry) = entry {
                    if items.len() == limit {
                        // The newest event left over: the next page's newest.
                        next = Some(timestamp);
                        return false;
                    }
                    items.push(entry);
                }
                walked += 1;
                // The bound: the rest of the range is below this event (and not below 1,
                // as a `timestamp_max` of 0 means no bound).
                if walked >= QUERY_SCAN_MAX && timestamp > filter.timestamp_min.max(1) {
                    next = Some(timestamp - 1);
                    return false;
                }
                true
            });
            return Ok(QueryPage { items, next });
        }
        // Oldest first: segment by segment between marks, each walked back from its mark (or
        // from the newest event) down to the previous mark and turned around.
        let marks = &self.accounts.get(account).history.events;
        let mut next = marks.partition_point(|&e| self.event_timestamp(e) < filter.timestamp_min);
        let mut segment = Vec::new();
        loop {
            let (start, balances) = self.mark_or_newest(account, next);
            let lower = match next.checked_sub(1) {
                Some(previous) => filter
                    .timestamp_min
                    .max(self.event_timestamp(marks[previous]) + 1),
                None => filter.timestamp_min,
            };
            let bounded = StatementFilter {
                timestamp_min: lower,
                ..*filter
            };
            segment.clear();
            self.statement_back(account, &bounded, start, balances, max, |_, entry| {
                walked += 1;
                segment.extend(entry);
                true
            });
            for entry in segment.drain(..).rev() {
                if items.len() == limit {
                    // The oldest event left over: the next page's oldest.
                    let next = Some(entry.timestamp);
                    return Ok(QueryPage { items, next });
                }
                items.push(entry);
            }
            // Done after the newest event's segment (whose start may be no event at all), or
            // one that reached past the range.
            if next >= marks.len() {
                return Ok(QueryPage { items, next: None });
            }
            let top = self.event_timestamp(EventRef(start));
            if top >= max {
                return Ok(QueryPage { items, next: None });
            }
            // The bound, met between segments: every event up to `top` was walked.
            if walked >= QUERY_SCAN_MAX {
                return Ok(QueryPage {
                    items,
                    next: Some(top + 1),
                });
            }
            next += 1;
        }
    }

    /// Walks `account`'s history back from `start` (whose balances after are `balances`),
    /// handing `take` each event in `filter.timestamp_min..=max` — its timestamp, and the
    /// entry if the account filter keeps it (`None` if not) — newest first, until it
    /// returns false or the walk passes the range's start.
    fn statement_back(
        &self,
        account: u32,
        filter: &StatementFilter,
        start: u32,
        mut balances_after: Balances,
        max: u64,
        mut take: impl FnMut(u64, Option<StatementEntry>) -> bool,
    ) {
        for event in self.history_back_from(account, start) {
            let timestamp = self.event_timestamp(event);
            if timestamp < filter.timestamp_min {
                return;
            }
            let balances_before = balances_after.wrapping_sub(self.effect(account, event));
            if timestamp <= max {
                let entry = self.statement_keeps(filter, event).then(|| StatementEntry {
                    timestamp,
                    event: self.statement_event(event),
                    balances_after,
                });
                if !take(timestamp, entry) {
                    return;
                }
            }
            balances_after = balances_before;
        }
    }

    /// Sums of every balance per ledger over all accounts (wrapping), sorted by ledger.
    /// O(accounts): for tests and audits, not the hot path.
    pub fn ledger_totals(&self) -> Vec<LedgerTotals> {
        let mut totals: BTreeMap<u32, LedgerTotals> = BTreeMap::new();
        for account in self.accounts.iter() {
            let t = totals.entry(account.ledger).or_insert(LedgerTotals {
                ledger: account.ledger,
                ..LedgerTotals::default()
            });
            let b = &account.balances;
            t.debits_pending = t.debits_pending.wrapping_add(b.debits_pending);
            t.debits_posted = t.debits_posted.wrapping_add(b.debits_posted);
            t.credits_pending = t.credits_pending.wrapping_add(b.credits_pending);
            t.credits_posted = t.credits_posted.wrapping_add(b.credits_posted);
        }
        totals.into_values().collect()
    }

    /// The events that changed `account`, newest first from `start` (an `EventRef` of its
    /// history, or `EVENT_NONE` for none).
    fn history_back_from(&self, account: u32, start: u32) -> impl Iterator<Item = EventRef> + '_ {
        let mut next = start;
        std::iter::from_fn(move || {
            if next == EVENT_NONE {
                return None;
            }
            let event = EventRef(next);
            next = self.previous_event(account, event);
            Some(event)
        })
    }

    pub(crate) fn event_timestamp(&self, event: EventRef) -> u64 {
        match event.kind() {
            EventKind::Transfer => self.transfers.get(event.slot()).timestamp,
            EventKind::Trade => self.trades.get(event.slot()).timestamp,
            EventKind::Expiry => self.expiries.get(event.slot()).timestamp,
            EventKind::Failed => unreachable!("a failed id is in no account's history"),
        }
    }

    /// Whether `filter`'s account filter keeps `event` (one of its account's events).
    fn statement_keeps(&self, filter: &StatementFilter, event: EventRef) -> bool {
        if filter.keeps_all() {
            return true;
        }
        let account_id = filter.account_id;
        let fields = match event.kind() {
            EventKind::Transfer => {
                EventFields::of_transfer(&self.stored_transfer_record(event.slot()), account_id)
            }
            EventKind::Trade => {
                EventFields::of_trade(&self.stored_trade_record(event.slot()), account_id)
            }
            EventKind::Expiry => {
                let pending = self.expiries.get(event.slot()).pending;
                match pending.kind() {
                    EventKind::Transfer => EventFields::of_transfer(
                        &self.stored_transfer_record(pending.slot()),
                        account_id,
                    ),
                    _ => {
                        EventFields::of_trade(&self.stored_trade_record(pending.slot()), account_id)
                    }
                }
            }
            EventKind::Failed => unreachable!("a failed id is in no account's history"),
        };
        filter.keeps(&fields)
    }

    pub(crate) fn statement_event(&self, event: EventRef) -> StatementEvent {
        match event.kind() {
            EventKind::Transfer => {
                StatementEvent::Transfer(self.stored_transfer_record(event.slot()))
            }
            EventKind::Trade => StatementEvent::Trade(self.stored_trade_record(event.slot())),
            EventKind::Expiry => {
                let pending = self.expiries.get(event.slot()).pending;
                match pending.kind() {
                    EventKind::Transfer => StatementEvent::TransferExpired {
                        pending_id: self.transfers.get(pending.slot()).id,
                    },
                    _ => StatementEvent::TradeExpired {
                        pending_id: self.trades.get(pending.slot()).id,
                    },
                }
            }
            EventKind::Failed => unreachable!("a failed id is in no account's history"),
        }
    }

    /// What `event` did to `account`'s balances, as a wrapping delta. The one definition of
    /// each event's effect: queries walk with it and restore replays with it (and checks that
    /// the replay ends at the stored balances).
    pub(crate) fn effect(&self, account: u32, event: EventRef) -> Balances {
        match event.kind() {
            EventKind::Transfer => {
                let t = self.transfers.get(event.slot());
                let flags = TransferFlags(t.flags);
                let (reserved, posted) = if flags.contains(TransferFlags::PENDING) {
                    (t.amount, 0)
                } else if flags.contains(TransferFlags::POST_PENDING_TRANSFER) {
                    (
                        0u128.wrapping_sub(self.transfers.get(t.pending).amount),
                        t.amount,
                    )
                } else if flags.contains(TransferFlags::VOID_PENDING_TRANSFER) {
                    (0u128.wrapping_sub(self.transfers.get(t.pending).amount), 0)
                } else {
                    (0, t.amount)
                };
                side_delta(
                    account == t.debit_account,
                    account == t.credit_account,
                    reserved,
                    posted,
                )
            }
            EventKind::Trade => {
                let t = self.trades.get(event.slot());
                let flags = TradeFlags(t.flags);
                let (quantity, cash) = (u128::from(t.quantity), u128::from(t.cash_amount));
                let amount = if account == t.accounts[0] || account == t.accounts[1] {
                    quantity
                } else {
                    cash
                };
                let (reserved, posted) = if flags.contains(TradeFlags::PENDING) {
                    (amount, 0)
                } else if flags.contains(TradeFlags::POST_PENDING_TRADE) {
                    (0u128.wrapping_sub(amount), amount)
                } else if flags.contains(TradeFlags::VOID_PENDING_TRADE) {
                    (0u128.wrapping_sub(amount), 0)
                } else {
                    (0, amount)
                };
                let debit = account == t.accounts[0] || account == t.accounts[2];
                let credit = account == t.accounts[1] || account == t.accounts[3];
                side_delta(debit, credit, reserved, posted)
            }
            EventKind::Expiry => {
                let pending = self.expiries.get(event.slot()).pending;
                let released = match pending.kind() {
                    EventKind::Transfer => {
                        let p = self.transfers.get(pending.slot());
                        (
                            p.debit_account == account,
                            p.credit_account == account,
                            p.amount,
                        )
                    }
                    _ => {
                        let p = self.trades.get(pending.slot());
                        let amount = if account == p.accounts[0] || account == p.accounts[1] {
                            u128::from(p.quantity)
                        } else {
                            u128::from(p.cash_amount)
                        };
                        (
                            account == p.accounts[0] || account == p.accounts[2],
                            account == p.accounts[1] || account == p.accounts[3],
                            amount,
                        )
                    }
                };
                side_delta(released.0, released.1, 0u128.wrapping_sub(released.2), 0)
            }
            EventKind::Failed => unreachable!("a failed id is in no account's history"),
        }
    }
}

fn side_delta(debit: bool, credit: bool, reserved: u128, posted: u128) -> Balances {
    let mut delta = Balances::default();
    if debit {
        delta.debits_pending = reserved;
        delta.debits_posted = posted;
    }
    if credit {
        delta.credits_pending = reserved;
        delta.credits_posted = posted;
    }
    delta
}
