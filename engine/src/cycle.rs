//! Net settlement inside `apply`: settlement instructions go into the book
//! (`Operation::CreateInstructions`), and settlement commands move cycles and instructions
//! through their lifecycle (`Operation::SettlementCommands`). A run posts its net movements as
//! transfers through one clearing account per ledger, so every balance change is a stored
//! transfer that statements, history checks and the verifiable log see like any other.
//!
//! Every rule here is deterministic replicated state: the book, its fail limit (`max_age`, set
//! by a command), the clearing accounts and the run's transfers are the same on every replica.
//! docs/settlement.md has the model; docs/records.md the command record.

use crate::engine::{Engine, Undo};
use crate::leg;
use crate::limits::{ACCOUNTS_MAX, EVENTS_PER_KIND_MAX, RESERVED_ID_FIRST};
use crate::netting::Available;
use crate::records::{raw_flags, AccountFlags, CommandKind, RecordBytes, SettlementCommand};
use crate::result::EventResult as R;
use crate::settlement::{Instruction, Party, Phase, RunRecord, RunReport, SettlementError};
use crate::state::{AccountSlot, AccountState, EventRef, PendingStatus, StoredTransfer, SLOT_NONE};
use crate::warm::Lookups;

/// The code of every clearing account and of every transfer a run posts.
pub const SETTLEMENT_CODE: u16 = u16::MAX;

/// The clearing account of `ledger`: what a run's payers pay into and its receivers are paid
/// from; it nets to zero after every run.
pub fn clearing_account_id(ledger: u32) -> u128 {
    RESERVED_ID_FIRST | u128::from(ledger)
}

/// The id of the transfer a run posted at `timestamp` (unique: so are timestamps).
pub fn run_transfer_id(timestamp: u64) -> u128 {
    RESERVED_ID_FIRST | 1 << 63 | u128::from(timestamp)
}

/// Whether `id` is in the engine's own range, which no client may use.
#[inline(always)]
pub(crate) fn is_reserved(id: u128) -> bool {
    id >= RESERVED_ID_FIRST
}

/// An event the engine made while applying a batch (a run's clearing account or transfer): its
/// leaf follows the batch's own, with the next timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Generated {
    Account(u32),
    Transfer(u32),
    /// A run's record, after its postings: its netting certificate in the verifiable log.
    Run(u32),
}

/// The leaf kind of a run's record (docs/verifiability.md): after the operations' 1–6.
pub const RUN_LEAF_KIND: u8 = 7;

/// The checks on an event's own id shared by instructions and commands.
fn own_id(id: u128) -> Result<(), R> {
    match id {
        0 => Err(R::IdMustNotBeZero),
        u128::MAX => Err(R::IdMustNotBeIntMax),
        id if is_reserved(id) => Err(R::IdMustNotBeReserved),
        _ => Ok(()),
    }
}

/// The result code of a refusal by the book (nothing changed).
fn refused(error: SettlementError) -> R {
    match error {
        SettlementError::CycleExists { .. } => R::CycleExists,
        SettlementError::NoSuchCycle { .. } => R::CycleNotFound,
        SettlementError::WrongPhase { .. } => R::CycleInWrongPhase,
        SettlementError::InstructionExists { .. } => R::Exists,
        SettlementError::NoSuchInstruction { .. } => R::InstructionNotFound,
        SettlementError::Final { .. } => R::InstructionSettledOrCancelled,
        // `create_instruction` checks each of the book's reasons first, in the same order,
        // with its own code; this is the one a record can still reach if they ever diverge.
        SettlementError::Invalid { .. } => R::TradeAccountsMustBeDistinct,
        SettlementError::Quantity { .. } => R::QuantityNotAvailable,
        SettlementError::AlreadyRequested { .. } => R::CancelAlreadyRequested,
        SettlementError::RescheduleBackwards { .. } => R::RescheduleMustBeLater,
        SettlementError::Netting(_) => R::NettingLimitExceeded,
    }
}

impl Engine {
    /// Takes one settlement instruction into its (open) cycle; checks in the precedence of
    /// docs/settlement.md ("Submitting instructions").
    pub(crate) fn create_instruction(
        &mut self,
        bytes: &RecordBytes,
        timestamp: u64,
        lookups: &Lookups,
    ) -> R {
        let Ok(i) = Instruction::decode(bytes) else {
            return R::ReservedFlag;
        };
        if i.timestamp != 0 {
            return R::TimestampMustBeZero;
        }
        if let Err(code) = own_id(i.id) {
            return code;
        }
        if let Some(state) = self.settlement.instruction(i.id) {
            let stored = Instruction {
                timestamp: 0,
                ..state.instruction
            };
            return if stored == i {
                R::Exists
            } else {
                R::ExistsWithDifferentFields
            };
        }
        let accounts = i.accounts();
        if accounts.iter().any(|&a| a == 0 || a == u128::MAX) {
            return R::TradeAccountIdMustNotBeZeroOrIntMax;
        }
        if accounts.iter().any(|&a| is_reserved(a)) {
            return R::AccountIdMustNotBeReserved;
        }
        if i.deliverer_securities == i.receiver_securities || i.receiver_cash == i.deliverer_cash {
            return R::TradeAccountsMustBeDistinct;
        }
        if i.quantity == 0 {
            return R::QuantityMustNotBeZero;
        }
        if i.cycle == 0 {
            return R::CycleMustNotBeZero;
        }
        let missing = [
            R::InstrumentDebitAccountNotFound,
            R::InstrumentCreditAccountNotFound,
            R::CashDebitAccountNotFound,
            R::CashCreditAccountNotFound,
        ];
        let mut ledgers = [0u32; 4];
        for (role, (&id, missing)) in accounts.iter().zip(missing).enumerate() {
            match self.account_slot(lookups, role, id) {
                Some(slot) => ledgers[role] = self.accounts.get(slot).state.ledger,
                None => return missing,
            }
        }
        if ledgers[0] != ledgers[1] {
            return R::InstrumentAccountsMustHaveTheSameLedger;
        }
        if ledgers[2] != ledgers[3] {
            return R::CashAccountsMustHaveTheSameLedger;
        }
        if ledgers[0] == ledgers[2] {
            return R::LegsMustHaveDifferentLedgers;
        }
        if self.settlement.instructions.len() >= EVENTS_PER_KIND_MAX as usize {
            return R::CapacityExceeded;
        }
        match self.settlement.submit(Instruction { timestamp, ..i }) {
            Ok(()) => {
                self.push_undo(Undo::InstructionSubmitted(i.id));
                R::Ok
            }
            Err(error) => refused(error),
        }
    }

    /// Applies one settlement command; an applied command is stored under its id, so a retry
    /// is answered `exists`. A refused one changes nothing and is not remembered.
    pub(crate) fn settlement_command(&mut self, bytes: &RecordBytes, timestamp: u64) -> R {
        let Some(c) = SettlementCommand::decode(bytes) else {
            return if raw_flags(bytes) != 0 {
                R::ReservedFlag
            } else {
                R::CommandFieldMustBeZero
            };
        };
        if c.timestamp != 0 {
            return R::TimestampMustBeZero;
        }
        if let Err(code) = own_id(c.id) {
            return code;
        }
        if let Some(stored) = self.settlement.command(c.id) {
            let mut stored = SettlementCommand::decode(stored).unwrap_or_default();
            stored.timestamp = 0;
            return if stored == c {
                R::Exists
            } else {
                R::ExistsWithDifferentFields
            };
        }
        let Some(kind) = CommandKind::from_code(c.kind) else {
            return R::CommandKindUnknown;
        };
        if let Err(code) = check_fields(kind, &c) {
            return code;
        }
        let quantity = (c.quantity != 0).then_some(c.quantity);
        let book = &mut self.settlement;
        let result = match kind {
            CommandKind::Open => book.open(c.cycle),
            CommandKind::CutOff => book.cut_off(c.cycle),
            CommandKind::Close => book.close(c.cycle),
            CommandKind::CancelAndReschedule => {
                book.cancel_and_reschedule(c.cycle, c.to_cycle).map(drop)
            }
            CommandKind::Hold => book.hold(c.instruction, quantity),
            CommandKind::Release => book.release(c.instruction, quantity),
            CommandKind::Cancel => {
                let party = if c.party == 1 {
                    Party::Deliverer
                } else {
                    Party::Receiver
                };
                book.cancel(c.instruction, party).map(drop)
            }
            CommandKind::SetMaxAge => {
                book.set_max_age(c.max_age);
                Ok(())
            }
            CommandKind::Run => match self.run_cycle(&c, timestamp) {
                R::Ok => Ok(()),
                code => return code,
            },
        };
        match result {
            Ok(()) => {
                let stored = SettlementCommand { timestamp, ..c };
                self.settlement.commands.insert(c.id, stored.encode());
                R::Ok
            }
            Err(error) => refused(error),
        }
    }

    /// Runs `command.cycle` and posts its movements, or changes nothing: every posting is undone
    /// and the book never changed when one breaks an account's rule (a receiver closed or
    /// bound by `credits_must_not_exceed_debits`, a balance that would overflow).
    fn run_cycle(&mut self, command: &SettlementCommand, timestamp: u64) -> R {
        match self.settlement.phase(command.cycle) {
            None => return R::CycleNotFound,
            Some(Phase::CutOff) => {}
            Some(_) => return R::CycleInWrongPhase,
        }
        // What a participant may pay: its rule's room (credits posted plus limit, less every
        // debit, pending ones included) when bound by `debits_must_not_exceed_credits`,
        // nothing when closed, otherwise unlimited (an issuer's account).
        let accounts = &self.accounts;
        let index = &self.account_index;
        let available = |id: u128| {
            let Some(slot) = index.find(index.hash(id), id, |s| accounts.get(s).id) else {
                return Available::Limited(0);
            };
            let state = &accounts.get(slot).state;
            if state.flags().contains(AccountFlags::CLOSED) {
                Available::Limited(0)
            } else if state
                .flags()
                .contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
            {
                Available::Limited(leg::debit_available(state))
            } else {
                Available::Unlimited
            }
        };
        // Worked out first, the book unchanged; posted; only then applied to the book, so a
        // posting that breaks an account's rule leaves nothing in the book to undo.
        let plan = match self.settlement.plan_run(command.cycle, available) {
            Ok(plan) => plan,
            Err(error) => return refused(error),
        };
        let (generated, next) = (self.generated.len(), self.generated_next);
        self.undo.clear();
        self.undo_on = true;
        let posted = self.post_run(&plan.report, command.id);
        if posted.is_err() {
            self.rollback();
            self.generated.truncate(generated);
            self.generated_next = next;
        }
        self.undo_on = false;
        self.undo.clear();
        let (first_posting, postings) = match posted {
            Ok(postings) => postings,
            Err(code) => return code,
        };
        let report = self.settlement.apply_run(plan);
        let record = RunRecord {
            cycle: command.cycle,
            command: command.id,
            timestamp,
            first_posting,
            postings,
            settled: report.settled,
            partly_settled: report.partly_settled,
            failed: report.failed,
            aged_out: report.aged_out.len() as u64,
            settled_value: report.settled_value,
            short_legs: report.short_legs,
            certificate: report.certificate,
        };
        self.settlement.runs.insert(command.cycle, record);
        // Its leaf follows the postings; its timestamp is its own.
        self.next_generated_timestamp();
        self.generated.push(Generated::Run(command.cycle));
        R::Ok
    }

    /// Posts a run's movements: payers into their ledger's clearing account first, then the
    /// clearing accounts to the receivers, each in account id order — one transfer per
    /// participant and asset, with the run command's id in `user_data_128` and the cycle in
    /// `user_data_32`. Per ledger the movements sum to zero, so each clearing account ends
    /// where it began. Returns the first posting's timestamp (0 for none) and how many.
    fn post_run(&mut self, report: &RunReport, command: u128) -> Result<(u64, u32), R> {
        let mut legs = Vec::with_capacity(report.movements.len());
        for &(account, movement) in &report.movements {
            let Some(slot) = self.find_account(account) else {
                return Err(R::RunBreaksAccountRule);
            };
            legs.push((slot, self.accounts.get(slot).state.ledger, movement));
        }
        let mut ledgers: Vec<u32> = legs.iter().map(|l| l.1).collect();
        ledgers.sort_unstable();
        ledgers.dedup();
        let mut clearing = Vec::with_capacity(ledgers.len());
        for ledger in ledgers {
            clearing.push((ledger, self.clearing_account(ledger)?));
        }
        let clearing_of = |ledger: u32| {
            let at = clearing.binary_search_by_key(&ledger, |c| c.0);
            clearing[at.expect("every ledger's clearing account was made")].1
        };
        let mut postings = (0, 0);
        for paying in [true, false] {
            for &(slot, ledger, movement) in &legs {
                if (movement < 0) != paying {
                    continue;
                }
                let (debit, credit) = if paying {
                    (slot, clearing_of(ledger))
                } else {
                    (clearing_of(ledger), slot)
                };
                let code = self.post_generated(
                    debit,
                    credit,
                    movement.unsigned_abs(),
                    ledger,
                    command,
                    report.cycle,
                );
                if code != R::Ok {
                    return Err(code);
                }
                if postings.1 == 0 {
                    postings.0 = self.generated_next - 1;
                }
                postings.1 += 1;
            }
        }
        Ok(postings)
    }

    /// The clearing account of `ledger`, made (a generated event) the first time one is needed.
    fn clearing_account(&mut self, ledger: u32) -> Result<u32, R> {
        let id = clearing_account_id(ledger);
        if let Some(slot) = self.find_account(id) {
            return Ok(slot);
        }
        if self.accounts.len() >= ACCOUNTS_MAX as usize {
            return Err(R::CapacityExceeded);
        }
        let timestamp = self.next_generated_timestamp();
        let slot = self.accounts.push(AccountSlot::new(AccountState {
            id,
            balances: Default::default(),
            user_data_128: 0,
            user_data_64: 0,
            limit: 0,
            timestamp,
            ledger,
            code: SETTLEMENT_CODE,
            flags: 0,
        }));
        let hash = self.account_index.hash(id);
        self.account_index.insert(hash, slot);
        self.push_undo(Undo::AccountInserted);
        self.generated.push(Generated::Account(slot));
        Ok(slot)
    }

    /// One posted transfer of a run, checked by the rules every transfer meets.
    fn post_generated(
        &mut self,
        debit: u32,
        credit: u32,
        amount: u128,
        ledger: u32,
        command: u128,
        cycle: u32,
    ) -> R {
        let (d, c) = (
            &self.accounts.get(debit).state,
            &self.accounts.get(credit).state,
        );
        let checks = leg::check_closed(d, c)
            .and_then(|()| leg::check_overflow(d, c, amount, false))
            .and_then(|()| leg::check_balance(d, c, amount));
        if checks.is_err() {
            return R::RunBreaksAccountRule;
        }
        if self.transfers.len() >= EVENTS_PER_KIND_MAX as usize {
            return R::CapacityExceeded;
        }
        let timestamp = self.next_generated_timestamp();
        let id = run_transfer_id(timestamp);
        self.move_leg(debit, credit, amount, false);
        let event = EventRef::transfer(self.transfers.len() as u32);
        let previous = self.link_history(&[debit, credit], event);
        self.transfers.push(StoredTransfer {
            id,
            amount,
            user_data_128: command,
            user_data_64: 0,
            timestamp,
            debit_account: debit,
            credit_account: credit,
            pending: SLOT_NONE,
            user_data_32: cycle,
            timeout: 0,
            ledger,
            code: SETTLEMENT_CODE,
            flags: 0,
            status: PendingStatus::NotPending,
            previous: [previous[0], previous[1]],
        });
        let hash = self.event_index.hash(id);
        self.index_event(hash, event);
        self.generated.push(Generated::Transfer(event.slot()));
        R::Ok
    }

    fn next_generated_timestamp(&mut self) -> u64 {
        let timestamp = self.generated_next;
        self.generated_next += 1;
        timestamp
    }
}

/// Each kind's fields: those it uses must be set (a cycle, an instruction, a party, a fail
/// limit), those it does not must be zero.
fn check_fields(kind: CommandKind, c: &SettlementCommand) -> Result<(), R> {
    use CommandKind as K;
    let uses_cycle = matches!(
        kind,
        K::Open | K::CutOff | K::Run | K::Close | K::CancelAndReschedule
    );
    let uses_instruction = matches!(kind, K::Hold | K::Release | K::Cancel);
    let uses_quantity = matches!(kind, K::Hold | K::Release);
    let unused = (!uses_cycle && c.cycle != 0)
        || (kind != K::CancelAndReschedule && c.to_cycle != 0)
        || (!uses_instruction && c.instruction != 0)
        || (!uses_quantity && c.quantity != 0)
        || (kind != K::Cancel && c.party != 0)
        || (kind != K::SetMaxAge && c.max_age != 0);
    if unused {
        return Err(R::CommandFieldMustBeZero);
    }
    if uses_cycle && (c.cycle == 0 || (kind == K::CancelAndReschedule && c.to_cycle == 0)) {
        return Err(R::CycleMustNotBeZero);
    }
    if uses_instruction && c.instruction == 0 {
        return Err(R::InstructionNotFound);
    }
    if kind == K::Cancel && !matches!(c.party, 1 | 2) {
        return Err(R::PartyMustBeDelivererOrReceiver);
    }
    if kind == K::SetMaxAge && c.max_age == 0 {
        return Err(R::MaxAgeMustNotBeZero);
    }
    Ok(())
}
