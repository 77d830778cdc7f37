//! Creating trades: delivery versus payment, both legs or neither.

use crate::engine::Engine;
use crate::leg::{self, LegFailure};
use crate::limits::{EVENTS_PER_KIND_MAX, NANOSECONDS_PER_SECOND};
use crate::pending::{check_pending_reference, TRADE_CODES};
use crate::records::{RecordBytes, Trade, TradeFlags};
use crate::result::{first_difference, EventResult};
use crate::state::{EventKind, EventRef, PendingStatus, StoredTrade, SLOT_NONE};
use crate::warm::Lookups;

type F = TradeFlags;
type R = EventResult;

/// Which leg a failure belongs to, for the leg-specific result codes.
#[derive(Clone, Copy)]
enum Leg {
    Instrument,
    Cash,
}

impl Engine {
    /// Creates one trade; checks in the precedence of `docs/engine.md`.
    pub(crate) fn create_trade(
        &mut self,
        bytes: &RecordBytes,
        timestamp: u64,
        lookups: &Lookups,
    ) -> EventResult {
        let Ok(t) = Trade::decode(bytes) else {
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
        // As for transfers: a used id answers first.
        let (hash, existing) = self.event_lookup(lookups, 0, t.id);
        match existing {
            Some(event) if event.kind() == EventKind::Failed => return R::IdAlreadyFailed,
            Some(event) => return self.trade_exists(&t, event),
            None => {}
        }
        let phases = [F::PENDING, F::POST_PENDING_TRADE, F::VOID_PENDING_TRADE]
            .iter()
            .filter(|&&p| t.flags.contains(p))
            .count();
        if phases > 1 {
            return R::FlagsAreMutuallyExclusive;
        }
        if t.flags
            .intersects(F::POST_PENDING_TRADE | F::VOID_PENDING_TRADE)
        {
            self.resolve_pending_trade(&t, hash, timestamp, lookups)
        } else {
            self.create_new_trade(&t, hash, timestamp, lookups)
        }
    }

    fn create_new_trade(
        &mut self,
        t: &Trade,
        hash: u32,
        timestamp: u64,
        lookups: &Lookups,
    ) -> EventResult {
        let pending = t.flags.contains(F::PENDING);
        // A new trade's record has no pending id: its bytes hold the ledgers.
        debug_assert_eq!(t.pending_id, 0);
        if t.timeout != 0 && !pending {
            return R::TimeoutReservedForPendingTrade;
        }
        let ids = trade_account_ids(t);
        if ids.iter().any(|&id| id == 0 || id == u128::MAX) {
            return R::TradeAccountIdMustNotBeZeroOrIntMax;
        }
        if ids.iter().any(|&id| crate::cycle::is_reserved(id)) {
            return R::AccountIdMustNotBeReserved;
        }
        if (0..4).any(|i| (i + 1..4).any(|j| ids[i] == ids[j])) {
            return R::TradeAccountsMustBeDistinct;
        }
        if t.instrument_ledger == 0 {
            return R::InstrumentLedgerMustNotBeZero;
        }
        if t.cash_ledger == 0 {
            return R::CashLedgerMustNotBeZero;
        }
        if t.instrument_ledger == t.cash_ledger {
            return R::LegsMustHaveDifferentLedgers;
        }
        if t.quantity == 0 {
            return R::QuantityMustNotBeZero;
        }
        if t.cash_amount == 0 {
            return R::CashAmountMustNotBeZero;
        }
        if t.code == 0 {
            return R::CodeMustNotBeZero;
        }
        if self.trades.len() >= EVENTS_PER_KIND_MAX as usize {
            return R::CapacityExceeded;
        }
        let not_found = [
            R::InstrumentDebitAccountNotFound,
            R::InstrumentCreditAccountNotFound,
            R::CashDebitAccountNotFound,
            R::CashCreditAccountNotFound,
        ];
        let mut slots = [0u32; 4];
        for i in 0..4 {
            match self.account_slot(lookups, i, ids[i]) {
                Some(slot) => slots[i] = slot,
                None => return not_found[i],
            }
        }
        let accounts = slots.map(|s| self.accounts.get(s));
        // The legs are what the trade names, not where its accounts happen to sit: swapped
        // account pairs fail here instead of moving the cash amount in shares.
        if accounts[..2]
            .iter()
            .any(|account| account.ledger != t.instrument_ledger)
        {
            return R::InstrumentAccountsMustBeOnTheInstrumentLedger;
        }
        if accounts[2..]
            .iter()
            .any(|account| account.ledger != t.cash_ledger)
        {
            return R::CashAccountsMustBeOnTheCashLedger;
        }
        let quantity = u128::from(t.quantity);
        let cash = u128::from(t.cash_amount);
        let legs = [
            (Leg::Instrument, accounts[0], accounts[1], quantity),
            (Leg::Cash, accounts[2], accounts[3], cash),
        ];
        for (which, debit, credit, _) in legs {
            if let Err(e) = leg::check_closed(debit, credit) {
                return trade_result(which, e);
            }
        }
        for (which, debit, credit, amount) in legs {
            if let Err(e) = leg::check_overflow(debit, credit, amount, pending) {
                return trade_result(which, e);
            }
        }
        let expires_at = if pending && t.timeout != 0 {
            match timestamp.checked_add(u64::from(t.timeout) * NANOSECONDS_PER_SECOND) {
                Some(at) => Some(at),
                None => return R::OverflowsTimeout,
            }
        } else {
            None
        };
        for (which, debit, credit, amount) in legs {
            if let Err(e) = leg::check_balance(debit, credit, amount) {
                return trade_result(which, e);
            }
        }

        // Every check passed: from here on nothing fails.
        self.move_leg(slots[0], slots[1], quantity, pending);
        self.move_leg(slots[2], slots[3], cash, pending);
        let event = EventRef::trade(self.trades.len() as u32);
        let previous = self.link_history(&slots, event);
        self.trades.push(StoredTrade {
            id: t.id,
            quantity: t.quantity,
            cash_amount: t.cash_amount,
            timestamp,
            user_data_64: t.user_data_64,
            accounts: slots,
            pending: SLOT_NONE,
            timeout: t.timeout,
            code: t.code,
            flags: t.flags.0,
            status: if pending {
                PendingStatus::Pending
            } else {
                PendingStatus::NotPending
            },
            previous,
        });
        self.index_event(hash, event);
        if let Some(at) = expires_at {
            self.queue_expiry((at, timestamp, event));
        }
        R::Ok
    }

    fn resolve_pending_trade(
        &mut self,
        t: &Trade,
        hash: u32,
        timestamp: u64,
        lookups: &Lookups,
    ) -> EventResult {
        let post = t.flags.contains(F::POST_PENDING_TRADE);
        let reference = check_pending_reference(t.id, t.pending_id, t.timeout, &TRADE_CODES);
        if let Err(failure) = reference {
            return failure;
        }
        if self.trades.len() >= EVENTS_PER_KIND_MAX as usize {
            return R::CapacityExceeded;
        }
        let pending_event = match self.event_lookup(lookups, 1, t.pending_id).1 {
            Some(e) if e.kind() == EventKind::Trade => e,
            _ => return R::PendingTradeNotFound,
        };
        let p = *self.trades.get(pending_event.slot());
        if !TradeFlags(p.flags).contains(F::PENDING) {
            return R::PendingTradeNotPending;
        }
        let stored_ids = p.accounts.map(|s| self.accounts.get(s).id);
        let given_ids = trade_account_ids(t);
        let differs = |given: u128, stored: u128| given != 0 && given != stored;
        if (0..4).any(|i| differs(given_ids[i], stored_ids[i]))
            || differs(u128::from(t.quantity), u128::from(p.quantity))
            || differs(u128::from(t.cash_amount), u128::from(p.cash_amount))
            || differs(u128::from(t.code), u128::from(p.code))
        {
            return R::PendingTradeHasDifferentFields;
        }
        let pending = self.pending(pending_event);
        let expires_at = match self.check_resolvable(&pending, timestamp, post, &TRADE_CODES) {
            Ok(expires_at) => expires_at,
            Err(failure) => return failure,
        };

        // Every check passed: from here on nothing fails (trades post in full).
        let full = [u128::from(p.quantity), u128::from(p.cash_amount)];
        self.resolve(&pending, post.then_some(full), expires_at);
        let event = EventRef::trade(self.trades.len() as u32);
        let previous = self.link_history(&p.accounts, event);
        self.trades.push(StoredTrade {
            id: t.id,
            quantity: p.quantity,
            cash_amount: p.cash_amount,
            timestamp,
            user_data_64: p.user_data_64,
            accounts: p.accounts,
            pending: pending_event.slot(),
            timeout: 0,
            code: p.code,
            flags: t.flags.0,
            status: PendingStatus::NotPending,
            previous,
        });
        self.index_event(hash, event);
        R::Ok
    }

    /// `exists`, or the first field that differs (flags, pending id and timeout first, as
    /// for transfers), for a trade whose id is taken; `exists_with_different_fields` if a
    /// transfer holds it.
    fn trade_exists(&self, t: &Trade, event: EventRef) -> EventResult {
        if event.kind() != EventKind::Trade {
            return R::ExistsWithDifferentFields;
        }
        let e = self.stored_trade_record(event.slot());
        let resolves = t
            .flags
            .intersects(F::POST_PENDING_TRADE | F::VOID_PENDING_TRADE);
        // A post or void may leave a field zero: it matches the stored (inherited) value.
        let differs = |given: u128, stored: u128| given != stored && !(resolves && given == 0);
        let (given, stored) = (trade_account_ids(t), trade_account_ids(&e));
        first_difference(&[
            (t.flags != e.flags, R::ExistsWithDifferentFlags),
            (
                t.pending_id != e.pending_id,
                R::ExistsWithDifferentPendingId,
            ),
            (t.timeout != e.timeout, R::ExistsWithDifferentTimeout),
            (
                differs(given[0], stored[0]),
                R::ExistsWithDifferentInstrumentDebitAccountId,
            ),
            (
                differs(given[1], stored[1]),
                R::ExistsWithDifferentInstrumentCreditAccountId,
            ),
            (
                differs(given[2], stored[2]),
                R::ExistsWithDifferentCashDebitAccountId,
            ),
            (
                differs(given[3], stored[3]),
                R::ExistsWithDifferentCashCreditAccountId,
            ),
            (
                differs(t.quantity.into(), e.quantity.into()),
                R::ExistsWithDifferentQuantity,
            ),
            (
                differs(t.cash_amount.into(), e.cash_amount.into()),
                R::ExistsWithDifferentCashAmount,
            ),
            (
                differs(t.user_data_64.into(), e.user_data_64.into()),
                R::ExistsWithDifferentUserData64,
            ),
            (
                t.instrument_ledger != e.instrument_ledger || t.cash_ledger != e.cash_ledger,
                R::ExistsWithDifferentLedger,
            ),
            (
                differs(t.code.into(), e.code.into()),
                R::ExistsWithDifferentCode,
            ),
        ])
    }

    /// The stored trade in record form (ids instead of slots).
    pub(crate) fn stored_trade_record(&self, slot: u32) -> Trade {
        let s = self.trades.get(slot);
        let ids = s.accounts.map(|a| self.accounts.get(a).id);
        // A new trade's ledgers are its accounts' (checked when it was created, and an
        // account's ledger never changes); a post or void names none.
        let (instrument_ledger, cash_ledger) = if Trade::resolves(TradeFlags(s.flags)) {
            (0, 0)
        } else {
            (
                self.accounts.get(s.accounts[0]).ledger,
                self.accounts.get(s.accounts[2]).ledger,
            )
        };
        Trade {
            id: s.id,
            instrument_debit_account_id: ids[0],
            instrument_credit_account_id: ids[1],
            cash_debit_account_id: ids[2],
            cash_credit_account_id: ids[3],
            pending_id: if s.pending == SLOT_NONE {
                0
            } else {
                self.trades.get(s.pending).id
            },
            instrument_ledger,
            cash_ledger,
            user_data_64: s.user_data_64,
            quantity: s.quantity,
            cash_amount: s.cash_amount,
            timeout: s.timeout,
            code: s.code,
            flags: TradeFlags(s.flags),
            timestamp: s.timestamp,
        }
    }
}

fn trade_account_ids(t: &Trade) -> [u128; 4] {
    [
        t.instrument_debit_account_id,
        t.instrument_credit_account_id,
        t.cash_debit_account_id,
        t.cash_credit_account_id,
    ]
}

fn trade_result(leg: Leg, failure: LegFailure) -> EventResult {
    use LegFailure as L;
    match (leg, failure) {
        (Leg::Instrument, L::DebitClosed) => R::InstrumentDebitAccountClosed,
        (Leg::Instrument, L::CreditClosed) => R::InstrumentCreditAccountClosed,
        (
            Leg::Instrument,
            L::OverflowsDebitsPending | L::OverflowsDebitsPosted | L::OverflowsDebits,
        ) => R::InstrumentOverflowsDebits,
        (
            Leg::Instrument,
            L::OverflowsCreditsPending | L::OverflowsCreditsPosted | L::OverflowsCredits,
        ) => R::InstrumentOverflowsCredits,
        (Leg::Instrument, L::ExceedsCredits) => R::InstrumentExceedsCredits,
        (Leg::Instrument, L::ExceedsDebits) => R::InstrumentExceedsDebits,
        (Leg::Cash, L::DebitClosed) => R::CashDebitAccountClosed,
        (Leg::Cash, L::CreditClosed) => R::CashCreditAccountClosed,
        (Leg::Cash, L::OverflowsDebitsPending | L::OverflowsDebitsPosted | L::OverflowsDebits) => {
            R::CashOverflowsDebits
        }
        (
            Leg::Cash,
            L::OverflowsCreditsPending | L::OverflowsCreditsPosted | L::OverflowsCredits,
        ) => R::CashOverflowsCredits,
        (Leg::Cash, L::ExceedsCredits) => R::CashExceedsCredits,
        (Leg::Cash, L::ExceedsDebits) => R::CashExceedsDebits,
    }
}
