//! The recorded history of a run: every batch with its body, when it was invoked and when it
//! completed, and its outcome, from which each event's outcome follows — `ok`, `failed` (a
//! definite rejection, with the engine's code when it gave one) or `unknown`.

use bytes::Bytes;
use tally_engine::limits::RECORD_BYTES;
use tally_engine::EventResult;

use crate::cluster::Answer;
use crate::workload::Kind;

/// How a batch ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Committed and applied; the answer lists the failed events.
    Committed(Answer),
    /// Refused as a whole: nothing was applied.
    Refused(String),
    /// No answer: each event may or may not have been applied.
    Unknown(String),
}

/// One submitted batch.
#[derive(Clone, Debug)]
pub struct BatchRecord {
    pub client: u32,
    pub kind: Kind,
    pub body: Bytes,
    /// Microseconds since the run started.
    pub invoke_us: u64,
    pub complete_us: u64,
    pub outcome: Outcome,
}

/// What happened to one event, as its client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventOutcome {
    /// Applied: `ok`, or `exists` (a retry found the first attempt's event).
    Ok,
    /// Definitely not applied; the engine's code unless the whole batch was refused.
    Failed(Option<EventResult>),
    Unknown,
}

impl BatchRecord {
    pub fn events(&self) -> usize {
        self.body.len() / RECORD_BYTES
    }

    /// Event `index`'s record.
    pub fn record(&self, index: usize) -> Option<&[u8; RECORD_BYTES]> {
        self.body
            .get(index * RECORD_BYTES..(index + 1) * RECORD_BYTES)
            .and_then(|bytes| bytes.try_into().ok())
    }

    /// The id of event `index` (every record starts with its id).
    pub fn id(&self, index: usize) -> u128 {
        self.record(index).map_or(0, |record| {
            let mut id = [0u8; 16];
            id.copy_from_slice(&record[..16]);
            u128::from_le_bytes(id)
        })
    }

    /// What the engine answered for event `index` of a committed batch when it did not
    /// apply it as sent (`exists` included); `None` if it did, or the batch did not commit.
    pub fn result(&self, index: usize) -> Option<EventResult> {
        let Outcome::Committed(answer) = &self.outcome else {
            return None;
        };
        // Failures are in index order.
        let at = answer
            .failures
            .binary_search_by_key(&(index as u32), |(i, _)| *i)
            .ok()?;
        Some(answer.failures[at].1)
    }

    /// Event `index`'s outcome.
    pub fn event_outcome(&self, index: usize) -> EventOutcome {
        match &self.outcome {
            Outcome::Committed(_) => match self.result(index) {
                None | Some(EventResult::Exists) => EventOutcome::Ok,
                failed => EventOutcome::Failed(failed),
            },
            Outcome::Refused(_) => EventOutcome::Failed(None),
            Outcome::Unknown(_) => EventOutcome::Unknown,
        }
    }

    /// Every event's outcome, in batch order.
    pub fn event_outcomes(&self) -> Vec<EventOutcome> {
        let events = self.events();
        match &self.outcome {
            Outcome::Committed(answer) => {
                let mut outcomes = vec![EventOutcome::Ok; events];
                for (index, result) in &answer.failures {
                    if let Some(outcome) = outcomes.get_mut(*index as usize) {
                        if *result != EventResult::Exists {
                            *outcome = EventOutcome::Failed(Some(*result));
                        }
                    }
                }
                outcomes
            }
            Outcome::Refused(_) => vec![EventOutcome::Failed(None); events],
            Outcome::Unknown(_) => vec![EventOutcome::Unknown; events],
        }
    }
}

/// Every batch of a run, in completion order.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub batches: Vec<BatchRecord>,
}

impl History {
    pub fn events(&self) -> usize {
        self.batches.iter().map(BatchRecord::events).sum()
    }
}
