//! The netting run of a settlement cycle (BIS DvP model 3): given what each position may pay out
//! and a cycle's eligible obligations, which obligations settle whole, which settle in part,
//! which fail and on whose shortfall, and the one net movement of every position.
//!
//! A *position* is one participant's holding of one asset (in the engine: an account, whose
//! ledger is the asset); the caller numbers positions `0..n` in a fixed order (the engine: by
//! account id), and the number decides ties. An *obligation* delivers `quantity` units of an
//! instrument from the deliverer's securities position to the receiver's, against `cash` from
//! the receiver's cash position to the deliverer's (`cash == 0`: free of payment).
//!
//! The rule (docs/settlement.md says why this one):
//!
//! 1. **Rank.** Obligations settle in rank order: higher `priority` first, then older (more
//!    cycles carried forward, `age`) first, then earlier arrival (lower index) first.
//! 2. **Remove.** A position is *short* when what it pays out exceeds what it has available plus
//!    what it receives. While any position is short, take the short position with the lowest
//!    number and remove the lowest-ranked obligation it pays out on (a delivery of its securities
//!    or a payment of its cash). Each step removes one obligation, so this ends after at most as
//!    many steps as there are obligations, and then no position is short.
//! 3. **Re-admit.** Pass over the removed obligations in rank order; admit each whole if both its
//!    payers can now cover it, or, if it allows partial settlement, the largest part both can
//!    cover (`quantity` in whole units, cash in proportion rounded down, so the parts of an
//!    obligation add up to it exactly). Admitting only adds to the payees, so no position becomes
//!    short. Repeat while a pass admits something, at most [`MAX_ADMISSION_PASSES`] passes.
//! 4. **Settle net.** Every position moves once, by what it receives less what it pays over the
//!    settled parts; the movements of each asset sum to zero.
//!
//! Pure and deterministic: no clock, no randomness, no hash-map order; O(n log n) in the number
//! of obligations for steps 1–2 and O(n) per pass of step 3.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// At most this many re-admission passes run (step 3); a run that still admitted something in
/// the last one reports `converged: false` (possible only where admissions feed each other in
/// long chains).
pub const MAX_ADMISSION_PASSES: u32 = 8;

/// What a position may pay out in the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Available {
    /// At most this much (the account's posted balance less its pending debits, within its
    /// balance rules).
    Limited(u128),
    /// No limit (an account without a balance rule, such as an issuer's).
    Unlimited,
}

/// One settlement obligation of the cycle, in the caller's arrival order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Obligation {
    /// The deliverer's securities position (pays `quantity`).
    pub securities_from: u32,
    /// The receiver's securities position (receives `quantity`).
    pub securities_to: u32,
    /// The receiver's cash position (pays `cash`).
    pub cash_from: u32,
    /// The deliverer's cash position (receives `cash`).
    pub cash_to: u32,
    /// Units of the instrument; at least 1.
    pub quantity: u64,
    /// The cash leg; 0 for a delivery free of payment.
    pub cash: u64,
    /// Higher settles first.
    pub priority: u16,
    /// Cycles this obligation has been carried forward; older settles first.
    pub age: u16,
    /// Whether a part may settle when the whole cannot.
    pub partial: bool,
}

/// Which leg's payer was short when an obligation was removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShortLeg {
    /// The deliverer lacked the securities.
    Securities,
    /// The receiver lacked the cash.
    Cash,
}

/// What the run did with one obligation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Settled whole.
    Settled,
    /// Settled in part; the rest (`quantity` and `cash` less these) carries forward.
    Partial {
        quantity: u64,
        cash: u64,
        short: u32,
        leg: ShortLeg,
    },
    /// Nothing settled: removed because position `short` (this obligation's payer on `leg`) was
    /// short, and not re-admitted.
    Failed { short: u32, leg: ShortLeg },
}

impl Outcome {
    /// The quantity and cash this outcome settles of `obligation`.
    pub fn settled(&self, obligation: &Obligation) -> (u64, u64) {
        match *self {
            Outcome::Settled => (obligation.quantity, obligation.cash),
            Outcome::Partial { quantity, cash, .. } => (quantity, cash),
            Outcome::Failed { .. } => (0, 0),
        }
    }
}

/// The result of a netting run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetRun {
    /// One per obligation, in the input's order.
    pub outcomes: Vec<Outcome>,
    /// One per position: received less paid over the settled parts.
    pub movements: Vec<i128>,
    /// Obligations removed in step 2 (some re-admitted in step 3).
    pub removals: u64,
    /// Re-admission passes run.
    pub passes: u32,
    /// Whether the last pass admitted nothing (so no failed obligation could settle whole, and
    /// no partial one could settle more, on top of the result).
    pub converged: bool,
}

impl NetRun {
    /// Positions whose balance changes (one balance change each), against 2 per settled leg
    /// when each obligation settles gross.
    pub fn balance_changes(&self) -> usize {
        self.movements.iter().filter(|m| **m != 0).count()
    }
}

/// Why a run's input was refused; nothing is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NettingError {
    /// An obligation names a position at or past the number of positions.
    PositionOutOfRange { obligation: usize },
    /// An obligation's leg pays from and to the same position.
    SamePosition { obligation: usize },
    /// An obligation delivers nothing.
    ZeroQuantity { obligation: usize },
    /// More obligations than a run takes ([`crate::limits::NETTING_MAX_OBLIGATIONS`]).
    TooManyObligations,
}

impl std::fmt::Display for NettingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NettingError::PositionOutOfRange { obligation } => {
                write!(
                    f,
                    "obligation {obligation} names a position that is not in the run"
                )
            }
            NettingError::SamePosition { obligation } => {
                write!(
                    f,
                    "obligation {obligation} pays a leg from and to the same position"
                )
            }
            NettingError::ZeroQuantity { obligation } => {
                write!(f, "obligation {obligation} delivers a quantity of 0")
            }
            NettingError::TooManyObligations => write!(
                f,
                "a netting run takes at most {} obligations",
                crate::limits::NETTING_MAX_OBLIGATIONS
            ),
        }
    }
}

impl std::error::Error for NettingError {}

/// Per position: the limit, and the sums over the obligations currently in the run.
/// Sums fit: at most 2^32 obligations of at most 2^64 - 1 each.
struct Ledger<'a> {
    available: &'a [Available],
    paying: Vec<u128>,
    receiving: Vec<u128>,
}

impl Ledger<'_> {
    /// What `position` could still pay on top of what it pays now (`u128::MAX` without a limit).
    fn spare(&self, position: u32) -> u128 {
        let p = position as usize;
        match self.available[p] {
            Available::Unlimited => u128::MAX,
            Available::Limited(limit) => limit
                .saturating_add(self.receiving[p])
                .saturating_sub(self.paying[p]),
        }
    }

    fn is_short(&self, position: u32) -> bool {
        let p = position as usize;
        match self.available[p] {
            Available::Unlimited => false,
            Available::Limited(limit) => self.paying[p] > limit.saturating_add(self.receiving[p]),
        }
    }

    /// Adds (`add`) or takes away a settled part of an obligation.
    fn apply(&mut self, o: &Obligation, quantity: u64, cash: u64, add: bool) {
        let legs = [
            (o.securities_from, o.securities_to, quantity),
            (o.cash_from, o.cash_to, cash),
        ];
        for (from, to, amount) in legs {
            let amount = u128::from(amount);
            let (from, to) = (from as usize, to as usize);
            if add {
                self.paying[from] += amount;
                self.receiving[to] += amount;
            } else {
                self.paying[from] -= amount;
                self.receiving[to] -= amount;
            }
        }
    }
}

/// Runs the rule in the module docs over `obligations` against `available` (one per position).
pub fn net(available: &[Available], obligations: &[Obligation]) -> Result<NetRun, NettingError> {
    if obligations.len() > crate::limits::NETTING_MAX_OBLIGATIONS {
        return Err(NettingError::TooManyObligations);
    }
    let positions = available.len();
    for (i, o) in obligations.iter().enumerate() {
        let named = [o.securities_from, o.securities_to, o.cash_from, o.cash_to];
        if named.iter().any(|p| *p as usize >= positions) {
            return Err(NettingError::PositionOutOfRange { obligation: i });
        }
        if o.securities_from == o.securities_to || o.cash_from == o.cash_to {
            return Err(NettingError::SamePosition { obligation: i });
        }
        if o.quantity == 0 {
            return Err(NettingError::ZeroQuantity { obligation: i });
        }
    }
    let mut ledger = Ledger {
        available,
        paying: vec![0; positions],
        receiving: vec![0; positions],
    };
    for o in obligations {
        ledger.apply(o, o.quantity, o.cash, true);
    }

    // Step 1: lowest rank first (the order removals take them in).
    let mut by_rank_ascending: Vec<u32> = (0..obligations.len() as u32).collect();
    by_rank_ascending.sort_unstable_by_key(|&i| {
        let o = &obligations[i as usize];
        (o.priority, o.age, Reverse(i))
    });

    // Each position's outgoing obligations, lowest rank first, as one array in slices.
    let mut start = vec![0u32; positions + 1];
    for o in obligations {
        start[o.securities_from as usize + 1] += 1;
        if o.cash > 0 {
            start[o.cash_from as usize + 1] += 1;
        }
    }
    for p in 0..positions {
        start[p + 1] += start[p];
    }
    let mut next = start.clone();
    let mut outgoing = vec![0u32; start[positions] as usize];
    for &i in &by_rank_ascending {
        let o = &obligations[i as usize];
        outgoing[next[o.securities_from as usize] as usize] = i;
        next[o.securities_from as usize] += 1;
        if o.cash > 0 {
            outgoing[next[o.cash_from as usize] as usize] = i;
            next[o.cash_from as usize] += 1;
        }
    }
    // `next` now marks each slice's end; `cursor` walks each slice from its start.
    let mut cursor: Vec<u32> = start[..positions].to_vec();

    // Step 2: remove until no position is short, lowest-numbered short position first.
    let mut removed: Vec<Option<(u32, ShortLeg)>> = vec![None; obligations.len()];
    let mut queued = vec![false; positions];
    let mut shorts: BinaryHeap<Reverse<u32>> = BinaryHeap::new();
    for p in 0..positions as u32 {
        if ledger.is_short(p) {
            queued[p as usize] = true;
            shorts.push(Reverse(p));
        }
    }
    let mut removals = 0u64;
    while let Some(Reverse(p)) = shorts.pop() {
        queued[p as usize] = false;
        if !ledger.is_short(p) {
            continue;
        }
        let (slot, end) = (&mut cursor[p as usize], next[p as usize]);
        while *slot < end && removed[outgoing[*slot as usize] as usize].is_some() {
            *slot += 1;
        }
        // A short position pays out on at least one obligation still in the run, so its slice
        // is not exhausted here (with none, it would pay nothing and not be short).
        if *slot == end {
            debug_assert!(false, "short position {p} pays out on nothing");
            continue;
        }
        let i = outgoing[*slot as usize] as usize;
        *slot += 1;
        let o = &obligations[i];
        let leg = if o.securities_from == p {
            ShortLeg::Securities
        } else {
            ShortLeg::Cash
        };
        removed[i] = Some((p, leg));
        removals += 1;
        ledger.apply(o, o.quantity, o.cash, false);
        for q in [p, o.securities_to, o.cash_to] {
            if !queued[q as usize] && ledger.is_short(q) {
                queued[q as usize] = true;
                shorts.push(Reverse(q));
            }
        }
    }

    // Step 3: re-admit in rank order, whole or in part.
    let failed: Vec<u32> = by_rank_ascending
        .iter()
        .rev()
        .copied()
        .filter(|&i| removed[i as usize].is_some())
        .collect();
    let mut settled_quantity = vec![0u64; obligations.len()];
    let mut passes = 0;
    let mut converged = failed.is_empty();
    while !converged && passes < MAX_ADMISSION_PASSES {
        passes += 1;
        let mut admitted = false;
        for &i in &failed {
            let o = &obligations[i as usize];
            let done = settled_quantity[i as usize];
            if done == o.quantity {
                continue;
            }
            let upto = admissible(o, done, &ledger);
            if upto > done {
                let cash = cash_for(o, upto) - cash_for(o, done);
                ledger.apply(o, upto - done, cash, true);
                settled_quantity[i as usize] = upto;
                admitted = true;
            }
        }
        converged = !admitted;
    }

    // Step 4: outcomes and net movements.
    let mut movements = vec![0i128; positions];
    let mut outcomes = Vec::with_capacity(obligations.len());
    for (i, o) in obligations.iter().enumerate() {
        let outcome = match removed[i] {
            None => Outcome::Settled,
            Some(_) if settled_quantity[i] == o.quantity => Outcome::Settled,
            Some((short, leg)) if settled_quantity[i] == 0 => Outcome::Failed { short, leg },
            Some((short, leg)) => Outcome::Partial {
                quantity: settled_quantity[i],
                cash: cash_for(o, settled_quantity[i]),
                short,
                leg,
            },
        };
        let (quantity, cash) = outcome.settled(o);
        movements[o.securities_from as usize] -= i128::from(quantity);
        movements[o.securities_to as usize] += i128::from(quantity);
        movements[o.cash_from as usize] -= i128::from(cash);
        movements[o.cash_to as usize] += i128::from(cash);
        outcomes.push(outcome);
    }
    Ok(NetRun {
        outcomes,
        movements,
        removals,
        passes,
        converged,
    })
}

/// The cash of the first `quantity` units of `o`: in proportion, rounded down (so all units
/// together are exactly `o.cash`).
pub fn cash_for(o: &Obligation, quantity: u64) -> u64 {
    proportional(o.cash, quantity, o.quantity)
}

/// The rounding rule for a part of a trade, in one place: `cash × part / whole`, rounded down
/// (`part ≤ whole`, `whole ≥ 1`). Fits: (2^64 - 1)^2 < 2^128.
pub fn proportional(cash: u64, part: u64, whole: u64) -> u64 {
    (u128::from(cash) * u128::from(part) / u128::from(whole)) as u64
}

/// How many units of `o` can have settled in all, `done` having settled already: `o.quantity` if
/// both payers cover the rest; else, with partial settlement allowed, the most both cover; else
/// `done`.
fn admissible(o: &Obligation, done: u64, ledger: &Ledger) -> u64 {
    let securities = ledger.spare(o.securities_from);
    let cash = ledger.spare(o.cash_from);
    let rest_cash = o.cash - cash_for(o, done);
    if u128::from(o.quantity - done) <= securities && u128::from(rest_cash) <= cash {
        return o.quantity;
    }
    if !o.partial {
        return done;
    }
    let by_securities = done + securities.min(u128::from(o.quantity - done)) as u64;
    // cash_for(upto) - cash_for(done) <= cash  ⇔  cash * upto < (cash_for(done) + cash + 1) * q.
    let by_cash = if o.cash == 0 {
        o.quantity
    } else {
        let allowed = u128::from(cash_for(o, done)) + cash.min(u128::from(rest_cash)) + 1;
        let bound = (allowed * u128::from(o.quantity) - 1) / u128::from(o.cash);
        bound.min(u128::from(o.quantity)) as u64
    };
    by_securities.min(by_cash).max(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obligation(sf: u32, st: u32, cf: u32, ct: u32, quantity: u64, cash: u64) -> Obligation {
        Obligation {
            securities_from: sf,
            securities_to: st,
            cash_from: cf,
            cash_to: ct,
            quantity,
            cash,
            priority: 0,
            age: 0,
            partial: false,
        }
    }

    // Positions: 0 = A's shares, 1 = B's shares, 2 = A's cash, 3 = B's cash.
    #[test]
    fn a_funded_cycle_settles_whole_and_net() {
        let available = [
            Available::Limited(100),
            Available::Limited(0),
            Available::Limited(0),
            Available::Limited(5_000),
        ];
        // A sells 100 to B for 5,000, then B sells 40 back for 2,000: A needs only the net.
        let run = net(
            &available,
            &[
                obligation(0, 1, 3, 2, 100, 5_000),
                obligation(1, 0, 2, 3, 40, 2_000),
            ],
        )
        .unwrap();
        assert_eq!(run.outcomes, vec![Outcome::Settled, Outcome::Settled]);
        assert_eq!(run.movements, vec![-60, 60, 3_000, -3_000]);
        assert_eq!(run.balance_changes(), 4);
        assert_eq!(run.removals, 0);
    }

    #[test]
    fn a_short_receiver_fails_its_newest_and_the_rest_settles() {
        let available = [
            Available::Limited(300),
            Available::Limited(0),
            Available::Limited(0),
            Available::Limited(250),
        ];
        let trades = [
            obligation(0, 1, 3, 2, 100, 100),
            obligation(0, 1, 3, 2, 100, 100),
            obligation(0, 1, 3, 2, 100, 100),
        ];
        let run = net(&available, &trades).unwrap();
        assert_eq!(run.outcomes[0], Outcome::Settled);
        assert_eq!(run.outcomes[1], Outcome::Settled);
        assert_eq!(
            run.outcomes[2],
            Outcome::Failed {
                short: 3,
                leg: ShortLeg::Cash
            }
        );
        assert_eq!(run.movements, vec![-200, 200, 200, -200]);
    }

    #[test]
    fn partial_settlement_takes_the_largest_part_both_cover() {
        let available = [
            Available::Limited(1_000),
            Available::Limited(0),
            Available::Limited(0),
            Available::Limited(333),
        ];
        let mut trade = obligation(0, 1, 3, 2, 100, 1_000);
        trade.partial = true;
        let run = net(&available, &[trade]).unwrap();
        // 33 units cost 330; 34 would cost 340 > 333.
        assert_eq!(
            run.outcomes[0],
            Outcome::Partial {
                quantity: 33,
                cash: 330,
                short: 3,
                leg: ShortLeg::Cash
            }
        );
        assert_eq!(run.movements, vec![-33, 33, 330, -330]);
    }

    /// docs/settlement.md's worked example, step by step there.
    #[test]
    fn the_worked_example_of_docs_settlement() {
        // 0 = A's XYZ, 1 = A's AUD, 2 = B's XYZ, 3 = B's AUD, 4 = C's XYZ, 5 = C's AUD.
        let available = [100, 0, 0, 3_000, 50, 400].map(Available::Limited);
        let mut first = obligation(0, 2, 3, 1, 100, 5_000); // A sells 100 XYZ to B for 5,000
        first.partial = true;
        let second = obligation(2, 4, 5, 3, 60, 3_000); // B sells 60 XYZ to C for 3,000
        let third = obligation(4, 0, 1, 5, 50, 2_500); // C sells 50 XYZ to A for 2,500
        let run = net(&available, &[first, second, third]).unwrap();
        assert_eq!(
            run.removals, 3,
            "C short of AUD, then B, then A: all three out"
        );
        assert_eq!(run.passes, 2);
        assert!(run.converged);
        assert_eq!(
            run.outcomes,
            vec![
                Outcome::Partial {
                    quantity: 60,
                    cash: 3_000,
                    short: 3,
                    leg: ShortLeg::Cash
                },
                Outcome::Failed {
                    short: 5,
                    leg: ShortLeg::Cash
                },
                Outcome::Settled,
            ]
        );
        assert_eq!(run.movements, vec![-10, 500, 60, -3_000, -50, 2_500]);
        assert_eq!(run.balance_changes(), 6);
    }

    #[test]
    fn bad_input_is_refused_by_name() {
        let available = [Available::Unlimited; 4];
        let cases = [
            (
                obligation(0, 9, 3, 2, 1, 1),
                NettingError::PositionOutOfRange { obligation: 0 },
            ),
            (
                obligation(0, 0, 3, 2, 1, 1),
                NettingError::SamePosition { obligation: 0 },
            ),
            (
                obligation(0, 1, 3, 2, 0, 1),
                NettingError::ZeroQuantity { obligation: 0 },
            ),
        ];
        for (o, error) in cases {
            assert_eq!(net(&available, &[o]), Err(error));
        }
    }
}
