//! The history checks of docs/faults.md, run after the load stops: read every recorded
//! event back (`read_back`: from one replica of each group with the same digest at the same
//! index, which C8 shows hold the same records) and check C1 (durability), C2 (no phantoms), C3 (at most
//! once), C4 (definite failures are not stored), C5 (conservation; balances equal the replay),
//! C6 (serial replay through the reference model gives what the clients saw), C7 (real-time
//! order of commit indexes) and C8 (agreement of digests); then C9 (liveness: a new transfer
//! commits and a linearizable read sees it) with [`liveness`], which writes to the ledger and
//! so runs once, after the others (`run` does).
//!
//! Trades are not read back record by record yet (the gateway can look them up; `Cluster` does
//! not ask), so they are checked through counts (C3) and through the balances they move (C5,
//! C6).

use std::collections::HashMap;
use std::time::Duration;

use futures::future::try_join_all;

use tally_engine::records::{Account, Trade, Transfer};
use tally_engine::EventResult;

use crate::cluster::{Cluster, ClusterError, ReplicaState};
use crate::history::{EventOutcome, History, Outcome};
use crate::model::Model;
use crate::read_back::{read_back, transfer_matches, ReadBack};
use crate::workload::Kind;

/// A check's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// The history does not allow the check (e.g. unknown outcomes of unreadable trades).
    Skip,
}

/// One check's result.
#[derive(Clone, Debug)]
pub struct CheckResult {
    pub id: &'static str,
    pub name: &'static str,
    pub verdict: Verdict,
    pub detail: String,
}

/// Examples kept per failing check.
const EXAMPLES_MAX: usize = 5;

#[derive(Default)]
pub(crate) struct Finding {
    pub checked: u64,
    bad: u64,
    examples: Vec<String>,
}

impl Finding {
    /// Another finding of the same check (another replica's) joined into this one.
    pub(crate) fn absorb(&mut self, other: Finding) {
        self.checked += other.checked;
        self.bad += other.bad;
        let room = EXAMPLES_MAX.saturating_sub(self.examples.len());
        self.examples.extend(other.examples.into_iter().take(room));
    }

    pub(crate) fn bad(&mut self, example: impl FnOnce() -> String) {
        self.bad += 1;
        if self.examples.len() < EXAMPLES_MAX {
            self.examples.push(example());
        }
    }

    fn result(self, id: &'static str, name: &'static str, what: &str) -> CheckResult {
        let verdict = if self.bad == 0 {
            Verdict::Pass
        } else {
            Verdict::Fail
        };
        let mut detail = format!("{} {what} checked, {} bad", self.checked, self.bad);
        if !self.examples.is_empty() {
            detail.push_str(": ");
            detail.push_str(&self.examples.join("; "));
        }
        CheckResult {
            id,
            name,
            verdict,
            detail,
        }
    }
}

/// How long the checks wait for every replica to apply the same index. A replica that
/// restarted during the run may still be catching up, by snapshot once the others purged the
/// log it lacks: at 20M events that took about 50 s here (a snapshot sent and installed twice).
const SETTLE_WITHIN: Duration = Duration::from_secs(120);

/// Wait until every replica has applied the same index (or `within` passes) and return their
/// states: the checks need a quiet cluster. Polls the cheap applied index, and reads the whole
/// states (O(state) on every replica) only once they agree: polling whole states kept a large
/// cluster too busy hashing to answer its peers in time, so it never settled (docs/
/// reliability.md, "Bugs the soaks found").
pub async fn settle<C: Cluster>(
    cluster: &C,
    within: Duration,
) -> Result<Vec<ReplicaState>, ClusterError> {
    let deadline = tokio::time::Instant::now() + within;
    let agree = |indexes: &[u64]| indexes.windows(2).all(|pair| pair[0] == pair[1]);
    loop {
        let mut indexes = Vec::new();
        for node in cluster.nodes() {
            indexes.push(cluster.applied_index(&node).await?);
        }
        let late = tokio::time::Instant::now() > deadline;
        if agree(&indexes) || late {
            // O(state) on each replica: asked of all at once.
            let nodes = cluster.nodes();
            let states = try_join_all(nodes.iter().map(|node| cluster.state(node))).await?;
            let read: Vec<u64> = states.iter().map(|state| state.applied_index).collect();
            if agree(&read) || late {
                return Ok(states);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Run the checks against `cluster` for `history`. `before` is each replica's state before the
/// run (counts are compared as differences, so the cluster need not be fresh); per-account
/// balances are compared with the replay only if it was `fresh` (no account before the run).
pub async fn check<C: Cluster>(
    cluster: &C,
    history: &History,
    before: &[ReplicaState],
    fresh: bool,
) -> Result<Vec<CheckResult>, ClusterError> {
    let nodes = cluster.nodes();
    let settling = std::time::Instant::now();
    let states = settle(cluster, SETTLE_WITHIN).await?;
    let settled = settling.elapsed();
    // Replicas at one applied index with one digest (BLAKE3 over every record they hold,
    // which C8 compares) hold the same records: one of them is read back for all, a follower
    // where there is one.
    let same: Vec<usize> = states
        .iter()
        .map(|state| {
            let mut alike = states.iter().enumerate().filter(|(_, other)| {
                (other.applied_index, other.digest) == (state.applied_index, state.digest)
            });
            let first = alike.clone().next().map_or(0, |(r, _)| r);
            alike
                .find(|(_, other)| !other.leader)
                .map_or(first, |(r, _)| r)
        })
        .collect();
    let reading = std::time::Instant::now();
    let mut back = read_back(cluster, &nodes, &same, history, fresh).await?;
    let read_in = reading.elapsed();
    let (mut trades_ok, mut trades_unknown) = (0u64, 0u64);
    for batch in history.batches.iter().filter(|b| b.kind == Kind::Trades) {
        for outcome in batch.event_outcomes() {
            match outcome {
                EventOutcome::Ok => trades_ok += 1,
                EventOutcome::Unknown => trades_unknown += 1,
                EventOutcome::Failed(_) => {}
            }
        }
    }
    let mut durability =
        std::mem::take(&mut back.c1).result("C1", "durability", "acknowledged events × replicas");
    let read = same.iter().enumerate().filter(|(r, s)| r == *s).count();
    if read < same.len() {
        durability.detail.push_str(&format!(
            " (read from {read} of {} replicas; the others hold the same digest at the same index)",
            same.len()
        ));
    }
    durability
        .detail
        .push_str(&format!("; read back in {:.2} s", read_in.as_secs_f64()));
    let mut results = vec![durability];
    results.push(no_phantoms(&states, before, &mut back));
    results.push(at_most_once(
        &states,
        before,
        &back,
        trades_ok,
        trades_unknown,
    ));
    results.push(std::mem::take(&mut back.c4).result(
        "C4",
        "definite failures",
        "failed events × replicas",
    ));
    let (c5, c6) = replay(history, &states, fresh, &back, trades_unknown);
    results.push(c5);
    results.push(c6);
    results.push(real_time_order(history));
    let mut agreed = agreement(&states);
    agreed.detail.push_str(&format!(
        "; states with their digests read in {:.2} s",
        settled.as_secs_f64()
    ));
    results.push(agreed);
    Ok(results)
}

/// C2: every event of ours a replica stores is what its client sent (acknowledged ones are
/// C1's; here those of unknown outcome), and a replica stores no event beyond ours: its new
/// transfers and accounts are exactly the ids of ours it was found to hold. (C3 reads the
/// same counts for another claim: a second copy of an id would show there too.)
fn no_phantoms(
    states: &[ReplicaState],
    before: &[ReplicaState],
    back: &mut ReadBack,
) -> CheckResult {
    let mut finding = std::mem::take(&mut back.c2);
    for (replica, state) in states.iter().enumerate() {
        let base = baseline(before, &state.node).cloned().unwrap_or_default();
        finding.checked += 1;
        let stored = state.transfers.saturating_sub(base.transfers)
            + state.accounts.saturating_sub(base.accounts);
        let ours = back.transfers_found[replica] + back.accounts_found[replica];
        if stored > ours {
            finding.bad(|| {
                format!(
                    "{}: stores {} new events no client sent ({stored} new, {ours} of ours)",
                    state.node,
                    stored - ours
                )
            });
        }
    }
    finding.result("C2", "no phantoms", "stored events × replicas")
}

/// C7: if batch A's answer arrived before batch B was sent, A's commit index is below B's.
/// Committed batches only (a refused or unanswered one has no index; an empty request is
/// not logged, index 0). A retry answered from the reply table keeps its first index, which
/// was committed during its own call.
fn real_time_order(history: &History) -> CheckResult {
    let mut committed: Vec<(u64, u64, u64, usize)> = history
        .batches
        .iter()
        .enumerate()
        .filter_map(|(b, batch)| match &batch.outcome {
            Outcome::Committed(answer) if answer.commit_index > 0 => {
                Some((batch.invoke_us, batch.complete_us, answer.commit_index, b))
            }
            _ => None,
        })
        .collect();
    let mut by_completion: Vec<(u64, u64, usize)> = committed
        .iter()
        .map(|&(_, complete, index, b)| (complete, index, b))
        .collect();
    by_completion.sort_unstable();
    committed.sort_unstable();
    let mut finding = Finding::default();
    // Sweep the batches by invocation; `before` holds the highest index (and its batch) among
    // those completed before the current invocation.
    let mut done = by_completion.iter().peekable();
    let mut before: Option<(u64, usize)> = None;
    for &(invoke, _, index, b) in &committed {
        while let Some(&&(complete, done_index, done_b)) = done.peek() {
            if complete >= invoke {
                break;
            }
            if before.is_none_or(|(highest, _)| done_index > highest) {
                before = Some((done_index, done_b));
            }
            done.next();
        }
        finding.checked += 1;
        if let Some((highest, earlier)) = before {
            if index <= highest {
                finding.bad(|| {
                    format!(
                        "batch {b} (event {:#x}) committed at index {index}, after batch {earlier} \
                         (event {:#x}) completed at index {highest} before it was sent",
                        history.batches[b].id(0),
                        history.batches[earlier].id(0)
                    )
                });
            }
        }
    }
    finding.result("C7", "real-time order", "committed batches")
}

/// Ids of the liveness probe's records: outside any workload's (which start low) and new for
/// each probe.
fn probe_ids() -> [u128; 3] {
    let base = (0xC9u128 << 120) | (rand::random::<u128>() >> 16 << 2);
    [base, base + 1, base + 2]
}

/// The ledger the liveness probe's two accounts are on: no workload uses it.
pub const PROBE_LEDGER: u32 = 0xC9;

/// C9: after the load (and any fault) stops, two new accounts and a transfer between them
/// commit, and a linearizable read through the leader sees the transfer, all within `within`.
/// It adds those three records to the ledger, on a ledger of their own: run it once, after
/// [`check`].
pub async fn liveness<C: Cluster>(cluster: &C, within: Duration) -> CheckResult {
    let started = tokio::time::Instant::now();
    let [debit, credit, transfer] = probe_ids();
    let account = |id| Account {
        id,
        ledger: PROBE_LEDGER,
        code: 1,
        ..Account::default()
    };
    let accounts: Vec<u8> = [account(debit), account(credit)]
        .iter()
        .flat_map(Account::encode)
        .collect();
    let payment = Transfer {
        id: transfer,
        debit_account_id: debit,
        credit_account_id: credit,
        amount: 1,
        ledger: PROBE_LEDGER,
        code: 1,
        ..Transfer::default()
    };
    let probe = async {
        let created = cluster
            .submit(tally_engine::Operation::CreateAccounts, accounts.into())
            .await
            .map_err(|error| error.to_string())?;
        if !created.failures.is_empty() {
            return Err(format!(
                "the probe's accounts failed: {:?}",
                created.failures
            ));
        }
        let paid = cluster
            .submit(
                tally_engine::Operation::CreateTransfers,
                payment.encode().to_vec().into(),
            )
            .await
            .map_err(|error| error.to_string())?;
        if !paid.failures.is_empty() {
            return Err(format!("the probe's transfer failed: {:?}", paid.failures));
        }
        loop {
            let seen = cluster
                .lookup_transfers_linearizable(vec![transfer])
                .await
                .map_err(|error| error.to_string())?;
            if seen.iter().any(|stored| transfer_matches(&payment, stored)) {
                return Ok(paid.commit_index);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (verdict, detail) = match tokio::time::timeout(within, probe).await {
        Ok(Ok(index)) => (
            Verdict::Pass,
            format!(
                "a new transfer committed at index {index} and was read back linearizably in \
                 {:.0} ms",
                started.elapsed().as_secs_f64() * 1e3
            ),
        ),
        Ok(Err(error)) => (Verdict::Fail, format!("the probe failed: {error}")),
        Err(_) => (
            Verdict::Fail,
            format!("no new transfer committed and read back within {within:?}"),
        ),
    };
    CheckResult {
        id: "C9",
        name: "liveness",
        verdict,
        detail,
    }
}

fn baseline<'a>(before: &'a [ReplicaState], node: &str) -> Option<&'a ReplicaState> {
    before.iter().find(|state| state.node == node)
}

/// C3: each replica stores exactly as many new events as distinct ids of ours it has — a
/// second copy of an id would make the count larger than the ids found.
fn at_most_once(
    states: &[ReplicaState],
    before: &[ReplicaState],
    back: &ReadBack,
    trades_ok: u64,
    trades_unknown: u64,
) -> CheckResult {
    let mut finding = Finding::default();
    for (replica, state) in states.iter().enumerate() {
        let base = baseline(before, &state.node).cloned().unwrap_or_default();
        finding.checked += 1;
        let transfers = state.transfers.saturating_sub(base.transfers);
        let accounts = state.accounts.saturating_sub(base.accounts);
        let trades = state.trades.saturating_sub(base.trades);
        let found = (back.transfers_found[replica], back.accounts_found[replica]);
        if transfers != found.0 || accounts != found.1 {
            finding.bad(|| {
                format!(
                    "{}: stores {transfers} new transfers and {accounts} accounts, ids found {} and {}",
                    state.node, found.0, found.1
                )
            });
        }
        if trades < trades_ok || trades > trades_ok + trades_unknown {
            finding.bad(|| {
                format!(
                    "{}: stores {trades} new trades, acknowledged {trades_ok} (+{trades_unknown} unknown)",
                    state.node
                )
            });
        }
    }
    finding.result("C3", "at most once", "replicas")
}

/// C5 and C6: per-ledger sums on every replica; the serial replay of the stored events in
/// commit order through the model; the replicas' balances against the replay's.
fn replay(
    history: &History,
    states: &[ReplicaState],
    fresh: bool,
    back: &ReadBack,
    trades_unknown: u64,
) -> (CheckResult, CheckResult) {
    let mut c5 = Finding::default();
    for state in states {
        for totals in &state.ledger_totals {
            c5.checked += 1;
            if totals.debits_posted != totals.credits_posted
                || totals.debits_pending != totals.credits_pending
            {
                c5.bad(|| {
                    format!(
                        "{}: ledger {} does not balance: {totals:?}",
                        state.node, totals.ledger
                    )
                });
            }
        }
    }
    if trades_unknown > 0 {
        let skip = |id, name| CheckResult {
            id,
            name,
            verdict: Verdict::Skip,
            detail: format!(
                "{trades_unknown} trades have unknown outcomes and cannot be read back"
            ),
        };
        let mut conservation = c5.result("C5", "conservation", "ledgers × replicas");
        conservation
            .detail
            .push_str(" (per-account replay skipped)");
        return (conservation, skip("C6", "serial replay"));
    }
    // Commit order: event i of a committed batch got timestamp `timestamp_first + i`; stored
    // events of unknown outcome carry their own.
    let mut order: Vec<(u64, u32, u32)> = back.unknown_stored.clone();
    for (b, batch) in history.batches.iter().enumerate() {
        if let Outcome::Committed(answer) = &batch.outcome {
            order.extend(
                (0..batch.events())
                    .map(|i| (answer.timestamp_first + i as u64, b as u32, i as u32)),
            );
        }
    }
    order.sort_unstable();
    let mut model = Model::default();
    let mut c6 = Finding::default();
    let mut outcomes: HashMap<u32, Vec<EventOutcome>> = HashMap::new();
    for (_, b, i) in order {
        let batch = &history.batches[b as usize];
        let Some(record) = batch.record(i as usize) else {
            continue;
        };
        let result = match batch.kind {
            Kind::Accounts => Account::decode(record).map(|a| model.create_account(&a)),
            Kind::Trades => Trade::decode(record).map(|t| model.trade(&t)),
            _ => Transfer::decode(record).map(|t| model.transfer(&t)),
        };
        let result = result.unwrap_or(EventResult::ReservedFlag);
        let seen = outcomes.entry(b).or_insert_with(|| batch.event_outcomes())[i as usize];
        let expected = match seen {
            EventOutcome::Ok | EventOutcome::Unknown => EventResult::Ok,
            EventOutcome::Failed(code) => code.unwrap_or(EventResult::Ok),
        };
        c6.checked += 1;
        if result != expected {
            c6.bad(|| {
                format!(
                    "event {:#x}: the client saw {seen:?}, the replay gives {result:?}",
                    batch.id(i as usize)
                )
            });
        }
        if outcomes.len() > 64 {
            // Batches finish in roughly commit order: keep the decoded outcomes bounded.
            outcomes.retain(|kept, _| *kept + 64 > b);
        }
    }
    if fresh {
        for (replica, balances) in back.balances.iter().enumerate() {
            for (id, stored) in balances {
                c5.checked += 1;
                if model.balances(*id) != Some(*stored) {
                    c5.bad(|| {
                        format!(
                            "{}: account {id} holds {stored:?}, the replay {:?}",
                            states.get(replica).map_or("?", |s| s.node.as_str()),
                            model.balances(*id)
                        )
                    });
                }
            }
        }
    }
    let mut conservation = c5.result("C5", "conservation", "ledgers and balances × replicas");
    if !fresh {
        conservation
            .detail
            .push_str(" (the cluster was not fresh: per-account replay skipped)");
    }
    (conservation, c6.result("C6", "serial replay", "events"))
}

/// C8: replicas at the same applied index have equal digests, and every replica reached one
/// index within `SETTLE_WITHIN` (otherwise the other checks read states still moving, and
/// their findings about the lagging replica are about its lag).
fn agreement(states: &[ReplicaState]) -> CheckResult {
    let mut finding = Finding::default();
    let mut by_index: HashMap<u64, &ReplicaState> = HashMap::new();
    for state in states {
        finding.checked += 1;
        match by_index.get(&state.applied_index) {
            Some(first) if first.digest != state.digest => finding.bad(|| {
                format!(
                    "{} and {} differ at index {}",
                    first.node, state.node, state.applied_index
                )
            }),
            Some(_) => {}
            None => {
                by_index.insert(state.applied_index, state);
            }
        }
    }
    let indexes: Vec<u64> = states.iter().map(|s| s.applied_index).collect();
    if indexes.windows(2).any(|pair| pair[0] != pair[1]) {
        let views: Vec<&str> = states.iter().map(|s| s.raft.as_str()).collect();
        finding.bad(|| {
            format!(
                "the replicas were not at one applied index {SETTLE_WITHIN:?} after the load \
                 (one still catching up): the other checks read states still moving; last \
                 read: {views:?}"
            )
        });
    }
    let mut result = finding.result("C8", "agreement", "replicas");
    result
        .detail
        .push_str(&format!(" (applied indexes {indexes:?})"));
    result
}

/// A table of the results, one line per check.
pub fn render(results: &[CheckResult]) -> String {
    let mut out = String::from("checks (docs/faults.md):\n");
    for result in results {
        let verdict = match result.verdict {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "SKIP",
        };
        out.push_str(&format!(
            "  {:<3} {:<18} {verdict}  {}\n",
            result.id, result.name, result.detail
        ));
    }
    out
}

/// Whether no check failed.
pub fn all_passed(results: &[CheckResult]) -> bool {
    results.iter().all(|result| result.verdict != Verdict::Fail)
}
