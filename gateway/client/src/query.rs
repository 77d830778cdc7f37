//! Queries by field (kinds 110–116) and every event by time (kind 118): the request (a filter, and for positions the time asked)
//! and the reply (a page of records and where the next page starts). Byte layouts in
//! docs/protocol.md, "Queries".
//!
//! ```text
//! query request (64 bytes)              positions request (80 bytes)
//! offset size field                     the query request, then
//!      0   16 user_data_128 (0: any)        64    8 at (ns; 0: now)
//!     16    8 user_data_64 (0: any)         72    8 reserved, zero
//!     24    4 user_data_32 (0: any)
//!     28    4 ledger (0: any)           query reply
//!     32    2 code (0: any)                  0    4 count
//!     34    2 reserved, zero                 4    4 flags: bit 0 more (the next page
//!     36    4 limit (1..=8,189)                     starts at `next`)
//!     40    8 timestamp min                  8    8 next (0 without more)
//!     48    8 timestamp max (0: no bound)   16      the records, 128 bytes each; positions:
//!     56    4 flags: bit 0 newest first             each record then its balances as of
//!     60    4 reserved, zero                        the time asked (4 × u128, 64 bytes);
//!                                               events: 144 bytes each, [`put_event_entry`]
//! ```

use tally_engine::limits::{RECORD_BYTES, STATEMENT_ENTRIES_MAX};
use tally_engine::records::{Account, RecordBytes, Trade, Transfer};
use tally_engine::{Balances, FeedEntry, LedgerEvent, Position, QueryFilter, QueryPage};

use crate::protocol::{check_count, DecodeError, Reader};
use crate::reply::{decode_event, event_record};

/// A query request's body bytes.
pub const QUERY_REQUEST_BYTES: usize = 64;
/// A positions request's body bytes.
pub const POSITIONS_REQUEST_BYTES: usize = 80;
const REVERSED: u32 = 1;
const MORE: u32 = 1;
const BALANCES_BYTES: usize = 64;
/// An events reply's entry: timestamp u64, kind u8, reserved 7, then the record (128 bytes).
pub const EVENT_ENTRY_BYTES: usize = 16 + RECORD_BYTES;
/// An events entry's kind byte for an account created (1–4 are a statement's kinds).
const EVENT_ACCOUNT: u8 = 5;

/// What a query asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryKind {
    Accounts,
    Transfers,
    Trades,
    /// Accounts with their balances as of `at` (ns; 0: now).
    Positions {
        at: u64,
    },
    /// Every applied event by time (the filter's fields must be zero).
    Events,
}

/// A query request's body: the filter (and for positions, the time).
pub fn encode_query_request(filter: &QueryFilter, kind: QueryKind) -> Vec<u8> {
    let mut out = Vec::with_capacity(POSITIONS_REQUEST_BYTES);
    out.extend_from_slice(&filter.user_data_128.to_le_bytes());
    out.extend_from_slice(&filter.user_data_64.to_le_bytes());
    out.extend_from_slice(&filter.user_data_32.to_le_bytes());
    out.extend_from_slice(&filter.ledger.to_le_bytes());
    out.extend_from_slice(&filter.code.to_le_bytes());
    out.extend_from_slice(&[0; 2]);
    out.extend_from_slice(&filter.limit.to_le_bytes());
    out.extend_from_slice(&filter.timestamp_min.to_le_bytes());
    out.extend_from_slice(&filter.timestamp_max.to_le_bytes());
    let flags = if filter.reversed { REVERSED } else { 0 };
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    if let QueryKind::Positions { at } = kind {
        out.extend_from_slice(&at.to_le_bytes());
        out.extend_from_slice(&[0; 8]);
    }
    out
}

/// Decodes a query request's body; `positions` says whether the time asked follows.
pub fn decode_query_request(
    body: &[u8],
    positions: bool,
) -> Result<(QueryFilter, u64), DecodeError> {
    let mut reader = Reader::new(body, "query request");
    let user_data_128 = reader.u128()?;
    let user_data_64 = reader.u64()?;
    let user_data_32 = reader.u32()?;
    let ledger = reader.u32()?;
    let code = reader.u16()?;
    reader.zeros(2)?;
    let limit = reader.u32()?;
    check_count(
        "query limit",
        limit as usize,
        1,
        STATEMENT_ENTRIES_MAX as usize,
    )?;
    let timestamp_min = reader.u64()?;
    let timestamp_max = reader.u64()?;
    let flags = reader.u32()?;
    if flags & !REVERSED != 0 {
        return Err(DecodeError::UnknownFlags(
            u16::try_from(flags).unwrap_or(u16::MAX),
        ));
    }
    reader.zeros(4)?;
    let at = if positions {
        let at = reader.u64()?;
        reader.zeros(8)?;
        at
    } else {
        0
    };
    reader.end()?;
    let filter = QueryFilter {
        user_data_128,
        user_data_64,
        user_data_32,
        ledger,
        code,
        timestamp_min,
        timestamp_max,
        limit,
        reversed: flags & REVERSED != 0,
    };
    Ok((filter, at))
}

/// A query reply's header for `count` records and the page's `next`; the records (and for
/// positions each record's balances) follow it.
pub fn query_reply_header(count: usize, next: Option<u64>) -> [u8; QUERY_REPLY_HEADER_BYTES] {
    let mut header = [0u8; QUERY_REPLY_HEADER_BYTES];
    header[..4].copy_from_slice(&(count as u32).to_le_bytes());
    header[4..8].copy_from_slice(&(if next.is_some() { MORE } else { 0 }).to_le_bytes());
    header[8..].copy_from_slice(&next.unwrap_or(0).to_le_bytes());
    header
}

/// Appends a position's balances to a positions reply.
pub fn put_position_balances(balances: &Balances, out: &mut Vec<u8>) {
    for value in [
        balances.debits_pending,
        balances.debits_posted,
        balances.credits_pending,
        balances.credits_posted,
    ] {
        out.extend_from_slice(&value.to_le_bytes());
    }
}

/// Appends an events reply's entry: its timestamp, its kind (1 transfer, 2 trade, 3 pending
/// transfer expired, 4 pending trade expired — as in a statement — or 5 account created),
/// 7 reserved bytes, then the record (for an expiry: the pending event's id, then zeros).
pub fn put_event_entry(entry: &FeedEntry, out: &mut Vec<u8>) {
    out.extend_from_slice(&entry.timestamp.to_le_bytes());
    let (kind, record) = match &entry.event {
        LedgerEvent::AccountCreated(account) => (EVENT_ACCOUNT, account.encode()),
        LedgerEvent::Applied(event) => event_record(event),
    };
    out.extend_from_slice(&[kind, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&record);
}

/// Decodes a page of events (each [`EVENT_ENTRY_BYTES`], as [`put_event_entry`] writes them).
pub fn decode_events_page(body: &[u8]) -> Result<QueryPage<FeedEntry>, DecodeError> {
    let (entries, next) = decode_page(body, EVENT_ENTRY_BYTES - RECORD_BYTES)?;
    let items = entries
        .into_iter()
        .map(|bytes| {
            let mut reader = Reader::new(bytes, "event");
            let timestamp = reader.u64()?;
            let kind = reader.u8()?;
            reader.zeros(7)?;
            let record: RecordBytes = reader.array()?;
            let event = if kind == EVENT_ACCOUNT {
                LedgerEvent::AccountCreated(
                    Account::decode(&record).map_err(|_| DecodeError::Record("account"))?,
                )
            } else {
                LedgerEvent::Applied(decode_event(kind, &record)?)
            };
            Ok(FeedEntry { timestamp, event })
        })
        .collect::<Result<_, DecodeError>>()?;
    Ok(QueryPage { items, next })
}

/// A query (or statement) reply's header bytes: count, flags, next.
pub const QUERY_REPLY_HEADER_BYTES: usize = 16;

/// A query (or statement) reply's header: the count of records that follow (at most
/// 8,189) and `next`.
pub fn decode_query_reply_header(body: &[u8]) -> Result<(usize, Option<u64>), DecodeError> {
    let mut reader = Reader::new(body, "reply header");
    let count = reader.u32()? as usize;
    check_count("records", count, 0, STATEMENT_ENTRIES_MAX as usize)?;
    let flags = reader.u32()?;
    if flags & !MORE != 0 {
        return Err(DecodeError::UnknownFlags(
            u16::try_from(flags).unwrap_or(u16::MAX),
        ));
    }
    let next = reader.u64()?;
    let next = if flags & MORE != 0 {
        Some(next)
    } else if next != 0 {
        return Err(DecodeError::ReservedNotZero("reply's next"));
    } else {
        None
    };
    Ok((count, next))
}

/// A query reply's records (each `extra` bytes longer than a record: 0, or the balances of a
/// position) and `next`.
fn decode_page(body: &[u8], extra: usize) -> Result<(Vec<&[u8]>, Option<u64>), DecodeError> {
    let (count, next) = decode_query_reply_header(body)?;
    let mut reader = Reader::new(&body[QUERY_REPLY_HEADER_BYTES..], "query reply");
    let mut records = Vec::with_capacity(count.min(reader.bytes.len() / RECORD_BYTES + 1));
    for _ in 0..count {
        records.push(reader.take(RECORD_BYTES + extra)?);
    }
    reader.end()?;
    Ok((records, next))
}

fn record(bytes: &[u8]) -> RecordBytes {
    bytes[..RECORD_BYTES].try_into().expect("a whole record")
}

/// Decodes a page of records of one kind.
pub fn decode_query_reply<T>(
    body: &[u8],
    what: &'static str,
    decode: impl Fn(&RecordBytes) -> Option<T>,
) -> Result<QueryPage<T>, DecodeError> {
    let (records, next) = decode_page(body, 0)?;
    let items = records
        .into_iter()
        .map(|bytes| decode(&record(bytes)).ok_or(DecodeError::Record(what)))
        .collect::<Result<_, _>>()?;
    Ok(QueryPage { items, next })
}

pub fn decode_accounts_page(body: &[u8]) -> Result<QueryPage<Account>, DecodeError> {
    decode_query_reply(body, "account", |r| Account::decode(r).ok())
}

pub fn decode_transfers_page(body: &[u8]) -> Result<QueryPage<Transfer>, DecodeError> {
    decode_query_reply(body, "transfer", |r| Transfer::decode(r).ok())
}

pub fn decode_trades_page(body: &[u8]) -> Result<QueryPage<Trade>, DecodeError> {
    decode_query_reply(body, "trade", |r| Trade::decode(r).ok())
}

/// Decodes a page of positions: each account record, then its balances as of the time asked.
pub fn decode_positions_page(body: &[u8]) -> Result<QueryPage<Position>, DecodeError> {
    let (records, next) = decode_page(body, BALANCES_BYTES)?;
    let items = records
        .into_iter()
        .map(|bytes| {
            let account =
                Account::decode(&record(bytes)).map_err(|_| DecodeError::Record("account"))?;
            let mut reader = Reader::new(&bytes[RECORD_BYTES..], "position balances");
            let balances = Balances {
                debits_pending: reader.u128()?,
                debits_posted: reader.u128()?,
                credits_pending: reader.u128()?,
                credits_posted: reader.u128()?,
            };
            Ok(Position { account, balances })
        })
        .collect::<Result<_, DecodeError>>()?;
    Ok(QueryPage { items, next })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> QueryFilter {
        QueryFilter {
            user_data_128: u128::MAX - 1,
            user_data_64: 7,
            user_data_32: 8,
            ledger: 9,
            code: 10,
            timestamp_min: 11,
            timestamp_max: 12,
            limit: 8_189,
            reversed: true,
        }
    }

    #[test]
    fn requests_and_replies_round_trip_and_damage_is_refused() {
        let body = encode_query_request(&filter(), QueryKind::Transfers);
        assert_eq!(body.len(), QUERY_REQUEST_BYTES);
        assert_eq!(decode_query_request(&body, false), Ok((filter(), 0)));
        let body = encode_query_request(&filter(), QueryKind::Positions { at: 99 });
        assert_eq!(body.len(), POSITIONS_REQUEST_BYTES);
        assert_eq!(decode_query_request(&body, true), Ok((filter(), 99)));
        // A positions body is not a query body, nor the other way round.
        assert!(decode_query_request(&body, false).is_err());
        assert!(decode_query_request(&body[..QUERY_REQUEST_BYTES], true).is_err());
        // Limits, flags and reserved bytes.
        for (at, byte) in [(36, 0u8), (56, 2), (34, 1), (60, 1)] {
            let mut damaged = encode_query_request(&filter(), QueryKind::Accounts);
            if at == 36 {
                damaged[36..40].copy_from_slice(&0u32.to_le_bytes());
            } else {
                damaged[at] = byte;
            }
            assert!(decode_query_request(&damaged, false).is_err(), "byte {at}");
        }
        let mut too_many = encode_query_request(&filter(), QueryKind::Accounts);
        too_many[36..40].copy_from_slice(&8_190u32.to_le_bytes());
        assert!(decode_query_request(&too_many, false).is_err());

        let account = Account {
            id: 5,
            ledger: 1,
            code: 2,
            timestamp: 3,
            ..Account::default()
        };
        let balances = Balances {
            debits_pending: 1,
            debits_posted: 2,
            credits_pending: 3,
            credits_posted: 4,
        };
        let mut reply = query_reply_header(1, Some(77)).to_vec();
        reply.extend_from_slice(&account.encode());
        put_position_balances(&balances, &mut reply);
        let page = decode_positions_page(&reply).unwrap();
        assert_eq!(page.next, Some(77));
        assert_eq!(page.items, [Position { account, balances }]);
        // The same bytes are not a page of accounts (64 bytes left over).
        assert!(decode_accounts_page(&reply).is_err());
        let mut done = query_reply_header(0, None).to_vec();
        assert_eq!(
            decode_transfers_page(&done).unwrap(),
            QueryPage {
                items: vec![],
                next: None
            }
        );
        // `next` without the flag is damage; a count past the bytes is short.
        done[8] = 1;
        assert!(decode_trades_page(&done).is_err());
        let mut short = query_reply_header(2, None).to_vec();
        short.extend_from_slice(&account.encode());
        assert!(decode_accounts_page(&short).is_err());
    }

    #[test]
    fn events_pages_round_trip_and_damage_is_refused() {
        use tally_engine::StatementEvent;
        let events = [
            LedgerEvent::AccountCreated(Account {
                id: 1,
                ledger: 2,
                code: 3,
                timestamp: 10,
                ..Account::default()
            }),
            LedgerEvent::Applied(StatementEvent::Transfer(Transfer {
                id: 4,
                debit_account_id: 1,
                credit_account_id: 2,
                amount: u128::MAX,
                ledger: 2,
                code: 3,
                timestamp: 11,
                ..Transfer::default()
            })),
            LedgerEvent::Applied(StatementEvent::Trade(Trade {
                id: 5,
                quantity: 6,
                timestamp: 12,
                ..Trade::default()
            })),
            LedgerEvent::Applied(StatementEvent::TransferExpired { pending_id: 7 }),
            LedgerEvent::Applied(StatementEvent::TradeExpired { pending_id: 8 }),
        ];
        let items: Vec<FeedEntry> = events
            .iter()
            .enumerate()
            .map(|(i, &event)| FeedEntry {
                timestamp: 10 + i as u64,
                event,
            })
            .collect();
        let mut reply = query_reply_header(items.len(), Some(15)).to_vec();
        for entry in &items {
            put_event_entry(entry, &mut reply);
        }
        assert_eq!(reply.len(), 16 + items.len() * EVENT_ENTRY_BYTES);
        let page = decode_events_page(&reply).unwrap();
        assert_eq!(page.items, items);
        assert_eq!(page.next, Some(15));
        // An unknown kind, a reserved byte, an expiry with bytes past its id, a short entry.
        for (at, byte) in [
            (16 + 8, 6u8),
            (16 + 8, 0),
            (16 + 9, 1),
            (16 + 4 * 144 + 16 + 20, 1),
        ] {
            let mut damaged = reply.clone();
            damaged[at] = byte;
            assert!(decode_events_page(&damaged).is_err(), "byte {at}");
        }
        assert!(decode_events_page(&reply[..reply.len() - 1]).is_err());
        // A page of events is not a page of accounts, nor the other way round.
        assert!(decode_accounts_page(&reply).is_err());
    }
}
