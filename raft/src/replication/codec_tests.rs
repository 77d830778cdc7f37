use super::*;
use proptest::prelude::*;

fn log_id(term: u64, node: u64, index: u64) -> LogId {
    LogId::new(openraft::CommittedLeaderId::new(term, node), index)
}

fn node(addr: &str) -> Node {
    Node::new(format!("client-{addr}"), addr)
}

fn samples() -> Vec<Entry> {
    let joint = Membership::new(
        vec![BTreeSet::from([1, 2, 3]), BTreeSet::from([2, 3, 4, 5])],
        BTreeMap::from([
            (1, node("10.0.0.1:7000")),
            (2, node("10.0.0.2:7000")),
            (3, node("10.0.0.3:7000")),
            (4, node("10.0.0.4:7000")),
            (5, node("10.0.0.5:7000")),
            (9, node("learner:7000")),
        ]),
    );
    vec![
        Entry {
            log_id: log_id(0, 0, 0),
            payload: EntryPayload::Blank,
        },
        Entry {
            log_id: log_id(7, 3, 12),
            payload: EntryPayload::Membership(joint),
        },
        Entry {
            // The largest term and index a decoder accepts (node ids have no limit).
            log_id: log_id(TERM_MAX, u64::MAX, LOG_INDEX_MAX),
            payload: EntryPayload::Membership(Membership::default()),
        },
        Entry {
            log_id: log_id(8, 2, 13),
            payload: EntryPayload::Normal(Request {
                timestamp: 1_700_000_000_000_000_000,
                batches: vec![
                    ClientBatch {
                        operation: Operation::CreateAccounts,
                        body: Bytes::from(vec![1u8; 256]),
                        origin: None,
                    },
                    ClientBatch {
                        operation: Operation::CreateTrades,
                        body: Bytes::new(),
                        origin: None,
                    },
                    ClientBatch {
                        operation: Operation::CreateTransfers,
                        body: Bytes::from(vec![2u8; 130]),
                        origin: Some(Origin {
                            client: u128::MAX - 5,
                            number: 77,
                            digest: 0x0123_4567_89ab_cdef,
                        }),
                    },
                    ClientBatch {
                        operation: Operation::CreateSettlements,
                        body: Bytes::from(vec![3u8; 128]),
                        origin: None,
                    },
                ],
                log: None,
            }),
        },
        Entry {
            log_id: log_id(1, 1, 1),
            payload: EntryPayload::Normal(Request::default()),
        },
        Entry {
            log_id: log_id(1, 1, 2),
            payload: EntryPayload::Normal(Request {
                timestamp: 9,
                batches: Vec::new(),
                log: Some(LogNote::Checkpoint(SignedCheckpoint {
                    size: 1_000,
                    time_ns: 9,
                    root: [7; 32],
                    key_id: [1, 2, 3, 4],
                    signature: [5; 64],
                })),
            }),
        },
        Entry {
            log_id: log_id(1, 1, 3),
            payload: EntryPayload::Normal(Request {
                timestamp: 10,
                batches: Vec::new(),
                log: Some(LogNote::Cosignature(StoredCosignature {
                    checkpoint: 7,
                    key_id: [9, 8, 7, 6],
                    time: 1_796_000_000,
                    signature: [3; 64],
                })),
            }),
        },
        Entry {
            log_id: log_id(1, 1, 4),
            payload: EntryPayload::Normal(Request {
                timestamp: 11,
                batches: Vec::new(),
                log: Some(LogNote::Reads(vec![
                    tally_engine::AccessEntry {
                        operation: 64,
                        credential: [4; 16],
                        name: tally_engine::AccessEntry::name_field("auditor"),
                        accounts: vec![1, u128::MAX],
                    },
                    tally_engine::AccessEntry::default(),
                ])),
            }),
        },
        Entry {
            log_id: log_id(1, 1, 5),
            payload: EntryPayload::Normal(Request {
                timestamp: 12,
                batches: Vec::new(),
                log: Some(LogNote::AccessCheckpoint(SignedCheckpoint {
                    size: 2,
                    time_ns: 12,
                    root: [8; 32],
                    key_id: [4, 3, 2, 1],
                    signature: [6; 64],
                })),
            }),
        },
    ]
}

/// Proves every kind of entry (blank, joint and empty membership, requests with several,
/// empty and odd-sized bodies, extreme log ids) survives encode then decode unchanged.
#[test]
fn entries_round_trip() {
    for entry in samples() {
        let record = encode_entry(&entry).expect("encodes");
        assert_eq!(record.index, entry.log_id.index);
        assert_eq!(record.term, entry.log_id.leader_id.term);
        let decoded = decode_entry(&record).expect("decodes");
        assert_eq!(format!("{decoded:?}"), format!("{entry:?}"));
        assert_eq!(decoded.log_id, entry.log_id);
        assert_eq!(decoded.payload, entry.payload);
    }
}

/// Proves a version-1 entry (written before batches carried an origin) still decodes,
/// and that a version-1 batch claiming an origin is refused.
#[test]
fn version_one_entries_are_read() {
    let entry = Entry {
        log_id: log_id(2, 1, 9),
        payload: EntryPayload::Normal(Request {
            timestamp: 5,
            batches: vec![ClientBatch::new(
                Operation::CreateTransfers,
                Bytes::from(vec![4u8; 128]),
            )],
            log: None,
        }),
    };
    let mut record = encode_entry(&entry).expect("encodes");
    let mut payload = record.payload.to_vec();
    payload[0] = ENTRY_VERSION_NO_ORIGIN;
    record.payload = Bytes::from(payload.clone());
    assert_eq!(
        decode_entry(&record).expect("decodes").payload,
        entry.payload
    );
    // The first batch's flags byte: after the entry and request headers and its operation.
    let flags = ENTRY_HEADER_BYTES + REQUEST_HEADER_BYTES + 1;
    payload[flags] = BATCH_HAS_ORIGIN;
    record.payload = Bytes::from(payload);
    assert!(matches!(
        decode_entry(&record),
        Err(DecodeError::BadFlag { .. })
    ));
    // Version 2 (before checkpoints): read, but a request claiming a checkpoint is refused.
    let mut payload = encode_entry(&entry).expect("encodes").payload.to_vec();
    payload[0] = ENTRY_VERSION_NO_CHECKPOINT;
    record.payload = Bytes::from(payload.clone());
    assert_eq!(
        decode_entry(&record).expect("decodes").payload,
        entry.payload
    );
    payload[ENTRY_HEADER_BYTES + 12] = REQUEST_HAS_CHECKPOINT;
    record.payload = Bytes::from(payload);
    assert!(matches!(
        decode_entry(&record),
        Err(DecodeError::BadFlag { .. })
    ));
}

/// Proves a payload cut short anywhere, or with a byte appended, is refused with an error.
#[test]
fn truncated_or_extended_payloads_are_refused() {
    for entry in samples() {
        let record = encode_entry(&entry).expect("encodes");
        for cut in 0..record.payload.len() {
            let short = wal::Entry {
                payload: record.payload.slice(..cut),
                ..record.clone()
            };
            assert!(decode_entry(&short).is_err(), "cut at {cut} accepted");
        }
        let mut long = record.payload.to_vec();
        long.push(0);
        let long = wal::Entry {
            payload: Bytes::from(long),
            ..record.clone()
        };
        assert!(matches!(
            decode_entry(&long),
            Err(DecodeError::TrailingBytes { .. })
        ));
    }
}

/// Proves limits are enforced on both sides: an entry over a limit does not encode, and a
/// count over a limit does not decode (before anything is allocated for it).
#[test]
fn limits_are_enforced() {
    let request = Request {
        timestamp: 0,
        batches: vec![
            ClientBatch {
                operation: Operation::CreateAccounts,
                body: Bytes::new(),
                origin: None,
            };
            ENTRY_BATCHES_MAX + 1
        ],
        log: None,
    };
    let entry = Entry {
        log_id: log_id(1, 1, 1),
        payload: EntryPayload::Normal(request),
    };
    assert!(matches!(
        encode_entry(&entry),
        Err(EncodeError::OverLimit { .. })
    ));
    let mut payload = vec![ENTRY_VERSION, KIND_NORMAL, 0, 0, 0, 0, 0, 0];
    payload.extend_from_slice(&1u64.to_le_bytes());
    payload.extend_from_slice(&0u64.to_le_bytes());
    payload.extend_from_slice(&u32::MAX.to_le_bytes());
    payload.extend_from_slice(&[0; 4]);
    let record = wal::Entry {
        index: 1,
        term: 1,
        payload: Bytes::from(payload),
    };
    assert!(matches!(
        decode_entry(&record),
        Err(DecodeError::OverLimit { .. })
    ));
}

proptest! {
    /// Proves random bytes never panic the decoder, and whatever it accepts re-encodes to
    /// the same bytes (decoding is the exact inverse of encoding).
    #[test]
    fn random_payloads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200),
                                   kind in 0u8..5, header in any::<bool>()) {
        let mut payload = bytes;
        if header && payload.len() >= 16 {
            payload[0] = ENTRY_VERSION;
            payload[1] = kind;
            payload[2..8].fill(0);
        }
        let record = wal::Entry { index: 5, term: 3, payload: Bytes::from(payload) };
        if let Ok(entry) = decode_entry(&record) {
            let again = encode_entry(&entry).expect("a decoded entry re-encodes");
            prop_assert_eq!(again.payload, record.payload);
        }
    }

    /// Proves mutating one byte of a valid payload either still decodes to something that
    /// re-encodes identically, or is refused: never a panic, never a silent different read.
    #[test]
    fn mutated_payloads_never_panic(which in 0usize..5, at in any::<prop::sample::Index>(),
                                    value in any::<u8>()) {
        let record = encode_entry(&samples()[which]).expect("encodes");
        let mut payload = record.payload.to_vec();
        let at = at.index(payload.len());
        payload[at] = value;
        let record = wal::Entry { payload: Bytes::from(payload), ..record };
        // A version byte turned into an older format's is read as that format and
        // written in today's: only today's format must re-encode to the same bytes.
        if let (Ok(entry), true) = (decode_entry(&record), record.payload[0] == ENTRY_VERSION) {
            let again = encode_entry(&entry).expect("a decoded entry re-encodes");
            prop_assert_eq!(again.payload, record.payload);
        }
    }
}
