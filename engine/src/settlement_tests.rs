//! Each lifecycle path of docs/settlement.md, on a book and a small ledger of balances that
//! posts each run's movements as the engine would.

use std::collections::BTreeMap;

use super::*;
use crate::netting::Available;

// Participant A's and B's accounts on the instrument's ledger and on the cash ledger.
const A_XYZ: u128 = 1;
const A_CASH: u128 = 2;
const B_XYZ: u128 = 3;
const B_CASH: u128 = 4;

/// Balances the runs post to; every account has a limit (its balance).
struct Ledger(BTreeMap<u128, i128>);

impl Ledger {
    fn new(balances: &[(u128, i128)]) -> Ledger {
        Ledger(balances.iter().copied().collect())
    }
    fn balance(&self, account: u128) -> i128 {
        self.0.get(&account).copied().unwrap_or(0)
    }
    fn fund(&mut self, account: u128, amount: i128) {
        *self.0.entry(account).or_insert(0) += amount;
    }
    /// Runs `cycle` (cutting it off first) and posts its movements.
    fn run(&mut self, book: &mut SettlementBook, cycle: u32) -> RunReport {
        if book.phase(cycle) == Some(Phase::Open) {
            book.cut_off(cycle).unwrap();
        }
        let balances = self.0.clone();
        let report = book
            .run(cycle, |account| {
                Available::Limited(balances.get(&account).copied().unwrap_or(0) as u128)
            })
            .unwrap();
        for (account, movement) in &report.movements {
            self.fund(*account, *movement);
            assert!(
                self.balance(*account) >= 0,
                "account {account} went negative"
            );
        }
        report
    }
}

/// A sells `quantity` XYZ to B for `cash`, in `cycle`.
fn sale(id: u128, cycle: u32, quantity: u64, cash: u64) -> Instruction {
    Instruction {
        id,
        reference: id << 8,
        deliverer_securities: A_XYZ,
        receiver_securities: B_XYZ,
        receiver_cash: B_CASH,
        deliverer_cash: A_CASH,
        quantity,
        cash,
        cycle,
        priority: 0,
        flags: InstructionFlags::default(),
        timestamp: 0,
    }
}

fn status(book: &SettlementBook, id: u128) -> Status {
    book.instruction(id).unwrap().status
}

#[test]
fn a_funded_cycle_settles_whole_in_one_movement_per_account() {
    let mut book = SettlementBook::new(3, 7);
    let mut ledger = Ledger::new(&[(A_XYZ, 100), (B_CASH, 1_000)]);
    book.open(1).unwrap();
    book.submit(sale(10, 1, 60, 600)).unwrap();
    book.submit(sale(11, 1, 40, 400)).unwrap();
    let mut again = book.clone();
    let report = ledger.run(&mut book, 1);
    assert_eq!(
        (report.settled, report.partly_settled, report.failed),
        (2, 0, 0)
    );
    assert_eq!(
        report.movements,
        vec![
            (A_XYZ, -100),
            (A_CASH, 1_000),
            (B_XYZ, 100),
            (B_CASH, -1_000)
        ]
    );
    assert_eq!(report.settled_value, 1_100);
    assert_eq!(status(&book, 10), Status::Settled);
    assert_eq!(book.phase(1), Some(Phase::Settled));
    book.close(1).unwrap();
    assert_eq!(book.phase(1), Some(Phase::Closed));
    // The certificate is a function of the run: the same book and balances give the same one.
    let repeat = Ledger::new(&[(A_XYZ, 100), (B_CASH, 1_000)]).run(&mut again, 1);
    assert_eq!(repeat.certificate, report.certificate);
}

#[test]
fn a_short_participants_fail_is_carried_and_settles_once_funded() {
    let mut book = SettlementBook::new(5, 7);
    let mut ledger = Ledger::new(&[(A_XYZ, 100), (B_CASH, 500)]);
    book.open(1).unwrap();
    book.submit(sale(20, 1, 100, 1_000)).unwrap();
    let first = ledger.run(&mut book, 1);
    assert_eq!((first.settled, first.failed), (0, 1));
    assert!(first.movements.is_empty(), "nothing moves for a fail");
    assert_eq!(
        status(&book, 20),
        Status::Failed {
            short_account: B_CASH,
            leg: ShortLeg::Cash
        }
    );
    assert_eq!(book.phase(1), Some(Phase::PartlySettled));
    assert_eq!(book.instruction(20).unwrap().age, 1);

    // Next cycle: still short, still carried.
    book.open(2).unwrap();
    assert_eq!(ledger.run(&mut book, 2).failed, 1);
    // Funded: the third cycle takes the carried fail and settles it.
    ledger.fund(B_CASH, 500);
    book.open(3).unwrap();
    let third = ledger.run(&mut book, 3);
    assert_eq!(third.settled, 1);
    assert_eq!(status(&book, 20), Status::Settled);
    assert_eq!(ledger.balance(B_XYZ), 100);
    assert_eq!(ledger.balance(A_CASH), 1_000);
    assert_eq!(ledger.balance(B_CASH), 0);
}

#[test]
fn partial_settlement_settles_the_largest_part_and_carries_the_rest() {
    let mut book = SettlementBook::new(5, 7);
    let mut ledger = Ledger::new(&[(A_XYZ, 100), (B_CASH, 555)]);
    book.open(1).unwrap();
    let mut trade = sale(30, 1, 100, 1_000);
    trade.flags = InstructionFlags::PARTIAL;
    book.submit(trade).unwrap();
    let first = ledger.run(&mut book, 1);
    assert_eq!(first.partly_settled, 1);
    let state = book.instruction(30).unwrap();
    assert_eq!((state.settled_quantity, state.settled_cash), (55, 550));
    assert!(matches!(state.status, Status::PartlySettled { .. }));

    ledger.fund(B_CASH, 445);
    book.open(2).unwrap();
    let second = ledger.run(&mut book, 2);
    assert_eq!(second.settled, 1);
    let state = book.instruction(30).unwrap();
    assert_eq!((state.settled_quantity, state.settled_cash), (100, 1_000));
    assert_eq!(state.status, Status::Settled);
    assert_eq!(
        (ledger.balance(B_XYZ), ledger.balance(A_CASH)),
        (100, 1_000)
    );
}

#[test]
fn held_units_wait_for_release_and_a_partial_release_settles_only_its_part() {
    let mut book = SettlementBook::new(5, 7);
    let mut ledger = Ledger::new(&[(A_XYZ, 100), (B_CASH, 1_000)]);
    book.open(1).unwrap();
    let mut trade = sale(40, 1, 10, 100);
    trade.flags = InstructionFlags::HOLD;
    book.submit(trade).unwrap();
    assert_eq!(status(&book, 40), Status::Held);
    // Held through cycle 1: not in the run, no age.
    let first = ledger.run(&mut book, 1);
    assert_eq!((first.settled, first.failed), (0, 0));
    assert_eq!(book.instruction(40).unwrap().age, 0);
    // Release 4 of the 10: cycle 2 settles those 4 and the rest stays held.
    book.release(40, Some(4)).unwrap();
    book.open(2).unwrap();
    let second = ledger.run(&mut book, 2);
    assert_eq!(second.movements[0], (A_XYZ, -4));
    let state = book.instruction(40).unwrap();
    assert_eq!(
        (state.settled_quantity, state.settled_cash, state.held),
        (4, 40, 6)
    );
    assert_eq!(state.status, Status::Held);
    assert_eq!(
        book.release(40, Some(7)),
        Err(SettlementError::Quantity {
            id: 40,
            asked: 7,
            available: 6
        })
    );
    // Release the rest: cycle 3 settles it.
    book.release(40, None).unwrap();
    book.open(3).unwrap();
    ledger.run(&mut book, 3);
    assert_eq!(status(&book, 40), Status::Settled);
    assert_eq!((ledger.balance(B_XYZ), ledger.balance(A_CASH)), (10, 100));
}

#[test]
fn a_fail_is_cancelled_when_it_reaches_the_age_limit() {
    let mut book = SettlementBook::new(2, 7);
    let mut ledger = Ledger::new(&[(A_XYZ, 100)]);
    book.open(1).unwrap();
    book.submit(sale(50, 1, 10, 100)).unwrap();
    assert!(ledger.run(&mut book, 1).aged_out.is_empty());
    book.open(2).unwrap();
    assert_eq!(ledger.run(&mut book, 2).aged_out, vec![50]);
    assert_eq!(status(&book, 50), Status::Cancelled(CancelReason::AgedOut));
    // Gone from later runs, even once the money is there.
    ledger.fund(B_CASH, 1_000);
    book.open(3).unwrap();
    let third = ledger.run(&mut book, 3);
    assert_eq!((third.settled, third.failed), (0, 0));
    assert_eq!(
        book.release(50, None),
        Err(SettlementError::Final { id: 50 })
    );
}

#[test]
fn a_cancelled_run_moves_nothing_and_its_instructions_settle_in_the_later_cycle() {
    let mut book = SettlementBook::new(3, 7);
    let mut ledger = Ledger::new(&[(A_XYZ, 100), (B_CASH, 1_000)]);
    book.open(20241220).unwrap();
    book.submit(sale(60, 20241220, 10, 100)).unwrap();
    book.submit(sale(61, 20241220, 20, 200)).unwrap();
    book.cut_off(20241220).unwrap();
    assert_eq!(
        book.cancel_and_reschedule(20241220, 20241219),
        Err(SettlementError::RescheduleBackwards {
            from: 20241220,
            to: 20241219
        })
    );
    assert_eq!(book.cancel_and_reschedule(20241220, 20241223), Ok(2));
    assert_eq!(
        book.phase(20241220),
        Some(Phase::Cancelled {
            rescheduled_to: 20241223
        })
    );
    assert_eq!(status(&book, 60), Status::Rescheduled { from: 20241220 });
    // The cancelled cycle cannot run; nothing moved.
    assert!(matches!(
        book.run(20241220, |_| Available::Unlimited),
        Err(SettlementError::WrongPhase { .. })
    ));
    assert_eq!(ledger.balance(B_XYZ), 0);
    // The later cycle was opened by the reschedule and settles both.
    let later = ledger.run(&mut book, 20241223);
    assert_eq!(later.settled, 2);
    assert_eq!((ledger.balance(B_XYZ), ledger.balance(A_CASH)), (30, 300));
}

#[test]
fn a_bilateral_cancel_needs_both_parties() {
    let mut book = SettlementBook::new(3, 7);
    let mut ledger = Ledger::new(&[(A_XYZ, 100), (B_CASH, 1_000)]);
    book.open(1).unwrap();
    book.submit(sale(70, 1, 10, 100)).unwrap();
    assert_eq!(book.cancel(70, Party::Deliverer), Ok(Status::Eligible));
    assert_eq!(
        book.cancel(70, Party::Deliverer),
        Err(SettlementError::AlreadyRequested { id: 70 })
    );
    assert_eq!(
        book.cancel(70, Party::Receiver),
        Ok(Status::Cancelled(CancelReason::Bilateral))
    );
    let report = ledger.run(&mut book, 1);
    assert_eq!((report.settled, report.failed), (0, 0));
    assert!(report.movements.is_empty());
    assert_eq!(
        book.cancel(70, Party::Receiver),
        Err(SettlementError::Final { id: 70 })
    );
}

#[test]
fn refusals_change_nothing() {
    let mut book = SettlementBook::new(3, 7);
    book.open(1).unwrap();
    assert_eq!(book.open(1), Err(SettlementError::CycleExists { cycle: 1 }));
    assert_eq!(
        book.submit(sale(1, 9, 1, 1)),
        Err(SettlementError::NoSuchCycle { cycle: 9 })
    );
    let mut bad = sale(2, 1, 1, 1);
    bad.receiver_cash = bad.deliverer_cash;
    assert!(matches!(
        book.submit(bad),
        Err(SettlementError::Invalid { id: 2, .. })
    ));
    assert!(matches!(
        book.submit(sale(3, 1, 0, 1)),
        Err(SettlementError::Invalid { id: 3, .. })
    ));
    book.submit(sale(4, 1, 1, 1)).unwrap();
    assert_eq!(
        book.submit(sale(4, 1, 1, 1)),
        Err(SettlementError::InstructionExists { id: 4 })
    );
    assert!(matches!(
        book.run(1, |_| Available::Unlimited),
        Err(SettlementError::WrongPhase {
            phase: Phase::Open,
            ..
        })
    ));
    book.cut_off(1).unwrap();
    assert!(matches!(
        book.submit(sale(5, 1, 1, 1)),
        Err(SettlementError::WrongPhase { .. })
    ));
    assert_eq!(
        book.close(1),
        Err(SettlementError::WrongPhase {
            cycle: 1,
            phase: Phase::CutOff
        })
    );
    assert!(book.instruction(2).is_none() && book.instruction(5).is_none());
}
