//! Replicas over the real network: three openraft nodes in one process, each with its own data
//! directory, talking through `Network` and `serve_peers` on loopback TCP. Proves replication to the
//! same state digest, catch-up of a restarted follower by snapshot install, and that damaged
//! frames close only their own connection.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use openraft::error::{InstallSnapshotError, RPCError, RaftError};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use tally_engine::records::{Account, Transfer};
use tally_engine::{EngineConfig, Operation};
use tally_raft::net::frame::encode_frame;
use tally_raft::net::rpc::{self, ErrorAnswer};
use tally_raft::net::{read_frame, recommended_config, serve_peers, Frame, Network};
use tally_raft::replication::types::{LogId, Node, SnapshotMeta};
use tally_raft::replication::{open_storage, AppliedView, ClientBatch, Request, TypeConfig};
use tally_raft::storage::open_default;
use tally_raft::WalConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

type Raft = openraft::Raft<TypeConfig>;

const TIMEOUT: Option<Duration> = Some(Duration::from_secs(20));

/// One running node: its Raft, its server, and what it needs to be restarted.
struct TestNode {
    id: u64,
    dir: PathBuf,
    addr: SocketAddr,
    raft: Raft,
    view: AppliedView,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
}

/// Snapshot chunk size in the tests: small, so a transfer takes many chunks.
const CHUNK_BYTES: usize = 16 * 1024;

/// The test cluster's openraft config: the recommended one, with small snapshot chunks (so a
/// transfer takes many) and no snapshots or kept log unless the test asks.
fn config(chunk_bytes: usize) -> Arc<openraft::Config> {
    let config = openraft::Config {
        snapshot_max_chunk_size: chunk_bytes as u64,
        snapshot_policy: openraft::SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: 0,
        ..recommended_config("tally-network-test")
    };
    Arc::new(config.validate().expect("valid config"))
}

/// Open the node's storage in `dir`, start openraft on it and serve it on `listener`.
async fn start(id: u64, dir: &Path, listener: TcpListener) -> TestNode {
    start_with(id, dir, listener, CHUNK_BYTES).await
}

/// `start`, with snapshots sent in chunks of `chunk_bytes`.
async fn start_with(id: u64, dir: &Path, listener: TcpListener, chunk_bytes: usize) -> TestNode {
    let wal_config = WalConfig {
        segment_bytes: 1024 * 1024,
        entry_payload_bytes_max: 256 * 1024,
    };
    let (log_store, state_machine) =
        open_storage(open_default(), dir, wal_config, EngineConfig::default())
            .expect("storage opens");
    let view = state_machine.view();
    let raft = Raft::new(
        id,
        config(chunk_bytes),
        Network::new(id, None),
        log_store,
        state_machine,
    )
    .await
    .expect("raft starts");
    let addr = listener.local_addr().expect("bound");
    let (shutdown, stop) = watch::channel(false);
    let server = tokio::spawn(serve_peers(
        listener,
        raft.clone(),
        None,
        tally_raft::metrics::NodeMetrics::unregistered(),
        stop,
    ));
    TestNode {
        id,
        dir: dir.to_path_buf(),
        addr,
        raft,
        view,
        shutdown,
        server,
    }
}

impl TestNode {
    /// Stop the Raft and the server; the data directory stays.
    async fn stop(self) -> (u64, PathBuf, SocketAddr) {
        self.raft.shutdown().await.expect("raft shuts down");
        self.shutdown.send_replace(true);
        self.server.await.expect("server task ends");
        (self.id, self.dir, self.addr)
    }
}

/// A member reached at `addr` by replicas (these tests serve no clients: the client address
/// only has to be there).
fn node(addr: SocketAddr) -> Node {
    Node::new(format!("client-of-{addr}"), addr.to_string())
}

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

fn batch(operation: Operation, records: Vec<[u8; 128]>) -> ClientBatch {
    ClientBatch {
        operation,
        body: Bytes::from(records.concat()),
        origin: None,
    }
}

fn account(id: u128) -> [u8; 128] {
    Account {
        id,
        ledger: 1,
        code: 1,
        ..Account::default()
    }
    .encode()
}

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

const ACCOUNTS: u128 = 16;

/// Commit `writes` entries of 40 transfers each (ids from `first_id`) on `leader`; returns the
/// last entry's log id. Every transfer succeeds (accounts 1..=ACCOUNTS exist).
async fn write_transfers(leader: &Raft, first_id: u128, writes: u128) -> LogId {
    let mut last = None;
    for write in 0..writes {
        let base = first_id + write * 40;
        let records = (0..40)
            .map(|i| {
                let id = base + i;
                transfer(id, 1 + id % ACCOUNTS, 1 + (id + 1) % ACCOUNTS)
            })
            .collect();
        let request = Request {
            timestamp: 1_700_000_000_000_000_000 + base as u64,
            batches: vec![batch(Operation::CreateTransfers, records)],
            log: None,
        };
        let written = leader.client_write(request).await.expect("committed");
        let outcome = written.data.batches[0]
            .outcome()
            .expect("applied")
            .as_ref()
            .expect("batch applies");
        assert_eq!(outcome.failures, vec![], "every transfer succeeds");
        last = Some(written.log_id);
    }
    last.expect("at least one write")
}

/// Wait until every node applied `last` and all have applied the same log (a leader elected
/// meanwhile appends a blank entry after `last`), then check they have the same state digest.
async fn assert_same_digest(nodes: &[&TestNode], last: LogId) -> [u8; 32] {
    for node in nodes {
        node.raft
            .wait(TIMEOUT)
            .applied_index_at_least(Some(last.index), "applied")
            .await
            .expect("node applies the log");
    }
    let started = Instant::now();
    loop {
        let digests: Vec<_> = nodes.iter().map(|node| node.view.digest()).collect();
        if digests.iter().all(|digest| digest.0 == digests[0].0) {
            for (node, digest) in nodes.iter().zip(&digests) {
                assert_eq!(*digest, digests[0], "node {} differs", node.id);
            }
            assert!(digests[0].0 >= Some(last));
            return digests[0].1;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "nodes never applied the same log: {digests:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Build a snapshot on `raft` covering `last` (waiting up to `build_within`), then purge the
/// log up to it, so a follower behind `last` can only catch up by snapshot.
async fn snapshot_and_purge(raft: &Raft, last: LogId, build_within: Option<Duration>) {
    raft.trigger().snapshot().await.expect("snapshot triggered");
    raft.wait(build_within)
        .snapshot(last, "snapshot built")
        .await
        .expect("a snapshot");
    raft.trigger()
        .purge_log(last.index)
        .await
        .expect("purge triggered");
    raft.wait(TIMEOUT)
        .metrics(|m| m.purged >= Some(last), "log purged")
        .await
        .expect("the leader purged its log up to the snapshot");
}

/// Proves three replicas over TCP elect a leader and apply the same log to the same digest;
/// that a follower stopped while the leader keeps writing, snapshots and purges its log, comes
/// back from its data directory and catches up by installing the leader's snapshot (streamed
/// in many chunks) to the same digest; and that the cluster keeps committing afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_replicate_and_catch_up_by_snapshot() {
    let started = Instant::now();
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir().expect("temporary directory"))
        .collect();
    let mut nodes = Vec::new();
    for (id, dir) in (1..=3).zip(&dirs) {
        nodes.push(start(id, dir.path(), listener().await).await);
    }
    let members: BTreeMap<u64, Node> = nodes.iter().map(|n| (n.id, node(n.addr))).collect();
    nodes[0]
        .raft
        .initialize(members)
        .await
        .expect("initialized");
    let leader_id = nodes[0]
        .raft
        .wait(TIMEOUT)
        .metrics(|m| m.current_leader.is_some(), "a leader")
        .await
        .expect("a leader is elected")
        .current_leader
        .expect("leader");
    tracing::info!(leader_id, "--- leader elected");
    let leader = nodes
        .iter()
        .position(|n| n.id == leader_id)
        .expect("leader is a member");

    let accounts = Request {
        timestamp: 1_600_000_000_000_000_000,
        batches: vec![batch(
            Operation::CreateAccounts,
            (1..=ACCOUNTS).map(account).collect(),
        )],
        log: None,
    };
    nodes[leader]
        .raft
        .client_write(accounts)
        .await
        .expect("accounts committed");
    let last = write_transfers(&nodes[leader].raft, 1000, 20).await;
    assert_same_digest(&nodes.iter().collect::<Vec<_>>(), last).await;

    tracing::info!("--- stop a follower");
    let follower = (leader + 1) % 3;
    let stopped = nodes.remove(follower).stop().await;
    let leader = nodes
        .iter()
        .position(|n| n.id == leader_id)
        .expect("leader still running");

    tracing::info!("--- keep writing, snapshot and purge on the leader");
    let last = write_transfers(&nodes[leader].raft, 10_000, 30).await;
    snapshot_and_purge(&nodes[leader].raft, last, TIMEOUT).await;

    tracing::info!("--- restart the follower: it can only catch up by snapshot");
    let (id, dir, addr) = stopped;
    let listener = TcpListener::bind(addr)
        .await
        .expect("rebind the follower's address");
    let restarted = start(id, &dir, listener).await;
    let digest = assert_same_digest(&[&nodes[0], &nodes[1], &restarted], last).await;
    let installed = restarted.raft.metrics().borrow().snapshot;
    assert_eq!(
        installed,
        Some(last),
        "the follower installed the leader's snapshot"
    );
    assert_ne!(digest, [0; 32]);
    let snapshot_bytes: u64 = std::fs::read_dir(restarted.dir.join("snapshots"))
        .expect("snapshot directory")
        .map(|entry| entry.expect("entry").metadata().expect("metadata").len())
        .sum();
    assert!(
        snapshot_bytes > 4 * CHUNK_BYTES as u64,
        "the snapshot ({snapshot_bytes} bytes) took several chunks"
    );

    tracing::info!("--- the cluster keeps committing");
    let last = write_transfers(&nodes[leader].raft, 100_000, 2).await;
    assert_same_digest(&[&nodes[0], &nodes[1], &restarted], last).await;

    restarted.stop().await;
    for node in nodes {
        node.stop().await;
    }
    tracing::info!(elapsed = ?started.elapsed(), "--- done");
}

/// Read from `stream` until the server closes it (or fails the test after a while).
async fn expect_closed(stream: &mut TcpStream) {
    let mut buffer = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept the connection open");
}

/// Proves a damaged frame (garbage, a bad checksum, an over-limit length) closes only its own
/// connection; that a well-formed frame whose payload does not decode gets an error answer
/// on a connection that stays usable; that a client frame on a replica-only server closes the
/// connection; that a snapshot chunk out of sequence comes back as openraft's
/// `SnapshotMismatch`; and that after all this the node still answers RPCs and commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_frames_close_only_their_connection() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let node_1 = start(1, dir.path(), listener().await).await;
    node_1
        .raft
        .initialize(BTreeMap::from([(1, node(node_1.addr))]))
        .await
        .expect("initialized");
    node_1
        .raft
        .wait(TIMEOUT)
        .current_leader(1, "node 1 leads")
        .await
        .expect("a leader");

    tracing::info!("--- garbage bytes");
    let mut garbage = TcpStream::connect(node_1.addr).await.expect("connects");
    garbage
        .write_all(&[0x5a; 100])
        .await
        .expect("garbage written");
    expect_closed(&mut garbage).await;

    tracing::info!("--- a frame with a flipped bit");
    let mut damaged = TcpStream::connect(node_1.addr).await.expect("connects");
    let mut bytes = Vec::new();
    let vote = VoteRequest {
        vote: openraft::Vote::new(1, 1),
        last_log_id: None,
    };
    let frame = Frame {
        kind: rpc::KIND_VOTE,
        request_id: 1,
        payload: Bytes::from(rpc::encode_vote_request(&vote)),
    };
    encode_frame(&frame, &mut bytes);
    bytes[30] ^= 0x10;
    damaged.write_all(&bytes).await.expect("written");
    expect_closed(&mut damaged).await;

    tracing::info!("--- a length over the limit");
    let mut oversized = TcpStream::connect(node_1.addr).await.expect("connects");
    let mut header = tally_raft::net::frame::encode_header(rpc::KIND_VOTE, 2, &[]);
    header[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    oversized.write_all(&header).await.expect("written");
    expect_closed(&mut oversized).await;

    tracing::info!("--- an intact frame that does not decode gets an error answer");
    let mut connection = TcpStream::connect(node_1.addr).await.expect("connects");
    for request_id in [7, 8] {
        let mut bytes = Vec::new();
        let frame = Frame {
            kind: rpc::KIND_APPEND_ENTRIES,
            request_id,
            payload: Bytes::from_static(b"not an AppendEntries request"),
        };
        encode_frame(&frame, &mut bytes);
        connection.write_all(&bytes).await.expect("written");
        let answer = read_frame(&mut connection, 1 << 20)
            .await
            .expect("an answer")
            .expect("not closed");
        assert_eq!(answer.request_id, request_id);
        assert_eq!(answer.kind, rpc::KIND_ERROR);
        let error = rpc::decode_error_answer(&answer.payload).expect("decodes");
        assert!(matches!(error, ErrorAnswer::BadRequest { .. }), "{error}");
    }

    tracing::info!("--- a client frame on a server without a client handler");
    let mut bytes = Vec::new();
    let frame = Frame {
        kind: 200,
        request_id: 9,
        payload: Bytes::new(),
    };
    encode_frame(&frame, &mut bytes);
    connection.write_all(&bytes).await.expect("written");
    expect_closed(&mut connection).await;

    tracing::info!("--- the node still answers RPCs and commits");
    let mut network = Network::new(2, None);
    let mut client = network.new_client(1, &node(node_1.addr)).await;
    let answer = client
        .vote(vote, RPCOption::new(Duration::from_secs(5)))
        .await
        .expect("vote answered");
    assert!(!answer.vote_granted, "node 1 leads at a higher vote");

    tracing::info!("--- a snapshot chunk out of sequence is answered with a mismatch");
    let leader_vote = node_1.raft.metrics().borrow().vote;
    let chunk = InstallSnapshotRequest {
        vote: leader_vote,
        meta: SnapshotMeta {
            snapshot_id: "never-started".to_owned(),
            ..SnapshotMeta::default()
        },
        offset: 4096,
        data: vec![1; 10],
        done: false,
    };
    let error = client
        .install_snapshot(chunk, RPCOption::new(Duration::from_secs(5)))
        .await
        .expect_err("a chunk past offset 0 of an unknown snapshot");
    let RPCError::RemoteError(remote) = error else {
        panic!("expected a remote error, got {error}");
    };
    assert!(
        matches!(
            remote.source,
            RaftError::APIError(InstallSnapshotError::SnapshotMismatch(_))
        ),
        "{remote}"
    );

    tracing::info!("--- an AppendEntries in the node's own name is refused, not handed over");
    let own = AppendEntriesRequest {
        vote: leader_vote,
        prev_log_id: None,
        leader_commit: None,
        entries: Vec::new(),
    };
    client
        .append_entries(own, RPCOption::new(Duration::from_secs(5)))
        .await
        .expect_err("refused: openraft asserts a leader is not sent its own term");

    let request = Request {
        timestamp: 1_700_000_000_000_000_000,
        batches: vec![batch(Operation::CreateAccounts, vec![account(1)])],
        log: None,
    };
    node_1.raft.client_write(request).await.expect("committed");
    node_1.stop().await;
}

/// Proves a client of a peer that is down fails fast with `Unreachable` (it does not block
/// openraft), and reaches the peer once it is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_peer_fails_fast_then_reconnects() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let listener = listener().await;
    let addr = listener.local_addr().expect("bound");
    drop(listener);
    let mut network = Network::new(2, None);
    let mut client = network.new_client(1, &node(addr)).await;
    let vote = VoteRequest {
        vote: openraft::Vote::new(1, 2),
        last_log_id: None,
    };
    let option = RPCOption::new(Duration::from_secs(5));
    for _ in 0..3 {
        let started = Instant::now();
        let error = client
            .vote(vote.clone(), option.clone())
            .await
            .expect_err("nobody listens");
        assert!(matches!(error, RPCError::Unreachable(_)), "{error}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    let node_1 = start(
        1,
        dir.path(),
        TcpListener::bind(addr).await.expect("rebind"),
    )
    .await;
    // Past the backoff after three failures (40 ms), the client connects again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = client.vote(vote, option).await.expect("vote answered");
    assert!(answer.vote_granted, "an uninitialized node grants the vote");
    node_1.stop().await;
}

/// Proves a connection left idle by a dropped client and then closed by its peer (which
/// restarted) is not handed to the next client: the first RPC after the restart succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_closed_by_a_restart_is_not_reused() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let node_1 = start(1, dir.path(), listener().await).await;
    let mut network = Network::new(2, None);
    let vote = VoteRequest {
        vote: openraft::Vote::new(1, 2),
        last_log_id: None,
    };
    let option = RPCOption::new(Duration::from_secs(5));
    let mut client = network.new_client(1, &node(node_1.addr)).await;
    client
        .vote(vote.clone(), option.clone())
        .await
        .expect("vote answered");
    drop(client);

    tracing::info!("--- restart the peer while the connection is idle");
    let (id, dir_path, addr) = node_1.stop().await;
    let listener = TcpListener::bind(addr).await.expect("rebind");
    let node_1 = start(id, &dir_path, listener).await;

    let mut client = network.new_client(1, &node(addr)).await;
    client
        .vote(vote, option)
        .await
        .expect("the first vote after the restart is answered");
    node_1.stop().await;
}

/// Proves (slow tier: only with `TALLY_SOAK` set) that a follower catches up by snapshot when
/// the state is large: `TALLY_SOAK_ACCOUNTS` accounts (a million by default, a snapshot of
/// well over a hundred MB) streamed in the recommended 4 MiB chunks, within the timeouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_snapshot_catch_up() {
    if std::env::var("TALLY_SOAK").is_err() {
        return;
    }
    let accounts: u128 = std::env::var("TALLY_SOAK_ACCOUNTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1_000_000);
    let chunk_bytes = tally_raft::net::limits::SNAPSHOT_CHUNK_BYTES_MAX;
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir().expect("temporary directory"))
        .collect();
    let mut nodes = Vec::new();
    for (id, dir) in (1..=3).zip(&dirs) {
        nodes.push(start_with(id, dir.path(), listener().await, chunk_bytes).await);
    }
    let members: BTreeMap<u64, Node> = nodes.iter().map(|n| (n.id, node(n.addr))).collect();
    nodes[0]
        .raft
        .initialize(members)
        .await
        .expect("initialized");
    let leader_id = nodes[0]
        .raft
        .wait(TIMEOUT)
        .metrics(|m| m.current_leader.is_some(), "a leader")
        .await
        .expect("a leader is elected")
        .current_leader
        .expect("leader");
    let follower = nodes
        .iter()
        .position(|n| n.id != leader_id)
        .expect("a follower");
    let stopped = nodes.remove(follower).stop().await;
    let leader = nodes
        .iter()
        .position(|n| n.id == leader_id)
        .expect("leader");

    let started = Instant::now();
    let mut last = None;
    // 2000 accounts of 128 bytes per entry: under the test WAL's 256 KiB entry limit.
    for first in (1..=accounts).step_by(2000) {
        let request = Request {
            timestamp: 1_600_000_000_000_000_000 + first as u64,
            batches: vec![batch(
                Operation::CreateAccounts,
                (first..(first + 2000).min(accounts + 1))
                    .map(account)
                    .collect(),
            )],
            log: None,
        };
        let written = nodes[leader]
            .raft
            .client_write(request)
            .await
            .expect("committed");
        last = Some(written.log_id);
    }
    let last = last.expect("written");
    let term = |nodes: &[TestNode]| -> Vec<u64> {
        nodes
            .iter()
            .map(|n| n.raft.metrics().borrow().current_term)
            .collect()
    };
    eprintln!(
        "{accounts} accounts written in {:?}; terms {:?}",
        started.elapsed(),
        term(&nodes)
    );

    let started = Instant::now();
    snapshot_and_purge(&nodes[leader].raft, last, Some(Duration::from_secs(300))).await;
    eprintln!(
        "snapshot built in {:?}; terms {:?}",
        started.elapsed(),
        term(&nodes)
    );

    let started = Instant::now();
    let (id, dir, addr) = stopped;
    let listener = TcpListener::bind(addr).await.expect("rebind");
    let restarted = start_with(id, &dir, listener, chunk_bytes).await;
    restarted
        .raft
        .wait(Some(Duration::from_secs(300)))
        .applied_index_at_least(Some(last.index), "caught up")
        .await
        .expect("the follower catches up");
    let snapshot_bytes: u64 = std::fs::read_dir(dir.join("snapshots"))
        .expect("snapshot directory")
        .map(|entry| entry.expect("entry").metadata().expect("metadata").len())
        .sum();
    eprintln!(
        "follower caught up by a {snapshot_bytes}-byte snapshot in {:?}; terms {:?} and {}",
        started.elapsed(),
        term(&nodes),
        restarted.raft.metrics().borrow().current_term
    );
    assert_eq!(restarted.raft.metrics().borrow().snapshot, Some(last));
    assert_same_digest(&[&nodes[0], &nodes[1], &restarted], last).await;
    restarted.stop().await;
    for node in nodes {
        node.stop().await;
    }
}
