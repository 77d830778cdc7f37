//! A settlement cycle's run (docs/settlement.md): worked out without changing the book
//! ([`SettlementBook::plan_run`]: the members, the netting, the movements, the netting
//! certificate), applied to it ([`SettlementBook::apply_run`]: each member's outcome, fails
//! aged and carried, the cycle's phase), and what a run leaves: its report and its run record.

use sha2::{Digest, Sha256};

use crate::netting::{self, Available, Obligation, Outcome};
use crate::settlement::{
    CancelReason, Instruction, InstructionState, Phase, Positions, SettlementBook, SettlementError,
    Status,
};

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

impl SettlementBook {
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
