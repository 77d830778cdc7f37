//! The leader's batcher: packs client batches into Raft entries.
//!
//! openraft 0.9's leader appends an entry, waits for its flush, then appends the next, and
//! every entry costs one fdatasync on each replica (90–175 µs here, far more under load). So
//! throughput comes from putting many client batches into one entry. Client batches queue
//! (bounded) while earlier entries are in flight; as soon as fewer than `entries_in_flight_max`
//! are, everything queued — up to the entry's byte limit — goes into the next entry, stamped
//! with the leader's clock. Under light load an entry holds one batch and goes out at once (no
//! timer adds latency); under heavy load entries fill up and the queue absorbs the rest.
//!
//! Each client batch gets its own result back: the engine's outcome for exactly that batch.
//!
//! The batcher's expiry clock (`start_expiry_clock`) proposes the one entry no client asks
//! for: when the earliest timeout of a pending event falls due and no client entry comes to
//! carry its expiry, the leader proposes an entry with no batch, and every replica expires
//! what is due under that entry's timestamp (`Engine::expire_due`). A quiet ledger so
//! releases a reservation within `EXPIRY_CHECK` plus a commit of its timeout, and the release
//! is stamped at the timeout itself (docs/engine.md).
//!
//! Durability: a result is sent only after `client_write` returned, i.e. after the entry was
//! committed (fsync'd on a quorum: openraft counts a replica only after its log store's flush
//! callback, which fires after fdatasync) and applied by this node's state machine.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::metrics::GatewayMetrics;
use tally_engine::{BatchError, BatchOutcome};
use tally_raft::metrics::Reject;
use tally_raft::replication::codec;
use tally_raft::replication::types::{
    BatchAnswer, ClientBatch, LogNote, Node, NodeId, Request, TypeConfig,
};
use tally_raft::replication::AppliedView;

type Raft = openraft::Raft<TypeConfig>;

/// What a submitted batch ends with: its entry's log index and the engine's outcome (per-event
/// failures, or the whole batch refused), or why it was not committed by this leader.
pub type Committed = Result<CommittedBatch, BatcherError>;

/// Why the batcher did not deliver a batch's outcome. The gateway turns each into its
/// protocol's status; nothing here is a wire type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatcherError {
    /// Larger than one entry may carry: retrying it unchanged fails again.
    #[error("batch body of {bytes} bytes is over the limit of {limit} bytes per batch")]
    TooLarge { bytes: usize, limit: usize },
    /// This node stopped leading before the entry committed (`leader`: the one it knows, id
    /// and client address). The batch may still commit: retry it at the leader, where events
    /// already applied answer `exists`.
    #[error(
        "this node is not the leader; the batch may still commit: retry it at the leader \
         (events already applied answer `exists`)"
    )]
    NotLeader { leader: Option<(NodeId, String)> },
    /// The node is shutting down, or its replication stopped: the outcome is unknown.
    #[error("{0}")]
    Unavailable(String),
    /// A bug: the state machine answered an entry with the wrong number of results.
    #[error("{0}")]
    Internal(String),
    /// The client's request number was used, by the entry at `log_index`, for a request with
    /// other contents (the replicated reply table): nothing was applied.
    #[error(
        "request number already used, by entry {log_index}, for a request with other contents"
    )]
    NumberReused { log_index: u64 },
}

/// A batch whose entry committed and was applied on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedBatch {
    /// The Raft log index of the entry that applied the batch (the gateway's commit index):
    /// the one that carried it, or for a replay the one that carried the original.
    pub log_index: u64,
    pub outcome: Result<BatchOutcome, BatchError>,
    /// Answered from the replicated reply table: the same request (same client, number and
    /// contents) was applied before, and nothing was applied now.
    pub replayed: bool,
}

pub use codec::{BATCH_OVERHEAD_BYTES, ENTRY_OVERHEAD_BYTES};

/// How the batcher packs and how much it holds.
#[derive(Clone, Copy, Debug)]
pub struct BatcherConfig {
    /// Payload bytes of one entry: the WAL's entry limit (1 MiB by default: one full batch of
    /// 8,189 events, or many smaller ones).
    pub entry_payload_bytes_max: usize,
    /// Entries proposed and not yet committed. openraft pipelines proposals into its log and
    /// replication streams, so 2 keeps the disk and network busy while an entry's result is
    /// being delivered; more only adds queueing inside openraft.
    pub entries_in_flight_max: usize,
    /// Client batches waiting for an entry. At 1 MiB per batch, 256 is 256 MiB at most; a full
    /// queue makes submitters wait, which pushes back on the connection (and on the client).
    pub queue_batches_max: usize,
    /// The leader's clock, in ns since the Unix epoch, that entries are stamped with:
    /// [`system_clock`] but in the deterministic simulator, which stamps them from its own.
    pub clock: fn() -> u64,
}

impl Default for BatcherConfig {
    fn default() -> BatcherConfig {
        BatcherConfig {
            entry_payload_bytes_max: tally_raft::limits::ENTRY_PAYLOAD_BYTES_MAX,
            entries_in_flight_max: 2,
            queue_batches_max: 256,
            clock: system_clock,
        }
    }
}

/// The host's clock in ns since the Unix epoch (0 before it, saturating far after).
pub fn system_clock() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}

struct Submission {
    batch: ClientBatch,
    done: oneshot::Sender<Committed>,
    /// When the batch was queued: commit latency is measured from here.
    queued_at: Instant,
}

impl Submission {
    fn new(batch: ClientBatch, done: oneshot::Sender<Committed>) -> Submission {
        Submission {
            batch,
            done,
            queued_at: Instant::now(),
        }
    }
}

/// The submitting side of the batcher; cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    queue: mpsc::Sender<Submission>,
    body_bytes_max: usize,
    metrics: GatewayMetrics,
}

impl Batcher {
    /// Start the batcher's task on the current tokio runtime. It ends when every `Batcher`
    /// clone is dropped and the queue and the entries in flight have drained.
    /// It counts decided events, batch sizes, commit latency and its queue in `metrics`.
    pub fn start(
        raft: Raft,
        config: BatcherConfig,
        metrics: GatewayMetrics,
    ) -> (Batcher, tokio::task::JoinHandle<()>) {
        let (queue, receiver) = mpsc::channel(config.queue_batches_max.max(1));
        let task = tokio::spawn(run(raft, config, metrics.clone(), receiver));
        let body_bytes_max = config
            .entry_payload_bytes_max
            .saturating_sub(ENTRY_OVERHEAD_BYTES + BATCH_OVERHEAD_BYTES);
        (
            Batcher {
                queue,
                body_bytes_max,
                metrics,
            },
            task,
        )
    }

    /// Queue `batch` if there is room now; `Ok(None)` means the queue is full (the caller
    /// answers "busy" rather than waiting). Otherwise as [`Batcher::submit`].
    pub fn try_submit(
        &self,
        batch: ClientBatch,
    ) -> Result<Option<oneshot::Receiver<Committed>>, BatcherError> {
        self.check_size(&batch)?;
        let (done, result) = oneshot::channel();
        match self.queue.try_send(Submission::new(batch, done)) {
            Ok(()) => Ok(Some(result)),
            Err(mpsc::error::TrySendError::Full(_)) => Ok(None),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(shutting_down()),
        }
    }

    fn check_size(&self, batch: &ClientBatch) -> Result<(), BatcherError> {
        if batch.body.len() > self.body_bytes_max {
            self.metrics.reject(Reject::TooLarge);
            return Err(BatcherError::TooLarge {
                bytes: batch.body.len(),
                limit: self.body_bytes_max,
            });
        }
        Ok(())
    }

    /// Queue `batch`, waiting for room. Returns when it is queued (so batches submitted in
    /// order are packed in order); the receiver then yields its result once committed.
    pub async fn submit(
        &self,
        batch: ClientBatch,
    ) -> Result<oneshot::Receiver<Committed>, BatcherError> {
        self.check_size(&batch)?;
        let (done, result) = oneshot::channel();
        self.queue
            .send(Submission::new(batch, done))
            .await
            .map_err(|_| shutting_down())?;
        Ok(result)
    }
}

fn shutting_down() -> BatcherError {
    BatcherError::Unavailable("the node is shutting down".to_owned())
}

/// How often the leader looks for a timeout that fell due with no client entry to carry its
/// expiry: the most a quiet ledger's release waits past a timeout, besides one commit.
pub const EXPIRY_CHECK: Duration = Duration::from_millis(100);

/// Start the expiry clock of node `id` (module docs): every `EXPIRY_CHECK`, while this node
/// leads and the earliest timeout has fallen due by its clock, it proposes an entry with no
/// batch and waits for it to apply (so it proposes one at a time; one that finds nothing due
/// any more changes nothing). Ends when replication stops; abort it at shutdown.
pub fn start_expiry_clock(
    raft: Raft,
    view: AppliedView,
    id: NodeId,
    clock: fn() -> u64,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last_timestamp = 0;
        let mut ticks = tokio::time::interval(EXPIRY_CHECK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if raft.metrics().borrow().current_leader != Some(id) {
                continue;
            }
            let Some(due) = view.read(|applied| applied.engine().and_then(|e| e.next_expiry()))
            else {
                continue;
            };
            let timestamp = next_timestamp(clock, &mut last_timestamp);
            if due > timestamp {
                continue;
            }
            let tick = Request {
                timestamp,
                batches: Vec::new(),
                log: None,
            };
            match raft.client_write(tick).await {
                Ok(_) => {}
                Err(RaftError::Fatal(fatal)) => {
                    tracing::info!(%fatal, "expiry clock stops: replication stopped");
                    return;
                }
                // Leadership moved meanwhile: the new leader's clock takes over.
                Err(RaftError::APIError(_)) => {}
            }
        }
    })
}

/// How often the leader checks whether the verifiable log grew past its latest checkpoint
/// (`start_checkpoint_clock`): a checkpoint covers an event within this plus two commits.
pub const CHECKPOINT_CHECK: Duration = Duration::from_millis(500);

/// Start the checkpoint clock of node `id`: every `CHECKPOINT_CHECK`, while this node leads
/// and its verifiable log holds events past the latest checkpoint, it signs a checkpoint of
/// its log as applied (`signer`, whose name is the log's origin) and proposes it in an entry
/// of its own (and likewise for the access trail, under the origin's `/reads` name); every replica keeps it if its own log has that root at that size (else it
/// stops: `Engine::record_checkpoint`), and waits for it to apply. So while events commit a
/// checkpoint is made at least once a second. Ends when replication stops; abort it at
/// shutdown.
pub fn start_checkpoint_clock(
    raft: Raft,
    view: AppliedView,
    id: NodeId,
    clock: fn() -> u64,
    signer: std::sync::Arc<tally_engine::checkpoint::NoteSigner>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // The access trail's checkpoints: the same key under the trail's own name.
        let access_name = format!("{}{}", signer.name(), tally_engine::ACCESS_ORIGIN_SUFFIX);
        let access_signer = match signer.renamed(&access_name) {
            Ok(access_signer) => access_signer,
            Err(error) => {
                tracing::error!(%error, "checkpoint clock stops: the key cannot be named");
                return;
            }
        };
        let mut last_timestamp = 0;
        let mut ticks = tokio::time::interval(CHECKPOINT_CHECK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if raft.metrics().borrow().current_leader != Some(id) {
                continue;
            }
            for access in [false, true] {
                // The tree as hashed so far (a few batches behind the applied state at most).
                let head = view.read(|applied| {
                    let engine = applied.engine()?;
                    let (size, root, latest) = if access {
                        let size = engine.access_size();
                        let latest = engine.latest_access_checkpoint();
                        (size, engine.access_root(size).ok()?, latest)
                    } else {
                        let (size, root) = engine.log_head();
                        (size, root, engine.latest_checkpoint())
                    };
                    (size > latest.map_or(0, |(_, c)| c.size)).then_some((size, root))
                });
                let Some((size, root)) = head else {
                    continue;
                };
                let signer = if access { &access_signer } else { &*signer };
                let timestamp = next_timestamp(clock, &mut last_timestamp);
                let checkpoint = tally_engine::checkpoint::Checkpoint {
                    origin: signer.name().to_owned(),
                    size,
                    root,
                    time_ns: timestamp,
                };
                let signed = match signer.sign_checkpoint(&checkpoint) {
                    Ok(signed) => signed,
                    Err(error) => {
                        tracing::error!(%error, "checkpoint clock stops: the key cannot sign");
                        return;
                    }
                };
                let entry = Request {
                    timestamp,
                    batches: Vec::new(),
                    log: Some(if access {
                        LogNote::AccessCheckpoint(signed)
                    } else {
                        LogNote::Checkpoint(signed)
                    }),
                };
                match raft.client_write(entry).await {
                    Ok(_) => {}
                    Err(RaftError::Fatal(fatal)) => {
                        tracing::info!(%fatal, "checkpoint clock stops: replication stopped");
                        return;
                    }
                    Err(RaftError::APIError(_)) => {}
                }
            }
        }
    })
}

/// The leader's `clock` in ns since the Unix epoch, never going backwards between entries.
/// (The engine also keeps its own timestamps strictly increasing across leaders.)
fn next_timestamp(clock: fn() -> u64, last: &mut u64) -> u64 {
    *last = clock().max(*last + 1);
    *last
}

async fn run(
    raft: Raft,
    config: BatcherConfig,
    metrics: GatewayMetrics,
    mut queue: mpsc::Receiver<Submission>,
) {
    let mut in_flight = JoinSet::new();
    let mut carried: Option<Submission> = None;
    let mut last_timestamp = 0;
    let mut open = true;
    loop {
        metrics
            .batcher_queued
            .set(i64::try_from(queue.len()).unwrap_or(i64::MAX));
        let room = in_flight.len() < config.entries_in_flight_max.max(1);
        // Biased: finished entries first, then the queue. Either order is correct; a fixed one
        // keeps a simulated run a function of its seed (tokio draws the order of an unbiased
        // select from an unseeded generator).
        tokio::select! {
            biased;
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            next = queue.recv(), if room && open && carried.is_none() => match next {
                Some(first) => carried = Some(first),
                None => open = false,
            },
            else => {
                if carried.is_none() {
                    return;
                }
            }
        }
        if in_flight.len() >= config.entries_in_flight_max.max(1) {
            continue;
        }
        let Some(first) = carried.take() else {
            continue;
        };
        let mut bytes = ENTRY_OVERHEAD_BYTES + BATCH_OVERHEAD_BYTES + first.batch.body.len();
        let mut packed = vec![first];
        while let Ok(next) = queue.try_recv() {
            let size = BATCH_OVERHEAD_BYTES + next.batch.body.len();
            if bytes + size > config.entry_payload_bytes_max
                || packed.len() >= tally_raft::replication::limits::ENTRY_BATCHES_MAX
            {
                carried = Some(next);
                break;
            }
            bytes += size;
            packed.push(next);
        }
        let timestamp = next_timestamp(config.clock, &mut last_timestamp);
        in_flight.spawn(write(raft.clone(), metrics.clone(), timestamp, packed));
    }
}

/// Propose one entry and hand each batch its result.
async fn write(raft: Raft, metrics: GatewayMetrics, timestamp: u64, packed: Vec<Submission>) {
    let mut waiting = Vec::with_capacity(packed.len());
    let mut batches = Vec::with_capacity(packed.len());
    for submission in packed {
        let events = (submission.batch.body.len() / tally_engine::limits::RECORD_BYTES) as u64;
        waiting.push((
            submission.done,
            submission.queued_at,
            submission.batch.operation,
            events,
        ));
        batches.push(submission.batch);
    }
    let count = batches.len();
    match raft
        .client_write(Request {
            timestamp,
            batches,
            log: None,
        })
        .await
    {
        Ok(written) if written.data.batches.len() == count => {
            let log_index = written.log_id.index;
            let now = Instant::now();
            for ((done, queued_at, operation, events), answer) in
                waiting.into_iter().zip(written.data.batches)
            {
                metrics
                    .commit_seconds
                    .observe(now.duration_since(queued_at).as_secs_f64());
                let committed = match answer {
                    BatchAnswer::Applied(outcome) => {
                        metrics.batch_decided(operation, events, &outcome);
                        Ok(CommittedBatch {
                            log_index,
                            outcome,
                            replayed: false,
                        })
                    }
                    BatchAnswer::Replayed { log_index, outcome } => Ok(CommittedBatch {
                        log_index,
                        outcome,
                        replayed: true,
                    }),
                    BatchAnswer::NumberReused { log_index } => {
                        Err(BatcherError::NumberReused { log_index })
                    }
                };
                let _ = done.send(committed);
            }
        }
        Ok(written) => {
            // Apply returns one result per batch; anything else is a bug in the state machine.
            let refusal = BatcherError::Internal(format!(
                "entry {} returned {} results for {count} batches",
                written.log_id,
                written.data.batches.len()
            ));
            send_all(waiting, &refusal);
        }
        Err(error) => send_all(waiting, &refusal_of(error)),
    }
}

type Waiting = (
    oneshot::Sender<Committed>,
    Instant,
    tally_engine::Operation,
    u64,
);

fn send_all(waiting: Vec<Waiting>, refusal: &BatcherError) {
    for (done, ..) in waiting {
        let _ = done.send(Err(refusal.clone()));
    }
}

/// What a client is told when its entry was not committed by this leader.
pub(crate) fn refusal_of(error: RaftError<u64, ClientWriteError<u64, Node>>) -> BatcherError {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
            BatcherError::NotLeader {
                leader: forward
                    .leader_id
                    .zip(forward.leader_node.map(|node| node.client_addr)),
            }
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(error)) => {
            BatcherError::Internal(format!("unexpected membership error: {error}"))
        }
        RaftError::Fatal(fatal) => {
            BatcherError::Unavailable(format!("replication stopped: {fatal}"))
        }
    }
}
