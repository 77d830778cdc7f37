//! Resolving a pending event: the one path a post or a void takes for a transfer and for each
//! leg of a trade (the checks from the pending event's status on, docs/engine.md "Post or
//! void"), and the release of a reservation that a void and an expiry share. What differs
//! between the two kinds — how the request names the pending event, which of its fields may
//! differ, the result codes — stays with each kind (`transfer.rs`, `trade.rs`).

use crate::engine::Engine;
use crate::leg::{self, LegFailure};
use crate::records::{AccountFlags, TradeFlags, TransferFlags};
use crate::result::EventResult;
use crate::state::{EventKind, EventRef, PendingStatus};
use crate::transfer::expires_at;

type R = EventResult;

/// One leg of a pending event: the accounts, the amount reserved on both, and whether the
/// event closed either account (a closing transfer; a void or expiry reopens it).
#[derive(Clone, Copy)]
struct PendingLeg {
    debit: u32,
    credit: u32,
    reserved: u128,
    closes_debit: bool,
    closes_credit: bool,
}

/// A pending transfer (one leg) or trade (instrument leg, then cash leg), as resolving it
/// needs it.
#[derive(Clone, Copy)]
pub(crate) struct Pending {
    event: EventRef,
    status: PendingStatus,
    timestamp: u64,
    timeout: u32,
    legs: [PendingLeg; 2],
    leg_count: usize,
}

/// A kind's result codes for the shared checks.
pub(crate) struct Codes {
    /// `timeout_reserved_for_pending_transfer` or `…_trade`.
    pub(crate) timeout_reserved: R,
    pub(crate) already_posted: R,
    pub(crate) already_voided: R,
    pub(crate) expired: R,
    /// Per leg: the debit account's and the credit account's `*_closed` code.
    pub(crate) closed: [[R; 2]; 2],
}

pub(crate) const TRANSFER_CODES: Codes = Codes {
    timeout_reserved: R::TimeoutReservedForPendingTransfer,
    already_posted: R::PendingTransferAlreadyPosted,
    already_voided: R::PendingTransferAlreadyVoided,
    expired: R::PendingTransferExpired,
    closed: [[R::DebitAccountClosed, R::CreditAccountClosed]; 2],
};

pub(crate) const TRADE_CODES: Codes = Codes {
    timeout_reserved: R::TimeoutReservedForPendingTrade,
    already_posted: R::PendingTradeAlreadyPosted,
    already_voided: R::PendingTradeAlreadyVoided,
    expired: R::PendingTradeExpired,
    closed: [
        [
            R::InstrumentDebitAccountClosed,
            R::InstrumentCreditAccountClosed,
        ],
        [R::CashDebitAccountClosed, R::CashCreditAccountClosed],
    ],
};

/// The first checks of a post or void of either kind (9–12 for transfers, 8–11 for trades):
/// it names a pending event other than itself, and sets no timeout of its own.
pub(crate) fn check_pending_reference(
    id: u128,
    pending_id: u128,
    timeout: u32,
    codes: &Codes,
) -> Result<(), EventResult> {
    if pending_id == 0 {
        return Err(R::PendingIdMustNotBeZero);
    }
    if pending_id == u128::MAX {
        return Err(R::PendingIdMustNotBeIntMax);
    }
    if pending_id == id {
        return Err(R::PendingIdMustBeDifferent);
    }
    if timeout != 0 {
        return Err(codes.timeout_reserved);
    }
    Ok(())
}

impl Pending {
    fn legs(&self) -> &[PendingLeg] {
        &self.legs[..self.leg_count]
    }

    /// Every account the event touches, in its history's role order.
    pub(crate) fn accounts(&self) -> ([u32; 4], usize) {
        let mut accounts = [0; 4];
        for (i, leg) in self.legs().iter().enumerate() {
            accounts[2 * i] = leg.debit;
            accounts[2 * i + 1] = leg.credit;
        }
        (accounts, 2 * self.leg_count)
    }
}

impl Engine {
    /// The pending transfer or trade `event`, seen as its legs.
    pub(crate) fn pending(&self, event: EventRef) -> Pending {
        let slot = event.slot();
        match event.kind() {
            EventKind::Transfer => {
                let p = self.transfers.get(slot);
                let flags = TransferFlags(p.flags);
                let leg = PendingLeg {
                    debit: p.debit_account,
                    credit: p.credit_account,
                    reserved: p.amount,
                    closes_debit: flags.contains(TransferFlags::CLOSING_DEBIT),
                    closes_credit: flags.contains(TransferFlags::CLOSING_CREDIT),
                };
                Pending {
                    event,
                    status: p.status,
                    timestamp: p.timestamp,
                    timeout: p.timeout,
                    legs: [leg; 2],
                    leg_count: 1,
                }
            }
            EventKind::Trade => {
                let p = self.trades.get(slot);
                debug_assert!(TradeFlags(p.flags).contains(TradeFlags::PENDING));
                let [instrument_debit, instrument_credit, cash_debit, cash_credit] = p.accounts;
                let leg = |debit, credit, reserved| PendingLeg {
                    debit,
                    credit,
                    reserved,
                    closes_debit: false,
                    closes_credit: false,
                };
                Pending {
                    event,
                    status: p.status,
                    timestamp: p.timestamp,
                    timeout: p.timeout,
                    legs: [
                        leg(instrument_debit, instrument_credit, p.quantity.into()),
                        leg(cash_debit, cash_credit, p.cash_amount.into()),
                    ],
                    leg_count: 2,
                }
            }
            _ => unreachable!("only transfers and trades are pending"),
        }
    }

    /// The checks a post or void of `p` at `timestamp` shares with the other kind, in order:
    /// the pending event's status, its expiry (a resolution at or after `expires_at` is too
    /// late), and — a post only — that no account of any leg is closed: only a void touches
    /// a closed account (TigerBeetle 0.17), so a closure stays pending until voided.
    /// Returns when the event would have expired, for `resolve`.
    pub(crate) fn check_resolvable(
        &self,
        p: &Pending,
        timestamp: u64,
        post: bool,
        codes: &Codes,
    ) -> Result<Option<u64>, EventResult> {
        match p.status {
            PendingStatus::Pending => {}
            PendingStatus::Posted => return Err(codes.already_posted),
            PendingStatus::Voided => return Err(codes.already_voided),
            PendingStatus::Expired => return Err(codes.expired),
            PendingStatus::NotPending => unreachable!("pending flag implies a pending status"),
        }
        let expires_at = expires_at(p.timestamp, p.timeout);
        if expires_at.is_some_and(|at| timestamp >= at) {
            return Err(codes.expired);
        }
        if post {
            for (one, closed) in p.legs().iter().zip(&codes.closed) {
                let (debit, credit) = (self.accounts.get(one.debit), self.accounts.get(one.credit));
                match leg::check_closed(debit, credit) {
                    Ok(()) => {}
                    Err(LegFailure::DebitClosed) => return Err(closed[0]),
                    Err(LegFailure::CreditClosed) => return Err(closed[1]),
                    Err(other) => unreachable!("check_closed answered {other:?}"),
                }
            }
        }
        Ok(expires_at)
    }

    /// Posts `p` (`posted`: the amount each leg moves to posted, at most what it reserved; the
    /// rest is released) or, with `None`, voids it; then its status and its place in the
    /// expiry queue (`expires_at` from `check_resolvable`). Nothing here can fail.
    pub(crate) fn resolve(
        &mut self,
        p: &Pending,
        posted: Option<[u128; 2]>,
        expires_at: Option<u64>,
    ) {
        match posted {
            Some(posted) => {
                for (leg, &amount) in p.legs().iter().zip(&posted) {
                    debug_assert!(amount <= leg.reserved);
                    self.post_leg(leg.debit, leg.credit, leg.reserved, amount);
                }
                self.set_status(p.event, PendingStatus::Posted);
            }
            None => {
                self.release(p);
                self.set_status(p.event, PendingStatus::Voided);
            }
        }
        if let Some(at) = expires_at {
            self.dequeue_expiry((at, p.timestamp, p.event));
        }
    }

    /// Releases every leg's reservation (a void, or an expiry) and reopens the accounts the
    /// event closed.
    pub(crate) fn release(&mut self, p: &Pending) {
        for leg in p.legs() {
            self.update_account(leg.debit, |a| {
                a.balances.debits_pending -= leg.reserved;
                if leg.closes_debit {
                    a.flags &= !AccountFlags::CLOSED.0;
                }
            });
            self.update_account(leg.credit, |a| {
                a.balances.credits_pending -= leg.reserved;
                if leg.closes_credit {
                    a.flags &= !AccountFlags::CLOSED.0;
                }
            });
        }
    }
}
