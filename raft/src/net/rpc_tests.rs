//! Tests of the replica RPC encodings (`rpc.rs`).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use tally_engine::Operation;

use super::*;
use crate::replication::types::{
    ClientBatch, Entry, EntryPayload, LogId, Membership, Node, Request, StoredMembership,
};

fn log_id(term: u64, node: u64, index: u64) -> LogId {
    LogId::new(openraft::CommittedLeaderId::new(term, node), index)
}

fn vote(term: u64, node: u64, committed: bool) -> Vote {
    Vote {
        leader_id: openraft::LeaderId::new(term, node),
        committed,
    }
}

fn membership() -> Membership {
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

fn meta(index: u64) -> SnapshotMeta {
    SnapshotMeta {
        last_log_id: Some(log_id(2, 1, index)),
        last_membership: StoredMembership::new(Some(log_id(1, 1, 1)), membership()),
        snapshot_id: format!("{index}-2-1"),
    }
}

/// Entries of every kind, from a seed: blank, membership, and requests of a few batches.
fn entries(seed: u64, count: usize) -> Vec<Entry> {
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
                }),
            };
            Entry {
                log_id: log_id(3, 2, 10 + i),
                payload,
            }
        })
        .collect()
}

fn append_request(seed: u64, count: usize) -> AppendEntriesRequest<TypeConfig> {
    AppendEntriesRequest {
        vote: vote(3, 2, seed.is_multiple_of(2)),
        prev_log_id: (!seed.is_multiple_of(3)).then(|| log_id(3, 2, 9)),
        entries: entries(seed, count),
        leader_commit: (!seed.is_multiple_of(5)).then(|| log_id(2, 1, 7)),
    }
}

fn error_answers() -> Vec<ErrorAnswer> {
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
fn samples(seed: u64) -> Vec<(u8, Vec<u8>)> {
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
fn reencode(kind: u8, payload: &[u8]) -> Option<Vec<u8>> {
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

/// Proves each message decodes to exactly what was encoded (compared field by field, and
/// entries by their debug form, as openraft's entries are not comparable as a whole).
#[test]
fn messages_round_trip() {
    for seed in 0..12 {
        let request = append_request(seed, (seed % 6) as usize);
        let bytes = Bytes::from(encode_append_entries(&request).expect("encodes"));
        let decoded = decode_append_entries(&bytes).expect("decodes");
        assert_eq!(format!("{decoded:?}"), format!("{request:?}"));

        let chunk = decode_install_snapshot(
            &encode_install_snapshot(&vote(4, 1, true), &meta(seed), 4096, true, b"bytes")
                .expect("encodes"),
        )
        .expect("decodes");
        assert_eq!(
            chunk,
            InstallSnapshotRequest {
                vote: vote(4, 1, true),
                meta: meta(seed),
                offset: 4096,
                data: b"bytes".to_vec(),
                done: true,
            }
        );
    }
    for response in [
        AppendEntriesResponse::Success,
        AppendEntriesResponse::Conflict,
        AppendEntriesResponse::PartialSuccess(None),
        AppendEntriesResponse::PartialSuccess(Some(log_id(1, 2, 3))),
        AppendEntriesResponse::HigherVote(vote(7, 3, false)),
    ] {
        let bytes = encode_append_entries_response(&response);
        assert_eq!(decode_append_entries_response(&bytes), Ok(response));
    }
    let vote_request = VoteRequest {
        vote: vote(2, 3, false),
        last_log_id: Some(log_id(1, 1, 5)),
    };
    assert_eq!(
        decode_vote_request(&encode_vote_request(&vote_request)),
        Ok(vote_request)
    );
    let vote_response = VoteResponse {
        vote: vote(2, 3, true),
        vote_granted: true,
        last_log_id: None,
    };
    assert_eq!(
        decode_vote_response(&encode_vote_response(&vote_response)),
        Ok(vote_response)
    );
    for error in error_answers() {
        assert_eq!(decode_error_answer(&encode_error_answer(&error)), Ok(error));
    }
}

/// Proves a message cut short anywhere, or with a byte appended, is refused.
#[test]
fn truncated_or_extended_messages_are_refused() {
    for (kind, payload) in samples(4) {
        for cut in 0..payload.len() {
            // A chunk's data runs to the end of the payload: cutting it is a shorter chunk.
            if kind == KIND_INSTALL_SNAPSHOT && cut >= payload.len() - 33 {
                continue;
            }
            assert_eq!(
                reencode(kind, &payload[..cut]),
                None,
                "kind {kind} cut at {cut}"
            );
        }
        if kind != KIND_INSTALL_SNAPSHOT {
            let mut long = payload.clone();
            long.push(0);
            assert_eq!(reencode(kind, &long), None, "kind {kind} extended");
        }
    }
}

/// Proves over-limit counts and sizes are refused on both sides.
#[test]
fn limits_are_enforced() {
    let far = encode_install_snapshot(&vote(1, 1, true), &meta(1), u64::MAX - 1, true, b"ab")
        .expect("encodes");
    assert!(matches!(
        decode_install_snapshot(&far),
        Err(DecodeError::OverLimit { .. })
    ));
    let big = vec![0u8; SNAPSHOT_CHUNK_BYTES_MAX + 1];
    assert!(encode_install_snapshot(&vote(1, 1, true), &meta(1), 0, true, &big).is_err());
    let mut request = append_request(1, 0);
    request.entries = vec![
        Entry {
            log_id: log_id(1, 1, 1),
            payload: EntryPayload::Blank,
        };
        APPEND_ENTRIES_MAX + 1
    ];
    assert!(encode_append_entries(&request).is_err());
    // A count of u32::MAX entries with nothing behind it is refused before allocating.
    let mut payload = encode_append_entries(&append_request(1, 0)).expect("encodes");
    let at = payload.len() - 8;
    payload[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        decode_append_entries(&Bytes::from(payload)),
        Err(DecodeError::OverLimit { .. })
    ));
}

/// Proves a term or index at the numeric edge is refused when decoded, in every place a
/// request carries one (the vote, the log ids, the entries), so openraft never adds one to it
/// and wraps; the largest accepted values still decode.
#[test]
fn terms_and_indexes_at_the_edge_are_refused() {
    use crate::replication::limits::{LOG_INDEX_MAX, TERM_MAX};
    let edge_log_id = Some(log_id(TERM_MAX, u64::MAX, LOG_INDEX_MAX));
    let accepted = VoteRequest {
        vote: vote(TERM_MAX, u64::MAX, false),
        last_log_id: edge_log_id,
    };
    assert_eq!(
        decode_vote_request(&encode_vote_request(&accepted)).expect("decodes"),
        accepted
    );
    let refused = [
        (u64::MAX, TERM_MAX, LOG_INDEX_MAX),
        (TERM_MAX + 1, TERM_MAX, LOG_INDEX_MAX),
        (TERM_MAX, u64::MAX, LOG_INDEX_MAX),
        (TERM_MAX, TERM_MAX, u64::MAX),
        (TERM_MAX, TERM_MAX, LOG_INDEX_MAX + 1),
    ];
    for (vote_term, log_term, log_index) in refused {
        let request = VoteRequest {
            vote: vote(vote_term, 1, false),
            last_log_id: Some(log_id(log_term, 1, log_index)),
        };
        assert!(
            matches!(
                decode_vote_request(&encode_vote_request(&request)),
                Err(DecodeError::OverLimit { .. })
            ),
            "vote {vote_term}, log id {log_term}-{log_index} decoded"
        );
        if log_term <= TERM_MAX && log_index <= LOG_INDEX_MAX {
            continue;
        }
        // The same log id on an entry, behind a vote that is fine.
        let mut append = append_request(1, 0);
        append.entries = vec![Entry {
            log_id: log_id(log_term, 1, log_index),
            payload: EntryPayload::Blank,
        }];
        let payload = Bytes::from(encode_append_entries(&append).expect("encodes"));
        assert!(
            matches!(
                decode_append_entries(&payload),
                Err(DecodeError::OverLimit { .. })
            ),
            "entry {log_term}-{log_index} decoded"
        );
    }
    let heartbeat = AppendEntriesRequest::<TypeConfig> {
        vote: vote(u64::MAX, 1, true),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    };
    let payload = Bytes::from(encode_append_entries(&heartbeat).expect("encodes"));
    assert!(decode_append_entries(&payload).is_err());
}

proptest! {
    /// Proves random bytes never panic any decoder, and whatever one accepts re-encodes to the
    /// same bytes.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400),
                                kind in prop::sample::select(vec![1u8, 2, 3, 17, 18, 19, 31])) {
        if let Some(again) = reencode(kind, &bytes) {
            prop_assert_eq!(again, bytes);
        }
    }

    /// Proves one byte changed anywhere in a valid message either still decodes to something
    /// that re-encodes to the changed bytes, or is refused: never a panic.
    #[test]
    fn mutated_messages_never_panic(seed in 0u64..64, which in 0usize..11,
                                    at in any::<prop::sample::Index>(), value in any::<u8>()) {
        let (kind, mut payload) = samples(seed).swap_remove(which);
        let at = at.index(payload.len());
        payload[at] = value;
        if let Some(again) = reencode(kind, &payload) {
            prop_assert_eq!(again, payload);
        }
    }

    /// Proves every message made from random field values round-trips.
    #[test]
    fn random_messages_round_trip(seed in any::<u64>(), count in 0usize..8) {
        let request = append_request(seed, count);
        let bytes = Bytes::from(encode_append_entries(&request).expect("encodes"));
        let decoded = decode_append_entries(&bytes).expect("decodes");
        prop_assert_eq!(format!("{decoded:?}"), format!("{request:?}"));
        for (kind, payload) in samples(seed % 1000) {
            prop_assert_eq!(reencode(kind, &payload), Some(payload));
        }
    }
}
