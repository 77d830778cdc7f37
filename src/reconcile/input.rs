//! Reading the positions file and the mapping file: CSV with a header row, line by line, each
//! line at most [`LINE_BYTES_MAX`] bytes, so memory grows with the number of positions kept
//! (48 bytes each) and never with a line's length. Every malformed row is found before
//! anything is fetched; the error lists the first [`LISTED_MAX`] by line and counts the rest.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{BufRead, Read};
use std::path::Path;

/// The longest line read, in bytes, not counting its line end. A longer line is a malformed
/// row (and is skipped without being held in memory).
pub const LINE_BYTES_MAX: usize = 64 * 1024;
/// The largest file read: past it the file is refused before a byte of it is parsed.
pub const FILE_BYTES_MAX: u64 = 4 << 30;
/// The most rows a positions or mapping file may hold.
pub const ROWS_MAX: usize = 20_000_000;
/// The most malformed rows an error lists (the rest are counted).
pub const LISTED_MAX: usize = 20;

/// Input that cannot be reconciled: the file, the line and what is wrong. Nothing was
/// fetched and nothing written.
#[derive(Debug)]
pub struct BadInput(pub String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// One position of the client's file, its account id resolved through the mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    pub account: u128,
    pub amount: i128,
    pub ledger: u32,
    /// Its line in the file (the header is line 1).
    pub line: u64,
}

/// The client's positions, sorted by account (no account twice).
#[derive(Debug)]
pub struct Positions {
    /// The file's name, as given.
    pub file: String,
    pub rows: Vec<Row>,
    /// Every ledger a row names.
    pub ledgers: BTreeSet<u32>,
}

impl Positions {
    /// The row of `account`, if the file has one.
    pub fn find(&self, account: u128) -> Option<usize> {
        self.rows
            .binary_search_by_key(&account, |row| row.account)
            .ok()
    }
}

/// External account ids (the client's) to ledger account ids, one to one.
#[derive(Debug)]
pub struct Mapping {
    pub file: String,
    /// Each external id's account and line.
    ids: HashMap<Box<str>, (u128, u64)>,
}

impl Mapping {
    /// The external id of each of `accounts` the mapping names.
    pub fn externals_of(&self, accounts: &HashSet<u128>) -> HashMap<u128, String> {
        self.ids
            .iter()
            .filter(|(_, (account, _))| accounts.contains(account))
            .map(|(external, (account, _))| (*account, external.to_string()))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The malformed rows of one file: the first [`LISTED_MAX`] (in the order found) and how many.
#[derive(Default)]
struct Problems {
    listed: Vec<(u64, String)>,
    total: u64,
}

impl Problems {
    fn push(&mut self, line: u64, problem: String) {
        self.total += 1;
        if self.listed.len() < LISTED_MAX {
            self.listed.push((line, problem));
        }
    }

    /// Both lists as one, by line (each holds its own first rows, so the first
    /// [`LISTED_MAX`] of the two together are among them).
    fn merge(mut self, other: Problems) -> Problems {
        self.listed.extend(other.listed);
        self.listed.sort_by_key(|(line, _)| *line);
        self.listed.truncate(LISTED_MAX);
        self.total += other.total;
        self
    }

    fn into_result(self, file: &str) -> Result<(), BadInput> {
        if self.total == 0 {
            return Ok(());
        }
        let mut text = format!(
            "{file}: {} malformed row{}:",
            self.total,
            if self.total == 1 { "" } else { "s" }
        );
        for (line, problem) in &self.listed {
            text.push_str(&format!("\n  line {line}: {problem}"));
        }
        let more = self.total - self.listed.len() as u64;
        if more > 0 {
            text.push_str(&format!("\n  and {more} more"));
        }
        Err(BadInput(text))
    }
}

/// A file's lines, each at most [`LINE_BYTES_MAX`] bytes held, numbered from 1.
struct Lines<R> {
    reader: R,
    buf: Vec<u8>,
    number: u64,
}

/// What [`Lines::next`] found.
enum Line {
    /// A line (in `buf`, its line end removed).
    Text,
    /// A line longer than [`LINE_BYTES_MAX`] (skipped).
    TooLong,
}

impl<R: BufRead> Lines<R> {
    fn next(&mut self) -> std::io::Result<Option<Line>> {
        self.buf.clear();
        let cap = LINE_BYTES_MAX as u64 + 1;
        if (&mut self.reader)
            .take(cap)
            .read_until(b'\n', &mut self.buf)?
            == 0
        {
            return Ok(None);
        }
        self.number += 1;
        let ended = self.buf.last() == Some(&b'\n');
        if ended {
            self.buf.pop();
        }
        if ended || self.buf.len() <= LINE_BYTES_MAX {
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
            return Ok(Some(Line::Text));
        }
        // The rest of the over-long line, read and dropped a piece at a time.
        loop {
            self.buf.clear();
            let read = (&mut self.reader)
                .take(cap)
                .read_until(b'\n', &mut self.buf)?;
            if read == 0 || self.buf.last() == Some(&b'\n') {
                break;
            }
        }
        self.buf.clear();
        Ok(Some(Line::TooLong))
    }
}

/// The fields of a CSV line: separated by commas, spaces around each trimmed; a field may be
/// in double quotes (a quote inside it doubled). A field never spans lines.
fn fields(line: &str) -> Result<Vec<Cow<'_, str>>, String> {
    let bytes = line.as_bytes();
    let mut out = Vec::with_capacity(4);
    let mut at = 0;
    loop {
        while at < bytes.len() && matches!(bytes[at], b' ' | b'\t') {
            at += 1;
        }
        if bytes.get(at) == Some(&b'"') {
            at += 1;
            let mut value = Cow::Borrowed("");
            loop {
                let Some(quote) = line[at..].find('"').map(|q| at + q) else {
                    return Err("a quoted field is not closed on its line".to_owned());
                };
                let piece = &line[at..quote];
                let doubled = bytes.get(quote + 1) == Some(&b'"');
                value = match value {
                    Cow::Borrowed("") if !doubled => Cow::Borrowed(piece),
                    value => {
                        let mut owned = value.into_owned();
                        owned.push_str(piece);
                        if doubled {
                            owned.push('"');
                        }
                        Cow::Owned(owned)
                    }
                };
                if doubled {
                    at = quote + 2;
                } else {
                    at = quote + 1;
                    break;
                }
            }
            while at < bytes.len() && matches!(bytes[at], b' ' | b'\t') {
                at += 1;
            }
            out.push(value);
            match bytes.get(at) {
                None => return Ok(out),
                Some(b',') => at += 1,
                Some(_) => return Err("text after a quoted field's closing quote".to_owned()),
            }
        } else {
            let end = line[at..].find(',').map_or(bytes.len(), |comma| at + comma);
            out.push(Cow::Borrowed(line[at..end].trim()));
            if end == bytes.len() {
                return Ok(out);
            }
            at = end + 1;
        }
    }
}

/// Reads the CSV file `path` whose header names `columns` (each once, in any order, no
/// other): every row's values in `columns`' order to `row`, which says what is wrong with
/// a row it refuses. Blank lines are skipped. Whole-file problems (unreadable, too big,
/// binary, empty, the header) end the read at once; row problems are all collected.
fn read_table(
    path: &Path,
    columns: &[&str],
    mut row: impl FnMut(u64, &[&str]) -> Result<(), String>,
) -> Result<(String, Problems), BadInput> {
    let name = path.display().to_string();
    let unreadable = |error: std::io::Error| BadInput(format!("cannot read {name}: {error}"));
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let size = file.metadata().map_err(unreadable)?;
    if size.is_dir() {
        return Err(BadInput(format!("{name} is a directory, not a CSV file")));
    }
    if size.len() > FILE_BYTES_MAX {
        return Err(BadInput(format!(
            "{name} has {} bytes, more than the {} read at most ({} GiB): split it (by ledger, \
             say) and reconcile each part",
            size.len(),
            FILE_BYTES_MAX,
            FILE_BYTES_MAX >> 30
        )));
    }
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let head = reader.fill_buf().map_err(unreadable)?;
    if let Some(at) = head.iter().position(|byte| *byte == 0) {
        return Err(BadInput(format!(
            "{name} is binary (a NUL byte at offset {at}), not a CSV text file"
        )));
    }
    let mut lines = Lines {
        reader,
        buf: Vec::new(),
        number: 0,
    };
    let want = columns.join(",");
    // The header: where each of the file's columns goes among `columns`.
    let places: Vec<usize> = loop {
        match lines.next().map_err(unreadable)? {
            None => {
                return Err(BadInput(format!(
                    "{name} is empty: want the header `{want}` and a row per line"
                )))
            }
            Some(Line::TooLong) => {
                return Err(BadInput(format!(
                    "{name}: line 1: longer than {LINE_BYTES_MAX} bytes; want the header `{want}`"
                )))
            }
            Some(Line::Text) => {}
        }
        let text = std::str::from_utf8(&lines.buf).map_err(|_| {
            BadInput(format!(
                "{name}: line 1: not UTF-8 text; want the header `{want}`"
            ))
        })?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        if text.trim().is_empty() {
            // Blank lines only: the file is empty.
            continue;
        }
        if lines.number > 1 {
            return Err(BadInput(format!(
                "{name}: line {}: the header must be line 1 (the lines before it are blank)",
                lines.number
            )));
        }
        let names = fields(text).map_err(|problem| {
            BadInput(format!(
                "{name}: line 1: the header: {problem}; want `{want}`"
            ))
        })?;
        let mut places = Vec::with_capacity(names.len());
        for header in &names {
            let Some(place) = columns.iter().position(|column| *column == header) else {
                return Err(BadInput(format!(
                    "{name}: line 1: unknown column {}; want the header `{want}` (the columns \
                     in any order, no other)",
                    shown(header)
                )));
            };
            if places.contains(&place) {
                return Err(BadInput(format!(
                    "{name}: line 1: column {} is named twice",
                    shown(header)
                )));
            }
            places.push(place);
        }
        if places.len() < columns.len() {
            let missing: Vec<&str> = (0..columns.len())
                .filter(|place| !places.contains(place))
                .map(|place| columns[place])
                .collect();
            return Err(BadInput(format!(
                "{name}: line 1: the header has no column {}; want `{want}`",
                missing.join(", ")
            )));
        }
        break places;
    };
    let mut problems = Problems::default();
    let mut rows = 0usize;
    assert!(columns.len() <= 4, "a table of at most four columns");
    while let Some(line) = lines.next().map_err(unreadable)? {
        let number = lines.number;
        if let Line::TooLong = line {
            problems.push(number, format!("longer than {LINE_BYTES_MAX} bytes"));
            continue;
        }
        if lines.buf.contains(&0) {
            problems.push(number, "binary content (a NUL byte)".to_owned());
            continue;
        }
        let Ok(text) = std::str::from_utf8(&lines.buf) else {
            problems.push(number, "not UTF-8 text".to_owned());
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        rows += 1;
        if rows > ROWS_MAX {
            return Err(BadInput(format!(
                "{name}: more than {ROWS_MAX} rows (line {number}), the most read: split the file \
                 (by ledger, say) and reconcile each part"
            )));
        }
        let found = match fields(text) {
            Ok(found) => found,
            Err(problem) => {
                problems.push(number, problem);
                continue;
            }
        };
        if found.len() != places.len() {
            problems.push(
                number,
                format!(
                    "{} fields; the header has {} ({want})",
                    found.len(),
                    places.len()
                ),
            );
            continue;
        }
        let mut values = [""; 4];
        for (value, &place) in found.iter().zip(&places) {
            values[place] = value;
        }
        if let Err(problem) = row(number, &values[..columns.len()]) {
            problems.push(number, problem);
        }
    }
    if rows == 0 && problems.total == 0 {
        return Err(BadInput(format!(
            "{name} has the header and no rows: nothing to reconcile"
        )));
    }
    Ok((name, problems))
}

/// `text` as an error message shows it: at most 40 characters of it.
fn shown(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

/// A u128 in decimal or `0x` hex (digits only: no sign, no separators).
pub fn parse_u128(text: &str) -> Result<u128, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u128::from_str_radix(hex, 16).ok()
        }
        Some(_) => None,
        None if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => text.parse().ok(),
        None => None,
    };
    parsed.ok_or_else(|| {
        format!(
            "{} is not an integer in 0..=2^128-1 (decimal or 0x hex)",
            shown(text)
        )
    })
}

/// An i128 in decimal or `0x` hex, with an optional sign (`-0x10` is -16).
pub fn parse_i128(text: &str) -> Result<i128, String> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let wrong = || {
        format!(
            "{} is not an integer in -2^127..=2^127-1 (decimal or 0x hex)",
            shown(text)
        )
    };
    let magnitude = parse_u128(digits).map_err(|_| wrong())?;
    let value = if negative {
        0i128.checked_sub_unsigned(magnitude)
    } else {
        i128::try_from(magnitude).ok()
    };
    value.ok_or_else(wrong)
}

/// A ledger: a u32 in decimal or `0x` hex, not 0 (no account is on ledger 0).
pub fn parse_ledger(text: &str) -> Result<u32, String> {
    let value = parse_u128(text)
        .ok()
        .and_then(|value| u32::try_from(value).ok())
        .ok_or_else(|| format!("{} is not a ledger (an integer in 1..=2^32-1)", shown(text)))?;
    if value == 0 {
        return Err("ledger 0 is no ledger (accounts are on ledgers 1 and up)".to_owned());
    }
    Ok(value)
}

/// The mapping file at `path`: columns `external,account`, each external id and each account
/// at most once.
pub fn read_mapping(path: &Path) -> Result<Mapping, BadInput> {
    let mut ids: HashMap<Box<str>, (u128, u64)> = HashMap::new();
    let mut accounts: Vec<(u128, u64)> = Vec::new();
    let (file, problems) = read_table(path, &["external", "account"], |line, values| {
        let (external, account) = (values[0], values[1]);
        if external.is_empty() {
            return Err("the external id is empty".to_owned());
        }
        let account = parse_u128(account).map_err(|problem| format!("account: {problem}"))?;
        if let Some((_, first)) = ids.get(external) {
            return Err(format!(
                "external id {} is mapped already, on line {first}",
                shown(external)
            ));
        }
        ids.insert(external.into(), (account, line));
        accounts.push((account, line));
        Ok(())
    })?;
    accounts.sort_unstable();
    let mut twice = Problems::default();
    for pair in accounts.windows(2) {
        if pair[0].0 == pair[1].0 {
            twice.push(
                pair[1].1,
                format!(
                    "account {} is mapped already, on line {} (the mapping is one to one)",
                    pair[1].0, pair[0].1
                ),
            );
        }
    }
    sorted_problems(twice).merge(problems).into_result(&file)?;
    Ok(Mapping { file, ids })
}

/// `problems` found out of line order: sorted by line, the first [`LISTED_MAX`] kept.
fn sorted_problems(mut problems: Problems) -> Problems {
    problems.listed.sort_by_key(|(line, _)| *line);
    problems
}

/// The positions file at `path`: columns `account,ledger,amount`; with a mapping, `account`
/// is an external id and must be in it.
pub fn read_positions(path: &Path, mapping: Option<&Mapping>) -> Result<Positions, BadInput> {
    let mut rows: Vec<Row> = Vec::new();
    let mut ledgers = BTreeSet::new();
    let (file, problems) = read_table(path, &["account", "ledger", "amount"], |line, values| {
        let account = match mapping {
            Some(mapping) => mapping
                .ids
                .get(values[0])
                .map(|(account, _)| *account)
                .ok_or_else(|| {
                    format!(
                        "external id {} is not in the mapping {}",
                        shown(values[0]),
                        mapping.file
                    )
                })?,
            None => parse_u128(values[0]).map_err(|problem| format!("account: {problem}"))?,
        };
        let ledger = parse_ledger(values[1]).map_err(|problem| format!("ledger: {problem}"))?;
        let amount = parse_i128(values[2]).map_err(|problem| format!("amount: {problem}"))?;
        ledgers.insert(ledger);
        rows.push(Row {
            account,
            amount,
            ledger,
            line,
        });
        Ok(())
    })?;
    // Stable: of the rows of one account, the first in the file comes first.
    rows.sort_by_key(|row| row.account);
    let mut duplicates: Vec<(u64, u128, u64)> = Vec::new();
    let mut kept = 0;
    for at in 0..rows.len() {
        if kept > 0 && rows[kept - 1].account == rows[at].account {
            duplicates.push((rows[at].line, rows[at].account, rows[kept - 1].line));
            continue;
        }
        rows[kept] = rows[at];
        kept += 1;
    }
    rows.truncate(kept);
    duplicates.sort_unstable();
    // With a mapping, the listed duplicates are named by their external ids too.
    let externals = match mapping {
        Some(mapping) => mapping.externals_of(
            &duplicates
                .iter()
                .take(LISTED_MAX)
                .map(|(_, account, _)| *account)
                .collect(),
        ),
        None => HashMap::new(),
    };
    let mut twice = Problems::default();
    for (line, account, first) in duplicates {
        let account = match externals.get(&account) {
            Some(external) => format!("external id {} (account {account})", shown(external)),
            None => format!("account {account}"),
        };
        twice.push(line, format!("{account} is on line {first} already"));
    }
    problems.merge(twice).into_result(&file)?;
    Ok(Positions {
        file,
        rows,
        ledgers,
    })
}
