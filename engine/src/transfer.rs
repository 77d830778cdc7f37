//! Creating transfers: single-phase, pending, post and void.

use crate::engine::Engine;
use crate::leg::{self, LegFailure};
use crate::limits::{EVENTS_PER_KIND_MAX, NANOSECONDS_PER_SECOND};
use crate::pending::{check_pending_reference, TRANSFER_CODES};
use crate::records::{AccountFlags, RecordBytes, Transfer, TransferFlags};
use crate::result::{first_difference, EventResult};
use crate::state::{EventKind, EventRef, PendingStatus, StoredTransfer, SLOT_NONE};
use crate::warm::Lookups;

type F = TransferFlags;
type R = EventResult;

impl Engine {
    /// Creates one transfer; checks in the precedence of `docs/engine.md`.
    pub(crate) fn create_transfer(
        &mut self,
        bytes: &RecordBytes,
        timestamp: u64,
        lookups: &Lookups,
    ) -> EventResult {
        let Ok(t) = Transfer::decode(bytes) else {
            return R::ReservedFlag;
        };
        if t.timestamp != 0 {
            return R::TimestampMustBeZero;
        }
        if t.id == 0 {
            return R::IdMustNotBeZero;
        }
        if t.id == u128::MAX {
            return R::IdMustNotBeIntMax;
        }
        if crate::cycle::is_reserved(t.id) {
            return R::IdMustNotBeReserved;
        }
        // An id already used answers before the request's other fields are looked at, as in
        // TigerBeetle 0.17: a retry is compared with what was stored, whatever else it says.
        let (hash, existing) = self.event_lookup(lookups, 0, t.id);
        match existing {
            Some(event) if event.kind() == EventKind::Failed => return R::IdAlreadyFailed,
            Some(event) => return self.transfer_exists(&t, event),
            None => {}
        }
        let f = t.flags;
        let phases = [
            F::PENDING,
            F::POST_PENDING_TRANSFER,
            F::VOID_PENDING_TRANSFER,
        ]
        .iter()
        .filter(|&&p| f.contains(p))
        .count();
        let resolves = f.intersects(F::POST_PENDING_TRANSFER | F::VOID_PENDING_TRANSFER);
        // A post or void takes none of the flags that shape a new transfer (TigerBeetle 0.17).
        let shaping =
            F::BALANCING_DEBIT | F::BALANCING_CREDIT | F::CLOSING_DEBIT | F::CLOSING_CREDIT;
        if phases > 1 || (resolves && f.intersects(shaping)) {
            return R::FlagsAreMutuallyExclusive;
        }
        if resolves {
            self.resolve_pending_transfer(&t, hash, timestamp, lookups)
        } else {
            self.create_new_transfer(&t, hash, timestamp, lookups)
        }
    }

    fn create_new_transfer(
        &mut self,
        t: &Transfer,
        hash: u32,
        timestamp: u64,
        lookups: &Lookups,
    ) -> EventResult {
        let pending = t.flags.contains(F::PENDING);
        if t.debit_account_id == 0 {
            return R::DebitAccountIdMustNotBeZero;
        }
        if t.debit_account_id == u128::MAX {
            return R::DebitAccountIdMustNotBeIntMax;
        }
        if t.credit_account_id == 0 {
            return R::CreditAccountIdMustNotBeZero;
        }
        if t.credit_account_id == u128::MAX {
            return R::CreditAccountIdMustNotBeIntMax;
        }
        // The clearing accounts are moved by settlement runs only.
        if crate::cycle::is_reserved(t.debit_account_id)
            || crate::cycle::is_reserved(t.credit_account_id)
        {
            return R::AccountIdMustNotBeReserved;
        }
        if t.debit_account_id == t.credit_account_id {
            return R::AccountsMustBeDifferent;
        }
        if t.pending_id != 0 {
            return R::PendingIdMustBeZero;
        }
        if t.timeout != 0 && !pending {
            return R::TimeoutReservedForPendingTransfer;
        }
        if t.flags.intersects(F::CLOSING_DEBIT | F::CLOSING_CREDIT) && !pending {
            return R::ClosingTransferMustBePending;
        }
        if t.ledger == 0 {
            return R::LedgerMustNotBeZero;
        }
        if t.code == 0 {
            return R::CodeMustNotBeZero;
        }
        if self.transfers.len() >= EVENTS_PER_KIND_MAX as usize {
            return R::CapacityExceeded;
        }
        let Some(debit) = self.account_slot(lookups, 0, t.debit_account_id) else {
            return R::DebitAccountNotFound;
        };
        let Some(credit) = self.account_slot(lookups, 1, t.credit_account_id) else {
            return R::CreditAccountNotFound;
        };
        let (d, c) = (self.accounts.get(debit), self.accounts.get(credit));
        if d.ledger != c.ledger {
            return R::AccountsMustHaveTheSameLedger;
        }
        if t.ledger != d.ledger {
            return R::TransferMustHaveTheSameLedgerAsAccounts;
        }
        if let Err(e) = leg::check_closed(d, c) {
            return transfer_result(e);
        }
        // A balancing transfer's amount is an upper limit: it moves what the account has
        // room for, zero included (TigerBeetle 0.17), and succeeds.
        let mut amount = t.amount;
        if t.flags.contains(F::BALANCING_DEBIT) {
            amount = amount.min(leg::debit_available(d));
        }
        if t.flags.contains(F::BALANCING_CREDIT) {
            amount = amount.min(leg::credit_available(c));
        }
        if let Err(e) = leg::check_overflow(d, c, amount, pending) {
            return transfer_result(e);
        }
        let expires_at = if pending && t.timeout != 0 {
            match timestamp.checked_add(u64::from(t.timeout) * NANOSECONDS_PER_SECOND) {
                Some(at) => Some(at),
                None => return R::OverflowsTimeout,
            }
        } else {
            None
        };
        if let Err(e) = leg::check_balance(d, c, amount) {
            return transfer_result(e);
        }

        // Every check passed: from here on nothing fails.
        self.move_leg(debit, credit, amount, pending);
        if t.flags.contains(F::CLOSING_DEBIT) {
            self.update_account(debit, |a| a.flags |= AccountFlags::CLOSED.0);
        }
        if t.flags.contains(F::CLOSING_CREDIT) {
            self.update_account(credit, |a| a.flags |= AccountFlags::CLOSED.0);
        }
        let event = EventRef::transfer(self.transfers.len() as u32);
        let previous = self.link_history(&[debit, credit], event);
        self.transfers.push(StoredTransfer {
            id: t.id,
            amount,
            user_data_128: t.user_data_128,
            user_data_64: t.user_data_64,
            timestamp,
            debit_account: debit,
            credit_account: credit,
            pending: SLOT_NONE,
            user_data_32: t.user_data_32,
            timeout: t.timeout,
            ledger: t.ledger,
            code: t.code,
            flags: t.flags.0,
            status: if pending {
                PendingStatus::Pending
            } else {
                PendingStatus::NotPending
            },
            previous: [previous[0], previous[1]],
        });
        self.index_event(hash, event);
        if let Some(at) = expires_at {
            self.queue_expiry((at, timestamp, event));
        }
        R::Ok
    }

    fn resolve_pending_transfer(
        &mut self,
        t: &Transfer,
        hash: u32,
        timestamp: u64,
        lookups: &Lookups,
    ) -> EventResult {
        let post = t.flags.contains(F::POST_PENDING_TRANSFER);
        let reference = check_pending_reference(t.id, t.pending_id, t.timeout, &TRANSFER_CODES);
        if let Err(failure) = reference {
            return failure;
        }
        if self.transfers.len() >= EVENTS_PER_KIND_MAX as usize {
            return R::CapacityExceeded;
        }
        let pending_event = match self.event_lookup(lookups, 1, t.pending_id).1 {
            Some(e) if e.kind() == EventKind::Transfer => e,
            _ => return R::PendingTransferNotFound,
        };
        let p = *self.transfers.get(pending_event.slot());
        if !TransferFlags(p.flags).contains(F::PENDING) {
            return R::PendingTransferNotPending;
        }
        // A field the post or void names (non-zero) must be the pending transfer's.
        let differs = |given: u128, stored: u128| given != 0 && given != stored;
        if differs(t.debit_account_id, self.accounts.get(p.debit_account).id) {
            return R::PendingTransferHasDifferentDebitAccountId;
        }
        if differs(t.credit_account_id, self.accounts.get(p.credit_account).id) {
            return R::PendingTransferHasDifferentCreditAccountId;
        }
        if differs(t.ledger.into(), p.ledger.into()) {
            return R::PendingTransferHasDifferentLedger;
        }
        if differs(t.code.into(), p.code.into()) {
            return R::PendingTransferHasDifferentCode;
        }
        // A post moves `amount` (u128::MAX: all of it; 0: nothing, releasing all); a void
        // names the pending amount or leaves it zero (TigerBeetle 0.17).
        let amount = match (post, t.amount) {
            (true, u128::MAX) | (false, 0) => p.amount,
            (_, amount) => amount,
        };
        if amount > p.amount {
            return R::ExceedsPendingTransferAmount;
        }
        if !post && amount < p.amount {
            return R::PendingTransferHasDifferentAmount;
        }
        let pending = self.pending(pending_event);
        let expires_at = match self.check_resolvable(&pending, timestamp, post, &TRANSFER_CODES) {
            Ok(expires_at) => expires_at,
            Err(failure) => return failure,
        };

        // Every check passed: from here on nothing fails.
        self.resolve(&pending, post.then_some([amount, 0]), expires_at);
        let event = EventRef::transfer(self.transfers.len() as u32);
        let previous = self.link_history(&[p.debit_account, p.credit_account], event);
        // User data left zero is the pending transfer's, so a settlement reference carries over.
        self.transfers.push(StoredTransfer {
            id: t.id,
            amount,
            user_data_128: inherit(t.user_data_128, p.user_data_128),
            user_data_64: inherit(t.user_data_64, p.user_data_64),
            timestamp,
            debit_account: p.debit_account,
            credit_account: p.credit_account,
            pending: pending_event.slot(),
            user_data_32: inherit(t.user_data_32, p.user_data_32),
            timeout: 0,
            ledger: p.ledger,
            code: p.code,
            flags: t.flags.0,
            status: PendingStatus::NotPending,
            previous: [previous[0], previous[1]],
        });
        self.index_event(hash, event);
        R::Ok
    }

    /// `exists`, or the first field that differs (TigerBeetle 0.17's order), for a transfer
    /// whose id is taken; `exists_with_different_fields` if a trade holds it.
    fn transfer_exists(&self, t: &Transfer, event: EventRef) -> EventResult {
        if event.kind() != EventKind::Transfer {
            return R::ExistsWithDifferentFields;
        }
        let e = self.stored_transfer_record(event.slot());
        let resolves = t
            .flags
            .intersects(F::POST_PENDING_TRANSFER | F::VOID_PENDING_TRANSFER);
        // A post or void may leave a field zero: it matches the stored (inherited) value.
        let differs = |given: u128, stored: u128| given != stored && !(resolves && given == 0);
        let amount_differs = if t.flags.intersects(F::BALANCING_DEBIT | F::BALANCING_CREDIT) {
            t.amount < e.amount
        } else if resolves {
            // The amounts that mean "the pending amount" (a post's u128::MAX, a void's 0)
            // match a stored event that moved exactly that.
            // (A stored event that resolved nothing differs in its flags anyway.)
            let stored_pending = self.transfers.get(event.slot()).pending;
            let pending =
                (stored_pending != SLOT_NONE).then(|| self.transfers.get(stored_pending).amount);
            let whole = if t.flags.contains(F::POST_PENDING_TRANSFER) {
                u128::MAX
            } else {
                0
            };
            !(t.amount == e.amount || (t.amount == whole && Some(e.amount) == pending))
        } else {
            t.amount != e.amount
        };
        first_difference(&[
            (t.flags != e.flags, R::ExistsWithDifferentFlags),
            (
                t.pending_id != e.pending_id,
                R::ExistsWithDifferentPendingId,
            ),
            (t.timeout != e.timeout, R::ExistsWithDifferentTimeout),
            (
                differs(t.debit_account_id, e.debit_account_id),
                R::ExistsWithDifferentDebitAccountId,
            ),
            (
                differs(t.credit_account_id, e.credit_account_id),
                R::ExistsWithDifferentCreditAccountId,
            ),
            (amount_differs, R::ExistsWithDifferentAmount),
            (
                differs(t.user_data_128, e.user_data_128),
                R::ExistsWithDifferentUserData128,
            ),
            (
                differs(t.user_data_64.into(), e.user_data_64.into()),
                R::ExistsWithDifferentUserData64,
            ),
            (
                differs(t.user_data_32.into(), e.user_data_32.into()),
                R::ExistsWithDifferentUserData32,
            ),
            (
                differs(t.ledger.into(), e.ledger.into()),
                R::ExistsWithDifferentLedger,
            ),
            (
                differs(t.code.into(), e.code.into()),
                R::ExistsWithDifferentCode,
            ),
        ])
    }

    /// The stored transfer in record form (ids instead of slots).
    pub(crate) fn stored_transfer_record(&self, slot: u32) -> Transfer {
        let s = self.transfers.get(slot);
        Transfer {
            id: s.id,
            debit_account_id: self.accounts.get(s.debit_account).id,
            credit_account_id: self.accounts.get(s.credit_account).id,
            amount: s.amount,
            pending_id: if s.pending == SLOT_NONE {
                0
            } else {
                self.transfers.get(s.pending).id
            },
            user_data_128: s.user_data_128,
            user_data_64: s.user_data_64,
            user_data_32: s.user_data_32,
            timeout: s.timeout,
            ledger: s.ledger,
            code: s.code,
            flags: TransferFlags(s.flags),
            timestamp: s.timestamp,
        }
    }
}

/// When a pending event created at `timestamp` with `timeout` seconds expires, if ever. Creation
/// checked that this does not overflow.
pub(crate) fn expires_at(timestamp: u64, timeout: u32) -> Option<u64> {
    (timeout != 0).then(|| timestamp + u64::from(timeout) * NANOSECONDS_PER_SECOND)
}

/// A post's or void's field: the request's, or the pending event's where the request left it zero.
fn inherit<T: Default + PartialEq>(given: T, pending: T) -> T {
    if given != T::default() {
        given
    } else {
        pending
    }
}

fn transfer_result(failure: LegFailure) -> EventResult {
    match failure {
        LegFailure::DebitClosed => R::DebitAccountClosed,
        LegFailure::CreditClosed => R::CreditAccountClosed,
        LegFailure::OverflowsDebitsPending => R::OverflowsDebitsPending,
        LegFailure::OverflowsCreditsPending => R::OverflowsCreditsPending,
        LegFailure::OverflowsDebitsPosted => R::OverflowsDebitsPosted,
        LegFailure::OverflowsCreditsPosted => R::OverflowsCreditsPosted,
        LegFailure::OverflowsDebits => R::OverflowsDebits,
        LegFailure::OverflowsCredits => R::OverflowsCredits,
        LegFailure::ExceedsCredits => R::ExceedsCredits,
        LegFailure::ExceedsDebits => R::ExceedsDebits,
    }
}
