//! The checks' read-back pass: every event of the history read back from every replica.
//!
//! An acknowledged event's place is known: event `i` of a committed batch got timestamp
//! `timestamp_first + i`. So the events acknowledged with `ok` are read back as a stream — a
//! replica's records of the run's time range, a page of 8,189 at a time in timestamp order
//! (query pages, one small request each, the next asked for while the last is compared) —
//! and merged with the history's expected events by timestamp: no id is sent, no map of what
//! a replica holds is built. The few events whose place is not known are looked up by id:
//! those of unknown outcome (C2), those answered `exists` (stored by an earlier attempt) and
//! the definite failures (C4: stored nowhere).

use std::collections::{HashMap, HashSet};

use futures::future::try_join_all;
use tally_engine::records::{Account, Transfer};
use tally_engine::{Balances, EventResult, QueryFilter, QueryPage};

use crate::check::Finding;
use crate::cluster::{Cluster, ClusterError, LOOKUP_IDS_MAX};
use crate::history::{EventOutcome, History, Outcome};
use crate::model::balances_of;
use crate::workload::Kind;

/// What the read-back pass collects besides C1 and C4.
#[derive(Default)]
pub(crate) struct ReadBack {
    pub c1: Finding,
    /// Events of unknown outcome found stored: each must be what its client sent.
    pub c2: Finding,
    pub c4: Finding,
    /// Per replica: our transfers and accounts it has (distinct ids).
    pub transfers_found: Vec<u64>,
    pub accounts_found: Vec<u64>,
    /// Per replica: the balances of our accounts.
    pub balances: Vec<HashMap<u128, Balances>>,
    /// (stored timestamp, batch, event) of events whose outcome was unknown but that are stored.
    pub unknown_stored: Vec<(u64, u32, u32)>,
}

/// One class of records: accounts, or transfers (plain, pending and post/void).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Accounts,
    Transfers,
}

impl Class {
    fn of(kind: Kind) -> Option<Class> {
        match kind {
            Kind::Accounts => Some(Class::Accounts),
            Kind::Transfers | Kind::Pending | Kind::PostVoid => Some(Class::Transfers),
            // Trades are checked through counts and the balances they move.
            Kind::Trades => None,
        }
    }
}

/// A stored record as the merge needs it.
trait Stored {
    fn timestamp(&self) -> u64;
    fn id(&self) -> u128;
    /// Whether this is what the client sent in `request` (a 128-byte record).
    fn is(&self, request: &[u8; 128]) -> bool;
}

impl Stored for Transfer {
    fn timestamp(&self) -> u64 {
        self.timestamp
    }
    fn id(&self) -> u128 {
        self.id
    }
    fn is(&self, request: &[u8; 128]) -> bool {
        Transfer::decode(request).is_ok_and(|sent| transfer_matches(&sent, self))
    }
}

impl Stored for Account {
    fn timestamp(&self) -> u64 {
        self.timestamp
    }
    fn id(&self) -> u128 {
        self.id
    }
    /// The account as created: its balances have moved since.
    fn is(&self, request: &[u8; 128]) -> bool {
        let created = Account {
            timestamp: 0,
            debits_pending: 0,
            debits_posted: 0,
            credits_pending: 0,
            credits_posted: 0,
            ..*self
        };
        Account::decode(request).is_ok_and(|sent| created == sent)
    }
}

/// Whether `stored` is the transfer its client sent as `request` (but for the timestamp the
/// cluster gave it).
pub(crate) fn transfer_matches(request: &Transfer, stored: &Transfer) -> bool {
    Transfer {
        timestamp: 0,
        ..*stored
    } == *request
}

/// How the events of one class are read back: the expected stream and the lookups.
struct Plan {
    class: Class,
    /// (timestamp, batch, event) of every event acknowledged `ok`, in timestamp order.
    expected: Vec<(u64, u32, u32)>,
    /// (batch, event) of the events read by id.
    by_id: Vec<(u32, u32)>,
}

impl Plan {
    fn new(history: &History, class: Class) -> Plan {
        let mut plan = Plan {
            class,
            expected: Vec::new(),
            by_id: Vec::new(),
        };
        // By first timestamp: a batch's events are one apart and batches do not overlap, so
        // the expected events come out in timestamp order.
        let mut batches: Vec<(u64, usize)> = history
            .batches
            .iter()
            .enumerate()
            .filter(|(_, batch)| Class::of(batch.kind) == Some(class))
            .map(|(b, batch)| match &batch.outcome {
                Outcome::Committed(answer) => (answer.timestamp_first, b),
                _ => (0, b),
            })
            .collect();
        batches.sort_unstable();
        for (_, b) in batches {
            let batch = &history.batches[b];
            let mut failures = match &batch.outcome {
                Outcome::Committed(answer) => answer.failures.iter().peekable(),
                _ => [].iter().peekable(),
            };
            for i in 0..batch.events() {
                let failure = failures.next_if(|(index, _)| *index as usize == i);
                match (&batch.outcome, failure) {
                    (Outcome::Committed(answer), None) => {
                        plan.expected
                            .push((answer.timestamp_first + i as u64, b as u32, i as u32))
                    }
                    _ => plan.by_id.push((b as u32, i as u32)),
                }
            }
        }
        debug_assert!(plan.expected.windows(2).all(|pair| pair[0] < pair[1]));
        plan
    }

    /// The time range the acknowledged events lie in, as a query's filter.
    fn filter(&self) -> Option<QueryFilter> {
        let (first, last) = (self.expected.first()?, self.expected.last()?);
        Some(QueryFilter {
            timestamp_min: first.0,
            timestamp_max: last.0,
            limit: tally_engine::limits::STATEMENT_ENTRIES_MAX,
            ..QueryFilter::default()
        })
    }
}

/// What one replica gave for one class.
#[derive(Default)]
struct ReplicaBack {
    c1: Finding,
    c2: Finding,
    c4: Finding,
    found: u64,
    balances: HashMap<u128, Balances>,
    unknown_stored: Vec<(u64, u32, u32)>,
}

/// Read every event of `history` back from the replicas of `nodes`. Replica `r` is read
/// itself where `same[r] == r`; otherwise it holds the same state as replica `same[r]` (the
/// same digest at the same applied index) and gets what that one gave. `fresh`: no account
/// existed before the run (otherwise an account answered `exists` was there before it).
pub(crate) async fn read_back<C: Cluster>(
    cluster: &C,
    nodes: &[String],
    same: &[usize],
    history: &History,
    fresh: bool,
) -> Result<ReadBack, ClusterError> {
    let mut back = ReadBack {
        transfers_found: vec![0; nodes.len()],
        accounts_found: vec![0; nodes.len()],
        balances: vec![HashMap::new(); nodes.len()],
        ..ReadBack::default()
    };
    let read: Vec<usize> = (0..nodes.len()).filter(|&r| same[r] == r).collect();
    for class in [Class::Accounts, Class::Transfers] {
        let plan = Plan::new(history, class);
        // The replicas read answer in parallel.
        let replicas = try_join_all(
            read.iter()
                .map(|&r| replica_back(cluster, &nodes[r], history, &plan, fresh)),
        )
        .await?;
        for (&replica, got) in read.iter().zip(replicas) {
            back.c1.absorb(got.c1);
            back.c2.absorb(got.c2);
            back.c4.absorb(got.c4);
            match class {
                Class::Accounts => back.accounts_found[replica] += got.found,
                Class::Transfers => back.transfers_found[replica] += got.found,
            }
            back.balances[replica].extend(got.balances);
            if replica == read[0] {
                back.unknown_stored.extend(got.unknown_stored);
            }
        }
    }
    for (replica, &source) in same.iter().enumerate() {
        if source != replica {
            back.transfers_found[replica] = back.transfers_found[source];
            back.accounts_found[replica] = back.accounts_found[source];
            back.balances[replica] = back.balances[source].clone();
        }
    }
    Ok(back)
}

/// One replica's read-back of one class: the lookups by id, then the stream.
async fn replica_back<C: Cluster>(
    cluster: &C,
    node: &str,
    history: &History,
    plan: &Plan,
    fresh: bool,
) -> Result<ReplicaBack, ClusterError> {
    let mut got = ReplicaBack::default();
    let mut found_by_id: HashSet<u128> = HashSet::new();
    for chunk in plan.by_id.chunks(LOOKUP_IDS_MAX) {
        let ids: Vec<u128> = chunk
            .iter()
            .map(|&(b, i)| history.batches[b as usize].id(i as usize))
            .collect();
        match plan.class {
            Class::Accounts => {
                let stored = cluster.lookup_accounts(node, ids).await?;
                got.balances
                    .extend(stored.iter().map(|a| (a.id, balances_of(a))));
                by_id(
                    node,
                    history,
                    chunk,
                    &stored,
                    fresh,
                    &mut got,
                    &mut found_by_id,
                );
            }
            Class::Transfers => {
                let stored = cluster.lookup_transfers(node, ids).await?;
                by_id(
                    node,
                    history,
                    chunk,
                    &stored,
                    true,
                    &mut got,
                    &mut found_by_id,
                );
            }
        }
    }
    got.found = found_by_id.len() as u64;
    let Some(filter) = plan.filter() else {
        return Ok(got);
    };
    let mut merge = Merge {
        node,
        history,
        expected: &plan.expected,
        next: 0,
        found_by_id: &found_by_id,
    };
    match plan.class {
        Class::Accounts => {
            let query = |filter| cluster.query_accounts(node, filter);
            stream(filter, query, |page: Vec<Account>| {
                got.balances
                    .extend(page.iter().map(|a| (a.id, balances_of(a))));
                merge.records(&page, &mut got);
            })
            .await?;
        }
        Class::Transfers => {
            let query = |filter| cluster.query_transfers(node, filter);
            stream(filter, query, |page: Vec<Transfer>| {
                merge.records(&page, &mut got)
            })
            .await?;
        }
    }
    merge.end(&mut got);
    Ok(got)
}

/// Every page of `filter` through `query`, each to `each` in order; the next page is asked for
/// before `each` looks at the last, so the replica reads while the checker compares.
async fn stream<T, F>(
    filter: QueryFilter,
    query: impl Fn(QueryFilter) -> F,
    mut each: impl FnMut(Vec<T>),
) -> Result<(), ClusterError>
where
    F: std::future::Future<Output = Result<QueryPage<T>, ClusterError>>,
{
    let mut page = query(filter).await?;
    loop {
        let Some(next) = page.next else {
            each(page.items);
            return Ok(());
        };
        let asked = query(filter.after(next));
        let ((), following) = tokio::join!(async { each(page.items) }, asked);
        page = following?;
    }
}

/// The events read by id: of unknown outcome (C2 if stored), answered `exists` (C1: stored, as
/// an earlier attempt left it), failed (C4: not stored). `count_exists`: an account answered
/// `exists` is this run's (a fresh cluster), not one that was there before.
fn by_id<R: Stored>(
    node: &str,
    history: &History,
    events: &[(u32, u32)],
    stored: &[R],
    count_exists: bool,
    got: &mut ReplicaBack,
    found: &mut HashSet<u128>,
) {
    let stored: HashMap<u128, &R> = stored.iter().map(|r| (r.id(), r)).collect();
    for &(b, i) in events {
        let batch = &history.batches[b as usize];
        let (id, record) = (batch.id(i as usize), batch.record(i as usize));
        let held = stored.get(&id);
        let matches = matches!((held, record), (Some(s), Some(r)) if s.is(r));
        let exists = batch.result(i as usize) == Some(EventResult::Exists);
        if held.is_some() && (count_exists || !exists) {
            found.insert(id);
        }
        match batch.event_outcome(i as usize) {
            EventOutcome::Ok => {
                got.c1.checked += 1;
                if !matches {
                    let what = if held.is_some() {
                        "differs"
                    } else {
                        "is missing"
                    };
                    got.c1
                        .bad(|| format!("{node}: acknowledged event {id:#x} {what}"));
                }
            }
            EventOutcome::Failed(code) => {
                got.c4.checked += 1;
                if held.is_some() {
                    got.c4
                        .bad(|| format!("{node}: event {id:#x} failed ({code:?}) but is stored"));
                }
            }
            EventOutcome::Unknown => {
                if let Some(held) = held {
                    got.c2.checked += 1;
                    if !matches {
                        got.c2.bad(|| {
                            format!("{node}: stored event {id:#x} is not what its client sent")
                        });
                    }
                    got.unknown_stored.push((held.timestamp(), b, i));
                }
            }
        }
    }
}

/// A replica's stream merged with the expected events, both in timestamp order.
struct Merge<'a> {
    node: &'a str,
    history: &'a History,
    expected: &'a [(u64, u32, u32)],
    /// The first expected event not yet met.
    next: usize,
    /// Ids already counted as found (by the lookups).
    found_by_id: &'a HashSet<u128>,
}

impl Merge<'_> {
    fn records<R: Stored>(&mut self, page: &[R], got: &mut ReplicaBack) {
        for stored in page {
            let timestamp = stored.timestamp();
            while self
                .expected
                .get(self.next)
                .is_some_and(|&(at, _, _)| at < timestamp)
            {
                self.missing(got);
            }
            // A record at no acknowledged event's time: another client's, or one of ours
            // whose outcome was unknown (the lookups found those).
            let Some(&(at, b, i)) = self.expected.get(self.next) else {
                continue;
            };
            if at != timestamp {
                continue;
            }
            self.next += 1;
            let batch = &self.history.batches[b as usize];
            let id = batch.id(i as usize);
            got.c1.checked += 1;
            let ours = stored.id() == id;
            if ours && !self.found_by_id.contains(&id) {
                got.found += 1;
            }
            if !(ours && batch.record(i as usize).is_some_and(|r| stored.is(r))) {
                let node = self.node;
                got.c1
                    .bad(|| format!("{node}: acknowledged event {id:#x} differs"));
            }
        }
    }

    /// The next expected event is not where its answer put it.
    fn missing(&mut self, got: &mut ReplicaBack) {
        let (_, b, i) = self.expected[self.next];
        self.next += 1;
        let id = self.history.batches[b as usize].id(i as usize);
        let node = self.node;
        got.c1.checked += 1;
        got.c1
            .bad(|| format!("{node}: acknowledged event {id:#x} is missing"));
    }

    /// The stream ended: every expected event not met is missing.
    fn end(mut self, got: &mut ReplicaBack) {
        while self.next < self.expected.len() {
            self.missing(got);
        }
    }
}
