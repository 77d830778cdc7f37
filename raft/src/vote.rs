//! The vote, and the small atomically replaced metadata files it shares a format with.
//!
//! A metadata file is `magic u32 | length u32 | payload | crc32c u32` (little-endian, CRC over
//! everything before it). It is replaced by writing `NAME.tmp`, fsyncing it, renaming it over
//! `NAME` and fsyncing the directory, so a reader always finds either the old or the new
//! complete file; a damaged one is therefore corruption, never a torn write.

use std::io;
use std::path::Path;

use crate::limits::META_FILE_BYTES_MAX;
use crate::storage::{read_up_to, Disk};

/// Name of the vote file inside the WAL directory.
pub const VOTE_FILE: &str = "vote";
const VOTE_MAGIC: u32 = 0x544F_5654; // "TVOT"

/// openraft 0.9's `Vote`: the term, the node voted for (or leading), and whether a quorum
/// granted it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Vote {
    pub term: u64,
    pub node_id: u64,
    pub committed: bool,
}

impl Vote {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut payload = Vec::with_capacity(17);
        payload.extend_from_slice(&self.term.to_le_bytes());
        payload.extend_from_slice(&self.node_id.to_le_bytes());
        payload.push(u8::from(self.committed));
        payload
    }

    pub(crate) fn decode(payload: &[u8]) -> Option<Vote> {
        if payload.len() != 17 || payload[16] > 1 {
            return None;
        }
        let term = u64::from_le_bytes(payload[0..8].try_into().ok()?);
        let node_id = u64::from_le_bytes(payload[8..16].try_into().ok()?);
        Some(Vote {
            term,
            node_id,
            committed: payload[16] == 1,
        })
    }

    /// Write the vote durably into `dir`.
    pub(crate) fn save(&self, disk: &dyn Disk, dir: &Path) -> io::Result<()> {
        write_meta(disk, dir, VOTE_FILE, VOTE_MAGIC, &self.encode())
    }

    /// Read the vote from `dir`: `Ok(None)` if none was ever saved.
    pub(crate) fn load(disk: &dyn Disk, dir: &Path) -> Result<Option<Vote>, MetaError> {
        match read_meta(disk, dir, VOTE_FILE, VOTE_MAGIC)? {
            None => Ok(None),
            Some(payload) => Vote::decode(&payload)
                .map(Some)
                .ok_or(MetaError::Corrupt("bad vote fields")),
        }
    }
}

/// Reading a metadata file failed.
#[derive(Debug)]
pub(crate) enum MetaError {
    Io(io::Error),
    Corrupt(&'static str),
}

impl From<io::Error> for MetaError {
    fn from(error: io::Error) -> MetaError {
        MetaError::Io(error)
    }
}

/// Replace `dir/name` atomically and durably.
///
/// Durability contract:
/// - On `Ok` the new content is durable: file fsync'd, renamed, directory fsync'd.
/// - On `Err` the file holds either the old or the new content, never a mix.
pub(crate) fn write_meta(
    disk: &dyn Disk,
    dir: &Path,
    name: &str,
    magic: u32,
    payload: &[u8],
) -> io::Result<()> {
    assert!(payload.len() + 12 <= META_FILE_BYTES_MAX);
    let mut bytes = Vec::with_capacity(payload.len() + 12);
    bytes.extend_from_slice(&magic.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(payload);
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let temporary = dir.join(format!("{name}.tmp"));
    let file = disk.open(&temporary, true)?;
    file.set_len(0)?;
    file.write_at(&bytes, 0)?;
    file.sync()?;
    disk.rename(&temporary, &dir.join(name))?;
    disk.sync_dir(dir)
}

/// Read and verify `dir/name`; `Ok(None)` if it does not exist.
pub(crate) fn read_meta(
    disk: &dyn Disk,
    dir: &Path,
    name: &str,
    magic: u32,
) -> Result<Option<Vec<u8>>, MetaError> {
    let path = dir.join(name);
    if !disk.exists(&path)? {
        return Ok(None);
    }
    let file = disk.open(&path, false)?;
    let mut bytes = vec![0u8; META_FILE_BYTES_MAX];
    let n = read_up_to(file.as_ref(), &mut bytes, 0)?;
    bytes.truncate(n);
    if n < 12 {
        return Err(MetaError::Corrupt("file too short"));
    }
    if bytes[0..4] != magic.to_le_bytes() {
        return Err(MetaError::Corrupt("bad magic"));
    }
    let mut length = [0u8; 4];
    length.copy_from_slice(&bytes[4..8]);
    let length = u32::from_le_bytes(length) as usize;
    if 8 + length + 4 != n {
        return Err(MetaError::Corrupt("length does not match the file"));
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[8 + length..]);
    if crc32c::crc32c(&bytes[..8 + length]) != u32::from_le_bytes(crc) {
        return Err(MetaError::Corrupt("checksum mismatch"));
    }
    Ok(Some(bytes[8..8 + length].to_vec()))
}
