//! Bad input: random bytes never panic a record decoder or `Engine::apply`, and whatever the
//! engine makes of them, it agrees with the model and conserves every ledger.

mod common;
mod model;

use common::Pair;
use model::generate::{Batch, Config, TIME_BASE_LOW};
use model::Op;
use proptest::prelude::*;
use tally_engine::{Account, Trade, Transfer};

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![Just(Op::Accounts), Just(Op::Transfers), Just(Op::Trades)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// Proves every decoder takes any 128 bytes without panicking, and that whatever decodes
    /// encodes back to the same bytes (every bit is a field).
    #[test]
    fn decoders_take_any_bytes(bytes in prop::array::uniform32(any::<u8>()), rest in prop::collection::vec(any::<u8>(), 96), flags in any::<u16>()) {
        let mut record = [0u8; 128];
        record[..32].copy_from_slice(&bytes);
        record[32..].copy_from_slice(&rest);
        // Half the time, flags drawn from the defined bits so decoding succeeds.
        if flags & 1 == 0 {
            record[118..120].copy_from_slice(&(flags >> 8).to_le_bytes());
        }
        if let Ok(a) = Account::decode(&record) {
            prop_assert_eq!(a.encode(), record);
        }
        if let Ok(t) = Transfer::decode(&record) {
            prop_assert_eq!(t.encode(), record);
        }
        if let Ok(d) = Trade::decode(&record) {
            prop_assert_eq!(d.encode(), record);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// Proves random bodies of any length under any operation never panic `apply`: after a
    /// valid setup, each body gets the model's results (or a batch error exactly when the model
    /// refuses the shape) and every ledger stays conserved (checked inside `Pair::step`).
    #[test]
    fn random_bodies_never_panic_apply(
        setup_seeds in prop::collection::vec(any::<u64>(), 20..40),
        bodies in prop::collection::vec(
            (op_strategy(), 0u64..(1 << 50), prop::collection::vec(any::<u8>(), 0..1_200)),
            1..12,
        ),
    ) {
        let mut pair = Pair::new(5, Config { time_base: TIME_BASE_LOW });
        pair.generate_and_step(1, &setup_seeds);
        pair.generate_and_step(2, &setup_seeds);
        for (op, entry_timestamp, body) in bodies {
            pair.step(&Batch { op, entry_timestamp, body });
        }
    }

    /// Proves generated batches with random bytes overwritten (so that most records are nearly
    /// valid: real ids and accounts with a damaged field) never panic `apply` and agree with
    /// the model.
    #[test]
    fn mutated_batches_agree_with_model(
        batches in prop::collection::vec((any::<u64>(), prop::collection::vec(any::<u64>(), 1..40)), 4..12),
        mutations in prop::collection::vec((any::<usize>(), any::<u8>()), 1..24),
    ) {
        let mut pair = Pair::new(6, Config { time_base: TIME_BASE_LOW });
        for (i, (batch_seed, event_seeds)) in batches.iter().enumerate() {
            let force = (i == 0).then_some(Op::Accounts);
            let mut batch = pair.generator.batch(&pair.model, *batch_seed, event_seeds, force);
            if i > 0 && !batch.body.is_empty() {
                for (at, byte) in &mutations {
                    let len = batch.body.len();
                    batch.body[at % len] = *byte;
                }
            }
            pair.step(&batch);
        }
    }
}
