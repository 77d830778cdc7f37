//! Valid replica RPC messages of every kind, and the decode → re-encode step: the examples the
//! RPC tests (`rpc_tests.rs`) and the fuzz targets (their seeds and round-trip checks) share.
//! Not used by a running node.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::SnapshotSegmentId;
use tally_engine::Operation;

use super::rpc::*;
use crate::replication::types::{
    ClientBatch, Entry, EntryPayload, LogId, LogNote, Membership, Node, Request, SnapshotMeta,
    StoredMembership, TypeConfig, Vote,
};

pub fn log_id(term: u64, node: u64, index: u64) -> LogId {
    LogId::new(openraft::CommittedLeaderId::new(term, node), index)
}

pub fn vote(term: u64, node: u64, committed: bool) -> Vote {
    Vote {
        leader_id: openraft::LeaderId::new(term, node),
        committed,
    }
}

pub fn membership() -> Membership {
    Membership::new(
        vec![BTreeSet::from([1, 2, 3])],
        BTreeMap::from([1, 2, 3].map(|id| {
            (
                id,
                Node::new(format!("10.0.0.{id}:7100"), format!("10.0.0.{id}:7000")),
            )
        })),
    )
}

pub fn meta(index: u64) -> SnapshotMeta {
    SnapshotMeta {
        last_log_id: Some(log_id(2, 1, index)),
        last_membership: StoredMembership::new(Some(log_id(1, 1, 1)), membership()),
        snapshot_id: format!("{index}-2-1"),
    }
}

/// Entries of every kind, from a seed: blank, membership, and requests of a few batches.
pub fn entries(seed: u64, count: usize) -> Vec<Entry> {
    (0..count as u64)
        .map(|i| {
            let payload = match (seed + i) % 3 {
                0 => EntryPayload::Blank,
                1 => EntryPayload::Membership(membership()),
                _ => EntryPayload::Normal(Request {
                    timestamp: seed.wrapping_mul(1_000_003) + i,
                    batches: (0..(seed + i) % 4)
                        .map(|b| ClientBatch {
                            operation: Operation::CreateTransfers,
                            body: Bytes::from(vec![(b + i) as u8; (128 * b) as usize]),
                            origin: None,
                        })
                        .collect(),
                    // Every other request carries a checkpoint (bytes of any value).
                    log: (seed + i).is_multiple_of(2).then(|| {
                        let mut bytes = [0u8; tally_engine::checkpoint::SIGNED_CHECKPOINT_BYTES];
                        for (k, byte) in bytes.iter_mut().enumerate() {
                            *byte = (seed as u8).wrapping_add(k as u8);
                        }
                        LogNote::Checkpoint(tally_engine::checkpoint::SignedCheckpoint::decode(
                            &bytes,
                        ))
                    }),
                }),
            };
            Entry {
                log_id: log_id(3, 2, 10 + i),
                payload,
            }
        })
        .collect()
}

pub fn append_request(seed: u64, count: usize) -> AppendEntriesRequest<TypeConfig> {
    AppendEntriesRequest {
        vote: vote(3, 2, seed.is_multiple_of(2)),
        prev_log_id: (!seed.is_multiple_of(3)).then(|| log_id(3, 2, 9)),
        entries: entries(seed, count),
        leader_commit: (!seed.is_multiple_of(5)).then(|| log_id(2, 1, 7)),
    }
}

pub fn error_answers() -> Vec<ErrorAnswer> {
    vec![
        ErrorAnswer::Stopped,
        ErrorAnswer::Panicked,
        ErrorAnswer::Storage {
            message: "disk on fire: é".to_owned(),
        },
        ErrorAnswer::SnapshotMismatch {
            expect: SnapshotSegmentId {
                id: "5-2-1".to_owned(),
                offset: 0,
            },
            got: SnapshotSegmentId {
                id: "5-2-1".to_owned(),
                offset: 4096,
            },
        },
        ErrorAnswer::BadRequest {
            message: String::new(),
        },
    ]
}

/// Every encoding of the module, from a seed: (kind, payload).
pub fn samples(seed: u64) -> Vec<(u8, Vec<u8>)> {
    let mut out = vec![
        (
            KIND_APPEND_ENTRIES,
            encode_append_entries(&append_request(seed, (seed % 6) as usize)).expect("encodes"),
        ),
        (
            KIND_VOTE,
            encode_vote_request(&VoteRequest {
                vote: vote(seed, 3, false),
                last_log_id: Some(log_id(seed, 1, seed * 2)),
            }),
        ),
        (
            KIND_INSTALL_SNAPSHOT,
            encode_install_snapshot(
                &vote(4, 1, true),
                &meta(seed),
                seed,
                seed % 2 == 1,
                &[7; 33],
            )
            .expect("encodes"),
        ),
        (
            KIND_APPEND_ENTRIES_RESPONSE,
            encode_append_entries_response(&AppendEntriesResponse::HigherVote(vote(9, 9, true))),
        ),
        (
            KIND_VOTE_RESPONSE,
            encode_vote_response(&VoteResponse {
                vote: vote(5, 2, true),
                vote_granted: seed.is_multiple_of(2),
                last_log_id: None,
            }),
        ),
        (
            KIND_INSTALL_SNAPSHOT_RESPONSE,
            encode_install_snapshot_response(&InstallSnapshotResponse {
                vote: vote(seed, 1, true),
            }),
        ),
    ];
    for error in error_answers() {
        out.push((KIND_ERROR, encode_error_answer(&error)));
    }
    out
}

/// Decode `payload` as `kind` and re-encode what was accepted: `Ok(None)` if refused.
pub fn reencode(kind: u8, payload: &[u8]) -> Option<Vec<u8>> {
    let bytes = Bytes::copy_from_slice(payload);
    match kind {
        KIND_APPEND_ENTRIES => decode_append_entries(&bytes)
            .ok()
            .map(|request| encode_append_entries(&request).expect("a decoded request re-encodes")),
        KIND_VOTE => decode_vote_request(payload)
            .ok()
            .map(|r| encode_vote_request(&r)),
        KIND_INSTALL_SNAPSHOT => decode_install_snapshot(payload).ok().map(|r| {
            encode_install_snapshot(&r.vote, &r.meta, r.offset, r.done, &r.data)
                .expect("a decoded chunk re-encodes")
        }),
        KIND_APPEND_ENTRIES_RESPONSE => decode_append_entries_response(payload)
            .ok()
            .map(|r| encode_append_entries_response(&r)),
        KIND_VOTE_RESPONSE => decode_vote_response(payload)
            .ok()
            .map(|r| encode_vote_response(&r)),
        KIND_INSTALL_SNAPSHOT_RESPONSE => decode_install_snapshot_response(payload)
            .ok()
            .map(|r| encode_install_snapshot_response(&r)),
        KIND_ERROR => decode_error_answer(payload)
            .ok()
            .map(|r| encode_error_answer(&r)),
        other => panic!("no decoder for kind {other}"),
    }
}
