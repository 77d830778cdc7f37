//! Packing: the concurrent calls of one create operation into one request at a time.

use std::sync::Arc;

use bytes::Bytes;
use tally_engine::limits::RECORD_BYTES;
use tokio::sync::mpsc;

use super::{Call, ClientError, Inner};
use crate::protocol::{decode_create_reply, Failure, Operation};

/// The packer of one create operation: one request in flight; calls queued meanwhile go
/// together into the next one.
pub(super) async fn pack(inner: Arc<Inner>, operation: Operation, mut queue: mpsc::Receiver<Call>) {
    let mut carried: Option<Call> = None;
    loop {
        let first = match carried.take() {
            Some(call) => call,
            None => match queue.recv().await {
                Some(call) => call,
                None => return,
            },
        };
        let limit = inner.request_events_max().await;
        let mut calls = vec![first];
        let mut events = calls[0].events;
        while !calls[0].alone {
            match queue.try_recv() {
                Ok(next) if next.alone || events + next.events > limit => {
                    carried = Some(next);
                    break;
                }
                Ok(next) => {
                    events += next.events;
                    calls.push(next);
                }
                Err(_) => break,
            }
        }
        // One call goes out as it came; several are joined once (up to 1 MiB).
        let body = match &calls[..] {
            [only] => only.body.clone(),
            _ => {
                let mut joined = Vec::with_capacity(events * RECORD_BYTES);
                for call in &calls {
                    joined.extend_from_slice(&call.body);
                }
                Bytes::from(joined)
            }
        };
        let result = inner.call(operation, body, 0).await.and_then(|reply| {
            decode_create_reply(&reply.body)
                .map(|created| (reply.commit_index, created))
                .map_err(|error| ClientError::Decode(error.to_string()))
        });
        match result {
            Ok((commit_index, reply)) => {
                let mut start = 0u32;
                for call in calls {
                    let end = start + call.events as u32;
                    let own = reply
                        .failures
                        .iter()
                        .filter(|failure| (start..end).contains(&failure.index))
                        .map(|failure| Failure {
                            index: failure.index - start,
                            code: failure.code,
                        })
                        .collect();
                    let first = reply.timestamp_first + u64::from(start);
                    let _ = call.done.send(Ok((commit_index, first, own)));
                    start = end;
                }
            }
            Err(error) => {
                for call in calls {
                    let _ = call.done.send(Err(error.clone()));
                }
            }
        }
    }
}
