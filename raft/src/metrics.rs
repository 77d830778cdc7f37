//! A node's Prometheus metrics (catalog: docs/operations.md, "Metrics").
//!
//! Every node has its own [`Registry`] (several nodes share a process in tests). Components
//! that run on their own threads create their metrics themselves, unregistered, and the node
//! registers them: the WAL ([`WalMetrics`]) and the snapshot store ([`SnapshotMetrics`]). The
//! rest of the replica's lives in [`NodeMetrics`], which the server updates as it works (and
//! whose registry the gateway registers its own metrics in); Raft's state is read from
//! openraft's metrics when a scrape asks ([`NodeMetrics::refresh`]).
//!
//! Conventions: names `tally_*`, base units (seconds, bytes), counters end in `_total`.
//! Updating a metric is an atomic add; nothing here allocates on the hot path once a label
//! value has been seen.

use std::path::Path;

use openraft::{RaftMetrics, ServerState};
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::replication::types::NodeId;

/// Latency buckets: 25 µs × 2^k for k = 0..19, so 25 µs up to about 13 s: a bucket per
/// doubling resolves an fdatasync of tens of microseconds and a stall of seconds alike.
pub fn latency_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(25e-6, 2.0, 20).unwrap_or_default()
}

/// Events per client batch: 1, 2, 4, … 16,384 (a full batch is 8,189).
pub fn batch_size_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(1.0, 2.0, 15).unwrap_or_default()
}

pub fn histogram(name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .unwrap_or_else(|error| unreachable!("histogram {name}: {error}"))
}

pub fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).unwrap_or_else(|error| unreachable!("counter {name}: {error}"))
}

pub fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).unwrap_or_else(|error| unreachable!("gauge {name}: {error}"))
}

pub fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|error| unreachable!("counter {name}: {error}"))
}

pub fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|error| unreachable!("gauge {name}: {error}"))
}

/// Register `collector` in `registry`. Names are fixed in this module, so a clash is a bug in
/// it; registering the same component twice (a second node in one process has its own
/// registry) cannot happen.
pub fn register(registry: &Registry, collector: impl prometheus::core::Collector + 'static) {
    if let Err(error) = registry.register(Box::new(collector)) {
        unreachable!("metric registered twice: {error}");
    }
}

/// The WAL's metrics, updated by its commit thread.
#[derive(Clone, Debug)]
pub struct WalMetrics {
    /// One group commit: the write and the fdatasync after it.
    pub fsync_seconds: Histogram,
    pub bytes_written: IntCounter,
}

impl WalMetrics {
    pub fn new() -> WalMetrics {
        WalMetrics {
            fsync_seconds: histogram(
                "tally_wal_fsync_seconds",
                "WAL group commits: one write and its fdatasync, in seconds.",
                latency_buckets(),
            ),
            bytes_written: counter(
                "tally_wal_bytes_written_total",
                "Bytes written to the WAL by group commits, headers and padding included.",
            ),
        }
    }

    pub fn register(&self, registry: &Registry) {
        register(registry, self.fsync_seconds.clone());
        register(registry, self.bytes_written.clone());
    }
}

impl Default for WalMetrics {
    fn default() -> WalMetrics {
        WalMetrics::new()
    }
}

/// The snapshot store's metrics.
#[derive(Clone, Debug)]
pub struct SnapshotMetrics {
    /// Snapshots made current, by origin: `built` here or `installed` from the leader.
    pub saved: IntCounterVec,
    /// Bytes of the newest snapshot file.
    pub size_bytes: IntGauge,
    /// How long taking a snapshot's frozen view of the state stopped the apply path.
    pub apply_pause: Histogram,
    /// How far resident memory rose during the last snapshot build or install, by phase.
    pub rss_growth: IntGaugeVec,
    /// Bytes of the snapshots built here: `written` anew, or `kept` (taken from the section
    /// files of an earlier one).
    pub written: IntCounterVec,
}

impl SnapshotMetrics {
    pub fn new() -> SnapshotMetrics {
        let saved = counter_vec(
            "tally_snapshots_total",
            "Snapshots made durable and current, by origin (built here, installed from the leader).",
            &["origin"],
        );
        for origin in ["built", "installed"] {
            saved.with_label_values(&[origin]);
        }
        let written = counter_vec(
            "tally_snapshot_bytes_total",
            "Bytes of the snapshots built here: written anew (kind=written) or taken from the \
             section files of an earlier snapshot, unchanged since (kind=kept).",
            &["kind"],
        );
        for kind in ["written", "kept"] {
            written.with_label_values(&[kind]);
        }
        SnapshotMetrics {
            saved,
            size_bytes: gauge(
                "tally_snapshot_size_bytes",
                "Size of the newest snapshot image in bytes (0 before the first).",
            ),
            apply_pause: histogram(
                "tally_snapshot_apply_pause_seconds",
                "How long each snapshot stopped applies: the time its frozen view of the state \
                 took, while the state machine was held (the image is written afterwards, \
                 off the apply path).",
                vec![
                    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                    0.1, 0.25, 1.0,
                ],
            ),
            rss_growth: {
                let growth = gauge_vec(
                    "tally_snapshot_rss_growth_bytes",
                    "How far the node's resident memory rose above where it was when the last \
                     snapshot build (phase=build) or install (phase=install) began, sampled \
                     every 10 ms while it ran (0 before the first).",
                    &["phase"],
                );
                for phase in ["build", "install"] {
                    growth.with_label_values(&[phase]);
                }
                growth
            },
            written,
        }
    }

    pub fn register(&self, registry: &Registry) {
        register(registry, self.saved.clone());
        register(registry, self.size_bytes.clone());
        register(registry, self.apply_pause.clone());
        register(registry, self.rss_growth.clone());
        register(registry, self.written.clone());
    }
}

impl Default for SnapshotMetrics {
    fn default() -> SnapshotMetrics {
        SnapshotMetrics::new()
    }
}

/// Resident set size of this process in bytes, from /proc (Linux); 0 where unavailable.
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Run `work` while a thread samples resident memory every 10 ms: its result, and how far
/// resident memory rose above where it was when `work` began (the peak seen, not the end).
pub fn watching_resident<T>(work: impl FnOnce() -> T) -> (T, u64) {
    let start = resident_bytes();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut peak = start;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(resident_bytes());
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            peak.max(resident_bytes())
        });
        let result = work();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let peak = sampler.join().unwrap_or(start);
        (result, peak.saturating_sub(start))
    })
}

/// Why a request was refused before it reached the ledger (`tally_rejects_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// Unknown credential, wrong role or scope, wrong cluster id.
    Auth,
    /// The batcher's queue or a session's in-flight limit is full.
    Busy,
    /// A request that does not decode or fails validation.
    Malformed,
    /// This node does not lead; the client is told who does.
    NotLeader,
    /// A frame or batch over its size limit.
    TooLarge,
    /// The node is shutting down or replication stopped.
    ShuttingDown,
    /// A submitter's create request debits (or creates) an account outside its credential's
    /// scope: refused whole by the gateway, nothing submitted.
    OutOfScope,
    /// A create request reusing a session's request number for other contents: refused,
    /// nothing submitted (a client bug: its numbers must be new per request).
    RequestNumberReused,
}

impl Reject {
    pub const ALL: [Reject; 8] = [
        Reject::Auth,
        Reject::Busy,
        Reject::Malformed,
        Reject::NotLeader,
        Reject::TooLarge,
        Reject::ShuttingDown,
        Reject::OutOfScope,
        Reject::RequestNumberReused,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Reject::Auth => "auth",
            Reject::Busy => "busy",
            Reject::Malformed => "malformed",
            Reject::NotLeader => "not_leader",
            Reject::TooLarge => "too_large",
            Reject::ShuttingDown => "shutting_down",
            Reject::OutOfScope => "out_of_scope",
            Reject::RequestNumberReused => "request_number_reused",
        }
    }
}

/// A node's listeners (`listener` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// Replica traffic: mutual TLS, members only.
    Peer,
    /// The client protocol.
    Client,
}

impl Listener {
    pub const ALL: [Listener; 2] = [Listener::Peer, Listener::Client];

    pub fn label(self) -> &'static str {
        match self {
            Listener::Peer => "peer",
            Listener::Client => "client",
        }
    }
}

/// Why a connection was closed before any of its frames was handled
/// (`tally_connections_refused_total{listener, reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The listener's connection budget was full.
    Budget,
    /// The TLS handshake failed: no certificate, another CA, not TLS at all.
    Handshake,
    /// A peer certificate that names no member of the current membership.
    NotMember,
    /// No handshake or first frame within `FIRST_FRAME_TIMEOUT`.
    Timeout,
    /// A frame of the other listener's kinds (a Raft RPC on the client port, or the reverse),
    /// or a replica request sent in another node's name.
    Kind,
}

impl Refused {
    pub const ALL: [Refused; 5] = [
        Refused::Budget,
        Refused::Handshake,
        Refused::NotMember,
        Refused::Timeout,
        Refused::Kind,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Refused::Budget => "budget",
            Refused::Handshake => "handshake",
            Refused::NotMember => "not_member",
            Refused::Timeout => "timeout",
            Refused::Kind => "kind",
        }
    }
}

/// The operations' label values, by wire byte.
pub fn operation_label(operation: tally_engine::Operation) -> &'static str {
    match operation {
        tally_engine::Operation::CreateAccounts => "create_accounts",
        tally_engine::Operation::CreateTransfers => "create_transfers",
        tally_engine::Operation::CreateTrades => "create_trades",
        tally_engine::Operation::CreateSettlements => "create_settlements",
        tally_engine::Operation::CreateInstructions => "create_instructions",
        tally_engine::Operation::SettlementCommands => "settlement_commands",
    }
}

/// Everything a node exports but the WAL's and the snapshot store's metrics.
#[derive(Clone, Debug)]
pub struct NodeMetrics {
    registry: Registry,
    /// Held by a scrape from refresh to encode, so concurrent scrapes (two Prometheus servers)
    /// never see another's half-refreshed per-follower series.
    scraping: std::sync::Arc<std::sync::Mutex<()>>,
    // Written by the server and (through `reject`) the gateway.
    pub rejects: IntCounterVec,
    pub connections: IntGauge,
    pub connections_accepted: IntCounter,
    pub connections_refused: IntCounterVec,
    /// 1 for each listener that serves plain TCP (`insecure_plaintext`), 0 under TLS.
    pub insecure_plaintext: IntGaugeVec,
    // Refreshed from openraft's metrics and the applied state at each scrape.
    raft_term: IntGauge,
    raft_leader_id: IntGauge,
    raft_is_leader: IntGauge,
    raft_state: IntGaugeVec,
    raft_last_log_index: IntGauge,
    raft_committed_index: IntGauge,
    raft_applied_index: IntGauge,
    raft_snapshot_index: IntGauge,
    raft_purged_index: IntGauge,
    raft_voters: IntGauge,
    raft_learners: IntGauge,
    raft_matched_index: IntGaugeVec,
    raft_lag_entries: IntGaugeVec,
    raft_quorum_ack_age: Gauge,
    ledger_accounts: IntGauge,
    ledger_transfers: IntGauge,
    ledger_trades: IntGauge,
    log_leaves: IntGauge,
    log_checkpoints: IntGauge,
    log_checkpoint_lag: IntGauge,
    log_checkpoint_age: Gauge,
    log_root_mismatch: IntGauge,
    access_reads: IntGauge,
    access_checkpoint_lag: IntGauge,
    data_dir_free_bytes: IntGauge,
    data_dir_size_bytes: IntGauge,
    wal_backend: IntGaugeVec,
    ready: IntGauge,
    /// Set once per process by the node as it starts (`record_startup`).
    startup_seconds: GaugeVec,
}

/// What a scrape reads besides openraft's metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScrapeState {
    /// The commit index this node knows (leader: decided; follower: told by the leader).
    pub committed_index: Option<u64>,
    pub accounts: u64,
    pub transfers: u64,
    pub trades: u64,
    pub ready: bool,
    pub log: LogState,
}

/// The verifiable log as a scrape sees it.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogState {
    pub leaves: u64,
    pub checkpoints: u64,
    /// The latest checkpoint's tree size and time (ns since the Unix epoch), if any.
    pub latest: Option<(u64, u64)>,
    /// A checkpoint showed this replica's history differs from the one signed.
    pub diverged: bool,
    /// Reads in the access trail, and how many of them its latest checkpoint covers.
    pub access_reads: u64,
    pub access_checkpointed: u64,
}

const RAFT_STATES: [(&str, ServerState); 5] = [
    ("leader", ServerState::Leader),
    ("follower", ServerState::Follower),
    ("candidate", ServerState::Candidate),
    ("learner", ServerState::Learner),
    ("shutdown", ServerState::Shutdown),
];

fn index_or_minus_one(index: Option<u64>) -> i64 {
    index.map_or(-1, |index| i64::try_from(index).unwrap_or(i64::MAX))
}

impl NodeMetrics {
    /// A fresh registry with every node metric, the process collector and `tally_build_info`.
    pub fn new(wal_backend: &str) -> NodeMetrics {
        let registry = Registry::new();
        let rejects = counter_vec(
            "tally_rejects_total",
            "Requests refused before they reached the ledger, by reason.",
            &["reason"],
        );
        for reason in Reject::ALL {
            rejects.with_label_values(&[reason.label()]);
        }
        let connections_refused = counter_vec(
            "tally_connections_refused_total",
            "Connections closed before any frame was handled, by listener and reason \
             (budget, handshake, not_member, timeout, kind).",
            &["listener", "reason"],
        );
        let insecure_plaintext = gauge_vec(
            "tally_insecure_plaintext",
            "1 if the listener serves plain TCP (insecure_plaintext = true), 0 under TLS.",
            &["listener"],
        );
        for listener in Listener::ALL {
            insecure_plaintext.with_label_values(&[listener.label()]);
            for reason in Refused::ALL {
                connections_refused.with_label_values(&[listener.label(), reason.label()]);
            }
        }
        let raft_state = gauge_vec(
            "tally_raft_state",
            "1 for this node's current Raft role, 0 for the others.",
            &["state"],
        );
        let wal_backend_info = gauge_vec(
            "tally_wal_backend_info",
            "1 for the WAL backend in use (io_uring, or the pwrite_fdatasync fallback).",
            &["backend"],
        );
        wal_backend_info.with_label_values(&[wal_backend]).set(1);
        let build_info = gauge_vec(
            "tally_build_info",
            "1, labelled with this binary's version.",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let metrics = NodeMetrics {
            rejects,
            connections: gauge(
                "tally_connections",
                "Open TCP connections on the node's peer and client listeners.",
            ),
            connections_accepted: counter(
                "tally_connections_accepted_total",
                "TCP connections accepted on the node's peer and client listeners.",
            ),
            connections_refused,
            insecure_plaintext,
            raft_term: gauge("tally_raft_term", "This node's current Raft term."),
            raft_leader_id: gauge(
                "tally_raft_leader_id",
                "The node id this node believes leads, or -1 if it knows of none.",
            ),
            raft_is_leader: gauge("tally_raft_is_leader", "1 if this node leads, else 0."),
            raft_state,
            raft_last_log_index: gauge(
                "tally_raft_last_log_index",
                "Index of the last entry in this node's log (-1: empty).",
            ),
            raft_committed_index: gauge(
                "tally_raft_committed_index",
                "The commit index this node knows (-1: none yet).",
            ),
            raft_applied_index: gauge(
                "tally_raft_applied_index",
                "Index of the last entry applied to this node's ledger (-1: none).",
            ),
            raft_snapshot_index: gauge(
                "tally_raft_snapshot_index",
                "Last index covered by this node's newest snapshot (-1: none).",
            ),
            raft_purged_index: gauge(
                "tally_raft_purged_index",
                "The log is purged up to this index (-1: nothing purged).",
            ),
            raft_voters: gauge(
                "tally_raft_voters",
                "Voters in the membership this node uses.",
            ),
            raft_learners: gauge(
                "tally_raft_learners",
                "Learners in the membership this node uses.",
            ),
            raft_matched_index: gauge_vec(
                "tally_raft_replication_matched_index",
                "Leader only: the last index known replicated to each follower (-1: none).",
                &["follower"],
            ),
            raft_lag_entries: gauge_vec(
                "tally_raft_replication_lag_entries",
                "Leader only: entries each follower is behind the leader's last log index.",
                &["follower"],
            ),
            raft_quorum_ack_age: Gauge::new(
                "tally_raft_quorum_ack_age_seconds",
                "Leader only: seconds since a quorum last acknowledged this leader.",
            )
            .unwrap_or_else(|error| unreachable!("quorum ack age: {error}")),
            ledger_accounts: gauge("tally_ledger_accounts", "Accounts in the applied ledger."),
            ledger_transfers: gauge("tally_ledger_transfers", "Transfers in the applied ledger."),
            ledger_trades: gauge("tally_ledger_trades", "Trades in the applied ledger."),
            log_leaves: gauge(
                "tally_log_leaves",
                "Leaves of the verifiable log: events applied, failed ones included.",
            ),
            log_checkpoints: gauge(
                "tally_log_checkpoints",
                "Signed checkpoints of the verifiable log this replica keeps.",
            ),
            log_checkpoint_lag: gauge(
                "tally_log_checkpoint_lag_events",
                "Events applied that the latest signed checkpoint does not cover yet.",
            ),
            log_checkpoint_age: Gauge::new(
                "tally_log_checkpoint_age_seconds",
                "Seconds since the latest signed checkpoint was made (0 before the first).",
            )
            .unwrap_or_else(|error| unreachable!("checkpoint age: {error}")),
            log_root_mismatch: gauge(
                "tally_log_root_mismatch",
                "1 when a signed checkpoint's root was not this replica's at its size: its \
                 history differs from the one signed, and it stopped applying.",
            ),
            access_reads: gauge(
                "tally_access_reads",
                "Reads recorded in the access trail (who read which accounts).",
            ),
            access_checkpoint_lag: gauge(
                "tally_access_checkpoint_lag_reads",
                "Reads recorded that the access trail's latest signed checkpoint does not cover.",
            ),
            data_dir_free_bytes: gauge(
                "tally_data_dir_free_bytes",
                "Bytes available to this node on the filesystem of its data directory.",
            ),
            data_dir_size_bytes: gauge(
                "tally_data_dir_size_bytes",
                "Size in bytes of the filesystem holding the data directory.",
            ),
            wal_backend: wal_backend_info,
            ready: gauge(
                "tally_ready",
                "1 when /ready answers 200: a leader is known and the applied index is caught up.",
            ),
            startup_seconds: GaugeVec::new(
                Opts::new(
                    "tally_startup_seconds",
                    "Seconds this process took to start, by phase: open_storage (WAL recovery and \
                     snapshot restore), start_raft (openraft started, the committed log since \
                     the snapshot applied again).",
                ),
                &["phase"],
            )
            .unwrap_or_else(|error| unreachable!("startup seconds: {error}")),
            registry,
            scraping: std::sync::Arc::default(),
        };
        metrics.register_own(build_info);
        metrics
    }

    fn register_own(&self, build_info: IntGaugeVec) {
        let registry = &self.registry;
        register(registry, self.rejects.clone());
        register(registry, self.connections.clone());
        register(registry, self.connections_accepted.clone());
        register(registry, self.connections_refused.clone());
        register(registry, self.insecure_plaintext.clone());
        register(registry, self.raft_term.clone());
        register(registry, self.raft_leader_id.clone());
        register(registry, self.raft_is_leader.clone());
        register(registry, self.raft_state.clone());
        register(registry, self.raft_last_log_index.clone());
        register(registry, self.raft_committed_index.clone());
        register(registry, self.raft_applied_index.clone());
        register(registry, self.raft_snapshot_index.clone());
        register(registry, self.raft_purged_index.clone());
        register(registry, self.raft_voters.clone());
        register(registry, self.raft_learners.clone());
        register(registry, self.raft_matched_index.clone());
        register(registry, self.raft_lag_entries.clone());
        register(registry, self.raft_quorum_ack_age.clone());
        register(registry, self.ledger_accounts.clone());
        register(registry, self.ledger_transfers.clone());
        register(registry, self.ledger_trades.clone());
        register(registry, self.log_leaves.clone());
        register(registry, self.log_checkpoints.clone());
        register(registry, self.log_checkpoint_lag.clone());
        register(registry, self.log_checkpoint_age.clone());
        register(registry, self.log_root_mismatch.clone());
        register(registry, self.access_reads.clone());
        register(registry, self.access_checkpoint_lag.clone());
        register(registry, self.data_dir_free_bytes.clone());
        register(registry, self.data_dir_size_bytes.clone());
        register(registry, self.wal_backend.clone());
        register(registry, self.ready.clone());
        register(registry, self.startup_seconds.clone());
        register(registry, build_info);
        #[cfg(target_os = "linux")]
        register(
            registry,
            prometheus::process_collector::ProcessCollector::for_self(),
        );
    }

    /// Metrics that look like a node's but belong to no node (tests, tools).
    pub fn unregistered() -> NodeMetrics {
        NodeMetrics::new("none")
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Count a refused request.
    pub fn reject(&self, reason: Reject) {
        self.rejects.with_label_values(&[reason.label()]).inc();
    }

    /// Count a connection closed before any of its frames was handled.
    pub fn refuse(&self, listener: Listener, reason: Refused) {
        self.connections_refused
            .with_label_values(&[listener.label(), reason.label()])
            .inc();
    }

    /// Refresh the scrape-time gauges ([`NodeMetrics::refresh`]) and encode the registry, as
    /// one step with respect to other scrapes.
    pub fn scrape(
        &self,
        raft: &RaftMetrics<NodeId, crate::replication::types::Node>,
        state: ScrapeState,
        data_dir: &Path,
    ) -> String {
        let _one = self
            .scraping
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.refresh(raft, state, data_dir);
        self.encode()
    }

    /// Set the Raft, ledger and disk gauges from their sources; called by each scrape.
    pub fn refresh(
        &self,
        raft: &RaftMetrics<NodeId, crate::replication::types::Node>,
        state: ScrapeState,
        data_dir: &Path,
    ) {
        self.raft_term
            .set(i64::try_from(raft.current_term).unwrap_or(i64::MAX));
        self.raft_leader_id.set(
            raft.current_leader
                .map_or(-1, |id| i64::try_from(id).unwrap_or(i64::MAX)),
        );
        let leads = raft.state == ServerState::Leader;
        self.raft_is_leader.set(i64::from(leads));
        for (label, server_state) in RAFT_STATES {
            self.raft_state
                .with_label_values(&[label])
                .set(i64::from(raft.state == server_state));
        }
        let last_log = raft.last_log_index;
        self.raft_last_log_index.set(index_or_minus_one(last_log));
        self.raft_committed_index
            .set(index_or_minus_one(state.committed_index));
        self.raft_applied_index
            .set(index_or_minus_one(raft.last_applied.map(|id| id.index)));
        self.raft_snapshot_index
            .set(index_or_minus_one(raft.snapshot.map(|id| id.index)));
        self.raft_purged_index
            .set(index_or_minus_one(raft.purged.map(|id| id.index)));
        let membership = raft.membership_config.membership();
        self.raft_voters
            .set(i64::try_from(membership.voter_ids().count()).unwrap_or(i64::MAX));
        self.raft_learners
            .set(i64::try_from(membership.learner_ids().count()).unwrap_or(i64::MAX));
        // Followers come and go: drop every series and write the current ones.
        self.raft_matched_index.reset();
        self.raft_lag_entries.reset();
        if let (true, Some(replication)) = (leads, raft.replication.as_ref()) {
            for (follower, matched) in replication {
                if *follower == raft.id {
                    continue;
                }
                let label = follower.to_string();
                let matched = matched.map(|id| id.index);
                self.raft_matched_index
                    .with_label_values(&[&label])
                    .set(index_or_minus_one(matched));
                let lag = match (last_log, matched) {
                    (Some(last), Some(matched)) => last.saturating_sub(matched),
                    (Some(last), None) => last + 1,
                    (None, _) => 0,
                };
                self.raft_lag_entries
                    .with_label_values(&[&label])
                    .set(i64::try_from(lag).unwrap_or(i64::MAX));
            }
        }
        self.raft_quorum_ack_age
            .set(match (leads, raft.millis_since_quorum_ack) {
                (true, Some(millis)) => millis as f64 / 1000.0,
                _ => 0.0,
            });
        self.ledger_accounts
            .set(i64::try_from(state.accounts).unwrap_or(i64::MAX));
        self.ledger_transfers
            .set(i64::try_from(state.transfers).unwrap_or(i64::MAX));
        self.ledger_trades
            .set(i64::try_from(state.trades).unwrap_or(i64::MAX));
        self.ready.set(i64::from(state.ready));
        let log = state.log;
        let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.log_leaves.set(gauge(log.leaves));
        self.log_checkpoints.set(gauge(log.checkpoints));
        let (size, time_ns) = log.latest.unwrap_or((0, 0));
        self.log_checkpoint_lag
            .set(gauge(log.leaves.saturating_sub(size)));
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64);
        self.log_checkpoint_age.set(match log.latest {
            Some(_) => now_ns.saturating_sub(time_ns) as f64 / 1e9,
            None => 0.0,
        });
        self.log_root_mismatch.set(i64::from(log.diverged));
        self.access_reads.set(gauge(log.access_reads));
        self.access_checkpoint_lag.set(gauge(
            log.access_reads.saturating_sub(log.access_checkpointed),
        ));
        if let Some((free, size)) = filesystem_space(data_dir) {
            self.data_dir_free_bytes
                .set(i64::try_from(free).unwrap_or(i64::MAX));
            self.data_dir_size_bytes
                .set(i64::try_from(size).unwrap_or(i64::MAX));
        }
    }

    /// How long start-up `phase` (`open_storage`, `start_raft`) took.
    pub fn record_startup(&self, phase: &str, took: std::time::Duration) {
        self.startup_seconds
            .with_label_values(&[phase])
            .set(took.as_secs_f64());
    }

    /// The registry in Prometheus's text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(%error, "encoding metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// `(available, total)` bytes of the filesystem holding `path`.
fn filesystem_space(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `path` is NUL-terminated and `stat` is a valid place for statvfs to write.
    let rc = unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `stat`.
    let stat = unsafe { stat.assume_init() };
    // The field types differ between targets (u32 on some 32-bit ones).
    #[allow(clippy::unnecessary_cast)]
    let (fragment, available, blocks) = (
        stat.f_frsize as u64,
        stat.f_bavail as u64,
        stat.f_blocks as u64,
    );
    Some((
        available.saturating_mul(fragment),
        blocks.saturating_mul(fragment),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_reach_from_microseconds_to_seconds() {
        let buckets = latency_buckets();
        assert_eq!(buckets.len(), 20);
        assert!(buckets[0] <= 25e-6 + 1e-12);
        assert!(*buckets.last().unwrap_or(&0.0) > 10.0);
    }
}
