//! One movement between a debit and a credit account: the checks and the balance changes shared
//! by transfers and by each leg of a trade.

use crate::engine::Engine;
use crate::records::AccountFlags;
use crate::state::AccountState;

/// Why a leg cannot move. Transfers and trades map these to their own result codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LegFailure {
    DebitClosed,
    CreditClosed,
    OverflowsDebitsPending,
    OverflowsCreditsPending,
    OverflowsDebitsPosted,
    OverflowsCreditsPosted,
    OverflowsDebits,
    OverflowsCredits,
    ExceedsCredits,
    ExceedsDebits,
}

#[inline(always)]
pub(crate) fn check_closed(debit: &AccountState, credit: &AccountState) -> Result<(), LegFailure> {
    if debit.flags().contains(AccountFlags::CLOSED) {
        return Err(LegFailure::DebitClosed);
    }
    if credit.flags().contains(AccountFlags::CLOSED) {
        return Err(LegFailure::CreditClosed);
    }
    Ok(())
}

/// Overflow, part by part and then in sum, in TigerBeetle 0.17's order: with `pending`, the
/// debit account's debits pending and the credit account's credits pending plus `amount`;
/// then their posted sides (checked for a reservation too, as TigerBeetle does: it may be
/// posted); then pending plus posted plus `amount` on each side. The sum bounds each of its
/// parts, and posting or voiding never increases it, so these checks (made whenever an amount
/// is added) keep every balance field from overflowing.
#[inline(always)]
pub(crate) fn check_overflow(
    debit: &AccountState,
    credit: &AccountState,
    amount: u128,
    pending: bool,
) -> Result<(), LegFailure> {
    let (d, c) = (&debit.balances, &credit.balances);
    // Three values under 2^126 sum to under 2^128: the common case, one test.
    if (d.debits_pending | d.debits_posted | c.credits_pending | c.credits_posted | amount)
        < 1 << 126
    {
        return Ok(());
    }
    let overflows = |a: u128, b: u128| a.checked_add(b).is_none();
    if pending && overflows(d.debits_pending, amount) {
        return Err(LegFailure::OverflowsDebitsPending);
    }
    if pending && overflows(c.credits_pending, amount) {
        return Err(LegFailure::OverflowsCreditsPending);
    }
    if overflows(d.debits_posted, amount) {
        return Err(LegFailure::OverflowsDebitsPosted);
    }
    if overflows(c.credits_posted, amount) {
        return Err(LegFailure::OverflowsCreditsPosted);
    }
    if d.debits_pending
        .checked_add(d.debits_posted)
        .and_then(|s| s.checked_add(amount))
        .is_none()
    {
        return Err(LegFailure::OverflowsDebits);
    }
    if c.credits_pending
        .checked_add(c.credits_posted)
        .and_then(|s| s.checked_add(amount))
        .is_none()
    {
        return Err(LegFailure::OverflowsCredits);
    }
    Ok(())
}

/// The balance constraints, counting pending amounts. Call after `check_overflow`.
#[inline(always)]
pub(crate) fn check_balance(
    debit: &AccountState,
    credit: &AccountState,
    amount: u128,
) -> Result<(), LegFailure> {
    let d = &debit.balances;
    if debit
        .flags()
        .contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
        && d.debits_pending + d.debits_posted + amount
            > d.credits_posted.saturating_add(u128::from(debit.limit))
    {
        return Err(LegFailure::ExceedsCredits);
    }
    let c = &credit.balances;
    if credit
        .flags()
        .contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
        && c.credits_pending + c.credits_posted + amount
            > c.debits_posted.saturating_add(u128::from(credit.limit))
    {
        return Err(LegFailure::ExceedsDebits);
    }
    Ok(())
}

/// What the debit account can still give: credits posted plus its limit, less debits (floored
/// at 0, and `u128::MAX` when the true value is larger).
pub(crate) fn debit_available(debit: &AccountState) -> u128 {
    let d = &debit.balances;
    available(
        d.credits_posted,
        debit.limit,
        d.debits_pending,
        d.debits_posted,
    )
}

/// What the credit account can still take: debits posted plus its limit, less credits.
pub(crate) fn credit_available(credit: &AccountState) -> u128 {
    let c = &credit.balances;
    available(
        c.debits_posted,
        credit.limit,
        c.credits_pending,
        c.credits_posted,
    )
}

/// `min(u128::MAX, max(0, posted + limit − pending_used − posted_used))` in exact arithmetic.
/// Saturating the sum early would cap a balancing transfer at what fits instead of reporting
/// the overflow the exact amount causes (found by the model test).
fn available(posted: u128, limit: u64, pending_used: u128, posted_used: u128) -> u128 {
    let used = pending_used.saturating_add(posted_used);
    match posted.checked_add(u128::from(limit)) {
        Some(room) => room.saturating_sub(used),
        // room = 2¹²⁸ + wrapped: more than u128::MAX unless `used` exceeds `wrapped`.
        None => {
            let wrapped = posted.wrapping_add(u128::from(limit));
            if used <= wrapped {
                u128::MAX
            } else {
                u128::MAX - (used - wrapped - 1)
            }
        }
    }
}

impl Engine {
    /// Moves `amount` from `debit` to `credit`, as a reservation or posted. Checked before.
    #[inline(always)]
    pub(crate) fn move_leg(&mut self, debit: u32, credit: u32, amount: u128, pending: bool) {
        if pending {
            self.update_account(debit, |a| a.balances.debits_pending += amount);
            self.update_account(credit, |a| a.balances.credits_pending += amount);
        } else {
            self.update_account(debit, |a| a.balances.debits_posted += amount);
            self.update_account(credit, |a| a.balances.credits_posted += amount);
        }
    }

    /// Turns a reservation of `reserved` into `posted` (≤ `reserved`); the rest is released.
    pub(crate) fn post_leg(&mut self, debit: u32, credit: u32, reserved: u128, posted: u128) {
        self.update_account(debit, |a| {
            a.balances.debits_pending -= reserved;
            a.balances.debits_posted += posted;
        });
        self.update_account(credit, |a| {
            a.balances.credits_pending -= reserved;
            a.balances.credits_posted += posted;
        });
    }
}
