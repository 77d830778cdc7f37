//! The history checks against an in-memory cluster of engines: an honest run passes every
//! check, and each kind of doctored history or replica makes its check fail — so no check
//! passes whatever happens.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tally_engine::records::{Account, Transfer};
use tally_engine::{Engine, EngineConfig, EventResult, Operation, QueryFilter, QueryPage};
use tally_loadgen::check::{check, liveness, settle, CheckResult, Verdict};
use tally_loadgen::cluster::{Answer, Cluster, ClusterError, ReplicaState};
use tally_loadgen::history::{History, Outcome};
use tally_loadgen::run::{Limit, Pace, RunConfig};
use tally_loadgen::workload::{Kind, MISSING_ACCOUNT_ID};
use tally_loadgen::{Mix, Skew, WorkloadConfig};

/// What a doctored replica does wrong.
#[derive(Clone, Copy, Debug, Default)]
struct Doctor {
    /// Replica 1 reports another digest.
    digest_differs: bool,
    /// Replica 1 reports one more transfer than it has (as if one were stored twice).
    extra_transfer: bool,
    /// Replica 1 reports a ledger whose debits exceed its credits.
    unbalanced: bool,
    /// Linearizable reads never answer.
    stalled: bool,
    /// Replica 2 reports an applied index one ahead for this many more polls of it.
    lagging_polls: u32,
}

/// Records a query page holds at most here (a node's is 8,189).
const PAGE: u32 = 97;

/// Three engines that apply every batch in the same order: a cluster without a network.
struct MemoryCluster {
    replicas: Vec<Mutex<(Engine, u64)>>,
    clock: Mutex<u64>,
    doctor: Mutex<Doctor>,
    /// Reads of a whole state (`state`) and of an applied index alone.
    whole_reads: AtomicU64,
    index_reads: AtomicU64,
}

impl MemoryCluster {
    fn new() -> MemoryCluster {
        MemoryCluster {
            replicas: (0..3)
                .map(|seed| Mutex::new((Engine::new(EngineConfig { hash_seed: seed }), 0)))
                .collect(),
            clock: Mutex::new(1_700_000_000_000_000_000),
            doctor: Mutex::new(Doctor::default()),
            whole_reads: AtomicU64::new(0),
            index_reads: AtomicU64::new(0),
        }
    }

    fn replica(&self, node: &str) -> usize {
        node.trim_start_matches("replica-")
            .parse()
            .expect("replica name")
    }
}

impl Cluster for MemoryCluster {
    async fn submit(&self, operation: Operation, body: Bytes) -> Result<Answer, ClusterError> {
        // The clock's lock is held while every replica applies, so all apply batches in one
        // order (as a Raft log would); without it concurrent clients interleave differently
        // on each replica, and C8 rightly fails.
        let mut clock = self.clock.lock().expect("clock");
        *clock += 1_000_000;
        let timestamp = *clock;
        let mut answer = None;
        for replica in &self.replicas {
            let mut replica = replica.lock().expect("replica");
            let outcome = replica
                .0
                .apply(operation, timestamp, &body)
                .map_err(|e| ClusterError::Refused(format!("{e:?}")))?;
            replica.1 += 1;
            answer = Some(Answer {
                commit_index: replica.1,
                timestamp_first: outcome.timestamp_first,
                failures: outcome.failures,
            });
        }
        drop(clock);
        answer.ok_or(ClusterError::Unknown("no replicas".into()))
    }

    fn nodes(&self) -> Vec<String> {
        (0..self.replicas.len())
            .map(|i| format!("replica-{i}"))
            .collect()
    }

    async fn applied_index(&self, node: &str) -> Result<u64, ClusterError> {
        self.index_reads.fetch_add(1, Ordering::Relaxed);
        let index = self.replica(node);
        let applied = self.replicas[index].lock().expect("replica").1;
        let mut doctor = self.doctor.lock().expect("doctor");
        if index == 2 && doctor.lagging_polls > 0 {
            doctor.lagging_polls -= 1;
            return Ok(applied + 1);
        }
        Ok(applied)
    }

    async fn state(&self, node: &str) -> Result<ReplicaState, ClusterError> {
        self.whole_reads.fetch_add(1, Ordering::Relaxed);
        let index = self.replica(node);
        let doctor = *self.doctor.lock().expect("doctor");
        let replica = self.replicas[index].lock().expect("replica");
        let mut state = ReplicaState {
            node: node.to_owned(),
            applied_index: replica.1,
            digest: replica.0.digest(),
            accounts: replica.0.accounts_count() as u64,
            transfers: replica.0.transfers_count() as u64,
            trades: replica.0.trades_count() as u64,
            ledger_totals: replica.0.ledger_totals(),
            leader: index == 0,
            raft: String::new(),
        };
        if index == 1 {
            if doctor.digest_differs {
                state.digest[0] ^= 1;
            }
            if doctor.extra_transfer {
                state.transfers += 1;
            }
            if doctor.unbalanced {
                state.ledger_totals[0].debits_posted += 1;
            }
        }
        Ok(state)
    }

    async fn lookup_transfers(
        &self,
        node: &str,
        ids: Vec<u128>,
    ) -> Result<Vec<Transfer>, ClusterError> {
        let replica = self.replicas[self.replica(node)].lock().expect("replica");
        Ok(ids
            .iter()
            .filter_map(|id| replica.0.lookup_transfer(*id))
            .collect())
    }

    async fn lookup_accounts(
        &self,
        node: &str,
        ids: Vec<u128>,
    ) -> Result<Vec<Account>, ClusterError> {
        let replica = self.replicas[self.replica(node)].lock().expect("replica");
        Ok(ids
            .iter()
            .filter_map(|id| replica.0.lookup_account(*id))
            .collect())
    }

    async fn query_transfers(
        &self,
        node: &str,
        filter: QueryFilter,
    ) -> Result<QueryPage<Transfer>, ClusterError> {
        let replica = self.replicas[self.replica(node)].lock().expect("replica");
        // Small pages, so the read-back streams many of them.
        let filter = QueryFilter {
            limit: filter.limit.min(PAGE),
            ..filter
        };
        replica
            .0
            .query_transfers(&filter, |_| true)
            .map_err(|e| ClusterError::Refused(format!("{e:?}")))
    }

    async fn query_accounts(
        &self,
        node: &str,
        filter: QueryFilter,
    ) -> Result<QueryPage<Account>, ClusterError> {
        let replica = self.replicas[self.replica(node)].lock().expect("replica");
        let filter = QueryFilter {
            limit: filter.limit.min(PAGE),
            ..filter
        };
        replica
            .0
            .query_accounts(&filter, |_| true)
            .map_err(|e| ClusterError::Refused(format!("{e:?}")))
    }

    async fn lookup_transfers_linearizable(
        &self,
        ids: Vec<u128>,
    ) -> Result<Vec<Transfer>, ClusterError> {
        if self.doctor.lock().expect("doctor").stalled {
            // A cluster that never answers: the probe's deadline must end it.
            std::future::pending::<()>().await;
        }
        self.lookup_transfers("replica-0", ids).await
    }
}

fn config() -> RunConfig {
    RunConfig {
        workload: WorkloadConfig {
            accounts: 50,
            batch_events: 40,
            mix: Mix {
                transfers: 60,
                trades: 20,
                pending: 20,
            },
            skew: Skew::Zipf(1.0),
            invalid_per_mille: 50,
            seed: 3,
        },
        pace: Pace::Closed { clients: 3 },
        limit: Limit::Events(4_000),
        check: true,
        progress: false,
        tag: 1,
    }
}

fn verdict(results: &[CheckResult], id: &str) -> Verdict {
    results
        .iter()
        .find(|r| r.id == id)
        .map(|r| r.verdict)
        .unwrap_or_else(|| panic!("no check {id}"))
}

fn failing(results: &[CheckResult]) -> Vec<&'static str> {
    results
        .iter()
        .filter(|r| r.verdict == Verdict::Fail)
        .map(|r| r.id)
        .collect()
}

/// Index (batch, event) of the first event in a committed transfer batch matching `pick`.
fn find(history: &History, pick: impl Fn(&Transfer, bool) -> bool) -> (usize, usize) {
    for (b, batch) in history.batches.iter().enumerate() {
        let Outcome::Committed(answer) = &batch.outcome else {
            continue;
        };
        if batch.kind != Kind::Transfers {
            continue;
        }
        for i in 0..batch.events() {
            let transfer = Transfer::decode(batch.record(i).expect("record")).expect("transfer");
            let failed = answer
                .failures
                .iter()
                .any(|(index, _)| *index as usize == i);
            if pick(&transfer, failed) {
                return (b, i);
            }
        }
    }
    panic!("no such event in the history");
}

/// Proves an honest run passes C1, C3, C4, C5, C6 and C8, with deliberate failures, trades
/// and pending/post pairs in it; then that each doctored history or replica fails the check
/// that should catch it (and the honest history still passes afterwards).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_pass_honest_runs_and_fail_doctored_ones() {
    let cluster = Arc::new(MemoryCluster::new());
    let outcome = tally_loadgen::run(Arc::clone(&cluster), &config())
        .await
        .expect("run");
    let checks = outcome.checks.expect("checks ran");
    assert!(failing(&checks).is_empty(), "{checks:#?}");
    for id in ["C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9"] {
        assert_eq!(verdict(&checks, id), Verdict::Pass, "{id}");
    }
    let history = outcome.history.expect("history recorded");
    // The run ended with C9's probe: two accounts and a transfer of its own, which later
    // checks of this history must count as there before.
    let before = with_probe(outcome.before, 1);
    let total = outcome.report.total().expect("total").clone();
    assert!(
        total.rejected > 0,
        "the run had no deliberate failures: {total:?}"
    );
    assert_eq!(total.errors, 0);

    // An acknowledged transfer whose recorded body differs from what is stored: the replicas
    // do not hold it as acknowledged (C1), and the replay moves other balances (C5).
    let mut doctored = history.clone();
    let (b, i) = find(&history, |_, failed| !failed);
    let mut body = doctored.batches[b].body.to_vec();
    body[i * 128 + 48] ^= 1; // the amount's lowest byte
    doctored.batches[b].body = Bytes::from(body);
    let results = check(&*cluster, &doctored, &before, true)
        .await
        .expect("check");
    assert_eq!(failing(&results), ["C1", "C5"], "{results:#?}");

    // A definite failure recorded as acknowledged: missing everywhere (C1), and the replay
    // rejects what the client saw accepted (C6).
    let mut doctored = history.clone();
    let (b, i) = find(&history, |t, failed| {
        failed && t.debit_account_id == MISSING_ACCOUNT_ID
    });
    if let Outcome::Committed(answer) = &mut doctored.batches[b].outcome {
        answer.failures.retain(|(index, _)| *index as usize != i);
    }
    let results = check(&*cluster, &doctored, &before, true)
        .await
        .expect("check");
    assert_eq!(failing(&results), ["C1", "C6"], "{results:#?}");

    // An applied transfer recorded as definitely failed: it is stored (C4), and the replay
    // accepts what the client saw refused (C6).
    let mut doctored = history.clone();
    let (b, i) = find(&history, |_, failed| !failed);
    if let Outcome::Committed(answer) = &mut doctored.batches[b].outcome {
        answer
            .failures
            .push((i as u32, EventResult::ExceedsCredits));
        answer.failures.sort();
    }
    let results = check(&*cluster, &doctored, &before, true)
        .await
        .expect("check");
    assert_eq!(failing(&results), ["C4", "C6"], "{results:#?}");

    // A stored event of unknown outcome whose recorded body is not what is stored: nobody
    // sent what the replicas hold (C2).
    let mut doctored = history.clone();
    let (b, i) = find(&history, |_, failed| !failed);
    let mut body = doctored.batches[b].body.to_vec();
    body[i * 128 + 48] ^= 1;
    doctored.batches[b].body = Bytes::from(body);
    doctored.batches[b].outcome = Outcome::Unknown("doctored".into());
    let results = check(&*cluster, &doctored, &before, true)
        .await
        .expect("check");
    assert!(failing(&results).contains(&"C2"), "{results:#?}");
    assert!(!failing(&results).contains(&"C1"), "{results:#?}");

    // A batch sent after another's answer arrived, recorded as committed no later than it:
    // real-time order is broken (C7), and nothing else looks at commit indexes.
    let mut doctored = history.clone();
    let committed = |b: &usize| matches!(history.batches[*b].outcome, Outcome::Committed(_));
    let (first, later) = (0..history.batches.len())
        .filter(committed)
        .flat_map(|a| (0..history.batches.len()).map(move |b| (a, b)))
        .find(|&(a, b)| {
            committed(&b) && history.batches[a].complete_us < history.batches[b].invoke_us
        })
        .expect("one batch sent after another completed");
    let index = match &history.batches[first].outcome {
        Outcome::Committed(answer) => answer.commit_index,
        _ => unreachable!("committed"),
    };
    if let Outcome::Committed(answer) = &mut doctored.batches[later].outcome {
        answer.commit_index = index;
    }
    let results = check(&*cluster, &doctored, &before, true)
        .await
        .expect("check");
    assert_eq!(failing(&results), ["C7"], "{results:#?}");

    // Replicas that misreport: a transfer more than the ids found, as a phantom or a second
    // copy (C2, C3), an unbalanced ledger (C5), a different digest at the same index (C8).
    for (doctor, expected) in [
        (
            Doctor {
                extra_transfer: true,
                ..Doctor::default()
            },
            &["C2", "C3"][..],
        ),
        (
            Doctor {
                unbalanced: true,
                ..Doctor::default()
            },
            &["C5"][..],
        ),
        (
            Doctor {
                digest_differs: true,
                ..Doctor::default()
            },
            &["C8"][..],
        ),
    ] {
        *cluster.doctor.lock().expect("doctor") = doctor;
        let results = check(&*cluster, &history, &before, true)
            .await
            .expect("check");
        assert_eq!(failing(&results), expected, "{doctor:?}: {results:#?}");
    }

    *cluster.doctor.lock().expect("doctor") = Doctor::default();
    let results = tokio::time::timeout(
        Duration::from_secs(60),
        check(&*cluster, &history, &before, true),
    )
    .await
    .expect("in time")
    .expect("check");
    assert!(failing(&results).is_empty(), "{results:#?}");

    // A cluster whose linearizable reads never answer fails C9 within its deadline; one that
    // answers passes it. (Each probe adds its records: last, after the checks of the history.)
    cluster.doctor.lock().expect("doctor").stalled = true;
    let stalled = liveness(&*cluster, Duration::from_millis(300)).await;
    assert_eq!(stalled.verdict, Verdict::Fail, "{stalled:?}");
    cluster.doctor.lock().expect("doctor").stalled = false;
    let live = liveness(&*cluster, Duration::from_secs(10)).await;
    assert_eq!(live.verdict, Verdict::Pass, "{live:?}");
}

/// `before` with `probes` liveness probes' records counted in (two accounts and a transfer
/// each).
fn with_probe(before: Vec<ReplicaState>, probes: u64) -> Vec<ReplicaState> {
    before
        .into_iter()
        .map(|state| ReplicaState {
            accounts: state.accounts + 2 * probes,
            transfers: state.transfers + probes,
            ..state
        })
        .collect()
}

/// Waiting for the replicas to agree polls their applied indexes and reads the whole states
/// (O(state) on every replica) once they agree: polling whole states kept a large cluster too
/// busy to settle.
#[tokio::test]
async fn settling_polls_indexes_and_reads_whole_states_once() {
    let cluster = MemoryCluster::new();
    cluster.doctor.lock().expect("doctor").lagging_polls = 5;
    let states = settle(&cluster, Duration::from_secs(30))
        .await
        .expect("settles");
    assert_eq!(states.len(), 3);
    assert!(states.iter().all(|state| state.applied_index == 0));
    assert_eq!(cluster.whole_reads.load(Ordering::Relaxed), 3);
    assert_eq!(cluster.index_reads.load(Ordering::Relaxed), 3 * 6);
}
