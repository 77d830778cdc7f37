//! `tally client`: the gateway from the command line. Creates accounts, transfers and trades
//! from CSV or JSON files, looks records up, prints statements and balances as of a time; as a
//! table, JSON or CSV. Exit codes: 0 done (every event succeeded), 1 some events failed (listed),
//! 2 bad input or usage, 3 the cluster refused or did not answer.

use std::path::PathBuf;

use anyhow::{bail, Context};
use tally_client::proofs::{WhichCheckpoint, LATEST};
use tally_client::{Client, ClientConfig, ClientError};
use tally_engine::records::{Account, AccountFlags, Trade, TradeFlags, Transfer, TransferFlags};
use tally_engine::{StatementEvent, StatementFilter};

use crate::client_proofs::{checkpoint, prove_to_file};
use crate::config::parse_u128;
use crate::import::{Checked, Input, RecordKind};
use tally_engine::Operation;

/// How a client command reaches the cluster: `tally client` and `tally reconcile` alike.
#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// The cluster's node addresses (comma-separated).
    #[arg(long, value_delimiter = ',', env = "TALLY_CLUSTER", required = true)]
    pub cluster: Vec<String>,
    /// The cluster id (decimal or 0x-hex), as in the nodes' config.
    #[arg(long, env = "TALLY_CLUSTER_ID", default_value = "0")]
    pub cluster_id: String,
    /// The credential (secret) this client registers with.
    #[arg(long, env = "TALLY_CREDENTIAL", hide_env_values = true)]
    pub credential: String,
    #[command(flatten)]
    pub tls: crate::tls_args::ClientTlsArgs,
}

impl ConnectArgs {
    /// The client configuration these flags name (bad input: an error before connecting).
    pub fn config(&self) -> anyhow::Result<ClientConfig> {
        let cluster_id = parse_u128(&self.cluster_id).context("--cluster-id")?;
        Ok(ClientConfig::new(
            self.cluster.clone(),
            cluster_id,
            self.credential.clone().into_bytes(),
        )
        .with_tls(self.tls.client_tls()?))
    }
}

#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub output: Output,
    /// Requests a file import keeps in flight (create-*): the next request travels while the
    /// one before it commits; the file is applied in its order whatever the number.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=8))]
    pub in_flight: u8,
    /// Hold a file import (create-*) to about this many events per second, leaving the cluster
    /// room for other clients' work; after a hold-up it goes on at this rate (no catching up
    /// beyond 50 ms of it); without it the import goes as fast as the cluster commits.
    #[arg(long, value_name = "EVENTS_PER_SECOND", value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: Option<u64>,
    #[command(subcommand)]
    pub command: ClientCommand,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
    Csv,
}

/// How every create command reads its file, after its columns (`--help`).
macro_rules! file_rules {
    () => {
        "Numbers: unsigned integers up to 2^128-1, in decimal or 0x hex; in JSON as numbers or
strings. Flags: names joined by |, e.g. linked|pending; empty for none. Optional columns may be
left out or empty (0). Unknown columns are refused.

The file is checked whole before anything is sent (exit 2 names the file and line), then sent
in requests of at most 8,189 events, never cutting a linked chain, --in-flight of them at a
time, and applied in the file's order. Running the same file again is safe: events already
applied answer exists and are counted, not listed.

Exit codes: 0 every event applied (or already there), 1 some events failed (listed by line),
2 bad input (nothing sent), 3 the cluster refused or did not answer (the message says what may
have been applied)."
    };
}

const ACCOUNT_COLUMNS: &str = concat!(
    "Columns: id, ledger, code (required); flags, limit, user_data_128, user_data_64.\n",
    "Flags: linked, debits_must_not_exceed_credits, credits_must_not_exceed_debits, history\n",
    "(lookups also show closed: set by a closing transfer, never by a create).\n\n",
    file_rules!(),
);
const TRANSFER_COLUMNS: &str = concat!(
    "Columns: id, debit_account_id, credit_account_id, amount, ledger, code (required);\n",
    "flags, pending_id, timeout, user_data_128, user_data_64, user_data_32.\n",
    "Flags: linked, pending, post_pending_transfer, void_pending_transfer, balancing_debit,\n",
    "balancing_credit, closing_debit, closing_credit.\n\n",
    file_rules!(),
);
const TRADE_COLUMNS: &str = concat!(
    "Columns: id, instrument_debit_account_id, instrument_credit_account_id,\n",
    "cash_debit_account_id, cash_credit_account_id, instrument_ledger, cash_ledger, quantity,\n",
    "cash_amount, code (required); flags, pending_id, timeout, user_data_64. A new trade\n",
    "names its two ledgers and no pending_id; a post or void names its pending_id, ledgers 0\n",
    "and no user_data_64 (it keeps the pending trade's).\n",
    "Flags: linked, pending, post_pending_trade, void_pending_trade.\n\n",
    file_rules!(),
);

#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Create the accounts in FILE (CSV with a header row, or a JSON array; `-` = stdin).
    #[command(after_long_help = ACCOUNT_COLUMNS)]
    CreateAccounts { file: PathBuf },
    /// Create the transfers in FILE (CSV with a header row, or a JSON array; `-` = stdin).
    #[command(after_long_help = TRANSFER_COLUMNS)]
    CreateTransfers { file: PathBuf },
    /// Create the DvP trades in FILE (CSV with a header row, or a JSON array; `-` = stdin).
    #[command(after_long_help = TRADE_COLUMNS)]
    CreateTrades { file: PathBuf },
    /// Look accounts up by id.
    LookupAccounts {
        ids: Vec<String>,
        /// Also write a proof bundle of the accounts found (their creation's leaves and
        /// inclusion proofs against the latest signed checkpoint) to FILE, for `tally verify`.
        #[arg(long, value_name = "FILE")]
        prove: Option<PathBuf>,
    },
    /// Look transfers up by id.
    LookupTransfers {
        ids: Vec<String>,
        /// Also write a proof bundle of the transfers found to FILE, for `tally verify`.
        #[arg(long, value_name = "FILE")]
        prove: Option<PathBuf>,
    },
    /// Look trades up by id.
    LookupTrades {
        ids: Vec<String>,
        /// Also write a proof bundle of the trades found to FILE, for `tally verify`.
        #[arg(long, value_name = "FILE")]
        prove: Option<PathBuf>,
    },
    /// Who read ACCOUNT: every read of it recorded in the access trail (by whom, how, when),
    /// newest first, verified against the trail's signed checkpoint and chain with the
    /// cluster's verifier key (`tally admin status` prints it).
    Reads {
        account: String,
        /// The cluster's verifier key.
        #[arg(long)]
        key: String,
    },
    /// Hand the cluster a witness's cosignature of checkpoint --index (the line `tally witness
    /// add-checkpoint` printed, in FILE; `-` = stdin), to keep and serve with the checkpoint.
    Cosign {
        #[arg(long)]
        index: u64,
        file: PathBuf,
    },
    /// Print a signed checkpoint of the verifiable log (the latest without --index or
    /// --covering), or with --witness-old the `add-checkpoint` request for a witness that
    /// cosigned that size.
    Checkpoint {
        #[arg(long, conflicts_with = "covering")]
        index: Option<u64>,
        /// The oldest checkpoint covering every event committed up to this commit index (a
        /// create's "committed through index N"); refused until one is signed (about 1 s).
        #[arg(long)]
        covering: Option<u64>,
        /// The size of the latest checkpoint the witness cosigned (0 for none).
        #[arg(long)]
        witness_old: Option<u64>,
    },
    /// An account's statement: every change to its balances, oldest first, each with the
    /// balances after it. The account filter (--debits-only, --credits-only, --code,
    /// --user-data-*) keeps only the events that match; an expiry matches as the pending event
    /// it released.
    Statement {
        account: String,
        /// Oldest timestamp included (ns).
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Newest timestamp included (ns); 0 = no bound.
        #[arg(long, default_value_t = 0)]
        to: u64,
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        /// Newest first.
        #[arg(long)]
        newest_first: bool,
        /// Only events that debit the account.
        #[arg(long, conflicts_with = "credits_only")]
        debits_only: bool,
        /// Only events that credit the account.
        #[arg(long)]
        credits_only: bool,
        #[command(flatten)]
        fields: crate::query_cli::FieldArgs,
    },
    /// An account's balances after every change up to a time (ns since the epoch).
    Balances {
        account: String,
        #[arg(long)]
        at: u64,
    },
    /// Net settlement: instructions, settlement cycles and their reports.
    Cycle {
        #[command(subcommand)]
        command: crate::cycle_cli::CycleCommand,
    },
    /// Accounts, transfers and trades by ledger, code, user data and time, and every
    /// account's balances as of a time; all pages in turn.
    Query {
        #[command(subcommand)]
        command: crate::query_cli::QueryCommand,
    },
    /// Positions as of a time, or the events of a time range, to a CSV or JSON-lines file with
    /// a manifest (counts, per-ledger totals, the history it reflects).
    Export {
        #[command(subcommand)]
        command: crate::query_cli::ExportCommand,
    },
    /// Every applied event (accounts created, transfers, trades, expiries) from --from on, in
    /// timestamp order, as JSON lines on standard output, each with its position (its
    /// timestamp); goes on with new events as they are applied. Resume after a disconnect
    /// with --from one past the last position written.
    Follow {
        /// The first position (timestamp, ns) to write.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// How often to ask for new events once caught up (ms).
        #[arg(long, default_value_t = 100)]
        poll_ms: u64,
        /// End once everything the cluster holds is written.
        #[arg(long)]
        until_caught_up: bool,
    },
}

/// How a `tally client` run ended, as an exit code.
pub enum Ended {
    Done,
    EventsFailed,
    /// Some ids asked for were not found: absent, or outside the credential's scope (a
    /// reader cannot tell the two apart, by design).
    NotFound,
}

/// What a read of `asked` ids that found `found` ends with: the ids not found are said on
/// standard error, as absent or out of scope (the node answers both alike).
pub(crate) fn found_all(asked: &[u128], found: impl Iterator<Item = u128>) -> Ended {
    let found: std::collections::HashSet<u128> = found.collect();
    let missing: Vec<String> = asked
        .iter()
        .filter(|id| !found.contains(id))
        .map(u128::to_string)
        .collect();
    if missing.is_empty() {
        return Ended::Done;
    }
    eprintln!("not found (or not in your scope): {}", missing.join(", "));
    Ended::NotFound
}

/// A statement's or balances' answer for an account that is absent or outside the scope: said
/// as not found, like a lookup's missing id.
fn account_read<T>(account_id: u128, read: Result<T, ClientError>) -> anyhow::Result<Option<T>> {
    match read {
        Ok(value) => Ok(Some(value)),
        Err(ClientError::Refused {
            status: tally_client::protocol::Status::NotFound,
            ..
        }) => {
            found_all(&[account_id], std::iter::empty());
            Ok(None)
        }
        Err(error) => Err(error.into()),
    }
}

pub(crate) fn flag_bits(text: &str, names: &[(&str, u16)]) -> anyhow::Result<u16> {
    let mut bits = 0;
    for name in text.split(['|', ' ', ';']).filter(|name| !name.is_empty()) {
        let Some((_, bit)) = names
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
        else {
            let known: Vec<&str> = names.iter().map(|(known, _)| *known).collect();
            bail!("unknown flag {name:?}; known: {}", known.join(", "));
        };
        bits |= bit;
    }
    Ok(bits)
}

const ACCOUNT_FLAGS: &[(&str, u16)] = &[
    ("linked", AccountFlags::LINKED.0),
    (
        "debits_must_not_exceed_credits",
        AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS.0,
    ),
    (
        "credits_must_not_exceed_debits",
        AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS.0,
    ),
    ("history", AccountFlags::HISTORY.0),
    // State, not a choice: set and cleared by closing transfers (a create asking for it is
    // refused by the engine, `closed_flag_must_not_be_set`), listed so lookups show it.
    ("closed", AccountFlags::CLOSED.0),
];
const TRANSFER_FLAGS: &[(&str, u16)] = &[
    ("linked", TransferFlags::LINKED.0),
    ("pending", TransferFlags::PENDING.0),
    (
        "post_pending_transfer",
        TransferFlags::POST_PENDING_TRANSFER.0,
    ),
    (
        "void_pending_transfer",
        TransferFlags::VOID_PENDING_TRANSFER.0,
    ),
    ("balancing_debit", TransferFlags::BALANCING_DEBIT.0),
    ("balancing_credit", TransferFlags::BALANCING_CREDIT.0),
    ("closing_debit", TransferFlags::CLOSING_DEBIT.0),
    ("closing_credit", TransferFlags::CLOSING_CREDIT.0),
];
const TRADE_FLAGS: &[(&str, u16)] = &[
    ("linked", TradeFlags::LINKED.0),
    ("pending", TradeFlags::PENDING.0),
    ("post_pending_trade", TradeFlags::POST_PENDING_TRADE.0),
    ("void_pending_trade", TradeFlags::VOID_PENDING_TRADE.0),
];

pub(crate) fn flag_names(bits: u16, names: &[(&str, u16)]) -> String {
    let set: Vec<&str> = names
        .iter()
        .filter(|(_, bit)| bits & bit != 0)
        .map(|(name, _)| *name)
        .collect();
    set.join("|")
}

/// `json` with every integer literal too large for a u64 quoted, so it reaches [`Number`]
/// exactly: serde_json reads such a literal as a lossy f64 otherwise.
pub(crate) fn quote_big_integers(json: &str) -> std::borrow::Cow<'_, str> {
    let bytes = json.as_bytes();
    let mut out: Option<String> = None;
    let (mut in_string, mut escaped, mut copied) = (false, false, 0);
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if byte == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if byte.is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let is_integer = !matches!(bytes.get(i), Some(b'.' | b'e' | b'E'));
            let digits = &json[start..i];
            if is_integer && digits.parse::<u64>().is_err() {
                let out = out.get_or_insert_with(|| String::with_capacity(json.len() + 64));
                out.push_str(&json[copied..start]);
                out.push('"');
                out.push_str(digits);
                out.push('"');
                copied = i;
            }
            continue;
        }
        i += 1;
    }
    match out {
        None => std::borrow::Cow::Borrowed(json),
        Some(mut out) => {
            out.push_str(&json[copied..]);
            std::borrow::Cow::Owned(out)
        }
    }
}

/// A number column's value: empty (an optional column left out) is 0; otherwise an unsigned
/// integer up to u128 in decimal or `0x` hex.
pub(crate) fn number(text: &str, column: &str) -> anyhow::Result<u128> {
    if text.is_empty() {
        return Ok(0);
    }
    parse_u128(text).with_context(|| format!("column {column}"))
}

/// A number column's value narrowed to its field's type.
pub(crate) fn narrow<T: TryFrom<u128>>(text: &str, column: &str) -> anyhow::Result<T> {
    let value = number(text, column)?;
    T::try_from(value).map_err(|_| anyhow::anyhow!("column {column}: {value} is out of range"))
}

/// How `tally client create-accounts` reads a row.
const ACCOUNT_ROWS: RecordKind = RecordKind {
    columns: &[
        "id",
        "ledger",
        "code",
        "flags",
        "limit",
        "user_data_128",
        "user_data_64",
    ],
    required: 3,
    build: account_record,
};

fn account_record(v: &[&str]) -> anyhow::Result<(u128, [u8; 128])> {
    let [id, ledger, code, flags, limit, user_data_128, user_data_64] = v else {
        bail!("{} values for 7 columns", v.len());
    };
    let account = Account {
        id: number(id, "id")?,
        ledger: narrow(ledger, "ledger")?,
        code: narrow(code, "code")?,
        flags: AccountFlags(flag_bits(flags, ACCOUNT_FLAGS)?),
        limit: narrow(limit, "limit")?,
        user_data_128: number(user_data_128, "user_data_128")?,
        user_data_64: narrow(user_data_64, "user_data_64")?,
        ..Account::default()
    };
    Ok((account.id, account.encode()))
}

/// How `tally client create-transfers` reads a row.
const TRANSFER_ROWS: RecordKind = RecordKind {
    columns: &[
        "id",
        "debit_account_id",
        "credit_account_id",
        "amount",
        "ledger",
        "code",
        "flags",
        "pending_id",
        "timeout",
        "user_data_128",
        "user_data_64",
        "user_data_32",
    ],
    required: 6,
    build: transfer_record,
};

fn transfer_record(v: &[&str]) -> anyhow::Result<(u128, [u8; 128])> {
    let [id, debit, credit, amount, ledger, code, flags, pending_id, timeout, ud128, ud64, ud32] =
        v
    else {
        bail!("{} values for 12 columns", v.len());
    };
    let transfer = Transfer {
        id: number(id, "id")?,
        debit_account_id: number(debit, "debit_account_id")?,
        credit_account_id: number(credit, "credit_account_id")?,
        amount: number(amount, "amount")?,
        ledger: narrow(ledger, "ledger")?,
        code: narrow(code, "code")?,
        flags: TransferFlags(flag_bits(flags, TRANSFER_FLAGS)?),
        pending_id: number(pending_id, "pending_id")?,
        timeout: narrow(timeout, "timeout")?,
        user_data_128: number(ud128, "user_data_128")?,
        user_data_64: narrow(ud64, "user_data_64")?,
        user_data_32: narrow(ud32, "user_data_32")?,
        ..Transfer::default()
    };
    Ok((transfer.id, transfer.encode()))
}

/// How `tally client create-trades` reads a row.
const TRADE_ROWS: RecordKind = RecordKind {
    columns: &[
        "id",
        "instrument_debit_account_id",
        "instrument_credit_account_id",
        "cash_debit_account_id",
        "cash_credit_account_id",
        "instrument_ledger",
        "cash_ledger",
        "quantity",
        "cash_amount",
        "code",
        "flags",
        "pending_id",
        "timeout",
        "user_data_64",
    ],
    required: 10,
    build: trade_record,
};

fn trade_record(v: &[&str]) -> anyhow::Result<(u128, [u8; 128])> {
    let [id, instrument_debit, instrument_credit, cash_debit, cash_credit, instrument_ledger, cash_ledger, quantity, cash_amount, code, flags, pending_id, timeout, ud64] =
        v
    else {
        bail!("{} values for 14 columns", v.len());
    };
    let trade = Trade {
        id: number(id, "id")?,
        instrument_debit_account_id: number(instrument_debit, "instrument_debit_account_id")?,
        instrument_credit_account_id: number(instrument_credit, "instrument_credit_account_id")?,
        cash_debit_account_id: number(cash_debit, "cash_debit_account_id")?,
        cash_credit_account_id: number(cash_credit, "cash_credit_account_id")?,
        instrument_ledger: narrow(instrument_ledger, "instrument_ledger")?,
        cash_ledger: narrow(cash_ledger, "cash_ledger")?,
        quantity: narrow(quantity, "quantity")?,
        cash_amount: narrow(cash_amount, "cash_amount")?,
        code: narrow(code, "code")?,
        flags: TradeFlags(flag_bits(flags, TRADE_FLAGS)?),
        pending_id: number(pending_id, "pending_id")?,
        timeout: narrow(timeout, "timeout")?,
        user_data_64: narrow(ud64, "user_data_64")?,
        ..Trade::default()
    };
    // The record holds the ledgers where a post or void holds its pending id: one of the two
    // is refused here rather than dropped.
    if Trade::resolves(trade.flags)
        && (
            trade.instrument_ledger,
            trade.cash_ledger,
            trade.user_data_64,
        ) != (0, 0, 0)
    {
        bail!(
            "a post or void names no ledgers and no user data (they are its pending trade's): \
             leave them 0"
        );
    }
    if !Trade::resolves(trade.flags) && trade.pending_id != 0 {
        bail!("pending_id is for a post or void only; a new trade names its ledgers");
    }
    Ok((trade.id, trade.encode()))
}

/// Check `file` whole (bad input exits 2 before any connection is made), then import it and
/// say what it did: on standard error, or for a table also the summary line on standard output.
pub(crate) async fn create_from_file(
    file: &std::path::Path,
    in_flight: u8,
    rate: Option<u64>,
    operation: Operation,
    kind: &'static RecordKind,
    config: ClientConfig,
    output: Output,
) -> anyhow::Result<Ended> {
    let checked = Checked::check(Input::open(file)?, kind).await?;
    let client = Client::connect(config).await?;
    let summary = checked
        .import(operation, &client, usize::from(in_flight), rate, output)
        .await;
    client.close().await;
    let summary = summary?;
    let mut line = if summary.existed == 0 && summary.failed == 0 {
        format!("all {} events succeeded", summary.events)
    } else {
        format!(
            "{} events: {} created, {} already existed, {} failed",
            summary.events, summary.created, summary.existed, summary.failed
        )
    };
    // The handle to the signed checkpoint that covers them (on a cluster with a key).
    if summary.committed_through > 0 {
        line.push_str(&format!(
            "; committed through index {0} (its checkpoint: tally client checkpoint --covering \
             {0})",
            summary.committed_through
        ));
    }
    if matches!(output, Output::Table) {
        println!("{line}");
    } else {
        eprintln!("{line}");
    }
    Ok(if summary.failed == 0 {
        Ended::Done
    } else {
        Ended::EventsFailed
    })
}

/// A table: column names and rows of text, printed in the chosen format.
pub(crate) struct Table {
    pub(crate) columns: Vec<&'static str>,
    pub(crate) rows: Vec<Vec<String>>,
}

/// Print the records a lookup of `asked` found; the ids not found are said on standard error.
/// An account's columns in lookups and queries, and its row.
pub(crate) const ACCOUNT_SHOWN: [&str; 11] = [
    "id",
    "ledger",
    "code",
    "flags",
    "debits_pending",
    "debits_posted",
    "credits_pending",
    "credits_posted",
    "user_data_128",
    "user_data_64",
    "timestamp",
];

pub(crate) fn account_row(a: &Account) -> Vec<String> {
    vec![
        a.id.to_string(),
        a.ledger.to_string(),
        a.code.to_string(),
        flag_names(a.flags.0, ACCOUNT_FLAGS),
        a.debits_pending.to_string(),
        a.debits_posted.to_string(),
        a.credits_pending.to_string(),
        a.credits_posted.to_string(),
        a.user_data_128.to_string(),
        a.user_data_64.to_string(),
        a.timestamp.to_string(),
    ]
}

/// A transfer's columns in lookups and queries, and its row.
pub(crate) const TRANSFER_SHOWN: [&str; 12] = [
    "id",
    "debit_account_id",
    "credit_account_id",
    "amount",
    "ledger",
    "code",
    "flags",
    "pending_id",
    "user_data_128",
    "user_data_64",
    "user_data_32",
    "timestamp",
];

pub(crate) fn transfer_row(t: &Transfer) -> Vec<String> {
    vec![
        t.id.to_string(),
        t.debit_account_id.to_string(),
        t.credit_account_id.to_string(),
        t.amount.to_string(),
        t.ledger.to_string(),
        t.code.to_string(),
        flag_names(t.flags.0, TRANSFER_FLAGS),
        t.pending_id.to_string(),
        t.user_data_128.to_string(),
        t.user_data_64.to_string(),
        t.user_data_32.to_string(),
        t.timestamp.to_string(),
    ]
}

/// A trade's columns in lookups and queries, and its row.
pub(crate) const TRADE_SHOWN: [&str; 14] = [
    "id",
    "seller_instrument",
    "buyer_instrument",
    "buyer_cash",
    "seller_cash",
    "instrument_ledger",
    "cash_ledger",
    "quantity",
    "cash_amount",
    "code",
    "flags",
    "pending_id",
    "user_data_64",
    "timestamp",
];

pub(crate) fn trade_row(t: &Trade) -> Vec<String> {
    vec![
        t.id.to_string(),
        t.instrument_debit_account_id.to_string(),
        t.instrument_credit_account_id.to_string(),
        t.cash_debit_account_id.to_string(),
        t.cash_credit_account_id.to_string(),
        t.instrument_ledger.to_string(),
        t.cash_ledger.to_string(),
        t.quantity.to_string(),
        t.cash_amount.to_string(),
        t.code.to_string(),
        flag_names(t.flags.0, TRADE_FLAGS),
        t.pending_id.to_string(),
        t.user_data_64.to_string(),
        t.timestamp.to_string(),
    ]
}

fn print_records<T>(
    output: Output,
    asked: &[u128],
    columns: Vec<&'static str>,
    records: &[T],
    id: impl Fn(&T) -> u128,
    row: impl Fn(&T) -> Vec<String>,
) -> anyhow::Result<Ended> {
    Table {
        columns,
        rows: records.iter().map(row).collect(),
    }
    .print(output)?;
    Ok(found_all(asked, records.iter().map(id)))
}

impl Table {
    pub(crate) fn print(&self, output: Output) -> anyhow::Result<()> {
        match output {
            Output::Json => {
                let objects: Vec<serde_json::Map<String, serde_json::Value>> = self
                    .rows
                    .iter()
                    .map(|row| {
                        self.columns
                            .iter()
                            .zip(row)
                            .map(|(column, value)| {
                                (
                                    (*column).to_owned(),
                                    serde_json::Value::String(value.clone()),
                                )
                            })
                            .collect()
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&objects)?);
            }
            Output::Csv => {
                let mut writer = csv::Writer::from_writer(std::io::stdout());
                writer.write_record(&self.columns)?;
                for row in &self.rows {
                    writer.write_record(row)?;
                }
                writer.flush()?;
            }
            Output::Table => {
                let mut widths: Vec<usize> =
                    self.columns.iter().map(|column| column.len()).collect();
                for row in &self.rows {
                    for (width, value) in widths.iter_mut().zip(row) {
                        *width = (*width).max(value.len());
                    }
                }
                let line = |cells: Vec<String>| {
                    let padded: Vec<String> = cells
                        .iter()
                        .zip(&widths)
                        .map(|(cell, width)| format!("{cell:>width$}"))
                        .collect();
                    println!("{}", padded.join("  ").trim_end());
                };
                line(
                    self.columns
                        .iter()
                        .map(|column| (*column).to_owned())
                        .collect(),
                );
                for row in &self.rows {
                    line(row.clone());
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn ids(texts: &[String]) -> anyhow::Result<Vec<u128>> {
    if texts.is_empty() {
        bail!("give at least one id");
    }
    texts.iter().map(|text| parse_u128(text)).collect()
}

fn balances_row(b: &tally_engine::Balances) -> Vec<String> {
    vec![
        b.debits_pending.to_string(),
        b.debits_posted.to_string(),
        b.credits_pending.to_string(),
        b.credits_posted.to_string(),
    ]
}

/// Read and check the input, before connecting: bad input never reaches the cluster.
pub async fn run(args: ClientArgs) -> anyhow::Result<Ended> {
    let config = args.connect.config()?;
    let output = args.output;
    match &args.command {
        ClientCommand::Cycle { command } => {
            crate::cycle_cli::run(command, config, output, args.in_flight, args.rate).await
        }
        ClientCommand::Query { command } => crate::query_cli::run(command, config, output).await,
        ClientCommand::Export { command } => crate::query_cli::export(command, config).await,
        ClientCommand::Follow {
            from,
            poll_ms,
            until_caught_up,
        } => {
            let poll = std::time::Duration::from_millis(*poll_ms);
            crate::query_cli::follow(config, *from, poll, *until_caught_up).await
        }
        ClientCommand::CreateAccounts { file } => {
            create_from_file(
                file,
                args.in_flight,
                args.rate,
                Operation::CreateAccounts,
                &ACCOUNT_ROWS,
                config,
                output,
            )
            .await
        }
        ClientCommand::CreateTransfers { file } => {
            create_from_file(
                file,
                args.in_flight,
                args.rate,
                Operation::CreateTransfers,
                &TRANSFER_ROWS,
                config,
                output,
            )
            .await
        }
        ClientCommand::CreateTrades { file } => {
            create_from_file(
                file,
                args.in_flight,
                args.rate,
                Operation::CreateTrades,
                &TRADE_ROWS,
                config,
                output,
            )
            .await
        }
        ClientCommand::LookupAccounts { ids: texts, prove } => {
            let ids = ids(texts)?;
            let client = Client::connect(config).await?;
            let prove = async |client: &Client, found: usize| match prove {
                Some(path) => prove_to_file(client, &ids, found, true, path).await,
                None => Ok(()),
            };
            let found = client.lookup_accounts(&ids).await?;
            prove(&client, found.len()).await?;
            print_records(
                output,
                &ids,
                ACCOUNT_SHOWN.to_vec(),
                &found,
                |a| a.id,
                account_row,
            )
        }
        ClientCommand::LookupTransfers { ids: texts, prove } => {
            let ids = ids(texts)?;
            let client = Client::connect(config).await?;
            let prove = async |client: &Client, found: usize| match prove {
                Some(path) => prove_to_file(client, &ids, found, false, path).await,
                None => Ok(()),
            };
            let found = client.lookup_transfers(&ids).await?;
            prove(&client, found.len()).await?;
            print_records(
                output,
                &ids,
                TRANSFER_SHOWN.to_vec(),
                &found,
                |t| t.id,
                transfer_row,
            )
        }
        ClientCommand::LookupTrades { ids: texts, prove } => {
            let ids = ids(texts)?;
            let client = Client::connect(config).await?;
            let prove = async |client: &Client, found: usize| match prove {
                Some(path) => prove_to_file(client, &ids, found, false, path).await,
                None => Ok(()),
            };
            let found = client.lookup_trades(&ids).await?;
            prove(&client, found.len()).await?;
            print_records(
                output,
                &ids,
                TRADE_SHOWN.to_vec(),
                &found,
                |t| t.id,
                trade_row,
            )
        }
        ClientCommand::Statement {
            account,
            from,
            to,
            limit,
            newest_first,
            debits_only,
            credits_only,
            fields,
        } => {
            let fields = fields.read()?;
            let filter = StatementFilter {
                account_id: parse_u128(account)?,
                timestamp_min: *from,
                timestamp_max: *to,
                limit: *limit,
                reversed: *newest_first,
                user_data_128: fields.user_data_128,
                user_data_64: fields.user_data_64,
                user_data_32: fields.user_data_32,
                code: fields.code,
                debits: *debits_only,
                credits: *credits_only,
            };
            let client = Client::connect(config).await?;
            let Some(entries) = account_read(filter.account_id, client.statement(&filter).await)?
            else {
                return Ok(Ended::NotFound);
            };
            let mut columns = vec!["timestamp", "event", "id", "amount"];
            columns.extend([
                "debits_pending",
                "debits_posted",
                "credits_pending",
                "credits_posted",
            ]);
            Table {
                columns,
                rows: entries
                    .iter()
                    .map(|entry| {
                        let (event, id, amount) = match &entry.event {
                            StatementEvent::Transfer(t) => ("transfer", t.id, t.amount.to_string()),
                            StatementEvent::Trade(t) => {
                                ("trade", t.id, format!("{}/{}", t.quantity, t.cash_amount))
                            }
                            StatementEvent::TransferExpired { pending_id } => {
                                ("transfer expired", *pending_id, String::new())
                            }
                            StatementEvent::TradeExpired { pending_id } => {
                                ("trade expired", *pending_id, String::new())
                            }
                        };
                        let mut row = vec![
                            entry.timestamp.to_string(),
                            event.to_owned(),
                            id.to_string(),
                            amount,
                        ];
                        row.extend(balances_row(&entry.balances_after));
                        row
                    })
                    .collect(),
            }
            .print(output)?;
            Ok(Ended::Done)
        }
        ClientCommand::Reads { account, key } => {
            let account = parse_u128(account)?;
            let client = Client::connect(config).await?;
            let json = matches!(output, Output::Json);
            crate::access_trail::print_trail(&client, account, key, json).await?;
            Ok(Ended::Done)
        }
        ClientCommand::Cosign { index, file } => {
            let line = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let client = Client::connect(config).await?;
            client.cosign(*index, line.trim_end()).await?;
            eprintln!("the cosignature of checkpoint {index} is kept by the cluster");
            Ok(Ended::Done)
        }
        ClientCommand::Checkpoint {
            index,
            covering,
            witness_old,
        } => {
            let client = Client::connect(config).await?;
            let which = match (index, covering) {
                (_, Some(commit_index)) => WhichCheckpoint::Covering(*commit_index),
                (index, None) => WhichCheckpoint::Index(index.unwrap_or(LATEST)),
            };
            print!("{}", checkpoint(&client, which, *witness_old).await?);
            Ok(Ended::Done)
        }
        ClientCommand::Balances { account, at } => {
            let account_id = parse_u128(account)?;
            let client = Client::connect(config).await?;
            let Some(balances) =
                account_read(account_id, client.balances_as_of(account_id, *at).await)?
            else {
                return Ok(Ended::NotFound);
            };
            Table {
                columns: vec![
                    "debits_pending",
                    "debits_posted",
                    "credits_pending",
                    "credits_posted",
                ],
                rows: vec![balances_row(&balances)],
            }
            .print(output)?;
            Ok(Ended::Done)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The transfers of the file at `path`, as `tally client create-transfers` reads them.
    fn transfers_in(path: &std::path::Path) -> anyhow::Result<Vec<Transfer>> {
        let mut out = Vec::new();
        Input::open(path)?.events(&TRANSFER_ROWS, |event| {
            out.push(Transfer::decode(&event.record).expect("a valid record"));
            Ok(())
        })?;
        Ok(out)
    }

    /// Proves CSV and JSON inputs parse to the same records, and bad input is refused with a
    /// message naming the problem.
    #[test]
    fn csv_and_json_inputs_agree_and_bad_input_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let csv_path = dir.path().join("t.csv");
        std::fs::write(
            &csv_path,
            "id,debit_account_id,credit_account_id,amount,ledger,code,flags\n7,1,2,100,1,10,pending|linked\n",
        )
        .expect("write");
        let json_path = dir.path().join("t.json");
        std::fs::write(
            &json_path,
            r#"[{"id":"7","debit_account_id":1,"credit_account_id":2,"amount":100,"ledger":1,"code":10,"flags":"linked|pending"}]"#,
        )
        .expect("write");
        let a = transfers_in(&csv_path).expect("csv")[0];
        let b = transfers_in(&json_path).expect("json")[0];
        assert_eq!(a, b);
        assert_eq!(a.flags, TransferFlags::PENDING | TransferFlags::LINKED);

        std::fs::write(&csv_path, "id,debit_account_id,credit_account_id,amount,ledger,code,flags\n7,1,2,100,1,10,sideways\n")
            .expect("write");
        let error = transfers_in(&csv_path).expect_err("unknown flag");
        assert!(format!("{error:#}").contains("sideways"), "{error:#}");
        assert!(format!("{error:#}").contains("line 2"), "{error:#}");
        std::fs::write(
            &csv_path,
            "id,debit_account_id,credit_account_id,amount,ledger,code\n7,1,2,100,99999999999,10\n",
        )
        .expect("write");
        assert!(
            transfers_in(&csv_path).is_err(),
            "a ledger over u32 is refused"
        );
        std::fs::write(&csv_path, "id,colour\n1,red\n").expect("write");
        assert!(
            transfers_in(&csv_path).is_err(),
            "unknown columns are refused"
        );
    }

    /// Proves u128 ids and amounts above 2^64 read exactly in decimal and in hex, as CSV
    /// fields and as JSON numbers or strings (a JSON number that large would otherwise become a
    /// lossy double), and that negative or fractional numbers are refused.
    #[test]
    fn u128_above_two_to_the_64_reads_exactly_in_csv_and_json() {
        let dir = tempfile::tempdir().expect("tempdir");
        let max = u128::MAX.to_string();
        let csv_path = dir.path().join("big.csv");
        std::fs::write(
            &csv_path,
            format!(
                "id,debit_account_id,credit_account_id,amount,ledger,code\n\
                 18446744073709551616,0x10000000000000001,2,{max},1,1\n"
            ),
        )
        .expect("write");
        let json_path = dir.path().join("big.json");
        std::fs::write(
            &json_path,
            format!(
                r#"[{{"id":18446744073709551616,"debit_account_id":"0x10000000000000001","credit_account_id":2,"amount":"{max}","ledger":1,"code":1,"flags":"linked"}}]"#
            ),
        )
        .expect("write");
        for path in [&csv_path, &json_path] {
            let transfer = transfers_in(path).expect("parses")[0];
            assert_eq!(transfer.id, 1u128 << 64, "{}", path.display());
            assert_eq!(transfer.debit_account_id, (1u128 << 64) + 1);
            assert_eq!(transfer.amount, u128::MAX);
        }
        // A huge number as a JSON number inside a string is left alone.
        assert_eq!(
            quote_big_integers(r#"{"a":"x 18446744073709551616","b":18446744073709551616}"#),
            r#"{"a":"x 18446744073709551616","b":"18446744073709551616"}"#
        );
        for bad in [
            "-1",
            "1.5",
            "1e3",
            "340282366920938463463374607431768211456",
        ] {
            std::fs::write(
                &csv_path,
                format!(
                    "id,debit_account_id,credit_account_id,amount,ledger,code\n{bad},1,2,3,1,1\n"
                ),
            )
            .expect("write");
            assert!(transfers_in(&csv_path).is_err(), "{bad} is refused");
        }
    }

    /// Proves a header is checked before any row: an unknown column, a column named twice
    /// and a missing required column are refused on line 1, naming the column; an empty
    /// required value is refused on its line; optional columns may be left out or empty.
    #[test]
    fn headers_and_required_columns_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.csv");
        for (content, expect) in [
            (
                "id,debit_account_id,credit_account_id,amount,ledger,code,colour\n",
                "\"colour\"",
            ),
            (
                "id,id,debit_account_id,credit_account_id,amount,ledger,code\n",
                "named twice",
            ),
            (
                "id,debit_account_id,credit_account_id,amount,ledger\n1,1,2,3,1\n",
                "\"code\"",
            ),
            (
                "id,debit_account_id,credit_account_id,amount,ledger,code\n1,1,2,,1,1\n",
                "line 2: column amount is required",
            ),
        ] {
            std::fs::write(&path, content).expect("write");
            let error = format!("{:#}", transfers_in(&path).expect_err(expect));
            assert!(error.contains(expect), "{expect}: {error}");
        }
        std::fs::write(
            &path,
            " id , code, ledger ,amount,credit_account_id,debit_account_id,pending_id\n7,1,1,5,2,1,\n",
        )
        .expect("write");
        let transfer = transfers_in(&path).expect("columns in any order, padded")[0];
        assert_eq!(
            (transfer.id, transfer.amount, transfer.pending_id),
            (7, 5, 0)
        );
    }

    /// Proves each create command's help names every column and flag the reader accepts, so
    /// the help cannot drift from the code.
    #[test]
    fn help_names_every_column_and_flag() {
        for (help, kind, flags) in [
            (ACCOUNT_COLUMNS, &ACCOUNT_ROWS, ACCOUNT_FLAGS),
            (TRANSFER_COLUMNS, &TRANSFER_ROWS, TRANSFER_FLAGS),
            (TRADE_COLUMNS, &TRADE_ROWS, TRADE_FLAGS),
        ] {
            for name in kind.columns {
                assert!(
                    help.contains(name),
                    "column {name} is missing from:\n{help}"
                );
            }
            for (name, _) in flags {
                assert!(help.contains(name), "{name} is missing from:\n{help}");
            }
            assert!(help.contains("0x hex") && help.contains("Exit codes"));
        }
    }
}
