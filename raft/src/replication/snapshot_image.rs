//! A snapshot image: the bytes a snapshot file holds and a leader sends to a follower. It is
//! the applied state openraft needs (last applied log id, last membership, snapshot id) in
//! front of the engine's own snapshot (rkyv sections + BLAKE3, opaque here). Written and read as a
//! stream: the head in memory, the engine's part straight to or from the file.
//!
//! ```text
//! offset size field
//!      0    4 magic        "TRSI" (0x4953_5254 little-endian)
//!      4    4 version      2 (1: no reply table, R is zero)
//!      8    4 meta_bytes   M, length of the meta section
//!     12    4 replies_bytes R, length of the reply-table section
//!     16    M meta         last_log_id (optional log id, 32 bytes)
//!                          last_membership log id (optional log id, 32 bytes)
//!                          last_membership (membership layout, docs/raft-entries.md)
//!                          snapshot_id: length u32, UTF-8 bytes
//!   16+M    R replies      the replicated reply table (`replies.rs`, docs/raft-entries.md)
//! 16+M+R    - engine       the engine's snapshot (FrozenState::write_to), to the end
//! ```
//! The file around it (`snapshot_file.rs`) adds a CRC32C over all of this; the engine's part
//! carries its own BLAKE3. Keeping the applied state inside the image is what makes a snapshot
//! self-describing: restoring one sets the engine, the applied log id and the membership
//! together, from the same bytes.

use std::io::Read;

use super::codec::{
    decode_membership, decode_optional_log_id, encode_membership, encode_optional_log_id, Reader,
};
use super::error::{DecodeError, EncodeError};
use super::limits::{SNAPSHOT_ID_BYTES_MAX, SNAPSHOT_META_BYTES_MAX};
use super::replies::{ReplyTable, REPLY_TABLE_BYTES_MAX};
use super::types::{SnapshotMeta, StoredMembership};

/// Bytes of the reply-table section: its encoding is never longer than the table's accounting
/// (bounded by `REPLY_TABLE_BYTES_MAX`) plus its count.
const REPLIES_SECTION_BYTES_MAX: usize = REPLY_TABLE_BYTES_MAX + 8;

/// What an image holds before the engine's part: openraft's meta and the reply table.
#[derive(Debug, Default)]
pub struct Head {
    pub meta: SnapshotMeta,
    pub replies: ReplyTable,
}

const MAGIC: u32 = 0x4953_5254;
const VERSION: u32 = 2;
/// Images before the reply table: the same layout with `replies_bytes` zero.
const VERSION_NO_REPLIES: u32 = 1;
const HEADER_BYTES: usize = 16;

/// Append the meta section's layout (see the module docs) to `out`; the replica network sends
/// the same bytes with each snapshot chunk.
pub(crate) fn encode_meta(meta: &SnapshotMeta, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    if meta.snapshot_id.len() > SNAPSHOT_ID_BYTES_MAX {
        return Err(EncodeError::OverLimit {
            what: "bytes of a snapshot id",
            count: meta.snapshot_id.len(),
            limit: SNAPSHOT_ID_BYTES_MAX,
        });
    }
    let start = out.len();
    encode_optional_log_id(meta.last_log_id.as_ref(), out);
    encode_optional_log_id(meta.last_membership.log_id().as_ref(), out);
    encode_membership(meta.last_membership.membership(), out)?;
    out.extend_from_slice(&(meta.snapshot_id.len() as u32).to_le_bytes());
    out.extend_from_slice(meta.snapshot_id.as_bytes());
    // Within the limit by construction (asserted at compile time in limits.rs).
    assert!(out.len() - start <= SNAPSHOT_META_BYTES_MAX);
    Ok(())
}

/// Read the meta section (the pair of [`encode_meta`]), leaving `reader` after it.
pub(crate) fn decode_meta(reader: &mut Reader<'_>) -> Result<SnapshotMeta, DecodeError> {
    let last_log_id = decode_optional_log_id(reader)?;
    let membership_log_id = decode_optional_log_id(reader)?;
    let membership = decode_membership(reader)?;
    let id_bytes = reader.count("bytes of a snapshot id", SNAPSHOT_ID_BYTES_MAX, 1)?;
    let snapshot_id = std::str::from_utf8(reader.take(id_bytes)?)
        .map_err(|_| DecodeError::NotUtf8 {
            what: "snapshot id",
        })?
        .to_owned();
    Ok(SnapshotMeta {
        last_log_id,
        last_membership: StoredMembership::new(membership_log_id, membership),
        snapshot_id,
    })
}

/// The image's head: its header, meta and reply-table sections (the pair of [`read_head`]).
/// The engine's snapshot follows it to the end of the image.
pub fn encode_head(meta: &SnapshotMeta, replies: &ReplyTable) -> Result<Vec<u8>, EncodeError> {
    let mut section = Vec::with_capacity(1024);
    encode_meta(meta, &mut section)?;
    let mut table = Vec::new();
    replies.encode(&mut table);
    assert!(table.len() <= REPLIES_SECTION_BYTES_MAX);
    let mut head = Vec::with_capacity(HEADER_BYTES + section.len() + table.len());
    head.extend_from_slice(&MAGIC.to_le_bytes());
    head.extend_from_slice(&VERSION.to_le_bytes());
    head.extend_from_slice(&(section.len() as u32).to_le_bytes());
    head.extend_from_slice(&(table.len() as u32).to_le_bytes());
    head.extend_from_slice(&section);
    head.extend_from_slice(&table);
    Ok(head)
}

fn read_exact(input: &mut impl Read, bytes: &mut [u8], at: usize) -> Result<(), DecodeError> {
    input.read_exact(bytes).map_err(|error| {
        if error.kind() == std::io::ErrorKind::UnexpectedEof {
            DecodeError::Truncated {
                at,
                needed: bytes.len(),
            }
        } else {
            DecodeError::Read(error.to_string())
        }
    })
}

/// Read an image's head from `input` (see [`encode_head`]), leaving `input` at the start of
/// the engine's snapshot.
pub fn read_head(input: &mut impl Read) -> Result<Head, DecodeError> {
    let mut header = [0u8; HEADER_BYTES];
    read_exact(input, &mut header, 0)?;
    let mut reader = Reader::new(&header);
    if reader.u32()? != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let version = reader.u32()?;
    if version != VERSION && version != VERSION_NO_REPLIES {
        return Err(DecodeError::UnknownVersion(version));
    }
    // The meta section follows the header: its length is bounded here, before reading it.
    let section_bytes = reader.u32()? as usize;
    if section_bytes > SNAPSHOT_META_BYTES_MAX {
        return Err(DecodeError::OverLimit {
            what: "bytes of snapshot meta",
            count: section_bytes as u64,
            limit: SNAPSHOT_META_BYTES_MAX,
        });
    }
    let replies_bytes = if version == VERSION_NO_REPLIES {
        reader.reserved(4)?;
        0
    } else {
        reader.u32()? as usize
    };
    if replies_bytes > REPLIES_SECTION_BYTES_MAX {
        return Err(DecodeError::OverLimit {
            what: "bytes of the reply table",
            count: replies_bytes as u64,
            limit: REPLIES_SECTION_BYTES_MAX,
        });
    }
    reader.finish()?;
    let mut section = vec![0u8; section_bytes];
    read_exact(input, &mut section, HEADER_BYTES)?;
    let mut reader = Reader::new(&section);
    let meta = decode_meta(&mut reader)?;
    reader.finish()?;
    let replies = if version == VERSION_NO_REPLIES {
        ReplyTable::default()
    } else {
        let mut section = vec![0u8; replies_bytes];
        read_exact(input, &mut section, HEADER_BYTES + section_bytes)?;
        let mut reader = Reader::new(&section);
        let replies = ReplyTable::decode(&mut reader)?;
        reader.finish()?;
        replies
    };
    Ok(Head { meta, replies })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::replication::types::{LogId, Membership, Node};
    use proptest::prelude::*;

    // An image whole in memory, for these tests (nodes stream: `encode_head`, `read_head`).
    /// Encode `meta` and the engine's snapshot bytes into one image in memory (tests and tools:
    /// nodes write the head and stream the engine's snapshot after it).
    fn encode_image(meta: &SnapshotMeta, engine: &[u8]) -> Result<Vec<u8>, EncodeError> {
        let mut image = encode_head(meta, &sample_replies())?;
        image.extend_from_slice(engine);
        Ok(image)
    }

    /// Split an image in memory into its meta and the engine's bytes (the pair of
    /// [`encode_image`]).
    fn decode_image(image: &[u8]) -> Result<(SnapshotMeta, &[u8]), DecodeError> {
        let mut rest = image;
        let head = read_head(&mut rest)?;
        assert_eq!(
            head.replies,
            sample_replies(),
            "the reply table round-trips"
        );
        Ok((head.meta, rest))
    }

    /// A table with a success with failures, a refused batch and two clients.
    fn sample_replies() -> ReplyTable {
        use super::super::replies::Origin;
        use tally_engine::{BatchError, BatchOutcome, EventResult};
        let mut table = ReplyTable::default();
        let origin = |client, number| Origin {
            client,
            number,
            digest: (u128::from(number) * 31) ^ client,
        };
        let failed = BatchOutcome {
            failures: vec![(0, EventResult::ExceedsCredits), (3, EventResult::Exists)],
            timestamp_first: 10,
            timestamp_last: 14,
        };
        table.record(&origin(7, 1), 40, &Ok(failed));
        table.record(
            &origin(7, 2),
            41,
            &Err(BatchError::TooManyEvents { events: 9000 }),
        );
        table.record(&origin(u128::MAX, 5), 42, &Ok(BatchOutcome::default()));
        table
    }

    fn sample() -> SnapshotMeta {
        let log_id =
            |term, node, index| LogId::new(openraft::CommittedLeaderId::new(term, node), index);
        let membership = Membership::new(
            vec![BTreeSet::from([1, 2, 3])],
            BTreeMap::from([1, 2, 3, 4].map(|id| {
                (
                    id,
                    Node::new(
                        format!("127.0.0.1:{}", 7100 + id),
                        format!("127.0.0.1:{}", 7000 + id),
                    ),
                )
            })),
        );
        SnapshotMeta {
            last_log_id: Some(log_id(4, 2, 99)),
            last_membership: StoredMembership::new(Some(log_id(3, 1, 50)), membership),
            snapshot_id: "99-4-2".to_owned(),
        }
    }

    /// Proves an image gives back the meta and the engine bytes it was made of, including the
    /// empty state (no log id, default membership, no engine bytes).
    #[test]
    fn images_round_trip() {
        let engine = vec![9u8; 1000];
        let image = encode_image(&sample(), &engine).expect("encodes");
        let (meta, bytes) = decode_image(&image).expect("decodes");
        assert_eq!(meta, sample());
        assert_eq!(bytes, &engine[..]);

        let empty = SnapshotMeta::default();
        let image = encode_image(&empty, &[]).expect("encodes");
        assert_eq!(decode_image(&image).expect("decodes"), (empty, &[][..]));
    }

    /// Proves an image cut inside its header or meta is refused (cutting the engine part is
    /// the engine's own checksum's business).
    #[test]
    fn truncated_meta_is_refused() {
        let image = encode_image(&sample(), &[]).expect("encodes");
        for cut in 0..image.len() {
            assert!(
                decode_image(&image[..cut]).is_err(),
                "cut at {cut} accepted"
            );
        }
    }

    proptest! {
        /// Proves random bytes, with or without a valid header, never panic the decoder.
        #[test]
        fn random_images_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300),
                                     header in any::<bool>()) {
            let mut image = bytes;
            if header && image.len() >= HEADER_BYTES {
                image[0..4].copy_from_slice(&MAGIC.to_le_bytes());
                image[4..8].copy_from_slice(&VERSION.to_le_bytes());
                let meta = (image.len() - HEADER_BYTES) as u32 / 2;
                image[8..12].copy_from_slice(&meta.to_le_bytes());
                image[12..16].fill(0);
            }
            let _ = decode_image(&image);
        }
    }
}
