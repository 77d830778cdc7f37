//! Incremental snapshots: a snapshot file (version 2) that holds a manifest of its payload's
//! pieces instead of the payload. A piece is either bytes of the manifest's own or a
//! *section file* shared with other snapshots: a whole arena chunk of stored events, which
//! the next snapshot refers to again if nothing in it was written since
//! (`tally_engine::SectionVersion`). So a snapshot after a little more history writes the
//! accounts, the chunks written since the last one and a manifest, not the whole history.
//!
//! Manifest (the file's payload after its 48-byte header, see `snapshot_file`):
//!
//! ```text
//! piece   kind u8 (0: bytes that follow, 1: a section file) | reserved u8 (0)
//!         | name_bytes u16 (kind 1; 0 for kind 0) | crc u32 (CRC32C of the piece's bytes)
//!         | length u64 (the piece's bytes) | then the bytes (kind 0) or the name (kind 1)
//! footer  payload_bytes u64 | payload_crc u32 (CRC32C of the whole payload the pieces
//!         make) | pieces u32 | magic "TSPLITND" (8)
//! ```
//!
//! A section file is `sections/{kind}-{index:06}-{hash:016x}.sec` (the hash: the first 8
//! bytes of the section's BLAKE3, so equal content has one name): a snapshot file of version
//! 1 whose payload is the section in its stored form, header log id 0-0. It is written and
//! fsync'd, and the directory fsync'd, before a manifest naming it is; it is deleted once no
//! snapshot file names it (`collect`, after every prune). A split snapshot is read, streamed
//! and sent exactly like a whole one: its pieces read as one file ([`Pieces`]), with the
//! payload's CRC checked at the end and each section's BLAKE3 checked by the engine.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::SnapshotError;
use crate::snapshot_file::{
    check_header, io_error, SnapshotFile, SnapshotFiles, SnapshotWriter, HEADER_BYTES,
    VERSION_SPLIT,
};
use crate::storage::{read_exact_at, AlignedBuffer, DiskFile};
use crate::wal::LogId;
use tally_engine::{
    section_hash, FrozenState, SectionEncoder, SectionKind, SectionVersion, TrailerHasher,
};

/// The directory of section files, inside the snapshots directory.
pub(crate) const SECTIONS_DIR: &str = "sections";
const SECTION_SUFFIX: &str = ".sec";
const FOOTER_MAGIC: &[u8; 8] = b"TSPLITND";
const FOOTER_BYTES: u64 = 8 + 4 + 4 + 8;
const PIECE_HEADER_BYTES: usize = 16;
/// A section file's header names no log entry.
const SECTION_ID: LogId = LogId { index: 0, term: 0 };
/// Longest section file name accepted in a manifest.
const NAME_BYTES_MAX: usize = 128;

/// The name of the section file holding `stored` (a section's stored form, its BLAKE3 last).
pub fn section_name(kind: SectionKind, index: usize, stored: &[u8]) -> String {
    let hash = tally_engine::section_hash(stored);
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&hash[..8]);
    format!(
        "{}-{index:06}-{:016x}{SECTION_SUFFIX}",
        kind.name(),
        u64::from_be_bytes(prefix)
    )
}

/// Section files the last split snapshot built here wrote or took, by kind and position:
/// what the next build may take again where the section's version is unchanged.
#[derive(Debug, Default)]
pub struct KeptSections(HashMap<(SectionKind, usize), Kept>);

#[derive(Debug, Clone)]
struct Kept {
    version: SectionVersion,
    name: String,
    length: u64,
    crc: u32,
    hash: [u8; 32],
}

/// Write `frozen` as a split snapshot of the state after `last` whose payload starts with
/// `head`: each whole chunk of events whose version is in `kept` is taken from its section
/// file, every other section encoded (whole chunks into section files of their own, the
/// rest into the manifest); `kept` then holds this snapshot's sections. Returns the file and
/// the bytes written and taken.
pub fn write_frozen(
    files: &SnapshotFiles,
    last: LogId,
    head: &[u8],
    frozen: &FrozenState,
    kept: &mut KeptSections,
) -> Result<(SnapshotFile, u64, u64), SnapshotError> {
    let mut writer = files.create_split()?;
    let header = frozen.header();
    let mut image_head = head.to_vec();
    image_head.extend_from_slice(&header);
    writer.bytes(&image_head)?;
    let mut trailer = TrailerHasher::new(&header);
    let mut encoder = SectionEncoder::default();
    let mut stored = Vec::new();
    let mut next = HashMap::new();
    for section in frozen.sections() {
        let key = (section.kind, section.index);
        if let Some(version) = section.version {
            if let Some(old) = kept.0.get(&key).filter(|old| old.version == version) {
                if writer.kept_section(&old.name, old.length, old.crc)? {
                    trailer.section(&old.hash);
                    next.insert(key, old.clone());
                    continue;
                }
            }
        }
        stored.clear();
        frozen.encode_section(&section, &mut encoder, &mut stored);
        let hash = section_hash(&stored);
        trailer.section(&hash);
        match section.version {
            Some(version) => {
                let name = section_name(section.kind, section.index, &stored);
                let crc = writer.new_section(&name, &stored)?;
                next.insert(
                    key,
                    Kept {
                        version,
                        name,
                        length: stored.len() as u64,
                        crc,
                        hash,
                    },
                );
            }
            None => writer.bytes(&stored)?,
        }
    }
    writer.bytes(&trailer.finish())?;
    let (written, taken) = writer.written_and_kept();
    let file = writer.finish(last)?;
    kept.0 = next;
    Ok((file, written, taken))
}

impl SnapshotFiles {
    /// Start writing a split snapshot (see the module docs).
    pub fn create_split(&self) -> Result<SplitWriter, SnapshotError> {
        let sections = self.sections_dir();
        self.disk
            .create_dir_all(&sections)
            .map_err(io_error(&sections))?;
        Ok(SplitWriter {
            files: self.clone(),
            manifest: Some(self.create()?),
            pieces: 0,
            payload_bytes: 0,
            payload_crc: 0,
            pinned: Vec::new(),
            buffer: None,
            sections_written: 0,
            written_bytes: 0,
            referred_bytes: 0,
        })
    }

    fn sections_dir(&self) -> PathBuf {
        self.dir.join(SECTIONS_DIR)
    }
}

/// A split snapshot being written: its payload given in order, piece by piece. Dropped
/// unfinished, it leaves no snapshot (section files it wrote go at the next collection).
pub struct SplitWriter {
    files: SnapshotFiles,
    /// The manifest being written (taken by `finish`).
    manifest: Option<SnapshotWriter>,
    pieces: u32,
    payload_bytes: u64,
    payload_crc: u32,
    /// Section names this writer refers to, kept from collection until it is done.
    pinned: Vec<String>,
    /// The section files' writers' buffer, passed from one to the next.
    buffer: Option<AlignedBuffer>,
    sections_written: usize,
    written_bytes: u64,
    referred_bytes: u64,
}

impl SplitWriter {
    /// The next bytes of the payload, kept in the manifest itself.
    pub fn bytes(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let crc = crc32c::crc32c(bytes);
        self.piece(0, &[], bytes.len() as u64, crc)?;
        self.write(bytes)?;
        self.add(bytes.len() as u64, crc);
        self.written_bytes += bytes.len() as u64;
        Ok(())
    }

    /// The next bytes of the payload from the section file `name` if it exists, holding
    /// `length` bytes of CRC `crc` (a section an earlier snapshot wrote); `false` if it does
    /// not exist (nothing is added).
    pub fn kept_section(
        &mut self,
        name: &str,
        length: u64,
        crc: u32,
    ) -> Result<bool, SnapshotError> {
        self.pin(name);
        let path = self.files.sections_dir().join(name);
        if !self.files.disk.exists(&path).map_err(io_error(&path))? {
            return Ok(false);
        }
        self.refer(name, length, crc)?;
        self.referred_bytes += length;
        Ok(true)
    }

    /// The next bytes of the payload, `stored` (a section in its stored form), put in the
    /// section file `name` ([`section_name`]) unless that file exists already; its CRC.
    pub fn new_section(&mut self, name: &str, stored: &[u8]) -> Result<u32, SnapshotError> {
        let crc = crc32c::crc32c(stored);
        if self.kept_section(name, stored.len() as u64, crc)? {
            return Ok(crc);
        }
        let mut writer = self.files.create_with(self.buffer.take())?;
        let path = self.files.sections_dir().join(name);
        writer.write_all(stored).map_err(io_error(&path))?;
        let (_, buffer) = writer.finish_keeping_buffer(1, SECTION_ID, path)?;
        self.buffer = Some(buffer);
        self.sections_written += 1;
        self.written_bytes += stored.len() as u64;
        self.refer(name, stored.len() as u64, crc)?;
        Ok(crc)
    }

    /// Bytes this snapshot wrote (its own and new section files) and took from section
    /// files written before.
    pub fn written_and_kept(&self) -> (u64, u64) {
        (self.written_bytes, self.referred_bytes)
    }

    /// Make it the snapshot file of the state after entry `last`, as
    /// [`SnapshotWriter::finish`] does (durability contract there); the section files it
    /// wrote are fsync'd, and their directory, before the manifest is.
    pub fn finish(mut self, last: LogId) -> Result<SnapshotFile, SnapshotError> {
        let mut footer = Vec::with_capacity(FOOTER_BYTES as usize);
        footer.extend_from_slice(&self.payload_bytes.to_le_bytes());
        footer.extend_from_slice(&self.payload_crc.to_le_bytes());
        footer.extend_from_slice(&self.pieces.to_le_bytes());
        footer.extend_from_slice(FOOTER_MAGIC);
        self.write(&footer)?;
        if self.sections_written > 0 {
            let dir = self.files.sections_dir();
            self.files.disk.sync_dir(&dir).map_err(io_error(&dir))?;
        }
        let path = self.files.dir.join(crate::snapshot_file::file_name(last));
        if let Some(manifest) = self.manifest.take() {
            manifest.finish_as(VERSION_SPLIT, last, path.clone(), true)?;
        }
        self.files.open(last)?.ok_or_else(|| SnapshotError::Io {
            path,
            source: io::Error::new(
                io::ErrorKind::InvalidData,
                "a split snapshot just written does not open",
            ),
        })
    }

    fn pin(&mut self, name: &str) {
        self.files
            .pinned
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(name.to_owned());
        self.pinned.push(name.to_owned());
    }

    fn refer(&mut self, name: &str, length: u64, crc: u32) -> Result<(), SnapshotError> {
        self.piece(1, name.as_bytes(), length, crc)?;
        self.write(name.as_bytes())?;
        self.add(length, crc);
        Ok(())
    }

    fn piece(&mut self, kind: u8, name: &[u8], length: u64, crc: u32) -> Result<(), SnapshotError> {
        let mut header = [0u8; PIECE_HEADER_BYTES];
        header[0] = kind;
        header[2..4].copy_from_slice(&(name.len() as u16).to_le_bytes());
        header[4..8].copy_from_slice(&crc.to_le_bytes());
        header[8..16].copy_from_slice(&length.to_le_bytes());
        self.pieces += 1;
        self.write(&header)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let path = self.files.dir.clone();
        let manifest = self.manifest.as_mut().ok_or_else(|| SnapshotError::Io {
            path: path.clone(),
            source: io::Error::other("the split snapshot is finished"),
        })?;
        manifest
            .write_all(bytes)
            .map_err(|source| SnapshotError::Io { path, source })
    }

    fn add(&mut self, length: u64, crc: u32) {
        self.payload_crc = crc32c::crc32c_combine(self.payload_crc, crc, length as usize);
        self.payload_bytes += length;
    }
}

impl Drop for SplitWriter {
    fn drop(&mut self) {
        let mut pinned = self
            .files
            .pinned
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for name in &self.pinned {
            pinned.remove(name);
        }
    }
}

/// A split snapshot opened: its payload as one file, its length and CRC.
pub(crate) struct Opened {
    pub payload: Arc<dyn DiskFile>,
    pub payload_bytes: u64,
    pub payload_crc: u32,
}

/// The pieces of a split snapshot's payload (the manifest of `manifest_bytes` bytes after the
/// header of `file`), each section file's header checked against its piece; why not otherwise.
pub(crate) fn open(
    files: &SnapshotFiles,
    file: &Arc<dyn DiskFile>,
    manifest_bytes: u64,
) -> Result<Opened, String> {
    let (pieces, payload_bytes, payload_crc) = read_manifest(file, manifest_bytes)?;
    let mut parts = Vec::with_capacity(pieces.len());
    let mut start = 0u64;
    let mut crc = 0u32;
    for piece in pieces {
        let (source, offset) = match piece.source {
            Source::Here(offset) => (Arc::clone(file), offset),
            Source::Section(name) => {
                let path = files.sections_dir().join(&name);
                let section = files
                    .disk
                    .open(&path, false)
                    .map_err(|error| format!("section file {name}: {error}"))?;
                let mut header = [0u8; HEADER_BYTES];
                let bytes = section.len().map_err(|error| error.to_string())?;
                read_exact_at(section.as_ref(), &mut header, 0)
                    .map_err(|error| format!("section file {name}: {error}"))?;
                let (length, section_crc, _) = check_header(&header, SECTION_ID, bytes)
                    .map_err(|why| format!("section file {name}: {why}"))?;
                if length != piece.length || section_crc != piece.crc {
                    return Err(format!(
                        "section file {name} is not the one the manifest names"
                    ));
                }
                (section, HEADER_BYTES as u64)
            }
        };
        crc = crc32c::crc32c_combine(crc, piece.crc, piece.length as usize);
        parts.push(Part {
            start,
            length: piece.length,
            file: source,
            offset,
        });
        start += piece.length;
    }
    if start != payload_bytes || crc != payload_crc {
        return Err("the pieces do not make the payload the manifest describes".to_owned());
    }
    Ok(Opened {
        payload: Arc::new(Pieces {
            parts,
            length: payload_bytes,
        }),
        payload_bytes,
        payload_crc,
    })
}

enum Source {
    /// Bytes of the manifest file at this offset.
    Here(u64),
    Section(String),
}

struct Piece {
    source: Source,
    length: u64,
    crc: u32,
}

/// The manifest's pieces and the payload's length and CRC, read from `file`.
fn read_manifest(
    file: &Arc<dyn DiskFile>,
    manifest_bytes: u64,
) -> Result<(Vec<Piece>, u64, u32), String> {
    let read = |at: u64, bytes: &mut [u8]| {
        read_exact_at(file.as_ref(), bytes, at).map_err(|error| error.to_string())
    };
    let end = HEADER_BYTES as u64 + manifest_bytes;
    if manifest_bytes < FOOTER_BYTES {
        return Err("manifest shorter than its footer".to_owned());
    }
    let mut footer = [0u8; FOOTER_BYTES as usize];
    read(end - FOOTER_BYTES, &mut footer)?;
    if &footer[16..24] != FOOTER_MAGIC {
        return Err("manifest footer damaged".to_owned());
    }
    let payload_bytes = u64::from_le_bytes(footer[0..8].try_into().unwrap_or_default());
    let payload_crc = u32::from_le_bytes(footer[8..12].try_into().unwrap_or_default());
    let count = u32::from_le_bytes(footer[12..16].try_into().unwrap_or_default());
    let mut pieces = Vec::new();
    let mut at = HEADER_BYTES as u64;
    for _ in 0..count {
        if at + PIECE_HEADER_BYTES as u64 > end - FOOTER_BYTES {
            return Err("manifest ends inside a piece".to_owned());
        }
        let mut header = [0u8; PIECE_HEADER_BYTES];
        read(at, &mut header)?;
        at += PIECE_HEADER_BYTES as u64;
        let name_bytes = u16::from_le_bytes([header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes(header[4..8].try_into().unwrap_or_default());
        let length = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
        let source = match (header[0], header[1], name_bytes) {
            (0, 0, 0) => {
                if length > end - FOOTER_BYTES - at {
                    return Err("manifest ends inside a piece".to_owned());
                }
                at += length;
                Source::Here(at - length)
            }
            (1, 0, 1..=NAME_BYTES_MAX) => {
                if (name_bytes as u64) > end - FOOTER_BYTES - at {
                    return Err("manifest ends inside a piece".to_owned());
                }
                let mut name = vec![0u8; name_bytes];
                read(at, &mut name)?;
                at += name_bytes as u64;
                let name = String::from_utf8(name)
                    .ok()
                    .filter(|name| is_section_name(name))
                    .ok_or("a section file name in the manifest is malformed")?;
                Source::Section(name)
            }
            _ => return Err("a manifest piece of unknown kind".to_owned()),
        };
        pieces.push(Piece {
            source,
            length,
            crc,
        });
    }
    if at != end - FOOTER_BYTES {
        return Err("bytes between the manifest's pieces and its footer".to_owned());
    }
    Ok((pieces, payload_bytes, payload_crc))
}

/// Whether `name` is a section file's name: no path in it.
fn is_section_name(name: &str) -> bool {
    name.ends_with(SECTION_SUFFIX)
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.')
        && !name.starts_with('.')
}

/// Delete the section files no snapshot file names (nor a writer at work: `pinned`), a
/// stretch at a time in the background (`Disk::reclaim`). A snapshot file whose manifest
/// does not read keeps every section: nothing is deleted then.
pub(crate) fn collect(files: &SnapshotFiles) -> Result<(), SnapshotError> {
    let dir = files.sections_dir();
    let present = match files.disk.list(&dir) {
        Ok(present) => present,
        // No split snapshot was ever written here.
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(io_error(&dir)(error)),
    };
    if present.is_empty() {
        return Ok(());
    }
    let mut named: HashSet<String> = files
        .pinned
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    for last in files.list()? {
        let path = files.dir.join(crate::snapshot_file::file_name(last));
        let file = match files.disk.open(&path, false) {
            Ok(file) => file,
            // Deleted meanwhile (a concurrent prune): it names nothing any more.
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(io_error(&path)(error)),
        };
        let mut header = [0u8; HEADER_BYTES];
        let bytes = file.len().map_err(io_error(&path))?;
        if read_exact_at(file.as_ref(), &mut header, 0).is_err() {
            return Ok(());
        }
        match check_header(&header, last, bytes) {
            Ok((manifest_bytes, _, VERSION_SPLIT)) => match read_manifest(&file, manifest_bytes) {
                Ok((pieces, _, _)) => {
                    named.extend(pieces.into_iter().filter_map(|piece| match piece.source {
                        Source::Section(name) => Some(name),
                        Source::Here(_) => None,
                    }))
                }
                Err(_) => return Ok(()),
            },
            Ok(_) => {}
            Err(_) => return Ok(()),
        }
    }
    for name in present.into_iter().filter(|name| !named.contains(name)) {
        let path = dir.join(&name);
        let retired = files.partial_path("deleting");
        files
            .disk
            .rename(&path, &retired)
            .map_err(io_error(&path))?;
        files.disk.reclaim(&retired).map_err(io_error(&retired))?;
    }
    Ok(())
}

/// A split snapshot's payload read as one file: its pieces in order. Read only.
#[derive(Debug)]
struct Pieces {
    parts: Vec<Part>,
    length: u64,
}

#[derive(Debug)]
struct Part {
    /// Offset of the piece in the payload.
    start: u64,
    length: u64,
    file: Arc<dyn DiskFile>,
    /// Offset of the piece in `file`.
    offset: u64,
}

fn read_only() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "a split snapshot's payload is read only",
    )
}

impl DiskFile for Pieces {
    fn len(&self) -> io::Result<u64> {
        Ok(self.length)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut done = 0;
        let mut index = self
            .parts
            .partition_point(|part| part.start + part.length <= offset);
        while done < buf.len() {
            let Some(part) = self.parts.get(index) else {
                break;
            };
            let at = offset + done as u64 - part.start;
            let bytes = ((part.length - at) as usize).min(buf.len() - done);
            read_exact_at(
                part.file.as_ref(),
                &mut buf[done..done + bytes],
                part.offset + at,
            )?;
            done += bytes;
            index += 1;
        }
        Ok(done)
    }

    fn write_at(&self, _: &[u8], _: u64) -> io::Result<()> {
        Err(read_only())
    }

    fn write_sync_at(&self, _: &[u8], _: u64) -> io::Result<()> {
        Err(read_only())
    }

    fn sync(&self) -> io::Result<()> {
        Ok(())
    }

    fn allocate(&self, _: u64) -> io::Result<()> {
        Err(read_only())
    }

    fn set_len(&self, _: u64) -> io::Result<()> {
        Err(read_only())
    }
}
