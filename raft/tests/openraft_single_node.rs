//! A real openraft `Raft` on Tally's storage, as one node (no network yet: that is the next
//! slice): the type config, log store and state machine work together end to end, from
//! `client_write` to the engine's per-batch results, through a snapshot and a restart.

mod common;

use bytes::Bytes;
use common::single_node::{account, batch, start, start_leader, TIMEOUT};
use tally_engine::records::Transfer;
use tally_engine::{EventResult, Operation};
use tally_raft::replication::{ClientBatch, Request};

fn transfer(id: u128, debit: u128, credit: u128) -> [u8; 128] {
    Transfer {
        id,
        debit_account_id: debit,
        credit_account_id: credit,
        amount: 10,
        ledger: 1,
        code: 1,
        ..Transfer::default()
    }
    .encode()
}

/// Proves one node elects itself, commits a request of several client batches and returns
/// each batch's own result (failures by index); that a snapshot is built through openraft;
/// and that after a restart the node restores the snapshot, re-applies the log after it and
/// reaches the same state digest, then keeps committing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_commits_snapshots_and_restarts() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (raft, view) = start_leader(dir.path()).await;

    let request = Request {
        timestamp: 1_700_000_000_000_000_000,
        batches: vec![
            batch(Operation::CreateAccounts, (1..=4).map(account).collect()),
            batch(
                Operation::CreateTransfers,
                vec![
                    transfer(100, 1, 2),
                    transfer(101, 3, 99),
                    transfer(102, 2, 4),
                ],
            ),
            ClientBatch {
                operation: Operation::CreateTransfers,
                body: Bytes::from(vec![0u8; 100]),
                origin: None,
            },
        ],
        log: None,
    };
    let written = raft.client_write(request).await.expect("committed");
    let results = &written.data.batches;
    assert_eq!(results.len(), 3, "one result per client batch");
    assert_eq!(
        results[0]
            .outcome()
            .expect("applied")
            .as_ref()
            .expect("accounts")
            .failures,
        vec![]
    );
    assert_eq!(
        results[1]
            .outcome()
            .expect("applied")
            .as_ref()
            .expect("transfers")
            .failures,
        vec![(1, EventResult::CreditAccountNotFound)]
    );
    assert!(
        results[2].outcome().expect("applied").is_err(),
        "a body of partial records is refused"
    );

    raft.trigger().snapshot().await.expect("snapshot triggered");
    raft.wait(TIMEOUT)
        .snapshot(written.log_id, "snapshot built")
        .await
        .expect("a snapshot");

    let more = Request {
        timestamp: 1_700_000_001_000_000_000,
        batches: vec![batch(Operation::CreateTransfers, vec![transfer(103, 4, 1)])],
        log: None,
    };
    let last = raft.client_write(more).await.expect("committed");
    let (applied, digest) = view.digest();
    assert_eq!(applied, Some(last.log_id));
    raft.shutdown().await.expect("shut down");
    drop(raft);

    tracing::info!("--- restart from disk");
    let (raft, view) = start(dir.path()).await;
    assert_eq!(
        view.digest(),
        (Some(last.log_id), digest),
        "restored from the snapshot and the committed log after it, before any election"
    );
    raft.wait(TIMEOUT)
        .current_leader(1, "node 1 leads again")
        .await
        .expect("a leader");
    raft.wait(TIMEOUT)
        .applied_index_at_least(Some(last.log_id.index), "log re-applied")
        .await
        .expect("re-applied");
    assert_eq!(
        view.read(|state| state.engine().expect("no install").digest()),
        digest
    );

    let after = Request {
        timestamp: 1_700_000_002_000_000_000,
        batches: vec![batch(Operation::CreateTransfers, vec![transfer(104, 1, 3)])],
        log: None,
    };
    let written = raft
        .client_write(after)
        .await
        .expect("committed after restart");
    assert_eq!(written.data.batches.len(), 1);
    assert_eq!(
        written.data.batches[0]
            .outcome()
            .expect("applied")
            .as_ref()
            .expect("ok")
            .failures,
        vec![]
    );
    raft.shutdown().await.expect("shut down");
}
