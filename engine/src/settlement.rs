//! Settlement instructions and cycles (net settlement, DvP model 3): the book of a CSD's
//! settlement instructions, each cycle's lifecycle, holds and releases, fails carried forward
//! and aged out, cancel-and-reschedule of a whole cycle, bilateral cancellation, and the run
//! that nets a cycle ([`crate::netting`]) and returns one movement per account for the caller to
//! post atomically, with a netting certificate.
//!
//! Pure and deterministic (BTreeMaps only; no clock): the caller passes every input, including
//! each account's available balance at the run. docs/settlement.md describes the lifecycle and
//! every status.

use std::collections::{BTreeMap, BTreeSet};

use crate::netting::{self, ShortLeg};
use crate::records::InstructionFlags;
pub use crate::settlement_run::{Certificate, RunPlan, RunRecord, RunReport, RUN_RECORD_BYTES};

/// One settlement instruction: a matched trade obligation between two participants. Also the
/// 128-byte record it travels and is stored as (docs/records.md, "Settlement instruction";
/// `decode`/`encode` in `crate::records`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Instruction {
    pub id: u128,
    /// The deliverer's account on the instrument's ledger (pays `quantity`).
    pub deliverer_securities: u128,
    /// The receiver's account on the instrument's ledger.
    pub receiver_securities: u128,
    /// The receiver's account on the cash ledger (pays `cash`).
    pub receiver_cash: u128,
    /// The deliverer's account on the cash ledger.
    pub deliverer_cash: u128,
    /// The participants' settlement reference.
    pub reference: u128,
    /// Units of the instrument, at least 1.
    pub quantity: u64,
    /// The cash leg; 0 for a delivery free of payment.
    pub cash: u64,
    /// The cycle it is meant to settle in (e.g. the intended settlement date, yyyymmdd).
    pub cycle: u32,
    /// Higher settles first when someone is short.
    pub priority: u16,
    /// `partial`: a part may settle when the whole cannot; `hold`: submitted on hold.
    pub flags: InstructionFlags,
    /// When the book took it (assigned by the engine; 0 in a request).
    pub timestamp: u64,
}

impl Instruction {
    /// The four accounts: the deliverer's and the receiver's securities, the receiver's and the
    /// deliverer's cash.
    pub fn accounts(&self) -> [u128; 4] {
        [
            self.deliverer_securities,
            self.receiver_securities,
            self.receiver_cash,
            self.deliverer_cash,
        ]
    }

    /// Whether a part may settle when the whole cannot.
    pub fn partial(&self) -> bool {
        self.flags.contains(InstructionFlags::PARTIAL)
    }

    /// Whether it was submitted on hold (not settled until released).
    pub fn hold(&self) -> bool {
        self.flags.contains(InstructionFlags::HOLD)
    }
}

impl InstructionFlags {
    /// `PARTIAL` and `HOLD` as asked (not linked).
    pub fn of(partial: bool, hold: bool) -> InstructionFlags {
        let mut flags = InstructionFlags::default();
        if partial {
            flags = flags | InstructionFlags::PARTIAL;
        }
        if hold {
            flags = flags | InstructionFlags::HOLD;
        }
        flags
    }
}

/// A run's account numbers (a lookup per leg; the numbering itself comes from sorted ids, so
/// the map's order never reaches an output).
pub(crate) type Positions = hashbrown::HashMap<u128, u32, foldhash::fast::FixedState>;

/// Where a cycle is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Takes instructions.
    Open,
    /// Takes no more instructions; waits for its run.
    CutOff,
    /// Run: every instruction in it settled.
    Settled,
    /// Run: some instructions failed or settled in part (carried forward).
    PartlySettled,
    /// Its run was cancelled (nothing moved); its instructions went to a later cycle.
    Cancelled { rescheduled_to: u32 },
    /// Run and closed.
    Closed,
}

/// Why an instruction is cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelReason {
    /// Failed in `max_age` runs.
    AgedOut,
    /// Both participants asked.
    Bilateral,
}

/// Which participant speaks about an instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Party {
    Deliverer,
    Receiver,
}

/// An instruction's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Waiting for its cycle's run.
    Eligible,
    /// Held (wholly or in part: `held` units); held units do not settle until released.
    Held,
    /// Moved to a later cycle by a cancelled run; waiting for that cycle's run.
    Rescheduled { from: u32 },
    /// Settled whole (the last part, for one settled in parts).
    Settled,
    /// Part settled; the rest is carried forward (or held).
    PartlySettled { short_account: u128, leg: ShortLeg },
    /// Nothing settled in its last run: carried forward to the next run.
    Failed { short_account: u128, leg: ShortLeg },
    /// Will never settle (what settled before stays settled).
    Cancelled(CancelReason),
}

impl Status {
    /// Settled or cancelled: nothing more happens to it.
    pub fn is_final(&self) -> bool {
        matches!(self, Status::Settled | Status::Cancelled(_))
    }
}

/// An instruction and where it stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstructionState {
    pub instruction: Instruction,
    pub status: Status,
    /// The cycle it is in now (its own, a rescheduled one, or the last it was run in).
    pub cycle: u32,
    /// Whether it failed or part-settled in a run, so every later run takes it.
    pub carried: bool,
    /// Runs it took part in without settling whole.
    pub age: u16,
    /// Settled so far.
    pub settled_quantity: u64,
    pub settled_cash: u64,
    /// Units held (at most what is left to settle).
    pub held: u64,
    /// A bilateral cancellation one party asked for.
    pub cancel_requested_by: Option<Party>,
    /// Submission order, the last tie-break of a run.
    pub(crate) sequence: u64,
}

impl InstructionState {
    pub(crate) fn remaining(&self) -> (u64, u64) {
        (
            self.instruction.quantity - self.settled_quantity,
            self.instruction.cash - self.settled_cash,
        )
    }

    /// The part a run may settle: the units not held, with their share of the remaining cash.
    pub(crate) fn eligible(&self) -> (u64, u64) {
        let (quantity, cash) = self.remaining();
        let free = quantity - self.held;
        if free == quantity {
            return (quantity, cash);
        }
        (free, netting::proportional(cash, free, quantity))
    }
}

/// Why an operation on the book was refused; nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettlementError {
    CycleExists {
        cycle: u32,
    },
    NoSuchCycle {
        cycle: u32,
    },
    /// The operation needs the cycle in another phase.
    WrongPhase {
        cycle: u32,
        phase: Phase,
    },
    InstructionExists {
        id: u128,
    },
    NoSuchInstruction {
        id: u128,
    },
    /// The instruction is settled or cancelled.
    Final {
        id: u128,
    },
    /// A leg pays from and to the same account, an account or id is 0, or the quantity is 0.
    Invalid {
        id: u128,
        why: &'static str,
    },
    /// A release of more units than are held, or a hold of more than is left.
    Quantity {
        id: u128,
        asked: u64,
        available: u64,
    },
    /// The same party asked to cancel twice.
    AlreadyRequested {
        id: u128,
    },
    /// A cycle rescheduled to itself or to an earlier one.
    RescheduleBackwards {
        from: u32,
        to: u32,
    },
    /// The run's input was refused by the netting rule (too many instructions).
    Netting(netting::NettingError),
}

impl std::fmt::Display for SettlementError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SettlementError::CycleExists { cycle } => write!(f, "cycle {cycle} already exists"),
            SettlementError::NoSuchCycle { cycle } => write!(f, "there is no cycle {cycle}"),
            SettlementError::WrongPhase { cycle, phase } => {
                write!(f, "cycle {cycle} is {phase:?}, which does not allow this")
            }
            SettlementError::InstructionExists { id } => {
                write!(f, "instruction {id:#x} already exists")
            }
            SettlementError::NoSuchInstruction { id } => {
                write!(f, "there is no instruction {id:#x}")
            }
            SettlementError::Final { id } => {
                write!(f, "instruction {id:#x} is settled or cancelled")
            }
            SettlementError::Invalid { id, why } => write!(f, "instruction {id:#x}: {why}"),
            SettlementError::Quantity {
                id,
                asked,
                available,
            } => write!(
                f,
                "instruction {id:#x}: {asked} units asked, {available} available"
            ),
            SettlementError::AlreadyRequested { id } => {
                write!(f, "instruction {id:#x}: this party already asked to cancel")
            }
            SettlementError::RescheduleBackwards { from, to } => {
                write!(f, "cycle {from} cannot be rescheduled to {to}: not later")
            }
            SettlementError::Netting(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for SettlementError {}

/// The book of instructions and cycles.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SettlementBook {
    pub(crate) cycles: BTreeMap<u32, Phase>,
    pub(crate) instructions: BTreeMap<u128, InstructionState>,
    /// The ids of the instructions not settled or cancelled: what a run or a reschedule looks
    /// at, so their cost follows the open instructions, not the book's whole history.
    pub(crate) live: BTreeSet<u128>,
    /// Runs an instruction may fail before it is cancelled ([`CancelReason::AgedOut`]).
    pub(crate) max_age: u16,
    pub(crate) next_sequence: u64,
    /// Every settlement command applied (`crate::cycle`), by its id, as stored (timestamp
    /// set): a retry is answered `exists` instead of being applied twice.
    pub(crate) commands: BTreeMap<u128, crate::records::RecordBytes>,
    /// Each run cycle's run record (`crate::cycle` keeps it after the run's postings).
    pub(crate) runs: BTreeMap<u32, RunRecord>,
    /// Seeds a run's account lookup (HashDoS resistance: account ids are chosen by clients).
    pub(crate) hash_seed: u64,
}

impl SettlementBook {
    /// A book whose fails are cancelled after failing in `max_age` runs (at least 1); `hash_seed`
    /// seeds its hash tables (outputs never depend on it).
    pub fn new(max_age: u16, hash_seed: u64) -> SettlementBook {
        SettlementBook {
            max_age: max_age.max(1),
            hash_seed,
            ..SettlementBook::default()
        }
    }

    /// Runs an instruction may fail before it is cancelled.
    pub fn max_age(&self) -> u16 {
        self.max_age
    }

    /// Sets the fail limit (at least 1) for the runs to come; fails already counted keep
    /// their age.
    pub fn set_max_age(&mut self, max_age: u16) {
        self.max_age = max_age.max(1);
    }

    /// The run record of `cycle`, once it has run.
    pub fn run_record(&self, cycle: u32) -> Option<&RunRecord> {
        self.runs.get(&cycle)
    }

    /// How many instructions are neither settled nor cancelled.
    pub fn open_instructions(&self) -> usize {
        self.live.len()
    }

    /// Every run record, in cycle order.
    pub fn run_records(&self) -> impl ExactSizeIterator<Item = &RunRecord> {
        self.runs.values()
    }

    /// Every instruction with where it stands, in id order from `after` (exclusive).
    pub fn instructions_after(&self, after: u128) -> impl Iterator<Item = &InstructionState> {
        use std::ops::Bound::{Excluded, Unbounded};
        self.instructions
            .range((Excluded(after), Unbounded))
            .map(|(_, state)| state)
    }

    /// The command stored under `id`, if one was applied.
    pub fn command(&self, id: u128) -> Option<&crate::records::RecordBytes> {
        self.commands.get(&id)
    }

    /// Every command applied, in id order.
    pub fn commands(&self) -> impl ExactSizeIterator<Item = (&u128, &crate::records::RecordBytes)> {
        self.commands.iter()
    }

    pub fn phase(&self, cycle: u32) -> Option<Phase> {
        self.cycles.get(&cycle).copied()
    }

    pub fn instruction(&self, id: u128) -> Option<&InstructionState> {
        self.instructions.get(&id)
    }

    /// Opens `cycle` for instructions.
    pub fn open(&mut self, cycle: u32) -> Result<(), SettlementError> {
        if self.cycles.contains_key(&cycle) {
            return Err(SettlementError::CycleExists { cycle });
        }
        self.cycles.insert(cycle, Phase::Open);
        Ok(())
    }

    pub(crate) fn expect_phase(
        &self,
        cycle: u32,
        allowed: &[Phase],
    ) -> Result<Phase, SettlementError> {
        let phase = self
            .phase(cycle)
            .ok_or(SettlementError::NoSuchCycle { cycle })?;
        if allowed.contains(&phase) {
            Ok(phase)
        } else {
            Err(SettlementError::WrongPhase { cycle, phase })
        }
    }

    /// Adds an instruction to its (open) cycle.
    pub fn submit(&mut self, instruction: Instruction) -> Result<(), SettlementError> {
        let id = instruction.id;
        let invalid = |why| Err(SettlementError::Invalid { id, why });
        if id == 0 {
            return invalid("the id must not be 0");
        }
        if instruction.accounts().contains(&0) {
            return invalid("an account id must not be 0");
        }
        if instruction.deliverer_securities == instruction.receiver_securities
            || instruction.receiver_cash == instruction.deliverer_cash
        {
            return invalid("a leg pays from and to the same account");
        }
        if instruction.quantity == 0 {
            return invalid("the quantity must not be 0");
        }
        self.expect_phase(instruction.cycle, &[Phase::Open])?;
        if self.instructions.contains_key(&id) {
            return Err(SettlementError::InstructionExists { id });
        }
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.live.insert(id);
        self.instructions.insert(
            id,
            InstructionState {
                instruction,
                status: if instruction.hold() {
                    Status::Held
                } else {
                    Status::Eligible
                },
                cycle: instruction.cycle,
                carried: false,
                age: 0,
                settled_quantity: 0,
                settled_cash: 0,
                held: if instruction.hold() {
                    instruction.quantity
                } else {
                    0
                },
                cancel_requested_by: None,
                sequence,
            },
        );
        Ok(())
    }

    /// Takes back the instruction submitted last (`id`): a linked chain it was in failed.
    pub(crate) fn unsubmit(&mut self, id: u128) {
        let state = self
            .instructions
            .remove(&id)
            .expect("only a submitted instruction is taken back");
        assert_eq!(
            state.sequence + 1,
            self.next_sequence,
            "taken back last first"
        );
        self.next_sequence -= 1;
        self.live.remove(&id);
    }

    fn live(&mut self, id: u128) -> Result<&mut InstructionState, SettlementError> {
        let state = self
            .instructions
            .get_mut(&id)
            .ok_or(SettlementError::NoSuchInstruction { id })?;
        if state.status.is_final() {
            return Err(SettlementError::Final { id });
        }
        Ok(state)
    }

    /// Holds `quantity` more units (all that is left when `None`): they do not settle until
    /// released.
    pub fn hold(&mut self, id: u128, quantity: Option<u64>) -> Result<(), SettlementError> {
        let state = self.live(id)?;
        let free = state.remaining().0 - state.held;
        let asked = quantity.unwrap_or(free);
        if asked == 0 || asked > free {
            return Err(SettlementError::Quantity {
                id,
                asked,
                available: free,
            });
        }
        state.held += asked;
        if state.held == state.remaining().0 {
            state.status = Status::Held;
        }
        Ok(())
    }

    /// Releases `quantity` held units (all of them when `None`), which settle from the next run
    /// on; a partial release leaves the rest held.
    pub fn release(&mut self, id: u128, quantity: Option<u64>) -> Result<(), SettlementError> {
        let state = self.live(id)?;
        let asked = quantity.unwrap_or(state.held);
        if asked == 0 || asked > state.held {
            return Err(SettlementError::Quantity {
                id,
                asked,
                available: state.held,
            });
        }
        state.held -= asked;
        if state.status == Status::Held {
            state.status = Status::Eligible;
        }
        Ok(())
    }

    /// One party's request to cancel an instruction; the second party's cancels it.
    pub fn cancel(&mut self, id: u128, party: Party) -> Result<Status, SettlementError> {
        let state = self.live(id)?;
        match state.cancel_requested_by {
            Some(asked) if asked == party => Err(SettlementError::AlreadyRequested { id }),
            Some(_) => {
                state.status = Status::Cancelled(CancelReason::Bilateral);
                let status = state.status;
                self.live.remove(&id);
                Ok(status)
            }
            None => {
                state.cancel_requested_by = Some(party);
                Ok(state.status)
            }
        }
    }

    /// Closes `cycle` to new instructions.
    pub fn cut_off(&mut self, cycle: u32) -> Result<(), SettlementError> {
        self.expect_phase(cycle, &[Phase::Open])?;
        self.cycles.insert(cycle, Phase::CutOff);
        Ok(())
    }

    /// Cancels `cycle`'s run before it happens (nothing moves) and moves every instruction of
    /// the cycle that has not settled to `to` (opened if it does not exist), as one operation.
    /// Returns how many instructions moved. Fails carried from earlier runs are not the
    /// cycle's own and stay carried.
    pub fn cancel_and_reschedule(&mut self, cycle: u32, to: u32) -> Result<u64, SettlementError> {
        self.expect_phase(cycle, &[Phase::Open, Phase::CutOff])?;
        if to <= cycle {
            return Err(SettlementError::RescheduleBackwards { from: cycle, to });
        }
        if let Some(phase) = self.phase(to) {
            if phase != Phase::Open {
                return Err(SettlementError::WrongPhase { cycle: to, phase });
            }
        }
        self.cycles.entry(to).or_insert(Phase::Open);
        self.cycles
            .insert(cycle, Phase::Cancelled { rescheduled_to: to });
        let mut moved = 0;
        for id in &self.live {
            let Some(state) = self.instructions.get_mut(id) else {
                continue;
            };
            if state.cycle == cycle && !state.carried && !state.status.is_final() {
                state.cycle = to;
                if state.status != Status::Held {
                    state.status = Status::Rescheduled { from: cycle };
                }
                moved += 1;
            }
        }
        Ok(moved)
    }

    /// Closes a cycle after its run.
    pub fn close(&mut self, cycle: u32) -> Result<(), SettlementError> {
        self.expect_phase(cycle, &[Phase::Settled, Phase::PartlySettled])?;
        self.cycles.insert(cycle, Phase::Closed);
        Ok(())
    }
}

#[cfg(test)]
#[path = "settlement_tests.rs"]
mod tests;
