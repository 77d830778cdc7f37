//! Criterion benchmarks of the verifiable log's hashing (`tally_engine::merkle`): what one
//! event costs to enter the RFC 6962 tree, and what a proof costs to make and to check.
//!
//! - `leaf_hash/152B`: SHA-256 of one leaf the size of an event's leaf (a 128-byte record and
//!   its result, timestamp and position), as a replica hashes each applied event.
//! - `append/8189`: one full batch of leaf hashes pushed into a tree of up to 4M leaves (the
//!   interior nodes each push completes: one on average), per event.
//! - `inclusion_proof` / `consistency_proof` at 4M leaves, and verifying each.
//!
//! Run: `cargo bench -p tally-benches --bench merkle`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tally_engine::merkle::{leaf_hash, verify_consistency, verify_inclusion, Tree};

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
    group.finish();
}

criterion_group!(benches, hashing);
criterion_main!(benches);
