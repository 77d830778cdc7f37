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

use sha2::{Digest, Sha256};

use crate::netting::{self, Available, Obligation, Outcome, ShortLeg};
use crate::records::InstructionFlags;

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
type Positions = hashbrown::HashMap<u128, u32, foldhash::fast::FixedState>;

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
    fn remaining(&self) -> (u64, u64) {
        (
            self.instruction.quantity - self.settled_quantity,
            self.instruction.cash - self.settled_cash,
        )
    }

    /// The part a run may settle: the units not held, with their share of the remaining cash.
    fn eligible(&self) -> (u64, u64) {
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

/// What a run did, for the caller to post and publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunReport {
    pub cycle: u32,
    /// One per account whose balance changes: received less paid. The caller posts them all
    /// or none; per ledger they sum to zero.
    pub movements: Vec<(u128, i128)>,
    /// Instructions in the run: settled whole, settled in part, failed.
    pub settled: u64,
    pub partly_settled: u64,
    pub failed: u64,
    /// Instructions cancelled because they reached the age limit in this run.
    pub aged_out: Vec<u128>,
    /// Instructions failed or settled in part, by the leg that was short: securities, cash.
    pub short_legs: [u64; 2],
    /// Units plus cash settled in this run.
    pub settled_value: u128,
    pub certificate: Certificate,
}

/// A run's netting certificate: SHA-256 over the run's inputs, its net movements and its
/// exceptions, each in a canonical order, so a participant holding the run's published lists
/// can check its instructions were in and its net figure is the sum of its legs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Certificate {
    /// Each input in submission order (the run's): id, eligible quantity and cash (u64 LE),
    /// the four accounts (u128 LE).
    pub inputs: [u8; 32],
    /// Each movement by account: account (u128 LE), movement (i128 LE).
    pub movements: [u8; 32],
    /// Each instruction that did not settle whole: id, settled quantity and cash (u64 LE).
    pub exceptions: [u8; 32],
}

/// What a cycle's run did, kept with the book for the cycle's report: the run command, where
/// its postings are in the log, its counts and its netting certificate. The 256-byte form
/// (`encode`/`decode`) is docs/records.md's "Run record".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunRecord {
    pub cycle: u32,
    /// The run command's id and timestamp.
    pub command: u128,
    pub timestamp: u64,
    /// The timestamp of the run's first posted transfer (0 when it posted none); the others
    /// follow one apart, each with id `cycle::run_transfer_id(timestamp)`.
    pub first_posting: u64,
    pub postings: u32,
    pub settled: u64,
    pub partly_settled: u64,
    pub failed: u64,
    pub aged_out: u64,
    pub settled_value: u128,
    /// Instructions failed or settled in part, by the leg that was short: securities, cash.
    pub short_legs: [u64; 2],
    pub certificate: Certificate,
}

/// Bytes of a run record.
pub const RUN_RECORD_BYTES: usize = 256;

impl RunRecord {
    pub fn encode(&self) -> [u8; RUN_RECORD_BYTES] {
        let mut out = [0u8; RUN_RECORD_BYTES];
        out[0..16].copy_from_slice(&self.command.to_le_bytes());
        out[16..32].copy_from_slice(&self.settled_value.to_le_bytes());
        out[32..40].copy_from_slice(&self.timestamp.to_le_bytes());
        out[40..48].copy_from_slice(&self.first_posting.to_le_bytes());
        out[48..56].copy_from_slice(&self.settled.to_le_bytes());
        out[56..64].copy_from_slice(&self.partly_settled.to_le_bytes());
        out[64..72].copy_from_slice(&self.failed.to_le_bytes());
        out[72..80].copy_from_slice(&self.aged_out.to_le_bytes());
        out[80..84].copy_from_slice(&self.cycle.to_le_bytes());
        out[84..88].copy_from_slice(&self.postings.to_le_bytes());
        out[96..128].copy_from_slice(&self.certificate.inputs);
        out[128..160].copy_from_slice(&self.certificate.movements);
        out[160..192].copy_from_slice(&self.certificate.exceptions);
        out[192..200].copy_from_slice(&self.short_legs[0].to_le_bytes());
        out[200..208].copy_from_slice(&self.short_legs[1].to_le_bytes());
        out
    }

    /// Its leaf's record in the verifiable log (128 bytes): the certificate's three digests
    /// (inputs, movements, exceptions), the run command's id, the first posting's timestamp,
    /// the cycle and the number of postings.
    pub fn leaf_record(&self) -> crate::records::RecordBytes {
        let mut out = [0u8; crate::limits::RECORD_BYTES];
        out[0..32].copy_from_slice(&self.certificate.inputs);
        out[32..64].copy_from_slice(&self.certificate.movements);
        out[64..96].copy_from_slice(&self.certificate.exceptions);
        out[96..112].copy_from_slice(&self.command.to_le_bytes());
        out[112..120].copy_from_slice(&self.first_posting.to_le_bytes());
        out[120..124].copy_from_slice(&self.cycle.to_le_bytes());
        out[124..128].copy_from_slice(&self.postings.to_le_bytes());
        out
    }

    /// The record `encode` made; `None` when a reserved byte (88..96, 208..256) is set.
    pub fn decode(bytes: &[u8; RUN_RECORD_BYTES]) -> Option<RunRecord> {
        if bytes[88..96].iter().chain(&bytes[208..]).any(|b| *b != 0) {
            return None;
        }
        let u64_at =
            |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("fixed width"));
        let u32_at =
            |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("fixed width"));
        let u128_at =
            |at: usize| u128::from_le_bytes(bytes[at..at + 16].try_into().expect("fixed width"));
        let hash_at =
            |at: usize| -> [u8; 32] { bytes[at..at + 32].try_into().expect("fixed width") };
        Some(RunRecord {
            cycle: u32_at(80),
            command: u128_at(0),
            timestamp: u64_at(32),
            first_posting: u64_at(40),
            postings: u32_at(84),
            settled: u64_at(48),
            partly_settled: u64_at(56),
            failed: u64_at(64),
            aged_out: u64_at(72),
            settled_value: u128_at(16),
            short_legs: [u64_at(192), u64_at(200)],
            certificate: Certificate {
                inputs: hash_at(96),
                movements: hash_at(128),
                exceptions: hash_at(160),
            },
        })
    }
}

/// The book of instructions and cycles.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SettlementBook {
    pub(crate) cycles: BTreeMap<u32, Phase>,
    pub(crate) instructions: BTreeMap<u128, InstructionState>,
    /// The ids of the instructions not settled or cancelled: what a run or a reschedule looks
    /// at, so their cost follows the open instructions, not the book's whole history.
    pub(crate) live: BTreeSet<u128>,
    /// Runs an instruction may fail before it is cancelled ([`CancelReason::AgedOut`]).
    max_age: u16,
    pub(crate) next_sequence: u64,
    /// Every settlement command applied (`crate::cycle`), by its id, as stored (timestamp
    /// set): a retry is answered `exists` instead of being applied twice.
    pub(crate) commands: BTreeMap<u128, crate::records::RecordBytes>,
    /// Each run cycle's run record (`crate::cycle` keeps it after the run's postings).
    pub(crate) runs: BTreeMap<u32, RunRecord>,
    /// Seeds a run's account lookup (HashDoS resistance: account ids are chosen by clients).
    hash_seed: u64,
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

    fn expect_phase(&self, cycle: u32, allowed: &[Phase]) -> Result<Phase, SettlementError> {
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

    /// Runs `cycle` (cut off): nets its eligible instructions and every fail carried forward
    /// against `available(account)`, updates each one's status, ages and cancels fails, and
    /// returns the movements to post. The caller posts them all, or none and does not keep this
    /// book's changes. [`SettlementBook::plan_run`] then [`SettlementBook::apply_run`].
    pub fn run(
        &mut self,
        cycle: u32,
        available: impl Fn(u128) -> Available,
    ) -> Result<RunReport, SettlementError> {
        let plan = self.plan_run(cycle, available)?;
        Ok(self.apply_run(plan))
    }

    /// A run of `cycle` worked out without changing the book: its movements and certificate
    /// (in `report`, its counts still 0) and every member's outcome, for
    /// [`SettlementBook::apply_run`] — so a caller can post the movements first and keep the
    /// book as it is if posting fails, with nothing to undo here.
    pub fn plan_run(
        &self,
        cycle: u32,
        available: impl Fn(u128) -> Available,
    ) -> Result<RunPlan, SettlementError> {
        self.expect_phase(cycle, &[Phase::CutOff])?;
        let in_run = |s: &InstructionState| in_run(s, cycle);
        // The members in the book's (id) order; `order` lists them in submission order, the
        // run's.
        let members: Vec<&InstructionState> = self
            .live
            .iter()
            .filter_map(|id| self.instructions.get(id))
            .filter(|s| in_run(s))
            .collect();
        let mut order: Vec<u32> = (0..members.len() as u32).collect();
        order.sort_unstable_by_key(|&k| members[k as usize].sequence);
        // Positions: every account the members name, numbered in id order.
        let mut accounts: Vec<u128> = members
            .iter()
            .flat_map(|s| s.instruction.accounts())
            .collect();
        accounts.sort_unstable();
        accounts.dedup();
        let mut numbers: Positions = Positions::with_capacity_and_hasher(
            accounts.len(),
            foldhash::fast::FixedState::with_seed(self.hash_seed),
        );
        for (number, account) in accounts.iter().enumerate() {
            numbers.insert(*account, number as u32);
        }
        let position = |account: u128| numbers[&account];
        let limits: Vec<Available> = accounts.iter().map(|a| available(*a)).collect();
        let obligations: Vec<Obligation> = order
            .iter()
            .map(|&k| {
                let s = members[k as usize];
                let i = &s.instruction;
                let (quantity, cash) = s.eligible();
                Obligation {
                    securities_from: position(i.deliverer_securities),
                    securities_to: position(i.receiver_securities),
                    cash_from: position(i.receiver_cash),
                    cash_to: position(i.deliverer_cash),
                    quantity,
                    cash,
                    priority: i.priority,
                    age: s.age,
                    partial: i.partial(),
                }
            })
            .collect();
        let net = netting::net(&limits, &obligations).map_err(SettlementError::Netting)?;
        let certificate = certificate(
            order.iter().map(|&k| &members[k as usize].instruction),
            &obligations,
            &accounts,
            &net,
        );
        // Each member's obligation, by the member's place in id order.
        let mut obligation_of = vec![0u32; members.len()];
        for (o, &k) in order.iter().enumerate() {
            obligation_of[k as usize] = o as u32;
        }

        let report = RunReport {
            cycle,
            movements: accounts
                .iter()
                .zip(&net.movements)
                .filter(|(_, m)| **m != 0)
                .map(|(a, m)| (*a, *m))
                .collect(),
            settled: 0,
            partly_settled: 0,
            failed: 0,
            aged_out: Vec::new(),
            short_legs: [0; 2],
            settled_value: 0,
            certificate,
        };
        Ok(RunPlan {
            report,
            accounts,
            obligations,
            outcomes: net.outcomes,
            obligation_of,
        })
    }

    /// Applies a run [`SettlementBook::plan_run`] worked out on this book as it still is:
    /// each member's outcome, fails aged and carried, the cycle's phase; returns the report.
    pub fn apply_run(&mut self, plan: RunPlan) -> RunReport {
        let RunPlan {
            mut report,
            accounts,
            obligations,
            outcomes,
            obligation_of,
        } = plan;
        let cycle = report.cycle;
        debug_assert_eq!(self.phase(cycle), Some(Phase::CutOff));
        // One pass over the open instructions in id order: the members (the same filter;
        // nothing has changed since the plan) take their outcomes, and whatever is left of
        // this cycle (fails, parts, held instructions) is carried, so every later run takes
        // it as far as it is not held.
        let mut member = 0;
        let mut closed = Vec::new();
        for id in &self.live {
            let Some(state) = self.instructions.get_mut(id) else {
                continue;
            };
            if in_run(state, cycle) {
                let o = obligation_of[member] as usize;
                member += 1;
                let (obligation, outcome) = (&obligations[o], outcomes[o]);
                let (quantity, cash) = outcome.settled(obligation);
                state.settled_quantity += quantity;
                state.settled_cash += cash;
                report.settled_value += u128::from(quantity) + u128::from(cash);
                state.cycle = cycle;
                state.status = match outcome {
                    Outcome::Settled if state.remaining().0 == 0 => Status::Settled,
                    Outcome::Settled => Status::Held,
                    Outcome::Partial { short, leg, .. } => Status::PartlySettled {
                        short_account: accounts[short as usize],
                        leg,
                    },
                    Outcome::Failed { short, leg } => Status::Failed {
                        short_account: accounts[short as usize],
                        leg,
                    },
                };
                match outcome {
                    Outcome::Settled => report.settled += 1,
                    Outcome::Partial { leg, .. } => {
                        report.partly_settled += 1;
                        report.short_legs[leg as usize] += 1;
                    }
                    Outcome::Failed { leg, .. } => {
                        report.failed += 1;
                        report.short_legs[leg as usize] += 1;
                    }
                }
                // A fail or a part left ages; what is left only because it is held does not.
                if !state.status.is_final() && state.status != Status::Held {
                    state.age += 1;
                    if state.age >= self.max_age {
                        state.status = Status::Cancelled(CancelReason::AgedOut);
                        report.aged_out.push(*id);
                    }
                }
            }
            if state.cycle == cycle && !state.status.is_final() {
                state.carried = true;
            }
            if state.status.is_final() {
                closed.push(*id);
            }
        }
        for id in closed {
            self.live.remove(&id);
        }
        let phase = if report.partly_settled + report.failed == 0 {
            Phase::Settled
        } else {
            Phase::PartlySettled
        };
        self.cycles.insert(cycle, phase);
        assert_eq!(
            member,
            obligation_of.len(),
            "the plan's members are the book's"
        );
        report
    }
}

/// Whether `s` takes part in `cycle`'s run: the cycle's own and those carried, not settled or
/// cancelled, with units not held.
fn in_run(s: &InstructionState, cycle: u32) -> bool {
    (s.cycle == cycle || s.carried) && !s.status.is_final() && s.eligible().0 > 0
}

/// A run worked out, not yet applied to the book ([`SettlementBook::plan_run`]).
#[derive(Clone, Debug)]
pub struct RunPlan {
    /// The movements to post and the certificate; counts filled in by `apply_run`.
    pub report: RunReport,
    accounts: Vec<u128>,
    obligations: Vec<Obligation>,
    outcomes: Vec<Outcome>,
    /// Each member's obligation, by the member's place in id order.
    obligation_of: Vec<u32>,
}

/// The run's certificate; `instructions` in the run's (submission) order, one per obligation.
fn certificate<'a>(
    instructions: impl Iterator<Item = &'a Instruction>,
    obligations: &[Obligation],
    accounts: &[u128],
    net: &netting::NetRun,
) -> Certificate {
    let mut inputs = Sha256::new();
    let mut exceptions = Sha256::new();
    for ((i, o), outcome) in instructions.zip(obligations).zip(&net.outcomes) {
        inputs.update(i.id.to_le_bytes());
        inputs.update(o.quantity.to_le_bytes());
        inputs.update(o.cash.to_le_bytes());
        for account in i.accounts() {
            inputs.update(account.to_le_bytes());
        }
        if *outcome != Outcome::Settled {
            let (quantity, cash) = outcome.settled(o);
            exceptions.update(i.id.to_le_bytes());
            exceptions.update(quantity.to_le_bytes());
            exceptions.update(cash.to_le_bytes());
        }
    }
    let mut movements = Sha256::new();
    for (account, movement) in accounts.iter().zip(&net.movements) {
        if *movement != 0 {
            movements.update(account.to_le_bytes());
            movements.update(movement.to_le_bytes());
        }
    }
    Certificate {
        inputs: inputs.finalize().into(),
        movements: movements.finalize().into(),
        exceptions: exceptions.finalize().into(),
    }
}

#[cfg(test)]
#[path = "settlement_tests.rs"]
mod tests;
