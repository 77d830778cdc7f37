//! Criterion benchmarks of the verifiable log's hashing (`tally_engine::merkle`): what one
//! event costs to enter the RFC 6962 tree, and what a proof costs to make and to check.
//!
//! - `leaf_hash/152B`: SHA-256 of one leaf the size of an event's leaf (a 128-byte record and
//!   its result, timestamp and position), as a replica hashes each applied event.
//! - `append/8189`: one full batch of leaf hashes pushed into a tree of up to 4M leaves (the
//!   interior nodes each push completes: one on average), per event.
//! - `inclusion_proof` / `consistency_proof` at 4M leaves, and verifying each.
//! - `engine_prove/1M`: `Engine::prove` of a stored transfer among 1M (10k accounts): the
//!   engine's tree keeps a hash per 16 leaves, so a proof rebuilds the leaves it needs inside
//!   groups (up to 30) from the stored transfers.
//!
//! Run: `cargo bench -p tally-benches --bench merkle`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tally_benches::{engine_with_accounts, Skew, TransferWorkload, EPOCH};
use tally_engine::limits::{BATCH_EVENTS_MAX, RECORD_BYTES};
use tally_engine::merkle::{leaf_hash, verify_consistency, verify_inclusion, Tree};
use tally_engine::Operation;

const LEAF_BYTES: usize = 152;
const BATCH: usize = 8_189;
const TREE_LEAVES: u64 = 4 << 20;

fn tree(leaves: u64) -> Tree {
    let mut tree = Tree::new();
    for i in 0..leaves {
        tree.push(leaf_hash(&i.to_le_bytes()));
    }
    tree
}

fn hashing(c: &mut Criterion) {
    let mut group = c.benchmark_group("merkle");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    group.warm_up_time(Duration::from_secs(1));

    let leaf = [7u8; LEAF_BYTES];
    group.throughput(Throughput::Elements(1));
    group.bench_function("leaf_hash/152B", |b| {
        b.iter(|| leaf_hash(std::hint::black_box(&leaf)))
    });

    let batch: Vec<[u8; 32]> = (0..BATCH as u64)
        .map(|i| leaf_hash(&i.to_le_bytes()))
        .collect();
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut growing = Tree::new();
    group.bench_function("append/8189", |b| {
        b.iter(|| {
            if growing.size() >= TREE_LEAVES {
                growing = Tree::new();
            }
            for leaf in &batch {
                growing.push(*leaf);
            }
        })
    });
    group.bench_function("leaf_hash_and_append/8189x152B", |b| {
        b.iter_batched_ref(
            Tree::new,
            |tree| {
                for i in 0..BATCH {
                    let mut leaf = [0u8; LEAF_BYTES];
                    leaf[..8].copy_from_slice(&(i as u64).to_le_bytes());
                    tree.push(leaf_hash(&leaf));
                }
            },
            BatchSize::LargeInput,
        )
    });

    let big = tree(TREE_LEAVES);
    let size = big.size();
    let root = big.root(size).unwrap();
    group.throughput(Throughput::Elements(1));
    let mut index = 0u64;
    group.bench_function("inclusion_proof/4M", |b| {
        b.iter(|| {
            index = (index + 999_983) % size;
            big.inclusion_proof(index, size).unwrap()
        })
    });
    let path = big.inclusion_proof(1_234_567, size).unwrap();
    let leaf = leaf_hash(&1_234_567u64.to_le_bytes());
    group.bench_function("verify_inclusion/4M", |b| {
        b.iter(|| verify_inclusion(1_234_567, size, &leaf, &path, &root).unwrap())
    });
    let old = size - 1_000_003;
    let old_root = big.root(old).unwrap();
    group.bench_function("consistency_proof/4M", |b| {
        b.iter(|| big.consistency_proof(old, size).unwrap())
    });
    let proof = big.consistency_proof(old, size).unwrap();
    group.bench_function("verify_consistency/4M", |b| {
        b.iter(|| verify_consistency(old, size, &old_root, &root, &proof).unwrap())
    });
    drop(big);

    let mut engine = engine_with_accounts(10_000);
    let mut workload = TransferWorkload::new(10_000, Skew::Uniform, 1);
    let mut ids = Vec::new();
    for batch in 0..1_000_000 / BATCH_EVENTS_MAX as u64 {
        let body = workload.transfers(BATCH_EVENTS_MAX);
        let outcome = engine
            .apply(Operation::CreateTransfers, EPOCH + batch * 1_000_000, &body)
            .expect("a valid batch");
        assert!(outcome.failures.is_empty());
        ids.extend(
            body.chunks_exact(RECORD_BYTES)
                .map(|record| u128::from_le_bytes(record[..16].try_into().expect("an id"))),
        );
    }
    let size = engine.log_size();
    let root = engine.log_root(size).unwrap();
    let mut at = 0usize;
    group.bench_function("engine_prove/1M", |b| {
        b.iter(|| {
            at = (at + 999_983) % ids.len();
            engine.prove(ids[at], false, size).unwrap().unwrap()
        })
    });
    let proof = engine.prove(ids[12_345], false, size).unwrap().unwrap();
    let leaf = leaf_hash(&proof.leaf);
    assert!(verify_inclusion(proof.index, size, &leaf, &proof.proof, &root).is_ok());
    group.finish();
}

criterion_group!(benches, hashing);
criterion_main!(benches);
