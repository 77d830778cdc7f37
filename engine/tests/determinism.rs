//! Determinism: the same log gives the same results and the same state digest whatever the
//! engine's hash seed; a different log gives a different digest.

mod common;
mod model;

use common::operation;
use model::generate::{Batch, Config, Generator, Rng, TIME_BASE_LOW};
use model::{Model, Op};
use tally_engine::{Account, Engine, EngineConfig};

/// A random log of `batches` batches, aimed by the model (the model is only a generator here).
fn random_log(seed: u64, batches: usize) -> Vec<Batch> {
    let mut rng = Rng::new(seed);
    let mut model = Model::new();
    let mut generator = Generator::new(Config {
        time_base: TIME_BASE_LOW,
    });
    let mut log = Vec::new();
    for b in 0..batches {
        let n = if b == 0 { 20 } else { rng.range(1, 60) };
        let seeds: Vec<u64> = (0..n).map(|_| rng.next_u64()).collect();
        let force = (b == 0).then_some(Op::Accounts);
        let batch = generator.batch(&model, rng.next_u64(), &seeds, force);
        let _ = model.apply(batch.op, batch.entry_timestamp, &batch.body);
        log.push(batch);
    }
    log
}

fn apply(engine: &mut Engine, batch: &Batch) -> String {
    format!(
        "{:?}",
        engine.apply(operation(batch.op), batch.entry_timestamp, &batch.body)
    )
}

/// Proves two engines with different hash seeds give equal results and equal digests after
/// every batch of the same random log (several logs per run).
#[test]
fn same_log_same_digest_across_hash_seeds() {
    let seed = common::run_seed();
    let mut rng = Rng::new(seed);
    for run in 0..8 {
        let log = random_log(rng.next_u64(), 30);
        let mut a = Engine::new(EngineConfig {
            hash_seed: rng.next_u64(),
        });
        let mut b = Engine::new(EngineConfig {
            hash_seed: rng.next_u64(),
        });
        assert_eq!(a.digest(), b.digest(), "seed {seed}: empty engines differ");
        for (i, batch) in log.iter().enumerate() {
            let ra = apply(&mut a, batch);
            let rb = apply(&mut b, batch);
            assert_eq!(
                ra, rb,
                "seed {seed} run {run} batch {i}: results differ across hash seeds"
            );
            assert_eq!(
                a.digest(),
                b.digest(),
                "seed {seed} run {run} batch {i}: digests differ across hash seeds"
            );
        }
    }
}

/// Proves different logs give different digests: changing one stored field, one entry
/// timestamp, or dropping the last batch all change the final digest.
#[test]
fn different_logs_different_digests() {
    let seed = common::run_seed();
    let log = random_log(seed, 25);
    let digest_of = |log: &[Batch], hash_seed: u64| {
        let mut e = Engine::new(EngineConfig { hash_seed });
        for batch in log {
            let _ = e.apply(operation(batch.op), batch.entry_timestamp, &batch.body);
        }
        e.digest()
    };
    let original = digest_of(&log, 1);
    assert_eq!(
        original,
        digest_of(&log, 2),
        "seed {seed}: same log, different digest"
    );

    // One more account (one that cannot collide): a stored record more.
    let mut extra = log.clone();
    let account = Account {
        id: 999_999,
        ledger: 1,
        code: 1,
        ..Account::default()
    };
    extra.push(Batch {
        op: Op::Accounts,
        entry_timestamp: 0,
        body: account.encode().to_vec(),
    });
    let with_extra = digest_of(&extra, 1);
    assert_ne!(
        original, with_extra,
        "seed {seed}: an extra account did not change the digest"
    );

    // The same extra account with another user_data.
    let mut other = log.clone();
    let account = Account {
        user_data_64: 1,
        ..account
    };
    other.push(Batch {
        op: Op::Accounts,
        entry_timestamp: 0,
        body: account.encode().to_vec(),
    });
    assert_ne!(
        with_extra,
        digest_of(&other, 1),
        "seed {seed}: one field changed, digest did not"
    );

    // The same extra account created at a later time.
    let mut later = log.clone();
    let account = Account {
        user_data_64: 0,
        ..account
    };
    later.push(Batch {
        op: Op::Accounts,
        entry_timestamp: u64::from(u32::MAX) << 24,
        body: account.encode().to_vec(),
    });
    assert_ne!(
        with_extra,
        digest_of(&later, 1),
        "seed {seed}: another timestamp, same digest"
    );

    // The log without its last batch (if that batch was well formed).
    if !log[log.len() - 1].body.is_empty() && log[log.len() - 1].body.len().is_multiple_of(128) {
        assert_ne!(
            original,
            digest_of(&log[..log.len() - 1], 1),
            "seed {seed}: dropping a batch kept the digest"
        );
    }
}
