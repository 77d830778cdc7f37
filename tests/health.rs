//! A node tells the truth about its health: a node whose WAL failed reports it through
//! `Probe::health` and `/health`, and stops its Raft, so `tally node` exits and its supervisor
//! restarts it (docs/operations.md). On the simulated disk, which can fail a sync on demand.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tally::node::{Node, NodeConfig};
use tally_engine::{EngineConfig, Operation};
use tally_gateway::{BatcherConfig, GatewayConfig};
use tally_raft::replication::types::Node as Member;
use tally_raft::replication::{ClientBatch, Request};
use tally_raft::storage::sim::SimDisk;
use tally_raft::storage::Disk;
use tally_raft::WalConfig;

const DEADLINE: Duration = Duration::from_secs(10);

fn wal_config() -> WalConfig {
    WalConfig {
        segment_bytes: 256 * 1024,
        entry_payload_bytes_max: 64 * 1024,
    }
}

/// A batch creating one account on ledger 1.
fn account_batch(id: u128) -> ClientBatch {
    let account = tally_engine::records::Account {
        id,
        ledger: 1,
        code: 1,
        ..Default::default()
    };
    ClientBatch {
        operation: Operation::CreateAccounts,
        body: bytes::Bytes::copy_from_slice(&account.encode()),
        origin: None,
    }
}

/// A one-node cluster on the simulated disk `sim`, leading.
async fn leader(sim: &SimDisk) -> Node {
    let disk: Arc<dyn Disk> = Arc::new(sim.clone());
    let config = NodeConfig {
        id: 1,
        listen: "127.0.0.1:0".parse().expect("address"),
        peer_listen: "127.0.0.1:0".parse().expect("address"),
        tls: None,
        data_dir: Path::new("/node").to_path_buf(),
        bootstrap: BTreeMap::from([(1, Member::new("127.0.0.1:1", "127.0.0.1:2"))]),
        dial: BTreeMap::new(),
        raft: tally_raft::net::recommended_config("tally-health"),
        checkpoint_key: None,
        snapshot_every_bytes: None,
        wal: wal_config(),
        batcher: BatcherConfig::default(),
        engine: EngineConfig::default(),
        gateway: GatewayConfig::default(),
    };
    let node = Node::start(config, disk).await.expect("node starts");
    node.raft()
        .wait(Some(DEADLINE))
        .current_leader(1, "node 1 leads")
        .await
        .expect("a leader");
    node
}

/// Whether the other side closes `stream` (reads end or fail) within `within`.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buffer = [0u8; 256];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Proves the admin HTTP port cannot be held by whoever reaches it: past
/// `ADMIN_CONNECTIONS_MAX` connections one more is closed at once; a connection that sends
/// nothing, or only part of a request's headers, is closed within `ADMIN_HEADER_READ_TIMEOUT`;
/// and once they are gone `/health` answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_port_caps_connections_and_times_out_slow_headers() {
    use tally::admin_http::{ADMIN_CONNECTIONS_MAX, ADMIN_HEADER_READ_TIMEOUT};
    use tokio::io::AsyncWriteExt;
    let sim = SimDisk::new();
    let node = leader(&sim).await;
    let listener = tally::admin_http::bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("bound");
    let addr = listener.local_addr().expect("address").to_string();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = tally::admin_http::serve(listener, node.probe(), stopped);
    let get = |path: &'static str| {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || tally::local_cluster::http_get(&addr, path))
    };
    assert_eq!(get("/health").await.expect("ran").expect("answered").0, 200);

    let mut idle = Vec::new();
    for n in 0..ADMIN_CONNECTIONS_MAX {
        let mut stream = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connects");
        if n % 2 == 1 {
            // Half of them start a request and stall in its headers.
            stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                .await
                .expect("written");
        }
        idle.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut one_more = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connects");
    one_more
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("written");
    assert!(
        closed_within(&mut one_more, Duration::from_secs(2)).await,
        "a connection past the cap is closed at once"
    );
    let started = tokio::time::Instant::now();
    for stream in &mut idle {
        assert!(
            closed_within(stream, ADMIN_HEADER_READ_TIMEOUT + Duration::from_secs(3)).await,
            "an idle or stalled connection is closed"
        );
    }
    let waited = started.elapsed();
    assert!(
        waited <= ADMIN_HEADER_READ_TIMEOUT + Duration::from_secs(3),
        "closed after {waited:?}"
    );
    let (status, body) = get("/health").await.expect("ran").expect("answered");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let _ = stop.send(true);
    server.await.expect("the admin server stops");
    let _ = node.shutdown().await;
}

/// Proves a node whose WAL fails (the simulated disk fails the sync of the next group commit)
/// reports it: `Probe::health` is `Err` naming the poisoned WAL, `Probe::unhealthy` returns,
/// and the node's Raft has stopped (fatal), so writes are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_wal_makes_the_node_unhealthy_and_stops_its_raft() {
    let sim = SimDisk::new();
    let node = leader(&sim).await;
    let probe = node.probe();
    assert_eq!(probe.health(), Ok(()));
    let write = |id| {
        node.raft().client_write(Request {
            timestamp: 1_700_000_000_000_000_000,
            batches: vec![account_batch(id)],
            log: None,
        })
    };
    write(1).await.expect("a healthy node commits");

    tracing::info!("--- the disk fails the next sync");
    sim.fail_next_sync();
    let failed = tokio::time::timeout(DEADLINE, write(2))
        .await
        .expect("the write is answered");
    assert!(failed.is_err(), "a write committed on a failed disk");
    let reason = tokio::time::timeout(DEADLINE, probe.unhealthy())
        .await
        .expect("the failure is noticed");
    let health = probe.health();
    assert!(
        matches!(&health, Err(why) if why.contains("poisoned")),
        "health says {health:?}, reason {reason}"
    );
    assert!(
        node.raft().metrics().borrow().running_state.is_err(),
        "the node's Raft still runs on a poisoned WAL"
    );
    assert!(probe.readiness().is_err());
    let refused = tokio::time::timeout(DEADLINE, write(3))
        .await
        .expect("the write is answered");
    assert!(refused.is_err(), "a stopped node took a write");
    // Shutting down a node whose Raft already stopped still ends every task.
    let _ = node.shutdown().await;
}
