//! Sessions: who registered, what they are serving, and their cached create replies.
//!
//! A session lives on the node that registered it (the leader then) and only in memory: a
//! restart or failover loses it, and the client registers again. What answers a retry across
//! that is the replicated reply table (`tally_raft::replication::replies`): every create goes
//! into the log with its origin ([`client_key`], request number, [`RequestDigest`]), and any
//! leader answers a number the table holds with the original reply. The cache here is the
//! fast path on one node: a duplicate is answered without a trip through the log, and one
//! that arrives while its number is being served waits for that reply.
//!
//! A cached number answers only the request it was first used for: each slot keeps the
//! digest of that request (`RequestDigest`), and a request that reuses the number with other
//! contents is refused (`SessionRefusal::NumberReused`), never answered from the cache — else
//! its events would be silently dropped behind the earlier reply.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use tally_raft::net::Replies;

use crate::auth::Access;
use crate::limits::{
    REPLY_CACHE_BYTES_MAX, REPLY_CACHE_REPLIES_MAX, SESSIONS_MAX, SESSIONS_PER_CREDENTIAL_MAX,
    SESSION_IN_FLIGHT_MAX,
};

/// Someone waiting for the reply to a request number: the connection and frame id to answer.
pub(crate) struct Waiter {
    pub(crate) frame_request_id: u64,
    pub(crate) replies: Replies,
}

/// What a create request asked for: BLAKE3 of its operation and body, truncated to 128 bits.
/// Two requests with the same number and digest are the same request sent twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RequestDigest(u128);

impl RequestDigest {
    pub(crate) fn of(operation: tally_engine::Operation, body: &[u8]) -> RequestDigest {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&[operation as u8]);
        hasher.update(body);
        let mut first = [0u8; 16];
        first.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
        RequestDigest(u128::from_le_bytes(first))
    }

    /// The digest as the replicated reply table keeps it.
    pub(crate) fn value(self) -> u128 {
        self.0
    }
}

/// The key under which the replicated reply table keeps a client's answers: BLAKE3 of the
/// credential's hash and the client id, truncated to 128 bits. Another credential that sends
/// the same client id has another key, so it can neither read nor take up its replies.
pub(crate) fn client_key(credential: &[u8; 32], client_id: u128) -> u128 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(credential);
    hasher.update(&client_id.to_le_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    u128::from_le_bytes(first)
}

/// A create request as its session sees it: its number, what it asks for, and whether it
/// carries `FLAG_IN_ORDER` (refused while an earlier in-order create of the session is held,
/// see [`Sessions::hold`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct NumberedCreate {
    pub(crate) number: u64,
    pub(crate) digest: RequestDigest,
    pub(crate) in_order: bool,
}

enum Slot {
    /// Being served; duplicates that arrive meanwhile wait here.
    Pending(RequestDigest, Vec<Waiter>),
    /// The reply payload, as first sent.
    Done(RequestDigest, Bytes),
}

impl Slot {
    fn digest(&self) -> RequestDigest {
        match self {
            Slot::Pending(digest, _) | Slot::Done(digest, _) => *digest,
        }
    }
}

pub(crate) struct Session {
    client_id: u128,
    pub(crate) access: Access,
    last_seen: Instant,
    in_flight: usize,
    slots: BTreeMap<u64, Slot>,
    cached_bytes: usize,
    /// The earliest in-order create refused before it reached the log, until it (or an
    /// unflagged create) is admitted: later in-order creates are refused meanwhile, so none
    /// overtakes it (`FLAG_IN_ORDER`).
    held: Option<u64>,
}

/// Why a session cannot serve a request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SessionRefusal {
    Unknown,
    Busy,
    /// The session's role may not do this.
    Forbidden,
    /// An in-order create after the session's refused create of this number.
    Held(u64),
    /// The request number is cached (or being served) for a request with other contents.
    NumberReused(u64),
}

/// Why a registration is refused (both answer `Busy`: sessions expire, so a later retry may
/// succeed).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RegisterRefusal {
    /// Every one of the node's `SESSIONS_MAX` sessions is held.
    Full,
    /// The credential already holds `SESSIONS_PER_CREDENTIAL_MAX` sessions.
    CredentialFull,
}

/// What to do with a create request's number.
pub(crate) enum Admission {
    /// Serve it as the session `Access` may (the in-flight count is taken; give it back with
    /// `finish_create`).
    Serve(Access),
    /// Already answered: send this payload again.
    Cached(Bytes),
    /// Being served: the waiter was queued for its reply.
    Waiting,
}

/// Every session of the node.
pub(crate) struct Sessions {
    by_id: HashMap<u64, Session>,
    idle: Duration,
}

impl Sessions {
    pub(crate) fn new(idle: Duration) -> Sessions {
        Sessions {
            by_id: HashMap::new(),
            idle,
        }
    }

    /// Register a session for `client_id`; refused when the table, or the credential's share
    /// of it, is full even after dropping idle sessions.
    ///
    /// A client holds one session per node: registering again under the same credential (after
    /// a lost connection, or back from another node as leadership moves) replaces its sessions
    /// here that have nothing in flight. Without that a client following a flapping leader
    /// fills its credential's share with sessions it abandoned and is locked out until they
    /// expire (found by the simulator, seed 31 on three replicas). A retry in the new session
    /// loses nothing by it: the replicated reply table answers a create that was applied.
    pub(crate) fn register(
        &mut self,
        client_id: u128,
        access: Access,
        now: Instant,
    ) -> Result<u64, RegisterRefusal> {
        let idle = self.idle;
        self.by_id.retain(|_, session| {
            let replaced =
                session.client_id == client_id && session.access.credential == access.credential;
            session.in_flight > 0 || (!replaced && now - session.last_seen < idle)
        });
        // Counted at registration only, over at most `SESSIONS_MAX` sessions: no index to
        // keep in step with every removal.
        let held = self
            .by_id
            .values()
            .filter(|session| session.access.credential == access.credential)
            .count();
        if held >= SESSIONS_PER_CREDENTIAL_MAX {
            return Err(RegisterRefusal::CredentialFull);
        }
        if self.by_id.len() >= SESSIONS_MAX {
            return Err(RegisterRefusal::Full);
        }
        let mut id = rand::random::<u64>();
        while id == 0 || self.by_id.contains_key(&id) {
            id = rand::random::<u64>();
        }
        self.by_id.insert(
            id,
            Session {
                client_id,
                access,
                last_seen: now,
                in_flight: 0,
                slots: BTreeMap::new(),
                cached_bytes: 0,
                held: None,
            },
        );
        Ok(id)
    }

    /// The live session `id` of `client_id`, touched (its idle clock restarts).
    fn touch(
        &mut self,
        id: u64,
        client_id: u128,
        now: Instant,
    ) -> Result<&mut Session, SessionRefusal> {
        let expired = match self.by_id.get(&id) {
            None => return Err(SessionRefusal::Unknown),
            Some(session) if session.client_id != client_id => return Err(SessionRefusal::Unknown),
            Some(session) => session.in_flight == 0 && now - session.last_seen >= self.idle,
        };
        if expired {
            self.by_id.remove(&id);
            return Err(SessionRefusal::Unknown);
        }
        let session = self.by_id.get_mut(&id).ok_or(SessionRefusal::Unknown)?;
        session.last_seen = now;
        Ok(session)
    }

    /// A heartbeat, or any request that needs no admission.
    pub(crate) fn heartbeat(
        &mut self,
        id: u64,
        client_id: u128,
        now: Instant,
    ) -> Result<Access, SessionRefusal> {
        self.touch(id, client_id, now)
            .map(|session| session.access.clone())
    }

    /// Admit a read: counts against the in-flight limit (give it back with `finish`).
    pub(crate) fn admit_read(
        &mut self,
        id: u64,
        client_id: u128,
        now: Instant,
    ) -> Result<Access, SessionRefusal> {
        self.admit(id, client_id, now, Access::may_read)
    }

    /// Admit an operator's request (node state, administration), as a read.
    pub(crate) fn admit_operator(
        &mut self,
        id: u64,
        client_id: u128,
        now: Instant,
    ) -> Result<Access, SessionRefusal> {
        self.admit(id, client_id, now, Access::may_operate)
    }

    fn admit(
        &mut self,
        id: u64,
        client_id: u128,
        now: Instant,
        allowed: fn(&Access) -> bool,
    ) -> Result<Access, SessionRefusal> {
        let session = self.touch(id, client_id, now)?;
        if !allowed(&session.access) {
            return Err(SessionRefusal::Forbidden);
        }
        if session.in_flight >= SESSION_IN_FLIGHT_MAX {
            return Err(SessionRefusal::Busy);
        }
        session.in_flight += 1;
        Ok(session.access.clone())
    }

    /// Admit a create request numbered `request_number` asking for `digest`: a cached reply,
    /// a wait for the one being served, or a new request; refused if the number is held for
    /// a different request.
    pub(crate) fn admit_create(
        &mut self,
        id: u64,
        client_id: u128,
        request: NumberedCreate,
        waiter: Waiter,
        now: Instant,
    ) -> Result<Admission, SessionRefusal> {
        let NumberedCreate {
            number: request_number,
            digest,
            in_order,
        } = request;
        let session = self.touch(id, client_id, now)?;
        if !session.access.may_create() {
            return Err(SessionRefusal::Forbidden);
        }
        match session.slots.get_mut(&request_number) {
            Some(slot) if slot.digest() != digest => {
                return Err(SessionRefusal::NumberReused(request_number))
            }
            Some(Slot::Done(_, payload)) => return Ok(Admission::Cached(payload.clone())),
            // Duplicates of a request being served wait for its reply; as many as requests
            // in flight, so a client repeating one number cannot grow the list without bound.
            Some(Slot::Pending(_, waiters)) if waiters.len() >= SESSION_IN_FLIGHT_MAX => {
                return Err(SessionRefusal::Busy)
            }
            Some(Slot::Pending(_, waiters)) => {
                waiters.push(waiter);
                return Ok(Admission::Waiting);
            }
            None => {}
        }
        match session.held {
            Some(held) if in_order && request_number > held => {
                return Err(SessionRefusal::Held(held))
            }
            _ => {}
        }
        if session.in_flight >= SESSION_IN_FLIGHT_MAX {
            return Err(SessionRefusal::Busy);
        }
        session.held = None;
        session.in_flight += 1;
        session
            .slots
            .insert(request_number, Slot::Pending(digest, Vec::new()));
        Ok(Admission::Serve(session.access.clone()))
    }

    /// An in-order create of session `id` numbered `request_number` was refused before it
    /// reached the log: refuse the session's later in-order creates until it is sent again.
    pub(crate) fn hold(&mut self, id: u64, request_number: u64) {
        if let Some(session) = self.by_id.get_mut(&id) {
            session.held = Some(
                session
                    .held
                    .map_or(request_number, |held| held.min(request_number)),
            );
        }
    }

    /// A read is done.
    /// End session `id` (already checked to be its client's live session). Requests of it
    /// still in flight are answered; later ones find no session.
    pub(crate) fn end(&mut self, id: u64) {
        self.by_id.remove(&id);
    }

    pub(crate) fn finish(&mut self, id: u64) {
        if let Some(session) = self.by_id.get_mut(&id) {
            session.in_flight = session.in_flight.saturating_sub(1);
        }
    }

    /// A create request is answered with `payload`: cache it if `keep` (a definite outcome)
    /// and return the duplicates that waited for it.
    pub(crate) fn finish_create(
        &mut self,
        id: u64,
        request_number: u64,
        payload: &Bytes,
        keep: bool,
    ) -> Vec<Waiter> {
        let Some(session) = self.by_id.get_mut(&id) else {
            return Vec::new();
        };
        session.in_flight = session.in_flight.saturating_sub(1);
        let (digest, waiters) = match session.slots.remove(&request_number) {
            Some(Slot::Pending(digest, waiters)) => (digest, waiters),
            Some(Slot::Done(digest, old)) => {
                session.cached_bytes -= old.len();
                (digest, Vec::new())
            }
            None => return Vec::new(),
        };
        if keep {
            session.cached_bytes += payload.len();
            session
                .slots
                .insert(request_number, Slot::Done(digest, payload.clone()));
            session.evict();
        }
        waiters
    }

    /// Sessions held (expired ones are evicted at the next registration).
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }
}

impl Session {
    /// Drop the oldest cached replies past the window's count or bytes.
    fn evict(&mut self) {
        loop {
            let done = self
                .slots
                .values()
                .filter(|slot| matches!(slot, Slot::Done(..)))
                .count();
            if done <= REPLY_CACHE_REPLIES_MAX && self.cached_bytes <= REPLY_CACHE_BYTES_MAX {
                return;
            }
            let oldest = self
                .slots
                .iter()
                .find(|(_, slot)| matches!(slot, Slot::Done(..)))
                .map(|(number, _)| *number);
            let Some(oldest) = oldest else {
                return;
            };
            if let Some(Slot::Done(_, payload)) = self.slots.remove(&oldest) {
                self.cached_bytes -= payload.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_client::protocol::Role;

    const A: RequestDigest = RequestDigest(1);
    const B: RequestDigest = RequestDigest(2);

    fn create(number: u64, digest: RequestDigest, in_order: bool) -> NumberedCreate {
        NumberedCreate {
            number,
            digest,
            in_order,
        }
    }

    fn waiter() -> Waiter {
        let (replies, _) = tokio::sync::mpsc::channel(1);
        Waiter {
            frame_request_id: 1,
            replies,
        }
    }

    fn access() -> Access {
        access_of(0)
    }

    fn access_of(credential: u8) -> Access {
        Access {
            credential: [credential; 32],
            name: [0; 32],
            role: Role::Operator,
            scope: None,
        }
    }

    /// Proves a duplicate gets the cached reply, waits while the original is served, the cache
    /// keeps only the newest replies, and sessions expire when idle and are bound to a client.
    #[test]
    fn sessions_cache_and_expire() {
        let now = Instant::now();
        let mut sessions = Sessions::new(Duration::from_secs(10));
        let id = sessions.register(9, access(), now).unwrap();
        assert_eq!(
            sessions.heartbeat(id, 8, now).err(),
            Some(SessionRefusal::Unknown)
        );
        assert!(matches!(
            sessions.admit_create(id, 9, create(1, A, false), waiter(), now),
            Ok(Admission::Serve(_))
        ));
        assert!(matches!(
            sessions.admit_create(id, 9, create(1, A, false), waiter(), now),
            Ok(Admission::Waiting)
        ));
        let reply = Bytes::from_static(b"reply");
        assert_eq!(sessions.finish_create(id, 1, &reply, true).len(), 1);
        assert!(
            matches!(sessions.admit_create(id, 9, create(1, A, false), waiter(), now), Ok(Admission::Cached(r)) if r == reply)
        );
        for number in 2..=(REPLY_CACHE_REPLIES_MAX as u64 + 1) {
            assert!(matches!(
                sessions.admit_create(id, 9, create(number, A, false), waiter(), now),
                Ok(Admission::Serve(_))
            ));
            sessions.finish_create(id, number, &reply, true);
        }
        assert!(matches!(
            sessions.admit_create(id, 9, create(1, A, false), waiter(), now),
            Ok(Admission::Serve(_))
        ));
        sessions.finish_create(id, 1, &reply, false);
        for _ in 0..SESSION_IN_FLIGHT_MAX {
            sessions.admit_read(id, 9, now).unwrap();
        }
        assert_eq!(
            sessions.admit_read(id, 9, now).err(),
            Some(SessionRefusal::Busy)
        );
        for _ in 0..SESSION_IN_FLIGHT_MAX {
            sessions.finish(id);
        }
        let later = now + Duration::from_secs(11);
        assert_eq!(
            sessions.heartbeat(id, 9, later).err(),
            Some(SessionRefusal::Unknown)
        );
        assert_eq!(sessions.len(), 0);
    }

    /// Proves a request number answers only the request first sent with it: other contents
    /// are refused while it is served and once its reply is cached, the original's duplicates
    /// still get that reply, and a number evicted from the cache (or never kept) is free.
    #[test]
    fn a_reused_number_with_other_contents_is_refused() {
        let now = Instant::now();
        let mut sessions = Sessions::new(Duration::from_secs(10));
        let id = sessions.register(9, access(), now).unwrap();
        assert!(matches!(
            sessions.admit_create(id, 9, create(7, A, false), waiter(), now),
            Ok(Admission::Serve(_))
        ));
        assert_eq!(
            sessions
                .admit_create(id, 9, create(7, B, false), waiter(), now)
                .err(),
            Some(SessionRefusal::NumberReused(7)),
            "while served"
        );
        let reply = Bytes::from_static(b"reply");
        assert!(sessions.finish_create(id, 7, &reply, true).is_empty());
        assert_eq!(
            sessions
                .admit_create(id, 9, create(7, B, false), waiter(), now)
                .err(),
            Some(SessionRefusal::NumberReused(7)),
            "once cached"
        );
        assert!(matches!(
            sessions.admit_create(id, 9, create(7, A, false), waiter(), now),
            Ok(Admission::Cached(r)) if r == reply
        ));
        // A reply not kept (no definite outcome) leaves the number free.
        assert!(matches!(
            sessions.admit_create(id, 9, create(8, A, false), waiter(), now),
            Ok(Admission::Serve(_))
        ));
        sessions.finish_create(id, 8, &reply, false);
        assert!(matches!(
            sessions.admit_create(id, 9, create(8, B, false), waiter(), now),
            Ok(Admission::Serve(_))
        ));
    }

    /// Proves an in-order create refused before the log holds the session's later in-order
    /// creates (never earlier ones, never unflagged ones) until it is admitted again.
    #[test]
    fn a_refused_in_order_create_holds_the_later_ones() {
        let now = Instant::now();
        let mut sessions = Sessions::new(Duration::from_secs(10));
        let id = sessions.register(9, access(), now).unwrap();
        let admitted = |sessions: &mut Sessions, number: u64, in_order: bool| {
            matches!(
                sessions.admit_create(id, 9, create(number, A, in_order), waiter(), now),
                Ok(Admission::Serve(_))
            )
        };
        assert!(admitted(&mut sessions, 5, true));
        sessions.finish_create(id, 5, &Bytes::new(), false);
        sessions.hold(id, 5);
        sessions.hold(id, 7);
        for later in [6, 7, 8] {
            assert_eq!(
                sessions
                    .admit_create(id, 9, create(later, A, true), waiter(), now)
                    .err(),
                Some(SessionRefusal::Held(5)),
                "request {later} waits for 5"
            );
        }
        // The refused request sent again is admitted and releases the others.
        assert!(admitted(&mut sessions, 5, true));
        assert!(admitted(&mut sessions, 6, true));
        // An unflagged create is never held, and releases a hold.
        sessions.hold(id, 10);
        assert!(admitted(&mut sessions, 12, false));
        assert!(admitted(&mut sessions, 11, true));
    }

    /// Proves one credential holds at most `SESSIONS_PER_CREDENTIAL_MAX` sessions while others
    /// still register, the table as a whole holds `SESSIONS_MAX`, and expired sessions give
    /// their places back.
    #[test]
    fn sessions_are_capped_per_credential_and_in_all() {
        let now = Instant::now();
        let mut sessions = Sessions::new(Duration::from_secs(10));
        for client in 0..SESSIONS_PER_CREDENTIAL_MAX as u128 {
            sessions.register(client, access_of(1), now).unwrap();
        }
        assert_eq!(
            sessions.register(1000, access_of(1), now),
            Err(RegisterRefusal::CredentialFull)
        );
        let credentials = SESSIONS_MAX / SESSIONS_PER_CREDENTIAL_MAX;
        for credential in 2..=credentials {
            for client in 0..SESSIONS_PER_CREDENTIAL_MAX as u128 {
                sessions
                    .register(client, access_of(credential as u8), now)
                    .unwrap();
            }
        }
        assert_eq!(sessions.len(), SESSIONS_MAX);
        assert_eq!(
            sessions.register(1000, access_of(200), now),
            Err(RegisterRefusal::Full)
        );
        let later = now + Duration::from_secs(11);
        assert!(sessions.register(1000, access_of(1), later).is_ok());
        assert_eq!(sessions.len(), 1);
    }

    /// Proves a client that registers again holds one session, not one per registration: a
    /// client re-registering far more often than its credential's share (a leader flapping
    /// between nodes) is never refused, its old idle session is gone, a session with a request
    /// in flight stays until it finishes, and another client's session is untouched.
    #[test]
    fn registering_again_replaces_the_clients_idle_session() {
        let now = Instant::now();
        let mut sessions = Sessions::new(Duration::from_secs(10));
        let other = sessions.register(2, access_of(1), now).unwrap();
        let mut last = sessions.register(1, access_of(1), now).unwrap();
        for _ in 0..4 * SESSIONS_PER_CREDENTIAL_MAX {
            let next = sessions.register(1, access_of(1), now).unwrap();
            assert_eq!(
                sessions.heartbeat(last, 1, now).err(),
                Some(SessionRefusal::Unknown)
            );
            last = next;
        }
        assert_eq!(sessions.len(), 2);
        assert!(sessions.heartbeat(other, 2, now).is_ok());
        let busy = sessions.admit_read(last, 1, now);
        assert!(busy.is_ok(), "{busy:?}");
        let newest = sessions.register(1, access_of(1), now).unwrap();
        assert!(sessions.heartbeat(last, 1, now).is_ok(), "in flight: kept");
        sessions.finish(last);
        assert!(sessions.heartbeat(newest, 1, now).is_ok());
        assert_eq!(sessions.len(), 3);
    }
}
