//! The stored book: damaged entries refused by name, the digest following every field (the
//! fail limit and the commands too), and arbitrary entries never a panic. (That every book a lifecycle makes restores to itself is
//! the property test in engine/tests/settlement_book.rs.)

use proptest::prelude::*;

use super::*;
use crate::netting::Available;
use crate::records::InstructionFlags;
use crate::settlement::Party;

fn sale(id: u128, cycle: u32, quantity: u64, cash: u64) -> Instruction {
    Instruction {
        id,
        deliverer_securities: 1,
        receiver_securities: 3,
        receiver_cash: 4,
        deliverer_cash: 2,
        reference: id << 8,
        quantity,
        cash,
        cycle,
        priority: 0,
        flags: InstructionFlags::PARTIAL,
        timestamp: 1_000 + id as u64,
    }
}

/// A command record under `id` (bytes 0..16), the rest of it `fill`: the book keeps commands
/// as stored bytes, whatever they say.
fn command(id: u128, fill: u8) -> crate::records::RecordBytes {
    let mut record = [fill; RECORD_BYTES];
    record[..16].copy_from_slice(&id.to_le_bytes());
    record
}

/// A book with a cycle in every phase but cancelled, instructions settled, partly settled,
/// failed, held in part and asked to be cancelled by one party, two commands and a fail limit
/// other than the default.
fn book() -> SettlementBook {
    let mut book = SettlementBook::new(3, 7);
    book.commands.insert(5, command(5, 0xa5));
    book.commands.insert(9 << 64, command(9 << 64, 0x5a));
    book.open(1).unwrap();
    book.submit(sale(10, 1, 10, 100)).unwrap();
    book.submit(sale(11, 1, 10, 100)).unwrap();
    book.submit(sale(12, 1, 10, 100)).unwrap();
    book.hold(12, Some(4)).unwrap();
    book.cut_off(1).unwrap();
    // The deliverer has 15 units, the receiver cash for all: 10 settles, 11 settles 5.
    book.run(1, |account| match account {
        1 => Available::Limited(15),
        _ => Available::Unlimited,
    })
    .unwrap();
    book.close(1).unwrap();
    book.open(2).unwrap();
    book.submit(sale(20, 2, 5, 50)).unwrap();
    book.cancel(20, Party::Receiver).unwrap();
    book.open(3).unwrap();
    book.cancel_and_reschedule(3, 4).unwrap();
    book
}

/// The stored form of a book, as one value the damage cases change.
#[derive(Clone)]
struct Stored {
    max_age: u16,
    cycles: Vec<StoredCycle>,
    instructions: Vec<StoredInstruction>,
    commands: Vec<StoredCommand>,
}

fn stored(book: &SettlementBook) -> Stored {
    Stored {
        max_age: book.max_age(),
        cycles: book.stored_cycles(),
        instructions: book.stored_instructions(),
        commands: book.stored_commands(),
    }
}

fn restore(stored: &Stored) -> Result<SettlementBook, String> {
    SettlementBook::restore(
        stored.max_age,
        7,
        &stored.cycles,
        &stored.instructions,
        &stored.commands,
    )
    .map_err(|error| error.to_string())
}

#[test]
fn a_book_restores_to_itself() {
    let book = book();
    let stored = stored(&book);
    assert_eq!(stored.cycles.len(), 4);
    assert_eq!(stored.instructions.len(), 4);
    assert_eq!(stored.max_age, 3);
    let ids: Vec<u128> = stored.commands.iter().map(|c| c.id).collect();
    assert_eq!(ids, [5, 9 << 64], "commands in id order");
    let statuses: Vec<u8> = stored.instructions.iter().map(|i| i.status).collect();
    assert_eq!(statuses[0], 3, "10 settled");
    assert!(
        matches!(statuses[1], 4 | 5) && matches!(statuses[2], 4 | 5),
        "{statuses:?}"
    );
    assert_eq!(statuses[3], 0, "20 eligible, one party asked to cancel");
    let restored = restore(&stored).unwrap();
    assert_eq!(restored, book);
    assert_eq!(restored.max_age(), 3, "the stored limit, not a default");
    assert_eq!(restored.command(5), Some(&command(5, 0xa5)));
    assert_eq!(restored.live.len(), 3, "the settled one is not open");
    assert_eq!(restored.next_sequence, 4);
}

#[test]
fn damaged_entries_are_refused_by_name() {
    let book = book();
    let intact = stored(&book);
    type Damage = fn(&mut Stored);
    let cases: &[(&str, Damage)] = &[
        ("unknown phase", |s| s.cycles[0].phase = 9),
        ("not a later cycle", |s| s.cycles[2].rescheduled_to = 1),
        ("a reschedule target without", |s| {
            s.cycles[0].rescheduled_to = 5
        }),
        ("cycle 1: out of order or repeated", |s| s.cycles.swap(0, 1)),
        ("unknown status", |s| s.instructions[0].status = 8),
        ("unknown short leg", |s| s.instructions[1].short_leg = 2),
        ("a short leg without a fail", |s| {
            s.instructions[0].short_account = 9
        }),
        ("a reschedule origin without", |s| {
            s.instructions[0].rescheduled_from = 1
        }),
        ("a cycle the book does not have", |s| {
            s.instructions[0].cycle = 77
        }),
        ("settled more than", |s| {
            s.instructions[1].settled_quantity = 11
        }),
        ("holds more than is left", |s| {
            s.instructions[2].held = u64::MAX
        }),
        ("status and its settled quantity disagree", |s| {
            s.instructions[0].status = 0
        }),
        ("unknown cancelling party", |s| {
            s.instructions[3].cancel_requested_by = 3
        }),
        ("submission number is another's", |s| {
            s.instructions[3].sequence = 0
        }),
        ("instruction 0xa: out of order or repeated", |s| {
            s.instructions.swap(0, 1)
        }),
        ("unknown flag bit", |s| s.instructions[0].record[118] = 0x80),
        ("settlement max age 0", |s| s.max_age = 0),
        ("command 0x0: an id no command may have", |s| {
            s.commands[0] = StoredCommand {
                id: 0,
                record: command(0, 1),
            }
        }),
        ("command 0x5: its record's id is not its key", |s| {
            s.commands[0].record[0] = 6
        }),
        ("command 0x5: out of order or repeated", |s| {
            s.commands.swap(0, 1)
        }),
        ("command 0x5: out of order or repeated", |s| {
            s.commands[1] = s.commands[0]
        }),
    ];
    for (expected, damage) in cases {
        let mut damaged = intact.clone();
        damage(&mut damaged);
        let error = restore(&damaged).map(|_| ()).expect_err(expected);
        assert!(error.contains(expected), "{expected}: got {error}");
    }
}

#[test]
fn the_digest_follows_the_book() {
    let digest = |book: &SettlementBook| {
        let mut hasher = blake3::Hasher::new();
        book.digest_into(&mut hasher);
        *hasher.finalize().as_bytes()
    };
    let one = book();
    assert_eq!(digest(&one), digest(&one.clone()));
    let mut held = one.clone();
    held.hold(20, Some(1)).unwrap();
    let mut cut = one.clone();
    cut.cut_off(2).unwrap();
    let mut asked = one.clone();
    asked.cancel(11, Party::Deliverer).unwrap();
    let mut limit = one.clone();
    limit.set_max_age(4);
    let mut commanded = one.clone();
    commanded.commands.insert(6, command(6, 0));
    let mut changed = one.clone();
    changed.commands.insert(5, command(5, 0xa4));
    let digests = [
        digest(&one),
        digest(&held),
        digest(&cut),
        digest(&asked),
        digest(&limit),
        digest(&commanded),
        digest(&changed),
    ];
    for (i, a) in digests.iter().enumerate() {
        for b in &digests[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

/// Applies `damage` (a field number and a value) to a stored instruction, if any.
fn damaged(mut stored: StoredInstruction, damage: Option<(u8, u64)>) -> StoredInstruction {
    let Some((field, value)) = damage else {
        return stored;
    };
    match field % 10 {
        0 => stored.status = value as u8,
        1 => stored.short_leg = value as u8,
        2 => stored.short_account = u128::from(value),
        3 => stored.rescheduled_from = value as u32,
        4 => stored.cycle = value as u32,
        5 => stored.settled_quantity = value,
        6 => stored.settled_cash = value,
        7 => stored.held = value,
        8 => stored.cancel_requested_by = value as u8,
        _ => stored.record[118] = value as u8,
    }
    stored
}

proptest! {
    /// Entries a book could hold, some with one field set to anything, commands with repeated,
    /// unordered, 0 or mismatched ids, a fail limit of 0: each set is restored or refused,
    /// never a panic, and what is restored stores back to exactly what was given.
    #[test]
    fn arbitrary_entries_are_restored_or_refused(
        entries in prop::collection::vec((0u64..=10, 0u64..=10, 0usize..7, any::<bool>(), 0u8..3, 0u8..8, prop::option::weighted(0.3, (any::<u8>(), 0u64..16))), 1..6),
        phases in prop::collection::vec((0u8..7, prop_oneof![3 => Just(0u32), 1 => 0u32..5]), 1..4),
        commands in prop::collection::vec((0u128..6, prop::bool::weighted(0.1)), 0..4),
        max_age in prop_oneof![1 => Just(0u16), 5 => 1u16..=u16::MAX],
    ) {
        let commands: Vec<StoredCommand> = commands.iter().map(|&(id, other)| StoredCommand {
            id,
            record: command(if other { id + 1 } else { id }, id as u8),
        }).collect();
        let cycles: Vec<StoredCycle> = phases.iter().enumerate().map(|(k, (phase, to))| StoredCycle {
            cycle: k as u32 + 1,
            phase: *phase,
            rescheduled_to: *to,
            run: [0; RUN_RECORD_BYTES],
        }).collect();
        let instructions: Vec<StoredInstruction> = entries.iter().enumerate().map(|(k, (settled, held, status, leg, party, flags, damage))| {
            let mut instruction = sale(k as u128 + 1, 1, 10, 100);
            instruction.flags = InstructionFlags(u16::from(*flags));
            let status = if *settled == 10 { 3 } else { [0, 1, 2, 4, 5, 6, 7][*status] };
            let short = matches!(status, 4 | 5);
            damaged(StoredInstruction {
                record: instruction.encode(),
                status,
                short_leg: u8::from(short && *leg),
                short_account: if short { 1 } else { 0 },
                rescheduled_from: if status == 2 { 1 } else { 0 },
                cycle: 1,
                carried: *leg,
                age: 0,
                settled_quantity: *settled,
                settled_cash: *settled * 10,
                held: (*held).min(10 - *settled),
                cancel_requested_by: *party,
                sequence: k as u64,
            }, *damage)
        }).collect();
        if let Ok(book) = SettlementBook::restore(max_age, 7, &cycles, &instructions, &commands) {
            prop_assert_eq!(book.max_age(), max_age);
            prop_assert_eq!(book.stored_cycles(), cycles);
            prop_assert_eq!(book.stored_instructions(), instructions);
            prop_assert_eq!(book.stored_commands(), commands);
        }
    }
}

/// A cycle's run record travels with it, and one that is damaged, another cycle's or in a
/// cycle that has not run is refused by name.
#[test]
fn run_records_are_stored_with_their_cycles() {
    let run = RunRecord {
        cycle: 4,
        command: 9,
        postings: 2,
        first_posting: 100,
        ..RunRecord::default()
    };
    let cycle = |phase: u8, run: &RunRecord| StoredCycle {
        cycle: 4,
        phase,
        rescheduled_to: 0,
        run: run.encode(),
    };
    let book = SettlementBook::restore(3, 7, &[cycle(3, &run)], &[], &[]).expect("restores");
    assert_eq!(book.run_record(4), Some(&run));
    assert_eq!(book.stored_cycles(), [cycle(3, &run)]);
    let refused = |stored: StoredCycle, what: &str| {
        let error = SettlementBook::restore(3, 7, &[stored], &[], &[])
            .expect_err("refused")
            .to_string();
        assert!(error.contains(what), "{error}");
    };
    refused(cycle(1, &run), "has not run");
    refused(
        cycle(3, &RunRecord { cycle: 5, ..run }),
        "damaged run record",
    );
    let mut damaged = cycle(3, &run);
    damaged.run[220] = 1;
    refused(damaged, "damaged run record");
}

/// Ids `apply` never takes are refused on restore by name: a command or an instruction in the
/// engine's id range or with id `u128::MAX`.
#[test]
fn ids_and_records_apply_never_takes_are_refused() {
    let cycle = StoredCycle {
        cycle: 1,
        phase: 0,
        rescheduled_to: 0,
        run: [0; RUN_RECORD_BYTES],
    };
    let command = |id: u128, kind: u16| {
        let record = crate::records::SettlementCommand {
            id,
            kind,
            cycle: 1,
            ..Default::default()
        }
        .encode();
        StoredCommand { id, record }
    };
    SettlementBook::restore(3, 7, &[cycle], &[], &[command(5, 1)]).expect("a command apply takes");
    for (stored, what) in [
        (
            command(crate::limits::RESERVED_ID_FIRST + 1, 1),
            "engine's own range",
        ),
        (command(u128::MAX, 1), "engine's own range"),
    ] {
        let error = SettlementBook::restore(3, 7, &[cycle], &[], &[stored])
            .expect_err("refused")
            .to_string();
        assert!(error.contains(what), "{error}");
    }
    let book = {
        let mut book = SettlementBook::new(3, 7);
        book.open(1).unwrap();
        book.submit(sale(9, 1, 10, 100)).unwrap();
        book
    };
    let mut stored = book.stored_instructions();
    let mut record = Instruction::decode(&stored[0].record).unwrap();
    record.id = crate::limits::RESERVED_ID_FIRST;
    stored[0].record = record.encode();
    let error = SettlementBook::restore(3, 7, &book.stored_cycles(), &stored, &[])
        .expect_err("refused")
        .to_string();
    assert!(error.contains("engine's own range"), "{error}");
}
