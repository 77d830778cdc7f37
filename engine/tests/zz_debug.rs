mod common;
mod model;
use common::*;
use model::generate::{Config, Rng, TIME_BASE_LOW, TIME_BASE_HIGH};
use tally_engine::StatementFilter;
#[test]
fn debug_case() {
    let case: (u64, bool, Vec<(u64, Vec<u64>)>, u64) = include!("/tmp/case.rs");
    let (hash_seed, high, batches, _q) = case;
    let mut pair = Pair::new(hash_seed, Config { time_base: if high { TIME_BASE_HIGH } else { TIME_BASE_LOW } });
    for (k, (bs, es)) in batches.iter().enumerate() {
        let expiring: Vec<_> = pair.model.pending.iter().filter(|(_, p)| p.status == model::Status::Pending && p.expires_at != 0).map(|(id, p)| (*id, *p)).collect();
        let batch = pair.generate_and_step(*bs, es);
        for id in account_ids() {
            let f = StatementFilter { account_id: id, timestamp_min: 0, timestamp_max: 0, limit: 8189, reversed: false };
            if let (Ok(e), Ok(m)) = (pair.engine.statement(&f), pair.model.statement(id, 0, 0, 8189, false)) {
                let e: Vec<_> = e.iter().map(entry).collect();
                if e != m {
                    println!("batch {k} entry {} op {:?} last {}", batch.entry_timestamp, batch.op, pair.model.last_timestamp);
                    for (id, p) in &expiring { println!("  pending {id}: {p:?}"); }
                    let at = e.iter().zip(&m).position(|(x, y)| x != y).unwrap();
                    println!("account {id} engine {:?}\n model {:?}", &e[at..], &m[at..]);
                    panic!("found");
                }
            }
        }
    }
}
