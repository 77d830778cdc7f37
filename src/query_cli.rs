//! `tally client query`: accounts, transfers and trades by field (ledger, code, user data, a
//! time range), and every account's balances as of a time — TigerBeetle's `query_accounts` /
//! `query_transfers` and the positions a reconciliation compares. Every page is fetched in
//! turn (docs/protocol.md, "Queries"); CSV is written page by page, so a query of any size
//! runs in bounded memory.

use anyhow::bail;
use tally_client::{Client, ClientConfig};
use tally_engine::{Position, QueryFilter, QueryPage};

use crate::client_cli::{account_row, trade_row, transfer_row, Ended, Output, Table};
use crate::client_cli::{ACCOUNT_SHOWN, TRADE_SHOWN, TRANSFER_SHOWN};
use crate::config::parse_u128;

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

/// A query's filter: every field given must match; none given matches everything.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    #[arg(long)]
    ledger: Option<u32>,
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
        let zero_is_any = |given: Option<u64>, name: &str| -> anyhow::Result<()> {
            if given == Some(0) {
                bail!("--{name} 0 matches everything: leave it out instead");
            }
            Ok(())
        };
        zero_is_any(self.ledger.map(u64::from), "ledger")?;
        zero_is_any(self.code.map(u64::from), "code")?;
        zero_is_any(self.user_data_64, "user-data-64")?;
        zero_is_any(self.user_data_32.map(u64::from), "user-data-32")?;
        let user_data_128 = match &self.user_data_128 {
            Some(text) => match parse_u128(text)? {
                0 => bail!("--user-data-128 0 matches everything: leave it out instead"),
                value => value,
            },
            None => 0,
        };
        if self.to != 0 && self.from > self.to {
            bail!("--from {} is after --to {}", self.from, self.to);
        }
        if self.max == Some(0) {
            bail!("--max 0 asks for nothing");
        }
        Ok(QueryFilter {
            user_data_128,
            user_data_64: self.user_data_64.unwrap_or(0),
            user_data_32: self.user_data_32.unwrap_or(0),
            ledger: self.ledger.unwrap_or(0),
            code: self.code.unwrap_or(0),
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
            if args.user_data_32.is_some() {
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
            if args.user_data_32.is_some() || args.user_data_128.is_some() {
                bail!("trades have no user_data_128 or user_data_32");
            }
            let client = Client::connect(config).await?;
            let page = async |filter: QueryFilter| client.query_trades(&filter).await;
            print_all(output, &TRADE_SHOWN, filter, args.max, page, trade_row).await
        }
        QueryCommand::Positions { filter: args, at } => {
            let filter = args.filter()?;
            if args.user_data_32.is_some() {
                bail!("accounts have no user_data_32");
            }
            let client = Client::connect(config).await?;
            let page = async |filter: QueryFilter| client.positions(&filter, *at).await;
            print_all(
                output,
                &POSITION_COLUMNS,
                filter,
                args.max,
                page,
                position_row,
            )
            .await
        }
    }
}

const POSITION_COLUMNS: [&str; 7] = [
    "account",
    "ledger",
    "code",
    "debits_pending",
    "debits_posted",
    "credits_pending",
    "credits_posted",
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
