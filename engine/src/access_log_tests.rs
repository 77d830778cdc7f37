use super::*;
use crate::merkle::verify_inclusion;
use crate::EngineConfig;

const T0: u64 = 1_700_000_000_000_000_000;

fn entry(name: &str, operation: u8, accounts: &[u128]) -> AccessEntry {
    AccessEntry {
        operation,
        credential: [name.len() as u8; 16],
        name: AccessEntry::name_field(name),
        accounts: accounts.to_vec(),
    }
}

/// Reads at entries 10 and 11: auditor-1 reads accounts 1 and 2, auditor-2 account 2, a
/// fund account 3, auditor-1 accounts 2, 1 and 1 again.
fn engine_with_reads() -> Engine {
    let mut engine = Engine::new(EngineConfig::default());
    engine.record_reads(
        &[
            entry("auditor-1", 64, &[2, 1]),
            entry("auditor-2", 66, &[2]),
        ],
        T0,
        10,
    );
    engine.record_reads(
        &[entry("fund", 68, &[3]), entry("auditor-1", 64, &[2, 1, 1])],
        T0 + 5,
        11,
    );
    engine
}

fn field(leaf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(leaf[at..at + 8].try_into().unwrap())
}

/// Each read is a leaf naming who read, how, when, where, and every account it touched with
/// the previous read of that account; a trail walks one account's reads newest first, each
/// proven against the root.
#[test]
fn every_read_is_a_leaf_and_an_accounts_reads_chain() {
    let engine = engine_with_reads();
    assert_eq!(engine.access_size(), 4);
    let size = engine.access_size();
    let root = engine.access_root(size).unwrap();
    let trail = engine
        .access_trail(2, size, u64::MAX, 100, 1 << 20)
        .unwrap();
    assert_eq!(
        trail.iter().map(|read| read.index).collect::<Vec<_>>(),
        vec![3, 1, 0]
    );
    for read in &trail {
        verify_inclusion(read.index, size, &leaf_hash(&read.leaf), &read.proof, &root).unwrap();
    }
    let newest = &trail[0].leaf;
    assert_eq!(newest[..2], [ACCESS_LEAF_VERSION, 64]);
    assert_eq!(u32::from_le_bytes(newest[4..8].try_into().unwrap()), 1);
    assert_eq!(field(newest, 8), 11, "commit index");
    assert_eq!(field(newest, 16), T0 + 5, "time");
    assert_eq!(&newest[40..49], b"auditor-1");
    assert_eq!(newest[49..72], [0; 23]);
    // Accounts 1 and 2, sorted, the repeat dropped; each with its previous read.
    assert_eq!(u32::from_le_bytes(newest[72..76].try_into().unwrap()), 2);
    assert_eq!(u128::from_le_bytes(newest[76..92].try_into().unwrap()), 1);
    assert_eq!(field(newest, 92), 0, "account 1 was read at leaf 0");
    assert_eq!(u128::from_le_bytes(newest[100..116].try_into().unwrap()), 2);
    assert_eq!(field(newest, 116), 1, "account 2 last at leaf 1");
    assert_eq!(
        newest.len(),
        ACCESS_LEAF_HEADER_BYTES + 2 * ACCESS_LEAF_ACCOUNT_BYTES
    );
    let oldest = &trail[2].leaf;
    assert_eq!(field(oldest, 92), NO_PREVIOUS);
    assert_eq!(field(oldest, 116), NO_PREVIOUS);
    // At an earlier size, from an earlier point, a page at a time.
    let at_two = engine.access_trail(2, 2, u64::MAX, 100, 1 << 20).unwrap();
    assert_eq!(
        at_two.iter().map(|r| r.index).collect::<Vec<_>>(),
        vec![1, 0]
    );
    let page = engine.access_trail(2, size, u64::MAX, 1, 1 << 20).unwrap();
    assert_eq!(page.len(), 1);
    let next = engine.access_trail(2, size, page[0].index, 5, 1).unwrap();
    assert_eq!(
        next.iter().map(|r| r.index).collect::<Vec<_>>(),
        vec![1],
        "one at least"
    );
    assert!(engine
        .access_trail(9, size, u64::MAX, 5, 1 << 20)
        .unwrap()
        .is_empty());
}

/// The trail is replicated state: the same on every replica (in the digest), through a
/// snapshot, and its checkpoints are kept only for its own root.
#[test]
fn the_trail_survives_a_snapshot_and_its_checkpoints_are_checked() {
    let mut engine = engine_with_reads();
    let key = crate::checkpoint::NoteSigner::new("tally/test/reads", &[5; 32]).unwrap();
    let sign = |engine: &Engine, size| {
        let checkpoint = crate::checkpoint::Checkpoint {
            origin: "tally/test/reads".into(),
            size,
            root: engine.access_root(size).unwrap(),
            time_ns: T0 + size,
        };
        key.sign_checkpoint(&checkpoint).unwrap()
    };
    let mut forged = sign(&engine, 3);
    forged.root[1] ^= 1;
    assert_eq!(
        engine.record_access_checkpoint(forged),
        Err(CheckpointRefused::RootMismatch { size: 3 })
    );
    engine.record_access_checkpoint(sign(&engine, 3)).unwrap();
    assert!(engine.record_access_checkpoint(sign(&engine, 2)).is_err());
    assert_eq!(engine.latest_access_checkpoint().map(|c| c.1.size), Some(3));
    let digest = engine.digest();
    let mut other = engine_with_reads();
    other.record_access_checkpoint(sign(&other, 3)).unwrap();
    assert_eq!(other.digest(), digest, "the same reads, the same digest");
    other.record_reads(&[entry("late", 64, &[1])], T0 + 9, 12);
    assert_ne!(other.digest(), digest, "the digest covers the trail");

    let restored = Engine::restore(&engine.snapshot(), EngineConfig::default()).unwrap();
    assert_eq!(restored.digest(), digest);
    assert_eq!(restored.access_checkpoint(0), engine.access_checkpoint(0));
    let size = engine.access_size();
    assert_eq!(
        restored.access_trail(1, size, u64::MAX, 9, 1 << 20),
        engine.access_trail(1, size, u64::MAX, 9, 1 << 20)
    );
    // Reads recorded after the restore link to the restored ones.
    let mut restored = restored;
    restored.record_reads(&[entry("late", 64, &[1])], T0 + 9, 12);
    let trail = restored.access_trail(1, 5, u64::MAX, 9, 1 << 20).unwrap();
    assert_eq!(
        trail.iter().map(|r| r.index).collect::<Vec<_>>(),
        vec![4, 3, 0]
    );
}
