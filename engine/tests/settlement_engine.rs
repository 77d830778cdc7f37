//! Net settlement through `apply`: instructions and settlement commands as batches, a run's
//! movements posted as transfers through the clearing accounts, refusals that change nothing,
//! retries answered `exists`, and the engine's own id range closed to clients.

use tally_engine::cycle::{clearing_account_id, run_transfer_id, SETTLEMENT_CODE};
use tally_engine::limits::RESERVED_ID_FIRST;
use tally_engine::merkle::{leaf_hash, verify_inclusion};
use tally_engine::netting::ShortLeg;
use tally_engine::records::{
    Account, AccountFlags, CommandKind, InstructionFlags, SettlementCommand, Transfer,
};
use tally_engine::settlement::{Instruction, Phase, Status};
use tally_engine::{Engine, EngineConfig, EventResult as R, Operation};

const CASH: u32 = 1;
const SHARES: u32 = 2;
const ISSUER_CASH: u128 = 1;
const ISSUER_SHARES: u128 = 2;
/// Participant `p`'s cash account is `10 * p + 1`, its shares account `10 * p + 2`.
fn cash(p: u128) -> u128 {
    10 * p + 1
}
fn shares(p: u128) -> u128 {
    10 * p + 2
}

struct Ledger {
    engine: Engine,
    clock: u64,
}

impl Ledger {
    /// Participants 1..=`participants`, bound by `debits_must_not_exceed_credits`, and an
    /// issuer per ledger without a rule.
    fn new(seed: u64, participants: u128) -> Ledger {
        let mut ledger = Ledger {
            engine: Engine::new(EngineConfig { hash_seed: seed }),
            clock: 1_000,
        };
        let mut accounts = vec![
            account(ISSUER_CASH, CASH, AccountFlags::default()),
            account(ISSUER_SHARES, SHARES, AccountFlags::default()),
        ];
        for p in 1..=participants {
            let rule = AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS;
            accounts.push(account(cash(p), CASH, rule));
            accounts.push(account(shares(p), SHARES, rule));
        }
        ledger.ok(
            Operation::CreateAccounts,
            &accounts.iter().map(Account::encode).collect::<Vec<_>>(),
        );
        ledger
    }

    fn apply(&mut self, operation: Operation, records: &[[u8; 128]]) -> Vec<R> {
        self.clock += 1_000_000;
        let body: Vec<u8> = records.concat();
        let outcome = self
            .engine
            .apply(operation, self.clock, &body)
            .expect("a well-formed batch");
        let mut results = vec![R::Ok; records.len()];
        for (i, result) in outcome.failures {
            results[i as usize] = result;
        }
        results
    }

    fn ok(&mut self, operation: Operation, records: &[[u8; 128]]) {
        let results = self.apply(operation, records);
        assert!(
            results.iter().all(|r| *r == R::Ok),
            "{operation:?}: {results:?}"
        );
    }

    fn fund(&mut self, id: u128, ledger: u32, amount: u128, transfer: u128) {
        let issuer = if ledger == CASH {
            ISSUER_CASH
        } else {
            ISSUER_SHARES
        };
        let t = Transfer {
            id: transfer,
            debit_account_id: issuer,
            credit_account_id: id,
            amount,
            ledger,
            code: 1,
            ..Transfer::default()
        };
        self.ok(Operation::CreateTransfers, &[t.encode()]);
    }

    fn command(&mut self, c: SettlementCommand) -> R {
        self.apply(Operation::SettlementCommands, &[c.encode()])[0]
    }

    /// (shares, cash) net position of participant `p`: credits less debits posted.
    fn position(&self, p: u128) -> (i128, i128) {
        let net = |id| {
            let a = self.engine.lookup_account(id).expect("account exists");
            a.credits_posted as i128 - a.debits_posted as i128
        };
        (net(shares(p)), net(cash(p)))
    }
}

fn account(id: u128, ledger: u32, flags: AccountFlags) -> Account {
    Account {
        id,
        ledger,
        code: 1,
        flags,
        ..Account::default()
    }
}

/// Participant `from` delivers `quantity` shares to `to` for `cash` (`to` pays).
fn instruction(
    id: u128,
    from: u128,
    to: u128,
    quantity: u64,
    cash_amount: u64,
    cycle: u32,
) -> Instruction {
    Instruction {
        id,
        deliverer_securities: shares(from),
        receiver_securities: shares(to),
        receiver_cash: cash(to),
        deliverer_cash: cash(from),
        quantity,
        cash: cash_amount,
        cycle,
        ..Instruction::default()
    }
}

fn cycle_command(id: u128, kind: CommandKind, cycle: u32) -> SettlementCommand {
    SettlementCommand {
        id,
        kind: kind as u16,
        cycle,
        ..SettlementCommand::default()
    }
}

/// A short buyer's instruction fails and is carried forward; funded, it settles in the next
/// cycle. Each run posts one transfer per participant and asset through the clearing accounts,
/// which end at zero, and the run's leaves are in the verifiable log.
#[test]
fn a_fail_is_carried_forward_and_settles_once_funded() {
    let mut l = Ledger::new(7, 3);
    l.fund(shares(1), SHARES, 100, 9001);
    l.fund(cash(2), CASH, 10_000, 9002);
    l.fund(cash(3), CASH, 1_000, 9003);
    const DAY1: u32 = 20261207;
    const DAY2: u32 = 20261208;
    assert_eq!(
        l.command(cycle_command(100, CommandKind::Open, DAY1)),
        R::Ok
    );
    let i1 = instruction(501, 1, 2, 60, 6_000, DAY1);
    let i2 = instruction(502, 2, 3, 30, 3_000, DAY1);
    l.ok(Operation::CreateInstructions, &[i1.encode(), i2.encode()]);
    // A retry is answered as transfers are.
    assert_eq!(
        l.apply(Operation::CreateInstructions, &[i1.encode()]),
        [R::Exists]
    );
    let changed = Instruction { quantity: 61, ..i1 };
    assert_eq!(
        l.apply(Operation::CreateInstructions, &[changed.encode()]),
        [R::ExistsWithDifferentFields]
    );
    // A run needs the cycle cut off.
    assert_eq!(
        l.command(cycle_command(101, CommandKind::Run, DAY1)),
        R::CycleInWrongPhase
    );
    assert_eq!(
        l.command(cycle_command(102, CommandKind::CutOff, DAY1)),
        R::Ok
    );
    let transfers = l.engine.transfers_count();
    let log_before = l.engine.log_size();
    let run = cycle_command(103, CommandKind::Run, DAY1);
    let outcome = {
        l.clock += 1_000_000;
        l.engine
            .apply(Operation::SettlementCommands, l.clock, &run.encode())
            .unwrap()
    };
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    // The command, two clearing accounts, four transfers (A's and B's shares and cash), the
    // run's record (its netting certificate in the log).
    assert_eq!(outcome.timestamp_last - outcome.timestamp_first, 7);
    assert_eq!(l.engine.transfers_count(), transfers + 4);
    assert_eq!(l.engine.log_size(), log_before + 8);
    assert_eq!(l.position(1), (40, 6_000));
    assert_eq!(l.position(2), (60, 10_000 - 6_000));
    assert_eq!(l.position(3), (0, 1_000));
    let book = l.engine.settlement();
    assert_eq!(book.phase(DAY1), Some(Phase::PartlySettled));
    assert_eq!(book.instruction(501).unwrap().status, Status::Settled);
    assert_eq!(
        book.instruction(502).unwrap().status,
        Status::Failed {
            short_account: cash(3),
            leg: ShortLeg::Cash
        }
    );
    for ledger in [CASH, SHARES] {
        let clearing = l
            .engine
            .lookup_account(clearing_account_id(ledger))
            .unwrap();
        assert_eq!(clearing.debits_posted, clearing.credits_posted);
        assert!(clearing.debits_posted > 0);
        assert_eq!(clearing.code, SETTLEMENT_CODE);
    }
    // Each posted transfer names the run and the cycle, and is proved in the log like any.
    let size = l.engine.log_size();
    let root = l.engine.log_root(size).unwrap();
    for timestamp in outcome.timestamp_first + 3..outcome.timestamp_last {
        let id = run_transfer_id(timestamp);
        let t = l.engine.lookup_transfer(id).expect("the run's transfer");
        assert_eq!(
            (t.user_data_128, t.user_data_32, t.code),
            (103, DAY1, SETTLEMENT_CODE)
        );
        let proof = l.engine.prove(id, false, size).unwrap().unwrap();
        verify_inclusion(
            proof.index,
            size,
            &leaf_hash(&proof.leaf),
            &proof.proof,
            &root,
        )
        .unwrap();
    }
    let run_record = *l.engine.settlement().run_record(DAY1).expect("kept");
    assert_eq!(
        (
            run_record.first_posting,
            run_record.postings,
            run_record.command
        ),
        (outcome.timestamp_first + 3, 4, 103)
    );
    assert_eq!((run_record.settled, run_record.failed), (1, 1));
    assert_eq!(run_record.short_legs, [0, 1], "the fail was short of cash");
    // The run is applied once: its retry exists, a different command under its id does not.
    assert_eq!(l.command(run), R::Exists);
    assert_eq!(
        l.command(cycle_command(103, CommandKind::Run, DAY2)),
        R::ExistsWithDifferentFields
    );
    assert_eq!(l.engine.transfers_count(), transfers + 4);

    // Funded, the carried fail settles in the next cycle's run.
    l.fund(cash(3), CASH, 2_000, 9004);
    for (id, kind) in [
        (110, CommandKind::Open),
        (111, CommandKind::CutOff),
        (112, CommandKind::Run),
    ] {
        assert_eq!(l.command(cycle_command(id, kind, DAY2)), R::Ok, "{kind:?}");
    }
    assert_eq!(
        l.engine.settlement().instruction(502).unwrap().status,
        Status::Settled
    );
    assert_eq!(l.position(2), (30, 4_000 + 3_000));
    assert_eq!(l.position(3), (30, 0));
    for (id, cycle) in [(113, DAY1), (114, DAY2)] {
        assert_eq!(
            l.command(cycle_command(id, CommandKind::Close, cycle)),
            R::Ok
        );
    }
}

/// A run whose posting would break an account's rule (here a receiver bound by
/// `credits_must_not_exceed_debits`) is refused whole: no balance, transfer, clearing account
/// or instruction changes, and the cycle stays cut off.
#[test]
fn a_run_that_breaks_an_account_rule_changes_nothing() {
    let mut l = Ledger::new(9, 2);
    let bound = account(77, CASH, AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS);
    l.ok(Operation::CreateAccounts, &[bound.encode()]);
    l.fund(shares(1), SHARES, 10, 9001);
    l.fund(cash(2), CASH, 500, 9002);
    l.ok(
        Operation::SettlementCommands,
        &[cycle_command(1, CommandKind::Open, 5).encode()],
    );
    let mut i = instruction(600, 1, 2, 10, 500, 5);
    i.deliverer_cash = 77;
    l.ok(Operation::CreateInstructions, &[i.encode()]);
    l.ok(
        Operation::SettlementCommands,
        &[cycle_command(2, CommandKind::CutOff, 5).encode()],
    );
    let (transfers, accounts, book) = (
        l.engine.transfers_count(),
        l.engine.accounts_count(),
        l.engine.settlement().clone(),
    );
    assert_eq!(
        l.command(cycle_command(3, CommandKind::Run, 5)),
        R::RunBreaksAccountRule
    );
    assert_eq!(l.engine.transfers_count(), transfers);
    assert_eq!(l.engine.accounts_count(), accounts);
    assert!(l.engine.lookup_account(clearing_account_id(CASH)).is_none());
    assert_eq!(l.engine.settlement().phase(5), Some(Phase::CutOff));
    assert_eq!(
        l.engine.settlement().instruction(600).unwrap().status,
        Status::Eligible
    );
    assert_eq!(l.position(1), (10, 0));
    assert_eq!(
        *l.engine.settlement(),
        book,
        "a refused run leaves the book as it was"
    );
    // Not applied, so not remembered: the operator cancels and reschedules instead.
    let reschedule = SettlementCommand {
        to_cycle: 6,
        ..cycle_command(3, CommandKind::CancelAndReschedule, 5)
    };
    assert_eq!(l.command(reschedule), R::Ok);
    assert_eq!(
        l.engine.settlement().instruction(600).unwrap().status,
        Status::Rescheduled { from: 5 }
    );
}

/// A linked chain of instructions is taken or refused whole.
#[test]
fn a_linked_chain_of_instructions_is_taken_whole_or_not_at_all() {
    let mut l = Ledger::new(11, 2);
    l.ok(
        Operation::SettlementCommands,
        &[cycle_command(1, CommandKind::Open, 9).encode()],
    );
    let mut first = instruction(700, 1, 2, 5, 50, 9);
    first.flags = InstructionFlags::LINKED;
    let second = instruction(701, 1, 2, 5, 50, 10); // no cycle 10
    assert_eq!(
        l.apply(
            Operation::CreateInstructions,
            &[first.encode(), second.encode()]
        ),
        [R::LinkedEventFailed, R::CycleNotFound]
    );
    assert!(l.engine.settlement().instruction(700).is_none());
    let second = Instruction { cycle: 9, ..second };
    l.ok(
        Operation::CreateInstructions,
        &[first.encode(), second.encode()],
    );
    // Submission order after the take-back is as if the refused chain never came.
    let book = l.engine.settlement();
    assert!(book.instruction(700).is_some() && book.instruction(701).is_some());
}

/// Bad instructions and commands get their codes and change nothing.
#[test]
fn bad_instructions_and_commands_are_refused_by_name() {
    let mut l = Ledger::new(13, 2);
    l.ok(
        Operation::SettlementCommands,
        &[cycle_command(1, CommandKind::Open, 3).encode()],
    );
    let good = instruction(800, 1, 2, 5, 50, 3);
    let cases: Vec<(Instruction, R)> = vec![
        (Instruction { id: 0, ..good }, R::IdMustNotBeZero),
        (
            Instruction {
                id: RESERVED_ID_FIRST + 1,
                ..good
            },
            R::IdMustNotBeReserved,
        ),
        (
            Instruction {
                timestamp: 5,
                ..good
            },
            R::TimestampMustBeZero,
        ),
        (
            Instruction {
                receiver_cash: 0,
                ..good
            },
            R::TradeAccountIdMustNotBeZeroOrIntMax,
        ),
        (
            Instruction {
                receiver_cash: clearing_account_id(CASH),
                ..good
            },
            R::AccountIdMustNotBeReserved,
        ),
        (
            Instruction {
                receiver_securities: shares(1),
                ..good
            },
            R::TradeAccountsMustBeDistinct,
        ),
        (
            Instruction {
                quantity: 0,
                ..good
            },
            R::QuantityMustNotBeZero,
        ),
        (Instruction { cycle: 0, ..good }, R::CycleMustNotBeZero),
        (
            Instruction {
                deliverer_securities: 999,
                ..good
            },
            R::InstrumentDebitAccountNotFound,
        ),
        (
            Instruction {
                deliverer_cash: 998,
                ..good
            },
            R::CashCreditAccountNotFound,
        ),
        (
            Instruction {
                receiver_securities: cash(2),
                ..good
            },
            R::InstrumentAccountsMustHaveTheSameLedger,
        ),
        (
            Instruction {
                deliverer_securities: cash(1),
                receiver_securities: cash(2),
                ..good
            },
            R::LegsMustHaveDifferentLedgers,
        ),
        (Instruction { cycle: 4, ..good }, R::CycleNotFound),
    ];
    for (bad, expected) in &cases {
        assert_eq!(
            l.apply(Operation::CreateInstructions, &[bad.encode()]),
            [*expected],
            "{bad:?}"
        );
    }
    let mut flagged = good.encode();
    flagged[118] = 0x80;
    assert_eq!(
        l.apply(Operation::CreateInstructions, &[flagged]),
        [R::ReservedFlag]
    );
    assert!(l.engine.settlement().instruction(800).is_none());

    let open = cycle_command(10, CommandKind::Open, 4);
    let commands: Vec<(SettlementCommand, R)> = vec![
        (
            SettlementCommand { kind: 99, ..open },
            R::CommandKindUnknown,
        ),
        (
            SettlementCommand {
                instruction: 1,
                ..open
            },
            R::CommandFieldMustBeZero,
        ),
        (
            SettlementCommand { cycle: 0, ..open },
            R::CycleMustNotBeZero,
        ),
        (cycle_command(10, CommandKind::Open, 3), R::CycleExists),
        (
            cycle_command(10, CommandKind::Close, 3),
            R::CycleInWrongPhase,
        ),
        (cycle_command(10, CommandKind::CutOff, 8), R::CycleNotFound),
        (
            SettlementCommand {
                to_cycle: 2,
                ..cycle_command(10, CommandKind::CancelAndReschedule, 3)
            },
            R::RescheduleMustBeLater,
        ),
        (
            SettlementCommand {
                kind: CommandKind::Hold as u16,
                instruction: 12345,
                id: 10,
                ..Default::default()
            },
            R::InstructionNotFound,
        ),
        (
            SettlementCommand {
                kind: CommandKind::Cancel as u16,
                instruction: 800,
                party: 3,
                id: 10,
                ..Default::default()
            },
            R::PartyMustBeDelivererOrReceiver,
        ),
        (
            SettlementCommand {
                kind: CommandKind::SetMaxAge as u16,
                id: 10,
                ..Default::default()
            },
            R::MaxAgeMustNotBeZero,
        ),
        (
            SettlementCommand {
                id: RESERVED_ID_FIRST,
                ..open
            },
            R::IdMustNotBeReserved,
        ),
        (
            SettlementCommand {
                timestamp: 1,
                ..open
            },
            R::TimestampMustBeZero,
        ),
    ];
    for (bad, expected) in &commands {
        assert_eq!(l.command(*bad), *expected, "{bad:?}");
    }
    let mut reserved_byte = open.encode();
    reserved_byte[60] = 1;
    assert_eq!(
        l.apply(Operation::SettlementCommands, &[reserved_byte]),
        [R::CommandFieldMustBeZero]
    );
    let mut linked = open.encode();
    linked[118] = 1;
    // No flag is defined for commands, `linked` included: chains of commands are refused.
    assert_eq!(
        l.apply(Operation::SettlementCommands, &[linked, open.encode()]),
        [R::ReservedFlag, R::LinkedEventFailed]
    );
    assert_eq!(l.command(open), R::Ok);
    // Refused commands are not remembered: the same id applies once right.
    assert_eq!(l.engine.settlement().phase(4), Some(Phase::Open));
    assert!(l.engine.settlement().command(10).is_some());
}

/// Holds, releases and a bilateral cancellation, each a command; the fail limit is replicated
/// state set by one.
#[test]
fn holds_releases_cancellations_and_the_fail_limit_are_commands() {
    let mut l = Ledger::new(17, 2);
    l.ok(
        Operation::SettlementCommands,
        &[cycle_command(1, CommandKind::Open, 3).encode()],
    );
    l.ok(
        Operation::CreateInstructions,
        &[
            instruction(900, 1, 2, 10, 100, 3).encode(),
            instruction(901, 1, 2, 1, 10, 3).encode(),
        ],
    );
    let on = |id, kind: CommandKind, instruction, quantity, party| SettlementCommand {
        id,
        kind: kind as u16,
        instruction,
        quantity,
        party,
        ..SettlementCommand::default()
    };
    let digest = l.engine.digest();
    assert_eq!(l.command(on(2, CommandKind::Hold, 900, 4, 0)), R::Ok);
    assert_ne!(l.engine.digest(), digest, "the book is in the state digest");
    assert_eq!(
        l.command(on(3, CommandKind::Hold, 900, 7, 0)),
        R::QuantityNotAvailable
    );
    assert_eq!(l.command(on(4, CommandKind::Release, 900, 0, 0)), R::Ok);
    assert_eq!(l.engine.settlement().instruction(900).unwrap().held, 0);
    assert_eq!(l.command(on(5, CommandKind::Cancel, 901, 0, 1)), R::Ok);
    assert_eq!(
        l.command(on(6, CommandKind::Cancel, 901, 0, 1)),
        R::CancelAlreadyRequested
    );
    assert_eq!(l.command(on(7, CommandKind::Cancel, 901, 0, 2)), R::Ok);
    assert!(matches!(
        l.engine.settlement().instruction(901).unwrap().status,
        Status::Cancelled(_)
    ));
    assert_eq!(
        l.command(on(8, CommandKind::Hold, 901, 0, 0)),
        R::InstructionSettledOrCancelled
    );
    let age = SettlementCommand {
        id: 9,
        kind: CommandKind::SetMaxAge as u16,
        max_age: 2,
        ..SettlementCommand::default()
    };
    assert_eq!(l.command(age), R::Ok);
    assert_eq!(l.engine.settlement().max_age(), 2);
}

/// The engine's own ids are closed to clients: accounts, transfers and trades may neither
/// have one nor name a clearing account.
#[test]
fn clients_cannot_use_the_engines_own_ids() {
    let mut l = Ledger::new(19, 1);
    let reserved = account(RESERVED_ID_FIRST + 3, CASH, AccountFlags::default());
    assert_eq!(
        l.apply(Operation::CreateAccounts, &[reserved.encode()]),
        [R::IdMustNotBeReserved]
    );
    let t = Transfer {
        id: 5,
        debit_account_id: clearing_account_id(CASH),
        credit_account_id: cash(1),
        amount: 1,
        ledger: CASH,
        code: 1,
        ..Transfer::default()
    };
    assert_eq!(
        l.apply(Operation::CreateTransfers, &[t.encode()]),
        [R::AccountIdMustNotBeReserved]
    );
    let t = Transfer {
        id: run_transfer_id(1),
        debit_account_id: ISSUER_CASH,
        ..t
    };
    assert_eq!(
        l.apply(Operation::CreateTransfers, &[t.encode()]),
        [R::IdMustNotBeReserved]
    );
}

/// Replicas with different hash seeds applying the same settlement batches agree.
#[test]
fn replicas_agree_on_the_book_and_the_runs() {
    let run = |seed| {
        let mut l = Ledger::new(seed, 4);
        l.fund(shares(1), SHARES, 1_000, 9001);
        l.fund(cash(2), CASH, 1_000, 9002);
        l.ok(
            Operation::SettlementCommands,
            &[cycle_command(1, CommandKind::Open, 1).encode()],
        );
        let instructions: Vec<[u8; 128]> = (0..40u128)
            .map(|k| {
                let (from, to) = (k % 4 + 1, (k + 1) % 4 + 1);
                instruction(
                    1_000 + k,
                    from,
                    to,
                    (k as u64 % 7) + 1,
                    (k as u64 % 5) * 10,
                    1,
                )
                .encode()
            })
            .collect();
        l.ok(Operation::CreateInstructions, &instructions);
        l.ok(
            Operation::SettlementCommands,
            &[cycle_command(2, CommandKind::CutOff, 1).encode()],
        );
        assert_eq!(l.command(cycle_command(3, CommandKind::Run, 1)), R::Ok);
        (
            l.engine.digest(),
            l.engine.log_root(l.engine.log_size()).unwrap(),
        )
    };
    assert_eq!(run(1), run(0xdead_beef));
}
