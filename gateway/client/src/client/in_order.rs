//! The in-order pipeline behind [`Client::create_in_order`](super::Client::create_in_order):
//! several create requests in flight on one connection, applied in the order given whatever
//! is refused (`FLAG_IN_ORDER`).

use std::sync::Arc;

use bytes::Bytes;
use tally_engine::limits::RECORD_BYTES;
use tokio::sync::mpsc;

use super::{ClientError, Created, Inner, Reply, SessionError};
use crate::connection::Connection;
use crate::protocol::{decode_create_reply, decode_refusal, Operation, Status, FLAG_IN_ORDER};

/// Requests one in-order pipeline may keep in flight: well within the node's per-session
/// limit (`SESSION_IN_FLIGHT_MAX`, 16), leaving room for the client's other calls.
pub const IN_ORDER_WINDOW_MAX: usize = 8;

/// A create reply as a [`Created`].
fn created(reply: &Reply) -> Result<Created, ClientError> {
    let body =
        decode_create_reply(&reply.body).map_err(|error| ClientError::Decode(error.to_string()))?;
    Created::of(reply.commit_index, body)
}

/// How one try of an in-order request ended.
enum Attempt {
    Done(Created),
    /// A refusal no retry fixes.
    Refused(ClientError),
    /// Not applied, or not known to be: send it again (after the ones before it).
    Again,
}

/// The task behind [`Client::create_in_order`].
pub(super) async fn run(
    inner: Arc<Inner>,
    operation: Operation,
    window: usize,
    mut bodies: mpsc::Receiver<Bytes>,
    results: mpsc::UnboundedSender<Result<Created, ClientError>>,
) {
    // Each request in flight: its body, the number it went out with, the wait for its reply.
    let mut flight: std::collections::VecDeque<(
        Bytes,
        Option<u64>,
        tokio::task::JoinHandle<Attempt>,
    )> = std::collections::VecDeque::new();
    // The connection and session every request in flight went out on: a request is never
    // sent on another while earlier ones are in flight, so none can overtake another.
    let mut pinned: Option<(Arc<Connection>, u64)> = None;
    let mut open = true;
    // Some request failed: send nothing new until every request in flight is answered.
    let mut recovering = false;
    loop {
        let may_send = open && !recovering && flight.len() < window;
        if flight.is_empty() && !may_send {
            return;
        }
        tokio::select! {
            body = bodies.recv(), if may_send => {
                let Some(body) = body else {
                    open = false;
                    continue;
                };
                let limit = inner.request_events_max().await;
                let events = body.len() / RECORD_BYTES;
                if body.is_empty() || !body.len().is_multiple_of(RECORD_BYTES) || events > limit {
                    let _ = results.send(Err(ClientError::Invalid(format!(
                        "a body of {} bytes: a request carries 1..={limit} whole 128-byte records",
                        body.len()
                    ))));
                    return;
                }
                // Queued here, in the pipeline's order, so the requests go out in it; only
                // the waits for their replies run beside one another.
                let (number, attempt) = match inner.number_on(&mut pinned).await {
                    Some((connection, session, number)) => {
                        let header = inner.header(session, number, FLAG_IN_ORDER);
                        let sent = inner.send_request(&connection, operation, &header, &body).await;
                        let inner = Arc::clone(&inner);
                        (Some(number), tokio::spawn(async move {
                            let reply = match sent {
                                Ok(answer) => inner.reply(&connection, answer).await,
                                Err(error) => Err(error),
                            };
                            attempt(reply)
                        }))
                    }
                    None => (None, tokio::spawn(async { Attempt::Again })),
                };
                flight.push_back((body, number, attempt));
            }
            attempt = async { (&mut flight.front_mut().expect("in flight").2).await }, if !flight.is_empty() => {
                let (body, number, _) = flight.pop_front().expect("in flight");
                let result = match attempt.unwrap_or(Attempt::Again) {
                    Attempt::Done(created) => Ok(created),
                    Attempt::Refused(error) => Err(error),
                    Attempt::Again => {
                        // Every request after this one was refused with it (or is in flight
                        // behind it on the same connection): once the ones before it are
                        // answered, send it alone, with every retry a call gets, under the
                        // number it went out with (if it was applied, the cluster's reply
                        // table answers with the original reply).
                        recovering = true;
                        inner
                            .call_numbered(operation, body, 0, number)
                            .await
                            .and_then(|reply| created(&reply))
                    }
                };
                let failed = result.is_err();
                let _ = results.send(result);
                if failed {
                    return;
                }
                if flight.is_empty() && recovering {
                    recovering = false;
                    pinned = None;
                }
            }
        }
    }
}

impl Inner {
    /// The next request number on the pinned connection and session (pinning the current
    /// ones if none is); `None` if the pinned connection is gone or the session changed.
    async fn number_on(
        &self,
        pinned: &mut Option<(Arc<Connection>, u64)>,
    ) -> Option<(Arc<Connection>, u64, u64)> {
        let Some((connection, session)) = pinned.as_ref() else {
            let (connection, session, number) = self.session().await.ok()?;
            *pinned = Some((Arc::clone(&connection), session));
            return Some((connection, session, number));
        };
        let current = self.session.lock().await;
        current.as_ref().filter(|held| {
            held.session == *session
                && Arc::ptr_eq(&held.connection, connection)
                && connection.is_open()
        })?;
        Some((Arc::clone(connection), *session, self.next_number()))
    }
}

/// How one try of an in-order create (`FLAG_IN_ORDER`, never retried by itself) ended.
fn attempt(reply: Result<Reply, SessionError>) -> Attempt {
    match reply {
        Err(SessionError::Permanent(error)) => Attempt::Refused(error),
        Err(SessionError::Transient(_)) => Attempt::Again,
        Ok(reply) if reply.status == Status::Ok => match created(&reply) {
            Ok(created) => Attempt::Done(created),
            Err(error) => Attempt::Refused(error),
        },
        Ok(reply) if reply.status.is_transient() => Attempt::Again,
        Ok(reply) => Attempt::Refused(ClientError::Refused {
            status: reply.status,
            refusal: decode_refusal(&reply.body).unwrap_or_default(),
        }),
    }
}
