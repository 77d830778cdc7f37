//! `tally admin`'s cluster operations, for the operator role (a gateway credential with role
//! "operator", on the one client protocol every client speaks): the cluster's status across
//! every member, adding and removing a node.
//!
//! - `status` asks the node given, learns the membership and every member's address from it,
//!   then asks each member for its own state (with its state digest): role, term, last log /
//!   committed / applied index, snapshot, and its lag as the leader sees it. A member that does
//!   not answer within [`MEMBER_TIMEOUT`] is shown as unreachable.
//! - `add-node ID ADDR` goes to the leader (found from any node), adds the node as a learner
//!   (openraft waits until it has caught up with the leader's log or installed a snapshot),
//!   then makes it a voter (joint consensus).
//! - `remove-node ID` goes to the leader and removes the node from the voters and the cluster;
//!   the removed process keeps running until it is stopped and must not rejoin with its data
//!   (ids are never reused: docs/operations.md "Scale").

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::json;
use tally_client::protocol::{Admin, Member, NodeState};
use tally_client::ClientTls;
use tally_client::{Client, ClientConfig, ClientError, Reads};

/// How long `status` waits for each member.
pub const MEMBER_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a membership change may take: adding a learner waits until it has caught up
/// with the leader's log (or installed a snapshot).
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(600);

/// An operator: the cluster's id, an operator credential and the TLS to reach the nodes with.
/// Every operation is an ordinary gateway request of a session with the operator role.
#[derive(Clone, Debug)]
pub struct Operator {
    pub cluster_id: u128,
    pub credential: Vec<u8>,
    pub tls: Option<ClientTls>,
}

impl Operator {
    /// A client of the node at `addr` alone, whose reads are what that node has applied;
    /// every request is given up after `deadline`.
    pub async fn node(&self, addr: &str, deadline: Duration) -> Result<Client, ClientError> {
        let mut config = ClientConfig::new(
            vec![addr.to_owned()],
            self.cluster_id,
            self.credential.clone(),
        )
        .with_tls(self.tls.clone())
        .with_reads(Reads::Local);
        config.deadline = deadline;
        config.request_timeout = deadline;
        Client::connect(config).await
    }
}

/// One member as `status` saw it.
#[derive(Clone, Debug)]
pub struct MemberStatus {
    pub id: u64,
    pub addr: String,
    pub voter: bool,
    /// Its own answer, or why there is none.
    pub state: Result<NodeState, String>,
    /// Entries behind the leader's last log index, as the leader's replication sees it (the
    /// leader itself: 0); `None` without a leader's answer.
    pub lag: Option<u64>,
}

/// The cluster as seen from its members.
#[derive(Clone, Debug)]
pub struct ClusterStatus {
    /// The leader, if a member answered as leader.
    pub leader: Option<u64>,
    pub term: u64,
    pub members: Vec<MemberStatus>,
}

impl ClusterStatus {
    /// Whether every member answered and all answered at the same applied index with the same
    /// digest (a quiet cluster should say yes).
    pub fn digests_agree(&self) -> bool {
        let mut seen = None;
        for member in &self.members {
            let Ok(state) = &member.state else {
                return false;
            };
            let this = (state.last_applied, state.digest);
            if *seen.get_or_insert(this) != this {
                return false;
            }
        }
        true
    }
}

async fn ask(operator: &Operator, addr: &str) -> Result<NodeState, String> {
    let asked = async {
        let client = operator.node(addr, MEMBER_TIMEOUT).await?;
        let state = client.node_state(true).await;
        client.close().await;
        state
    };
    match tokio::time::timeout(MEMBER_TIMEOUT, asked).await {
        Ok(Ok(state)) => Ok(state),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {MEMBER_TIMEOUT:?}")),
    }
}

/// Every member's state, starting from the node at `addr`.
pub async fn cluster_status(operator: &Operator, addr: &str) -> anyhow::Result<ClusterStatus> {
    let first = ask(operator, addr)
        .await
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("asking {addr}"))?;
    let voters: BTreeSet<u64> = first.voters.iter().copied().collect();
    let mut members = Vec::new();
    for (id, member_addr) in &first.addresses {
        let state = if *id == first.node_id {
            Ok(first.clone())
        } else {
            ask(operator, member_addr).await
        };
        members.push(MemberStatus {
            id: *id,
            addr: member_addr.clone(),
            voter: voters.contains(id),
            state,
            lag: None,
        });
    }
    if !first.addresses.iter().any(|(id, _)| *id == first.node_id) {
        // Asked a node outside the membership (removed, or not yet added): show it too.
        members.push(MemberStatus {
            id: first.node_id,
            addr: addr.to_owned(),
            voter: false,
            state: Ok(first.clone()),
            lag: None,
        });
    }
    let leader_state = members
        .iter()
        .filter_map(|member| member.state.as_ref().ok())
        .filter(|state| state.role == "Leader")
        .max_by_key(|state| state.term)
        .cloned();
    if let Some(leader) = &leader_state {
        let last = leader.last_log_index;
        for member in &mut members {
            member.lag = if member.id == leader.node_id {
                Some(0)
            } else {
                leader
                    .replication
                    .iter()
                    .find(|(id, _)| *id == member.id)
                    .map(|(_, matched)| match (last, matched) {
                        (Some(last), Some(matched)) => last.saturating_sub(*matched),
                        (Some(last), None) => last + 1,
                        (None, _) => 0,
                    })
            };
        }
    }
    let term = members
        .iter()
        .filter_map(|member| member.state.as_ref().ok())
        .map(|state| state.term)
        .max()
        .unwrap_or(first.term);
    Ok(ClusterStatus {
        leader: leader_state.map(|state| state.node_id),
        term,
        members,
    })
}

fn index(index: Option<u64>) -> String {
    index.map_or_else(|| "-".to_owned(), |index| index.to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The status as a table, for people.
pub fn status_table(status: &ClusterStatus) -> String {
    let mut out = format!(
        "leader: {}   term: {}   replicas agree: {}\n",
        status
            .leader
            .map_or_else(|| "none".to_owned(), |id| id.to_string()),
        status.term,
        if status.digests_agree() {
            "yes"
        } else {
            "no (or still applying)"
        }
    );
    out.push_str(&format!(
        "{:>4}  {:<21}  {:<9}  {:<7}  {:>5}  {:>9}  {:>9}  {:>9}  {:>8}  {:>9}  {:<16}\n",
        "NODE",
        "ADDRESS",
        "ROLE",
        "MEMBER",
        "TERM",
        "LAST_LOG",
        "COMMITTED",
        "APPLIED",
        "LAG",
        "SNAPSHOT",
        "DIGEST"
    ));
    for member in &status.members {
        let kind = if member.voter { "voter" } else { "learner" };
        match &member.state {
            Ok(state) => out.push_str(&format!(
                "{:>4}  {:<21}  {:<9}  {:<7}  {:>5}  {:>9}  {:>9}  {:>9}  {:>8}  {:>9}  {:<16}\n",
                member.id,
                member.addr,
                state.role,
                kind,
                state.term,
                index(state.last_log_index),
                index(state.committed_index),
                index(state.last_applied.map(|id| id.index)),
                index(member.lag),
                index(state.snapshot.map(|id| id.index)),
                &hex(&state.digest)[..16],
            )),
            Err(error) => out.push_str(&format!(
                "{:>4}  {:<21}  {:<9}  {:<7}  unreachable: {error}\n",
                member.id, member.addr, "?", kind
            )),
        }
    }
    match log_state(status) {
        Some((key, size, checkpoints)) => out.push_str(&format!(
            "verifiable log: {size} events, {checkpoints} signed checkpoints; the cluster's \
             verifier key (for tally verify --key):\n{key}\n"
        )),
        None => out.push_str("verifiable log: no checkpoint key ([verifiable] key_file)\n"),
    }
    out
}

/// The checkpoint key's verifier key and the verifiable log's size and checkpoints, as the
/// leader (or else the first node that has a key) reports them.
fn log_state(status: &ClusterStatus) -> Option<(&str, u64, u64)> {
    let states = || {
        status
            .members
            .iter()
            .filter_map(|member| member.state.as_ref().ok())
            .filter(|state| !state.log_key.is_empty())
    };
    let leader = states().find(|state| Some(state.node_id) == status.leader);
    leader
        .or_else(|| states().next())
        .map(|state| (state.log_key.as_str(), state.log_size, state.checkpoints))
}

/// The status as JSON, for scripts and tests.
pub fn status_json(status: &ClusterStatus) -> serde_json::Value {
    let members: Vec<serde_json::Value> = status
        .members
        .iter()
        .map(|member| match &member.state {
            Ok(state) => json!({
                "id": member.id,
                "address": member.addr,
                "voter": member.voter,
                "reachable": true,
                "role": state.role,
                "term": state.term,
                "leader": state.leader,
                "last_log_index": state.last_log_index,
                "committed_index": state.committed_index,
                "applied_index": state.last_applied.map(|id| id.index),
                "snapshot_index": state.snapshot.map(|id| id.index),
                "purged_index": state.purged.map(|id| id.index),
                "lag": member.lag,
                "digest": hex(&state.digest),
                "accounts": state.accounts,
                "transfers": state.transfers,
                "trades": state.trades,
                "log_size": state.log_size,
                "checkpoints": state.checkpoints,
            }),
            Err(error) => json!({
                "id": member.id,
                "address": member.addr,
                "voter": member.voter,
                "reachable": false,
                "error": error,
            }),
        })
        .collect();
    json!({
        "leader": status.leader,
        "term": status.term,
        "replicas_agree": status.digests_agree(),
        "log_key": log_state(status).map(|(key, ..)| key),
        "members": members,
    })
}

/// A client of the leader, found from the node at `addr`, and the leader's state.
pub async fn leader(operator: &Operator, addr: &str) -> anyhow::Result<(Client, NodeState)> {
    let mut target = addr.to_owned();
    // Asked node → its leader; a second hop covers a leader change in between.
    for _ in 0..3 {
        let client = operator
            .node(&target, ADMIN_TIMEOUT)
            .await
            .with_context(|| format!("connecting to {target}"))?;
        let state = client.node_state(false).await;
        let state = match state {
            Ok(state) if state.role == "Leader" => return Ok((client, state)),
            Ok(state) => state,
            Err(error) => {
                client.close().await;
                return Err(error.into());
            }
        };
        client.close().await;
        let Some(leader) = state.leader else {
            bail!(
                "node {} at {target} knows no leader now; retry shortly",
                state.node_id
            );
        };
        let Some((_, leader_addr)) = state.addresses.iter().find(|(id, _)| *id == leader) else {
            bail!(
                "node {} names leader {leader} but not its address",
                state.node_id
            );
        };
        target = leader_addr.clone();
    }
    bail!("the leader kept changing while looking for it; retry")
}

/// Add node `id` at `node` (its client and peer addresses; already running, with an empty
/// data directory or its own earlier one) as a learner, wait for it to catch up, and make it a
/// voter.
pub async fn add_node(
    operator: &Operator,
    addr: &str,
    id: u64,
    node: &Member,
) -> anyhow::Result<()> {
    let node_addr = &node.client;
    let (client, state) = leader(operator, addr).await?;
    if state.voters.contains(&id) {
        bail!("node {id} is already a voter");
    }
    if let Some((_, known)) = state.addresses.iter().find(|(member, _)| *member == id) {
        if known != node_addr {
            bail!("node {id} is already a learner at {known}, not {node_addr}");
        }
    } else {
        println!("adding node {id} ({node_addr}) as a learner; waiting for it to catch up");
        if let Err(error) = client.admin(&Admin::AddLearner(id, node.clone())).await {
            client.close().await;
            return Err(anyhow::Error::new(error).context(format!("adding node {id} as a learner")));
        }
    }
    let mut voters = state.voters.clone();
    voters.push(id);
    println!("making node {id} a voter: voters {voters:?}");
    let made = client
        .admin(&Admin::ChangeVoters(voters))
        .await
        .with_context(|| format!("making node {id} a voter"));
    client.close().await;
    made.map(|_| ())
}

/// Remove node `id` from the cluster (voter or learner).
pub async fn remove_node(operator: &Operator, addr: &str, id: u64) -> anyhow::Result<()> {
    let (client, state) = leader(operator, addr).await?;
    if !state.addresses.iter().any(|(member, _)| *member == id) {
        bail!("node {id} is not a member (members: {:?})", state.addresses);
    }
    println!("removing node {id} from the cluster");
    let removed = client
        .admin(&Admin::RemoveNodes(vec![id]))
        .await
        .with_context(|| format!("removing node {id}"));
    client.close().await;
    removed.map(|_| ())
}
