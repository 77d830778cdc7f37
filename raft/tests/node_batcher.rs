//! The batcher and the client service on one real openraft node (no network, no processes):
//! packing, per-batch results, limits, malformed requests and graceful stop.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::single_node::{account, batch, start_leader, Raft};
use tally_engine::records::Transfer;
use tally_engine::{EventResult, Operation};
use tally_raft::metrics::NodeMetrics;
use tally_raft::net::{ClientHandler, Frame};
use tally_raft::node::protocol::{
    answer_kind, decode_answer, decode_submit_answer, encode_request, Request, Status,
};
use tally_raft::node::{Batcher, BatcherConfig, Service};
use tally_raft::replication::ClientBatch;

const OPERATOR: &[u8] = b"the operator's secret, for tests";

/// The batcher's entry limit must match the WAL's (256 KiB in these tests).
fn batcher_config() -> BatcherConfig {
    BatcherConfig {
        entry_payload_bytes_max: 256 * 1024,
        ..BatcherConfig::default()
    }
}

async fn leader(dir: &std::path::Path) -> (Raft, tally_raft::replication::AppliedView) {
    start_leader(dir).await
}

fn accounts() -> ClientBatch {
    batch(
        Operation::CreateAccounts,
        (1..=10u128).map(account).collect(),
    )
}

/// Batch `k`: one transfer, which fails (unknown credit account) when `k` is odd.
fn transfer_batch(k: u128) -> ClientBatch {
    let credit = if k % 2 == 1 { 999 } else { 2 };
    ClientBatch {
        operation: Operation::CreateTransfers,
        body: Bytes::from(
            Transfer {
                id: 1000 + k,
                debit_account_id: 1,
                credit_account_id: credit,
                amount: 1,
                ledger: 1,
                code: 1,
                ..Transfer::default()
            }
            .encode()
            .to_vec(),
        ),
    }
}

/// Proves batches queued while an entry is in flight are packed into few entries, each batch
/// still gets exactly its own result, and results arrive in submission order of packing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_batches_pack_into_few_entries_with_own_results() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (raft, view) = leader(dir.path()).await;
    let config = BatcherConfig {
        entries_in_flight_max: 1,
        ..batcher_config()
    };
    let metrics = NodeMetrics::unregistered();
    let (batcher, task) = Batcher::start(raft.clone(), config, metrics.clone());
    let created = batcher.submit(accounts()).await.expect("queued");
    assert!(created
        .await
        .expect("answered")
        .expect("committed")
        .outcome
        .expect("ok")
        .failures
        .is_empty());
    let before = raft.metrics().borrow().last_log_index.expect("some");
    let mut waiting = Vec::new();
    for k in 0..200u128 {
        waiting.push(batcher.submit(transfer_batch(k)).await.expect("queued"));
    }
    for (k, result) in waiting.into_iter().enumerate() {
        let outcome = result
            .await
            .expect("answered")
            .expect("committed")
            .outcome
            .expect("ok");
        if k % 2 == 1 {
            assert_eq!(
                outcome.failures,
                vec![(0, EventResult::CreditAccountNotFound)],
                "batch {k}"
            );
        } else {
            assert!(
                outcome.failures.is_empty(),
                "batch {k}: {:?}",
                outcome.failures
            );
        }
    }
    let entries = raft.metrics().borrow().last_log_index.expect("some") - before;
    assert!(
        entries < 50,
        "200 batches took {entries} entries: not packed"
    );
    assert_eq!(view.read(|applied| applied.engine().transfers_count()), 100);
    // The metrics count what was decided: 10 accounts, 100 transfers applied and 100 refused
    // for the unknown credit account, one commit latency per batch.
    let events = |operation: &str, result: &str| {
        metrics.events.with_label_values(&[operation, result]).get()
    };
    assert_eq!(events("create_accounts", "ok"), 10);
    assert_eq!(events("create_transfers", "ok"), 100);
    assert_eq!(events("create_transfers", "credit_account_not_found"), 100);
    assert_eq!(metrics.commit_seconds.get_sample_count(), 201);
    drop(batcher);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the batcher ends once its senders are gone")
        .expect("no panic");
    raft.shutdown().await.expect("shutdown");
}

async fn ask(service: &Service, kind: u8, payload: Vec<u8>) -> Frame {
    let (replies, mut answers) = tokio::sync::mpsc::channel(4);
    service
        .handle(
            Frame {
                kind,
                request_id: 77,
                payload: Bytes::from(payload),
            },
            replies,
        )
        .await;
    let answer = tokio::time::timeout(Duration::from_secs(10), answers.recv())
        .await
        .expect("answered in time")
        .expect("an answer");
    assert_eq!(answer.request_id, 77);
    assert_eq!(answer.kind, answer_kind(kind));
    answer
}

/// Proves the service answers a stranger's credential, malformed and oversized requests with
/// clear refusals (never a panic, nothing committed), serves a good batch, and after `stop_accepting` refuses new
/// batches as unavailable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_refuses_bad_requests_and_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (raft, view) = leader(dir.path()).await;
    let metrics = NodeMetrics::unregistered();
    let (batcher, _task) = Batcher::start(raft.clone(), batcher_config(), metrics.clone());
    let service = Service::new(
        raft.clone(),
        view.clone(),
        batcher,
        vec![*blake3::hash(OPERATOR).as_bytes()],
        metrics.clone(),
        tally_raft::replication::CommittedIndex::default(),
    );

    let (kind, payload) = encode_request(
        &Request::Submit {
            operation: Operation::CreateAccounts,
            body: accounts().body,
        },
        OPERATOR,
    );
    let answer = ask(&service, kind, payload.clone()).await;
    let body = decode_answer(&answer.payload)
        .expect("decodes")
        .expect("ok");
    assert!(decode_submit_answer(body)
        .expect("decodes")
        .failures
        .is_empty());

    let (_, stranger) = encode_request(
        &Request::Submit {
            operation: Operation::CreateAccounts,
            body: accounts().body,
        },
        b"not the operator's secret at all",
    );
    let answer = ask(&service, kind, stranger).await;
    let refusal = decode_answer(&answer.payload)
        .expect("decodes")
        .expect_err("refused");
    assert_eq!(refusal.status, Status::Unauthenticated, "{refusal}");

    let mut unknown_operation = payload.clone();
    unknown_operation[0] = 9;
    let mut reserved = payload.clone();
    reserved[3] = 1;
    for bad in [unknown_operation, reserved, vec![1, 2, 3]] {
        let answer = ask(&service, kind, bad).await;
        let refusal = decode_answer(&answer.payload)
            .expect("decodes")
            .expect_err("refused");
        assert_eq!(refusal.status, Status::BadRequest, "{refusal}");
    }
    let answer = ask(&service, 200, vec![0; 8]).await;
    assert_eq!(
        decode_answer(&answer.payload)
            .expect("decodes")
            .expect_err("refused")
            .status,
        Status::BadRequest
    );

    let (kind, oversized) = encode_request(
        &Request::Submit {
            operation: Operation::CreateTransfers,
            body: Bytes::from(vec![0u8; 2 * 1024 * 1024]),
        },
        OPERATOR,
    );
    let answer = ask(&service, kind, oversized).await;
    let refusal = decode_answer(&answer.payload)
        .expect("decodes")
        .expect_err("refused");
    assert_eq!(refusal.status, Status::BadRequest, "{refusal}");

    let (kind, partial) = encode_request(
        &Request::Submit {
            operation: Operation::CreateTransfers,
            body: Bytes::from(vec![0u8; 100]),
        },
        OPERATOR,
    );
    let answer = ask(&service, kind, partial).await;
    let refusal = decode_answer(&answer.payload)
        .expect("decodes")
        .expect_err("refused");
    assert_eq!(refusal.status, Status::BatchRefused, "{refusal}");
    assert_eq!(view.read(|applied| applied.engine().accounts_count()), 10);

    service.stop_accepting();
    let answer = ask(&service, kind, payload).await;
    let refusal = decode_answer(&answer.payload)
        .expect("decodes")
        .expect_err("refused");
    assert_eq!(refusal.status, Status::Unavailable, "{refusal}");

    // Every answer was counted, each refusal before the ledger under its reason.
    let rejects = |reason: &str| metrics.rejects.with_label_values(&[reason]).get();
    assert_eq!(rejects("auth"), 1);
    assert_eq!(rejects("malformed"), 4);
    assert_eq!(rejects("shutting_down"), 1);
    assert_eq!(rejects("too_large"), 1, "the 2 MiB batch");
    let requests = |kind: &str, status: &str| {
        metrics
            .requests
            .with_label_values(&["node", kind, status])
            .get()
    };
    assert_eq!(requests("submit", "ok"), 1);
    assert_eq!(requests("submit", "bad_request"), 4);
    assert_eq!(requests("submit", "batch_refused"), 1);
    assert_eq!(
        metrics
            .events
            .with_label_values(&["create_transfers", "batch_invalid"])
            .get(),
        0,
        "a body of 100 bytes holds no whole record"
    );
    raft.shutdown().await.expect("shutdown");
}
