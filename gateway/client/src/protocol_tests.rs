use proptest::prelude::*;
use tally_engine::records::{Trade, Transfer};
use tally_engine::{Balances, EventResult, StatementEntry, StatementEvent, StatementFilter};

use super::*;
use crate::limits::STATEMENT_ENTRY_BYTES;

fn header() -> RequestHeader {
    RequestHeader {
        flags: FLAG_LINEARIZABLE,
        cluster_id: 0x1234_5678_9abc_def0_1122_3344_5566_7788,
        client_id: 42,
        session: 7,
        request_number: 9,
    }
}

/// Every decoder, fed the same bytes (as a request of every kind, as a reply, and as each
/// reply body); none may panic.
fn decode_everything(bytes: &[u8]) {
    for kind in 0..=255u8 {
        let _ = decode_request(kind, bytes);
    }
    let _ = decode_reply(bytes);
    let _ = decode_registered(bytes);
    let _ = decode_create_reply(bytes);
    let _ = decode_lookup_reply(bytes);
    let _ = decode_accounts(bytes);
    let _ = decode_transfers(bytes);
    let _ = decode_trades(bytes);
    let _ = decode_statement_reply(bytes);
    let _ = decode_balances(bytes);
    let _ = decode_refusal(bytes);
    let _ = crate::query::decode_accounts_page(bytes);
    let _ = crate::query::decode_transfers_page(bytes);
    let _ = crate::query::decode_trades_page(bytes);
    let _ = crate::query::decode_positions_page(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Proves random bytes never panic any decoder, raw or behind a valid header.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        decode_everything(&bytes);
        let behind_header = encode_request(&header(), &bytes);
        decode_everything(&behind_header);
    }

    /// Proves a request header round-trips for any field values, and any body comes back.
    #[test]
    fn request_header_round_trips(
        cluster_id in any::<u128>(), client_id in any::<u128>(), session in any::<u64>(),
        request_number in any::<u64>(), linearizable in any::<bool>(),
        body in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let header = RequestHeader {
            flags: if linearizable { FLAG_LINEARIZABLE } else { 0 },
            cluster_id, client_id, session, request_number,
        };
        let payload = encode_request(&header, &body);
        prop_assert_eq!(payload.len(), HEADER_BYTES + body.len());
        let (decoded, decoded_body) = decode_request_header(&payload).expect("decodes");
        prop_assert_eq!(decoded, header);
        prop_assert_eq!(decoded_body, &body[..]);
    }

    /// Proves create replies round-trip and that a reply's header survives any status.
    #[test]
    fn replies_round_trip(
        status in 0u8..=12, commit_index in any::<u64>(),
        failures in proptest::collection::vec((any::<u32>(), any::<u16>()), 0..50),
    ) {
        let reply = CreateReply {
            timestamp_first: 5,
            timestamp_last: 9,
            failures: failures.iter().map(|(index, code)| Failure { index: *index, code: *code }).collect(),
        };
        let body = encode_create_reply(&reply);
        let header = ReplyHeader {
            status: Status::from_byte(status).expect("decodes"),
            cluster_id: 1, client_id: 2, session: 3, request_number: 4, commit_index,
        };
        let payload = encode_reply(&header, &body);
        let (decoded_header, decoded_body) = decode_reply(&payload).expect("decodes");
        prop_assert_eq!(decoded_header, header);
        prop_assert_eq!(decode_create_reply(decoded_body).expect("decodes"), reply);
    }
}

/// Proves every operation's request body decodes to what was encoded.
#[test]
fn every_operation_round_trips() {
    let transfers: Vec<u8> = (1..=3u128)
        .flat_map(|id| {
            Transfer {
                id,
                ..Transfer::default()
            }
            .encode()
        })
        .collect();
    let filter = StatementFilter {
        account_id: 5,
        timestamp_min: 1,
        timestamp_max: 99,
        limit: 10,
        reversed: true,
        user_data_128: 1 << 100,
        user_data_64: 6,
        user_data_32: 7,
        code: 8,
        debits: true,
        credits: false,
    };
    let credential = [7u8; 32];
    let cases: Vec<(Operation, Vec<u8>, Request<'_>)> = vec![
        (
            Operation::Register,
            credential.to_vec(),
            Request::Register {
                credential: &credential,
            },
        ),
        (Operation::Heartbeat, Vec::new(), Request::Heartbeat),
        (
            Operation::CreateTransfers,
            transfers.clone(),
            Request::Create {
                operation: tally_engine::Operation::CreateTransfers,
                body: &transfers,
            },
        ),
        (
            Operation::LookupTrades,
            encode_ids(&[1, u128::MAX]),
            Request::Lookup {
                what: LookupKind::Trades,
                ids: vec![1, u128::MAX],
            },
        ),
        (
            Operation::Statement,
            encode_statement_request(&filter),
            Request::Statement(filter),
        ),
        (
            Operation::BalancesAsOf,
            encode_balances_as_of_request(5, 77),
            Request::BalancesAsOf {
                account_id: 5,
                timestamp: 77,
            },
        ),
    ];
    for (operation, body, expected) in cases {
        let frame = request_frame(operation, 1, &header(), &body);
        let (decoded_header, request) =
            decode_request(frame.kind, &frame.payload).expect("decodes");
        assert_eq!(decoded_header, header());
        assert_eq!(request, expected, "{operation:?}");
        assert_eq!(Operation::from_kind(operation.kind()), Some(operation));
        assert_eq!(operation.reply_kind(), operation.kind() + 1);
    }
}

/// Proves the request checks refuse what they should: each case is a payload and the error.
#[test]
fn malformed_requests_are_refused() {
    let good = encode_request(&header(), &[0u8; 128]);
    let mut version = good.clone();
    version[0] = 1;
    let mut flags = good.clone();
    flags[2] = 4;
    let mut reserved = good.clone();
    reserved[60] = 1;
    let mut declared = good.clone();
    declared[4] = 127;
    let mut too_big = good.clone();
    too_big[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    let check = |kind: u8, payload: &[u8], expected: DecodeError| {
        assert_eq!(decode_request(kind, payload).map(|_| ()), Err(expected));
    };
    check(KIND_CREATE_TRANSFERS, &version, DecodeError::Version(1));
    check(KIND_CREATE_TRANSFERS, &flags, DecodeError::UnknownFlags(4));
    check(
        KIND_CREATE_TRANSFERS,
        &reserved,
        DecodeError::ReservedNotZero("request header"),
    );
    check(
        KIND_CREATE_TRANSFERS,
        &declared,
        DecodeError::BodySize {
            declared: 127,
            actual: 128,
        },
    );
    assert!(matches!(
        decode_request(KIND_CREATE_TRANSFERS, &too_big),
        Err(DecodeError::Count { .. })
    ));
    check(65, &good, DecodeError::UnknownKind(65));
    check(
        KIND_CREATE_ACCOUNTS,
        &encode_request(&header(), &[0u8; 100]),
        DecodeError::NotWholeRecords { bytes: 100 },
    );
    // An empty create is a request (an empty batch, TigerBeetle 0.17); one too long is not.
    assert!(matches!(
        decode_request(KIND_CREATE_ACCOUNTS, &encode_request(&header(), &[])),
        Ok((_, Request::Create { body: [], .. }))
    ));
    let too_long = vec![0u8; 128 * (REQUEST_EVENTS_MAX + 1)];
    let too_long = encode_request(&header(), &too_long);
    let refused = decode_request(KIND_CREATE_ACCOUNTS, &too_long);
    assert!(refused.is_err(), "{refused:?}");
    assert!(matches!(
        decode_request(KIND_REGISTER, &encode_request(&header(), &[1u8; 8])),
        Err(DecodeError::Count { .. })
    ));
    check(
        KIND_HEARTBEAT,
        &encode_request(&header(), &[1u8]),
        DecodeError::TrailingBytes {
            what: "heartbeat body",
            bytes: 1,
        },
    );

    // A statement request: 72 bytes, or its first 40 (no account filter); nothing between,
    // no unknown flag, no non-zero reserved byte.
    let filter = StatementFilter {
        account_id: 5,
        limit: 10,
        code: 3,
        ..StatementFilter::default()
    };
    let body = encode_statement_request(&filter);
    assert_eq!(body.len(), 72);
    let statement = |body: &[u8]| {
        let payload = encode_request(&header(), body);
        decode_request(KIND_STATEMENT, &payload).map(|(_, request)| match request {
            Request::Statement(read) => read,
            other => panic!("not a statement: {other:?}"),
        })
    };
    assert_eq!(
        statement(&body[..40]),
        Ok(StatementFilter { code: 0, ..filter }),
        "a 40-byte statement request has no account filter"
    );
    assert!(matches!(
        statement(&body[..56]),
        Err(DecodeError::Short { .. })
    ));
    let mut flags = body.clone();
    flags[36] = 8;
    assert_eq!(
        statement(&flags).map(|_| ()),
        Err(DecodeError::UnknownFlags(8))
    );
    let mut reserved = body.clone();
    reserved[71] = 1;
    assert_eq!(
        statement(&reserved).map(|_| ()),
        Err(DecodeError::ReservedNotZero("statement request"))
    );
    let mut longer = body.clone();
    longer.push(0);
    assert!(matches!(
        statement(&longer),
        Err(DecodeError::TrailingBytes { .. })
    ));
}

/// Proves the reply bodies round-trip: register, statement, balances, refusal, lookups.
#[test]
fn reply_bodies_round_trip() {
    let registered = Registered {
        session: 99,
        session_idle_ms: 60_000,
        role: Role::Reader,
        request_events_max: 8189,
        in_flight_max: 16,
    };
    assert_eq!(
        decode_registered(&encode_registered(&registered)).expect("decodes"),
        registered
    );
    let balances = Balances {
        debits_pending: 1,
        debits_posted: 2,
        credits_pending: 3,
        credits_posted: u128::MAX,
    };
    assert_eq!(
        decode_balances(&encode_balances(&balances)).expect("decodes"),
        balances
    );
    let entries = vec![
        StatementEntry {
            timestamp: 10,
            event: StatementEvent::Transfer(Transfer {
                id: 3,
                amount: 4,
                ..Transfer::default()
            }),
            balances_after: balances,
        },
        StatementEntry {
            timestamp: 11,
            event: StatementEvent::Trade(Trade {
                id: 4,
                quantity: 2,
                ..Trade::default()
            }),
            balances_after: Balances::default(),
        },
        StatementEntry {
            timestamp: 12,
            event: StatementEvent::TransferExpired { pending_id: 8 },
            balances_after: Balances::default(),
        },
        StatementEntry {
            timestamp: 13,
            event: StatementEvent::TradeExpired { pending_id: 9 },
            balances_after: Balances::default(),
        },
    ];
    for next in [None, Some(14)] {
        let page = tally_engine::QueryPage {
            items: entries.clone(),
            next,
        };
        let body = encode_statement_reply(&page);
        assert_eq!(body.len(), 16 + entries.len() * STATEMENT_ENTRY_BYTES);
        assert_eq!(decode_statement_reply(&body).expect("decodes"), page);
        // The header is a query reply's: `next` without the more flag is damage.
        let mut damaged = body.clone();
        damaged[4] = 0;
        damaged[8] = 1;
        assert!(decode_statement_reply(&damaged).is_err());
    }
    for refusal in [
        Refusal {
            leader: Some((2, "127.0.0.1:7002".to_owned())),
            event: None,
            message: "not the leader".to_owned(),
        },
        Refusal {
            leader: None,
            event: Some(0),
            message: "é".repeat(2000),
        },
        Refusal {
            leader: None,
            event: Some(8188),
            message: "event 8188: debits ledger 2".to_owned(),
        },
    ] {
        let decoded = decode_refusal(&encode_refusal(&refusal)).expect("decodes");
        assert_eq!(decoded.leader, refusal.leader);
        assert_eq!(decoded.event, refusal.event);
        assert!(refusal.message.starts_with(&decoded.message));
    }
    // An event index without its "known" byte is refused, as is a "known" byte past 1.
    let mut unknown_event = encode_refusal(&Refusal::default());
    unknown_event[4] = 7;
    assert!(decode_refusal(&unknown_event).is_err());
    unknown_event[4] = 0;
    unknown_event[1] = 2;
    assert!(decode_refusal(&unknown_event).is_err());
    assert_eq!(Status::from_byte(12), Ok(Status::OutOfScope));
    assert_eq!(Status::from_byte(13), Ok(Status::RequestNumberReused));
    assert!(Status::from_byte(14).is_err());
    let failure = Failure { index: 1, code: 25 };
    assert_eq!(failure.result(), Some(EventResult::Exists));
    let transfer = Transfer {
        id: 5,
        ..Transfer::default()
    };
    assert_eq!(
        decode_transfers(&transfer.encode()).expect("decodes"),
        vec![transfer]
    );
}
