//! The break report's files in `--out`: `breaks.csv` (a row per break), `statements.csv` (a
//! row per statement line, with `--since`) and `report.json` (everything, by ledger). Each is
//! written to a temporary file in the directory first, and all are renamed into place only
//! once all are written: a failed run leaves the directory as it was.
//!
//! Amounts, account ids and timestamps are written as decimal text (in JSON as strings: they
//! exceed what a JSON number holds exactly in most readers).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde_json::{json, Value};

use super::{
    AmountBreak, BadInput, BalanceKind, LedgerReport, MissingInFile, MissingInLedger, Report,
    Statement,
};

/// What the report says besides the outcome: the inputs, and the external ids of the breaks'
/// accounts (with a mapping).
pub struct Files<'a> {
    pub positions: &'a str,
    pub mapping: Option<&'a str>,
    pub balance: BalanceKind,
    pub externals: &'a HashMap<u128, String>,
}

impl Files<'_> {
    fn external(&self, account: u128) -> &str {
        self.externals.get(&account).map_or("", String::as_str)
    }

    fn external_json(&self, account: u128) -> Value {
        self.externals
            .get(&account)
            .map_or(Value::Null, |external| Value::String(external.clone()))
    }
}

/// Makes `dir` if absent and checks a file can be written in it: before anything is fetched.
pub fn check_out_dir(dir: &Path) -> Result<(), BadInput> {
    let name = dir.display();
    std::fs::create_dir_all(dir)
        .map_err(|error| BadInput(format!("--out {name}: cannot make the directory: {error}")))?;
    tempfile::NamedTempFile::new_in(dir)
        .map_err(|error| BadInput(format!("--out {name}: cannot write in it: {error}")))?;
    Ok(())
}

/// The accounts of every break (whose external ids the report names).
pub fn break_accounts(report: &Report) -> HashSet<u128> {
    let mut accounts = HashSet::new();
    for ledger in &report.ledgers {
        accounts.extend(ledger.amount_breaks.iter().map(|b| b.account));
        accounts.extend(ledger.missing_in_ledger.iter().map(|b| b.account));
        accounts.extend(ledger.missing_in_file.iter().map(|b| b.account));
    }
    accounts
}

/// Writes the report's files into `dir` (all of them or none).
pub fn write(dir: &Path, report: &Report, files: &Files<'_>) -> anyhow::Result<()> {
    let mut written = vec![(
        in_temp(dir, |out| breaks_csv(out, report, files))?,
        "breaks.csv",
    )];
    if report.since.is_some() {
        written.push((
            in_temp(dir, |out| statements_csv(out, report, files))?,
            "statements.csv",
        ));
    }
    written.push((
        in_temp(dir, |out| report_json(out, report, files))?,
        "report.json",
    ));
    for (temp, name) in written {
        let path = dir.join(name);
        temp.persist(&path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if report.since.is_none() {
        // A previous run's statement lines would read as this run's.
        let stale = dir.join("statements.csv");
        if stale.exists() {
            std::fs::remove_file(&stale)
                .with_context(|| format!("removing the stale {}", stale.display()))?;
        }
    }
    Ok(())
}

/// A temporary file in `dir` holding what `fill` writes.
fn in_temp(
    dir: &Path,
    fill: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>,
) -> anyhow::Result<tempfile::NamedTempFile> {
    let mut temp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing in {}", dir.display()))?;
    {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, temp.as_file_mut());
        fill(&mut out).with_context(|| format!("writing in {}", dir.display()))?;
        out.flush()
            .with_context(|| format!("writing in {}", dir.display()))?;
    }
    temp.as_file()
        .sync_all()
        .with_context(|| format!("writing in {}", dir.display()))?;
    Ok(temp)
}

const BREAK_COLUMNS: [&str; 15] = [
    "ledger",
    "kind",
    "account",
    "external",
    "line",
    "file_amount",
    "ledger_amount",
    "difference",
    "account_ledger",
    "account_created",
    "file_ledger",
    "statement_lines",
    "statement_more",
    "note",
    "balance",
];

fn opt<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(String::new, |value| value.to_string())
}

/// The statement columns: its line count and whether more lines were left out (empty when
/// not asked for; "not fetched" past the breaks given statements).
fn statement_columns(statement: &Statement) -> [String; 2] {
    match statement {
        Statement::NotAsked => [String::new(), String::new()],
        Statement::NotFetched => [String::new(), "not fetched".to_owned()],
        Statement::Lines { lines, more } => [lines.len().to_string(), more.to_string()],
    }
}

/// Why a position of the file is missing in the ledger, in words.
pub fn missing_in_ledger_note(b: &MissingInLedger, ledger: u32, at: u64) -> String {
    match (b.account_ledger, b.account_created) {
        (None, _) => "no such account (or not in the credential's scope)".to_owned(),
        (Some(on), Some(created)) if created > at && on == ledger => {
            format!("the account was created at {created}, after --at")
        }
        (Some(on), Some(created)) if created > at => {
            format!("the account is on ledger {on}, created at {created}, after --at")
        }
        (Some(on), _) => format!("the account is on ledger {on}"),
    }
}

/// Where the file has a ledger account it lacks on the account's ledger, in words.
pub fn missing_in_file_note(b: &MissingInFile) -> String {
    match b.file_row {
        Some((ledger, line)) => {
            format!("the file has the account on ledger {ledger} (line {line})")
        }
        None => String::new(),
    }
}

fn breaks_csv(out: &mut dyn Write, report: &Report, files: &Files<'_>) -> anyhow::Result<()> {
    let mut csv = csv::Writer::from_writer(out);
    csv.write_record(BREAK_COLUMNS)?;
    let balance = files.balance.name();
    for ledger in &report.ledgers {
        let l = ledger.ledger.to_string();
        for b in &ledger.amount_breaks {
            let [lines, more] = statement_columns(&b.statement);
            csv.write_record([
                &l,
                "amount",
                &b.account.to_string(),
                files.external(b.account),
                &b.line.to_string(),
                &b.file_amount.to_string(),
                &b.ledger_amount.to_string(),
                &b.difference().to_string(),
                "",
                "",
                "",
                &lines,
                &more,
                "",
                balance,
            ])?;
        }
        for b in &ledger.missing_in_ledger {
            csv.write_record([
                &l,
                "missing_in_ledger",
                &b.account.to_string(),
                files.external(b.account),
                &b.line.to_string(),
                &b.file_amount.to_string(),
                "",
                "",
                &opt(b.account_ledger),
                &opt(b.account_created),
                "",
                "",
                "",
                &missing_in_ledger_note(b, ledger.ledger, report.at),
                balance,
            ])?;
        }
        for b in &ledger.missing_in_file {
            let [lines, more] = statement_columns(&b.statement);
            csv.write_record([
                &l,
                "missing_in_file",
                &b.account.to_string(),
                files.external(b.account),
                &opt(b.file_row.map(|(_, line)| line)),
                "",
                &b.ledger_amount.to_string(),
                "",
                "",
                "",
                &opt(b.file_row.map(|(ledger, _)| ledger)),
                &lines,
                &more,
                &missing_in_file_note(b),
                balance,
            ])?;
        }
    }
    csv.flush()?;
    Ok(())
}

fn statements_csv(out: &mut dyn Write, report: &Report, files: &Files<'_>) -> anyhow::Result<()> {
    let mut csv = csv::Writer::from_writer(out);
    csv.write_record([
        "ledger",
        "kind",
        "account",
        "external",
        "timestamp",
        "event",
        "id",
        "amount",
        "position_after",
    ])?;
    for ledger in &report.ledgers {
        let l = ledger.ledger.to_string();
        let breaks = (ledger.amount_breaks.iter())
            .map(|b| ("amount", b.account, &b.statement))
            .chain(
                ledger
                    .missing_in_file
                    .iter()
                    .map(|b| ("missing_in_file", b.account, &b.statement)),
            );
        for (kind, account, statement) in breaks {
            let Statement::Lines { lines, .. } = statement else {
                continue;
            };
            for line in lines {
                csv.write_record([
                    &l,
                    kind,
                    &account.to_string(),
                    files.external(account),
                    &line.timestamp.to_string(),
                    line.event,
                    &line.id.to_string(),
                    &opt(line.amount),
                    &line.position_after.to_string(),
                ])?;
            }
        }
    }
    csv.flush()?;
    Ok(())
}

fn statement_json(statement: &Statement) -> Value {
    match statement {
        Statement::NotAsked => Value::Null,
        Statement::NotFetched => json!({ "fetched": false }),
        Statement::Lines { lines, more } => json!({
            "fetched": true,
            "more": more,
            "lines": lines.iter().map(|line| json!({
                "timestamp": line.timestamp.to_string(),
                "event": line.event,
                "id": line.id.to_string(),
                "amount": line.amount.map(|amount| amount.to_string()),
                "position_after": line.position_after.to_string(),
            })).collect::<Vec<_>>(),
        }),
    }
}

fn amount_json(b: &AmountBreak, files: &Files<'_>) -> Value {
    json!({
        "account": b.account.to_string(),
        "external": files.external_json(b.account),
        "line": b.line,
        "file_amount": b.file_amount.to_string(),
        "ledger_amount": b.ledger_amount.to_string(),
        "difference": b.difference().to_string(),
        "statement": statement_json(&b.statement),
    })
}

fn missing_in_ledger_json(b: &MissingInLedger, ledger: u32, at: u64, files: &Files<'_>) -> Value {
    json!({
        "account": b.account.to_string(),
        "external": files.external_json(b.account),
        "line": b.line,
        "file_amount": b.file_amount.to_string(),
        "account_ledger": b.account_ledger,
        "account_created": b.account_created.map(|created| created.to_string()),
        "note": missing_in_ledger_note(b, ledger, at),
    })
}

fn missing_in_file_json(b: &MissingInFile, files: &Files<'_>) -> Value {
    json!({
        "account": b.account.to_string(),
        "external": files.external_json(b.account),
        "ledger_amount": b.ledger_amount.to_string(),
        "file_row": b.file_row.map(|(ledger, line)| json!({ "ledger": ledger, "line": line })),
        "statement": statement_json(&b.statement),
    })
}

/// Writes `items` as a JSON array, one element a line.
fn array<T>(out: &mut dyn Write, items: &[T], each: impl Fn(&T) -> Value) -> anyhow::Result<()> {
    out.write_all(b"[")?;
    for (at, item) in items.iter().enumerate() {
        out.write_all(if at == 0 { b"\n" } else { b",\n" })?;
        serde_json::to_writer(&mut *out, &each(item))?;
    }
    out.write_all(b"]")?;
    Ok(())
}

fn ledger_json(
    out: &mut dyn Write,
    ledger: &LedgerReport,
    at: u64,
    files: &Files<'_>,
) -> anyhow::Result<()> {
    write!(
        out,
        "{{\"ledger\":{},\"matched\":{},\"zero_absent\":{},\"amount_breaks\":",
        ledger.ledger, ledger.matched, ledger.zero_absent
    )?;
    array(out, &ledger.amount_breaks, |b| amount_json(b, files))?;
    out.write_all(b",\"missing_in_ledger\":")?;
    array(out, &ledger.missing_in_ledger, |b| {
        missing_in_ledger_json(b, ledger.ledger, at, files)
    })?;
    out.write_all(b",\"missing_in_file\":")?;
    array(out, &ledger.missing_in_file, |b| {
        missing_in_file_json(b, files)
    })?;
    out.write_all(b"}")?;
    Ok(())
}

fn report_json(out: &mut dyn Write, report: &Report, files: &Files<'_>) -> anyhow::Result<()> {
    let count = |f: fn(&LedgerReport) -> u64| report.ledgers.iter().map(f).sum::<u64>();
    let head = json!({
        "positions": files.positions,
        "mapping": files.mapping,
        "balance": files.balance.name(),
        "at": report.at.to_string(),
        "since": report.since.map(|since| since.to_string()),
        "summary": {
            "text": report.summary(),
            "compared": report.compared,
            "left_out": report.left_out,
            "ledger_accounts": report.ledger_accounts,
            "matched": count(|l| l.matched),
            "zero_absent": count(|l| l.zero_absent),
            "amount_breaks": count(|l| l.amount_breaks.len() as u64),
            "missing_in_ledger": count(|l| l.missing_in_ledger.len() as u64),
            "missing_in_file": count(|l| l.missing_in_file.len() as u64),
            "statements_not_fetched": report.statements_not_fetched,
        },
    });
    // The head's fields, then the ledgers (streamed: a report can hold millions of breaks).
    let head = serde_json::to_string(&head)?;
    out.write_all(&head.as_bytes()[..head.len() - 1])?;
    out.write_all(b",\"ledgers\":[")?;
    for (at, ledger) in report.ledgers.iter().enumerate() {
        if at > 0 {
            out.write_all(b",")?;
        }
        out.write_all(b"\n")?;
        ledger_json(out, ledger, report.at, files)?;
    }
    out.write_all(b"]}\n")?;
    Ok(())
}
