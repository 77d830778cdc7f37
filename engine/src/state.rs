//! The engine's stored state: accounts, transfers, trades and expiries, in the compact forms
//! kept in memory and in snapshots. Account and event references are `u32` slots, not ids, so
//! a stored transfer costs 96 bytes instead of the 128 of its record.

use rkyv::{Archive, Deserialize, Serialize};

use crate::records::{Account, AccountFlags};

/// The four balances of an account. Deltas between two `Balances` use wrapping arithmetic,
/// which is exact for reconstructing real balances (they always fit in `u128`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct Balances {
    pub debits_pending: u128,
    pub debits_posted: u128,
    pub credits_pending: u128,
    pub credits_posted: u128,
}

impl Balances {
    pub(crate) fn wrapping_add(self, d: Balances) -> Balances {
        Balances {
            debits_pending: self.debits_pending.wrapping_add(d.debits_pending),
            debits_posted: self.debits_posted.wrapping_add(d.debits_posted),
            credits_pending: self.credits_pending.wrapping_add(d.credits_pending),
            credits_posted: self.credits_posted.wrapping_add(d.credits_posted),
        }
    }

    pub(crate) fn wrapping_sub(self, d: Balances) -> Balances {
        Balances {
            debits_pending: self.debits_pending.wrapping_sub(d.debits_pending),
            debits_posted: self.debits_posted.wrapping_sub(d.debits_posted),
            credits_pending: self.credits_pending.wrapping_sub(d.credits_pending),
            credits_posted: self.credits_posted.wrapping_sub(d.credits_posted),
        }
    }
}

/// A stored account. The snapshot holds these in creation order. `repr(C)` keeps the id (read
/// by every index probe) and the balances (read and written by every transfer) in the first
/// two cache lines of the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
#[repr(C)]
pub(crate) struct AccountState {
    pub id: u128,
    pub balances: Balances,
    pub user_data_128: u128,
    pub user_data_64: u64,
    pub limit: u64,
    pub timestamp: u64,
    pub ledger: u32,
    pub code: u16,
    pub flags: u16,
}

impl AccountState {
    pub(crate) fn flags(&self) -> AccountFlags {
        AccountFlags(self.flags)
    }

    pub(crate) fn to_record(self) -> Account {
        Account {
            id: self.id,
            debits_pending: self.balances.debits_pending,
            debits_posted: self.balances.debits_posted,
            credits_pending: self.balances.credits_pending,
            credits_posted: self.balances.credits_posted,
            user_data_128: self.user_data_128,
            user_data_64: self.user_data_64,
            limit: self.limit,
            ledger: self.ledger,
            code: self.code,
            flags: AccountFlags(self.flags),
            timestamp: self.timestamp,
        }
    }
}

/// Where a pending transfer or trade stands. Events that were never pending are `NotPending`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
#[repr(u8)]
pub(crate) enum PendingStatus {
    NotPending = 0,
    Pending = 1,
    Posted = 2,
    Voided = 3,
    Expired = 4,
}

/// "No slot" for optional `u32` references.
pub(crate) const SLOT_NONE: u32 = u32::MAX;

/// "No event" for `previous` links and `last_event`.
pub(crate) const EVENT_NONE: u32 = u32::MAX;

/// A stored transfer: 112 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub(crate) struct StoredTransfer {
    pub id: u128,
    pub amount: u128,
    pub user_data_128: u128,
    pub user_data_64: u64,
    pub timestamp: u64,
    pub debit_account: u32,
    pub credit_account: u32,
    /// The pending transfer this one posts or voids, or `SLOT_NONE`.
    pub pending: u32,
    pub user_data_32: u32,
    pub timeout: u32,
    pub ledger: u32,
    pub code: u16,
    pub flags: u16,
    pub status: PendingStatus,
    /// The event that changed the debit (0) and credit (1) account before this one
    /// (`EventRef`, or `EVENT_NONE`): each account's history is a list through its events.
    pub previous: [u32; 2],
}

/// A stored trade: 96 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub(crate) struct StoredTrade {
    pub id: u128,
    pub quantity: u64,
    pub cash_amount: u64,
    pub timestamp: u64,
    /// The client's, from the record; a post or void keeps its pending trade's.
    pub user_data_64: u64,
    /// Instrument debit (seller), instrument credit (buyer), cash debit (buyer), cash credit
    /// (seller).
    pub accounts: [u32; 4],
    /// The pending trade this one posts or voids, or `SLOT_NONE`.
    pub pending: u32,
    pub timeout: u32,
    pub code: u16,
    pub flags: u16,
    pub status: PendingStatus,
    /// The previous event of each of `accounts` (see `StoredTransfer::previous`).
    pub previous: [u32; 4],
}

/// A pending transfer or trade that expired, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub(crate) struct Expiry {
    pub pending: EventRef,
    pub timestamp: u64,
    /// The previous event of each account the pending event touched (2 for a transfer).
    pub previous: [u32; 4],
}

/// A reference to a stored event, or to a failed event's remembered id: a 2-bit kind and a
/// 30-bit slot in that kind's arena.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Archive, Serialize, Deserialize,
)]
pub(crate) struct EventRef(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventKind {
    Transfer,
    Trade,
    Expiry,
    /// The id of a transfer or trade that failed for a reason that could pass later
    /// (`EventResult::is_transient`): held in the event index so that no later request stores
    /// an event under it (`id_already_failed`).
    Failed,
}

const KIND_SHIFT: u32 = 30;
const SLOT_MASK: u32 = (1 << KIND_SHIFT) - 1;

impl EventRef {
    pub(crate) fn transfer(slot: u32) -> EventRef {
        assert!(slot <= SLOT_MASK);
        EventRef(slot)
    }
    pub(crate) fn trade(slot: u32) -> EventRef {
        assert!(slot <= SLOT_MASK);
        EventRef(1 << KIND_SHIFT | slot)
    }
    pub(crate) fn expiry(slot: u32) -> EventRef {
        assert!(slot <= SLOT_MASK);
        EventRef(2 << KIND_SHIFT | slot)
    }
    pub(crate) fn failed(slot: u32) -> EventRef {
        assert!(slot <= SLOT_MASK);
        EventRef(3 << KIND_SHIFT | slot)
    }
    pub(crate) fn kind(self) -> EventKind {
        match self.0 >> KIND_SHIFT {
            0 => EventKind::Transfer,
            1 => EventKind::Trade,
            2 => EventKind::Expiry,
            _ => EventKind::Failed,
        }
    }
    pub(crate) fn slot(self) -> u32 {
        self.0 & SLOT_MASK
    }
}

/// An account as the engine keeps it: the stored state and, next to it on the same cache lines,
/// what is derived from the events: three whole cache lines. Derefs to the state.
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct AccountSlot {
    pub state: AccountState,
    pub history: AccountHistory,
}

impl AccountSlot {
    pub(crate) fn new(state: AccountState) -> AccountSlot {
        AccountSlot {
            state,
            history: AccountHistory::default(),
        }
    }
}

impl std::ops::Deref for AccountSlot {
    type Target = AccountState;
    fn deref(&self) -> &AccountState {
        &self.state
    }
}

impl std::ops::DerefMut for AccountSlot {
    fn deref_mut(&mut self) -> &mut AccountState {
        &mut self.state
    }
}

/// Per-account data derived from the events (rebuilt on restore, not in snapshots).
///
/// Every account's history is a linked list through its events, newest first (`last_event`,
/// then each event's `previous` link): recording a change writes 4 bytes into the event being
/// stored and 4 here. On that list sit **marks**: events with the balances after them, from
/// which a walk back can start. Accounts with the `history` flag mark every event (O(log n)
/// balances-as-of, exact); the others every [`HISTORY_MARK_EVERY`]-th, so any time in the
/// account's past is at most that many events' walk from a mark, and statements and
/// balances-as-of cost O(HISTORY_MARK_EVERY + entries) however old the time asked — for about
/// 1.25 bytes per change (80 bytes per mark).
#[derive(Debug)]
pub(crate) struct AccountHistory {
    /// The newest event that changed the account (`EventRef`), or `EVENT_NONE`.
    pub last_event: u32,
    /// How many events changed the account (wrapping): the marks are placed by it.
    pub changes: u32,
    /// The marked events, oldest first.
    pub events: Vec<EventRef>,
    /// The balances after each of `events`.
    pub balances_after: Vec<Balances>,
}

/// Accounts without the `history` flag mark every this-many-th change (see [`AccountHistory`]).
pub(crate) const HISTORY_MARK_EVERY: u32 = 64;

impl AccountHistory {
    /// Whether the account's `changes`-th change (counted from 1) is marked.
    #[inline(always)]
    pub(crate) fn marks(every_event: bool, changes: u32) -> bool {
        every_event || changes.is_multiple_of(HISTORY_MARK_EVERY)
    }
}

impl Default for AccountHistory {
    fn default() -> Self {
        AccountHistory {
            last_event: EVENT_NONE,
            changes: 0,
            events: Vec::new(),
            balances_after: Vec::new(),
        }
    }
}

const _: () = assert!(std::mem::size_of::<StoredTransfer>() == 112);
const _: () = assert!(std::mem::size_of::<StoredTrade>() == 96);

const _: () = assert!(std::mem::size_of::<AccountSlot>() == 192);
