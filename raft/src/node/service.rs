//! The node's client protocol, served (`net::ClientHandler`) next to the replicas' RPCs.
//!
//! A submit is queued into the batcher in the connection's order (waiting for room there is
//! the back-pressure a client feels); its answer is sent when its entry is committed and
//! applied. Reads are answered from this node's applied state: after openraft's read index
//! (`ensure_linearizable`) when the request asks for a linearizable read — which only the
//! leader can serve — or at once otherwise, which on a follower may be stale. Nothing here
//! checks balances or records: the engine does, in `apply`, on every replica alike.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::RwLock;

use bytes::Bytes;
use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::ChangeMembers;

use super::batcher::{Batcher, CommittedBatch};
use super::protocol::{
    answer_kind, decode_request, encode_refusal, encode_state, encode_submit_answer, kind_label,
    ok_header, Admin, NodeState, Refusal, Request, Status, SubmitAnswer, READ_LINEARIZABLE,
    STATE_AUDIT,
};
use crate::metrics::{NodeMetrics, Reject};
use crate::net::{ClientHandler, Frame, Replies};
use crate::replication::types::{ClientBatch, Node, TypeConfig};
use crate::replication::{AppliedView, CommittedIndex};

type Raft = openraft::Raft<TypeConfig>;

/// The client protocol of one node.
pub struct Service {
    raft: Raft,
    view: AppliedView,
    /// `None` once the node stops accepting batches (graceful shutdown).
    batcher: RwLock<Option<Batcher>>,
    /// BLAKE3 hashes of the operators' credentials: the only ones this protocol serves.
    operators: Vec<[u8; 32]>,
    metrics: NodeMetrics,
    committed: CommittedIndex,
}

impl Service {
    /// The node protocol is the operators' (admin, unscoped reads, operators' writes):
    /// every request must present a credential whose BLAKE3 hash is in `operators`; with none
    /// configured, every request is refused. Clients use the gateway.
    pub fn new(
        raft: Raft,
        view: AppliedView,
        batcher: Batcher,
        operators: Vec<[u8; 32]>,
        metrics: NodeMetrics,
        committed: CommittedIndex,
    ) -> Service {
        Service {
            raft,
            view,
            batcher: RwLock::new(Some(batcher)),
            operators,
            metrics,
            committed,
        }
    }

    /// Whether `credential` is an operator's. Compares every configured hash (no early exit),
    /// so the time taken says nothing about which hash came close.
    fn is_operator(&self, credential: &[u8]) -> bool {
        let presented = blake3::hash(credential);
        self.operators.iter().fold(false, |found, hash| {
            found | (presented == blake3::Hash::from(*hash))
        })
    }

    fn batcher(&self) -> Option<Batcher> {
        self.batcher.read().ok().and_then(|batcher| batcher.clone())
    }

    async fn serve(&self, frame: Frame, replies: Replies) {
        let metrics = self.metrics.clone();
        let kind = answer_kind(frame.kind);
        let id = frame.request_id;
        let request = match decode_request(frame.kind, &frame.payload) {
            Ok((credential, _)) if !self.is_operator(&credential) => {
                let refusal = Refusal::new(
                    Status::Unauthenticated,
                    if self.operators.is_empty() {
                        "no operator credentials are configured on this node"
                    } else {
                        "not an operator's credential"
                    },
                );
                self.metrics.reject(Reject::Auth);
                let _ = replies.send(answer(&metrics, kind, id, Err(refusal))).await;
                return;
            }
            Ok((_, request)) => request,
            Err(error) => {
                self.metrics.reject(Reject::Malformed);
                let refusal =
                    Refusal::new(Status::BadRequest, format!("malformed request: {error}"));
                let _ = replies.send(answer(&metrics, kind, id, Err(refusal))).await;
                return;
            }
        };
        if let Request::Submit { operation, body } = request {
            let Some(batcher) = self.batcher() else {
                self.metrics.reject(Reject::ShuttingDown);
                let refusal = Refusal::new(Status::Unavailable, "the node is shutting down");
                let _ = replies.send(answer(&metrics, kind, id, Err(refusal))).await;
                return;
            };
            match batcher.submit(ClientBatch { operation, body }).await {
                Ok(committed) => {
                    let metrics = metrics.clone();
                    tokio::spawn(async move {
                        let result = match committed.await {
                            Ok(Ok(CommittedBatch {
                                outcome: Ok(outcome),
                                ..
                            })) => Ok(submit_answer(outcome)),
                            Ok(Ok(CommittedBatch {
                                outcome: Err(refused),
                                ..
                            })) => Err(Refusal::new(Status::BatchRefused, refused.to_string())),
                            Ok(Err(refusal)) => Err(refusal),
                            Err(_) => Err(Refusal::new(
                                Status::Unavailable,
                                "the batcher stopped before the batch's entry was decided; \
                                 retry it (events already applied answer `exists`)",
                            )),
                        };
                        let _ = replies.send(answer(&metrics, kind, id, result)).await;
                    });
                }
                Err(refusal) => {
                    let _ = replies.send(answer(&metrics, kind, id, Err(refusal))).await;
                }
            }
            return;
        }
        let raft = self.raft.clone();
        let view = self.view.clone();
        let committed = self.committed.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let result = match request {
                Request::LookupAccounts { flags, ids } => read(&raft, flags).await.map(|()| {
                    view.read(|applied| {
                        records(
                            ids.iter()
                                .filter_map(|id| applied.engine().lookup_account(*id))
                                .map(|a| a.encode()),
                        )
                    })
                }),
                Request::LookupTransfers { flags, ids } => read(&raft, flags).await.map(|()| {
                    view.read(|applied| {
                        records(
                            ids.iter()
                                .filter_map(|id| applied.engine().lookup_transfer(*id))
                                .map(|t| t.encode()),
                        )
                    })
                }),
                Request::State { flags } => read(&raft, flags).await.map(|()| {
                    let mut out = Vec::new();
                    encode_state(
                        &state(&raft, &view, &committed, flags & STATE_AUDIT != 0),
                        &mut out,
                    );
                    out
                }),
                Request::Admin(admin) => administer(&raft, admin).await.map(|()| Vec::new()),
                Request::Submit { .. } => {
                    Err(Refusal::new(Status::Internal, "submit routed as a read"))
                }
            };
            let _ = replies.send(answer(&metrics, kind, id, result)).await;
        });
    }
}

impl ClientHandler for Service {
    fn handle(
        &self,
        frame: Frame,
        replies: Replies,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.serve(frame, replies))
    }

    /// Stop accepting batches: later submits are refused as `Unavailable`; those already
    /// queued still commit and are answered.
    fn stop_accepting(&self) {
        if let Ok(mut batcher) = self.batcher.write() {
            batcher.take();
        }
    }
}

/// The answer frame for `result`, counted in `tally_requests_total` (and a refusal for not
/// leading in `tally_rejects_total`).
fn answer(
    metrics: &NodeMetrics,
    kind: u8,
    request_id: u64,
    result: Result<Vec<u8>, Refusal>,
) -> Frame {
    let status = match &result {
        Ok(_) => Status::Ok,
        Err(refusal) => refusal.status,
    };
    if status == Status::NotLeader {
        metrics.reject(Reject::NotLeader);
    }
    metrics.request("node", kind_label(kind), status.label());
    let payload = match result {
        Ok(body) => {
            let mut out = ok_header();
            out.extend_from_slice(&body);
            out
        }
        Err(refusal) => encode_refusal(&refusal),
    };
    Frame {
        kind,
        request_id,
        payload: Bytes::from(payload),
    }
}

fn submit_answer(outcome: tally_engine::BatchOutcome) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + 8 * outcome.failures.len());
    encode_submit_answer(
        &SubmitAnswer {
            timestamp_first: outcome.timestamp_first,
            timestamp_last: outcome.timestamp_last,
            failures: outcome.failures,
        },
        &mut out,
    );
    out
}

fn records(found: impl Iterator<Item = [u8; 128]>) -> Vec<u8> {
    found.flat_map(|record| record.into_iter()).collect()
}

fn not_leader(forward: openraft::error::ForwardToLeader<u64, Node>, message: &str) -> Refusal {
    Refusal {
        status: Status::NotLeader,
        leader: forward
            .leader_id
            .zip(forward.leader_node.map(|node| node.client_addr)),
        message: message.to_owned(),
    }
}

/// Wait until a read with these flags may be served here.
async fn read(raft: &Raft, flags: u8) -> Result<(), Refusal> {
    if flags & READ_LINEARIZABLE == 0 {
        return Ok(());
    }
    match raft.ensure_linearizable().await {
        Ok(_) => Ok(()),
        Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward))) => Err(not_leader(
            forward,
            "linearizable reads are served by the leader",
        )),
        Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(error))) => Err(Refusal::new(
            Status::Unavailable,
            format!("leadership not confirmed: {error}"),
        )),
        Err(RaftError::Fatal(fatal)) => Err(Refusal::new(
            Status::Unavailable,
            format!("replication stopped: {fatal}"),
        )),
    }
}

fn state(raft: &Raft, view: &AppliedView, committed: &CommittedIndex, audit: bool) -> NodeState {
    let metrics = raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let learners = membership.learner_ids().collect();
    let addresses = membership
        .nodes()
        .map(|(id, node)| (*id, node.client_addr.clone()))
        .collect();
    let replication = match (&metrics.state, &metrics.replication) {
        (openraft::ServerState::Leader, Some(replication)) => replication
            .iter()
            .filter(|(id, _)| **id != metrics.id)
            .map(|(id, matched)| (*id, matched.map(|log_id| log_id.index)))
            .collect(),
        _ => Vec::new(),
    };
    view.read(|applied| {
        let engine = applied.engine();
        NodeState {
            node_id: metrics.id,
            role: format!("{:?}", metrics.state),
            term: metrics.current_term,
            leader: metrics.current_leader,
            last_applied: applied.last_applied(),
            snapshot: metrics.snapshot,
            purged: metrics.purged,
            digest: if audit { engine.digest() } else { [0; 32] },
            accounts: engine.accounts_count() as u64,
            transfers: engine.transfers_count() as u64,
            trades: engine.trades_count() as u64,
            voters: voters.into_iter().collect(),
            learners,
            ledger_totals: if audit {
                engine.ledger_totals()
            } else {
                Vec::new()
            },
            last_log_index: metrics.last_log_index,
            committed_index: committed.get(),
            addresses,
            replication,
        }
    })
}

fn write_refusal(error: RaftError<u64, ClientWriteError<u64, Node>>) -> Refusal {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
            not_leader(forward, "membership changes are made by the leader")
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(error)) => Refusal::new(
            Status::BadRequest,
            format!("membership change refused: {error}"),
        ),
        RaftError::Fatal(fatal) => {
            Refusal::new(Status::Unavailable, format!("replication stopped: {fatal}"))
        }
    }
}

async fn administer(raft: &Raft, admin: Admin) -> Result<(), Refusal> {
    match admin {
        Admin::Initialize(members) => {
            let members: BTreeMap<u64, Node> = members.into_iter().collect();
            match raft.initialize(members).await {
                Ok(()) => Ok(()),
                Err(RaftError::APIError(InitializeError::NotAllowed(error))) => Err(Refusal::new(
                    Status::BadRequest,
                    format!("already initialized: {error}"),
                )),
                Err(RaftError::APIError(InitializeError::NotInMembers(error))) => {
                    Err(Refusal::new(
                        Status::BadRequest,
                        format!("this node must be one of the members: {error}"),
                    ))
                }
                Err(RaftError::Fatal(fatal)) => Err(Refusal::new(
                    Status::Unavailable,
                    format!("replication stopped: {fatal}"),
                )),
            }
        }
        Admin::AddLearner(id, node) => raft
            .add_learner(id, node, true)
            .await
            .map(|_| ())
            .map_err(write_refusal),
        Admin::ChangeVoters(ids) => {
            if ids.is_empty() {
                return Err(Refusal::new(
                    Status::BadRequest,
                    "a cluster needs at least one voter",
                ));
            }
            let ids: BTreeSet<u64> = ids.into_iter().collect();
            raft.change_membership(ChangeMembers::ReplaceAllVoters(ids), false)
                .await
                .map(|_| ())
                .map_err(write_refusal)
        }
        Admin::RemoveNodes(ids) => {
            let ids: BTreeSet<u64> = ids.into_iter().collect();
            let metrics = raft.metrics().borrow().clone();
            let membership = metrics.membership_config.membership();
            if let Some(unknown) = ids
                .iter()
                .find(|id| !membership.nodes().any(|(member, _)| member == *id))
            {
                return Err(Refusal::new(
                    Status::BadRequest,
                    format!("node {unknown} is not a member of the cluster"),
                ));
            }
            if membership.voter_ids().all(|voter| ids.contains(&voter)) {
                return Err(Refusal::new(
                    Status::BadRequest,
                    "a cluster needs at least one voter: this would remove them all",
                ));
            }
            // Voters leave through joint consensus (not kept as learners); learners after.
            let (voters, learners): (BTreeSet<u64>, BTreeSet<u64>) = ids
                .into_iter()
                .partition(|id| membership.voter_ids().any(|voter| voter == *id));
            if !voters.is_empty() {
                raft.change_membership(ChangeMembers::RemoveVoters(voters), false)
                    .await
                    .map_err(write_refusal)?;
            }
            if !learners.is_empty() {
                raft.change_membership(ChangeMembers::RemoveNodes(learners), false)
                    .await
                    .map_err(write_refusal)?;
            }
            Ok(())
        }
        Admin::Snapshot => raft.trigger().snapshot().await.map_err(|fatal| {
            Refusal::new(Status::Unavailable, format!("replication stopped: {fatal}"))
        }),
    }
}
