//! Filing a restored snapshot's records: each one checked against what came before it (its
//! references point back only), then placed in its arena and index (`Engine::restore_sections`
//! drives them, section by section); then the replay of every event, which must land on the
//! stored balances (`Engine::replay_restored`).

use crate::access_log::{AccessRead, AccessTouch};
use crate::checkpoint::{SignedCheckpoint, StoredCosignature};
use crate::engine::{Engine, Events};
use crate::event_log::{KeptLeaf, LogBatch};
use crate::merkle::Hash;
use crate::records::{TradeFlags, TransferFlags};
use crate::settlement_store::BookRestore;
use crate::snapshot::{invalid, RestoreStart, SnapshotError};
use crate::snapshot_read::Records;
use crate::state::{
    AccountSlot, AccountState, Balances, EventKind, EventRef, Expiry, PendingStatus, StoredTrade,
    StoredTransfer, SLOT_NONE,
};
use crate::transfer::expires_at;

impl Engine {
    /// Replay every restored event's effect in timestamp order (the three streams are each in
    /// timestamp order; a merge interleaves them), rebuilding histories and balances, which
    /// must land on the `stored` ones.
    pub(crate) fn replay_restored(&mut self, stored: &[Balances]) -> Result<(), SnapshotError> {
        let mut cursors = [0u32; 3];
        let lens = [
            self.transfers.len() as u32,
            self.trades.len() as u32,
            self.expiries.len() as u32,
        ];
        let event_of = |stream: usize, cursor: u32| match stream {
            0 => EventRef::transfer(cursor),
            1 => EventRef::trade(cursor),
            _ => EventRef::expiry(cursor),
        };
        // Each stream's next timestamp (u64::MAX once it is done), refreshed only for the
        // stream that moved: one timestamp read per event instead of three.
        let mut next = [u64::MAX; 3];
        for stream in 0..3 {
            if lens[stream] > 0 {
                next[stream] = self.event_timestamp(event_of(stream, 0));
            }
        }
        let mut previous = 0u64;
        loop {
            let stream = if next[0] <= next[1] && next[0] <= next[2] {
                0
            } else if next[1] <= next[2] {
                1
            } else {
                2
            };
            let timestamp = next[stream];
            if timestamp == u64::MAX && cursors[stream] >= lens[stream] {
                break;
            }
            if timestamp <= previous || timestamp > self.last_timestamp {
                return Err(invalid(format!(
                    "event timestamps out of order at {timestamp}"
                )));
            }
            previous = timestamp;
            let event = event_of(stream, cursors[stream]);
            cursors[stream] += 1;
            next[stream] = if cursors[stream] < lens[stream] {
                self.event_timestamp(event_of(stream, cursors[stream]))
            } else {
                u64::MAX
            };
            let (accounts, count) = self.event_accounts(event);
            for &account in &accounts[..count] {
                let delta = self.effect(account, event);
                let slot = self.accounts.get_mut(account);
                slot.state.balances = slot.state.balances.wrapping_add(delta);
            }
            // The history links are derived: each must be what the replay derives, or the
            // snapshot is refused (checked, not rewritten: the events stay untouched).
            let links = self.link_history(&accounts[..count], event);
            for (role, &link) in links[..count].iter().enumerate() {
                if self.previous_event_link(event, role) != link {
                    return Err(invalid(format!(
                        "event at {timestamp}: its history link {role} is not the replay's"
                    )));
                }
            }
        }
        for (slot, balances) in stored.iter().enumerate() {
            if self.accounts.get(slot as u32).balances != *balances {
                return Err(invalid(format!(
                    "account {} balances do not match the replay of its events",
                    self.accounts.get(slot as u32).id
                )));
            }
        }
        Ok(())
    }
}

/// Files one restored log batch: in leaf and timestamp order, each holding at least one of
/// the log's `size` leaves (the last one's end is `size`).
pub(crate) fn restore_log_batch(
    size: u64,
    batches: &mut Events<LogBatch>,
    last_timestamp: u64,
    batch: LogBatch,
) -> Result<(), SnapshotError> {
    let i = batches.len();
    let in_order = match i.checked_sub(1).map(|p| *batches.get(p as u32)) {
        None => batch.leaf_first == 0,
        Some(previous) => {
            let events = batch.leaf_first.wrapping_sub(previous.leaf_first);
            batch.leaf_first > previous.leaf_first
                && batch.timestamp_first >= previous.timestamp_first.saturating_add(events)
        }
    };
    if !in_order || batch.leaf_first >= size || batch.timestamp_first > last_timestamp {
        return Err(invalid(format!(
            "log batch {i} is out of order or past the leaves"
        )));
    }
    batches.push(batch);
    Ok(())
}

/// Files one restored account (its balances kept aside for the replay's check).
pub(crate) fn restore_account(
    engine: &mut Engine,
    stored_balances: &mut Vec<Balances>,
    account: AccountState,
) -> Result<(), SnapshotError> {
    if engine.find_account(account.id).is_some() || account.id == 0 || account.id == u128::MAX {
        return Err(invalid(format!(
            "account id {} invalid or repeated",
            account.id
        )));
    }
    stored_balances.push(account.balances);
    let slot = engine.accounts.push(AccountSlot::new(AccountState {
        balances: Balances::default(),
        ..account
    }));
    let hash = engine.account_index.hash(account.id);
    engine.account_index.insert(hash, slot);
    Ok(())
}

// References are checked before anything follows them: to earlier records only.

pub(crate) fn restore_transfer(
    engine: &mut Engine,
    index: &mut RestoredIndex,
    accounts: u64,
    t: StoredTransfer,
) -> Result<(), SnapshotError> {
    let i = engine.transfers.len();
    let pending_ok = t.pending == SLOT_NONE || (t.pending as usize) < i;
    if u64::from(t.debit_account) >= accounts
        || u64::from(t.credit_account) >= accounts
        || !pending_ok
    {
        return Err(invalid(format!("transfer {i} references a missing slot")));
    }
    if TransferFlags(t.flags)
        .intersects(TransferFlags::POST_PENDING_TRANSFER | TransferFlags::VOID_PENDING_TRANSFER)
        == (t.pending == SLOT_NONE)
    {
        return Err(invalid(format!(
            "transfer {i} post/void flags disagree with its pending slot"
        )));
    }
    let event = EventRef::transfer(engine.transfers.push(t));
    index.push(engine, t.id, event)?;
    queue_restored_expiry(engine, t.status, t.timestamp, t.timeout, event);
    Ok(())
}

pub(crate) fn restore_trade(
    engine: &mut Engine,
    index: &mut RestoredIndex,
    accounts: u64,
    t: StoredTrade,
) -> Result<(), SnapshotError> {
    let i = engine.trades.len();
    let pending_ok = t.pending == SLOT_NONE || (t.pending as usize) < i;
    if t.accounts.iter().any(|&a| u64::from(a) >= accounts) || !pending_ok {
        return Err(invalid(format!("trade {i} references a missing slot")));
    }
    if TradeFlags(t.flags)
        .intersects(TradeFlags::POST_PENDING_TRADE | TradeFlags::VOID_PENDING_TRADE)
        == (t.pending == SLOT_NONE)
    {
        return Err(invalid(format!(
            "trade {i} post/void flags disagree with its pending slot"
        )));
    }
    let event = EventRef::trade(engine.trades.push(t));
    index.push(engine, t.id, event)?;
    queue_restored_expiry(engine, t.status, t.timestamp, t.timeout, event);
    Ok(())
}

/// A restored event still pending with a timeout goes back in the expiry queue.
pub(crate) fn queue_restored_expiry(
    engine: &mut Engine,
    status: PendingStatus,
    timestamp: u64,
    timeout: u32,
    event: EventRef,
) {
    if status == PendingStatus::Pending {
        if let Some(at) = expires_at(timestamp, timeout) {
            engine.expiry_queue.insert((at, timestamp, event));
        }
    }
}

/// Files one restored expiry; `events`: how many transfers and trades there are.
pub(crate) fn restore_expiry(
    engine: &mut Engine,
    events: [u64; 2],
    e: Expiry,
) -> Result<(), SnapshotError> {
    let ok = match e.pending.kind() {
        EventKind::Transfer => u64::from(e.pending.slot()) < events[0],
        EventKind::Trade => u64::from(e.pending.slot()) < events[1],
        _ => false,
    };
    if !ok {
        return Err(invalid(format!(
            "expiry {} references a missing event",
            engine.expiries.len()
        )));
    }
    engine.expiries.push(e);
    Ok(())
}

/// Restored events' index inserts, `RESTORE_INDEX_AHEAD` events behind their arena pushes:
/// an id's index entry is prefetched when its event is pushed and probed when it is inserted,
/// so the probe finds its cache line loaded instead of waiting ~200 ns for it (the index is
/// probed at a random place per id; the restore of 10M events spent 44% of its time in those
/// waits). Inserts stay in push order, so a repeated id is still refused at its second push.
#[derive(Default)]
pub(crate) struct RestoredIndex {
    ring: std::collections::VecDeque<(u32, u128, EventRef)>,
}

const RESTORE_INDEX_AHEAD: usize = 16;

impl RestoredIndex {
    #[inline]
    pub(crate) fn push(
        &mut self,
        engine: &mut Engine,
        id: u128,
        event: EventRef,
    ) -> Result<(), SnapshotError> {
        let hash = engine.event_index.hash(id);
        engine.event_index.prefetch(hash);
        self.ring.push_back((hash, id, event));
        if self.ring.len() > RESTORE_INDEX_AHEAD {
            let (hash, id, event) = self.ring.pop_front().expect("ring is not empty");
            engine.index_restored_event(hash, id, event)?;
        }
        Ok(())
    }

    pub(crate) fn finish(&mut self, engine: &mut Engine) -> Result<(), SnapshotError> {
        while let Some((hash, id, event)) = self.ring.pop_front() {
            engine.index_restored_event(hash, id, event)?;
        }
        Ok(())
    }
}

/// Files the records of one section into `engine` (the settlement book's into `book`);
/// `start` is what the header said.
pub(crate) fn file_records(
    engine: &mut Engine,
    log: &mut RestoredLog,
    index: &mut RestoredIndex,
    stored_balances: &mut Vec<Balances>,
    book: &mut BookRestore,
    start: &RestoreStart,
    records: &Records,
) -> Result<(), SnapshotError> {
    let [accounts, transfers, trades, ..] = start.counts;
    let log_size = start.log_size;
    match records {
        Records::Accounts(section) => {
            for &account in section {
                restore_account(engine, stored_balances, account)?;
            }
        }
        Records::Transfers(section) => {
            for &t in section {
                restore_transfer(engine, index, accounts, t)?;
            }
        }
        Records::Trades(section) => {
            for &t in section {
                restore_trade(engine, index, accounts, t)?;
            }
        }
        Records::Expiries(section) => {
            for &e in section {
                restore_expiry(engine, [transfers, trades], e)?;
            }
        }
        Records::Failed(section) => {
            for &id in section {
                let slot = engine.failed.push(id);
                let hash = engine.event_index.hash(id);
                engine.index_restored_event(hash, id, EventRef::failed(slot))?;
            }
        }
        Records::Leaves(section) => {
            for &leaf in section {
                log.0.push(leaf);
            }
        }
        Records::LogBatches(section) => {
            for &batch in section {
                restore_log_batch(log_size, &mut log.1, engine.last_timestamp, batch)?;
            }
        }
        Records::Checkpoints(section) => {
            for &checkpoint in section {
                let previous = log.2.len().checked_sub(1).map(|i| log.2.get(i as u32).size);
                if checkpoint.size > log_size
                    || previous.is_some_and(|size| checkpoint.size <= size)
                {
                    return Err(invalid(format!(
                        "checkpoint {} is out of order or past the leaves",
                        log.2.len()
                    )));
                }
                log.2.push(checkpoint);
            }
        }
        Records::Cosignatures(section) => {
            for &cosignature in section {
                if cosignature.checkpoint >= log.2.len() as u64 {
                    return Err(invalid(format!(
                        "cosignature {} names a checkpoint not held",
                        log.3.len()
                    )));
                }
                log.3.push(cosignature);
            }
        }
        Records::AccessReads(section) => {
            for &read in section {
                log.4.push(read);
            }
        }
        Records::AccessTouches(section) => {
            for &touch in section {
                log.5.push(touch);
            }
        }
        Records::AccessCheckpoints(section) => {
            for &checkpoint in section {
                log.6.push(checkpoint);
            }
        }
        Records::LogKept(section) => {
            for &kept in section {
                let previous = log
                    .7
                    .len()
                    .checked_sub(1)
                    .map(|i| log.7.get(i as u32).index);
                if kept.index >= log_size || previous.is_some_and(|index| kept.index <= index) {
                    return Err(invalid(format!(
                        "kept log leaf {} is out of order or past the leaves",
                        log.7.len()
                    )));
                }
                log.7.push(kept);
            }
        }
        // Each checked against the book's rules as it comes (`settlement_store.rs`).
        Records::SettlementCycles(section) => {
            for cycle in section {
                book.cycle(cycle)?;
            }
        }
        Records::SettlementInstructions(section) => {
            for instruction in section {
                book.instruction(instruction)?;
            }
        }
        Records::SettlementCommands(section) => {
            for command in section {
                book.command(command)?;
            }
        }
    }
    Ok(())
}

/// A log's parts as a restore files them: group hashes (or, before format 8, leaf hashes),
/// batches, checkpoints, cosignatures; then the access trail's reads, touches and
/// checkpoints; then the log's kept leaves.
#[derive(Default)]
pub(crate) struct RestoredLog(
    pub(crate) Events<Hash>,
    pub(crate) Events<LogBatch>,
    pub(crate) Events<SignedCheckpoint>,
    pub(crate) Events<StoredCosignature>,
    pub(crate) Events<AccessRead>,
    pub(crate) Events<AccessTouch>,
    pub(crate) Events<SignedCheckpoint>,
    pub(crate) Events<KeptLeaf>,
);
