//! The record: the unit of the WAL's byte layout (docs/wal.md has the picture).
//!
//! ```text
//! offset size field
//!      0    4 magic     "TWAL" (0x4C41_5754 little-endian)
//!      4    1 kind      1 = entry, 2 = truncate mark
//!      5    1 flags     bit 0 = first record of its group commit
//!      6    2 reserved  zero
//!      8    4 length    payload bytes
//!     12    4 reserved  zero
//!     16    8 index     log index (truncate mark: first index removed)
//!     24    8 term      log term (truncate mark: zero)
//!     32    4 chain     `crc` of the previous record of the log
//!     36    4 crc       CRC32C of bytes 0..36 followed by the payload
//!     40    - payload
//! ```
//! All integers little-endian. Records follow each other without gaps inside a group commit;
//! a group ends with zeros up to the next sector boundary.

use crate::limits::RECORD_HEADER_BYTES;

/// Marks the start of a record; also what recovery looks for at sector boundaries.
pub const MAGIC: u32 = 0x4C41_5754;
const CRC_OFFSET: usize = 36;
/// `flags` bit: this record starts a group commit, so it sits on a sector boundary.
pub const FLAG_GROUP_FIRST: u8 = 1;

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// One log entry: (index, term, payload).
    Entry,
    /// Entries from `index` on are removed (openraft `truncate`); no payload.
    Truncate,
}

impl RecordKind {
    fn code(self) -> u8 {
        match self {
            RecordKind::Entry => 1,
            RecordKind::Truncate => 2,
        }
    }
}

/// A decoded, checksum-verified record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub kind: RecordKind,
    pub group_first: bool,
    pub length: u32,
    pub index: u64,
    pub term: u64,
    pub chain: u32,
    pub crc: u32,
}

impl RecordHeader {
    /// Bytes of header plus payload.
    pub fn record_bytes(&self) -> usize {
        RECORD_HEADER_BYTES + self.length as usize
    }
}

/// Why bytes are not a valid record. Recovery decides from context whether that is a torn
/// tail or corruption; the reason goes into the corruption report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// Fewer bytes left than a header, or than the header's length says.
    Truncated,
    /// The first four bytes are not the magic.
    BadMagic,
    /// Unknown kind, unknown flags or non-zero reserved bytes.
    BadHeader,
    /// Length above the configured maximum payload.
    TooLong,
    /// CRC32C of header and payload does not match.
    BadChecksum,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Invalid::Truncated => "record cut short",
            Invalid::BadMagic => "bad magic",
            Invalid::BadHeader => "bad header fields",
            Invalid::TooLong => "length over the limit",
            Invalid::BadChecksum => "checksum mismatch",
        })
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Encode a record (header and payload) into `out`, which must be exactly
/// `RECORD_HEADER_BYTES + payload.len()` long. Returns the record's CRC (the next record's
/// chain).
#[allow(clippy::too_many_arguments)] // One argument per header field reads best here.
pub fn encode(
    out: &mut [u8],
    kind: RecordKind,
    group_first: bool,
    index: u64,
    term: u64,
    chain: u32,
    payload: &[u8],
) -> u32 {
    assert_eq!(out.len(), RECORD_HEADER_BYTES + payload.len());
    // Callers check the payload against ENTRY_PAYLOAD_BYTES_MAX, which fits in u32 (limits.rs).
    assert!(payload.len() <= u32::MAX as usize);
    let length = payload.len() as u32;
    let (header, body) = out.split_at_mut(RECORD_HEADER_BYTES);
    header[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    header[4] = kind.code();
    header[5] = if group_first { FLAG_GROUP_FIRST } else { 0 };
    header[6..8].fill(0);
    header[8..12].copy_from_slice(&length.to_le_bytes());
    header[12..16].fill(0);
    header[16..24].copy_from_slice(&index.to_le_bytes());
    header[24..32].copy_from_slice(&term.to_le_bytes());
    header[32..36].copy_from_slice(&chain.to_le_bytes());
    body.copy_from_slice(payload);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header[..CRC_OFFSET]), body);
    header[CRC_OFFSET..RECORD_HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
    crc
}

/// Decode and verify the record at the start of `bytes` (which may run past it).
/// Assertion in pairs: every record is checked here when read back, as it was built by
/// `encode` when written.
pub fn decode(bytes: &[u8], payload_bytes_max: usize) -> Result<RecordHeader, Invalid> {
    if bytes.len() < RECORD_HEADER_BYTES {
        return Err(Invalid::Truncated);
    }
    if u32_at(bytes, 0) != MAGIC {
        return Err(Invalid::BadMagic);
    }
    let kind = match bytes[4] {
        1 => RecordKind::Entry,
        2 => RecordKind::Truncate,
        _ => return Err(Invalid::BadHeader),
    };
    let flags = bytes[5];
    if flags & !FLAG_GROUP_FIRST != 0 || bytes[6..8] != [0, 0] || bytes[12..16] != [0; 4] {
        return Err(Invalid::BadHeader);
    }
    let length = u32_at(bytes, 8);
    if length as usize > payload_bytes_max {
        return Err(Invalid::TooLong);
    }
    let end = RECORD_HEADER_BYTES + length as usize;
    if bytes.len() < end {
        return Err(Invalid::Truncated);
    }
    let crc = u32_at(bytes, CRC_OFFSET);
    let computed = crc32c::crc32c_append(
        crc32c::crc32c(&bytes[..CRC_OFFSET]),
        &bytes[RECORD_HEADER_BYTES..end],
    );
    if crc != computed {
        return Err(Invalid::BadChecksum);
    }
    let header = RecordHeader {
        kind,
        group_first: flags & FLAG_GROUP_FIRST != 0,
        length,
        index: u64_at(bytes, 16),
        term: u64_at(bytes, 24),
        chain: u32_at(bytes, 32),
        crc,
    };
    if kind == RecordKind::Truncate && (length != 0 || header.term != 0) {
        return Err(Invalid::BadHeader);
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any entry record decodes back to exactly the fields and payload it was built from.
        #[test]
        fn encode_decode_round_trip(
            index in any::<u64>(), term in any::<u64>(), chain in any::<u32>(),
            first in any::<bool>(), payload in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut out = vec![0u8; RECORD_HEADER_BYTES + payload.len()];
            let crc = encode(&mut out, RecordKind::Entry, first, index, term, chain, &payload);
            let header = decode(&out, 1024).expect("valid record");
            prop_assert_eq!(header, RecordHeader {
                kind: RecordKind::Entry, group_first: first, length: payload.len() as u32,
                index, term, chain, crc,
            });
            prop_assert_eq!(&out[RECORD_HEADER_BYTES..], &payload[..]);
        }

        /// Random bytes never panic the decoder, and a single flipped bit is always caught.
        #[test]
        fn decode_never_panics_and_catches_bit_flips(
            noise in proptest::collection::vec(any::<u8>(), 0..200), bit in 0usize..(8 * 140),
        ) {
            let _ = decode(&noise, 1024);
            let mut out = vec![0u8; RECORD_HEADER_BYTES + 100];
            encode(&mut out, RecordKind::Entry, false, 7, 3, 11, &[0xAB; 100]);
            out[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode(&out, 1024).is_err());
        }
    }
}
