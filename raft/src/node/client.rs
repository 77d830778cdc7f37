//! A client of the node protocol (`protocol.rs`): one [`Connection`] to one node, with many
//! requests in flight, and a [`Client`] for a cluster that finds the leader and retries.
//!
//! Retrying a submit is safe: every event carries its own id, so an event that was applied
//! the first time answers `exists` the second time (with the same fields) and changes nothing.
//! The client retries only where the outcome is unknown or the node could not take the batch
//! (not the leader, unavailable, connection lost); a refusal on the merits is returned.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, timeout, Instant};

use super::protocol::{
    answer_kind, decode_answer, decode_records, decode_state, decode_submit_answer, encode_request,
    NodeState, Refusal, Request, Status, SubmitAnswer,
};
use crate::net::tls::looks_like_tls;
use crate::net::{read_frame, write_frame, ClientTls, Frame, Stream};
use crate::replication::error::DecodeError;
use tally_engine::limits::RECORD_BYTES;
use tally_engine::Operation;

/// Largest answer a client accepts: a lookup of a full batch of records plus headers.
pub const ANSWER_BYTES_MAX: usize = 2 * 1024 * 1024;
/// Time for a TLS handshake with a node: a few round trips. A plaintext server never answers
/// a ClientHello, so without it such a mistake would hang.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests written ahead of the socket per connection.
const WRITE_QUEUE_FRAMES: usize = 1024;

/// Why a request got no answer from the node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
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
    #[error("malformed answer from {addr}: {source}")]
    Decode { addr: String, source: DecodeError },
    #[error("{0}")]
    Refused(Refusal),
    #[error("no node answered within {0:?}")]
    Timeout(Duration),
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Frame>>>>;

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
    /// The operator credential presented with every node-protocol request.
    credential: Bytes,
    next_id: Mutex<u64>,
}

impl Connection {
    /// Connect to the node's client listener at `addr`: TLS verified against `tls` (its CA,
    /// the host of `addr` as the name the node's certificate must carry), or plain TCP if
    /// `None` (a node configured with `insecure_plaintext`).
    pub async fn connect(addr: &str, tls: Option<&ClientTls>) -> Result<Connection, ClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let stream = match tls {
            None => Stream::Plain(stream),
            Some(tls) => tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.handshake(stream, addr))
                .await
                .map_err(|_| ClientError::Tls {
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
                        ClientError::Tls {
                            addr: addr.to_owned(),
                            source,
                        }
                    } else {
                        ClientError::Connect {
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
                let Ok(Some(frame)) = read_frame(&mut reader, ANSWER_BYTES_MAX).await else {
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
            credential: Bytes::new(),
            next_id: Mutex::new(1),
        })
    }

    /// Connect to the node at `addr` (see [`Connection::connect`]) as the operator holding
    /// `credential`.
    pub async fn connect_as(
        addr: &str,
        credential: &[u8],
        tls: Option<&ClientTls>,
    ) -> Result<Connection, ClientError> {
        let mut connection = Connection::connect(addr, tls).await?;
        connection.credential = Bytes::copy_from_slice(credential);
        Ok(connection)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the connection can still carry requests.
    pub fn is_open(&self) -> bool {
        !self.writes.is_closed() && !self.closed.load(Ordering::SeqCst)
    }

    /// Send one frame of `kind` with `payload` and wait for the frame that answers it (any
    /// protocol spoken on the node's port: the frame's request id pairs them).
    pub async fn call(&self, kind: u8, payload: Bytes) -> Result<Frame, ClientError> {
        let lost = || {
            if self.tls_answered.load(Ordering::SeqCst) {
                ClientError::Tls {
                    addr: self.addr.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "the node answered in TLS: it serves TLS; give the cluster CA \
                         (TALLY_CA or --ca) instead of --insecure-plaintext",
                    ),
                }
            } else {
                ClientError::ConnectionLost(self.addr.clone())
            }
        };
        let id = {
            let mut next = self.next_id.lock().map_err(|_| lost())?;
            *next += 1;
            *next
        };
        let (done, answer) = oneshot::channel();
        self.pending.lock().map_err(|_| lost())?.insert(id, done);
        let frame = Frame {
            kind,
            request_id: id,
            payload,
        };
        if self.closed.load(Ordering::SeqCst) || self.writes.send(frame).await.is_err() {
            if let Ok(mut pending) = self.pending.lock() {
                pending.remove(&id);
            }
            return Err(lost());
        }
        answer.await.map_err(|_| lost())
    }

    /// Send `request`; the answer's body if the node served it, or its refusal.
    pub async fn request(&self, request: &Request) -> Result<Result<Bytes, Refusal>, ClientError> {
        let (kind, payload) = encode_request(request, &self.credential);
        let frame = self.call(kind, Bytes::from(payload)).await?;
        let decode = |source| ClientError::Decode {
            addr: self.addr.clone(),
            source,
        };
        if frame.kind != answer_kind(kind) {
            return Err(decode(DecodeError::UnknownKind(frame.kind)));
        }
        match decode_answer(&frame.payload).map_err(decode)? {
            Ok(body) => Ok(Ok(frame.payload.slice_ref(body))),
            Err(refusal) => Ok(Err(refusal)),
        }
    }

    /// The node's state (`audit`: with digest and ledger totals), served from its own applied
    /// state: what this replica has, not necessarily the cluster's latest.
    pub async fn state(&self, flags: u8) -> Result<NodeState, ClientError> {
        let body = self
            .request(&Request::State { flags })
            .await?
            .map_err(ClientError::Refused)?;
        decode_state(&body).map_err(|source| ClientError::Decode {
            addr: self.addr.clone(),
            source,
        })
    }

    /// The transfers with these ids that this node has (records as in docs/records.md).
    pub async fn lookup_transfers(
        &self,
        flags: u8,
        ids: Vec<u128>,
    ) -> Result<Vec<[u8; RECORD_BYTES]>, ClientError> {
        let body = self
            .request(&Request::LookupTransfers { flags, ids })
            .await?
            .map_err(ClientError::Refused)?;
        decode_records(&body).map_err(|source| ClientError::Decode {
            addr: self.addr.clone(),
            source,
        })
    }

    /// The accounts with these ids that this node has.
    pub async fn lookup_accounts(
        &self,
        flags: u8,
        ids: Vec<u128>,
    ) -> Result<Vec<[u8; RECORD_BYTES]>, ClientError> {
        let body = self
            .request(&Request::LookupAccounts { flags, ids })
            .await?
            .map_err(ClientError::Refused)?;
        decode_records(&body).map_err(|source| ClientError::Decode {
            addr: self.addr.clone(),
            source,
        })
    }
}

/// How long a [`Client`] keeps trying, and how it backs off between tries.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Give up on a request after this long (an election takes well under a second; a
    /// restart of a majority may take several).
    pub deadline: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            deadline: Duration::from_secs(30),
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(500),
        }
    }
}

/// A client of a cluster: sends writes to the leader, following `NotLeader` hints and moving
/// on from nodes that do not answer.
pub struct Client {
    addrs: Vec<String>,
    credential: Vec<u8>,
    tls: Option<ClientTls>,
    policy: RetryPolicy,
    target: Mutex<usize>,
    connections: tokio::sync::Mutex<HashMap<String, Arc<Connection>>>,
}

impl Client {
    /// A client of the nodes at `addrs`, presenting the operator credential `credential`.
    pub fn new(addrs: Vec<String>, credential: &[u8], policy: RetryPolicy) -> Client {
        Client {
            addrs,
            credential: credential.to_vec(),
            tls: None,
            policy,
            target: Mutex::new(0),
            connections: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Speak TLS to the nodes, verified against `tls` (plain TCP if `None`).
    pub fn with_tls(mut self, tls: Option<ClientTls>) -> Client {
        self.tls = tls;
        self
    }

    fn target(&self) -> String {
        let index = self.target.lock().map_or(0, |target| *target);
        self.addrs[index % self.addrs.len().max(1)].clone()
    }

    fn retarget(&self, addr: Option<&str>) {
        if let Ok(mut target) = self.target.lock() {
            *target = match addr.and_then(|addr| self.addrs.iter().position(|a| a == addr)) {
                Some(index) => index,
                None => *target + 1,
            };
        }
    }

    async fn connection(&self, addr: &str) -> Result<Arc<Connection>, ClientError> {
        let mut connections = self.connections.lock().await;
        if let Some(connection) = connections.get(addr).filter(|c| c.is_open()) {
            return Ok(Arc::clone(connection));
        }
        let connection =
            Arc::new(Connection::connect_as(addr, &self.credential, self.tls.as_ref()).await?);
        connections.insert(addr.to_owned(), Arc::clone(&connection));
        Ok(connection)
    }

    async fn forget(&self, addr: &str) {
        self.connections.lock().await.remove(addr);
    }

    /// Send `request` to the leader, retrying where the outcome is unknown or the node could
    /// not serve it, until the policy's deadline.
    pub async fn request(&self, request: &Request) -> Result<Bytes, ClientError> {
        if self.addrs.is_empty() {
            return Err(ClientError::Timeout(Duration::ZERO));
        }
        let started = Instant::now();
        let mut backoff = self.policy.backoff_min;
        let mut last_error = None;
        while started.elapsed() < self.policy.deadline {
            let addr = self.target();
            let left = self.policy.deadline.saturating_sub(started.elapsed());
            let attempt = async {
                let connection = self.connection(&addr).await?;
                connection.request(request).await
            };
            match timeout(left, attempt).await {
                Ok(Ok(Ok(body))) => return Ok(body),
                Ok(Ok(Err(refusal))) => match refusal.status {
                    Status::NotLeader => {
                        let hinted = refusal.leader.as_ref().map(|(_, addr)| addr.as_str());
                        let known = hinted.is_some_and(|hint| self.addrs.iter().any(|a| a == hint));
                        self.retarget(hinted);
                        last_error = Some(ClientError::Refused(refusal));
                        if known {
                            continue;
                        }
                    }
                    Status::Unavailable => {
                        self.retarget(None);
                        last_error = Some(ClientError::Refused(refusal));
                    }
                    _ => return Err(ClientError::Refused(refusal)),
                },
                // A TLS failure is a configuration error, not a passing fault: say so at once.
                Ok(Err(error @ ClientError::Tls { .. })) => return Err(error),
                Ok(Err(error)) => {
                    self.forget(&addr).await;
                    self.retarget(None);
                    last_error = Some(error);
                }
                Err(_) => break,
            }
            sleep(backoff).await;
            backoff = (backoff * 2).min(self.policy.backoff_max);
        }
        Err(last_error.unwrap_or(ClientError::Timeout(self.policy.deadline)))
    }

    /// Submit one batch and return the engine's answer for it.
    pub async fn submit(
        &self,
        operation: Operation,
        body: Bytes,
    ) -> Result<SubmitAnswer, ClientError> {
        let body = self.request(&Request::Submit { operation, body }).await?;
        decode_submit_answer(&body).map_err(|source| ClientError::Decode {
            addr: self.target(),
            source,
        })
    }
}
