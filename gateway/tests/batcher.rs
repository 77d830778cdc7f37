//! The batcher on one real openraft node (no network, no processes): packing, per-batch
//! results, limits. The client protocol's refusals are the gateway's (tests/gateway.rs).

// The single-node openraft harness of the replica crate's own tests, shared, not copied.
#[path = "../../raft/tests/common/single_node.rs"]
#[allow(dead_code)]
mod single_node;

use std::time::Duration;

use bytes::Bytes;
use single_node::{account, batch, start_leader, Raft};
use tally_engine::records::Transfer;
use tally_engine::{EventResult, Operation};
use tally_gateway::GatewayMetrics;
use tally_gateway::{Batcher, BatcherConfig, BatcherError};
use tally_raft::metrics::NodeMetrics;
use tally_raft::replication::ClientBatch;

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
        origin: None,
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
    let metrics = GatewayMetrics::new(&NodeMetrics::unregistered());
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
    assert_eq!(
        view.read(|applied| applied.engine().expect("no install").transfers_count()),
        100
    );
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

/// Proves a batch larger than an entry may carry is refused with the batcher's own error,
/// counted as too large, before anything is queued or committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_batch_is_refused_before_queueing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (raft, view) = leader(dir.path()).await;
    let node = NodeMetrics::unregistered();
    let metrics = GatewayMetrics::new(&node);
    let (batcher, _task) = Batcher::start(raft.clone(), batcher_config(), metrics.clone());
    let oversized = ClientBatch {
        operation: Operation::CreateTransfers,
        body: Bytes::from(vec![0u8; 2 * 1024 * 1024]),
        origin: None,
    };
    match batcher.try_submit(oversized) {
        Err(BatcherError::TooLarge { bytes, limit }) => {
            assert_eq!(bytes, 2 * 1024 * 1024);
            assert!(limit < bytes);
        }
        other => panic!("refused as too large, not {:?}", other.map(|_| ())),
    }
    assert_eq!(node.rejects.with_label_values(&["too_large"]).get(), 1);
    assert_eq!(
        view.read(|applied| applied.engine().expect("no install").accounts_count()),
        0
    );
    raft.shutdown().await.expect("shutdown");
}
