//! The settlement book (`tally_engine::settlement`) under random sequences of submissions,
//! holds, releases, cancellations, fundings, runs and reschedules, with a small ledger posting
//! each run's movements: nobody ever goes negative, each run's movements are exactly what its
//! instructions settled in it and sum to zero per asset, an instruction never settles more than
//! its quantity and settles its cash exactly when whole, final instructions stay final, and a
//! run is a function of the book and the balances.

use std::collections::BTreeMap;

use proptest::prelude::*;
use tally_engine::netting::Available;
use tally_engine::settlement::{
    Instruction, Party, Phase, SettlementBook, SettlementError, Status,
};
use tally_engine::InstructionFlags;

const PARTICIPANTS: u32 = 3;
const ASSETS: u32 = 3; // two instruments and cash (asset 2)

fn account(participant: u32, asset: u32) -> u128 {
    1 + (participant * ASSETS + asset) as u128
}

fn asset_of(account: u128) -> u32 {
    ((account - 1) % ASSETS as u128) as u32
}

#[derive(Clone, Debug)]
enum Step {
    Submit {
        seller: u32,
        offset: u32,
        instrument: u32,
        quantity: u64,
        price: u64,
        priority: u16,
        partial: bool,
        hold: bool,
    },
    Hold(usize, Option<u64>),
    Release(usize, Option<u64>),
    Cancel(usize, bool),
    Fund(u32, u32, i128),
    Run,
    Reschedule,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..PARTICIPANTS, 1..PARTICIPANTS, 0u32..2, 1u64..=10, 0u64..=5, 0u16..=1, any::<bool>(), prop::bool::weighted(0.15))
            .prop_map(|(seller, offset, instrument, quantity, price, priority, partial, hold)| Step::Submit {
                seller, offset, instrument, quantity, price, priority, partial, hold
            }),
        1 => (any::<prop::sample::Index>(), prop::option::of(1u64..=5)).prop_map(|(i, n)| Step::Hold(i.index(64), n)),
        1 => (any::<prop::sample::Index>(), prop::option::of(1u64..=5)).prop_map(|(i, n)| Step::Release(i.index(64), n)),
        1 => (any::<prop::sample::Index>(), any::<bool>()).prop_map(|(i, deliverer)| Step::Cancel(i.index(64), deliverer)),
        2 => (0..PARTICIPANTS, 0..ASSETS, 1i128..=30).prop_map(|(p, a, n)| Step::Fund(p, a, n)),
        3 => Just(Step::Run),
        1 => Just(Step::Reschedule),
    ]
}

fn balances() -> impl Strategy<Value = BTreeMap<u128, i128>> {
    prop::collection::vec(0i128..=40, (PARTICIPANTS * ASSETS) as usize).prop_map(|amounts| {
        amounts
            .into_iter()
            .enumerate()
            .map(|(i, amount)| (1 + i as u128, amount))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn the_book_keeps_its_promises(mut ledger in balances(), steps in prop::collection::vec(step(), 1..60)) {
        let mut book = SettlementBook::new(3, 7);
        let mut cycle = 1u32;
        book.open(cycle).unwrap();
        let mut ids: Vec<u128> = Vec::new();
        let mut finals: BTreeMap<u128, (Status, u64, u64)> = BTreeMap::new();
        for step in steps {
            match step {
                Step::Submit { seller, offset, instrument, quantity, price, priority, partial, hold } => {
                    let buyer = (seller + offset) % PARTICIPANTS;
                    let id = 100 + ids.len() as u128;
                    book.submit(Instruction {
                        id,
                        reference: id,
                        deliverer_securities: account(seller, instrument),
                        receiver_securities: account(buyer, instrument),
                        receiver_cash: account(buyer, 2),
                        deliverer_cash: account(seller, 2),
                        quantity,
                        cash: quantity * price,
                        cycle,
                        priority,
                        flags: InstructionFlags::of(partial, hold),
                        timestamp: 0,
                    }).unwrap();
                    ids.push(id);
                }
                Step::Hold(i, n) | Step::Release(i, n) if !ids.is_empty() => {
                    let id = ids[i % ids.len()];
                    let result = if matches!(step, Step::Hold(..)) { book.hold(id, n) } else { book.release(id, n) };
                    if let Err(error) = result {
                        prop_assert!(matches!(error, SettlementError::Quantity { .. } | SettlementError::Final { .. }), "{error}");
                    }
                }
                Step::Cancel(i, deliverer) if !ids.is_empty() => {
                    let id = ids[i % ids.len()];
                    let party = if deliverer { Party::Deliverer } else { Party::Receiver };
                    if let Err(error) = book.cancel(id, party) {
                        prop_assert!(matches!(error, SettlementError::AlreadyRequested { .. } | SettlementError::Final { .. }), "{error}");
                    }
                }
                Step::Fund(p, a, n) => *ledger.entry(account(p, a)).or_insert(0) += n,
                Step::Run => {
                    book.cut_off(cycle).unwrap();
                    let before: BTreeMap<u128, (u64, u64)> = ids.iter().map(|id| {
                        let s = book.instruction(*id).unwrap();
                        (*id, (s.settled_quantity, s.settled_cash))
                    }).collect();
                    let snapshot = ledger.clone();
                    let available = move |account: u128| Available::Limited(snapshot.get(&account).copied().unwrap_or(0) as u128);
                    let mut twin = book.clone();
                    let report = book.run(cycle, &available).unwrap();
                    prop_assert_eq!(&twin.run(cycle, &available).unwrap(), &report, "a run is a function of its inputs");
                    // The movements are exactly the legs settled in this run.
                    let mut expected: BTreeMap<u128, i128> = BTreeMap::new();
                    for id in &ids {
                        let s = book.instruction(*id).unwrap();
                        let (q0, c0) = before[id];
                        let (dq, dc) = ((s.settled_quantity - q0) as i128, (s.settled_cash - c0) as i128);
                        let i = &s.instruction;
                        *expected.entry(i.deliverer_securities).or_default() -= dq;
                        *expected.entry(i.receiver_securities).or_default() += dq;
                        *expected.entry(i.receiver_cash).or_default() -= dc;
                        *expected.entry(i.deliverer_cash).or_default() += dc;
                    }
                    expected.retain(|_, m| *m != 0);
                    let movements: BTreeMap<u128, i128> = report.movements.iter().copied().collect();
                    prop_assert_eq!(&movements, &expected);
                    let mut per_asset = [0i128; ASSETS as usize];
                    for (account, movement) in &report.movements {
                        per_asset[asset_of(*account) as usize] += movement;
                        *ledger.entry(*account).or_insert(0) += movement;
                    }
                    prop_assert_eq!(per_asset, [0; ASSETS as usize]);
                    prop_assert!(ledger.values().all(|b| *b >= 0), "nobody negative: {:?}", ledger);
                    prop_assert!(matches!(book.phase(cycle), Some(Phase::Settled | Phase::PartlySettled)));
                    book.close(cycle).unwrap();
                    cycle += 1;
                    book.open(cycle).unwrap();
                }
                Step::Reschedule => {
                    book.cancel_and_reschedule(cycle, cycle + 1).unwrap();
                    cycle += 1;
                }
                _ => {}
            }
            // The book survives its stored form (a snapshot's sections): restored, it is the
            // same book, and every later step runs on the restored one.
            let restored = SettlementBook::restore(
                book.max_age(),
                7,
                &book.stored_cycles(),
                &book.stored_instructions(),
                &book.stored_commands(),
            );
            prop_assert_eq!(restored.as_ref(), Ok(&book));
            book = restored.unwrap();
            for id in &ids {
                let s = book.instruction(*id).unwrap();
                let i = &s.instruction;
                prop_assert!(s.settled_quantity <= i.quantity && s.settled_cash <= i.cash);
                prop_assert_eq!(s.status == Status::Settled, s.settled_quantity == i.quantity);
                if s.settled_quantity == i.quantity {
                    prop_assert_eq!(s.settled_cash, i.cash, "whole means all the cash");
                }
                prop_assert!(s.held <= i.quantity - s.settled_quantity);
                if let Some(was) = finals.get(id) {
                    prop_assert_eq!(*was, (s.status, s.settled_quantity, s.settled_cash), "final stays final");
                } else if s.status.is_final() {
                    finals.insert(*id, (s.status, s.settled_quantity, s.settled_cash));
                }
            }
        }
    }
}
