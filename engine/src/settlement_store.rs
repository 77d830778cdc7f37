//! The settlement book as stored state: every cycle and every instruction (with where it
//! stands) as fixed-size entries a snapshot section can hold, the book rebuilt from them with
//! every rule checked (a damaged or forged section is refused by name, never a panic), and the
//! book's part of the state digest.
//!
//! What is not stored is derived: the open instructions (those not settled or cancelled) and
//! the next submission number (one past the largest). The fail limit (`max_age`) and the hash
//! seed are the book's settings, given again on restore.

use std::collections::BTreeSet;

use rkyv::{Archive, Deserialize, Serialize};

use crate::limits::RECORD_BYTES;
use crate::netting::ShortLeg;
use crate::settlement::{
    CancelReason, Instruction, InstructionState, Party, Phase, SettlementBook, Status,
};
use crate::snapshot::{invalid, SnapshotError};

/// A cycle and its phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct StoredCycle {
    pub cycle: u32,
    /// 0 open, 1 cut off, 2 settled, 3 partly settled, 4 cancelled, 5 closed.
    pub phase: u8,
    /// A cancelled cycle's: where its instructions went; otherwise 0.
    pub rescheduled_to: u32,
}

/// An instruction (its record, as submitted with its timestamp) and where it stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct StoredInstruction {
    pub record: [u8; RECORD_BYTES],
    /// 0 eligible, 1 held, 2 rescheduled, 3 settled, 4 partly settled, 5 failed, 6 cancelled
    /// (aged out), 7 cancelled (bilateral).
    pub status: u8,
    /// Partly settled or failed: the short leg (0 securities, 1 cash) and its account;
    /// otherwise 0.
    pub short_leg: u8,
    pub short_account: u128,
    /// Rescheduled: the cycle it came from; otherwise 0.
    pub rescheduled_from: u32,
    pub cycle: u32,
    pub carried: bool,
    pub age: u16,
    pub settled_quantity: u64,
    pub settled_cash: u64,
    pub held: u64,
    /// 0 nobody, 1 the deliverer, 2 the receiver.
    pub cancel_requested_by: u8,
    pub sequence: u64,
}

impl StoredCycle {
    /// The fixed little-endian bytes the digest hashes.
    fn bytes(&self) -> [u8; 9] {
        let mut out = [0u8; 9];
        out[..4].copy_from_slice(&self.cycle.to_le_bytes());
        out[4] = self.phase;
        out[5..].copy_from_slice(&self.rescheduled_to.to_le_bytes());
        out
    }
}

impl StoredInstruction {
    /// The fixed little-endian bytes the digest hashes: the record, then every other field in
    /// declaration order.
    fn bytes(&self) -> [u8; RECORD_BYTES + 80] {
        let mut out = [0u8; RECORD_BYTES + 80];
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(&self.record);
        put(&[self.status, self.short_leg]);
        put(&self.short_account.to_le_bytes());
        put(&self.rescheduled_from.to_le_bytes());
        put(&self.cycle.to_le_bytes());
        put(&[u8::from(self.carried)]);
        put(&self.age.to_le_bytes());
        put(&self.settled_quantity.to_le_bytes());
        put(&self.settled_cash.to_le_bytes());
        put(&self.held.to_le_bytes());
        put(&[self.cancel_requested_by]);
        put(&self.sequence.to_le_bytes());
        out
    }
}

fn phase_code(phase: Phase) -> (u8, u32) {
    match phase {
        Phase::Open => (0, 0),
        Phase::CutOff => (1, 0),
        Phase::Settled => (2, 0),
        Phase::PartlySettled => (3, 0),
        Phase::Cancelled { rescheduled_to } => (4, rescheduled_to),
        Phase::Closed => (5, 0),
    }
}

fn phase_of(stored: &StoredCycle) -> Result<Phase, SnapshotError> {
    let cycle = stored.cycle;
    let phase = match stored.phase {
        0 => Phase::Open,
        1 => Phase::CutOff,
        2 => Phase::Settled,
        3 => Phase::PartlySettled,
        4 if stored.rescheduled_to > cycle => Phase::Cancelled {
            rescheduled_to: stored.rescheduled_to,
        },
        5 => Phase::Closed,
        4 => {
            return Err(invalid(format!(
                "settlement cycle {cycle}: rescheduled to {}, not a later cycle",
                stored.rescheduled_to
            )))
        }
        other => {
            return Err(invalid(format!(
                "settlement cycle {cycle}: unknown phase {other}"
            )))
        }
    };
    if stored.phase != 4 && stored.rescheduled_to != 0 {
        return Err(invalid(format!(
            "settlement cycle {cycle}: a reschedule target without a cancelled run"
        )));
    }
    Ok(phase)
}

fn leg_code(leg: ShortLeg) -> u8 {
    match leg {
        ShortLeg::Securities => 0,
        ShortLeg::Cash => 1,
    }
}

/// The stored form of a status: (status, short leg, short account, rescheduled from).
fn status_code(status: Status) -> (u8, u8, u128, u32) {
    match status {
        Status::Eligible => (0, 0, 0, 0),
        Status::Held => (1, 0, 0, 0),
        Status::Rescheduled { from } => (2, 0, 0, from),
        Status::Settled => (3, 0, 0, 0),
        Status::PartlySettled { short_account, leg } => (4, leg_code(leg), short_account, 0),
        Status::Failed { short_account, leg } => (5, leg_code(leg), short_account, 0),
        Status::Cancelled(CancelReason::AgedOut) => (6, 0, 0, 0),
        Status::Cancelled(CancelReason::Bilateral) => (7, 0, 0, 0),
    }
}

fn status_of(stored: &StoredInstruction, id: u128) -> Result<Status, SnapshotError> {
    let bad = |what: &str| Err(invalid(format!("settlement instruction {id:#x}: {what}")));
    let leg = match stored.short_leg {
        0 => ShortLeg::Securities,
        1 => ShortLeg::Cash,
        _ => return bad("unknown short leg"),
    };
    let short = matches!(stored.status, 4 | 5);
    if !short && (stored.short_leg != 0 || stored.short_account != 0) {
        return bad("a short leg without a fail");
    }
    if stored.status != 2 && stored.rescheduled_from != 0 {
        return bad("a reschedule origin without a reschedule");
    }
    let short_account = stored.short_account;
    Ok(match stored.status {
        0 => Status::Eligible,
        1 => Status::Held,
        2 => Status::Rescheduled {
            from: stored.rescheduled_from,
        },
        3 => Status::Settled,
        4 => Status::PartlySettled { short_account, leg },
        5 => Status::Failed { short_account, leg },
        6 => Status::Cancelled(CancelReason::AgedOut),
        7 => Status::Cancelled(CancelReason::Bilateral),
        _ => return bad("unknown status"),
    })
}

impl SettlementBook {
    /// Every cycle, in cycle order.
    pub fn stored_cycles(&self) -> Vec<StoredCycle> {
        self.cycle_entries().collect()
    }

    /// Every instruction, in id order.
    pub fn stored_instructions(&self) -> Vec<StoredInstruction> {
        self.instruction_entries().collect()
    }

    fn cycle_entries(&self) -> impl ExactSizeIterator<Item = StoredCycle> + '_ {
        self.cycles.iter().map(|(&cycle, &phase)| {
            let (phase, rescheduled_to) = phase_code(phase);
            StoredCycle {
                cycle,
                phase,
                rescheduled_to,
            }
        })
    }

    fn instruction_entries(&self) -> impl ExactSizeIterator<Item = StoredInstruction> + '_ {
        self.instructions.values().map(|state| {
            let (status, short_leg, short_account, rescheduled_from) = status_code(state.status);
            StoredInstruction {
                record: state.instruction.encode(),
                status,
                short_leg,
                short_account,
                rescheduled_from,
                cycle: state.cycle,
                carried: state.carried,
                age: state.age,
                settled_quantity: state.settled_quantity,
                settled_cash: state.settled_cash,
                held: state.held,
                cancel_requested_by: match state.cancel_requested_by {
                    None => 0,
                    Some(Party::Deliverer) => 1,
                    Some(Party::Receiver) => 2,
                },
                sequence: state.sequence,
            }
        })
    }

    /// The book [`SettlementBook::stored_cycles`] and [`SettlementBook::stored_instructions`]
    /// came from, with its settings (`max_age`, `hash_seed`, as for [`SettlementBook::new`]).
    /// Refuses entries out of order or repeated, unknown codes, an instruction its own rules
    /// could not have produced (settled or held beyond its quantity, a cycle the book does not
    /// have, a submission number used twice) — each by name.
    pub fn restore(
        max_age: u16,
        hash_seed: u64,
        cycles: &[StoredCycle],
        instructions: &[StoredInstruction],
    ) -> Result<SettlementBook, SnapshotError> {
        let mut book = SettlementBook::new(max_age, hash_seed);
        for stored in cycles {
            let phase = phase_of(stored)?;
            if book
                .cycles
                .last_key_value()
                .is_some_and(|(c, _)| *c >= stored.cycle)
            {
                return Err(invalid(format!(
                    "settlement cycle {}: out of order or repeated",
                    stored.cycle
                )));
            }
            book.cycles.insert(stored.cycle, phase);
        }
        let mut sequences = BTreeSet::new();
        for stored in instructions {
            let instruction = Instruction::decode(&stored.record).map_err(|_| {
                invalid("a settlement instruction's record has an unknown flag bit")
            })?;
            let id = instruction.id;
            let bad = |what: &str| Err(invalid(format!("settlement instruction {id:#x}: {what}")));
            if book
                .instructions
                .last_key_value()
                .is_some_and(|(i, _)| *i >= id)
            {
                return bad("out of order or repeated");
            }
            let status = status_of(stored, id)?;
            if !book.cycles.contains_key(&instruction.cycle)
                || !book.cycles.contains_key(&stored.cycle)
            {
                return bad("names a cycle the book does not have");
            }
            if stored.settled_quantity > instruction.quantity
                || stored.settled_cash > instruction.cash
            {
                return bad("settled more than its quantity or cash");
            }
            if stored.held > instruction.quantity - stored.settled_quantity {
                return bad("holds more than is left to settle");
            }
            if (status == Status::Settled) != (stored.settled_quantity == instruction.quantity) {
                return bad("its status and its settled quantity disagree");
            }
            let cancel_requested_by = match stored.cancel_requested_by {
                0 => None,
                1 => Some(Party::Deliverer),
                2 => Some(Party::Receiver),
                _ => return bad("unknown cancelling party"),
            };
            if !sequences.insert(stored.sequence) {
                return bad("its submission number is another's");
            }
            let state = InstructionState {
                instruction,
                status,
                cycle: stored.cycle,
                carried: stored.carried,
                age: stored.age,
                settled_quantity: stored.settled_quantity,
                settled_cash: stored.settled_cash,
                held: stored.held,
                cancel_requested_by,
                sequence: stored.sequence,
            };
            if !status.is_final() {
                book.live.insert(id);
            }
            book.instructions.insert(id, state);
        }
        book.next_sequence = sequences.last().map_or(0, |last| last + 1);
        Ok(book)
    }

    /// Adds the book (every cycle and instruction, in the stored form) to a state digest.
    /// One entry at a time: the digest allocates nothing.
    pub fn digest_into(&self, hasher: &mut blake3::Hasher) {
        let cycles = self.cycle_entries();
        hasher.update(&(cycles.len() as u64).to_le_bytes());
        for cycle in cycles {
            hasher.update(&cycle.bytes());
        }
        let instructions = self.instruction_entries();
        hasher.update(&(instructions.len() as u64).to_le_bytes());
        for instruction in instructions {
            hasher.update(&instruction.bytes());
        }
    }
}

#[cfg(test)]
#[path = "settlement_store_tests.rs"]
mod tests;
