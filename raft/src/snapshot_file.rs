//! Snapshot files: the engine's state (opaque bytes: rkyv with the engine's own checksum)
//! wrapped in a header with our own checksums, written atomically.
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

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::SnapshotError;
use crate::limits::{SNAPSHOT_CHUNK_BYTES, SNAPSHOT_PAYLOAD_BYTES_MAX, SNAPSHOT_SYNC_BYTES};
use crate::storage::{read_exact_at, Disk};
use crate::wal::LogId;

const MAGIC: u32 = 0x504E_5354;
const VERSION: u32 = 1;
const HEADER_BYTES: usize = 48;
const PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".snap";
const TEMPORARY_SUFFIX: &str = ".snap.tmp";

/// The snapshot files of one node, in one directory.
#[derive(Debug, Clone)]
pub struct SnapshotFiles {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
}

fn file_name(last: LogId) -> String {
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

fn encode_header(last: LogId, payload: &[u8]) -> [u8; HEADER_BYTES] {
    let mut header = [0u8; HEADER_BYTES];
    header[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    header[4..8].copy_from_slice(&VERSION.to_le_bytes());
    header[8..16].copy_from_slice(&last.index.to_le_bytes());
    header[16..24].copy_from_slice(&last.term.to_le_bytes());
    header[24..32].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    header[32..36].copy_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    let header_crc = crc32c::crc32c(&header[..40]);
    header[40..44].copy_from_slice(&header_crc.to_le_bytes());
    header
}

/// Why a snapshot file is not usable; such a file is skipped with a warning.
fn check_header(
    header: &[u8; HEADER_BYTES],
    expected: LogId,
    file_bytes: u64,
) -> Result<u64, &'static str> {
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
    if word(4) != VERSION || word(36) != 0 || word(44) != 0 {
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
    Ok(payload_bytes)
}

impl SnapshotFiles {
    /// Snapshot files in `dir` (created if missing).
    pub fn new(disk: Arc<dyn Disk>, dir: &Path) -> Result<SnapshotFiles, SnapshotError> {
        disk.create_dir_all(dir)
            .map_err(|source| SnapshotError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(SnapshotFiles {
            disk,
            dir: dir.to_path_buf(),
        })
    }

    /// The snapshot id a file is named after (`snapshot-{index}-{term}.snap`), if it is one.
    pub fn id_of(path: &Path) -> Option<LogId> {
        parse_name(path.file_name()?.to_str()?)
    }

    fn io(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
        move |source| SnapshotError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Write a snapshot of the state after entry `last`.
    ///
    /// Durability contract:
    /// - Written to a temporary name, fsync'd, renamed to its final name, and the directory
    ///   fsync'd, all before `Ok`: after a crash the file is either complete or absent.
    ///   (Written in stretches of `SNAPSHOT_SYNC_BYTES`, each fsync'd, so the WAL's fsyncs
    ///   never queue behind the whole image's write-back.)
    pub fn write(&self, last: LogId, payload: &[u8]) -> Result<PathBuf, SnapshotError> {
        if payload.len() as u64 > SNAPSHOT_PAYLOAD_BYTES_MAX {
            return Err(SnapshotError::TooLarge {
                bytes: payload.len() as u64,
                limit: SNAPSHOT_PAYLOAD_BYTES_MAX,
            });
        }
        let name = file_name(last);
        let temporary = self.dir.join(format!("{name}.tmp"));
        let path = self.dir.join(&name);
        let file = self
            .disk
            .open(&temporary, true)
            .map_err(Self::io(&temporary))?;
        file.set_len(0).map_err(Self::io(&temporary))?;
        file.write_at(&encode_header(last, payload), 0)
            .map_err(Self::io(&temporary))?;
        let mut offset = HEADER_BYTES as u64;
        let mut synced = 0;
        for chunk in payload.chunks(SNAPSHOT_CHUNK_BYTES) {
            file.write_at(chunk, offset).map_err(Self::io(&temporary))?;
            offset += chunk.len() as u64;
            if offset - synced >= SNAPSHOT_SYNC_BYTES {
                file.sync().map_err(Self::io(&temporary))?;
                synced = offset;
            }
        }
        file.sync().map_err(Self::io(&temporary))?;
        self.disk
            .rename(&temporary, &path)
            .map_err(Self::io(&path))?;
        self.disk.sync_dir(&self.dir).map_err(Self::io(&self.dir))?;
        Ok(path)
    }

    /// Snapshot ids on disk, newest first (by name; validity is not checked).
    pub fn list(&self) -> Result<Vec<LogId>, SnapshotError> {
        let names = self.disk.list(&self.dir).map_err(Self::io(&self.dir))?;
        let mut ids: Vec<LogId> = names.iter().filter_map(|name| parse_name(name)).collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        Ok(ids)
    }

    /// Read and verify the snapshot `last`; `Ok(None)` if it is damaged (the reason is logged).
    pub fn read(&self, last: LogId) -> Result<Option<Vec<u8>>, SnapshotError> {
        let path = self.dir.join(file_name(last));
        let file = self.disk.open(&path, false).map_err(Self::io(&path))?;
        let file_bytes = file.len().map_err(Self::io(&path))?;
        let mut header = [0u8; HEADER_BYTES];
        if file_bytes < HEADER_BYTES as u64 {
            tracing::warn!(path = %path.display(), "snapshot file shorter than its header; skipped");
            return Ok(None);
        }
        read_exact_at(file.as_ref(), &mut header, 0).map_err(Self::io(&path))?;
        let payload_bytes = match check_header(&header, last, file_bytes) {
            Ok(bytes) => bytes,
            Err(reason) => {
                tracing::warn!(path = %path.display(), reason, "damaged snapshot skipped");
                return Ok(None);
            }
        };
        let mut payload = vec![0u8; payload_bytes as usize];
        read_exact_at(file.as_ref(), &mut payload, HEADER_BYTES as u64).map_err(Self::io(&path))?;
        // Assertion in pairs: the payload checksum written in `write` is checked on read.
        if crc32c::crc32c(&payload)
            != u32::from_le_bytes([header[32], header[33], header[34], header[35]])
        {
            tracing::warn!(path = %path.display(), "snapshot payload checksum mismatch; skipped");
            return Ok(None);
        }
        Ok(Some(payload))
    }

    /// The newest snapshot that verifies, with its id. Damaged newer ones are skipped (and
    /// logged): the caller must still check that the log reaches back to the one returned.
    pub fn newest_valid(&self) -> Result<Option<(LogId, Vec<u8>)>, SnapshotError> {
        for last in self.list()? {
            if let Some(payload) = self.read(last)? {
                return Ok(Some((last, payload)));
            }
        }
        Ok(None)
    }

    /// Delete all but the `keep` newest snapshots, and temporary files of interrupted writes.
    pub fn prune(&self, keep: usize) -> Result<(), SnapshotError> {
        let names = self.disk.list(&self.dir).map_err(Self::io(&self.dir))?;
        for name in names.iter().filter(|name| name.ends_with(TEMPORARY_SUFFIX)) {
            let path = self.dir.join(name);
            self.disk.remove(&path).map_err(Self::io(&path))?;
        }
        for last in self.list()?.into_iter().skip(keep) {
            let path = self.dir.join(file_name(last));
            self.disk.remove(&path).map_err(Self::io(&path))?;
        }
        self.disk.sync_dir(&self.dir).map_err(Self::io(&self.dir))
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
}
