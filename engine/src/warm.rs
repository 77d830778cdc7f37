//! Warming: before a window of events is applied, bring everything they will touch into cache.
//!
//! On this machine a load that misses the L2 cache costs ~130–200 ns when it waits alone, but
//! ~15 ns each when many are in flight. Inside an event's checks every lookup waits alone (the
//! next step needs its answer), so `apply` runs a software pipeline, one step per event:
//! 1. the record `RECORD_AHEAD` events ahead is prefetched (records arrive cold from a network
//!    or disk buffer, and hardware prefetchers stop at every 4 KiB page);
//! 2. `prefetch` hashes the ids of the event `HASH_AHEAD` ahead and prefetches their index
//!    entries (a hint: nothing waits for it);
//! 3. `look_up` guesses the account slots of the event `LOOK_UP_AHEAD` ahead from its (now
//!    cached) index entries and prefetches the slots' cache lines;
//! 4. the event runs with its hashes and account slots in hand (`Lookups`), confirming each
//!    guessed slot by its id (a miss or a hash collision falls back to a full lookup).
//!
//! One step per event spreads the prefetches evenly, so they do not queue up behind each other
//! the way a burst per window did.
//!
//! Event ids are hashed here but looked up by the event itself, because earlier events of the
//! batch may insert them. Account slots stay valid for the whole batch: transfer and trade
//! batches never create accounts.
//!
//! Pure reads: nothing here changes state or decides an outcome.

use crate::engine::{Engine, Operation};
use crate::index::prefetch;
use crate::records::{raw_flags, RecordBytes, TradeFlags, TransferFlags};
use crate::state::SLOT_NONE;

/// Distance, in events, at which record bytes are prefetched.
const RECORD_AHEAD: usize = 16;
/// Distance at which ids are hashed and their index entries prefetched.
const HASH_AHEAD: usize = 12;
/// Distance at which account slots are guessed and prefetched.
const LOOK_UP_AHEAD: usize = 6;
/// Lookups in flight: a ring indexed by event number, longer than the farthest distance.
pub(crate) const WARM_RING_EVENTS: usize = 32;
const _: () = assert!(LOOK_UP_AHEAD < HASH_AHEAD && HASH_AHEAD < WARM_RING_EVENTS);

/// Prefetches both cache lines of a record.
#[inline]
fn prefetch_record(record: &RecordBytes) {
    prefetch(&record[0]);
    prefetch(&record[64]);
}

/// What warming found for one event.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lookups {
    /// Index hashes of the event's own id and of its `pending_id`.
    id_hashes: [u32; 2],
    /// Index hashes of its account ids, by role.
    account_hashes: [u32; 4],
    /// Account slots by role (a transfer's debit and credit; a trade's four in record order);
    /// `SLOT_NONE` for "no such account".
    accounts: [u32; 4],
    accounts_known: bool,
}

impl Lookups {
    pub(crate) const UNKNOWN: Lookups = Lookups {
        id_hashes: [0; 2],
        account_hashes: [0; 4],
        accounts: [SLOT_NONE; 4],
        accounts_known: false,
    };
}

fn id_at(bytes: &RecordBytes, at: usize) -> u128 {
    let mut id = [0u8; 16];
    id.copy_from_slice(&bytes[at..at + 16]);
    u128::from_le_bytes(id)
}

/// Offsets of a record's event ids (own id, pending id) and account ids.
fn layout(operation: Operation, bytes: &RecordBytes) -> (Option<[usize; 2]>, &'static [usize]) {
    match operation {
        Operation::CreateAccounts => (None, &[0]),
        Operation::CreateTransfers => {
            let resolves =
                TransferFlags::POST_PENDING_TRANSFER.0 | TransferFlags::VOID_PENDING_TRANSFER.0;
            if raw_flags(bytes) & resolves != 0 {
                (Some([0, 64]), &[])
            } else {
                (Some([0, 64]), &[16, 32])
            }
        }
        Operation::CreateSettlements => layout(crate::records::settlement_kind(bytes), bytes),
        // An instruction's four accounts; its id is the book's, not the event index's.
        Operation::CreateInstructions => (None, &[16, 32, 48, 64]),
        Operation::SettlementCommands => (None, &[]),
        Operation::CreateTrades => {
            let resolves = TradeFlags::POST_PENDING_TRADE.0 | TradeFlags::VOID_PENDING_TRADE.0;
            if raw_flags(bytes) & resolves != 0 {
                (Some([0, 80]), &[])
            } else {
                (Some([0, 80]), &[16, 32, 48, 64])
            }
        }
    }
}

impl Engine {
    /// The pipeline step taken before event `i` of `records` runs: prefetch the record
    /// `RECORD_AHEAD` ahead, hash and prefetch the index entries of the one `HASH_AHEAD` ahead,
    /// guess and prefetch the account slots of the one `LOOK_UP_AHEAD` ahead. Before event 0
    /// it also fills the pipeline for the events closer than those distances.
    #[inline(always)]
    pub(crate) fn warm_ahead(
        &self,
        operation: Operation,
        records: &[RecordBytes],
        i: usize,
        lookups: &mut [Lookups; WARM_RING_EVENTS],
    ) {
        let ring = |j: usize| j % WARM_RING_EVENTS;
        if i == 0 {
            for record in records.iter().take(RECORD_AHEAD) {
                prefetch_record(record);
            }
            for (j, record) in records.iter().enumerate().take(HASH_AHEAD) {
                self.prefetch(operation, record, &mut lookups[ring(j)]);
            }
            for (j, record) in records.iter().enumerate().take(LOOK_UP_AHEAD) {
                self.look_up(operation, record, &mut lookups[ring(j)]);
            }
        }
        if let Some(record) = records.get(i + RECORD_AHEAD) {
            prefetch_record(record);
        }
        if let Some(record) = records.get(i + HASH_AHEAD) {
            self.prefetch(operation, record, &mut lookups[ring(i + HASH_AHEAD)]);
        }
        if let Some(record) = records.get(i + LOOK_UP_AHEAD) {
            self.look_up(operation, record, &mut lookups[ring(i + LOOK_UP_AHEAD)]);
        }
    }

    /// Hashes the ids of a record into `found` and prefetches their index entries.
    #[inline(always)]
    fn prefetch(&self, operation: Operation, bytes: &RecordBytes, found: &mut Lookups) {
        *found = Lookups::UNKNOWN;
        let (events, accounts) = layout(operation, bytes);
        if let Some(events) = events {
            for (hash, at) in found.id_hashes.iter_mut().zip(events) {
                *hash = self.event_index.hash(id_at(bytes, at));
                self.event_index.prefetch(*hash);
            }
        }
        for (hash, &at) in found.account_hashes.iter_mut().zip(accounts) {
            *hash = self.account_index.hash(id_at(bytes, at));
            self.account_index.prefetch(*hash);
        }
    }

    /// Guesses a record's account slots (hashed by `prefetch`) from the index alone and
    /// prefetches the three cache lines of each guessed slot; the event confirms the id.
    #[inline(always)]
    fn look_up(&self, operation: Operation, bytes: &RecordBytes, found: &mut Lookups) {
        if operation == Operation::CreateAccounts {
            return;
        }
        let (_, accounts) = layout(operation, bytes);
        for (role, hash) in found.account_hashes[..accounts.len()].iter().enumerate() {
            let slot = self.account_index.candidate(*hash);
            if let Some(slot) = slot {
                let account = self.accounts.get(slot);
                prefetch(&account.state.id);
                prefetch(&account.state.flags);
                prefetch(&account.history);
            }
            found.accounts[role] = slot.unwrap_or(SLOT_NONE);
        }
        found.accounts_known = !accounts.is_empty();
    }

    /// The slot of the account with `id` in `role`: warming's guess when it is confirmed, else
    /// looked up now.
    #[inline(always)]
    pub(crate) fn account_slot(&self, lookups: &Lookups, role: usize, id: u128) -> Option<u32> {
        if lookups.accounts_known {
            let slot = lookups.accounts[role];
            if slot != SLOT_NONE && self.accounts.get(slot).id == id {
                return Some(slot);
            }
        }
        self.find_account(id)
    }

    /// The index hash of the event's own id (`which` 0) or its pending id (1), computed by
    /// `prefetch` (every event passes through it before it runs), and the stored event with
    /// that id.
    #[inline(always)]
    pub(crate) fn event_lookup(
        &self,
        lookups: &Lookups,
        which: usize,
        id: u128,
    ) -> (u32, Option<crate::state::EventRef>) {
        let hash = lookups.id_hashes[which];
        debug_assert_eq!(hash, self.event_index.hash(id));
        self.find_event_hashed(hash, id)
    }
}
