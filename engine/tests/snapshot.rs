//! Snapshots: restore gives the same digest and the same answers to every query, and the
//! restored engine continues exactly like the original (its settlement book too); damaged
//! snapshot bytes are refused with an error, never a panic.

mod common;
mod model;

use common::{account_ids, operation};
use model::generate::{Batch, Config, Generator, Rng, TIME_BASE_LOW};
use model::{Model, Op};
use tally_engine::limits::BATCH_EVENTS_MAX;
use tally_engine::records::{CommandKind, SettlementCommand};
use tally_engine::settlement::{CancelReason, Instruction, Status};
use tally_engine::{
    Account, AccountFlags, Engine, EngineConfig, InstructionFlags, Operation, StatementFilter,
    Transfer,
};

/// A generator and a model that keep producing batches aimed at the current state.
struct Log {
    rng: Rng,
    model: Model,
    generator: Generator,
}

impl Log {
    fn new(seed: u64) -> Log {
        Log {
            rng: Rng::new(seed),
            model: Model::new(),
            generator: Generator::new(Config {
                time_base: TIME_BASE_LOW,
            }),
        }
    }
    fn next(&mut self) -> Batch {
        let first = self.model.last_timestamp == 0;
        let n = if first { 20 } else { self.rng.range(1, 60) };
        let seeds: Vec<u64> = (0..n).map(|_| self.rng.next_u64()).collect();
        let batch = self.generator.batch(
            &self.model,
            self.rng.next_u64(),
            &seeds,
            first.then_some(Op::Accounts),
        );
        let _ = self
            .model
            .apply(batch.op, batch.entry_timestamp, &batch.body);
        batch
    }
}

/// Every query answer of an engine that the tests compare, as one comparable string per query.
fn answers(engine: &Engine, id_next: u128, times: &[u64]) -> Vec<String> {
    let mut out = vec![
        format!("last {}", engine.last_timestamp()),
        format!("totals {:?}", engine.ledger_totals()),
    ];
    for id in account_ids() {
        out.push(format!("account {id} {:?}", engine.lookup_account(id)));
        for &t in times {
            out.push(format!("as_of {id} {t} {:?}", engine.balances_as_of(id, t)));
        }
        for reversed in [false, true] {
            for (min, max, limit) in [
                (0, 0, 8_189),
                (times[times.len() / 3], times[times.len() * 2 / 3], 5),
                (0, 0, 1),
            ] {
                let filter = StatementFilter {
                    account_id: id,
                    timestamp_min: min,
                    timestamp_max: max,
                    limit,
                    reversed,
                    ..StatementFilter::default()
                };
                out.push(format!(
                    "statement {filter:?} {:?}",
                    engine.statement(&filter)
                ));
            }
        }
    }
    for id in (0..id_next + 5).chain([u128::MAX]) {
        out.push(format!("transfer {id} {:?}", engine.lookup_transfer(id)));
        out.push(format!("trade {id} {:?}", engine.lookup_trade(id)));
    }
    out
}

fn sample_times(model: &Model) -> Vec<u64> {
    let mut times = vec![0, u64::MAX, model.last_timestamp];
    let mut rng = Rng::new(model.last_timestamp);
    for a in model.accounts.values() {
        for _ in 0..4 {
            if let Some(e) = rng.pick(&a.log) {
                times.extend([e.timestamp - 1, e.timestamp]);
            }
        }
    }
    times.sort_unstable();
    times.dedup();
    times
}

/// Proves snapshot → restore (with another hash seed) gives an equal digest and equal answers to
/// lookups, balances-as-of and statements, and that the original and the restored engine stay
/// identical (results and digest) under further batches — also across a second
/// snapshot/restore of the restored engine.
#[test]
fn restore_is_identical_and_continues_identically() {
    let seed = common::run_seed();
    let mut rng = Rng::new(seed);
    for run in 0..4 {
        let mut log = Log::new(rng.next_u64());
        let mut original = Engine::new(EngineConfig {
            hash_seed: rng.next_u64(),
        });
        let empty = Engine::restore(&original.snapshot(), EngineConfig { hash_seed: 3 })
            .unwrap_or_else(|e| panic!("seed {seed}: empty snapshot refused: {e:?}"));
        assert_eq!(
            empty.digest(),
            original.digest(),
            "seed {seed}: empty engine"
        );
        for _ in 0..20 {
            let batch = log.next();
            let _ = original.apply(operation(batch.op), batch.entry_timestamp, &batch.body);
        }
        let bytes = original.snapshot();
        let mut restored = Engine::restore(
            &bytes,
            EngineConfig {
                hash_seed: rng.next_u64(),
            },
        )
        .unwrap_or_else(|e| panic!("seed {seed} run {run}: snapshot refused: {e:?}"));
        assert_eq!(
            restored.digest(),
            original.digest(),
            "seed {seed} run {run}: digest after restore"
        );
        let times = sample_times(&log.model);
        let id_next = log.generator.id_next;
        let (a, b) = (
            answers(&original, id_next, &times),
            answers(&restored, id_next, &times),
        );
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(
                x, y,
                "seed {seed} run {run}: query answer differs after restore (left original)"
            );
        }
        for i in 0..20 {
            let batch = log.next();
            let x = original.apply(operation(batch.op), batch.entry_timestamp, &batch.body);
            let y = restored.apply(operation(batch.op), batch.entry_timestamp, &batch.body);
            assert_eq!(
                x, y,
                "seed {seed} run {run} batch {i} after restore: results differ"
            );
            assert_eq!(
                original.digest(),
                restored.digest(),
                "seed {seed} run {run} batch {i} after restore: digest"
            );
            if i == 10 {
                restored = Engine::restore(
                    &restored.snapshot(),
                    EngineConfig {
                        hash_seed: rng.next_u64(),
                    },
                )
                .unwrap_or_else(|e| {
                    panic!("seed {seed} run {run}: second snapshot refused: {e:?}")
                });
            }
        }
        let times = sample_times(&log.model);
        let id_next = log.generator.id_next;
        assert_eq!(
            answers(&original, id_next, &times),
            answers(&restored, id_next, &times),
            "seed {seed} run {run}: answers after continuing"
        );
    }
}

/// Proves a frozen state (what a snapshot is built from while the engine goes on applying)
/// is the state at the moment it was taken: after further batches — new events, posts, voids
/// and expiries of pending events stored before it — its snapshot is byte for byte the one
/// taken at that moment, restores to that moment's digest, and the engine that went on (its
/// shared chunks copied on write) is identical to one that never froze.
#[test]
fn a_frozen_state_is_the_state_when_it_was_taken() {
    let seed = common::run_seed();
    let mut rng = Rng::new(seed ^ 0xf402e);
    for run in 0..4 {
        let mut log = Log::new(rng.next_u64());
        let config = EngineConfig {
            hash_seed: rng.next_u64(),
        };
        let mut engine = Engine::new(config);
        let mut control = Engine::new(config);
        let apply = |engine: &mut Engine, control: &mut Engine, batch: &Batch| {
            let x = engine.apply(operation(batch.op), batch.entry_timestamp, &batch.body);
            let y = control.apply(operation(batch.op), batch.entry_timestamp, &batch.body);
            assert_eq!(x, y, "seed {seed} run {run}: results differ");
        };
        for _ in 0..30 {
            let batch = log.next();
            apply(&mut engine, &mut control, &batch);
        }
        let frozen = engine.freeze();
        let (bytes, digest) = (engine.snapshot(), engine.digest());
        for _ in 0..60 {
            let batch = log.next();
            apply(&mut engine, &mut control, &batch);
        }
        assert_eq!(
            frozen.snapshot(),
            bytes,
            "seed {seed} run {run}: the frozen state moved"
        );
        let restored = Engine::restore(&frozen.snapshot(), config)
            .unwrap_or_else(|e| panic!("seed {seed} run {run}: frozen snapshot refused: {e:?}"));
        assert_eq!(restored.digest(), digest, "seed {seed} run {run}");
        assert_eq!(
            engine.digest(),
            control.digest(),
            "seed {seed} run {run}: the engine that froze went on like one that did not"
        );
        assert_eq!(engine.snapshot(), control.snapshot());
    }
}

fn restore_must_fail(bytes: &[u8], what: &str) {
    let outcome = std::panic::catch_unwind(|| {
        Engine::restore(bytes, EngineConfig { hash_seed: 9 }).map(|e| e.digest())
    });
    match outcome {
        Err(_) => panic!("restore panicked on {what}"),
        Ok(Ok(_)) => panic!("restore accepted {what}"),
        Ok(Err(_)) => {}
    }
}

/// Proves a snapshot with any single flipped byte (every byte of the head and tail, a sample of
/// the middle) or truncated to any shorter length (all short lengths, a sample of the others)
/// or extended is refused with an error, never a panic and never a wrong engine.
#[test]
fn damaged_snapshots_are_refused() {
    let seed = common::run_seed();
    let mut log = Log::new(seed);
    let mut engine = Engine::new(EngineConfig { hash_seed: 1 });
    for _ in 0..12 {
        let batch = log.next();
        let _ = engine.apply(operation(batch.op), batch.entry_timestamp, &batch.body);
    }
    let bytes = engine.snapshot();
    let len = bytes.len();
    let mut rng = Rng::new(seed ^ 1);
    let mut positions: Vec<usize> = (0..len.min(256))
        .chain(len.saturating_sub(256)..len)
        .collect();
    positions.extend((0..400).map(|_| rng.below(len as u64) as usize));
    for at in positions {
        let mut damaged = bytes.clone();
        damaged[at] ^= 1 << rng.below(8);
        restore_must_fail(
            &damaged,
            &format!("a bit flipped at byte {at} of {len} (seed {seed})"),
        );
    }
    let mut lengths: Vec<usize> = (0..len.min(300)).collect();
    lengths.extend((0..200).map(|_| rng.below(len as u64) as usize));
    lengths.push(len - 1);
    for cut in lengths {
        restore_must_fail(
            &bytes[..cut],
            &format!("a snapshot truncated to {cut} of {len} bytes (seed {seed})"),
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    restore_must_fail(&longer, "a snapshot with a byte appended");
    for k in 0..64 {
        let noise: Vec<u8> = (0..rng.below(4096)).map(|_| rng.next_u64() as u8).collect();
        restore_must_fail(&noise, &format!("random bytes #{k} (seed {seed})"));
    }
    // And the undamaged bytes still restore.
    let restored = Engine::restore(&bytes, EngineConfig { hash_seed: 2 }).expect("intact snapshot");
    assert_eq!(restored.digest(), engine.digest());
}

/// Proves a restore of more than one arena chunk of events — where the restore has a helper
/// thread fault chunks in ahead and inserts ids through its prefetching pipeline — gives the
/// same digest and answers, and continues identically.
#[test]
fn a_restore_of_many_chunks_is_identical() {
    let seed = common::run_seed();
    let mut rng = Rng::new(seed);
    let mut log = Log::new(rng.next_u64());
    let mut original = Engine::new(EngineConfig {
        hash_seed: rng.next_u64(),
    });
    for _ in 0..200 {
        let batch = log.next();
        let _ = original.apply(operation(batch.op), batch.entry_timestamp, &batch.body);
    }
    // Then more than two chunks (65,536 each) of plain transfers among accounts of their own.
    let base: u128 = 0x7a11_7e57 << 64;
    let next_timestamp = |engine: &Engine| engine.last_timestamp() + 1_000_000;
    let t = next_timestamp(&original);
    let outcome = original.apply(Operation::CreateAccounts, t, &accounts_body(base, 100));
    assert!(
        outcome.as_ref().is_ok_and(|o| o.failures.is_empty()),
        "seed {seed}: accounts: {outcome:?}"
    );
    let mut id = base + 1_000;
    for _ in 0..20 {
        let body: Vec<u8> = (0..BATCH_EVENTS_MAX as u128)
            .flat_map(|i| {
                id += 1;
                Transfer {
                    id,
                    debit_account_id: base + i % 100,
                    credit_account_id: base + (i * 7 + 1) % 100,
                    amount: 1 + id % 1_000,
                    ledger: 1,
                    code: 1,
                    ..Transfer::default()
                }
                .encode()
            })
            .collect();
        let t = next_timestamp(&original);
        let outcome = original.apply(Operation::CreateTransfers, t, &body);
        assert!(outcome.is_ok(), "seed {seed}: transfers");
    }
    assert!(
        original.transfers_count() > 2 * tally_engine::limits::ARENA_CHUNK_ELEMENTS,
        "seed {seed}: only {} transfers",
        original.transfers_count()
    );
    let mut restored = Engine::restore(
        &original.snapshot(),
        EngineConfig {
            hash_seed: rng.next_u64(),
        },
    )
    .unwrap_or_else(|e| panic!("seed {seed}: snapshot refused: {e:?}"));
    assert_eq!(restored.digest(), original.digest(), "seed {seed}: digest");
    let times = sample_times(&log.model);
    let id_next = log.generator.id_next;
    assert_eq!(
        answers(&original, id_next, &times),
        answers(&restored, id_next, &times),
        "seed {seed}: answers after restore"
    );
    for i in 0..50 {
        let batch = log.next();
        let x = original.apply(operation(batch.op), batch.entry_timestamp, &batch.body);
        let y = restored.apply(operation(batch.op), batch.entry_timestamp, &batch.body);
        assert_eq!(x, y, "seed {seed} batch {i} after restore: results differ");
    }
    assert_eq!(
        restored.digest(),
        original.digest(),
        "seed {seed}: digest after continuing"
    );
}

/// `count` accounts on ledger 1 from id `base` on.
fn accounts_body(base: u128, count: u128) -> Vec<u8> {
    (0..count)
        .flat_map(|i| {
            Account {
                id: base + i,
                ledger: 1,
                code: 1,
                ..Account::default()
            }
            .encode()
        })
        .collect()
}

/// An engine with two full chunks of transfers and part of a third, the first of them a
/// pending transfer: the state [`later_sections_unchanged_are_the_earlier_bytes`] freezes.
fn chunked_engine(base: u128) -> Engine {
    let mut engine = Engine::new(EngineConfig { hash_seed: 5 });
    let outcome = engine.apply(
        Operation::CreateAccounts,
        1_000_000,
        &accounts_body(base, 10),
    );
    assert!(outcome.is_ok_and(|o| o.failures.is_empty()));
    transfers(
        &mut engine,
        base,
        2 * tally_engine::limits::ARENA_CHUNK_ELEMENTS + 100,
    );
    engine
}

/// Apply `count` plain transfers among the accounts at `base` (ids after the engine's
/// transfers; the very first one pending).
fn transfers(engine: &mut Engine, base: u128, count: usize) {
    let mut left = count;
    while left > 0 {
        let first = engine.transfers_count() as u128;
        let n = left.min(BATCH_EVENTS_MAX);
        let body: Vec<u8> = (0..n as u128)
            .flat_map(|i| {
                let id = base + 1_000 + first + i;
                Transfer {
                    id,
                    debit_account_id: base + id % 10,
                    credit_account_id: base + (id + 1) % 10,
                    amount: 1,
                    ledger: 1,
                    code: 1,
                    flags: if first + i == 0 {
                        tally_engine::TransferFlags::PENDING
                    } else {
                        tally_engine::TransferFlags::default()
                    },
                    ..Transfer::default()
                }
                .encode()
            })
            .collect();
        let at = engine.last_timestamp() + 1_000;
        let outcome = engine.apply(Operation::CreateTransfers, at, &body);
        assert!(outcome.is_ok_and(|o| o.failures.is_empty()));
        left -= n;
    }
}

/// Proves a later snapshot's sections whose version matches an earlier snapshot's are the
/// earlier bytes exactly (so a writer may take them from where it kept them), that a status
/// change or an append changes a section's version, and that a snapshot assembled from kept
/// and fresh sections is byte for byte the one written whole and restores to the same state.
/// Also that the previous format (version 2, one hash over everything) still restores.
#[test]
fn later_sections_unchanged_are_the_earlier_bytes() {
    use std::collections::HashMap;
    use tally_engine::{section_hash, SectionEncoder, SectionKind, TrailerHasher};
    let base: u128 = 0x5ec7 << 64;
    let mut engine = chunked_engine(base);
    let first = engine.freeze();
    let mut encoder = SectionEncoder::default();
    let mut kept = HashMap::new();
    for section in first.sections() {
        let mut stored = Vec::new();
        first.encode_section(&section, &mut encoder, &mut stored);
        if let Some(version) = section.version {
            kept.insert((section.kind, section.index), (version, stored));
        }
    }
    let kinds = |kind| kept.keys().filter(|(k, _)| *k == kind).count();
    assert_eq!(
        kinds(SectionKind::Transfers),
        2,
        "two whole chunks of transfers"
    );
    // The log keeps a hash per 16 leaves: 8,192 of them, half a chunk, still filling.
    assert_eq!(
        kinds(SectionKind::LogLeaves),
        0,
        "no whole chunk of log groups"
    );
    assert_eq!(kept.len(), 2);
    // Post the pending transfer (a status change in chunk 0), append to the open chunk.
    let post = Transfer {
        id: base + 999,
        pending_id: base + 1_000,
        flags: tally_engine::TransferFlags::POST_PENDING_TRANSFER,
        ..Transfer::default()
    };
    let at = engine.last_timestamp() + 1_000;
    let outcome = engine.apply(Operation::CreateTransfers, at, &post.encode());
    assert!(outcome.is_ok_and(|o| o.failures.is_empty()), "post");
    transfers(&mut engine, base, 10);
    let second = engine.freeze();
    let header = second.header();
    let mut image = header.clone();
    let mut trailer = TrailerHasher::new(&header);
    let mut reused = Vec::new();
    for section in second.sections() {
        let stored = match kept.get(&(section.kind, section.index)) {
            Some((version, stored)) if Some(*version) == section.version => {
                reused.push((section.kind, section.index));
                stored.clone()
            }
            _ => {
                let mut stored = Vec::new();
                second.encode_section(&section, &mut encoder, &mut stored);
                stored
            }
        };
        trailer.section(&section_hash(&stored));
        image.extend_from_slice(&stored);
    }
    image.extend_from_slice(&trailer.finish());
    assert_eq!(
        reused,
        vec![(SectionKind::Transfers, 1)],
        "chunk 0 changed (the post), chunk 1 did not, chunk 2 is still filling"
    );
    let whole = second.snapshot();
    assert!(image == whole, "assembled and whole snapshots differ");
    let restored = Engine::restore(&image, EngineConfig { hash_seed: 3 }).expect("restores");
    assert_eq!(restored.digest(), engine.digest());

    // Versions 6 and 7, whose log sections hold every leaf's hash, are proven to restore by
    // the engine's own tests (`event_log`: they need the leaf hashes as applied).
    let header_bytes = tally_engine::SNAPSHOT_HEADER_BYTES;

    // The same ledger in version 3 (no failed-id count, no log, access, kept or settlement
    // counts, no settlement limit; this state has no failed ids): the sections before the
    // log's, under the same trailer rule, after a header 104 bytes shorter (8 + 4 × 8 + 3 × 8
    // + 8 + 4 × 8). It restores to the same ledger with an empty log.
    let newer_counts = 8 + 4 * 8 + 3 * 8 + 8 + 4 * 8;
    assert_eq!(
        whole[header_bytes - newer_counts..header_bytes - newer_counts + 8],
        [0u8; 8]
    );
    let ledger_sections = second
        .sections()
        .iter()
        .filter(|s| {
            !matches!(
                s.kind,
                SectionKind::LogLeaves
                    | SectionKind::LogBatches
                    | SectionKind::Checkpoints
                    | SectionKind::Cosignatures
                    | SectionKind::AccessReads
                    | SectionKind::AccessTouches
                    | SectionKind::AccessCheckpoints
                    | SectionKind::LogKept
                    | SectionKind::SettlementCycles
                    | SectionKind::SettlementInstructions
                    | SectionKind::SettlementCommands
            )
        })
        .count();
    let mut v3 = whole[..header_bytes - newer_counts].to_vec();
    v3[8..12].copy_from_slice(&3u32.to_le_bytes());
    let mut trailer = TrailerHasher::new(&v3);
    let mut at = header_bytes;
    for _ in 0..ledger_sections {
        let length = u64::from_le_bytes(whole[at..at + 8].try_into().expect("8 bytes")) as usize;
        let end = at + 8 + length + tally_engine::SECTION_HASH_BYTES;
        trailer.section(&section_hash(&whole[at..end]));
        v3.extend_from_slice(&whole[at..end]);
        at = end;
    }
    v3.extend_from_slice(&trailer.finish());
    let restored = Engine::restore(&v3, EngineConfig { hash_seed: 5 }).expect("version 3");
    assert_eq!(restored.ledger_digest(), engine.ledger_digest());
    assert_eq!(restored.log_size(), 0);

    // And in version 2: no section hashes, one BLAKE3 over all before the trailer.
    let mut old = whole[..header_bytes - newer_counts].to_vec();
    old[8..12].copy_from_slice(&2u32.to_le_bytes());
    let mut at = header_bytes;
    for _ in 0..ledger_sections {
        let length = u64::from_le_bytes(whole[at..at + 8].try_into().expect("8 bytes")) as usize;
        old.extend_from_slice(&whole[at..at + 8 + length]);
        at += 8 + length + tally_engine::SECTION_HASH_BYTES;
    }
    let hash = *blake3::hash(&old).as_bytes();
    old.extend_from_slice(&hash);
    let restored = Engine::restore(&old, EngineConfig { hash_seed: 4 }).expect("version 2");
    assert_eq!(restored.ledger_digest(), engine.ledger_digest());
}

/// A settlement command of `kind` (docs/records.md, "Settlement command").
fn command(id: u128, kind: CommandKind, set: impl FnOnce(&mut SettlementCommand)) -> Vec<u8> {
    let mut command = SettlementCommand {
        id,
        kind: kind as u16,
        ..SettlementCommand::default()
    };
    set(&mut command);
    command.encode().to_vec()
}

/// Proves the settlement book that `apply` builds — instructions settled, failed, held and
/// cancelled by both parties, cycles closed and open, the commands applied and a fail limit
/// set by one of them — survives a snapshot: the restored engine (another hash seed) has the
/// same book and digest, answers a retried command `exists` like the original, and goes on
/// identically through the next cut-off and run.
#[test]
fn the_settlement_book_survives_a_snapshot() {
    let mut original = Engine::new(EngineConfig { hash_seed: 21 });
    let account = |id: u128, ledger: u32, short: bool| Account {
        id,
        ledger,
        code: 1,
        flags: if short {
            AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS
        } else {
            AccountFlags::default()
        },
        ..Account::default()
    };
    // Securities on ledger 1 (account 1 holds nothing and may not go below it), cash on 2.
    let accounts = [
        account(1, 1, true),
        account(2, 1, false),
        account(3, 1, false),
        account(4, 2, false),
        account(5, 2, false),
    ];
    let instruction = |id: u128, deliverer: u128, hold: bool| Instruction {
        id,
        deliverer_securities: deliverer,
        receiver_securities: 2,
        receiver_cash: 4,
        deliverer_cash: 5,
        quantity: 10,
        cash: 100,
        cycle: 1,
        flags: InstructionFlags::of(false, hold),
        ..Instruction::default()
    };
    let cycle = |cycle| move |c: &mut SettlementCommand| c.cycle = cycle;
    let cancel = |party| {
        move |c: &mut SettlementCommand| {
            c.instruction = 103;
            c.party = party;
        }
    };
    let set_limit = command(1_000, CommandKind::SetMaxAge, |c| c.max_age = 3);
    let batches: Vec<(Operation, Vec<u8>)> = vec![
        (
            Operation::CreateAccounts,
            accounts.iter().flat_map(|a| a.encode()).collect(),
        ),
        (
            Operation::SettlementCommands,
            [
                set_limit.clone(),
                command(1_001, CommandKind::Open, cycle(1)),
            ]
            .concat(),
        ),
        (
            Operation::CreateInstructions,
            [
                (100, 1, false),
                (101, 3, false),
                (102, 3, true),
                (103, 3, false),
            ]
            .iter()
            .flat_map(|&(id, deliverer, hold)| instruction(id, deliverer, hold).encode())
            .collect(),
        ),
        (
            Operation::SettlementCommands,
            [
                command(1_002, CommandKind::Cancel, cancel(1)),
                command(1_003, CommandKind::Cancel, cancel(2)),
                command(1_004, CommandKind::CutOff, cycle(1)),
                command(1_005, CommandKind::Run, cycle(1)),
                command(1_006, CommandKind::Close, cycle(1)),
                command(1_007, CommandKind::Open, cycle(2)),
            ]
            .concat(),
        ),
    ];
    let mut at = 1 << 40;
    for (operation, body) in &batches {
        at += 1_000;
        let outcome = original.apply(*operation, at, body);
        assert!(
            outcome.as_ref().is_ok_and(|o| o.failures.is_empty()),
            "{operation:?}: {outcome:?}"
        );
    }
    let book = original.settlement();
    assert_eq!(book.max_age(), 3);
    assert_eq!(book.commands().len(), 8);
    let statuses = [100, 101, 102, 103].map(|id| book.instruction(id).map(|s| s.status));
    assert!(
        matches!(
            statuses,
            [
                Some(Status::Failed { .. }),
                Some(Status::Settled),
                Some(Status::Held),
                Some(Status::Cancelled(CancelReason::Bilateral))
            ]
        ),
        "{statuses:?}"
    );

    let mut restored = Engine::restore(&original.snapshot(), EngineConfig { hash_seed: 22 })
        .expect("the snapshot restores");
    assert_eq!(restored.digest(), original.digest());
    let (a, b) = (original.settlement(), restored.settlement());
    assert_eq!(b.max_age(), a.max_age());
    assert_eq!(b.stored_cycles(), a.stored_cycles());
    assert_eq!(b.stored_instructions(), a.stored_instructions());
    assert_eq!(b.stored_commands(), a.stored_commands());
    // The run records (postings, counts, certificate) too.
    let runs = |book: &tally_engine::settlement::SettlementBook| {
        book.run_records().copied().collect::<Vec<_>>()
    };
    assert!(!runs(a).is_empty());
    assert_eq!(runs(b), runs(a));
    // Both go on alike: a retried command, cycle 2's cut-off and run (instruction 100 fails
    // again, aged by the restored limit), a new instruction's submission number.
    let later: Vec<(Operation, Vec<u8>)> = vec![
        (Operation::SettlementCommands, set_limit),
        (
            Operation::SettlementCommands,
            [
                command(1_008, CommandKind::CutOff, cycle(2)),
                command(1_009, CommandKind::Run, cycle(2)),
                command(1_010, CommandKind::Open, cycle(3)),
            ]
            .concat(),
        ),
        (
            Operation::CreateInstructions,
            Instruction {
                cycle: 3,
                ..instruction(104, 3, false)
            }
            .encode()
            .to_vec(),
        ),
    ];
    for (operation, body) in &later {
        at += 1_000;
        let x = original.apply(*operation, at, body);
        let y = restored.apply(*operation, at, body);
        assert_eq!(x, y, "{operation:?}");
        assert_eq!(restored.digest(), original.digest(), "{operation:?}");
    }
    let retried = original.apply(Operation::SettlementCommands, at + 1_000, &later[0].1);
    assert_eq!(
        retried.map(|o| o.failures),
        Ok(vec![(0, tally_engine::EventResult::Exists)])
    );
    let age = |engine: &Engine| engine.settlement().instruction(100).map(|s| s.age);
    assert_eq!(age(&original), Some(2));
    assert_eq!(age(&restored), Some(2));
}
