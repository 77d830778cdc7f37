//! The replicated ledger under simulated faults, in one process: 3 or 5 replicas, each with the
//! real engine, state machine, WAL and snapshots on its own simulated disk (which loses unsynced
//! writes at a crash and may tear the last one), openraft, and the gateway's request handler,
//! sessions and batcher, connected by a simulated network (`SimNet`: symmetric and one-way
//! partitions, an isolated leader, a bridge, message loss, delay and the reordering it causes,
//! duplication). Clients speak the gateway protocol: they register a session, send each batch
//! under its request number, and retry it under the same number through leader changes and
//! crashes (a new session on the new leader), until it is answered. Each run ends healed and is
//! judged: every acknowledged transfer on every replica (C1), nothing stored twice or unasked
//! (C2/C3 by count), balanced ledgers (C5), one digest at one index (C8), and a new write that
//! commits (C9).
//!
//! A run's seed chooses its fault mix, its schedule of faults and its workload; a failing run
//! prints the command that replays the seed. A run is deterministic: everything runs as tasks
//! on one thread under tokio's paused clock (the simulated time, which moves only when every
//! task waits), the storage does its I/O within each call (`SimDisk::without_threads`), the
//! entries are stamped from the simulated clock, and openraft's one random draw, the election
//! timeout, is fixed per replica and boot from the seed. A replay repeats the run event for
//! event: `a_seed_replays_exactly` compares two runs' traces (docs/reliability.md says what
//! stays outside). `TALLY_SOAK=1` runs a swarm of seeds.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tally_client::protocol::{
    decode_create_reply, decode_refusal, decode_registered, decode_reply, request_frame,
    Operation as Kind, RequestHeader, Status,
};
use tally_engine::records::{Account, Transfer};
use tally_engine::EngineConfig;
use tally_gateway::{
    credential_hash, Batcher, BatcherConfig, Credential, Gateway, GatewayConfig, GatewayMetrics,
    GatewayParts, Role, Scope,
};
use tally_raft::metrics::NodeMetrics;
use tally_raft::net::{recommended_config, reconnect_backoff};
use tally_raft::net::{ClientHandler, Frame};
use tally_raft::replication::types::{Node, NodeId};
use tally_raft::replication::{open_storage, AppliedView, TypeConfig};
use tally_raft::storage::sim::SimDisk;
use tally_raft::storage::Disk;
use tally_raft::WalConfig;

type Raft = openraft::Raft<TypeConfig>;

const CLUSTER_ID: u128 = 0x5113;
const SECRET: &[u8] = b"the simulated exchange's secret";

const DATA_DIR: &str = "/node";
const ACCOUNTS: u128 = 10;
const LEDGER: u32 = 1;

/// What one directed link does to the messages on it.
#[derive(Clone, Copy, Debug, Default)]
struct Link {
    down: bool,
    loss_per_mille: u32,
    duplicate_per_mille: u32,
    delay_ms_max: u64,
}

/// The simulated network: the live replicas by id, and every directed link's faults.
#[derive(Default)]
struct SimNet {
    nodes: Mutex<BTreeMap<NodeId, Raft>>,
    links: Mutex<BTreeMap<(NodeId, NodeId), Link>>,
    /// What every link not set otherwise does (a lossy run's background loss and delay).
    baseline: Mutex<Link>,
    seed: AtomicU64,
    /// The live replicas' gateways by id.
    gateways: Mutex<BTreeMap<NodeId, Arc<Gateway>>>,
    delivered: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    /// A running hash of every message's fate and simulated time, and of the clients' answers:
    /// two runs of one seed must end with the same (`a_seed_replays_exactly`).
    trace: AtomicU64,
}

/// The simulated wall clock's reading when a run begins: 2026-01-01T00:00:00Z.
const SIM_EPOCH_NS: u64 = 1_767_225_600_000_000_000;

thread_local! {
    /// The simulated wall clock of the run on this thread (every task of a run is on the
    /// test's thread): when it began on tokio's paused clock, and the leaders' clock error
    /// (ns) that a clock-jump fault sets.
    static SIM_CLOCK: std::cell::Cell<(Option<tokio::time::Instant>, i64)> =
        const { std::cell::Cell::new((None, 0)) };
}

/// Start the simulated wall clock at `SIM_EPOCH_NS`, with no error.
fn start_clock() {
    SIM_CLOCK.set((Some(tokio::time::Instant::now()), 0));
}

/// The simulated wall clock (ns since the Unix epoch), before any clock error.
fn sim_now_ns() -> u64 {
    let began = SIM_CLOCK.get().0.expect("the run started its clock");
    SIM_EPOCH_NS + began.elapsed().as_nanos() as u64
}

/// The clock the replicas' batchers stamp entries with: the simulated one, with its error.
fn leader_clock() -> u64 {
    sim_now_ns().saturating_add_signed(SIM_CLOCK.get().1)
}

impl SimNet {
    fn raft(&self, id: NodeId) -> Option<Raft> {
        self.nodes.lock().expect("nodes").get(&id).cloned()
    }

    fn link(&self, from: NodeId, to: NodeId) -> Link {
        self.links
            .lock()
            .expect("links")
            .get(&(from, to))
            .copied()
            .unwrap_or_else(|| *self.baseline.lock().expect("baseline"))
    }

    fn set_link(&self, from: NodeId, to: NodeId, link: Link) {
        self.links.lock().expect("links").insert((from, to), link);
    }

    fn heal(&self) {
        self.links.lock().expect("links").clear();
    }

    /// A generator for one message's fate: seeded per message from the run's seed.
    fn rng(&self) -> StdRng {
        StdRng::seed_from_u64(self.seed.fetch_add(0x9E37_79B9, Ordering::Relaxed))
    }

    fn gateway(&self, id: NodeId) -> Option<Arc<Gateway>> {
        self.gateways.lock().expect("gateways").get(&id).cloned()
    }

    /// Fold `values` and the simulated time into the run's trace.
    fn record(&self, values: &[u64]) {
        let mut hash = self.trace.load(Ordering::Relaxed);
        for value in values.iter().copied().chain([sim_now_ns()]) {
            // FNV-1a over 64-bit words: enough to tell two runs apart.
            hash = (hash ^ value).wrapping_mul(0x0100_0000_01B3);
        }
        self.trace.store(hash, Ordering::Relaxed);
    }
}

/// openraft's view of the network for one replica.
struct NetFactory {
    from: NodeId,
    net: Arc<SimNet>,
}

struct Peer {
    from: NodeId,
    to: NodeId,
    net: Arc<SimNet>,
}

impl RaftNetworkFactory<TypeConfig> for NetFactory {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, _node: &Node) -> Peer {
        Peer {
            from: self.from,
            to: target,
            net: Arc::clone(&self.net),
        }
    }
}

fn unreachable<E: std::error::Error>(why: &str) -> RPCError<NodeId, Node, E> {
    RPCError::Unreachable(Unreachable::new(&io::Error::other(why.to_owned())))
}

impl Peer {
    /// Carry one request to the target and its answer back, through the link's faults: the
    /// request or the answer may be lost (the call fails either way), both are delayed, and
    /// the request may be delivered twice (the second copy's answer is dropped).
    async fn carry<T, E, F, Fut>(
        &self,
        call: F,
    ) -> Result<T, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        E: std::error::Error,
        F: Fn(Raft) -> Fut,
        Fut: std::future::Future<Output = Result<T, RaftError<NodeId, E>>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let link = self.net.link(self.from, self.to);
        let (lost, lost_answer, duplicate, delay, answer_delay) = {
            let mut rng = self.net.rng();
            (
                link.down || rng.random_range(0..1000) < link.loss_per_mille,
                rng.random_range(0..1000) < link.loss_per_mille,
                rng.random_range(0..1000) < link.duplicate_per_mille,
                // Every hop takes at least a millisecond: simulated time must pass for each
                // round trip, or busy clients would hold the clock still.
                1 + rng.random_range(0..=link.delay_ms_max),
                1 + rng.random_range(0..=link.delay_ms_max),
            )
        };
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let fate = u64::from(lost) | u64::from(lost_answer) << 1 | u64::from(duplicate) << 2;
        self.net.record(&[self.from, self.to, fate]);
        let Some(raft) = self.net.raft(self.to).filter(|_| !lost) else {
            self.net.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(unreachable("lost on the simulated network"));
        };
        if duplicate {
            self.net.duplicated.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(call(raft.clone()));
        }
        let answer = call(raft).await;
        tokio::time::sleep(Duration::from_millis(answer_delay)).await;
        if lost_answer || self.net.link(self.to, self.from).down {
            self.net.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(unreachable("answer lost on the simulated network"));
        }
        self.net.delivered.fetch_add(1, Ordering::Relaxed);
        answer.map_err(|error| RPCError::RemoteError(RemoteError::new(self.to, error)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    fn backoff(&self) -> Backoff {
        reconnect_backoff()
    }

    async fn append_entries(
        &mut self,
        request: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.carry(move |raft| {
            let request = request.clone();
            async move { raft.append_entries(request).await }
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        request: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.carry(move |raft| {
            let request = request.clone();
            async move { raft.install_snapshot(request).await }
        })
        .await
    }

    async fn vote(
        &mut self,
        request: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.carry(move |raft| {
            let request = request.clone();
            async move { raft.vote(request).await }
        })
        .await
    }
}

/// One replica: its disk (kept across crashes as the image a reboot finds) and, while it
/// runs, its Raft, applied view and gateway.
struct Replica {
    disk: SimDisk,
    running: Option<Running>,
}

/// A booted replica.
struct Running {
    raft: Raft,
    view: AppliedView,
    /// The batcher's task, aborted when the replica is powered off.
    batcher: tokio::task::JoinHandle<()>,
}

fn wal_config() -> WalConfig {
    WalConfig {
        segment_bytes: 1024 * 1024,
        entry_payload_bytes_max: 64 * 1024,
    }
}

/// The replicas' openraft config. Its election timeout is drawn here, once per boot, from the
/// run's seed (`election_timeout_ms`), and openraft's own draw in `min..max` is left no
/// choice (`max` is `min + 1`): the one random number openraft takes from its thread's
/// generator, which no seed reaches.
fn raft_config(election_timeout_ms: u64) -> Arc<openraft::Config> {
    let config = openraft::Config {
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(300),
        max_in_snapshot_log_to_keep: 50,
        snapshot_max_chunk_size: 64 * 1024,
        election_timeout_min: election_timeout_ms,
        election_timeout_max: election_timeout_ms + 1,
        ..recommended_config("tally-sim")
    };
    Arc::new(config.validate().expect("valid config"))
}

/// Start replica `id` on `disk`, with its gateway; `Err` if its storage refuses what the disk
/// holds.
async fn boot(id: NodeId, disk: &SimDisk, net: &Arc<SimNet>) -> Result<Running, String> {
    let (log_store, state_machine) = open_storage(
        Arc::new(disk.clone()),
        Path::new(DATA_DIR),
        wal_config(),
        EngineConfig::default(),
    )
    .map_err(|error| format!("replica {id} refuses the disk a reboot finds: {error}"))?;
    let view = state_machine.view();
    let committed = log_store.committed_index();
    let recommended = recommended_config("tally-sim");
    let election_timeout_ms = net
        .rng()
        .random_range(recommended.election_timeout_min..recommended.election_timeout_max);
    let raft = Raft::new(
        id,
        raft_config(election_timeout_ms),
        NetFactory {
            from: id,
            net: Arc::clone(net),
        },
        log_store,
        state_machine,
    )
    .await
    .expect("raft starts");
    let metrics = GatewayMetrics::new(&NodeMetrics::unregistered());
    let batcher_config = BatcherConfig {
        entry_payload_bytes_max: wal_config().entry_payload_bytes_max,
        clock: leader_clock,
        ..BatcherConfig::default()
    };
    let (batcher, batcher_task) = Batcher::start(raft.clone(), batcher_config, metrics.clone());
    let gateway = Gateway::new(
        GatewayConfig {
            cluster_id: CLUSTER_ID,
            credentials: vec![Credential {
                name: "exchange".to_owned(),
                hash: credential_hash(SECRET),
                role: Role::Submitter,
                scope: Scope::default(),
            }],
            ..GatewayConfig::default()
        },
        GatewayParts {
            raft: raft.clone(),
            view: view.clone(),
            batcher,
            metrics,
            committed,
        },
    );
    net.nodes.lock().expect("nodes").insert(id, raft.clone());
    net.gateways
        .lock()
        .expect("gateways")
        .insert(id, Arc::new(gateway));
    Ok(Running {
        raft,
        view,
        batcher: batcher_task,
    })
}

/// Which faults a run may inject (a swarm run picks a random subset per seed).
#[derive(Clone, Copy, Debug)]
struct Mix {
    partitions: bool,
    one_way: bool,
    isolate_leader: bool,
    bridge: bool,
    lossy: bool,
    crashes: bool,
    clock_jumps: bool,
}

impl Mix {
    const ALL: Mix = Mix {
        partitions: true,
        one_way: true,
        isolate_leader: true,
        bridge: true,
        lossy: true,
        crashes: true,
        clock_jumps: true,
    };

    fn random(rng: &mut StdRng) -> Mix {
        let mix = Mix {
            partitions: rng.random_bool(0.5),
            one_way: rng.random_bool(0.5),
            isolate_leader: rng.random_bool(0.5),
            bridge: rng.random_bool(0.5),
            lossy: rng.random_bool(0.5),
            crashes: rng.random_bool(0.5),
            clock_jumps: rng.random_bool(0.5),
        };
        if mix.kinds().is_empty() {
            Mix::ALL
        } else {
            mix
        }
    }

    /// Only the kinds named in `list` (comma-separated, as [`Mix::kinds`] names them).
    fn only(list: &str) -> Mix {
        let has = |kind: &str| list.split(',').any(|k| k.trim() == kind);
        Mix {
            partitions: has("partition"),
            one_way: has("one-way"),
            isolate_leader: has("isolate-leader"),
            bridge: has("bridge"),
            lossy: has("loss-delay-duplication"),
            crashes: has("crash"),
            clock_jumps: has("clock-jump"),
        }
    }

    fn kinds(self) -> Vec<&'static str> {
        [
            (self.partitions, "partition"),
            (self.one_way, "one-way"),
            (self.isolate_leader, "isolate-leader"),
            (self.bridge, "bridge"),
            (self.lossy, "loss-delay-duplication"),
            (self.crashes, "crash"),
            (self.clock_jumps, "clock-jump"),
        ]
        .into_iter()
        .filter_map(|(on, kind)| on.then_some(kind))
        .collect()
    }
}

/// What the clients saw.
#[derive(Default)]
struct History {
    /// Transfers answered `ok` (their batch committed and the transfer succeeded).
    acknowledged: Vec<u128>,
    /// Transfers of batches never answered (they may or may not be stored).
    unknown: Vec<u128>,
    /// Transfers answered with a failure: none should be (the workload is all valid).
    failed: Vec<(u128, String)>,
}

struct Cluster {
    net: Arc<SimNet>,
    replicas: BTreeMap<NodeId, Replica>,
    /// Replicas that refused to start on what their disk kept after a crash (C1), or whose
    /// Raft would not stop at one (C9), each with its check.
    refused: Vec<String>,
}

impl Cluster {
    async fn found(size: u64, seed: u64, lie_about_syncs: bool) -> Cluster {
        let net = Arc::new(SimNet::default());
        net.seed.store(seed, Ordering::Relaxed);
        start_clock();
        let mut replicas = BTreeMap::new();
        for id in 1..=size {
            let disk = SimDisk::new().without_threads();
            let running = boot(id, &disk, &net).await.expect("a new replica starts");
            replicas.insert(
                id,
                Replica {
                    disk,
                    running: Some(running),
                },
            );
        }
        let members: BTreeMap<NodeId, Node> = (1..=size)
            .map(|id| (id, Node::new(format!("client-{id}"), format!("peer-{id}"))))
            .collect();
        let first = replicas[&1].running.as_ref().expect("running").raft.clone();
        first.initialize(members).await.expect("initialized");
        let cluster = Cluster {
            net,
            replicas,
            refused: Vec::new(),
        };
        cluster
            .leader(Duration::from_secs(30))
            .await
            .expect("a first leader");
        if lie_about_syncs {
            for replica in cluster.replicas.values() {
                replica.disk.lie_about_syncs();
            }
        }
        cluster
    }

    /// Open the workload's accounts (before any fault).
    async fn open_accounts(&self) {
        let body: Vec<u8> = (1..=ACCOUNTS)
            .flat_map(|id| {
                Account {
                    id,
                    ledger: LEDGER,
                    code: 1,
                    ..Account::default()
                }
                .encode()
            })
            .collect();
        let size = self.replicas.len() as u64;
        let give_up = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut client = SimClient::new(0xAC);
        let failures = client
            .submit(&self.net, size, Kind::CreateAccounts, &body, 1, give_up)
            .await
            .expect("the accounts are created");
        assert!(failures.is_empty(), "{failures:?}");
    }

    /// The replica that leads, as it says itself, within `within`.
    async fn leader(&self, within: Duration) -> Option<NodeId> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            for (id, replica) in &self.replicas {
                if let Some(Running { raft, .. }) = &replica.running {
                    if raft.metrics().borrow().current_leader == Some(*id) {
                        return Some(*id);
                    }
                }
            }
            if tokio::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Power off replica `id` now: its disk keeps what was durable, plus a seeded subset of
    /// the sectors written since (`torn_seed`; none if `None`); the process's threads see a
    /// dead disk.
    async fn crash(&mut self, id: NodeId, torn_seed: Option<u64>) {
        let replica = self.replicas.get_mut(&id).expect("a replica");
        let Some(Running { raft, batcher, .. }) = replica.running.take() else {
            return;
        };
        self.net.nodes.lock().expect("nodes").remove(&id);
        self.net.gateways.lock().expect("gateways").remove(&id);
        batcher.abort();
        replica.disk.crash_at(replica.disk.operations() + 1);
        let image = replica.disk.crash_image(torn_seed);
        if let Some(why) = shut_down(id, raft).await {
            self.refused.push(format!("C9: {why}"));
        }
        replica.disk = image;
    }

    async fn restart(&mut self, id: NodeId) {
        let replica = self.replicas.get_mut(&id).expect("a replica");
        if replica.running.is_none() {
            match boot(id, &replica.disk, &self.net).await {
                Ok(running) => replica.running = Some(running),
                Err(why) => {
                    // What the disk held, to explain the refusal.
                    let listing: Vec<String> = ["snapshots", "snapshots/sections", "wal"]
                        .iter()
                        .map(|dir| {
                            let path = Path::new(DATA_DIR).join(dir);
                            format!("{dir}: {:?}", replica.disk.list(&path).unwrap_or_default())
                        })
                        .collect();
                    let journal: Vec<String> = replica
                        .disk
                        .journal()
                        .into_iter()
                        .filter(|entry| !entry.contains("/wal/0"))
                        .collect();
                    eprintln!(
                        "replica {id} refused its disk; name changes:\n{}",
                        journal.join("\n")
                    );
                    self.refused
                        .push(format!("C1: {why}; the disk held {listing:?}"));
                }
            }
        }
    }
}

fn transfer(id: u128) -> Transfer {
    Transfer {
        id,
        debit_account_id: 1 + id % ACCOUNTS,
        credit_account_id: 1 + (id + 1) % ACCOUNTS,
        amount: 1 + id % 5,
        ledger: LEDGER,
        code: 1,
        ..Transfer::default()
    }
}

/// The body of a request creating the transfers `ids`.
fn transfers(ids: &[u128]) -> Vec<u8> {
    ids.iter().flat_map(|id| transfer(*id).encode()).collect()
}

/// One client of the gateway protocol: its id (kept across sessions, so a retry under the
/// same request number is recognised on any replica: the origin), its session and the
/// replica it talks to.
struct SimClient {
    id: u128,
    session: Option<(NodeId, u64)>,
    target: NodeId,
    frames: u64,
}

impl SimClient {
    fn new(id: u128) -> SimClient {
        SimClient {
            id,
            session: None,
            target: 1,
            frames: 0,
        }
    }

    fn header(&self, session: u64, request_number: u64) -> RequestHeader {
        RequestHeader {
            flags: 0,
            cluster_id: CLUSTER_ID,
            client_id: self.id,
            session,
            request_number,
        }
    }

    /// Hand `frame` to replica `to`'s gateway and wait up to 2 s for its answer (`None`: no
    /// such replica, or no answer in time — a crash takes the request with it).
    async fn exchange(
        &mut self,
        net: &SimNet,
        to: NodeId,
        operation: Kind,
        header: RequestHeader,
        body: &[u8],
    ) -> Option<(Status, Vec<u8>)> {
        let gateway = net.gateway(to)?;
        self.frames += 1;
        let frame = request_frame(operation, self.frames, &header, body);
        let (replies, mut answers) = tokio::sync::mpsc::channel::<Frame>(4);
        tokio::spawn(async move { gateway.handle(frame, replies).await });
        let answer = tokio::time::timeout(Duration::from_secs(2), answers.recv())
            .await
            .ok()
            .flatten()?;
        let (head, body) = decode_reply(&answer.payload).expect("a gateway reply decodes");
        Some((head.status, body.to_vec()))
    }

    /// Send the create `operation` with `body` under request `number` until a replica's
    /// gateway answers it for good, following leader hints and registering a new session
    /// where needed, the number unchanged throughout: the events that failed (index,
    /// result), or `None` if `give_up` passes first (the request may or may not be stored).
    async fn submit(
        &mut self,
        net: &SimNet,
        size: u64,
        operation: Kind,
        body: &[u8],
        number: u64,
        give_up: tokio::time::Instant,
    ) -> Option<Vec<(u32, String)>> {
        let next = |target: NodeId| target % size + 1;
        while tokio::time::Instant::now() < give_up {
            let target = self.target;
            let session = match self.session {
                Some((on, session)) if on == target => session,
                _ => {
                    let header = self.header(0, 0);
                    match self
                        .exchange(net, target, Kind::Register, header, SECRET)
                        .await
                    {
                        Some((Status::Ok, body)) => {
                            let session = decode_registered(&body).expect("a session").session;
                            self.session = Some((target, session));
                            session
                        }
                        Some((status, body)) => {
                            self.follow(status, &body, next(target)).await;
                            continue;
                        }
                        None => {
                            self.target = next(target);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                    }
                }
            };
            let header = self.header(session, number);
            match self.exchange(net, target, operation, header, body).await {
                Some((Status::Ok, body)) => {
                    let reply = decode_create_reply(&body).expect("a create reply");
                    return Some(
                        reply
                            .failures
                            .iter()
                            .map(|failure| (failure.index, format!("{:?}", failure.result())))
                            .collect(),
                    );
                }
                Some((status, body)) if status.is_transient() => {
                    self.follow(status, &body, next(target)).await;
                }
                Some((status, body)) => {
                    let refusal = decode_refusal(&body).map(|r| r.message);
                    return Some(vec![(u32::MAX, format!("{status:?}: {refusal:?}"))]);
                }
                // No answer (the replica is down, or held the request 2 s): try the next
                // one; the session stays with the replica it was registered on.
                None => {
                    self.target = next(target);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        None
    }

    /// After a transient refusal, as the client library does: go to the leader it names
    /// (else to `otherwise`, after a pause) and register there; on `Busy` wait and retry in the
    /// same session; register again where the session is unknown.
    async fn follow(&mut self, status: Status, body: &[u8], otherwise: NodeId) {
        let leader = decode_refusal(body)
            .ok()
            .and_then(|refusal| refusal.leader)
            .map(|(id, _)| id);
        match (status, leader) {
            (Status::NotLeader, Some(leader)) => self.target = leader,
            (Status::NotLeader | Status::Unavailable, None) => {
                self.target = otherwise;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
        if status == Status::SessionUnknown {
            self.session = None;
        }
    }
}

/// One client: batches of 20 new transfers, each under its own origin (client, number), sent
/// until answered; what it saw goes into `history`.
async fn client(
    net: Arc<SimNet>,
    size: u64,
    client: u128,
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<History>>,
) {
    let mut number = 0u64;
    let mut session = SimClient::new(client);
    while !stop.load(Ordering::Relaxed) {
        number += 1;
        let ids: Vec<u128> = (0..20u128)
            .map(|i| (client << 64) | (u128::from(number) << 8) | i)
            .collect();
        let give_up = tokio::time::Instant::now() + Duration::from_secs(20);
        let answer = session
            .submit(
                &net,
                size,
                Kind::CreateTransfers,
                &transfers(&ids),
                number,
                give_up,
            )
            .await;
        let failed = answer
            .as_ref()
            .map_or(u64::MAX, |failures| failures.len() as u64);
        net.record(&[client as u64, number, failed]);
        let mut history = history.lock().expect("history");
        match answer {
            None => history.unknown.extend(&ids),
            Some(failures) => {
                let failed: BTreeMap<u32, String> = failures.into_iter().collect();
                for (index, id) in ids.iter().enumerate() {
                    match failed.get(&(index as u32)).or(failed.get(&u32::MAX)) {
                        Some(why) => history.failed.push((*id, why.clone())),
                        None => history.acknowledged.push(*id),
                    }
                }
            }
        }
    }
}

/// The fault schedule: every 200–500 ms one step of the run's mix, from the seed; at most a
/// minority crashed at once, each brought back 0.2–1 s later from the image its disk left.
async fn faults(
    cluster: &mut Cluster,
    mix: Mix,
    rng: &mut StdRng,
    until: tokio::time::Instant,
) -> Vec<String> {
    let size = cluster.replicas.len() as u64;
    let mut log = Vec::new();
    let mut crashed: Vec<(NodeId, tokio::time::Instant)> = Vec::new();
    let kinds = mix.kinds();
    if mix.lossy {
        let baseline = Link {
            down: false,
            loss_per_mille: rng.random_range(0..30),
            duplicate_per_mille: rng.random_range(0..100),
            delay_ms_max: rng.random_range(0..15),
        };
        *cluster.net.baseline.lock().expect("baseline") = baseline;
        log.push(format!("every link: {baseline:?}"));
    }
    while tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..500))).await;
        let now = tokio::time::Instant::now();
        let mut back = Vec::new();
        crashed.retain(|(id, at)| {
            let due = *at <= now;
            if due {
                back.push(*id);
            }
            !due
        });
        for id in back {
            cluster.restart(id).await;
            log.push(format!("restart {id}"));
        }
        let kind = kinds[rng.random_range(0..kinds.len())];
        let a = rng.random_range(1..=size);
        let b = a % size + 1;
        let net = Arc::clone(&cluster.net);
        let down = Link {
            down: true,
            ..Link::default()
        };
        match kind {
            "partition" => {
                net.heal();
                for other in (1..=size).filter(|other| *other != a) {
                    net.set_link(a, other, down);
                    net.set_link(other, a, down);
                }
                log.push(format!("partition {a} from the rest"));
            }
            "one-way" => {
                net.set_link(a, b, down);
                log.push(format!("cut {a} -> {b}"));
            }
            "isolate-leader" => {
                if let Some(leader) = cluster.leader(Duration::ZERO).await {
                    net.heal();
                    for other in (1..=size).filter(|other| *other != leader) {
                        net.set_link(leader, other, down);
                        net.set_link(other, leader, down);
                    }
                    log.push(format!("isolate leader {leader}"));
                }
            }
            "bridge" => {
                // a talks to everyone; the others are split in two halves that reach each
                // other only through a.
                net.heal();
                let others: Vec<NodeId> = (1..=size).filter(|other| *other != a).collect();
                let (left, right) = others.split_at(others.len() / 2);
                for l in left {
                    for r in right {
                        net.set_link(*l, *r, down);
                        net.set_link(*r, *l, down);
                    }
                }
                log.push(format!("bridge through {a}: {left:?} | {right:?}"));
            }
            "loss-delay-duplication" => {
                let link = Link {
                    down: false,
                    loss_per_mille: rng.random_range(0..200),
                    duplicate_per_mille: rng.random_range(0..200),
                    delay_ms_max: rng.random_range(0..40),
                };
                net.set_link(a, b, link);
                log.push(format!("{a} -> {b}: {link:?}"));
            }
            "crash" => {
                let minority = (size as usize - 1) / 2;
                if crashed.len() < minority && cluster.replicas[&a].running.is_some() {
                    cluster.crash(a, Some(rng.random())).await;
                    crashed.push((a, now + Duration::from_millis(rng.random_range(200..1000))));
                    log.push(format!("crash {a}"));
                }
            }
            "clock-jump" => {
                // The clock the entries are stamped with jumps back up to a minute or ahead
                // up to an hour (an NTP step, a VM resumed): stored timestamps must still be
                // unique and increasing, and pending timeouts must not misfire.
                let jump = if rng.random_bool(0.5) {
                    -rng.random_range(1..60_000_000_000i64)
                } else {
                    rng.random_range(1..3_600_000_000_000i64)
                };
                SIM_CLOCK.set((SIM_CLOCK.get().0, jump));
                log.push(format!("clock jumps {} ms", jump / 1_000_000));
            }
            _ => unreachable!("no fault kind {kind}"),
        }
        if rng.random_range(0..4) == 0 {
            net.heal();
            log.push("heal".to_owned());
        }
    }
    for (id, _) in crashed {
        cluster.restart(id).await;
        log.push(format!("restart {id}"));
    }
    cluster.net.heal();
    *cluster.net.baseline.lock().expect("baseline") = Link::default();
    log.push("heal all".to_owned());
    log
}

/// Heal, then judge the run: C9 (a new batch commits within 20 s), C8 (every replica reaches
/// one applied index with one digest within 30 s), C1, C2/C3 by count, C5. The violations
/// found, each naming its check (empty: all passed).
async fn judge(cluster: &Cluster, history: &History) -> Vec<String> {
    let mut bad = cluster.refused.clone();
    let size = cluster.replicas.len() as u64;
    for (id, why) in history.failed.iter().take(5) {
        bad.push(format!("C6: transfer {id:#x} failed: {why}"));
    }
    let probe_ids: Vec<u128> = (0..2).map(|i| (0xC9u128 << 64) | i).collect();
    // Regression (swarm seed 4139, three replicas): sent without an origin, a probe committed
    // after its attempt timed out was applied again on the retry and failed `Exists`. Like
    // every request it now goes under its client's id and request number.
    let give_up = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut prober = SimClient::new(0xC9);
    let body = transfers(&probe_ids);
    let probe = prober
        .submit(&cluster.net, size, Kind::CreateTransfers, &body, 1, give_up)
        .await;
    let probe_ok = match probe {
        None => {
            bad.push("C9: a new batch did not commit within 20 s of healing".to_owned());
            return bad;
        }
        Some(failures) if !failures.is_empty() => {
            bad.push(format!("C9: the probe's transfers failed: {failures:?}"));
            false
        }
        Some(_) => true,
    };
    let views: Vec<(NodeId, AppliedView)> = cluster
        .replicas
        .iter()
        .filter_map(|(id, replica)| {
            replica
                .running
                .as_ref()
                .map(|running| (*id, running.view.clone()))
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let digests: BTreeSet<_> = views.iter().map(|(_, view)| view.digest()).collect();
        let probe_everywhere = !probe_ok
            || views.iter().all(|(_, view)| {
                view.read(|applied| {
                    applied
                        .engine()
                        .is_some_and(|engine| engine.lookup_transfer(probe_ids[0]).is_some())
                })
            });
        if digests.len() == 1 && probe_everywhere {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bad.push(format!("C8: replicas do not converge: {digests:?}"));
            return bad;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let allowed = history.acknowledged.len() + history.unknown.len() + probe_ids.len();
    for (id, view) in &views {
        view.read(|applied| {
            let engine = applied.engine().expect("an engine");
            let missing: Vec<&u128> = history
                .acknowledged
                .iter()
                .filter(|t| engine.lookup_transfer(**t).is_none())
                .collect();
            if !missing.is_empty() {
                bad.push(format!(
                    "C1: replica {id} lacks {} acknowledged transfers, first {:#x}",
                    missing.len(),
                    missing[0]
                ));
            }
            let mut stamps: Vec<u64> = history
                .acknowledged
                .iter()
                .filter_map(|t| engine.lookup_transfer(*t))
                .map(|t| t.timestamp)
                .collect();
            stamps.sort_unstable();
            if stamps.windows(2).any(|pair| pair[0] == pair[1]) {
                bad.push(format!("C6: replica {id} gave two transfers one timestamp"));
            }
            let stored = engine.transfers_count();
            if stored > allowed || stored < history.acknowledged.len() {
                bad.push(format!(
                    "C2/C3: replica {id} stores {stored} transfers; {} acknowledged, {} unknown",
                    history.acknowledged.len(),
                    history.unknown.len()
                ));
            }
            for totals in engine.ledger_totals() {
                if totals.debits_posted != totals.credits_posted {
                    bad.push(format!(
                        "C5: replica {id}: ledger {} does not balance",
                        totals.ledger
                    ));
                }
            }
        });
    }
    bad
}

/// How one run ended.
struct Outcome {
    /// The violations found (empty: every check passed).
    bad: Vec<String>,
    /// The run's trace (`SimNet::trace`) with its schedule and counts folded in: equal for
    /// two runs of one seed.
    fingerprint: u64,
}

/// One simulated run: `size` replicas, `seconds` of simulated time under load from three
/// clients and the seed's fault mix (all kinds if `mix` is given).
async fn run(
    size: u64,
    seed: u64,
    seconds: u64,
    mix: Option<Mix>,
    lie_about_syncs: bool,
) -> Outcome {
    let mut rng = StdRng::seed_from_u64(seed);
    let mix = mix.unwrap_or_else(|| Mix::random(&mut rng));
    let mut cluster = Cluster::found(size, seed, lie_about_syncs).await;
    cluster.open_accounts().await;
    let stop = Arc::new(AtomicBool::new(false));
    let history = Arc::new(Mutex::new(History::default()));
    let clients: Vec<_> = (1..=3u128)
        .map(|c| {
            tokio::spawn(client(
                Arc::clone(&cluster.net),
                size,
                c,
                Arc::clone(&stop),
                Arc::clone(&history),
            ))
        })
        .collect();
    let until = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let log = faults(&mut cluster, mix, &mut rng, until).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("a client");
    }
    let history = std::mem::take(&mut *history.lock().expect("history"));
    let mut bad = judge(&cluster, &history).await;
    for (id, replica) in &mut cluster.replicas {
        if let Some(Running { raft, .. }) = replica.running.take() {
            bad.extend(shut_down(*id, raft).await.map(|why| format!("C9: {why}")));
        }
    }
    let net = &cluster.net;
    let schedule = log.iter().flat_map(|step| step.bytes()).map(u64::from);
    let counts = [
        history.acknowledged.len() as u64,
        history.unknown.len() as u64,
        net.delivered.load(Ordering::Relaxed),
        net.dropped.load(Ordering::Relaxed),
        net.duplicated.load(Ordering::Relaxed),
    ];
    net.record(&schedule.chain(counts).collect::<Vec<u64>>());
    eprintln!(
        "seed {seed}, {size} replicas, faults {:?}: {} steps, {} acknowledged, {} unknown; \
         messages {} delivered, {} lost, {} duplicated; trace {:016x}; {}",
        mix.kinds(),
        log.len(),
        history.acknowledged.len(),
        history.unknown.len(),
        cluster.net.delivered.load(Ordering::Relaxed),
        cluster.net.dropped.load(Ordering::Relaxed),
        cluster.net.duplicated.load(Ordering::Relaxed),
        cluster.net.trace.load(Ordering::Relaxed),
        if bad.is_empty() {
            "C1-C9 pass"
        } else {
            "FAILED"
        }
    );
    if !bad.is_empty() {
        eprintln!("violations: {bad:#?}\nschedule: {log:?}\nreplay: TALLY_SIM_SEED={seed} TALLY_SIM_REPLICAS={size} cargo test --release --test sim_cluster one_seed -- --nocapture");
    }
    Outcome {
        bad,
        fingerprint: net.trace.load(Ordering::Relaxed),
    }
}

/// Stop replica `id`'s Raft; why not, if it does not stop within 10 s (a replica stuck in its
/// core: found by swarm seed 4223, where a hung purge also held the swarm for good).
async fn shut_down(id: NodeId, raft: Raft) -> Option<String> {
    match tokio::time::timeout(Duration::from_secs(10), raft.shutdown()).await {
        Ok(_) => None,
        Err(_) => Some(format!("replica {id}'s Raft did not shut down within 10 s")),
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
}

/// Proves the checks hold under every fault kind: 25 seeds on three replicas and 25 on five,
/// each with its own random fault mix (every kind appears across them; the first seed of each
/// size runs all kinds at once), four simulated seconds of load each (`TALLY_SIM_SECONDS`).
/// Behind `TALLY_SOAK=1`, a swarm of `TALLY_SIM_SEEDS` seeds (1,000 by default) on each size.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn seeds_under_every_fault_kind() {
    let soak = std::env::var("TALLY_SOAK").as_deref() == Ok("1");
    let seeds = if soak {
        env_u64("TALLY_SIM_SEEDS").unwrap_or(1000)
    } else {
        25
    };
    let seconds = env_u64("TALLY_SIM_SECONDS").unwrap_or(4);
    let first = env_u64("TALLY_SIM_FIRST_SEED").unwrap_or(1);
    let mut failed = Vec::new();
    for size in [3, 5] {
        for seed in first..first + seeds {
            let mix = (seed == first).then_some(Mix::ALL);
            let bad = run(size, seed, seconds, mix, false).await.bad;
            if !bad.is_empty() {
                failed.push((size, seed, bad));
            }
        }
    }
    assert!(failed.is_empty(), "failed seeds: {failed:#?}");
}

/// Replays one seed (`TALLY_SIM_SEED`, `TALLY_SIM_REPLICAS`, `TALLY_SIM_SECONDS`, and
/// `TALLY_SIM_KINDS` to force a fault mix, e.g. `crash,clock-jump`); without a seed it runs
/// seed 1 on three replicas.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn one_seed() {
    let seed = env_u64("TALLY_SIM_SEED").unwrap_or(1);
    let size = env_u64("TALLY_SIM_REPLICAS").unwrap_or(3);
    let seconds = env_u64("TALLY_SIM_SECONDS").unwrap_or(4);
    let mix = std::env::var("TALLY_SIM_KINDS")
        .ok()
        .map(|list| Mix::only(&list));
    let bad = run(size, seed, seconds, mix, false).await.bad;
    assert!(bad.is_empty(), "{bad:#?}");
}

/// Proves one seed determines its run: the same seeds, each run twice in this process, on
/// three and on five replicas with every fault kind, leave the same trace — every message's
/// fate at the same simulated time, every client answer, the schedule and the counts.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_seed_replays_exactly() {
    for (size, seed) in [(3, 11), (5, 12)] {
        let first = run(size, seed, 4, Some(Mix::ALL), false).await;
        let again = run(size, seed, 4, Some(Mix::ALL), false).await;
        assert!(first.bad.is_empty(), "{:#?}", first.bad);
        assert_eq!(
            first.fingerprint, again.fingerprint,
            "seed {seed} on {size} replicas ran differently the second time"
        );
    }
}

/// Proves the simulator can fail: with disks that acknowledge syncs without making anything
/// durable (what a WAL acknowledging before its fsync amounts to), crashing every replica at
/// once loses acknowledged transfers, and the checks say so (C1).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn acknowledging_before_the_sync_is_caught() {
    let mut cluster = Cluster::found(3, 7, true).await;
    cluster.open_accounts().await;
    let stop = Arc::new(AtomicBool::new(false));
    let history = Arc::new(Mutex::new(History::default()));
    let writer = tokio::spawn(client(
        Arc::clone(&cluster.net),
        3,
        1,
        Arc::clone(&stop),
        Arc::clone(&history),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("the client");
    for id in 1..=3 {
        cluster.crash(id, None).await;
    }
    for id in 1..=3 {
        cluster.restart(id).await;
    }
    let history = std::mem::take(&mut *history.lock().expect("history"));
    assert!(!history.acknowledged.is_empty(), "nothing was acknowledged");
    let mut bad = judge(&cluster, &history).await;
    for (id, replica) in &mut cluster.replicas {
        if let Some(Running { raft, .. }) = replica.running.take() {
            bad.extend(shut_down(*id, raft).await.map(|why| format!("C9: {why}")));
        }
    }
    eprintln!("with lying syncs: {bad:#?}");
    assert!(
        bad.iter().any(|violation| violation.starts_with("C1")),
        "acknowledged writes lost by every replica went unnoticed: {bad:?}"
    );
}
