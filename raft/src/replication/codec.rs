//! The byte encoding of openraft entries inside WAL records, and of the pieces (log ids,
//! memberships) that snapshot images reuse. Layouts are in docs/raft-entries.md.
//!
//! Hand-rolled little-endian, like every other format of Tally: the layout is the spec, a
//! decoder checks every count against the bytes left before it allocates, and random bytes
//! never panic it (tested). The WAL record around a payload already carries the index, the
//! term and a CRC32C, so the payload adds only what openraft's `LogId` has beyond those: the
//! leader's node id.
//!
//! Batch bodies are not copied when decoding: they are slices of the record's bytes, which the
//! WAL reads zero-copy from its read buffer.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use tally_engine::Operation;

use super::error::{DecodeError, EncodeError};
use super::limits::{
    ENTRY_BATCHES_MAX, ENTRY_READS_MAX, LOG_INDEX_MAX, MEMBERSHIP_CONFIGS_MAX,
    MEMBERSHIP_NODES_MAX, NODE_ADDRESS_BYTES_MAX, READ_ACCOUNTS_MAX, TERM_MAX,
};
use super::replies::Origin;
use super::types::{
    ClientBatch, Entry, EntryPayload, LogId, LogNote, Membership, Node, NodeId, Request, Vote,
};
use crate::wal;
use tally_engine::checkpoint::{
    SignedCheckpoint, StoredCosignature, SIGNED_CHECKPOINT_BYTES, STORED_COSIGNATURE_BYTES,
};

/// Version of the entry payload layout written (byte 0 of every payload). Version 4 added the
/// access trail's notes (`REQUEST_HAS_READS`, `REQUEST_HAS_ACCESS_CHECKPOINT`); version 3 a
/// request's signed checkpoint (`REQUEST_HAS_CHECKPOINT`); version 2 a batch's origin (its
/// client, request number and digest: `replies.rs`); entries of versions 1 (no origins), 2
/// (no checkpoints) and 3 (no access trail) are still read.
const ENTRY_VERSION: u8 = 4;
const ENTRY_VERSION_NO_ACCESS: u8 = 3;
const ENTRY_VERSION_NO_CHECKPOINT: u8 = 2;
const ENTRY_VERSION_NO_ORIGIN: u8 = 1;
/// Request header flag: a signed checkpoint of the verifiable log follows the batches.
const REQUEST_HAS_CHECKPOINT: u8 = 1;
/// Request header flag: a witness's cosignature of a checkpoint follows the batches.
const REQUEST_HAS_COSIGNATURE: u8 = 2;
/// Request header note: reads a gateway served follow the batches (the access trail).
const REQUEST_HAS_READS: u8 = 3;
/// Request header note: a signed checkpoint of the access trail follows the batches.
const REQUEST_HAS_ACCESS_CHECKPOINT: u8 = 4;
/// Bytes of a read in a reads note before its accounts: operation, reserved, accounts,
/// credential id, credential name.
const READ_HEADER_BYTES: usize = 1 + 3 + 4 + 16 + tally_engine::ACCESS_NAME_BYTES;
/// Batch header flag: the batch's origin follows the header.
const BATCH_HAS_ORIGIN: u8 = 1;
/// Client key, request number, digest.
pub(crate) const ORIGIN_BYTES: usize = 16 + 8 + 16;
const KIND_BLANK: u8 = 1;
const KIND_NORMAL: u8 = 2;
const KIND_MEMBERSHIP: u8 = 3;
/// Version, kind, reserved, leader node id.
pub(crate) const ENTRY_HEADER_BYTES: usize = 16;
/// Timestamp, batch count, flags, reserved.
pub(crate) const REQUEST_HEADER_BYTES: usize = 16;
/// Operation, flags, reserved, body length.
pub(crate) const BATCH_HEADER_BYTES: usize = 8;
/// Bytes an entry adds to its batches' bodies: entry and request headers
/// (docs/raft-entries.md).
pub const ENTRY_OVERHEAD_BYTES: usize = ENTRY_HEADER_BYTES + REQUEST_HEADER_BYTES;
/// Bytes each batch adds to an entry: its operation, length and origin.
pub const BATCH_OVERHEAD_BYTES: usize = BATCH_HEADER_BYTES + ORIGIN_BYTES;

/// The engine operation with this wire byte (the engine's own table).
fn operation_from_byte(byte: u8) -> Option<Operation> {
    Operation::try_from(byte).ok()
}

fn check_limit(what: &'static str, count: usize, limit: usize) -> Result<(), EncodeError> {
    if count > limit {
        return Err(EncodeError::OverLimit { what, count, limit });
    }
    Ok(())
}

/// Encode `entry` as a WAL entry: index and term go to the record header, the rest to the
/// payload.
pub fn encode_entry(entry: &Entry) -> Result<wal::Entry, EncodeError> {
    let kind = match &entry.payload {
        EntryPayload::Blank => KIND_BLANK,
        EntryPayload::Normal(_) => KIND_NORMAL,
        EntryPayload::Membership(_) => KIND_MEMBERSHIP,
    };
    let capacity = ENTRY_HEADER_BYTES
        + match &entry.payload {
            EntryPayload::Normal(request) => {
                REQUEST_HEADER_BYTES
                    + request
                        .batches
                        .iter()
                        .map(|batch| {
                            BATCH_HEADER_BYTES
                                + batch.origin.map_or(0, |_| ORIGIN_BYTES)
                                + batch.body.len()
                        })
                        .sum::<usize>()
                    + request.log.as_ref().map_or(0, |note| match note {
                        LogNote::Checkpoint(_) | LogNote::AccessCheckpoint(_) => {
                            SIGNED_CHECKPOINT_BYTES
                        }
                        LogNote::Cosignature(_) => STORED_COSIGNATURE_BYTES,
                        LogNote::Reads(reads) => {
                            8 + reads
                                .iter()
                                .map(|read| READ_HEADER_BYTES + 16 * read.accounts.len())
                                .sum::<usize>()
                        }
                    })
            }
            _ => 0,
        };
    let mut out = Vec::with_capacity(capacity);
    out.push(ENTRY_VERSION);
    out.push(kind);
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(&entry.log_id.leader_id.node_id.to_le_bytes());
    match &entry.payload {
        EntryPayload::Blank => {}
        EntryPayload::Normal(request) => encode_request(request, &mut out)?,
        EntryPayload::Membership(membership) => encode_membership(membership, &mut out)?,
    }
    debug_assert!(out.len() == capacity || kind == KIND_MEMBERSHIP);
    Ok(wal::Entry {
        index: entry.log_id.index,
        term: entry.log_id.leader_id.term,
        payload: Bytes::from(out),
    })
}

fn encode_request(request: &Request, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    check_limit(
        "batches in one entry",
        request.batches.len(),
        ENTRY_BATCHES_MAX,
    )?;
    out.extend_from_slice(&request.timestamp.to_le_bytes());
    out.extend_from_slice(&(request.batches.len() as u32).to_le_bytes());
    out.push(match request.log {
        None => 0,
        Some(LogNote::Checkpoint(_)) => REQUEST_HAS_CHECKPOINT,
        Some(LogNote::Cosignature(_)) => REQUEST_HAS_COSIGNATURE,
        Some(LogNote::Reads(_)) => REQUEST_HAS_READS,
        Some(LogNote::AccessCheckpoint(_)) => REQUEST_HAS_ACCESS_CHECKPOINT,
    });
    out.extend_from_slice(&[0; 3]);
    for batch in &request.batches {
        let bytes = u32::try_from(batch.body.len()).map_err(|_| EncodeError::OverLimit {
            what: "bytes of one batch body",
            count: batch.body.len(),
            limit: u32::MAX as usize,
        })?;
        out.push(batch.operation as u8);
        out.push(batch.origin.map_or(0, |_| BATCH_HAS_ORIGIN));
        out.extend_from_slice(&[0; 2]);
        out.extend_from_slice(&bytes.to_le_bytes());
        if let Some(origin) = &batch.origin {
            out.extend_from_slice(&origin.client.to_le_bytes());
            out.extend_from_slice(&origin.number.to_le_bytes());
            out.extend_from_slice(&origin.digest.to_le_bytes());
        }
        out.extend_from_slice(&batch.body);
    }
    match &request.log {
        None => {}
        Some(LogNote::Checkpoint(checkpoint)) | Some(LogNote::AccessCheckpoint(checkpoint)) => {
            out.extend_from_slice(&checkpoint.encode())
        }
        Some(LogNote::Cosignature(cosignature)) => {
            out.extend_from_slice(&cosignature.encode());
        }
        Some(LogNote::Reads(reads)) => encode_reads(reads, out)?,
    }
    Ok(())
}

/// A reads note: count u32, reserved u32, then per read: operation u8, reserved [3],
/// accounts u32, credential id [16], credential name [32], account ids u128 each.
fn encode_reads(reads: &[tally_engine::AccessEntry], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    check_limit("reads in one entry", reads.len(), ENTRY_READS_MAX)?;
    out.extend_from_slice(&(reads.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    for read in reads {
        check_limit(
            "accounts of one read",
            read.accounts.len(),
            READ_ACCOUNTS_MAX,
        )?;
        out.push(read.operation);
        out.extend_from_slice(&[0; 3]);
        out.extend_from_slice(&(read.accounts.len() as u32).to_le_bytes());
        out.extend_from_slice(&read.credential);
        out.extend_from_slice(&read.name);
        for account in &read.accounts {
            out.extend_from_slice(&account.to_le_bytes());
        }
    }
    Ok(())
}

fn decode_reads(reader: &mut Reader<'_>) -> Result<Vec<tally_engine::AccessEntry>, DecodeError> {
    let count = reader.count("reads in one entry", ENTRY_READS_MAX, READ_HEADER_BYTES)?;
    reader.reserved(4)?;
    let mut reads = Vec::with_capacity(count);
    for _ in 0..count {
        let operation = reader.u8()?;
        reader.reserved(3)?;
        let accounts = reader.count("accounts of one read", READ_ACCOUNTS_MAX, 0)?;
        let credential = reader.array::<16>()?;
        let name = reader.array::<{ tally_engine::ACCESS_NAME_BYTES }>()?;
        let bytes = reader.take(accounts * 16)?;
        reads.push(tally_engine::AccessEntry {
            operation,
            credential,
            name,
            accounts: bytes
                .chunks_exact(16)
                .map(|id| u128::from_le_bytes(id.try_into().expect("16 bytes")))
                .collect(),
        });
    }
    Ok(reads)
}

/// Append the membership layout (docs/raft-entries.md) to `out`.
pub(crate) fn encode_membership(
    membership: &Membership,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let configs = membership.get_joint_config();
    let nodes: Vec<(&NodeId, &Node)> = membership.nodes().collect();
    check_limit(
        "configs in a membership",
        configs.len(),
        MEMBERSHIP_CONFIGS_MAX,
    )?;
    check_limit("nodes in a membership", nodes.len(), MEMBERSHIP_NODES_MAX)?;
    out.extend_from_slice(&(configs.len() as u32).to_le_bytes());
    out.extend_from_slice(&(nodes.len() as u32).to_le_bytes());
    for config in configs {
        check_limit("voters in a config", config.len(), MEMBERSHIP_NODES_MAX)?;
        out.extend_from_slice(&(config.len() as u32).to_le_bytes());
        for voter in config {
            out.extend_from_slice(&voter.to_le_bytes());
        }
    }
    for (id, node) in nodes {
        out.extend_from_slice(&id.to_le_bytes());
        for addr in [&node.peer_addr, &node.client_addr] {
            check_limit(
                "bytes of a node address",
                addr.len(),
                NODE_ADDRESS_BYTES_MAX,
            )?;
            out.extend_from_slice(&(addr.len() as u32).to_le_bytes());
            out.extend_from_slice(addr.as_bytes());
        }
    }
    Ok(())
}

/// Append an optional log id: a presence byte, 7 reserved bytes, then term, node id, index
/// (all zero when absent).
pub(crate) fn encode_optional_log_id(log_id: Option<&LogId>, out: &mut Vec<u8>) {
    out.push(u8::from(log_id.is_some()));
    out.extend_from_slice(&[0; 7]);
    let (term, node, index) = log_id.map_or((0, 0, 0), |id| {
        (id.leader_id.term, id.leader_id.node_id, id.index)
    });
    out.extend_from_slice(&term.to_le_bytes());
    out.extend_from_slice(&node.to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
}

/// Append a vote: term, node id, then a committed flag byte and 7 reserved bytes.
pub(crate) fn encode_vote(vote: &Vote, out: &mut Vec<u8>) {
    out.extend_from_slice(&vote.leader_id.term.to_le_bytes());
    out.extend_from_slice(&vote.leader_id.node_id.to_le_bytes());
    out.push(u8::from(vote.committed));
    out.extend_from_slice(&[0; 7]);
}

/// Read a vote (the pair of [`encode_vote`]).
/// `value` if it is at most `limit`: a term or index at the numeric edge is refused when it is
/// decoded, before openraft can add one to it (`TERM_MAX`, `LOG_INDEX_MAX`).
fn at_most(what: &'static str, value: u64, limit: u64) -> Result<u64, DecodeError> {
    if value > limit {
        return Err(DecodeError::OverLimit {
            what,
            count: value,
            limit: limit as usize,
        });
    }
    Ok(value)
}

pub(crate) fn decode_vote(reader: &mut Reader<'_>) -> Result<Vote, DecodeError> {
    let term = at_most("term of a vote", reader.u64()?, TERM_MAX)?;
    let node_id = reader.u64()?;
    let committed = reader.flag()?;
    reader.reserved(7)?;
    Ok(Vote {
        leader_id: openraft::LeaderId::new(term, node_id),
        committed,
    })
}

/// Rebuild the openraft entry from a WAL entry (the pair of [`encode_entry`]).
pub fn decode_entry(record: &wal::Entry) -> Result<Entry, DecodeError> {
    let payload = &record.payload;
    let mut reader = Reader::new(payload);
    let version = reader.u8()?;
    if ![
        ENTRY_VERSION,
        ENTRY_VERSION_NO_ACCESS,
        ENTRY_VERSION_NO_CHECKPOINT,
        ENTRY_VERSION_NO_ORIGIN,
    ]
    .contains(&version)
    {
        return Err(DecodeError::UnknownVersion(u32::from(version)));
    }
    let kind = reader.u8()?;
    reader.reserved(6)?;
    let node_id = reader.u64()?;
    let log_id = LogId::new(
        openraft::CommittedLeaderId::new(
            at_most("term of an entry", record.term, TERM_MAX)?,
            node_id,
        ),
        at_most("index of an entry", record.index, LOG_INDEX_MAX)?,
    );
    let payload = match kind {
        KIND_BLANK => EntryPayload::Blank,
        KIND_NORMAL => EntryPayload::Normal(decode_request(&mut reader, payload, version)?),
        KIND_MEMBERSHIP => EntryPayload::Membership(decode_membership(&mut reader)?),
        other => return Err(DecodeError::UnknownKind(other)),
    };
    reader.finish()?;
    Ok(Entry { log_id, payload })
}

fn decode_request(
    reader: &mut Reader<'_>,
    payload: &Bytes,
    version: u8,
) -> Result<Request, DecodeError> {
    let timestamp = reader.u64()?;
    let count = reader.count(
        "batches in one entry",
        ENTRY_BATCHES_MAX,
        BATCH_HEADER_BYTES,
    )?;
    let flags_at = reader.at;
    let note = match reader.u8()? {
        0 => 0,
        flag @ (REQUEST_HAS_CHECKPOINT | REQUEST_HAS_COSIGNATURE)
            if version >= ENTRY_VERSION_NO_ACCESS =>
        {
            flag
        }
        flag @ (REQUEST_HAS_READS | REQUEST_HAS_ACCESS_CHECKPOINT) if version >= ENTRY_VERSION => {
            flag
        }
        value => {
            return Err(DecodeError::BadFlag {
                at: flags_at,
                value,
            })
        }
    };
    reader.reserved(3)?;
    let mut batches = Vec::with_capacity(count);
    for _ in 0..count {
        let byte = reader.u8()?;
        let operation = operation_from_byte(byte).ok_or(DecodeError::UnknownOperation(byte))?;
        let flags_at = reader.at;
        let flags = reader.u8()?;
        let has_origin = match flags {
            0 => false,
            BATCH_HAS_ORIGIN if version != ENTRY_VERSION_NO_ORIGIN => true,
            value => {
                return Err(DecodeError::BadFlag {
                    at: flags_at,
                    value,
                })
            }
        };
        reader.reserved(2)?;
        let bytes = reader.u32()? as usize;
        let origin = if has_origin {
            let client = u128::from_le_bytes(reader.take(16)?.try_into().expect("16 bytes"));
            let number = reader.u64()?;
            let digest = u128::from_le_bytes(reader.take(16)?.try_into().expect("16 bytes"));
            Some(Origin {
                client,
                number,
                digest,
            })
        } else {
            None
        };
        let start = reader.at;
        reader.take(bytes)?;
        batches.push(ClientBatch {
            operation,
            body: payload.slice(start..start + bytes),
            origin,
        });
    }
    let log = match note {
        REQUEST_HAS_CHECKPOINT => Some(LogNote::Checkpoint(SignedCheckpoint::decode(
            &reader.array::<SIGNED_CHECKPOINT_BYTES>()?,
        ))),
        REQUEST_HAS_COSIGNATURE => Some(LogNote::Cosignature(StoredCosignature::decode(
            &reader.array::<STORED_COSIGNATURE_BYTES>()?,
        ))),
        REQUEST_HAS_READS => Some(LogNote::Reads(decode_reads(reader)?)),
        REQUEST_HAS_ACCESS_CHECKPOINT => Some(LogNote::AccessCheckpoint(SignedCheckpoint::decode(
            &reader.array::<SIGNED_CHECKPOINT_BYTES>()?,
        ))),
        _ => None,
    };
    Ok(Request {
        timestamp,
        batches,
        log,
    })
}

/// Read the membership layout (the pair of [`encode_membership`]).
pub(crate) fn decode_membership(reader: &mut Reader<'_>) -> Result<Membership, DecodeError> {
    let configs_count = reader.count("configs in a membership", MEMBERSHIP_CONFIGS_MAX, 4)?;
    let nodes_count = reader.count("nodes in a membership", MEMBERSHIP_NODES_MAX, 12)?;
    let mut configs = Vec::with_capacity(configs_count);
    for _ in 0..configs_count {
        let voters = reader.count("voters in a config", MEMBERSHIP_NODES_MAX, 8)?;
        let mut config = BTreeSet::new();
        for _ in 0..voters {
            let voter = reader.u64()?;
            // Ascending, as encoded from a set: one byte string per membership.
            if config.last().is_some_and(|last| *last >= voter) {
                return Err(DecodeError::NodesOutOfOrder(voter));
            }
            config.insert(voter);
        }
        configs.push(config);
    }
    let mut nodes = BTreeMap::new();
    for _ in 0..nodes_count {
        let id = reader.u64()?;
        let mut addrs = [String::new(), String::new()];
        for addr in &mut addrs {
            let length = reader.count("bytes of a node address", NODE_ADDRESS_BYTES_MAX, 1)?;
            *addr = std::str::from_utf8(reader.take(length)?)
                .map_err(|_| DecodeError::NotUtf8 {
                    what: "node address",
                })?
                .to_owned();
        }
        if nodes.last_key_value().is_some_and(|(last, _)| *last >= id) {
            return Err(DecodeError::NodesOutOfOrder(id));
        }
        let [peer_addr, client_addr] = addrs;
        nodes.insert(
            id,
            Node {
                peer_addr,
                client_addr,
            },
        );
    }
    // `Membership::new` would fill a missing voter with a default node; refusing instead keeps
    // decoding the exact inverse of encoding (a membership always lists its voters' nodes).
    if let Some(voter) = configs
        .iter()
        .flatten()
        .find(|voter| !nodes.contains_key(*voter))
    {
        return Err(DecodeError::VoterWithoutNode(*voter));
    }
    Ok(Membership::new(configs, nodes))
}

/// Read an optional log id (the pair of [`encode_optional_log_id`]).
pub(crate) fn decode_optional_log_id(
    reader: &mut Reader<'_>,
) -> Result<Option<LogId>, DecodeError> {
    let at = reader.at;
    let present = reader.u8()?;
    reader.reserved(7)?;
    let term = at_most("term of a log id", reader.u64()?, TERM_MAX)?;
    let node = reader.u64()?;
    let index = at_most("index of a log id", reader.u64()?, LOG_INDEX_MAX)?;
    match present {
        0 if term == 0 && node == 0 && index == 0 => Ok(None),
        0 => Err(DecodeError::ReservedNotZero { at: at + 8 }),
        1 => Ok(Some(LogId::new(
            openraft::CommittedLeaderId::new(term, node),
            index,
        ))),
        value => Err(DecodeError::BadFlag { at, value }),
    }
}

/// A cursor over bytes being decoded; every read is bounds-checked.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pub(crate) at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, at: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    pub(crate) fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        if count > self.remaining() {
            return Err(DecodeError::Truncated {
                at: self.at,
                needed: count - self.remaining(),
            });
        }
        let taken = &self.bytes[self.at..self.at + count];
        self.at += count;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A byte that must be 0 (false) or 1 (true).
    pub(crate) fn flag(&mut self) -> Result<bool, DecodeError> {
        let at = self.at;
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(DecodeError::BadFlag { at, value }),
        }
    }

    /// `count` bytes that must be zero.
    pub(crate) fn reserved(&mut self, count: usize) -> Result<(), DecodeError> {
        let at = self.at;
        if self.take(count)?.iter().any(|byte| *byte != 0) {
            return Err(DecodeError::ReservedNotZero { at });
        }
        Ok(())
    }

    /// A u32 count of items, each at least `item_bytes_min` bytes long: checked against the
    /// limit and against the bytes left, so a damaged count never makes us allocate.
    pub(crate) fn count(
        &mut self,
        what: &'static str,
        limit: usize,
        item_bytes_min: usize,
    ) -> Result<usize, DecodeError> {
        let count = self.u32()? as usize;
        if count > limit {
            return Err(DecodeError::OverLimit {
                what,
                count: count as u64,
                limit,
            });
        }
        let needed = count * item_bytes_min;
        if needed > self.remaining() {
            return Err(DecodeError::Truncated {
                at: self.at,
                needed: needed - self.remaining(),
            });
        }
        Ok(count)
    }

    /// The decoded value must end exactly at the end of the bytes.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes { at: self.at, count }),
        }
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
