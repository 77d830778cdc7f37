use super::*;
use crate::merkle::verify_inclusion;
use crate::records::{encode_batch, Account, Trade, Transfer, TransferFlags};
use crate::EngineConfig;

const T0: u64 = 1_700_000_000_000_000_000;

fn transfer(id: u128, debit: u128, credit: u128, flags: TransferFlags) -> Transfer {
    Transfer {
        id,
        debit_account_id: debit,
        credit_account_id: credit,
        amount: 5,
        ledger: 1,
        code: 1,
        flags,
        ..Transfer::default()
    }
}

fn trade(id: u128, cash_ledger: u32) -> Trade {
    Trade {
        id,
        instrument_debit_account_id: 5,
        instrument_credit_account_id: 6,
        cash_debit_account_id: 1,
        cash_credit_account_id: 2,
        instrument_ledger: 2,
        cash_ledger,
        quantity: 3,
        cash_amount: 30,
        code: 1,
        ..Trade::default()
    }
}

/// Accounts at entry 3; at entry 4 (from index 7 in it) transfers: one that succeeds, a
/// linked chain that fails at its second event, one that succeeds, a repeated id; at entry
/// 5 a trade that succeeds and one that fails.
fn engine_with_history() -> (Engine, Vec<u8>, Vec<u8>, EventResult) {
    history(Engine::new(EngineConfig { hash_seed: 3 }))
}

fn history(mut engine: Engine) -> (Engine, Vec<u8>, Vec<u8>, EventResult) {
    let accounts: Vec<Account> = (1..=8u128)
        .map(|id| Account {
            id,
            ledger: if id <= 4 { 1 } else { 2 },
            code: 1,
            ..Account::default()
        })
        .collect();
    let at = |commit_index, index_in_entry| LogPosition {
        commit_index,
        index_in_entry,
    };
    let body = encode_batch(&accounts, Account::encode);
    let outcome = engine.apply_at(Operation::CreateAccounts, T0, &body, at(3, 0));
    assert!(outcome.is_ok_and(|o| o.failures.is_empty()));
    let linked = TransferFlags::LINKED;
    let none = TransferFlags::default();
    let transfers = encode_batch(
        &[
            transfer(10, 1, 2, none),
            transfer(11, 1, 2, linked),
            transfer(12, 1, 99, none),
            transfer(13, 2, 3, none),
            transfer(10, 1, 2, none),
        ],
        Transfer::encode,
    );
    let outcome = engine
        .apply_at(Operation::CreateTransfers, T0 + 100, &transfers, at(4, 7))
        .expect("a valid batch");
    assert_eq!(
        outcome.failures,
        vec![
            (1, EventResult::LinkedEventFailed),
            (2, EventResult::CreditAccountNotFound),
            (4, EventResult::Exists),
        ]
    );
    let trades = encode_batch(&[trade(20, 1), trade(21, 2)], Trade::encode);
    let outcome = engine
        .apply_at(Operation::CreateTrades, T0 + 200, &trades, at(5, 0))
        .expect("a valid batch");
    assert_eq!(outcome.failures.len(), 1);
    assert_eq!(outcome.failures[0].0, 1);
    (engine, transfers, trades, outcome.failures[0].1)
}

fn field<const N: usize>(leaf: &[u8; LEAF_BYTES], at: usize) -> [u8; N] {
    leaf[at..at + N].try_into().expect("in the leaf")
}

#[test]
fn every_applied_event_is_a_leaf_and_every_stored_one_proves() {
    let (engine, ..) = engine_with_history();
    assert_eq!(engine.log_size(), 8 + 5 + 2);
    let size = engine.log_size();
    let root = engine.log_root(size).unwrap();
    let stored = (1..=8u128)
        .map(|id| (id, true))
        .chain([(10, false), (13, false), (20, false)]);
    for (id, account) in stored {
        let proof = engine.prove(id, account, size).unwrap().unwrap();
        let hash = leaf_hash(&proof.leaf);
        assert_eq!(
            engine.log.tree().leaves().leaf(proof.index),
            hash,
            "id {id}"
        );
        verify_inclusion(proof.index, size, &hash, &proof.proof, &root).unwrap();
        // The leaf says what the lookup says, where it was applied, and that it succeeded.
        let (kind, record, timestamp, commit) = if account {
            let mut a = engine.lookup_account(id).unwrap();
            a.debits_posted = 0;
            a.credits_posted = 0;
            a.debits_pending = 0;
            a.credits_pending = 0;
            (1, a.encode(), a.timestamp, 3)
        } else if id == 20 {
            let t = engine.lookup_trade(id).unwrap();
            (3, t.encode(), t.timestamp, 5)
        } else {
            let t = engine.lookup_transfer(id).unwrap();
            (2, t.encode(), t.timestamp, 4)
        };
        assert_eq!(proof.leaf[0], LEAF_VERSION);
        assert_eq!(proof.leaf[1], kind);
        assert_eq!(field::<2>(&proof.leaf, 2), [0, 0]);
        assert_eq!(u64::from_le_bytes(field(&proof.leaf, 8)), commit);
        assert_eq!(u64::from_le_bytes(field(&proof.leaf, 16)), timestamp);
        assert_eq!(field::<128>(&proof.leaf, 24), record);
    }
    // Transfer 13 is the batch's fourth event: leaf 8 + 3, index 7 + 3 in its entry.
    let proof = engine.prove(13, false, size).unwrap().unwrap();
    assert_eq!(proof.index, 11);
    assert_eq!(u32::from_le_bytes(field(&proof.leaf, 4)), 10);
    // An older tree holds it too; a tree that ends before it does not.
    assert!(engine.prove(13, false, 12).unwrap().is_ok());
    assert!(engine.prove(13, false, 11).unwrap().is_err());
    assert!(engine.prove(13, false, size + 1).unwrap().is_err());
    // Neither an event rolled back nor one never stored has a stored record to prove.
    assert!(engine.prove(11, false, size).is_none());
    assert!(engine.prove(12, false, size).is_none());
    assert!(engine.prove(99, true, size).is_none());
}

/// A failed event's leaf holds its result and the record as sent, at its own place.
#[test]
fn failed_events_are_leaves_with_their_result_and_the_record_sent() {
    let (engine, transfers, trades, trade_result) = engine_with_history();
    let first = engine.lookup_transfer(10).unwrap().timestamp;
    let record =
        |body: &[u8], i: usize| -> RecordBytes { body[i * 128..(i + 1) * 128].try_into().unwrap() };
    let position = LogPosition {
        commit_index: 4,
        index_in_entry: 7,
    };
    for (i, result) in [
        (1, EventResult::LinkedEventFailed),
        (2, EventResult::CreditAccountNotFound),
        (4, EventResult::Exists),
    ] {
        let bytes = leaf(
            2,
            result,
            position,
            i,
            first + u64::from(i),
            &record(&transfers, i as usize),
        );
        assert_eq!(
            engine.log.tree().leaves().leaf(8 + u64::from(i)),
            leaf_hash(&bytes)
        );
    }
    let trade_first = engine.lookup_trade(20).unwrap().timestamp;
    let position = LogPosition {
        commit_index: 5,
        index_in_entry: 0,
    };
    let bytes = leaf(
        3,
        trade_result,
        position,
        1,
        trade_first + 1,
        &record(&trades, 1),
    );
    assert_eq!(engine.log.tree().leaves().leaf(14), leaf_hash(&bytes));
}

fn signed(engine: &Engine, size: u64) -> SignedCheckpoint {
    let key = crate::checkpoint::NoteSigner::new("tally/test", &[5; 32]).unwrap();
    let checkpoint = crate::checkpoint::Checkpoint {
        origin: "tally/test".into(),
        size,
        root: engine.log_root(size).unwrap(),
        time_ns: T0 + size,
    };
    key.sign_checkpoint(&checkpoint).unwrap()
}

#[test]
fn checkpoints_are_kept_only_when_they_are_this_history() {
    let (mut engine, ..) = engine_with_history();
    let digest = engine.digest();
    let mut forged = signed(&engine, 8);
    forged.root[0] ^= 1;
    assert_eq!(
        engine.record_checkpoint(forged),
        Err(CheckpointRefused::RootMismatch { size: 8 })
    );
    assert!(engine
        .record_checkpoint(forged)
        .unwrap_err()
        .is_divergence());
    let past = signed(&engine, 15);
    let mut past = past;
    past.size = 16;
    assert_eq!(
        engine.record_checkpoint(past),
        Err(CheckpointRefused::PastTheLog { size: 16, log: 15 })
    );
    assert_eq!(
        engine.digest(),
        digest,
        "a refused checkpoint changes nothing"
    );
    engine.record_checkpoint(signed(&engine, 8)).unwrap();
    let again = engine.record_checkpoint(signed(&engine, 8)).unwrap_err();
    assert_eq!(again, CheckpointRefused::NotNewer { latest: 8 });
    assert!(!again.is_divergence());
    engine.record_checkpoint(signed(&engine, 15)).unwrap();
    assert_eq!(engine.checkpoints_count(), 2);
    assert_ne!(engine.digest(), digest);
    assert_eq!(engine.checkpoint(1).map(|c| c.size), Some(15));
    assert_eq!(engine.checkpoint(2), None);
    // A witness's cosignature of a checkpoint held is kept once; of one not held, never.
    let cosignature = crate::checkpoint::StoredCosignature {
        checkpoint: 1,
        key_id: [1, 2, 3, 4],
        time: 77,
        signature: [5; 64],
    };
    assert!(engine.record_cosignature(cosignature));
    assert!(!engine.record_cosignature(cosignature));
    assert!(
        !engine.record_cosignature(crate::checkpoint::StoredCosignature {
            checkpoint: 2,
            ..cosignature
        })
    );
    assert_eq!(engine.cosignatures_of(1), vec![cosignature]);
    assert_eq!(engine.cosignatures_of(0), vec![]);
    assert_eq!(engine.latest_checkpoint().map(|c| c.0), Some(1));
    let restored = Engine::restore(&engine.snapshot(), EngineConfig::default()).unwrap();
    assert_eq!(restored.digest(), engine.digest());
    assert_eq!(restored.checkpoint(1), engine.checkpoint(1));
    assert_eq!(restored.cosignatures_of(1), vec![cosignature]);
}

/// Leaves hashed on a stage of their own make the same tree, the same proofs, the same
/// snapshot and digest as leaves hashed on the apply thread.
#[test]
fn a_hashing_stage_builds_the_same_tree() {
    let (mut inline, ..) = engine_with_history();
    let mut staged = Engine::new(EngineConfig { hash_seed: 9 });
    let worker = staged.start_leaf_hashing();
    let thread = std::thread::spawn(move || worker.run());
    let (mut staged, ..) = history(staged);
    assert_eq!(staged.log_size(), inline.log_size());
    assert_eq!(
        staged.digest(),
        inline.digest(),
        "the digest waits for nothing"
    );
    // A checkpoint waits for the stage, then holds for both.
    let checkpoint = signed(&inline, 15);
    inline.record_checkpoint(checkpoint).unwrap();
    staged.record_checkpoint(checkpoint).unwrap();
    assert_eq!(staged.log_head(), inline.log_head());
    assert_eq!(staged.prove(13, false, 15), inline.prove(13, false, 15));
    assert_eq!(staged.snapshot(), inline.snapshot());
    drop(staged);
    thread.join().expect("the stage ends with its engine");
}

#[test]
fn the_log_survives_a_snapshot_and_is_in_the_digest() {
    let (mut engine, ..) = engine_with_history();
    let restored = Engine::restore(&engine.snapshot(), EngineConfig::default()).unwrap();
    assert_eq!(restored.digest(), engine.digest());
    assert_eq!(restored.log_size(), engine.log_size());
    let size = engine.log_size();
    assert_eq!(restored.log_root(size), engine.log_root(size));
    for id in [10, 13] {
        assert_eq!(
            restored.prove(id, false, size),
            engine.prove(id, false, size)
        );
    }
    assert_eq!(
        restored.log_consistency(8, size),
        engine.log_consistency(8, size)
    );
    // One more event moves the root, and the digest with it.
    let mut grown = Engine::restore(&engine.snapshot(), EngineConfig::default()).unwrap();
    let body = encode_batch(
        &[transfer(30, 1, 2, TransferFlags::default())],
        Transfer::encode,
    );
    let outcome = grown.apply(Operation::CreateTransfers, T0 + 300, &body);
    assert!(outcome.is_ok_and(|o| o.failures.is_empty()));
    assert_ne!(grown.digest(), engine.digest());
    assert_eq!(grown.log_root(size), engine.log_root(size));
}

/// A create reply's commit index is the handle to its checkpoint: the oldest one holding
/// every event of the entries up to it, none while no checkpoint does yet.
#[test]
fn a_commit_index_finds_the_checkpoint_that_covers_it() {
    let (mut engine, ..) = engine_with_history();
    assert_eq!(engine.checkpoint_covering(3), None, "no checkpoint yet");
    engine.record_checkpoint(signed(&engine, 8)).unwrap();
    assert_eq!(engine.checkpoint_covering(3).map(|c| c.0), Some(0));
    assert_eq!(
        engine.checkpoint_covering(4),
        None,
        "entry 4 ends at 13 leaves"
    );
    engine.record_checkpoint(signed(&engine, 10)).unwrap();
    engine.record_checkpoint(signed(&engine, 15)).unwrap();
    let covering = |commit| engine.checkpoint_covering(commit).map(|(i, c)| (i, c.size));
    assert_eq!(covering(2), Some((0, 8)), "no events up to entry 2");
    assert_eq!(covering(3), Some((0, 8)));
    assert_eq!(
        covering(4),
        Some((2, 15)),
        "size 10 holds only part of entry 4"
    );
    assert_eq!(covering(5), Some((2, 15)));
    assert_eq!(covering(9), Some((2, 15)), "entries without events");
}
