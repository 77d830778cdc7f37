//! The gateway's Rust client (async, tokio): finds the leader, keeps a session, packs the
//! concurrent calls of many tasks into one request per operation (as TigerBeetle's clients
//! do), retries with the same ids, and hands each call its own per-event results.
//!
//! Retries never apply anything twice. Request numbers come from one counter for the client's
//! whole life, across sessions and nodes, and a request whose outcome was not seen (a timeout,
//! a lost connection, a leader that stopped leading or was killed) is sent again under the
//! same number: the cluster keeps each client's last answers in its replicated reply table,
//! so whichever node leads then answers with the original reply — a failure included — and
//! applies nothing again. Past the table's window, every event still carries its own id: one
//! that was applied answers `exists`, one that failed for a reason that may change answers
//! `id_already_failed`.
//!
//! Packing: while a request of an operation is in flight, calls of that operation queue; the
//! next request carries as many queued calls as fit (`request_events_max` events), and the
//! reply's failures are split back by event index. A call that ends inside an open linked
//! chain is sent on its own, so a chain never runs into another caller's events.

use std::sync::Arc;
use std::time::Duration;

mod config;
mod in_order;
mod pack;
mod proofs;
mod query;
mod settlement;

pub use config::{ClientConfig, Reads};
pub use in_order::IN_ORDER_WINDOW_MAX;
pub use query::HistoryReached;

use crate::connection::{Answer, Connection, ConnectionError};
use bytes::Bytes;
use tally_engine::limits::RECORD_BYTES;
use tally_engine::records::{Account, Settlement, Trade, Transfer, TransferFlags};
use tally_engine::{Balances, EventResult, QueryPage, StatementEntry, StatementFilter};
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::time::{sleep, timeout, Instant};

use crate::limits::{CREDENTIAL_BYTES_MAX, CREDENTIAL_BYTES_MIN};
use crate::protocol::{
    decode_accounts, decode_balances, decode_node_state, decode_refusal, decode_registered,
    decode_reply, decode_statement_reply, decode_trades, decode_transfers, encode_admin,
    encode_balances_as_of_request, encode_ids, encode_node_state_request, encode_request,
    encode_statement_request, Admin, CreateReply, Failure, NodeState, Operation, Refusal,
    RequestHeader, Status, FLAG_LINEARIZABLE,
};

/// One packing queue per create operation (accounts, transfers, trades, settlements,
/// instructions, settlement commands), in that order.
const CREATE_QUEUES: usize = 6;

/// Why a call failed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("refused ({status:?}): {}", refusal.message)]
    Refused { status: Status, refusal: Refusal },
    /// Refused by the library before anything was sent: the call could never succeed (a
    /// credential of the wrong length, a body that is not whole records, more events than
    /// one request may carry). Nothing reached the cluster.
    #[error("not sent: {0}")]
    Invalid(String),
    #[error("malformed reply: {0}")]
    Decode(String),
    #[error("no answer within {0:?} (last: {1})")]
    Deadline(Duration, String),
    #[error("the client is closed")]
    Closed,
    /// The node could not be verified, or TLS was spoken to a plaintext port or the reverse:
    /// a configuration error that no retry fixes.
    #[error("{0}")]
    Tls(String),
}

/// Why a session could not be had: worth another try (another node, later), or not.
enum SessionError {
    Transient(String),
    Permanent(ClientError),
}

impl From<String> for SessionError {
    fn from(error: String) -> SessionError {
        SessionError::Transient(error)
    }
}

/// A request that got no answer: a TLS mismatch no retry fixes, or a lost connection.
fn session_error(error: ConnectionError) -> SessionError {
    match error {
        ConnectionError::Tls { .. } => SessionError::Permanent(ClientError::Tls(error.to_string())),
        other => SessionError::Transient(other.to_string()),
    }
}

/// One connection with a registered session.
struct Session {
    /// The node's address: a lost connection is made again to it, keeping the session.
    addr: String,
    connection: Arc<Connection>,
    session: u64,
    request_events_max: usize,
}

struct Inner {
    /// Request frames sent (including resends): shows the packing at work.
    requests: std::sync::atomic::AtomicU64,
    config: ClientConfig,
    client_id: u128,
    /// The last request number given out: numbers are the client's, not a session's.
    last_request: std::sync::atomic::AtomicU64,
    target: std::sync::Mutex<usize>,
    session: Mutex<Option<Session>>,
}

/// What a packed call gets back: its first event's timestamp and its failures, or the error
/// its request ended with (shared by every call packed into that request).
/// A packed call's share of its request's reply: the commit index, the call's first
/// timestamp and its failures (indexes its own).
type CallResult = Result<(u64, u64, Vec<Failure>), ClientError>;

/// A queued call of a create operation.
struct Call {
    body: Bytes,
    events: usize,
    alone: bool,
    /// The call's first event's timestamp and its failures (indexes within the call).
    done: oneshot::Sender<CallResult>,
}

/// What a create call got back: the commit index of the entry that applied it (the same for
/// a retry answered from the cluster's reply table; 0 for an empty request, which is not
/// logged), its first event's timestamp and its failed events by index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Created {
    pub commit_index: u64,
    pub timestamp_first: u64,
    pub failures: Vec<(u32, EventResult)>,
}

impl Created {
    /// A create reply, its failure codes named (an unknown code is a decode error).
    pub(crate) fn of(commit_index: u64, reply: CreateReply) -> Result<Created, ClientError> {
        let failures = reply
            .failures
            .into_iter()
            .map(|failure| {
                failure
                    .result()
                    .map(|result| (failure.index, result))
                    .ok_or_else(|| {
                        ClientError::Decode(format!("unknown result code {}", failure.code))
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Created {
            commit_index,
            timestamp_first: reply.timestamp_first,
            failures,
        })
    }
}

/// A client of a Tally cluster's gateway; cheap to clone and share between tasks.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    queues: Arc<[mpsc::Sender<Call>; CREATE_QUEUES]>,
}

/// A reply: its status, commit index and body.
struct Reply {
    status: Status,
    commit_index: u64,
    body: Bytes,
}

impl Client {
    /// Connect to the cluster and register a session (with the leader if it can find it).
    /// A credential outside 16..=256 bytes or an empty address list is refused before
    /// anything is sent.
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        let length = config.credential.len();
        if !(CREDENTIAL_BYTES_MIN..=CREDENTIAL_BYTES_MAX).contains(&length) {
            return Err(ClientError::Invalid(format!(
                "a credential is {CREDENTIAL_BYTES_MIN}..={CREDENTIAL_BYTES_MAX} bytes, this one \
                 {length}"
            )));
        }
        if config.addrs.is_empty() {
            return Err(ClientError::Invalid("no node address given".to_owned()));
        }
        let inner = Arc::new(Inner {
            requests: std::sync::atomic::AtomicU64::new(0),
            client_id: rand::random::<u128>() | 1,
            last_request: std::sync::atomic::AtomicU64::new(0),
            target: std::sync::Mutex::new(0),
            session: Mutex::new(None),
            config,
        });
        inner.register().await?;
        let mut queues = Vec::new();
        for operation in [
            Operation::CreateAccounts,
            Operation::CreateTransfers,
            Operation::CreateTrades,
            Operation::CreateSettlements,
            Operation::CreateInstructions,
            Operation::SettlementCommands,
        ] {
            let (sender, receiver) = mpsc::channel(1024);
            tokio::spawn(pack::pack(Arc::clone(&inner), operation, receiver));
            queues.push(sender);
        }
        let queues: [mpsc::Sender<Call>; CREATE_QUEUES] =
            queues.try_into().map_err(|_| ClientError::Closed)?;
        Ok(Client {
            inner,
            queues: Arc::new(queues),
        })
    }

    async fn create(
        &self,
        queue: usize,
        records: Vec<[u8; RECORD_BYTES]>,
    ) -> Result<Vec<(u32, EventResult)>, ClientError> {
        let created = self
            .create_body(queue, Bytes::from(records.concat()))
            .await?;
        Ok(created.failures)
    }

    /// Submit `body` (whole 128-byte records of `operation`) through the packer: the first
    /// event's timestamp (event `i` got `timestamp_first + i`) and the failures by index. An
    /// empty body answers at once, no failures and timestamp 0, as the node would (an empty
    /// batch changes nothing).
    pub async fn create_raw(
        &self,
        operation: tally_engine::Operation,
        body: Bytes,
    ) -> Result<Created, ClientError> {
        if body.is_empty() {
            return Ok(Created::default());
        }
        if !body.len().is_multiple_of(RECORD_BYTES) {
            return Err(ClientError::Invalid(format!(
                "a body of {} bytes is not whole 128-byte records",
                body.len()
            )));
        }
        let queue = match operation {
            tally_engine::Operation::CreateAccounts => 0,
            tally_engine::Operation::CreateTransfers => 1,
            tally_engine::Operation::CreateTrades => 2,
            tally_engine::Operation::CreateSettlements => 3,
            tally_engine::Operation::CreateInstructions => 4,
            tally_engine::Operation::SettlementCommands => 5,
        };
        self.create_body(queue, body).await
    }

    /// A pipeline of create requests of one `operation` applied in exactly the order given,
    /// with up to `window` of them in flight on one connection (for a large import: the
    /// next request travels while the previous one commits). Send bodies (whole 128-byte
    /// records, at most [`Client::request_events_max`] events each) into the sender and read
    /// one result per body, in the same order, from the receiver; drop the sender when done.
    ///
    /// Order is kept across refusals and failures: each request carries
    /// [`FLAG_IN_ORDER`](crate::protocol::FLAG_IN_ORDER), so when one is refused before it
    /// reaches the log the node refuses the later ones too; the pipeline then waits for every
    /// request in flight and sends the failed ones again one at a time, in order (with the
    /// retries of any call), before it fills the window again. The first error that no retry
    /// fixes is the last result: the pipeline stops, and nothing given after it is sent.
    /// Calls packed by [`Client::create_raw`] are not ordered with this pipeline's requests.
    pub fn create_in_order(
        &self,
        operation: tally_engine::Operation,
        window: usize,
    ) -> (
        mpsc::Sender<Bytes>,
        mpsc::UnboundedReceiver<Result<Created, ClientError>>,
    ) {
        let window = window.clamp(1, IN_ORDER_WINDOW_MAX);
        let (bodies, receiver) = mpsc::channel(window);
        let (results, answers) = mpsc::unbounded_channel();
        tokio::spawn(in_order::run(
            Arc::clone(&self.inner),
            Operation::from_engine(operation),
            window,
            receiver,
            results,
        ));
        (bodies, answers)
    }

    async fn create_body(&self, queue: usize, body: Bytes) -> Result<Created, ClientError> {
        let events = body.len() / RECORD_BYTES;
        let limit = self.inner.request_events_max().await;
        if events == 0 || events > limit {
            return Err(ClientError::Invalid(format!(
                "{events} events in one call: a request carries 1..={limit} (split larger \
                 batches between linked chains)"
            )));
        }
        let alone = body.len() >= RECORD_BYTES && {
            let last = &body[body.len() - RECORD_BYTES..];
            u16::from_le_bytes([last[118], last[119]]) & TransferFlags::LINKED.0 != 0
        };
        let (done, result) = oneshot::channel();
        let call = Call {
            body,
            events,
            alone,
            done,
        };
        self.queues[queue]
            .send(call)
            .await
            .map_err(|_| ClientError::Closed)?;
        // Every call packed into a request gets that request's error itself, not its text.
        let (commit_index, timestamp_first, failures) =
            result.await.map_err(|_| ClientError::Closed)??;
        Created::of(
            commit_index,
            CreateReply {
                timestamp_first,
                timestamp_last: 0,
                failures,
            },
        )
    }

    /// Events one request may carry, as the node said at registration.
    pub async fn request_events_max(&self) -> usize {
        self.inner.request_events_max().await
    }

    /// Request frames this client has sent so far (registrations and resends included).
    pub fn requests_sent(&self) -> u64 {
        self.inner
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Create accounts; the failed ones by index (replies by exception).
    pub async fn create_accounts(
        &self,
        accounts: &[Account],
    ) -> Result<Vec<(u32, EventResult)>, ClientError> {
        self.create(0, accounts.iter().map(Account::encode).collect())
            .await
    }

    pub async fn create_transfers(
        &self,
        transfers: &[Transfer],
    ) -> Result<Vec<(u32, EventResult)>, ClientError> {
        self.create(1, transfers.iter().map(Transfer::encode).collect())
            .await
    }

    pub async fn create_trades(
        &self,
        trades: &[Trade],
    ) -> Result<Vec<(u32, EventResult)>, ClientError> {
        self.create(2, trades.iter().map(Trade::encode).collect())
            .await
    }

    /// Create transfers and trades in one request, in order, so a linked chain can hold both
    /// (a trade and its fee transfers settle or fail as one); the failed ones by index.
    pub async fn create_settlements(
        &self,
        settlements: &[Settlement],
    ) -> Result<Vec<(u32, EventResult)>, ClientError> {
        self.create(3, settlements.iter().map(Settlement::encode).collect())
            .await
    }

    async fn read(&self, operation: Operation, body: Vec<u8>) -> Result<Bytes, ClientError> {
        Ok(self.read_reply(operation, body).await?.body)
    }

    /// A read's whole reply: its body and the commit index of the applied state it was
    /// served from.
    async fn read_reply(&self, operation: Operation, body: Vec<u8>) -> Result<Reply, ClientError> {
        let flags = match self.inner.config.reads {
            Reads::Linearizable => FLAG_LINEARIZABLE,
            Reads::Local => 0,
        };
        self.inner.call(operation, Bytes::from(body), flags).await
    }

    /// Operators: the state of the node this client's session is on (`audit`: with its state
    /// digest and per-ledger totals). With [`Reads::Linearizable`] that is the leader's after
    /// a read index; with [`Reads::Local`] it is whichever node the client reached — give such
    /// a client one address to ask one node.
    pub async fn node_state(&self, audit: bool) -> Result<NodeState, ClientError> {
        let body = self
            .read(Operation::NodeState, encode_node_state_request(audit))
            .await?;
        decode_node_state(&body).map_err(|error| ClientError::Decode(error.to_string()))
    }

    /// Operators: carry out a cluster administration command. Membership changes go to the
    /// leader (the client follows its hint); a snapshot is built by the node the session is
    /// on. Returns the commit index the node knew when it was done.
    pub async fn admin(&self, admin: &Admin) -> Result<u64, ClientError> {
        let reply = self
            .inner
            .call(Operation::Admin, Bytes::from(encode_admin(admin)), 0)
            .await?;
        Ok(reply.commit_index)
    }

    /// End this client's session on the node now instead of at its idle timeout, so a client
    /// that is done (a command-line tool, a poll) leaves no session behind: a credential holds
    /// a bounded number of them. Best effort and quick: a node that does not answer within a
    /// second keeps the session until it idles out. Calls after this register a new session.
    pub async fn close(&self) {
        let Some(held) = self.inner.session.lock().await.take() else {
            return;
        };
        if !held.connection.is_open() {
            return;
        }
        let header = self.inner.header(held.session, self.inner.next_number(), 0);
        let _ = timeout(
            Duration::from_secs(1),
            self.inner.exchange(
                &held.connection,
                Operation::EndSession,
                &header,
                &Bytes::new(),
            ),
        )
        .await;
    }

    /// The address of the node this client's session is on (or will be tried next).
    pub fn current_node(&self) -> String {
        self.inner.target()
    }

    pub async fn lookup_accounts(&self, ids: &[u128]) -> Result<Vec<Account>, ClientError> {
        let body = self
            .read(Operation::LookupAccounts, encode_ids(ids))
            .await?;
        decode_accounts(&body).map_err(|error| ClientError::Decode(error.to_string()))
    }

    pub async fn lookup_transfers(&self, ids: &[u128]) -> Result<Vec<Transfer>, ClientError> {
        let body = self
            .read(Operation::LookupTransfers, encode_ids(ids))
            .await?;
        decode_transfers(&body).map_err(|error| ClientError::Decode(error.to_string()))
    }

    pub async fn lookup_trades(&self, ids: &[u128]) -> Result<Vec<Trade>, ClientError> {
        let body = self.read(Operation::LookupTrades, encode_ids(ids)).await?;
        decode_trades(&body).map_err(|error| ClientError::Decode(error.to_string()))
    }

    /// An account's statement: the changes to its balances in the filter's range that its
    /// account filter keeps, oldest first (newest first when reversed), `filter.limit` of
    /// them or every one the range holds if fewer. A node walks a bounded part of the
    /// history per request ([`Client::statement_page`]); this follows `next` until it has
    /// the entries asked for or the range ends, so fewer than `limit` entries means the
    /// range has no more (read on with `timestamp_min` one past the last entry's timestamp).
    pub async fn statement(
        &self,
        filter: &StatementFilter,
    ) -> Result<Vec<StatementEntry>, ClientError> {
        let mut entries = Vec::new();
        let mut current = *filter;
        loop {
            let page = self.statement_page(&current).await?;
            entries.extend(page.items);
            let left = filter.limit.saturating_sub(entries.len() as u32);
            match page.next {
                Some(next) if left > 0 => {
                    if filter.reversed {
                        current.timestamp_max = next;
                    } else {
                        current.timestamp_min = next;
                    }
                    current.limit = left;
                }
                _ => return Ok(entries),
            }
        }
    }

    /// One request's statement page: at most `filter.limit` entries, perhaps fewer (even
    /// none) when the node's walk met its bound, and where the next page starts (`next`: the
    /// following request's `timestamp_min`, or `timestamp_max` when reversed).
    pub async fn statement_page(
        &self,
        filter: &StatementFilter,
    ) -> Result<QueryPage<StatementEntry>, ClientError> {
        let body = self
            .read(Operation::Statement, encode_statement_request(filter))
            .await?;
        decode_statement_reply(&body).map_err(|error| ClientError::Decode(error.to_string()))
    }

    /// An account's balances after every change up to `timestamp`.
    pub async fn balances_as_of(
        &self,
        account_id: u128,
        timestamp: u64,
    ) -> Result<Balances, ClientError> {
        let body = self
            .read(
                Operation::BalancesAsOf,
                encode_balances_as_of_request(account_id, timestamp),
            )
            .await?;
        decode_balances(&body).map_err(|error| ClientError::Decode(error.to_string()))
    }
}

/// The longest pause between two tries.
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// Sleep about `backoff` (between half and one and a half times it, so clients that failed
/// together do not retry together), then double it up to [`BACKOFF_MAX`].
async fn pause(backoff: &mut Duration) {
    let jitter = 0.5 + rand::random::<f64>();
    sleep(backoff.mul_f64(jitter)).await;
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
}

impl Inner {
    async fn request_events_max(&self) -> usize {
        self.session
            .lock()
            .await
            .as_ref()
            .map_or(tally_engine::limits::BATCH_EVENTS_MAX, |session| {
                session.request_events_max
            })
    }

    fn target(&self) -> String {
        let index = self.target.lock().map_or(0, |target| *target);
        self.config.addrs[index % self.config.addrs.len()].clone()
    }

    fn retarget(&self, hint: Option<&str>) {
        if let Ok(mut target) = self.target.lock() {
            *target = match hint.and_then(|addr| self.config.addrs.iter().position(|a| a == addr)) {
                Some(index) => index,
                None => *target + 1,
            };
        }
    }

    fn header(&self, session: u64, request_number: u64, flags: u16) -> RequestHeader {
        RequestHeader {
            flags,
            cluster_id: self.config.cluster_id,
            client_id: self.client_id,
            session,
            request_number,
        }
    }

    /// Send one frame and decode the reply's header.
    async fn exchange(
        &self,
        connection: &Connection,
        operation: Operation,
        header: &RequestHeader,
        body: &Bytes,
    ) -> Result<Reply, SessionError> {
        let answer = self
            .send_request(connection, operation, header, body)
            .await?;
        self.reply(connection, answer).await
    }

    /// Queue one request on `connection` (requests queued in turn are written in turn) and
    /// return the wait for its reply ([`Inner::reply`]).
    async fn send_request(
        &self,
        connection: &Connection,
        operation: Operation,
        header: &RequestHeader,
        body: &Bytes,
    ) -> Result<Answer, SessionError> {
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let payload = Bytes::from(encode_request(header, body));
        timeout(
            self.config.request_timeout,
            connection.send(operation.kind(), payload),
        )
        .await
        .map_err(|_| format!("not sent within {:?}", self.config.request_timeout))?
        .map_err(session_error)
    }

    /// The reply to a request [`Inner::send_request`] queued, its header decoded.
    async fn reply(&self, connection: &Connection, answer: Answer) -> Result<Reply, SessionError> {
        let frame = timeout(self.config.request_timeout, connection.answer(answer))
            .await
            .map_err(|_| format!("no reply within {:?}", self.config.request_timeout))?
            .map_err(session_error)?;
        let (reply, body) = decode_reply(&frame.payload)
            .map_err(|error| SessionError::Transient(error.to_string()))?;
        Ok(Reply {
            status: reply.status,
            commit_index: reply.commit_index,
            body: frame.payload.slice_ref(body),
        })
    }

    /// A session on the current target, registering one if there is none.
    async fn session(&self) -> Result<(Arc<Connection>, u64, u64), SessionError> {
        let mut current = self.session.lock().await;
        if let Some(session) = current.as_mut() {
            if !session.connection.is_open() {
                // The node keeps the session (and its cached replies) when a connection drops:
                // connect to it again and go on in the same session, so a retry gets the
                // original reply. A node that restarted answers `SessionUnknown`, and `call`
                // registers anew.
                match Connection::connect(&session.addr, self.config.tls.as_ref()).await {
                    Ok(connection) => session.connection = Arc::new(connection),
                    Err(error @ ConnectionError::Tls { .. }) => {
                        return Err(SessionError::Permanent(ClientError::Tls(error.to_string())))
                    }
                    Err(error) => {
                        *current = None;
                        self.retarget(None);
                        return Err(SessionError::Transient(error.to_string()));
                    }
                }
            }
            return Ok((
                Arc::clone(&session.connection),
                session.session,
                self.next_number(),
            ));
        }
        let addr = self.target();
        let connection = match Connection::connect(&addr, self.config.tls.as_ref()).await {
            Ok(connection) => Arc::new(connection),
            Err(error @ ConnectionError::Tls { .. }) => {
                return Err(SessionError::Permanent(ClientError::Tls(error.to_string())))
            }
            Err(error) => {
                self.retarget(None);
                return Err(SessionError::Transient(error.to_string()));
            }
        };
        let credential = Bytes::from(self.config.credential.clone());
        let reply = self
            .exchange(
                &connection,
                Operation::Register,
                &self.header(0, 1, 0),
                &credential,
            )
            .await
            .inspect_err(|error| {
                // A node that does not answer a registration: try the next one.
                if matches!(error, SessionError::Transient(_)) {
                    self.retarget(None);
                }
            })?;
        if reply.status != Status::Ok {
            let refusal = decode_refusal(&reply.body).unwrap_or_default();
            // A full follower names the leader, whose session table is its own.
            let busy_elsewhere = reply.status == Status::Busy && refusal.leader.is_some();
            if matches!(reply.status, Status::NotLeader | Status::Unavailable) || busy_elsewhere {
                self.retarget(refusal.leader.as_ref().map(|(_, addr)| addr.as_str()));
            }
            if !reply.status.is_transient() {
                return Err(SessionError::Permanent(ClientError::Refused {
                    status: reply.status,
                    refusal,
                }));
            }
            return Err(SessionError::Transient(format!(
                "register at {addr}: {:?}: {}",
                reply.status, refusal.message
            )));
        }
        let registered = decode_registered(&reply.body).map_err(|error| error.to_string())?;
        *current = Some(Session {
            addr,
            connection: Arc::clone(&connection),
            session: registered.session,
            request_events_max: (registered.request_events_max as usize).max(1),
        });
        Ok((connection, registered.session, self.next_number()))
    }

    /// Register a session with the cluster (following leader hints) before the first call.
    async fn register(&self) -> Result<(), ClientError> {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(10);
        loop {
            match self.session().await {
                Ok(_) => return Ok(()),
                Err(SessionError::Permanent(error)) => return Err(error),
                Err(SessionError::Transient(error))
                    if started.elapsed() >= self.config.deadline =>
                {
                    return Err(ClientError::Deadline(self.config.deadline, error))
                }
                Err(SessionError::Transient(_)) => {
                    // `session` moved to the hinted leader or to the next node already.
                    pause(&mut backoff).await;
                }
            }
        }
    }

    /// Forget `session`. If the node still holds it (`end_on_node`: it answered, but cannot
    /// serve this client — not the leader, or no leader), end it there too, without waiting
    /// for the answer: the frame is queued before the connection is dropped, and the
    /// connection writes what it queued before it closes. Otherwise every client that
    /// registers at a follower before it finds the leader would leave a session there until
    /// it idles out, and a crowd of clients could fill the follower's session table.
    async fn drop_session(&self, session: u64, end_on_node: bool) {
        let held = {
            let mut current = self.session.lock().await;
            if current.as_ref().is_none_or(|held| held.session != session) {
                return;
            }
            current.take()
        };
        if let Some(held) = held.filter(|held| end_on_node && held.connection.is_open()) {
            // Queued, never waited for long: a connection whose write queue is full is not
            // worth holding the call up for (the session then idles out as before).
            let header = self.header(held.session, self.next_number(), 0);
            let payload = Bytes::from(encode_request(&header, &Bytes::new()));
            let _ = timeout(
                Duration::from_millis(100),
                held.connection.send(Operation::EndSession.kind(), payload),
            )
            .await;
        }
    }

    /// The next request number (from 1, never reused for other contents).
    fn next_number(&self) -> u64 {
        self.last_request
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1
    }

    /// Send `body` as `operation` until it is answered for good or the deadline passes.
    async fn call(
        &self,
        operation: Operation,
        body: Bytes,
        flags: u16,
    ) -> Result<Reply, ClientError> {
        self.call_numbered(operation, body, flags, None).await
    }

    /// [`call`](Self::call) under `number` if it already went out with this body.
    pub(crate) async fn call_numbered(
        &self,
        operation: Operation,
        body: Bytes,
        flags: u16,
        number: Option<u64>,
    ) -> Result<Reply, ClientError> {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(10);
        let mut last = String::from("nothing tried");
        // Once sent, a request keeps its number on every session and node until it is
        // answered: the reply table then answers a retry of one that was applied.
        let mut pending: Option<u64> = number;
        while started.elapsed() < self.config.deadline {
            let (connection, session, number) = match self.session().await {
                Ok((connection, session, fresh)) => (connection, session, pending.unwrap_or(fresh)),
                Err(SessionError::Permanent(error)) => return Err(error),
                Err(SessionError::Transient(error)) => {
                    last = error;
                    pause(&mut backoff).await;
                    continue;
                }
            };
            pending = Some(number);
            let header = self.header(session, number, flags);
            let reply = match self.exchange(&connection, operation, &header, &body).await {
                Ok(reply) => reply,
                Err(SessionError::Permanent(error)) => return Err(error),
                Err(SessionError::Transient(error)) => {
                    // Timed out or connection lost: the outcome is unknown. Same number again:
                    // after a lost connection on the same session (`session` connects again to
                    // its node); after an attempt that a live connection left unanswered (a
                    // stopped, isolated or stalled node) on the next node, which sends it on to
                    // the leader — waiting on the silent one again would double the wait.
                    // Either way the reply table answers it if it was applied.
                    last = error;
                    if !connection.is_open() {
                        pause(&mut backoff).await;
                    } else if self.config.addrs.len() > 1 {
                        self.drop_session(session, false).await;
                        self.retarget(None);
                    }
                    continue;
                }
            };
            let refusal = || decode_refusal(&reply.body).unwrap_or_default();
            match reply.status {
                Status::Ok => return Ok(reply),
                Status::NotLeader | Status::SessionUnknown | Status::Unavailable => {
                    let refusal = refusal();
                    last = format!("{:?}: {}", reply.status, refusal.message);
                    self.drop_session(session, reply.status != Status::SessionUnknown)
                        .await;
                    let hint = refusal.leader.as_ref().map(|(_, addr)| addr.as_str());
                    let hinted = hint.is_some();
                    self.retarget(hint);
                    if !hinted {
                        pause(&mut backoff).await;
                    }
                }
                Status::Busy => {
                    // Nothing was done: a new request number after a pause.
                    last = format!("Busy: {}", refusal().message);
                    pending = None;
                    pause(&mut backoff).await;
                }
                status => {
                    return Err(ClientError::Refused {
                        status,
                        refusal: refusal(),
                    })
                }
            }
        }
        Err(ClientError::Deadline(self.config.deadline, last))
    }
}
