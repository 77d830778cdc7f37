//! One real openraft node with no network (a single-node cluster), on a real disk: for tests
//! of what sits on top of openraft (the batcher, the client service) without processes.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tally_engine::EngineConfig;
use tally_raft::replication::types::Node;
use tally_raft::replication::{open_storage, AppliedView, TypeConfig};
use tally_raft::storage::open_default;
use tally_raft::WalConfig;

pub type Raft = openraft::Raft<TypeConfig>;

/// The network of a single-node cluster: never used, every call fails.
pub struct NoNetwork;

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

pub const TIMEOUT: Option<Duration> = Some(Duration::from_secs(10));

/// Open the node's storage in `dir` and start openraft on it.
pub async fn start(dir: &Path) -> (Raft, AppliedView) {
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

/// [`start`], then make the node the leader of a fresh one-node cluster.
pub async fn start_leader(dir: &Path) -> (Raft, AppliedView) {
    let (raft, view) = start(dir).await;
    raft.initialize(std::collections::BTreeMap::from([(
        1,
        Node::new("127.0.0.1:1", "127.0.0.1:2"),
    )]))
    .await
    .expect("initialized");
    raft.wait(TIMEOUT)
        .current_leader(1, "node 1 leads")
        .await
        .expect("a leader");
    (raft, view)
}

/// An account record on ledger 1 with code 1.
pub fn account(id: u128) -> [u8; 128] {
    tally_engine::records::Account {
        id,
        ledger: 1,
        code: 1,
        ..Default::default()
    }
    .encode()
}

/// A client batch of `records`.
pub fn batch(
    operation: tally_engine::Operation,
    records: Vec<[u8; 128]>,
) -> tally_raft::replication::ClientBatch {
    tally_raft::replication::ClientBatch {
        operation,
        body: bytes::Bytes::from(records.concat()),
        origin: None,
    }
}
