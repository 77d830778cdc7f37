//! The gateway's Rust client library and the `tally client` CLI against real `tally node`
//! processes on loopback: packing of concurrent calls, per-call results, finding the leader,
//! surviving the leader's kill -9, and the README's CLI walk-through with its exit codes.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tally::local_cluster::LocalCluster;
use tally_client::{Client, ClientConfig};
use tally_engine::records::{
    Account, AccountFlags, Settlement, Trade, TradeFlags, Transfer, TransferFlags,
};
use tally_engine::{EventResult, StatementFilter};
use tally_gateway::credential_hash_hex;

const CLUSTER_ID: u128 = 0x7A11;
const SECRET: &str = "operator-secret-for-client-tests";

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

mod common;

fn cluster(root: &Path) -> LocalCluster {
    cluster_with(root, "")
}

/// A cluster whose node config ends with `extra` (TOML sections).
fn cluster_with(root: &Path, extra: &str) -> LocalCluster {
    let config = format!(
        "[raft]\n[wal]\nsegment_mib = 16\n[gateway]\ncluster_id = \"{CLUSTER_ID:#x}\"\n\
         [[gateway.credentials]]\nname = \"ops\"\nhash = \"{}\"\nrole = \"operator\"\n{extra}",
        credential_hash_hex(SECRET.as_bytes())
    );
    LocalCluster::new(Path::new(env!("CARGO_BIN_EXE_tally")), root, &config)
}

fn account(id: u128) -> Account {
    Account {
        id,
        ledger: 1,
        code: 1,
        ..Account::default()
    }
}

fn transfer(id: u128, debit: u128, credit: u128) -> Transfer {
    Transfer {
        id,
        debit_account_id: debit,
        credit_account_id: credit,
        amount: 5,
        ledger: 1,
        code: 1,
        ..Transfer::default()
    }
}

/// Proves many tasks' concurrent calls travel in fewer requests than calls, each call still
/// gets exactly its own failures (by its own indexes); that the client finds the leader from a
/// follower's address; and that calls keep succeeding across a kill -9 of the leader, with
/// retried events never applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_pack_find_the_leader_and_survive_a_kill() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let mut cluster = cluster(root.path());
    cluster.found(&[1, 2, 3]).expect("started");
    let leader = cluster
        .wait_leader(Duration::from_secs(30))
        .await
        .expect("a leader");
    let follower = [1, 2, 3].into_iter().find(|id| *id != leader).expect("one");
    let first = cluster.addr(follower).expect("addr");
    let mut addrs = vec![first.clone()];
    addrs.extend(cluster.addrs().into_iter().filter(|addr| *addr != first));
    let held_before = sessions(&cluster, follower);
    let client = Client::connect(
        ClientConfig::new(addrs, CLUSTER_ID, SECRET.as_bytes().to_vec())
            .with_tls(cluster.client_tls().expect("the local CA")),
    )
    .await
    .expect("connected through a follower's address");
    let accounts: Vec<Account> = (1..=10).map(account).collect();
    assert_eq!(
        client.create_accounts(&accounts).await.expect("created"),
        vec![]
    );
    // The session the client registered at the follower before it was sent on to the leader
    // is ended there, not left to idle out (a crowd of clients finding the leader would fill
    // the follower's session table).
    let ended = tokio::time::Instant::now() + Duration::from_secs(5);
    while sessions(&cluster, follower) != held_before {
        assert!(
            tokio::time::Instant::now() < ended,
            "the follower still holds {} sessions, {held_before} before the client came",
            sessions(&cluster, follower)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let before = client.requests_sent();
    let client = Arc::new(client);
    let mut calls = Vec::new();
    for k in 0..300u128 {
        let client = Arc::clone(&client);
        calls.push(tokio::spawn(async move {
            // Call k: two transfers; the second fails (unknown account) when k is odd.
            let credit = if k % 2 == 1 { 999 } else { 3 };
            let pair = [
                transfer(1000 + 2 * k, 1, 2),
                transfer(1001 + 2 * k, 2, credit),
            ];
            (k, client.create_transfers(&pair).await.expect("answered"))
        }));
    }
    for call in calls {
        let (k, failures) = call.await.expect("task");
        if k % 2 == 1 {
            assert_eq!(
                failures,
                vec![(1, EventResult::CreditAccountNotFound)],
                "call {k}"
            );
        } else {
            assert_eq!(failures, vec![], "call {k}");
        }
    }
    let requests = client.requests_sent() - before;
    assert!(
        requests < 300,
        "300 concurrent calls took {requests} requests: not packed"
    );
    eprintln!("300 concurrent calls travelled in {requests} requests");

    cluster.kill(leader).expect("killed");
    let retried: Vec<Transfer> = (0..50).map(|k| transfer(5000 + k, 1, 2)).collect();
    let failures = client
        .create_transfers(&retried)
        .await
        .expect("committed after the kill");
    assert!(
        failures
            .iter()
            .all(|(_, result)| *result == EventResult::Exists),
        "{failures:?}"
    );
    let again = client
        .create_transfers(&retried)
        .await
        .expect("retry answered");
    assert_eq!(
        again.len(),
        50,
        "a retry applies nothing twice: all `exists`"
    );
    let found = client
        .lookup_accounts(&[1, 2])
        .await
        .expect("linearizable read");
    // Every call's first leg (1 -> 2) succeeded, and the 50 transfers sent after the kill
    // (then sent again) moved money once each.
    let debited = found
        .iter()
        .find(|a| a.id == 1)
        .expect("account 1")
        .debits_posted;
    assert_eq!(debited, 5 * (300 + 50));
    let statement = client
        .statement(&StatementFilter {
            account_id: 1,
            limit: 8189,
            ..StatementFilter::default()
        })
        .await
        .expect("statement");
    assert_eq!(statement.len(), 350);
}

/// A one-node cluster and the environment `tally client` needs to reach it as its operator.
async fn one_node(root: &Path) -> (LocalCluster, [(&'static str, String); 4]) {
    one_node_with(root, "").await
}

/// [`one_node`] with `extra` at the end of the node's config.
async fn one_node_with(root: &Path, extra: &str) -> (LocalCluster, [(&'static str, String); 4]) {
    let mut cluster = cluster_with(root, extra);
    cluster.found(&[1]).expect("started");
    cluster
        .wait_leader(Duration::from_secs(30))
        .await
        .expect("a leader");
    let ca = cluster.pki_dir().expect("TLS is on").join("ca.pem");
    let env = [
        ("TALLY_CLUSTER", cluster.addr(1).expect("addr")),
        ("TALLY_CLUSTER_ID", format!("{CLUSTER_ID:#x}")),
        ("TALLY_CREDENTIAL", SECRET.to_owned()),
        ("TALLY_CA", ca.display().to_string()),
    ];
    (cluster, env)
}

/// Accounts 1 and 2 on ledger 1, created with `tally client` from a CSV file in `dir`.
fn accounts_one_and_two(dir: &Path, env: &[(&str, &str)]) {
    let accounts = dir.join("accounts.csv");
    std::fs::write(&accounts, "id,ledger,code\n1,1,1\n2,1,1\n").expect("write");
    let path = accounts.to_str().expect("path");
    let (code, out, err) = tally(&["client", "create-accounts", path], env);
    assert_eq!(code, 0, "{out}{err}");
}

fn tally(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    common::tally_cli(args, envs)
}

/// Proves the README's walk-through: the CLI creates two accounts from CSV, moves money from
/// JSON, prints a statement and balances; failed events exit 1 and are listed, and so are ids
/// not found (lookups, statements and balances alike); bad input exits 2 before anything is
/// sent; a wrong credential exits 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_walk_through_and_exit_codes() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let (_cluster, env) = one_node(root.path()).await;
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, help, _) = tally(&["client", "create-transfers", "--help"], &env);
    assert_eq!(code, 0);
    for documented in [
        "debit_account_id",
        "pending_id",
        "post_pending_transfer",
        "0x hex",
        "Exit codes",
    ] {
        assert!(help.contains(documented), "{documented} in:\n{help}");
    }
    let accounts = root.path().join("accounts.csv");
    std::fs::write(&accounts, "id,ledger,code,flags\n1,1,10,history\n2,1,10,\n").expect("write");
    let (code, out, err) = tally(
        &[
            "client",
            "create-accounts",
            accounts.to_str().expect("path"),
        ],
        &env,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("all 2 events succeeded"), "{out}");

    let transfers = root.path().join("transfers.json");
    std::fs::write(
        &transfers,
        r#"[{"id": 100, "debit_account_id": 1, "credit_account_id": 2, "amount": 250, "ledger": 1, "code": 1},
            {"id": 101, "debit_account_id": 1, "credit_account_id": 3, "amount": 5, "ledger": 1, "code": 1}]"#,
    )
    .expect("write");
    let (code, out, err) = tally(
        &[
            "client",
            "create-transfers",
            transfers.to_str().expect("path"),
        ],
        &env,
    );
    assert_eq!(code, 1, "one event failed: {out}{err}");
    assert!(
        out.contains("101") && out.contains("CreditAccountNotFound"),
        "{out}"
    );

    let (code, out, err) = tally(&["client", "--output", "json", "statement", "1"], &env);
    assert_eq!(code, 0, "{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).expect("JSON statement");
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{out}");
    assert_eq!(rows[0]["id"], "100");
    assert_eq!(rows[0]["debits_posted"], "250");

    let (code, out, _) = tally(&["client", "--output", "csv", "lookup-accounts", "2"], &env);
    assert_eq!(code, 0);
    let row: Vec<&str> = out.lines().nth(1).expect("one row").split(',').collect();
    assert_eq!(
        (row[0], row[7]),
        ("2", "250"),
        "id and credits_posted: {out}"
    );
    // Every account flag is shown, `closed` included: a pending closing transfer closes 5.
    let closing = root.path().join("closing.csv");
    std::fs::write(&closing, "id,ledger,code\n4,1,10\n5,1,10\n").expect("write");
    let (code, out, err) = tally(&["client", "create-accounts", path(&closing)], &env);
    assert_eq!(code, 0, "{out}{err}");
    std::fs::write(
        &closing,
        "id,debit_account_id,credit_account_id,amount,ledger,code,flags\n\
         102,4,5,1,1,1,pending|closing_credit\n",
    )
    .expect("write");
    let (code, out, err) = tally(&["client", "create-transfers", path(&closing)], &env);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = tally(&["client", "--output", "csv", "lookup-accounts", "5"], &env);
    assert_eq!(code, 0);
    assert!(
        out.lines().nth(1).expect("one row").contains("closed"),
        "{out}"
    );

    // Trades name their ledgers: one settles, the same with its account pairs swapped fails
    // by name and moves nothing; a post that names ledgers is bad input (exit 2).
    let trades = root.path().join("trades.csv");
    std::fs::write(&trades, "id,ledger,code\n31,7,10\n32,7,10\n").expect("write");
    let (code, out, err) = tally(&["client", "create-accounts", path(&trades)], &env);
    assert_eq!(code, 0, "{out}{err}");
    std::fs::write(
        &trades,
        "id,instrument_debit_account_id,instrument_credit_account_id,cash_debit_account_id,\
         cash_credit_account_id,instrument_ledger,cash_ledger,quantity,cash_amount,code,\
         user_data_64\n\
         300,31,32,2,1,7,1,10,50,1,20261207\n\
         301,2,1,31,32,7,1,10,50,1,20261207\n",
    )
    .expect("write");
    let (code, out, err) = tally(&["client", "create-trades", path(&trades)], &env);
    assert_eq!(code, 1, "one trade failed: {out}{err}");
    assert!(
        out.contains("301") && out.contains("InstrumentAccountsMustBeOnTheInstrumentLedger"),
        "{out}"
    );
    let (code, out, _) = tally(
        &["client", "--output", "csv", "lookup-trades", "300", "301"],
        &env,
    );
    assert_eq!(code, 1, "301 is not there: {out}");
    let row: Vec<&str> = out.lines().nth(1).expect("one row").split(',').collect();
    assert_eq!(
        (row[0], row[5], row[6], row[12]),
        ("300", "7", "1", "20261207"),
        "id, ledgers and user data: {out}"
    );
    let (code, out, _) = tally(
        &["client", "--output", "csv", "lookup-accounts", "31"],
        &env,
    );
    assert_eq!(code, 0);
    let row: Vec<&str> = out.lines().nth(1).expect("one row").split(',').collect();
    assert_eq!(
        row[5], "10",
        "31 delivered 10 units once, in trade 300: {out}"
    );
    std::fs::write(
        &trades,
        "id,instrument_debit_account_id,instrument_credit_account_id,cash_debit_account_id,\
         cash_credit_account_id,instrument_ledger,cash_ledger,quantity,cash_amount,code,flags,\
         pending_id\n302,0,0,0,0,7,1,0,0,0,post_pending_trade,300\n",
    )
    .expect("write");
    let (code, _, err) = tally(&["client", "create-trades", path(&trades)], &env);
    assert_eq!(code, 2, "bad input: {err}");
    assert!(err.contains("names no ledgers"), "{err}");

    // An id that is not there (or not in the credential's scope) is said as such, exit 1,
    // alike for lookups, statements and balances.
    for args in [
        &["client", "lookup-accounts", "2", "999"][..],
        &["client", "statement", "999"],
        &["client", "balances", "999", "--at", "1"],
    ] {
        let (code, _, err) = tally(args, &env);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains("not found (or not in your scope): 999"),
            "{args:?}: {err}"
        );
    }

    let bad = root.path().join("bad.csv");
    std::fs::write(
        &bad,
        "id,debit_account_id,credit_account_id,amount,ledger,code\nx,1,2,3,1,1\n",
    )
    .expect("write");
    let (code, _, err) = tally(
        &["client", "create-transfers", bad.to_str().expect("path")],
        &env,
    );
    assert_eq!(code, 2, "bad input: {err}");
    assert!(err.contains("line 2"), "{err}");

    let wrong = [
        env[0],
        env[1],
        ("TALLY_CREDENTIAL", "not-the-secret-at-all-0000"),
        env[3],
    ];
    let (code, _, err) = tally(&["client", "lookup-accounts", "1"], &wrong);
    assert_eq!(code, 3, "refused: {err}");
}

/// The sessions node `id` holds, from its `/metrics`.
fn sessions(cluster: &LocalCluster, id: u64) -> f64 {
    let (_, metrics) = cluster.admin_get(id, "/metrics").expect("metrics");
    tally::local_cluster::metric_value(&metrics, "tally_gateway_sessions").expect("the gauge")
}

/// Proves a follower whose session table is full for a credential does not stall a client
/// that knows the other nodes: its `Busy` names the leader, and the client registers there
/// at once (the client only ever goes to addresses it was given).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_follower_sends_the_client_to_the_leader() {
    use tally_gateway::limits::SESSIONS_PER_CREDENTIAL_MAX;
    let _serial = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let mut cluster = cluster(root.path());
    cluster.found(&[1, 2, 3]).expect("started");
    let leader = cluster
        .wait_leader(Duration::from_secs(30))
        .await
        .expect("a leader");
    let follower = [1, 2, 3].into_iter().find(|id| *id != leader).expect("one");
    let config = |addrs: Vec<String>| {
        let mut config = ClientConfig::new(addrs, CLUSTER_ID, SECRET.as_bytes().to_vec())
            .with_tls(cluster.client_tls().expect("the local CA"));
        config.deadline = Duration::from_secs(5);
        config
    };
    // The credential's whole share on the follower, held by idle clients.
    let mut idle = Vec::new();
    while idle.len() < SESSIONS_PER_CREDENTIAL_MAX {
        let client = Client::connect(config(vec![cluster.addr(follower).expect("addr")]))
            .await
            .expect("registered at the follower");
        idle.push(client);
    }
    let full = sessions(&cluster, follower);
    let first = cluster.addr(follower).expect("addr");
    let mut addrs = vec![first.clone()];
    addrs.extend(cluster.addrs().into_iter().filter(|addr| *addr != first));
    let started = tokio::time::Instant::now();
    let client = Client::connect(config(addrs))
        .await
        .expect("registered at the leader the follower named");
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(1),
        "registration took {waited:?}"
    );
    assert_eq!(
        client
            .create_accounts(&[account(1)])
            .await
            .expect("created"),
        vec![]
    );
    assert_eq!(
        sessions(&cluster, follower),
        full,
        "nothing more on the follower"
    );
    for client in idle {
        client.close().await;
    }
}

/// The node's count of registration requests answered, from its `/metrics`.
fn registrations(cluster: &LocalCluster, id: u64) -> f64 {
    let (_, metrics) = cluster.admin_get(id, "/metrics").expect("metrics");
    metrics
        .lines()
        .filter(|line| {
            line.starts_with("tally_requests_total{") && line.contains("kind=\"register\"")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Proves the client library stops at once on what no retry can fix, and never floods the
/// node: a credential of the wrong length and a call of more events than a request carries
/// are refused before anything is sent (the node's registration count does not move); an
/// unknown credential, a wrong cluster id and a reader's write are each refused within a
/// second after one request, leaving at most one session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_refusals_stop_at_once_and_send_nothing_twice() {
    use tally_client::protocol::Status;
    use tally_client::ClientError;
    let _serial = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[raft]\n[wal]\nsegment_mib = 16\n[gateway]\ncluster_id = \"{CLUSTER_ID:#x}\"\n\
         [[gateway.credentials]]\nname = \"ops\"\nhash = \"{}\"\nrole = \"operator\"\n\
         [[gateway.credentials]]\nname = \"fund\"\nhash = \"{}\"\nrole = \"reader\"\n\
         ledgers = [1]\n",
        credential_hash_hex(SECRET.as_bytes()),
        credential_hash_hex(b"a-reader-secret-0123456789"),
    );
    let mut cluster =
        LocalCluster::new(Path::new(env!("CARGO_BIN_EXE_tally")), root.path(), &config);
    cluster.found(&[1]).expect("started");
    cluster
        .wait_leader(Duration::from_secs(30))
        .await
        .expect("a leader");
    let tls = cluster.client_tls().expect("the local CA");
    let config = |secret: &[u8], cluster_id: u128| {
        ClientConfig::new(cluster.addrs(), cluster_id, secret.to_vec()).with_tls(tls.clone())
    };
    let before = registrations(&cluster, 1);

    let started = std::time::Instant::now();
    match Client::connect(config(b"short", CLUSTER_ID)).await {
        Err(ClientError::Invalid(message)) => assert!(message.contains("16..=256"), "{message}"),
        other => panic!(
            "a 5-byte credential is refused before sending: {:?}",
            other.err()
        ),
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        registrations(&cluster, 1),
        before,
        "nothing reached the node"
    );

    for (secret, cluster_id, status) in [
        (
            &b"not-a-known-secret-at-all"[..],
            CLUSTER_ID,
            Status::Unauthenticated,
        ),
        (SECRET.as_bytes(), CLUSTER_ID + 1, Status::WrongCluster),
    ] {
        let started = std::time::Instant::now();
        match Client::connect(config(secret, cluster_id)).await {
            Err(ClientError::Refused { status: got, .. }) => assert_eq!(got, status),
            other => panic!("refused as {status:?}, not {:?}", other.err()),
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{status:?} took {:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        registrations(&cluster, 1),
        before + 2.0,
        "one registration each, no retries"
    );

    let reader = Client::connect(config(b"a-reader-secret-0123456789", CLUSTER_ID))
        .await
        .expect("a reader registers");
    let started = std::time::Instant::now();
    match reader.create_accounts(&[account(1)]).await {
        Err(ClientError::Refused { status, .. }) => assert_eq!(status, Status::Forbidden),
        other => panic!("a reader may not write: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        reader.requests_sent(),
        2,
        "register and the one refused write"
    );
    let too_many: Vec<Account> = (1..=8190).map(account).collect();
    let operator = Client::connect(config(SECRET.as_bytes(), CLUSTER_ID))
        .await
        .expect("the operator registers");
    let sent = operator.requests_sent();
    match operator.create_accounts(&too_many).await {
        Err(ClientError::Invalid(message)) => assert!(message.contains("8190 events"), "{message}"),
        other => panic!("8,190 events are refused before sending: {other:?}"),
    }
    assert_eq!(operator.requests_sent(), sent, "nothing was sent");
    reader.close().await;
    operator.close().await;
}

/// The node's count of create requests answered, from its `/metrics`.
fn creates(cluster: &LocalCluster, id: u64) -> f64 {
    let (_, metrics) = cluster.admin_get(id, "/metrics").expect("metrics");
    metrics
        .lines()
        .filter(|line| line.starts_with("tally_requests_total{") && line.contains("kind=\"create_"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A CSV of `count` transfers from id `first`, alternating between accounts 1 and 2; every
/// `chain`-th group of three is a linked chain.
fn transfers_csv(path: &Path, first: u128, count: u128, chain: bool) {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    writeln!(
        out,
        "id,debit_account_id,credit_account_id,amount,ledger,code,flags"
    )
    .expect("write");
    for id in first..first + count {
        let (debit, credit) = if id % 2 == 0 { (1, 2) } else { (2, 1) };
        let linked = chain && id % 3 != 2;
        let flags = if linked { "linked" } else { "" };
        writeln!(out, "{id},{debit},{credit},1,1,1,{flags}").expect("write");
    }
    out.flush().expect("flush");
}

/// Proves `tally client` imports a file larger than one request in order, cut between linked
/// chains, reporting per line; that bad input (an empty file, a header only, a chain longer
/// than a request, a chain left open) exits 2 naming the file and line with nothing sent (the
/// node's create count does not move); and that an import killed halfway and run again ends
/// with every event applied exactly once, saying how many already existed; and that an import
/// held to a rate (`--rate`) takes at least the time its events are due.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_of_any_size_are_checked_cut_and_resumable() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let (cluster, env) = one_node(root.path()).await;
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    accounts_one_and_two(root.path(), &env);

    // --- bad input: exit 2, file and line named, nothing sent
    let before = creates(&cluster, 1);
    let header = "id,debit_account_id,credit_account_id,amount,ledger,code,flags\n";
    let bad = root.path().join("bad.csv");
    let long_chain: String = (1..=8190u32)
        .map(|id| format!("{id},1,2,1,1,1,linked\n"))
        .collect();
    for (content, expect) in [
        (String::new(), "no events"),
        (header.to_owned(), "no events"),
        (
            format!("{header}{long_chain}9000,1,2,1,1,1,\n"),
            "line 2: a linked chain",
        ),
        (
            format!("{header}1,1,2,1,1,1,\n2,1,2,1,1,1,linked\n"),
            "line 3: the linked chain",
        ),
        (format!("{header}1,1,2,1,1,1,sideways\n"), "line 2"),
    ] {
        std::fs::write(&bad, &content).expect("write");
        let (code, _, err) = tally(
            &["client", "create-transfers", bad.to_str().expect("path")],
            &env,
        );
        assert_eq!(code, 2, "{expect}: {err}");
        assert!(
            err.contains("bad.csv") && err.contains(expect),
            "{expect}: {err}"
        );
    }
    assert_eq!(
        creates(&cluster, 1),
        before,
        "no bad input reached the node"
    );

    // --- a file of several requests, chains never cut, one failure reported by its line
    let file = root.path().join("transfers.csv");
    transfers_csv(&file, 1000, 30_002, true);
    let (code, out, err) = tally(
        &["client", "create-transfers", file.to_str().expect("path")],
        &env,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("all 30002 events succeeded"), "{out}");
    assert!(
        creates(&cluster, 1) >= before + 4.0,
        "30,000 events take several requests"
    );

    // --- killed halfway, then run again: every event once, the rest said to exist
    let big = root.path().join("big.csv");
    transfers_csv(&big, 10_000_000, 1_500_000, false);
    let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["client", "create-transfers", big.to_str().expect("path")])
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("runs");
    let operator = cluster.operator_client(1).await.expect("operator");
    let started = std::time::Instant::now();
    loop {
        let state = operator.node_state(false).await.expect("state");
        if state.transfers > 30_002 + 50_000 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the import made no progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().expect("killed");
    let _ = child.wait();
    // What was sent before the kill may still commit: wait until the count settles.
    let mut partial = operator.node_state(false).await.expect("state").transfers;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = operator.node_state(false).await.expect("state").transfers;
        if now == partial {
            break;
        }
        partial = now;
    }
    let partial = partial - 30_002;
    assert!(
        partial < 1_500_000,
        "killed before the end ({partial} applied)"
    );
    let (code, out, err) = tally(
        &["client", "create-transfers", big.to_str().expect("path")],
        &env,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "1500000 events: {} created, {partial} already existed, 0 failed",
            1_500_000 - partial
        )),
        "{out}"
    );
    assert_eq!(
        operator.node_state(false).await.expect("state").transfers,
        30_002 + 1_500_000,
        "every event applied exactly once"
    );
    operator.close().await;

    // --- held to a rate: 40,000 events at 20,000/s take at least the time the last request
    // is due (the events before it, ≥ 31,811, over the rate), and all succeed
    let paced = root.path().join("paced.csv");
    transfers_csv(&paced, 200_000, 40_000, false);
    let started = std::time::Instant::now();
    let (code, out, err) = tally(
        &[
            "client",
            "--rate",
            "20000",
            "create-transfers",
            path(&paced),
        ],
        &env,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("all 40000 events succeeded"), "{out}");
    assert!(
        started.elapsed() >= Duration::from_millis(1_590),
        "40,000 events at 20,000/s in {:?}",
        started.elapsed()
    );
}

/// A TCP relay from a local port to `upstream` whose connections the test can cut, as a
/// network failure would: every relayed connection ends at once, the node stays up.
struct Relay {
    addr: String,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Relay {
    async fn start(upstream: String) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let mut cuts = cuts.clone();
                cuts.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut node) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut node) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Relay { addr, cut }
    }

    /// End every connection relayed so far.
    fn cut(&self) {
        self.cut.send_modify(|cuts| *cuts += 1);
    }
}

/// Proves a client whose connection drops keeps its session: it connects to the same node
/// again and goes on in the same session (no new registration), and a request whose reply
/// was lost with the connection gets its original reply, not a second execution.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_keeps_the_session() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let (cluster, _) = one_node(root.path()).await;
    let relay = Relay::start(cluster.addr(1).expect("addr")).await;
    // The node's certificate names 127.0.0.1, which the relay's address also is.
    let config = ClientConfig::new(
        vec![relay.addr.clone()],
        CLUSTER_ID,
        SECRET.as_bytes().to_vec(),
    )
    .with_tls(cluster.client_tls().expect("the local CA"));
    let client = Client::connect(config).await.expect("connects");
    let registered = registrations(&cluster, 1);
    assert!(client
        .create_accounts(&[account(1), account(2)])
        .await
        .expect("accounts")
        .is_empty());
    for round in 0..3u128 {
        relay.cut();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let failures = client
            .create_transfers(&[transfer(100 + round, 1, 2)])
            .await
            .expect("the transfer goes through after the cut");
        assert!(failures.is_empty(), "{failures:?}");
    }
    assert_eq!(
        registrations(&cluster, 1),
        registered,
        "three cut connections, no new session"
    );
    let found = client.lookup_accounts(&[1]).await.expect("lookup");
    assert_eq!(found[0].debits_posted, 15, "each transfer applied once");
    client.close().await;
}

/// Proves `tally client` keeps a file's order with several requests in flight even when the
/// node refuses some of them: against a node whose batch queue holds one request, an import
/// of 60,000 pending transfers followed by their 60,000 posts (15 requests; each post in a
/// later request than the transfer it posts), eight requests in flight, is refused `Busy` along
/// the way, and still every post finds its pending transfer: all 120,000 succeed, in one
/// session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_keeps_the_files_order_through_refusals() {
    use std::io::Write;
    let _serial = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let (cluster, env) = one_node_with(
        root.path(),
        "[batcher]\nentries_in_flight = 1\nqueue_batches = 1\n",
    )
    .await;
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    accounts_one_and_two(root.path(), &env);
    let file = root.path().join("pending-then-posts.csv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).expect("create"));
    writeln!(
        out,
        "id,debit_account_id,credit_account_id,amount,ledger,code,flags,pending_id"
    )
    .expect("write");
    for id in 1..=60_000u32 {
        writeln!(out, "{id},1,2,3,1,1,pending,").expect("write");
    }
    for id in 1..=60_000u32 {
        writeln!(out, "{},1,2,3,1,1,post_pending_transfer,{id}", 100_000 + id).expect("write");
    }
    out.flush().expect("flush");
    drop(out);
    let registered = registrations(&cluster, 1);
    let (code, out, err) = tally(
        &[
            "client",
            "--in-flight",
            "8",
            "create-transfers",
            file.to_str().expect("path"),
        ],
        &env,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("all 120000 events succeeded"), "{out}");
    assert_eq!(registrations(&cluster, 1), registered + 1.0, "one session");
    let (_, metrics) = cluster.admin_get(1, "/metrics").expect("metrics");
    let busy = tally::local_cluster::metric_value(&metrics, "tally_rejects_total{reason=\"busy\"}")
        .unwrap_or(0.0);
    println!("import through a one-request queue: {busy} requests answered Busy and resent");
    assert!(busy > 0.0, "the node refused some requests along the way");
}

/// Run `tally` with `args` and `envs` to its end: its exit code and its peak resident memory
/// (the kernel's own accounting of the finished child, `wait4`).
fn tally_with_peak_rss(args: &[&str], envs: &[(&str, &str)]) -> (i32, u64) {
    // Reaped by `wait4` below, which std's `wait` cannot stand in for (no rusage).
    #[allow(clippy::zombie_processes)]
    let child = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(args)
        .envs(envs.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("tally runs");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for the kernel to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet waited for; both pointers are to live locals.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    // ru_maxrss is in KiB on Linux.
    (code, usage.ru_maxrss as u64 * 1024)
}

/// Lookups of account 1 by `client` until `until()`, a few ms apart: the latency histogram
/// (µs).
/// Processes that only spin, killed when dropped (also when a test fails while they run).
struct Spinners(Vec<std::process::Child>);

impl Drop for Spinners {
    fn drop(&mut self) {
        for spinner in &mut self.0 {
            let _ = spinner.kill();
            let _ = spinner.wait();
        }
    }
}

async fn lookups(client: &Client, until: impl Fn() -> bool) -> hdrhistogram::Histogram<u64> {
    let mut latencies = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
    while !until() {
        let started = std::time::Instant::now();
        let found = client.lookup_accounts(&[1]).await.expect("lookup");
        assert_eq!(found.len(), 1);
        latencies
            .record(started.elapsed().as_micros() as u64)
            .expect("record");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    latencies
}

/// Proves a file of 3,000,000 transfers goes into a three-replica cluster through
/// `tally client` whole — every event applied on every replica — with the client's memory
/// bounded (peak RSS ≤ 200 MiB, whatever the file's size), while another client's lookups go
/// on. Prints the import's rate and the lookups' latency idle and during the import: figures
/// for docs/performance.md, not asserted (this machine is shared).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_of_three_million_transfers_into_three_replicas() {
    const EVENTS: u128 = 3_000_000;
    let _serial = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let mut cluster = cluster(root.path());
    cluster.found(&[1, 2, 3]).expect("started");
    cluster
        .wait_leader(Duration::from_secs(30))
        .await
        .expect("a leader");
    let ca = cluster.pki_dir().expect("TLS is on").join("ca.pem");
    let env = [
        ("TALLY_CLUSTER", cluster.addrs().join(",")),
        ("TALLY_CLUSTER_ID", format!("{CLUSTER_ID:#x}")),
        ("TALLY_CREDENTIAL", SECRET.to_owned()),
        ("TALLY_CA", ca.display().to_string()),
    ];
    let config = ClientConfig::new(cluster.addrs(), CLUSTER_ID, SECRET.as_bytes().to_vec())
        .with_tls(cluster.client_tls().expect("the local CA"));
    let reader = Client::connect(config).await.expect("connects");
    assert!(reader
        .create_accounts(&[account(1), account(2)])
        .await
        .expect("accounts")
        .is_empty());
    let file = root.path().join("three-million.csv");
    transfers_csv(&file, 1_000, EVENTS, false);
    let megabytes = std::fs::metadata(&file).expect("file").len() / 1_000_000;

    // Another client reads account 1 all along: linearizable lookups (the leader, after a
    // read index) and local ones (the leader's applied state as it is).
    let leader = cluster
        .wait_leader(Duration::from_secs(30))
        .await
        .expect("a leader");
    let local = Client::connect(
        ClientConfig::new(
            vec![cluster.addr(leader).expect("addr")],
            CLUSTER_ID,
            SECRET.as_bytes().to_vec(),
        )
        .with_tls(cluster.client_tls().expect("the local CA"))
        .with_reads(tally_client::Reads::Local),
    )
    .await
    .expect("connects");
    let read_while = |flag: Arc<std::sync::atomic::AtomicBool>| {
        [reader.clone(), local.clone()].map(|client| {
            let flag = Arc::clone(&flag);
            tokio::spawn(async move {
                lookups(&client, || flag.load(std::sync::atomic::Ordering::Relaxed)).await
            })
        })
    };
    let idle_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let idle = read_while(Arc::clone(&idle_done));
    tokio::time::sleep(Duration::from_secs(3)).await;
    idle_done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut idle_histograms = Vec::new();
    for task in idle {
        idle_histograms.push(task.await.expect("lookups"));
    }

    // The same lookups while processes that only spin hold one core, then both (three of
    // them), Tally itself idle: what the machine alone does to a read's latency when its cores
    // are taken.
    let mut spun = Vec::new();
    for spinning in [1, 3] {
        let spinners = Spinners(
            (0..spinning)
                .map(|_| {
                    std::process::Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .spawn()
                        .expect("a spinning shell")
                })
                .collect(),
        );
        let busy_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let busy = read_while(Arc::clone(&busy_done));
        tokio::time::sleep(Duration::from_secs(3)).await;
        busy_done.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut histograms = Vec::new();
        for task in busy {
            histograms.push(task.await.expect("lookups"));
        }
        drop(spinners);
        spun.push((spinning, histograms));
    }

    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let during = read_while(Arc::clone(&done));
    let path = file.to_str().expect("path").to_owned();
    let started = std::time::Instant::now();
    let (code, peak_rss) = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        tally_with_peak_rss(
            &["client", "--rate", "530000", "create-transfers", &path],
            &env,
        )
    })
    .await
    .expect("the import ran");
    let seconds = started.elapsed().as_secs_f64();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut during_histograms = Vec::new();
    for task in during {
        during_histograms.push(task.await.expect("lookups"));
    }
    assert_eq!(code, 0, "the import succeeded");
    let rate = EVENTS as f64 / seconds;
    let ms = |histogram: &hdrhistogram::Histogram<u64>, q: f64| {
        histogram.value_at_quantile(q) as f64 / 1000.0
    };
    println!(
        "import of {EVENTS} transfers ({megabytes} MB of CSV) into 3 replicas: {seconds:.2} s, \
         {rate:.0} events/s (checking pass included), client peak RSS {} MiB",
        peak_rss >> 20
    );
    for (i, name) in ["linearizable", "local (leader)"].into_iter().enumerate() {
        let (idle, during) = (&idle_histograms[i], &during_histograms[i]);
        println!(
            "{name} lookups of another client: idle p50 {:.2} p99 {:.2} ms ({} lookups); \
             during the import p50 {:.2} p99 {:.2} ms ({} lookups): p99 ratio {:.2}",
            ms(idle, 0.5),
            ms(idle, 0.99),
            idle.len(),
            ms(during, 0.5),
            ms(during, 0.99),
            during.len(),
            ms(during, 0.99) / ms(idle, 0.99).max(0.001),
        );
        for (spinning, histograms) in &spun {
            let busy = &histograms[i];
            println!(
                "  while {spinning} spinning process(es) hold the cores (no import): p50 {:.2} \
                 p99 {:.2} ms ({} lookups): p99 ratio {:.2}",
                ms(busy, 0.5),
                ms(busy, 0.99),
                busy.len(),
                ms(busy, 0.99) / ms(idle, 0.99).max(0.001),
            );
        }
    }
    assert!(
        peak_rss <= 200 << 20,
        "client peak RSS {} MiB is over 200 MiB",
        peak_rss >> 20
    );
    for id in [1, 2, 3] {
        let operator = cluster.operator_client(id).await.expect("operator");
        let started = std::time::Instant::now();
        loop {
            let state = operator.node_state(false).await.expect("state");
            if state.transfers == EVENTS as u64 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "replica {id} has {} of {EVENTS} transfers",
                state.transfers
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        operator.close().await;
    }
    let balances = reader.lookup_accounts(&[1, 2]).await.expect("lookup");
    assert_eq!(
        balances[0].debits_posted + balances[0].credits_posted,
        EVENTS,
        "each transfer moved 1 once"
    );
    reader.close().await;
    local.close().await;
}

fn path(file: &std::path::Path) -> &str {
    file.to_str().expect("a UTF-8 path")
}

/// Proves a settlement request (`Client::create_settlements`) carries transfers and trades
/// through a real node in one linked chain: a delivery-versus-payment trade with its fee
/// settles whole, and a chain whose fee cannot be paid moves nothing, the trade included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trade_and_its_fee_settle_as_one_request() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let mut cluster = cluster(root.path());
    cluster.found(&[1]).expect("started");
    cluster
        .wait_leader(Duration::from_secs(30))
        .await
        .expect("a leader");
    let client = Client::connect(
        ClientConfig::new(cluster.addrs(), CLUSTER_ID, SECRET.as_bytes().to_vec())
            .with_tls(cluster.client_tls().expect("the local CA")),
    )
    .await
    .expect("connected");
    // Securities on ledger 1 (seller 1, buyer 2), cash on ledger 2 (buyer 3 may not go
    // below zero, seller 4, the exchange's fee account 5, the bank 6).
    let on = |id, ledger, flags| Account {
        ledger,
        flags,
        ..account(id)
    };
    let limited = AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS;
    let none = AccountFlags::default();
    let accounts = [
        on(1, 1, none),
        on(2, 1, none),
        on(3, 2, limited),
        on(4, 2, none),
        on(5, 2, none),
        on(6, 2, none),
    ];
    assert_eq!(client.create_accounts(&accounts).await.expect("sent"), []);
    let cash = |id, debit, credit, amount, flags| Transfer {
        amount,
        ledger: 2,
        flags,
        ..transfer(id, debit, credit)
    };
    let funded = client
        .create_transfers(&[cash(10, 6, 3, 530, TransferFlags::default())])
        .await
        .expect("sent");
    assert_eq!(funded, []);
    let trade = |id| Trade {
        id,
        instrument_debit_account_id: 1,
        instrument_credit_account_id: 2,
        cash_debit_account_id: 3,
        cash_credit_account_id: 4,
        instrument_ledger: 1,
        cash_ledger: 2,
        quantity: 10,
        cash_amount: 500,
        code: 1,
        flags: TradeFlags::LINKED,
        ..Trade::default()
    };
    // 530 pays the trade (500) and its fee (20).
    let settled = client
        .create_settlements(&[
            Settlement::Trade(trade(20)),
            Settlement::Transfer(cash(21, 3, 5, 20, TransferFlags::default())),
        ])
        .await
        .expect("sent");
    assert_eq!(settled, []);
    // 10 left and 500 more: the trade could settle, its fee then cannot, and the fee's
    // failure takes the trade with it.
    let topped_up = client
        .create_transfers(&[cash(11, 6, 3, 500, TransferFlags::default())])
        .await
        .expect("sent");
    assert_eq!(topped_up, []);
    let refused = client
        .create_settlements(&[
            Settlement::Trade(trade(22)),
            Settlement::Transfer(cash(23, 3, 5, 20, TransferFlags::default())),
        ])
        .await
        .expect("sent");
    assert_eq!(
        refused,
        [
            (0, EventResult::LinkedEventFailed),
            (1, EventResult::ExceedsCredits)
        ]
    );
    let balances = client.lookup_accounts(&[2, 3, 5]).await.expect("lookup");
    let posted: Vec<(u128, u128, u128)> = balances
        .iter()
        .map(|a| (a.id, a.debits_posted, a.credits_posted))
        .collect();
    assert_eq!(posted, [(2, 0, 10), (3, 520, 1_030), (5, 0, 20)]);
    assert!(client
        .lookup_trades(&[22])
        .await
        .expect("lookup")
        .is_empty());
}
