//! The verifiable log's messages (docs/protocol.md, "Checkpoints and proofs"): a signed
//! checkpoint by index, inclusion proofs of stored events against a checkpoint, and a
//! consistency proof between two tree sizes. What they prove is checked by `tally verify` and
//! the independent verifier, never trusted from the node (docs/verifiability.md).

use tally_engine::merkle::Hash;
use tally_engine::LEAF_BYTES;

use crate::protocol::{check_count, put_str, DecodeError, Reader};

/// "The latest checkpoint", in a checkpoint or prove request.
pub const LATEST: u64 = u64::MAX;

/// Ids in one prove request: a proof is up to ~1.2 KiB, so 256 of them stay well inside a
/// reply's limit.
pub const PROVE_IDS_MAX: usize = 256;

/// Hashes in one proof: a tree of 2⁶⁴ leaves needs 64 (consistency: 65).
pub const PROOF_HASHES_MAX: usize = 65;

/// Bytes of a signed checkpoint note in a reply (the text, a signature line; witnesses' lines
/// are not sent).
pub const NOTE_BYTES_MAX: usize = 1024;

const PROVE_ACCOUNTS: u32 = 1;

/// Which checkpoint a checkpoint request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhichCheckpoint {
    /// By index (`LATEST`: the newest).
    Index(u64),
    /// The oldest one covering every event of the Raft entries up to this commit index: a
    /// create reply's commit position is the handle to the checkpoint that covers it.
    Covering(u64),
}

/// A checkpoint request body (16 bytes): checkpoint index u64 (`LATEST`: the newest), then a
/// commit index u64: 0 for a checkpoint by index; else the index is `LATEST` and the request
/// asks for the oldest checkpoint covering that commit index.
pub fn encode_checkpoint_request(which: WhichCheckpoint) -> Vec<u8> {
    let (index, covering) = match which {
        WhichCheckpoint::Index(index) => (index, 0u64),
        WhichCheckpoint::Covering(commit_index) => (LATEST, commit_index.max(1)),
    };
    let mut out = index.to_le_bytes().to_vec();
    out.extend_from_slice(&covering.to_le_bytes());
    out
}

pub fn decode_checkpoint_request(body: &[u8]) -> Result<WhichCheckpoint, DecodeError> {
    let mut reader = Reader::new(body, "checkpoint request");
    let index = reader.u64()?;
    let covering = reader.u64()?;
    reader.end()?;
    match (index, covering) {
        (index, 0) => Ok(WhichCheckpoint::Index(index)),
        (LATEST, commit_index) => Ok(WhichCheckpoint::Covering(commit_index)),
        _ => Err(DecodeError::Conflict(
            "checkpoint request: a checkpoint index and a commit index to cover; give one",
        )),
    }
}

/// A checkpoint as the node keeps it: its index among the cluster's checkpoints and the
/// signed note (C2SP signed note of a tlog-checkpoint, docs/verifiability.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointReply {
    pub index: u64,
    pub size: u64,
    pub note: String,
}

/// Checkpoint reply body: index u64, tree size u64, note (u16 length + UTF-8, ≤ 1,024 bytes).
pub fn encode_checkpoint_reply(reply: &CheckpointReply) -> Vec<u8> {
    let mut out = Vec::with_capacity(18 + reply.note.len());
    out.extend_from_slice(&reply.index.to_le_bytes());
    out.extend_from_slice(&reply.size.to_le_bytes());
    put_str(&mut out, &reply.note, NOTE_BYTES_MAX);
    out
}

pub fn decode_checkpoint_reply(body: &[u8]) -> Result<CheckpointReply, DecodeError> {
    let mut reader = Reader::new(body, "checkpoint reply");
    let index = reader.u64()?;
    let size = reader.u64()?;
    let note = reader.string(NOTE_BYTES_MAX)?;
    reader.end()?;
    Ok(CheckpointReply { index, size, note })
}

/// What to prove: stored events (transfers and trades) or accounts, by id, against
/// checkpoint `checkpoint` (`LATEST`: the newest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProveRequest {
    pub checkpoint: u64,
    pub accounts: bool,
    pub ids: Vec<u128>,
}

/// Prove request body: checkpoint index u64, flags u32 (bit 0: the ids are accounts'),
/// reserved u32, then 1..=256 ids, u128 each.
pub fn encode_prove_request(request: &ProveRequest) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 16 * request.ids.len());
    out.extend_from_slice(&request.checkpoint.to_le_bytes());
    let flags = if request.accounts { PROVE_ACCOUNTS } else { 0 };
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    for id in &request.ids {
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}

pub fn decode_prove_request(body: &[u8]) -> Result<ProveRequest, DecodeError> {
    let mut reader = Reader::new(body, "prove request");
    let checkpoint = reader.u64()?;
    let flags = reader.u32()?;
    if flags & !PROVE_ACCOUNTS != 0 {
        return Err(DecodeError::UnknownFlags(
            u16::try_from(flags).unwrap_or(u16::MAX),
        ));
    }
    reader.zeros(4)?;
    if !reader.bytes.len().is_multiple_of(16) {
        return Err(DecodeError::TrailingBytes {
            what: "prove ids",
            bytes: reader.bytes.len() % 16,
        });
    }
    check_count("prove ids", reader.bytes.len() / 16, 1, PROVE_IDS_MAX)?;
    let mut ids = Vec::with_capacity(reader.bytes.len() / 16);
    while !reader.bytes.is_empty() {
        ids.push(reader.u128()?);
    }
    Ok(ProveRequest {
        checkpoint,
        accounts: flags & PROVE_ACCOUNTS != 0,
        ids,
    })
}

/// One id's leaf and its inclusion proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proven {
    pub id: u128,
    pub index: u64,
    pub leaf: [u8; LEAF_BYTES],
    pub proof: Vec<Hash>,
}

/// The proofs of a prove request, against the checkpoint of index `checkpoint` and tree size
/// `size`. Ids not stored, not visible to the reader, or not yet in that checkpoint's tree
/// are left out (as a lookup leaves out what it does not find).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProveReply {
    pub checkpoint: u64,
    pub size: u64,
    pub proofs: Vec<Proven>,
}

pub(crate) fn put_hashes(out: &mut Vec<u8>, hashes: &[Hash]) {
    out.extend_from_slice(&(hashes.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    for hash in hashes {
        out.extend_from_slice(hash);
    }
}

pub(crate) fn get_hashes(reader: &mut Reader<'_>) -> Result<Vec<Hash>, DecodeError> {
    let count = reader.u32()? as usize;
    reader.zeros(4)?;
    check_count("proof hashes", count, 0, PROOF_HASHES_MAX)?;
    (0..count).map(|_| reader.array::<32>()).collect()
}

/// Prove reply body: checkpoint index u64, tree size u64, count u32, reserved u32, then per
/// proof: id u128, leaf index u64, the leaf (152 bytes), hash count u32, reserved u32, hashes
/// (32 bytes each, nearest the leaf first).
pub fn encode_prove_reply(reply: &ProveReply) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&reply.checkpoint.to_le_bytes());
    out.extend_from_slice(&reply.size.to_le_bytes());
    out.extend_from_slice(&(reply.proofs.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    for proven in &reply.proofs {
        out.extend_from_slice(&proven.id.to_le_bytes());
        out.extend_from_slice(&proven.index.to_le_bytes());
        out.extend_from_slice(&proven.leaf);
        put_hashes(&mut out, &proven.proof);
    }
    out
}

pub fn decode_prove_reply(body: &[u8]) -> Result<ProveReply, DecodeError> {
    let mut reader = Reader::new(body, "prove reply");
    let checkpoint = reader.u64()?;
    let size = reader.u64()?;
    let count = reader.u32()? as usize;
    reader.zeros(4)?;
    check_count("proofs", count, 0, PROVE_IDS_MAX)?;
    let mut proofs = Vec::with_capacity(count);
    for _ in 0..count {
        let id = reader.u128()?;
        let index = reader.u64()?;
        let leaf = reader.array::<LEAF_BYTES>()?;
        let proof = get_hashes(&mut reader)?;
        proofs.push(Proven {
            id,
            index,
            leaf,
            proof,
        });
    }
    reader.end()?;
    Ok(ProveReply {
        checkpoint,
        size,
        proofs,
    })
}

/// Consistency request body (16 bytes): the older tree size u64, the newer u64 (at most the
/// log's size on the node asked).
pub fn encode_consistency_request(old: u64, new: u64) -> Vec<u8> {
    let mut out = old.to_le_bytes().to_vec();
    out.extend_from_slice(&new.to_le_bytes());
    out
}

pub fn decode_consistency_request(body: &[u8]) -> Result<(u64, u64), DecodeError> {
    let mut reader = Reader::new(body, "consistency request");
    let old = reader.u64()?;
    let new = reader.u64()?;
    reader.end()?;
    Ok((old, new))
}

/// Consistency reply body: hash count u32, reserved u32, hashes (RFC 6962's `PROOF(old, new)`).
pub fn encode_consistency_reply(proof: &[Hash]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 32 * proof.len());
    put_hashes(&mut out, proof);
    out
}

pub fn decode_consistency_reply(body: &[u8]) -> Result<Vec<Hash>, DecodeError> {
    let mut reader = Reader::new(body, "consistency reply");
    let proof = get_hashes(&mut reader)?;
    reader.end()?;
    Ok(proof)
}

/// Cosign request body: checkpoint index u64, then the witness's cosignature line (u16
/// length + UTF-8, ≤ 1,024 bytes: C2SP tlog-cosignature/v1, as `tally witness` prints it).
pub fn encode_cosign_request(checkpoint: u64, line: &str) -> Vec<u8> {
    let mut out = checkpoint.to_le_bytes().to_vec();
    put_str(&mut out, line, NOTE_BYTES_MAX);
    out
}

pub fn decode_cosign_request(body: &[u8]) -> Result<(u64, String), DecodeError> {
    let mut reader = Reader::new(body, "cosign request");
    let checkpoint = reader.u64()?;
    let line = reader.string(NOTE_BYTES_MAX)?;
    reader.end()?;
    Ok((checkpoint, line))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn messages_round_trip() {
        assert_eq!(
            decode_checkpoint_request(&encode_checkpoint_request(WhichCheckpoint::Index(LATEST))),
            Ok(WhichCheckpoint::Index(LATEST))
        );
        let covering = WhichCheckpoint::Covering(42);
        assert_eq!(
            decode_checkpoint_request(&encode_checkpoint_request(covering)),
            Ok(covering)
        );
        let reply = CheckpointReply {
            index: 3,
            size: 1_000,
            note: "tally/x\n1000\nAAAA\ntime 5\n\n\u{2014} tally/x AAAA\n".into(),
        };
        assert_eq!(
            decode_checkpoint_reply(&encode_checkpoint_reply(&reply)),
            Ok(reply)
        );
        let request = ProveRequest {
            checkpoint: 7,
            accounts: true,
            ids: vec![1, u128::MAX],
        };
        assert_eq!(
            decode_prove_request(&encode_prove_request(&request)),
            Ok(request)
        );
        let reply = ProveReply {
            checkpoint: 2,
            size: 99,
            proofs: vec![Proven {
                id: 5,
                index: 98,
                leaf: [3; LEAF_BYTES],
                proof: vec![[1; 32], [2; 32]],
            }],
        };
        assert_eq!(decode_prove_reply(&encode_prove_reply(&reply)), Ok(reply));
        assert_eq!(
            decode_consistency_request(&encode_consistency_request(4, 9)),
            Ok((4, 9))
        );
        assert_eq!(
            decode_cosign_request(&encode_cosign_request(4, "\u{2014} w AAAA\n")),
            Ok((4, "\u{2014} w AAAA\n".to_owned()))
        );
        let proof = vec![[9u8; 32]; 5];
        assert_eq!(
            decode_consistency_reply(&encode_consistency_reply(&proof)),
            Ok(proof)
        );
    }

    #[test]
    fn limits_and_reserved_bytes_are_enforced() {
        let ids = |n: usize| ProveRequest {
            checkpoint: 0,
            accounts: false,
            ids: (0..n as u128).collect(),
        };
        assert!(decode_prove_request(&encode_prove_request(&ids(0))).is_err());
        assert!(decode_prove_request(&encode_prove_request(&ids(PROVE_IDS_MAX + 1))).is_err());
        let mut flagged = encode_prove_request(&ids(1));
        flagged[8] = 2;
        assert!(decode_prove_request(&flagged).is_err());
        let mut both = encode_checkpoint_request(WhichCheckpoint::Index(1));
        both[9] = 1;
        assert!(
            decode_checkpoint_request(&both).is_err(),
            "an index and a commit index"
        );
        let mut long = encode_consistency_reply(&[]);
        long[0] = (PROOF_HASHES_MAX + 1) as u8;
        assert!(decode_consistency_reply(&long).is_err());
    }

    proptest! {
        #[test]
        fn random_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_checkpoint_request(&body);
            let _ = decode_checkpoint_reply(&body);
            let _ = decode_prove_request(&body);
            let _ = decode_prove_reply(&body);
            let _ = decode_consistency_request(&body);
            let _ = decode_consistency_reply(&body);
            let _ = decode_cosign_request(&body);
        }
    }
}
