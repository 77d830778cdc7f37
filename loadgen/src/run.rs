//! Driving a run: set up the accounts, then keep the cluster busy — closed loop (N clients,
//! each sending its next batch when the previous one is answered) or open loop (batches on a
//! fixed timetable, latency measured from each batch's *intended* send time, so a slow
//! cluster cannot hide its queueing: no coordinated omission) — with a progress line every
//! second, then the report and, if the history was recorded, the checks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use tally_engine::limits::RECORD_BYTES;
use tally_engine::records::Transfer;
use tally_engine::EventResult;

use crate::check::{self, CheckResult};
use crate::cluster::{Cluster, ClusterError, ReplicaState};
use crate::history::{BatchRecord, History, Outcome};
use crate::report::{Report, Stats};
use crate::workload::{Batch, Generator, Kind, WorkloadConfig, MISSING_ACCOUNT_ID};

/// How batches are paced.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// `clients` clients, each with one batch in flight, as fast as the cluster answers.
    Closed { clients: usize },
    /// Batches of the configured size at `events_per_s`, on a fixed timetable.
    Open { events_per_s: f64 },
}

/// When the load stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Duration(Duration),
    /// This many workload events (follow-up posts and voids not counted).
    Events(u64),
}

/// Everything a run needs besides the cluster.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub workload: WorkloadConfig,
    pub pace: Pace,
    pub limit: Limit,
    /// Record every batch and run the checks at the end (keeps every body in memory).
    pub check: bool,
    /// Print a progress line every second.
    pub progress: bool,
    /// Tags this run's event ids, so runs against one cluster do not collide.
    pub tag: u32,
}

/// Open loop: most batches in flight at once; past it, sends wait (and their latency, from
/// the intended time, shows it).
const OPEN_IN_FLIGHT_MAX: usize = 4_096;

/// How long C9 (liveness) gives a new transfer to commit and be read back after the run.
const LIVENESS_WITHIN: Duration = Duration::from_secs(10);

/// What a run produced.
#[derive(Debug)]
pub struct RunOutcome {
    pub report: Report,
    /// The checks, if the history was recorded.
    pub checks: Option<Vec<CheckResult>>,
    /// The recorded history (with the checks), and the replicas' states before the run.
    pub history: Option<History>,
    pub before: Vec<ReplicaState>,
}

struct Shared<C> {
    cluster: Arc<C>,
    stats: Mutex<Stats>,
    history: Option<Mutex<Vec<BatchRecord>>>,
    started: Instant,
    events_ok: AtomicU64,
    errors: AtomicU64,
    /// The slowest workload batch since the last progress line, µs (`progress` resets it).
    second_max_us: AtomicU64,
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// Whether the engine's refusal of event `index` was meant (it names the missing account).
fn deliberate(batch: &Batch, index: u32, result: EventResult) -> bool {
    let start = index as usize * RECORD_BYTES;
    let record = batch
        .body
        .get(start..start + RECORD_BYTES)
        .and_then(|bytes| <&[u8; RECORD_BYTES]>::try_from(bytes).ok());
    result == EventResult::DebitAccountNotFound
        && record
            .and_then(|record| Transfer::decode(record).ok())
            .is_some_and(|t| t.debit_account_id == MISSING_ACCOUNT_ID)
}

impl<C: Cluster> Shared<C> {
    /// Submit `batch`, record it, and return its outcome. Latency runs from `intended`.
    async fn submit(&self, client: u32, batch: &Batch, intended: Instant) -> Outcome {
        let invoke = Instant::now();
        let result = self
            .cluster
            .submit(batch.kind.operation(), batch.body.clone())
            .await;
        let complete = Instant::now();
        let events = batch.events() as u64;
        let outcome = match result {
            Ok(answer) => Outcome::Committed(answer),
            Err(ClusterError::Refused(why)) => Outcome::Refused(why),
            Err(ClusterError::Unknown(why)) => Outcome::Unknown(why),
        };
        let (mut ok, mut rejected, mut errors) = (0, 0, 0);
        match &outcome {
            Outcome::Committed(answer) => {
                ok = events;
                for (index, result) in &answer.failures {
                    if *result == EventResult::Exists {
                        continue;
                    }
                    ok -= 1;
                    if deliberate(batch, *index, *result) {
                        rejected += 1;
                    } else {
                        errors += 1;
                    }
                }
            }
            Outcome::Refused(_) | Outcome::Unknown(_) => errors = events,
        }
        if let Ok(mut stats) = self.stats.lock() {
            let kind = stats.kind(batch.kind);
            kind.batches += 1;
            kind.events_ok += ok;
            kind.rejected += rejected;
            kind.errors += errors;
            let _ = kind
                .latency_us
                .record(micros(complete.saturating_duration_since(intended)).max(1));
        }
        if batch.kind != Kind::Accounts {
            self.second_max_us.fetch_max(
                micros(complete.saturating_duration_since(intended)),
                Ordering::Relaxed,
            );
            self.events_ok.fetch_add(ok, Ordering::Relaxed);
            self.errors.fetch_add(errors, Ordering::Relaxed);
        }
        if let Some(history) = &self.history {
            if let Ok(mut history) = history.lock() {
                history.push(BatchRecord {
                    client,
                    kind: batch.kind,
                    body: batch.body.clone(),
                    invoke_us: micros(invoke.saturating_duration_since(self.started)),
                    complete_us: micros(complete.saturating_duration_since(self.started)),
                    outcome: outcome.clone(),
                });
            }
        }
        outcome
    }

    /// Submit `batch`; if it held pending transfers, post or void those that succeeded.
    async fn submit_with_follow_up(
        &self,
        client: u32,
        batch: Batch,
        intended: Instant,
        generator: &Mutex<Generator>,
    ) {
        let outcome = self.submit(client, &batch, intended).await;
        if batch.kind != Kind::Pending {
            return;
        }
        let Outcome::Committed(answer) = outcome else {
            return;
        };
        let resolution = generator
            .lock()
            .ok()
            .and_then(|mut generator| generator.resolve(&batch, &answer.failures));
        if let Some(resolution) = resolution {
            self.submit(client, &resolution, Instant::now()).await;
        }
    }
}

/// Takes up to `want` events from the budget; 0 when it is spent.
fn claim(budget: &AtomicU64, want: u64) -> u64 {
    let mut taken = 0;
    let _ = budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
        taken = left.min(want);
        Some(left - taken)
    });
    taken
}

fn describe(config: &RunConfig) -> String {
    let pace = match config.pace {
        Pace::Closed { clients } => format!("closed loop, {clients} client(s)"),
        Pace::Open { events_per_s } => format!("open loop at {events_per_s:.0} events/s"),
    };
    let limit = match config.limit {
        Limit::Duration(duration) => format!("{:.0} s", duration.as_secs_f64()),
        Limit::Events(events) => format!("{events} events"),
    };
    let w = &config.workload;
    format!(
        "{pace}, {limit}; batches of {}, {} accounts ({:?}), mix transfers {}% trades {}% pending {}%, {}‰ invalid",
        w.batch_events, w.accounts, w.skew, w.mix.transfers, w.mix.trades, w.mix.pending, w.invalid_per_mille
    )
}

/// Run the load `config` describes against `cluster`.
pub async fn run<C: Cluster>(cluster: Arc<C>, config: &RunConfig) -> Result<RunOutcome, String> {
    config.workload.validate()?;
    let mut before: Vec<ReplicaState> = Vec::new();
    if config.check {
        for node in cluster.nodes() {
            before.push(
                cluster
                    .state(&node)
                    .await
                    .map_err(|e| format!("state of {node}: {e}"))?,
            );
        }
    }
    let shared = Arc::new(Shared {
        cluster: Arc::clone(&cluster),
        stats: Mutex::new(Stats::default()),
        history: config.check.then(|| Mutex::new(Vec::new())),
        started: Instant::now(),
        events_ok: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        second_max_us: AtomicU64::new(0),
    });
    for body in config.workload.account_batches() {
        let batch = Batch {
            kind: Kind::Accounts,
            body,
        };
        if let Outcome::Refused(why) | Outcome::Unknown(why) =
            shared.submit(0, &batch, Instant::now()).await
        {
            return Err(format!("creating accounts: {why}"));
        }
    }

    let measuring = Instant::now();
    // Tasks live in JoinSets, which abort them when dropped: if the caller drops this run
    // (Ctrl-C), no client keeps submitting and the progress line stops.
    let mut progress_task = tokio::task::JoinSet::new();
    if config.progress {
        progress_task.spawn(progress(Arc::clone(&shared), measuring));
    }
    let deadline = match config.limit {
        Limit::Duration(duration) => Some(measuring + duration),
        Limit::Events(_) => None,
    };
    let budget = Arc::new(AtomicU64::new(match config.limit {
        Limit::Events(events) => events,
        Limit::Duration(_) => u64::MAX,
    }));
    let batch_events = config.workload.batch_events as u64;
    match config.pace {
        Pace::Closed { clients } => {
            let mut tasks = tokio::task::JoinSet::new();
            for client in 0..clients.max(1) as u32 {
                let (shared, budget) = (Arc::clone(&shared), Arc::clone(&budget));
                let generator = Mutex::new(Generator::new(config.workload, client, config.tag));
                tasks.spawn(async move {
                    let next = || match (claim(&budget, batch_events), generator.lock()) {
                        (0, _) | (_, Err(_)) => None,
                        (events, Ok(mut generator)) => Some(generator.batch(events as usize)),
                    };
                    let mut batch = next();
                    while let Some(sent) = batch.take() {
                        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                            break;
                        }
                        // Generate the next batch while this one is in flight, so a client
                        // with one batch in flight does not add generation to every round.
                        let submitted =
                            shared.submit_with_follow_up(client, sent, Instant::now(), &generator);
                        let ((), following) = tokio::join!(submitted, async { next() });
                        batch = following;
                    }
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.map_err(|e| format!("a client failed: {e}"))?;
            }
        }
        Pace::Open { events_per_s } => {
            if events_per_s <= 0.0 {
                return Err("the rate must be positive".into());
            }
            let interval = Duration::from_secs_f64(batch_events as f64 / events_per_s);
            let generator = Arc::new(Mutex::new(Generator::new(config.workload, 0, config.tag)));
            let in_flight = Arc::new(Semaphore::new(OPEN_IN_FLIGHT_MAX));
            let mut tasks = tokio::task::JoinSet::new();
            for k in 0u32.. {
                let intended = measuring + interval * k;
                if deadline.is_some_and(|deadline| intended >= deadline) {
                    break;
                }
                let events = claim(&budget, batch_events);
                if events == 0 {
                    break;
                }
                tokio::time::sleep_until(intended).await;
                let batch = match generator.lock() {
                    Ok(mut generator) => generator.batch(events as usize),
                    Err(_) => break,
                };
                let permit = Arc::clone(&in_flight)
                    .acquire_owned()
                    .await
                    .map_err(|e| e.to_string())?;
                let (shared, generator) = (Arc::clone(&shared), Arc::clone(&generator));
                tasks.spawn(async move {
                    shared
                        .submit_with_follow_up(0, batch, intended, &generator)
                        .await;
                    drop(permit);
                });
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
        }
    }
    let seconds = measuring.elapsed().as_secs_f64();
    progress_task.abort_all();
    let stats = shared
        .stats
        .lock()
        .map_err(|_| "statistics lock poisoned")?
        .clone();
    let report = Report::new(describe(config), &stats, seconds);
    let (checks, history) = match &shared.history {
        Some(history) => {
            let history = History {
                batches: std::mem::take(&mut *history.lock().map_err(|_| "history lock poisoned")?),
            };
            if config.progress {
                println!(
                    "checking {} recorded events against every replica ...",
                    history.events()
                );
            }
            let checking = Instant::now();
            let fresh = before.iter().all(|state| state.accounts == 0);
            let mut checks = check::check(&*cluster, &history, &before, fresh)
                .await
                .map_err(|e| format!("reading back: {e}"))?;
            checks.push(check::liveness(&*cluster, LIVENESS_WITHIN).await);
            if config.progress {
                println!("checked in {:.1} s", checking.elapsed().as_secs_f64());
            }
            (Some(checks), Some(history))
        }
        None => (None, None),
    };
    Ok(RunOutcome {
        report,
        checks,
        history,
        before,
    })
}

/// A line a second: events/s in the last second, events so far, p99 so far, the slowest batch
/// of the last second (where a stall shows, which p99 so far smooths away), errors.
async fn progress<C: Cluster>(shared: Arc<Shared<C>>, measuring: Instant) {
    let mut last = 0;
    let mut tick =
        tokio::time::interval_at(measuring + Duration::from_secs(1), Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = shared.events_ok.load(Ordering::Relaxed);
        let p99_ms = shared.stats.lock().map_or(0.0, |stats| {
            stats.workload().latency_us.value_at_quantile(0.99) as f64 / 1e3
        });
        let second_max_ms = shared.second_max_us.swap(0, Ordering::Relaxed) as f64 / 1e3;
        println!(
            "{:>6.1} s {:>11} events/s {:>13} events  p99 {:>8.2} ms  max this second {:>8.2} ms  {} errors",
            measuring.elapsed().as_secs_f64(),
            now - last,
            now,
            p99_ms,
            second_max_ms,
            shared.errors.load(Ordering::Relaxed)
        );
        last = now;
    }
}
