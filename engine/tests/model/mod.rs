//! A reference model of the engine, written from `docs/engine.md` alone, for obviousness and
//! not for speed: `BTreeMap`s, whole-state clones for linked chains, u128 arithmetic with
//! explicit overflow checks, and a full per-account log that answers every query by scanning.
//!
//! Every rule carries the number it has in `docs/engine.md`, so a discrepancy with the engine
//! can be traced to one line of the spec. Where the spec is ambiguous, the choice made here is
//! marked `AMBIGUITY` and reported; it is never bent to match the engine.

#![allow(dead_code)]

pub mod generate;

use std::collections::{BTreeMap, BTreeSet};

use tally_engine::{
    Account, AccountFlags, EventResult as R, Trade, TradeFlags, Transfer, TransferFlags,
};

/// Size of one record.
pub const RECORD_BYTES: usize = 128;
/// Events per batch at most (`limits::BATCH_EVENTS_MAX`).
pub const BATCH_EVENTS_MAX: usize = 8_189;
/// Entries per statement at most (`limits::STATEMENT_ENTRIES_MAX`).
pub const STATEMENT_ENTRIES_MAX: u32 = 8_189;
/// Nanoseconds per second of `timeout`.
pub const NANOSECONDS_PER_SECOND: u128 = 1_000_000_000;

/// Which records a batch holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Accounts,
    Transfers,
    Trades,
    /// Transfers and trades in one batch: bit 15 of a record's flags marks a trade.
    Settlements,
}

/// docs/records.md: in a settlement batch, flag bit 15 marks a trade.
pub const SETTLEMENT_TRADE_BIT: u16 = 1 << 15;

/// A settlement batch's record: whether it is a trade, and the record without the bit.
pub fn settlement_record(record: &[u8; RECORD_BYTES]) -> (bool, [u8; RECORD_BYTES]) {
    let flags = u16::from_le_bytes([record[118], record[119]]);
    let mut plain = *record;
    plain[118..120].copy_from_slice(&(flags & !SETTLEMENT_TRADE_BIT).to_le_bytes());
    (flags & SETTLEMENT_TRADE_BIT != 0, plain)
}

/// The four balances of an account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bal {
    pub debits_pending: u128,
    pub debits_posted: u128,
    pub credits_pending: u128,
    pub credits_posted: u128,
}

/// One entry of an account's statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MEvent {
    Transfer(Transfer),
    Trade(Trade),
    TransferExpired { pending_id: u128 },
    TradeExpired { pending_id: u128 },
}

/// A statement's account filter, as the model reads it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MFilter {
    pub user_data_128: u128,
    pub user_data_64: u64,
    pub user_data_32: u32,
    pub code: u16,
    pub debits: bool,
    pub credits: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MEntry {
    pub timestamp: u64,
    pub event: MEvent,
    pub balances_after: Bal,
}

#[derive(Clone, Debug)]
pub struct MAccount {
    /// The account as created (balances zero, original flags, timestamp set).
    pub created: Account,
    /// Current flags (`closed` comes and goes with closing transfers).
    pub flags: AccountFlags,
    pub bal: Bal,
    /// Every change of this account, oldest first.
    pub log: Vec<MEntry>,
}

impl MAccount {
    pub fn closed(&self) -> bool {
        self.flags.contains(AccountFlags::CLOSED)
    }
    pub fn debits_must_not_exceed_credits(&self) -> bool {
        self.flags
            .contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
    }
    pub fn credits_must_not_exceed_debits(&self) -> bool {
        self.flags
            .contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
    }
}

/// A stored event: transfers and trades share one id space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    Transfer(Transfer),
    Trade(Trade),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pending,
    Posted,
    Voided,
    Expired,
}

/// State of something created with the `pending` flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingState {
    pub status: Status,
    /// 0 = never.
    pub expires_at: u64,
    pub created_at: u64,
    pub is_trade: bool,
}

/// What `apply` returns for a well-formed batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub failures: Vec<(u32, R)>,
    pub timestamp_first: u64,
    pub timestamp_last: u64,
}

/// Query errors the spec names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QErr {
    AccountNotFound,
    LimitMustNotBeZero,
}

#[derive(Clone, Debug, Default)]
pub struct Model {
    pub accounts: BTreeMap<u128, MAccount>,
    pub events: BTreeMap<u128, Stored>,
    pub pending: BTreeMap<u128, PendingState>,
    pub last_timestamp: u64,
    /// Ids of transfers and trades that failed transiently: never used again.
    pub failed: BTreeSet<u128>,
}

/// docs/engine.md, "Idempotency": the results that depend on state that may change (missing
/// accounts or pending events, closed accounts, overflow, limits), for transfers and trades.
fn transient(r: R) -> bool {
    matches!(
        r,
        R::DebitAccountNotFound
            | R::CreditAccountNotFound
            | R::PendingTransferNotFound
            | R::DebitAccountClosed
            | R::CreditAccountClosed
            | R::OverflowsDebits
            | R::OverflowsCredits
            | R::OverflowsDebitsPending
            | R::OverflowsCreditsPending
            | R::OverflowsDebitsPosted
            | R::OverflowsCreditsPosted
            | R::ExceedsCredits
            | R::ExceedsDebits
            | R::InstrumentDebitAccountNotFound
            | R::InstrumentCreditAccountNotFound
            | R::CashDebitAccountNotFound
            | R::CashCreditAccountNotFound
            | R::PendingTradeNotFound
            | R::InstrumentDebitAccountClosed
            | R::InstrumentCreditAccountClosed
            | R::CashDebitAccountClosed
            | R::CashCreditAccountClosed
            | R::InstrumentOverflowsDebits
            | R::InstrumentOverflowsCredits
            | R::CashOverflowsDebits
            | R::CashOverflowsCredits
            | R::InstrumentExceedsCredits
            | R::InstrumentExceedsDebits
            | R::CashExceedsCredits
            | R::CashExceedsDebits
    )
}

fn add3(a: u128, b: u128, c: u128) -> Option<u128> {
    a.checked_add(b)?.checked_add(c)
}

/// `x + limit`, or `None` when it passes u128::MAX (then nothing can exceed it).
fn plus_limit(x: u128, limit: u64) -> Option<u128> {
    x.checked_add(u128::from(limit))
}

/// `positive + limit - negative`, floored at 0 and saturated at u128::MAX (rule 27).
fn available(positive: u128, limit: u64, negative_a: u128, negative_b: u128) -> u128 {
    // negative_a + negative_b never overflows: overflow checks keep each side's sum in range.
    let negative = negative_a.saturating_add(negative_b);
    let limit = u128::from(limit);
    if negative <= positive {
        (positive - negative).saturating_add(limit)
    } else {
        limit.saturating_sub(negative - positive)
    }
}

fn tf(t: &Transfer, f: TransferFlags) -> bool {
    t.flags.contains(f)
}

fn df(t: &Trade, f: TradeFlags) -> bool {
    t.flags.contains(f)
}

/// Zero in a post/void request matches the stored (inherited) value.
fn same_or_inherited<T: PartialEq + Default>(request: T, stored: T, inherits: bool) -> bool {
    request == stored || (inherits && request == T::default())
}

/// The first of `checks` (a field differs, its code) that applies, else `exists`.
fn first_difference(checks: &[(bool, R)]) -> R {
    checks
        .iter()
        .find(|(differs, _)| *differs)
        .map_or(R::Exists, |&(_, code)| code)
}

/// Idempotency for transfers (docs/engine.md "Idempotency"): `exists` or the first field that
/// differs; `pending_amount`: the amount of the pending transfer a stored post or void
/// resolved.
pub fn transfer_exists_result(stored: &Transfer, request: &Transfer, pending_amount: u128) -> R {
    let inherits = request
        .flags
        .intersects(TransferFlags::POST_PENDING_TRANSFER | TransferFlags::VOID_PENDING_TRANSFER);
    let balancing = stored
        .flags
        .intersects(TransferFlags::BALANCING_DEBIT | TransferFlags::BALANCING_CREDIT);
    let amount = if inherits {
        // The amount that means "the pending amount" (a post's u128::MAX, a void's 0) matches
        // a stored post or void that moved exactly that.
        let whole = if tf(request, TransferFlags::POST_PENDING_TRANSFER) {
            u128::MAX
        } else {
            0
        };
        request.amount == stored.amount
            || (request.amount == whole && stored.amount == pending_amount)
    } else if balancing {
        request.amount >= stored.amount
    } else {
        request.amount == stored.amount
    };
    let differs = |request: u128, stored: u128| !same_or_inherited(request, stored, inherits);
    first_difference(&[
        (request.flags != stored.flags, R::ExistsWithDifferentFlags),
        (
            request.pending_id != stored.pending_id,
            R::ExistsWithDifferentPendingId,
        ),
        (
            request.timeout != stored.timeout,
            R::ExistsWithDifferentTimeout,
        ),
        (
            differs(request.debit_account_id, stored.debit_account_id),
            R::ExistsWithDifferentDebitAccountId,
        ),
        (
            differs(request.credit_account_id, stored.credit_account_id),
            R::ExistsWithDifferentCreditAccountId,
        ),
        (!amount, R::ExistsWithDifferentAmount),
        (
            differs(request.user_data_128, stored.user_data_128),
            R::ExistsWithDifferentUserData128,
        ),
        (
            differs(request.user_data_64.into(), stored.user_data_64.into()),
            R::ExistsWithDifferentUserData64,
        ),
        (
            differs(request.user_data_32.into(), stored.user_data_32.into()),
            R::ExistsWithDifferentUserData32,
        ),
        (
            differs(request.ledger.into(), stored.ledger.into()),
            R::ExistsWithDifferentLedger,
        ),
        (
            differs(request.code.into(), stored.code.into()),
            R::ExistsWithDifferentCode,
        ),
    ])
}

/// Idempotency for trades: `exists` or the first field that differs.
pub fn trade_exists_result(stored: &Trade, request: &Trade) -> R {
    let inherits = request
        .flags
        .intersects(TradeFlags::POST_PENDING_TRADE | TradeFlags::VOID_PENDING_TRADE);
    let differs = |request: u128, stored: u128| !same_or_inherited(request, stored, inherits);
    first_difference(&[
        (request.flags != stored.flags, R::ExistsWithDifferentFlags),
        (
            request.pending_id != stored.pending_id,
            R::ExistsWithDifferentPendingId,
        ),
        (
            request.timeout != stored.timeout,
            R::ExistsWithDifferentTimeout,
        ),
        (
            differs(
                request.instrument_debit_account_id,
                stored.instrument_debit_account_id,
            ),
            R::ExistsWithDifferentInstrumentDebitAccountId,
        ),
        (
            differs(
                request.instrument_credit_account_id,
                stored.instrument_credit_account_id,
            ),
            R::ExistsWithDifferentInstrumentCreditAccountId,
        ),
        (
            differs(request.cash_debit_account_id, stored.cash_debit_account_id),
            R::ExistsWithDifferentCashDebitAccountId,
        ),
        (
            differs(
                request.cash_credit_account_id,
                stored.cash_credit_account_id,
            ),
            R::ExistsWithDifferentCashCreditAccountId,
        ),
        (
            differs(request.quantity.into(), stored.quantity.into()),
            R::ExistsWithDifferentQuantity,
        ),
        (
            differs(request.cash_amount.into(), stored.cash_amount.into()),
            R::ExistsWithDifferentCashAmount,
        ),
        (
            differs(request.user_data_64.into(), stored.user_data_64.into()),
            R::ExistsWithDifferentUserData64,
        ),
        (
            (request.instrument_ledger, request.cash_ledger)
                != (stored.instrument_ledger, stored.cash_ledger),
            R::ExistsWithDifferentLedger,
        ),
        (
            differs(request.code.into(), stored.code.into()),
            R::ExistsWithDifferentCode,
        ),
    ])
}

/// Which part overflows first when `amount` is added to a leg (docs/engine.md, transfers 28):
/// with `pending`, debits pending then credits pending; then debits posted, credits posted;
/// then each side's pending + posted sum. `true` in the second place: the debit side.
fn overflow(d: Bal, c: Bal, amount: u128, pending: bool) -> Option<(&'static str, bool)> {
    let over = |a: u128, b: u128| a.checked_add(b).is_none();
    let parts = [
        (pending && over(d.debits_pending, amount), ("pending", true)),
        (
            pending && over(c.credits_pending, amount),
            ("pending", false),
        ),
        (over(d.debits_posted, amount), ("posted", true)),
        (over(c.credits_posted, amount), ("posted", false)),
        (
            add3(d.debits_pending, d.debits_posted, amount).is_none(),
            ("sum", true),
        ),
        (
            add3(c.credits_pending, c.credits_posted, amount).is_none(),
            ("sum", false),
        ),
    ];
    parts.iter().find(|(hit, _)| *hit).map(|&(_, part)| part)
}

impl Model {
    pub fn new() -> Model {
        Model::default()
    }

    // ------------------------------------------------------------------ batches and time

    /// An entry with no batch (the leader's expiry tick): what is due at its time expires,
    /// nothing else happens. Returns how many expired.
    pub fn expire_due(&mut self, entry_timestamp: u64) -> usize {
        if entry_timestamp > 1 << 62 {
            return 0;
        }
        let now = entry_timestamp.max(self.last_timestamp + 1);
        let before = self
            .pending
            .values()
            .filter(|p| p.status == Status::Expired)
            .count();
        self.last_timestamp = self.expire_until(now);
        self.pending
            .values()
            .filter(|p| p.status == Status::Expired)
            .count()
            - before
    }

    /// Expires every pending event due at `now`, in (expires_at, creation order), each at its
    /// own expires_at or just after the one before (unique timestamps); returns the last
    /// timestamp used (`last_timestamp` if none).
    fn expire_until(&mut self, now: u64) -> u64 {
        let mut due: Vec<(u64, u64, u128)> = self
            .pending
            .iter()
            .filter(|(_, p)| {
                p.status == Status::Pending && p.expires_at != 0 && p.expires_at <= now
            })
            .map(|(id, p)| (p.expires_at, p.created_at, *id))
            .collect();
        due.sort();
        let mut previous = self.last_timestamp;
        for (expires_at, _, id) in due {
            let timestamp = expires_at.max(previous + 1);
            self.expire(id, timestamp);
            previous = timestamp;
        }
        previous
    }

    /// `Err(())` for a malformed batch (the engine's `BatchError`), which changes nothing.
    pub fn apply(&mut self, op: Op, entry_timestamp: u64, body: &[u8]) -> Result<Outcome, ()> {
        if body.is_empty() || !body.len().is_multiple_of(RECORD_BYTES) {
            return Err(());
        }
        let n = body.len() / RECORD_BYTES;
        if n > BATCH_EVENTS_MAX {
            return Err(());
        }
        // Entry timestamps past 2^62 (the year 2116) are a malformed batch.
        if entry_timestamp > 1 << 62 {
            return Err(());
        }
        let records: Vec<[u8; RECORD_BYTES]> = body
            .chunks_exact(RECORD_BYTES)
            .map(|c| c.try_into().expect("chunk of RECORD_BYTES"))
            .collect();

        // 1. now
        let now = entry_timestamp.max(self.last_timestamp + 1);
        // 2. expiry first.
        let previous = self.expire_until(now);
        // 3. events
        let base = now.max(previous + 1);
        let linked = |i: usize| {
            u16::from_le_bytes([records[i][118], records[i][119]]) & TransferFlags::LINKED.0 != 0
        };
        let mut results = vec![R::Ok; n];
        let mut i = 0;
        while i < n {
            let mut end = i;
            while end < n && linked(end) {
                end += 1;
            }
            let open = end == n;
            let end = end.min(n - 1);
            let is_chain = end > i || open;
            let saved = if is_chain { Some(self.clone()) } else { None };
            let mut failed = false;
            let mut failed_ids = Vec::new();
            for k in i..=end {
                if failed {
                    results[k] = R::LinkedEventFailed;
                    continue;
                }
                if open && k == end {
                    results[k] = R::LinkedEventChainOpen;
                    failed = true;
                    continue;
                }
                let ts = base + k as u64;
                let r = match op {
                    Op::Accounts => self.create_account(&records[k], ts),
                    Op::Transfers => self.create_transfer(&records[k], ts),
                    Op::Trades => self.create_trade(&records[k], ts),
                    Op::Settlements => match settlement_record(&records[k]) {
                        (true, trade) => self.create_trade(&trade, ts),
                        (false, transfer) => self.create_transfer(&transfer, ts),
                    },
                };
                if transient(r) {
                    let id = u128::from_le_bytes(records[k][..16].try_into().expect("16 bytes"));
                    self.failed.insert(id);
                    failed_ids.push(id);
                }
                if r != R::Ok {
                    results[k] = r;
                    failed = true;
                }
            }
            if failed {
                if let Some(saved) = saved {
                    *self = saved;
                    // A transient failure stays remembered when its chain rolls back.
                    self.failed.extend(failed_ids);
                    for r in &mut results[i..=end] {
                        if *r == R::Ok {
                            *r = R::LinkedEventFailed;
                        }
                    }
                }
            }
            i = end + 1;
        }
        let last = base + n as u64 - 1;
        self.last_timestamp = last;
        Ok(Outcome {
            failures: results
                .iter()
                .enumerate()
                .filter(|(_, r)| **r != R::Ok)
                .map(|(i, r)| (i as u32, *r))
                .collect(),
            timestamp_first: base,
            timestamp_last: last,
        })
    }

    fn account_mut(&mut self, id: u128) -> &mut MAccount {
        self.accounts.get_mut(&id).expect("model: account exists")
    }

    fn log(&mut self, id: u128, timestamp: u64, event: MEvent) {
        let a = self.account_mut(id);
        let balances_after = a.bal;
        a.log.push(MEntry {
            timestamp,
            event,
            balances_after,
        });
    }

    fn expire(&mut self, id: u128, timestamp: u64) {
        self.pending.get_mut(&id).expect("pending").status = Status::Expired;
        match self.events[&id] {
            Stored::Transfer(t) => {
                self.release_transfer(&t, 0);
                self.log(
                    t.debit_account_id,
                    timestamp,
                    MEvent::TransferExpired { pending_id: id },
                );
                self.log(
                    t.credit_account_id,
                    timestamp,
                    MEvent::TransferExpired { pending_id: id },
                );
            }
            Stored::Trade(d) => {
                self.release_trade(&d, false);
                for a in trade_accounts(&d) {
                    self.log(a, timestamp, MEvent::TradeExpired { pending_id: id });
                }
            }
        }
    }

    /// Releases a pending transfer's reservation, posting `posted` of it; without a post the
    /// closing flags it set are undone.
    fn release_transfer(&mut self, pending: &Transfer, posted: u128) {
        let amount = pending.amount;
        let reopen_debit = posted == 0 && tf(pending, TransferFlags::CLOSING_DEBIT);
        let reopen_credit = posted == 0 && tf(pending, TransferFlags::CLOSING_CREDIT);
        let dr = self.account_mut(pending.debit_account_id);
        dr.bal.debits_pending -= amount;
        dr.bal.debits_posted += posted;
        if reopen_debit {
            dr.flags = AccountFlags(dr.flags.0 & !AccountFlags::CLOSED.0);
        }
        let cr = self.account_mut(pending.credit_account_id);
        cr.bal.credits_pending -= amount;
        cr.bal.credits_posted += posted;
        if reopen_credit {
            cr.flags = AccountFlags(cr.flags.0 & !AccountFlags::CLOSED.0);
        }
    }

    fn release_trade(&mut self, pending: &Trade, post: bool) {
        let legs = [
            (
                pending.instrument_debit_account_id,
                pending.instrument_credit_account_id,
                pending.quantity,
            ),
            (
                pending.cash_debit_account_id,
                pending.cash_credit_account_id,
                pending.cash_amount,
            ),
        ];
        for (debit, credit, amount) in legs {
            let amount = u128::from(amount);
            let posted = if post { amount } else { 0 };
            let dr = self.account_mut(debit);
            dr.bal.debits_pending -= amount;
            dr.bal.debits_posted += posted;
            let cr = self.account_mut(credit);
            cr.bal.credits_pending -= amount;
            cr.bal.credits_posted += posted;
        }
    }

    // ------------------------------------------------------------------ accounts

    fn create_account(&mut self, record: &[u8; RECORD_BYTES], timestamp: u64) -> R {
        let Ok(a) = Account::decode(record) else {
            return R::ReservedFlag; // 3
        };
        if a.timestamp != 0 {
            return R::TimestampMustBeZero; // 4
        }
        if a.id == 0 {
            return R::IdMustNotBeZero; // 5
        }
        if a.id == u128::MAX {
            return R::IdMustNotBeIntMax; // 6
        }
        if reserved(a.id) {
            return R::IdMustNotBeReserved; // 6a
        }
        let dmnec = a
            .flags
            .contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS);
        let cmned = a
            .flags
            .contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS);
        if dmnec && cmned {
            return R::FlagsAreMutuallyExclusive; // 7
        }
        if a.flags.contains(AccountFlags::CLOSED) {
            return R::ClosedFlagMustNotBeSet; // 7a
        }
        if a.debits_pending != 0
            || a.debits_posted != 0
            || a.credits_pending != 0
            || a.credits_posted != 0
        {
            return R::BalancesMustBeZero; // 8
        }
        if a.limit != 0 && !dmnec && !cmned {
            return R::LimitRequiresBalanceConstraint; // 9
        }
        if a.ledger == 0 {
            return R::LedgerMustNotBeZero; // 10
        }
        if a.code == 0 {
            return R::CodeMustNotBeZero; // 11
        }
        if let Some(stored) = self.accounts.get(&a.id) {
            // 12. "All fields but timestamp" of the account *as created* (zero balances, the
            // flags it was created with, never `closed`), not its current balances/flags.
            let created = Account {
                timestamp: 0,
                ..stored.created
            };
            return first_difference(&[
                (created.flags != a.flags, R::ExistsWithDifferentFlags),
                (
                    created.user_data_128 != a.user_data_128,
                    R::ExistsWithDifferentUserData128,
                ),
                (
                    created.user_data_64 != a.user_data_64,
                    R::ExistsWithDifferentUserData64,
                ),
                (created.limit != a.limit, R::ExistsWithDifferentLimit),
                (created.ledger != a.ledger, R::ExistsWithDifferentLedger),
                (created.code != a.code, R::ExistsWithDifferentCode),
            ]);
        }
        self.accounts.insert(
            a.id,
            MAccount {
                created: Account { timestamp, ..a },
                flags: a.flags,
                bal: Bal::default(),
                log: Vec::new(),
            },
        );
        R::Ok
    }

    // ------------------------------------------------------------------ transfers

    fn create_transfer(&mut self, record: &[u8; RECORD_BYTES], timestamp: u64) -> R {
        let Ok(t) = Transfer::decode(record) else {
            return R::ReservedFlag; // 3
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
        if reserved(t.id) {
            return R::IdMustNotBeReserved;
        }
        if self.failed.contains(&t.id) {
            return R::IdAlreadyFailed;
        }
        if let Some(r) = self.exists_transfer(&t) {
            return r;
        }
        let pending = tf(&t, TransferFlags::PENDING);
        let post = tf(&t, TransferFlags::POST_PENDING_TRANSFER);
        let void = tf(&t, TransferFlags::VOID_PENDING_TRANSFER);
        let balancing_debit = tf(&t, TransferFlags::BALANCING_DEBIT);
        let balancing_credit = tf(&t, TransferFlags::BALANCING_CREDIT);
        let closing = t
            .flags
            .intersects(TransferFlags::CLOSING_DEBIT | TransferFlags::CLOSING_CREDIT);
        // 7. A post or void takes no balancing or closing flag.
        if u8::from(pending) + u8::from(post) + u8::from(void) > 1
            || ((balancing_debit || balancing_credit || closing) && (post || void))
        {
            return R::FlagsAreMutuallyExclusive; // 7
        }
        if post || void {
            self.post_or_void_transfer(t, post, timestamp)
        } else {
            self.new_transfer(t, timestamp)
        }
    }

    fn exists_transfer(&self, t: &Transfer) -> Option<R> {
        match self.events.get(&t.id)? {
            Stored::Transfer(stored) => {
                let pending_amount = match self.events.get(&stored.pending_id) {
                    Some(Stored::Transfer(p)) if stored.pending_id != 0 => p.amount,
                    _ => 0,
                };
                Some(transfer_exists_result(stored, t, pending_amount))
            }
            // AMBIGUITY: an id held by a trade is "exists_with_different_fields" for a transfer.
            Stored::Trade(_) => Some(R::ExistsWithDifferentFields),
        }
    }

    fn post_or_void_transfer(&mut self, t: Transfer, post: bool, timestamp: u64) -> R {
        if t.pending_id == 0 {
            return R::PendingIdMustNotBeZero; // 9
        }
        if t.pending_id == u128::MAX {
            return R::PendingIdMustNotBeIntMax; // 10
        }
        if t.pending_id == t.id {
            return R::PendingIdMustBeDifferent; // 11
        }
        if t.timeout != 0 {
            return R::TimeoutReservedForPendingTransfer; // 12
        }
        let p = match self.events.get(&t.pending_id) {
            Some(Stored::Transfer(p)) => *p,
            _ => return R::PendingTransferNotFound, // 15
        };
        if !tf(&p, TransferFlags::PENDING) {
            return R::PendingTransferNotPending; // 16
        }
        // 17. Each field the post or void names must be the pending transfer's.
        if t.debit_account_id != 0 && t.debit_account_id != p.debit_account_id {
            return R::PendingTransferHasDifferentDebitAccountId;
        }
        if t.credit_account_id != 0 && t.credit_account_id != p.credit_account_id {
            return R::PendingTransferHasDifferentCreditAccountId;
        }
        if t.ledger != 0 && t.ledger != p.ledger {
            return R::PendingTransferHasDifferentLedger;
        }
        if t.code != 0 && t.code != p.code {
            return R::PendingTransferHasDifferentCode;
        }
        // 18. A post's u128::MAX and a void's 0 mean the pending amount; a post of 0 posts
        // nothing; a void must name the pending amount if it names one.
        let amount = if (post && t.amount == u128::MAX) || (!post && t.amount == 0) {
            p.amount
        } else {
            t.amount
        };
        if amount > p.amount {
            return R::ExceedsPendingTransferAmount;
        }
        if !post && amount != p.amount {
            return R::PendingTransferHasDifferentAmount;
        }
        let state = self.pending[&t.pending_id];
        match state.status {
            Status::Posted => return R::PendingTransferAlreadyPosted, // 19
            Status::Voided => return R::PendingTransferAlreadyVoided, // 20
            Status::Expired => return R::PendingTransferExpired,      // 21
            Status::Pending => {}
        }
        if state.expires_at != 0 && timestamp >= state.expires_at {
            return R::PendingTransferExpired; // 21
        }
        // 22. Only a void touches a closed account (TigerBeetle 0.17).
        if post {
            if self.accounts[&p.debit_account_id].closed() {
                return R::DebitAccountClosed;
            }
            if self.accounts[&p.credit_account_id].closed() {
                return R::CreditAccountClosed;
            }
        }
        self.release_transfer(&p, if post { amount } else { 0 });
        self.pending.get_mut(&t.pending_id).expect("pending").status =
            if post { Status::Posted } else { Status::Voided };
        // User data left zero in the request is the pending transfer's.
        let or_pending = |given: u128, pending: u128| if given == 0 { pending } else { given };
        let stored = Transfer {
            debit_account_id: p.debit_account_id,
            credit_account_id: p.credit_account_id,
            ledger: p.ledger,
            code: p.code,
            amount,
            timestamp,
            user_data_128: or_pending(t.user_data_128, p.user_data_128),
            user_data_64: or_pending(t.user_data_64.into(), p.user_data_64.into()) as u64,
            user_data_32: or_pending(t.user_data_32.into(), p.user_data_32.into()) as u32,
            ..t
        };
        self.events.insert(t.id, Stored::Transfer(stored));
        self.log(p.debit_account_id, timestamp, MEvent::Transfer(stored));
        self.log(p.credit_account_id, timestamp, MEvent::Transfer(stored));
        R::Ok
    }

    fn new_transfer(&mut self, t: Transfer, timestamp: u64) -> R {
        let pending = tf(&t, TransferFlags::PENDING);
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
        if reserved(t.debit_account_id) || reserved(t.credit_account_id) {
            return R::AccountIdMustNotBeReserved;
        }
        if t.debit_account_id == t.credit_account_id {
            return R::AccountsMustBeDifferent; // 15
        }
        // 15a–c, after the account ids as in TigerBeetle 0.17.
        if t.pending_id != 0 {
            return R::PendingIdMustBeZero;
        }
        if t.timeout != 0 && !pending {
            return R::TimeoutReservedForPendingTransfer;
        }
        if t.flags
            .intersects(TransferFlags::CLOSING_DEBIT | TransferFlags::CLOSING_CREDIT)
            && !pending
        {
            return R::ClosingTransferMustBePending;
        }
        // 16. (gone: zero-amount transfers are allowed, as in TigerBeetle 0.17)
        if t.ledger == 0 {
            return R::LedgerMustNotBeZero;
        }
        if t.code == 0 {
            return R::CodeMustNotBeZero; // 18
        }
        let Some(dr) = self.accounts.get(&t.debit_account_id) else {
            return R::DebitAccountNotFound; // 21
        };
        let Some(cr) = self.accounts.get(&t.credit_account_id) else {
            return R::CreditAccountNotFound; // 22
        };
        if dr.created.ledger != cr.created.ledger {
            return R::AccountsMustHaveTheSameLedger; // 23
        }
        if t.ledger != dr.created.ledger {
            return R::TransferMustHaveTheSameLedgerAsAccounts; // 24
        }
        if dr.closed() {
            return R::DebitAccountClosed; // 25
        }
        if cr.closed() {
            return R::CreditAccountClosed; // 26
        }
        // 27. balancing
        let mut amount = t.amount;
        if tf(&t, TransferFlags::BALANCING_DEBIT) {
            let b = dr.bal;
            amount = amount.min(available(
                b.credits_posted,
                dr.created.limit,
                b.debits_posted,
                b.debits_pending,
            ));
        }
        if tf(&t, TransferFlags::BALANCING_CREDIT) {
            let b = cr.bal;
            amount = amount.min(available(
                b.debits_posted,
                cr.created.limit,
                b.credits_posted,
                b.credits_pending,
            ));
        }
        let (d, c) = (dr.bal, cr.bal);
        match overflow(d, c, amount, pending) {
            Some(("pending", true)) => return R::OverflowsDebitsPending,
            Some(("pending", false)) => return R::OverflowsCreditsPending,
            Some(("posted", true)) => return R::OverflowsDebitsPosted,
            Some(("posted", false)) => return R::OverflowsCreditsPosted,
            Some((_, true)) => return R::OverflowsDebits, // 28
            Some((_, false)) => return R::OverflowsCredits, // 29
            None => {}
        }
        let debits_after = d.debits_pending + d.debits_posted + amount;
        let credits_after = c.credits_pending + c.credits_posted + amount;
        let timeout_ns = u128::from(t.timeout) * NANOSECONDS_PER_SECOND;
        if pending && u128::from(timestamp) + timeout_ns > u128::from(u64::MAX) {
            return R::OverflowsTimeout; // 30
        }
        if dr.debits_must_not_exceed_credits()
            && plus_limit(d.credits_posted, dr.created.limit).is_some_and(|cap| debits_after > cap)
        {
            return R::ExceedsCredits; // 31
        }
        if cr.credits_must_not_exceed_debits()
            && plus_limit(c.debits_posted, cr.created.limit).is_some_and(|cap| credits_after > cap)
        {
            return R::ExceedsDebits; // 32
        }
        // Apply.
        let stored = Transfer {
            amount,
            timestamp,
            ..t
        };
        let dr = self.account_mut(t.debit_account_id);
        if pending {
            dr.bal.debits_pending += amount;
            if tf(&t, TransferFlags::CLOSING_DEBIT) {
                dr.flags = dr.flags | AccountFlags::CLOSED;
            }
        } else {
            dr.bal.debits_posted += amount;
        }
        let cr = self.account_mut(t.credit_account_id);
        if pending {
            cr.bal.credits_pending += amount;
            if tf(&t, TransferFlags::CLOSING_CREDIT) {
                cr.flags = cr.flags | AccountFlags::CLOSED;
            }
        } else {
            cr.bal.credits_posted += amount;
        }
        if pending {
            let expires_at = if t.timeout == 0 {
                0
            } else {
                timestamp + timeout_ns as u64
            };
            self.pending.insert(
                t.id,
                PendingState {
                    status: Status::Pending,
                    expires_at,
                    created_at: timestamp,
                    is_trade: false,
                },
            );
        }
        self.events.insert(t.id, Stored::Transfer(stored));
        self.log(t.debit_account_id, timestamp, MEvent::Transfer(stored));
        self.log(t.credit_account_id, timestamp, MEvent::Transfer(stored));
        R::Ok
    }

    // ------------------------------------------------------------------ trades

    fn create_trade(&mut self, record: &[u8; RECORD_BYTES], timestamp: u64) -> R {
        let Ok(d) = Trade::decode(record) else {
            return R::ReservedFlag;
        };
        if d.timestamp != 0 {
            return R::TimestampMustBeZero;
        }
        if d.id == 0 {
            return R::IdMustNotBeZero;
        }
        if d.id == u128::MAX {
            return R::IdMustNotBeIntMax;
        }
        if reserved(d.id) {
            return R::IdMustNotBeReserved;
        }
        if self.failed.contains(&d.id) {
            return R::IdAlreadyFailed;
        }
        if let Some(r) = self.exists_trade(&d) {
            return r;
        }
        let pending = df(&d, TradeFlags::PENDING);
        let post = df(&d, TradeFlags::POST_PENDING_TRADE);
        let void = df(&d, TradeFlags::VOID_PENDING_TRADE);
        if u8::from(pending) + u8::from(post) + u8::from(void) > 1 {
            return R::FlagsAreMutuallyExclusive;
        }
        if post || void {
            self.post_or_void_trade(d, post, timestamp)
        } else {
            self.new_trade(d, timestamp)
        }
    }

    fn exists_trade(&self, d: &Trade) -> Option<R> {
        match self.events.get(&d.id)? {
            Stored::Trade(stored) => Some(trade_exists_result(stored, d)),
            Stored::Transfer(_) => Some(R::ExistsWithDifferentFields),
        }
    }

    fn post_or_void_trade(&mut self, d: Trade, post: bool, timestamp: u64) -> R {
        if d.pending_id == 0 {
            return R::PendingIdMustNotBeZero; // 8
        }
        if d.pending_id == u128::MAX {
            return R::PendingIdMustNotBeIntMax;
        }
        if d.pending_id == d.id {
            return R::PendingIdMustBeDifferent;
        }
        if d.timeout != 0 {
            return R::TimeoutReservedForPendingTrade; // 11
        }
        let p = match self.events.get(&d.pending_id) {
            Some(Stored::Trade(p)) => *p,
            _ => return R::PendingTradeNotFound, // 14
        };
        if !df(&p, TradeFlags::PENDING) {
            return R::PendingTradeNotPending; // 15
        }
        let differs = |request: u128, stored: u128| request != 0 && request != stored;
        if differs(d.instrument_debit_account_id, p.instrument_debit_account_id)
            || differs(
                d.instrument_credit_account_id,
                p.instrument_credit_account_id,
            )
            || differs(d.cash_debit_account_id, p.cash_debit_account_id)
            || differs(d.cash_credit_account_id, p.cash_credit_account_id)
            || differs(d.quantity.into(), p.quantity.into())
            || differs(d.cash_amount.into(), p.cash_amount.into())
            || differs(d.code.into(), p.code.into())
        {
            return R::PendingTradeHasDifferentFields; // 16
        }
        let state = self.pending[&d.pending_id];
        match state.status {
            Status::Posted => return R::PendingTradeAlreadyPosted,
            Status::Voided => return R::PendingTradeAlreadyVoided,
            Status::Expired => return R::PendingTradeExpired,
            Status::Pending => {}
        }
        if state.expires_at != 0 && timestamp >= state.expires_at {
            return R::PendingTradeExpired; // 19
        }
        // 20. Only a void touches a closed account.
        if post {
            let closed = [
                (
                    p.instrument_debit_account_id,
                    R::InstrumentDebitAccountClosed,
                ),
                (
                    p.instrument_credit_account_id,
                    R::InstrumentCreditAccountClosed,
                ),
                (p.cash_debit_account_id, R::CashDebitAccountClosed),
                (p.cash_credit_account_id, R::CashCreditAccountClosed),
            ];
            for (id, code) in closed {
                if self.accounts[&id].closed() {
                    return code;
                }
            }
        }
        self.release_trade(&p, post);
        self.pending.get_mut(&d.pending_id).expect("pending").status =
            if post { Status::Posted } else { Status::Voided };
        // A post/void inherits the account ids, quantity, cash amount and code of the pending
        // trade (zero in the request matches; anything else was checked equal above).
        let stored = Trade {
            code: p.code,
            user_data_64: p.user_data_64,
            instrument_debit_account_id: p.instrument_debit_account_id,
            instrument_credit_account_id: p.instrument_credit_account_id,
            cash_debit_account_id: p.cash_debit_account_id,
            cash_credit_account_id: p.cash_credit_account_id,
            quantity: p.quantity,
            cash_amount: p.cash_amount,
            timestamp,
            ..d
        };
        self.events.insert(d.id, Stored::Trade(stored));
        for a in trade_accounts(&stored) {
            self.log(a, timestamp, MEvent::Trade(stored));
        }
        R::Ok
    }

    fn new_trade(&mut self, d: Trade, timestamp: u64) -> R {
        let pending = df(&d, TradeFlags::PENDING);
        if d.timeout != 0 && !pending {
            return R::TimeoutReservedForPendingTrade; // 9
        }
        let ids = trade_accounts(&d);
        if ids.iter().any(|&id| id == 0 || id == u128::MAX) {
            return R::TradeAccountIdMustNotBeZeroOrIntMax; // 10
        }
        if ids.iter().any(|&id| reserved(id)) {
            return R::AccountIdMustNotBeReserved; // 10a
        }
        for i in 0..4 {
            for j in i + 1..4 {
                if ids[i] == ids[j] {
                    return R::TradeAccountsMustBeDistinct; // 11
                }
            }
        }
        // The trade names its legs' ledgers; its accounts must be on them.
        if d.instrument_ledger == 0 {
            return R::InstrumentLedgerMustNotBeZero;
        }
        if d.cash_ledger == 0 {
            return R::CashLedgerMustNotBeZero;
        }
        if d.instrument_ledger == d.cash_ledger {
            return R::LegsMustHaveDifferentLedgers;
        }
        if d.quantity == 0 {
            return R::QuantityMustNotBeZero;
        }
        if d.cash_amount == 0 {
            return R::CashAmountMustNotBeZero;
        }
        if d.code == 0 {
            return R::CodeMustNotBeZero; // 14
        }
        let not_found = [
            R::InstrumentDebitAccountNotFound,
            R::InstrumentCreditAccountNotFound,
            R::CashDebitAccountNotFound,
            R::CashCreditAccountNotFound,
        ];
        let mut accounts = Vec::new();
        for (id, code) in ids.iter().zip(not_found) {
            match self.accounts.get(id) {
                Some(a) => accounts.push(a),
                None => return code, // 17–20
            }
        }
        let [idr, icr, cdr, ccr] = [accounts[0], accounts[1], accounts[2], accounts[3]];
        if idr.created.ledger != d.instrument_ledger || icr.created.ledger != d.instrument_ledger {
            return R::InstrumentAccountsMustBeOnTheInstrumentLedger;
        }
        if cdr.created.ledger != d.cash_ledger || ccr.created.ledger != d.cash_ledger {
            return R::CashAccountsMustBeOnTheCashLedger;
        }
        let closed = [
            (idr, R::InstrumentDebitAccountClosed),
            (icr, R::InstrumentCreditAccountClosed),
            (cdr, R::CashDebitAccountClosed),
            (ccr, R::CashCreditAccountClosed),
        ];
        for (a, code) in closed {
            if a.closed() {
                return code;
            }
        }
        let quantity = u128::from(d.quantity);
        let cash = u128::from(d.cash_amount);
        let debits_after =
            |a: &MAccount, x: u128| add3(a.bal.debits_pending, a.bal.debits_posted, x);
        let credits_after =
            |a: &MAccount, x: u128| add3(a.bal.credits_pending, a.bal.credits_posted, x);
        // Each leg as a transfer checks it, reported by side.
        match overflow(idr.bal, icr.bal, quantity, pending) {
            Some((_, true)) => return R::InstrumentOverflowsDebits,
            Some((_, false)) => return R::InstrumentOverflowsCredits,
            None => {}
        }
        match overflow(cdr.bal, ccr.bal, cash, pending) {
            Some((_, true)) => return R::CashOverflowsDebits,
            Some((_, false)) => return R::CashOverflowsCredits,
            None => {}
        }
        let timeout_ns = u128::from(d.timeout) * NANOSECONDS_PER_SECOND;
        if pending && u128::from(timestamp) + timeout_ns > u128::from(u64::MAX) {
            return R::OverflowsTimeout;
        }
        let exceeds_credits = |a: &MAccount, x: u128| {
            a.debits_must_not_exceed_credits()
                && plus_limit(a.bal.credits_posted, a.created.limit)
                    .is_some_and(|cap| debits_after(a, x).expect("checked") > cap)
        };
        let exceeds_debits = |a: &MAccount, x: u128| {
            a.credits_must_not_exceed_debits()
                && plus_limit(a.bal.debits_posted, a.created.limit)
                    .is_some_and(|cap| credits_after(a, x).expect("checked") > cap)
        };
        if exceeds_credits(idr, quantity) {
            return R::InstrumentExceedsCredits;
        }
        if exceeds_debits(icr, quantity) {
            return R::InstrumentExceedsDebits;
        }
        if exceeds_credits(cdr, cash) {
            return R::CashExceedsCredits;
        }
        if exceeds_debits(ccr, cash) {
            return R::CashExceedsDebits;
        }
        // Apply both legs.
        let legs = [
            (
                d.instrument_debit_account_id,
                d.instrument_credit_account_id,
                quantity,
            ),
            (d.cash_debit_account_id, d.cash_credit_account_id, cash),
        ];
        for (debit, credit, amount) in legs {
            let dr = self.account_mut(debit);
            if pending {
                dr.bal.debits_pending += amount;
            } else {
                dr.bal.debits_posted += amount;
            }
            let cr = self.account_mut(credit);
            if pending {
                cr.bal.credits_pending += amount;
            } else {
                cr.bal.credits_posted += amount;
            }
        }
        if pending {
            let expires_at = if d.timeout == 0 {
                0
            } else {
                timestamp + timeout_ns as u64
            };
            self.pending.insert(
                d.id,
                PendingState {
                    status: Status::Pending,
                    expires_at,
                    created_at: timestamp,
                    is_trade: true,
                },
            );
        }
        let stored = Trade { timestamp, ..d };
        self.events.insert(d.id, Stored::Trade(stored));
        for a in ids {
            self.log(a, timestamp, MEvent::Trade(stored));
        }
        R::Ok
    }

    // ------------------------------------------------------------------ queries

    pub fn lookup_account(&self, id: u128) -> Option<Account> {
        let a = self.accounts.get(&id)?;
        Some(Account {
            debits_pending: a.bal.debits_pending,
            debits_posted: a.bal.debits_posted,
            credits_pending: a.bal.credits_pending,
            credits_posted: a.bal.credits_posted,
            flags: a.flags,
            ..a.created
        })
    }

    pub fn lookup_transfer(&self, id: u128) -> Option<Transfer> {
        match self.events.get(&id)? {
            Stored::Transfer(t) => Some(*t),
            Stored::Trade(_) => None,
        }
    }

    pub fn lookup_trade(&self, id: u128) -> Option<Trade> {
        match self.events.get(&id)? {
            Stored::Trade(d) => Some(*d),
            Stored::Transfer(_) => None,
        }
    }

    pub fn balances_as_of(&self, id: u128, timestamp: u64) -> Result<Bal, QErr> {
        let a = self.accounts.get(&id).ok_or(QErr::AccountNotFound)?;
        Ok(a.log
            .iter()
            .rev()
            .find(|e| e.timestamp <= timestamp)
            .map(|e| e.balances_after)
            .unwrap_or_default())
    }

    /// AMBIGUITY: with both an unknown account and a zero limit, which error wins is unsaid;
    /// tests do not combine them.
    pub fn statement(
        &self,
        account_id: u128,
        timestamp_min: u64,
        timestamp_max: u64,
        limit: u32,
        reversed: bool,
        keep: &MFilter,
    ) -> Result<Vec<MEntry>, QErr> {
        if limit == 0 {
            return Err(QErr::LimitMustNotBeZero);
        }
        let a = self
            .accounts
            .get(&account_id)
            .ok_or(QErr::AccountNotFound)?;
        let limit = limit.min(STATEMENT_ENTRIES_MAX) as usize;
        let max = if timestamp_max == 0 {
            u64::MAX
        } else {
            timestamp_max
        };
        let in_range = |e: &&MEntry| {
            timestamp_min <= e.timestamp && e.timestamp <= max && self.keeps(account_id, e, keep)
        };
        Ok(if reversed {
            a.log
                .iter()
                .rev()
                .filter(in_range)
                .take(limit)
                .copied()
                .collect()
        } else {
            a.log.iter().filter(in_range).take(limit).copied().collect()
        })
    }

    /// Whether the account filter keeps a statement entry of `account_id`: TigerBeetle's
    /// `AccountFilter` — each non-zero field must equal the event's own (an expiry is judged
    /// as the pending event it released; a trade has no user_data_128 or _32, so a non-zero
    /// one leaves it out); `debits` keeps the events debiting the account, `credits` those
    /// crediting it, both or neither every event.
    fn keeps(&self, account_id: u128, entry: &MEntry, keep: &MFilter) -> bool {
        let record = match entry.event {
            MEvent::Transfer(t) => Stored::Transfer(t),
            MEvent::Trade(t) => Stored::Trade(t),
            MEvent::TransferExpired { pending_id } | MEvent::TradeExpired { pending_id } => {
                self.events[&pending_id]
            }
        };
        let (debit, credit, u128_, u64_, u32_, code) = match record {
            Stored::Transfer(t) => (
                t.debit_account_id == account_id,
                t.credit_account_id == account_id,
                Some(t.user_data_128),
                t.user_data_64,
                Some(t.user_data_32),
                t.code,
            ),
            Stored::Trade(t) => (
                [t.instrument_debit_account_id, t.cash_debit_account_id].contains(&account_id),
                [t.instrument_credit_account_id, t.cash_credit_account_id].contains(&account_id),
                None,
                t.user_data_64,
                None,
                t.code,
            ),
        };
        let sides =
            keep.debits == keep.credits || (keep.debits && debit) || (keep.credits && credit);
        sides
            && (keep.user_data_128 == 0 || u128_ == Some(keep.user_data_128))
            && (keep.user_data_64 == 0 || u64_ == keep.user_data_64)
            && (keep.user_data_32 == 0 || u32_ == Some(keep.user_data_32))
            && (keep.code == 0 || code == keep.code)
    }

    /// Wrapping sums of every account's balances per ledger, sorted by ledger.
    pub fn ledger_totals(&self) -> Vec<(u32, Bal)> {
        let mut totals: BTreeMap<u32, Bal> = BTreeMap::new();
        for a in self.accounts.values() {
            let t = totals.entry(a.created.ledger).or_default();
            t.debits_pending = t.debits_pending.wrapping_add(a.bal.debits_pending);
            t.debits_posted = t.debits_posted.wrapping_add(a.bal.debits_posted);
            t.credits_pending = t.credits_pending.wrapping_add(a.bal.credits_pending);
            t.credits_posted = t.credits_posted.wrapping_add(a.bal.credits_posted);
        }
        totals.into_iter().collect()
    }

    /// Pending transfers and trades still waiting, for generators that aim at expiry edges.
    pub fn live_expiries(&self) -> Vec<u64> {
        self.pending
            .values()
            .filter(|p| p.status == Status::Pending && p.expires_at != 0)
            .map(|p| p.expires_at)
            .collect()
    }
}

pub fn trade_accounts(d: &Trade) -> [u128; 4] {
    [
        d.instrument_debit_account_id,
        d.instrument_credit_account_id,
        d.cash_debit_account_id,
        d.cash_credit_account_id,
    ]
}

/// The engine's own ids (the upper half all ones): clearing accounts and a settlement run's
/// transfers. No client event may have one or name an account that has one.
fn reserved(id: u128) -> bool {
    id >> 64 == u128::from(u64::MAX)
}
