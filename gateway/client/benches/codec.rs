//! The gateway codec per 128-byte event, on a full request (8,189 transfers):
//! - `encode`: a client building the request payload from `Transfer` values (record encode per
//!   event, then the gateway header).
//! - `decode_validate`: what the gateway does before submitting: the header's checks (version,
//!   flags, sizes) and the body's shape (whole records, event count), which is O(1) per request.
//! - `decode_validate_records`: the same plus decoding every record (`Transfer::decode`, the
//!   flags check), the upper bound of any per-event check (what a client does with a lookup
//!   reply). Target (issue 5): decode + validate ≤ 20 ns per event.
//!
//! Run: `cargo bench -p tally-gateway --bench codec`. Besides criterion's report, prints
//! ns/event for each.

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tally_client::protocol::{
    decode_request, encode_request, Request, RequestHeader, KIND_CREATE_TRANSFERS,
};
use tally_engine::records::{Transfer, TransferFlags};

const EVENTS: usize = 8189;

fn transfers() -> Vec<Transfer> {
    (0..EVENTS as u128)
        .map(|i| Transfer {
            id: i + 1,
            debit_account_id: i % 1000 + 1,
            credit_account_id: (i + 1) % 1000 + 1,
            amount: i + 7,
            ledger: 1,
            code: 1,
            flags: if i % 10 == 0 {
                TransferFlags::PENDING
            } else {
                TransferFlags::default()
            },
            ..Transfer::default()
        })
        .collect()
}

fn header() -> RequestHeader {
    RequestHeader {
        flags: 0,
        cluster_id: 0xC0FFEE,
        client_id: 42,
        session: 7,
        request_number: 1,
    }
}

fn encode(transfers: &[Transfer]) -> Vec<u8> {
    let mut body = Vec::with_capacity(transfers.len() * 128);
    for transfer in transfers {
        body.extend_from_slice(&transfer.encode());
    }
    encode_request(&header(), &body)
}

fn decode_validate(payload: &[u8]) -> usize {
    match decode_request(KIND_CREATE_TRANSFERS, payload) {
        Ok((_, Request::Create { body, .. })) => body.len() / 128,
        _ => panic!("a valid request"),
    }
}

fn decode_validate_records(payload: &[u8]) -> u128 {
    let Ok((_, Request::Create { body, .. })) = decode_request(KIND_CREATE_TRANSFERS, payload)
    else {
        panic!("a valid request");
    };
    let (records, _) = body.as_chunks::<128>();
    let mut sum = 0u128;
    for record in records {
        let transfer = Transfer::decode(record).expect("valid flags");
        sum = sum.wrapping_add(transfer.amount);
    }
    sum
}

fn ns_per_event(name: &str, mut run: impl FnMut()) {
    let rounds = 200;
    for _ in 0..20 {
        run();
    }
    let start = Instant::now();
    for _ in 0..rounds {
        run();
    }
    let ns = start.elapsed().as_nanos() as f64 / (rounds * EVENTS) as f64;
    println!("gateway codec {name}: {ns:.3} ns/event");
}

fn bench(c: &mut Criterion) {
    let transfers = transfers();
    let payload = encode(&transfers);
    let mut group = c.benchmark_group("gateway_codec");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("encode", |b| b.iter(|| encode(black_box(&transfers))));
    group.bench_function("decode_validate", |b| {
        b.iter(|| decode_validate(black_box(&payload)))
    });
    group.bench_function("decode_validate_records", |b| {
        b.iter(|| decode_validate_records(black_box(&payload)))
    });
    group.finish();
    ns_per_event("encode", || {
        black_box(encode(black_box(&transfers)));
    });
    ns_per_event("decode_validate", || {
        black_box(decode_validate(black_box(&payload)));
    });
    ns_per_event("decode_validate_records", || {
        black_box(decode_validate_records(black_box(&payload)));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
