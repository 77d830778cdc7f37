//! The warm pass: before a window of events is applied, look up everything they will touch.
//!
//! On this machine a load that misses the L2 cache costs ~130–200 ns when it waits alone, but
//! ~15 ns each when many are in flight. Inside an event's checks every lookup waits alone (the
//! next step needs its answer); in this pass the iterations are independent, so the CPU keeps
//! many misses in flight. The account slots found are handed to the events (`Lookups`), so the
//! work is not done twice; event ids are only warmed, because earlier events of the same batch
//! may still insert them.
//!
//! Pure reads: the pass changes nothing and decides nothing.

use crate::engine::{Engine, Operation};
use crate::records::{raw_flags, RecordBytes, TransferFlags};
use crate::state::SLOT_NONE;

/// The account slots the warm pass found for one event, by role: a transfer's debit and credit
/// account, a trade's four accounts in record order. Valid for the whole batch: transfer and
/// trade batches never create accounts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lookups {
    /// `SLOT_NONE` for "no such account".
    accounts: [u32; 4],
    known: bool,
}

impl Lookups {
    pub(crate) const UNKNOWN: Lookups = Lookups {
        accounts: [SLOT_NONE; 4],
        known: false,
    };
}

fn id_at(bytes: &RecordBytes, at: usize) -> u128 {
    let mut id = [0u8; 16];
    id.copy_from_slice(&bytes[at..at + 16]);
    u128::from_le_bytes(id)
}

impl Engine {
    /// Warms the lookups of `records` and fills `lookups[i]` for `records[i]`.
    pub(crate) fn warm(
        &self,
        operation: Operation,
        records: &[RecordBytes],
        lookups: &mut [Lookups],
    ) {
        let mut touched = 0usize;
        for (bytes, found) in records.iter().zip(lookups.iter_mut()) {
            *found = Lookups::UNKNOWN;
            let (event_id_at, accounts): (usize, &[usize]) = match operation {
                Operation::CreateAccounts => {
                    touched = touched
                        .wrapping_add(usize::from(self.find_account(id_at(bytes, 0)).is_some()));
                    continue;
                }
                Operation::CreateTransfers => {
                    let resolves = TransferFlags::POST_PENDING_TRANSFER.0
                        | TransferFlags::VOID_PENDING_TRANSFER.0;
                    if raw_flags(bytes) & resolves != 0 {
                        // A post or void finds its accounts through the pending transfer.
                        let pending = self.find_event(id_at(bytes, 64)).1;
                        touched = touched.wrapping_add(usize::from(pending.is_some()));
                        (0, &[])
                    } else {
                        (0, &[16, 32])
                    }
                }
                Operation::CreateTrades => (0, &[16, 32, 48, 64]),
            };
            touched = touched.wrapping_add(usize::from(
                self.find_event(id_at(bytes, event_id_at)).1.is_some(),
            ));
            for (role, &at) in accounts.iter().enumerate() {
                let slot = self.find_account(id_at(bytes, at));
                if let Some(slot) = slot {
                    let account = self.accounts.get(slot);
                    touched = touched
                        .wrapping_add(account.state.balances.debits_posted as usize)
                        .wrapping_add(account.history.last_event as usize);
                }
                found.accounts[role] = slot.unwrap_or(SLOT_NONE);
            }
            found.known = !accounts.is_empty();
        }
        std::hint::black_box(touched);
    }

    /// The slot of the account with `id` in `role`: from the warm pass when it looked, else
    /// looked up now.
    #[inline]
    pub(crate) fn account_slot(&self, lookups: &Lookups, role: usize, id: u128) -> Option<u32> {
        if lookups.known {
            let slot = lookups.accounts[role];
            debug_assert_eq!(self.find_account(id), (slot != SLOT_NONE).then_some(slot));
            (slot != SLOT_NONE).then_some(slot)
        } else {
            self.find_account(id)
        }
    }
}
