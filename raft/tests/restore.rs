//! `restore_from_snapshot`: a data directory made from a snapshot file starts exactly where the
//! snapshot ends and keeps committing, and every bad input is refused with a clear error
//! before anything is written.

mod common;

use std::path::{Path, PathBuf};

use common::single_node::{account, batch, start, start_leader, TIMEOUT};
use tally_engine::{EngineConfig, Operation};
use tally_raft::replication::restore::{restore_from_snapshot, RestoreError};
use tally_raft::replication::Request;
use tally_raft::storage::open_default;

fn accounts(ids: std::ops::RangeInclusive<u128>) -> Request {
    Request {
        timestamp: 1_700_000_000_000_000_000,
        batches: vec![batch(Operation::CreateAccounts, ids.map(account).collect())],
        log: None,
    }
}

fn restore(
    data_dir: &Path,
    id: u64,
    file: &Path,
) -> Result<tally_raft::replication::restore::Restored, RestoreError> {
    restore_from_snapshot(open_default(), data_dir, id, file, EngineConfig::default())
}

fn snapshot_file(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("snapshots"))
        .expect("snapshots")
        .filter_map(|entry| Some(entry.ok()?.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "snap"))
        .collect();
    files.sort();
    files.pop().expect("a snapshot file")
}

/// Proves a restored directory opens at the snapshot (same digest), elects itself in a later
/// term and commits after it; and that a wrong name, a damaged or renamed file, a node outside
/// the snapshot's membership and a non-empty directory are refused, writing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_starts_at_the_snapshot_and_refuses_bad_input() {
    let source = tempfile::tempdir().expect("tempdir");
    let (raft, view) = start_leader(source.path()).await;
    let written = raft.client_write(accounts(1..=4)).await.expect("committed");
    raft.trigger().snapshot().await.expect("snapshot triggered");
    raft.wait(TIMEOUT)
        .snapshot(written.log_id, "snapshot built")
        .await
        .expect("a snapshot");
    let (_, digest) = view.digest();
    raft.shutdown().await.expect("shutdown");
    let file = snapshot_file(source.path());

    let work = tempfile::tempdir().expect("tempdir");
    // Bad input first: each refused, nothing written.
    let outsider = work.path().join("outsider");
    assert!(matches!(
        restore(&outsider, 9, &file),
        Err(RestoreError::NotAMember { id: 9, .. })
    ));
    assert!(!outsider.exists(), "nothing written for a refused restore");
    let misnamed = work.path().join("backup.bin");
    std::fs::copy(&file, &misnamed).expect("copied");
    assert!(matches!(
        restore(&work.path().join("a"), 1, &misnamed),
        Err(RestoreError::NotASnapshotName(_))
    ));
    let damaged_dir = work.path().join("damaged");
    std::fs::create_dir_all(&damaged_dir).expect("dir");
    let damaged = damaged_dir.join(file.file_name().expect("name"));
    let mut bytes = std::fs::read(&file).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&damaged, &bytes).expect("written");
    let refused = restore(&work.path().join("b"), 1, &damaged).expect_err("damaged");
    assert!(
        matches!(refused, RestoreError::Damaged(_) | RestoreError::Read(_)),
        "{refused}"
    );
    let renamed_dir = work.path().join("renamed");
    std::fs::create_dir_all(&renamed_dir).expect("dir");
    let renamed = renamed_dir.join(format!("snapshot-{:020}-{:020}.snap", 999, 999));
    std::fs::copy(&file, &renamed).expect("copied");
    let refused = restore(&work.path().join("c"), 1, &renamed).expect_err("renamed");
    assert!(
        matches!(
            refused,
            RestoreError::Damaged(_) | RestoreError::Read(_) | RestoreError::NameMismatch { .. }
        ),
        "{refused}"
    );

    // The real thing.
    let data = work.path().join("node-1");
    let restored = restore(&data, 1, &file).expect("restored");
    assert_eq!(restored.last_index, written.log_id.index);
    assert_eq!(restored.accounts, 4);
    assert_eq!(restored.voters, vec![1]);
    let refused = restore(&data, 1, &file).expect_err("not empty any more");
    assert!(matches!(refused, RestoreError::NotEmpty(_)), "{refused}");

    let (raft, view) = start(&data).await;
    assert_eq!(
        view.digest(),
        (Some(written.log_id), digest),
        "opens at the snapshot"
    );
    raft.wait(TIMEOUT)
        .current_leader(1, "leads again")
        .await
        .expect("a leader");
    let term = raft.metrics().borrow().current_term;
    assert!(
        term > written.log_id.leader_id.term,
        "elects in a later term than the snapshot's ({term})"
    );
    let after = raft.client_write(accounts(5..=6)).await.expect("committed");
    assert!(after.log_id > written.log_id);
    assert_eq!(
        view.read(|applied| applied.engine().expect("no install").accounts_count()),
        6
    );
    raft.shutdown().await.expect("shutdown");
}
