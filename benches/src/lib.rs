//! Workloads for Tally's benchmarks: seeded, reproducible batches of accounts, transfers,
//! trades and pending/post pairs, encoded as the engine consumes them.
//!
//! Benchmarks only: nothing here is part of the product or of the test run's timing.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use tally_engine::limits::{BATCH_EVENTS_MAX, RECORD_BYTES};
use tally_engine::records::encode_batch;
use tally_engine::{Account, Engine, EngineConfig, Operation, Trade, Transfer, TransferFlags};

/// Nanoseconds per second, for entry timestamps.
pub const SECOND: u64 = 1_000_000_000;
/// A plausible entry timestamp to start from (Nov 2023).
pub const EPOCH: u64 = 1_700_000_000 * SECOND;

/// How accounts are drawn for each transfer.
#[derive(Clone, Copy, Debug)]
pub enum Skew {
    Uniform,
    /// Zipf with this exponent over the account ranks (1.0 is the classic "hot few").
    Zipf(f64),
}

/// One batch body of `count` plain accounts on `ledger` with ids `first_id..`.
pub fn account_batch(first_id: u128, count: usize, ledger: u32) -> Vec<u8> {
    let batch: Vec<Account> = (0..count)
        .map(|i| Account {
            id: first_id + i as u128,
            ledger,
            code: 1,
            ..Account::default()
        })
        .collect();
    encode_batch(&batch, Account::encode)
}

/// Creates `accounts` accounts on `ledger` with ids `first_id..`, in full batches.
pub fn create_accounts(engine: &mut Engine, first_id: u128, accounts: usize, ledger: u32) {
    let mut next = first_id;
    let mut timestamp = EPOCH;
    let mut remaining = accounts;
    while remaining > 0 {
        let n = remaining.min(BATCH_EVENTS_MAX);
        let outcome = engine
            .apply(
                Operation::CreateAccounts,
                timestamp,
                &account_batch(next, n, ledger),
            )
            .expect("valid batch");
        assert!(
            outcome.failures.is_empty(),
            "account creation failed: {:?}",
            &outcome.failures[..1]
        );
        next += n as u128;
        remaining -= n;
        timestamp += 1;
    }
}

/// An engine with `accounts` accounts on ledger 1, ids `1..=accounts`.
pub fn engine_with_accounts(accounts: usize) -> Engine {
    let mut engine = Engine::new(EngineConfig { hash_seed: 42 });
    create_accounts(&mut engine, 1, accounts, 1);
    engine
}

/// Draws account indexes `0..accounts` with the configured skew.
pub struct AccountPicker {
    accounts: usize,
    zipf: Option<Zipf<f64>>,
}

impl AccountPicker {
    pub fn new(accounts: usize, skew: Skew) -> AccountPicker {
        let zipf = match skew {
            Skew::Uniform => None,
            Skew::Zipf(s) => Some(Zipf::new(accounts as f64, s).expect("valid Zipf parameters")),
        };
        AccountPicker { accounts, zipf }
    }

    pub fn pick(&self, rng: &mut SmallRng) -> usize {
        match &self.zipf {
            None => rng.random_range(0..self.accounts),
            Some(z) => (z.sample(rng) as usize - 1).min(self.accounts - 1),
        }
    }

    /// Two different accounts.
    pub fn pair(&self, rng: &mut SmallRng) -> (usize, usize) {
        loop {
            let (a, b) = (self.pick(rng), self.pick(rng));
            if a != b {
                return (a, b);
            }
        }
    }
}

/// Generates batch bodies of transfers between accounts `1..=accounts`, with fresh ids.
pub struct TransferWorkload {
    rng: SmallRng,
    picker: AccountPicker,
    next_id: u128,
}

impl TransferWorkload {
    pub fn new(accounts: usize, skew: Skew, seed: u64) -> TransferWorkload {
        TransferWorkload {
            rng: SmallRng::seed_from_u64(seed),
            picker: AccountPicker::new(accounts, skew),
            next_id: 1 << 64,
        }
    }

    /// A transfer with a fresh id between two different accounts drawn with the skew.
    fn random_transfer(&mut self) -> Transfer {
        let (d, c) = self.picker.pair(&mut self.rng);
        self.next_id += 1;
        Transfer {
            id: self.next_id,
            debit_account_id: d as u128 + 1,
            credit_account_id: c as u128 + 1,
            amount: self.rng.random_range(4..1_000_000),
            ledger: 1,
            code: 1,
            ..Transfer::default()
        }
    }

    /// A full batch of single-phase transfers.
    pub fn transfers(&mut self, events: usize) -> Vec<u8> {
        let batch: Vec<Transfer> = (0..events).map(|_| self.random_transfer()).collect();
        encode_batch(&batch, Transfer::encode)
    }

    /// A batch of pending transfers and the batch that posts each of them (partially for every
    /// fourth, so both post paths run).
    pub fn pending_then_post(&mut self, events: usize) -> (Vec<u8>, Vec<u8>) {
        let pending: Vec<Transfer> = (0..events)
            .map(|_| Transfer {
                timeout: 3_600,
                flags: TransferFlags::PENDING,
                ..self.random_transfer()
            })
            .collect();
        let posts: Vec<Transfer> = pending
            .iter()
            .enumerate()
            .map(|(i, p)| {
                self.next_id += 1;
                Transfer {
                    id: self.next_id,
                    pending_id: p.id,
                    // A quarter post half; the rest post all (u128::MAX: the pending amount).
                    amount: if i % 4 == 0 { p.amount / 2 } else { u128::MAX },
                    flags: TransferFlags::POST_PENDING_TRANSFER,
                    ..Transfer::default()
                }
            })
            .collect();
        (
            encode_batch(&pending, Transfer::encode),
            encode_batch(&posts, Transfer::encode),
        )
    }
}

/// Participants each with a cash account (ledger 1, id `p`) and an instrument account
/// (ledger 2, id `1_000_000_000 + p`), trading with each other.
pub struct TradeWorkload {
    rng: SmallRng,
    participants: usize,
    next_id: u128,
}

/// Offset of instrument account ids from cash account ids.
pub const INSTRUMENT_ID_OFFSET: u128 = 1_000_000_000;

impl TradeWorkload {
    pub fn engine(participants: usize) -> Engine {
        let mut engine = Engine::new(EngineConfig { hash_seed: 42 });
        create_accounts(&mut engine, 1, participants, 1);
        create_accounts(&mut engine, INSTRUMENT_ID_OFFSET + 1, participants, 2);
        engine
    }

    pub fn new(participants: usize, seed: u64) -> TradeWorkload {
        TradeWorkload {
            rng: SmallRng::seed_from_u64(seed),
            participants,
            next_id: 1 << 64,
        }
    }

    pub fn trades(&mut self, events: usize) -> Vec<u8> {
        let picker = AccountPicker::new(self.participants, Skew::Uniform);
        let batch: Vec<Trade> = (0..events)
            .map(|_| {
                let (seller, buyer) = picker.pair(&mut self.rng);
                let (seller, buyer) = (seller as u128 + 1, buyer as u128 + 1);
                self.next_id += 1;
                Trade {
                    id: self.next_id,
                    instrument_debit_account_id: INSTRUMENT_ID_OFFSET + seller,
                    instrument_credit_account_id: INSTRUMENT_ID_OFFSET + buyer,
                    cash_debit_account_id: buyer,
                    cash_credit_account_id: seller,
                    instrument_ledger: 2,
                    cash_ledger: 1,
                    quantity: self.rng.random_range(1..10_000),
                    cash_amount: self.rng.random_range(1..10_000_000),
                    code: 1,
                    ..Trade::default()
                }
            })
            .collect();
        encode_batch(&batch, Trade::encode)
    }
}

/// Events in a batch body.
pub fn events_in(body: &[u8]) -> usize {
    body.len() / RECORD_BYTES
}

/// Resident set size of this process in bytes, from /proc (Linux); 0 where unavailable.
pub fn rss_bytes() -> u64 {
    tally_raft::metrics::resident_bytes()
}

/// CPU time consumed by the calling thread, in seconds. Unlike wall time it does not count the
/// time this thread waited for a core, so it stays meaningful on a shared, busy machine.
pub fn thread_cpu_seconds() -> f64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; the clock id is a constant Linux supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    now.tv_sec as f64 + now.tv_nsec as f64 / 1e9
}
