//! Replies that survive a failover: the replicated table of each client's last answers.
//!
//! A client batch may carry its [`Origin`]: who sent it (a key derived from the credential and
//! the client id, so one credential cannot reach another's replies), the client's request
//! number and a digest of what it asked for. Every replica applies the log in the same order,
//! so every replica builds the same table from it, and a retry that reaches any leader — the
//! first one's successor after a kill -9 included — is answered from the table:
//!
//! - the same number and digest as a recorded request: [`BatchAnswer::Replayed`], the
//!   original outcome and log index, and nothing is applied again (a batch that failed
//!   `exceeds_credits` the first time fails again, even if the funds have arrived since);
//! - the same number with another digest: [`BatchAnswer::NumberReused`], nothing applied;
//! - a number the table does not hold: applied, and recorded.
//!
//! Bounds and eviction are deterministic — they depend only on the log, never on a clock or a
//! hash seed — so the table is part of the replicated state, in every snapshot image:
//! - per client, the newest [`REPLIES_PER_CLIENT_MAX`] request numbers, and at most
//!   [`REPLY_BYTES_PER_CLIENT_MAX`] bytes of them (the oldest numbers go first; the newest is
//!   always kept);
//! - at most [`REPLY_CLIENTS_MAX`] clients and [`REPLY_TABLE_BYTES_MAX`] bytes in all: past
//!   either, the client whose last request is oldest in the log goes (ties by key).
//!
//! Past the window a request is applied again, which is still safe for every event: an applied
//! event answers `exists`, one that failed for a reason that may change answers
//! `id_already_failed`, and one that failed for good fails the same way again.
//! What the client must do: number its requests from one counter for its whole life (a new
//! session, another node, a retry: the same counter), never reuse a number for other contents,
//! and retry a request whose outcome it did not see with the same number (docs/protocol.md).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use tally_engine::{BatchError, BatchOutcome, EventResult};

use super::codec::Reader;
use super::error::DecodeError;

/// Request numbers kept per client: at least the requests a session may have in flight (16),
/// twice over, so a client's retries of everything it had in flight are all answered.
pub const REPLIES_PER_CLIENT_MAX: usize = 32;
/// Bytes of recorded outcomes per client (a slot is 128 bytes plus 8 per failed event: a full
/// request that failed entirely is 64 KiB).
pub const REPLY_BYTES_PER_CLIENT_MAX: usize = 1024 * 1024;
/// Clients in the table. Every node holds the whole table, so it is sized for the cluster's
/// clients, not one node's sessions.
pub const REPLY_CLIENTS_MAX: usize = 16_384;
/// Bytes of the whole table, by the same accounting: bounds the memory and the snapshot
/// section on every replica. Every client full of answers without failures (16,384 × 4,352
/// bytes) fits.
pub const REPLY_TABLE_BYTES_MAX: usize = 96 * 1024 * 1024;

/// Accounting bytes of a slot besides its failures: what one costs the heap, measured
/// (`benches/engine_memory.rs`: 137.7 bytes per answer with its client's share, in B-tree
/// nodes, the slot and its outcome).
const SLOT_BYTES: usize = 128;
/// Accounting bytes of a client besides its slots (its hash-map entry, B-tree root and place
/// in the eviction order).
const CLIENT_BYTES: usize = 256;
/// Bytes of a slot's fixed part in a snapshot section (bounds counts against the bytes left).
const SLOT_WIRE_BYTES: usize = 8 + 16 + 8 + 1 + 3 + 8 + 8 + 4;

/// Who sent a batch and which of its requests it is. Carried in the entry (docs/raft-entries.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The client's key: the gateway derives it from the credential and the client id.
    pub client: u128,
    /// The client's request number.
    pub number: u64,
    /// A digest of the request's operation and body: the same number and digest is the same
    /// request sent again.
    pub digest: u128,
}

/// What applying one client batch answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchAnswer {
    /// Applied by this entry: the engine's outcome.
    Applied(Result<BatchOutcome, BatchError>),
    /// The same request was applied before, by the entry at `log_index`: its outcome then.
    /// Nothing was applied now.
    Replayed {
        log_index: u64,
        outcome: Result<BatchOutcome, BatchError>,
    },
    /// The client's number was used, by the entry at `log_index`, for a request with other
    /// contents. Nothing was applied.
    NumberReused { log_index: u64 },
}

impl BatchAnswer {
    /// The engine's outcome, whether applied now or replayed; `None` for a refused number.
    pub fn outcome(&self) -> Option<&Result<BatchOutcome, BatchError>> {
        match self {
            BatchAnswer::Applied(outcome) | BatchAnswer::Replayed { outcome, .. } => Some(outcome),
            BatchAnswer::NumberReused { .. } => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Slot {
    digest: u128,
    log_index: u64,
    outcome: Result<BatchOutcome, BatchError>,
}

impl Slot {
    fn bytes(&self) -> usize {
        SLOT_BYTES
            + self
                .outcome
                .as_ref()
                .map_or(0, |outcome| outcome.failures.len() * 8)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ClientReplies {
    /// Index of the entry of the client's last request: the eviction order.
    last_used: u64,
    slots: BTreeMap<u64, Slot>,
    bytes: usize,
}

/// The replicated reply table (see the module docs).
///
/// A clone shares each client's answers (one pointer per client) and a client is copied only
/// when written while a clone holds it: a snapshot takes its view of the table under the apply
/// lock, so the copy must not grow with the answers held (a full table's deep copy took 54 ms).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplyTable {
    clients: HashMap<u128, Arc<ClientReplies>>,
    /// `(last_used, client)`: the eviction order.
    order: BTreeSet<(u64, u128)>,
    bytes: usize,
}

impl ReplyTable {
    /// Clients held.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// Accounting bytes held (slots, failures and clients; see the limits).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The recorded answer to `origin` at the entry `log_index`, if the table holds its number:
    /// a replay or a refusal, and the client's place in the eviction order renewed. `None`:
    /// apply the batch and [`record`](Self::record) its outcome.
    pub fn answer(&mut self, origin: &Origin, log_index: u64) -> Option<BatchAnswer> {
        let slot = self
            .clients
            .get(&origin.client)?
            .slots
            .get(&origin.number)?;
        let answer = if slot.digest == origin.digest {
            BatchAnswer::Replayed {
                log_index: slot.log_index,
                outcome: slot.outcome.clone(),
            }
        } else {
            BatchAnswer::NumberReused {
                log_index: slot.log_index,
            }
        };
        let client = Arc::make_mut(
            self.clients
                .get_mut(&origin.client)
                .expect("the client answered is held"),
        );
        self.order.remove(&(client.last_used, origin.client));
        client.last_used = log_index;
        self.order.insert((log_index, origin.client));
        Some(answer)
    }

    /// Record the outcome of `origin`'s batch, applied by the entry at `log_index`, and evict
    /// what the bounds no longer hold.
    pub fn record(
        &mut self,
        origin: &Origin,
        log_index: u64,
        outcome: &Result<BatchOutcome, BatchError>,
    ) {
        let slot = Slot {
            digest: origin.digest,
            log_index,
            outcome: outcome.clone(),
        };
        let client = match self.clients.get_mut(&origin.client) {
            Some(client) => {
                self.order.remove(&(client.last_used, origin.client));
                Arc::make_mut(client)
            }
            None => {
                self.bytes += CLIENT_BYTES;
                Arc::make_mut(self.clients.entry(origin.client).or_default())
            }
        };
        client.last_used = log_index;
        self.order.insert((log_index, origin.client));
        let added = slot.bytes();
        client.bytes += added;
        self.bytes += added;
        if let Some(old) = client.slots.insert(origin.number, slot) {
            // Not reached through `apply` (a held number is answered, not recorded); kept
            // exact for any caller.
            client.bytes -= old.bytes();
            self.bytes -= old.bytes();
        }
        while client.slots.len() > REPLIES_PER_CLIENT_MAX
            || (client.bytes > REPLY_BYTES_PER_CLIENT_MAX && client.slots.len() > 1)
        {
            let (_, oldest) = client.slots.pop_first().expect("more than one slot");
            client.bytes -= oldest.bytes();
            self.bytes -= oldest.bytes();
        }
        while self.clients.len() > REPLY_CLIENTS_MAX || self.bytes > REPLY_TABLE_BYTES_MAX {
            let Some(&(last_used, key)) = self.order.first() else {
                break;
            };
            if key == origin.client {
                // The client just recorded is the newest; the bounds hold without the rest.
                break;
            }
            self.order.remove(&(last_used, key));
            let gone = self.clients.remove(&key).expect("ordered clients are held");
            self.bytes -= gone.bytes + CLIENT_BYTES;
        }
    }

    /// Append the table's snapshot section (docs/wal.md, "reply table"), clients in key order
    /// so equal tables give equal bytes.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let mut keys: Vec<&u128> = self.clients.keys().collect();
        keys.sort_unstable();
        out.extend_from_slice(&(keys.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        for key in keys {
            let client = &self.clients[key];
            out.extend_from_slice(&key.to_le_bytes());
            out.extend_from_slice(&client.last_used.to_le_bytes());
            out.extend_from_slice(&(client.slots.len() as u32).to_le_bytes());
            out.extend_from_slice(&[0; 4]);
            for (number, slot) in &client.slots {
                out.extend_from_slice(&number.to_le_bytes());
                out.extend_from_slice(&slot.digest.to_le_bytes());
                out.extend_from_slice(&slot.log_index.to_le_bytes());
                encode_outcome(&slot.outcome, out);
            }
        }
    }

    /// Read a section written by [`encode`](Self::encode), checking every count against the
    /// bytes left and the table's bounds.
    pub(crate) fn decode(reader: &mut Reader<'_>) -> Result<ReplyTable, DecodeError> {
        let count = reader.count("clients in the reply table", REPLY_CLIENTS_MAX, 32)?;
        reader.reserved(4)?;
        let mut table = ReplyTable::default();
        for _ in 0..count {
            let key = u128::from_le_bytes(reader.take(16)?.try_into().expect("16 bytes"));
            let last_used = reader.u64()?;
            let slots = reader.count(
                "replies of one client",
                REPLIES_PER_CLIENT_MAX,
                SLOT_WIRE_BYTES,
            )?;
            reader.reserved(4)?;
            let mut client = ClientReplies {
                last_used,
                ..ClientReplies::default()
            };
            for _ in 0..slots {
                let number = reader.u64()?;
                let digest = u128::from_le_bytes(reader.take(16)?.try_into().expect("16 bytes"));
                let log_index = reader.u64()?;
                let outcome = decode_outcome(reader)?;
                let slot = Slot {
                    digest,
                    log_index,
                    outcome,
                };
                client.bytes += slot.bytes();
                if client.slots.insert(number, slot).is_some() {
                    return Err(DecodeError::Invalid(
                        "a request number twice in the reply table",
                    ));
                }
            }
            table.bytes += client.bytes + CLIENT_BYTES;
            if table.clients.insert(key, Arc::new(client)).is_some() {
                return Err(DecodeError::Invalid("a client twice in the reply table"));
            }
            table.order.insert((last_used, key));
        }
        if table.bytes > REPLY_TABLE_BYTES_MAX {
            return Err(DecodeError::Invalid(
                "the reply table is over its byte bound",
            ));
        }
        Ok(table)
    }
}

const OUTCOME_OK: u8 = 0;
const OUTCOME_NOT_WHOLE_RECORDS: u8 = 1;
const OUTCOME_EMPTY: u8 = 2;
const OUTCOME_TOO_MANY_EVENTS: u8 = 3;
const OUTCOME_TIMESTAMP_OUT_OF_RANGE: u8 = 4;

fn encode_outcome(outcome: &Result<BatchOutcome, BatchError>, out: &mut Vec<u8>) {
    let (tag, value) = match outcome {
        Ok(_) => (OUTCOME_OK, 0),
        Err(BatchError::BodyNotWholeRecords { bytes }) => {
            (OUTCOME_NOT_WHOLE_RECORDS, *bytes as u64)
        }
        Err(BatchError::Empty) => (OUTCOME_EMPTY, 0),
        Err(BatchError::TooManyEvents { events }) => (OUTCOME_TOO_MANY_EVENTS, *events as u64),
        Err(BatchError::TimestampOutOfRange { timestamp }) => {
            (OUTCOME_TIMESTAMP_OUT_OF_RANGE, *timestamp)
        }
        Err(other) => unreachable!("batch error {other:?} has no reply-table tag"),
    };
    out.push(tag);
    out.extend_from_slice(&[0; 3]);
    match outcome {
        Ok(outcome) => {
            out.extend_from_slice(&outcome.timestamp_first.to_le_bytes());
            out.extend_from_slice(&outcome.timestamp_last.to_le_bytes());
            out.extend_from_slice(&(outcome.failures.len() as u32).to_le_bytes());
            for (index, result) in &outcome.failures {
                out.extend_from_slice(&index.to_le_bytes());
                out.extend_from_slice(&u32::from(result.code()).to_le_bytes());
            }
        }
        Err(_) => {
            out.extend_from_slice(&value.to_le_bytes());
            out.extend_from_slice(&[0; 12]);
        }
    }
}

fn decode_outcome(
    reader: &mut Reader<'_>,
) -> Result<Result<BatchOutcome, BatchError>, DecodeError> {
    let tag = reader.u8()?;
    reader.reserved(3)?;
    let first = reader.u64()?;
    let second = reader.u64()?;
    let count = reader.count(
        "failures of one batch",
        tally_engine::limits::BATCH_EVENTS_MAX,
        8,
    )?;
    let refused = |error: BatchError| -> Result<Result<BatchOutcome, BatchError>, DecodeError> {
        if second != 0 || count != 0 {
            return Err(DecodeError::Invalid(
                "a refused batch with failures in the reply table",
            ));
        }
        Ok(Err(error))
    };
    match tag {
        OUTCOME_OK => {}
        OUTCOME_NOT_WHOLE_RECORDS => {
            return refused(BatchError::BodyNotWholeRecords {
                bytes: usize::try_from(first)
                    .map_err(|_| DecodeError::Invalid("a batch size past usize"))?,
            })
        }
        OUTCOME_EMPTY => return refused(BatchError::Empty),
        OUTCOME_TOO_MANY_EVENTS => {
            return refused(BatchError::TooManyEvents {
                events: usize::try_from(first)
                    .map_err(|_| DecodeError::Invalid("an event count past usize"))?,
            })
        }
        OUTCOME_TIMESTAMP_OUT_OF_RANGE => {
            return refused(BatchError::TimestampOutOfRange { timestamp: first })
        }
        _ => {
            return Err(DecodeError::Invalid(
                "an unknown outcome in the reply table",
            ))
        }
    }
    let mut failures = Vec::with_capacity(count);
    for _ in 0..count {
        let index = reader.u32()?;
        let code = reader.u32()?;
        let result = u16::try_from(code)
            .ok()
            .and_then(EventResult::from_code)
            .ok_or(DecodeError::Invalid(
                "an unknown result code in the reply table",
            ))?;
        failures.push((index, result));
    }
    Ok(Ok(BatchOutcome {
        failures,
        timestamp_first: first,
        timestamp_last: second,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn origin(client: u128, number: u64, digest: u128) -> Origin {
        Origin {
            client,
            number,
            digest,
        }
    }

    fn failed(failures: usize) -> Result<BatchOutcome, BatchError> {
        Ok(BatchOutcome {
            failures: (0..failures as u32)
                .map(|index| (index, EventResult::ExceedsCredits))
                .collect(),
            timestamp_first: 100,
            timestamp_last: 100 + failures as u64,
        })
    }

    fn round_trip(table: &ReplyTable) -> ReplyTable {
        let mut bytes = Vec::new();
        table.encode(&mut bytes);
        let mut reader = Reader::new(&bytes);
        let decoded = ReplyTable::decode(&mut reader).expect("decodes");
        reader.finish().expect("whole");
        decoded
    }

    /// Proves a recorded request is replayed with its original outcome and log index, the
    /// same number with another digest is refused, and an unknown number is left to apply.
    #[test]
    fn replays_and_refuses_by_number_and_digest() {
        let mut table = ReplyTable::default();
        assert_eq!(table.answer(&origin(1, 5, 9), 10), None);
        table.record(&origin(1, 5, 9), 10, &failed(1));
        assert_eq!(
            table.answer(&origin(1, 5, 9), 11),
            Some(BatchAnswer::Replayed {
                log_index: 10,
                outcome: failed(1)
            })
        );
        assert_eq!(
            table.answer(&origin(1, 5, 8), 12),
            Some(BatchAnswer::NumberReused { log_index: 10 })
        );
        // Another client's number 5 is its own.
        assert_eq!(table.answer(&origin(2, 5, 9), 13), None);
        assert_eq!(table.answer(&origin(1, 6, 9), 13), None);
        assert_eq!(round_trip(&table), table);
    }

    /// Proves a client keeps its newest `REPLIES_PER_CLIENT_MAX` numbers (whatever the order
    /// they were recorded in) and at most `REPLY_BYTES_PER_CLIENT_MAX` of them.
    #[test]
    fn each_client_keeps_its_newest_numbers() {
        let mut table = ReplyTable::default();
        let count = REPLIES_PER_CLIENT_MAX as u64 + 10;
        for number in (1..=count).rev() {
            table.record(&origin(1, number, 0), count + 1 - number, &failed(0));
        }
        for number in 1..=count {
            let kept = table.answer(&origin(1, number, 0), 1000).is_some();
            assert_eq!(kept, number > 10, "number {number}");
        }
        // Full failure lists: 64 KiB each, so 1 MiB holds 15 of them.
        let mut table = ReplyTable::default();
        for number in 1..=20 {
            table.record(&origin(1, number, 0), number, &failed(8189));
        }
        assert!(table.bytes() <= REPLY_BYTES_PER_CLIENT_MAX + CLIENT_BYTES);
        assert!(table.answer(&origin(1, 20, 0), 30).is_some());
        assert!(table.answer(&origin(1, 1, 0), 30).is_none());
        // One reply over the per-client bound is still kept: the newest always is.
        let mut table = ReplyTable::default();
        table.record(&origin(1, 1, 0), 1, &failed(8189));
        assert!(table.answer(&origin(1, 1, 0), 2).is_some());
        assert_eq!(round_trip(&table), table);
    }

    /// Proves past `REPLY_CLIENTS_MAX` the client whose last request is oldest in the log goes
    /// first, a replay counting as use, and the accounting returns to what is held.
    #[test]
    fn the_least_recently_used_client_goes_first() {
        let mut table = ReplyTable::default();
        for client in 0..REPLY_CLIENTS_MAX as u128 {
            table.record(&origin(client, 1, 0), client as u64, &failed(0));
        }
        // Client 0 is the oldest, but a replay renews it: client 1 goes instead.
        assert!(table.answer(&origin(0, 1, 0), 1 << 40).is_some());
        table.record(&origin(u128::MAX, 1, 0), (1 << 40) + 1, &failed(0));
        assert_eq!(table.clients(), REPLY_CLIENTS_MAX);
        assert!(table.answer(&origin(1, 1, 0), 1 << 41).is_none());
        assert!(table.answer(&origin(0, 1, 0), 1 << 41).is_some());
        assert!(table.answer(&origin(2, 1, 0), 1 << 41).is_some());
        assert_eq!(
            table.bytes(),
            REPLY_CLIENTS_MAX * (CLIENT_BYTES + SLOT_BYTES)
        );
        assert_eq!(round_trip(&table), table);
    }

    /// Proves a clone (a snapshot's view) keeps the table as it was when taken while the
    /// table goes on: answers recorded, answered (which renews the order) and evicted after
    /// it change the table, not the clone.
    #[test]
    fn a_clone_is_not_changed_by_later_writes() {
        let mut table = ReplyTable::default();
        for number in 1..=REPLIES_PER_CLIENT_MAX as u64 {
            table.record(&origin(1, number, 0), number, &failed(1));
        }
        table.record(&origin(2, 1, 0), 100, &failed(0));
        let view = table.clone();
        let mut before = Vec::new();
        view.encode(&mut before);
        assert!(table.answer(&origin(1, 1, 0), 200).is_some());
        table.record(&origin(1, 99, 0), 201, &failed(2));
        table.record(&origin(3, 1, 0), 202, &failed(0));
        assert_ne!(table, view);
        let mut after = Vec::new();
        view.encode(&mut after);
        assert_eq!(after, before);
        assert!(view.clone().answer(&origin(1, 99, 0), 300).is_none());
    }

    /// Proves every refused batch error round-trips through the snapshot section.
    #[test]
    fn refused_batches_round_trip() {
        let mut table = ReplyTable::default();
        let errors = [
            BatchError::BodyNotWholeRecords { bytes: 130 },
            BatchError::Empty,
            BatchError::TooManyEvents { events: 9000 },
            BatchError::TimestampOutOfRange {
                timestamp: u64::MAX,
            },
        ];
        for (number, error) in errors.into_iter().enumerate() {
            table.record(&origin(3, number as u64, 1), 7, &Err(error));
        }
        assert_eq!(round_trip(&table), table);
    }

    proptest! {
        /// Proves random bytes and mutated sections never panic the decoder.
        #[test]
        fn random_sections_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400),
                                       at in any::<prop::sample::Index>(), value in any::<u8>()) {
            let _ = ReplyTable::decode(&mut Reader::new(&bytes));
            let mut table = ReplyTable::default();
            table.record(&origin(1, 2, 3), 4, &failed(3));
            table.record(&origin(5, 6, 7), 8, &Err(BatchError::Empty));
            let mut section = Vec::new();
            table.encode(&mut section);
            let at = at.index(section.len());
            section[at] = value;
            let _ = ReplyTable::decode(&mut Reader::new(&section));
        }
    }
}
