//! One result code per event. Business rejections are values, never errors or panics.
//!
//! The codes are checked in the order they are declared within each operation (see
//! `docs/engine.md` for the precedence per operation); the first that applies wins. The numeric
//! values are part of the wire protocol: never renumber, only append.

/// The outcome of one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u16)]
#[non_exhaustive]
pub enum EventResult {
    Ok = 0,
    // Chains.
    LinkedEventFailed = 1,
    LinkedEventChainOpen = 2,
    // Record syntax.
    ReservedFlag = 3,
    TimestampMustBeZero = 4,
    IdMustNotBeZero = 5,
    IdMustNotBeIntMax = 6,
    FlagsAreMutuallyExclusive = 7,
    // Accounts.
    BalancesMustBeZero = 8,
    LimitRequiresBalanceConstraint = 9,
    LedgerMustNotBeZero = 10,
    CodeMustNotBeZero = 11,
    // Transfers: structure.
    ClosingTransferMustBePending = 12,
    PendingIdMustBeZero = 13,
    PendingIdMustNotBeZero = 14,
    PendingIdMustNotBeIntMax = 15,
    PendingIdMustBeDifferent = 16,
    TimeoutReservedForPendingTransfer = 17,
    DebitAccountIdMustNotBeZero = 18,
    DebitAccountIdMustNotBeIntMax = 19,
    CreditAccountIdMustNotBeZero = 20,
    CreditAccountIdMustNotBeIntMax = 21,
    AccountsMustBeDifferent = 22,
    /// No longer returned: transfers of zero are allowed (TigerBeetle 0.17). The code keeps
    /// its number and meaning for clients that still decode it.
    AmountMustNotBeZero = 23,
    // Idempotency.
    ExistsWithDifferentFields = 24,
    Exists = 25,
    CapacityExceeded = 26,
    // Transfers: state.
    DebitAccountNotFound = 27,
    CreditAccountNotFound = 28,
    AccountsMustHaveTheSameLedger = 29,
    TransferMustHaveTheSameLedgerAsAccounts = 30,
    PendingTransferNotFound = 31,
    PendingTransferNotPending = 32,
    /// No longer returned: a post or void names the field that differs (codes 100–103).
    PendingTransferHasDifferentFields = 33,
    PendingTransferHasDifferentAmount = 34,
    ExceedsPendingTransferAmount = 35,
    PendingTransferAlreadyPosted = 36,
    PendingTransferAlreadyVoided = 37,
    PendingTransferExpired = 38,
    DebitAccountClosed = 39,
    CreditAccountClosed = 40,
    OverflowsDebits = 41,
    OverflowsCredits = 42,
    OverflowsTimeout = 43,
    ExceedsCredits = 44,
    ExceedsDebits = 45,
    // Trades (delivery versus payment). The instrument leg moves `quantity` from the seller's
    // instrument account (debit) to the buyer's; the cash leg moves `cash_amount` from the
    // buyer's cash account (debit) to the seller's. Leg-specific codes say which leg failed.
    TradeAccountIdMustNotBeZeroOrIntMax = 46,
    TradeAccountsMustBeDistinct = 47,
    QuantityMustNotBeZero = 48,
    CashAmountMustNotBeZero = 49,
    InstrumentDebitAccountNotFound = 50,
    InstrumentCreditAccountNotFound = 51,
    CashDebitAccountNotFound = 52,
    CashCreditAccountNotFound = 53,
    InstrumentAccountsMustHaveTheSameLedger = 54,
    CashAccountsMustHaveTheSameLedger = 55,
    LegsMustHaveDifferentLedgers = 56,
    PendingTradeNotFound = 57,
    PendingTradeNotPending = 58,
    PendingTradeHasDifferentFields = 59,
    PendingTradeAlreadyPosted = 60,
    PendingTradeAlreadyVoided = 61,
    PendingTradeExpired = 62,
    InstrumentDebitAccountClosed = 63,
    InstrumentCreditAccountClosed = 64,
    CashDebitAccountClosed = 65,
    CashCreditAccountClosed = 66,
    InstrumentOverflowsDebits = 67,
    InstrumentOverflowsCredits = 68,
    CashOverflowsDebits = 69,
    CashOverflowsCredits = 70,
    InstrumentExceedsCredits = 71,
    InstrumentExceedsDebits = 72,
    CashExceedsCredits = 73,
    CashExceedsDebits = 74,
    // Accounts (appended).
    ClosedFlagMustNotBeSet = 75,
    // Trades (appended): a trade's own code where it used to share a transfer's.
    TimeoutReservedForPendingTrade = 76,
    // Idempotency (appended): the id's first use failed with a transient result.
    IdAlreadyFailed = 77,
    // Idempotency (appended): the first field that differs from the stored event's, in the
    // order TigerBeetle 0.17 compares them (docs/engine.md). `ExistsWithDifferentFields`
    // remains for an id held by an event of the other kind (a trade's id sent as a transfer).
    ExistsWithDifferentFlags = 78,
    ExistsWithDifferentPendingId = 79,
    ExistsWithDifferentTimeout = 80,
    ExistsWithDifferentDebitAccountId = 81,
    ExistsWithDifferentCreditAccountId = 82,
    ExistsWithDifferentAmount = 83,
    ExistsWithDifferentUserData128 = 84,
    ExistsWithDifferentUserData64 = 85,
    ExistsWithDifferentUserData32 = 86,
    ExistsWithDifferentLedger = 87,
    ExistsWithDifferentCode = 88,
    ExistsWithDifferentLimit = 89,
    ExistsWithDifferentInstrumentDebitAccountId = 90,
    ExistsWithDifferentInstrumentCreditAccountId = 91,
    ExistsWithDifferentCashDebitAccountId = 92,
    ExistsWithDifferentCashCreditAccountId = 93,
    ExistsWithDifferentQuantity = 94,
    ExistsWithDifferentCashAmount = 95,
    // Transfers (appended): which part would overflow, before the sums (`OverflowsDebits`,
    // `OverflowsCredits`), as in TigerBeetle 0.17.
    OverflowsDebitsPending = 96,
    OverflowsCreditsPending = 97,
    OverflowsDebitsPosted = 98,
    OverflowsCreditsPosted = 99,
    // Transfers (appended): which field of a post or void differs from the pending
    // transfer's, as in TigerBeetle 0.17 (`PendingTransferHasDifferentFields` is no longer
    // returned; trades keep `PendingTradeHasDifferentFields`).
    PendingTransferHasDifferentDebitAccountId = 100,
    PendingTransferHasDifferentCreditAccountId = 101,
    PendingTransferHasDifferentLedger = 102,
    PendingTransferHasDifferentCode = 103,
    // Trades (appended): a new trade names its two ledgers, and its accounts must be on them,
    // so legs given the wrong way round fail instead of settling mis-legged
    // (`InstrumentAccountsMustHaveTheSameLedger` and `CashAccountsMustHaveTheSameLedger` are
    // no longer returned: these imply them).
    InstrumentLedgerMustNotBeZero = 104,
    CashLedgerMustNotBeZero = 105,
    InstrumentAccountsMustBeOnTheInstrumentLedger = 106,
    CashAccountsMustBeOnTheCashLedger = 107,
    // Reserved ids (appended): the upper half all ones is the engine's own
    // (`limits::RESERVED_ID_FIRST`: clearing accounts, a run's transfers).
    IdMustNotBeReserved = 108,
    AccountIdMustNotBeReserved = 109,
    // Net settlement (appended): instructions and settlement commands (docs/settlement.md).
    CycleMustNotBeZero = 110,
    CycleNotFound = 111,
    CycleExists = 112,
    CycleInWrongPhase = 113,
    InstructionNotFound = 114,
    InstructionSettledOrCancelled = 115,
    QuantityNotAvailable = 116,
    CancelAlreadyRequested = 117,
    RescheduleMustBeLater = 118,
    NettingLimitExceeded = 119,
    CommandKindUnknown = 120,
    CommandFieldMustBeZero = 121,
    PartyMustBeDelivererOrReceiver = 122,
    MaxAgeMustNotBeZero = 123,
    RunBreaksAccountRule = 124,
}

impl EventResult {
    /// Every code, in numeric order (for tables, decoders and tests).
    pub const ALL: [EventResult; 125] = {
        use EventResult::*;
        [
            Ok,
            LinkedEventFailed,
            LinkedEventChainOpen,
            ReservedFlag,
            TimestampMustBeZero,
            IdMustNotBeZero,
            IdMustNotBeIntMax,
            FlagsAreMutuallyExclusive,
            BalancesMustBeZero,
            LimitRequiresBalanceConstraint,
            LedgerMustNotBeZero,
            CodeMustNotBeZero,
            ClosingTransferMustBePending,
            PendingIdMustBeZero,
            PendingIdMustNotBeZero,
            PendingIdMustNotBeIntMax,
            PendingIdMustBeDifferent,
            TimeoutReservedForPendingTransfer,
            DebitAccountIdMustNotBeZero,
            DebitAccountIdMustNotBeIntMax,
            CreditAccountIdMustNotBeZero,
            CreditAccountIdMustNotBeIntMax,
            AccountsMustBeDifferent,
            AmountMustNotBeZero,
            ExistsWithDifferentFields,
            Exists,
            CapacityExceeded,
            DebitAccountNotFound,
            CreditAccountNotFound,
            AccountsMustHaveTheSameLedger,
            TransferMustHaveTheSameLedgerAsAccounts,
            PendingTransferNotFound,
            PendingTransferNotPending,
            PendingTransferHasDifferentFields,
            PendingTransferHasDifferentAmount,
            ExceedsPendingTransferAmount,
            PendingTransferAlreadyPosted,
            PendingTransferAlreadyVoided,
            PendingTransferExpired,
            DebitAccountClosed,
            CreditAccountClosed,
            OverflowsDebits,
            OverflowsCredits,
            OverflowsTimeout,
            ExceedsCredits,
            ExceedsDebits,
            TradeAccountIdMustNotBeZeroOrIntMax,
            TradeAccountsMustBeDistinct,
            QuantityMustNotBeZero,
            CashAmountMustNotBeZero,
            InstrumentDebitAccountNotFound,
            InstrumentCreditAccountNotFound,
            CashDebitAccountNotFound,
            CashCreditAccountNotFound,
            InstrumentAccountsMustHaveTheSameLedger,
            CashAccountsMustHaveTheSameLedger,
            LegsMustHaveDifferentLedgers,
            PendingTradeNotFound,
            PendingTradeNotPending,
            PendingTradeHasDifferentFields,
            PendingTradeAlreadyPosted,
            PendingTradeAlreadyVoided,
            PendingTradeExpired,
            InstrumentDebitAccountClosed,
            InstrumentCreditAccountClosed,
            CashDebitAccountClosed,
            CashCreditAccountClosed,
            InstrumentOverflowsDebits,
            InstrumentOverflowsCredits,
            CashOverflowsDebits,
            CashOverflowsCredits,
            InstrumentExceedsCredits,
            InstrumentExceedsDebits,
            CashExceedsCredits,
            CashExceedsDebits,
            ClosedFlagMustNotBeSet,
            TimeoutReservedForPendingTrade,
            IdAlreadyFailed,
            ExistsWithDifferentFlags,
            ExistsWithDifferentPendingId,
            ExistsWithDifferentTimeout,
            ExistsWithDifferentDebitAccountId,
            ExistsWithDifferentCreditAccountId,
            ExistsWithDifferentAmount,
            ExistsWithDifferentUserData128,
            ExistsWithDifferentUserData64,
            ExistsWithDifferentUserData32,
            ExistsWithDifferentLedger,
            ExistsWithDifferentCode,
            ExistsWithDifferentLimit,
            ExistsWithDifferentInstrumentDebitAccountId,
            ExistsWithDifferentInstrumentCreditAccountId,
            ExistsWithDifferentCashDebitAccountId,
            ExistsWithDifferentCashCreditAccountId,
            ExistsWithDifferentQuantity,
            ExistsWithDifferentCashAmount,
            OverflowsDebitsPending,
            OverflowsCreditsPending,
            OverflowsDebitsPosted,
            OverflowsCreditsPosted,
            PendingTransferHasDifferentDebitAccountId,
            PendingTransferHasDifferentCreditAccountId,
            PendingTransferHasDifferentLedger,
            PendingTransferHasDifferentCode,
            InstrumentLedgerMustNotBeZero,
            CashLedgerMustNotBeZero,
            InstrumentAccountsMustBeOnTheInstrumentLedger,
            CashAccountsMustBeOnTheCashLedger,
            IdMustNotBeReserved,
            AccountIdMustNotBeReserved,
            CycleMustNotBeZero,
            CycleNotFound,
            CycleExists,
            CycleInWrongPhase,
            InstructionNotFound,
            InstructionSettledOrCancelled,
            QuantityNotAvailable,
            CancelAlreadyRequested,
            RescheduleMustBeLater,
            NettingLimitExceeded,
            CommandKindUnknown,
            CommandFieldMustBeZero,
            PartyMustBeDelivererOrReceiver,
            MaxAgeMustNotBeZero,
            RunBreaksAccountRule,
        ]
    };

    /// Whether the result depends on state that may change, so that the same event could
    /// succeed later: an account or pending event not there yet, an account closed (a void of
    /// its closing transfer reopens it), a balance too low or too high. The id of an event
    /// that fails so is remembered and a later use of it gets `id_already_failed`: one id, one
    /// outcome. Every other failure follows from the record and what it names, which do not
    /// change (an account's ledger, a pending event's amount or fate, the clock's direction),
    /// so a retry fails the same way and nothing needs remembering.
    pub fn is_transient(self) -> bool {
        use EventResult::*;
        matches!(
            self,
            DebitAccountNotFound
                | CreditAccountNotFound
                | PendingTransferNotFound
                | DebitAccountClosed
                | CreditAccountClosed
                | OverflowsDebits
                | OverflowsCredits
                | OverflowsDebitsPending
                | OverflowsCreditsPending
                | OverflowsDebitsPosted
                | OverflowsCreditsPosted
                | ExceedsCredits
                | ExceedsDebits
                | InstrumentDebitAccountNotFound
                | InstrumentCreditAccountNotFound
                | CashDebitAccountNotFound
                | CashCreditAccountNotFound
                | PendingTradeNotFound
                | InstrumentDebitAccountClosed
                | InstrumentCreditAccountClosed
                | CashDebitAccountClosed
                | CashCreditAccountClosed
                | InstrumentOverflowsDebits
                | InstrumentOverflowsCredits
                | CashOverflowsDebits
                | CashOverflowsCredits
                | InstrumentExceedsCredits
                | InstrumentExceedsDebits
                | CashExceedsCredits
                | CashExceedsDebits
        )
    }

    /// The code as it travels on the wire.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// The result for a wire code, or `None` for a code this build does not know.
    pub fn from_code(code: u16) -> Option<EventResult> {
        Self::ALL.get(usize::from(code)).copied()
    }
}

/// `Exists`, or the code of the first of `differences` (a field differs, its code) that holds:
/// idempotency's answer for an id that is taken, fields compared in the documented order.
pub(crate) fn first_difference(differences: &[(bool, EventResult)]) -> EventResult {
    differences
        .iter()
        .find(|(differs, _)| *differs)
        .map_or(EventResult::Exists, |&(_, code)| code)
}

impl std::fmt::Display for EventResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The Debug name in snake_case is the documented name of each code (a number is a
        // word of its own: `user_data_128`).
        let name = format!("{self:?}");
        let mut out = String::with_capacity(name.len() + 8);
        let mut previous: Option<char> = None;
        for c in name.chars() {
            let starts_word = c.is_ascii_uppercase()
                || (c.is_ascii_digit() && previous.is_some_and(|p| !p.is_ascii_digit()));
            if starts_word && previous.is_some() {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            previous = Some(c);
        }
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::EventResult;

    /// Proves the table of codes is dense and each code maps back to itself.
    #[test]
    fn codes_round_trip() {
        for (i, r) in EventResult::ALL.iter().enumerate() {
            assert_eq!(usize::from(r.code()), i);
            assert_eq!(EventResult::from_code(r.code()), Some(*r));
        }
        assert_eq!(EventResult::from_code(EventResult::ALL.len() as u16), None);
        assert_eq!(
            EventResult::ExceedsCredits.to_string(),
            "exceeds_credits".to_string()
        );
        assert_eq!(
            EventResult::ExistsWithDifferentUserData128.to_string(),
            "exists_with_different_user_data_128".to_string()
        );
    }
}
