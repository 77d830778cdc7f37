//! The netting run (`tally_engine::netting::net`) against a small independent reference: the
//! rule of docs/settlement.md written out the slow, literal way (every sum recomputed from
//! scratch, every part searched unit by unit), and the properties a run must have checked over
//! every subset of the cycle's obligations.

use proptest::prelude::*;
use tally_engine::netting::{
    net, Available, NetRun, Obligation, Outcome, ShortLeg, MAX_ADMISSION_PASSES,
};

/// A cycle among 2–4 participants, each holding `instruments` instruments and one cash asset:
/// position `participant * (instruments + 1) + asset`, cash being asset `instruments`.
#[derive(Clone, Debug)]
struct Cycle {
    instruments: u32,
    available: Vec<Available>,
    obligations: Vec<Obligation>,
}

impl Cycle {
    fn assets(&self) -> u32 {
        self.instruments + 1
    }
    fn asset_of(&self, position: u32) -> u32 {
        position % self.assets()
    }
}

fn cycle(max_obligations: usize) -> impl Strategy<Value = Cycle> {
    (2u32..=4, 1u32..=2).prop_flat_map(move |(participants, instruments)| {
        let positions = (participants * (instruments + 1)) as usize;
        let available = prop::collection::vec(
            prop_oneof![9 => (0u128..=30).prop_map(Available::Limited), 1 => Just(Available::Unlimited)],
            positions,
        );
        let obligation = (
            0..participants,
            1..participants,
            0..instruments,
            1u64..=10,
            0u64..=5,
            0u16..=2,
            0u16..=2,
            any::<bool>(),
        )
            .prop_map(
                move |(seller, offset, instrument, quantity, price, priority, age, partial)| {
                    let buyer = (seller + offset) % participants;
                    let position = |p: u32, asset: u32| p * (instruments + 1) + asset;
                    Obligation {
                        securities_from: position(seller, instrument),
                        securities_to: position(buyer, instrument),
                        cash_from: position(buyer, instruments),
                        cash_to: position(seller, instruments),
                        quantity,
                        cash: quantity * price,
                        priority,
                        age,
                        partial,
                    }
                },
            );
        (
            available,
            prop::collection::vec(obligation, 0..=max_obligations),
        )
            .prop_map(move |(available, obligations)| Cycle {
                instruments,
                available,
                obligations,
            })
    })
}

/// The cash of the first `units` of an obligation, as docs/settlement.md states it.
fn proportional_cash(o: &Obligation, units: u64) -> u64 {
    (o.cash as u128 * units as u128 / o.quantity as u128) as u64
}

/// Each position's (paying, receiving) when obligation `i` has settled `settled[i]` units.
fn sums(cycle: &Cycle, settled: &[u64]) -> Vec<(u128, u128)> {
    let mut sums = vec![(0u128, 0u128); cycle.available.len()];
    for (o, &units) in cycle.obligations.iter().zip(settled) {
        let cash = proportional_cash(o, units) as u128;
        sums[o.securities_from as usize].0 += units as u128;
        sums[o.securities_to as usize].1 += units as u128;
        sums[o.cash_from as usize].0 += cash;
        sums[o.cash_to as usize].1 += cash;
    }
    sums
}

fn feasible(cycle: &Cycle, settled: &[u64]) -> bool {
    sums(cycle, settled)
        .iter()
        .zip(&cycle.available)
        .all(|((paying, receiving), available)| match available {
            Available::Unlimited => true,
            Available::Limited(limit) => paying <= &(limit + receiving),
        })
}

/// The rule, literally: the outcome of each obligation as (units settled, short position, leg).
fn reference(cycle: &Cycle) -> (Vec<u64>, Vec<Option<(u32, ShortLeg)>>) {
    let n = cycle.obligations.len();
    // Highest rank first.
    let mut ranked: Vec<usize> = (0..n).collect();
    ranked.sort_by(|&a, &b| {
        let (oa, ob) = (&cycle.obligations[a], &cycle.obligations[b]);
        ob.priority
            .cmp(&oa.priority)
            .then(ob.age.cmp(&oa.age))
            .then(a.cmp(&b))
    });
    let mut settled: Vec<u64> = cycle.obligations.iter().map(|o| o.quantity).collect();
    let mut why = vec![None; n];
    loop {
        let sums = sums(cycle, &settled);
        let short = (0..cycle.available.len()).find(|&p| match cycle.available[p] {
            Available::Unlimited => false,
            Available::Limited(limit) => sums[p].0 > limit + sums[p].1,
        });
        let Some(p) = short else { break };
        let p = p as u32;
        let lowest = ranked
            .iter()
            .rev()
            .copied()
            .find(|&i| {
                let o = &cycle.obligations[i];
                settled[i] > 0 && (o.securities_from == p || (o.cash > 0 && o.cash_from == p))
            })
            .expect("a short position pays out on something");
        let o = &cycle.obligations[lowest];
        let leg = if o.securities_from == p {
            ShortLeg::Securities
        } else {
            ShortLeg::Cash
        };
        settled[lowest] = 0;
        why[lowest] = Some((p, leg));
    }
    for _ in 0..MAX_ADMISSION_PASSES {
        let mut admitted = false;
        for &i in &ranked {
            let o = cycle.obligations[i];
            if why[i].is_none() || settled[i] == o.quantity {
                continue;
            }
            let candidates: Vec<u64> = if o.partial {
                (settled[i] + 1..=o.quantity).rev().collect()
            } else {
                vec![o.quantity]
            };
            for units in candidates {
                let mut trial = settled.clone();
                trial[i] = units;
                if feasible(cycle, &trial) {
                    settled = trial;
                    admitted = true;
                    break;
                }
            }
        }
        if !admitted {
            break;
        }
    }
    (settled, why)
}

/// The units each obligation settled in `run`.
fn settled_units(cycle: &Cycle, run: &NetRun) -> Vec<u64> {
    cycle
        .obligations
        .iter()
        .zip(&run.outcomes)
        .map(|(o, outcome)| outcome.settled(o).0)
        .collect()
}

fn check_run(cycle: &Cycle, run: &NetRun) -> Result<(), TestCaseError> {
    let settled = settled_units(cycle, run);
    // The rule, as the reference reads it.
    let (expected, why) = reference(cycle);
    prop_assert_eq!(&settled, &expected);
    for (i, (outcome, o)) in run.outcomes.iter().zip(&cycle.obligations).enumerate() {
        let (units, cash) = outcome.settled(o);
        prop_assert_eq!(cash, proportional_cash(o, units));
        match outcome {
            Outcome::Settled => prop_assert_eq!(units, o.quantity),
            Outcome::Partial { short, leg, .. } | Outcome::Failed { short, leg } => {
                prop_assert_eq!(Some((*short, *leg)), why[i]);
                prop_assert!(units < o.quantity);
            }
        }
        if let Outcome::Partial { .. } = outcome {
            prop_assert!(o.partial && units > 0);
        }
    }
    // Nobody ends negative in any asset.
    prop_assert!(feasible(cycle, &settled));
    // Every settled leg is in the net movements, and nothing else is.
    let sums = sums(cycle, &settled);
    for (p, movement) in run.movements.iter().enumerate() {
        prop_assert_eq!(*movement, sums[p].1 as i128 - sums[p].0 as i128);
    }
    // Each asset's movements sum to zero.
    for asset in 0..cycle.assets() {
        let total: i128 = (0..cycle.available.len() as u32)
            .filter(|p| cycle.asset_of(*p) == asset)
            .map(|p| run.movements[p as usize])
            .sum();
        prop_assert_eq!(total, 0);
    }
    // A converged run is maximal: no obligation could settle more on top of it.
    if run.converged {
        for (i, o) in cycle.obligations.iter().enumerate() {
            if settled[i] < o.quantity {
                let mut more = settled.clone();
                more[i] = if o.partial {
                    settled[i] + 1
                } else {
                    o.quantity
                };
                prop_assert!(
                    !feasible(cycle, &more),
                    "obligation {} could settle more",
                    i
                );
            }
        }
    }
    Ok(())
}

/// Over every subset of whole obligations: whether all of them are feasible together, and the
/// largest settled value (quantity plus cash) any feasible subset reaches.
fn exhaustive(cycle: &Cycle) -> (bool, u128) {
    let n = cycle.obligations.len();
    let mut best = 0u128;
    let mut all = false;
    for mask in 0u32..(1 << n) {
        let settled: Vec<u64> = (0..n)
            .map(|i| {
                if mask & (1 << i) != 0 {
                    cycle.obligations[i].quantity
                } else {
                    0
                }
            })
            .collect();
        if feasible(cycle, &settled) {
            best = best.max(value(cycle, &settled));
            if mask == (1u32 << n) - 1 {
                all = true;
            }
        }
    }
    (all, best)
}

fn value(cycle: &Cycle, settled: &[u64]) -> u128 {
    cycle
        .obligations
        .iter()
        .zip(settled)
        .map(|(o, &units)| units as u128 + proportional_cash(o, units) as u128)
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    #[test]
    fn a_run_follows_the_rule_and_leaves_nobody_negative(cycle in cycle(12)) {
        let run = net(&cycle.available, &cycle.obligations).expect("valid input");
        check_run(&cycle, &run)?;
        let (all_feasible, _) = exhaustive(&cycle);
        if all_feasible {
            // Nothing fails for nothing: a cycle that can settle whole does.
            prop_assert!(run.outcomes.iter().all(|o| *o == Outcome::Settled));
            prop_assert_eq!(run.removals, 0);
        }
    }
}

/// How close the rule comes to the most value any subset of whole obligations could settle,
/// over a fixed set of generated cycles (docs/settlement.md quotes the figures).
#[test]
fn the_rule_against_the_best_subset() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strategy = cycle(12);
    let (mut cases, mut optimal, mut with_fails) = (0u32, 0u32, 0u32);
    let (mut ours, mut best) = (0u128, 0u128);
    for _ in 0..2_000 {
        let mut cycle = strategy.new_tree(&mut runner).expect("a cycle").current();
        for o in &mut cycle.obligations {
            o.partial = false;
        }
        let run = net(&cycle.available, &cycle.obligations).expect("valid input");
        let settled = settled_units(&cycle, &run);
        let (all, most) = exhaustive(&cycle);
        let got = value(&cycle, &settled);
        assert!(got <= most, "no rule beats the best feasible subset");
        cases += 1;
        if !all {
            with_fails += 1;
            ours += got;
            best += most;
            if got == most {
                optimal += 1;
            }
        }
    }
    let share = ours as f64 / best.max(1) as f64;
    println!(
        "{cases} cycles, {with_fails} with a shortfall: the rule settled {:.1}% of the best \
         subset's value, and the best value itself in {optimal} of them",
        share * 100.0
    );
    assert!(with_fails > 100, "the generator makes shortfalls");
    // Not an optimiser (docs/settlement.md says why), but not far from one.
    assert!(share > 0.8, "settled {share:.3} of the best value");
}
