//! Memory latency of this machine: a dependent pointer chase (each load waits for the last)
//! against independent random loads (the CPU overlaps them), over working sets of 1–256 MiB.
//! The gap between the two is why the engine prefetches (engine/src/warm.rs).
//! Run: `cargo run --release -p tally-benches --example memory_latency`
use std::time::Instant;

fn main() {
    for mib in [1usize, 4, 16, 64, 256] {
        let n = mib * 1024 * 1024 / 8;
        // A random cyclic permutation, so the chase visits every element once per cycle.
        let mut order: Vec<usize> = (0..n).collect();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in (1..n).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            order.swap(i, (x as usize) % i);
        }
        let mut next = vec![0usize; n];
        for i in 0..n {
            next[order[i]] = order[(i + 1) % n];
        }
        let steps: usize = 5_000_000;
        let mut p = 0usize;
        let start = Instant::now();
        for _ in 0..steps {
            p = next[p];
        }
        let dependent = start.elapsed().as_nanos() as f64 / steps as f64;
        let mut sum = 0usize;
        let start = Instant::now();
        for k in 0..steps {
            sum = sum.wrapping_add(next[k.wrapping_mul(2_654_435_761) % n]);
        }
        let independent = start.elapsed().as_nanos() as f64 / steps as f64;
        std::hint::black_box((p, sum));
        println!("{mib:>4} MiB: dependent {dependent:6.1} ns/load, independent {independent:5.1} ns/load");
    }
}
