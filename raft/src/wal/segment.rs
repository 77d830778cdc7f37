//! Segments: preallocated files of fixed size, named by the index of their first entry.
//!
//! A segment is named `{first_index:020}.wal` so that name order is log order. The name is the
//! index of the first entry the WAL thread wrote into it; truncation deletes every segment
//! whose name is at or above the truncation point first, so later segments always get larger
//! names than earlier ones.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::storage::{Disk, DiskFile};

const SUFFIX: &str = ".wal";

/// The file name of the segment whose first entry has `first_index`.
pub fn segment_name(first_index: u64) -> String {
    format!("{first_index:020}{SUFFIX}")
}

/// What a purged segment is renamed to before its space is given back in the background
/// (`Disk::reclaim`); recovery removes any a crash left.
pub const PURGED_SUFFIX: &str = ".purged";

/// The name a purged segment at `path` is renamed to.
pub fn purged_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(PURGED_SUFFIX);
    PathBuf::from(name)
}

/// The first index encoded in a segment file name, or `None` if `name` is not a segment.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Bytes of the full segments in `dir` that can hold entries at or after index `from` (every
/// segment from the last one named at or below `from`, but the newest): about what a replay
/// from `from` reads, for sizing what it fills. The newest segment is left out: it is
/// preallocated, so its size says nothing of how full it is (a new node's WAL counts 0).
pub fn bytes_from(disk: &dyn Disk, dir: &Path, from: u64) -> io::Result<u64> {
    let mut firsts: Vec<u64> = disk
        .list(dir)?
        .iter()
        .filter_map(|name| parse_segment_name(name))
        .collect();
    firsts.sort_unstable();
    let start = firsts
        .partition_point(|&first| first <= from)
        .saturating_sub(1);
    let full = firsts.len().saturating_sub(1);
    let mut bytes = 0;
    for &first in firsts.get(start..full).unwrap_or_default() {
        bytes += disk.open(&dir.join(segment_name(first)), false)?.len()?;
    }
    Ok(bytes)
}

/// An open segment file, shared by the WAL thread (writes) and readers (reads). Readers keep
/// their handle while a truncation removes the name, as a Unix descriptor allows; a purged
/// segment is cut in the background, but openraft reads no entry it has purged.
#[derive(Debug)]
pub struct SegmentFile {
    pub path: PathBuf,
    pub file: Arc<dyn DiskFile>,
}

/// What the WAL thread tracks for each segment it may still write to, truncate into or purge.
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    /// From the file name.
    pub first_index: u64,
    pub handle: Arc<SegmentFile>,
    /// Sector-aligned offset where the next group commit goes.
    pub end: u64,
    /// Highest index of any entry record written to this segment, live or truncated.
    pub index_max: Option<u64>,
    /// CRC of the last record in the segment (the next record's chain), if any.
    pub crc_last: Option<u32>,
}

/// Create a new segment, preallocated to `segment_bytes` of zeros.
///
/// Durability contract:
/// - On `Ok` the segment's name, size and allocation are durable: the file is fsync'd and then
///   the directory is fsync'd. Without the directory fsync a power loss could drop the name
///   (and with it every group commit acknowledged into the segment); the
///   `rotation_needs_directory_fsync` test shows exactly that.
pub fn create(
    disk: &dyn Disk,
    dir: &Path,
    first_index: u64,
    segment_bytes: u64,
) -> io::Result<SegmentInfo> {
    let path = dir.join(segment_name(first_index));
    let file = disk.open(&path, true)?;
    // A file of this name can only be a leftover that truncation or recovery removed from the
    // log; start from zeros so no stale record can ever be read from it.
    file.set_len(0)?;
    file.allocate(segment_bytes)?;
    file.sync()?;
    disk.sync_dir(dir)?;
    Ok(SegmentInfo {
        first_index,
        handle: Arc::new(SegmentFile { path, file }),
        end: 0,
        index_max: None,
        crc_last: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Segment names round-trip and sort in log order; other names are not segments.
    #[test]
    fn names_round_trip_and_sort() {
        for index in [0, 1, 99, u64::MAX] {
            assert_eq!(parse_segment_name(&segment_name(index)), Some(index));
        }
        assert!(segment_name(9) < segment_name(10));
        assert_eq!(parse_segment_name("vote"), None);
        assert_eq!(parse_segment_name("0000000000000000001.wal"), None);
        assert_eq!(parse_segment_name("0000000000000000000a.wal"), None);
    }

    /// Proves the replay estimate counts the full segments from the one holding `from` on,
    /// and never the newest (preallocated, however full it is).
    #[test]
    fn bytes_from_counts_full_segments_from_the_index_on() {
        let disk = crate::storage::sim::SimDisk::new();
        let dir = Path::new("/wal");
        disk.create_dir_all(dir).expect("dir");
        assert_eq!(bytes_from(&disk, dir, 0).expect("empty"), 0);
        for first in [1, 100, 200] {
            create(&disk, dir, first, 1_000).expect("segment");
        }
        assert_eq!(bytes_from(&disk, dir, 0).expect("all"), 2_000);
        assert_eq!(bytes_from(&disk, dir, 150).expect("from 150"), 1_000);
        assert_eq!(bytes_from(&disk, dir, 250).expect("in the newest"), 0);
    }
}
