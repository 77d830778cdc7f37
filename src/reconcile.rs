//! `tally reconcile`: a client's positions file against the ledger's positions as of a time,
//! and the break report (docs/reconcile.md).
//!
//! 1. **Read** (nothing fetched yet): the mapping file, if any, then the positions file, each
//!    checked whole, line by line ([`input`]); any malformed row exits 2 naming every
//!    malformed line (the first 20), and the report directory is checked writable.
//! 2. **Fetch and compare** ([`reconcile`]): every account of each ledger reconciled, a page
//!    at a time from a [`LedgerSource`] (the cluster: [`cluster`]), each looked up among the
//!    file's positions (sorted by account: a binary search), then the file's positions the
//!    ledger did not have, looked up by id to say where they are instead.
//! 3. **Explain** (with `--since`): each break with a ledger side gets the account's
//!    statement lines in (since, at].
//! 4. **Write** ([`report`]): `breaks.csv`, `statements.csv` and `report.json` in `--out`,
//!    all or none, and the one-line summary on standard output.
//!
//! Exit codes: 0 no breaks, 1 breaks, 2 bad input (nothing fetched, nothing written), 3 the
//! cluster failed (reads only: nothing changed on it; no report written).

mod cluster;
pub mod input;
pub mod report;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use tally_engine::{Balances, StatementEntry, StatementEvent};

pub use cluster::ClusterSource;
pub use input::{read_mapping, read_positions, BadInput, Mapping, Positions, Row};

/// The statement lines fetched per break at most (one request's worth); a break with more
/// says so.
pub const STATEMENT_LINES_MAX: u32 = tally_engine::limits::STATEMENT_ENTRIES_MAX;
/// The breaks given statement lines at most (one request each); the rest say "not fetched".
pub const STATEMENT_BREAKS_MAX: usize = 10_000;
/// Account ids looked up per request.
pub const LOOKUP_IDS_MAX: usize = 8_189;

/// Which balance of an account is its position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BalanceKind {
    /// credits_posted − debits_posted.
    NetCredit,
    /// debits_posted − credits_posted.
    NetDebit,
}

impl BalanceKind {
    /// The position `balances` hold (pending amounts are not positions).
    pub fn of(self, balances: &Balances) -> Amount {
        match self {
            BalanceKind::NetCredit => Amount::net(balances.credits_posted, balances.debits_posted),
            BalanceKind::NetDebit => Amount::net(balances.debits_posted, balances.credits_posted),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BalanceKind::NetCredit => "net-credit",
            BalanceKind::NetDebit => "net-debit",
        }
    }
}

/// An exact signed amount of up to 129 bits: ±(`carry`·2^128 + `magnitude`). A file's amount
/// is an i128, the ledger's a difference of two u128s, and a break's difference one of those
/// less the other: none of them overflows here. Zero is never negative.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Amount {
    negative: bool,
    carry: bool,
    magnitude: u128,
}

impl Amount {
    /// `plus − minus`.
    pub fn net(plus: u128, minus: u128) -> Amount {
        Amount {
            negative: minus > plus,
            carry: false,
            magnitude: plus.abs_diff(minus),
        }
    }

    pub fn is_zero(self) -> bool {
        self.magnitude == 0 && !self.carry
    }

    /// `self − other`, for amounts of at most 128 bits (no carry), as both a file's and the
    /// ledger's are.
    pub fn minus(self, other: Amount) -> Amount {
        debug_assert!(
            !self.carry && !other.carry,
            "differences of 128-bit amounts only"
        );
        let other = Amount {
            negative: !other.negative && !other.is_zero(),
            ..other
        };
        if self.negative == other.negative {
            let (magnitude, carry) = self.magnitude.overflowing_add(other.magnitude);
            return Amount {
                negative: self.negative && (carry || magnitude != 0),
                carry,
                magnitude,
            };
        }
        let (larger, smaller) = if self.magnitude >= other.magnitude {
            (self, other)
        } else {
            (other, self)
        };
        let magnitude = larger.magnitude - smaller.magnitude;
        Amount {
            negative: larger.negative && magnitude != 0,
            carry: false,
            magnitude,
        }
    }
}

impl From<i128> for Amount {
    fn from(value: i128) -> Amount {
        Amount {
            negative: value < 0,
            carry: false,
            magnitude: value.unsigned_abs(),
        }
    }
}

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.negative {
            f.write_str("-")?;
        }
        if !self.carry {
            return write!(f, "{}", self.magnitude);
        }
        // 2^128 + m = 10·(TENTH + m / 10) + (6 + m % 10), with 2^128 = 10·TENTH + 6.
        const TENTH: u128 = 34_028_236_692_093_846_346_337_460_743_176_821_145;
        let low = 6 + self.magnitude % 10;
        write!(f, "{}{}", TENTH + self.magnitude / 10 + low / 10, low % 10)
    }
}

/// An account of the ledger and its balances as of the time asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LedgerPosition {
    pub account: u128,
    pub ledger: u32,
    pub balances: Balances,
}

/// One page of a ledger's positions and where the next starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PositionsPage {
    pub items: Vec<LedgerPosition>,
    /// `None`: the ledger is done; else the `from` of the next page (greater than this one's).
    pub next: Option<u64>,
}

/// An account looked up by id: its ledger and when it was created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountFound {
    pub account: u128,
    pub ledger: u32,
    pub created: u64,
}

/// Where the ledger's side comes from: the cluster ([`ClusterSource`]), or memory in tests.
// The reconciliation runs on the caller's task (`block_on`), never spawned: its futures need
// not be `Send`, so plain `async fn` serves.
#[allow(async_fn_in_trait)]
pub trait LedgerSource {
    /// A page of the accounts of `ledger` that existed at `at`, with their balances as of
    /// `at`, starting at `from` (0 for the first page; then the page before's `next`).
    async fn positions(&self, ledger: u32, at: u64, from: u64) -> anyhow::Result<PositionsPage>;
    /// The accounts among `ids` (at most [`LOOKUP_IDS_MAX`]) that exist, on any ledger.
    async fn accounts(&self, ids: &[u128]) -> anyhow::Result<Vec<AccountFound>>;
    /// The account's statement lines with timestamps in `min..=max`, oldest first, at most
    /// `limit`.
    async fn statement(
        &self,
        account: u128,
        min: u64,
        max: u64,
        limit: u32,
    ) -> anyhow::Result<Vec<StatementEntry>>;
}

/// What to reconcile the positions against.
#[derive(Clone, Debug)]
pub struct Options {
    /// The ledger time the positions are as of (ns since the epoch; not 0).
    pub at: u64,
    /// The previous reconciliation's time: breaks get their statement lines in (since, at].
    pub since: Option<u64>,
    pub balance: BalanceKind,
    /// The ledgers reconciled (the report lists them ascending).
    pub ledgers: Vec<u32>,
}

/// A line of an account's statement, as the report shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatementLine {
    pub timestamp: u64,
    /// transfer, trade, transfer expired, trade expired.
    pub event: &'static str,
    /// The transfer's or trade's id (for an expiry, the pending one's).
    pub id: u128,
    /// What the event moved on this account (a trade: its quantity or its cash amount, as
    /// the account is on the instrument or the cash leg); `None` for an expiry.
    pub amount: Option<u128>,
    /// The account's position right after the event.
    pub position_after: Amount,
}

/// A break's statement lines since `--since`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Statement {
    /// Not asked for (no `--since`).
    NotAsked,
    /// Past [`STATEMENT_BREAKS_MAX`] breaks: not fetched.
    NotFetched,
    /// The lines, oldest first; `more`: there are lines after these (past
    /// [`STATEMENT_LINES_MAX`]), not fetched.
    Lines {
        lines: Vec<StatementLine>,
        more: bool,
    },
}

/// A position both sides have, with different amounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmountBreak {
    pub account: u128,
    pub line: u64,
    pub file_amount: i128,
    pub ledger_amount: Amount,
    pub statement: Statement,
}

impl AmountBreak {
    /// ledger − file.
    pub fn difference(&self) -> Amount {
        self.ledger_amount.minus(Amount::from(self.file_amount))
    }
}

/// A position of the file with no account of that id on its ledger as of `at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingInLedger {
    pub account: u128,
    pub line: u64,
    pub file_amount: i128,
    /// The ledger the account is on, if it exists (on another ledger; or on this one but
    /// created after `at`).
    pub account_ledger: Option<u32>,
    /// When the account was created, if it was looked up (it was not among the ledgers'
    /// positions) and exists.
    pub account_created: Option<u64>,
}

/// A ledger account with a non-zero position that the file does not have on that ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingInFile {
    pub account: u128,
    pub ledger_amount: Amount,
    /// The file's row for this account on another ledger, if it has one: (ledger, line).
    pub file_row: Option<(u32, u64)>,
    pub statement: Statement,
}

/// One ledger's outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LedgerReport {
    pub ledger: u32,
    /// The file's positions equal to the ledger's.
    pub matched: u64,
    /// Ledger accounts at zero that the file does not have: matched as zero.
    pub zero_absent: u64,
    pub amount_breaks: Vec<AmountBreak>,
    pub missing_in_ledger: Vec<MissingInLedger>,
    pub missing_in_file: Vec<MissingInFile>,
}

impl LedgerReport {
    pub fn breaks(&self) -> usize {
        self.amount_breaks.len() + self.missing_in_ledger.len() + self.missing_in_file.len()
    }
}

/// The whole outcome, ledger by ledger (ascending).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub at: u64,
    pub since: Option<u64>,
    pub ledgers: Vec<LedgerReport>,
    /// The file's positions on the ledgers reconciled.
    pub compared: u64,
    /// The file's positions on other ledgers (not reconciled).
    pub left_out: u64,
    /// Ledger accounts read, all ledgers together.
    pub ledger_accounts: u64,
    /// Breaks whose statement lines were not fetched (past [`STATEMENT_BREAKS_MAX`]).
    pub statements_not_fetched: u64,
}

impl Report {
    pub fn breaks(&self) -> usize {
        self.ledgers.iter().map(LedgerReport::breaks).sum()
    }

    fn total(&self, count: impl Fn(&LedgerReport) -> u64) -> u64 {
        self.ledgers.iter().map(count).sum()
    }

    /// The one line said on standard output.
    pub fn summary(&self) -> String {
        let ledgers: Vec<String> = self.ledgers.iter().map(|l| l.ledger.to_string()).collect();
        let mut line = format!(
            "reconciled {} positions as of {} on ledgers [{}]: {} matched, {} amount breaks, {} \
             missing in the ledger, {} missing in the file",
            self.compared,
            self.at,
            ledgers.join(","),
            self.total(|l| l.matched),
            self.total(|l| l.amount_breaks.len() as u64),
            self.total(|l| l.missing_in_ledger.len() as u64),
            self.total(|l| l.missing_in_file.len() as u64),
        );
        let zero = self.total(|l| l.zero_absent);
        if zero > 0 {
            line.push_str(&format!(
                "; {zero} ledger accounts at zero not in the file (matched as zero)"
            ));
        }
        if self.left_out > 0 {
            line.push_str(&format!(
                "; {} positions on other ledgers left out",
                self.left_out
            ));
        }
        if self.statements_not_fetched > 0 {
            line.push_str(&format!(
                "; statement lines not fetched for {} breaks",
                self.statements_not_fetched
            ));
        }
        line
    }
}

/// Reconciles `positions` against `source` as `options` say.
pub async fn reconcile<S: LedgerSource>(
    source: &S,
    positions: &Positions,
    options: &Options,
) -> anyhow::Result<Report> {
    let rows = &positions.rows;
    // The ledgers reconciled, ascending, each once; and each one's place among them.
    let ledgers: Vec<u32> = (options.ledgers.iter().copied())
        .collect::<BTreeSet<u32>>()
        .into_iter()
        .collect();
    let selected: HashMap<u32, usize> = (ledgers.iter().enumerate())
        .map(|(place, ledger)| (*ledger, place))
        .collect();
    let mut report = Report {
        at: options.at,
        since: options.since,
        ..Report::default()
    };
    // The ledger each row's account was found on among the positions (0: not found).
    let mut found_on = vec![0u32; rows.len()];
    for &ledger in &ledgers {
        let mut out = LedgerReport {
            ledger,
            ..LedgerReport::default()
        };
        let mut from = 0u64;
        loop {
            let page = source
                .positions(ledger, options.at, from)
                .await
                .with_context(|| format!("reading the positions of ledger {ledger}"))?;
            for position in &page.items {
                if position.ledger != ledger {
                    bail!(
                        "asked for ledger {ledger}'s positions, the cluster answered account {} \
                         of ledger {}",
                        position.account,
                        position.ledger
                    );
                }
                report.ledger_accounts += 1;
                let amount = options.balance.of(&position.balances);
                let row = positions.find(position.account);
                if let Some(at) = row {
                    found_on[at] = ledger;
                }
                match row.map(|at| &rows[at]) {
                    Some(row) if row.ledger == ledger => {
                        if amount == Amount::from(row.amount) {
                            out.matched += 1;
                        } else {
                            out.amount_breaks.push(AmountBreak {
                                account: row.account,
                                line: row.line,
                                file_amount: row.amount,
                                ledger_amount: amount,
                                statement: Statement::NotAsked,
                            });
                        }
                    }
                    _ if amount.is_zero() => out.zero_absent += 1,
                    elsewhere => out.missing_in_file.push(MissingInFile {
                        account: position.account,
                        ledger_amount: amount,
                        file_row: elsewhere.map(|row| (row.ledger, row.line)),
                        statement: Statement::NotAsked,
                    }),
                }
            }
            match page.next {
                None => break,
                Some(next) if next > from => from = next,
                Some(next) => bail!(
                    "the cluster's pages of ledger {ledger} did not advance (from {from}, next \
                     {next})"
                ),
            }
        }
        out.amount_breaks.sort_by_key(|b| b.account);
        out.missing_in_file.sort_by_key(|b| b.account);
        report.ledgers.push(out);
    }

    // The file's positions the ledgers did not have: where are their accounts?
    let unseen: Vec<u128> = rows
        .iter()
        .zip(&found_on)
        .filter(|(row, found)| selected.contains_key(&row.ledger) && **found == 0)
        .map(|(row, _)| row.account)
        .collect();
    let mut looked_up: HashMap<u128, AccountFound> = HashMap::new();
    for ids in unseen.chunks(LOOKUP_IDS_MAX) {
        for found in source
            .accounts(ids)
            .await
            .context("looking up the accounts the ledgers' positions lack")?
        {
            looked_up.insert(found.account, found);
        }
    }
    for (row, &found) in rows.iter().zip(&found_on) {
        let Some(&place) = selected.get(&row.ledger) else {
            report.left_out += 1;
            continue;
        };
        report.compared += 1;
        if found == row.ledger {
            continue;
        }
        let lookup = looked_up.get(&row.account);
        let account_ledger = match found {
            0 => lookup.map(|account| account.ledger),
            found => Some(found),
        };
        report.ledgers[place]
            .missing_in_ledger
            .push(MissingInLedger {
                account: row.account,
                line: row.line,
                file_amount: row.amount,
                account_ledger,
                account_created: lookup.map(|account| account.created),
            });
    }

    if let Some(since) = options.since {
        let mut fetched = 0usize;
        for ledger in &mut report.ledgers {
            let wanted = ledger
                .amount_breaks
                .iter_mut()
                .map(|b| (b.account, &mut b.statement))
                .chain(
                    ledger
                        .missing_in_file
                        .iter_mut()
                        .map(|b| (b.account, &mut b.statement)),
                );
            for (account, statement) in wanted {
                if fetched == STATEMENT_BREAKS_MAX {
                    *statement = Statement::NotFetched;
                    report.statements_not_fetched += 1;
                    continue;
                }
                fetched += 1;
                *statement = statement_since(source, account, since, options).await?;
            }
        }
    }
    Ok(report)
}

/// Account `account`'s statement lines in (since, at].
async fn statement_since<S: LedgerSource>(
    source: &S,
    account: u128,
    since: u64,
    options: &Options,
) -> anyhow::Result<Statement> {
    let context = || format!("the statement of account {account}");
    let entries = source
        .statement(account, since + 1, options.at, STATEMENT_LINES_MAX)
        .await
        .with_context(context)?;
    let more = match entries.last() {
        Some(last)
            if entries.len() == STATEMENT_LINES_MAX as usize && last.timestamp < options.at =>
        {
            !source
                .statement(account, last.timestamp + 1, options.at, 1)
                .await
                .with_context(context)?
                .is_empty()
        }
        _ => false,
    };
    let lines = entries
        .iter()
        .map(|entry| statement_line(account, entry, options.balance))
        .collect();
    Ok(Statement::Lines { lines, more })
}

/// A statement entry of `account` as a report line.
pub fn statement_line(
    account: u128,
    entry: &StatementEntry,
    balance: BalanceKind,
) -> StatementLine {
    let (event, id, amount) = match &entry.event {
        StatementEvent::Transfer(t) => ("transfer", t.id, Some(t.amount)),
        StatementEvent::Trade(t) => {
            let instrument = account == t.instrument_debit_account_id
                || account == t.instrument_credit_account_id;
            let amount = if instrument {
                t.quantity
            } else {
                t.cash_amount
            };
            ("trade", t.id, Some(u128::from(amount)))
        }
        StatementEvent::TransferExpired { pending_id } => ("transfer expired", *pending_id, None),
        StatementEvent::TradeExpired { pending_id } => ("trade expired", *pending_id, None),
    };
    StatementLine {
        timestamp: entry.timestamp,
        event,
        id,
        amount,
        position_after: balance.of(&entry.balances_after),
    }
}

/// `tally reconcile`'s flags.
#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    pub connect: crate::client_cli::ConnectArgs,
    /// The client's positions: CSV with the header `account,ledger,amount`.
    #[arg(long, value_name = "FILE")]
    pub positions: PathBuf,
    /// External account ids to ledger account ids: CSV with the header `external,account`;
    /// with it, the positions' `account` column holds external ids.
    #[arg(long, value_name = "FILE")]
    pub mapping: Option<PathBuf>,
    /// The ledger time the positions are as of (ns since the epoch); 0: now (the newest record
    /// the cluster holds). A later time than that is refused: events could still come before it.
    #[arg(long, default_value_t = 0)]
    pub at: u64,
    /// The previous reconciliation's time (ns): each amount break and each missing in the
    /// file gets the account's statement lines after it, up to --at.
    #[arg(long)]
    pub since: Option<u64>,
    /// The position compared: credits_posted − debits_posted (net-credit) or debits_posted −
    /// credits_posted (net-debit). Pending amounts are not positions.
    #[arg(long, value_enum, default_value = "net-credit")]
    pub balance: BalanceKind,
    /// The ledgers reconciled (repeat, or comma-separated); default: every ledger in the file.
    #[arg(long = "ledger", value_delimiter = ',', value_name = "LEDGER")]
    pub ledgers: Vec<u32>,
    /// The directory the report goes to (made if absent): breaks.csv, statements.csv (with
    /// --since) and report.json, replacing any there.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// The inputs read and checked: what the run needs before it fetches anything.
struct Checked {
    positions: Positions,
    mapping: Option<Mapping>,
    options: Options,
}

/// Reads and checks the inputs. `options.at` is `--at`, or 0 (now) until [`pin`] sets it to
/// the cluster's newest record: no machine's clock decides a ledger time.
fn check(args: &ReconcileArgs) -> Result<Checked, BadInput> {
    if args.at != 0 {
        since_before(args.since, args.at)?;
    }
    if args.ledgers.contains(&0) {
        return Err(BadInput("--ledger 0: no account is on ledger 0".to_owned()));
    }
    let mapping = args.mapping.as_deref().map(read_mapping).transpose()?;
    let positions = read_positions(&args.positions, mapping.as_ref())?;
    let ledgers: BTreeSet<u32> = if args.ledgers.is_empty() {
        positions.ledgers.clone()
    } else {
        args.ledgers.iter().copied().collect()
    };
    Ok(Checked {
        positions,
        mapping,
        options: Options {
            at: args.at,
            since: args.since,
            balance: args.balance,
            ledgers: ledgers.into_iter().collect(),
        },
    })
}

/// Sets `options.at` for a cluster whose history reaches `reached`: `--at 0` is `reached`; a
/// later `--at` is refused (events could still be added before it).
fn pin(args: &ReconcileArgs, reached: u64, options: &mut Options) -> Result<(), BadInput> {
    if args.at > reached {
        return Err(BadInput(format!(
            "--at {} is later than the ledger's history ({reached}, its newest record): events \
             could still be added before it; reconcile as of {reached} or earlier",
            args.at
        )));
    }
    options.at = if args.at == 0 { reached } else { args.at };
    since_before(args.since, options.at)
}

/// The one rule for `--since`: the statement lines are those after it up to `at`, so it must
/// come before `at`.
fn since_before(since: Option<u64>, at: u64) -> Result<(), BadInput> {
    match since {
        Some(since) if since >= at => Err(BadInput(format!(
            "--since {since} is not before --at {at}: the statement lines are those after \
             --since up to --at"
        ))),
        _ => Ok(()),
    }
}

/// Runs `tally reconcile`: its exit code (messages said on standard error, the summary on
/// standard output).
pub async fn run(args: ReconcileArgs) -> u8 {
    let started = Instant::now();
    let checked = match check(&args) {
        Ok(checked) => checked,
        Err(error) => {
            eprintln!("tally reconcile: {error}\nnothing was fetched and no report written");
            return 2;
        }
    };
    let config = match args.connect.config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("tally reconcile: {error:#}\nnothing was fetched and no report written");
            return 2;
        }
    };
    if let Err(error) = report::check_out_dir(&args.out) {
        eprintln!("tally reconcile: {error}\nnothing was fetched and no report written");
        return 2;
    }
    eprintln!(
        "read {} positions in {:.1} s; fetching ledgers {:?} as of {}",
        checked.positions.rows.len(),
        started.elapsed().as_secs_f64(),
        checked.options.ledgers,
        checked.options.at
    );
    let fetched = Instant::now();
    let mut checked = checked;
    let outcome = async {
        let source = ClusterSource::connect(config).await?;
        // "Now" is the newest record the cluster holds, and no later time is taken: history
        // up to a time it has reached can no longer change, so the report is final.
        let reached = source.history_reaches().await?;
        let report = match pin(&args, reached, &mut checked.options) {
            Ok(()) => Ok(reconcile(&source, &checked.positions, &checked.options).await),
            Err(bad) => Err(bad),
        };
        source.close().await;
        anyhow::Ok(report)
    }
    .await;
    let outcome = match outcome {
        Ok(Ok(report)) => report,
        Ok(Err(bad)) => {
            eprintln!("tally reconcile: {bad}\nnothing was compared and no report written");
            return 2;
        }
        Err(error) => Err(error),
    };
    let report = match outcome {
        Ok(report) => report,
        Err(error) => {
            eprintln!(
                "tally reconcile: the cluster failed: {error:#}\nonly reads were sent (nothing \
                 changed on the cluster); the reconciliation is incomplete and no report was \
                 written"
            );
            return 3;
        }
    };
    eprintln!(
        "compared with {} ledger accounts in {:.1} s",
        report.ledger_accounts,
        fetched.elapsed().as_secs_f64()
    );
    let externals = match &checked.mapping {
        Some(mapping) => mapping.externals_of(&report::break_accounts(&report)),
        None => HashMap::new(),
    };
    let files = report::Files {
        positions: &checked.positions.file,
        mapping: checked
            .mapping
            .as_ref()
            .map(|mapping| mapping.file.as_str()),
        balance: checked.options.balance,
        externals: &externals,
    };
    if let Err(error) = report::write(&args.out, &report, &files) {
        eprintln!("tally reconcile: {error:#}\nno report was written");
        return 2;
    }
    println!("{}", report.summary());
    u8::from(report.breaks() > 0)
}
