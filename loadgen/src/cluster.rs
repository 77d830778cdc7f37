//! The load generator's view of a cluster: submit a batch, read records and state from one
//! replica. A small trait so the transport can change without touching workloads or checks.
//! Everything goes through the gateway's client, as an operator: writes through one
//! leader-following client (a session, packing, safe retries), like any exchange's; the
//! checks' per-replica reads through one client per replica whose reads are local — the way to
//! ask one replica for what it has applied.

use std::future::Future;

use bytes::Bytes;
use tally_client::protocol::{NodeState, Status};
use tally_client::{Client, ClientConfig, ClientError, Reads};
use tally_engine::records::{Account, Transfer};
use tally_engine::{LedgerTotals, Operation, QueryFilter, QueryPage};

/// A committed batch's answer (the client library's): the commit index of the entry that
/// applied it, the first event's timestamp (event `i` got `timestamp_first + i`) and the
/// failed events by index, in index order.
pub type Answer = tally_client::Created;

/// Why a submit or read got no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The cluster refused the batch as a whole and says nothing changed.
    #[error("refused: {0}")]
    Refused(String),
    /// No answer: the batch may or may not have been applied.
    #[error("outcome unknown: {0}")]
    Unknown(String),
}

/// One replica's state, served from its own applied state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaState {
    pub node: String,
    /// Index of the last applied log entry (0 before any).
    pub applied_index: u64,
    pub digest: [u8; 32],
    pub accounts: u64,
    pub transfers: u64,
    pub trades: u64,
    pub ledger_totals: Vec<LedgerTotals>,
    /// The replica was the leader when read. The checks read back from a follower where they
    /// can: an operator's reads there are not recorded in the access trail (at the leader,
    /// each page would be a Raft entry).
    pub leader: bool,
    /// The replica's Raft view when read (role, term, leader, commit index, last log index),
    /// for a failure to show; empty where there is none.
    pub raft: String,
}

/// A cluster as the load generator uses it. Reads name one replica (`node` is one of
/// [`Cluster::nodes`]) and are local: what that replica has applied.
pub trait Cluster: Send + Sync + 'static {
    /// Submit one batch to the leader, retrying (with the same ids) where the outcome is
    /// unknown, until the transport gives up.
    fn submit(
        &self,
        operation: Operation,
        body: Bytes,
    ) -> impl Future<Output = Result<Answer, ClusterError>> + Send;

    /// Every replica's name (its address).
    fn nodes(&self) -> Vec<String>;

    /// The replica's whole state as the checks compare it: O(state) on the replica (its
    /// digest and per-ledger totals).
    fn state(&self, node: &str) -> impl Future<Output = Result<ReplicaState, ClusterError>> + Send;

    /// The last log index the replica applied: cheap, for polling until the replicas agree
    /// (`check::settle`).
    fn applied_index(&self, node: &str) -> impl Future<Output = Result<u64, ClusterError>> + Send;

    /// The transfers among `ids` that `node` has stored (at most `LOOKUP_IDS_MAX` ids).
    fn lookup_transfers(
        &self,
        node: &str,
        ids: Vec<u128>,
    ) -> impl Future<Output = Result<Vec<Transfer>, ClusterError>> + Send;

    /// The accounts among `ids` that `node` has stored (at most `LOOKUP_IDS_MAX` ids).
    fn lookup_accounts(
        &self,
        node: &str,
        ids: Vec<u128>,
    ) -> impl Future<Output = Result<Vec<Account>, ClusterError>> + Send;

    /// One page of the transfers `node` stores that match `filter`, in timestamp order, and
    /// where the next page starts (`QueryFilter::after`): how the checks stream a replica's
    /// records back without naming them.
    fn query_transfers(
        &self,
        node: &str,
        filter: QueryFilter,
    ) -> impl Future<Output = Result<QueryPage<Transfer>, ClusterError>> + Send;

    /// One page of the accounts `node` stores that match `filter` (see `query_transfers`).
    fn query_accounts(
        &self,
        node: &str,
        filter: QueryFilter,
    ) -> impl Future<Output = Result<QueryPage<Account>, ClusterError>> + Send;

    /// The transfers among `ids`, read linearizably: through the leader, after it confirmed
    /// its leadership, seeing every write acknowledged before the read.
    fn lookup_transfers_linearizable(
        &self,
        ids: Vec<u128>,
    ) -> impl Future<Output = Result<Vec<Transfer>, ClusterError>> + Send;
}

/// Most ids one lookup asks for (the gateway's limit).
pub const LOOKUP_IDS_MAX: usize = tally_client::limits::LOOKUP_IDS_MAX;

/// [`Cluster`] on the gateway: writes through a leader-following [`Client`], reads through one
/// local-reading client per replica. The credential must be an operator's (reads of every
/// account, and each replica's state).
pub struct GatewayCluster {
    addrs: Vec<String>,
    writer: Client,
    /// The writer's config, for the per-replica readers.
    config: ClientConfig,
    readers: tokio::sync::Mutex<Vec<(String, Client)>>,
}

impl GatewayCluster {
    /// Register the writer's session with the cluster `config` names.
    pub async fn connect(config: ClientConfig) -> Result<GatewayCluster, ClientError> {
        let writer = Client::connect(config.clone()).await?;
        Ok(GatewayCluster {
            addrs: config.addrs.clone(),
            writer,
            config,
            readers: tokio::sync::Mutex::new(Vec::new()),
        })
    }

    /// End every session this cluster holds (the writer's and each reader's).
    pub async fn close(&self) {
        self.writer.close().await;
        for (_, reader) in self.readers.lock().await.iter() {
            reader.close().await;
        }
    }

    /// The client reading from replica `node` alone.
    async fn reader(&self, node: &str) -> Result<Client, ClusterError> {
        let mut readers = self.readers.lock().await;
        if let Some((_, client)) = readers.iter().find(|(addr, _)| addr == node) {
            return Ok(client.clone());
        }
        let mut config = self.config.clone().with_reads(Reads::Local);
        config.addrs = vec![node.to_owned()];
        let client = Client::connect(config).await.map_err(unknown)?;
        readers.push((node.to_owned(), client.clone()));
        Ok(client)
    }

    /// `node`'s own state (`audit`: with its digest and ledger totals, O(state) on the node).
    async fn node_state(&self, node: &str, audit: bool) -> Result<NodeState, ClusterError> {
        self.reader(node)
            .await?
            .node_state(audit)
            .await
            .map_err(unknown)
    }
}

/// A refusal on the merits says nothing changed; anything else leaves the outcome unknown.
fn unknown(error: ClientError) -> ClusterError {
    match error {
        ClientError::Refused {
            status: Status::BadRequest | Status::BatchRefused,
            refusal,
        } => ClusterError::Refused(refusal.message),
        other => ClusterError::Unknown(other.to_string()),
    }
}

impl Cluster for GatewayCluster {
    async fn submit(&self, operation: Operation, body: Bytes) -> Result<Answer, ClusterError> {
        self.writer
            .create_raw(operation, body)
            .await
            .map_err(unknown)
    }

    async fn lookup_transfers_linearizable(
        &self,
        ids: Vec<u128>,
    ) -> Result<Vec<Transfer>, ClusterError> {
        // The writer follows the leader and reads linearizably (its config's default).
        self.writer.lookup_transfers(&ids).await.map_err(unknown)
    }

    fn nodes(&self) -> Vec<String> {
        self.addrs.clone()
    }

    async fn state(&self, node: &str) -> Result<ReplicaState, ClusterError> {
        let state = self.node_state(node, true).await?;
        let raft = format!(
            "node {} {} term {} leader {:?} committed {:?} last log {:?}",
            state.node_id,
            state.role,
            state.term,
            state.leader,
            state.committed_index,
            state.last_log_index
        );
        Ok(ReplicaState {
            node: node.to_owned(),
            applied_index: state.applied_index(),
            digest: state.digest,
            accounts: state.accounts,
            transfers: state.transfers,
            trades: state.trades,
            ledger_totals: state.ledger_totals,
            leader: state.role == "Leader",
            raft,
        })
    }

    async fn applied_index(&self, node: &str) -> Result<u64, ClusterError> {
        Ok(self.node_state(node, false).await?.applied_index())
    }

    async fn lookup_transfers(
        &self,
        node: &str,
        ids: Vec<u128>,
    ) -> Result<Vec<Transfer>, ClusterError> {
        self.reader(node)
            .await?
            .lookup_transfers(&ids)
            .await
            .map_err(unknown)
    }

    async fn lookup_accounts(
        &self,
        node: &str,
        ids: Vec<u128>,
    ) -> Result<Vec<Account>, ClusterError> {
        self.reader(node)
            .await?
            .lookup_accounts(&ids)
            .await
            .map_err(unknown)
    }

    async fn query_transfers(
        &self,
        node: &str,
        filter: QueryFilter,
    ) -> Result<QueryPage<Transfer>, ClusterError> {
        self.reader(node)
            .await?
            .query_transfers(&filter)
            .await
            .map_err(unknown)
    }

    async fn query_accounts(
        &self,
        node: &str,
        filter: QueryFilter,
    ) -> Result<QueryPage<Account>, ClusterError> {
        self.reader(node)
            .await?
            .query_accounts(&filter)
            .await
            .map_err(unknown)
    }
}
