//! `tally client cycle`: net settlement from the command line — submit instructions from CSV or
//! JSON, move a cycle through its lifecycle (operators), hold, release or cancel instructions,
//! and read where instructions and cycles stand: a cycle's report (per participant and asset,
//! what it paid and received in the run) and its exceptions (every instruction not settled
//! whole, with the reason). docs/settlement.md describes the model.

use std::path::PathBuf;

use anyhow::{bail, Context};
use tally_client::limits::LOOKUP_IDS_MAX;
use tally_client::{Client, ClientConfig};
use tally_engine::cycle::{clearing_account_id, run_transfer_id};
use tally_engine::limits::STATEMENT_ENTRIES_MAX;
use tally_engine::records::{CommandKind, InstructionFlags, SettlementCommand};
use tally_engine::settlement::{Instruction, Status};
use tally_engine::settlement_wire::{phase_name, CycleSummary, InstructionView, STATUS_NAMES};
use tally_engine::{EventResult, Operation};

use crate::client_cli::{create_from_file, flag_bits, ids, narrow, number};
use crate::client_cli::{found_all, Ended, Output, Table};
use crate::config::parse_u128;
use crate::import::RecordKind;

#[derive(Debug, clap::Subcommand)]
pub enum CycleCommand {
    /// Submit the settlement instructions in FILE into their (open) cycles (CSV with a header
    /// row, or a JSON array; `-` = stdin).
    #[command(after_long_help = INSTRUCTION_COLUMNS)]
    Submit { file: PathBuf },
    /// Open CYCLE for instructions (operators).
    Open {
        cycle: u32,
        #[command(flatten)]
        id: CommandId,
    },
    /// Close CYCLE to new instructions (operators).
    CutOff {
        cycle: u32,
        #[command(flatten)]
        id: CommandId,
    },
    /// Net and settle CYCLE (cut off) with every fail carried forward, then print its report
    /// (operators).
    Run {
        cycle: u32,
        #[command(flatten)]
        id: CommandId,
    },
    /// Close CYCLE after its run (operators).
    Close {
        cycle: u32,
        #[command(flatten)]
        id: CommandId,
    },
    /// Cancel CYCLE's run before it happens (nothing moves) and move its instructions to the
    /// later cycle --to, opened if it does not exist (operators).
    Reschedule {
        cycle: u32,
        #[arg(long)]
        to: u32,
        #[command(flatten)]
        id: CommandId,
    },
    /// Hold units of INSTRUCTION (all that is left without --quantity): they do not settle
    /// until released.
    Hold {
        instruction: String,
        #[arg(long)]
        quantity: Option<u64>,
        #[command(flatten)]
        id: CommandId,
    },
    /// Release held units of INSTRUCTION (all of them without --quantity).
    Release {
        instruction: String,
        #[arg(long)]
        quantity: Option<u64>,
        #[command(flatten)]
        id: CommandId,
    },
    /// One party's request to cancel INSTRUCTION; the other party's request cancels it.
    Cancel {
        instruction: String,
        #[arg(long, value_enum)]
        party: PartyArg,
        #[command(flatten)]
        id: CommandId,
    },
    /// Set how many runs an instruction may fail before it is cancelled (operators).
    MaxAge {
        runs: u16,
        #[command(flatten)]
        id: CommandId,
    },
    /// Where each instruction stands.
    Status { ids: Vec<String> },
    /// CYCLE's phase, counts by status, run and netting certificate, and per participant and
    /// asset what it paid (payable) and received (receivable) in the run.
    Report { cycle: u32 },
    /// Every instruction of CYCLE not settled whole, with the reason.
    Exceptions { cycle: u32 },
}

#[derive(Debug, clap::Args)]
pub struct CommandId {
    /// The command's id (decimal or 0x hex): running the same command again with the same id
    /// is answered "already applied" instead of applying it twice. Default: a new random id.
    #[arg(long = "id")]
    id: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PartyArg {
    Deliverer,
    Receiver,
}

const INSTRUCTION_COLUMNS: &str = "\
Columns: id, deliverer_securities, receiver_securities, receiver_cash, deliverer_cash,
quantity, cycle (required); cash, priority, reference, flags. The deliverer's securities
account pays quantity to the receiver's; the receiver's cash account pays cash (0: free of
payment) to the deliverer's. Higher priority settles first when someone is short.
Flags: linked, partial (a part may settle when the whole cannot), hold (submitted on hold).

Numbers: unsigned integers up to 2^128-1, in decimal or 0x hex; in JSON as numbers or strings.
The file is checked whole before anything is sent (exit 2 names the file and line), then sent
in requests of at most 8,189 instructions, never cutting a linked chain. Running the same file
again is safe: instructions already taken answer exists and are counted, not listed.";

const INSTRUCTION_FLAGS: &[(&str, u16)] = &[
    ("linked", InstructionFlags::LINKED.0),
    ("partial", InstructionFlags::PARTIAL.0),
    ("hold", InstructionFlags::HOLD.0),
];

/// How `tally client cycle submit` reads a row.
const INSTRUCTION_ROWS: RecordKind = RecordKind {
    columns: &[
        "id",
        "deliverer_securities",
        "receiver_securities",
        "receiver_cash",
        "deliverer_cash",
        "quantity",
        "cycle",
        "cash",
        "priority",
        "reference",
        "flags",
    ],
    required: 7,
    build: instruction_record,
};

fn instruction_record(v: &[&str]) -> anyhow::Result<(u128, [u8; 128])> {
    let [id, ds, rs, rc, dc, quantity, cycle, cash, priority, reference, flags] = v else {
        bail!("{} values for 11 columns", v.len());
    };
    let instruction = Instruction {
        id: number(id, "id")?,
        deliverer_securities: number(ds, "deliverer_securities")?,
        receiver_securities: number(rs, "receiver_securities")?,
        receiver_cash: number(rc, "receiver_cash")?,
        deliverer_cash: number(dc, "deliverer_cash")?,
        quantity: narrow(quantity, "quantity")?,
        cycle: narrow(cycle, "cycle")?,
        cash: narrow(cash, "cash")?,
        priority: narrow(priority, "priority")?,
        reference: number(reference, "reference")?,
        flags: InstructionFlags(flag_bits(flags, INSTRUCTION_FLAGS)?),
        timestamp: 0,
    };
    Ok((instruction.id, instruction.encode()))
}

impl CommandId {
    fn value(&self) -> anyhow::Result<u128> {
        match &self.id {
            Some(text) => parse_u128(text).context("--id"),
            // Clear of 0 and of the engine's own range (the upper half all ones).
            None => Ok(rand::random::<u128>() >> 1 | 1),
        }
    }
}

/// The command a subcommand sends, if it sends one.
fn command_of(command: &CycleCommand) -> anyhow::Result<Option<SettlementCommand>> {
    let on_cycle = |kind: CommandKind, cycle: u32, id: &CommandId| -> anyhow::Result<_> {
        Ok(SettlementCommand {
            id: id.value()?,
            kind: kind as u16,
            cycle,
            ..SettlementCommand::default()
        })
    };
    let on_instruction =
        |kind: CommandKind, instruction: &str, quantity: Option<u64>, id: &CommandId| {
            if quantity == Some(0) {
                bail!("--quantity must be at least 1 (leave it out for all)");
            }
            Ok(SettlementCommand {
                id: id.value()?,
                kind: kind as u16,
                instruction: parse_u128(instruction).context("the instruction id")?,
                quantity: quantity.unwrap_or(0),
                ..SettlementCommand::default()
            })
        };
    Ok(Some(match command {
        CycleCommand::Open { cycle, id } => on_cycle(CommandKind::Open, *cycle, id)?,
        CycleCommand::CutOff { cycle, id } => on_cycle(CommandKind::CutOff, *cycle, id)?,
        CycleCommand::Run { cycle, id } => on_cycle(CommandKind::Run, *cycle, id)?,
        CycleCommand::Close { cycle, id } => on_cycle(CommandKind::Close, *cycle, id)?,
        CycleCommand::Reschedule { cycle, to, id } => SettlementCommand {
            to_cycle: *to,
            ..on_cycle(CommandKind::CancelAndReschedule, *cycle, id)?
        },
        CycleCommand::Hold {
            instruction,
            quantity,
            id,
        } => on_instruction(CommandKind::Hold, instruction, *quantity, id)?,
        CycleCommand::Release {
            instruction,
            quantity,
            id,
        } => on_instruction(CommandKind::Release, instruction, *quantity, id)?,
        CycleCommand::Cancel {
            instruction,
            party,
            id,
        } => SettlementCommand {
            party: match party {
                PartyArg::Deliverer => 1,
                PartyArg::Receiver => 2,
            },
            ..on_instruction(CommandKind::Cancel, instruction, None, id)?
        },
        CycleCommand::MaxAge { runs, id } => {
            if *runs == 0 {
                bail!("an instruction may fail in at least 1 run");
            }
            SettlementCommand {
                id: id.value()?,
                kind: CommandKind::SetMaxAge as u16,
                max_age: *runs,
                ..SettlementCommand::default()
            }
        }
        CycleCommand::Submit { .. }
        | CycleCommand::Status { .. }
        | CycleCommand::Report { .. }
        | CycleCommand::Exceptions { .. } => return Ok(None),
    }))
}

/// Run one `tally client cycle` subcommand; its input is checked before connecting.
pub async fn run(
    command: &CycleCommand,
    config: ClientConfig,
    output: Output,
    in_flight: u8,
    rate: Option<u64>,
) -> anyhow::Result<Ended> {
    if let CycleCommand::Submit { file } = command {
        return create_from_file(
            file,
            in_flight,
            rate,
            Operation::CreateInstructions,
            &INSTRUCTION_ROWS,
            config,
            output,
        )
        .await;
    }
    let settlement_command = command_of(command)?;
    let asked = match command {
        CycleCommand::Status { ids: texts } => Some(ids(texts)?),
        _ => None,
    };
    let client = Client::connect(config).await?;
    let ended = match (settlement_command, command) {
        (Some(c), _) => apply(&client, c, output).await,
        (None, CycleCommand::Status { .. }) => {
            status(&client, asked.as_deref().unwrap_or_default(), output).await
        }
        (None, CycleCommand::Report { cycle }) => report(&client, *cycle, output).await,
        (None, CycleCommand::Exceptions { cycle }) => exceptions(&client, *cycle, output).await,
        (None, _) => unreachable!("every other subcommand sends a command"),
    };
    client.close().await;
    ended
}

/// Send one command and say what came of it; a run prints its report after.
async fn apply(
    client: &Client,
    command: SettlementCommand,
    output: Output,
) -> anyhow::Result<Ended> {
    let failures = client.settlement_commands(&[command]).await?;
    let kind = CommandKind::from_code(command.kind).expect("built from a kind");
    let result = failures
        .first()
        .map_or(EventResult::Ok, |(_, result)| *result);
    match result {
        EventResult::Ok => eprintln!("{kind:?} applied (command id {})", command.id),
        EventResult::Exists => {
            eprintln!("{kind:?} already applied under command id {}", command.id)
        }
        refused => {
            eprintln!(
                "{kind:?} refused: {refused} (command id {}; nothing changed)",
                command.id
            );
            return Ok(Ended::EventsFailed);
        }
    }
    if kind == CommandKind::Run {
        return report(client, command.cycle, output).await;
    }
    Ok(Ended::Done)
}

const VIEW_COLUMNS: [&str; 13] = [
    "id",
    "status",
    "cycle",
    "quantity",
    "settled_quantity",
    "cash",
    "settled_cash",
    "held",
    "age",
    "short_account",
    "short_leg",
    "cancel_requested_by",
    "reference",
];

fn view_row(v: &InstructionView) -> Vec<String> {
    let (short_account, short_leg) = match v.status {
        Status::Failed { short_account, leg } | Status::PartlySettled { short_account, leg } => {
            (short_account.to_string(), format!("{leg:?}").to_lowercase())
        }
        _ => (String::new(), String::new()),
    };
    let status = tally_engine::settlement_wire::status_code(v.status).0;
    vec![
        v.instruction.id.to_string(),
        STATUS_NAMES[usize::from(status)].to_owned(),
        v.cycle.to_string(),
        v.instruction.quantity.to_string(),
        v.settled_quantity.to_string(),
        v.instruction.cash.to_string(),
        v.settled_cash.to_string(),
        v.held.to_string(),
        v.age.to_string(),
        short_account,
        short_leg,
        v.cancel_requested_by
            .map_or(String::new(), |p| format!("{p:?}").to_lowercase()),
        v.instruction.reference.to_string(),
    ]
}

async fn status(client: &Client, asked: &[u128], output: Output) -> anyhow::Result<Ended> {
    let mut found = Vec::new();
    for chunk in asked.chunks(LOOKUP_IDS_MAX) {
        found.extend(client.lookup_instructions(chunk).await?);
    }
    Table {
        columns: VIEW_COLUMNS.to_vec(),
        rows: found.iter().map(view_row).collect(),
    }
    .print(output)?;
    Ok(found_all(asked, found.iter().map(|v| v.instruction.id)))
}

async fn exceptions(client: &Client, cycle: u32, output: Output) -> anyhow::Result<Ended> {
    let mut rows = Vec::new();
    let mut after = 0;
    loop {
        let page = client
            .settlement_cycle(cycle, after, STATEMENT_ENTRIES_MAX)
            .await?;
        rows.extend(page.exceptions.iter().map(view_row));
        match page.exceptions.last() {
            Some(last) if page.more => after = last.instruction.id,
            _ => break,
        }
    }
    Table {
        columns: VIEW_COLUMNS.to_vec(),
        rows,
    }
    .print(output)?;
    Ok(Ended::Done)
}

/// Per participant account (with its ledger): paid and received in the run.
type Movements = std::collections::BTreeMap<(u128, u32), (u128, u128)>;

/// The run's movements, read back from the transfers it posted (a reader sees its own).
async fn movements(client: &Client, summary: &CycleSummary) -> anyhow::Result<Movements> {
    let mut movements = Movements::new();
    let Some(run) = summary.run else {
        return Ok(movements);
    };
    let ids: Vec<u128> = (0..u64::from(run.postings))
        .map(|k| run_transfer_id(run.first_posting + k))
        .collect();
    for chunk in ids.chunks(LOOKUP_IDS_MAX) {
        for t in client.lookup_transfers(chunk).await? {
            let paid = t.credit_account_id == clearing_account_id(t.ledger);
            let account = if paid {
                t.debit_account_id
            } else {
                t.credit_account_id
            };
            let entry = movements.entry((account, t.ledger)).or_default();
            if paid {
                entry.0 += t.amount;
            } else {
                entry.1 += t.amount;
            }
        }
    }
    Ok(movements)
}

fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn report(client: &Client, cycle: u32, output: Output) -> anyhow::Result<Ended> {
    let summary = client.settlement_cycle(cycle, 0, 1).await?;
    let mut lines = vec![format!("cycle {cycle}: {}", phase_name(summary.phase))];
    let counts: Vec<String> = summary
        .counts
        .iter()
        .zip(STATUS_NAMES)
        .filter(|(n, _)| **n > 0)
        .map(|(n, name)| format!("{n} {name}"))
        .collect();
    lines.push(format!("instructions: {}", counts.join(", ")));
    if let Some(run) = &summary.run {
        lines.push(format!(
            "run: {} settled, {} partly settled, {} failed, {} aged out; settled value {}; \
             {} postings from timestamp {}",
            run.settled,
            run.partly_settled,
            run.failed,
            run.aged_out,
            run.settled_value,
            run.postings,
            run.first_posting
        ));
        lines.push(format!(
            "certificate: inputs {}, movements {}, exceptions {}",
            hex(&run.certificate.inputs),
            hex(&run.certificate.movements),
            hex(&run.certificate.exceptions)
        ));
    }
    for line in &lines {
        match output {
            Output::Table => println!("{line}"),
            _ => eprintln!("{line}"),
        }
    }
    let movements = movements(client, &summary).await?;
    Table {
        columns: vec!["account", "ledger", "payable", "receivable"],
        rows: movements
            .iter()
            .map(|((account, ledger), (paid, received))| {
                vec![
                    account.to_string(),
                    ledger.to_string(),
                    paid.to_string(),
                    received.to_string(),
                ]
            })
            .collect(),
    }
    .print(output)?;
    Ok(Ended::Done)
}
