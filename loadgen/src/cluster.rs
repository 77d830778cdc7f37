//! The load generator's view of a cluster: submit a batch, read records and state from one
//! replica. A small trait so the transport can change without touching workloads or checks.
//! Writes go through the gateway (`tally_gateway::client`: a session, packing, safe retries),
//! like any exchange's; the checks' per-replica reads use the operators' node protocol, the
//! only way to ask one replica for what it has applied.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use tally_engine::records::{Account, Transfer};
use tally_engine::{EventResult, LedgerTotals, Operation};
use tally_raft::net::ClientTls;
use tally_raft::node::client::{Client, ClientError, Connection, RetryPolicy};
use tally_raft::node::protocol::{Status, STATE_AUDIT};

/// A committed batch's answer: the first event's timestamp (event `i` got `timestamp_first + i`)
/// and the failed events by index, in index order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    pub timestamp_first: u64,
    pub failures: Vec<(u32, EventResult)>,
}

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

    fn state(&self, node: &str) -> impl Future<Output = Result<ReplicaState, ClusterError>> + Send;

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
}

/// Most ids one lookup asks for (the node protocol's limit).
pub const LOOKUP_IDS_MAX: usize = tally_raft::node::protocol::LOOKUP_IDS_MAX;

/// [`Cluster`] on the node client protocol: writes through a leader-following [`Client`],
/// reads through one [`Connection`] per replica.
pub struct NodeCluster {
    addrs: Vec<String>,
    /// Where writes go: the gateway when given, else the node protocol's client.
    gateway: Option<tally_gateway::client::Client>,
    /// The operator credential the node protocol asks of every request.
    credential: Vec<u8>,
    /// TLS to the nodes' client listeners (`None`: plain TCP).
    tls: Option<ClientTls>,
    client: Client,
    readers: tokio::sync::Mutex<Vec<(String, Arc<Connection>)>>,
}

impl NodeCluster {
    /// The cluster at `addrs`, as the operator holding `credential`, over TLS verified
    /// against `tls` (plain TCP if `None`).
    pub fn new(
        addrs: Vec<String>,
        credential: &[u8],
        tls: Option<ClientTls>,
        policy: RetryPolicy,
    ) -> NodeCluster {
        NodeCluster {
            client: Client::new(addrs.clone(), credential, policy).with_tls(tls.clone()),
            credential: credential.to_vec(),
            tls,
            gateway: None,
            addrs,
            readers: tokio::sync::Mutex::new(Vec::new()),
        }
    }

    /// Send writes through the gateway's client (as a client would) instead of the node
    /// protocol.
    pub fn with_gateway(mut self, gateway: tally_gateway::client::Client) -> NodeCluster {
        self.gateway = Some(gateway);
        self
    }

    async fn reader(&self, node: &str) -> Result<Arc<Connection>, ClusterError> {
        let mut readers = self.readers.lock().await;
        readers.retain(|(_, connection)| connection.is_open());
        if let Some((_, connection)) = readers.iter().find(|(addr, _)| addr == node) {
            return Ok(Arc::clone(connection));
        }
        let connection = Arc::new(
            Connection::connect_as(node, &self.credential, self.tls.as_ref())
                .await
                .map_err(unknown)?,
        );
        readers.push((node.to_owned(), Arc::clone(&connection)));
        Ok(connection)
    }
}

fn unknown(error: ClientError) -> ClusterError {
    match error {
        ClientError::Refused(refusal)
            if matches!(refusal.status, Status::BadRequest | Status::BatchRefused) =>
        {
            ClusterError::Refused(refusal.to_string())
        }
        other => ClusterError::Unknown(other.to_string()),
    }
}

fn decode_all<T>(
    records: Vec<[u8; 128]>,
    decode: impl Fn(&[u8; 128]) -> Result<T, tally_engine::RecordError>,
) -> Result<Vec<T>, ClusterError> {
    records
        .iter()
        .map(|record| decode(record).map_err(|e| ClusterError::Unknown(format!("{e:?}"))))
        .collect()
}

impl Cluster for NodeCluster {
    async fn submit(&self, operation: Operation, body: Bytes) -> Result<Answer, ClusterError> {
        if let Some(gateway) = &self.gateway {
            use tally_gateway::client::ClientError as GatewayError;
            use tally_gateway::protocol::Status as GatewayStatus;
            let created =
                gateway
                    .create_raw(operation, body)
                    .await
                    .map_err(|error| match error {
                        GatewayError::Refused {
                            status: GatewayStatus::BadRequest | GatewayStatus::BatchRefused,
                            refusal,
                        } => ClusterError::Refused(refusal.message),
                        other => ClusterError::Unknown(other.to_string()),
                    })?;
            return Ok(Answer {
                timestamp_first: created.timestamp_first,
                failures: created.failures,
            });
        }
        let answer = self.client.submit(operation, body).await.map_err(unknown)?;
        Ok(Answer {
            timestamp_first: answer.timestamp_first,
            failures: answer.failures,
        })
    }

    fn nodes(&self) -> Vec<String> {
        self.addrs.clone()
    }

    async fn state(&self, node: &str) -> Result<ReplicaState, ClusterError> {
        let state = self
            .reader(node)
            .await?
            .state(STATE_AUDIT)
            .await
            .map_err(unknown)?;
        Ok(ReplicaState {
            node: node.to_owned(),
            applied_index: state.last_applied.map_or(0, |log_id| log_id.index),
            digest: state.digest,
            accounts: state.accounts,
            transfers: state.transfers,
            trades: state.trades,
            ledger_totals: state.ledger_totals,
        })
    }

    async fn lookup_transfers(
        &self,
        node: &str,
        ids: Vec<u128>,
    ) -> Result<Vec<Transfer>, ClusterError> {
        let connection = self.reader(node).await?;
        let records = connection.lookup_transfers(0, ids).await.map_err(unknown)?;
        decode_all(records, Transfer::decode)
    }

    async fn lookup_accounts(
        &self,
        node: &str,
        ids: Vec<u128>,
    ) -> Result<Vec<Account>, ClusterError> {
        let connection = self.reader(node).await?;
        let records = connection.lookup_accounts(0, ids).await.map_err(unknown)?;
        decode_all(records, Account::decode)
    }
}
