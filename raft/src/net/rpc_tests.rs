//! Tests of the replica RPC encodings (`rpc.rs`).

use proptest::prelude::*;

use super::*;
use crate::net::rpc_samples::{
    append_request, error_answers, log_id, meta, reencode, samples, vote,
};
use crate::replication::types::{Entry, EntryPayload};

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
