//! Net settlement on real nodes: a cycle run on three replicas whose leader is killed with
//! SIGKILL while the run is in flight settles exactly once, the replicas agree and every asset
//! balances; who may run a cycle, submit, hold and read is the credential's; and the CLI's
//! `tally client cycle` walks a cycle from a CSV file to its report.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tally::local_cluster::LocalCluster;
use tally_client::protocol::Status;
use tally_client::{Client, ClientConfig, ClientError};
use tally_engine::cycle::{clearing_account_id, run_transfer_id};
use tally_engine::records::{Account, AccountFlags, CommandKind, SettlementCommand, Transfer};
use tally_engine::settlement::{Instruction, Phase};
use tally_engine::settlement_wire::CycleSummary;
use tally_engine::EventResult;
use tally_gateway::credential_hash_hex;

const CLUSTER_ID: u128 = 0x5e77;
const OPERATOR: &str = "operator-secret-settlement-01";
const EXCHANGE: &str = "exchange-secret-settlement-1";
const BROKER: &str = "broker-secret-settlement-012";
const FUND: &str = "fund-secret-settlement-01234";
const LEADER_WAIT: Duration = Duration::from_secs(30);
const CASH: u32 = 1;
const CYCLE: u32 = 20261207;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

mod common;

/// Four credentials: the operator; an exchange (unscoped submitter); a broker that may debit
/// participant 1's accounts only; a fund that reads participant 1's accounts only.
fn cluster(root: &Path) -> LocalCluster {
    let config = format!(
        "[raft]\n[wal]\nsegment_mib = 16\n[gateway]\ncluster_id = \"{CLUSTER_ID:#x}\"\n\
         [[gateway.credentials]]\nname = \"ops\"\nhash = \"{}\"\nrole = \"operator\"\n\
         [[gateway.credentials]]\nname = \"exchange\"\nhash = \"{}\"\nrole = \"submitter\"\n\
         [[gateway.credentials]]\nname = \"broker\"\nhash = \"{}\"\nrole = \"submitter\"\n\
         accounts = [\"{}\", \"{}\"]\n\
         [[gateway.credentials]]\nname = \"fund\"\nhash = \"{}\"\nrole = \"reader\"\n\
         accounts = [\"{}\", \"{}\"]\n",
        credential_hash_hex(OPERATOR.as_bytes()),
        credential_hash_hex(EXCHANGE.as_bytes()),
        credential_hash_hex(BROKER.as_bytes()),
        cash(1),
        shares(1, 1),
        credential_hash_hex(FUND.as_bytes()),
        cash(1),
        shares(1, 1),
    );
    LocalCluster::new(Path::new(env!("CARGO_BIN_EXE_tally")), root, &config)
}

/// One node, once it leads, and the operator's client.
async fn one_node(root: &Path) -> (LocalCluster, Arc<Client>) {
    let mut cluster = cluster(root);
    cluster.found(&[1]).expect("started");
    cluster.wait_leader(LEADER_WAIT).await.expect("a leader");
    let operator = client(&cluster, OPERATOR).await;
    (cluster, operator)
}

async fn client(cluster: &LocalCluster, secret: &str) -> Arc<Client> {
    let mut config = ClientConfig::new(
        cluster.addrs(),
        cluster.cluster_id(),
        secret.as_bytes().to_vec(),
    )
    .with_tls(cluster.client_tls().expect("the local CA"));
    config.deadline = Duration::from_secs(60);
    config.request_timeout = Duration::from_secs(30);
    Arc::new(Client::connect(config).await.expect("registered"))
}

/// Participant `p`'s cash account, and its account of instrument `i` (ledger `1 + i`).
fn cash(p: u128) -> u128 {
    p * 1000 + 1
}
fn shares(p: u128, i: u32) -> u128 {
    p * 1000 + 1 + u128::from(i)
}

/// Issuers (ids 1..=1+instruments, no balance rule) and `participants` participants bound by
/// `debits_must_not_exceed_credits`, each funded with `money` cash and `units` of every
/// instrument.
async fn market(operator: &Client, participants: u128, instruments: u32, money: u128, units: u128) {
    let mut accounts: Vec<Account> = (0..=instruments)
        .map(|i| Account {
            id: 1 + u128::from(i),
            ledger: CASH + i,
            code: 1,
            ..Account::default()
        })
        .collect();
    let mut funding = Vec::new();
    for p in 1..=participants {
        for i in 0..=instruments {
            let id = if i == 0 { cash(p) } else { shares(p, i) };
            accounts.push(Account {
                id,
                ledger: CASH + i,
                code: 1,
                flags: AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
                ..Account::default()
            });
            funding.push(Transfer {
                id: 900_000_000 + id,
                debit_account_id: 1 + u128::from(i),
                credit_account_id: id,
                amount: if i == 0 { money } else { units },
                ledger: CASH + i,
                code: 1,
                ..Transfer::default()
            });
        }
    }
    for chunk in accounts.chunks(8189) {
        let failures = operator.create_accounts(chunk).await.expect("accounts");
        assert!(failures.is_empty(), "{failures:?}");
    }
    for chunk in funding.chunks(8189) {
        let failures = operator.create_transfers(chunk).await.expect("funding");
        assert!(failures.is_empty(), "{failures:?}");
    }
}

fn command(id: u128, kind: CommandKind, cycle: u32) -> SettlementCommand {
    SettlementCommand {
        id,
        kind: kind as u16,
        cycle,
        ..SettlementCommand::default()
    }
}

/// Applies `c` and expects it applied (or applied before, when retried).
async fn apply(client: &Client, c: SettlementCommand) {
    let failures = client.settlement_commands(&[c]).await.expect("applied");
    assert!(
        failures.is_empty() || failures == [(0, EventResult::Exists)],
        "{c:?}: {failures:?}"
    );
}

/// A small deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// `count` random instructions among `participants` in `instruments`, some larger than their
/// deliverer holds or their receiver can pay, so the run has fails and parts.
fn instructions(count: u128, participants: u128, instruments: u32, seed: u64) -> Vec<Instruction> {
    let mut rng = Rng(seed);
    (1..=count)
        .map(|id| {
            let from = 1 + u128::from(rng.below(participants as u64));
            let to = 1 + (from + u128::from(rng.below(participants as u64 - 1))) % participants;
            let instrument = 1 + rng.below(u64::from(instruments)) as u32;
            let quantity = 1 + rng.below(60);
            Instruction {
                id,
                deliverer_securities: shares(from, instrument),
                receiver_securities: shares(to, instrument),
                receiver_cash: cash(to),
                deliverer_cash: cash(from),
                quantity,
                cash: quantity * (10 + rng.below(90)),
                cycle: CYCLE,
                priority: rng.below(3) as u16,
                flags: if rng.below(4) == 0 {
                    tally_engine::records::InstructionFlags::PARTIAL
                } else {
                    Default::default()
                },
                ..Instruction::default()
            }
        })
        .collect()
}

/// Every replica running has applied as far as the others and holds the same state digest
/// (the settlement book is part of it).
async fn converged(cluster: &LocalCluster, ids: &[u64]) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let states = cluster.states(true).await;
        let picked: Vec<_> = states.iter().filter(|(id, _)| ids.contains(id)).collect();
        if picked.len() == ids.len()
            && picked.iter().all(|(_, s)| {
                s.digest == picked[0].1.digest
                    && s.last_applied.map(|p| p.index) == picked[0].1.last_applied.map(|p| p.index)
            })
        {
            for (id, state) in picked {
                for totals in &state.ledger_totals {
                    assert_eq!(
                        totals.debits_posted, totals.credits_posted,
                        "node {id}: ledger {} does not balance",
                        totals.ledger
                    );
                }
            }
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replicas did not converge: {states:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What a run posted, read back: (postings found, transfers after them found).
async fn postings(client: &Client, summary: &CycleSummary) -> (usize, usize) {
    let run = summary.run.expect("the cycle ran");
    let ids: Vec<u128> = (0..u64::from(run.postings) + 50)
        .map(|k| run_transfer_id(run.first_posting + k))
        .collect();
    let (posted, after) = ids.split_at(run.postings as usize);
    let mut found = 0;
    for chunk in posted.chunks(8189) {
        found += client.lookup_transfers(chunk).await.expect("lookup").len();
    }
    let beyond = client.lookup_transfers(after).await.expect("lookup").len();
    (found, beyond)
}

/// Proves a cycle run on three replicas, with the leader killed by SIGKILL while the run is in
/// flight, settles exactly once: the client's retry (same request, then the same command id)
/// is answered, not applied again; the run's postings are each there once and none follows;
/// no participant bound by its rule went below zero; every ledger balances and the clearing
/// accounts end at zero; and all three replicas — the killed one restarted — reach one digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_run_survives_a_leader_kill_9_and_settles_once() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let mut cluster = cluster(root.path());
    cluster.found(&[1, 2, 3]).expect("started");
    let leader = cluster.wait_leader(LEADER_WAIT).await.expect("a leader");
    let operator = client(&cluster, OPERATOR).await;
    let (participants, instruments) = (100, 10);
    market(&operator, participants, instruments, 200_000, 400).await;
    apply(&operator, command(1, CommandKind::Open, CYCLE)).await;
    let instructions = instructions(40_000, participants, instruments, 0x5eed);
    for chunk in instructions.chunks(8189) {
        let failures = operator
            .create_instructions(chunk)
            .await
            .expect("submitted");
        assert!(failures.is_empty(), "{failures:?}");
    }
    apply(&operator, command(2, CommandKind::CutOff, CYCLE)).await;

    let run = command(3, CommandKind::Run, CYCLE);
    let running = {
        let operator = Arc::clone(&operator);
        tokio::spawn(async move { operator.settlement_commands(&[run]).await })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    let new_leader = cluster
        .fail_over(leader, LEADER_WAIT)
        .await
        .expect("a new leader");
    eprintln!("node {leader} killed with the run in flight; node {new_leader} leads");
    match running.await.expect("joined") {
        Ok(failures) => assert!(
            failures.is_empty() || failures == [(0, EventResult::Exists)],
            "{failures:?}"
        ),
        // The outcome was unknown: the same command id tells.
        Err(error) => {
            eprintln!("the run's outcome was unknown ({error}); sending it again");
            apply(&operator, run).await;
        }
    }
    // Sent again on purpose: the command's id answers, nothing is applied twice.
    let again = operator
        .settlement_commands(&[run])
        .await
        .expect("answered");
    assert_eq!(again, [(0, EventResult::Exists)]);

    let survivors: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    converged(&cluster, &survivors).await;
    cluster.start(leader).expect("restarted");
    converged(&cluster, &[1, 2, 3]).await;

    let summary = operator
        .settlement_cycle(CYCLE, 0, 1)
        .await
        .expect("summary");
    let record = summary.run.expect("the cycle ran once");
    assert!(matches!(
        summary.phase,
        Phase::Settled | Phase::PartlySettled
    ));
    assert_eq!(summary.counts.iter().sum::<u64>(), 40_000);
    assert_eq!(
        record.settled + record.partly_settled + record.failed,
        40_000,
        "every instruction took part"
    );
    assert!(
        record.failed + record.partly_settled > 0,
        "the market was short somewhere"
    );
    assert!(record.settled > 0);
    let (found, beyond) = postings(&operator, &summary).await;
    assert_eq!(found, record.postings as usize, "every posting is there");
    assert_eq!(beyond, 0, "nothing was posted twice");
    eprintln!(
        "run: {} settled, {} partly, {} failed; {} postings (one per participant and asset) \
         for {} instructions",
        record.settled, record.partly_settled, record.failed, record.postings, 40_000
    );
    // Every replica's metrics say the same run; a survivor timed it as it applied it.
    for id in [1, 2, 3] {
        let (_, metrics) = cluster.admin_get(id, "/metrics").expect("metrics");
        let value = |name: &str| {
            tally::local_cluster::metric_value(&metrics, name)
                .unwrap_or_else(|| panic!("node {id} exports no {name}"))
        };
        assert_eq!(value("tally_settlement_runs"), 1.0);
        assert_eq!(value("tally_settlement_last_run_cycle"), f64::from(CYCLE));
        assert_eq!(
            value("tally_settlement_last_run_instructions{outcome=\"failed\"}"),
            record.failed as f64
        );
        assert_eq!(
            value("tally_settlement_last_run_short_instructions{leg=\"securities\"}")
                + value("tally_settlement_last_run_short_instructions{leg=\"cash\"}"),
            (record.failed + record.partly_settled) as f64
        );
        assert_eq!(
            value("tally_settlement_last_run_postings"),
            f64::from(record.postings)
        );
        if id != leader {
            assert!(
                value("tally_settlement_run_seconds_count") >= 1.0,
                "node {id}"
            );
        }
    }
    // No participant bound by its rule went below zero; the clearing accounts are flat.
    let mut ids: Vec<u128> = (1..=participants)
        .flat_map(|p| (0..=instruments).map(move |i| if i == 0 { cash(p) } else { shares(p, i) }))
        .collect();
    ids.extend((0..=instruments).map(|i| clearing_account_id(CASH + i)));
    for chunk in ids.chunks(8189) {
        for account in operator.lookup_accounts(chunk).await.expect("lookup") {
            if account.id >= clearing_account_id(0) {
                assert_eq!(account.debits_posted, account.credits_posted, "{account:?}");
            } else {
                assert!(
                    account.debits_posted <= account.credits_posted,
                    "{account:?}"
                );
            }
        }
    }
}

/// Proves who may do what: an exchange submits and holds but may not run a cycle's lifecycle
/// (forbidden, nothing applied); a broker scoped to participant 1 may submit only what
/// participant 1 pays; a fund reading participant 1 sees its instructions and counts only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_roles_and_scopes_hold() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let (cluster, operator) = one_node(root.path()).await;
    let exchange = client(&cluster, EXCHANGE).await;
    let broker = client(&cluster, BROKER).await;
    let fund = client(&cluster, FUND).await;
    market(&operator, 3, 1, 10_000, 100).await;

    let refused = exchange
        .settlement_commands(&[command(10, CommandKind::Open, CYCLE)])
        .await
        .expect_err("an exchange may not open a cycle");
    assert!(
        matches!(&refused, ClientError::Refused { status: Status::Forbidden, refusal }
            if refusal.message.contains("only an operator")),
        "{refused}"
    );
    assert!(
        operator.settlement_cycle(CYCLE, 0, 1).await.is_err(),
        "nothing opened"
    );
    apply(&operator, command(11, CommandKind::Open, CYCLE)).await;

    let all = instructions(30, 3, 1, 7);
    let failures = exchange.create_instructions(&all).await.expect("submitted");
    assert!(failures.is_empty(), "{failures:?}");
    let hold = SettlementCommand {
        id: 12,
        kind: CommandKind::Hold as u16,
        instruction: 1,
        ..SettlementCommand::default()
    };
    assert_eq!(
        exchange.settlement_commands(&[hold]).await.expect("held"),
        []
    );

    // The broker pays only from participant 1's accounts.
    let own = Instruction {
        id: 100,
        ..instructions(1, 3, 1, 1)[0]
    };
    let own = Instruction {
        deliverer_securities: shares(1, 1),
        receiver_securities: shares(2, 1),
        receiver_cash: cash(1),
        deliverer_cash: cash(2),
        ..own
    };
    assert_eq!(
        broker.create_instructions(&[own]).await.expect("in scope"),
        []
    );
    let other = Instruction {
        id: 101,
        deliverer_securities: shares(2, 1),
        receiver_securities: shares(1, 1),
        receiver_cash: cash(1),
        deliverer_cash: cash(2),
        ..own
    };
    let refused = broker
        .create_instructions(&[other])
        .await
        .expect_err("participant 2 delivers");
    assert!(
        matches!(&refused, ClientError::Refused { status: Status::OutOfScope, refusal }
            if refusal.message.contains(&shares(2, 1).to_string())),
        "{refused}"
    );

    // The fund sees participant 1's instructions only, in lookups and in the cycle's counts.
    let ids: Vec<u128> = all.iter().map(|i| i.id).chain([100]).collect();
    let seen = fund.lookup_instructions(&ids).await.expect("read");
    let own_count = all
        .iter()
        .chain([&own])
        .filter(|i| {
            i.accounts()
                .iter()
                .any(|a| [cash(1), shares(1, 1)].contains(a))
        })
        .count();
    assert_eq!(seen.len(), own_count);
    assert!(seen.len() < ids.len());
    let fund_summary = fund.settlement_cycle(CYCLE, 0, 100).await.expect("summary");
    assert_eq!(fund_summary.counts.iter().sum::<u64>(), own_count as u64);
    let operator_summary = operator
        .settlement_cycle(CYCLE, 0, 100)
        .await
        .expect("summary");
    assert_eq!(operator_summary.counts.iter().sum::<u64>(), 31);
    assert_eq!(operator_summary.counts[1], 1, "one held");
    assert!(fund
        .settlement_commands(&[command(13, CommandKind::CutOff, CYCLE)])
        .await
        .is_err());
}

fn tally(args: &[&str], envs: &[(&str, String)]) -> (i32, String, String) {
    common::tally_cli(args, envs)
}

/// Proves the CLI walks a cycle: instructions from CSV (bad input exits 2, nothing sent), the
/// lifecycle by an operator (an exchange's run exits 3, forbidden), the run's report per
/// participant and asset as CSV, the exceptions with their reasons, and a re-run of the same
/// command id answered as already applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_walks_a_cycle_from_csv_to_report() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let (cluster, operator) = one_node(root.path()).await;
    market(&operator, 3, 1, 1_000, 10).await;
    let ca = cluster.pki_dir().expect("TLS is on").join("ca.pem");
    let env = |secret: &str| {
        vec![
            ("TALLY_CLUSTER", cluster.addr(1).expect("addr")),
            ("TALLY_CLUSTER_ID", format!("{CLUSTER_ID:#x}")),
            ("TALLY_CREDENTIAL", secret.to_owned()),
            ("TALLY_CA", ca.display().to_string()),
        ]
    };
    let (ops, exchange) = (env(OPERATOR), env(EXCHANGE));
    let ok = |(code, out, err): (i32, String, String)| {
        assert_eq!(code, 0, "{out}{err}");
        (out, err)
    };
    ok(tally(
        &["client", "cycle", "open", "7", "--id", "501"],
        &ops,
    ));
    // Participant 1 delivers 8 of its 10 units to 2 for 80; 3 buys 5 from 2 for 5,000, which
    // it cannot pay (it has 1,000): that one fails and is carried forward.
    let file = root.path().join("instructions.csv");
    std::fs::write(
        &file,
        format!(
            "id,deliverer_securities,receiver_securities,receiver_cash,deliverer_cash,quantity,\
             cycle,cash,flags\n\
             1,{},{},{},{},8,7,80,\n\
             2,{},{},{},{},5,7,5000,\n",
            shares(1, 1),
            shares(2, 1),
            cash(2),
            cash(1),
            shares(2, 1),
            shares(3, 1),
            cash(3),
            cash(2),
        ),
    )
    .expect("write");
    let bad = root.path().join("bad.csv");
    std::fs::write(&bad, "id,quantity\n1,2\n").expect("write");
    let (code, _, err) = tally(
        &["client", "cycle", "submit", bad.to_str().unwrap()],
        &exchange,
    );
    assert_eq!(code, 2, "{err}");
    ok(tally(
        &["client", "cycle", "submit", file.to_str().unwrap()],
        &exchange,
    ));
    ok(tally(&["client", "cycle", "cut-off", "7"], &ops));
    let (code, _, err) = tally(&["client", "cycle", "run", "7"], &exchange);
    assert_eq!(code, 3, "an exchange may not run a cycle: {err}");
    let (out, err) = ok(tally(&["client", "cycle", "run", "7", "--id", "502"], &ops));
    assert!(out.contains("cycle 7: partly settled"), "{out}{err}");
    let (_, err) = ok(tally(&["client", "cycle", "run", "7", "--id", "502"], &ops));
    assert!(err.contains("already applied"), "{err}");

    let (report, _) = ok(tally(
        &["client", "--output", "csv", "cycle", "report", "7"],
        &ops,
    ));
    let mut rows: Vec<&str> = report.lines().collect();
    assert_eq!(rows.remove(0), "account,ledger,payable,receivable");
    rows.sort_unstable();
    let mut expected = vec![
        format!("{},1,0,80", cash(1)),
        format!("{},2,8,0", shares(1, 1)),
        format!("{},1,80,0", cash(2)),
        format!("{},2,0,8", shares(2, 1)),
    ];
    expected.sort_unstable();
    assert_eq!(rows, expected, "{report}");

    let (exceptions, _) = ok(tally(
        &["client", "--output", "csv", "cycle", "exceptions", "7"],
        &ops,
    ));
    let lines: Vec<&str> = exceptions.lines().collect();
    assert_eq!(lines.len(), 2, "{exceptions}");
    assert!(
        lines[1].starts_with("2,failed,7,5,0,5000,0,0,1,"),
        "{exceptions}"
    );
    assert!(
        lines[1].contains(&format!(",{},cash,", cash(3))),
        "{exceptions}"
    );
    let (status, _) = ok(tally(
        &["client", "--output", "csv", "cycle", "status", "1", "2"],
        &ops,
    ));
    assert!(status.contains("\n1,settled,7,8,8,80,80,"), "{status}");
}
