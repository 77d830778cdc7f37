//! The access trail's messages (docs/protocol.md, "The access trail"): the reads of one
//! account, each with its leaf and inclusion proof against a signed checkpoint of the trail.
//! What they prove is checked by the caller (`tally client reads --key`), never taken on the
//! node's word.

use tally_engine::merkle::Hash;

use crate::proofs::{get_hashes, put_hashes, LATEST, NOTE_BYTES_MAX};
use crate::protocol::{check_count, put_str, DecodeError, Reader};

/// Reads in one reply.
pub const ACCESS_TRAIL_READS_MAX: u32 = 1024;
/// Bytes of one read's leaf: its header and 24 per account, for a read of at most four
/// accounts per id of a full lookup.
pub const ACCESS_LEAF_BYTES_MAX: usize =
    tally_engine::ACCESS_LEAF_HEADER_BYTES + 4 * 8192 * tally_engine::ACCESS_LEAF_ACCOUNT_BYTES;

/// Which reads of `account`: against access checkpoint `checkpoint` (`LATEST`: the newest),
/// the newest ones before leaf index `before` (`LATEST`: from the newest), at most `limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessTrailRequest {
    pub account: u128,
    pub checkpoint: u64,
    pub before: u64,
    pub limit: u32,
}

impl AccessTrailRequest {
    /// The newest reads of `account` against the newest checkpoint.
    pub fn newest(account: u128) -> AccessTrailRequest {
        AccessTrailRequest {
            account,
            checkpoint: LATEST,
            before: LATEST,
            limit: ACCESS_TRAIL_READS_MAX,
        }
    }
}

/// Access trail request body (40 bytes): account u128, checkpoint index u64, before u64,
/// limit u32 (1..=1,024), reserved u32.
pub fn encode_access_trail_request(request: &AccessTrailRequest) -> Vec<u8> {
    let mut out = request.account.to_le_bytes().to_vec();
    out.extend_from_slice(&request.checkpoint.to_le_bytes());
    out.extend_from_slice(&request.before.to_le_bytes());
    out.extend_from_slice(&request.limit.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out
}

pub fn decode_access_trail_request(body: &[u8]) -> Result<AccessTrailRequest, DecodeError> {
    let mut reader = Reader::new(body, "access trail request");
    let request = AccessTrailRequest {
        account: reader.u128()?,
        checkpoint: reader.u64()?,
        before: reader.u64()?,
        limit: reader.u32()?,
    };
    reader.zeros(4)?;
    reader.end()?;
    check_count(
        "reads asked for",
        request.limit as usize,
        1,
        ACCESS_TRAIL_READS_MAX as usize,
    )?;
    Ok(request)
}

/// One read of the account: its leaf in the access trail and the leaf's inclusion proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRead {
    pub index: u64,
    pub leaf: Vec<u8>,
    pub proof: Vec<Hash>,
}

/// Reads of an account, newest first, against access checkpoint `checkpoint` (of `size`
/// reads, signed: `note`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessTrailReply {
    pub checkpoint: u64,
    pub size: u64,
    pub note: String,
    pub reads: Vec<AccessRead>,
}

/// Access trail reply body: checkpoint index u64, size u64, note (u16 length + UTF-8,
/// ≤ 1,024 bytes), count u32, reserved u32, then per read: leaf index u64, leaf length u32,
/// reserved u32, the leaf, hash count u32, reserved u32, hashes (32 bytes each).
pub fn encode_access_trail_reply(reply: &AccessTrailReply) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&reply.checkpoint.to_le_bytes());
    out.extend_from_slice(&reply.size.to_le_bytes());
    put_str(&mut out, &reply.note, NOTE_BYTES_MAX);
    out.extend_from_slice(&(reply.reads.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    for read in &reply.reads {
        out.extend_from_slice(&read.index.to_le_bytes());
        out.extend_from_slice(&(read.leaf.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&read.leaf);
        put_hashes(&mut out, &read.proof);
    }
    out
}

pub fn decode_access_trail_reply(body: &[u8]) -> Result<AccessTrailReply, DecodeError> {
    let mut reader = Reader::new(body, "access trail reply");
    let checkpoint = reader.u64()?;
    let size = reader.u64()?;
    let note = reader.string(NOTE_BYTES_MAX)?;
    let count = reader.u32()? as usize;
    reader.zeros(4)?;
    check_count("reads", count, 0, ACCESS_TRAIL_READS_MAX as usize)?;
    let mut reads = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let index = reader.u64()?;
        let bytes = reader.u32()? as usize;
        reader.zeros(4)?;
        check_count("bytes of an access leaf", bytes, 0, ACCESS_LEAF_BYTES_MAX)?;
        let leaf = reader.take(bytes)?.to_vec();
        let proof = get_hashes(&mut reader)?;
        reads.push(AccessRead { index, leaf, proof });
    }
    reader.end()?;
    Ok(AccessTrailReply {
        checkpoint,
        size,
        note,
        reads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn messages_round_trip_and_limits_hold() {
        let request = AccessTrailRequest {
            account: u128::MAX - 1,
            checkpoint: 3,
            before: 99,
            limit: 7,
        };
        assert_eq!(
            decode_access_trail_request(&encode_access_trail_request(&request)),
            Ok(request)
        );
        for limit in [0, ACCESS_TRAIL_READS_MAX + 1] {
            let body = encode_access_trail_request(&AccessTrailRequest { limit, ..request });
            assert!(decode_access_trail_request(&body).is_err(), "limit {limit}");
        }
        let reply = AccessTrailReply {
            checkpoint: 2,
            size: 40,
            note: "tally/x/reads\n40\nAAAA\n\n\u{2014} tally/x/reads AAAA\n".into(),
            reads: vec![
                AccessRead {
                    index: 39,
                    leaf: vec![1; 100],
                    proof: vec![[2; 32]; 6],
                },
                AccessRead {
                    index: 3,
                    leaf: Vec::new(),
                    proof: Vec::new(),
                },
            ],
        };
        let body = encode_access_trail_reply(&reply);
        assert_eq!(decode_access_trail_reply(&body), Ok(reply));
        for cut in 0..body.len() {
            assert!(
                decode_access_trail_reply(&body[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    proptest! {
        #[test]
        fn random_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_access_trail_request(&body);
            let _ = decode_access_trail_reply(&body);
        }
    }
}
