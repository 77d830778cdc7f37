//! `tally client create-accounts | create-transfers | create-trades`: a file of any size into
//! the cluster, in the file's order, with memory bounded by a few requests whatever the size.
//!
//! 1. **Check** (first pass, nothing sent): every row parses and converts (column names,
//!    numbers, flags), there is at least one event, and every linked chain ends and fits in
//!    one request. Bad input exits 2 naming the file and line; the cluster sees nothing.
//! 2. **Send** (second pass, after connecting): rows are read again by a reader thread and cut
//!    into requests of at most the node's events per request, never inside a linked chain,
//!    and given to the client's in-order pipeline (`Client::create_in_order`): a few requests
//!    in flight, applied in the file's order however they are refused or retried (a post of
//!    a pending transfer after the transfer it posts). Failures are reported per line as they
//!    come; `exists` is counted, not listed: re-running a file after an interruption is safe
//!    and says how many events already existed.
//!
//! Standard input (`-`) is spooled to a temporary file so it can be read twice. CSV and JSON
//! arrays alike are read as a stream (a JSON array element by element), so memory stays
//! bounded whatever the file's size.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use tally_client::limits::REQUEST_EVENTS_MAX;
use tally_client::{Client, ClientError};
use tally_engine::EventResult;

use crate::client_cli::Output;

/// A 128-byte record read from line `line`, with its id.
pub(crate) struct Event {
    pub(crate) line: u64,
    pub(crate) id: u128,
    pub(crate) record: [u8; 128],
}

/// A record's id and its 128 bytes, as built from a row.
pub type Built = (u128, [u8; 128]);

/// How one kind of record is read from a file's rows.
pub struct RecordKind {
    /// Its column names, in the order `build` is given their values; the first `required`
    /// must be in the header and non-empty in every row, the others may be left out.
    pub columns: &'static [&'static str],
    pub required: usize,
    /// A row's record and id, from the values of `columns` (each trimmed; "" where absent):
    /// `Err` says what is wrong with the row.
    pub build: fn(&[&str]) -> anyhow::Result<Built>,
}

/// Columns a record kind may have (the widest, transfers, has 12).
const COLUMNS_MAX: usize = 16;

impl RecordKind {
    /// The index in `columns` of a column named `name` in a file, or why it is not one.
    fn column(&self, name: &str) -> anyhow::Result<usize> {
        self.columns
            .iter()
            .position(|column| *column == name)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown column {name:?} (the columns are: {})",
                    self.columns.join(", ")
                )
            })
    }

    /// The record of a row whose values are `values` (in `columns` order).
    fn record(&self, values: &[&str]) -> anyhow::Result<(u128, [u8; 128])> {
        if let Some(missing) = (0..self.required).find(|&column| values[column].is_empty()) {
            bail!("column {} is required but empty", self.columns[missing]);
        }
        (self.build)(&values[..self.columns.len()])
    }
}

/// Whether `record` links to the next event (bit 0 of the flags at bytes 118..120, the same
/// place in every record kind).
fn is_linked(record: &[u8; 128]) -> bool {
    u16::from_le_bytes([record[118], record[119]]) & 1 != 0
}

/// The file to read, twice: the file itself, or standard input spooled to a temporary file.
pub struct Input {
    path: PathBuf,
    name: String,
    _spool: Option<tempfile::NamedTempFile>,
}

impl Input {
    pub fn open(path: &Path) -> anyhow::Result<Input> {
        if path.as_os_str() == "-" {
            let mut spool = tempfile::NamedTempFile::new().context("spooling standard input")?;
            std::io::copy(&mut std::io::stdin().lock(), &mut spool)
                .context("reading standard input")?;
            spool.flush()?;
            return Ok(Input {
                path: spool.path().to_owned(),
                name: "standard input".to_owned(),
                _spool: Some(spool),
            });
        }
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Input {
            path: path.to_owned(),
            name: path.display().to_string(),
            _spool: None,
        })
    }

    fn is_json(&self) -> anyhow::Result<bool> {
        if self.path.extension().is_some_and(|ext| ext == "json") {
            return Ok(true);
        }
        let mut first = [0u8; 256];
        let mut file = std::fs::File::open(&self.path)?;
        let read = std::io::Read::read(&mut file, &mut first)?;
        Ok(first[..read]
            .iter()
            .find(|byte| !byte.is_ascii_whitespace())
            .is_some_and(|byte| *byte == b'['))
    }

    /// Every row of the file as an event of `kind` (its line: the CSV line, or the JSON
    /// element's number), in order, to `each`; stops at the first error, naming the file and
    /// line.
    pub(crate) fn events(
        &self,
        kind: &RecordKind,
        mut each: impl FnMut(Event) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        assert!(kind.columns.len() <= COLUMNS_MAX && kind.required <= kind.columns.len());
        let name = &self.name;
        if self.is_json()? {
            let file =
                std::fs::File::open(&self.path).with_context(|| format!("cannot read {name}"))?;
            let reader = std::io::BufReader::with_capacity(1 << 20, file);
            return json_elements(reader, |line, text| {
                let (id, record) =
                    json_record(kind, text).with_context(|| format!("{name}: element {line}"))?;
                each(Event { line, id, record })
            })
            .with_context(|| format!("{name} as JSON"));
        }
        let file =
            std::fs::File::open(&self.path).with_context(|| format!("cannot read {name}"))?;
        let mut reader =
            csv::ReaderBuilder::new().from_reader(std::io::BufReader::with_capacity(1 << 20, file));
        let headers = reader
            .byte_headers()
            .with_context(|| format!("{name}: the header row"))?
            .clone();
        if headers.is_empty() {
            // An empty file: no events (the check says so).
            return Ok(());
        }
        // Where each of the file's columns goes among the kind's.
        let mut places = Vec::new();
        for header in &headers {
            let header = std::str::from_utf8(header)
                .map_err(|_| anyhow::anyhow!("{name}: line 1: a column name is not UTF-8"))?
                .trim();
            let place = kind
                .column(header)
                .with_context(|| format!("{name}: line 1"))?;
            if places.contains(&place) {
                bail!("{name}: line 1: column {header:?} is named twice");
            }
            places.push(place);
        }
        if let Some(missing) = (0..kind.required).find(|column| !places.contains(column)) {
            bail!(
                "{name}: line 1: the header has no column {:?}, which is required (the \
                 required columns are: {})",
                kind.columns[missing],
                kind.columns[..kind.required].join(", ")
            );
        }
        let mut row = csv::ByteRecord::new();
        loop {
            let more = reader
                .read_byte_record(&mut row)
                .with_context(|| format!("{name}: line {}", reader.position().line()))?;
            if !more {
                return Ok(());
            }
            let line = row.position().map_or(0, csv::Position::line);
            let mut values = [""; COLUMNS_MAX];
            for (field, &place) in row.iter().zip(&places) {
                values[place] = std::str::from_utf8(field)
                    .map_err(|_| anyhow::anyhow!("{name}: line {line}: not UTF-8"))?
                    .trim();
            }
            let (id, record) = kind
                .record(&values)
                .with_context(|| format!("{name}: line {line}"))?;
            each(Event { line, id, record })?;
        }
    }
}

/// The record of one JSON array element (an object of column names to numbers or strings;
/// `null` is absent).
fn json_record(kind: &RecordKind, text: &str) -> anyhow::Result<(u128, [u8; 128])> {
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&crate::client_cli::quote_big_integers(text))
            .context("not a JSON object")?;
    let mut texts: [Option<String>; COLUMNS_MAX] = Default::default();
    for (key, value) in object {
        let place = kind.column(&key)?;
        texts[place] = match value {
            serde_json::Value::Null => None,
            serde_json::Value::String(text) => Some(text),
            serde_json::Value::Number(number) => Some(number.to_string()),
            other => bail!("column {key}: {other} is neither a number nor a string"),
        };
    }
    let mut values = [""; COLUMNS_MAX];
    for (value, text) in values.iter_mut().zip(&texts) {
        *value = text.as_deref().map_or("", str::trim);
    }
    kind.record(&values)
}

/// Each element of the JSON array `reader` holds, as its text, with its number (from 1), in
/// order: one element in memory at a time, whatever the array's length.
fn json_elements(
    reader: impl std::io::BufRead,
    mut each: impl FnMut(u64, &str) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut bytes = std::io::Read::bytes(reader);
    let mut next = || -> anyhow::Result<Option<u8>> { Ok(bytes.next().transpose()?) };
    let mut element = Vec::new();
    let mut number = 0u64;
    // Before the array, inside it between elements, inside an element, after it.
    let (mut started, mut ended) = (false, false);
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    while let Some(byte) = next()? {
        if ended {
            if !byte.is_ascii_whitespace() {
                bail!("text after the array's closing bracket");
            }
            continue;
        }
        if !started {
            match byte {
                b'[' => started = true,
                byte if byte.is_ascii_whitespace() => {}
                _ => bail!("not a JSON array (it does not start with '[')"),
            }
            continue;
        }
        if in_string {
            element.push(byte);
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth > 0 => depth -= 1,
            b',' | b']' if depth == 0 => {
                let text = std::str::from_utf8(&element)
                    .map_err(|_| anyhow::anyhow!("element {}: not UTF-8", number + 1))?
                    .trim();
                if text.is_empty() {
                    if byte == b',' || number > 0 {
                        bail!("element {}: empty (a stray comma?)", number + 1);
                    }
                } else {
                    number += 1;
                    each(number, text)?;
                }
                element.clear();
                ended = byte == b']';
                continue;
            }
            _ => {}
        }
        element.push(byte);
    }
    if !started || !ended {
        bail!("the array is not closed (the file ends inside it)");
    }
    Ok(())
}

/// The first pass: the number of events, or why the file is bad input.
fn check(input: &Input, kind: &RecordKind) -> anyhow::Result<u64> {
    let mut count = 0u64;
    let mut chain: Option<(u64, usize)> = None;
    input.events(kind, |event| {
        count += 1;
        let (start, length) = chain.map_or((event.line, 1), |(start, length)| (start, length + 1));
        if length > REQUEST_EVENTS_MAX {
            bail!(
                "{}: line {start}: a linked chain starting here is longer than one request \
                 ({REQUEST_EVENTS_MAX} events): it cannot be applied whole",
                input.name
            );
        }
        chain = is_linked(&event.record).then_some((start, length));
        Ok(())
    })?;
    if count == 0 {
        bail!(
            "{}: no events (an empty file, or a header row only)",
            input.name
        );
    }
    if let Some((start, _)) = chain {
        bail!(
            "{}: line {start}: the linked chain starting here is still open at the end of the \
             file (its last event has the linked flag)",
            input.name
        );
    }
    Ok(count)
}

/// One request: its body and, per event, its line and id.
struct Request {
    body: Vec<u8>,
    lines: Vec<u64>,
    ids: Vec<u128>,
}

/// What an import did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    pub events: u64,
    pub created: u64,
    pub existed: u64,
    pub failed: u64,
    /// The highest commit index among the replies: every event is in the log up to it (the
    /// handle to the checkpoint covering them: `Client::checkpoint_covering`).
    pub committed_through: u64,
}

/// Failed events, printed as they come in the chosen format (columns: line, id, result).
struct Failures {
    output: Output,
    printed: u64,
}

impl Failures {
    fn print(&mut self, line: u64, id: u128, result: EventResult) {
        let result = format!("{result:?}");
        match self.output {
            Output::Json => {
                let separator = if self.printed == 0 { "[\n" } else { ",\n" };
                print!(
                    "{separator}  {{\"line\": {line}, \"id\": \"{id}\", \"result\": \"{result}\"}}"
                );
            }
            Output::Csv => {
                if self.printed == 0 {
                    println!("line,id,result");
                }
                println!("{line},{id},{result}");
            }
            Output::Table => {
                if self.printed == 0 {
                    println!("{:>10}  {:>39}  result", "line", "id");
                }
                println!("{line:>10}  {id:>39}  {result}");
            }
        }
        self.printed += 1;
    }

    fn finish(&self) {
        if matches!(self.output, Output::Json) {
            println!("{}", if self.printed == 0 { "[]" } else { "\n]" });
        }
    }
}

/// Progress on standard error: a bar with events/s on a terminal, a line every few seconds
/// otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    fn new(total: u64) -> Progress {
        let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} events  {per_sec}  eta {eta}",
            ) {
                bar.set_style(style);
            }
            bar
        });
        Progress {
            bar,
            total,
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }

    fn advance(&mut self, done: u64) {
        match &self.bar {
            Some(bar) => bar.set_position(done),
            None if self.last_line.elapsed() >= Duration::from_secs(5) => {
                self.last_line = Instant::now();
                let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
                eprintln!("{done} of {} events ({rate:.0}/s)", self.total);
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A file that passed the check: `events` events, none sent yet.
pub struct Checked {
    input: std::sync::Arc<Input>,
    kind: &'static RecordKind,
    pub events: u64,
}

impl Checked {
    /// Check `input` whole (the first pass, nothing sent): bad input is an error naming the
    /// file and line, before any connection is made.
    pub async fn check(input: Input, kind: &'static RecordKind) -> anyhow::Result<Checked> {
        let input = std::sync::Arc::new(input);
        let checking = std::sync::Arc::clone(&input);
        let events = tokio::task::spawn_blocking(move || check(&checking, kind))
            .await
            .context("checking the input")??;
        Ok(Checked {
            input,
            kind,
            events,
        })
    }

    /// Send the file as `operation` events, in the file's order, with up to `in_flight`
    /// requests in flight (`Client::create_in_order`), at most `rate` events per second on
    /// average if given.
    pub async fn import(
        self,
        operation: tally_engine::Operation,
        client: &Client,
        in_flight: usize,
        rate: Option<u64>,
        output: Output,
    ) -> anyhow::Result<Summary> {
        let Checked {
            input,
            kind,
            events: total,
        } = self;
        let limit = client.request_events_max().await.min(REQUEST_EVENTS_MAX);
        // The reader thread cuts requests; two wait at most, so memory stays bounded.
        let (requests, mut next) = tokio::sync::mpsc::channel::<anyhow::Result<Request>>(2);
        let reading = std::sync::Arc::clone(&input);
        let reader = tokio::task::spawn_blocking(move || cut(&reading, kind, limit, &requests));
        let (bodies, mut results) = client.create_in_order(operation, in_flight);
        let mut bodies = Some(bodies);
        // Lines and ids of the requests given to the pipeline, answered in this order.
        let mut sent: std::collections::VecDeque<(Vec<u64>, Vec<u128>)> =
            std::collections::VecDeque::new();
        let mut summary = Summary {
            events: total,
            ..Summary::default()
        };
        let mut failures = Failures { output, printed: 0 };
        let mut progress = Progress::new(total);
        let mut applied = 0u64;
        let mut pace = rate.map(Pace::new);
        loop {
            tokio::select! {
                request = next.recv(), if bodies.is_some() => match request {
                    Some(Ok(request)) if request.ids.is_empty() => {}
                    Some(Ok(request)) => {
                        if let Some(pace) = pace.as_mut() {
                            pace.before(request.ids.len()).await;
                        }
                        sent.push_back((request.lines, request.ids));
                        let sender = bodies.as_ref().expect("open");
                        if sender.send(Bytes::from(request.body)).await.is_err() {
                            // The pipeline stopped on an error: its result is next.
                            bodies = None;
                        }
                    }
                    Some(Err(error)) => {
                        progress.finish();
                        failures.finish();
                        return Err(error);
                    }
                    None => bodies = None,
                },
                result = results.recv() => {
                    let Some(result) = result else { break };
                    let (lines, ids) = sent.pop_front().context("a result for no request")?;
                    let created = match result {
                        Ok(created) => created,
                        Err(error) => {
                            progress.finish();
                            failures.finish();
                            let (first, last) = (lines[0], lines[lines.len() - 1]);
                            let refused = matches!(&error, ClientError::Refused { status, .. } if !status.is_transient());
                            let said = if refused {
                                refused_whole(&input.name, applied, first, last)
                            } else {
                                unknown_outcome(&input.name, applied, first, last, in_flight)
                            };
                            return Err(anyhow::Error::new(error).context(Stopped(said)));
                        }
                    };
                    summary.committed_through = summary.committed_through.max(created.commit_index);
                    for (index, result) in created.failures {
                        let index = index as usize;
                        if result == EventResult::Exists {
                            summary.existed += 1;
                        } else {
                            summary.failed += 1;
                            failures.print(lines[index], ids[index], result);
                        }
                    }
                    applied += ids.len() as u64;
                    progress.advance(applied);
                }
            }
        }
        reader.await.context("reading the input")?;
        progress.finish();
        failures.finish();
        if applied != total {
            bail!(
                "{}: {applied} of {total} events were answered: the file changed while it was \
                 imported?",
                input.name
            );
        }
        summary.created = summary.events - summary.existed - summary.failed;
        Ok(summary)
    }
}

/// Holds an import to `rate` events per second: a token bucket that lets a request go once
/// the events sent before it are due, and holds at most `PACE_BURST` of credit, so an import
/// that was held up (a leader change, a slow disk) goes on at `rate` afterwards instead of
/// sending everything it fell behind by at once.
struct Pace {
    /// When the next request may go.
    next: tokio::time::Instant,
    rate: f64,
}

/// The most an import may run ahead of `rate` after it was held up: some smoothing for
/// requests of different sizes, never a catch-up flood.
const PACE_BURST: std::time::Duration = std::time::Duration::from_millis(50);

impl Pace {
    fn new(rate: u64) -> Pace {
        Pace {
            next: tokio::time::Instant::now(),
            rate: rate as f64,
        }
    }

    /// Wait until a request of `events` may go.
    async fn before(&mut self, events: usize) {
        let now = tokio::time::Instant::now();
        let at = self.next.max(now.checked_sub(PACE_BURST).unwrap_or(now));
        tokio::time::sleep_until(at).await;
        self.next = at + std::time::Duration::from_secs_f64(events as f64 / self.rate);
    }
}

#[cfg(test)]
mod pace_tests {
    use super::*;

    /// At the rate, and after a stall only `PACE_BURST` of catching up (paused clock).
    #[tokio::test(start_paused = true)]
    async fn a_held_up_import_goes_on_at_its_rate() {
        let start = tokio::time::Instant::now();
        let mut pace = Pace::new(1_000);
        for _ in 0..10 {
            pace.before(100).await;
        }
        // Ten requests of 100 at 1,000/s: the tenth goes at 0.9 s.
        assert_eq!(start.elapsed(), std::time::Duration::from_millis(900));
        // Held up for 5 s (the cluster did not answer): the next five go at the rate again,
        // after at most 50 ms of credit, not at once.
        tokio::time::advance(std::time::Duration::from_secs(5)).await;
        let resumed = tokio::time::Instant::now();
        for _ in 0..5 {
            pace.before(100).await;
        }
        assert_eq!(
            resumed.elapsed(),
            std::time::Duration::from_millis(4 * 100 - 50)
        );
    }
}

/// The second pass, on the reader thread: `input`'s events cut into requests of at most
/// `limit` events, never inside a linked chain (each fits one request: checked), to
/// `requests`; an error (or the import stopping) ends it.
fn cut(
    input: &Input,
    kind: &RecordKind,
    limit: usize,
    requests: &tokio::sync::mpsc::Sender<anyhow::Result<Request>>,
) {
    let mut current = Request {
        body: Vec::with_capacity(limit * 128),
        lines: Vec::with_capacity(limit),
        ids: Vec::with_capacity(limit),
    };
    let mut chain_start = 0usize;
    let read = input.events(kind, |event| {
        if current.ids.len() == limit {
            // Cut before the open chain (it fits in one request: checked).
            let tail = Request {
                body: current.body.split_off(chain_start * 128),
                lines: current.lines.split_off(chain_start),
                ids: current.ids.split_off(chain_start),
            };
            let full = std::mem::replace(&mut current, tail);
            if full.ids.is_empty() || requests.blocking_send(Ok(full)).is_err() {
                bail!("stopped");
            }
            chain_start = 0;
        }
        current.body.extend_from_slice(&event.record);
        current.lines.push(event.line);
        current.ids.push(event.id);
        if !is_linked(&event.record) {
            chain_start = current.ids.len();
        }
        Ok(())
    });
    let _ = requests.blocking_send(read.map(|()| current));
}

/// What an interrupted import tells its user: what is certainly applied, what may be, and
/// how to finish.
fn unknown_outcome(name: &str, applied: u64, first: u64, last: u64, in_flight: usize) -> String {
    format!(
        "{name}: the {applied} events before line {first} were applied; the request of lines \
         {first}..={last} may or may not have been applied, and so may the few requests sent \
         behind it (at most {in_flight} in flight); nothing later was sent. Run the same \
         command again: events already applied answer `exists` and are counted as such, so \
         nothing is applied twice"
    )
}

/// Why an import stopped partway, and what of it is applied (the error's outermost context).
#[derive(Debug)]
struct Stopped(String);

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an import stopped by a refusal tells its user: that request changed nothing.
fn refused_whole(name: &str, applied: u64, first: u64, last: u64) -> String {
    format!(
        "{name}: the {applied} events before line {first} were applied; the request of lines \
         {first}..={last} was refused whole (nothing of it was applied), the requests sent \
         behind it were refused with it (a file's requests are applied in order), and nothing \
         later was sent"
    )
}

/// Whether an import error is bad input (exit 2) rather than the cluster's (exit 3).
pub fn is_cluster_error(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<ClientError>(),
            Some(error) if !matches!(error, ClientError::Invalid(_))
        )
    })
}

/// For an error of a single request (not an import, which says more): whether anything may
/// have been applied.
pub fn outcome_hint(error: &anyhow::Error) -> Option<&'static str> {
    if error.downcast_ref::<Stopped>().is_some() {
        return None;
    }
    error
        .chain()
        .find_map(|cause| match cause.downcast_ref::<ClientError>()? {
            ClientError::Refused { status, .. } if !status.is_transient() => {
                Some("the request was refused: nothing of it was applied")
            }
            ClientError::Invalid(_) => Some("nothing was sent"),
            ClientError::Tls(_) => Some("no connection was made: nothing was sent"),
            _ => Some(
                "no answer: a create request may or may not have been applied; send it again \
             (events already applied answer `exists`); a read changed nothing",
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::json_elements;

    fn elements(json: &str) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        json_elements(json.as_bytes(), |number, text| {
            assert_eq!(number as usize, out.len() + 1);
            out.push(text.to_owned());
            Ok(())
        })?;
        Ok(out)
    }

    /// Proves a JSON array is split into its elements exactly, brackets, commas and escaped
    /// quotes inside strings and nested values included, and that a malformed array is an
    /// error rather than a silent partial read.
    #[test]
    fn json_arrays_are_streamed_element_by_element() {
        assert_eq!(
            elements(" [ {\"a\": \"x],\\\"{\" , \"b\": [1, {\"c\": 2}]},\n{\"d\":3} ] \n").unwrap(),
            [
                "{\"a\": \"x],\\\"{\" , \"b\": [1, {\"c\": 2}]}",
                "{\"d\":3}"
            ]
        );
        assert_eq!(elements("[]").unwrap(), Vec::<String>::new());
        for bad in ["", "{}", "[{\"a\":1}", "[{\"a\":1},]", "[,{}]", "[{}] x"] {
            assert!(elements(bad).is_err(), "{bad:?}");
        }
    }
}
