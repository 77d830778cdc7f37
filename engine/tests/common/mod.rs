//! Shared harness: the engine and the reference model side by side, conversions between their
//! types, and the comparisons every test in this directory makes.

#![allow(dead_code)]

use std::collections::BTreeMap;

use crate::model::generate::{Batch, Config, Generator, Rng};
use crate::model::{Bal, MEntry, MEvent, MFilter, Model, Op, QErr};
use tally_engine::{
    Balances, Engine, EngineConfig, EventResult, Operation, QueryError, StatementEntry,
    StatementEvent, StatementFilter,
};

pub fn operation(op: Op) -> Operation {
    match op {
        Op::Accounts => Operation::CreateAccounts,
        Op::Transfers => Operation::CreateTransfers,
        Op::Trades => Operation::CreateTrades,
        Op::Settlements => Operation::CreateSettlements,
    }
}

pub fn bal(b: Balances) -> Bal {
    Bal {
        debits_pending: b.debits_pending,
        debits_posted: b.debits_posted,
        credits_pending: b.credits_pending,
        credits_posted: b.credits_posted,
    }
}

pub fn entry(e: &StatementEntry) -> MEntry {
    MEntry {
        timestamp: e.timestamp,
        event: match e.event {
            StatementEvent::Transfer(t) => MEvent::Transfer(t),
            StatementEvent::Trade(d) => MEvent::Trade(d),
            StatementEvent::TransferExpired { pending_id } => {
                MEvent::TransferExpired { pending_id }
            }
            StatementEvent::TradeExpired { pending_id } => MEvent::TradeExpired { pending_id },
        },
        balances_after: bal(e.balances_after),
    }
}

/// The model's error for the engine's, `None` for an error the spec does not name.
pub fn query_error(e: QueryError) -> Option<QErr> {
    match e {
        QueryError::AccountNotFound => Some(QErr::AccountNotFound),
        QueryError::LimitMustNotBeZero => Some(QErr::LimitMustNotBeZero),
        _ => None,
    }
}

/// Every account id the generator can produce, plus the two invalid ones.
pub fn account_ids() -> Vec<u128> {
    let mut ids: Vec<u128> = (0..=crate::model::generate::ACCOUNT_IDS as u128 + 2).collect();
    ids.extend((0..3).map(|k| (1u128 << 100) | k));
    ids.push(u128::MAX);
    ids
}

/// Full sums over all accounts: per ledger, debits equal credits, posted and pending.
pub fn assert_conservation(engine: &Engine, context: &str) {
    for t in engine.ledger_totals() {
        assert_eq!(
            t.debits_posted, t.credits_posted,
            "{context}: ledger {} posted debits != credits ({t:?})",
            t.ledger
        );
        assert_eq!(
            t.debits_pending, t.credits_pending,
            "{context}: ledger {} pending debits != credits ({t:?})",
            t.ledger
        );
    }
}

/// Engine and model, fed the same batches.
pub struct Pair {
    pub engine: Engine,
    pub model: Model,
    pub generator: Generator,
    pub batches_applied: usize,
    /// Model result counts (including `Ok`), for the mix report.
    pub results: BTreeMap<EventResult, u64>,
    /// Posts (of transfers and trades) refused because an account is closed: how often the
    /// rule "only a void touches a closed account" was reached.
    pub posts_on_closed: u64,
    /// Pending events expired by an entry with no batch (`tick`).
    pub ticks_expired: u64,
    /// Linked chains holding transfers and trades together: settled whole, failed whole.
    pub mixed_chains: [u64; 2],
    pub batch_errors: u64,
}

impl Pair {
    pub fn new(hash_seed: u64, config: Config) -> Pair {
        Pair {
            engine: Engine::new(EngineConfig { hash_seed }),
            model: Model::new(),
            generator: Generator::new(config),
            batches_applied: 0,
            results: BTreeMap::new(),
            posts_on_closed: 0,
            ticks_expired: 0,
            mixed_chains: [0; 2],
            batch_errors: 0,
        }
    }

    /// Generates a batch from seeds and applies it to both sides.
    pub fn generate_and_step(&mut self, batch_seed: u64, event_seeds: &[u64]) -> Batch {
        let force = (self.batches_applied == 0).then_some(Op::Accounts);
        let batch = self
            .generator
            .batch(&self.model, batch_seed, event_seeds, force);
        // Now and then the leader's expiry tick (an entry with no batch) comes first.
        if self.batches_applied > 0 && batch_seed.is_multiple_of(4) {
            self.tick(batch.entry_timestamp);
        }
        self.step(&batch);
        batch
    }

    /// An entry with no batch at `entry_timestamp` on both sides: the same expiries.
    pub fn tick(&mut self, entry_timestamp: u64) {
        let expected = self.model.expire_due(entry_timestamp);
        let actual = self.engine.expire_due(entry_timestamp);
        assert_eq!(
            actual, expected,
            "tick at {entry_timestamp}: expiries (engine, model)"
        );
        assert_eq!(
            self.engine.last_timestamp(),
            self.model.last_timestamp,
            "tick at {entry_timestamp}: last_timestamp"
        );
        self.ticks_expired += actual as u64;
    }

    /// Applies one batch to both sides and compares results, every account and the totals.
    pub fn step(&mut self, batch: &Batch) {
        let context = format!(
            "batch #{} ({:?}, entry {})",
            self.batches_applied, batch.op, batch.entry_timestamp
        );
        let expected = self
            .model
            .apply(batch.op, batch.entry_timestamp, &batch.body);
        let actual = self
            .engine
            .apply(operation(batch.op), batch.entry_timestamp, &batch.body);
        self.batches_applied += 1;
        match (&expected, &actual) {
            (Err(()), Err(_)) => self.batch_errors += 1,
            (Ok(m), Ok(e)) => {
                if m.failures != e.failures {
                    panic!(
                        "{context}: results differ\n{}",
                        describe_failures(batch, &m.failures, &e.failures)
                    );
                }
                assert_eq!(
                    (m.timestamp_first, m.timestamp_last),
                    (e.timestamp_first, e.timestamp_last),
                    "{context}: event timestamps differ (model, engine)"
                );
                let n = (batch.body.len() / crate::model::RECORD_BYTES) as u64;
                *self.results.entry(EventResult::Ok).or_default() += n - m.failures.len() as u64;
                let (settled, refused) = mixed_chains(batch, &m.failures);
                self.mixed_chains[0] += settled;
                self.mixed_chains[1] += refused;
                for (index, r) in &m.failures {
                    *self.results.entry(*r).or_default() += 1;
                    if is_closed_account(*r) && is_post(batch, *index as usize) {
                        self.posts_on_closed += 1;
                    }
                }
            }
            _ => panic!("{context}: model {expected:?} but engine {actual:?}"),
        }
        assert_eq!(
            self.engine.last_timestamp(),
            self.model.last_timestamp,
            "{context}: last_timestamp"
        );
        for id in account_ids() {
            assert_eq!(
                self.engine.lookup_account(id),
                self.model.lookup_account(id),
                "{context}: account {id} differs (left engine, right model)"
            );
        }
        assert_conservation(&self.engine, &context);
        let totals: Vec<(u32, Bal)> = self
            .engine
            .ledger_totals()
            .iter()
            .map(|t| {
                (
                    t.ledger,
                    Bal {
                        debits_pending: t.debits_pending,
                        debits_posted: t.debits_posted,
                        credits_pending: t.credits_pending,
                        credits_posted: t.credits_posted,
                    },
                )
            })
            .collect();
        assert_eq!(
            totals,
            self.model.ledger_totals(),
            "{context}: ledger totals (left engine)"
        );
    }

    /// Every id's lookup, balances as of many times, and many statements.
    pub fn check_queries(&self, rng: &mut Rng) {
        check_lookups(&self.engine, &self.model, self.generator.id_next);
        check_history_queries(&self.engine, &self.model, rng);
    }
}

pub fn check_lookups(engine: &Engine, model: &Model, id_next: u128) {
    for id in account_ids() {
        assert_eq!(
            engine.lookup_account(id),
            model.lookup_account(id),
            "account {id} (left engine)"
        );
    }
    let event_ids = (0..id_next + 25).chain([u128::MAX, u128::MAX - 1]);
    for id in event_ids {
        assert_eq!(
            engine.lookup_transfer(id),
            model.lookup_transfer(id),
            "transfer {id} (left engine)"
        );
        assert_eq!(
            engine.lookup_trade(id),
            model.lookup_trade(id),
            "trade {id} (left engine)"
        );
    }
}

/// Timestamps worth asking about: every change of every account, one either side, and the ends.
fn interesting_timestamps(model: &Model) -> Vec<u64> {
    let mut ts = vec![
        0,
        1,
        u64::MAX,
        model.last_timestamp,
        model.last_timestamp + 1,
    ];
    for a in model.accounts.values() {
        ts.push(a.created.timestamp);
        for e in &a.log {
            ts.extend([e.timestamp - 1, e.timestamp, e.timestamp + 1]);
        }
    }
    ts.sort_unstable();
    ts.dedup();
    ts
}

/// A random account filter for `id`'s statements: each field zero or a value one of the
/// account's events has (or a small one), and a side.
fn random_account_filter(model: &Model, id: u128, rng: &mut Rng) -> MFilter {
    let mut records: Vec<(u128, u64, u32, u16)> = Vec::new();
    if let Some(account) = model.accounts.get(&id) {
        for entry in &account.log {
            records.push(match entry.event {
                MEvent::Transfer(t) => (t.user_data_128, t.user_data_64, t.user_data_32, t.code),
                MEvent::Trade(t) => (0, t.user_data_64, 0, t.code),
                _ => (0, 0, 0, 0),
            });
        }
    }
    let some = rng.pick(&records).unwrap_or((1, 1, 1, 1));
    let mut field = |value: u128| match rng.below(3) {
        0 => 0,
        1 => value,
        _ => 1 + u128::from(rng.below(2)),
    };
    MFilter {
        user_data_128: field(some.0),
        user_data_64: field(u128::from(some.1)) as u64,
        user_data_32: field(u128::from(some.2)) as u32,
        code: field(u128::from(some.3)) as u16,
        debits: rng.chance(50),
        credits: rng.chance(50),
    }
}

pub fn check_history_queries(engine: &Engine, model: &Model, rng: &mut Rng) {
    let times = interesting_timestamps(model);
    for id in account_ids() {
        // Balances as of: a sample of the interesting times (all of them for small logs).
        for _ in 0..24 {
            let t = rng.pick(&times).expect("non-empty");
            let expected = model.balances_as_of(id, t);
            let actual = engine.balances_as_of(id, t);
            match (expected, actual) {
                (Ok(m), Ok(e)) => assert_eq!(bal(e), m, "balances_as_of({id}, {t}) (left engine)"),
                (Err(m), Err(e)) => {
                    assert_eq!(query_error(e), Some(m), "balances_as_of({id}, {t}) error")
                }
                (m, e) => panic!("balances_as_of({id}, {t}): model {m:?}, engine {e:?}"),
            }
        }
        // Statements over random ranges, limits and directions.
        let exists = model.accounts.contains_key(&id);
        for k in 0..12 {
            let min = if rng.chance(30) {
                0
            } else {
                rng.pick(&times).expect("non-empty")
            };
            let max = if rng.chance(35) {
                0
            } else {
                let t = rng.pick(&times).expect("non-empty");
                if t < min {
                    min
                } else {
                    t
                }
            };
            let limit = match rng.below(8) {
                0 => 1,
                1 => 2,
                2 => 3,
                3 => 7,
                4 => 100,
                5 => 8_189,
                6 => u32::MAX,
                // Only for existing accounts: which error wins over "not found" is unsaid.
                _ if exists && k == 0 => 0,
                _ => 5,
            };
            // The account filter: none half the time, else fields taken from the account's
            // own events (so they match some) or small values, and a side.
            let keep = if rng.chance(50) {
                MFilter::default()
            } else {
                random_account_filter(model, id, rng)
            };
            let filter = StatementFilter {
                account_id: id,
                timestamp_min: min,
                timestamp_max: max,
                limit,
                reversed: rng.chance(50),
                user_data_128: keep.user_data_128,
                user_data_64: keep.user_data_64,
                user_data_32: keep.user_data_32,
                code: keep.code,
                debits: keep.debits,
                credits: keep.credits,
            };
            let expected = model.statement(id, min, max, limit, filter.reversed, &keep);
            let actual = engine.statement(&filter);
            match (expected, actual) {
                (Ok(m), Ok(e)) => {
                    let e: Vec<MEntry> = e.items.iter().map(entry).collect();
                    if e != m {
                        let at = e
                            .iter()
                            .zip(&m)
                            .position(|(x, y)| x != y)
                            .unwrap_or(e.len().min(m.len()));
                        panic!(
                            "statement {filter:?} differs: engine {} entries, model {}; first difference at {at}:\n engine: {:?}\n model:  {:?}",
                            e.len(),
                            m.len(),
                            e.get(at),
                            m.get(at)
                        );
                    }
                }
                (Err(m), Err(e)) => {
                    assert_eq!(query_error(e), Some(m), "statement {filter:?} error")
                }
                (m, e) => panic!("statement {filter:?}: model {m:?}, engine {e:?}"),
            }
        }
    }
}

/// A readable diff of two failure lists, with the records involved.
pub fn describe_failures(
    batch: &Batch,
    model: &[(u32, EventResult)],
    engine: &[(u32, EventResult)],
) -> String {
    let m: BTreeMap<u32, EventResult> = model.iter().copied().collect();
    let e: BTreeMap<u32, EventResult> = engine.iter().copied().collect();
    let mut out = String::new();
    let n = batch.body.len() / crate::model::RECORD_BYTES;
    for i in 0..n as u32 {
        let mr = m.get(&i).copied().unwrap_or(EventResult::Ok);
        let er = e.get(&i).copied().unwrap_or(EventResult::Ok);
        if mr != er {
            let record: [u8; 128] = batch.body[i as usize * 128..(i as usize + 1) * 128]
                .try_into()
                .expect("record");
            out.push_str(&format!(
                "  event {i}: model {mr:?}, engine {er:?}\n    {}\n",
                describe_record(batch.op, &record)
            ));
        }
    }
    out
}

pub fn describe_record(op: Op, record: &[u8; 128]) -> String {
    match op {
        Op::Accounts => format!("{:?}", tally_engine::Account::decode(record)),
        Op::Transfers => format!("{:?}", tally_engine::Transfer::decode(record)),
        Op::Trades => format!("{:?}", tally_engine::Trade::decode(record)),
        Op::Settlements => match crate::model::settlement_record(record) {
            (true, trade) => format!("trade {:?}", tally_engine::Trade::decode(&trade)),
            (false, transfer) => {
                format!("transfer {:?}", tally_engine::Transfer::decode(&transfer))
            }
        },
    }
}

/// The seed of a run: `TALLY_SEED` to reproduce one, else a fresh one (printed either way).
pub fn run_seed() -> u64 {
    let seed = std::env::var("TALLY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("seed {seed} (rerun with TALLY_SEED={seed})");
    seed
}

fn is_closed_account(r: EventResult) -> bool {
    use EventResult as R;
    matches!(
        r,
        R::DebitAccountClosed
            | R::CreditAccountClosed
            | R::InstrumentDebitAccountClosed
            | R::InstrumentCreditAccountClosed
            | R::CashDebitAccountClosed
            | R::CashCreditAccountClosed
    )
}

/// Whether event `index` of `batch` posts a pending transfer or trade.
fn is_post(batch: &Batch, index: usize) -> bool {
    let at = index * crate::model::RECORD_BYTES;
    let Some(record) = batch.body.get(at..at + crate::model::RECORD_BYTES) else {
        return false;
    };
    let record: &[u8; crate::model::RECORD_BYTES] = record.try_into().expect("one record");
    let (op, record) = match batch.op {
        Op::Settlements => match crate::model::settlement_record(record) {
            (true, trade) => (Op::Trades, trade),
            (false, transfer) => (Op::Transfers, transfer),
        },
        op => (op, *record),
    };
    let record = &record;
    match op {
        Op::Transfers => tally_engine::Transfer::decode(record).is_ok_and(|t| {
            t.flags
                .contains(tally_engine::TransferFlags::POST_PENDING_TRANSFER)
        }),
        Op::Trades => tally_engine::Trade::decode(record).is_ok_and(|t| {
            t.flags
                .contains(tally_engine::TradeFlags::POST_PENDING_TRADE)
        }),
        Op::Accounts | Op::Settlements => false,
    }
}

/// In a settlement batch, the linked chains that hold both a transfer and a trade: how many
/// settled whole and how many failed whole (`(settled, failed)`).
fn mixed_chains(batch: &Batch, failures: &[(u32, EventResult)]) -> (u64, u64) {
    if batch.op != Op::Settlements {
        return (0, 0);
    }
    let records: Vec<&[u8]> = batch
        .body
        .chunks_exact(crate::model::RECORD_BYTES)
        .collect();
    let failed: std::collections::BTreeSet<u32> = failures.iter().map(|(i, _)| *i).collect();
    let (mut settled, mut refused) = (0, 0);
    let mut start = 0;
    for (i, record) in records.iter().enumerate() {
        let flags = u16::from_le_bytes([record[118], record[119]]);
        if flags & 1 != 0 && i + 1 < records.len() {
            continue;
        }
        let chain = start..=i;
        let trades = chain
            .clone()
            .filter(|&k| {
                u16::from_le_bytes([records[k][118], records[k][119]])
                    & crate::model::SETTLEMENT_TRADE_BIT
                    != 0
            })
            .count();
        if i > start && trades > 0 && trades < i + 1 - start {
            if chain.clone().all(|k| !failed.contains(&(k as u32))) {
                settled += 1;
            } else if chain.clone().all(|k| failed.contains(&(k as u32))) {
                refused += 1;
            }
        }
        start = i + 1;
    }
    (settled, refused)
}
