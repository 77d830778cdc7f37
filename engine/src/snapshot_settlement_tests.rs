//! The settlement book in snapshots (format 9): a book in every phase and status, with
//! commands and a fail limit of its own, survives a snapshot whole and goes on like the
//! original; a damaged book section or limit is refused by name; a format-8 snapshot restores
//! with an empty book and the default limit. The book is filled through its own API here (every
//! phase and status on purpose); engine/tests/snapshot.rs fills it through `apply`.

use rkyv::util::AlignedVec;

use super::*;
use crate::limits::SETTLEMENT_MAX_AGE_DEFAULT;
use crate::netting::Available;
use crate::records::{encode_batch, Account, InstructionFlags, RecordBytes, Transfer};
use crate::settlement::{CancelReason, Instruction, Party, Phase, SettlementBook, Status};
use crate::{EngineConfig, Operation};

const CONFIG: EngineConfig = EngineConfig { hash_seed: 11 };

/// `quantity` units from `deliverer`'s securities account (the receiver's is 1_000), cash
/// `quantity * 10` from account 2_000 to 3_000.
fn sale(id: u128, cycle: u32, deliverer: u128, flags: InstructionFlags) -> Instruction {
    Instruction {
        id,
        deliverer_securities: deliverer,
        receiver_securities: 1_000,
        receiver_cash: 2_000,
        deliverer_cash: 3_000,
        reference: id << 8,
        quantity: 10,
        cash: 100,
        cycle,
        priority: 0,
        flags,
        timestamp: 1_000 + id as u64,
    }
}

fn command(id: u128) -> RecordBytes {
    let mut record = [id as u8; crate::limits::RECORD_BYTES];
    record[..16].copy_from_slice(&id.to_le_bytes());
    record
}

/// Instructions and commands past one section each (`SECTION_RECORDS`), in the open cycle 6.
const MANY: u128 = SECTION_RECORDS as u128 + 100;

/// Fills `book`: a fail limit of 2; cycles closed (1), partly settled (2 and 3), settled (9),
/// cut off (4), cancelled and rescheduled (5 to 6), open (6); instructions settled, aged out,
/// failed, partly settled, held, eligible with one party's cancel request, cancelled by both,
/// rescheduled, and `MANY` more eligible; `MANY` commands.
fn fill(book: &mut SettlementBook) {
    let plain = InstructionFlags::of(false, false);
    let partial = InstructionFlags::of(true, false);
    book.set_max_age(2);
    let limited = |account, units| {
        move |a| {
            if a == account {
                Available::Limited(units)
            } else {
                Available::Unlimited
            }
        }
    };
    // Cycle 1: 10 settles, 11 fails (account 1 has 10 units); both runs fail 11 after: aged
    // out at the second.
    book.open(1).unwrap();
    book.submit(sale(10, 1, 1, plain)).unwrap();
    book.submit(sale(11, 1, 1, plain)).unwrap();
    book.cut_off(1).unwrap();
    book.run(1, limited(1, 10)).unwrap();
    book.close(1).unwrap();
    book.open(2).unwrap();
    book.cut_off(2).unwrap();
    book.run(2, limited(1, 0)).unwrap();
    // Cycle 9: settles whole.
    book.open(9).unwrap();
    book.submit(sale(90, 9, 9, plain)).unwrap();
    book.cut_off(9).unwrap();
    book.run(9, |_| Available::Unlimited).unwrap();
    // Cycle 3: 30 fails (account 3 has nothing), 31 settles 4 of 10.
    book.open(3).unwrap();
    book.submit(sale(30, 3, 3, plain)).unwrap();
    book.submit(sale(31, 3, 4, partial)).unwrap();
    book.cut_off(3).unwrap();
    book.run(3, |a| match a {
        3 => Available::Limited(0),
        4 => Available::Limited(4),
        _ => Available::Unlimited,
    })
    .unwrap();
    // Cycle 4: held, asked to be cancelled by one party, cancelled by both; cut off.
    book.open(4).unwrap();
    book.submit(sale(40, 4, 5, InstructionFlags::of(false, true)))
        .unwrap();
    book.submit(sale(41, 4, 5, plain)).unwrap();
    book.submit(sale(42, 4, 5, plain)).unwrap();
    book.cancel(41, Party::Deliverer).unwrap();
    book.cancel(42, Party::Deliverer).unwrap();
    book.cancel(42, Party::Receiver).unwrap();
    book.cut_off(4).unwrap();
    // Cycle 5 cancelled, its instruction rescheduled to 6, which stays open.
    book.open(5).unwrap();
    book.submit(sale(50, 5, 6, plain)).unwrap();
    book.cancel_and_reschedule(5, 6).unwrap();
    for k in 0..MANY {
        book.submit(sale(1 << 20 | k, 6, 7, plain)).unwrap();
    }
    for k in 1..=MANY {
        book.commands.insert(k << 40, command(k << 40));
    }
}

/// An engine with a small ledger (so the book's sections follow others) and a filled book.
fn engine() -> Engine {
    let mut engine = Engine::new(CONFIG);
    let accounts: Vec<Account> = (1..=2u128)
        .map(|id| Account {
            id,
            ledger: 1,
            code: 1,
            ..Account::default()
        })
        .collect();
    let body = encode_batch(&accounts, Account::encode);
    assert!(engine
        .apply(Operation::CreateAccounts, 1 << 40, &body)
        .is_ok());
    let transfer = Transfer {
        id: 7,
        debit_account_id: 1,
        credit_account_id: 2,
        amount: 5,
        ledger: 1,
        code: 1,
        ..Transfer::default()
    };
    let outcome = engine.apply(Operation::CreateTransfers, 2 << 40, &transfer.encode());
    assert!(outcome.is_ok_and(|o| o.failures.is_empty()));
    fill(&mut engine.settlement);
    engine
}

#[test]
fn the_book_is_in_every_phase_and_status() {
    let book = engine().settlement;
    let phases: Vec<Phase> = [1, 2, 9, 3, 4, 5, 6]
        .map(|c| book.phase(c).unwrap())
        .to_vec();
    assert_eq!(
        phases,
        [
            Phase::Closed,
            Phase::PartlySettled,
            Phase::Settled,
            Phase::PartlySettled,
            Phase::CutOff,
            Phase::Cancelled { rescheduled_to: 6 },
            Phase::Open,
        ]
    );
    let status = |id| book.instruction(id).unwrap().status;
    assert_eq!(status(10), Status::Settled);
    assert_eq!(status(11), Status::Cancelled(CancelReason::AgedOut));
    assert!(matches!(
        status(30),
        Status::Failed {
            short_account: 3,
            ..
        }
    ));
    assert!(matches!(
        status(31),
        Status::PartlySettled {
            short_account: 4,
            ..
        }
    ));
    assert_eq!(status(40), Status::Held);
    assert_eq!(status(41), Status::Eligible);
    assert_eq!(status(42), Status::Cancelled(CancelReason::Bilateral));
    assert_eq!(status(50), Status::Rescheduled { from: 5 });
    assert_ne!(book.max_age(), SETTLEMENT_MAX_AGE_DEFAULT);
}

/// Proves an engine whose book holds every phase and status, commands and its own fail limit
/// restores to an equal book (sections of more than one per kind) and an equal digest, under
/// the same hash seed and another, and that the restored book goes on like the original.
#[test]
fn the_book_survives_a_snapshot() {
    let mut engine = engine();
    let frozen = engine.freeze();
    let book_sections = |kind| frozen.sections().iter().filter(|s| s.kind == kind).count();
    assert_eq!(book_sections(SectionKind::SettlementCycles), 1);
    assert_eq!(book_sections(SectionKind::SettlementInstructions), 2);
    assert_eq!(book_sections(SectionKind::SettlementCommands), 2);
    // The header's last four fields (docs/wal.md): the book's counts and its fail limit.
    let header = frozen.header();
    let field = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().unwrap());
    let book = &engine.settlement;
    assert_eq!(
        [128, 136, 144, 152].map(field),
        [
            7,
            book.stored_instructions().len() as u64,
            MANY as u64,
            u64::from(book.max_age())
        ]
    );
    let image = frozen.snapshot();
    let mut restored = Engine::restore(&image, CONFIG).expect("restores");
    assert_eq!(restored.settlement, engine.settlement);
    assert_eq!(restored.digest(), engine.digest());
    let other = Engine::restore(&image, EngineConfig { hash_seed: 12 }).expect("restores");
    assert_eq!(other.digest(), engine.digest());
    assert_eq!(
        other.settlement.stored_instructions(),
        engine.settlement.stored_instructions()
    );
    // Both go on alike: cycle 4's run (its fails age to the restored limit), and a new
    // instruction takes the next submission number.
    for book in [&mut engine.settlement, &mut restored.settlement] {
        book.submit(sale(60, 6, 8, InstructionFlags::of(false, false)))
            .unwrap();
    }
    let short = |a| {
        if a == 5 {
            Available::Limited(0)
        } else {
            Available::Unlimited
        }
    };
    let ran = engine.settlement.run(4, short);
    assert_eq!(restored.settlement.run(4, short), ran);
    assert_eq!(restored.settlement, engine.settlement);
    assert_eq!(restored.digest(), engine.digest());
}

/// Proves the digest covers the book (limit, instructions, commands) and the ledger digest
/// does not.
#[test]
fn the_digest_covers_the_book() {
    let plain = Engine::new(CONFIG);
    let mut changed = Engine::new(CONFIG);
    let digests = |changed: &Engine| (changed.digest(), changed.ledger_digest());
    let (digest, ledger) = digests(&plain);
    changed.settlement.set_max_age(4);
    assert_ne!(digests(&changed).0, digest, "the limit");
    assert_eq!(digests(&changed).1, ledger);
    changed.settlement.set_max_age(SETTLEMENT_MAX_AGE_DEFAULT);
    assert_eq!(digests(&changed).0, digest);
    changed.settlement.commands.insert(3, command(3));
    assert_ne!(digests(&changed).0, digest, "a command");
    assert_eq!(digests(&changed).1, ledger);
}

/// `frozen`'s snapshot with its header changed by `header` and each section's stored bytes
/// replaced by what `section` makes of them (`None`: left out), its trailer made anew.
fn rebuilt(
    frozen: &FrozenState,
    header: impl FnOnce(&mut Vec<u8>),
    mut section: impl FnMut(&Section, Vec<u8>) -> Option<Vec<u8>>,
) -> Vec<u8> {
    let mut image = frozen.header();
    header(&mut image);
    let mut trailer = TrailerHasher::new(&image);
    let mut encoder = SectionEncoder::default();
    for each in frozen.sections() {
        let mut stored = Vec::new();
        frozen.encode_section(&each, &mut encoder, &mut stored);
        if let Some(stored) = section(&each, stored) {
            trailer.section(&section_hash(&stored));
            image.extend_from_slice(&stored);
        }
    }
    image.extend_from_slice(&trailer.finish());
    image
}

/// A stored section of `records` records of `T` with `change` made to them, encoded anew (its
/// hash a true one: only the book's own checks can refuse it).
fn changed<T: Record>(stored: &[u8], records: usize, change: impl FnOnce(&mut Vec<T>)) -> Vec<u8> {
    let length = u64::from_le_bytes(stored[..8].try_into().unwrap()) as usize;
    let mut archive = AlignedVec::<16>::new();
    archive.extend_from_slice(&stored[8..8 + length]);
    let mut all = Vec::new();
    T::unarchive(&archive, records, |record| {
        all.push(record);
        Ok(())
    })
    .unwrap();
    change(&mut all);
    let mut out = Vec::new();
    encode_section(&all, &mut Vec::new(), &mut AlignedVec::new(), &mut out);
    out
}

/// Proves a damaged book section (a cycle, an instruction, a command, an instruction repeated
/// across two sections) or fail limit is refused by name, though every hash is true.
#[test]
fn a_damaged_book_is_refused_by_name() {
    let mut engine = engine();
    let frozen = engine.freeze();
    let restore = |image: Vec<u8>| match Engine::restore(&image, CONFIG) {
        Err(SnapshotError::Invalid(why)) => why,
        other => panic!("not refused as invalid: {:?}", other.map(|_| ())),
    };
    let damaged = |kind: SectionKind, index: usize, change: &dyn Fn(&[u8], usize) -> Vec<u8>| {
        restore(rebuilt(
            &frozen,
            |_| {},
            |section, stored| {
                Some(if section.kind == kind && section.index == index {
                    change(&stored, section.records)
                } else {
                    stored
                })
            },
        ))
    };
    let why = damaged(SectionKind::SettlementCycles, 0, &|stored, n| {
        changed::<StoredCycle>(stored, n, |c| c[0].phase = 9)
    });
    assert_eq!(why, "settlement cycle 1: unknown phase 9");
    let why = damaged(SectionKind::SettlementInstructions, 0, &|stored, n| {
        changed::<StoredInstruction>(stored, n, |i| i[0].settled_quantity = 11)
    });
    assert_eq!(
        why,
        "settlement instruction 0xa: settled more than its quantity or cash"
    );
    // The second section's first instruction made the first section's last: repeated.
    let last = *frozen.settlement_instructions[..SECTION_RECORDS]
        .last()
        .unwrap();
    let why = damaged(SectionKind::SettlementInstructions, 1, &|stored, n| {
        changed::<StoredInstruction>(stored, n, |i| i[0] = last)
    });
    assert!(why.ends_with("out of order or repeated"), "{why}");
    let why = damaged(SectionKind::SettlementCommands, 1, &|stored, n| {
        changed::<StoredCommand>(stored, n, |c| c[3].record[0] ^= 1)
    });
    assert!(why.ends_with("its record's id is not its key"), "{why}");
    for (limit, expected) in [
        (0u64, "settlement max age 0: at least 1 run is due"),
        (1 << 16, "settlement max age 65536 is past 65535"),
    ] {
        let image = rebuilt(
            &frozen,
            |header| header[152..160].copy_from_slice(&limit.to_le_bytes()),
            |_, stored| Some(stored),
        );
        assert_eq!(restore(image), expected);
    }
}

/// Proves a format-8 snapshot (the header without the book's counts and limit, no book
/// sections) restores with an empty book and the default fail limit, the rest as it was.
#[test]
fn format_8_restores_with_an_empty_book() {
    let mut engine = engine();
    let frozen = engine.freeze();
    let image = rebuilt(
        &frozen,
        |header| {
            header.truncate(HEADER_BYTES_NO_SETTLEMENT);
            header[8..12].copy_from_slice(&FORMAT_VERSION_NO_SETTLEMENT.to_le_bytes());
        },
        |section, stored| {
            let book = matches!(
                section.kind,
                SectionKind::SettlementCycles
                    | SectionKind::SettlementInstructions
                    | SectionKind::SettlementCommands
            );
            (!book).then_some(stored)
        },
    );
    let restored = Engine::restore(&image, CONFIG).expect("format 8");
    // A new engine's book: empty, the default limit.
    assert_eq!(restored.settlement, Engine::new(CONFIG).settlement);
    assert!(restored.settlement.stored_cycles().is_empty());
    assert_eq!(restored.settlement.max_age(), SETTLEMENT_MAX_AGE_DEFAULT);
    assert_eq!(restored.ledger_digest(), engine.ledger_digest());
    engine.settlement = Engine::new(CONFIG).settlement;
    assert_eq!(restored.digest(), engine.digest());
}
