//! Creating accounts.

use crate::engine::{Engine, Undo};
use crate::limits::ACCOUNTS_MAX;
use crate::records::{Account, AccountFlags, RecordBytes};
use crate::result::{first_difference, EventResult};
use crate::state::{AccountSlot, AccountState, Balances};

impl Engine {
    /// Creates one account; checks in the precedence of `docs/engine.md`.
    pub(crate) fn create_account(&mut self, bytes: &RecordBytes, timestamp: u64) -> EventResult {
        use EventResult as R;
        let Ok(a) = Account::decode(bytes) else {
            return R::ReservedFlag;
        };
        if a.timestamp != 0 {
            return R::TimestampMustBeZero;
        }
        if a.id == 0 {
            return R::IdMustNotBeZero;
        }
        if a.id == u128::MAX {
            return R::IdMustNotBeIntMax;
        }
        if crate::cycle::is_reserved(a.id) {
            return R::IdMustNotBeReserved;
        }
        let constraints = AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS
            | AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS;
        if a.flags.contains(constraints) {
            return R::FlagsAreMutuallyExclusive;
        }
        // `closed` is state set by closing transfers. Refusing it here keeps an account's
        // identity (what a retry is compared with) free of state.
        if a.flags.contains(AccountFlags::CLOSED) {
            return R::ClosedFlagMustNotBeSet;
        }
        if a.debits_pending != 0
            || a.debits_posted != 0
            || a.credits_pending != 0
            || a.credits_posted != 0
        {
            return R::BalancesMustBeZero;
        }
        if a.limit != 0 && !a.flags.intersects(constraints) {
            return R::LimitRequiresBalanceConstraint;
        }
        if a.ledger == 0 {
            return R::LedgerMustNotBeZero;
        }
        if a.code == 0 {
            return R::CodeMustNotBeZero;
        }
        if let Some(slot) = self.find_account(a.id) {
            let e = self.accounts.get(slot);
            // `closed` is state that closing transfers change, not part of the identity.
            let identity = !AccountFlags::CLOSED.0;
            // The first field that differs, in TigerBeetle 0.17's order (`limit` where its
            // `user_data_32` is).
            return first_difference(&[
                (
                    e.flags & identity != a.flags.0 & identity,
                    R::ExistsWithDifferentFlags,
                ),
                (
                    e.user_data_128 != a.user_data_128,
                    R::ExistsWithDifferentUserData128,
                ),
                (
                    e.user_data_64 != a.user_data_64,
                    R::ExistsWithDifferentUserData64,
                ),
                (e.limit != a.limit, R::ExistsWithDifferentLimit),
                (e.ledger != a.ledger, R::ExistsWithDifferentLedger),
                (e.code != a.code, R::ExistsWithDifferentCode),
            ]);
        }
        if self.accounts.len() >= ACCOUNTS_MAX as usize {
            return R::CapacityExceeded;
        }
        let slot = self.accounts.push(AccountSlot::new(AccountState {
            id: a.id,
            balances: Balances::default(),
            user_data_128: a.user_data_128,
            user_data_64: a.user_data_64,
            limit: a.limit,
            timestamp,
            ledger: a.ledger,
            code: a.code,
            flags: a.flags.0,
        }));
        let hash = self.account_index.hash(a.id);
        self.account_index.insert(hash, slot);
        self.push_undo(Undo::AccountInserted);
        R::Ok
    }
}
