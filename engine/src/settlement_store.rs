//! The settlement book as stored state: its fail limit, every cycle, every instruction (with
//! where it stands) and every settlement command applied, as fixed-size entries a snapshot
//! section can hold, the book rebuilt from them with every rule checked (a damaged or forged
//! section is refused by name, never a panic), and the book's part of the state digest.
//!
//! What is not stored is derived: the open instructions (those not settled or cancelled) and
//! the next submission number (one past the largest). The fail limit (`max_age`) is replicated
//! state (a settlement command changes it), so it is stored and restored with the book; the
//! hash seed is a node's setting (outputs never depend on it), given again on restore.

use std::collections::BTreeSet;

use rkyv::{Archive, Deserialize, Serialize};

use crate::limits::RECORD_BYTES;
use crate::settlement::{
    Instruction, InstructionState, Phase, RunRecord, SettlementBook, Status, RUN_RECORD_BYTES,
};
use crate::settlement_wire;
use crate::snapshot::{invalid, SnapshotError};

/// A cycle and its phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct StoredCycle {
    pub cycle: u32,
    /// 0 open, 1 cut off, 2 settled, 3 partly settled, 4 cancelled, 5 closed.
    pub phase: u8,
    /// A cancelled cycle's: where its instructions went; otherwise 0.
    pub rescheduled_to: u32,
    /// Its run record once it has run (`RunRecord::encode`); all zero before.
    pub run: [u8; RUN_RECORD_BYTES],
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

/// A settlement command the book applied, under its id (the book's key): its 128-byte record
/// as stored (timestamp set), kept so a retry is answered instead of applied twice. The id is
/// the record's own (bytes 0..16, little-endian); it is stored beside the record so that the
/// entries' order can be checked without reading records, and a restore refuses an entry whose
/// two ids disagree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct StoredCommand {
    pub id: u128,
    pub record: [u8; RECORD_BYTES],
}

impl StoredCycle {
    /// The fixed little-endian bytes the digest hashes.
    fn bytes(&self) -> [u8; 9 + RUN_RECORD_BYTES] {
        let mut out = [0u8; 9 + RUN_RECORD_BYTES];
        out[..4].copy_from_slice(&self.cycle.to_le_bytes());
        out[4] = self.phase;
        out[5..9].copy_from_slice(&self.rescheduled_to.to_le_bytes());
        out[9..].copy_from_slice(&self.run);
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

impl StoredCommand {
    /// The fixed little-endian bytes the digest hashes: the id, then the record.
    fn bytes(&self) -> [u8; 16 + RECORD_BYTES] {
        let mut out = [0u8; 16 + RECORD_BYTES];
        out[..16].copy_from_slice(&self.id.to_le_bytes());
        out[16..].copy_from_slice(&self.record);
        out
    }
}

/// The phase a stored cycle's codes give (`settlement_wire`'s, shared with reads).
fn phase_of(stored: &StoredCycle) -> Result<Phase, SnapshotError> {
    let cycle = stored.cycle;
    let phase =
        settlement_wire::phase_of(cycle, stored.phase, stored.rescheduled_to).map_err(invalid)?;
    if stored.phase != 4 && stored.rescheduled_to != 0 {
        return Err(invalid(format!(
            "settlement cycle {cycle}: a reschedule target without a cancelled run"
        )));
    }
    Ok(phase)
}

/// The run record a stored cycle holds: none (all zero) before its run; once run, its own.
fn run_of(stored: &StoredCycle, phase: Phase) -> Result<Option<RunRecord>, SnapshotError> {
    let cycle = stored.cycle;
    if stored.run.iter().all(|b| *b == 0) {
        return Ok(None);
    }
    let run = RunRecord::decode(&stored.run)
        .filter(|run| run.cycle == cycle)
        .ok_or_else(|| invalid(format!("settlement cycle {cycle}: a damaged run record")))?;
    if !matches!(phase, Phase::Settled | Phase::PartlySettled | Phase::Closed) {
        return Err(invalid(format!(
            "settlement cycle {cycle}: a run record in a cycle that has not run"
        )));
    }
    Ok(Some(run))
}

fn status_of(stored: &StoredInstruction, id: u128) -> Result<Status, SnapshotError> {
    settlement_wire::status_of(
        stored.status,
        stored.short_leg,
        stored.short_account,
        stored.rescheduled_from,
    )
    .map_err(|what| invalid(format!("settlement instruction {id:#x}: {what}")))
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

    /// Every settlement command applied, in id order.
    pub fn stored_commands(&self) -> Vec<StoredCommand> {
        self.command_entries().collect()
    }

    fn cycle_entries(&self) -> impl ExactSizeIterator<Item = StoredCycle> + '_ {
        self.cycles.iter().map(|(&cycle, &phase)| {
            let (phase, rescheduled_to) = settlement_wire::phase_code(phase);
            StoredCycle {
                cycle,
                phase,
                rescheduled_to,
                run: self
                    .runs
                    .get(&cycle)
                    .map_or([0; RUN_RECORD_BYTES], RunRecord::encode),
            }
        })
    }

    fn instruction_entries(&self) -> impl ExactSizeIterator<Item = StoredInstruction> + '_ {
        self.instructions.values().map(|state| {
            let (status, short_leg, short_account, rescheduled_from) =
                settlement_wire::status_code(state.status);
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
                cancel_requested_by: settlement_wire::party_code(state.cancel_requested_by),
                sequence: state.sequence,
            }
        })
    }

    fn command_entries(&self) -> impl ExactSizeIterator<Item = StoredCommand> + '_ {
        self.commands.iter().map(|(&id, record)| StoredCommand {
            id,
            record: *record,
        })
    }

    /// The book [`SettlementBook::max_age`], [`SettlementBook::stored_cycles`],
    /// [`SettlementBook::stored_instructions`] and [`SettlementBook::stored_commands`] came
    /// from. `max_age` is the stored fail limit (replicated state, not a node's setting: 0 is
    /// refused); `hash_seed` is the node's, as for [`SettlementBook::new`]. Refuses entries out
    /// of order or repeated, unknown codes, an instruction its own rules could not have
    /// produced (settled or held beyond its quantity, a cycle the book does not have, a
    /// submission number used twice), a command whose record is not under its own id — each
    /// by name.
    pub fn restore(
        max_age: u16,
        hash_seed: u64,
        cycles: &[StoredCycle],
        instructions: &[StoredInstruction],
        commands: &[StoredCommand],
    ) -> Result<SettlementBook, SnapshotError> {
        let mut book = BookRestore::new(SettlementBook::new(max_age, hash_seed), max_age)?;
        for stored in cycles {
            book.cycle(stored)?;
        }
        for stored in instructions {
            book.instruction(stored)?;
        }
        for stored in commands {
            book.command(stored)?;
        }
        Ok(book.finish())
    }

    /// Adds the book (its fail limit, then every cycle, instruction and command, in the stored
    /// form) to a state digest. One entry at a time: the digest allocates nothing.
    pub fn digest_into(&self, hasher: &mut blake3::Hasher) {
        hasher.update(&self.max_age().to_le_bytes());
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
        let commands = self.command_entries();
        hasher.update(&(commands.len() as u64).to_le_bytes());
        for command in commands {
            hasher.update(&command.bytes());
        }
    }
}

/// A book being restored one stored entry at a time, each checked as it comes (a snapshot's
/// sections arrive one by one, and a restore never collects a kind's entries first): the
/// cycles before the instructions that name them, the commands in any place.
pub(crate) struct BookRestore {
    book: SettlementBook,
    /// Every instruction's submission number so far: none may be another's.
    sequences: BTreeSet<u64>,
    /// Entries filed: cycles, instructions, commands.
    filed: [u64; 3],
}

impl BookRestore {
    /// Restores into `empty` (a new book: it gives the hash seed) with the stored fail limit
    /// `max_age`, refused if 0.
    pub(crate) fn new(
        mut empty: SettlementBook,
        max_age: u16,
    ) -> Result<BookRestore, SnapshotError> {
        debug_assert!(empty.cycles.is_empty() && empty.instructions.is_empty());
        debug_assert!(empty.commands.is_empty());
        if max_age == 0 {
            return Err(invalid("settlement max age 0: at least 1 run is due"));
        }
        empty.set_max_age(max_age);
        Ok(BookRestore {
            book: empty,
            sequences: BTreeSet::new(),
            filed: [0; 3],
        })
    }

    /// Cycles, instructions and commands filed so far.
    pub(crate) fn filed(&self) -> [u64; 3] {
        self.filed
    }

    pub(crate) fn cycle(&mut self, stored: &StoredCycle) -> Result<(), SnapshotError> {
        let phase = phase_of(stored)?;
        let run = run_of(stored, phase)?;
        let book = &mut self.book;
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
        if let Some(run) = run {
            book.runs.insert(stored.cycle, run);
        }
        self.filed[0] += 1;
        Ok(())
    }

    pub(crate) fn instruction(&mut self, stored: &StoredInstruction) -> Result<(), SnapshotError> {
        let book = &mut self.book;
        let instruction = Instruction::decode(&stored.record)
            .map_err(|_| invalid("a settlement instruction's record has an unknown flag bit"))?;
        let id = instruction.id;
        let bad = |what: &str| Err(invalid(format!("settlement instruction {id:#x}: {what}")));
        if id == 0 || id == u128::MAX || crate::cycle::is_reserved(id) {
            return bad("an id no instruction may have (0, or the engine's own range)");
        }
        if book
            .instructions
            .last_key_value()
            .is_some_and(|(i, _)| *i >= id)
        {
            return bad("out of order or repeated");
        }
        let status = status_of(stored, id)?;
        if !book.cycles.contains_key(&instruction.cycle) || !book.cycles.contains_key(&stored.cycle)
        {
            return bad("names a cycle the book does not have");
        }
        if stored.settled_quantity > instruction.quantity || stored.settled_cash > instruction.cash
        {
            return bad("settled more than its quantity or cash");
        }
        if stored.held > instruction.quantity - stored.settled_quantity {
            return bad("holds more than is left to settle");
        }
        if (status == Status::Settled) != (stored.settled_quantity == instruction.quantity) {
            return bad("its status and its settled quantity disagree");
        }
        let Ok(cancel_requested_by) = settlement_wire::party_of(stored.cancel_requested_by) else {
            return bad("unknown cancelling party");
        };
        if !self.sequences.insert(stored.sequence) {
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
        self.filed[1] += 1;
        Ok(())
    }

    pub(crate) fn command(&mut self, stored: &StoredCommand) -> Result<(), SnapshotError> {
        let id = stored.id;
        let bad = |what: &str| Err(invalid(format!("settlement command {id:#x}: {what}")));
        if id == 0 || id == u128::MAX || crate::cycle::is_reserved(id) {
            return bad("an id no command may have (0, or the engine's own range)");
        }
        let mut own = [0u8; 16];
        own.copy_from_slice(&stored.record[..16]);
        if u128::from_le_bytes(own) != id {
            return bad("its record's id is not its key");
        }
        let commands = &mut self.book.commands;
        if commands.last_key_value().is_some_and(|(c, _)| *c >= id) {
            return bad("out of order or repeated");
        }
        commands.insert(id, stored.record);
        self.filed[2] += 1;
        Ok(())
    }

    /// The restored book (its next submission number one past the largest restored).
    pub(crate) fn finish(self) -> SettlementBook {
        let mut book = self.book;
        book.next_sequence = self.sequences.last().map_or(0, |last| last + 1);
        book
    }
}

#[cfg(test)]
#[path = "settlement_store_tests.rs"]
mod tests;
