//! Workloads: which accounts exist, and batches of transfers, DvP trades and pending transfers
//! (each later posted or voided) in a configured mix, with accounts drawn uniformly, Zipf-skewed
//! or from a hot set. Seeded and reproducible per client; ids never repeat within a run.

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use tally_engine::limits::{BATCH_EVENTS_MAX, RECORD_BYTES};
use tally_engine::records::{Account, Trade, Transfer, TransferFlags};
use tally_engine::{EventResult, Operation};

/// Ledger of the cash accounts (transfers and the cash leg of trades).
pub const CASH_LEDGER: u32 = 1;
/// Ledger of the instrument accounts (the instrument leg of trades).
pub const INSTRUMENT_LEDGER: u32 = 2;
/// Instrument account `i` has id `INSTRUMENT_ID_OFFSET + i`; cash account `i` has id `i`.
pub const INSTRUMENT_ID_OFFSET: u128 = 1 << 40;
/// A debit account that never exists: a transfer naming it is a deliberate, definite failure
/// (`debit_account_not_found`), so the checks see failed events that must not be stored.
pub const MISSING_ACCOUNT_ID: u128 = 1 << 100;

/// How accounts are drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Skew {
    Uniform,
    /// Zipf with this exponent over account ranks (1.0: the classic "hot few").
    Zipf(f64),
    /// `percent` of draws go to the first `accounts` accounts, the rest uniformly to all.
    Hot {
        accounts: u64,
        percent: u32,
    },
}

impl std::str::FromStr for Skew {
    type Err = String;

    /// `uniform`, `zipf:S` or `hot:ACCOUNTS:PERCENT`.
    fn from_str(text: &str) -> Result<Skew, String> {
        let parts: Vec<&str> = text.split(':').collect();
        let bad = || format!("bad skew {text:?}: want uniform, zipf:S or hot:ACCOUNTS:PERCENT");
        match parts[..] {
            ["uniform"] => Ok(Skew::Uniform),
            ["zipf", s] => match s.parse::<f64>() {
                Ok(s) if s > 0.0 => Ok(Skew::Zipf(s)),
                _ => Err(bad()),
            },
            ["hot", accounts, percent] => match (accounts.parse(), percent.parse()) {
                (Ok(accounts), Ok(percent)) if accounts > 0 && percent <= 100 => {
                    Ok(Skew::Hot { accounts, percent })
                }
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

/// Shares of batches by kind, in percent (they add up to 100).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mix {
    pub transfers: u32,
    pub trades: u32,
    /// Pending transfers, each posted (or, one in five, voided) by a follow-up batch.
    pub pending: u32,
}

impl Mix {
    pub const TRANSFERS_ONLY: Mix = Mix {
        transfers: 100,
        trades: 0,
        pending: 0,
    };
}

impl std::str::FromStr for Mix {
    type Err = String;

    /// `transfers=70,trades=20,pending=10` (missing kinds are 0; the shares add up to 100).
    fn from_str(text: &str) -> Result<Mix, String> {
        let mut mix = Mix {
            transfers: 0,
            trades: 0,
            pending: 0,
        };
        for part in text.split(',') {
            let (kind, share) = part
                .split_once('=')
                .ok_or(format!("bad mix part {part:?}"))?;
            let share: u32 = share
                .parse()
                .map_err(|_| format!("bad share in {part:?}"))?;
            match kind {
                "transfers" => mix.transfers = share,
                "trades" => mix.trades = share,
                "pending" => mix.pending = share,
                _ => return Err(format!("unknown kind {kind:?}: transfers, trades, pending")),
            }
        }
        if mix.transfers + mix.trades + mix.pending != 100 {
            return Err(format!("the mix {text:?} does not add up to 100"));
        }
        Ok(mix)
    }
}

/// What a run's workload looks like.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WorkloadConfig {
    /// Cash accounts `1..=accounts` (and as many instrument accounts when trades are mixed in).
    pub accounts: u64,
    pub batch_events: usize,
    pub mix: Mix,
    pub skew: Skew,
    /// Per thousand transfers, one that names a missing account (a definite failure).
    pub invalid_per_mille: u32,
    pub seed: u64,
}

impl WorkloadConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.accounts < 4 || self.accounts > (1 << 30) {
            return Err("accounts must be 4..=2^30".into());
        }
        if self.batch_events == 0 || self.batch_events > BATCH_EVENTS_MAX {
            return Err(format!("batch events must be 1..={BATCH_EVENTS_MAX}"));
        }
        if let Skew::Hot { accounts, .. } = self.skew {
            if accounts > self.accounts {
                return Err("the hot set is larger than the accounts".into());
            }
        }
        if self.invalid_per_mille > 1000 {
            return Err("invalid per mille must be 0..=1000".into());
        }
        Ok(())
    }

    /// Whether instrument accounts are needed.
    pub fn with_instruments(&self) -> bool {
        self.mix.trades > 0
    }

    /// The account batches that set the workload up: cash accounts, then instrument accounts.
    pub fn account_batches(&self) -> Vec<Bytes> {
        let mut ids: Vec<(u128, u32)> = (1..=u128::from(self.accounts))
            .map(|id| (id, CASH_LEDGER))
            .collect();
        if self.with_instruments() {
            ids.extend(
                (1..=u128::from(self.accounts))
                    .map(|i| (INSTRUMENT_ID_OFFSET + i, INSTRUMENT_LEDGER)),
            );
        }
        ids.chunks(BATCH_EVENTS_MAX)
            .map(|chunk| {
                let body: Vec<u8> = chunk
                    .iter()
                    .flat_map(|(id, ledger)| {
                        Account {
                            id: *id,
                            ledger: *ledger,
                            code: 1,
                            ..Account::default()
                        }
                        .encode()
                    })
                    .collect();
                Bytes::from(body)
            })
            .collect()
    }
}

/// The kind of a batch, for statistics and checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Accounts,
    Transfers,
    Trades,
    Pending,
    PostVoid,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Accounts,
        Kind::Transfers,
        Kind::Trades,
        Kind::Pending,
        Kind::PostVoid,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Accounts => "accounts",
            Kind::Transfers => "transfers",
            Kind::Trades => "trades",
            Kind::Pending => "pending",
            Kind::PostVoid => "post_void",
        }
    }

    pub fn operation(self) -> Operation {
        match self {
            Kind::Accounts => Operation::CreateAccounts,
            Kind::Trades => Operation::CreateTrades,
            Kind::Transfers | Kind::Pending | Kind::PostVoid => Operation::CreateTransfers,
        }
    }
}

/// One batch to submit.
#[derive(Clone, Debug)]
pub struct Batch {
    pub kind: Kind,
    pub body: Bytes,
}

impl Batch {
    pub fn events(&self) -> usize {
        self.body.len() / RECORD_BYTES
    }
}

/// Draws account numbers `1..=accounts` with the configured skew.
pub struct AccountPicker {
    accounts: u64,
    skew: Skew,
    zipf: Option<Zipf<f64>>,
}

impl AccountPicker {
    pub fn new(accounts: u64, skew: Skew) -> AccountPicker {
        let zipf = match skew {
            Skew::Zipf(s) => Zipf::new(accounts as f64, s).ok(),
            _ => None,
        };
        AccountPicker {
            accounts,
            skew,
            zipf,
        }
    }

    pub fn pick(&self, rng: &mut SmallRng) -> u64 {
        match (self.skew, &self.zipf) {
            (Skew::Zipf(_), Some(zipf)) => (zipf.sample(rng) as u64).clamp(1, self.accounts),
            (Skew::Hot { accounts, percent }, _) if rng.random_range(0..100) < percent => {
                rng.random_range(1..=accounts)
            }
            _ => rng.random_range(1..=self.accounts),
        }
    }

    /// Two different accounts.
    pub fn pair(&self, rng: &mut SmallRng) -> (u64, u64) {
        let first = self.pick(rng);
        loop {
            let second = self.pick(rng);
            if second != first {
                return (first, second);
            }
            // A hot set of one account (or Zipf's head) could repeat for long: fall back.
            let second = rng.random_range(1..=self.accounts);
            if second != first {
                return (first, second);
            }
        }
    }
}

/// One client's batches. Ids are `tag << 96 | (client + 1) << 64 | counter`: unique across
/// clients, and across runs with different tags.
pub struct Generator {
    config: WorkloadConfig,
    rng: SmallRng,
    picker: AccountPicker,
    next_id: u128,
}

impl Generator {
    pub fn new(config: WorkloadConfig, client: u32, tag: u32) -> Generator {
        Generator {
            config,
            rng: SmallRng::seed_from_u64(config.seed ^ (u64::from(client) << 32)),
            picker: AccountPicker::new(config.accounts, config.skew),
            next_id: (u128::from(tag) << 96) | (u128::from(client) + 1) << 64,
        }
    }

    fn id(&mut self) -> u128 {
        self.next_id += 1;
        self.next_id
    }

    /// The next batch of `events` events, its kind drawn from the mix.
    pub fn batch(&mut self, events: usize) -> Batch {
        let mix = self.config.mix;
        let draw = self.rng.random_range(0..100);
        let kind = if draw < mix.transfers {
            Kind::Transfers
        } else if draw < mix.transfers + mix.trades {
            Kind::Trades
        } else {
            Kind::Pending
        };
        let mut body = Vec::with_capacity(events * RECORD_BYTES);
        for _ in 0..events {
            let record = match kind {
                Kind::Trades => self.trade().encode(),
                Kind::Pending => Transfer {
                    flags: TransferFlags::PENDING,
                    ..self.transfer(false)
                }
                .encode(),
                _ => {
                    let invalid = self.rng.random_range(0..1000) < self.config.invalid_per_mille;
                    self.transfer(invalid).encode()
                }
            };
            body.extend_from_slice(&record);
        }
        Batch {
            kind,
            body: Bytes::from(body),
        }
    }

    fn transfer(&mut self, invalid: bool) -> Transfer {
        let (debit, credit) = self.picker.pair(&mut self.rng);
        Transfer {
            id: self.id(),
            debit_account_id: if invalid {
                MISSING_ACCOUNT_ID
            } else {
                u128::from(debit)
            },
            credit_account_id: u128::from(credit),
            amount: self.rng.random_range(1..1_000_000),
            ledger: CASH_LEDGER,
            code: 1,
            ..Transfer::default()
        }
    }

    fn trade(&mut self) -> Trade {
        let (seller, buyer) = self.picker.pair(&mut self.rng);
        let (seller, buyer) = (u128::from(seller), u128::from(buyer));
        Trade {
            id: self.id(),
            instrument_debit_account_id: INSTRUMENT_ID_OFFSET + seller,
            instrument_credit_account_id: INSTRUMENT_ID_OFFSET + buyer,
            cash_debit_account_id: buyer,
            cash_credit_account_id: seller,
            instrument_ledger: INSTRUMENT_LEDGER,
            cash_ledger: CASH_LEDGER,
            quantity: self.rng.random_range(1..1_000),
            cash_amount: self.rng.random_range(1..1_000_000),
            code: 1,
            ..Trade::default()
        }
    }

    /// The batch that resolves the pending transfers of `pending` that succeeded: each posted
    /// in full, or (one in five) voided. Fields are spelled out rather than inherited, so the
    /// stored post equals the request and the durability check can compare them.
    pub fn resolve(&mut self, pending: &Batch, failures: &[(u32, EventResult)]) -> Option<Batch> {
        let mut body = Vec::with_capacity(pending.body.len());
        let mut failed = failures.iter().map(|(index, _)| *index as usize).peekable();
        for (index, record) in pending.body.chunks_exact(RECORD_BYTES).enumerate() {
            if failed.peek() == Some(&index) {
                failed.next();
                continue;
            }
            let Ok(record) = <&[u8; RECORD_BYTES]>::try_from(record) else {
                continue;
            };
            let Ok(reserved) = Transfer::decode(record) else {
                continue;
            };
            let flags = if self.rng.random_range(0..5) == 0 {
                TransferFlags::VOID_PENDING_TRANSFER
            } else {
                TransferFlags::POST_PENDING_TRANSFER
            };
            let resolution = Transfer {
                id: self.id(),
                pending_id: reserved.id,
                flags,
                ..reserved
            };
            body.extend_from_slice(&resolution.encode());
        }
        (!body.is_empty()).then(|| Batch {
            kind: Kind::PostVoid,
            body: Bytes::from(body),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(mix: Mix, skew: Skew) -> WorkloadConfig {
        WorkloadConfig {
            accounts: 1_000,
            batch_events: 100,
            mix,
            skew,
            invalid_per_mille: 0,
            seed: 7,
        }
    }

    /// Proves the mix, skew and parsers do what they say: kinds in proportion, skewed draws
    /// concentrated, bad text refused.
    #[test]
    fn mix_and_skew() {
        let mix: Mix = "transfers=50,trades=30,pending=20".parse().expect("mix");
        let mut generator = Generator::new(config(mix, Skew::Uniform), 0, 1);
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..2_000 {
            *counts.entry(generator.batch(1).kind).or_insert(0) += 1;
        }
        assert!(
            (900..1100).contains(&counts[&Kind::Transfers]),
            "{counts:?}"
        );
        assert!((500..700).contains(&counts[&Kind::Trades]), "{counts:?}");
        assert!((300..500).contains(&counts[&Kind::Pending]), "{counts:?}");
        assert!("transfers=50,trades=30".parse::<Mix>().is_err());
        assert!("bogus".parse::<Skew>().is_err());
        assert_eq!(
            "hot:10:90".parse::<Skew>(),
            Ok(Skew::Hot {
                accounts: 10,
                percent: 90
            })
        );

        let mut rng = SmallRng::seed_from_u64(1);
        for (skew, low_share_min) in [
            (Skew::Uniform, 0),
            ("zipf:1.2".parse().expect("zipf"), 500),
            (
                Skew::Hot {
                    accounts: 10,
                    percent: 90,
                },
                850,
            ),
        ] {
            let picker = AccountPicker::new(1_000, skew);
            let low = (0..1_000).filter(|_| picker.pick(&mut rng) <= 10).count();
            assert!(
                low >= low_share_min,
                "{skew:?}: {low} of 1000 draws hit 10 accounts"
            );
            if skew == Skew::Uniform {
                assert!(
                    low < 50,
                    "uniform draws hit the first 10 accounts {low} times"
                );
            }
        }
    }

    /// Proves ids are unique across clients and batches, and that the resolving batch posts or
    /// voids exactly the pending transfers that succeeded.
    #[test]
    fn ids_unique_and_resolutions_follow_successes() {
        let mix = Mix {
            transfers: 0,
            trades: 0,
            pending: 100,
        };
        let mut seen = std::collections::HashSet::new();
        for client in 0..3 {
            let mut generator = Generator::new(config(mix, Skew::Uniform), client, 9);
            let pending = generator.batch(10);
            assert_eq!(pending.kind, Kind::Pending);
            let failures = [
                (2, EventResult::ExceedsCredits),
                (7, EventResult::ExceedsCredits),
            ];
            let resolution = generator
                .resolve(&pending, &failures)
                .expect("eight resolve");
            assert_eq!(resolution.events(), 8);
            for body in [&pending.body, &resolution.body] {
                for record in body.chunks_exact(RECORD_BYTES) {
                    assert!(seen.insert(record[..16].to_vec()), "an id repeats");
                }
            }
            let pending_ids: Vec<u128> = pending
                .body
                .chunks_exact(RECORD_BYTES)
                .map(|r| {
                    Transfer::decode(r.try_into().expect("record"))
                        .expect("transfer")
                        .id
                })
                .collect();
            let resolved: Vec<u128> = resolution
                .body
                .chunks_exact(RECORD_BYTES)
                .map(|r| {
                    Transfer::decode(r.try_into().expect("record"))
                        .expect("post")
                        .pending_id
                })
                .collect();
            let expected: Vec<u128> = pending_ids
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != 2 && *i != 7)
                .map(|(_, id)| *id)
                .collect();
            assert_eq!(resolved, expected);
        }
    }
}
