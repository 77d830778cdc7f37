//! Snapshot files: an image (opaque bytes here: `replication/snapshot_image.rs`) wrapped in a
//! header with our own checksums, written atomically and streamed both ways.
//!
//! ```text
//! offset size field
//!      0    4 magic          "TSNP" (0x504E_5354 little-endian)
//!      4    4 version        1
//!      8    8 last_index     the last log entry the state includes
//!     16    8 last_term
//!     24    8 payload_len
//!     32    4 payload_crc    CRC32C of the payload
//!     36    4 reserved       zero
//!     40    4 header_crc     CRC32C of bytes 0..40
//!     44    4 reserved       zero
//!     48    - payload
//! ```
//! File name `snapshot-{last_index:020}-{last_term:020}.snap`, so name order is log order. On
//! restart the newest *valid* snapshot plus the log after it rebuild the state.
//!
//! A payload is never held in memory whole: [`SnapshotWriter`] writes it in order through a
//! buffer of `SNAPSHOT_CHUNK_BYTES` (the header last, once length and checksum are known) to a
//! temporary file that becomes the snapshot by a rename, in sector-aligned O_DIRECT requests
//! of `SNAPSHOT_WRITE_BYTES`, one at a time, so the WAL's group commits on the same disk never
//! wait behind the write-back of a gigabyte of dirty pages; [`SnapshotFile`] reads it back as a
//! stream ([`PayloadReader`], which checks the CRC as the last byte is read) or in chunks at
//! any offset (to send it to a peer).

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::SnapshotError;
use crate::limits::{
    SECTOR_BYTES, SNAPSHOT_CHUNK_BYTES, SNAPSHOT_PAYLOAD_BYTES_MAX, SNAPSHOT_SYNC_BYTES,
    SNAPSHOT_WRITE_BYTES,
};
use crate::storage::AlignedBuffer;
use crate::storage::{read_exact_at, Disk, DiskFile};
use crate::wal::LogId;

const MAGIC: u32 = 0x504E_5354;
/// A file holding its payload.
const VERSION: u32 = 1;
/// A file holding a manifest of its payload's pieces (`snapshot_split`).
pub(crate) const VERSION_SPLIT: u32 = 2;
pub(crate) const HEADER_BYTES: usize = 48;
const PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".snap";
/// A file being written (a build or a snapshot being received): removed by its writer when
/// abandoned, and any left by a crash when the node starts (`SnapshotFiles::remove_partial`).
const PARTIAL_SUFFIX: &str = ".part";
/// Temporary files of the format before 2026-12 (one `.snap.tmp` per snapshot name).
const OLD_TEMPORARY_SUFFIX: &str = ".snap.tmp";

/// Tells apart the partial files of concurrent writers in one process.
static PARTIAL_FILES: AtomicU64 = AtomicU64::new(0);

/// The snapshot files of one node, in one directory.
#[derive(Debug, Clone)]
pub struct SnapshotFiles {
    pub(crate) disk: Arc<dyn Disk>,
    pub(crate) dir: PathBuf,
    /// Section files a split snapshot being written refers to, which the collection of
    /// unreferenced sections must leave alone (`snapshot_split`).
    pub(crate) pinned: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

pub(crate) fn file_name(last: LogId) -> String {
    format!("{PREFIX}{:020}-{:020}{SUFFIX}", last.index, last.term)
}

fn parse_name(name: &str) -> Option<LogId> {
    let middle = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let (index, term) = middle.split_once('-')?;
    if index.len() != 20 || term.len() != 20 {
        return None;
    }
    Some(LogId {
        index: index.parse().ok()?,
        term: term.parse().ok()?,
    })
}

fn encode_header(
    version: u32,
    last: LogId,
    payload_bytes: u64,
    payload_crc: u32,
) -> [u8; HEADER_BYTES] {
    let mut header = [0u8; HEADER_BYTES];
    header[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    header[4..8].copy_from_slice(&version.to_le_bytes());
    header[8..16].copy_from_slice(&last.index.to_le_bytes());
    header[16..24].copy_from_slice(&last.term.to_le_bytes());
    header[24..32].copy_from_slice(&payload_bytes.to_le_bytes());
    header[32..36].copy_from_slice(&payload_crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&header[..40]);
    header[40..44].copy_from_slice(&header_crc.to_le_bytes());
    header
}

/// The payload's length and CRC and the file's version if the header is sound; why a snapshot
/// file is not usable otherwise (such a file is skipped with a warning).
pub(crate) fn check_header(
    header: &[u8; HEADER_BYTES],
    expected: LogId,
    file_bytes: u64,
) -> Result<(u64, u32, u32), &'static str> {
    let word = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let long = |at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&header[at..at + 8]);
        u64::from_le_bytes(bytes)
    };
    if word(0) != MAGIC {
        return Err("bad magic");
    }
    if crc32c::crc32c(&header[..40]) != word(40) {
        return Err("header checksum mismatch");
    }
    if ![VERSION, VERSION_SPLIT].contains(&word(4)) || word(36) != 0 || word(44) != 0 {
        return Err("unknown version or reserved bytes set");
    }
    if (LogId {
        index: long(8),
        term: long(16),
    }) != expected
    {
        return Err("header does not match the file name");
    }
    let payload_bytes = long(24);
    if payload_bytes > SNAPSHOT_PAYLOAD_BYTES_MAX {
        return Err("payload length over the limit");
    }
    if HEADER_BYTES as u64 + payload_bytes != file_bytes {
        return Err("file length does not match the header");
    }
    Ok((payload_bytes, word(32), word(4)))
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl SnapshotFiles {
    /// Snapshot files in `dir` (created if missing).
    pub fn new(disk: Arc<dyn Disk>, dir: &Path) -> Result<SnapshotFiles, SnapshotError> {
        disk.create_dir_all(dir).map_err(io_error(dir))?;
        Ok(SnapshotFiles {
            disk,
            dir: dir.to_path_buf(),
            pinned: Arc::default(),
        })
    }

    /// Remove partial files left by a crash, and section files no snapshot names. Only for
    /// the node that owns the directory, as it opens it: nothing else writes there then.
    pub fn remove_partial(&self) -> Result<(), SnapshotError> {
        let names = self.disk.list(&self.dir).map_err(io_error(&self.dir))?;
        for name in names
            .iter()
            .filter(|name| name.ends_with(PARTIAL_SUFFIX) || name.ends_with(OLD_TEMPORARY_SUFFIX))
        {
            let path = self.dir.join(name);
            crate::storage::remove_leftover(self.disk.as_ref(), &path).map_err(io_error(&path))?;
        }
        // Section files a crashed build wrote and no snapshot names.
        crate::snapshot_split::collect(self)
    }

    /// The snapshot id a file is named after (`snapshot-{index}-{term}.snap`), if it is one.
    pub fn id_of(path: &Path) -> Option<LogId> {
        parse_name(path.file_name()?.to_str()?)
    }

    /// A fresh partial file name (`{purpose}-{pid}-{n}.part`), removed at start if a crash
    /// leaves it.
    pub(crate) fn partial_path(&self, purpose: &str) -> PathBuf {
        let sequence = PARTIAL_FILES.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!(
            "{purpose}-{}-{sequence}{PARTIAL_SUFFIX}",
            std::process::id()
        ))
    }

    /// Start writing a snapshot; it becomes a snapshot file only by [`SnapshotWriter::finish`].
    pub fn create(&self) -> Result<SnapshotWriter, SnapshotError> {
        self.create_with(None)
    }

    /// [`SnapshotFiles::create`] through `buffer` if given (one a finished writer gave back:
    /// [`SnapshotWriter::finish_keeping_buffer`]). A writer of many files in a row reuses one
    /// buffer: a fresh sector-aligned 4 MiB allocation per file left the allocator's
    /// per-thread heaps fragmented and resident (+450 MB over one build of 153 section files).
    pub(crate) fn create_with(
        &self,
        buffer: Option<AlignedBuffer>,
    ) -> Result<SnapshotWriter, SnapshotError> {
        let temporary = self.partial_path("writing");
        let file = self
            .disk
            .open(&temporary, true)
            .map_err(io_error(&temporary))?;
        file.set_len(0).map_err(io_error(&temporary))?;
        Ok(SnapshotWriter {
            disk: Arc::clone(&self.disk),
            dir: self.dir.clone(),
            file,
            temporary,
            buffer: buffer
                .filter(|buffer| buffer.capacity() == SNAPSHOT_CHUNK_BYTES)
                .map(|mut buffer| {
                    buffer.as_mut_slice()[..HEADER_BYTES].fill(0);
                    buffer
                })
                .unwrap_or_else(|| AlignedBuffer::new(SNAPSHOT_CHUNK_BYTES)),
            base: 0,
            filled: HEADER_BYTES,
            synced: 0,
            crc: 0,
            finished: false,
        })
    }

    /// Write a snapshot of the state after entry `last` from bytes in memory.
    pub fn write(&self, last: LogId, payload: &[u8]) -> Result<PathBuf, SnapshotError> {
        let mut writer = self.create()?;
        writer
            .write_all(payload)
            .map_err(io_error(&writer.temporary))?;
        writer.finish(last).map(|file| file.path)
    }

    /// Snapshot ids on disk, newest first (validity is not checked). Newest as openraft orders
    /// log ids: by term, then index (in a log that Raft keeps, a higher index never has a lower
    /// term, but a replica may be handed snapshots out of that order, and the one kept must be
    /// the one openraft considers current).
    pub fn list(&self) -> Result<Vec<LogId>, SnapshotError> {
        let names = self.disk.list(&self.dir).map_err(io_error(&self.dir))?;
        let mut ids: Vec<LogId> = names.iter().filter_map(|name| parse_name(name)).collect();
        ids.sort_unstable_by_key(|id| std::cmp::Reverse((id.term, id.index)));
        Ok(ids)
    }

    /// Open the snapshot `last`, its header checked; `Ok(None)` if the header shows damage
    /// (the reason is logged). The payload's CRC is checked as it is read.
    pub fn open(&self, last: LogId) -> Result<Option<SnapshotFile>, SnapshotError> {
        let path = self.dir.join(file_name(last));
        let file = self.disk.open(&path, false).map_err(io_error(&path))?;
        let file_bytes = file.len().map_err(io_error(&path))?;
        let mut header = [0u8; HEADER_BYTES];
        if file_bytes < HEADER_BYTES as u64 {
            tracing::warn!(path = %path.display(), "snapshot file shorter than its header; skipped");
            return Ok(None);
        }
        read_exact_at(file.as_ref(), &mut header, 0).map_err(io_error(&path))?;
        match check_header(&header, last, file_bytes) {
            Ok((payload_bytes, payload_crc, VERSION)) => Ok(Some(SnapshotFile {
                file,
                path,
                payload_offset: HEADER_BYTES as u64,
                payload_bytes,
                payload_crc,
            })),
            Ok((manifest_bytes, _, _)) => {
                match crate::snapshot_split::open(self, &file, manifest_bytes) {
                    Ok(opened) => Ok(Some(SnapshotFile {
                        file: opened.payload,
                        path,
                        payload_offset: 0,
                        payload_bytes: opened.payload_bytes,
                        payload_crc: opened.payload_crc,
                    })),
                    Err(reason) => {
                        tracing::warn!(path = %path.display(), %reason, "damaged snapshot skipped");
                        Ok(None)
                    }
                }
            }
            Err(reason) => {
                tracing::warn!(path = %path.display(), reason, "damaged snapshot skipped");
                Ok(None)
            }
        }
    }

    /// Read and verify the snapshot `last` whole into memory; `Ok(None)` if it is damaged
    /// (the reason is logged). For tests and tools: nodes stream (`open`).
    pub fn read(&self, last: LogId) -> Result<Option<Vec<u8>>, SnapshotError> {
        let Some(file) = self.open(last)? else {
            return Ok(None);
        };
        let mut payload = Vec::new();
        match file.reader().read_to_end(&mut payload) {
            Ok(_) => Ok(Some(payload)),
            Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                tracing::warn!(path = %file.path.display(), %error, "damaged snapshot skipped");
                Ok(None)
            }
            Err(error) => Err(io_error(&file.path)(error)),
        }
    }

    /// The newest snapshot that verifies, with its id, read whole (see `read`). Damaged newer
    /// ones are skipped (and logged): the caller must still check that the log reaches back to
    /// the one returned.
    pub fn newest_valid(&self) -> Result<Option<(LogId, Vec<u8>)>, SnapshotError> {
        for last in self.list()? {
            if let Some(payload) = self.read(last)? {
                return Ok(Some((last, payload)));
            }
        }
        Ok(None)
    }

    /// Delete the snapshot `last` (if it exists), and the section files no snapshot left
    /// refers to.
    pub fn remove(&self, last: LogId) -> Result<(), SnapshotError> {
        let path = self.dir.join(file_name(last));
        if self.disk.exists(&path).map_err(io_error(&path))? {
            self.delete(&path)?;
            crate::snapshot_split::collect(self)?;
        }
        Ok(())
    }

    /// Delete all but the `keep` newest snapshots, and the section files none of the kept
    /// ones refers to. Partial files are not touched: they belong to writers still at work
    /// (or are removed at start).
    pub fn prune(&self, keep: usize) -> Result<(), SnapshotError> {
        for last in self.list()?.into_iter().skip(keep) {
            self.delete(&self.dir.join(file_name(last)))?;
        }
        self.disk.sync_dir(&self.dir).map_err(io_error(&self.dir))?;
        crate::snapshot_split::collect(self)
    }

    /// Delete the snapshot file at `path`: renamed to a partial file's name at once (what a
    /// crash leaves of it is removed at start: `remove_partial`), its space given back in the
    /// background a stretch at a time (`Disk::reclaim`). A send of it still reading then ends
    /// with an error, and openraft sends the current snapshot instead.
    pub(crate) fn delete(&self, path: &Path) -> Result<(), SnapshotError> {
        let retired = self.partial_path("deleting");
        self.disk.rename(path, &retired).map_err(io_error(path))?;
        self.disk.reclaim(&retired).map_err(io_error(&retired))
    }
}

/// A snapshot file being written, in order, from the payload's first byte (see the module
/// docs). Dropped unfinished, it removes its partial file.
///
/// The buffer holds the file's bytes from `base` (sector aligned) on: at first the header's
/// place (zeros until `finish`) and the payload's first bytes. A full buffer is written and
/// starts over at the next offset; a flush before that (`reader`, `chunks`) writes it padded
/// to the sector and keeps its last partial sector, which the next write rewrites whole.
pub struct SnapshotWriter {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    file: Arc<dyn DiskFile>,
    temporary: PathBuf,
    buffer: AlignedBuffer,
    /// File offset of the buffer's first byte.
    base: u64,
    /// Bytes of the buffer taken.
    filled: usize,
    /// File bytes known to be fsync'd.
    synced: u64,
    /// CRC32C of the payload so far (file and buffer).
    crc: u32,
    finished: bool,
}

impl std::fmt::Debug for SnapshotWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotWriter")
            .field("temporary", &self.temporary)
            .field("payload_bytes", &self.len())
            .finish_non_exhaustive()
    }
}

impl SnapshotWriter {
    /// Payload bytes taken so far.
    pub fn len(&self) -> u64 {
        self.base + self.filled as u64 - HEADER_BYTES as u64
    }

    /// True before the first byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Start the payload over from its first byte (a sender restarting its snapshot).
    pub fn rewind(&mut self) {
        self.buffer.as_mut_slice()[..HEADER_BYTES].fill(0);
        self.base = 0;
        self.filled = HEADER_BYTES;
        self.synced = 0;
        self.crc = 0;
    }

    /// Write what the buffer holds, so the file has every payload byte taken (padded with
    /// zeros to the sector; `finish` cuts the file to its length).
    fn write_buffer(&mut self) -> io::Result<()> {
        let aligned = self.filled / SECTOR_BYTES * SECTOR_BYTES;
        let padded = self.filled.div_ceil(SECTOR_BYTES) * SECTOR_BYTES;
        if padded == 0 {
            return Ok(());
        }
        let buffer = self.buffer.as_mut_slice();
        buffer[self.filled..padded].fill(0);
        for (request, bytes) in buffer[..padded].chunks(SNAPSHOT_WRITE_BYTES).enumerate() {
            let offset = self.base + (request * SNAPSHOT_WRITE_BYTES) as u64;
            self.file.write_direct_at(bytes, offset)?;
        }
        // The partial last sector stays in front of the buffer, to be rewritten whole.
        buffer.copy_within(aligned..self.filled, 0);
        self.base += aligned as u64;
        self.filled -= aligned;
        // Only where the file refused O_DIRECT is there write-back to keep short.
        if self.base - self.synced >= SNAPSHOT_SYNC_BYTES {
            self.file.sync()?;
            self.synced = self.base;
        }
        Ok(())
    }

    /// The payload written so far, as a stream from its first byte (the CRC is not checked:
    /// it is the one being computed). For checking a received snapshot before it is kept.
    pub fn reader(&mut self) -> io::Result<PayloadReader> {
        self.write_buffer()?;
        Ok(PayloadReader::new(
            Arc::clone(&self.file),
            HEADER_BYTES as u64,
            self.len(),
            None,
        ))
    }

    /// A chunk of the payload written so far (see [`SnapshotFile::chunks`]).
    pub fn chunks(&mut self) -> io::Result<ChunkSource> {
        self.write_buffer()?;
        Ok(ChunkSource {
            file: Arc::clone(&self.file),
            payload_offset: HEADER_BYTES as u64,
            payload_bytes: self.len(),
        })
    }

    /// Make the payload a snapshot file of the state after entry `last`; the file, ready to
    /// read or send (no need to open it again).
    ///
    /// Durability contract:
    /// - Payload and header (with length and CRC) written, fsync'd once, then renamed to its
    ///   final name and the directory fsync'd, all before `Ok`: after a crash the file is
    ///   either complete or absent (it has its name only once every byte is durable; a
    ///   partial file is removed at start: `remove_partial`). One fsync, not one before the
    ///   header and one after: each is a journal commit the WAL's fdatasyncs queue behind,
    ///   and a split snapshot finishes a file per chunk written.
    pub fn finish(self, last: LogId) -> Result<SnapshotFile, SnapshotError> {
        let path = self.dir.join(file_name(last));
        self.finish_as(VERSION, last, path, true)
    }

    /// `finish` as a file of `version` (whose header carries `last`) at `path`, its directory
    /// fsync'd if `sync_dir` (a caller writing many files in one directory syncs it once).
    /// [`SnapshotWriter::finish_as`], giving back the writer's buffer for the next one
    /// ([`SnapshotFiles::create_with`]).
    pub(crate) fn finish_keeping_buffer(
        mut self,
        version: u32,
        last: LogId,
        path: PathBuf,
    ) -> Result<(SnapshotFile, AlignedBuffer), SnapshotError> {
        let file = self.finish_inner(version, last, path, false)?;
        let buffer = std::mem::replace(&mut self.buffer, AlignedBuffer::new(SECTOR_BYTES));
        Ok((file, buffer))
    }

    pub(crate) fn finish_as(
        mut self,
        version: u32,
        last: LogId,
        path: PathBuf,
        sync_dir: bool,
    ) -> Result<SnapshotFile, SnapshotError> {
        self.finish_inner(version, last, path, sync_dir)
    }

    fn finish_inner(
        &mut self,
        version: u32,
        last: LogId,
        path: PathBuf,
        sync_dir: bool,
    ) -> Result<SnapshotFile, SnapshotError> {
        let temporary = self.temporary.clone();
        if self.len() > SNAPSHOT_PAYLOAD_BYTES_MAX {
            return Err(SnapshotError::TooLarge {
                bytes: self.len(),
                limit: SNAPSHOT_PAYLOAD_BYTES_MAX,
            });
        }
        self.write_buffer().map_err(io_error(&temporary))?;
        let payload_bytes = self.len();
        let length = HEADER_BYTES as u64 + payload_bytes;
        self.file.set_len(length).map_err(io_error(&temporary))?;
        // Through the page cache: the first sector was written directly, and the kernel
        // keeps the two views of it coherent.
        self.file
            .write_at(&encode_header(version, last, payload_bytes, self.crc), 0)
            .map_err(io_error(&temporary))?;
        self.file.sync().map_err(io_error(&temporary))?;
        self.disk
            .rename(&temporary, &path)
            .map_err(io_error(&path))?;
        self.finished = true;
        if sync_dir {
            let dir = path.parent().unwrap_or(&self.dir);
            self.disk.sync_dir(dir).map_err(io_error(dir))?;
        }
        Ok(SnapshotFile {
            file: Arc::clone(&self.file),
            path,
            payload_offset: HEADER_BYTES as u64,
            payload_bytes,
            payload_crc: self.crc,
        })
    }
}

impl Write for SnapshotWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.len() + bytes.len() as u64 > SNAPSHOT_PAYLOAD_BYTES_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a snapshot may not exceed {SNAPSHOT_PAYLOAD_BYTES_MAX} bytes"),
            ));
        }
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        let mut rest = bytes;
        while !rest.is_empty() {
            let room = SNAPSHOT_CHUNK_BYTES - self.filled;
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.buffer.as_mut_slice()[self.filled..self.filled + now.len()].copy_from_slice(now);
            self.filled += now.len();
            rest = later;
            if self.filled == SNAPSHOT_CHUNK_BYTES {
                self.write_buffer()?;
            }
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_buffer()
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if !self.finished {
            if let Err(error) = self.disk.remove(&self.temporary) {
                tracing::warn!(path = %self.temporary.display(), %error,
                    "a partial snapshot file could not be removed (it is at the next start)");
            }
        }
    }
}

/// A snapshot file on disk, its header checked (`SnapshotFiles::open`).
#[derive(Debug, Clone)]
pub struct SnapshotFile {
    /// The file, or for a split snapshot its pieces read as one (`snapshot_split`).
    file: Arc<dyn DiskFile>,
    path: PathBuf,
    /// Where in `file` the payload starts.
    payload_offset: u64,
    payload_bytes: u64,
    payload_crc: u32,
}

impl SnapshotFile {
    /// Bytes of its payload.
    pub fn payload_bytes(&self) -> u64 {
        self.payload_bytes
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its payload as a stream; the read that reaches the end fails with `InvalidData` if the
    /// payload does not match its CRC.
    pub fn reader(&self) -> PayloadReader {
        PayloadReader::new(
            Arc::clone(&self.file),
            self.payload_offset,
            self.payload_bytes,
            Some(self.payload_crc),
        )
    }

    /// Chunks of its payload at any offset, from any thread (to send it to a peer).
    pub fn chunks(&self) -> ChunkSource {
        ChunkSource {
            file: Arc::clone(&self.file),
            payload_offset: self.payload_offset,
            payload_bytes: self.payload_bytes,
        }
    }
}

/// Reads chunks of a snapshot payload at any offset; cheap to clone.
#[derive(Debug, Clone)]
pub struct ChunkSource {
    file: Arc<dyn DiskFile>,
    payload_offset: u64,
    payload_bytes: u64,
}

impl ChunkSource {
    /// Bytes of the payload.
    pub fn payload_bytes(&self) -> u64 {
        self.payload_bytes
    }

    /// Up to `bytes` of the payload from `offset` (fewer at its end, none past it).
    pub fn read(&self, offset: u64, bytes: usize) -> io::Result<Vec<u8>> {
        let end = self.payload_bytes.min(offset.saturating_add(bytes as u64));
        let mut chunk = vec![0u8; end.saturating_sub(offset) as usize];
        read_exact_at(self.file.as_ref(), &mut chunk, self.payload_offset + offset)?;
        Ok(chunk)
    }
}

/// A snapshot payload read in order, through a buffer of `SNAPSHOT_CHUNK_BYTES`.
#[derive(Debug)]
pub struct PayloadReader {
    file: Arc<dyn DiskFile>,
    payload_offset: u64,
    payload_bytes: u64,
    /// The CRC the payload must have, checked by the read that reaches its end.
    expected_crc: Option<u32>,
    crc: u32,
    /// Payload bytes read from the file.
    position: u64,
    buffer: Vec<u8>,
    /// Next byte of `buffer` to hand out.
    at: usize,
}

impl PayloadReader {
    fn new(
        file: Arc<dyn DiskFile>,
        payload_offset: u64,
        payload_bytes: u64,
        expected_crc: Option<u32>,
    ) -> Self {
        PayloadReader {
            file,
            payload_offset,
            payload_bytes,
            expected_crc,
            crc: 0,
            position: 0,
            buffer: Vec::new(),
            at: 0,
        }
    }

    fn fill(&mut self) -> io::Result<()> {
        let bytes = (self.payload_bytes - self.position).min(SNAPSHOT_CHUNK_BYTES as u64);
        self.buffer.resize(bytes as usize, 0);
        read_exact_at(
            self.file.as_ref(),
            &mut self.buffer,
            self.payload_offset + self.position,
        )?;
        self.position += bytes;
        self.at = 0;
        self.crc = crc32c::crc32c_append(self.crc, &self.buffer);
        if self.position == self.payload_bytes {
            if let Some(expected) = self.expected_crc {
                if expected != self.crc {
                    self.buffer.clear();
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "snapshot file payload checksum mismatch",
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Read for PayloadReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at == self.buffer.len() {
            if self.position == self.payload_bytes {
                return Ok(0);
            }
            self.fill()?;
        }
        let count = out.len().min(self.buffer.len() - self.at);
        out[..count].copy_from_slice(&self.buffer[self.at..self.at + count]);
        self.at += count;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Snapshot names round-trip and sort in log order.
    #[test]
    fn names_round_trip() {
        let id = LogId { index: 42, term: 7 };
        assert_eq!(parse_name(&file_name(id)), Some(id));
        assert!(file_name(LogId { index: 9, term: 1 }) < file_name(LogId { index: 10, term: 1 }));
        assert_eq!(parse_name("snapshot-1-2.snap"), None);
    }

    /// Proves a payload written in pieces of every size across buffer boundaries reads back
    /// the same as a stream and in chunks, that a rewound writer starts over, and that an
    /// abandoned writer leaves no file.
    #[test]
    fn payloads_stream_both_ways() {
        let disk = crate::storage::open_default();
        let dir = tempfile::tempdir().expect("temporary directory");
        let files = SnapshotFiles::new(Arc::clone(&disk), dir.path()).expect("files");
        let payload: Vec<u8> = (0..SNAPSHOT_CHUNK_BYTES * 2 + 12_345)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut writer = files.create().expect("writer");
        writer.write_all(b"to be forgotten").expect("written");
        writer.rewind();
        let mut rest = &payload[..];
        let mut size = 1;
        while !rest.is_empty() {
            let (now, later) = rest.split_at(size.min(rest.len()));
            writer.write_all(now).expect("written");
            rest = later;
            size = size * 3 + 1;
        }
        let last = LogId { index: 5, term: 2 };
        writer.finish(last).expect("finished");
        let file = files.open(last).expect("opened").expect("valid");
        let mut read = Vec::new();
        file.reader().read_to_end(&mut read).expect("read");
        assert_eq!(read, payload);
        let chunks = file.chunks();
        assert_eq!(chunks.read(100, 50).expect("chunk"), &payload[100..150]);
        let tail = payload.len() as u64 - 10;
        assert_eq!(
            chunks.read(tail, 50).expect("chunk"),
            &payload[payload.len() - 10..]
        );

        drop(files.create().expect("writer"));
        let names = disk.list(dir.path()).expect("listed");
        assert_eq!(
            names,
            vec![file_name(last)],
            "only the finished file remains"
        );
    }

    /// Proves a writer read back in the middle (a received snapshot checked before its last
    /// chunk; each read writes the buffer padded to the sector) still writes every byte once
    /// and in place: in the header's sector, in the middle of a buffer and at its end, and
    /// that the finished file is exactly header and payload long.
    #[test]
    fn reads_in_the_middle_leave_the_file_whole() {
        let disk = crate::storage::open_default();
        let dir = tempfile::tempdir().expect("temporary directory");
        let files = SnapshotFiles::new(Arc::clone(&disk), dir.path()).expect("files");
        let payload: Vec<u8> = (0..SNAPSHOT_CHUNK_BYTES * 2 + 777)
            .map(|i| (i * 13 % 241) as u8)
            .collect();
        let mut writer = files.create().expect("writer");
        let mut taken = 0;
        for until in [
            10,
            SECTOR_BYTES - HEADER_BYTES,
            SECTOR_BYTES + 1,
            SNAPSHOT_CHUNK_BYTES - HEADER_BYTES - 1,
            SNAPSHOT_CHUNK_BYTES,
            SNAPSHOT_CHUNK_BYTES + SNAPSHOT_WRITE_BYTES + 3,
            payload.len(),
        ] {
            writer.write_all(&payload[taken..until]).expect("written");
            taken = until;
            let mut read = Vec::new();
            writer
                .reader()
                .expect("reader")
                .read_to_end(&mut read)
                .expect("read");
            assert!(
                read == payload[..until],
                "the first {until} bytes read back"
            );
        }
        let last = LogId { index: 9, term: 3 };
        let finished = writer.finish(last).expect("finished");
        assert_eq!(
            std::fs::metadata(finished.path()).expect("metadata").len(),
            (HEADER_BYTES + payload.len()) as u64
        );
        let mut read = Vec::new();
        let file = files.open(last).expect("opened").expect("valid");
        file.reader().read_to_end(&mut read).expect("read");
        assert!(read == payload, "the whole payload reads back");
    }
}
