//! The server side of the operators' operations (`protocol::operator`): a node's state, read
//! from openraft's metrics and the applied engine, and the administration commands, carried
//! out by openraft. Nothing here checks who asks: the server admits only operator sessions
//! before calling in.

use std::collections::{BTreeMap, BTreeSet};

use openraft::error::{ClientWriteError, ForwardToLeader, InitializeError, RaftError};
use openraft::ChangeMembers;
use tally_raft::replication::limits::NODE_ADDRESS_BYTES_MAX;
use tally_raft::replication::types::{LogId, Node, NodeId, TypeConfig};
use tally_raft::replication::{AppliedView, CommittedIndex};

use tally_client::protocol::{Admin, LogPosition, Member, NodeState, Refusal, Status};

type Raft = openraft::Raft<TypeConfig>;

fn position(log_id: Option<LogId>) -> Option<LogPosition> {
    log_id.map(|log_id| LogPosition {
        term: log_id.leader_id.term,
        leader: log_id.leader_id.node_id,
        index: log_id.index,
    })
}

/// This node's state (`audit`: with the state digest and per-ledger totals, O(state)).
pub(crate) fn node_state(
    raft: &Raft,
    view: &AppliedView,
    committed: &CommittedIndex,
    log_key: Option<&str>,
    audit: bool,
) -> NodeState {
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
        // While a snapshot is installed there is no state: no log id applied, nothing counted.
        let engine = applied.engine();
        let count = |count: fn(&tally_engine::Engine) -> usize| engine.map_or(0, count) as u64;
        NodeState {
            node_id: metrics.id,
            role: format!("{:?}", metrics.state),
            term: metrics.current_term,
            leader: metrics.current_leader,
            last_applied: position(applied.last_applied()),
            snapshot: position(metrics.snapshot),
            purged: position(metrics.purged),
            digest: engine
                .filter(|_| audit)
                .map_or([0; 32], |engine| engine.digest()),
            accounts: count(tally_engine::Engine::accounts_count),
            transfers: count(tally_engine::Engine::transfers_count),
            trades: count(tally_engine::Engine::trades_count),
            voters: voters.into_iter().collect(),
            learners,
            ledger_totals: engine
                .filter(|_| audit)
                .map_or_else(Vec::new, |engine| engine.ledger_totals()),
            last_log_index: metrics.last_log_index,
            committed_index: committed.get(),
            addresses,
            replication,
            log_key: log_key.unwrap_or_default().to_owned(),
            log_size: count(|engine| engine.log_size() as usize),
            checkpoints: count(|engine| engine.checkpoints_count() as usize),
        }
    })
}

type Refused = (Status, Refusal);

fn refused(status: Status, message: impl Into<String>) -> Refused {
    (
        status,
        Refusal {
            leader: None,
            event: None,
            message: message.into(),
        },
    )
}

fn not_leader(forward: ForwardToLeader<NodeId, Node>, message: &str) -> Refused {
    (
        Status::NotLeader,
        Refusal {
            leader: forward
                .leader_id
                .zip(forward.leader_node.map(|node| node.client_addr)),
            event: None,
            message: message.to_owned(),
        },
    )
}

fn write_refusal(error: RaftError<NodeId, ClientWriteError<NodeId, Node>>) -> Refused {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
            not_leader(forward, "membership changes are made by the leader")
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(error)) => refused(
            Status::BadRequest,
            format!("membership change refused: {error}"),
        ),
        RaftError::Fatal(fatal) => {
            refused(Status::Unavailable, format!("replication stopped: {fatal}"))
        }
    }
}

/// The membership's node for `member`, if its addresses fit the membership's limit.
fn node(member: Member) -> Result<Node, Refused> {
    for address in [&member.client, &member.peer] {
        if address.is_empty() || address.len() > NODE_ADDRESS_BYTES_MAX {
            return Err(refused(
                Status::BadRequest,
                format!(
                    "address {address:?}: a member's addresses are 1..={NODE_ADDRESS_BYTES_MAX} \
                     bytes"
                ),
            ));
        }
    }
    Ok(Node::new(member.client, member.peer))
}

/// Carry out `admin` with openraft; a refusal says why, with the leader where it matters.
pub(crate) async fn administer(raft: &Raft, admin: Admin) -> Result<(), Refused> {
    match admin {
        Admin::Initialize(members) => {
            let members = members
                .into_iter()
                .map(|(id, member)| Ok((id, node(member)?)))
                .collect::<Result<BTreeMap<u64, Node>, Refused>>()?;
            match raft.initialize(members).await {
                Ok(()) => Ok(()),
                Err(RaftError::APIError(InitializeError::NotAllowed(error))) => Err(refused(
                    Status::BadRequest,
                    format!("already initialized: {error}"),
                )),
                Err(RaftError::APIError(InitializeError::NotInMembers(error))) => Err(refused(
                    Status::BadRequest,
                    format!("this node must be one of the members: {error}"),
                )),
                Err(RaftError::Fatal(fatal)) => Err(refused(
                    Status::Unavailable,
                    format!("replication stopped: {fatal}"),
                )),
            }
        }
        Admin::AddLearner(id, member) => raft
            .add_learner(id, node(member)?, true)
            .await
            .map(|_| ())
            .map_err(write_refusal),
        Admin::ChangeVoters(ids) => {
            if ids.is_empty() {
                return Err(refused(
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
                return Err(refused(
                    Status::BadRequest,
                    format!("node {unknown} is not a member of the cluster"),
                ));
            }
            if membership.voter_ids().all(|voter| ids.contains(&voter)) {
                return Err(refused(
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
        Admin::Snapshot => {
            raft.trigger().snapshot().await.map_err(|fatal| {
                refused(Status::Unavailable, format!("replication stopped: {fatal}"))
            })
        }
    }
}
