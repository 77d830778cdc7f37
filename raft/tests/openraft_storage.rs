//! Tally's openraft storage beyond openraft's own suite: what survives a restart (entries,
//! vote, purge point, snapshots), that a snapshot carries the engine's state to another replica
//! exactly (equal digests), and what opening refuses.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{RaftLogReader, RaftSnapshotBuilder};
use tally_engine::records::{Account, Transfer};
use tally_engine::{EngineConfig, EventResult, Operation};
use tally_raft::replication::types::{
    Entry, EntryPayload, LogId, LogNote, Membership, Node, SnapshotMeta, StoredMembership, Vote,
};
use tally_raft::replication::{
    open_storage, read_image, BatchAnswer, ClientBatch, LogStore, Origin, Request, Response,
    SnapshotData, StateMachine, StorageOpenError,
};
use tally_raft::storage::{open_default, Disk};
use tally_raft::WalConfig;

/// Small segments so a few dozen entries span several segment files.
fn wal_config() -> WalConfig {
    WalConfig {
        segment_bytes: 256 * 1024,
        entry_payload_bytes_max: 64 * 1024,
    }
}

fn open(disk: &Arc<dyn Disk>, dir: &Path) -> (LogStore, StateMachine) {
    open_storage(Arc::clone(disk), dir, wal_config(), EngineConfig::default())
        .expect("storage opens")
}

fn log_id(term: u64, node: u64, index: u64) -> LogId {
    LogId::new(openraft::CommittedLeaderId::new(term, node), index)
}

fn membership(voters: &[u64]) -> Membership {
    let nodes: BTreeMap<u64, Node> = voters
        .iter()
        .map(|id| {
            (
                *id,
                Node::new(
                    format!("127.0.0.1:{}", 7000 + id),
                    format!("127.0.0.1:{}", 7200 + id),
                ),
            )
        })
        .collect();
    Membership::new(vec![voters.iter().copied().collect::<BTreeSet<_>>()], nodes)
}

fn accounts_body(first_id: u128, count: u128) -> Bytes {
    let mut body = Vec::new();
    for id in first_id..first_id + count {
        let account = Account {
            id,
            ledger: 1 + (id % 2) as u32,
            code: 1,
            ..Account::default()
        };
        body.extend_from_slice(&account.encode());
    }
    Bytes::from(body)
}

/// Transfers between accounts `1..=accounts` on their ledger; every `fail_every`-th one names
/// an account that does not exist, so the responses carry failures too.
fn transfers_body(first_id: u128, count: u128, accounts: u128, fail_every: u128) -> Bytes {
    let mut body = Vec::new();
    for id in first_id..first_id + count {
        let debit = 1 + (id * 2) % accounts;
        let credit = 1 + (debit + 1) % accounts;
        let transfer = Transfer {
            id,
            debit_account_id: debit,
            credit_account_id: if id % fail_every == 0 {
                1 << 90
            } else {
                credit
            },
            amount: id,
            ledger: 1 + (debit % 2) as u32,
            code: 1,
            ..Transfer::default()
        };
        body.extend_from_slice(&transfer.encode());
    }
    Bytes::from(body)
}

/// A request entry at `index` of term 1, its timestamp following the index.
fn request(index: u64, batches: Vec<ClientBatch>) -> Entry {
    Entry {
        log_id: log_id(1, 1, index),
        payload: EntryPayload::Normal(Request {
            timestamp: 1_000 + index * 1_000_000,
            batches,
            log: None,
        }),
    }
}

/// `count` transfers that all succeed, their ids after `index` (see [`request`]).
fn transfers(index: u64, count: u128) -> ClientBatch {
    ClientBatch {
        operation: Operation::CreateTransfers,
        body: transfers_body(u128::from(index) << 20, count, 64, u128::MAX),
        origin: None,
    }
}

/// A log of every entry kind: blank, membership, requests with several batches, over three
/// terms and two leaders, big enough to span several segments.
fn sample_log() -> Vec<Entry> {
    let mut entries = vec![
        Entry {
            log_id: log_id(1, 1, 0),
            payload: EntryPayload::Membership(membership(&[1, 2, 3])),
        },
        Entry {
            log_id: log_id(1, 1, 1),
            payload: EntryPayload::Blank,
        },
        Entry {
            log_id: log_id(1, 1, 2),
            payload: EntryPayload::Normal(Request {
                timestamp: 1_000,
                batches: vec![ClientBatch {
                    operation: Operation::CreateAccounts,
                    body: accounts_body(1, 64),
                    origin: None,
                }],
                log: None,
            }),
        },
    ];
    for index in 3..40u64 {
        let term = if index < 20 { 1 } else { 4 };
        let leader = if index < 20 { 1 } else { 3 };
        let first = u128::from(index) * 1000;
        entries.push(Entry {
            log_id: log_id(term, leader, index),
            payload: EntryPayload::Normal(Request {
                timestamp: 1_000 + index * 1_000_000,
                batches: vec![
                    ClientBatch {
                        operation: Operation::CreateTransfers,
                        body: transfers_body(first, 100, 64, 7),
                        origin: None,
                    },
                    ClientBatch {
                        operation: Operation::CreateTransfers,
                        body: transfers_body(first + 500, 50, 64, 11),
                        origin: None,
                    },
                ],
                log: None,
            }),
        });
        if index == 20 {
            entries.push(Entry {
                log_id: log_id(term, leader, 21),
                payload: EntryPayload::Membership(membership(&[1, 2, 3, 4, 5])),
            });
        }
    }
    // Keep the indexes contiguous after the membership inserted at 21.
    for (index, entry) in entries.iter_mut().enumerate() {
        entry.log_id.index = index as u64;
    }
    entries
}

fn summary(entries: &[Entry]) -> Vec<(LogId, EntryPayload)> {
    entries
        .iter()
        .map(|entry| (entry.log_id, entry.payload.clone()))
        .collect()
}

/// Proves what the log store acknowledged survives closing and reopening the node: every
/// entry (all payload kinds, several segments) reads back equal, and so do the vote, the purge
/// point with its leader's node id, and a truncation.
#[tokio::test]
async fn log_vote_purge_and_truncate_survive_reopen() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let disk = open_default();
    let entries = sample_log();
    let vote = Vote::new_committed(4, 3);
    let purged = entries[9].log_id;
    let truncated_at = 35;
    let open_log = || LogStore::open(Arc::clone(&disk), dir.path(), wal_config()).expect("opens");
    {
        let mut log = open_log();
        log.blocking_append(entries[..10].to_vec())
            .await
            .expect("first append is durable");
        log.blocking_append(entries[10..].to_vec())
            .await
            .expect("second append is durable");
        log.save_vote(&vote).await.expect("vote saved");
        log.truncate(entries[truncated_at].log_id)
            .await
            .expect("truncated");
        log.purge(purged).await.expect("purged");
        assert!(log.wal().stats().groups >= 2);
        log.close();
    }
    // The log alone: with no snapshot to cover the purge, `open_storage` would refuse it.
    let mut log = open_log();
    assert_eq!(log.read_vote().await.expect("vote reads"), Some(vote));
    let state = log.get_log_state().await.expect("log state");
    assert_eq!(state.last_purged_log_id, Some(purged));
    assert_eq!(
        state.last_log_id,
        Some(entries[truncated_at - 1].log_id),
        "the truncation is durable"
    );
    let read = log.try_get_log_entries(..).await.expect("entries read");
    assert_eq!(summary(&read), summary(&entries[10..truncated_at]));
    let mut reader = log.get_log_reader().await;
    let limited = reader
        .limited_get_log_entries(12, 30)
        .await
        .expect("limited read");
    assert_eq!(summary(&limited), summary(&entries[12..30]));
}

/// Proves a snapshot carries a replica's whole applied state to another: after applying a log
/// of accounts and transfers (some failing), building a snapshot and installing it into a
/// state machine behind it gives an equal engine digest, last applied log id and membership; the
/// installed snapshot is durable (a reopened node restores the same digest); and the
/// responses report each batch's failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_installs_with_equal_digest() {
    let disk = open_default();
    let follower_dir = tempfile::tempdir().expect("temporary directory");
    let entries = sample_log();
    let (_leader_dir, _leader_log, mut leader, responses) = leader_with_sample_log(&disk).await;
    assert_eq!(responses.len(), entries.len());
    let failures: usize = responses
        .iter()
        .flat_map(|response| &response.batches)
        .map(|batch| {
            batch
                .outcome()
                .expect("applied")
                .as_ref()
                .expect("well-formed batch")
                .failures
                .len()
        })
        .sum();
    assert!(failures > 0, "the log has failing transfers");
    assert!(responses.iter().flat_map(|r| &r.batches).all(|batch| {
        batch
            .outcome()
            .expect("applied")
            .as_ref()
            .is_ok_and(|outcome| {
                outcome
                    .failures
                    .iter()
                    .all(|(_, result)| *result == EventResult::CreditAccountNotFound)
            })
    }));
    let (leader_applied, leader_digest) = leader.view().digest();
    assert_eq!(leader_applied, entries.last().map(|entry| entry.log_id));

    let mut snapshot = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("snapshot built");
    assert_eq!(snapshot.meta.last_log_id, leader_applied);
    assert_eq!(
        snapshot.meta.last_membership,
        StoredMembership::new(Some(entries[21].log_id), membership(&[1, 2, 3, 4, 5]))
    );

    // A follower that applied the start of the log: the install replaces its state.
    let (_follower_log, mut follower) = open(&disk, follower_dir.path());
    follower
        .apply(entries[..5].to_vec())
        .await
        .expect("applied");
    let mut received = follower
        .begin_receiving_snapshot()
        .await
        .expect("receiving");
    tokio::io::AsyncWriteExt::write_all(
        &mut *received,
        &read_image(&mut snapshot.snapshot).expect("readable"),
    )
    .await
    .expect("received");
    follower
        .install_snapshot(&snapshot.meta, received)
        .await
        .expect("installed");
    assert_eq!(follower.view().digest(), (leader_applied, leader_digest));
    assert!(follower.view().read(|applied| applied.engine().is_some()));
    assert_eq!(
        follower.applied_state().await.expect("applied state"),
        leader.applied_state().await.expect("applied state")
    );
    let current = follower
        .get_current_snapshot()
        .await
        .expect("current snapshot")
        .expect("a snapshot is current");
    assert_eq!(current.meta, snapshot.meta);
    drop(follower);

    let (_, reopened) = open(&disk, follower_dir.path());
    assert_eq!(reopened.view().digest(), (leader_applied, leader_digest));
}

/// A replica in a directory of its own that applied `sample_log`, and what it answered.
async fn leader_with_sample_log(
    disk: &Arc<dyn Disk>,
) -> (tempfile::TempDir, LogStore, StateMachine, Vec<Response>) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (log, mut machine) = open(disk, dir.path());
    let responses = machine.apply(sample_log()).await.expect("applied");
    (dir, log, machine, responses)
}

/// Proves the reply table is replicated state: a batch sent again under its origin is answered
/// with its first outcome and log index and applies nothing, the same number with other contents
/// is refused and applies nothing, on the replica that applied it, on a replica that installed
/// its snapshot, and on that replica after a restart from the snapshot file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_answered_from_the_replicated_reply_table() {
    let disk = open_default();
    let leader_dir = tempfile::tempdir().expect("temporary directory");
    let follower_dir = tempfile::tempdir().expect("temporary directory");
    let sent = |body: Bytes, number, digest| ClientBatch {
        operation: Operation::CreateTransfers,
        body,
        origin: Some(Origin {
            client: 0xC1,
            number,
            digest,
        }),
    };
    // Every third transfer names a missing account, so the outcome carries failures.
    let first = sent(transfers_body(5000, 30, 64, 3), 7, 0xD1);
    let other = sent(transfers_body(6000, 30, 64, u128::MAX), 7, 0xD2);
    let entries = vec![
        Entry {
            log_id: log_id(1, 1, 0),
            payload: EntryPayload::Membership(membership(&[1])),
        },
        request(
            1,
            vec![ClientBatch::new(
                Operation::CreateAccounts,
                accounts_body(1, 64),
            )],
        ),
        request(2, vec![first.clone()]),
    ];
    let (_leader_log, mut leader) = open(&disk, leader_dir.path());
    let responses = leader.apply(entries.clone()).await.expect("applied");
    let BatchAnswer::Applied(Ok(outcome)) = &responses[2].batches[0] else {
        panic!("applied: {:?}", responses[2].batches[0]);
    };
    assert_eq!(outcome.failures.len(), 10);
    let replayed = BatchAnswer::Replayed {
        log_index: 2,
        outcome: Ok(outcome.clone()),
    };
    let transfers = |machine: &StateMachine| {
        machine
            .view()
            .read(|applied| applied.engine().expect("state").transfers_count())
    };
    let stored = transfers(&leader);
    assert_eq!(stored, 20);

    let retries = |index| request(index, vec![first.clone(), other.clone()]);
    let answers = leader.apply([retries(3)]).await.expect("applied");
    assert_eq!(
        answers[0].batches,
        [replayed.clone(), BatchAnswer::NumberReused { log_index: 2 }]
    );
    assert_eq!(transfers(&leader), stored, "nothing applied again");
    let (_, leader_digest) = leader.view().digest();

    let mut snapshot = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("snapshot built");
    let image = read_image(&mut snapshot.snapshot).expect("readable");
    let mut follower = install(&disk, follower_dir.path(), &snapshot.meta, &image).await;
    assert_eq!(
        follower.view().read(|applied| applied.replies().clone()),
        leader.view().read(|applied| applied.replies().clone())
    );
    let answers = follower.apply([retries(4)]).await.expect("applied");
    assert_eq!(
        answers[0].batches,
        [replayed.clone(), BatchAnswer::NumberReused { log_index: 2 }]
    );
    assert_eq!(follower.view().digest().1, leader_digest);
    drop(follower);

    // A restart restores the table from the snapshot file, and the log entry after it (4) is
    // not in this test's log store: the table alone answers.
    let (_, mut reopened) = open(&disk, follower_dir.path());
    let answers = reopened.apply([retries(4)]).await.expect("applied");
    assert_eq!(
        answers[0].batches,
        [replayed, BatchAnswer::NumberReused { log_index: 2 }]
    );
    assert_eq!(transfers(&reopened), stored);
}

/// Proves `install_snapshot` refuses bytes that do not match the meta they came with, or that
/// the engine does not accept, makes none of them current, and leaves no state that a reader
/// could take for the replica's (the old state is freed before an install; openraft stops on a
/// failed install, and a restart reopens the disk).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_refuses_mismatched_or_damaged_snapshots() {
    let disk = open_default();
    let dir = tempfile::tempdir().expect("temporary directory");
    let (_log, mut state_machine) = open(&disk, dir.path());
    state_machine
        .apply(sample_log()[..5].to_vec())
        .await
        .expect("applied");
    let mut snapshot = state_machine
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("built");
    let before = state_machine.view().digest();
    let image = read_image(&mut snapshot.snapshot).expect("readable");

    let other_dir = tempfile::tempdir().expect("temporary directory");
    let (_other_log, mut fresh) = open(&disk, other_dir.path());
    let fresh_digest = fresh.view().digest();
    let wrong_meta = SnapshotMeta {
        last_log_id: Some(log_id(9, 9, 99)),
        ..snapshot.meta.clone()
    };
    let mut damaged = image.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 0x40;
    for (meta, bytes) in [(&wrong_meta, image), (&snapshot.meta, damaged)] {
        let mut received = fresh.begin_receiving_snapshot().await.expect("receiving");
        tokio::io::AsyncWriteExt::write_all(&mut *received, &bytes)
            .await
            .expect("received");
        let result = fresh.install_snapshot(meta, received).await;
        assert!(result.is_err(), "a bad snapshot was installed");
        assert_eq!(fresh.view().digest(), fresh_digest);
        assert!(
            fresh.view().read(|applied| applied.engine().is_none()),
            "readers are answered from no state after a failed install"
        );
        assert!(fresh
            .get_current_snapshot()
            .await
            .expect("readable")
            .is_none());
    }
    assert_eq!(state_machine.view().digest(), before);
}

/// Proves a node whose log was purged past its newest snapshot refuses to start instead of
/// running with a hole in its history.
#[tokio::test]
async fn open_refuses_a_snapshot_behind_the_purged_log() {
    let disk = open_default();
    let dir = tempfile::tempdir().expect("temporary directory");
    let entries = sample_log();
    {
        let (mut log, _) = open(&disk, dir.path());
        log.blocking_append(entries[..8].to_vec())
            .await
            .expect("appended");
        log.purge(entries[5].log_id).await.expect("purged");
        log.close();
    }
    let refused = open_storage(
        Arc::clone(&disk),
        dir.path(),
        wal_config(),
        EngineConfig::default(),
    );
    assert!(matches!(
        refused,
        Err(StorageOpenError::SnapshotBehindLog {
            applied: None,
            purged: 5
        })
    ));
}

/// Proves a snapshot does not stop the ledger: with two million transfers applied, the
/// snapshot's view is taken, and while the builder is still serialising and writing it, new
/// entries are applied (the apply returns before the build ends); the snapshot holds the state
/// as it was when its view was taken, not what was applied meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_go_on_while_a_snapshot_is_written() {
    const ENTRIES: u64 = 245; // × 8,189 transfers ≈ 2M
    let disk = open_default();
    let dir = tempfile::tempdir().expect("temporary directory");
    let (_log, mut machine) = open(&disk, dir.path());
    machine
        .apply([request(
            0,
            vec![ClientBatch {
                operation: Operation::CreateAccounts,
                body: accounts_body(1, 64),
                origin: None,
            }],
        )])
        .await
        .expect("accounts");
    for index in 1..=ENTRIES {
        machine
            .apply([request(index, vec![transfers(index, 8_189)])])
            .await
            .expect("transfers");
    }
    let (frozen_at, frozen_digest) = machine.view().digest();

    let mut builder = machine.get_snapshot_builder().await;
    let build = tokio::spawn(async move { builder.build_snapshot().await });
    let mut applied_during_build = 0;
    for index in ENTRIES + 1..=ENTRIES + 20 {
        machine
            .apply([request(index, vec![transfers(index, 10)])])
            .await
            .expect("applied while the snapshot is written");
        if !build.is_finished() {
            applied_during_build += 1;
        }
    }
    assert!(
        applied_during_build > 0,
        "entries are applied while the snapshot of 2M transfers is still being written"
    );
    let mut snapshot = build.await.expect("joined").expect("snapshot built");
    assert_eq!(
        snapshot.meta.last_log_id, frozen_at,
        "the snapshot is of the frozen state"
    );
    let (now, _) = machine.view().digest();
    assert_eq!(now.map(|id| id.index), Some(ENTRIES + 20));

    let image = read_image(&mut snapshot.snapshot).expect("readable");
    let other = tempfile::tempdir().expect("temporary directory");
    let installed = install(&disk, other.path(), &snapshot.meta, &image).await;
    assert_eq!(installed.view().digest(), (frozen_at, frozen_digest));
}

/// Proves a restarted replica is back where it stopped before openraft starts: the entries up
/// to the commit index it recorded are applied while the log is read — after its snapshot, or
/// from the log's start without one — to the same state and digest, and not one entry past
/// that index; without a recorded index nothing is applied early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_applies_the_committed_log_while_reading_it() {
    let disk = open_default();
    let dir = tempfile::tempdir().expect("temporary directory");
    let entries = sample_log();
    let committed = 30;
    let (expected, snapshot) = {
        let (mut log, mut state_machine) = open(&disk, dir.path());
        log.blocking_append(entries.clone())
            .await
            .expect("appended");
        state_machine
            .apply(entries[..12].to_vec())
            .await
            .expect("applied");
        let snapshot = state_machine
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("built");
        let expected =
            apply_and_commit(&mut log, &mut state_machine, &entries[12..=committed]).await;
        // A clean stop records the commit index.
        log.close();
        (expected, snapshot.meta.last_log_id)
    };
    assert_eq!(snapshot, Some(entries[11].log_id));
    assert_eq!(expected.0, Some(entries[committed].log_id));
    {
        let (log, state_machine) = open(&disk, dir.path());
        assert_eq!(
            state_machine.view().digest(),
            expected,
            "after the snapshot, the committed entries and no more"
        );
        log.close();
    }
    std::fs::remove_dir_all(dir.path().join("snapshots")).expect("removed");
    {
        let (log, state_machine) = open(&disk, dir.path());
        assert_eq!(
            state_machine.view().digest(),
            expected,
            "from the log's start, without a snapshot"
        );
        log.close();
    }
    std::fs::remove_file(dir.path().join("raft").join("committed-index")).expect("removed");
    let (_log, state_machine) = open(&disk, dir.path());
    assert_eq!(
        state_machine.last_applied(),
        None,
        "nothing applied early without a recorded commit index"
    );
}

/// Apply `entries` and record the last as committed; the state's digest after them.
async fn apply_and_commit(
    log: &mut LogStore,
    state_machine: &mut StateMachine,
    entries: &[Entry],
) -> (Option<LogId>, [u8; 32]) {
    state_machine
        .apply(entries.to_vec())
        .await
        .expect("applied");
    let last = entries.last().expect("entries").log_id;
    log.save_committed(Some(last)).await.expect("saved");
    state_machine.view().digest()
}

/// The one snapshot file in `dir` (besides the directory of section files, empty while the
/// state is less than a chunk).
fn only_file(dir: &Path) -> std::path::PathBuf {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("listed")
        .map(|file| file.expect("entry").path())
        .filter(|path| path.is_file())
        .collect();
    assert_eq!(files.len(), 1, "one file in {}: {files:?}", dir.display());
    files.remove(0)
}

/// Proves a restart whose newest snapshot is damaged still comes back exactly where it
/// stopped: the WAL's scan, started beside the restore from where the newest snapshot's name
/// says the state ends, is read again from the older snapshot the restore falls back to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_past_a_damaged_newest_snapshot_replays_from_the_older_one() {
    let disk = open_default();
    let dir = tempfile::tempdir().expect("temporary directory");
    let snapshots = dir.path().join("snapshots");
    let entries = sample_log();
    let committed = 30;
    let kept_aside = dir.path().join("older.snap");
    let (expected, older_name) = {
        let (mut log, mut state_machine) = open(&disk, dir.path());
        log.blocking_append(entries.clone())
            .await
            .expect("appended");
        let mut build_after = async |applied: std::ops::Range<usize>| {
            state_machine
                .apply(entries[applied].to_vec())
                .await
                .expect("applied");
            state_machine
                .get_snapshot_builder()
                .await
                .build_snapshot()
                .await
                .expect("built")
        };
        build_after(0..12).await;
        let older = only_file(&snapshots);
        std::fs::copy(&older, &kept_aside).expect("kept aside");
        build_after(12..20).await;
        let expected =
            apply_and_commit(&mut log, &mut state_machine, &entries[20..=committed]).await;
        log.close();
        (expected, older.file_name().expect("named").to_owned())
    };
    let newest = only_file(&snapshots);
    let mut bytes = std::fs::read(&newest).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&newest, bytes).expect("damaged");
    std::fs::copy(&kept_aside, snapshots.join(&older_name)).expect("put back");
    let (log, state_machine) = open(&disk, dir.path());
    assert_eq!(
        state_machine.last_applied(),
        Some(entries[committed].log_id),
        "the committed log applied after the older snapshot"
    );
    assert_eq!(state_machine.view().digest(), expected);
    log.close();
}

/// `open`, with a log that takes entries of a full request of transfers (1 MiB).
fn open_large(disk: &Arc<dyn Disk>, dir: &Path) -> (LogStore, StateMachine) {
    let config = WalConfig {
        segment_bytes: 64 << 20,
        ..WalConfig::default()
    };
    open_storage(Arc::clone(disk), dir, config, EngineConfig::default()).expect("storage opens")
}

/// A new replica at `dir` that received `image` as the snapshot of `meta` and installed it.
async fn install(
    disk: &Arc<dyn Disk>,
    dir: &Path,
    meta: &SnapshotMeta,
    image: &[u8],
) -> StateMachine {
    let (_log, mut machine) = open(disk, dir);
    let mut received = machine.begin_receiving_snapshot().await.expect("receiving");
    tokio::io::AsyncWriteExt::write_all(&mut *received, image)
        .await
        .expect("received");
    machine
        .install_snapshot(meta, received)
        .await
        .expect("installed");
    machine
}

/// The section files in the snapshots directory of the node at `dir`, sorted.
fn section_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("snapshots").join("sections"))
        .expect("listed")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .into_string()
                .expect("utf-8")
        })
        .collect();
    names.sort();
    names
}

/// Proves snapshots are incremental: a snapshot after a little more history refers to the
/// section files of the chunks it shares with the last one instead of writing them again (its
/// own file holds the accounts, the open chunk and a manifest), it reads, restarts and
/// installs on another replica exactly like a whole one, section files no snapshot names any
/// more are deleted, and a snapshot whose section file is missing is skipped as damaged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_after_a_little_more_history_write_little_more() {
    let chunk = tally_engine::limits::ARENA_CHUNK_ELEMENTS as u128;
    let disk = open_default();
    let dir = tempfile::tempdir().expect("temporary directory");
    let (mut log, mut machine) = open_large(&disk, dir.path());
    let mut entries = vec![request(
        0,
        vec![ClientBatch {
            operation: Operation::CreateAccounts,
            body: accounts_body(1, 64),
            origin: None,
        }],
    )];
    // Two whole chunks of transfers and part of a third.
    let per_entry = 8_189u128;
    let first = (2 * chunk).div_ceil(per_entry) as u64 + 1;
    entries.extend((1..=first).map(|index| request(index, vec![transfers(index, per_entry)])));
    let build_after = async |log: &mut LogStore, machine: &mut StateMachine, more: Vec<Entry>| {
        if !more.is_empty() {
            log.blocking_append(more.clone()).await.expect("appended");
            apply_and_commit(log, machine, &more).await;
        }
        let mut snapshot = machine
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("built");
        let image = read_image(&mut snapshot.snapshot).expect("readable");
        (snapshot.meta, image)
    };
    let (_, first_image) = build_after(&mut log, &mut machine, entries).await;
    let shared = section_files(dir.path());
    // Two of transfers (the verifiable log keeps a hash per 16 leaves: its groups fill no
    // whole chunk yet).
    assert_eq!(
        shared.len(),
        2,
        "one section file per whole chunk: {shared:?}"
    );

    // A little more history: the next snapshot refers to the same two files.
    let (meta, image) = build_after(
        &mut log,
        &mut machine,
        vec![request(first + 1, vec![transfers(first + 1, 10)])],
    )
    .await;
    assert_eq!(section_files(dir.path()), shared, "no chunk written again");
    let own = std::fs::metadata(only_newest(&dir.path().join("snapshots")))
        .expect("snapshot file")
        .len();
    assert!(
        own * 3 < image.len() as u64,
        "the snapshot's own file ({own} bytes) holds far less than its image ({} bytes)",
        image.len()
    );
    assert!(image.len() > first_image.len());
    let expected = machine.view().digest();

    // It installs on another replica like a whole one...
    let other = tempfile::tempdir().expect("temporary directory");
    let installed = install(&disk, other.path(), &meta, &image).await;
    assert_eq!(installed.view().digest(), expected);
    // ... and a restart restores from it.
    log.close();
    drop(machine);
    let (mut log, mut machine) = open_large(&disk, dir.path());
    assert_eq!(
        machine.view().digest(),
        expected,
        "restored from the split snapshot"
    );

    // Fill the third chunk: its file is added; the first two are still named by the new
    // snapshot. A file no snapshot names is deleted at the next prune.
    let next = first + 2;
    let after = next + (chunk / per_entry) as u64 + 1;
    let more: Vec<Entry> = (next..after)
        .map(|index| request(index, vec![transfers(index, per_entry)]))
        .collect();
    let _ = build_after(&mut log, &mut machine, more).await;
    let now = section_files(dir.path());
    assert_eq!(now.len(), 3, "three of transfers: {now:?}");
    assert!(shared.iter().all(|name| now.contains(name)));
    let stray = dir
        .path()
        .join("snapshots")
        .join("sections")
        .join("transfers-000009-0000000000000000.sec");
    std::fs::write(&stray, b"left by a crash").expect("stray file");
    let _ = build_after(
        &mut log,
        &mut machine,
        vec![request(after, vec![transfers(after, 5)])],
    )
    .await;
    assert_eq!(
        section_files(dir.path()),
        now,
        "the stray file is collected"
    );
    let expected = machine.view().digest();

    // A missing section file: the snapshot naming it is skipped; the log rebuilds the state.
    log.close();
    drop(machine);
    std::fs::remove_file(
        dir.path()
            .join("snapshots")
            .join("sections")
            .join(&shared[0]),
    )
    .expect("removed");
    let (_log, machine) = open_large(&disk, dir.path());
    assert_eq!(machine.view().digest(), expected, "rebuilt from the log");
}

/// The newest snapshot file in `dir`.
fn only_newest(dir: &Path) -> std::path::PathBuf {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("listed")
        .map(|file| file.expect("entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "snap")
        })
        .collect();
    files.sort();
    files.pop().expect("a snapshot file")
}

/// A follower that has received the whole image of a leader's snapshot (its last chunk in:
/// where openraft decides whether to install it).
struct Received {
    dir: tempfile::TempDir,
    meta: SnapshotMeta,
    last: LogId,
    log: LogStore,
    machine: StateMachine,
    image: Box<SnapshotData>,
}

async fn follower_with_received_image() -> Received {
    let disk = open_default();
    let (_leader_dir, _leader_log, mut leader, _) = leader_with_sample_log(&disk).await;
    let mut snapshot = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("snapshot built");
    let dir = tempfile::tempdir().expect("temporary directory");
    let (log, mut machine) = open(&disk, dir.path());
    let mut image = machine.begin_receiving_snapshot().await.expect("receiving");
    let bytes = read_image(&mut snapshot.snapshot).expect("readable");
    tokio::io::AsyncWriteExt::write_all(&mut *image, &bytes)
        .await
        .expect("received");
    tokio::io::AsyncWriteExt::shutdown(&mut *image)
        .await
        .expect("complete");
    Received {
        dir,
        last: snapshot.meta.last_log_id.expect("a last log id"),
        meta: snapshot.meta,
        log,
        machine,
        image,
    }
}

/// Regression test for the swarm's finding (seed 4223, three replicas, bridges and an
/// isolated leader): openraft 0.9 drops a received snapshot that is not newer than what the
/// replica has committed, without installing it. The hold the image took on purges at its
/// last chunk was then never released; the replica's next purge waited for ever, its Raft
/// stopped (it applied no more and would not shut down). Proves a purge goes on once such an
/// image is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_received_snapshot_dropped_without_install_holds_no_purge() {
    let Received {
        dir: _dir,
        last,
        mut log,
        machine: _machine,
        image,
        ..
    } = follower_with_received_image().await;
    // openraft finds it not newer than what is committed, and drops it.
    drop(image);
    tokio::time::timeout(std::time::Duration::from_secs(10), log.purge(last))
        .await
        .expect("a dropped image holds no purge")
        .expect("purged");
    assert_eq!(
        log.get_log_state()
            .await
            .expect("log state")
            .last_purged_log_id,
        Some(last)
    );
}

/// Regression test for the simulator's finding (crash-only seeds on five replicas, e.g.
/// `TALLY_SIM_SEED=3000 TALLY_SIM_KINDS=crash`): openraft 0.9 orders the log purge for an
/// installed snapshot right after handing the install to the state machine, without waiting
/// for it. A crash after the purge was durable and before the received snapshot was left a
/// replica with neither the entries nor the state that replaced them, refusing to start.
/// Proves a purge waits from the received image's last chunk until the install has made the
/// snapshot durable, and then goes on; a snapshot the replica builds meanwhile does not
/// release it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_waits_for_the_received_snapshot_to_be_durable() {
    let Received {
        dir: follower_dir,
        meta,
        last,
        log: mut follower_log,
        machine: mut follower,
        image: received,
    } = follower_with_received_image().await;
    let purge = tokio::spawn(async move {
        follower_log.purge(last).await.expect("purged");
        follower_log
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !purge.is_finished(),
        "the purge went on while the received snapshot was not yet durable"
    );
    assert!(
        !follower_dir.path().join("raft/purged-log-id").exists(),
        "the purge was recorded before the snapshot"
    );
    // A snapshot this replica builds meanwhile (of less than it received) releases nothing.
    follower
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("a snapshot of the follower's own state");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !purge.is_finished(),
        "a build made current released the purge held for the received snapshot"
    );
    follower
        .install_snapshot(&meta, received)
        .await
        .expect("installed");
    let mut follower_log = tokio::time::timeout(std::time::Duration::from_secs(10), purge)
        .await
        .expect("the purge goes on once the snapshot is durable")
        .expect("the purge task");
    assert_eq!(
        follower_log
            .get_log_state()
            .await
            .expect("log state")
            .last_purged_log_id,
        Some(last)
    );
}

/// A checkpoint entry of the signed kind: size `size` of the log, with `root`.
fn checkpoint_entry(index: u64, size: u64, root: [u8; 32]) -> Entry {
    let key = tally_engine::checkpoint::NoteSigner::new("tally/test", &[3; 32]).expect("key");
    let checkpoint = tally_engine::checkpoint::Checkpoint {
        origin: "tally/test".to_owned(),
        size,
        root,
        time_ns: 1_000 + index * 1_000_000,
    };
    Entry {
        log_id: log_id(1, 1, index),
        payload: EntryPayload::Normal(Request {
            timestamp: 1_000 + index * 1_000_000,
            batches: Vec::new(),
            log: Some(LogNote::Checkpoint(
                key.sign_checkpoint(&checkpoint).expect("signed"),
            )),
        }),
    }
}

/// Proves a replica keeps a replicated checkpoint of its own history (in its state and its
/// digest, across a snapshot), and that one whose root is not its own at that size — its
/// history differs from the one the leader signed — marks it diverged and stops its applies:
/// that entry and every later one fail, and nothing more changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_of_another_history_stops_the_replica() {
    let disk = open_default();
    let dir = tempfile::tempdir().expect("temporary directory");
    let (_log, mut machine) = open(&disk, dir.path());
    let accounts = request(
        1,
        vec![ClientBatch {
            operation: Operation::CreateAccounts,
            body: accounts_body(1, 8),
            origin: None,
        }],
    );
    machine
        .apply(vec![accounts, request(2, vec![transfers(2, 10)])])
        .await
        .expect("applied");
    let view = machine.view();
    // The leaves are hashed on a stage of their own: wait until it has them all.
    let root = loop {
        let (size, root) = view.read(|applied| applied.engine().expect("state").log_head());
        if size == 18 {
            break root;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    machine
        .apply(vec![checkpoint_entry(3, 18, root)])
        .await
        .expect("an honest checkpoint applies");
    assert_eq!(
        view.read(|applied| applied.engine().expect("state").checkpoints_count()),
        1
    );
    assert!(view.read(|applied| applied.diverged().is_none()));
    let digest = view.digest();

    let mut other = root;
    other[0] ^= 1;
    machine
        .apply(vec![request(4, vec![transfers(4, 5)])])
        .await
        .expect("applied");
    let before = view.digest();
    assert_ne!(before, digest);
    let refused = machine.apply(vec![checkpoint_entry(5, 20, other)]).await;
    assert!(
        refused.is_ok(),
        "the entry that shows it is applied, then the replica stops"
    );
    let diverged = view.read(|applied| applied.diverged().cloned());
    let (entry, why) = diverged.expect("diverged");
    assert_eq!(entry.index, 5);
    assert!(why.to_string().contains("histories differ"), "{why}");
    let stopped = machine.apply(vec![request(6, vec![transfers(6, 5)])]).await;
    assert!(stopped.is_err(), "a diverged replica applies nothing more");
    assert_eq!(
        view.digest().1,
        before.1,
        "nothing changed after it diverged"
    );
}
