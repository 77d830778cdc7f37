//! Criterion benchmark of a settlement cycle's netting run (`tally_engine::netting::net`):
//! 1,000,000 obligations among 1,000 participants and 100 instruments, instruments and
//! participants Zipf-skewed, 5% of participants holding nothing (so their deliveries and
//! payments fail and knock on), the rest holding about what a day's trading moves. Prints the
//! run's outcome once: settled, partly settled and failed obligations, removals, passes, and
//! the balance changes of net settlement against gross (two per leg per obligation).
//!
//! `cycle_run/...` runs the same cycle through the settlement book (`SettlementBook::run`):
//! instructions by account id, positions found, the netting run, each instruction's status
//! updated and the netting certificate hashed — what a cycle's run costs end to end, but for
//! posting the movements. `book_stored_form`, `book_restore` and `book_digest` take that book
//! (a million open instructions) to its stored form (what a snapshot of it holds), back, and
//! into a state digest.
//!
//! `engine_run/...` is the whole thing as a replica applies it: an engine holding the cycle's
//! 101,000 accounts (each participant's holding funded with what the cycle gives it, bound by
//! `debits_must_not_exceed_credits`) and its million instructions applies the run command —
//! the run worked out, one posted transfer per participant and asset through the clearing
//! accounts, the outcomes applied to the book, the leaves. Each sample builds its engine
//! untimed.
//!
//! Run: `cargo bench -p tally-benches --bench netting`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rand::{rngs::SmallRng, Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use tally_engine::netting::{net, Available, Obligation, Outcome};
use tally_engine::settlement::{Instruction, SettlementBook};
use tally_engine::InstructionFlags;

const OBLIGATIONS: usize = 1_000_000;
const PARTICIPANTS: u32 = 1_000;
const INSTRUMENTS: u32 = 100;

/// Position of `participant`'s holding of `asset` (cash is asset `INSTRUMENTS`).
fn position(participant: u32, asset: u32) -> u32 {
    participant * (INSTRUMENTS + 1) + asset
}

fn cycle(seed: u64) -> (Vec<Available>, Vec<Obligation>) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let who = Zipf::new(PARTICIPANTS as f64, 0.8).expect("valid Zipf");
    let what = Zipf::new(INSTRUMENTS as f64, 1.0).expect("valid Zipf");
    let mut obligations = Vec::with_capacity(OBLIGATIONS);
    while obligations.len() < OBLIGATIONS {
        let seller = who.sample(&mut rng) as u32 - 1;
        let buyer = who.sample(&mut rng) as u32 - 1;
        if seller == buyer {
            continue;
        }
        let instrument = what.sample(&mut rng) as u32 - 1;
        let quantity = rng.random_range(1..=1_000u64);
        let price = rng.random_range(1..=200u64);
        obligations.push(Obligation {
            securities_from: position(seller, instrument),
            securities_to: position(buyer, instrument),
            cash_from: position(buyer, INSTRUMENTS),
            cash_to: position(seller, INSTRUMENTS),
            quantity,
            cash: quantity * price,
            priority: 0,
            age: rng.random_range(0..3),
            partial: rng.random_bool(0.3),
        });
    }
    // Holdings: what each position pays over the cycle, scaled by a random 0.5..1.5, so that
    // about half the positions that pay more than they receive fall short; 5% of participants
    // hold nothing at all.
    let positions = (PARTICIPANTS * (INSTRUMENTS + 1)) as usize;
    let mut paying = vec![0u128; positions];
    for o in &obligations {
        paying[o.securities_from as usize] += o.quantity as u128;
        paying[o.cash_from as usize] += o.cash as u128;
    }
    let available = (0..positions)
        .map(|p| {
            let participant = p as u32 / (INSTRUMENTS + 1);
            if participant % 20 == 7 {
                Available::Limited(0)
            } else {
                let scale = rng.random_range(50..=150u128);
                Available::Limited(paying[p] * scale / 100)
            }
        })
        .collect();
    (available, obligations)
}

fn netting(c: &mut Criterion) {
    let (available, obligations) = cycle(18);
    let run = net(&available, &obligations).expect("valid cycle");
    let (mut settled, mut partial, mut failed, mut legs) = (0, 0, 0, 0usize);
    for (o, outcome) in obligations.iter().zip(&run.outcomes) {
        match outcome {
            Outcome::Settled => settled += 1,
            Outcome::Partial { .. } => partial += 1,
            Outcome::Failed { .. } => failed += 1,
        }
        let (quantity, cash) = outcome.settled(o);
        legs += usize::from(quantity > 0) + usize::from(cash > 0);
    }
    println!(
        "netting {OBLIGATIONS} obligations, {PARTICIPANTS} participants, {INSTRUMENTS} \
         instruments: {settled} settled, {partial} partly settled, {failed} failed; {} removals, \
         {} passes (converged: {}); {} balance changes net against {} gross",
        run.removals,
        run.passes,
        run.converged,
        run.balance_changes(),
        2 * legs
    );

    let mut group = c.benchmark_group("netting");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.warm_up_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(OBLIGATIONS as u64));
    group.bench_function("run/1M_obligations_1k_participants_100_instruments", |b| {
        b.iter(|| {
            net(
                std::hint::black_box(&available),
                std::hint::black_box(&obligations),
            )
        })
    });

    // The same cycle as a settlement book's instructions (account id = position + 1).
    let mut book = SettlementBook::new(5, 7);
    book.open(1).expect("a new cycle");
    for (i, o) in obligations.iter().enumerate() {
        book.submit(instruction_of(i, o))
            .expect("a valid instruction");
    }
    book.cut_off(1).expect("an open cycle");
    let limit = |account: u128| available[(account - 1) as usize];
    group.bench_function(
        "cycle_run/1M_instructions_1k_participants_100_instruments",
        |b| {
            b.iter_batched(
                || book.clone(),
                // The book goes back out, so its drop is not timed.
                |mut book| {
                    let report = book.run(1, limit).expect("a cut-off cycle");
                    (book, report)
                },
                BatchSize::PerIteration,
            )
        },
    );

    // The same book's stored form (what a snapshot of the book would hold), its restore and
    // its part of the state digest: the cost of each per million open instructions.
    let cycles = book.stored_cycles();
    let stored = book.stored_instructions();
    group.bench_function("book_stored_form/1M_instructions", |b| {
        b.iter(|| book.stored_instructions())
    });
    group.bench_function("book_restore/1M_instructions", |b| {
        b.iter(|| {
            SettlementBook::restore(5, 7, &cycles, &stored, &[])
                .expect("the book's own stored form")
        })
    });
    group.bench_function("book_digest/1M_instructions", |b| {
        b.iter(|| {
            let mut hasher = blake3::Hasher::new();
            book.digest_into(&mut hasher);
            hasher.finalize()
        })
    });
    let (engine, _) = engine_with_cycle(&available, &obligations);
    let postings = engine
        .settlement()
        .run_record(1)
        .map_or(0, |run| run.postings);
    println!("through apply: {postings} transfers posted for {OBLIGATIONS} instructions");
    group.bench_function(
        "engine_run/1M_instructions_1k_participants_100_instruments",
        |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (engine, took) = engine_with_cycle(&available, &obligations);
                    total += took;
                    drop(std::hint::black_box(engine));
                }
                total
            })
        },
    );
    group.finish();
}

/// Obligation `i` of the cycle as an instruction of cycle 1 (account id = position + 1).
fn instruction_of(i: usize, o: &Obligation) -> Instruction {
    Instruction {
        id: i as u128 + 1,
        reference: 0,
        deliverer_securities: u128::from(o.securities_from) + 1,
        receiver_securities: u128::from(o.securities_to) + 1,
        receiver_cash: u128::from(o.cash_from) + 1,
        deliverer_cash: u128::from(o.cash_to) + 1,
        quantity: o.quantity,
        cash: o.cash,
        cycle: 1,
        priority: 0,
        flags: InstructionFlags::of(o.partial, false),
        timestamp: 0,
    }
}

/// An engine holding the cycle's accounts (account id = position + 1, ledger = asset + 1,
/// each funded from its ledger's issuer with its available amount) and its instructions, cut
/// off; the run command applied, and how long that apply took.
fn engine_with_cycle(
    available: &[Available],
    obligations: &[Obligation],
) -> (tally_engine::Engine, Duration) {
    use tally_engine::records::{Account, AccountFlags, CommandKind, SettlementCommand, Transfer};
    use tally_engine::{Engine, EngineConfig, Operation};
    let mut engine = Engine::new(EngineConfig { hash_seed: 7 });
    let mut clock = 1_000u64;
    let mut apply = |engine: &mut Engine, operation, records: Vec<[u8; 128]>| {
        for chunk in records.chunks(8_189) {
            clock += 1_000_000;
            let outcome = engine
                .apply(operation, clock, &chunk.concat())
                .expect("a well-formed batch");
            assert!(outcome.failures.is_empty(), "{:?}", &outcome.failures[..1]);
        }
        clock
    };
    let ledgers = INSTRUMENTS + 1;
    let issuer = |ledger: u32| 10_000_000 + u128::from(ledger);
    let mut accounts: Vec<[u8; 128]> = (1..=ledgers)
        .map(|ledger| {
            Account {
                id: issuer(ledger),
                ledger,
                code: 1,
                ..Account::default()
            }
            .encode()
        })
        .collect();
    let mut funding = Vec::new();
    for (p, limit) in available.iter().enumerate() {
        let ledger = p as u32 % ledgers + 1;
        accounts.push(
            Account {
                id: p as u128 + 1,
                ledger,
                code: 1,
                flags: AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
                ..Account::default()
            }
            .encode(),
        );
        if let Available::Limited(amount @ 1..) = *limit {
            funding.push(
                Transfer {
                    id: p as u128 + 1,
                    debit_account_id: issuer(ledger),
                    credit_account_id: p as u128 + 1,
                    amount,
                    ledger,
                    code: 1,
                    ..Transfer::default()
                }
                .encode(),
            );
        }
    }
    apply(&mut engine, Operation::CreateAccounts, accounts);
    apply(&mut engine, Operation::CreateTransfers, funding);
    let command = |id: u128, kind: CommandKind| {
        SettlementCommand {
            id,
            kind: kind as u16,
            cycle: 1,
            ..SettlementCommand::default()
        }
        .encode()
    };
    apply(
        &mut engine,
        Operation::SettlementCommands,
        vec![command(1, CommandKind::Open)],
    );
    let instructions = obligations
        .iter()
        .enumerate()
        .map(|(i, o)| instruction_of(i, o).encode())
        .collect();
    apply(&mut engine, Operation::CreateInstructions, instructions);
    apply(
        &mut engine,
        Operation::SettlementCommands,
        vec![command(2, CommandKind::CutOff)],
    );
    let started = std::time::Instant::now();
    let at = apply(
        &mut engine,
        Operation::SettlementCommands,
        vec![command(3, CommandKind::Run)],
    );
    let took = started.elapsed();
    assert!(at > 0 && engine.settlement().run_record(1).is_some());
    (engine, took)
}

criterion_group!(benches, netting);
criterion_main!(benches);
