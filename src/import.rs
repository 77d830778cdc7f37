//! `tally client create-accounts | create-transfers | create-trades`: a file of any size into
//! the cluster, in the file's order, with memory bounded by a few requests whatever the size.
//!
//! 1. **Check** (first pass, nothing sent): every row parses and converts (column names,
//!    numbers, flags), there is at least one event, and every linked chain ends and fits in
//!    one request. Bad input exits 2 naming the file and line; the cluster sees nothing.
//! 2. **Send** (second pass): rows are read again by a reader thread and cut into requests of
//!    at most the node's events per request, never inside a linked chain; each request is
//!    sent once the previous one is answered, so the cluster applies the file in order (a
//!    post of a pending transfer after the transfer it posts). Failures are reported per
//!    line as they come; `exists` is counted, not listed: re-running a file after an
//!    interruption is safe and says how many events already existed.
//!
//! Standard input (`-`) is spooled to a temporary file so it can be read twice. CSV is read as
//! a stream; a JSON array is read whole (memory in proportion to the file: use CSV for files
//! of millions of events).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use serde::de::DeserializeOwned;
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

/// How a row of type `R` becomes an event's id and record (bad input: `Err`).
pub(crate) type Convert<R> = fn(&R) -> anyhow::Result<(u128, [u8; 128])>;

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

    /// Every row of the file as an event (its line: the CSV line, or the JSON element's
    /// number), in order, to `each`; stops at the first error, naming the file and line.
    pub(crate) fn events<R: DeserializeOwned>(
        &self,
        convert: Convert<R>,
        mut each: impl FnMut(Event) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let name = &self.name;
        if self.is_json()? {
            let text = std::fs::read_to_string(&self.path)
                .with_context(|| format!("cannot read {name}"))?;
            let rows: Vec<R> = serde_json::from_str(&crate::client_cli::quote_big_integers(&text))
                .with_context(|| format!("{name} as JSON"))?;
            for (index, row) in rows.iter().enumerate() {
                let line = index as u64 + 1;
                let (id, record) =
                    convert(row).with_context(|| format!("{name}: element {line}"))?;
                each(Event { line, id, record })?;
            }
            return Ok(());
        }
        let file =
            std::fs::File::open(&self.path).with_context(|| format!("cannot read {name}"))?;
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(std::io::BufReader::with_capacity(1 << 20, file));
        let headers = reader
            .headers()
            .with_context(|| format!("{name}: the header row"))?
            .clone();
        let mut record = csv::StringRecord::new();
        loop {
            let more = reader
                .read_record(&mut record)
                .with_context(|| format!("{name}: line {}", reader.position().line()))?;
            if !more {
                return Ok(());
            }
            let line = record.position().map_or(0, csv::Position::line);
            let row: R = record
                .deserialize(Some(&headers))
                .with_context(|| format!("{name}: line {line}"))?;
            let (id, record) = convert(&row).with_context(|| format!("{name}: line {line}"))?;
            each(Event { line, id, record })?;
        }
    }
}

/// The first pass: the number of events, or why the file is bad input.
fn check<R: DeserializeOwned>(input: &Input, convert: Convert<R>) -> anyhow::Result<u64> {
    let mut count = 0u64;
    let mut chain: Option<(u64, usize)> = None;
    input.events(convert, |event| {
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

/// Import `input` as `operation` events: check it whole, then send it in order.
pub async fn import<R: DeserializeOwned + 'static>(
    input: Input,
    operation: tally_engine::Operation,
    convert: Convert<R>,
    client: &Client,
    output: Output,
) -> anyhow::Result<Summary> {
    let input = std::sync::Arc::new(input);
    let checking = std::sync::Arc::clone(&input);
    let total = tokio::task::spawn_blocking(move || check(&checking, convert))
        .await
        .context("checking the input")??;
    let limit = client.request_events_max().await.min(REQUEST_EVENTS_MAX);
    // The reader thread cuts requests; two wait at most, so memory stays bounded.
    let (requests, mut next) = tokio::sync::mpsc::channel::<anyhow::Result<Request>>(2);
    let reading = std::sync::Arc::clone(&input);
    let reader = tokio::task::spawn_blocking(move || {
        let mut current = Request {
            body: Vec::with_capacity(limit * 128),
            lines: Vec::with_capacity(limit),
            ids: Vec::with_capacity(limit),
        };
        let mut chain_start = 0usize;
        let sent = reading.events(convert, |event| {
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
        let last = match sent {
            Ok(()) => Ok(current),
            Err(error) => Err(error),
        };
        let _ = requests.blocking_send(last);
    });
    let mut summary = Summary {
        events: total,
        ..Summary::default()
    };
    let mut failures = Failures { output, printed: 0 };
    let mut progress = Progress::new(total);
    let mut applied = 0u64;
    while let Some(request) = next.recv().await {
        let request = request?;
        if request.ids.is_empty() {
            continue;
        }
        let first = request.lines[0];
        let last = request.lines[request.lines.len() - 1];
        let created = match client
            .create_raw(operation, Bytes::from(request.body))
            .await
        {
            Ok(created) => created,
            Err(error) => {
                progress.finish();
                failures.finish();
                let refused =
                    matches!(&error, ClientError::Refused { status, .. } if !status.is_transient());
                let said = if refused {
                    refused_whole(&input.name, applied, first, last)
                } else {
                    unknown_outcome(&input.name, applied, first, last)
                };
                return Err(anyhow::Error::new(error).context(Stopped(said)));
            }
        };
        let count = request.ids.len() as u64;
        let mut failed = 0;
        for (index, result) in created.failures {
            let index = index as usize;
            let (line, id) = (request.lines[index], request.ids[index]);
            if result == EventResult::Exists {
                summary.existed += 1;
            } else {
                failed += 1;
                failures.print(line, id, result);
            }
        }
        summary.failed += failed;
        applied += count;
        progress.advance(applied);
    }
    reader.await.context("reading the input")?;
    progress.finish();
    failures.finish();
    summary.created = summary.events - summary.existed - summary.failed;
    Ok(summary)
}

/// What an interrupted import tells its user: what is certainly applied, what may be, and
/// how to finish.
fn unknown_outcome(name: &str, applied: u64, first: u64, last: u64) -> String {
    format!(
        "{name}: the {applied} events before line {first} were applied; the request of lines \
         {first}..={last} may or may not have been applied, and nothing after it was sent. Run \
         the same command again: events already applied answer `exists` and are counted as \
         such, so nothing is applied twice"
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
         {first}..={last} was refused whole (nothing of it was applied) and nothing after it \
         was sent"
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
