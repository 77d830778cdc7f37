//! One connection to one node's client listener, with many requests in flight: requests are
//! frames (`tally_wire::frame`) written in order by one task, and answers are matched to
//! their requests by the frame's request id as they come (they may come out of order). The
//! gateway client ([`crate::client`]) keeps its sessions on these.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use tally_wire::tls::looks_like_tls;
use tally_wire::{read_frame, write_frame, ClientTls, Frame, Stream};

use crate::limits::REPLY_PAYLOAD_BYTES_MAX;

/// Time for a TLS handshake with a node: a few round trips. A plaintext server never answers
/// a ClientHello, so without it such a mistake would hang.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests written ahead of the socket per connection.
const WRITE_QUEUE_FRAMES: usize = 1024;

/// Why a request got no answer from the node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    /// The node is not the one the CA vouches for, or does not speak TLS (or speaks it where
    /// plaintext was expected). Retrying does not help.
    #[error("{addr}: {source}")]
    Tls {
        addr: String,
        source: std::io::Error,
    },
    #[error("connection to {0} lost before the answer came: the outcome is unknown")]
    ConnectionLost(String),
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Frame>>>>;

/// The answer to come for one request queued by [`Connection::send`].
pub struct Answer(oneshot::Receiver<Frame>);

/// One connection to one node. Requests may be sent from many tasks at once.
pub struct Connection {
    addr: String,
    writes: mpsc::Sender<Frame>,
    pending: Pending,
    /// Set by the reader when the connection ends, before it drops the waiters.
    closed: Arc<AtomicBool>,
    /// Set by the reader when the node answered in TLS: a TLS port spoken to in plain TCP,
    /// which no retry fixes.
    tls_answered: Arc<AtomicBool>,
    next_id: Mutex<u64>,
}

impl Connection {
    /// Connect to the node's client listener at `addr`: TLS verified against `tls` (its CA,
    /// the host of `addr` as the name the node's certificate must carry), or plain TCP if
    /// `None` (a node configured with `insecure_plaintext`).
    pub async fn connect(
        addr: &str,
        tls: Option<&ClientTls>,
    ) -> Result<Connection, ConnectionError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ConnectionError::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let stream = match tls {
            None => Stream::Plain(stream),
            Some(tls) => tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.handshake(stream, addr))
                .await
                .map_err(|_| ConnectionError::Tls {
                    addr: addr.to_owned(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "no TLS handshake within {HANDSHAKE_TIMEOUT:?} (is it a TLS port?)"
                        ),
                    ),
                })?
                .map_err(|source| {
                    // A closed connection may pass (a full connection budget); a certificate
                    // or protocol failure does not.
                    if source.kind() == std::io::ErrorKind::InvalidData {
                        ConnectionError::Tls {
                            addr: addr.to_owned(),
                            source,
                        }
                    } else {
                        ConnectionError::Connect {
                            addr: addr.to_owned(),
                            source,
                        }
                    }
                })?,
        };
        let (reader, mut writer) = tokio::io::split(stream);
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let (writes, mut queue) = mpsc::channel::<Frame>(WRITE_QUEUE_FRAMES);
        tokio::spawn(async move {
            while let Some(frame) = queue.recv().await {
                if write_frame(&mut writer, &frame).await.is_err() {
                    break;
                }
            }
            let _ = writer.shutdown().await;
        });
        let answers = Arc::clone(&pending);
        let closed = Arc::new(AtomicBool::new(false));
        let reader_closed = Arc::clone(&closed);
        let tls_answered = Arc::new(AtomicBool::new(false));
        let reader_tls_answered = Arc::clone(&tls_answered);
        tokio::spawn(async move {
            // The first bytes of the first answer tell a TLS port spoken to in plain TCP: its
            // alert record is shorter than a frame header.
            let mut reader = tokio::io::BufReader::new(reader);
            if reader.fill_buf().await.is_ok_and(looks_like_tls) {
                reader_tls_answered.store(true, Ordering::SeqCst);
            }
            while !reader_tls_answered.load(Ordering::SeqCst) {
                let Ok(Some(frame)) = read_frame(&mut reader, REPLY_PAYLOAD_BYTES_MAX).await else {
                    break;
                };
                let waiter = answers
                    .lock()
                    .ok()
                    .and_then(|mut pending| pending.remove(&frame.request_id));
                if let Some(waiter) = waiter {
                    let _ = waiter.send(frame);
                }
            }
            // Dropping the waiters tells every request in flight that the connection is gone;
            // `call` checks the flag after registering, so no request waits forever.
            reader_closed.store(true, Ordering::SeqCst);
            if let Ok(mut pending) = answers.lock() {
                pending.clear();
            }
        });
        Ok(Connection {
            addr: addr.to_owned(),
            writes,
            pending,
            closed,
            tls_answered,
            next_id: Mutex::new(1),
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the connection can still carry requests.
    pub fn is_open(&self) -> bool {
        !self.writes.is_closed() && !self.closed.load(Ordering::SeqCst)
    }

    /// Send one frame of `kind` with `payload` and wait for the frame that answers it (the
    /// frame's request id pairs them).
    pub async fn call(&self, kind: u8, payload: Bytes) -> Result<Frame, ConnectionError> {
        let answer = self.send(kind, payload).await?;
        self.answer(answer).await
    }

    /// Queue one frame of `kind` with `payload` for writing and return the wait for its
    /// answer ([`Connection::answer`]). Frames queued one after another by one task are
    /// written in that order, which is what lets a caller keep several requests in flight
    /// and still have the node see them in its order.
    pub async fn send(&self, kind: u8, payload: Bytes) -> Result<Answer, ConnectionError> {
        let id = {
            let mut next = self.next_id.lock().map_err(|_| self.lost())?;
            *next += 1;
            *next
        };
        let (done, answer) = oneshot::channel();
        self.pending
            .lock()
            .map_err(|_| self.lost())?
            .insert(id, done);
        let frame = Frame {
            kind,
            request_id: id,
            payload,
        };
        if self.closed.load(Ordering::SeqCst) || self.writes.send(frame).await.is_err() {
            if let Ok(mut pending) = self.pending.lock() {
                pending.remove(&id);
            }
            return Err(self.lost());
        }
        Ok(Answer(answer))
    }

    /// The frame answering a request [`Connection::send`] queued.
    pub async fn answer(&self, answer: Answer) -> Result<Frame, ConnectionError> {
        answer.0.await.map_err(|_| self.lost())
    }

    /// Why a request lost its answer: the connection ended, or it was never TLS-compatible.
    fn lost(&self) -> ConnectionError {
        if self.tls_answered.load(Ordering::SeqCst) {
            ConnectionError::Tls {
                addr: self.addr.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the node answered in TLS: it serves TLS; give the cluster CA \
                     (TALLY_CA or --ca) instead of --insecure-plaintext",
                ),
            }
        } else {
            ConnectionError::ConnectionLost(self.addr.clone())
        }
    }
}
