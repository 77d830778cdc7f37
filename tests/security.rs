//! The trust boundary (docs/security.md), against real `tally node` processes: who may speak
//! on each listener, and what a stranger can make a node do (nothing).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::{CommittedLeaderId, LogId, StoredMembership, Vote};
use tally::local_cluster::{metric_value, LocalCluster};
use tally_client::{Client, ClientConfig, ClientError};
use tally_raft::net::rpc::{
    encode_append_entries, encode_install_snapshot, encode_vote_request, KIND_APPEND_ENTRIES,
    KIND_INSTALL_SNAPSHOT, KIND_VOTE,
};
use tally_raft::net::tls::pki;
use tally_raft::net::{read_frame, write_frame, ClientTls, Frame, Stream};
use tally_raft::replication::types::SnapshotMeta;
use tokio::net::TcpStream;

/// The tests share two cores: one cluster at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A term no honest member reaches in a test: if any node ever shows it, a forged request was
/// decoded and obeyed.
const FORGED_TERM: u64 = 1_000_000;

fn tally() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tally"))
}

fn cluster(root: &Path) -> LocalCluster {
    LocalCluster::new(tally(), root, "[raft]\n[wal]\nsegment_mib = 16\n")
}

fn log_id(term: u64, node: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, node), index)
}

/// The three replica requests a stranger would forge, as node 1 in a term far ahead: a vote,
/// an AppendEntries whose `prev_log_id` disagrees with every log (which makes a follower
/// truncate) and which claims a commit index, and a snapshot chunk 64 GiB into nowhere.
fn forged_requests() -> Vec<(&'static str, Frame)> {
    let vote = Vote::new_committed(FORGED_TERM, 1);
    let vote_request = VoteRequest::new(
        Vote::new(FORGED_TERM, 1),
        Some(log_id(FORGED_TERM - 1, 1, 1 << 40)),
    );
    let append = AppendEntriesRequest {
        vote,
        prev_log_id: Some(log_id(FORGED_TERM - 1, 1, 3)),
        entries: Vec::new(),
        leader_commit: Some(log_id(FORGED_TERM - 1, 1, 3)),
    };
    let meta = SnapshotMeta {
        last_log_id: Some(log_id(FORGED_TERM - 1, 1, 1 << 40)),
        last_membership: StoredMembership::default(),
        snapshot_id: "forged".to_owned(),
    };
    let frame = |kind, payload: Vec<u8>| Frame {
        kind,
        request_id: 7,
        payload: Bytes::from(payload),
    };
    vec![
        ("vote", frame(KIND_VOTE, encode_vote_request(&vote_request))),
        (
            "truncating append-entries",
            frame(
                KIND_APPEND_ENTRIES,
                encode_append_entries(&append).expect("encodes"),
            ),
        ),
        (
            "install-snapshot",
            frame(
                KIND_INSTALL_SNAPSHOT,
                encode_install_snapshot(&vote, &meta, 64 << 30, true, b"forged").expect("encodes"),
            ),
        ),
    ]
}

/// Who tries: how they open the connection to a peer listener.
enum Stranger {
    /// TLS, trusting the cluster CA, without a certificate.
    NoCertificate(ClientTls),
    /// TLS with a certificate for node 1 from a CA of its own.
    OtherCa(ClientTls),
    /// TLS with the certificate the cluster CA gave node 4, which has left the cluster.
    RemovedNode(ClientTls),
    /// Plain TCP.
    Plain,
}

impl Stranger {
    fn name(&self) -> &'static str {
        match self {
            Stranger::NoCertificate(_) => "no certificate",
            Stranger::OtherCa(_) => "another CA",
            Stranger::RemovedNode(_) => "removed node 4",
            Stranger::Plain => "plain TCP",
        }
    }

    /// Send `request` to the peer listener at `addr`; the answer frame if one came back.
    async fn try_request(&self, addr: &str, request: &Frame) -> Option<Frame> {
        let tcp = TcpStream::connect(addr).await.expect("the port accepts");
        let mut stream = match self {
            Stranger::Plain => Stream::Plain(tcp),
            Stranger::NoCertificate(tls) | Stranger::OtherCa(tls) | Stranger::RemovedNode(tls) => {
                // In TLS 1.3 the client may finish before the server has judged its
                // certificate: a refusal then shows as a closed connection below.
                match tls.handshake(tcp, addr).await {
                    Ok(stream) => stream,
                    Err(_) => return None,
                }
            }
        };
        if write_frame(&mut stream, request).await.is_err() {
            return None;
        }
        let answer =
            tokio::time::timeout(Duration::from_secs(10), read_frame(&mut stream, 64 << 20))
                .await
                .expect("the node closes the connection rather than leaving it open");
        answer.ok().flatten()
    }
}

fn refused(exposition: &str, reason: &str) -> f64 {
    metric_value(
        exposition,
        &format!("tally_connections_refused_total{{listener=\"peer\",reason=\"{reason}\"}}"),
    )
    .unwrap_or_else(|| panic!("no refusal series for {reason}"))
}

/// Proves the peer listener lets only current members speak Raft: against a 3-node cluster
/// under load, a stranger without a certificate, one with a certificate of another CA, one
/// with the certificate of a node that was added and then removed, and one in plain TCP each
/// send a forged Vote, a truncating AppendEntries and an InstallSnapshot chunk to every node's
/// peer port. None gets an answer (the connection is closed before any frame is decoded), no
/// node ever moves to the forged term, the refusals are counted in `/metrics` under
/// `handshake` and `not_member`, and the load's history checks pass on every replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_cannot_speak_raft_to_a_cluster_under_load() {
    let _one = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let mut cluster = cluster(root.path());
    cluster.found(&[1, 2, 3]).expect("nodes start");
    let leader = cluster
        .wait_leader(Duration::from_secs(30))
        .await
        .expect("a leader");
    let ca = cluster.pki_dir().expect("TLS is on").join("ca.pem");

    tracing::info!("--- node 4 joins and leaves: its certificate stays valid, its membership not");
    cluster
        .add(4, &std::collections::BTreeMap::new())
        .expect("node 4 configured");
    cluster.start(4).expect("node 4 starts");
    let operator = cluster.operator().expect("the operator");
    tally::cluster_admin::add_node(
        &operator,
        &cluster.addr(leader).expect("leader"),
        4,
        &cluster.member(4).expect("node 4"),
    )
    .await
    .expect("node 4 added");
    tally::cluster_admin::remove_node(&operator, &cluster.addr(leader).expect("leader"), 4)
        .await
        .expect("node 4 removed");
    cluster.kill(4).expect("node 4 stops");
    let pki = cluster.pki_dir().expect("TLS is on").to_owned();

    let elsewhere = root.path().join("other-ca");
    pki::make_ca(&elsewhere, "impostor").expect("another CA");
    let impostor = pki::make_node(&elsewhere, 1, &[]).expect("a node 1 of its own");
    let strangers = [
        Stranger::NoCertificate(ClientTls::new(&ca, None).expect("tls")),
        Stranger::OtherCa(ClientTls::new(&ca, Some((&impostor.cert, &impostor.key))).expect("tls")),
        Stranger::RemovedNode(
            ClientTls::new(
                &ca,
                Some((&pki.join("node-4.pem"), &pki.join("node-4.key"))),
            )
            .expect("tls"),
        ),
        Stranger::Plain,
    ];

    let load = common::start_load(&cluster, &[1, 2, 3], 12, true);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before: Vec<String> = [1, 2, 3]
        .iter()
        .map(|id| cluster.admin_get(*id, "/metrics").expect("metrics").1)
        .collect();

    tracing::info!("--- every stranger tries every request on every node");
    let requests = forged_requests();
    for id in [1u64, 2, 3] {
        let addr = cluster.peer_addr(id).expect("peer address");
        for stranger in &strangers {
            // The removed node is refused by name; the others at the handshake.
            let stranger = match stranger {
                Stranger::RemovedNode(tls) => {
                    Stranger::RemovedNode(tls.clone().with_server_name(&format!("node-{id}.tally")))
                }
                Stranger::NoCertificate(tls) => Stranger::NoCertificate(
                    tls.clone().with_server_name(&format!("node-{id}.tally")),
                ),
                Stranger::OtherCa(tls) => {
                    Stranger::OtherCa(tls.clone().with_server_name(&format!("node-{id}.tally")))
                }
                Stranger::Plain => Stranger::Plain,
            };
            for (what, request) in &requests {
                let answer = stranger.try_request(&addr, request).await;
                assert!(
                    answer.is_none(),
                    "node {id} answered a {what} from {}: {answer:?}",
                    stranger.name()
                );
            }
        }
    }

    for (index, id) in [1u64, 2, 3].iter().enumerate() {
        let after = cluster.admin_get(*id, "/metrics").expect("metrics").1;
        let handshake = refused(&after, "handshake") - refused(&before[index], "handshake");
        let not_member = refused(&after, "not_member") - refused(&before[index], "not_member");
        // No certificate, another CA and plain TCP: three requests each.
        assert!(
            handshake >= 9.0,
            "node {id}: {handshake} handshake refusals counted"
        );
        assert!(
            not_member >= 3.0,
            "node {id}: {not_member} non-member refusals counted"
        );
    }

    let report = common::finish_load(load);
    common::assert_checks_pass(&report);
    let states = cluster.states(false).await;
    assert_eq!(states.len(), 3, "every member answers: {states:?}");
    for state in states.values() {
        assert!(
            state.term < FORGED_TERM,
            "node {} moved to the forged term: {state:?}",
            state.node_id
        );
    }
    cluster.shutdown(Duration::from_secs(10)).expect("stopped");
}

/// Opens `count` TCP connections to `addr` and sends nothing on them.
async fn idle_connections(addr: &str, count: usize) -> Vec<TcpStream> {
    let mut connections = Vec::with_capacity(count);
    for _ in 0..count {
        if let Ok(stream) = TcpStream::connect(addr).await {
            connections.push(stream);
        }
    }
    connections
}

/// Whether the node has closed `stream` (read returns end of stream or an error).
fn closed_by_node(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.try_read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => error.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// Proves a flood of idle connections neither stops replication nor a client: with 2,000 idle
/// TCP connections to the leader's client port and 2,000 to its peer port (and as many to a
/// follower's peer port), a client's writes keep succeeding, a follower killed and restarted
/// during the flood catches up with the leader, and every idle connection is closed by the
/// node within the documented first-frame timeout (5 s) plus slack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_floods_stop_neither_replication_nor_clients() {
    let _one = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let mut cluster = cluster(root.path());
    cluster.found(&[1, 2, 3]).expect("nodes start");
    let leader = cluster
        .wait_leader(Duration::from_secs(30))
        .await
        .expect("a leader");
    let follower = [1u64, 2, 3]
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    let client = Client::connect(
        ClientConfig::new(cluster.addrs(), 1, cluster.operator_credential().to_vec())
            .with_tls(cluster.client_tls().expect("the local CA")),
    )
    .await
    .expect("a session");
    let accounts: Vec<_> = (1..=100u128)
        .map(|id| tally_engine::records::Account {
            id,
            ledger: 1,
            code: 1,
            ..Default::default()
        })
        .collect();
    let created = client
        .create_accounts(&accounts)
        .await
        .expect("accounts created");
    assert!(created.is_empty(), "{created:?}");

    tracing::info!("--- the flood");
    let flood_started = Instant::now();
    let mut flood = idle_connections(&cluster.addr(leader).expect("addr"), 2000).await;
    flood.extend(idle_connections(&cluster.peer_addr(leader).expect("addr"), 2000).await);
    flood.extend(idle_connections(&cluster.peer_addr(follower).expect("addr"), 2000).await);
    assert!(flood.len() >= 5000, "{} connections opened", flood.len());

    tracing::info!("--- writes go on; a follower is killed and restarted");
    let mut next_id = 1u128;
    let mut write = |count: u128| {
        let transfers: Vec<_> = (next_id..next_id + count)
            .map(|id| tally_engine::records::Transfer {
                id: id + (1 << 64),
                debit_account_id: 1 + id % 50,
                credit_account_id: 51 + id % 50,
                amount: 1,
                ledger: 1,
                code: 1,
                ..Default::default()
            })
            .collect();
        next_id += count;
        transfers
    };
    for step in [
        "during the flood",
        "with a follower down",
        "after the restart",
    ] {
        match step {
            "with a follower down" => cluster.kill(follower).expect("follower killed"),
            "after the restart" => cluster.start(follower).expect("follower restarts"),
            _ => {}
        }
        let transfers = write(500);
        let created = client
            .create_transfers(&transfers)
            .await
            .unwrap_or_else(|error| panic!("writes {step}: {error}"));
        assert!(created.is_empty(), "writes {step}: {created:?}");
    }

    tracing::info!("--- the follower catches up");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let states = cluster.states(false).await;
        let applied = |id: u64| states.get(&id).and_then(|state| state.last_applied);
        if let (Some(leader_at), Some(follower_at)) = (applied(leader), applied(follower)) {
            if follower_at.index >= leader_at.index {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "follower {follower} did not catch up: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    tracing::info!("--- the idle connections are gone within the timeout");
    let limit = Duration::from_secs(5) + Duration::from_secs(10);
    loop {
        let open = flood
            .iter()
            .filter(|stream| !closed_by_node(stream))
            .count();
        if open == 0 {
            break;
        }
        assert!(
            flood_started.elapsed() < limit + Duration::from_secs(20),
            "{open} idle connections still open after {:?}",
            flood_started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(flood);
    let exposition = cluster.admin_get(leader, "/metrics").expect("metrics").1;
    let timeouts = metric_value(
        &exposition,
        "tally_connections_refused_total{listener=\"client\",reason=\"timeout\"}",
    )
    .unwrap_or(0.0)
        + refused(&exposition, "timeout");
    assert!(timeouts > 0.0, "no timeout refusals counted");
    cluster.shutdown(Duration::from_secs(10)).expect("stopped");
}

/// Proves the client side of TLS is strict and says why: a plaintext client to a TLS client
/// port, a TLS client to a plaintext port, and a TLS client that dials a name the node's
/// certificate does not carry each fail with an error that names the cause, promptly (no
/// minute of retries), and a client with the right CA and name gets a session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_refuse_the_wrong_kind_of_port_and_the_wrong_name() {
    let _one = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let mut secure = cluster(&root.path().join("tls"));
    secure.found(&[1]).expect("node starts");
    secure
        .wait_leader(Duration::from_secs(30))
        .await
        .expect("a leader");
    let mut plain = cluster(&root.path().join("plain")).plaintext();
    plain.found(&[1]).expect("node starts");
    plain
        .wait_leader(Duration::from_secs(30))
        .await
        .expect("a leader");
    let tls = secure.client_tls().expect("CA").expect("TLS on");
    let config = |cluster: &LocalCluster, tls: Option<ClientTls>| {
        let mut config =
            ClientConfig::new(cluster.addrs(), 1, cluster.operator_credential().to_vec())
                .with_tls(tls);
        config.deadline = Duration::from_secs(8);
        config
    };

    let started = Instant::now();
    let error = Client::connect(config(&secure, None))
        .await
        .err()
        .expect("plain TCP to a TLS port fails");
    assert!(
        matches!(&error, ClientError::Tls(message) if message.contains("serves TLS")),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    let error = Client::connect(config(&plain, Some(tls.clone())))
        .await
        .err()
        .expect("TLS to a plaintext port fails");
    assert!(error.to_string().contains("plain TCP"), "{error}");

    let started = Instant::now();
    let error = Client::connect(config(
        &secure,
        Some(tls.clone().with_server_name("bank.example")),
    ))
    .await
    .err()
    .expect("a certificate for another name is refused");
    assert!(
        matches!(&error, ClientError::Tls(message) if message.contains("does not name")),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    let elsewhere = root.path().join("other-ca");
    pki::make_ca(&elsewhere, "impostor").expect("another CA");
    let stranger_ca = ClientTls::new(&elsewhere.join("ca.pem"), None).expect("tls");
    let error = Client::connect(config(&secure, Some(stranger_ca)))
        .await
        .err()
        .expect("a node the CA does not vouch for is refused");
    assert!(
        matches!(&error, ClientError::Tls(message) if message.contains("trusted CA")),
        "{error}"
    );

    Client::connect(config(&secure, Some(tls)))
        .await
        .expect("the right CA and name get a session");
    secure.shutdown(Duration::from_secs(10)).expect("stopped");
    plain.shutdown(Duration::from_secs(10)).expect("stopped");
}
