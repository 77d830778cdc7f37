//! A real openraft `Raft` on Tally's storage, as one node (no network yet: that is the next
//! slice): the type config, log store and state machine work together end to end, from
//! `client_write` to the engine's per-batch results, through a snapshot and a restart.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tally_engine::records::{Account, Transfer};
use tally_engine::{EngineConfig, EventResult, Operation};
use tally_raft::replication::types::Node;
use tally_raft::replication::{open_storage, AppliedView, ClientBatch, Request, TypeConfig};
use tally_raft::storage::open_default;
use tally_raft::WalConfig;

type Raft = openraft::Raft<TypeConfig>;

/// The network of a single-node cluster: never used, every call fails.
struct NoNetwork;

fn unreachable<E: std::error::Error>() -> RPCError<u64, Node, E> {
    RPCError::Unreachable(Unreachable::new(&io::Error::other(
        "a single-node test has no network",
    )))
}

impl RaftNetworkFactory<TypeConfig> for NoNetwork {
    type Network = NoNetwork;

    async fn new_client(&mut self, _target: u64, _node: &Node) -> NoNetwork {
        NoNetwork
    }
}

impl RaftNetwork<TypeConfig> for NoNetwork {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, Node, RaftError<u64>>> {
        Err(unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, Node, RaftError<u64, InstallSnapshotError>>,
    > {
        Err(unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, Node, RaftError<u64>>> {
        Err(unreachable())
    }
}

const TIMEOUT: Option<Duration> = Some(Duration::from_secs(10));

/// Open the node's storage in `dir` and start openraft on it.
async fn start(dir: &Path) -> (Raft, AppliedView) {
    let wal_config = WalConfig {
        segment_bytes: 1024 * 1024,
        entry_payload_bytes_max: 256 * 1024,
    };
    let (log_store, state_machine) =
        open_storage(open_default(), dir, wal_config, EngineConfig::default())
            .expect("storage opens");
    let view = state_machine.view();
    let config = openraft::Config {
        cluster_name: "tally-single-node-test".to_owned(),
        ..openraft::Config::default()
    };
    let config = Arc::new(config.validate().expect("valid config"));
    let raft = Raft::new(1, config, NoNetwork, log_store, state_machine)
        .await
        .expect("raft starts");
    (raft, view)
}

fn batch(operation: Operation, records: Vec<[u8; 128]>) -> ClientBatch {
    ClientBatch {
        operation,
        body: Bytes::from(records.concat()),
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

/// Proves one node elects itself, commits a request of several client batches and returns
/// each batch's own result (failures by index); that a snapshot is built through openraft;
/// and that after a restart the node restores the snapshot, re-applies the log after it and
/// reaches the same state digest, then keeps committing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_commits_snapshots_and_restarts() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (raft, view) = start(dir.path()).await;
    raft.initialize(BTreeMap::from([(
        1,
        Node {
            addr: "127.0.0.1:1".to_owned(),
        },
    )]))
    .await
    .expect("initialized");
    raft.wait(TIMEOUT)
        .current_leader(1, "node 1 leads")
        .await
        .expect("a leader");

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
            },
        ],
    };
    let written = raft.client_write(request).await.expect("committed");
    let results = &written.data.batches;
    assert_eq!(results.len(), 3, "one result per client batch");
    assert_eq!(results[0].as_ref().expect("accounts").failures, vec![]);
    assert_eq!(
        results[1].as_ref().expect("transfers").failures,
        vec![(1, EventResult::CreditAccountNotFound)]
    );
    assert!(results[2].is_err(), "a body of partial records is refused");

    raft.trigger().snapshot().await.expect("snapshot triggered");
    raft.wait(TIMEOUT)
        .snapshot(written.log_id, "snapshot built")
        .await
        .expect("a snapshot");

    let more = Request {
        timestamp: 1_700_000_001_000_000_000,
        batches: vec![batch(Operation::CreateTransfers, vec![transfer(103, 4, 1)])],
    };
    let last = raft.client_write(more).await.expect("committed");
    let (applied, digest) = view.digest();
    assert_eq!(applied, Some(last.log_id));
    raft.shutdown().await.expect("shut down");
    drop(raft);

    tracing::info!("--- restart from disk");
    let (raft, view) = start(dir.path()).await;
    assert_eq!(
        view.digest().0,
        Some(written.log_id),
        "restored from the snapshot"
    );
    raft.wait(TIMEOUT)
        .current_leader(1, "node 1 leads again")
        .await
        .expect("a leader");
    raft.wait(TIMEOUT)
        .applied_index_at_least(Some(last.log_id.index), "log re-applied")
        .await
        .expect("re-applied");
    assert_eq!(view.read(|state| state.engine().digest()), digest);

    let after = Request {
        timestamp: 1_700_000_002_000_000_000,
        batches: vec![batch(Operation::CreateTransfers, vec![transfer(104, 1, 3)])],
    };
    let written = raft
        .client_write(after)
        .await
        .expect("committed after restart");
    assert_eq!(written.data.batches.len(), 1);
    assert_eq!(
        written.data.batches[0].as_ref().expect("ok").failures,
        vec![]
    );
    raft.shutdown().await.expect("shut down");
}
