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
/// Accounts 1 to 8: 1–4 on ledger 1, 5–8 on ledger 2.
fn eight_accounts() -> Vec<Account> {
    (1..=8u128)
        .map(|id| Account {
            id,
            ledger: if id <= 4 { 1 } else { 2 },
            code: 1,
            ..Account::default()
        })
        .collect()
}

fn engine_with_history() -> (Engine, Vec<u8>, Vec<u8>, EventResult) {
    history(Engine::new(EngineConfig { hash_seed: 3 }))
}

fn history(mut engine: Engine) -> (Engine, Vec<u8>, Vec<u8>, EventResult) {
    let accounts = eight_accounts();
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
        assert_eq!(engine.log_leaf_hash(proof.index), hash, "id {id}");
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
        assert_eq!(engine.log_leaf_hash(8 + u64::from(i)), leaf_hash(&bytes));
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
    assert_eq!(engine.log_leaf_hash(14), leaf_hash(&bytes));
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

/// A history of several groups of leaves — failed events, accounts, a closing transfer that
/// closes an account and a void that reopens it, another that stays closed, trades — and
/// every leaf's hash as it was hashed when applied (on a stage that also hands each one out).
fn grouped_history() -> (Engine, Vec<Hash>) {
    let mut engine = Engine::new(EngineConfig { hash_seed: 5 });
    let mut worker = engine.start_leaf_hashing();
    // Hash each batch as the stage would, and keep every leaf hash apart as well.
    let (every_in, every) = crossbeam_channel::unbounded::<Hash>();
    let leaves = std::mem::replace(&mut worker.leaves, crossbeam_channel::never());
    let thread = std::thread::spawn(move || {
        for batch in leaves {
            let mut tree = lock(&worker.tree);
            for leaf in &batch {
                let hash = leaf_hash(leaf);
                tree.push(hash);
                every_in.send(hash).unwrap();
            }
            drop(tree);
            if worker.hashed.send(()).is_err() {
                return;
            }
        }
    });
    let accounts = eight_accounts();
    let mut index = 1;
    let mut apply = |engine: &mut Engine, operation, body: Vec<u8>| {
        let at = LogPosition {
            commit_index: index,
            index_in_entry: 3,
        };
        index += 1;
        engine
            .apply_at(operation, T0 + index * 1_000, &body, at)
            .expect("a valid batch")
    };
    apply(
        &mut engine,
        Operation::CreateAccounts,
        encode_batch(&accounts, Account::encode),
    );
    for round in 0..20u128 {
        // Five transfers, the third to an account that does not exist.
        let batch: Vec<Transfer> = (0..5u128)
            .map(|i| {
                let credit = if i == 2 { 99 } else { 2 };
                transfer(100 + round * 10 + i, 1, credit, TransferFlags::default())
            })
            .collect();
        let outcome = apply(
            &mut engine,
            Operation::CreateTransfers,
            encode_batch(&batch, Transfer::encode),
        );
        assert_eq!(outcome.failures.len(), 1);
        if round % 4 == 1 {
            let trades = encode_batch(
                &[trade(600 + round, 1), trade(700 + round, 2)],
                Trade::encode,
            );
            apply(&mut engine, Operation::CreateTrades, trades);
        }
        let closing = |id, debit, credit, side| Transfer {
            flags: TransferFlags::PENDING | side,
            ..transfer(id, debit, credit, TransferFlags::default())
        };
        let one = match round {
            // Account 4 closed by a pending closing transfer, reopened by its void at round 7.
            3 => closing(500, 3, 4, TransferFlags::CLOSING_CREDIT),
            // Account 3 closed for good (pending, never voided).
            5 => closing(502, 3, 1, TransferFlags::CLOSING_DEBIT),
            7 => Transfer {
                id: 501,
                pending_id: 500,
                flags: TransferFlags::VOID_PENDING_TRANSFER,
                ..Transfer::default()
            },
            _ => continue,
        };
        let outcome = apply(
            &mut engine,
            Operation::CreateTransfers,
            encode_batch(&[one], Transfer::encode),
        );
        assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    }
    engine.stop_leaf_hashing();
    thread.join().expect("the stage ends when it is stopped");
    // A checkpoint inside a group, which a restore checks its tree against.
    let size = engine.log_size();
    engine.record_checkpoint(signed(&engine, size - 3)).unwrap();
    let every: Vec<Hash> = every.try_iter().collect();
    (engine, every)
}

/// The tree keeps a hash per 16 leaves and rebuilds the leaves inside a group from the stored
/// events (or their kept hashes): at every size, its roots and proofs are those of a tree of
/// every leaf's hash as the events were applied; and the same after a restore from a snapshot.
#[test]
fn a_tree_of_groups_rebuilds_what_it_does_not_keep() {
    let (mut engine, every) = grouped_history();
    let size = engine.log_size();
    assert_eq!(every.len() as u64, size);
    assert!(size > 5 * 16, "several groups: {size} leaves");
    assert!(engine
        .lookup_account(3)
        .unwrap()
        .flags
        .contains(crate::records::AccountFlags::CLOSED));
    let mut full = Tree::new();
    for hash in &every {
        full.push(*hash);
    }
    let restored = Engine::restore(&engine.snapshot(), EngineConfig::default()).unwrap();
    for replica in [&engine, &restored] {
        for (index, hash) in every.iter().enumerate() {
            assert_eq!(replica.log_leaf_hash(index as u64), *hash, "leaf {index}");
        }
        for n in 0..=size {
            assert_eq!(
                replica.log_root(n).unwrap(),
                full.root(n).unwrap(),
                "root {n}"
            );
            assert_eq!(
                replica.log_consistency(n / 3, n).unwrap(),
                full.consistency_proof(n / 3, n).unwrap()
            );
        }
        // Every stored event and account proves, closed and reopened accounts included.
        let root = full.root(size).unwrap();
        let ids = (1..=8u128)
            .map(|id| (id, true))
            .chain(
                (100..300u128)
                    .filter(|id| id % 10 < 5 && id % 10 != 2)
                    .map(|id| (id, false)),
            )
            .chain([
                (500, false),
                (501, false),
                (502, false),
                (601, false),
                (605, false),
            ]);
        for (id, account) in ids {
            let proof = replica.prove(id, account, size).unwrap().unwrap();
            let hash = leaf_hash(&proof.leaf);
            assert_eq!(hash, every[proof.index as usize], "id {id}");
            verify_inclusion(proof.index, size, &hash, &proof.proof, &root).unwrap();
        }
        assert_eq!(replica.log_head(), (size, full.root(size).unwrap()));
    }
    assert_eq!(restored.digest(), engine.digest());
}

/// `engine`'s snapshot in format 7 (or 6): the log's sections hold every leaf's hash
/// (`every`, with `tamper`'s first byte changed), no kept leaves, a shorter header.
fn old_format_image(
    engine: &mut Engine,
    every: &[Hash],
    version: u32,
    tamper: Option<usize>,
) -> Vec<u8> {
    use crate::snapshot::{
        HEADER_BYTES, HEADER_BYTES_ALL_LEAVES, HEADER_BYTES_NO_ACCESS, SECTION_RECORDS,
    };
    use crate::snapshot_sections::{encode_section, section_hash, SectionKind, TrailerHasher};
    let frozen = engine.freeze();
    let image = frozen.snapshot();
    let header_bytes = if version == 7 {
        HEADER_BYTES_ALL_LEAVES
    } else {
        HEADER_BYTES_NO_ACCESS
    };
    let mut old = image[..header_bytes].to_vec();
    old[8..12].copy_from_slice(&version.to_le_bytes());
    let mut trailer = TrailerHasher::new(&old);
    let mut hashes = every.to_vec();
    if let Some(i) = tamper {
        hashes[i][0] ^= 1;
    }
    let mut at = HEADER_BYTES;
    for section in frozen.sections() {
        let length = u64::from_le_bytes(image[at..at + 8].try_into().unwrap()) as usize;
        let stored = &image[at..at + 8 + length + 32];
        at += stored.len();
        match section.kind {
            SectionKind::LogLeaves | SectionKind::LogKept => continue,
            SectionKind::AccessReads
            | SectionKind::AccessTouches
            | SectionKind::AccessCheckpoints => {
                assert!(version == 7, "format 6 has no access trail");
            }
            SectionKind::LogBatches if section.index == 0 => {
                let (mut scratch, mut archived) = (Vec::new(), rkyv::util::AlignedVec::new());
                for chunk in hashes.chunks(SECTION_RECORDS) {
                    let mut leaves = Vec::new();
                    encode_section(chunk, &mut scratch, &mut archived, &mut leaves);
                    trailer.section(&section_hash(&leaves));
                    old.extend_from_slice(&leaves);
                }
            }
            _ => {}
        }
        trailer.section(&section_hash(stored));
        old.extend_from_slice(stored);
    }
    old.extend_from_slice(&trailer.finish());
    old
}

/// Snapshots of formats 6 and 7 hold every leaf's hash: they restore to the same state (the
/// groups made, the leaves that cannot be rebuilt kept) with the same roots; one whose hash of
/// a stored transfer's leaf is not that transfer's is refused.
#[test]
fn formats_6_and_7_restore_their_leaves_into_groups() {
    let (mut engine, every) = grouped_history();
    let size = engine.log_size();
    for version in [6, 7] {
        let image = old_format_image(&mut engine, &every, version, None);
        let restored = Engine::restore(&image, EngineConfig::default()).expect("restores");
        assert_eq!(restored.digest(), engine.digest(), "format {version}");
        assert_eq!(restored.log.kept.len(), engine.log.kept.len());
        for n in [0, 1, 15, 16, 17, 64, size - 1, size] {
            assert_eq!(
                restored.log_root(n),
                engine.log_root(n),
                "format {version} root {n}"
            );
        }
    }
    // Leaf 20: the third round's first transfer (8 accounts, rounds of five transfers, the
    // second round's two trades).
    assert!(
        engine.log.kept_hash(20).is_none(),
        "a stored transfer's leaf"
    );
    let image = old_format_image(&mut engine, &every, 7, Some(20));
    let refused = Engine::restore(&image, EngineConfig::default()).map(|_| ());
    assert_eq!(
        refused,
        Err(invalid("log leaf 20 is not its stored event's"))
    );
    // A kept leaf's hash cannot be checked alone: the checkpoint's root refuses it.
    let kept = engine.log.kept.get(3).index as usize;
    let image = old_format_image(&mut engine, &every, 7, Some(kept));
    let refused = Engine::restore(&image, EngineConfig::default()).map(|_| ());
    assert_eq!(
        refused,
        Err(invalid("the log's tree does not give checkpoint 0's root"))
    );
}

/// A format-8 snapshot whose group hashes do not fit its events is refused: the root at its
/// latest checkpoint is checked on restore.
#[test]
fn a_restored_tree_must_give_the_latest_checkpoints_root() {
    let (mut engine, _) = grouped_history();
    assert!(Engine::restore(&engine.snapshot(), EngineConfig::default()).is_ok());
    engine.log.tree().groups_mut().get_mut(2)[5] ^= 1;
    let refused = Engine::restore(&engine.snapshot(), EngineConfig::default()).map(|_| ());
    assert_eq!(
        refused,
        Err(invalid("the log's tree does not give checkpoint 0's root"))
    );
}
