//! The engine: batches in, results out, deterministic.
//!
//! `apply` is the only way state changes. It assigns timestamps, expires pending events, runs
//! each event's checks in the documented precedence (`docs/engine.md`), rolls back failed linked
//! chains, and asserts per-ledger conservation before it returns.

use std::collections::BTreeSet;

use crate::arena::{Arena, Shared};
use crate::event_log::{EventLog, LogPosition};
use crate::index::IdIndex;
use crate::limits::{BATCH_EVENTS_MAX, RECORD_BYTES, TIMESTAMP_MAX};
use crate::records::{self, raw_flags, AccountFlags, RecordBytes, TransferFlags};
use crate::result::EventResult;
use crate::state::{
    AccountHistory, AccountSlot, AccountState, Balances, EventKind, EventRef, Expiry,
    PendingStatus, StoredTrade, StoredTransfer, EVENT_NONE,
};
use crate::warm::{Lookups, WARM_RING_EVENTS};

/// What a batch does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Operation {
    CreateAccounts = 1,
    CreateTransfers = 2,
    CreateTrades = 3,
    /// Transfers and trades in one batch (`records::settlement_event` tells which each record
    /// is), so one linked chain can hold both: a trade and its fees settle or fail as one.
    CreateSettlements = 4,
    /// Settlement instructions into the book of net settlement (`cycle.rs`).
    CreateInstructions = 5,
    /// Settlement commands: a cycle's lifecycle, holds, releases, cancellations, the fail
    /// limit (`records::SettlementCommand`).
    SettlementCommands = 6,
}

impl Operation {
    /// Whether a transient failure of one of its events is remembered under the event's id
    /// (`EventResult::is_transient`): transfers and trades share that id space; instructions
    /// and commands have their own, and a refused one may be sent again.
    fn remembers_failures(self) -> bool {
        matches!(
            self,
            Operation::CreateTransfers | Operation::CreateTrades | Operation::CreateSettlements
        )
    }
}

impl TryFrom<u8> for Operation {
    type Error = u8;

    /// The operation with this wire byte (`docs/raft-entries.md`, `docs/protocol.md`); an
    /// unknown byte is handed back.
    fn try_from(byte: u8) -> Result<Operation, u8> {
        match byte {
            1 => Ok(Operation::CreateAccounts),
            2 => Ok(Operation::CreateTransfers),
            3 => Ok(Operation::CreateTrades),
            4 => Ok(Operation::CreateSettlements),
            5 => Ok(Operation::CreateInstructions),
            6 => Ok(Operation::SettlementCommands),
            other => Err(other),
        }
    }
}

/// Settings that may differ between replicas without changing any output.
#[derive(Clone, Copy, Debug, Default)]
pub struct EngineConfig {
    /// Seeds the hash tables (HashDoS resistance). Outputs never depend on it.
    pub hash_seed: u64,
}

/// The outcome of a batch: replies by exception.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// `(index in batch, result)` for every event that did not succeed, in index order.
    pub failures: Vec<(u32, EventResult)>,
    /// Timestamp of the batch's first event.
    pub timestamp_first: u64,
    /// Timestamp of the batch's last event.
    pub timestamp_last: u64,
}

/// A batch that is malformed as a whole. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchError {
    /// The body is not a whole number of 128-byte records.
    BodyNotWholeRecords { bytes: usize },
    /// The body holds no event.
    Empty,
    /// More than `BATCH_EVENTS_MAX` events.
    TooManyEvents { events: usize },
    /// The entry timestamp is past `TIMESTAMP_MAX`.
    TimestampOutOfRange { timestamp: u64 },
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchError::BodyNotWholeRecords { bytes } => {
                write!(
                    f,
                    "batch body of {bytes} bytes is not a whole number of 128-byte records"
                )
            }
            BatchError::Empty => write!(f, "batch holds no event"),
            BatchError::TooManyEvents { events } => {
                write!(
                    f,
                    "batch of {events} events exceeds the limit of {BATCH_EVENTS_MAX}"
                )
            }
            BatchError::TimestampOutOfRange { timestamp } => {
                write!(f, "entry timestamp {timestamp} is past the supported range")
            }
        }
    }
}

impl std::error::Error for BatchError {}

/// Orders pending events for expiry: by `expires_at`, then by creation (the pending event's own
/// timestamp, unique across transfers and trades), so ties expire oldest first.
pub(crate) type ExpiryKey = (u64, u64, EventRef);

/// A change to undo if the linked chain it belongs to fails.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Undo {
    Account {
        account: u32,
        balances: Balances,
        flags: u16,
    },
    AccountInserted,
    EventInserted(EventRef),
    Status {
        event: EventRef,
        status: PendingStatus,
    },
    ExpiryQueued(ExpiryKey),
    ExpiryDequeued(ExpiryKey),
    /// A settlement instruction taken into the book.
    InstructionSubmitted(u128),
}

/// An arena of stored events: chunks shared with frozen views.
pub(crate) type Events<T> = Arena<T, Shared<T>>;

/// The settlement state machine.
pub struct Engine {
    pub(crate) accounts: Arena<AccountSlot>,
    pub(crate) account_index: IdIndex,
    /// Stored events, in chunks shared with snapshots' frozen views (`freeze`).
    pub(crate) transfers: Events<StoredTransfer>,
    pub(crate) trades: Events<StoredTrade>,
    pub(crate) expiries: Events<Expiry>,
    /// The ids of transfers and trades that failed with a transient result
    /// (`EventResult::is_transient`), in the order they failed: never stored under again.
    pub(crate) failed: Events<u128>,
    /// Transfers, trades and failed ids share one id space.
    pub(crate) event_index: IdIndex,
    /// Pending events with a timeout, in the order they expire.
    pub(crate) expiry_queue: BTreeSet<ExpiryKey>,
    pub(crate) last_timestamp: u64,
    /// Tells this engine's snapshot sections from another's (`snapshot::SectionVersion`).
    pub(crate) instance: u64,
    /// One Merkle leaf per applied event, and where each batch sits (`event_log.rs`).
    pub(crate) log: EventLog,
    /// One Merkle leaf per read a gateway served (`access_log.rs`).
    pub(crate) access: crate::access_log::AccessLog,
    /// Settlement instructions and cycles (net settlement: `cycle.rs` applies their commands).
    pub(crate) settlement: crate::settlement::SettlementBook,
    // Per-batch scratch space, kept to avoid allocating per batch.
    batch: u64,
    pub(crate) undo: Vec<Undo>,
    pub(crate) undo_on: bool,
    /// The events a settlement run made during this batch, and the timestamp of the next
    /// (after the batch's own events: `cycle.rs`).
    pub(crate) generated: Vec<crate::cycle::Generated>,
    pub(crate) generated_next: u64,
    /// Per ledger, this batch's net change of debits minus credits: `(pending, posted)`.
    /// Every balance change adds to it; both must be zero when the batch ends.
    ledger_net: hashbrown::HashMap<u32, (u128, u128), foldhash::fast::FixedState>,
    /// The ledger of the last change and its running net, kept out of the map while a run
    /// of changes stays on one ledger (the common case).
    ledger_net_last: (u32, u128, u128),
}

impl Engine {
    pub fn new(config: EngineConfig) -> Engine {
        Engine {
            accounts: Arena::default(),
            account_index: IdIndex::new(config.hash_seed),
            transfers: Arena::default(),
            trades: Arena::default(),
            expiries: Arena::default(),
            failed: Arena::default(),
            event_index: IdIndex::new(config.hash_seed.rotate_left(32) ^ 0x5eed),
            expiry_queue: BTreeSet::new(),
            last_timestamp: 0,
            instance: crate::snapshot_sections::engine_instance(),
            log: EventLog::default(),
            access: crate::access_log::AccessLog::new(config.hash_seed),
            settlement: crate::settlement::SettlementBook::new(
                crate::limits::SETTLEMENT_MAX_AGE_DEFAULT,
                config.hash_seed.rotate_left(16) ^ 0xb00c,
            ),
            batch: 0,
            undo: Vec::new(),
            undo_on: false,
            generated: Vec::new(),
            generated_next: 0,
            ledger_net_last: (0, 0, 0),
            ledger_net: hashbrown::HashMap::with_hasher(foldhash::fast::FixedState::with_seed(
                config.hash_seed,
            )),
        }
    }

    /// Allocates (and touches) room for `accounts` more accounts and `events` more transfers or
    /// trades, so applying them never grows a table or faults in memory. Optional: without it
    /// the engine grows on demand. Changes no output.
    pub fn reserve(&mut self, accounts: usize, events: usize) {
        self.accounts.reserve(accounts);
        self.account_index.reserve(accounts);
        self.transfers.reserve(events);
        self.trades
            .reserve(events.min(crate::limits::ARENA_CHUNK_ELEMENTS));
        self.event_index.reserve(events);
    }

    /// Sizes the id indexes for `accounts` more accounts and `events` more events (each
    /// capped at `limits::ROOM_EVENTS_MAX`) so filling them never rehashes, without touching
    /// their memory: unlike `reserve`, an estimate that is far too high (a snapshot header's
    /// counts before they are checked, a log's size in records) costs address space, and only
    /// the pages entries land on become resident. Optional; changes no output.
    pub fn make_room(&mut self, accounts: usize, events: usize) {
        let cap = crate::limits::ROOM_EVENTS_MAX;
        self.account_index.make_room(accounts.min(cap));
        self.event_index.make_room(events.min(cap));
    }

    /// The timestamp of the last event or expiry applied (0 before any).
    pub fn last_timestamp(&self) -> u64 {
        self.last_timestamp
    }

    pub fn accounts_count(&self) -> usize {
        self.accounts.len()
    }

    pub fn transfers_count(&self) -> usize {
        self.transfers.len()
    }

    pub fn trades_count(&self) -> usize {
        self.trades.len()
    }

    /// The settlement book: instructions, cycles and the commands applied to them.
    pub fn settlement(&self) -> &crate::settlement::SettlementBook {
        &self.settlement
    }

    /// Applies one batch of `operation` records under the log entry's timestamp, at log
    /// position zero (`apply_at`): for engines that are not a replica's.
    pub fn apply(
        &mut self,
        operation: Operation,
        entry_timestamp: u64,
        body: &[u8],
    ) -> Result<BatchOutcome, BatchError> {
        self.apply_at(operation, entry_timestamp, body, LogPosition::default())
    }

    /// Applies one batch of `operation` records under the log entry's timestamp, and appends
    /// one leaf per event to the verifiable log, stamped with the batch's `position`.
    ///
    /// Deterministic: the same sequence of calls gives the same results and state on every
    /// machine. A `BatchError` changes nothing; every other outcome is per event.
    pub fn apply_at(
        &mut self,
        operation: Operation,
        entry_timestamp: u64,
        body: &[u8],
        position: LogPosition,
    ) -> Result<BatchOutcome, BatchError> {
        let events =
            records::records(body).ok_or(BatchError::BodyNotWholeRecords { bytes: body.len() })?;
        let count = events.len();
        if count == 0 {
            return Err(BatchError::Empty);
        }
        if count > BATCH_EVENTS_MAX {
            return Err(BatchError::TooManyEvents { events: count });
        }
        if entry_timestamp > TIMESTAMP_MAX {
            return Err(BatchError::TimestampOutOfRange {
                timestamp: entry_timestamp,
            });
        }
        // last_timestamp <= TIMESTAMP_MAX + expiries + events, far below u64::MAX.
        let now = entry_timestamp.max(self.last_timestamp + 1);
        self.batch += 1;

        let events_base = now.max(self.expire_pending(now) + 1);
        let stored_before = [self.accounts.len(), self.transfers.len(), self.trades.len()];
        let mut failures = Vec::new();
        let mut chain: Option<usize> = None;
        let mut chain_broken = false;
        let (records, _) = body.as_chunks::<RECORD_BYTES>();
        let mut lookups = [Lookups::UNKNOWN; WARM_RING_EVENTS];
        self.generated.clear();
        self.generated_next = events_base + count as u64;
        for (i, bytes) in events.enumerate() {
            self.warm_ahead(operation, records, i, &mut lookups);
            let timestamp = events_base + i as u64;
            let linked = raw_flags(bytes) & TransferFlags::LINKED.0 != 0;
            if linked && chain.is_none() {
                chain = Some(i);
                self.undo.clear();
                self.undo_on = true;
            }
            let result = if chain_broken {
                EventResult::LinkedEventFailed
            } else if linked && i == count - 1 {
                EventResult::LinkedEventChainOpen
            } else {
                self.apply_event(operation, bytes, timestamp, &lookups[i % WARM_RING_EVENTS])
            };
            if result != EventResult::Ok {
                if result.is_transient() && operation.remembers_failures() {
                    self.remember_failed(records::raw_id(bytes));
                }
                if let Some(start) = chain {
                    if !chain_broken {
                        self.rollback();
                        failures
                            .extend((start..i).map(|k| (k as u32, EventResult::LinkedEventFailed)));
                        chain_broken = true;
                    }
                }
                failures.push((i as u32, result));
            }
            if !linked {
                chain = None;
                chain_broken = false;
                self.undo_on = false;
                self.undo.clear();
            }
        }
        self.undo_on = false;
        self.undo.clear();
        // The batch's events, then what a settlement run made (none for most batches).
        let timestamp_last = self.generated_next - 1;
        self.last_timestamp = timestamp_last;
        self.assert_batch_conservation();
        self.log_batch(
            operation,
            body,
            &failures,
            events_base,
            position,
            stored_before,
        );
        Ok(BatchOutcome {
            failures,
            timestamp_first: events_base,
            timestamp_last,
        })
    }

    fn apply_event(
        &mut self,
        operation: Operation,
        bytes: &RecordBytes,
        timestamp: u64,
        lookups: &Lookups,
    ) -> EventResult {
        match operation {
            Operation::CreateAccounts => self.create_account(bytes, timestamp),
            Operation::CreateTransfers => self.create_transfer(bytes, timestamp, lookups),
            Operation::CreateTrades => self.create_trade(bytes, timestamp, lookups),
            Operation::CreateSettlements => match records::settlement_event(bytes) {
                (Operation::CreateTrades, record) => self.create_trade(&record, timestamp, lookups),
                (_, record) => self.create_transfer(&record, timestamp, lookups),
            },
            Operation::CreateInstructions => self.create_instruction(bytes, timestamp, lookups),
            Operation::SettlementCommands => self.settlement_command(bytes, timestamp),
        }
    }

    /// Expires every pending event with `expires_at <= now`, each stamped at its own
    /// `expires_at` (or just after the event before it, timestamps being unique and
    /// increasing), so balances as of any time at or after a timeout show the reservation
    /// released however late the batch that carried the expiry came. Returns the last
    /// timestamp used (`last_timestamp` if nothing expired).
    fn expire_pending(&mut self, now: u64) -> u64 {
        let mut previous = self.last_timestamp;
        while let Some(&(expires_at, _, event)) = self.expiry_queue.first() {
            if expires_at > now {
                break;
            }
            self.expiry_queue.pop_first();
            let timestamp = expires_at.max(previous + 1);
            previous = timestamp;
            let slot = self.expiries.push(Expiry {
                pending: event,
                timestamp,
                previous: [EVENT_NONE; 4],
            });
            let expiry = EventRef::expiry(slot);
            let pending = self.pending(event);
            let status = match event.kind() {
                EventKind::Transfer => &mut self.transfers.get_mut(event.slot()).status,
                EventKind::Trade => &mut self.trades.get_mut(event.slot()).status,
                _ => unreachable!("only transfers and trades are queued for expiry"),
            };
            assert_eq!(*status, PendingStatus::Pending);
            *status = PendingStatus::Expired;
            self.release(&pending);
            let (accounts, count) = pending.accounts();
            self.record_history(&accounts[..count], expiry);
        }
        previous
    }

    /// Expires every pending event due at `entry_timestamp`, with no event to apply: what a
    /// Raft entry carrying no batch does. The leader proposes one when the earliest timeout
    /// falls due and no client writes (`next_expiry`), so a quiet ledger releases a
    /// reservation at its timeout too. Deterministic like `apply`; returns how many expired
    /// (an entry timestamp past `TIMESTAMP_MAX` expires nothing).
    pub fn expire_due(&mut self, entry_timestamp: u64) -> usize {
        if entry_timestamp > TIMESTAMP_MAX {
            return 0;
        }
        let now = entry_timestamp.max(self.last_timestamp + 1);
        let before = self.expiries.len();
        self.last_timestamp = self.expire_pending(now);
        self.assert_batch_conservation();
        self.expiries.len() - before
    }

    /// When the earliest pending event's timeout falls due, if any is pending with one.
    pub fn next_expiry(&self) -> Option<u64> {
        self.expiry_queue
            .first()
            .map(|&(expires_at, _, _)| expires_at)
    }

    /// Every change to an account's balances or flags goes through here, so the conservation
    /// check and chain rollback see it.
    #[inline(always)]
    pub(crate) fn update_account(&mut self, account: u32, change: impl FnOnce(&mut AccountState)) {
        let slot = self.accounts.get_mut(account);
        let before = (slot.state.balances, slot.state.flags);
        change(&mut slot.state);
        let delta = slot.state.balances.wrapping_sub(before.0);
        let ledger = slot.state.ledger;
        self.add_ledger_net(ledger, delta);
        if self.undo_on {
            self.undo.push(Undo::Account {
                account,
                balances: before.0,
                flags: before.1,
            });
        }
    }

    /// Appends `event` (already stored) to the history of each account it changed, after the
    /// change: links it in front of the account's previous newest event.
    pub(crate) fn record_history(&mut self, accounts: &[u32], event: EventRef) {
        let previous = self.link_history(accounts, event);
        for (role, &link) in previous[..accounts.len()].iter().enumerate() {
            *self.previous_link_mut(event, role) = link;
        }
    }

    /// Makes `event` (about to be stored, after its balance changes) the newest of each
    /// account's history and returns the links to store in it: each account's previous newest.
    #[inline(always)]
    pub(crate) fn link_history(&mut self, accounts: &[u32], event: EventRef) -> [u32; 4] {
        let mut previous = [EVENT_NONE; 4];
        for (link, &account) in previous.iter_mut().zip(accounts) {
            let slot = self.accounts.get_mut(account);
            let history = &mut slot.history;
            *link = std::mem::replace(&mut history.last_event, event.0);
            history.changes = history.changes.wrapping_add(1);
            let every = slot.state.flags().contains(AccountFlags::HISTORY);
            if AccountHistory::marks(every, history.changes) {
                history.events.push(event);
                history.balances_after.push(slot.state.balances);
            }
        }
        previous
    }

    /// The history link `role` stored in `event` (see `record_history`).
    pub(crate) fn previous_event_link(&self, event: EventRef, role: usize) -> u32 {
        let slot = event.slot();
        match event.kind() {
            EventKind::Transfer => self.transfers.get(slot).previous[role],
            EventKind::Trade => self.trades.get(slot).previous[role],
            EventKind::Expiry => self.expiries.get(slot).previous[role],
            EventKind::Failed => unreachable!("a failed id is in no account's history"),
        }
    }

    fn previous_link_mut(&mut self, event: EventRef, role: usize) -> &mut u32 {
        let slot = event.slot();
        match event.kind() {
            EventKind::Transfer => &mut self.transfers.get_mut(slot).previous[role],
            EventKind::Trade => &mut self.trades.get_mut(slot).previous[role],
            EventKind::Expiry => &mut self.expiries.get_mut(slot).previous[role],
            EventKind::Failed => unreachable!("a failed id is in no account's history"),
        }
    }

    /// The accounts an event changed, in role order (the order of its `previous` links).
    pub(crate) fn event_accounts(&self, event: EventRef) -> ([u32; 4], usize) {
        let transfer = |t: &StoredTransfer| ([t.debit_account, t.credit_account, 0, 0], 2);
        match event.kind() {
            EventKind::Transfer => transfer(self.transfers.get(event.slot())),
            EventKind::Trade => (self.trades.get(event.slot()).accounts, 4),
            EventKind::Expiry => {
                let pending = self.expiries.get(event.slot()).pending;
                match pending.kind() {
                    EventKind::Transfer => transfer(self.transfers.get(pending.slot())),
                    _ => (self.trades.get(pending.slot()).accounts, 4),
                }
            }
            EventKind::Failed => unreachable!("a failed id is in no account's history"),
        }
    }

    /// The event before `event` in `account`'s history (`EVENT_NONE` at the start).
    pub(crate) fn previous_event(&self, account: u32, event: EventRef) -> u32 {
        let (accounts, count) = self.event_accounts(event);
        let role = accounts[..count]
            .iter()
            .position(|&a| a == account)
            .expect("an account's history holds only events that changed it");
        self.previous_event_link(event, role)
    }

    pub(crate) fn push_undo(&mut self, undo: Undo) {
        if self.undo_on {
            self.undo.push(undo);
        }
    }

    pub(crate) fn set_status(&mut self, event: EventRef, status: PendingStatus) {
        let slot = event.slot();
        let old = match event.kind() {
            EventKind::Transfer => {
                std::mem::replace(&mut self.transfers.get_mut(slot).status, status)
            }
            EventKind::Trade => std::mem::replace(&mut self.trades.get_mut(slot).status, status),
            _ => unreachable!("only transfers and trades have a pending status"),
        };
        self.push_undo(Undo::Status { event, status: old });
    }

    pub(crate) fn queue_expiry(&mut self, key: ExpiryKey) {
        let inserted = self.expiry_queue.insert(key);
        assert!(inserted);
        self.push_undo(Undo::ExpiryQueued(key));
    }

    pub(crate) fn dequeue_expiry(&mut self, key: ExpiryKey) {
        let removed = self.expiry_queue.remove(&key);
        assert!(removed);
        self.push_undo(Undo::ExpiryDequeued(key));
    }

    /// Undoes every change of the current chain, newest first.
    pub(crate) fn rollback(&mut self) {
        while let Some(undo) = self.undo.pop() {
            match undo {
                Undo::Account {
                    account,
                    balances,
                    flags,
                } => {
                    let state = self.accounts.get_mut(account);
                    state.balances = balances;
                    state.flags = flags;
                }
                Undo::AccountInserted => {
                    // Unindex before popping: the index finds keys through the arena.
                    let slot = self.accounts.len() as u32 - 1;
                    let id = self.accounts.get(slot).id;
                    let accounts = &self.accounts;
                    self.account_index.remove(id, |s| accounts.get(s).id);
                    self.accounts.pop();
                }
                Undo::EventInserted(event) => self.rollback_event(event),
                Undo::Status { event, status } => match event.kind() {
                    EventKind::Transfer => self.transfers.get_mut(event.slot()).status = status,
                    EventKind::Trade => self.trades.get_mut(event.slot()).status = status,
                    _ => unreachable!("only transfers and trades have a pending status"),
                },
                Undo::ExpiryQueued(key) => {
                    assert!(self.expiry_queue.remove(&key));
                }
                Undo::ExpiryDequeued(key) => {
                    assert!(self.expiry_queue.insert(key));
                }
                Undo::InstructionSubmitted(id) => self.settlement.unsubmit(id),
            }
        }
        self.undo_on = false;
    }

    fn rollback_event(&mut self, event: EventRef) {
        // Unindex before popping: the index finds keys through the arenas.
        let id = self.event_id(event);
        let (transfers, trades, failed) = (&self.transfers, &self.trades, &self.failed);
        self.event_index.remove(id, |slot| {
            event_id(transfers, trades, failed, EventRef(slot))
        });
        let (accounts, count) = self.event_accounts(event);
        let previous: [u32; 4] = match event.kind() {
            EventKind::Transfer => {
                assert_eq!(event.slot() as usize, self.transfers.len() - 1);
                let t = self.transfers.pop().expect("rolled-back transfer exists");
                [t.previous[0], t.previous[1], EVENT_NONE, EVENT_NONE]
            }
            EventKind::Trade => {
                assert_eq!(event.slot() as usize, self.trades.len() - 1);
                self.trades
                    .pop()
                    .expect("rolled-back trade exists")
                    .previous
            }
            _ => unreachable!("only transfers and trades are inserted by events"),
        };
        for (role, &account) in accounts[..count].iter().enumerate() {
            let slot = self.accounts.get_mut(account);
            let history = &mut slot.history;
            assert_eq!(history.last_event, event.0);
            history.last_event = previous[role];
            let every = slot.state.flags().contains(AccountFlags::HISTORY);
            if AccountHistory::marks(every, history.changes) {
                assert_eq!(history.events.pop(), Some(event));
                history.balances_after.pop();
            }
            history.changes = history.changes.wrapping_sub(1);
        }
    }

    /// Adds one balance change to its ledger's net for this batch.
    #[inline(always)]
    fn add_ledger_net(&mut self, ledger: u32, delta: Balances) {
        let pending = delta.debits_pending.wrapping_sub(delta.credits_pending);
        let posted = delta.debits_posted.wrapping_sub(delta.credits_posted);
        let last = &mut self.ledger_net_last;
        if last.0 != ledger {
            if last.0 != 0 {
                let net = self.ledger_net.entry(last.0).or_insert((0, 0));
                net.0 = net.0.wrapping_add(last.1);
                net.1 = net.1.wrapping_add(last.2);
            }
            *last = (ledger, 0, 0);
        }
        last.1 = last.1.wrapping_add(pending);
        last.2 = last.2.wrapping_add(posted);
    }

    /// Asserts that, per ledger, the batch changed debits and credits by the same amounts, for
    /// posted and for pending: the sum of every balance change's (debits − credits) is zero.
    /// It costs a few instructions per change and O(ledgers) per batch, so it runs in release
    /// builds on every batch. (A rolled-back chain contributes its changes, which balance.)
    fn assert_batch_conservation(&mut self) {
        self.add_ledger_net(0, Balances::default());
        for (ledger, net) in self.ledger_net.drain() {
            assert!(
                net == (0, 0),
                "conservation broken on ledger {ledger} in batch {}: net (pending, posted) {net:?}",
                self.batch
            );
        }
        self.ledger_net_last = (0, 0, 0);
    }

    /// Indexes a just-stored event whose history links are already set (`link_history`).
    #[inline(always)]
    pub(crate) fn index_event(&mut self, hash: u32, event: EventRef) {
        self.event_index.insert(hash, event.0);
        self.push_undo(Undo::EventInserted(event));
    }

    /// Finds the stored event with `id`, hashing it once (the hash is reused for insertion).
    #[inline]
    pub(crate) fn find_event(&self, id: u128) -> (u32, Option<EventRef>) {
        self.find_event_hashed(self.event_index.hash(id), id)
    }

    /// `find_event` with the id's index hash already computed.
    #[inline]
    pub(crate) fn find_event_hashed(&self, hash: u32, id: u128) -> (u32, Option<EventRef>) {
        let (transfers, trades, failed) = (&self.transfers, &self.trades, &self.failed);
        let found = self.event_index.find(hash, id, |slot| {
            event_id(transfers, trades, failed, EventRef(slot))
        });
        (hash, found.map(EventRef))
    }

    /// The id of a stored transfer or trade, or of a failed one.
    pub(crate) fn event_id(&self, event: EventRef) -> u128 {
        event_id(&self.transfers, &self.trades, &self.failed, event)
    }

    /// Remembers the id of an event that failed transiently, so a later request cannot store
    /// an event under it: a retry gets `id_already_failed`, never a second, different outcome.
    /// Not undone when the event's chain rolls back (the failure was answered). The id is not
    /// taken: a transient result comes after the id checks and the lookup that found nothing.
    fn remember_failed(&mut self, id: u128) {
        let hash = self.event_index.hash(id);
        debug_assert!(self.find_event_hashed(hash, id).1.is_none());
        let slot = self.failed.push(id);
        self.event_index.insert(hash, EventRef::failed(slot).0);
    }

    #[inline]
    pub(crate) fn find_account(&self, id: u128) -> Option<u32> {
        let hash = self.account_index.hash(id);
        let accounts = &self.accounts;
        self.account_index
            .find(hash, id, |slot| accounts.get(slot).id)
    }
}

/// The id of a stored transfer or trade, or of a failed one: what the event index holds.
#[inline]
fn event_id(
    transfers: &Events<StoredTransfer>,
    trades: &Events<StoredTrade>,
    failed: &Events<u128>,
    event: EventRef,
) -> u128 {
    match event.kind() {
        EventKind::Transfer => transfers.get(event.slot()).id,
        EventKind::Trade => trades.get(event.slot()).id,
        EventKind::Failed => *failed.get(event.slot()),
        EventKind::Expiry => unreachable!("the event index holds no expiries"),
    }
}
