//! A deliberately simple reference model of the ledger (hash maps and plain arithmetic) for
//! the serial-replay check (C6): replaying the stored events in commit order through it must
//! give the results the clients saw and end on the balances the replicas hold. It knows only
//! what the load generator sends: accounts without balance limits, transfers (single-phase,
//! pending, post, void) and single-phase trades.

use std::collections::HashMap;

use tally_engine::records::{Account, Trade, Transfer, TransferFlags};
use tally_engine::{Balances, EventResult};

/// An account's four balances as a replica reports them.
pub fn balances_of(account: &Account) -> Balances {
    Balances {
        debits_pending: account.debits_pending,
        debits_posted: account.debits_posted,
        credits_pending: account.credits_pending,
        credits_posted: account.credits_posted,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PendingState {
    Pending,
    Posted,
    Voided,
}

#[derive(Clone, Copy, Debug)]
struct Reservation {
    debit: u128,
    credit: u128,
    amount: u128,
    state: PendingState,
}

/// The model's state.
#[derive(Debug, Default)]
pub struct Model {
    accounts: HashMap<u128, (u32, Balances)>,
    reservations: HashMap<u128, Reservation>,
}

impl Model {
    pub fn balances(&self, id: u128) -> Option<Balances> {
        self.accounts.get(&id).map(|(_, balances)| *balances)
    }

    pub fn create_account(&mut self, account: &Account) -> EventResult {
        if self.accounts.contains_key(&account.id) {
            return EventResult::Exists;
        }
        self.accounts
            .insert(account.id, (account.ledger, Balances::default()));
        EventResult::Ok
    }

    fn entry(&mut self, id: u128) -> &mut Balances {
        // Only called for accounts checked to exist; a missing one gets a throwaway entry
        // rather than a panic, and the balance comparison then reports it.
        &mut self.accounts.entry(id).or_default().1
    }

    pub fn transfer(&mut self, transfer: &Transfer) -> EventResult {
        let post = transfer
            .flags
            .contains(TransferFlags::POST_PENDING_TRANSFER);
        let void = transfer
            .flags
            .contains(TransferFlags::VOID_PENDING_TRANSFER);
        if post || void {
            return self.resolve(transfer, post);
        }
        let (Some(debit), Some(credit)) = (
            self.accounts.get(&transfer.debit_account_id),
            self.accounts.get(&transfer.credit_account_id),
        ) else {
            return if self.accounts.contains_key(&transfer.debit_account_id) {
                EventResult::CreditAccountNotFound
            } else {
                EventResult::DebitAccountNotFound
            };
        };
        if debit.0 != credit.0 {
            return EventResult::AccountsMustHaveTheSameLedger;
        }
        if debit.0 != transfer.ledger {
            return EventResult::TransferMustHaveTheSameLedgerAsAccounts;
        }
        let amount = transfer.amount;
        if transfer.flags.contains(TransferFlags::PENDING) {
            self.entry(transfer.debit_account_id).debits_pending += amount;
            self.entry(transfer.credit_account_id).credits_pending += amount;
            self.reservations.insert(
                transfer.id,
                Reservation {
                    debit: transfer.debit_account_id,
                    credit: transfer.credit_account_id,
                    amount,
                    state: PendingState::Pending,
                },
            );
        } else {
            self.entry(transfer.debit_account_id).debits_posted += amount;
            self.entry(transfer.credit_account_id).credits_posted += amount;
        }
        EventResult::Ok
    }

    fn resolve(&mut self, transfer: &Transfer, post: bool) -> EventResult {
        let Some(reservation) = self.reservations.get(&transfer.pending_id).copied() else {
            return EventResult::PendingTransferNotFound;
        };
        match reservation.state {
            PendingState::Posted => return EventResult::PendingTransferAlreadyPosted,
            PendingState::Voided => return EventResult::PendingTransferAlreadyVoided,
            PendingState::Pending => {}
        }
        // A post's u128::MAX and a void's 0 mean the reserved amount (docs/engine.md).
        let amount = match (post, transfer.amount) {
            (true, u128::MAX) | (false, 0) => reservation.amount,
            (_, amount) => amount,
        };
        if amount > reservation.amount {
            return EventResult::ExceedsPendingTransferAmount;
        }
        if !post && amount != reservation.amount {
            return EventResult::PendingTransferHasDifferentAmount;
        }
        let posted = if post { amount } else { 0 };
        let debit = self.entry(reservation.debit);
        debit.debits_pending -= reservation.amount;
        debit.debits_posted += posted;
        let credit = self.entry(reservation.credit);
        credit.credits_pending -= reservation.amount;
        credit.credits_posted += posted;
        if let Some(stored) = self.reservations.get_mut(&transfer.pending_id) {
            stored.state = if post {
                PendingState::Posted
            } else {
                PendingState::Voided
            };
        }
        EventResult::Ok
    }

    pub fn trade(&mut self, trade: &Trade) -> EventResult {
        let accounts = [
            (
                trade.instrument_debit_account_id,
                EventResult::InstrumentDebitAccountNotFound,
            ),
            (
                trade.instrument_credit_account_id,
                EventResult::InstrumentCreditAccountNotFound,
            ),
            (
                trade.cash_debit_account_id,
                EventResult::CashDebitAccountNotFound,
            ),
            (
                trade.cash_credit_account_id,
                EventResult::CashCreditAccountNotFound,
            ),
        ];
        let mut ledgers = [0u32; 4];
        for (slot, (id, missing)) in ledgers.iter_mut().zip(accounts) {
            match self.accounts.get(&id) {
                Some((ledger, _)) => *slot = *ledger,
                None => return missing,
            }
        }
        if trade.instrument_ledger == trade.cash_ledger {
            return EventResult::LegsMustHaveDifferentLedgers;
        }
        if ledgers[..2].iter().any(|&l| l != trade.instrument_ledger) {
            return EventResult::InstrumentAccountsMustBeOnTheInstrumentLedger;
        }
        if ledgers[2..].iter().any(|&l| l != trade.cash_ledger) {
            return EventResult::CashAccountsMustBeOnTheCashLedger;
        }
        let (quantity, cash) = (u128::from(trade.quantity), u128::from(trade.cash_amount));
        self.entry(trade.instrument_debit_account_id).debits_posted += quantity;
        self.entry(trade.instrument_credit_account_id)
            .credits_posted += quantity;
        self.entry(trade.cash_debit_account_id).debits_posted += cash;
        self.entry(trade.cash_credit_account_id).credits_posted += cash;
        EventResult::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the model's pending rules: a post moves the reservation to posted, a second
    /// resolution is refused, and a transfer to a missing account fails without changing
    /// anything.
    #[test]
    fn pending_post_void_and_missing_accounts() {
        let mut model = Model::default();
        for id in [1, 2] {
            let account = Account {
                id,
                ledger: 1,
                code: 1,
                ..Account::default()
            };
            assert_eq!(model.create_account(&account), EventResult::Ok);
        }
        let pending = Transfer {
            id: 10,
            debit_account_id: 1,
            credit_account_id: 2,
            amount: 50,
            ledger: 1,
            code: 1,
            flags: TransferFlags::PENDING,
            ..Transfer::default()
        };
        assert_eq!(model.transfer(&pending), EventResult::Ok);
        let post = Transfer {
            id: 11,
            pending_id: 10,
            flags: TransferFlags::POST_PENDING_TRANSFER,
            ..pending
        };
        assert_eq!(model.transfer(&post), EventResult::Ok);
        let void = Transfer {
            id: 12,
            flags: TransferFlags::VOID_PENDING_TRANSFER,
            ..post
        };
        assert_eq!(
            model.transfer(&void),
            EventResult::PendingTransferAlreadyPosted
        );
        let missing = Transfer {
            id: 13,
            debit_account_id: 99,
            flags: TransferFlags::default(),
            ..pending
        };
        assert_eq!(model.transfer(&missing), EventResult::DebitAccountNotFound);
        let debit = model.balances(1).expect("account 1");
        assert_eq!((debit.debits_pending, debit.debits_posted), (0, 50));
    }
}
