//! A generator of random batches, valid and invalid, aimed by the model's state: it picks
//! existing accounts of the right ledger, pending transfers and trades to post or void, entry
//! timestamps just before an expiry, and retries of what it sent before (exact or altered), so
//! that every class of result shows up in a run of a few hundred events.
//!
//! Every choice is drawn from a SplitMix64 stream seeded per batch and per event, so a proptest
//! case (a list of seeds) shrinks by dropping batches and events, and a plain seed reproduces a
//! whole log.

use super::{Model, Op, RECORD_BYTES};
use tally_engine::{Account, AccountFlags, Trade, TradeFlags, Transfer, TransferFlags};

/// SplitMix64: tiny, deterministic, good enough to pick test cases.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// True with `percent`% probability.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn range(&mut self, low: u64, high_inclusive: u64) -> u64 {
        low + self.below(high_inclusive - low + 1)
    }
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            None
        } else {
            Some(items[self.below(items.len() as u64) as usize])
        }
    }
}

/// One generated batch.
#[derive(Clone, Debug)]
pub struct Batch {
    pub op: Op,
    pub entry_timestamp: u64,
    pub body: Vec<u8>,
}

/// Account ids come from this small space so that creations collide.
pub const ACCOUNT_IDS: u64 = 12;
/// Ledgers 1..=LEDGERS are common; LEDGERS + 1 is rare.
pub const LEDGERS: u64 = 3;

/// Knobs that differ between runs.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Where time starts (entry timestamps of the first batch are near it).
    pub time_base: u64,
}

/// The usual start: 1,000 s after the epoch.
pub const TIME_BASE_LOW: u64 = 1_000 * NS;
/// Just under the engine's `TIMESTAMP_MAX` (2^62, which the spec does not mention), so large
/// timestamps are exercised without tripping that undocumented refusal.
pub const TIME_BASE_HIGH: u64 = (1 << 62) - 2_000 * NS;

#[derive(Clone, Debug)]
pub struct Generator {
    pub config: Config,
    pub sent_accounts: Vec<Account>,
    pub sent_transfers: Vec<Transfer>,
    pub sent_trades: Vec<Trade>,
    pub id_next: u128,
}

const NS: u64 = 1_000_000_000;

impl Generator {
    pub fn new(config: Config) -> Generator {
        Generator {
            config,
            sent_accounts: Vec::new(),
            sent_transfers: Vec::new(),
            sent_trades: Vec::new(),
            id_next: 1,
        }
    }

    pub fn time_base(&self) -> u64 {
        self.config.time_base
    }

    /// Builds one batch from a batch seed and one seed per event. The first batch of a run
    /// should be accounts (`force_op`), or nothing else can succeed.
    pub fn batch(
        &mut self,
        model: &Model,
        batch_seed: u64,
        event_seeds: &[u64],
        force_op: Option<Op>,
    ) -> Batch {
        let mut rng = Rng::new(batch_seed);
        let op = force_op.unwrap_or(match rng.below(100) {
            0..=9 => Op::Accounts,
            10..=63 => Op::Transfers,
            64..=89 => Op::Trades,
            _ => Op::Settlements,
        });
        let last = model.last_timestamp.max(self.time_base());
        let entry_timestamp = match rng.below(100) {
            0..=49 => last + rng.below(1_000),
            50..=59 => last.saturating_sub(rng.below(10)),
            60..=61 => 0,
            62..=81 => last + rng.range(1, 3) * NS + rng.below(1_000),
            // Only expiries within the next 100 s: jumping to a u32::MAX-second timeout would
            // expire everything and end the useful life of the run.
            82..=96 => match rng.pick(
                &model
                    .live_expiries()
                    .into_iter()
                    .filter(|&x| x <= last + 100 * NS)
                    .collect::<Vec<u64>>(),
            ) {
                // Just before (or at) an expiry: the expiry either happens at the start of this
                // batch, or the events of this batch cross it and find it already expired.
                Some(expires_at) => expires_at.saturating_sub(rng.below(4)),
                None => last + NS,
            },
            _ => last + 20 * NS,
        };
        let chain_heavy = rng.chance(15);
        let mut body = Vec::with_capacity(event_seeds.len() * RECORD_BYTES);
        let mut batch_accounts: Vec<(u128, u32)> = Vec::new();
        // Account ids are few, so long account batches would be nothing but retries.
        let event_seeds = if op == Op::Accounts && force_op.is_none() {
            &event_seeds[..event_seeds.len().min(8)]
        } else {
            event_seeds
        };
        for &seed in event_seeds {
            let mut e = Rng::new(seed);
            let known = known_accounts(model, &batch_accounts);
            let record = match op {
                Op::Accounts => {
                    let a = self.account(&mut e, chain_heavy);
                    batch_accounts.push((a.id, a.ledger));
                    a.encode()
                }
                Op::Transfers => self.transfer(model, &mut e, &known, chain_heavy).encode(),
                Op::Trades => self.trade(model, &mut e, &known, chain_heavy).encode(),
                // A trade and its fees: trades and transfers mixed, chains more often.
                Op::Settlements => {
                    if e.chance(40) {
                        let mut record = self.trade(model, &mut e, &known, true).encode();
                        let flags = u16::from_le_bytes([record[118], record[119]])
                            | super::SETTLEMENT_TRADE_BIT;
                        record[118..120].copy_from_slice(&flags.to_le_bytes());
                        record
                    } else {
                        self.transfer(model, &mut e, &known, true).encode()
                    }
                }
            };
            body.extend_from_slice(&record);
        }
        // Rarely, a malformed body: the whole batch must be refused and change nothing.
        if rng.chance(2) {
            match rng.below(3) {
                0 => body.truncate(body.len() - 1),
                1 => body.extend_from_slice(&[0u8; 5]),
                _ => body.clear(),
            }
        }
        Batch {
            op,
            entry_timestamp,
            body,
        }
    }

    fn fresh_id(&mut self) -> u128 {
        let id = self.id_next;
        self.id_next += 1;
        id
    }

    fn event_id(&mut self, e: &mut Rng) -> u128 {
        let sent: Vec<u128> = self
            .sent_transfers
            .iter()
            .map(|t| t.id)
            .chain(self.sent_trades.iter().map(|d| d.id))
            .collect();
        match e.below(100) {
            0..=85 => self.fresh_id(),
            86..=94 => e.pick(&sent).unwrap_or(1),
            95..=96 => u128::from(e.range(1, 20)),
            97..=97 => 0,
            _ => u128::MAX,
        }
    }

    fn linked(e: &mut Rng, chain_heavy: bool) -> bool {
        e.chance(if chain_heavy { 35 } else { 8 })
    }

    // ------------------------------------------------------------------ accounts

    fn account(&mut self, e: &mut Rng, chain_heavy: bool) -> Account {
        if !self.sent_accounts.is_empty() && e.chance(14) {
            let mut a = e.pick(&self.sent_accounts).expect("non-empty");
            if e.chance(30) {
                match e.below(4) {
                    0 => a.user_data_64 ^= 1,
                    1 => a.ledger = a.ledger % 3 + 1,
                    2 => a.flags = AccountFlags(a.flags.0 ^ AccountFlags::HISTORY.0),
                    _ => a.code = a.code.wrapping_add(1),
                }
            }
            self.sent_accounts.push(a);
            return a;
        }
        let id = match e.below(100) {
            0..=86 => u128::from(e.range(1, ACCOUNT_IDS)),
            87..=90 => 0,
            91..=93 => u128::MAX,
            _ => (1 << 100) | u128::from(e.below(3)),
        };
        let mut flags = 0u16;
        let mut set = |on: bool, f: AccountFlags| {
            if on {
                flags |= f.0
            }
        };
        set(Self::linked(e, chain_heavy), AccountFlags::LINKED);
        let dmnec = e.chance(28);
        let cmned = e.chance(if dmnec { 3 } else { 15 });
        set(dmnec, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS);
        set(cmned, AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS);
        set(e.chance(30), AccountFlags::HISTORY);
        set(e.chance(3), AccountFlags::CLOSED);
        if e.chance(3) {
            flags |= 1 << e.range(5, 15);
        }
        let limit = if dmnec || cmned {
            match e.below(100) {
                0..=39 => 0,
                40..=84 => e.below(500),
                85..=94 => u64::MAX,
                _ => e.below(1 << 40),
            }
        } else if e.chance(3) {
            e.range(1, 10)
        } else {
            0
        };
        let ledger = match e.below(100) {
            0..=89 => e.range(1, LEDGERS) as u32,
            90..=93 => 0,
            _ => (LEDGERS + 1) as u32,
        };
        let mut a = Account {
            id,
            user_data_128: u128::from(e.below(3)),
            user_data_64: e.below(3),
            limit,
            ledger,
            code: if e.chance(96) {
                e.range(1, 3) as u16
            } else {
                0
            },
            flags: AccountFlags(flags),
            ..Account::default()
        };
        if e.chance(3) {
            match e.below(4) {
                0 => a.debits_pending = 1,
                1 => a.debits_posted = 1,
                2 => a.credits_pending = 1,
                _ => a.credits_posted = u128::MAX,
            }
        }
        if e.chance(3) {
            a.timestamp = e.range(1, u64::MAX);
        }
        self.sent_accounts.push(a);
        a
    }

    // ------------------------------------------------------------------ transfers

    fn amount(e: &mut Rng) -> u128 {
        match e.below(100) {
            0..=59 => u128::from(e.range(1, 50)),
            60..=81 => u128::from(e.range(1, 1_000)),
            82..=86 => u128::MAX - u128::from(e.below(3)),
            87..=90 => u128::MAX / 2 + u128::from(e.below(3)),
            91..=94 => 1 << 64,
            _ => 0,
        }
    }

    fn accounts_pair(e: &mut Rng, known: &[(u128, u32)]) -> (u128, u128, u32) {
        let random_id = |e: &mut Rng| match e.below(100) {
            0..=89 => u128::from(e.range(1, ACCOUNT_IDS + 2)),
            90..=94 => 0,
            _ => u128::MAX,
        };
        let debit = if e.chance(90) { e.pick(known) } else { None };
        let (debit_id, ledger) = match debit {
            Some((id, ledger)) => (id, ledger),
            None => (random_id(e), e.range(1, LEDGERS) as u32),
        };
        let same_ledger: Vec<(u128, u32)> = known
            .iter()
            .copied()
            .filter(|&(id, l)| l == ledger && id != debit_id)
            .collect();
        let credit_id = if e.chance(93) {
            e.pick(&same_ledger).map(|(id, _)| id)
        } else if e.chance(70) {
            e.pick(known).map(|(id, _)| id)
        } else {
            None
        }
        .unwrap_or_else(|| random_id(e));
        let ledger = match e.below(100) {
            0..=91 => ledger,
            92..=95 => e.range(1, LEDGERS + 1) as u32,
            _ => 0,
        };
        (debit_id, credit_id, ledger)
    }

    fn timeout(e: &mut Rng) -> u32 {
        match e.below(100) {
            0..=39 => 0,
            40..=84 => e.range(1, 3) as u32,
            85..=89 => e.range(10, 60) as u32,
            90..=94 => u32::MAX,
            _ => 3_500_000_000,
        }
    }

    fn transfer(
        &mut self,
        model: &Model,
        e: &mut Rng,
        known: &[(u128, u32)],
        chain_heavy: bool,
    ) -> Transfer {
        let kind = e.below(100);
        if kind < 13 && !self.sent_transfers.is_empty() {
            let mut t = e.pick(&self.sent_transfers).expect("non-empty");
            if kind >= 10 {
                match e.below(4) {
                    0 => t.amount = t.amount.wrapping_add(1),
                    1 => t.user_data_32 ^= 1,
                    2 => t.amount = t.amount.saturating_sub(1),
                    _ => t.code = t.code.wrapping_add(1),
                }
            }
            self.sent_transfers.push(t);
            return t;
        }
        let mut flags = 0u16;
        if Self::linked(e, chain_heavy) {
            flags |= TransferFlags::LINKED.0;
        }
        let mut t = Transfer {
            id: self.event_id(e),
            user_data_128: u128::from(e.below(2)),
            user_data_64: e.below(2),
            user_data_32: e.below(2) as u32,
            code: if e.chance(97) {
                e.range(1, 3) as u16
            } else {
                0
            },
            ..Transfer::default()
        };
        match kind {
            // Post or void a pending transfer.
            66..=89 => {
                let post = kind < 80;
                flags |= if post {
                    TransferFlags::POST_PENDING_TRANSFER.0
                } else {
                    TransferFlags::VOID_PENDING_TRANSFER.0
                };
                let pendings: Vec<Transfer> = self
                    .sent_transfers
                    .iter()
                    .rev()
                    .filter(|p| p.flags.contains(TransferFlags::PENDING))
                    .take(40)
                    .copied()
                    .collect();
                let stored = stored_pendings(model, false, e.chance(75));
                let p = match e.below(100) {
                    0..=59 => e.pick(&stored).and_then(|id| model.lookup_transfer(id)),
                    60..=89 => e.pick(&pendings),
                    _ => None,
                };
                let p = p.unwrap_or_else(|| {
                    let any_id = e.pick(&self.sent_transfers).map(|x| x.id).unwrap_or(1);
                    let trade_id = e.pick(&self.sent_trades).map(|x| x.id).unwrap_or(2);
                    let pending_id = match e.below(6) {
                        0 => any_id,
                        1 => trade_id,
                        2 => 0,
                        3 => u128::MAX,
                        4 => t.id,
                        _ => u128::from(e.range(1, 30)),
                    };
                    Transfer {
                        pending_id,
                        ..Transfer::default()
                    }
                });
                t.pending_id = if p.flags.contains(TransferFlags::PENDING) {
                    p.id
                } else {
                    p.pending_id
                };
                // 0: a post of nothing, or a void of all; u128::MAX: a post of all, or a void
                // naming more than was reserved.
                t.amount = match e.below(100) {
                    0..=24 => 0,
                    25..=44 => u128::MAX,
                    45..=69 => p.amount,
                    70..=84 if post => u128::from(e.below(u64::MAX)) % p.amount.max(1) + 1,
                    85..=94 => p.amount.wrapping_add(1),
                    _ => Self::amount(e),
                };
                let inherit = e.below(100);
                let (debit, credit, ledger) = Self::accounts_pair(e, known);
                t.debit_account_id = inherit_choice(inherit, p.debit_account_id, debit);
                t.credit_account_id = inherit_choice(inherit, p.credit_account_id, credit);
                t.ledger = inherit_choice(inherit, p.ledger, ledger);
                t.code = match e.below(100) {
                    0..=59 => 0,
                    60..=94 => p.code,
                    _ => t.code,
                };
                if e.chance(3) {
                    t.timeout = 1;
                }
            }
            _ => {
                let (debit, credit, ledger) = Self::accounts_pair(e, known);
                t.debit_account_id = debit;
                t.credit_account_id = credit;
                t.ledger = ledger;
                t.amount = Self::amount(e);
                let pending = (48..66).contains(&kind) || (kind >= 90 && e.chance(30));
                if pending {
                    flags |= TransferFlags::PENDING.0;
                    t.timeout = Self::timeout(e);
                    if e.chance(6) {
                        flags |= TransferFlags::CLOSING_DEBIT.0;
                    }
                    if e.chance(6) {
                        flags |= TransferFlags::CLOSING_CREDIT.0;
                    }
                }
                if kind >= 90 {
                    flags |= match e.below(100) {
                        0..=44 => TransferFlags::BALANCING_DEBIT.0,
                        45..=79 => TransferFlags::BALANCING_CREDIT.0,
                        _ => TransferFlags::BALANCING_DEBIT.0 | TransferFlags::BALANCING_CREDIT.0,
                    };
                    if e.chance(50) {
                        t.amount = if e.chance(50) { 1_000_000 } else { u128::MAX };
                    }
                }
            }
        }
        t.flags = TransferFlags(flags);
        // A few structurally broken transfers of every kind.
        if e.chance(4) {
            let f = &mut t.flags.0;
            match e.below(9) {
                0 => *f |= 1 << e.range(8, 15),
                1 => t.timestamp = e.range(1, u64::MAX),
                2 => *f |= TransferFlags::PENDING.0 | TransferFlags::POST_PENDING_TRANSFER.0,
                3 => {
                    *f |= TransferFlags::POST_PENDING_TRANSFER.0
                        | TransferFlags::VOID_PENDING_TRANSFER.0
                }
                4 => *f |= TransferFlags::CLOSING_CREDIT.0,
                5 => *f |= TransferFlags::BALANCING_DEBIT.0,
                6 => t.pending_id = u128::from(e.range(1, 5)),
                7 => t.timeout = e.range(1, 5) as u32,
                _ => *f = e.below(1 << 16) as u16,
            }
        }
        self.sent_transfers.push(t);
        t
    }

    // ------------------------------------------------------------------ trades

    fn units(e: &mut Rng) -> u64 {
        match e.below(100) {
            0..=69 => e.range(1, 50),
            70..=86 => e.range(1, 1_000),
            87..=92 => u64::MAX - e.below(2),
            93..=96 => u64::MAX / 2,
            _ => 0,
        }
    }

    fn trade(
        &mut self,
        model: &Model,
        e: &mut Rng,
        known: &[(u128, u32)],
        chain_heavy: bool,
    ) -> Trade {
        let kind = e.below(100);
        if kind < 13 && !self.sent_trades.is_empty() {
            let mut d = e.pick(&self.sent_trades).expect("non-empty");
            if kind >= 10 {
                match e.below(4) {
                    0 => d.quantity = d.quantity.wrapping_add(1),
                    1 => d.code = d.code.wrapping_add(1),
                    2 => d.user_data_64 = d.user_data_64.wrapping_add(1),
                    _ => d.cash_amount = d.cash_amount.wrapping_sub(1),
                }
            }
            self.sent_trades.push(d);
            return d;
        }
        let mut flags = 0u16;
        if Self::linked(e, chain_heavy) {
            flags |= TradeFlags::LINKED.0;
        }
        let mut d = Trade {
            id: self.event_id(e),
            code: if e.chance(97) {
                e.range(1, 3) as u16
            } else {
                0
            },
            ..Trade::default()
        };
        if (70..92).contains(&kind) {
            let post = kind < 84;
            flags |= if post {
                TradeFlags::POST_PENDING_TRADE.0
            } else {
                TradeFlags::VOID_PENDING_TRADE.0
            };
            let pendings: Vec<Trade> = self
                .sent_trades
                .iter()
                .rev()
                .filter(|p| p.flags.contains(TradeFlags::PENDING))
                .take(40)
                .copied()
                .collect();
            let stored = stored_pendings(model, true, e.chance(75));
            let p = match e.below(100) {
                0..=59 => e.pick(&stored).and_then(|id| model.lookup_trade(id)),
                60..=89 => e.pick(&pendings),
                _ => None,
            };
            let p = p.unwrap_or_else(|| {
                let any_id = e.pick(&self.sent_transfers).map(|x| x.id).unwrap_or(1);
                let pending_id = match e.below(5) {
                    0 => any_id,
                    1 => e.pick(&self.sent_trades).map(|x| x.id).unwrap_or(3),
                    2 => 0,
                    3 => d.id,
                    _ => u128::from(e.range(1, 30)),
                };
                Trade {
                    pending_id,
                    ..Trade::default()
                }
            });
            d.pending_id = if p.flags.contains(TradeFlags::PENDING) {
                p.id
            } else {
                p.pending_id
            };
            let mode = e.below(100);
            d.instrument_debit_account_id = inherit_choice(mode, p.instrument_debit_account_id, 1);
            d.instrument_credit_account_id =
                inherit_choice(mode, p.instrument_credit_account_id, 2);
            d.cash_debit_account_id = inherit_choice(mode, p.cash_debit_account_id, 3);
            d.cash_credit_account_id = inherit_choice(mode, p.cash_credit_account_id, 4);
            d.quantity = inherit_choice(mode, p.quantity, 7);
            d.cash_amount = inherit_choice(mode, p.cash_amount, 9);
            if e.chance(50) {
                d.code = p.code;
            }
            if e.chance(3) {
                d.timeout = 2;
            }
        } else {
            let mut ledgers: Vec<u32> = known.iter().map(|&(_, l)| l).collect();
            ledgers.sort_unstable();
            ledgers.dedup();
            let on = |l: u32| -> Vec<u128> {
                known
                    .iter()
                    .filter(|&&(_, x)| x == l)
                    .map(|&(id, _)| id)
                    .collect()
            };
            let instrument_ledger = e.pick(&ledgers).unwrap_or(1);
            let others: Vec<u32> = ledgers
                .iter()
                .copied()
                .filter(|&l| l != instrument_ledger)
                .collect();
            let cash_ledger = if e.chance(92) {
                e.pick(&others).unwrap_or(2)
            } else {
                instrument_ledger
            };
            let two = |e: &mut Rng, ids: Vec<u128>| -> (u128, u128) {
                let a = e
                    .pick(&ids)
                    .unwrap_or_else(|| u128::from(e.range(1, ACCOUNT_IDS)));
                let rest: Vec<u128> = ids.iter().copied().filter(|&x| x != a).collect();
                let b = e
                    .pick(&rest)
                    .unwrap_or_else(|| u128::from(e.range(1, ACCOUNT_IDS)));
                (a, b)
            };
            let (seller_instrument, buyer_instrument) = two(e, on(instrument_ledger));
            let (buyer_cash, seller_cash) = two(e, on(cash_ledger));
            d.instrument_debit_account_id = seller_instrument;
            d.instrument_credit_account_id = buyer_instrument;
            d.cash_debit_account_id = buyer_cash;
            d.cash_credit_account_id = seller_cash;
            d.instrument_ledger = instrument_ledger;
            d.cash_ledger = cash_ledger;
            // An intended settlement date, as yyyymmdd, or none.
            if e.chance(50) {
                d.user_data_64 = 20_260_000 + e.range(101, 1231);
            }
            // Now and then the legs the wrong way round (a client that swapped the pairs, or
            // the ledgers), or a ledger not named.
            match e.below(100) {
                0..=2 => {
                    std::mem::swap(
                        &mut d.instrument_debit_account_id,
                        &mut d.cash_debit_account_id,
                    );
                    std::mem::swap(
                        &mut d.instrument_credit_account_id,
                        &mut d.cash_credit_account_id,
                    );
                }
                3..=4 => std::mem::swap(&mut d.instrument_ledger, &mut d.cash_ledger),
                5 => d.instrument_ledger = 0,
                6 => d.cash_ledger = 0,
                7 => d.cash_ledger = d.instrument_ledger,
                _ => {}
            }
            if e.chance(4) {
                let v = match e.below(4) {
                    0 => 0,
                    1 => u128::MAX,
                    2 => seller_instrument,
                    _ => u128::from(e.range(1, ACCOUNT_IDS + 2)),
                };
                match e.below(4) {
                    0 => d.instrument_debit_account_id = v,
                    1 => d.instrument_credit_account_id = v,
                    2 => d.cash_debit_account_id = v,
                    _ => d.cash_credit_account_id = v,
                }
            }
            d.quantity = Self::units(e);
            d.cash_amount = Self::units(e);
            if (43..70).contains(&kind) {
                flags |= TradeFlags::PENDING.0;
                d.timeout = Self::timeout(e);
            }
        }
        d.flags = TradeFlags(flags);
        if e.chance(4) {
            let f = &mut d.flags.0;
            match e.below(6) {
                0 => *f |= 1 << e.range(4, 15),
                1 => d.timestamp = e.range(1, u64::MAX),
                2 => *f |= TradeFlags::PENDING.0 | TradeFlags::VOID_PENDING_TRADE.0,
                3 => d.pending_id = u128::from(e.range(1, 5)),
                4 => d.timeout = e.range(1, 5) as u32,
                _ => *f = e.below(1 << 16) as u16,
            }
        }
        self.sent_trades.push(d);
        d
    }
}

/// Ids of stored pending transfers (or trades), only those still pending if `live`.
fn stored_pendings(model: &Model, trades: bool, live: bool) -> Vec<u128> {
    model
        .pending
        .iter()
        .filter(|(_, p)| p.is_trade == trades && (!live || p.status == super::Status::Pending))
        .map(|(id, _)| *id)
        .collect()
}

/// A post/void field: mostly zero (inherit), often a copy of the pending value, rarely other.
fn inherit_choice<T: Default>(mode: u64, pending_value: T, other: T) -> T {
    match mode {
        0..=69 => T::default(),
        70..=94 => pending_value,
        _ => other,
    }
}

/// Accounts that exist in the model, plus those sent earlier in this batch.
fn known_accounts(model: &Model, batch: &[(u128, u32)]) -> Vec<(u128, u32)> {
    let mut known: Vec<(u128, u32)> = model
        .accounts
        .iter()
        .map(|(id, a)| (*id, a.created.ledger))
        .collect();
    for &(id, ledger) in batch {
        if id != 0 && id != u128::MAX && ledger != 0 && !known.iter().any(|&(k, _)| k == id) {
            known.push((id, ledger));
        }
    }
    known
}
