//! Defence in depth inside a replica, against a peer that is authenticated but wrong (security
//! issue 12): the log store never truncates what is committed or purged; snapshot chunks are
//! taken only in order and within a bound. Each storage test runs on the real disk (io_uring)
//! and on the simulated one. (A node whose WAL failed says so: the binary's tests/health.rs.)

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{RaftLogReader, RaftSnapshotBuilder};
use tally_engine::{EngineConfig, Operation};
use tally_raft::net::rpc::{self, ErrorAnswer, KIND_ERROR, KIND_INSTALL_SNAPSHOT};
use tally_raft::net::Frame;
use tally_raft::replication::types::{
    Entry, EntryPayload, LogId, Membership, Node as Member, Snapshot, Vote,
};
use tally_raft::replication::{
    open_storage, read_image, LogStore, Request, StateMachine, TypeConfig,
};
use tally_raft::WalConfig;

use common::single_node::{account, batch, NoNetwork};
use common::{Harness, Kind};

type Raft = openraft::Raft<TypeConfig>;

/// Runs each named async test once on the real disk and once on the simulated one.
macro_rules! on_real_and_simulated_disks {
    ($($test:ident),* $(,)?) => {
        mod real {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() { super::$test(super::Kind::Uring).await })*
        }
        mod simulated {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() { super::$test(super::Kind::Sim).await })*
        }
    };
}

on_real_and_simulated_disks!(
    truncation_at_or_below_the_committed_index_is_refused,
    truncation_at_or_below_the_purge_point_is_refused,
    snapshot_chunks_only_continue_the_snapshot_within_its_bound,
);

const DEADLINE: Duration = Duration::from_secs(10);

fn wal_config() -> WalConfig {
    WalConfig {
        segment_bytes: 256 * 1024,
        entry_payload_bytes_max: 64 * 1024,
    }
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(openraft::CommittedLeaderId::new(term, 2), index)
}

fn blank(index: u64) -> Entry {
    Entry {
        log_id: log_id(1, index),
        payload: EntryPayload::Blank,
    }
}

fn membership(voters: &[u64]) -> Membership {
    let nodes: BTreeMap<u64, Member> = voters
        .iter()
        .map(|id| {
            (
                *id,
                Member::new(
                    format!("127.0.0.1:{}", 7100 + id),
                    format!("127.0.0.1:{}", 7000 + id),
                ),
            )
        })
        .collect();
    Membership::new(vec![voters.iter().copied().collect::<BTreeSet<_>>()], nodes)
}

fn open(harness: &Harness, name: &str) -> (LogStore, StateMachine) {
    open_storage(
        Arc::clone(&harness.disk),
        &harness.dir.join(name),
        wal_config(),
        EngineConfig::default(),
    )
    .expect("storage opens")
}

async fn indexes(store: &mut LogStore) -> Vec<u64> {
    let entries = store.try_get_log_entries(0..100).await.expect("readable");
    entries.iter().map(|entry| entry.log_id.index).collect()
}

/// Proves the log store refuses to truncate at or below the commit index it was told, with an
/// error (which makes openraft stop), and removes nothing, even after a reopen; a truncation
/// above the commit index still works.
async fn truncation_at_or_below_the_committed_index_is_refused(kind: Kind) {
    let harness = Harness::new(kind);
    let (mut store, _) = open(&harness, "node");
    store
        .blocking_append((0..10).map(blank))
        .await
        .expect("appended");
    store
        .save_committed(Some(log_id(1, 5)))
        .await
        .expect("saved");
    for at in [5, 3, 0] {
        let refused = store.truncate(log_id(1, at)).await;
        assert!(refused.is_err(), "{kind:?}: truncated at {at}, committed 5");
        assert_eq!(indexes(&mut store).await, (0..10).collect::<Vec<_>>());
    }
    store
        .truncate(log_id(1, 6))
        .await
        .expect("above the commit");
    assert_eq!(indexes(&mut store).await, (0..6).collect::<Vec<_>>());
    store.close();

    let (mut reopened, _) = open(&harness, "node");
    assert_eq!(indexes(&mut reopened).await, (0..6).collect::<Vec<_>>());
}

/// Proves the log store refuses to truncate at or below its purge point (entries inside the
/// snapshot, hence committed) even when it has not been told a commit index (as after a
/// restart), and that the log and purge point stay as they were.
async fn truncation_at_or_below_the_purge_point_is_refused(kind: Kind) {
    let harness = Harness::new(kind);
    let (mut store, _) = open(&harness, "node");
    store
        .blocking_append((0..10).map(blank))
        .await
        .expect("appended");
    store.purge(log_id(1, 3)).await.expect("purged");
    for at in [3, 1] {
        let refused = store.truncate(log_id(1, at)).await;
        assert!(refused.is_err(), "{kind:?}: truncated at {at}, purged 3");
    }
    let state = store.get_log_state().await.expect("state");
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 3)));
    assert_eq!(state.last_log_id, Some(log_id(1, 9)));
    assert_eq!(indexes(&mut store).await, (4..10).collect::<Vec<_>>());
    store
        .truncate(log_id(1, 4))
        .await
        .expect("after the purge point");
    assert_eq!(indexes(&mut store).await, Vec::<u64>::new());
}

/// A snapshot of a state with a membership and two accounts, built by a state machine in
/// `source` on the harness's disk, and that state's digest.
async fn sample_snapshot(harness: &Harness) -> (Snapshot, (Option<LogId>, [u8; 32])) {
    let (_log, mut source) = open(harness, "source");
    let entries = vec![
        Entry {
            log_id: log_id(1, 1),
            payload: EntryPayload::Membership(membership(&[1, 2, 3])),
        },
        Entry {
            log_id: log_id(1, 2),
            payload: EntryPayload::Normal(Request {
                timestamp: 1_700_000_000_000_000_000,
                batches: vec![batch(
                    Operation::CreateAccounts,
                    vec![account(1), account(2)],
                )],
                log: None,
            }),
        },
    ];
    source.apply(entries).await.expect("applied");
    let snapshot = source
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("built");
    (snapshot, source.view().digest())
}

/// One InstallSnapshot chunk from leader 2 in term 1, answered by `raft` through the same
/// function the replica server uses: `Ok` if accepted, else the error answer.
async fn send_chunk(
    raft: &Raft,
    snapshot: &Snapshot,
    offset: u64,
    data: &[u8],
    done: bool,
) -> Result<(), ErrorAnswer> {
    let vote = Vote::new_committed(1, 2);
    let payload =
        rpc::encode_install_snapshot(&vote, &snapshot.meta, offset, done, data).expect("encodes");
    let frame = Frame {
        kind: KIND_INSTALL_SNAPSHOT,
        request_id: offset,
        payload: Bytes::from(payload),
    };
    let answer = rpc::answer(raft, frame, None).await;
    if answer.kind == KIND_ERROR {
        return Err(rpc::decode_error_answer(&answer.payload).expect("an error answer"));
    }
    Ok(())
}

/// Proves a replica takes snapshot chunks only at the offset where the bytes received so far
/// end, and only up to its bound: a chunk past a gap, one far out (32 GiB), one overlapping
/// what came, and one running past the bound each get an error answer and change nothing, so
/// the rest of the snapshot, sent in order afterwards, installs the sender's exact state; the
/// refusals do not stop the receiver's Raft.
async fn snapshot_chunks_only_continue_the_snapshot_within_its_bound(kind: Kind) {
    let harness = Harness::new(kind);
    let (mut snapshot, sent_digest) = sample_snapshot(&harness).await;
    let image = read_image(&mut snapshot.snapshot).expect("readable");

    let (log_store, mut state_machine) = open(&harness, "receiver");
    // The image exactly fits: a byte more is past the bound.
    state_machine.set_snapshot_receive_bytes_max(image.len() as u64);
    let view = state_machine.view();
    let config = openraft::Config {
        cluster_name: "tally-defence-test".to_owned(),
        ..openraft::Config::default()
    };
    let config = Arc::new(config.validate().expect("valid config"));
    let raft = Raft::new(1, config, NoNetwork, log_store, state_machine)
        .await
        .expect("raft starts");

    let half = image.len() / 2;
    send_chunk(&raft, &snapshot, 0, &image[..half], false)
        .await
        .expect("first chunk taken");
    let next = half as u64;
    let refused: [(&str, u64, Vec<u8>); 4] = [
        ("past a gap", next + 1, image[half + 1..].to_vec()),
        ("far out", 32 << 30, b"zeros before me".to_vec()),
        ("overlapping", next - 1, image[half - 1..].to_vec()),
        ("past the bound", next, [&image[half..], b"!"].concat()),
    ];
    for (what, offset, data) in refused {
        let answer = send_chunk(&raft, &snapshot, offset, &data, true).await;
        assert!(
            matches!(answer, Err(ErrorAnswer::Storage { .. })),
            "{kind:?}: a chunk {what} was answered {answer:?}"
        );
        assert!(
            raft.metrics().borrow().running_state.is_ok(),
            "{kind:?}: a refused chunk stopped the receiver"
        );
        assert_eq!(view.digest().0, None, "{kind:?}: something was installed");
    }
    send_chunk(&raft, &snapshot, next, &image[half..], true)
        .await
        .expect("the rest taken");
    raft.wait(Some(DEADLINE))
        .snapshot(log_id(1, 2), "the snapshot is installed")
        .await
        .expect("installed");
    assert_eq!(view.digest(), sent_digest);
    raft.shutdown().await.expect("shut down");
}
