//! Multi-process tests: real `tally node` processes on loopback, killed and restarted for real.
//!
//! What "loses nothing" means here (docs/faults.md): the fault tests run the load generator's
//! checked load while the fault happens, and every history check C1–C9 passes afterwards
//! (`checked_load`, `all_checks_pass`) — every acknowledged event on every replica, nothing
//! stored that no client sent, no id twice, no definite failure stored, ledgers that balance
//! and replay, commit order that follows real time, equal digests, and a new transfer that
//! commits.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tally::local_cluster::LocalCluster;
use tally_client::protocol::{Admin, NodeState, Status};
use tally_client::{Client, ClientConfig, ClientError};
use tally_engine::records::{Account, AccountFlags, Transfer, TransferFlags};
use tally_engine::{EventResult, Operation};

mod common;
use common::checked::{all_checks_pass, checked_load};
use common::{local_cluster as cluster, FAST_RAFT, LEADER_WAIT};

const ACCOUNTS: u64 = 100;

/// The tests share two cores: one cluster at a time keeps elections from timing out on CPU
/// starvation rather than on what the test does.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Three founding nodes with the default timings, once they agree on a leader: the cluster,
/// the leader and the operator's client.
async fn three_nodes(root: &Path) -> (LocalCluster, u64, Arc<Client>) {
    let mut cluster = cluster(root, FAST_RAFT);
    cluster.found(&[1, 2, 3]).expect("started");
    let leader = cluster.wait_leader(LEADER_WAIT).await.expect("a leader");
    let client = client(&cluster).await;
    (cluster, leader, client)
}

/// The cluster's operator on the gateway, following the leader (linearizable reads).
async fn client(cluster: &LocalCluster) -> Arc<Client> {
    let mut config = ClientConfig::new(
        cluster.addrs(),
        cluster.cluster_id(),
        cluster.operator_credential().to_vec(),
    )
    .with_tls(cluster.client_tls().expect("the local CA"));
    config.deadline = Duration::from_secs(30);
    // Adding a learner answers once it has caught up.
    config.request_timeout = Duration::from_secs(30);
    Arc::new(Client::connect(config).await.expect("registered"))
}

async fn create_accounts(client: &Client) {
    let body: Vec<u8> = (1..=ACCOUNTS)
        .flat_map(|id| {
            Account {
                id: u128::from(id),
                ledger: 1,
                code: 1,
                ..Account::default()
            }
            .encode()
        })
        .collect();
    let answer = client
        .create_raw(Operation::CreateAccounts, Bytes::from(body))
        .await
        .expect("accounts created");
    assert!(
        answer
            .failures
            .iter()
            .all(|(_, result)| *result == EventResult::Exists),
        "{:?}",
        answer.failures
    );
}

fn transfers(ids: std::ops::Range<u128>) -> Bytes {
    let body: Vec<u8> = ids
        .flat_map(|id| {
            let debit = (id % ACCOUNTS as u128) + 1;
            Transfer {
                id,
                debit_account_id: debit,
                credit_account_id: (debit % ACCOUNTS as u128) + 1,
                amount: 1 + id % 7,
                ledger: 1,
                code: 1,
                ..Transfer::default()
            }
            .encode()
        })
        .collect();
    Bytes::from(body)
}

/// Wait until every running node has applied at least the leader's applied index and they all
/// agree on the digest there; return their states.
async fn converged(cluster: &LocalCluster, ids: &[u64]) -> BTreeMap<u64, NodeState> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let states = cluster.states(true).await;
        let picked: BTreeMap<u64, NodeState> = states
            .into_iter()
            .filter(|(id, _)| ids.contains(id))
            .collect();
        if picked.len() == ids.len() {
            let first = &picked[&ids[0]];
            if picked.values().all(|state| {
                state.last_applied.map(|id| id.index) == first.last_applied.map(|id| id.index)
                    && state.digest == first.digest
            }) {
                return picked;
            }
        }
        assert!(
            Instant::now() < deadline,
            "replicas did not converge: {picked:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every acknowledged transfer is on every listed replica, and each ledger balances.
async fn check_nothing_lost(cluster: &LocalCluster, ids: &[u64], acknowledged: &[u128]) {
    let states = converged(cluster, ids).await;
    for (id, state) in &states {
        for totals in &state.ledger_totals {
            assert_eq!(
                totals.debits_posted, totals.credits_posted,
                "node {id} ledger {}",
                totals.ledger
            );
            assert_eq!(totals.debits_pending, totals.credits_pending);
        }
        let replica = cluster.operator_client(*id).await.expect("connect");
        let mut found = 0;
        for chunk in acknowledged.chunks(8189) {
            found += replica.lookup_transfers(chunk).await.expect("lookup").len();
        }
        assert_eq!(
            found,
            acknowledged.len(),
            "node {id} is missing acknowledged transfers"
        );
        eprintln!(
            "node {id}: all {found} acknowledged transfers present at {:?}",
            state.last_applied
        );
    }
}

/// Proves a 3-node cluster of real processes elects a leader, commits batches with per-batch
/// results, serves linearizable reads through the leader and local reads on every replica,
/// refuses a stranger's credential and a non-operator's administration, and converges to one
/// digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_commit_and_agree() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let (cluster, leader, client) = three_nodes(root.path()).await;
    create_accounts(&client).await;
    let answer = client
        .create_raw(Operation::CreateTransfers, transfers(1000..1100))
        .await
        .expect("committed");
    assert!(answer.failures.is_empty(), "{:?}", answer.failures);
    assert!(answer.timestamp_first > 0);

    let mut bad = transfers(2000..2001).to_vec();
    bad.truncate(100);
    match client
        .create_raw(Operation::CreateTransfers, Bytes::from(bad))
        .await
    {
        Err(ClientError::Invalid(message)) => assert!(message.contains("128-byte"), "{message}"),
        other => panic!("a partial record must be refused before sending: {other:?}"),
    }
    let ids: Vec<u128> = (1000..1100).collect();
    let found = client
        .lookup_transfers(&ids)
        .await
        .expect("linearizable read through the leader");
    assert_eq!(found.len(), 100);
    let follower = [1, 2, 3].into_iter().find(|id| *id != leader).expect("one");
    let local = cluster.operator_client(follower).await.expect("connect");
    let state = local
        .node_state(false)
        .await
        .expect("the follower's own state");
    assert_eq!((state.node_id, state.leader), (follower, Some(leader)));
    let tls = cluster.client_tls().expect("the local CA");
    let stranger = Client::connect(
        ClientConfig::new(
            vec![cluster.addr(leader).expect("addr")],
            cluster.cluster_id(),
            b"somebody who is not an operator".to_vec(),
        )
        .with_tls(tls),
    )
    .await;
    match stranger {
        Err(ClientError::Refused { status, .. }) => assert_eq!(status, Status::Unauthenticated),
        other => panic!("an unknown credential gets no session: {:?}", other.err()),
    }
    check_nothing_lost(&cluster, &[1, 2, 3], &ids).await;
}

/// Proves kill -9 of the leader, three times over under one checked load, loses nothing:
/// each time writes go on under a new leader (no batch waits 10 s) and the killed node comes
/// back as a follower (before the next kill: one fault at a time, never two of three nodes
/// down); afterwards every history check C1–C9 passes — every acknowledged event
/// on every replica, nothing stored that was not sent, ledgers balance, the serial replay
/// gives what the clients saw, commit order follows real time, digests agree, and a new
/// transfer commits. Behind `TALLY_SOAK=1`, seven such loads in a row: 21 kills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_9_loses_no_acknowledged_transfer() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let (mut cluster, mut leader, _) = three_nodes(root.path()).await;
    let mut kills = 0;
    for round in 0..common::rounds(1, 7) {
        let load = checked_load(&cluster, &[1, 2, 3], 24, 1 + round as u8 * 16);
        for _ in 1..=3 {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let new_leader = cluster
                .fail_over(leader, LEADER_WAIT)
                .await
                .expect("a new leader");
            kills += 1;
            eprintln!("kill {kills}: node {leader} killed, node {new_leader} leads");
            tokio::time::sleep(Duration::from_secs(2)).await;
            cluster.start(leader).expect("restarted");
            // One fault at a time: the next kill waits for the quorum to be whole again.
            let restarted = Instant::now();
            common::follows(&cluster, leader).await;
            let (_, metrics) = cluster.admin_get(leader, "/metrics").expect("metrics");
            let took = |phase: &str| {
                let name = format!("tally_startup_seconds{{phase=\"{phase}\"}}");
                tally::local_cluster::metric_value(&metrics, &name)
                    .unwrap_or_else(|| panic!("no {name} on the restarted node"))
            };
            eprintln!(
                "node {leader} back as a follower {:?} after its restart (opening its storage \
                 took {:.2} s, starting Raft {:.2} s)",
                restarted.elapsed(),
                took("open_storage"),
                took("start_raft")
            );
            leader = new_leader;
        }
        let longest = all_checks_pass(load).await;
        eprintln!("round {round}: longest wait for one batch, three kills included: {longest:?}");
        assert!(
            longest < Duration::from_secs(10),
            "writes stalled {longest:?}"
        );
    }
}

/// Proves SIGKILL of every node at once under a checked load, then a restart of all, loses
/// nothing acknowledged: batches in flight end unknown or retried, the restarted cluster
/// elects a leader and takes writes again, and every history check C1–C9 passes. Behind
/// `TALLY_SOAK=1`, five rounds on one cluster, each under a new load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_killed_at_once_loses_nothing_acknowledged() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let (mut cluster, _, _) = three_nodes(root.path()).await;
    for round in 0..common::rounds(1, 5) {
        let load = checked_load(&cluster, &[1, 2, 3], 16, 5 + round as u8 * 16);
        tokio::time::sleep(Duration::from_secs(4)).await;
        for id in [1, 2, 3] {
            cluster.kill(id).expect("killed");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let restarted = Instant::now();
        for id in [1, 2, 3] {
            cluster.start(id).expect("restarted");
        }
        let leader = cluster
            .wait_leader(LEADER_WAIT)
            .await
            .expect("a leader after the restart");
        eprintln!(
            "round {round}: every node killed and restarted; node {leader} leads after {:?}",
            restarted.elapsed()
        );
        let longest = all_checks_pass(load).await;
        eprintln!("round {round}: longest wait for one batch: {longest:?}");
    }
}

/// Proves a leader stopped with SIGSTOP for 10 s under a checked load is replaced, steps down
/// when it runs again instead of acting on its stale term (its state names the new leader),
/// that no batch waits more than one attempt's timeout and a little, and that nothing is
/// lost: every history check C1–C9 passes. Behind `TALLY_SOAK=1`, five
/// rounds on one cluster, each stopping whoever leads then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_for_ten_seconds_steps_down() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let (cluster, _, _) = three_nodes(root.path()).await;
    for round in 0..common::rounds(1, 5) {
        let leader = cluster.wait_leader(LEADER_WAIT).await.expect("a leader");
        let load = checked_load(&cluster, &[1, 2, 3], 22, 6 + round as u8 * 16);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let pid = cluster.nodes[&leader]
            .pid()
            .expect("the leader runs")
            .to_string();
        let signal = |name: &str| {
            let status = std::process::Command::new("kill")
                .args([name, &pid])
                .status()
                .expect("kill runs");
            assert!(status.success(), "kill {name} {pid}");
        };
        signal("-STOP");
        let new_leader = common::another_leader(&cluster, leader).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        signal("-CONT");
        let resumed = common::follows(&cluster, leader).await;
        eprintln!("round {round}: node {leader} resumed as a follower of node {resumed}");
        eprintln!("round {round}: node {new_leader} led while node {leader} was stopped");
        let longest = all_checks_pass(load).await;
        eprintln!("round {round}: longest wait for one batch: {longest:?}");
        // A batch sent to the stopped leader waits out one attempt (the client's 10 s request
        // timeout) and then goes to another node, which sends it on to the new leader: one
        // attempt's wait, not two (it was 15.5–20.6 s when the client tried the silent node
        // again first).
        assert!(
            longest < Duration::from_secs(15),
            "round {round}: a batch waited {longest:?}"
        );
    }
}

/// The newest WAL segment of node `id` with more than `min` bytes written, and how many (a
/// segment is preallocated: zeros after its last group).
fn newest_segment(cluster: &LocalCluster, id: u64, min: usize) -> (std::path::PathBuf, usize) {
    let dir = cluster.nodes[&id].dir.join("data").join("wal");
    let mut segments: Vec<_> = std::fs::read_dir(&dir)
        .expect("the WAL directory")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| {
                    name.len() > 20 && name[..20].bytes().all(|b| b.is_ascii_digit())
                })
        })
        .collect();
    segments.sort();
    segments
        .into_iter()
        .rev()
        .map(|path| {
            let bytes = std::fs::read(&path).expect("readable");
            let written = bytes
                .iter()
                .rposition(|byte| *byte != 0)
                .map_or(0, |at| at + 1);
            (path, written)
        })
        .find(|(_, written)| *written > min)
        .expect("a segment with that much written")
}

/// Overwrite `bytes` at `offset` of `path`, in place.
fn overwrite(path: &Path, offset: usize, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("the segment opens for writing");
    file.seek(SeekFrom::Start(offset as u64)).expect("seek");
    file.write_all(bytes).expect("written");
    file.sync_all().expect("synced");
}

/// Proves damage to a killed replica's WAL is handled as docs/wal.md and docs/operations.md
/// say. A torn last write (the tail of the last group zeroed after kill -9 under a checked
/// load) is cut at restart and the node catches up: C1–C9 pass with it. A bit flipped inside
/// the log, with valid records after it, makes the node refuse to start, naming the
/// corruption. The documented rebuild — a new node id added from the peers, the damaged one
/// removed from the voters — gives a cluster on which a second checked load passes C1–C9.
/// Behind `TALLY_SOAK=1` the torn tail is made and cut ten times, each under a new load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_wal_is_cut_or_refused_and_the_replica_rebuilt_from_peers() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let (mut cluster, _, client) = three_nodes(root.path()).await;
    let mut damaged = 0;
    for round in 0..common::rounds(1, 10) {
        let leader = cluster.wait_leader(LEADER_WAIT).await.expect("a leader");
        damaged = [1, 2, 3]
            .into_iter()
            .find(|id| *id != leader)
            .expect("a follower");
        let load = checked_load(&cluster, &[1, 2, 3], 12, 7 + round as u8 * 16);
        tokio::time::sleep(Duration::from_secs(4)).await;
        cluster.kill(damaged).expect("killed");
        // The torn write is the last one: in the newest segment, whatever its size.
        let (segment, written) = newest_segment(&cluster, damaged, 0);
        assert!(written > 40, "the follower wrote its log: {written} bytes");
        overwrite(&segment, written - 40, &[0; 40]);
        tokio::time::sleep(Duration::from_secs(1)).await;
        cluster.start(damaged).expect("restarted with a torn tail");
        let longest = all_checks_pass(load).await;
        converged(&cluster, &[1, 2, 3]).await;
        eprintln!("round {round}: node {damaged}'s torn tail cut; longest wait {longest:?}");
    }

    cluster.kill(damaged).expect("killed again");
    // A flip well inside a segment, with valid groups after it.
    let (segment, written) = newest_segment(&cluster, damaged, 1 << 20);
    let at = written / 2;
    let flipped = std::fs::read(&segment).expect("readable")[at] ^ 0x10;
    overwrite(&segment, at, &[flipped]);
    cluster.start(damaged).expect("started");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = cluster.nodes.get_mut(&damaged).expect("a node").exited() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "node {damaged} runs on a corrupt log ({} at {at} of {written})",
            segment.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success(), "a refusal exits non-zero: {status}");
    let log = std::fs::read_to_string(cluster.nodes[&damaged].log_path()).expect("its log");
    assert!(
        log.to_lowercase().contains("corrupt"),
        "the refusal names the corruption:\n{log}"
    );

    let rebuilt = 4;
    cluster.add(rebuilt, &BTreeMap::new()).expect("added");
    cluster.start(rebuilt).expect("started");
    client
        .admin(&Admin::AddLearner(
            rebuilt,
            cluster.member(rebuilt).expect("addresses"),
        ))
        .await
        .expect("learner added");
    let voters: Vec<u64> = [1, 2, 3, rebuilt]
        .into_iter()
        .filter(|id| *id != damaged)
        .collect();
    client
        .admin(&Admin::ChangeVoters(voters.clone()))
        .await
        .expect("the damaged node replaced");
    // The new node caught up before the load: its state is part of the load's baseline.
    converged(&cluster, &voters).await;
    let load = checked_load(&cluster, &voters, 8, 8);
    all_checks_pass(load).await;
    converged(&cluster, &voters).await;
    cluster.terminate(rebuilt).expect("stopped");
}

/// Three founding nodes that snapshot every `snapshot_every_entries` entries and keep no log
/// behind a snapshot (a follower behind it must catch up by snapshot), with a leader elected:
/// the cluster, the leader and one follower.
async fn purging_cluster(root: &Path, snapshot_every_entries: u64) -> (LocalCluster, u64, u64) {
    let config = FAST_RAFT.replace(
        "[wal]",
        &format!(
            "snapshot_every_entries = {snapshot_every_entries}\nlogs_kept_after_snapshot = 0\n[wal]"
        ),
    );
    let mut cluster = cluster(root, &config);
    cluster.found(&[1, 2, 3]).expect("started");
    let leader = cluster.wait_leader(LEADER_WAIT).await.expect("a leader");
    let follower = [1, 2, 3].into_iter().find(|id| *id != leader).expect("one");
    (cluster, leader, follower)
}

/// Proves a follower stopped while the leader snapshots and purges its log past it catches up
/// by installing the snapshot (the log it needs is gone), reaching the same digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_behind_purged_log_catches_up_by_snapshot() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let (mut cluster, leader, follower) = purging_cluster(root.path(), 1_000_000).await;
    let load = checked_load(&cluster, &[1, 2, 3], 14, 2);
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.terminate(follower).expect("stopped");
    // The load goes on with one follower down, then the leader snapshots and purges its log
    // past everything the follower has.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let leader_client = cluster.operator_client(leader).await.expect("connect");
    let applied = leader_client
        .node_state(false)
        .await
        .expect("state")
        .last_applied
        .map_or(0, |applied| applied.index);
    leader_client
        .admin(&Admin::Snapshot)
        .await
        .expect("snapshot triggered");
    let deadline = Instant::now() + Duration::from_secs(30);
    let purged = loop {
        let state = leader_client.node_state(false).await.expect("state");
        if let Some(purged) = state
            .purged
            .filter(|purged| purged.index >= applied.saturating_sub(1))
        {
            break purged;
        }
        assert!(
            Instant::now() < deadline,
            "the leader did not purge: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    cluster.start(follower).expect("restarted");
    all_checks_pass(load).await;
    let states = converged(&cluster, &[1, 2, 3]).await;
    let snapshot = states[&follower]
        .snapshot
        .expect("the follower has a snapshot");
    assert!(
        snapshot.index >= purged.index,
        "caught up by snapshot {snapshot:?}, the log was purged to {purged:?}"
    );
}

/// Proves a follower whose data directory is wiped while the cluster is under load (the
/// load generator with mixed transfers, trades and pending transfers, recording its history)
/// comes back empty, catches up by installing the leader's snapshot (the log it needs is
/// purged), and that every history check passes afterwards — C1 and C8 read every event back
/// from that follower too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_wiped_under_load_catches_up_by_snapshot() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let (mut cluster, _, follower) = purging_cluster(root.path(), 300).await;
    let load = checked_load(&cluster, &[1, 2, 3], 24, 4);
    tokio::time::sleep(Duration::from_secs(6)).await;
    cluster.terminate(follower).expect("stopped");
    let dir = cluster.nodes[&follower].dir.join("data");
    std::fs::remove_dir_all(&dir).expect("wiped");
    // Long enough for the leader to snapshot and purge past everything the follower had.
    tokio::time::sleep(Duration::from_secs(6)).await;
    cluster.start(follower).expect("restarted empty");
    all_checks_pass(load).await;
    let (_, metrics) = cluster
        .admin_get(follower, "/metrics")
        .expect("the follower's metrics");
    let installed =
        tally::local_cluster::metric_value(&metrics, "tally_snapshots_total{origin=\"installed\"}");
    assert!(
        installed.is_some_and(|count| count >= 1.0),
        "the wiped follower caught up without a snapshot: {installed:?}"
    );
    converged(&cluster, &[1, 2, 3]).await;
}

/// Proves the snapshot policy by bytes: with openraft's policy by entries out of reach
/// (a million entries), a node builds a snapshot once its WAL has taken
/// `raft.snapshot_every_mib` (16 MiB here: about 17 requests of 8,189 transfers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_follows_the_bytes_written() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let config = FAST_RAFT.replace(
        "[wal]",
        "snapshot_every_entries = 1000000\nsnapshot_every_mib = 16\n[wal]",
    );
    let mut cluster = cluster(root.path(), &config);
    cluster.found(&[1]).expect("started");
    cluster.wait_leader(LEADER_WAIT).await.expect("a leader");
    let client = client(&cluster).await;
    create_accounts(&client).await;
    let operator = cluster.operator_client(1).await.expect("connect");
    let batch = 8_189u128;
    let mut requests = 0u128;
    let deadline = Instant::now() + Duration::from_secs(60);
    let snapshot = loop {
        let state = operator.node_state(false).await.expect("state");
        if let Some(snapshot) = state.snapshot {
            break snapshot;
        }
        assert!(
            Instant::now() < deadline,
            "no snapshot after {requests} requests: {state:?}"
        );
        if requests < 24 {
            let first = 1_000_000 + requests * batch;
            client
                .create_raw(Operation::CreateTransfers, transfers(first..first + batch))
                .await
                .expect("committed");
            requests += 1;
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    assert!(
        requests >= 12,
        "a snapshot at entry {} after only {requests} requests: not by bytes",
        snapshot.index
    );
}

/// Proves membership changes from 3 voters to 5 and back while transfers stream in lose
/// nothing and leave the remaining voters in agreement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_three_to_five_and_back_under_load() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let (mut cluster, _, client) = three_nodes(root.path()).await;
    let load = checked_load(&cluster, &[1, 2, 3], 12, 3);
    for id in [4, 5] {
        cluster.add(id, &BTreeMap::new()).expect("added");
        cluster.start(id).expect("started");
    }
    let admin = |admin: Admin| {
        let client = Arc::clone(&client);
        async move { client.admin(&admin).await }
    };
    for id in [4, 5] {
        admin(Admin::AddLearner(
            id,
            cluster.member(id).expect("addresses"),
        ))
        .await
        .expect("learner added");
    }
    admin(Admin::ChangeVoters(vec![1, 2, 3, 4, 5]))
        .await
        .expect("five voters");
    let leader = cluster.wait_leader(LEADER_WAIT).await.expect("a leader");
    let states = cluster.states(false).await;
    assert_eq!(states[&leader].voters, vec![1, 2, 3, 4, 5]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    admin(Admin::ChangeVoters(vec![1, 2, 3]))
        .await
        .expect("back to three voters");
    let leader = cluster.wait_leader(LEADER_WAIT).await.expect("a leader");
    assert_eq!(cluster.states(false).await[&leader].voters, vec![1, 2, 3]);
    // The load outlasts the changes: its checks read every replica of the three.
    let longest = all_checks_pass(load).await;
    assert!(
        longest < Duration::from_secs(10),
        "writes stalled {longest:?}"
    );
    for id in [4, 5] {
        cluster.terminate(id).expect("stopped");
    }
}

/// Proves a quiet ledger releases a reservation at its timeout: with no client writing, a
/// pending transfer with a 2 s timeout is released within 1 s of its timeout (the leader's
/// expiry clock proposes the entry that expires it), the release is stamped at the timeout
/// itself (balances as of any time from the timeout on show it released, a nanosecond before
/// do not), and the replicas agree on the state afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_ledger_releases_a_reservation_at_its_timeout() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let (cluster, _, client) = three_nodes(root.path()).await;
    let account = |id| Account {
        id,
        ledger: 7,
        code: 1,
        flags: AccountFlags::HISTORY,
        ..Account::default()
    };
    let created = client
        .create_accounts(&[account(1001), account(1002)])
        .await
        .expect("accounts");
    assert_eq!(created, []);
    let pending = Transfer {
        id: 5001,
        debit_account_id: 1001,
        credit_account_id: 1002,
        amount: 40,
        ledger: 7,
        code: 1,
        flags: TransferFlags::PENDING,
        timeout: 2,
        ..Transfer::default()
    };
    assert_eq!(client.create_transfers(&[pending]).await.expect("sent"), []);
    let stored = client.lookup_transfers(&[5001]).await.expect("lookup");
    let expires_at = stored[0].timestamp + 2_000_000_000;
    // Nobody writes from here on: only the leader's expiry clock can release it.
    let released_seen = loop {
        let debit = client.lookup_accounts(&[1001]).await.expect("lookup");
        let now = tally_gateway::batcher::system_clock();
        if debit[0].debits_pending == 0 {
            break now;
        }
        assert!(
            now < expires_at + 3_000_000_000,
            "still reserved 3 s after its timeout"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let late_ms = (released_seen as i128 - expires_at as i128) / 1_000_000;
    println!("released {late_ms} ms after its timeout (seen by polling every 20 ms)");
    assert!(
        (0..=1_000).contains(&late_ms),
        "released {late_ms} ms after its timeout"
    );
    let reserved_at = |at: u64| {
        let client = Arc::clone(&client);
        async move {
            let balances = client.balances_as_of(1001, at).await.expect("balances");
            balances.debits_pending
        }
    };
    assert_eq!(
        reserved_at(expires_at - 1).await,
        40,
        "reserved until its timeout"
    );
    assert_eq!(reserved_at(expires_at).await, 0, "released at its timeout");
    let between = expires_at + (released_seen - expires_at) / 2;
    assert_eq!(reserved_at(between).await, 0, "released before it was seen");
    converged(&cluster, &[1, 2, 3]).await;
}
