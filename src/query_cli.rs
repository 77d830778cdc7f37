//! `tally client query`: accounts, transfers and trades by field (ledger, code, user data, a
//! time range), and every account's balances as of a time — TigerBeetle's `query_accounts` /
//! `query_transfers` and the positions a reconciliation compares. Every page is fetched in
//! turn (docs/protocol.md, "Queries"); CSV is written page by page, so a query of any size
//! runs in bounded memory.

use anyhow::bail;
use tally_client::{Client, ClientConfig, HistoryReached};
use tally_engine::{FeedEntry, LedgerEvent, Position, QueryFilter, QueryPage, StatementEvent};

use crate::client_cli::{account_row, trade_row, transfer_row, Ended, Output, Table};
use crate::client_cli::{ACCOUNT_SHOWN, TRADE_SHOWN, TRANSFER_SHOWN};
use crate::config::parse_u128;
use crate::export_file::ColumnType::{Text, U128, U16, U32, U64};
use crate::export_file::{Column, ExportFile, ExportWriter};

#[derive(Debug, clap::Subcommand)]
pub enum QueryCommand {
    /// Accounts matching the filter, oldest first.
    Accounts(QueryArgs),
    /// Transfers matching the filter, oldest first.
    Transfers(QueryArgs),
    /// Trades matching the filter (a trade matches --ledger on either leg), oldest first.
    Trades(QueryArgs),
    /// Accounts matching the filter with their balances after every change up to --at: the
    /// ledger's positions at a cut-off.
    Positions {
        #[command(flatten)]
        filter: QueryArgs,
        /// The time (ns since the epoch) the balances are as of; 0: now. Accounts created
        /// after it are left out.
        #[arg(long, default_value_t = 0)]
        at: u64,
    },
}

/// `tally client export`: a file a downstream system can trust to be complete, with a manifest.
#[derive(Debug, clap::Subcommand)]
pub enum ExportCommand {
    /// Every account's balances as of --at (of --ledger, or every ledger), to --out, with a
    /// manifest (--out plus `.manifest.json`: counts, per-ledger totals, the history it
    /// reflects). --at must be a time the ledger's history has reached, so the file can never
    /// change afterwards.
    Positions {
        /// Only this ledger's accounts.
        #[arg(long)]
        ledger: Option<u32>,
        /// The time (ns since the epoch) the balances are as of.
        #[arg(long)]
        at: u64,
        #[command(flatten)]
        file: ExportFile,
    },
    /// Every applied event (accounts created, transfers, trades, expiries) with a timestamp
    /// in --from..=--to, in timestamp order, to --out, with a manifest. --to must be a time
    /// the ledger's history has reached.
    Events {
        #[arg(long)]
        from: u64,
        #[arg(long)]
        to: u64,
        #[command(flatten)]
        file: ExportFile,
    },
}

/// The record fields a filter compares (queries and statements alike): every field given must
/// equal the record's; none given compares nothing. 0 is refused: on the wire it means "any".
#[derive(Debug, clap::Args)]
pub struct FieldArgs {
    #[arg(long)]
    code: Option<u16>,
    /// Decimal or 0x hex.
    #[arg(long)]
    user_data_128: Option<String>,
    #[arg(long)]
    user_data_64: Option<u64>,
    /// Transfers only.
    #[arg(long)]
    user_data_32: Option<u32>,
}

/// [`FieldArgs`] read: 0 where a field was not given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fields {
    pub code: u16,
    pub user_data_128: u128,
    pub user_data_64: u64,
    pub user_data_32: u32,
}

/// Refuses `--name 0`: it would match everything, which leaving the flag out says.
pub fn zero_is_any(given: Option<u128>, name: &str) -> anyhow::Result<()> {
    if given == Some(0) {
        bail!("--{name} 0 matches everything: leave it out instead");
    }
    Ok(())
}

impl FieldArgs {
    pub fn read(&self) -> anyhow::Result<Fields> {
        zero_is_any(self.code.map(u128::from), "code")?;
        zero_is_any(self.user_data_64.map(u128::from), "user-data-64")?;
        zero_is_any(self.user_data_32.map(u128::from), "user-data-32")?;
        let user_data_128 = self.user_data_128.as_deref().map(parse_u128).transpose()?;
        zero_is_any(user_data_128, "user-data-128")?;
        Ok(Fields {
            code: self.code.unwrap_or(0),
            user_data_128: user_data_128.unwrap_or(0),
            user_data_64: self.user_data_64.unwrap_or(0),
            user_data_32: self.user_data_32.unwrap_or(0),
        })
    }
}

/// A query's filter: every field given must match; none given matches everything.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    #[arg(long)]
    ledger: Option<u32>,
    #[command(flatten)]
    fields: FieldArgs,
    /// Oldest timestamp included (ns since the epoch).
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Newest timestamp included (ns); 0: no bound.
    #[arg(long, default_value_t = 0)]
    to: u64,
    /// Newest first.
    #[arg(long)]
    newest_first: bool,
    /// Stop after this many records (default: all).
    #[arg(long)]
    max: Option<u64>,
}

impl QueryArgs {
    fn filter(&self) -> anyhow::Result<QueryFilter> {
        zero_is_any(self.ledger.map(u128::from), "ledger")?;
        let fields = self.fields.read()?;
        if self.to != 0 && self.from > self.to {
            bail!("--from {} is after --to {}", self.from, self.to);
        }
        if self.max == Some(0) {
            bail!("--max 0 asks for nothing");
        }
        Ok(QueryFilter {
            user_data_128: fields.user_data_128,
            user_data_64: fields.user_data_64,
            user_data_32: fields.user_data_32,
            ledger: self.ledger.unwrap_or(0),
            code: fields.code,
            timestamp_min: self.from,
            timestamp_max: self.to,
            limit: tally_engine::limits::STATEMENT_ENTRIES_MAX,
            reversed: self.newest_first,
        })
    }
}

pub async fn run(
    command: &QueryCommand,
    config: ClientConfig,
    output: Output,
) -> anyhow::Result<Ended> {
    match command {
        QueryCommand::Accounts(args) => {
            let filter = args.filter()?;
            if args.fields.user_data_32.is_some() {
                bail!("accounts have no user_data_32");
            }
            let client = Client::connect(config).await?;
            let page = async |filter: QueryFilter| client.query_accounts(&filter).await;
            print_all(output, &ACCOUNT_SHOWN, filter, args.max, page, account_row).await
        }
        QueryCommand::Transfers(args) => {
            let filter = args.filter()?;
            let client = Client::connect(config).await?;
            let page = async |filter: QueryFilter| client.query_transfers(&filter).await;
            print_all(
                output,
                &TRANSFER_SHOWN,
                filter,
                args.max,
                page,
                transfer_row,
            )
            .await
        }
        QueryCommand::Trades(args) => {
            let filter = args.filter()?;
            if args.fields.user_data_32.is_some() || args.fields.user_data_128.is_some() {
                bail!("trades have no user_data_128 or user_data_32");
            }
            let client = Client::connect(config).await?;
            let page = async |filter: QueryFilter| client.query_trades(&filter).await;
            print_all(output, &TRADE_SHOWN, filter, args.max, page, trade_row).await
        }
        QueryCommand::Positions { filter: args, at } => {
            let filter = args.filter()?;
            if args.fields.user_data_32.is_some() {
                bail!("accounts have no user_data_32");
            }
            let client = Client::connect(config).await?;
            let page = async |filter: QueryFilter| client.positions(&filter, *at).await;
            print_all(
                output,
                &crate::export_file::names(&POSITION_COLUMNS),
                filter,
                args.max,
                page,
                position_row,
            )
            .await
        }
    }
}

/// The newest timestamp of an applied event the cluster holds (that this client may see):
/// every event applied later has a later timestamp, so history up to it can no longer change.
pub(crate) async fn history_reaches(client: &Client) -> anyhow::Result<u64> {
    Ok(client.history_reached().await?.timestamp)
}

/// Writes the manifest beside `file.out` (`.manifest.json` appended to its name).
fn write_manifest(file: &ExportFile, manifest: serde_json::Value) -> anyhow::Result<()> {
    let mut path = file.out.clone().into_os_string();
    path.push(".manifest.json");
    std::fs::write(&path, serde_json::to_string_pretty(&manifest)? + "\n")?;
    Ok(())
}

/// Refuses a time the ledger's history has not reached: such an export could still change.
async fn reached(client: &Client, at: u64, flag: &str) -> anyhow::Result<HistoryReached> {
    let reached = client.history_reached().await?;
    let reaches = reached.timestamp;
    if at > reaches {
        bail!(
            "{flag} {at} is later than the ledger's history ({reaches}, its newest record): \
             records could still be added before it; export up to {reaches} or wait"
        );
    }
    Ok(reached)
}

pub async fn export(command: &ExportCommand, config: ClientConfig) -> anyhow::Result<Ended> {
    use std::collections::BTreeMap;
    match command {
        ExportCommand::Positions { ledger, at, file } => {
            if *at == 0 || *ledger == Some(0) {
                bail!("--at and --ledger must not be 0 (leave --ledger out for every ledger)");
            }
            let client = Client::connect(config).await?;
            let reaches = reached(&client, *at, "--at").await?;
            let filter = QueryFilter {
                ledger: ledger.unwrap_or(0),
                limit: tally_engine::limits::STATEMENT_ENTRIES_MAX,
                ..QueryFilter::default()
            };
            let mut writer = ExportWriter::create(file, &POSITION_COLUMNS)?;
            // Per ledger: accounts, then the four balances' sums (u128, wrapping as the
            // ledger's own totals do).
            let mut totals: BTreeMap<u32, (u64, [u128; 4])> = BTreeMap::new();
            let mut current = filter;
            loop {
                let page = client.positions(&current, *at).await?;
                for position in &page.items {
                    writer.write(position_row(position))?;
                    let b = &position.balances;
                    let entry = totals.entry(position.account.ledger).or_default();
                    entry.0 += 1;
                    for (sum, value) in entry.1.iter_mut().zip([
                        b.debits_pending,
                        b.debits_posted,
                        b.credits_pending,
                        b.credits_posted,
                    ]) {
                        *sum = sum.wrapping_add(value);
                    }
                }
                match page.next {
                    Some(next) => current = filter.after(next),
                    None => break,
                }
            }
            writer.finish()?;
            let count: u64 = totals.values().map(|(n, _)| n).sum();
            let ledgers: Vec<serde_json::Value> = totals
                .iter()
                .map(|(ledger, (n, sums))| {
                    serde_json::json!({
                        "ledger": ledger,
                        "accounts": n,
                        "debits_pending": sums[0].to_string(),
                        "debits_posted": sums[1].to_string(),
                        "credits_pending": sums[2].to_string(),
                        "credits_posted": sums[3].to_string(),
                    })
                })
                .collect();
            write_manifest(
                file,
                serde_json::json!({
                    "export": "positions",
                    "file": file.out.display().to_string(),
                    "format": file.format.name(),
                    "as_of": at,
                    "ledger": ledger,
                    "accounts": count,
                    "ledgers": ledgers,
                    "history_reached": reaches.timestamp,
                    "commit_index": reaches.commit_index,
                    "complete": true,
                }),
            )?;
            eprintln!(
                "exported {count} positions as of {at} to {}",
                file.out.display()
            );
            Ok(Ended::Done)
        }
        ExportCommand::Events { from, to, file } => {
            if *to == 0 || from > to {
                bail!("--to must be a time (not 0) and --from no later than it");
            }
            let client = Client::connect(config).await?;
            let reaches = reached(&client, *to, "--to").await?;
            let mut writer = ExportWriter::create(file, &EVENT_COLUMNS)?;
            let mut per_ledger: BTreeMap<u32, (u64, u128)> = BTreeMap::new();
            // Per kind: accounts, transfers, trades, transfers expired, trades expired.
            let mut counts = [0u64; 5];
            each_event(&client, *from, *to, async |event| {
                let kind = match &event.0.event {
                    LedgerEvent::AccountCreated(_) => 0,
                    LedgerEvent::Applied(StatementEvent::Transfer(t)) => {
                        let entry = per_ledger.entry(t.ledger).or_default();
                        entry.0 += 1;
                        entry.1 = entry.1.wrapping_add(t.amount);
                        1
                    }
                    LedgerEvent::Applied(StatementEvent::Trade(_)) => 2,
                    LedgerEvent::Applied(StatementEvent::TransferExpired { .. }) => 3,
                    LedgerEvent::Applied(StatementEvent::TradeExpired { .. }) => 4,
                };
                counts[kind] += 1;
                writer.write(event.row())
            })
            .await?;
            writer.finish()?;
            let ledgers: Vec<serde_json::Value> = per_ledger
                .iter()
                .map(|(ledger, (n, amount))| {
                    serde_json::json!({"ledger": ledger, "transfers": n, "amount": amount.to_string()})
                })
                .collect();
            let [accounts, transfers, trades, transfers_expired, trades_expired] = counts;
            write_manifest(
                file,
                serde_json::json!({
                    "export": "events",
                    "file": file.out.display().to_string(),
                    "format": file.format.name(),
                    "from": from,
                    "to": to,
                    "events": counts.iter().sum::<u64>(),
                    "accounts": accounts,
                    "transfers": transfers,
                    "trades": trades,
                    "transfers_expired": transfers_expired,
                    "trades_expired": trades_expired,
                    "transfers_by_ledger": ledgers,
                    "history_reached": reaches.timestamp,
                    "commit_index": reaches.commit_index,
                    "complete": true,
                }),
            )?;
            eprintln!(
                "exported {} events ({accounts} accounts, {transfers} transfers, {trades} trades, \
                 {} expiries) to {}",
                counts.iter().sum::<u64>(),
                transfers_expired + trades_expired,
                file.out.display()
            );
            Ok(Ended::Done)
        }
    }
}

/// An applied event, as exports and the feed give it.
pub(crate) struct Event(pub(crate) FeedEntry);

/// A cell of an event's row: a number or a kind name (nothing to escape in either).
#[derive(Clone, Copy)]
enum Cell {
    Number(u128),
    Name(&'static str),
}

impl Cell {
    /// Writes the cell's text: a number in decimal (through u64 where it fits: u128's
    /// division is several times slower, and most numbers here are small), or the name.
    fn write(self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        let mut digits = itoa::Buffer::new();
        let text = match self {
            Cell::Number(n) => match u64::try_from(n) {
                Ok(small) => digits.format(small),
                Err(_) => digits.format(n),
            },
            Cell::Name(name) => name,
        };
        out.write_all(text.as_bytes())
    }

    fn text(self) -> String {
        let mut out = Vec::with_capacity(20);
        self.write(&mut out).expect("a Vec takes every byte");
        String::from_utf8(out).expect("digits and names are ASCII")
    }
}

impl Event {
    /// Its position in the feed: its timestamp (distinct for every event, growing with each).
    pub(crate) fn position(&self) -> u64 {
        self.0.timestamp
    }

    /// The event's cells, one per [`EVENT_COLUMNS`] column (`None`: the column is not the
    /// event's): the one place that says which field goes where, for every format.
    fn cells(&self) -> [Option<Cell>; EVENT_COLUMNS.len()] {
        use Cell::{Name, Number as N};
        let n = |value: u128| Some(N(value));
        let timestamp = n(u128::from(self.0.timestamp));
        match &self.0.event {
            LedgerEvent::AccountCreated(a) => [
                timestamp,
                Some(Name("account")),
                n(a.id),
                None,
                None,
                None,
                n(a.ledger.into()),
                None,
                None,
                None,
                None,
                n(a.code.into()),
                n(a.flags.0.into()),
                None,
                n(a.user_data_128),
                n(a.user_data_64.into()),
                None,
                None,
                n(a.limit.into()),
            ],
            LedgerEvent::Applied(StatementEvent::Transfer(t)) => [
                timestamp,
                Some(Name("transfer")),
                n(t.id),
                n(t.debit_account_id),
                n(t.credit_account_id),
                n(t.amount),
                n(t.ledger.into()),
                None,
                None,
                None,
                None,
                n(t.code.into()),
                n(t.flags.0.into()),
                n(t.pending_id),
                n(t.user_data_128),
                n(t.user_data_64.into()),
                n(t.user_data_32.into()),
                n(t.timeout.into()),
                None,
            ],
            LedgerEvent::Applied(StatementEvent::Trade(t)) => [
                timestamp,
                Some(Name("trade")),
                n(t.id),
                n(t.instrument_debit_account_id),
                n(t.instrument_credit_account_id),
                n(t.quantity.into()),
                n(t.instrument_ledger.into()),
                n(t.cash_debit_account_id),
                n(t.cash_credit_account_id),
                n(t.cash_amount.into()),
                n(t.cash_ledger.into()),
                n(t.code.into()),
                n(t.flags.0.into()),
                n(t.pending_id),
                None,
                n(t.user_data_64.into()),
                None,
                n(t.timeout.into()),
                None,
            ],
            LedgerEvent::Applied(
                StatementEvent::TransferExpired { pending_id }
                | StatementEvent::TradeExpired { pending_id },
            ) => {
                let kind = match self.0.event {
                    LedgerEvent::Applied(StatementEvent::TransferExpired { .. }) => {
                        "transfer_expired"
                    }
                    _ => "trade_expired",
                };
                let mut cells = [None; EVENT_COLUMNS.len()];
                cells[0] = timestamp;
                cells[1] = Some(Name(kind));
                cells[13] = n(*pending_id);
                cells
            }
        }
    }

    fn row(&self) -> Vec<String> {
        self.cells()
            .iter()
            .map(|cell| cell.map(Cell::text).unwrap_or_default())
            .collect()
    }

    /// The event as one JSON object (the export's columns but the empty ones, each value a
    /// string as in the JSON lines export, then its `position`), written straight out: the
    /// feed's rate is this function's, so no map, string or formatting machinery per field.
    pub(crate) fn write_json(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        out.write_all(b"{")?;
        for (key, cell) in JSON_KEYS.iter().zip(self.cells()) {
            if let Some(cell) = cell {
                out.write_all(key.as_bytes())?;
                cell.write(out)?;
                out.write_all(b"\",")?;
            }
        }
        out.write_all(b"\"position\":")?;
        Cell::Number(self.0.timestamp.into()).write(out)?;
        out.write_all(b"}")
    }
}

/// Every applied event with a timestamp in `from..=to`, in timestamp order (every event's is
/// distinct), to `each`, a page at a time. `each` may wait (the feed's sink publishing to a
/// broker), which holds the reading back.
async fn each_event(
    client: &Client,
    from: u64,
    to: u64,
    mut each: impl AsyncFnMut(Event) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let filter = QueryFilter {
        timestamp_min: from,
        timestamp_max: to,
        limit: tally_engine::limits::STATEMENT_ENTRIES_MAX,
        ..QueryFilter::default()
    };
    let mut page = client.query_events(&filter).await?;
    loop {
        // The next page is asked for before this one is handed over, so the node reads it
        // while the client writes (the connection's reader runs on its own task).
        let fetch = page.next.map(|next| {
            let (client, following) = (client.clone(), filter.after(next));
            tokio::spawn(async move { client.query_events(&following).await })
        });
        for entry in std::mem::take(&mut page.items) {
            each(Event(entry)).await?;
        }
        match fetch {
            Some(fetch) => page = fetch.await??,
            None => return Ok(()),
        }
    }
}

/// Where the feed hands its events: `follow` writes them out, `tally cdc` publishes them.
pub(crate) trait FeedSink {
    /// A round begins: it reads every event up to `reaches`, the history's newest record.
    async fn reading(&mut self, _reaches: u64) -> anyhow::Result<()> {
        Ok(())
    }
    /// The next event, in position order; a sink that waits holds the feed back.
    async fn event(&mut self, event: Event) -> anyhow::Result<()>;
    /// Every event up to `reaches` (the history's newest record when the feed last asked) has
    /// been handed over; nothing at or before it can still come.
    async fn reached(&mut self, reaches: u64) -> anyhow::Result<()>;
}

/// The feed: every applied event (accounts created, transfers, trades, expiries) from
/// position `from` on, in position order, to `sink`. Each round reads only up to the time
/// the history has reached (`history_reaches`), so no event can later appear behind the
/// cursor: resuming at one past the last position handed over loses and repeats nothing.
/// Once caught up it asks again every `poll`, or with `until_caught_up` it returns.
pub(crate) async fn feed(
    client: &Client,
    from: u64,
    poll: std::time::Duration,
    until_caught_up: bool,
    sink: &mut impl FeedSink,
) -> anyhow::Result<()> {
    let mut cursor = from.max(1);
    loop {
        let reaches = history_reaches(client).await?;
        if reaches >= cursor {
            sink.reading(reaches).await?;
            each_event(client, cursor, reaches, async |event| {
                sink.event(event).await
            })
            .await?;
            sink.reached(reaches).await?;
            cursor = reaches + 1;
        } else {
            sink.reached(cursor - 1).await?;
            if until_caught_up {
                return Ok(());
            }
            tokio::time::sleep(poll).await;
        }
    }
}

/// `follow`'s sink: each event as a JSON line, flushed at the end of every round.
struct JsonLines<W: std::io::Write>(W);

impl<W: std::io::Write> FeedSink for JsonLines<W> {
    async fn event(&mut self, event: Event) -> anyhow::Result<()> {
        event.write_json(&mut self.0)?;
        self.0.write_all(b"\n")?;
        Ok(())
    }

    async fn reached(&mut self, _reaches: u64) -> anyhow::Result<()> {
        self.0.flush()?;
        Ok(())
    }
}

/// `tally client follow`: every applied event from timestamp `from` on, in timestamp
/// order, as JSON lines on standard output, each with its `position` (its timestamp: resume
/// with `--from` one past the last position seen). Follows new events as they are applied
/// (polling every `poll`) unless `until_caught_up`, when it ends once it has written
/// everything the cluster held.
pub async fn follow(
    config: ClientConfig,
    from: u64,
    poll: std::time::Duration,
    until_caught_up: bool,
) -> anyhow::Result<Ended> {
    let client = Client::connect(config).await?;
    let mut out = JsonLines(std::io::BufWriter::new(std::io::stdout().lock()));
    feed(&client, from, poll, until_caught_up, &mut out).await?;
    Ok(Ended::Done)
}

/// An exported event's columns: one layout for every kind, a column empty (null) where it is
/// not the event's. A trade's instrument leg is in the first columns, its cash leg in the cash
/// columns; an expiry names the pending event it released (`pending_id`); an account created
/// has its ledger, code, flags, user data and limit.
const EVENT_COLUMNS: [Column; 19] = [
    Column::new("timestamp", U64),
    Column::new("kind", Text),
    Column::optional("id", U128),
    Column::optional("debit_account_id", U128),
    Column::optional("credit_account_id", U128),
    // A transfer's amount (u128) or a trade's quantity (u64).
    Column::optional("amount", U128),
    Column::optional("ledger", U32),
    Column::optional("cash_debit_account_id", U128),
    Column::optional("cash_credit_account_id", U128),
    Column::optional("cash_amount", U64),
    Column::optional("cash_ledger", U32),
    Column::optional("code", U16),
    Column::optional("flags", U16),
    Column::optional("pending_id", U128),
    Column::optional("user_data_128", U128),
    Column::optional("user_data_64", U64),
    Column::optional("user_data_32", U32),
    Column::optional("timeout", U32),
    Column::optional("limit", U64),
];

/// Each event column's JSON key with its opening quote: `"name":"`.
static JSON_KEYS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    EVENT_COLUMNS
        .iter()
        .map(|column| format!("\"{}\":\"", column.name))
        .collect()
});

const POSITION_COLUMNS: [Column; 7] = [
    Column::new("account", U128),
    Column::new("ledger", U32),
    Column::new("code", U16),
    Column::new("debits_pending", U128),
    Column::new("debits_posted", U128),
    Column::new("credits_pending", U128),
    Column::new("credits_posted", U128),
];

fn position_row(p: &Position) -> Vec<String> {
    vec![
        p.account.id.to_string(),
        p.account.ledger.to_string(),
        p.account.code.to_string(),
        p.balances.debits_pending.to_string(),
        p.balances.debits_posted.to_string(),
        p.balances.credits_pending.to_string(),
        p.balances.credits_posted.to_string(),
    ]
}

/// Fetches every page of `filter` (up to `max` records) and prints the records: CSV as the
/// pages come, a table or JSON at the end.
async fn print_all<T>(
    output: Output,
    columns: &[&'static str],
    filter: QueryFilter,
    max: Option<u64>,
    page: impl AsyncFn(QueryFilter) -> Result<QueryPage<T>, tally_client::ClientError>,
    row: impl Fn(&T) -> Vec<String>,
) -> anyhow::Result<Ended> {
    let mut csv =
        matches!(output, Output::Csv).then(|| csv::Writer::from_writer(std::io::stdout()));
    if let Some(writer) = &mut csv {
        writer.write_record(columns)?;
    }
    let mut rows = Vec::new();
    let mut left = max.unwrap_or(u64::MAX);
    let mut current = filter;
    loop {
        let got = page(current).await?;
        for record in got
            .items
            .iter()
            .take(usize::try_from(left).unwrap_or(usize::MAX))
        {
            match &mut csv {
                Some(writer) => writer.write_record(row(record))?,
                None => rows.push(row(record)),
            }
            left -= 1;
        }
        match got.next {
            Some(next) if left > 0 => current = filter.after(next),
            _ => break,
        }
    }
    match csv {
        Some(mut writer) => writer.flush()?,
        None => Table {
            columns: columns.to_vec(),
            rows,
        }
        .print(output)?,
    }
    Ok(Ended::Done)
}
