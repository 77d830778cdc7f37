//! A Tally node, assembled: one replica's storage and openraft (`tally-raft`), the batcher and
//! the gateway (`tally-gateway`), the peer listener and the client listener, started and
//! stopped together. Replica RPCs are served on the peer listener only, the client protocol on
//! the client listener only.
//!
//! Lifecycle: [`Node::start`] opens the data directory (restoring the newest snapshot and the
//! log after it), starts openraft and serves on the listen addresses; if the node is fresh and
//! the config names bootstrap members, it initializes the cluster. [`Node::shutdown`] stops
//! accepting batches, lets the queued and in-flight ones commit and answer, stops openraft
//! (whose log store flushes and closes the WAL) and stops serving. [`Probe`] is what the admin
//! HTTP port asks.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use openraft::RaftMetrics;
use tally_engine::EngineConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use tally_gateway::batcher::{start_checkpoint_clock, start_expiry_clock};
use tally_gateway::{Batcher, BatcherConfig, Gateway, GatewayConfig, GatewayMetrics, GatewayParts};
use tally_raft::metrics::{Listener, LogState, NodeMetrics, ScrapeState};
use tally_raft::net::server::{serve_clients, serve_peers};
use tally_raft::net::{start_raft, ClientHandler, NodeTls};
use tally_raft::replication::types::{Node as Member, NodeId, TypeConfig};
use tally_raft::replication::{open_storage, AppliedView, CommittedIndex, StorageOpenError};
use tally_raft::storage::Disk;
use tally_raft::wal::{WalConfig, WalReader};

type Raft = openraft::Raft<TypeConfig>;

/// Everything a node needs to start.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: NodeId,
    /// Where the node listens for clients (the client protocol; TLS unless plaintext).
    pub listen: SocketAddr,
    /// Where the node listens for replicas (Raft RPCs; mutual TLS, members only).
    pub peer_listen: SocketAddr,
    /// TLS for both listeners and for dialling replicas. `None` is `insecure_plaintext`:
    /// anyone who reaches the peer port can speak Raft (tests and trusted networks only).
    pub tls: Option<NodeTls>,
    /// The data directory (docs/wal.md, `replication` module docs).
    pub data_dir: PathBuf,
    /// If the node is fresh (nothing in its log), initialize a cluster of these voters
    /// (id → addresses; must include this node). Give the same list to every founding node,
    /// or to one of them only: a node that already has a log ignores it.
    pub bootstrap: BTreeMap<NodeId, Member>,
    /// Peers this node dials at another address than their membership entry's (config
    /// `[dial]`).
    pub dial: BTreeMap<NodeId, String>,
    pub raft: openraft::Config,
    /// The cluster's checkpoint key: while this node leads it signs a checkpoint of the
    /// verifiable log at least once a second (`start_checkpoint_clock`). None: no checkpoints.
    pub checkpoint_key: Option<std::sync::Arc<tally_engine::checkpoint::NoteSigner>>,
    /// Build a snapshot once the WAL has taken this many bytes since the last one, besides
    /// openraft's policy by entries (`raft.snapshot_every_mib`); `None`: by entries only.
    pub snapshot_every_bytes: Option<u64>,
    pub wal: WalConfig,
    pub batcher: BatcherConfig,
    pub engine: EngineConfig,
    /// The client protocol's configuration: cluster id, credentials, session idle time.
    pub gateway: GatewayConfig,
}

impl Probe {
    /// Whether the node can still do its job at all (`/health`): its WAL is not poisoned and
    /// its Raft has not stopped on a fatal error (a storage error, a panic). `Err` says why.
    ///
    /// Neither heals while the process runs: a poisoned WAL refuses every write until it is
    /// reopened, and openraft does not restart after `Fatal`. The cure is a restart, which
    /// recovers from what is durable (docs/operations.md), so `tally node` exits on it.
    pub fn health(&self) -> Result<(), String> {
        self.health_of(&self.raft.metrics().borrow())
    }

    fn health_of(&self, metrics: &RaftMetrics<NodeId, Member>) -> Result<(), String> {
        if let Some(poisoned) = self.wal.poisoned() {
            return Err(poisoned.to_string());
        }
        if let Err(fatal) = &metrics.running_state {
            return Err(format!("replication stopped: {fatal}"));
        }
        Ok(())
    }

    /// Wait until [`Probe::health`] fails, and return why. Wakes at every change of openraft's
    /// metrics (a fatal error is one) and every [`HEALTH_POLL_INTERVAL`], for a WAL poisoned
    /// while openraft has not yet heard of it.
    pub async fn unhealthy(&self) -> String {
        let mut metrics = self.raft.metrics();
        loop {
            if let Err(reason) = self.health() {
                return reason;
            }
            tokio::select! {
                changed = metrics.changed() => {
                    if changed.is_err() {
                        // openraft dropped its metrics sender: its core is gone.
                        if let Err(reason) = self.health() {
                            return reason;
                        }
                        return "replication stopped: openraft's core has exited".to_owned();
                    }
                }
                () = tokio::time::sleep(HEALTH_POLL_INTERVAL) => {}
            }
        }
    }

    /// The commit index this node knows: the leader's decision, or what the leader told it.
    pub fn committed_index(&self) -> Option<u64> {
        self.committed.get()
    }

    /// Whether the node should receive traffic (`/ready`): it is healthy, knows a leader, is a
    /// member, and has applied within [`READY_LAG_ENTRIES_MAX`] entries of the commit index it
    /// knows. `Err` says why not.
    ///
    /// A follower learns the commit index from the leader, so a follower cut off from the
    /// leader keeps its last answer until an election timeout passes and it stops naming a
    /// leader.
    pub fn readiness(&self) -> Result<(), String> {
        self.readiness_of(&self.raft.metrics().borrow())
    }

    fn readiness_of(&self, metrics: &RaftMetrics<NodeId, Member>) -> Result<(), String> {
        self.health_of(metrics)?;
        let Some(leader) = metrics.current_leader else {
            return Err(format!("no leader known (term {})", metrics.current_term));
        };
        let membership = metrics.membership_config.membership();
        if !membership.nodes().any(|(id, _)| *id == self.id) {
            return Err("not a member of the cluster".to_owned());
        }
        let Some(committed) = self.committed.get() else {
            return Err(format!("no commit index heard yet from leader {leader}"));
        };
        let applied = metrics.last_applied.map(|id| id.index);
        let behind = match applied {
            Some(applied) => committed.saturating_sub(applied),
            None => committed + 1,
        };
        if behind > READY_LAG_ENTRIES_MAX {
            return Err(format!(
                "applying: {behind} entries behind the commit index {committed}"
            ));
        }
        Ok(())
    }

    /// Refresh the gauges read at scrape time and return every metric in Prometheus's text
    /// format.
    pub fn scrape(&self) -> String {
        let raft = self.raft.metrics().borrow().clone();
        let ready = self.readiness_of(&raft).is_ok();
        // Nothing while a snapshot is installed (no state stands then).
        let ((accounts, transfers, trades), log) = self.view.read(|applied| {
            let diverged = applied.diverged().is_some();
            applied.engine().map_or(
                (
                    (0, 0, 0),
                    LogState {
                        diverged,
                        ..LogState::default()
                    },
                ),
                |engine| {
                    let log = LogState {
                        leaves: engine.log_size(),
                        checkpoints: engine.checkpoints_count(),
                        latest: engine
                            .latest_checkpoint()
                            .map(|(_, checkpoint)| (checkpoint.size, checkpoint.time_ns)),
                        diverged,
                        access_reads: engine.access_size(),
                        access_checkpointed: engine
                            .latest_access_checkpoint()
                            .map_or(0, |(_, checkpoint)| checkpoint.size),
                    };
                    let counts = (
                        engine.accounts_count() as u64,
                        engine.transfers_count() as u64,
                        engine.trades_count() as u64,
                    );
                    (counts, log)
                },
            )
        });
        self.view.read(|applied| {
            self.settlement_metrics
                .refresh(applied.engine().map(|engine| engine.settlement()))
        });
        let state = ScrapeState {
            committed_index: self.committed.get(),
            accounts,
            transfers,
            trades,
            ready,
            log,
        };
        self.metrics.scrape(&raft, state, &self.data_dir)
    }
}

/// Why a node could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the data directory: {0}")]
    Storage(#[from] StorageOpenError),
    #[error("invalid raft configuration: {0}")]
    Config(#[from] openraft::ConfigError),
    #[error("openraft: {0}")]
    Raft(String),
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), NodeError> {
    let listen = |source| NodeError::Listen { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(listen)?;
    let local = listener.local_addr().map_err(listen)?;
    Ok((listener, local))
}

/// A node is ready while its applied index is at most this many entries behind the commit
/// index it knows (an entry is at most 1 MiB of events; a few are normally being applied).
pub const READY_LAG_ENTRIES_MAX: u64 = 16;

/// How often [`Probe::unhealthy`] looks at the WAL between changes of openraft's metrics. A
/// poisoned WAL fails openraft's next write anyway (and so its metrics change); this bounds the
/// time until an idle node notices, at the cost of one mutex lock per second.
pub const HEALTH_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a graceful shutdown waits for the batches in flight to be decided.
pub const SHUTDOWN_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// A running node.
pub struct Node {
    clients: Arc<dyn ClientHandler>,
    batcher_task: JoinHandle<()>,
    /// `snapshot_by_bytes`, if the config asks for it.
    snapshot_task: Option<JoinHandle<()>>,
    /// The leader's expiry clock (`tally_gateway::batcher::start_expiry_clock`).
    expiry_clock: JoinHandle<()>,
    /// The leader's checkpoint clock, with a key (`start_checkpoint_clock`).
    checkpoint_clock: Option<JoinHandle<()>>,
    server_tasks: [JoinHandle<()>; 2],
    stop_serving: watch::Sender<bool>,
    local_addr: SocketAddr,
    peer_addr: SocketAddr,
    probe: Probe,
}

/// What the admin HTTP port asks a node: its metrics, whether it is healthy and whether it is
/// ready. Cheap to clone; it outlives nothing (after shutdown it reports the stopped state).
#[derive(Clone)]
pub struct Probe {
    id: NodeId,
    raft: Raft,
    view: AppliedView,
    metrics: NodeMetrics,
    settlement_metrics: tally_raft::settlement_metrics::SettlementMetrics,
    committed: CommittedIndex,
    data_dir: PathBuf,
    /// The WAL's state, for [`Probe::health`] (the WAL itself belongs to openraft's log store).
    wal: WalReader,
}

impl Node {
    /// Open the data directory, start openraft and serve. Bootstraps a fresh cluster if the
    /// config says so.
    pub async fn start(config: NodeConfig, disk: Arc<dyn Disk>) -> Result<Node, NodeError> {
        let started = std::time::Instant::now();
        let (listener, local_addr) = bind(config.listen).await?;
        let (peer_listener, peer_addr) = bind(config.peer_listen).await?;
        let data_dir = config.data_dir.clone();
        let (log_store, state_machine) = tokio::task::spawn_blocking(move || {
            open_storage(disk, &data_dir, config.wal, config.engine)
        })
        .await
        .map_err(|error| NodeError::Raft(format!("opening storage panicked: {error}")))??;
        let opened = started.elapsed();
        let view = state_machine.view();
        let metrics = NodeMetrics::new(log_store.wal().backend().name());
        metrics.record_startup("open_storage", opened);
        if config.tls.is_none() {
            tracing::warn!(
                node = config.id,
                "INSECURE: insecure_plaintext is set: both listeners serve plain TCP and anyone \
                 who can reach the peer port can speak Raft to this node"
            );
        }
        for listener in Listener::ALL {
            metrics
                .insecure_plaintext
                .with_label_values(&[listener.label()])
                .set(i64::from(config.tls.is_none()));
        }
        log_store.wal().metrics().register(metrics.registry());
        state_machine
            .snapshot_metrics()
            .register(metrics.registry());
        let settlement_metrics = state_machine.settlement_metrics();
        settlement_metrics.register(metrics.registry());
        let committed = log_store.committed_index();
        let wal = log_store.wal().reader();
        let raft_config = Arc::new(config.raft.clone().validate()?);
        let raft = start_raft(
            config.id,
            raft_config,
            config.tls.as_ref(),
            config.dial.clone(),
            log_store,
            state_machine,
        )
        .await
        .map_err(|error| NodeError::Raft(error.to_string()))?;
        let raft_started = started.elapsed() - opened;
        metrics.record_startup("start_raft", raft_started);
        tracing::info!(
            node = config.id,
            open_storage_s = opened.as_secs_f64(),
            start_raft_s = raft_started.as_secs_f64(),
            "started"
        );
        let gateway_metrics = GatewayMetrics::new(&metrics);
        let (batcher, batcher_task) =
            Batcher::start(raft.clone(), config.batcher, gateway_metrics.clone());
        let clients: Arc<dyn ClientHandler> = Arc::new(Gateway::new(
            config.gateway.clone(),
            GatewayParts {
                raft: raft.clone(),
                view: view.clone(),
                batcher,
                metrics: gateway_metrics,
                committed: committed.clone(),
            },
        ));
        let (stop_serving, stopped) = watch::channel(false);
        let server_tasks = [
            tokio::spawn(serve_peers(
                peer_listener,
                raft.clone(),
                config.tls.as_ref().map(|tls| Arc::clone(&tls.peer_server)),
                metrics.clone(),
                stopped.clone(),
            )),
            tokio::spawn(serve_clients(
                listener,
                Arc::clone(&clients),
                config
                    .tls
                    .as_ref()
                    .map(|tls| Arc::clone(&tls.client_server)),
                metrics.clone(),
                stopped,
            )),
        ];
        if !config.bootstrap.is_empty() && !raft.is_initialized().await.unwrap_or(true) {
            let members = config.bootstrap.clone();
            tracing::info!(node = config.id, ?members, "initializing a fresh cluster");
            match raft.initialize(members).await {
                Ok(()) => {}
                // Another founding node got there first and this one already heard of it.
                Err(openraft::error::RaftError::APIError(
                    openraft::error::InitializeError::NotAllowed(reason),
                )) => tracing::info!(node = config.id, %reason, "already initialized"),
                Err(error) => return Err(NodeError::Raft(format!("initialize: {error}"))),
            }
        } else {
            // The only voter needs nobody's vote: it campaigns now instead of waiting out an
            // election timeout (1–2 s) before it serves again after a restart.
            let sole_voter = raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .voter_ids()
                .eq([config.id]);
            if sole_voter {
                if let Err(error) = raft.trigger().elect().await {
                    tracing::warn!(%error, "the sole voter could not campaign at once; it will after its election timeout");
                }
            }
        }
        let expiry_clock =
            start_expiry_clock(raft.clone(), view.clone(), config.id, config.batcher.clock);
        let checkpoint_clock = config.checkpoint_key.clone().map(|key| {
            start_checkpoint_clock(
                raft.clone(),
                view.clone(),
                config.id,
                config.batcher.clock,
                key,
            )
        });
        let snapshot_task = config
            .snapshot_every_bytes
            .map(|every| tokio::spawn(snapshot_by_bytes(raft.clone(), wal.clone(), every)));
        let probe = Probe {
            id: config.id,
            raft,
            view,
            metrics,
            settlement_metrics,
            committed,
            data_dir: config.data_dir,
            wal,
        };
        Ok(Node {
            clients,
            batcher_task,
            snapshot_task,
            expiry_clock,
            checkpoint_clock,
            server_tasks,
            stop_serving,
            local_addr,
            peer_addr,
            probe,
        })
    }

    pub fn id(&self) -> NodeId {
        self.probe.id
    }

    /// The address the client listener actually listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the peer listener actually listens on (useful with port 0).
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    pub fn raft(&self) -> &Raft {
        &self.probe.raft
    }

    pub fn view(&self) -> &AppliedView {
        &self.probe.view
    }

    /// The handle the admin HTTP port uses: metrics and readiness.
    pub fn probe(&self) -> Probe {
        self.probe.clone()
    }

    pub fn metrics(&self) -> &NodeMetrics {
        &self.probe.metrics
    }

    /// Graceful shutdown: stop accepting batches; let the queued and in-flight ones commit and
    /// be answered; stop openraft (the WAL closes after its last flush); stop serving.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        tracing::info!(node = self.probe.id, "shutting down: no new batches");
        self.clients.stop_accepting();
        drop(self.clients);
        // The batcher ends once its queue is empty and its entries are decided. Without a
        // quorum (the other nodes stopped first) they never are: give up after a while; the
        // clients of those batches get no answer, which they treat as an unknown outcome.
        if tokio::time::timeout(SHUTDOWN_DRAIN, self.batcher_task)
            .await
            .is_err()
        {
            tracing::warn!(
                node = self.probe.id,
                "batches in flight not decided within {SHUTDOWN_DRAIN:?}; stopping anyway"
            );
        }
        if let Some(task) = self.snapshot_task {
            task.abort();
        }
        self.expiry_clock.abort();
        if let Some(clock) = &self.checkpoint_clock {
            clock.abort();
        }
        let result = self
            .probe
            .raft
            .shutdown()
            .await
            .map_err(|error| NodeError::Raft(format!("shutdown: {error}")));
        let _ = self.stop_serving.send(true);
        for task in self.server_tasks {
            let _ = task.await;
        }
        tracing::info!(node = self.probe.id, "stopped");
        result
    }
}

/// How often `snapshot_by_bytes` looks at the WAL.
const SNAPSHOT_BY_BYTES_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Ask openraft for a snapshot whenever the WAL has taken `every` bytes since the last one
/// (openraft's own policy counts entries only, and 10,000 entries of 8,189 transfers are
/// 10 GB of log to replay after a restart). Counted from this node's start: the first
/// snapshot after a restart may come up to `every` bytes later than it would have.
async fn snapshot_by_bytes(raft: Raft, wal: WalReader, every: u64) {
    let mut ticks = tokio::time::interval(SNAPSHOT_BY_BYTES_POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut snapshot = raft.metrics().borrow().snapshot;
    let mut since = wal.bytes_committed();
    loop {
        ticks.tick().await;
        let now = raft.metrics().borrow().snapshot;
        if now != snapshot {
            // A snapshot was built or installed (by either policy): count from here.
            snapshot = now;
            since = wal.bytes_committed();
            continue;
        }
        let written = wal.bytes_committed().saturating_sub(since);
        if written >= every {
            tracing::info!(written, every, "snapshot: WAL bytes since the last one");
            if let Err(error) = raft.trigger().snapshot().await {
                tracing::warn!(%error, "no snapshot by bytes: openraft has stopped");
                return;
            }
            // Not again before this one is built (or `every` more bytes).
            since = wal.bytes_committed();
        }
    }
}
