//! Recovery: rebuild the log from the segments, cut a torn tail, refuse on corruption.
//!
//! The argument (docs/wal.md, "Recovery") in short: the WAL thread has at most one group
//! commit in flight, and it starts a group only after the previous one's fdatasync succeeded.
//! So after a crash only the *last* group can be damaged, and nothing valid follows it. Any
//! invalid record followed by a valid group start, or any break in the index or the chain,
//! therefore means bytes that were acknowledged are damaged: we stop and say where.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::bounded;

use super::read_ahead::{read_segments, Loaded};
use super::record::{self, RecordHeader, RecordKind};
use super::segment::{parse_segment_name, segment_name, SegmentFile, SegmentInfo, PURGED_SUFFIX};
use super::{Entry, Location, LogId, LogView, Slot, WalConfig};
use crate::error::OpenError;
use crate::limits::{RECORD_HEADER_BYTES, SECTOR_BYTES};
use crate::storage::{AlignedBuffer, Disk};
use crate::vote::{read_meta, MetaError, Vote, VOTE_FILE};

/// Name of the purge mark file inside the WAL directory.
pub(crate) const PURGED_FILE: &str = "purged";
pub(crate) const PURGED_MAGIC: u32 = 0x4752_5054; // "TPRG"

pub(crate) struct Recovered {
    pub view: LogView,
    pub segments: Vec<SegmentInfo>,
    pub chain: u32,
    pub vote: Option<Vote>,
}

fn align_up(offset: usize) -> usize {
    offset.div_ceil(SECTOR_BYTES) * SECTOR_BYTES
}

fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

fn io_error(context: String) -> impl FnOnce(std::io::Error) -> OpenError {
    move |source| OpenError::Io { context, source }
}

fn meta_error(path: PathBuf) -> impl FnOnce(MetaError) -> OpenError {
    move |error| match error {
        MetaError::Io(source) => OpenError::Io {
            context: format!("reading {}", path.display()),
            source,
        },
        MetaError::Corrupt(reason) => OpenError::Corrupt {
            path,
            offset: 0,
            reason: reason.to_owned(),
        },
    }
}

pub(crate) fn encode_purged(id: LogId) -> Vec<u8> {
    let mut payload = Vec::with_capacity(16);
    payload.extend_from_slice(&id.index.to_le_bytes());
    payload.extend_from_slice(&id.term.to_le_bytes());
    payload
}

fn decode_purged(payload: &[u8]) -> Option<LogId> {
    if payload.len() != 16 {
        return None;
    }
    Some(LogId {
        index: u64::from_le_bytes(payload[0..8].try_into().ok()?),
        term: u64::from_le_bytes(payload[8..16].try_into().ok()?),
    })
}

/// The first valid record that starts a group commit at or after `from` (sector-aligned).
fn find_group_start(bytes: &[u8], from: usize, payload_bytes_max: usize) -> Option<usize> {
    (align_up(from)..bytes.len()).step_by(SECTOR_BYTES).find(
        |&at| matches!(record::decode(&bytes[at..], payload_bytes_max), Ok(h) if h.group_first),
    )
}

/// How the scan of one segment ended.
enum SegmentEnd {
    /// Only zeros from the end of the last record (or padding) on.
    Clean,
    /// Something that is neither a valid record nor zeros starts at this offset.
    Invalid { at: usize, reason: String },
}

/// The chain of records across segments.
struct Scan {
    purged: Option<LogId>,
    /// Index the next entry record must have; `None` before the first record.
    expected: Option<u64>,
    /// CRC of the previous record; `None` before the first record (whose predecessor may
    /// have been purged, so its chain cannot be checked).
    chain: Option<u32>,
    first: u64,
    slots: VecDeque<Slot>,
    entries_scanned: u64,
    /// The lowest truncate mark (first index removed, where) since the last hand-over to a
    /// replay: the entries it removed must not have been handed over already.
    cut_lowest: Option<(u64, Location)>,
}

impl Scan {
    /// Check `header` follows the log so far and apply it. `Err(reason)` is corruption.
    fn accept(&mut self, header: &RecordHeader, location: Location) -> Result<(), String> {
        let purged_index = self.purged.map(|id| id.index);
        let covered_by_purge = |index: u64| purged_index.is_some_and(|p| index <= p + 1);
        let chain_ok = self.chain.is_none_or(|chain| chain == header.chain);
        match header.kind {
            RecordKind::Entry => {
                match self.expected {
                    None => {
                        if purged_index.is_some() && !covered_by_purge(header.index) {
                            return Err(format!(
                                "log resumes at index {} but the purge mark is at {:?}",
                                header.index, purged_index
                            ));
                        }
                    }
                    Some(expected) if header.index == expected => {
                        if !chain_ok {
                            return Err(format!(
                                "entry {} does not chain to the record before it",
                                header.index
                            ));
                        }
                    }
                    // Segments wholly below the purge mark may be gone (purge deletes them
                    // after the mark is durable), which leaves an allowed gap.
                    Some(expected) if header.index > expected && covered_by_purge(header.index) => {
                    }
                    Some(expected) => {
                        return Err(format!(
                            "entry {} where {expected} was expected",
                            header.index
                        ));
                    }
                }
                self.expected = Some(header.index + 1);
                self.entries_scanned += 1;
                if purged_index.is_none_or(|p| header.index > p) {
                    if self.slots.is_empty() {
                        self.first = header.index;
                    }
                    assert_eq!(self.first + self.slots.len() as u64, header.index);
                    self.slots.push_back(Slot::Durable(location));
                }
            }
            RecordKind::Truncate => {
                let since = header.index;
                if self.expected.is_some_and(|expected| since > expected) || !chain_ok {
                    return Err(format!("truncate mark at {since} does not follow the log"));
                }
                if self
                    .cut_lowest
                    .as_ref()
                    .is_none_or(|(lowest, _)| since < *lowest)
                {
                    self.cut_lowest = Some((since, location.clone()));
                }
                // A mark below the purge mark is history: the entries it cancelled and the
                // ones that replaced them are all purged, so it only resets the scan.
                if since <= self.first {
                    self.slots.clear();
                } else {
                    self.slots.truncate((since - self.first) as usize);
                }
                self.expected = Some(since);
            }
        }
        self.chain = Some(header.crc);
        Ok(())
    }

    /// Scan one segment's bytes, appending its records; corruption inside is an `Err`.
    fn segment(
        &mut self,
        bytes: &[u8],
        info: &mut SegmentInfo,
        payload_bytes_max: usize,
    ) -> Result<SegmentEnd, OpenError> {
        let corrupt = |at: usize, reason: String| OpenError::Corrupt {
            path: info.handle.path.clone(),
            offset: at as u64,
            reason,
        };
        let mut at = 0usize;
        // Whether we just skipped zeros as group padding. A segment starts on a group
        // boundary, as if after padding.
        let mut after_padding = true;
        loop {
            if at >= bytes.len() {
                return Ok(SegmentEnd::Clean);
            }
            match record::decode(&bytes[at..], payload_bytes_max) {
                Ok(header) => {
                    if header.group_first && !at.is_multiple_of(SECTOR_BYTES) {
                        return Err(corrupt(at, "group start off a sector boundary".to_owned()));
                    }
                    if after_padding && !header.group_first {
                        // After padding only a new group may begin. In a torn last group a
                        // lost sector can look like padding in front of a surviving later
                        // sector, so this is not yet corruption: report invalid data here
                        // and let the caller look for valid data further on.
                        return Ok(SegmentEnd::Invalid {
                            at,
                            reason: "record inside a group commit follows zeros".to_owned(),
                        });
                    }
                    let location = Location {
                        segment: Arc::clone(&info.handle),
                        offset: at as u64,
                        length: header.length,
                        term: header.term,
                    };
                    self.accept(&header, location)
                        .map_err(|reason| corrupt(at, reason))?;
                    at += header.record_bytes();
                    after_padding = false;
                    info.end = align_up(at) as u64;
                    info.crc_last = Some(header.crc);
                    if header.kind == RecordKind::Entry {
                        info.index_max =
                            Some(info.index_max.map_or(header.index, |m| m.max(header.index)));
                    }
                }
                Err(invalid) => {
                    let boundary = align_up(at).min(bytes.len());
                    if !at.is_multiple_of(SECTOR_BYTES) && all_zero(&bytes[at..boundary]) {
                        after_padding = true;
                        at = boundary;
                        continue;
                    }
                    if all_zero(&bytes[at..]) {
                        return Ok(SegmentEnd::Clean);
                    }
                    return Ok(SegmentEnd::Invalid {
                        at,
                        reason: invalid.to_string(),
                    });
                }
            }
        }
    }
}

/// A replay riding on the recovery scan (`Wal::open_with_replay`): every entry the recovered
/// log holds from `from` on, in order, handed to `visit` as soon as its segment is scanned.
pub(crate) struct Replay<'a> {
    /// Index after the last entry handed over; starts at the first index wanted.
    next: u64,
    from: u64,
    visit: &'a mut dyn FnMut(Entry),
}

impl<'a> Replay<'a> {
    pub(crate) fn new(from: u64, visit: &'a mut dyn FnMut(Entry)) -> Replay<'a> {
        Replay {
            next: from,
            from,
            visit,
        }
    }
}

impl Scan {
    /// Hand the live entries not yet handed over to `replay`. They were all accepted while
    /// scanning the segments `held` (handle and bytes), and their payloads are slices of
    /// those bytes, already verified by the scan.
    ///
    /// When this may run: a truncate mark removes entries of its own segment, or, when it is
    /// the first record of its segment, of the segment before (truncation writes the mark
    /// into the tail segment, which holds every entry it removes, or into a new segment named
    /// after the cut when the tail is full; docs/wal.md, "Replay"). So a segment is handed
    /// over once it is scanned, unless the next one may begin with a mark; then after that
    /// one. Recovery accepts other layouts too, which the WAL never writes: if a mark
    /// removes entries already handed over, the replay refuses instead.
    fn hand_over(
        &mut self,
        replay: &mut Replay<'_>,
        held: &[(Arc<SegmentFile>, Bytes)],
    ) -> Result<(), OpenError> {
        if let Some((since, mark)) = self.cut_lowest.take() {
            if since.max(replay.from) < replay.next {
                return Err(OpenError::ReplayOvertaken {
                    path: mark.segment.path.clone(),
                    offset: mark.offset,
                    since,
                    replayed_to: replay.next,
                });
            }
        }
        let end = self.first + self.slots.len() as u64;
        for index in replay.next.max(self.first)..end {
            let slot = &self.slots[(index - self.first) as usize];
            let Slot::Durable(location) = slot else {
                panic!("entry {index} not durable during recovery");
            };
            let bytes = held
                .iter()
                .find(|(segment, _)| Arc::ptr_eq(segment, &location.segment))
                .map(|(_, bytes)| bytes);
            let Some(bytes) = bytes else {
                panic!("entry {index} is not in a segment scanned since the last hand-over");
            };
            let start = location.offset as usize + RECORD_HEADER_BYTES;
            (replay.visit)(Entry {
                index,
                term: location.term,
                payload: bytes.slice(start..start + location.length as usize),
            });
        }
        replay.next = replay.next.max(end);
        Ok(())
    }
}

/// A segment's worth of scanning ended in a torn tail: (segment position, offset, its bytes).
type Torn = (usize, usize, Bytes);

/// Scan the segments `firsts` in order, as `next` delivers them, and hand each one's entries
/// to `replay` once it is scanned. Stops at a torn tail (returned for the cut) or refuses on
/// corruption.
fn scan_segments(
    firsts: &[u64],
    scan: &mut Scan,
    mut replay: Option<&mut Replay<'_>>,
    payload_bytes_max: usize,
    mut next: impl FnMut() -> Result<Loaded, OpenError>,
) -> Result<(Vec<SegmentInfo>, Option<Torn>), OpenError> {
    let mut segments: Vec<SegmentInfo> = Vec::with_capacity(firsts.len());
    // Segments scanned but not yet handed over to the replay (see `Scan::hand_over`).
    let mut held: Vec<(Arc<SegmentFile>, Bytes)> = Vec::new();
    for position in 0..firsts.len() {
        let Loaded {
            mut info,
            bytes,
            next_may_cut,
        } = next()?;
        let end = scan.segment(&bytes, &mut info, payload_bytes_max)?;
        let handle = Arc::clone(&info.handle);
        segments.push(info);
        if replay.is_some() {
            held.push((Arc::clone(&handle), bytes.clone()));
        }
        let SegmentEnd::Invalid { at, reason } = end else {
            if let Some(replay) = replay.as_deref_mut() {
                if !next_may_cut {
                    scan.hand_over(replay, &held)?;
                    held.clear();
                }
            }
            continue;
        };
        // Invalid data at `at`. It is a torn tail only if nothing valid follows it.
        let path = &handle.path;
        let corrupt = |detail: String| OpenError::Corrupt {
            path: path.clone(),
            offset: at as u64,
            reason: format!("{reason}, {detail}"),
        };
        if let Some(later) = find_group_start(&bytes, at + 1, payload_bytes_max) {
            return Err(corrupt(format!(
                "but a valid group commit follows at byte {later}"
            )));
        }
        for _ in position + 1..firsts.len() {
            let later = next()?;
            if let Some(offset) = find_group_start(&later.bytes, 0, payload_bytes_max) {
                return Err(corrupt(format!(
                    "but {} holds a valid group commit at byte {offset}",
                    later.info.handle.path.display()
                )));
            }
        }
        tracing::warn!(path = %path.display(), offset = at, %reason, "torn write at the WAL tail; cutting it");
        // The records in front of `at` stay in the log, so a replay gets them too.
        if let Some(replay) = replay.as_deref_mut() {
            scan.hand_over(replay, &held)?;
        }
        return Ok((segments, Some((position, at, bytes))));
    }
    if let Some(replay) = replay {
        scan.hand_over(replay, &held)?;
    }
    Ok((segments, None))
}

pub(crate) fn recover(
    disk: &dyn Disk,
    dir: &Path,
    config: &WalConfig,
    replay: Option<&mut Replay<'_>>,
) -> Result<Recovered, OpenError> {
    let names = disk
        .list(dir)
        .map_err(io_error(format!("listing {}", dir.display())))?;
    for name in names
        .iter()
        .filter(|name| name.ends_with(".tmp") || name.ends_with(PURGED_SUFFIX))
    {
        // A metadata write that crashed before its rename (the old file still stands), or
        // a purged segment whose space the last run had not given back yet.
        let path = dir.join(name);
        crate::storage::remove_leftover(disk, &path)
            .map_err(io_error(format!("removing {}", path.display())))?;
    }
    let vote = Vote::load(disk, dir).map_err(meta_error(dir.join(VOTE_FILE)))?;
    let purged_path = dir.join(PURGED_FILE);
    let purged = match read_meta(disk, dir, PURGED_FILE, PURGED_MAGIC)
        .map_err(meta_error(purged_path.clone()))?
    {
        None => None,
        Some(payload) => Some(decode_purged(&payload).ok_or_else(|| OpenError::Corrupt {
            path: purged_path,
            offset: 0,
            reason: "bad purge mark fields".to_owned(),
        })?),
    };
    let mut firsts: Vec<u64> = names
        .iter()
        .filter_map(|name| parse_segment_name(name))
        .collect();
    firsts.sort_unstable();

    let payload_bytes_max = config.entry_payload_bytes_max;
    let mut scan = Scan {
        purged,
        expected: None,
        chain: None,
        first: 0,
        slots: VecDeque::new(),
        entries_scanned: 0,
        cut_lowest: None,
    };
    let (segments, torn) = std::thread::scope(|scope| {
        // A rendezvous: the reader reads the next segment while this thread scans (and
        // replays) the current one, and never further ahead (see `read_ahead.rs`).
        let (sender, receiver) = bounded(0);
        let firsts = &firsts;
        std::thread::Builder::new()
            .name("tally-wal-read-ahead".to_owned())
            .spawn_scoped(scope, move || {
                read_segments(disk, dir, firsts, config, sender)
            })
            .map_err(io_error("starting the WAL read-ahead thread".to_owned()))?;
        let next = || {
            receiver.recv().unwrap_or_else(|_| {
                panic!("the WAL read-ahead thread stopped without a segment or an error")
            })
        };
        scan_segments(firsts, &mut scan, replay, payload_bytes_max, next)
        // `receiver` drops here, so a reader still ahead of a refusal stops at its next send.
    })?;
    let mut segments = segments;

    // Cut the torn tail: zero the garbage so a later recovery cannot mistake it for damage in
    // front of the groups we are about to append, and drop segments after it.
    let keep = match &torn {
        Some((position, _, _)) => position + 1,
        None => segments.len(),
    };
    let mut removed = false;
    for &first_index in &firsts[keep..] {
        let path = dir.join(segment_name(first_index));
        disk.remove(&path)
            .map_err(io_error(format!("removing {}", path.display())))?;
        removed = true;
    }
    if let Some((position, at, bytes)) = torn {
        let info = &segments[position];
        if let Some(last_nonzero) = bytes
            .iter()
            .rposition(|&b| b != 0)
            .filter(|&last| last >= at)
        {
            let start = at / SECTOR_BYTES * SECTOR_BYTES;
            let stop = align_up(last_nonzero + 1);
            let mut buffer = AlignedBuffer::new(stop - start);
            // The bytes in front of `at` in its sector belong to the torn (unacknowledged)
            // group itself, or `at` is sector-aligned; rewriting them risks nothing acked.
            buffer.as_mut_slice()[..at - start].copy_from_slice(&bytes[start..at]);
            info.handle
                .file
                .write_sync_at(buffer.as_slice(), start as u64)
                .map_err(io_error(format!(
                    "zeroing the torn tail of {}",
                    info.handle.path.display()
                )))?;
        }
    }
    // A segment at the end that holds no record (a rotation whose first group never became
    // durable) is removed, so the next rotation recreates it under the right name.
    while segments.last().is_some_and(|info| info.crc_last.is_none()) {
        if let Some(info) = segments.pop() {
            disk.remove(&info.handle.path)
                .map_err(io_error(format!("removing {}", info.handle.path.display())))?;
            removed = true;
        }
    }
    if removed {
        disk.sync_dir(dir)
            .map_err(io_error(format!("syncing {}", dir.display())))?;
    }
    if let Some(tail) = segments.last() {
        // A tail cut short (by an outside truncation) is preallocated again before appends.
        let length = tail
            .handle
            .file
            .len()
            .map_err(io_error("sizing the tail segment".to_owned()))?;
        if length < config.segment_bytes {
            tail.handle
                .file
                .allocate(config.segment_bytes)
                .map_err(io_error("extending the tail segment".to_owned()))?;
            tail.handle
                .file
                .sync()
                .map_err(io_error("syncing the tail segment".to_owned()))?;
        }
    }

    let purged_next = purged.map_or(0, |id| id.index + 1);
    let first = if scan.slots.is_empty() {
        scan.expected.unwrap_or(0).max(purged_next)
    } else {
        scan.first
    };
    tracing::debug!(
        entries = scan.entries_scanned,
        segments = segments.len(),
        "WAL scanned"
    );
    Ok(Recovered {
        view: LogView {
            first,
            slots: scan.slots,
            purged,
            poisoned: None,
            cached_bytes: 0,
            cached_from: first,
        },
        segments,
        chain: scan.chain.unwrap_or(0),
        vote,
    })
}
