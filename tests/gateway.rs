//! Black-box tests of the gateway: real `tally node` processes on loopback, spoken to over raw
//! sockets by a minimal client written here (frames from `tally_raft::net::frame`, payloads
//! from `tally_client::protocol`), so what is tested is the bytes on the wire.

use std::path::Path;
use std::time::Duration;

use tally::local_cluster::{metric_value, LocalCluster};
use tally_client::protocol::{
    decode_accounts, decode_balances, decode_create_reply, decode_node_state, decode_refusal,
    decode_registered, decode_reply, decode_statement_reply, decode_trades, decode_transfers,
    encode_admin, encode_balances_as_of_request, encode_ids, encode_node_state_request,
    encode_request, encode_statement_request, Admin, CreateReply, Operation, Refusal, ReplyHeader,
    RequestHeader, Status, FLAG_IN_ORDER, FLAG_LINEARIZABLE,
};
use tally_engine::records::{Account, AccountFlags, Trade, Transfer};
use tally_engine::{EventResult, StatementFilter};
use tally_gateway::credential_hash_hex;
use tally_raft::net::frame::{encode_frame, encode_header};
use tally_raft::net::{read_frame, write_frame, Frame};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const CLUSTER_ID: u128 = 0xC0FFEE;
const SUBMITTER: &str = "exchange-secret-0123456789";
const READER: &str = "fund-secret-0123456789abcd";
const OPERATOR: &str = "operator-secret-0123456789";
const SCOPED: &str = "broker-secret-0123456789ab";
const LEADER_WAIT: Duration = Duration::from_secs(30);
const REPLY_WAIT: Duration = Duration::from_secs(20);

/// The tests share two cores: one cluster at a time keeps elections from timing out on CPU
/// starvation rather than on what the test does.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Node config: small WAL segments and four credentials; the reader sees ledger 2 and
/// account 1; the scoped submitter ("broker") debits ledger 1 and account 21 only.
fn config(extra: &str) -> String {
    format!(
        "[raft]\n[wal]\nsegment_mib = 16\n{extra}\n[gateway]\ncluster_id = \"{CLUSTER_ID:#x}\"\n\
         [[gateway.credentials]]\nname = \"exchange\"\nhash = \"{}\"\nrole = \"submitter\"\n\
         [[gateway.credentials]]\nname = \"fund\"\nhash = \"{}\"\nrole = \"reader\"\n\
         ledgers = [2]\naccounts = [\"1\"]\n\
         [[gateway.credentials]]\nname = \"ops\"\nhash = \"{}\"\nrole = \"operator\"\n\
         [[gateway.credentials]]\nname = \"broker\"\nhash = \"{}\"\nrole = \"submitter\"\n\
         ledgers = [1]\naccounts = [\"21\"]\n",
        credential_hash_hex(SUBMITTER.as_bytes()),
        credential_hash_hex(READER.as_bytes()),
        credential_hash_hex(OPERATOR.as_bytes()),
        credential_hash_hex(SCOPED.as_bytes()),
    )
}

/// The raw protocol client below speaks plain TCP, so these nodes run with
/// `insecure_plaintext`: what is tested here is the gateway protocol; TLS is tests/security.rs'.
fn cluster(root: &Path, extra_config: &str) -> LocalCluster {
    LocalCluster::new(Path::new(env!("CARGO_BIN_EXE_tally")), root, extra_config).plaintext()
}

/// One connection of the raw test client.
struct Conn {
    stream: TcpStream,
    next_frame_id: u64,
}

impl Conn {
    async fn connect(addr: &str) -> Conn {
        Conn {
            stream: TcpStream::connect(addr).await.expect("connect"),
            next_frame_id: 1,
        }
    }

    async fn send(&mut self, operation: Operation, header: &RequestHeader, body: &[u8]) -> u64 {
        let id = self.next_frame_id;
        self.next_frame_id += 1;
        let frame = Frame {
            kind: operation.kind(),
            request_id: id,
            payload: encode_request(header, body).into(),
        };
        write_frame(&mut self.stream, &frame).await.expect("send");
        id
    }

    /// The next reply frame; `None` if the node closed the connection.
    async fn recv(&mut self) -> Option<Frame> {
        let read = tokio::time::timeout(REPLY_WAIT, read_frame(&mut self.stream, 64 << 20))
            .await
            .expect("a reply in time");
        read.ok().flatten()
    }

    async fn call(
        &mut self,
        operation: Operation,
        header: &RequestHeader,
        body: &[u8],
    ) -> (ReplyHeader, Vec<u8>, Frame) {
        let id = self.send(operation, header, body).await;
        let frame = self.recv().await.expect("the connection stays open");
        assert_eq!(frame.request_id, id);
        assert_eq!(frame.kind, operation.reply_kind());
        let (header, body) = decode_reply(&frame.payload).expect("a well-formed reply");
        let body = body.to_vec();
        (header, body, frame)
    }

    /// The node closes this connection (EOF or reset) without replying.
    async fn expect_closed(&mut self) {
        assert!(
            self.recv().await.is_none(),
            "the connection should be closed"
        );
    }
}

/// A registered session on one connection.
struct Session {
    conn: Conn,
    header: RequestHeader,
}

impl Session {
    async fn register(addr: &str, secret: &str) -> Result<Session, (Status, Refusal)> {
        Session::register_as(addr, secret, rand::random()).await
    }

    /// A session of the client `client_id` (a client keeps its id across sessions).
    async fn register_as(
        addr: &str,
        secret: &str,
        client_id: u128,
    ) -> Result<Session, (Status, Refusal)> {
        let mut conn = Conn::connect(addr).await;
        let header = RequestHeader {
            flags: 0,
            cluster_id: CLUSTER_ID,
            client_id,
            session: 0,
            request_number: 0,
        };
        let (reply, body, _) = conn
            .call(Operation::Register, &header, secret.as_bytes())
            .await;
        if reply.status != Status::Ok {
            return Err((reply.status, decode_refusal(&body).expect("refusal")));
        }
        let registered = decode_registered(&body).expect("register reply");
        assert_eq!(registered.session, reply.session);
        Ok(Session {
            conn,
            header: RequestHeader {
                session: registered.session,
                ..header
            },
        })
    }

    async fn call(&mut self, operation: Operation, body: &[u8]) -> (ReplyHeader, Vec<u8>) {
        self.header.request_number += 1;
        let (reply, body, _) = self.conn.call(operation, &self.header, body).await;
        (reply, body)
    }

    async fn ok(&mut self, operation: Operation, body: &[u8]) -> (ReplyHeader, Vec<u8>) {
        let (reply, body) = self.call(operation, body).await;
        assert_eq!(reply.status, Status::Ok, "{:?}", decode_refusal(&body));
        (reply, body)
    }

    async fn refused(&mut self, operation: Operation, body: &[u8]) -> (Status, Refusal) {
        let (reply, body) = self.call(operation, body).await;
        assert_ne!(reply.status, Status::Ok);
        (reply.status, decode_refusal(&body).expect("refusal"))
    }

    async fn create(&mut self, operation: Operation, body: &[u8]) -> CreateReply {
        let (reply, body) = self.ok(operation, body).await;
        assert!(reply.commit_index > 0);
        decode_create_reply(&body).expect("create reply")
    }
}

fn account(id: u128, ledger: u32) -> Account {
    Account {
        id,
        ledger,
        code: 1,
        flags: AccountFlags::HISTORY,
        ..Account::default()
    }
}

fn transfer(id: u128, debit: u128, credit: u128, amount: u128, ledger: u32) -> Transfer {
    Transfer {
        id,
        debit_account_id: debit,
        credit_account_id: credit,
        amount,
        ledger,
        code: 1,
        ..Transfer::default()
    }
}

fn records<T>(items: &[T], encode: impl Fn(&T) -> [u8; 128]) -> Vec<u8> {
    items.iter().flat_map(encode).collect()
}

fn failures(reply: &CreateReply) -> Vec<(u32, Option<EventResult>)> {
    reply
        .failures
        .iter()
        .map(|f| (f.index, f.result()))
        .collect()
}

/// Proves, against a 3-node cluster: every operation over the wire with replies by exception;
/// a follower redirects to the leader; roles and a reader's scope are enforced; a duplicate
/// request number returns the cached reply, and the number reused for other contents is
/// refused `RequestNumberReused` with nothing applied; a retry after a lost reply (same session, or a
/// new one as after a failover) applies nothing twice; a wrong cluster id or an unknown
/// credential is refused; a bad checksum, a truncated and an oversized frame close only their
/// own connection while other clients keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_end_to_end() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let mut cluster = cluster(root.path(), &config(""));
    cluster.found(&[1, 2, 3]).expect("start");
    let leader = cluster.wait_leader(LEADER_WAIT).await.expect("leader");
    let leader_addr = cluster.addr(leader).expect("addr");
    let follower = *cluster
        .nodes
        .keys()
        .find(|id| **id != leader)
        .expect("follower");

    // --- a follower takes sessions (for local reads) but redirects writes to the leader
    let mut on_follower = Session::register(&cluster.addr(follower).expect("addr"), SUBMITTER)
        .await
        .expect("a follower registers");
    // A follower that has not yet heard the new leader's first heartbeat refuses without a
    // hint (`wait_leader` needs only a majority to agree); it names the leader once it has.
    let deadline = tokio::time::Instant::now() + LEADER_WAIT;
    loop {
        let (status, refusal) = on_follower
            .refused(
                Operation::CreateAccounts,
                &records(&[account(1, 1)], Account::encode),
            )
            .await;
        assert_eq!(status, Status::NotLeader);
        if refusal.leader.is_some() || tokio::time::Instant::now() > deadline {
            assert_eq!(refusal.leader, Some((leader, leader_addr.clone())));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut submitter = Session::register(&leader_addr, SUBMITTER)
        .await
        .expect("submitter");
    let mut reader = Session::register(&leader_addr, READER)
        .await
        .expect("reader");
    let mut operator = Session::register(&leader_addr, OPERATOR)
        .await
        .expect("operator");

    // --- an empty batch: answered with no failures, nothing logged (commit index 0)
    let (reply, body) = submitter.ok(Operation::CreateTransfers, &[]).await;
    assert_eq!(reply.commit_index, 0);
    let empty = decode_create_reply(&body).expect("create reply");
    assert_eq!(
        (empty.timestamp_first, empty.failures.len()),
        (0, 0),
        "{empty:?}"
    );

    // --- every write operation, replies by exception
    let accounts = [
        account(1, 1),
        account(2, 1),
        account(3, 1),
        account(4, 1),
        account(5, 0), // ledger must not be zero
        account(11, 2),
        account(12, 2),
    ];
    let reply = submitter
        .create(
            Operation::CreateAccounts,
            &records(&accounts, Account::encode),
        )
        .await;
    assert_eq!(
        failures(&reply),
        [(4, Some(EventResult::LedgerMustNotBeZero))]
    );
    assert!(reply.timestamp_first < reply.timestamp_last);
    let transfers = [transfer(100, 1, 2, 10, 1), transfer(101, 3, 3, 5, 1)];
    let reply = submitter
        .create(
            Operation::CreateTransfers,
            &records(&transfers, Transfer::encode),
        )
        .await;
    assert_eq!(
        failures(&reply),
        [(1, Some(EventResult::AccountsMustBeDifferent))]
    );
    let after_transfer = reply.timestamp_last;
    let trade = Trade {
        id: 200,
        instrument_debit_account_id: 11,
        instrument_credit_account_id: 12,
        cash_debit_account_id: 3,
        cash_credit_account_id: 4,
        instrument_ledger: 2,
        cash_ledger: 1,
        quantity: 5,
        cash_amount: 50,
        code: 1,
        ..Trade::default()
    };
    let reply = submitter
        .create(Operation::CreateTrades, &trade.encode())
        .await;
    assert_eq!(failures(&reply), []);

    // --- every read operation (linearizable for the operator)
    operator.header.flags = FLAG_LINEARIZABLE;
    let (read, body) = operator
        .ok(Operation::LookupAccounts, &encode_ids(&[1, 2, 99]))
        .await;
    assert!(read.commit_index > 0);
    let found = decode_accounts(&body).expect("accounts");
    assert_eq!(found.iter().map(|a| a.id).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(found[0].debits_posted, 10);
    let (_, body) = operator
        .ok(Operation::LookupTransfers, &encode_ids(&[100, 101]))
        .await;
    assert_eq!(decode_transfers(&body).expect("transfers")[0].amount, 10);
    let (_, body) = operator
        .ok(Operation::LookupTrades, &encode_ids(&[200]))
        .await;
    assert_eq!(decode_trades(&body).expect("trades")[0].quantity, 5);
    let filter = StatementFilter {
        account_id: 1,
        limit: 10,
        ..StatementFilter::default()
    };
    let (_, body) = operator
        .ok(Operation::Statement, &encode_statement_request(&filter))
        .await;
    let statement = decode_statement_reply(&body).expect("statement").items;
    assert_eq!(statement.len(), 1);
    assert_eq!(statement[0].balances_after.debits_posted, 10);
    let (_, body) = operator
        .ok(
            Operation::BalancesAsOf,
            &encode_balances_as_of_request(1, after_transfer),
        )
        .await;
    assert_eq!(decode_balances(&body).expect("balances").debits_posted, 10);
    let (_, body) = operator
        .ok(
            Operation::BalancesAsOf,
            &encode_balances_as_of_request(1, 1),
        )
        .await;
    assert_eq!(decode_balances(&body).expect("balances").debits_posted, 0);
    let (_, body) = operator.ok(Operation::Heartbeat, &[]).await;
    assert!(body.is_empty());

    // --- operator operations: node state and administration, for the operator role only
    for session in [&mut submitter, &mut reader] {
        let (status, _) = session
            .refused(Operation::NodeState, &encode_node_state_request(false))
            .await;
        assert_eq!(status, Status::Forbidden);
        let (status, _) = session
            .refused(Operation::Admin, &encode_admin(&Admin::Snapshot))
            .await;
        assert_eq!(status, Status::Forbidden);
    }
    let (reply, body) = operator
        .ok(Operation::NodeState, &encode_node_state_request(true))
        .await;
    let state = decode_node_state(&body).expect("node state");
    assert_eq!((state.node_id, state.role.as_str()), (leader, "Leader"));
    assert_eq!(state.voters, [1, 2, 3]);
    assert_eq!(reply.commit_index, state.applied_index());
    assert!(state.accounts >= 6 && state.digest != [0; 32], "{state:?}");
    operator
        .ok(Operation::Admin, &encode_admin(&Admin::Snapshot))
        .await;
    let (status, refusal) = operator
        .refused(
            Operation::Admin,
            &encode_admin(&Admin::RemoveNodes(vec![9])),
        )
        .await;
    assert_eq!(status, Status::BadRequest, "{refusal:?}");
    assert!(refusal.message.contains("not a member"), "{refusal:?}");
    let (status, _) = operator.refused(Operation::Admin, &[7; 8]).await;
    assert_eq!(status, Status::BadRequest);
    // A follower serves its own state and local reads; a linearizable read names the leader.
    let mut follower_operator = Session::register(&cluster.addr(follower).expect("addr"), OPERATOR)
        .await
        .expect("operator on a follower");
    let (_, body) = follower_operator
        .ok(Operation::NodeState, &encode_node_state_request(false))
        .await;
    let state = decode_node_state(&body).expect("node state");
    assert_eq!((state.node_id, state.leader), (follower, Some(leader)));
    follower_operator
        .ok(Operation::LookupAccounts, &encode_ids(&[1]))
        .await;
    follower_operator.header.flags = FLAG_LINEARIZABLE;
    let (status, refusal) = follower_operator
        .refused(Operation::LookupAccounts, &encode_ids(&[1]))
        .await;
    assert_eq!(status, Status::NotLeader);
    assert_eq!(refusal.leader, Some((leader, leader_addr.clone())));

    // --- roles and scopes: the reader sees ledger 2 and account 1 only, and writes nothing
    let (status, _) = reader
        .refused(Operation::CreateAccounts, &account(20, 2).encode())
        .await;
    assert_eq!(status, Status::Forbidden);
    let (status, _) = submitter
        .refused(Operation::LookupAccounts, &encode_ids(&[1]))
        .await;
    assert_eq!(status, Status::Forbidden);
    let (_, body) = reader
        .ok(Operation::LookupAccounts, &encode_ids(&[1, 2, 3, 11, 999]))
        .await;
    let visible: Vec<u128> = decode_accounts(&body)
        .expect("accounts")
        .iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(visible, [1, 11]);
    let (_, body) = reader
        .ok(Operation::LookupTransfers, &encode_ids(&[100]))
        .await;
    assert_eq!(
        decode_transfers(&body).expect("transfers").len(),
        1,
        "1 is a side"
    );
    let (_, body) = reader
        .ok(Operation::LookupTrades, &encode_ids(&[200]))
        .await;
    assert_eq!(
        decode_trades(&body).expect("trades").len(),
        1,
        "11 is a leg"
    );
    // Outside the scope reads exactly as absent, in every read: lookups leave out 2 and 3
    // as they leave out 999 (above); statements and balances give one and the same answer.
    let mut answers = Vec::new();
    for account_id in [2, 3, 999] {
        let outside = StatementFilter {
            account_id,
            ..filter
        };
        let (status, refusal) = reader
            .refused(Operation::Statement, &encode_statement_request(&outside))
            .await;
        answers.push((status, refusal.message));
        let (status, refusal) = reader
            .refused(
                Operation::BalancesAsOf,
                &encode_balances_as_of_request(account_id, u64::MAX),
            )
            .await;
        answers.push((status, refusal.message));
    }
    assert_eq!(answers[0].0, Status::NotFound);
    assert!(
        answers.iter().all(|answer| *answer == answers[0]),
        "out of scope and absent answer alike: {answers:?}"
    );
    reader
        .ok(
            Operation::BalancesAsOf,
            &encode_balances_as_of_request(11, u64::MAX),
        )
        .await;

    // --- a duplicate request number returns the cached reply, without submitting again
    let body = records(&[transfer(102, 1, 2, 7, 1)], Transfer::encode);
    submitter.header.request_number += 1;
    let number = submitter.header.request_number;
    let (first, _, first_frame) = submitter
        .conn
        .call(Operation::CreateTransfers, &submitter.header, &body)
        .await;
    let (again, _, again_frame) = submitter
        .conn
        .call(Operation::CreateTransfers, &submitter.header, &body)
        .await;
    assert_eq!(first.status, Status::Ok);
    assert_eq!(
        again_frame.payload, first_frame.payload,
        "byte for byte the cached reply"
    );
    assert_eq!(again.commit_index, first.commit_index);
    // The same number with other contents (another transfer, another operation) is refused by
    // name and applies nothing; the original's retry still gets its cached reply.
    let reused = [
        (
            Operation::CreateTransfers,
            records(&[transfer(104, 1, 2, 500, 1)], Transfer::encode),
        ),
        (
            Operation::CreateAccounts,
            records(&[account(104, 1)], Account::encode),
        ),
    ];
    for (operation, other) in &reused {
        let (refused, refusal_body, _) = submitter
            .conn
            .call(*operation, &submitter.header, other)
            .await;
        assert_eq!(refused.status, Status::RequestNumberReused);
        let refusal = decode_refusal(&refusal_body).expect("refusal");
        assert!(
            refusal.message.contains("already used"),
            "{}",
            refusal.message
        );
    }
    let (_, _, once_more) = submitter
        .conn
        .call(Operation::CreateTransfers, &submitter.header, &body)
        .await;
    assert_eq!(once_more.payload, first_frame.payload);
    let (_, found) = operator
        .ok(Operation::LookupTransfers, &encode_ids(&[104]))
        .await;
    assert!(decode_transfers(&found).expect("transfers").is_empty());

    // --- a retry after a lost reply applies nothing twice: the first attempt's connection
    // dies before its reply is read; the retry on a new connection gets the original reply.
    let lost = records(&[transfer(103, 1, 2, 1000, 1)], Transfer::encode);
    let mut doomed = Conn::connect(&leader_addr).await;
    submitter.header.request_number = number + 1;
    doomed
        .send(Operation::CreateTransfers, &submitter.header, &lost)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(doomed);
    let (retried, retried_body, _) = submitter
        .conn
        .call(Operation::CreateTransfers, &submitter.header, &lost)
        .await;
    assert_eq!(retried.status, Status::Ok);
    assert_eq!(
        failures(&decode_create_reply(&retried_body).expect("reply")),
        []
    );
    // After a failover the session is gone; a new session's retry answers `exists`.
    let mut fresh = Session::register(&leader_addr, SUBMITTER)
        .await
        .expect("submitter");
    let reply = fresh.create(Operation::CreateTransfers, &lost).await;
    assert_eq!(failures(&reply), [(0, Some(EventResult::Exists))]);
    let (_, body) = operator
        .ok(Operation::LookupAccounts, &encode_ids(&[1]))
        .await;
    assert_eq!(
        decode_accounts(&body).expect("accounts")[0].debits_posted,
        10 + 7 + 1000,
        "each transfer applied exactly once"
    );

    // --- wrong cluster id and unknown credentials are refused
    let wrong = RequestHeader {
        cluster_id: CLUSTER_ID + 1,
        ..submitter.header
    };
    let (reply, _, _) = submitter.conn.call(Operation::Heartbeat, &wrong, &[]).await;
    assert_eq!(reply.status, Status::WrongCluster);
    assert_eq!(reply.cluster_id, CLUSTER_ID);
    let (status, _) = Session::register(&leader_addr, "not-a-configured-secret-at-all")
        .await
        .err()
        .expect("unknown credential");
    assert_eq!(status, Status::Unauthenticated);

    // --- bad checksum, truncated frame, oversized frames: only that connection closes
    let mut bytes = Vec::new();
    let frame = Frame {
        kind: Operation::Heartbeat.kind(),
        request_id: 1,
        payload: encode_request(&submitter.header, &[]).into(),
    };
    encode_frame(&frame, &mut bytes);
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    let mut corrupt = Conn::connect(&leader_addr).await;
    corrupt.stream.write_all(&bytes).await.expect("send");
    corrupt.expect_closed().await;

    let mut truncated = Conn::connect(&leader_addr).await;
    truncated
        .stream
        .write_all(&bytes[..40])
        .await
        .expect("send");
    truncated.stream.shutdown().await.expect("half-close");
    truncated.expect_closed().await;

    // Over the gateway's limit (a full request and its header) is refused from the frame
    // header, before the payload is read or allocated.
    // The node answers first, so the client knows why.
    let mut oversized = Conn::connect(&leader_addr).await;
    let header = encode_header(Operation::CreateTransfers.kind(), 9, &vec![0u8; 2 << 20]);
    oversized.stream.write_all(&header).await.expect("send");
    let answer = oversized.recv().await.expect("an answer before the close");
    assert_eq!(
        (answer.kind, answer.request_id),
        (Operation::CreateTransfers.reply_kind(), 9)
    );
    let (reply, body) = decode_reply(&answer.payload).expect("a reply");
    assert_eq!(reply.status, Status::BadRequest);
    let refusal = decode_refusal(body).expect("refusal");
    assert!(
        refusal.message.contains("over its limit"),
        "{}",
        refusal.message
    );
    oversized.expect_closed().await;

    // A header whose body size disagrees with the frame gets a reply; the connection stays.
    let mut payload = encode_request(&submitter.header, &[0u8; 128]);
    payload[4] = 0;
    let frame = Frame {
        kind: Operation::CreateTransfers.kind(),
        request_id: 77,
        payload: payload.into(),
    };
    write_frame(&mut submitter.conn.stream, &frame)
        .await
        .expect("send");
    let reply = submitter.conn.recv().await.expect("a reply");
    let (reply, body) = decode_reply(&reply.payload).expect("reply");
    assert_eq!(
        reply.status,
        Status::BadRequest,
        "{:?}",
        decode_refusal(body)
    );
    submitter.ok(Operation::Heartbeat, &[]).await;
    reader.ok(Operation::Heartbeat, &[]).await;
    operator
        .ok(Operation::LookupAccounts, &encode_ids(&[2]))
        .await;

    // --- the refusals above are counted by reason on the nodes that refused them
    let (status, leader_metrics) = cluster.admin_get(leader, "/metrics").expect("metrics");
    assert_eq!(status, 200);
    let rejects = |text: &str, reason: &str| {
        metric_value(text, &format!("tally_rejects_total{{reason=\"{reason}\"}}"))
            .unwrap_or_else(|| panic!("no {reason} rejects in:\n{text}"))
    };
    // Wrong cluster id, unknown credential, reader and submitter beyond their roles.
    assert!(rejects(&leader_metrics, "auth") >= 2.0);
    // The damaged frame and the body size that disagrees with its frame.
    assert!(rejects(&leader_metrics, "malformed") >= 2.0);
    assert!(rejects(&leader_metrics, "too_large") >= 1.0);
    let (_, follower_metrics) = cluster.admin_get(follower, "/metrics").expect("metrics");
    assert!(rejects(&follower_metrics, "not_leader") >= 1.0);
    // Transfers 100, 102 and 103 applied; 101 refused (same account twice); 103 again
    // answered `exists` to the fresh session.
    let transfers = |result: &str| {
        metric_value(
            &leader_metrics,
            &format!("tally_events_total{{operation=\"create_transfers\",result=\"{result}\"}}"),
        )
    };
    assert_eq!(transfers("ok"), Some(3.0));
    assert_eq!(transfers("accounts_must_be_different"), Some(1.0));
    assert_eq!(transfers("exists"), Some(1.0));
}

/// Proves a full batcher queue answers `Busy` instead of growing (a node with a one-batch
/// queue and one entry in flight, fed many full requests at once), that nothing refused is
/// applied, and that the node keeps serving; that requests sent in order (`FLAG_IN_ORDER`)
/// are never overtaken: once one is refused, every later one is refused until it is sent
/// again, so what applies is a prefix of what was sent; and that a node without credentials
/// refuses every gateway request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_under_overload() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let mut cluster = cluster(
        root.path(),
        &config("[batcher]\nentries_in_flight = 1\nqueue_batches = 1"),
    );
    cluster.found(&[1]).expect("start");
    let leader = cluster.wait_leader(LEADER_WAIT).await.expect("leader");
    let addr = cluster.addr(leader).expect("addr");
    let mut operator = Session::register(&addr, OPERATOR).await.expect("operator");
    let accounts = records(&[account(1, 1), account(2, 1)], Account::encode);
    operator.create(Operation::CreateAccounts, &accounts).await;

    const EVENTS: u128 = 8189;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(
            Session::register(&addr, SUBMITTER)
                .await
                .expect("submitter"),
        );
    }
    for (which, session) in sessions.iter_mut().enumerate() {
        for request in 0..16u128 {
            let first = 1_000_000 * (which as u128 + 1) + request * EVENTS;
            let batch: Vec<Transfer> = (first..first + EVENTS)
                .map(|id| transfer(id, 1, 2, 1, 1))
                .collect();
            session.header.request_number += 1;
            let body = records(&batch, Transfer::encode);
            session
                .conn
                .send(Operation::CreateTransfers, &session.header, &body)
                .await;
        }
    }
    let (mut ok, mut busy) = (0u128, 0);
    for session in &mut sessions {
        for _ in 0..16 {
            let frame = session.conn.recv().await.expect("a reply");
            let (reply, body) = decode_reply(&frame.payload).expect("reply");
            match reply.status {
                Status::Ok => {
                    assert_eq!(failures(&decode_create_reply(body).expect("reply")), []);
                    ok += 1;
                }
                Status::Busy => busy += 1,
                other => panic!("{other:?}: {:?}", decode_refusal(body)),
            }
        }
    }
    println!("overload: {ok} requests committed, {busy} answered Busy");
    assert!(busy > 0, "a full queue answers Busy");
    let (_, metrics) = cluster.admin_get(leader, "/metrics").expect("metrics");
    assert_eq!(
        metric_value(&metrics, "tally_rejects_total{reason=\"busy\"}"),
        Some(busy as f64),
        "every Busy answer is counted"
    );
    assert!(ok > 0, "the node kept committing");
    let (_, body) = operator
        .ok(Operation::LookupAccounts, &encode_ids(&[1]))
        .await;
    assert_eq!(
        decode_accounts(&body).expect("accounts")[0].debits_posted,
        ok * EVENTS,
        "exactly the requests answered Ok were applied"
    );

    // --- in order: what applies is a prefix, the refused one sent again releases the rest
    let mut ordered = Session::register(&addr, SUBMITTER)
        .await
        .expect("submitter");
    ordered.header.flags = FLAG_IN_ORDER;
    let mut sent = Vec::new();
    for request in 0..16u128 {
        let first = 5_000_000 + request * EVENTS;
        let batch: Vec<Transfer> = (first..first + EVENTS)
            .map(|id| transfer(id, 1, 2, 1, 1))
            .collect();
        ordered.header.request_number += 1;
        let body = records(&batch, Transfer::encode);
        ordered
            .conn
            .send(Operation::CreateTransfers, &ordered.header, &body)
            .await;
        sent.push((ordered.header.request_number, body));
    }
    let mut statuses = Vec::new();
    for _ in 0..16 {
        let frame = ordered.conn.recv().await.expect("a reply");
        let (reply, body) = decode_reply(&frame.payload).expect("reply");
        statuses.push((
            reply.request_number,
            reply.status,
            decode_refusal(body).ok(),
        ));
    }
    statuses.sort_by_key(|(number, _, _)| *number);
    let applied = statuses
        .iter()
        .take_while(|(_, status, _)| *status == Status::Ok)
        .count();
    println!("in order: {applied} of 16 requests applied before the first refusal");
    assert!(
        applied < 16,
        "the one-batch queue refused some: {statuses:?}"
    );
    let held = sent[applied].0;
    for (number, status, refusal) in &statuses[applied..] {
        assert_eq!(*status, Status::Busy, "request {number} after a refusal");
        if *number > held {
            let message = &refusal.as_ref().expect("a refusal").message;
            assert!(
                message.contains(&format!("request {held} of this session was refused")),
                "{message}"
            );
        }
    }
    // Later requests stay refused until the refused one is sent again ...
    let (later, body) = &sent[applied + 1];
    ordered.header.request_number = *later;
    let (reply, _, _) = ordered
        .conn
        .call(Operation::CreateTransfers, &ordered.header, body)
        .await;
    assert_eq!(reply.status, Status::Busy, "still held behind {held}");
    // ... and then go through, in order.
    for (number, body) in &sent[applied..] {
        ordered.header.request_number = *number;
        let (reply, body, _) = ordered
            .conn
            .call(Operation::CreateTransfers, &ordered.header, body)
            .await;
        assert_eq!(reply.status, Status::Ok, "{:?}", decode_refusal(&body));
    }
    let (_, body) = operator
        .ok(Operation::LookupAccounts, &encode_ids(&[1]))
        .await;
    assert_eq!(
        decode_accounts(&body).expect("accounts")[0].debits_posted,
        (ok + 16) * EVENTS,
        "all 16 in-order requests applied, once each"
    );

    // --- a node without credentials refuses everything, with a reason
    cluster.terminate(leader).expect("stop");
    drop(cluster);
    let bare_root = tempfile::tempdir().expect("tempdir");
    let mut bare = self::cluster(bare_root.path(), "[raft]\n").without_operator();
    bare.found(&[1]).expect("start");
    let header = RequestHeader {
        cluster_id: 0,
        ..RequestHeader::default()
    };
    // Without any credential the node protocol cannot be asked for the leader either: ask the
    // gateway until the node leads and answers for itself.
    let deadline = tokio::time::Instant::now() + LEADER_WAIT;
    let (reply, body) = loop {
        if let Ok(stream) = TcpStream::connect(&bare.addr(1).expect("addr")).await {
            let mut conn = Conn {
                stream,
                next_frame_id: 1,
            };
            let (reply, body, _) = conn
                .call(Operation::Register, &header, OPERATOR.as_bytes())
                .await;
            if !matches!(reply.status, Status::NotLeader | Status::Unavailable) {
                break (reply, body);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bare node never led"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(reply.status, Status::Unauthenticated);
    assert!(decode_refusal(&body)
        .expect("refusal")
        .message
        .contains("no gateway credentials"));
}

/// One node of a fresh single-node cluster: the cluster (keep it alive) and its address.
async fn single_node(root: &Path) -> (LocalCluster, u64, String) {
    let mut cluster = cluster(root, &config(""));
    cluster.found(&[1]).expect("start");
    let leader = cluster.wait_leader(LEADER_WAIT).await.expect("leader");
    let addr = cluster.addr(leader).expect("addr");
    (cluster, leader, addr)
}

/// The operator's view of `ids`: (id, debits posted, credits posted, debits pending).
async fn balances(operator: &mut Session, ids: &[u128]) -> Vec<(u128, u128, u128, u128)> {
    let (_, body) = operator
        .ok(Operation::LookupAccounts, &encode_ids(ids))
        .await;
    decode_accounts(&body)
        .expect("accounts")
        .iter()
        .map(|a| (a.id, a.debits_posted, a.credits_posted, a.debits_pending))
        .collect()
}

/// Proves replies survive a failover. A payment fails `exceeds_credits` on the leader; its
/// reply is lost (read here and set aside, never acted on) and the leader is killed with kill
/// -9; funds then arrive under the new leader. The client's retry — same client id, same
/// request number, a new session on the new leader — gets the original reply byte for byte
/// (the failure, its timestamps, its commit index) and moves nothing; the same number with
/// other contents is refused `RequestNumberReused` and applies nothing; the same event in a new
/// request answers `id_already_failed`. Balances prove nothing moved twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_the_leader_is_killed_gets_the_original_reply() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let mut cluster = cluster(root.path(), &config(""));
    cluster.found(&[1, 2, 3]).expect("start");
    let leader = cluster.wait_leader(LEADER_WAIT).await.expect("leader");
    let addr = cluster.addr(leader).expect("addr");
    let mut submitter = Session::register(&addr, SUBMITTER)
        .await
        .expect("submitter");
    let mut payer = account(31, 1);
    payer.flags = AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS;
    let accounts = [payer, account(32, 1), account(33, 1)];
    let created = submitter
        .create(
            Operation::CreateAccounts,
            &records(&accounts, Account::encode),
        )
        .await;
    assert_eq!(failures(&created), []);
    let payment = records(&[transfer(7101, 31, 32, 50, 1)], Transfer::encode);
    let (first, first_body) = submitter.ok(Operation::CreateTransfers, &payment).await;
    let number = submitter.header.request_number;
    assert_eq!(
        failures(&decode_create_reply(&first_body).expect("reply")),
        [(0, Some(EventResult::ExceedsCredits))]
    );

    let new_leader = cluster
        .fail_over(leader, LEADER_WAIT)
        .await
        .expect("a new leader");
    let new_addr = cluster.addr(new_leader).expect("addr");
    let mut funder = Session::register(&new_addr, SUBMITTER)
        .await
        .expect("funder");
    let funded = funder
        .create(
            Operation::CreateTransfers,
            &records(&[transfer(7102, 33, 31, 100, 1)], Transfer::encode),
        )
        .await;
    assert_eq!(failures(&funded), []);

    let mut retry = Session::register_as(&new_addr, SUBMITTER, submitter.header.client_id)
        .await
        .expect("the same client, a new session");
    retry.header.request_number = number;
    let (again, again_body, _) = retry
        .conn
        .call(Operation::CreateTransfers, &retry.header, &payment)
        .await;
    assert_eq!(again.status, Status::Ok);
    assert_eq!(again.commit_index, first.commit_index);
    assert_eq!(again_body, first_body, "the original reply, byte for byte");

    let other = records(&[transfer(7103, 33, 32, 1, 1)], Transfer::encode);
    let (reused, reused_body, _) = retry
        .conn
        .call(Operation::CreateTransfers, &retry.header, &other)
        .await;
    assert_eq!(reused.status, Status::RequestNumberReused);
    assert!(decode_refusal(&reused_body)
        .expect("refusal")
        .message
        .contains("already used"));
    let new_request = retry.create(Operation::CreateTransfers, &payment).await;
    assert_eq!(
        failures(&new_request),
        [(0, Some(EventResult::IdAlreadyFailed))]
    );

    let mut operator = Session::register(&new_addr, OPERATOR)
        .await
        .expect("operator");
    let (_, found) = operator
        .ok(Operation::LookupTransfers, &encode_ids(&[7101, 7103]))
        .await;
    assert!(decode_transfers(&found).expect("transfers").is_empty());
    assert_eq!(
        balances(&mut operator, &[31, 32, 33]).await,
        [(31, 0, 100, 0), (32, 0, 0, 0), (33, 100, 0, 0)],
        "only the funding moved"
    );
    cluster.start(leader).expect("restarted");
}

/// Proves a submitter scoped to ledger 1 and account 21 is refused, with `OutOfScope` naming
/// the first offending event and why, any request with an event that debits outside its
/// scope — a transfer debiting ledger 2, an account on ledger 2, a trade whose delivering
/// side is on ledger 2, a post that does not name its pending transfer's ledger — and that
/// nothing of such a request applies (its in-scope events included: looked up afterwards,
/// not found; balances unchanged); that in-scope requests (crediting anywhere, debiting
/// ledger 1 or account 21) succeed; and that every refusal is counted as `out_of_scope`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitter_scope_refuses_whole_requests() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let (cluster, leader, addr) = single_node(root.path()).await;
    let mut operator = Session::register(&addr, OPERATOR).await.expect("operator");
    let mut broker = Session::register(&addr, SCOPED).await.expect("broker");
    // Ledger 1 (cash): 1, 2. Ledger 2 (an instrument): 21, 22.
    let accounts = [account(1, 1), account(2, 1), account(21, 2), account(22, 2)];
    operator
        .create(
            Operation::CreateAccounts,
            &records(&accounts, Account::encode),
        )
        .await;
    let ids = [1, 2, 21, 22];
    let untouched = balances(&mut operator, &ids).await;
    let mut refusals = 0.0;

    // --- a transfer debiting ledger 2 refuses its whole request, the in-scope one too
    let mixed = [transfer(300, 1, 2, 5, 1), transfer(301, 22, 21, 5, 2)];
    let (status, refusal) = broker
        .refused(
            Operation::CreateTransfers,
            &records(&mixed, Transfer::encode),
        )
        .await;
    refusals += 1.0;
    assert_eq!(status, Status::OutOfScope, "{refusal:?}");
    assert_eq!(refusal.event, Some(1));
    assert!(
        refusal.message.contains("debits account 22 on ledger 2")
            && refusal.message.contains("ledgers [1]"),
        "{}",
        refusal.message
    );
    let (_, body) = operator
        .ok(Operation::LookupTransfers, &encode_ids(&[300, 301]))
        .await;
    assert_eq!(
        decode_transfers(&body).expect("transfers"),
        [],
        "nothing applied"
    );
    assert_eq!(balances(&mut operator, &ids).await, untouched);

    // --- an account on a ledger outside the scope
    let (status, refusal) = broker
        .refused(
            Operation::CreateAccounts,
            &records(&[account(3, 1), account(23, 2)], Account::encode),
        )
        .await;
    refusals += 1.0;
    assert_eq!((status, refusal.event), (Status::OutOfScope, Some(1)));
    let (_, body) = operator
        .ok(Operation::LookupAccounts, &encode_ids(&[3, 23]))
        .await;
    assert_eq!(decode_accounts(&body).expect("accounts"), []);

    // --- a trade whose seller delivers from 22 (ledger 2, not listed)
    let trade = |id, seller_instrument, buyer_instrument| Trade {
        id,
        instrument_debit_account_id: seller_instrument,
        instrument_credit_account_id: buyer_instrument,
        cash_debit_account_id: 1,
        cash_credit_account_id: 2,
        instrument_ledger: 2,
        cash_ledger: 1,
        quantity: 3,
        cash_amount: 30,
        code: 1,
        ..Trade::default()
    };
    let (status, refusal) = broker
        .refused(Operation::CreateTrades, &trade(400, 22, 21).encode())
        .await;
    refusals += 1.0;
    assert_eq!((status, refusal.event), (Status::OutOfScope, Some(0)));
    assert!(
        refusal.message.contains("instrument"),
        "{}",
        refusal.message
    );
    let (_, body) = operator
        .ok(Operation::LookupTrades, &encode_ids(&[400]))
        .await;
    assert_eq!(decode_trades(&body).expect("trades"), []);
    assert_eq!(balances(&mut operator, &ids).await, untouched);

    // --- in scope: debits on ledger 1, credits anywhere, a trade delivering from listed 21
    let reply = broker
        .create(
            Operation::CreateAccounts,
            &records(&[account(3, 1)], Account::encode),
        )
        .await;
    assert_eq!(failures(&reply), []);
    let pending = Transfer {
        flags: tally_engine::records::TransferFlags::PENDING,
        ..transfer(302, 2, 1, 4, 1)
    };
    let batch = [transfer(300, 1, 2, 5, 1), pending];
    let reply = broker
        .create(
            Operation::CreateTransfers,
            &records(&batch, Transfer::encode),
        )
        .await;
    assert_eq!(failures(&reply), []);
    let reply = broker
        .create(Operation::CreateTrades, &trade(401, 21, 22).encode())
        .await;
    assert_eq!(failures(&reply), []);

    // --- a post must name its pending transfer's ledger (or debit account) when scoped
    let post = |id, ledger| Transfer {
        id,
        pending_id: 302,
        amount: u128::MAX, // all of it
        ledger,
        flags: tally_engine::records::TransferFlags::POST_PENDING_TRANSFER,
        ..Transfer::default()
    };
    let (status, refusal) = broker
        .refused(Operation::CreateTransfers, &post(303, 0).encode())
        .await;
    refusals += 1.0;
    assert_eq!((status, refusal.event), (Status::OutOfScope, Some(0)));
    assert!(refusal.message.contains("302"), "{}", refusal.message);
    let reply = broker
        .create(Operation::CreateTransfers, &post(303, 1).encode())
        .await;
    assert_eq!(failures(&reply), []);
    assert_eq!(
        balances(&mut operator, &ids).await,
        [
            // 1 paid 5 (transfer 300) and 30 (trade 401), received 4 (posted 302).
            (1, 35, 4, 0),
            (2, 4, 35, 0),
            (21, 3, 0, 0),
            (22, 0, 3, 0),
        ]
    );

    let (status, metrics) = cluster.admin_get(leader, "/metrics").expect("metrics");
    assert_eq!(status, 200);
    assert_eq!(
        metric_value(&metrics, "tally_rejects_total{reason=\"out_of_scope\"}"),
        Some(refusals),
        "every OutOfScope refusal is counted"
    );
}

/// Proves what a stranger (no session) can make the node do is bounded: a register frame
/// longer than the longest credential closes its connection from the frame header, while the
/// longest credential is still heard; a request of any other kind without a live session is
/// answered `SessionUnknown` before its body is decoded (a malformed body gets no
/// `BadRequest`), and the connection stays usable. And that one credential holds at most
/// `SESSIONS_PER_CREDENTIAL_MAX` sessions (one more is `Busy`, naming the credential) while
/// another credential still registers; a session ended by its client frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_and_sessions_per_credential_are_bounded() {
    use tally_gateway::limits::{CREDENTIAL_BYTES_MAX, SESSIONS_PER_CREDENTIAL_MAX};
    let _serial = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let (cluster, leader, addr) = single_node(root.path()).await;
    let stranger = RequestHeader {
        cluster_id: CLUSTER_ID,
        client_id: 7,
        ..RequestHeader::default()
    };

    // --- registration: the longest credential is heard, one byte more closes the connection
    let mut conn = Conn::connect(&addr).await;
    let longest = vec![b'x'; CREDENTIAL_BYTES_MAX];
    let (reply, _, _) = conn.call(Operation::Register, &stranger, &longest).await;
    assert_eq!(reply.status, Status::Unauthenticated);
    let mut over = Conn::connect(&addr).await;
    let payload = encode_request(&stranger, &vec![b'x'; CREDENTIAL_BYTES_MAX + 1]);
    let header = encode_header(Operation::Register.kind(), 1, &payload);
    over.stream.write_all(&header).await.expect("send");
    let answer = over.recv().await.expect("an answer before the close");
    assert_eq!(
        decode_reply(&answer.payload).expect("a reply").0.status,
        Status::BadRequest
    );
    over.expect_closed().await;

    // --- other kinds need a live session before their body is looked at
    for (operation, body) in [
        (Operation::LookupAccounts, vec![0u8; 15]),
        (Operation::CreateTransfers, vec![0u8; 100]),
        (Operation::Statement, vec![1u8; 3]),
        (Operation::Heartbeat, vec![0u8; 1]),
    ] {
        let (reply, body, _) = conn.call(operation, &stranger, &body).await;
        assert_eq!(
            reply.status,
            Status::SessionUnknown,
            "{operation:?}: {:?}",
            decode_refusal(&body)
        );
    }

    // --- one credential holds at most SESSIONS_PER_CREDENTIAL_MAX sessions
    let mut held = 0;
    let mut first = None;
    let refused = loop {
        let header = RequestHeader {
            client_id: rand::random(),
            ..stranger
        };
        let (reply, body, _) = conn
            .call(Operation::Register, &header, READER.as_bytes())
            .await;
        if reply.status != Status::Ok {
            break (reply.status, decode_refusal(&body).expect("refusal"));
        }
        first.get_or_insert(RequestHeader {
            session: reply.session,
            request_number: 1,
            ..header
        });
        held += 1;
        assert!(
            held <= SESSIONS_PER_CREDENTIAL_MAX,
            "the cap was not enforced"
        );
    };
    assert_eq!(held, SESSIONS_PER_CREDENTIAL_MAX);
    assert_eq!(refused.0, Status::Busy);
    assert!(
        refused.1.message.contains("\"fund\"")
            && refused
                .1
                .message
                .contains(&SESSIONS_PER_CREDENTIAL_MAX.to_string()),
        "{}",
        refused.1.message
    );
    // A client that is done ends its session, and the credential may register again.
    let first = first.expect("a session");
    let (reply, _, _) = conn.call(Operation::EndSession, &first, &[]).await;
    assert_eq!(reply.status, Status::Ok);
    let (reply, _, _) = conn.call(Operation::EndSession, &first, &[]).await;
    assert_eq!(reply.status, Status::SessionUnknown, "ended once");
    let again = RequestHeader {
        client_id: rand::random(),
        ..stranger
    };
    let (reply, _, _) = conn
        .call(Operation::Register, &again, READER.as_bytes())
        .await;
    assert_eq!(
        reply.status,
        Status::Ok,
        "the ended session's place is free"
    );
    let mut operator = Session::register(&addr, OPERATOR)
        .await
        .expect("another credential still registers");
    operator.ok(Operation::Heartbeat, &[]).await;
    let (_, metrics) = cluster.admin_get(leader, "/metrics").expect("metrics");
    assert_eq!(
        metric_value(&metrics, "tally_gateway_sessions"),
        Some((SESSIONS_PER_CREDENTIAL_MAX + 1) as f64)
    );
}

/// Proves `tally hash-credential` reads the secret from standard input (the hash the node
/// expects), warns when given `--secret` on the command line, and refuses empty input.
#[test]
fn hash_credential_reads_standard_input() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let run = |args: &[&str], input: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
            .arg("hash-credential")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tally");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write the secret");
        child.wait_with_output().expect("tally ends")
    };
    let expected = credential_hash_hex(SUBMITTER.as_bytes());
    let piped = run(&[], &format!("{SUBMITTER}\n"));
    assert!(piped.status.success());
    assert_eq!(String::from_utf8_lossy(&piped.stdout).trim(), expected);
    assert!(piped.stderr.is_empty(), "no warning for a piped secret");
    let flag = run(&["--secret", SUBMITTER], "");
    assert!(flag.status.success());
    assert_eq!(String::from_utf8_lossy(&flag.stdout).trim(), expected);
    assert!(String::from_utf8_lossy(&flag.stderr).contains("shell history"));
    let empty = run(&[], "");
    assert!(!empty.status.success());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("no secret on standard input"));
}
