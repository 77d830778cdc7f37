//! The settlement book's fixed little-endian forms outside the engine: an instruction with
//! where it stands (192 bytes: its record, then its state) and a cycle's summary, as a read
//! answers them (docs/protocol.md, kinds 106 and 108; docs/records.md for the byte tables).
//! The phase, status and party codes are the snapshot's too (`settlement_store.rs`).

use crate::netting::ShortLeg;
use crate::records::RecordBytes;
use crate::settlement::{
    CancelReason, Instruction, InstructionState, Party, Phase, RunRecord, SettlementBook, Status,
    RUN_RECORD_BYTES,
};

/// Bytes of an instruction's state after its record.
pub const INSTRUCTION_STATE_BYTES: usize = 64;
/// Bytes of an instruction with its state.
pub const INSTRUCTION_VIEW_BYTES: usize = crate::limits::RECORD_BYTES + INSTRUCTION_STATE_BYTES;

/// A phase's code and, for a cancelled cycle, where its instructions went.
pub fn phase_code(phase: Phase) -> (u8, u32) {
    match phase {
        Phase::Open => (0, 0),
        Phase::CutOff => (1, 0),
        Phase::Settled => (2, 0),
        Phase::PartlySettled => (3, 0),
        Phase::Cancelled { rescheduled_to } => (4, rescheduled_to),
        Phase::Closed => (5, 0),
    }
}

/// The phase of `cycle` with this code; refused by name when the code is unknown or a
/// reschedule does not go to a later cycle.
pub fn phase_of(cycle: u32, code: u8, rescheduled_to: u32) -> Result<Phase, String> {
    Ok(match code {
        0 => Phase::Open,
        1 => Phase::CutOff,
        2 => Phase::Settled,
        3 => Phase::PartlySettled,
        4 if rescheduled_to > cycle => Phase::Cancelled { rescheduled_to },
        4 => {
            return Err(format!(
                "settlement cycle {cycle}: rescheduled to {rescheduled_to}, not a later cycle"
            ))
        }
        5 => Phase::Closed,
        other => return Err(format!("settlement cycle {cycle}: unknown phase {other}")),
    })
}

/// The phase's name as docs/settlement.md writes it.
pub fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Open => "open",
        Phase::CutOff => "cut off",
        Phase::Settled => "settled",
        Phase::PartlySettled => "partly settled",
        Phase::Cancelled { .. } => "cancelled",
        Phase::Closed => "closed",
    }
}

fn leg_code(leg: ShortLeg) -> u8 {
    match leg {
        ShortLeg::Securities => 0,
        ShortLeg::Cash => 1,
    }
}

/// Statuses by code, as docs/settlement.md names them.
pub const STATUS_NAMES: [&str; 8] = [
    "eligible",
    "held",
    "rescheduled",
    "settled",
    "partly settled",
    "failed",
    "cancelled (aged out)",
    "cancelled (bilateral)",
];

/// A status's code, its short leg's code and account (a fail or part), and where a
/// rescheduled instruction came from.
pub fn status_code(status: Status) -> (u8, u8, u128, u32) {
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

/// The status `status_code` gave these codes; refused by name when a code is unknown or the
/// parts disagree (a short leg without a fail, a reschedule origin without a reschedule).
pub fn status_of(
    code: u8,
    short_leg: u8,
    short_account: u128,
    rescheduled_from: u32,
) -> Result<Status, &'static str> {
    let leg = match short_leg {
        0 => ShortLeg::Securities,
        1 => ShortLeg::Cash,
        _ => return Err("unknown short leg"),
    };
    let short = matches!(code, 4 | 5);
    if !short && (short_leg != 0 || short_account != 0) {
        return Err("a short leg without a fail");
    }
    if code != 2 && rescheduled_from != 0 {
        return Err("a reschedule origin without a reschedule");
    }
    Ok(match code {
        0 => Status::Eligible,
        1 => Status::Held,
        2 => Status::Rescheduled {
            from: rescheduled_from,
        },
        3 => Status::Settled,
        4 => Status::PartlySettled { short_account, leg },
        5 => Status::Failed { short_account, leg },
        6 => Status::Cancelled(CancelReason::AgedOut),
        7 => Status::Cancelled(CancelReason::Bilateral),
        _ => return Err("unknown status"),
    })
}

/// The cancelling party's code: 0 nobody, 1 the deliverer, 2 the receiver.
pub fn party_code(party: Option<Party>) -> u8 {
    match party {
        None => 0,
        Some(Party::Deliverer) => 1,
        Some(Party::Receiver) => 2,
    }
}

/// The party with this code; `Err` for an unknown one.
pub fn party_of(code: u8) -> Result<Option<Party>, &'static str> {
    match code {
        0 => Ok(None),
        1 => Ok(Some(Party::Deliverer)),
        2 => Ok(Some(Party::Receiver)),
        _ => Err("unknown cancelling party"),
    }
}

/// An instruction as a read shows it: what was submitted and where it stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstructionView {
    pub instruction: Instruction,
    pub status: Status,
    pub cycle: u32,
    pub carried: bool,
    pub age: u16,
    pub settled_quantity: u64,
    pub settled_cash: u64,
    pub held: u64,
    pub cancel_requested_by: Option<Party>,
}

impl InstructionView {
    pub fn of(state: &InstructionState) -> InstructionView {
        InstructionView {
            instruction: state.instruction,
            status: state.status,
            cycle: state.cycle,
            carried: state.carried,
            age: state.age,
            settled_quantity: state.settled_quantity,
            settled_cash: state.settled_cash,
            held: state.held,
            cancel_requested_by: state.cancel_requested_by,
        }
    }

    /// Record (128 bytes), then: status u8, short leg u8, cancelling party u8, carried u8, age
    /// u16, reserved u16, cycle u32, rescheduled from u32, settled quantity u64, settled cash
    /// u64, held u64, reserved u64, short account u128.
    pub fn encode(&self) -> [u8; INSTRUCTION_VIEW_BYTES] {
        let mut out = [0u8; INSTRUCTION_VIEW_BYTES];
        out[..128].copy_from_slice(&self.instruction.encode());
        let s = &mut out[128..];
        let (status, leg, short_account, from) = status_code(self.status);
        s[0] = status;
        s[1] = leg;
        s[2] = party_code(self.cancel_requested_by);
        s[3] = u8::from(self.carried);
        s[4..6].copy_from_slice(&self.age.to_le_bytes());
        s[8..12].copy_from_slice(&self.cycle.to_le_bytes());
        s[12..16].copy_from_slice(&from.to_le_bytes());
        s[16..24].copy_from_slice(&self.settled_quantity.to_le_bytes());
        s[24..32].copy_from_slice(&self.settled_cash.to_le_bytes());
        s[32..40].copy_from_slice(&self.held.to_le_bytes());
        s[48..64].copy_from_slice(&short_account.to_le_bytes());
        out
    }

    /// The view `encode` made; refused by name when a code is unknown, a reserved byte or flag
    /// is set, or the parts disagree.
    pub fn decode(bytes: &[u8; INSTRUCTION_VIEW_BYTES]) -> Result<InstructionView, String> {
        let record: &RecordBytes = bytes[..128].try_into().expect("128 bytes");
        let instruction = Instruction::decode(record)
            .map_err(|_| "an instruction with an unknown flag bit".to_owned())?;
        let s = &bytes[128..];
        let u64_at = |at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"));
        let u32_at = |at: usize| u32::from_le_bytes(s[at..at + 4].try_into().expect("4 bytes"));
        let bad = |what: &str| format!("instruction {:#x}: {what}", instruction.id);
        if s[3] > 1 || s[6..8] != [0, 0] || s[40..48] != [0; 8] {
            return Err(bad("reserved bytes are not zero"));
        }
        let short_account = u128::from_le_bytes(s[48..64].try_into().expect("16 bytes"));
        let status = status_of(s[0], s[1], short_account, u32_at(12)).map_err(bad)?;
        Ok(InstructionView {
            instruction,
            status,
            cycle: u32_at(8),
            carried: s[3] == 1,
            age: u16::from_le_bytes([s[4], s[5]]),
            settled_quantity: u64_at(16),
            settled_cash: u64_at(24),
            held: u64_at(32),
            cancel_requested_by: party_of(s[2]).map_err(bad)?,
        })
    }
}

/// A cycle as a read shows it (kind 108): its phase, how many of its instructions stand in
/// each status, its run record once run, and a page of its exceptions — the instructions not
/// settled whole, in id order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CycleSummary {
    pub cycle: u32,
    pub phase: Phase,
    /// By status code (`STATUS_NAMES`).
    pub counts: [u64; 8],
    pub run: Option<RunRecord>,
    pub exceptions: Vec<InstructionView>,
    /// Whether exceptions follow the last one here (ask again after its id).
    pub more: bool,
}

/// Bytes of a cycle summary before its exceptions.
pub const CYCLE_SUMMARY_HEAD_BYTES: usize = 80 + RUN_RECORD_BYTES;

impl SettlementBook {
    /// `cycle`'s summary over the instructions `visible` lets through (a reader sees its own),
    /// with at most `limit` exceptions after id `after`; `None` when there is no such cycle.
    /// Walks the book's instructions once.
    pub fn cycle_summary(
        &self,
        cycle: u32,
        after: u128,
        limit: usize,
        visible: impl Fn(&Instruction) -> bool,
    ) -> Option<CycleSummary> {
        let phase = self.phase(cycle)?;
        let mut summary = CycleSummary {
            cycle,
            phase,
            counts: [0; 8],
            run: self.run_record(cycle).copied(),
            exceptions: Vec::new(),
            more: false,
        };
        for state in self.instructions_after(0) {
            if state.cycle != cycle || !visible(&state.instruction) {
                continue;
            }
            summary.counts[usize::from(status_code(state.status).0)] += 1;
            if state.status == Status::Settled || state.instruction.id <= after {
                continue;
            }
            if summary.exceptions.len() < limit {
                summary.exceptions.push(InstructionView::of(state));
            } else {
                summary.more = true;
            }
        }
        Some(summary)
    }
}

impl CycleSummary {
    /// phase u8, has run u8, more u8, reserved u8, rescheduled to u32, cycle u32, exceptions
    /// u32, counts [u64; 8], the run record (256 bytes, zero before the run), then the
    /// exceptions (192 bytes each).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![0u8; CYCLE_SUMMARY_HEAD_BYTES];
        let (phase, rescheduled_to) = phase_code(self.phase);
        out[0] = phase;
        out[1] = u8::from(self.run.is_some());
        out[2] = u8::from(self.more);
        out[4..8].copy_from_slice(&rescheduled_to.to_le_bytes());
        out[8..12].copy_from_slice(&self.cycle.to_le_bytes());
        let count = u32::try_from(self.exceptions.len()).expect("a page is bounded");
        out[12..16].copy_from_slice(&count.to_le_bytes());
        for (k, n) in self.counts.iter().enumerate() {
            out[16 + 8 * k..24 + 8 * k].copy_from_slice(&n.to_le_bytes());
        }
        if let Some(run) = &self.run {
            out[80..80 + RUN_RECORD_BYTES].copy_from_slice(&run.encode());
        }
        for view in &self.exceptions {
            out.extend_from_slice(&view.encode());
        }
        out
    }

    /// The summary `encode` made; refused by name when it is short, long or damaged.
    pub fn decode(bytes: &[u8]) -> Result<CycleSummary, String> {
        if bytes.len() < CYCLE_SUMMARY_HEAD_BYTES {
            return Err(format!("a cycle summary of {} bytes is short", bytes.len()));
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4"));
        let cycle = u32_at(8);
        let count = u32_at(12) as usize;
        let rest = &bytes[CYCLE_SUMMARY_HEAD_BYTES..];
        if rest.len() != count * INSTRUCTION_VIEW_BYTES
            || bytes[1] > 1
            || bytes[2] > 1
            || bytes[3] != 0
        {
            return Err(format!("cycle {cycle}: a damaged summary"));
        }
        let mut counts = [0u64; 8];
        for (k, n) in counts.iter_mut().enumerate() {
            *n = u64::from_le_bytes(bytes[16 + 8 * k..24 + 8 * k].try_into().expect("8"));
        }
        let record: &[u8; RUN_RECORD_BYTES] =
            bytes[80..80 + RUN_RECORD_BYTES].try_into().expect("256");
        let run = match bytes[1] {
            1 => Some(
                RunRecord::decode(record).ok_or(format!("cycle {cycle}: a damaged run record"))?,
            ),
            _ if record.iter().any(|b| *b != 0) => {
                return Err(format!("cycle {cycle}: a run record without a run"))
            }
            _ => None,
        };
        let exceptions = rest
            .chunks_exact(INSTRUCTION_VIEW_BYTES)
            .map(|chunk| InstructionView::decode(chunk.try_into().expect("192")))
            .collect::<Result<_, _>>()?;
        Ok(CycleSummary {
            cycle,
            phase: phase_of(cycle, bytes[0], u32_at(4))?,
            counts,
            run,
            exceptions,
            more: bytes[2] == 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every status travels and comes back; damage is refused, not misread.
    #[test]
    fn views_round_trip_and_damage_is_refused() {
        let statuses = [
            Status::Eligible,
            Status::Held,
            Status::Rescheduled { from: 3 },
            Status::Settled,
            Status::PartlySettled {
                short_account: 9,
                leg: ShortLeg::Cash,
            },
            Status::Failed {
                short_account: 8,
                leg: ShortLeg::Securities,
            },
            Status::Cancelled(CancelReason::AgedOut),
            Status::Cancelled(CancelReason::Bilateral),
        ];
        for (n, status) in statuses.into_iter().enumerate() {
            let view = InstructionView {
                instruction: Instruction {
                    id: 7 + n as u128,
                    quantity: 10,
                    cycle: 4,
                    ..Instruction::default()
                },
                status,
                cycle: 4,
                carried: n % 2 == 0,
                age: n as u16,
                settled_quantity: 3,
                settled_cash: 30,
                held: 1,
                cancel_requested_by: party_of((n % 3) as u8).unwrap(),
            };
            let bytes = view.encode();
            assert_eq!(InstructionView::decode(&bytes), Ok(view));
            let mut damaged = bytes;
            damaged[128] = 8;
            assert!(InstructionView::decode(&damaged).is_err());
            let mut damaged = bytes;
            damaged[128 + 42] = 1;
            assert!(InstructionView::decode(&damaged).is_err());
        }
    }

    /// A summary travels and comes back, run record and page included.
    #[test]
    fn summaries_round_trip() {
        let summary = CycleSummary {
            cycle: 20261207,
            phase: Phase::Cancelled {
                rescheduled_to: 20261208,
            },
            counts: [1, 2, 3, 4, 5, 6, 7, 8],
            run: Some(RunRecord {
                cycle: 20261207,
                command: 5,
                postings: 3,
                settled_value: 99,
                ..RunRecord::default()
            }),
            exceptions: vec![InstructionView::of(&InstructionState {
                instruction: Instruction {
                    id: 3,
                    quantity: 4,
                    ..Instruction::default()
                },
                status: Status::Held,
                cycle: 20261207,
                carried: false,
                age: 0,
                settled_quantity: 0,
                settled_cash: 0,
                held: 4,
                cancel_requested_by: None,
                sequence: 0,
            })],
            more: true,
        };
        let bytes = summary.encode();
        assert_eq!(CycleSummary::decode(&bytes), Ok(summary));
        assert!(CycleSummary::decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
