//! The gateway's server side: a `ClientHandler` on the node's port for frame kinds ≥ 64.
//!
//! Each request is checked in this order, each step before anything is allocated or queued for
//! the next (the frame itself — magic, length against `payload_bytes_max` below before the
//! payload is allocated, CRC32C — was checked by `net::server`; a register frame's limit is
//! just what registration needs):
//! gateway header (version, flags, body size), cluster id, leadership, session (any kind but
//! register: a stranger's request is refused before its body is decoded), body shape (or the
//! credential of a register request), role, in-flight limit, a scoped submitter's scope
//! (`scope.rs`), then the request is served. Nothing unauthenticated or out of scope reaches
//! the batcher.
//!
//! Create requests go to the batcher with `try_submit` in the connection's order; a full queue
//! answers `Busy` at once rather than growing. A create with `FLAG_IN_ORDER` refused before it
//! reached the log holds its session's later in-order creates (`Sessions::hold`), so a
//! pipelined client never has a later request applied without an earlier one. Their replies are cached per session
//! (`session.rs`), so a duplicate request number gets the cached reply. Reads run in their own
//! task against the applied state, after openraft's read index when asked to be linearizable.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use tokio::time::Instant;

use crate::batcher::{Batcher, BatcherError, CommittedBatch};
use crate::metrics::GatewayMetrics;
use bytes::Bytes;
use tally_raft::net::{ClientHandler, Frame, Replies};
use tally_raft::replication::types::{ClientBatch, Origin, TypeConfig};
use tally_raft::replication::{AppliedView, CommittedIndex};

mod access;
mod cosign;
mod reads;
mod refusals;

use crate::admin;
use crate::auth::{Access, Credentials, GatewayConfig};
use crate::limits::{
    HEADER_BYTES, REGISTER_PAYLOAD_BYTES_MAX, REQUEST_BODY_BYTES_MAX, REQUEST_EVENTS_MAX,
    SESSIONS_MAX, SESSIONS_PER_CREDENTIAL_MAX, SESSION_IN_FLIGHT_MAX,
};
use crate::session::{
    client_key, Admission, NumberedCreate, RegisterRefusal, RequestDigest, SessionRefusal,
    Sessions, Waiter,
};
use reads::{answer_read, linearize, Read};
use tally_client::protocol::{
    decode_request_body, decode_request_header, encode_create_reply, encode_node_state,
    encode_refusal, encode_registered, encode_reply, reply_kind, CreateReply, Failure, Operation,
    Refusal, Registered, ReplyHeader, Request, RequestHeader, Status, FLAG_IN_ORDER,
    KIND_CREATE_ACCOUNTS, KIND_CREATE_TRADES, KIND_CREATE_TRANSFERS, KIND_REGISTER,
};

type Raft = openraft::Raft<TypeConfig>;

/// What a node's gateway is built from, once openraft runs: the Raft handle (reads after a
/// read index, administration), the applied state, the batcher to submit through, the node's
/// metrics and its commit index.
pub struct GatewayParts {
    pub raft: Raft,
    pub view: AppliedView,
    pub batcher: Batcher,
    pub metrics: GatewayMetrics,
    pub committed: CommittedIndex,
}

/// The gateway of one node.
pub struct Gateway {
    cluster_id: u128,
    session_idle_ms: u32,
    credentials: Credentials,
    sessions: Arc<Mutex<Sessions>>,
    raft: Raft,
    view: AppliedView,
    /// `None` once the node stops accepting writes (graceful shutdown), so the batcher can
    /// drain and end.
    batcher: RwLock<Option<Batcher>>,
    metrics: GatewayMetrics,
    committed: CommittedIndex,
    log_origin: Option<Arc<str>>,
    log_key: Option<Arc<str>>,
    witnesses: Arc<[tally_engine::checkpoint::NoteVerifier]>,
    /// Records every read in the access trail (a node with the cluster's key).
    access: Option<access::AccessRecorder>,
}

/// Where a reply goes and what it echoes.
#[derive(Clone, Copy)]
struct Context {
    kind: u8,
    frame_request_id: u64,
    cluster_id: u128,
    header: RequestHeader,
}

impl Context {
    fn reply(&self, status: Status, session: u64, commit_index: u64, body: &[u8]) -> Bytes {
        Bytes::from(encode_reply(
            &ReplyHeader {
                status,
                cluster_id: self.cluster_id,
                client_id: self.header.client_id,
                session,
                request_number: self.header.request_number,
                commit_index,
            },
            body,
        ))
    }

    fn ok(&self, commit_index: u64, body: &[u8]) -> Bytes {
        self.reply(Status::Ok, self.header.session, commit_index, body)
    }

    fn refuse(&self, status: Status, refusal: &Refusal) -> Bytes {
        self.reply(status, self.header.session, 0, &encode_refusal(refusal))
    }

    fn refuse_with(&self, status: Status, message: impl Into<String>) -> Bytes {
        self.refuse(
            status,
            &Refusal {
                leader: None,
                event: None,
                message: message.into(),
            },
        )
    }

    fn frame(&self, payload: Bytes) -> Frame {
        Frame {
            kind: self.kind,
            request_id: self.frame_request_id,
            payload,
        }
    }

    /// Send `payload` (a reply) to `replies`, counted in the metrics.
    async fn send(&self, metrics: &GatewayMetrics, replies: &Replies, payload: Bytes) {
        metrics.count_reply(self.kind, &payload);
        let _ = replies.send(self.frame(payload)).await;
    }
}

fn lock(sessions: &Mutex<Sessions>) -> MutexGuard<'_, Sessions> {
    // A panic while holding the lock leaves the table consistent (every mutation is a single
    // map operation), so a poisoned lock is still usable.
    sessions
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn session_refusal(context: &Context, refusal: SessionRefusal) -> Bytes {
    match refusal {
        SessionRefusal::Unknown => context.refuse_with(
            Status::SessionUnknown,
            "no such session on this node (expired, or registered elsewhere): register again",
        ),
        SessionRefusal::Busy => context.refuse_with(
            Status::Busy,
            format!("the session already has {SESSION_IN_FLIGHT_MAX} requests in flight"),
        ),
        SessionRefusal::Forbidden => context.refuse_with(
            Status::Forbidden,
            "this session's role may not make this request",
        ),
        SessionRefusal::NumberReused(number) => context.refuse_with(
            Status::RequestNumberReused,
            format!(
                "request number {number} of this session was already used for a request with \
                 other contents: nothing of this one was applied; send it with a new number \
                 (a retry of the original, unchanged, still gets its reply)"
            ),
        ),
        SessionRefusal::Held(held) => context.refuse_with(
            Status::Busy,
            format!(
                "request {held} of this session was refused and this one was sent in order \
                 after it: send {held} again first"
            ),
        ),
    }
}

/// An operator's request, owned so it can move into its task.
enum Operate {
    State { audit: bool },
    Admin(tally_client::protocol::Admin),
}

impl Gateway {
    /// The gateway of the node whose Raft handle, applied state and batcher these are.
    pub fn new(config: GatewayConfig, parts: GatewayParts) -> Gateway {
        let GatewayParts {
            raft,
            view,
            batcher,
            metrics,
            committed,
        } = parts;
        let access = config
            .log_origin
            .as_ref()
            .map(|_| access::AccessRecorder::start(raft.clone(), crate::batcher::system_clock));
        if config.credentials.is_empty() {
            tracing::warn!(
                "no gateway credentials configured: every gateway request will be refused"
            );
        }
        Gateway {
            cluster_id: config.cluster_id,
            session_idle_ms: u32::try_from(config.session_idle.as_millis()).unwrap_or(u32::MAX),
            credentials: Credentials::new(&config.credentials),
            sessions: Arc::new(Mutex::new(Sessions::new(config.session_idle))),
            raft,
            view,
            batcher: RwLock::new(Some(batcher)),
            metrics,
            committed,
            log_origin: config.log_origin.clone(),
            log_key: config.log_key.clone(),
            access,
            witnesses: Arc::clone(&config.witnesses),
        }
    }

    fn batcher(&self) -> Option<Batcher> {
        self.batcher.read().ok().and_then(|batcher| batcher.clone())
    }

    /// `Err` names the leader (if known) when this node does not lead.
    fn check_leader(&self) -> Result<(), Refusal> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        if metrics.current_leader == Some(metrics.id) {
            return Ok(());
        }
        let leader = metrics.current_leader.and_then(|leader| {
            metrics
                .membership_config
                .membership()
                .get_node(&leader)
                .map(|node| (leader, node.client_addr.clone()))
        });
        Err(Refusal {
            leader,
            event: None,
            message: "this node is not the leader: connect to the leader and register there"
                .to_owned(),
        })
    }

    /// A create of `context` was refused before it reached the log: if it was sent in order,
    /// hold its session's later in-order creates (`FLAG_IN_ORDER`).
    fn hold_if_in_order(&self, context: &Context) {
        let header = context.header;
        if header.flags & FLAG_IN_ORDER != 0 {
            lock(&self.sessions).hold(header.session, header.request_number);
        }
    }

    async fn serve(&self, frame: Frame, replies: Replies) {
        let mut context = Context {
            kind: reply_kind(frame.kind),
            frame_request_id: frame.request_id,
            cluster_id: self.cluster_id,
            header: RequestHeader::default(),
        };
        let payload = match self.check(&frame, &mut context, &replies).await {
            Ok(()) => return,
            Err(payload) => payload,
        };
        // A create answered here never reached the log (cached replies are sent by `create`).
        if matches!(
            frame.kind,
            KIND_CREATE_ACCOUNTS | KIND_CREATE_TRANSFERS | KIND_CREATE_TRADES
        ) {
            self.hold_if_in_order(&context);
        }
        context.send(&self.metrics, &replies, payload).await;
    }

    /// Check the request and serve it; `Err` is the reply to send now.
    async fn check(
        &self,
        frame: &Frame,
        context: &mut Context,
        replies: &Replies,
    ) -> Result<(), Bytes> {
        let (header, body) = decode_request_header(&frame.payload).map_err(|error| {
            context.refuse_with(Status::BadRequest, format!("malformed request: {error}"))
        })?;
        context.header = header;
        let operation = Operation::from_kind(frame.kind).ok_or_else(|| {
            context.refuse_with(
                Status::BadRequest,
                format!("unknown operation (frame kind {})", frame.kind),
            )
        })?;
        if header.cluster_id != self.cluster_id {
            return Err(context.refuse_with(
                Status::WrongCluster,
                format!(
                    "this node belongs to cluster {:#x}, not {:#x}",
                    self.cluster_id, header.cluster_id
                ),
            ));
        }
        if self.credentials.is_empty() {
            return Err(context.refuse_with(
                Status::Unauthenticated,
                "this node has no gateway credentials configured ([[gateway.credentials]])",
            ));
        }
        let now = Instant::now();
        // Only registration is open to a stranger: any other request names a live session
        // before its body is decoded (lookup ids are allocated there). Touching the session
        // here also keeps it alive; admission below looks it up again for role and limits.
        if operation != Operation::Register {
            lock(&self.sessions)
                .heartbeat(header.session, header.client_id, now)
                .map_err(|refusal| session_refusal(context, refusal))?;
        }
        let request = decode_request_body(operation, body).map_err(|error| {
            context.refuse_with(Status::BadRequest, format!("malformed request: {error}"))
        })?;
        match request {
            Request::Register { credential } => Err(self.register(context, credential, now)),
            Request::EndSession => {
                let mut sessions = lock(&self.sessions);
                sessions.end(header.session);
                self.metrics
                    .sessions
                    .set(i64::try_from(sessions.len()).unwrap_or(i64::MAX));
                Err(context.ok(0, &[]))
            }
            Request::Heartbeat => {
                lock(&self.sessions)
                    .heartbeat(header.session, header.client_id, now)
                    .map_err(|refusal| session_refusal(context, refusal))?;
                Err(context.ok(0, &[]))
            }
            Request::Create { operation, body } => {
                // Only the leader orders writes; reads, node state and administration are
                // served (or refused by openraft) on any node.
                self.check_leader()
                    .map_err(|refusal| context.refuse(Status::NotLeader, &refusal))?;
                let body = frame.payload.slice_ref(body);
                self.create(*context, operation, body, replies, now).await
            }
            Request::NodeState { audit } => {
                self.operate(context, Operate::State { audit }, replies, now)
            }
            Request::Admin(admin) => self.operate(context, Operate::Admin(admin), replies, now),
            Request::Lookup { what, ids } => {
                self.read(context, Read::Lookup { what, ids }, replies, now)
            }
            Request::Statement(filter) => self.read(context, Read::Statement(filter), replies, now),
            Request::Query { kind, filter } => {
                self.read(context, Read::Query { kind, filter }, replies, now)
            }
            Request::SettlementCycle {
                cycle,
                limit,
                after,
            } => self.read(
                context,
                Read::SettlementCycle {
                    cycle,
                    limit,
                    after,
                },
                replies,
                now,
            ),
            Request::BalancesAsOf {
                account_id,
                timestamp,
            } => self.read(
                context,
                Read::BalancesAsOf {
                    account_id,
                    timestamp,
                },
                replies,
                now,
            ),
            Request::Checkpoint { which } => {
                let (origin, witnesses) = (self.log_origin.clone(), self.witnesses.clone());
                let read = Read::Checkpoint {
                    which,
                    origin,
                    witnesses,
                };
                self.read(context, read, replies, now)
            }
            Request::Cosign { checkpoint, line } => {
                self.cosign(context, checkpoint, line, replies, now)
            }
            Request::Prove(prove) => self.read(context, Read::Prove(prove), replies, now),
            Request::AccessTrail(request) => {
                let origin = self.log_origin.clone();
                self.read(context, Read::AccessTrail { request, origin }, replies, now)
            }
            Request::Consistency { old, new } => {
                self.read(context, Read::Consistency { old, new }, replies, now)
            }
        }
    }

    fn register(&self, context: &Context, credential: &[u8], now: Instant) -> Bytes {
        let Some(credential) = self.credentials.find(credential) else {
            tracing::info!(
                client = context.header.client_id,
                "registration with an unknown credential"
            );
            return context.refuse_with(Status::Unauthenticated, "unknown credential");
        };
        let access = Access::of(&credential);
        let registered = {
            let mut sessions = lock(&self.sessions);
            let registered = sessions.register(context.header.client_id, access, now);
            self.metrics
                .sessions
                .set(i64::try_from(sessions.len()).unwrap_or(i64::MAX));
            registered
        };
        // A full follower names the leader: its session table is its own, and a client that
        // writes must go there anyway.
        let busy = |message: String| {
            let leader = self.check_leader().err().and_then(|refusal| refusal.leader);
            context.refuse(
                Status::Busy,
                &Refusal {
                    leader,
                    event: None,
                    message,
                },
            )
        };
        let session = match registered {
            Ok(session) => session,
            Err(RegisterRefusal::Full) => {
                return busy(format!(
                    "all {SESSIONS_MAX} sessions of this node are held; retry later"
                ))
            }
            Err(RegisterRefusal::CredentialFull) => {
                tracing::info!(
                    name = credential.name,
                    "registration past the credential's sessions"
                );
                return busy(format!(
                    "credential {:?} already holds {SESSIONS_PER_CREDENTIAL_MAX} sessions on \
                     this node, the most one credential may hold: reuse one, or retry after one \
                     has been idle for {} ms",
                    credential.name, self.session_idle_ms
                ));
            }
        };
        tracing::info!(name = credential.name, role = ?credential.role, session, "session registered");
        let body = encode_registered(&Registered {
            session,
            session_idle_ms: self.session_idle_ms,
            role: credential.role,
            request_events_max: REQUEST_EVENTS_MAX as u32,
            in_flight_max: SESSION_IN_FLIGHT_MAX as u32,
        });
        context.reply(Status::Ok, session, 0, &body)
    }

    async fn create(
        &self,
        context: Context,
        operation: tally_engine::Operation,
        body: Bytes,
        replies: &Replies,
        now: Instant,
    ) -> Result<(), Bytes> {
        let header = context.header;
        let waiter = Waiter {
            frame_request_id: context.frame_request_id,
            replies: replies.clone(),
        };
        let digest = RequestDigest::of(operation, &body);
        let admission = lock(&self.sessions)
            .admit_create(
                header.session,
                header.client_id,
                NumberedCreate {
                    number: header.request_number,
                    digest,
                    in_order: header.flags & FLAG_IN_ORDER != 0,
                },
                waiter,
                now,
            )
            .map_err(|refusal| session_refusal(&context, refusal))?;
        let access = match admission {
            Admission::Cached(payload) => {
                context.send(&self.metrics, replies, payload).await;
                return Ok(());
            }
            Admission::Waiting => return Ok(()),
            Admission::Serve(access) => access,
        };
        let sessions = Arc::clone(&self.sessions);
        if let Some(refusal) = self.out_of_scope(&context, &access, operation, &body) {
            // Nothing was submitted, so the reply is not cached: a duplicate is checked again
            // (which also lets a trade on an account that has applied since go through).
            self.hold_if_in_order(&context);
            complete(&self.metrics, &sessions, &context, refusal, false, replies).await;
            return Ok(());
        }
        if body.is_empty() {
            // An empty batch changes nothing and is not logged: no failures, timestamps and
            // commit index 0 (TigerBeetle 0.17 answers it with an empty result too).
            let payload = context.ok(0, &encode_create_reply(&CreateReply::default()));
            complete(&self.metrics, &sessions, &context, payload, true, replies).await;
            return Ok(());
        }
        let submitted = match self.batcher() {
            None => Err(context.refuse_with(Status::Unavailable, "the node is shutting down")),
            Some(batcher) => match batcher.try_submit(ClientBatch {
                operation,
                body,
                // The reply table answers a retry of this number from any leader.
                origin: Some(Origin {
                    client: client_key(&access.credential, header.client_id),
                    number: header.request_number,
                    digest: digest.value(),
                }),
            }) {
                Ok(Some(committed)) => Ok(committed),
                Ok(None) => Err(context.refuse_with(
                    Status::Busy,
                    "the leader's batch queue is full; retry later",
                )),
                Err(error) => Err(batcher_refusal(&context, error)),
            },
        };
        let committed = match submitted {
            Ok(committed) => committed,
            Err(payload) => {
                self.hold_if_in_order(&context);
                complete(&self.metrics, &sessions, &context, payload, false, replies).await;
                return Ok(());
            }
        };
        let replies = replies.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let (payload, keep) = match committed.await {
                Ok(Ok(CommittedBatch {
                    log_index,
                    outcome: Ok(outcome),
                    ..
                })) => {
                    let reply = CreateReply {
                        timestamp_first: outcome.timestamp_first,
                        timestamp_last: outcome.timestamp_last,
                        failures: outcome
                            .failures
                            .iter()
                            .map(|(index, result)| Failure {
                                index: *index,
                                code: result.code(),
                            })
                            .collect(),
                    };
                    (context.ok(log_index, &encode_create_reply(&reply)), true)
                }
                Ok(Ok(CommittedBatch {
                    outcome: Err(refused),
                    ..
                })) => (
                    context.refuse_with(Status::BatchRefused, refused.to_string()),
                    true,
                ),
                // A reused number stays refused: the log binds it to the original request.
                Ok(Err(error)) => {
                    let keep = matches!(error, BatcherError::NumberReused { .. });
                    (batcher_refusal(&context, error), keep)
                }
                Err(_) => (
                    context.refuse_with(
                        Status::Unavailable,
                        "the batcher stopped before the request's entry was decided; retry it \
                         (events already applied answer `exists`)",
                    ),
                    false,
                ),
            };
            complete(&metrics, &sessions, &context, payload, keep, &replies).await;
        });
        Ok(())
    }

    /// An operator's request: this node's state, or a cluster administration command. Any
    /// node serves its own state (after a read index when asked to be linearizable); openraft
    /// decides which node may take a command (membership changes: the leader).
    fn operate(
        &self,
        context: &Context,
        operate: Operate,
        replies: &Replies,
        now: Instant,
    ) -> Result<(), Bytes> {
        let header = context.header;
        lock(&self.sessions)
            .admit_operator(header.session, header.client_id, now)
            .map_err(|refusal| session_refusal(context, refusal))?;
        let raft = self.raft.clone();
        let view = self.view.clone();
        let committed = self.committed.clone();
        let sessions = Arc::clone(&self.sessions);
        let replies = replies.clone();
        let context = *context;
        let metrics = self.metrics.clone();
        let log_key = self.log_key.clone();
        tokio::spawn(async move {
            let payload = match operate {
                Operate::State { audit } => match linearize(&raft, header.flags).await {
                    Err(payload) => payload(&context),
                    // An audited state hashes the whole ledger (O(state): seconds at tens
                    // of millions of events): off the runtime's threads, which answer peers.
                    Ok(()) if audit => {
                        let read = tokio::task::spawn_blocking(move || {
                            admin::node_state(&raft, &view, &committed, log_key.as_deref(), true)
                        });
                        match read.await {
                            Ok(state) => {
                                context.ok(state.applied_index(), &encode_node_state(&state))
                            }
                            Err(error) => context.refuse_with(
                                Status::Unavailable,
                                format!("reading the node's state failed: {error}"),
                            ),
                        }
                    }
                    Ok(()) => {
                        let state =
                            admin::node_state(&raft, &view, &committed, log_key.as_deref(), false);
                        context.ok(state.applied_index(), &encode_node_state(&state))
                    }
                },
                Operate::Admin(command) => {
                    let name = command.name();
                    match admin::administer(&raft, command).await {
                        Ok(()) => {
                            tracing::info!(command = name, "administration done");
                            context.ok(committed.get().unwrap_or(0), &[])
                        }
                        Err((status, refusal)) => {
                            tracing::info!(command = name, %refusal.message, "administration refused");
                            context.refuse(status, &refusal)
                        }
                    }
                }
            };
            lock(&sessions).finish(header.session);
            context.send(&metrics, &replies, payload).await;
        });
        Ok(())
    }

    fn read(
        &self,
        context: &Context,
        read: Read,
        replies: &Replies,
        now: Instant,
    ) -> Result<(), Bytes> {
        let header = context.header;
        let access = lock(&self.sessions)
            .admit_read(header.session, header.client_id, now)
            .map_err(|refusal| session_refusal(context, refusal))?;
        let raft = self.raft.clone();
        let view = self.view.clone();
        let sessions = Arc::clone(&self.sessions);
        let replies = replies.clone();
        let context = *context;
        let metrics = self.metrics.clone();
        // An operator's read on a follower is served unrecorded: a follower cannot propose
        // (the history checks read every replica). Any other read is recorded at the leader.
        let operator_here =
            access.role == crate::auth::Role::Operator && self.check_leader().is_err();
        let trail = self.access.clone().filter(|_| !operator_here);
        tokio::spawn(async move {
            let payload = match linearize(&raft, header.flags).await {
                Err(payload) => payload(&context),
                Ok(()) => {
                    let (payload, touched) = view.read(|applied| {
                        let commit_index = applied.last_applied().map_or(0, |id| id.index);
                        match applied.engine() {
                            Some(engine) => {
                                answer_read(&context, &access, engine, read, commit_index)
                            }
                            None => (context.refuse_with(Status::Unavailable, INSTALLING), vec![]),
                        }
                    });
                    // Nothing leaves before its record in the access trail is committed.
                    match trail {
                        Some(trail) => trail.recorded(&context, &access, touched, payload).await,
                        None => payload,
                    }
                }
            };
            lock(&sessions).finish(header.session);
            context.send(&metrics, &replies, payload).await;
        });
        Ok(())
    }
}

/// The refusal of a read while this replica installs a snapshot (it has no state to answer
/// from for that time; the client retries, or asks another replica).
const INSTALLING: &str = "this replica is installing a snapshot; retry";

/// Send a create request's reply to its connection and to every duplicate that waited for
/// it, caching it if it is a definite outcome.
async fn complete(
    metrics: &GatewayMetrics,
    sessions: &Mutex<Sessions>,
    context: &Context,
    payload: Bytes,
    keep: bool,
    replies: &Replies,
) {
    let header = context.header;
    let waiters =
        lock(sessions).finish_create(header.session, header.request_number, &payload, keep);
    context.send(metrics, replies, payload.clone()).await;
    for waiter in waiters {
        metrics.count_reply(context.kind, &payload);
        let frame = Frame {
            kind: context.kind,
            request_id: waiter.frame_request_id,
            payload: payload.clone(),
        };
        let _ = waiter.replies.send(frame).await;
    }
}

/// The gateway's answer for a refusal of the node's batcher.
fn batcher_refusal(context: &Context, error: BatcherError) -> Bytes {
    let message = error.to_string();
    let (status, leader) = match error {
        BatcherError::TooLarge { .. } => (Status::BadRequest, None),
        BatcherError::NotLeader { leader } => (Status::NotLeader, leader),
        BatcherError::Unavailable(_) => (Status::Unavailable, None),
        BatcherError::Internal(_) => (Status::Internal, None),
        BatcherError::NumberReused { .. } => (Status::RequestNumberReused, None),
    };
    context.refuse(
        status,
        &Refusal {
            leader,
            event: None,
            message,
        },
    )
}

impl ClientHandler for Gateway {
    fn handle(
        &self,
        frame: Frame,
        replies: Replies,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.serve(frame, replies))
    }

    /// A register frame: its header and the longest credential (all a stranger can send);
    /// any other kind: a full create request and its header. Anything larger is refused by the
    /// frame reader before its payload is allocated, and closes its connection.
    fn payload_bytes_max(&self, kind: u8) -> usize {
        if kind == KIND_REGISTER {
            REGISTER_PAYLOAD_BYTES_MAX
        } else {
            HEADER_BYTES + REQUEST_BODY_BYTES_MAX
        }
    }

    /// A request over its kind's limit is answered `BadRequest`, saying the limit, before the
    /// connection closes (its payload was never read, so the reply echoes no header fields).
    fn too_large(&self, kind: u8, request_id: u64, length: usize, limit: usize) -> Option<Frame> {
        let what = Operation::from_kind(kind)
            .map_or_else(|| format!("kind {kind}"), |op| format!("{op:?}"));
        let message = format!(
            "a {what} request of {length} payload bytes is over its limit of {limit} (a request \
             carries at most {REQUEST_EVENTS_MAX} events): split it; this connection closes"
        );
        let context = Context {
            kind: reply_kind(kind),
            frame_request_id: request_id,
            cluster_id: self.cluster_id,
            header: RequestHeader::default(),
        };
        let payload = context.refuse_with(Status::BadRequest, message);
        self.metrics.count_reply(context.kind, &payload);
        Some(context.frame(payload))
    }

    /// Stop accepting create requests (they answer `Unavailable`); those already queued still
    /// commit and are answered. Dropping our batcher handle lets the batcher drain and end.
    fn stop_accepting(&self) {
        if let Ok(mut batcher) = self.batcher.write() {
            batcher.take();
        }
    }
}
