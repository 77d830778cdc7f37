//! `tally reconcile`: a million positions against a million ledger accounts held in memory,
//! with planted breaks of each kind (found exactly, and timed); the binary's exit codes on
//! bad input (2, nothing contacted); and the binary against a real node: clean (0), with
//! breaks (1, the report's files), a refused credential (3, no report).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use tally::reconcile::{
    read_positions, reconcile, AccountFound, Amount, BalanceKind, LedgerPosition, LedgerSource,
    Options, PositionsPage, Statement,
};
use tally_engine::records::{Account, Transfer};
use tally_engine::{Balances, StatementEntry};

mod common;

/// A ledger in memory: each ledger's accounts in creation order, a page of 8,189 at a time.
struct Memory {
    ledgers: HashMap<u32, Vec<LedgerPosition>>,
    by_id: HashMap<u128, AccountFound>,
}

impl Memory {
    fn new(accounts: impl Iterator<Item = LedgerPosition>) -> Memory {
        let mut ledgers: HashMap<u32, Vec<LedgerPosition>> = HashMap::new();
        let mut by_id = HashMap::new();
        for (at, position) in accounts.enumerate() {
            by_id.insert(
                position.account,
                AccountFound {
                    account: position.account,
                    ledger: position.ledger,
                    created: at as u64 + 1,
                },
            );
            ledgers.entry(position.ledger).or_default().push(position);
        }
        Memory { ledgers, by_id }
    }
}

impl LedgerSource for Memory {
    async fn positions(&self, ledger: u32, _at: u64, from: u64) -> anyhow::Result<PositionsPage> {
        let all = self.ledgers.get(&ledger).map_or(&[][..], Vec::as_slice);
        let from = from as usize;
        let end = (from + 8_189).min(all.len());
        Ok(PositionsPage {
            items: all[from..end].to_vec(),
            next: (end < all.len()).then_some(end as u64),
        })
    }

    async fn accounts(&self, ids: &[u128]) -> anyhow::Result<Vec<AccountFound>> {
        Ok(ids
            .iter()
            .filter_map(|id| self.by_id.get(id).copied())
            .collect())
    }

    async fn statement(
        &self,
        _account: u128,
        _min: u64,
        _max: u64,
        _limit: u32,
    ) -> anyhow::Result<Vec<StatementEntry>> {
        Ok(Vec::new())
    }
}

/// A ledger account whose net credit is `net`.
fn position(account: u128, ledger: u32, net: i128) -> LedgerPosition {
    let base = 1u128 << 100;
    let (debits_posted, credits_posted) = if net >= 0 {
        (base, base + net.unsigned_abs())
    } else {
        (base + net.unsigned_abs(), base)
    };
    LedgerPosition {
        account,
        ledger,
        balances: Balances {
            debits_pending: 3,
            debits_posted,
            credits_pending: 5,
            credits_posted,
        },
    }
}

/// The file's i-th account (past 2^64, spread out) and its ledger and amount.
fn nth(i: u64) -> (u128, u32, i128) {
    let account = (1u128 << 80) + u128::from(i) * 7;
    let ledger = 1 + (i % 2) as u32;
    let amount = i128::from(i) * 37 - 10_000_000;
    (account, ledger, amount)
}

/// Proves a million positions reconcile against a million ledger accounts finding exactly the
/// planted breaks (4 amount breaks, 3 missing in the ledger: absent, on a ledger not
/// reconciled, on the other ledger; 3 missing in the file; zero accounts absent from the file
/// matched as zero), in well under 10 s.
#[test]
fn a_million_positions_find_exactly_the_planted_breaks() {
    const N: u64 = 1_000_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("positions.csv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    writeln!(out, "account,ledger,amount").expect("write");
    for i in 0..N {
        let (account, ledger, amount) = nth(i);
        if i % 2 == 0 {
            writeln!(out, "{account:#x},{ledger},{amount}").expect("write");
        } else {
            writeln!(out, "{account},{ledger},{amount}").expect("write");
        }
    }
    out.flush().expect("flush");
    drop(out);

    let amount_breaks = [10u64, 500_001, 777_777, 999_999];
    let (absent, elsewhere, other_ledger) = (3u64, 4u64, 6u64);
    let extra = |k: u128| (1u128 << 90) + k;
    let ledger_side = (0..N)
        .filter(|i| *i != absent)
        .map(|i| {
            let (account, ledger, amount) = nth(i);
            match i {
                _ if amount_breaks.contains(&i) => position(account, ledger, amount + i as i128),
                _ if i == elsewhere => position(account, 3, amount),
                // At zero on the ledger it is on: matched as zero there.
                _ if i == other_ledger => position(account, 2, 0),
                _ => position(account, ledger, amount),
            }
        })
        .chain([
            position(extra(1), 1, 5),
            position(extra(2), 2, -6),
            position(extra(3), 1, i128::MIN + 1),
            position(extra(4), 1, 0),
            position(extra(5), 2, 0),
        ]);
    let source = Memory::new(ledger_side);

    let started = Instant::now();
    let positions = read_positions(&path, None).expect("a good file");
    let read = started.elapsed();
    assert_eq!(positions.rows.len(), N as usize);
    let options = Options {
        at: 1_000,
        since: None,
        balance: BalanceKind::NetCredit,
        ledgers: vec![1, 2],
    };
    let started = Instant::now();
    let report = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(reconcile(&source, &positions, &options))
        .expect("reconciled");
    let compared = started.elapsed();
    println!(
        "1,000,000 positions: read in {:.2} s, reconciled against {} ledger accounts in {:.2} s",
        read.as_secs_f64(),
        report.ledger_accounts,
        compared.as_secs_f64()
    );
    assert!(compared < Duration::from_secs(10), "{compared:?}");

    let found_amounts: Vec<(u128, String)> = (report.ledgers.iter())
        .flat_map(|l| &l.amount_breaks)
        .map(|b| (b.account, b.difference().to_string()))
        .collect();
    let mut planted: Vec<(u128, String)> = amount_breaks
        .iter()
        .map(|&i| (nth(i).0, i.to_string()))
        .collect();
    planted.sort();
    let mut found_sorted = found_amounts.clone();
    found_sorted.sort();
    assert_eq!(found_sorted, planted);

    let missing_in_ledger: Vec<(u128, Option<u32>)> = (report.ledgers.iter())
        .flat_map(|l| &l.missing_in_ledger)
        .map(|b| (b.account, b.account_ledger))
        .collect();
    let mut want = vec![
        (nth(absent).0, None),
        (nth(elsewhere).0, Some(3)),
        (nth(other_ledger).0, Some(2)),
    ];
    want.sort();
    let mut got = missing_in_ledger.clone();
    got.sort();
    assert_eq!(got, want);

    let missing_in_file: Vec<(u128, String)> = (report.ledgers.iter())
        .flat_map(|l| &l.missing_in_file)
        .map(|b| (b.account, b.ledger_amount.to_string()))
        .collect();
    assert_eq!(
        missing_in_file,
        vec![
            (extra(1), "5".to_owned()),
            (extra(3), (i128::MIN + 1).to_string()),
            (extra(2), "-6".to_owned()),
        ]
    );
    let zero: u64 = report.ledgers.iter().map(|l| l.zero_absent).sum();
    assert_eq!(
        zero, 3,
        "extra 4, extra 5, and the account on the other ledger"
    );
    let matched: u64 = report.ledgers.iter().map(|l| l.matched).sum();
    assert_eq!(matched, N - 4 - 3);
    assert_eq!(report.compared, N);
    assert_eq!(report.breaks(), 10);
    assert!(report
        .ledgers
        .iter()
        .flat_map(|l| &l.amount_breaks)
        .all(|b| b.statement == Statement::NotAsked));
    assert_eq!(
        Amount::from(nth(10).2 + 10).to_string(),
        report.ledgers[0].amount_breaks[0].ledger_amount.to_string()
    );
}

fn tally(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    common::tally_cli(args, envs)
}

/// Proves bad input exits 2 through the binary, naming the file and line, before anything
/// is contacted (the cluster address has nothing listening: a connection would fail with 3
/// after a minute) and with no report directory made.
#[test]
fn bad_input_exits_2_before_anything_is_contacted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    };
    let good = file("good.csv", "account,ledger,amount\n1,1,5\n");
    let bad = file("bad.csv", "account,ledger,amount\n1,1,5\n2,1,five\n1,1,6\n");
    let mapping = file("mapping.csv", "external,account\nA,1\n");
    let out = dir.path().join("out");
    let out = out.to_str().expect("utf-8");
    let env = [
        ("TALLY_CLUSTER", "127.0.0.1:1"),
        ("TALLY_CREDENTIAL", "a-credential-of-16-bytes-or-more"),
        ("TALLY_CA", "/nonexistent/ca.pem"),
    ];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--positions", &bad, "--out", out],
            "2 malformed rows:\n  line 3: amount: \"five\"",
        ),
        (
            vec!["--positions", &bad, "--out", out],
            "line 4: account 1 is on line 2 already",
        ),
        (
            vec!["--positions", &good, "--mapping", &mapping, "--out", out],
            "line 2: external id \"1\" is not in the mapping",
        ),
        (
            vec!["--positions", "/nonexistent.csv", "--out", out],
            "cannot read /nonexistent.csv",
        ),
        (
            vec![
                "--positions",
                &good,
                "--out",
                out,
                "--at",
                "5",
                "--since",
                "7",
            ],
            "--since 7 is not before --at 5",
        ),
        (
            vec!["--positions", &good, "--out", out, "--balance", "gross"],
            "invalid value 'gross' for '--balance",
        ),
    ];
    for (args, want) in cases {
        let started = Instant::now();
        let mut argv = vec!["reconcile"];
        argv.extend(&args);
        let (code, stdout, stderr) = tally(&argv, &env);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{args:?} waited"
        );
        assert!(
            !Path::new(out).exists(),
            "{args:?} made the report directory"
        );
    }
    // Good input reaches the connection: the TLS settings (a CA that is not there) are the
    // first thing it needs, and they are bad input too, still before anything is sent.
    let (code, _, stderr) = tally(&["reconcile", "--positions", &good, "--out", out], &env);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("nothing was fetched"), "{stderr}");
}

/// Creates `transfers` (house → account, amount) on the ledger of each, numbered from `id`;
/// the timestamp of the last.
async fn credit(
    client: &tally_client::Client,
    id: u128,
    transfers: &[(u128, u128, u32, u128)],
) -> u64 {
    let records: Vec<Transfer> = (transfers.iter().enumerate())
        .map(|(k, &(debit, credit, ledger, amount))| Transfer {
            id: id + k as u128,
            debit_account_id: debit,
            credit_account_id: credit,
            amount,
            ledger,
            code: 1,
            ..Transfer::default()
        })
        .collect();
    assert_eq!(
        client.create_transfers(&records).await.expect("sent"),
        vec![],
        "every transfer applied"
    );
    let last = id + transfers.len() as u128 - 1;
    client.lookup_transfers(&[last]).await.expect("looked up")[0].timestamp
}

/// Proves `tally reconcile` against a real node: a file matching the ledger as of --at exits
/// 0 (accounts created and transfers applied after --at do not count); a file with planted
/// breaks exits 1 with exactly those breaks in breaks.csv and report.json, and with --since
/// the statement lines in (since, at]; a refused credential exits 3 and writes no report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_against_a_node_exits_0_clean_1_with_breaks_3_refused() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut cluster = common::local_cluster(root.path(), common::FAST_RAFT);
    cluster.found(&[1]).expect("started");
    cluster
        .wait_leader(common::LEADER_WAIT)
        .await
        .expect("a leader");
    let credential = String::from_utf8(cluster.operator_credential().to_vec()).expect("text");
    let client = tally_client::Client::connect(
        tally_client::ClientConfig::new(
            cluster.addrs(),
            cluster.cluster_id(),
            credential.clone().into_bytes(),
        )
        .with_tls(cluster.client_tls().expect("the local CA")),
    )
    .await
    .expect("connects");
    // Accounts 1..=300 on ledger 1 and 301..=400 on ledger 2, houses 1000 and 2000.
    let ledger_of = |id: u128| if id <= 300 || id == 1_000 { 1 } else { 2 };
    let house = |ledger: u32| u128::from(ledger) * 1_000;
    let ids: Vec<u128> = (1..=400).chain([1_000, 2_000]).collect();
    let accounts: Vec<Account> = (ids.iter())
        .map(|&id| Account {
            id,
            ledger: ledger_of(id),
            code: 1,
            ..Account::default()
        })
        .collect();
    assert_eq!(
        client.create_accounts(&accounts).await.expect("sent"),
        vec![]
    );
    let round_one: Vec<_> = (1..=400u128)
        .map(|id| (house(ledger_of(id)), id, ledger_of(id), id))
        .collect();
    let since = credit(&client, 10_000, &round_one).await;
    let at = credit(&client, 20_000, &[(1_000, 5, 1, 7), (2_000, 301, 2, 9)]).await;
    // After --at: a new account and more transfers, none of which counts.
    assert_eq!(
        client
            .create_accounts(&[Account {
                id: 500,
                ledger: 1,
                code: 1,
                ..Account::default()
            }])
            .await
            .expect("sent"),
        vec![]
    );
    credit(&client, 30_000, &[(1_000, 500, 1, 50), (1_000, 1, 1, 100)]).await;
    client.close().await;

    // The positions as of `at`: each account its round-one credit, 5 and 301 also round two's.
    let net = |id: u128| -> i128 {
        let extra = match id {
            5 => 7,
            301 => 9,
            _ => 0,
        };
        (id + extra) as i128
    };
    let house_net = |ledger: u32| -> i128 {
        -(1..=400u128)
            .filter(|id| ledger_of(*id) == ledger)
            .map(net)
            .sum::<i128>()
    };
    let mut clean = "account,ledger,amount\n".to_owned();
    for id in 1..=400u128 {
        clean.push_str(&format!("{id},{},{}\n", ledger_of(id), net(id)));
    }
    clean.push_str(&format!(
        "1000,1,{}\n2000,2,{}\n",
        house_net(1),
        house_net(2)
    ));
    let dir = root.path();
    std::fs::write(dir.join("clean.csv"), &clean).expect("write");
    let mut env: Vec<(String, String)> = cluster.client_env();
    env.push(("TALLY_CLUSTER".to_owned(), cluster.addrs().join(",")));
    env.push(("TALLY_CREDENTIAL".to_owned(), credential));
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let at_text = at.to_string();
    let since_text = since.to_string();
    let path = |name: &str| dir.join(name).display().to_string();
    let (clean_path, out_clean) = (path("clean.csv"), path("out-clean"));
    let args = [
        "reconcile",
        "--positions",
        &clean_path,
        "--at",
        &at_text,
        "--out",
        &out_clean,
    ];
    let (code, stdout, stderr) = tally(&args, &env_refs);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        stdout.trim_end(),
        format!(
            "reconciled 402 positions as of {at} on ledgers [1,2]: 402 matched, 0 amount \
             breaks, 0 missing in the ledger, 0 missing in the file"
        )
    );
    let breaks = std::fs::read_to_string(dir.join("out-clean/breaks.csv")).expect("breaks.csv");
    assert_eq!(breaks.lines().count(), 1, "the header only: {breaks}");
    // A time the ledger's history has not reached is refused: events could still come before
    // it, so no report as of it would be final.
    let later = (u64::MAX / 4).to_string();
    let out_later = path("out-later");
    let args = [
        "reconcile",
        "--positions",
        &clean_path,
        "--at",
        &later,
        "--out",
        &out_later,
    ];
    let (code, stdout, stderr) = tally(&args, &env_refs);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("later than the ledger's history"),
        "{stderr}"
    );
    assert!(!dir.join("out-later/report.json").exists());

    // Planted: 5 without round two (amount), 301 left out (missing in the file), 9999 that
    // is no account and 302 on the wrong ledger (missing in the ledger; 302 also missing in
    // the file on its own ledger).
    let broken: String = clean
        .lines()
        .filter(|line| !line.starts_with("301,"))
        .map(|line| match line {
            "5,1,12" => "5,1,5".to_owned(),
            "302,2,302" => "302,1,302".to_owned(),
            line => line.to_owned(),
        })
        .chain(["9999,1,1".to_owned()])
        .map(|line| line + "\n")
        .collect();
    assert_ne!(broken, clean);
    std::fs::write(dir.join("broken.csv"), &broken).expect("write");
    let (broken_path, out_broken) = (path("broken.csv"), path("out-broken"));
    let args = [
        "reconcile",
        "--positions",
        &broken_path,
        "--at",
        &at_text,
        "--since",
        &since_text,
        "--out",
        &out_broken,
    ];
    let (code, stdout, stderr) = tally(&args, &env_refs);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "399 matched, 1 amount breaks, 2 missing in the ledger, 2 missing in the file"
        ),
        "{stdout}"
    );
    let breaks = std::fs::read_to_string(dir.join("out-broken/breaks.csv")).expect("breaks.csv");
    let rows: Vec<Vec<&str>> = breaks
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let kinds: Vec<(&str, &str, &str)> = rows.iter().map(|r| (r[0], r[1], r[2])).collect();
    assert_eq!(
        kinds,
        [
            ("1", "amount", "5"),
            ("1", "missing_in_ledger", "302"),
            ("1", "missing_in_ledger", "9999"),
            ("2", "missing_in_file", "301"),
            ("2", "missing_in_file", "302"),
        ],
        "{breaks}"
    );
    // The amount break: file 5, ledger 12, difference 7, its one statement line since.
    assert_eq!(&rows[0][5..8], ["5", "12", "7"]);
    assert_eq!(&rows[0][11..13], ["1", "false"]);
    assert_eq!(rows[1][8], "2", "302 is on ledger 2");
    assert_eq!(rows[2][8], "", "9999 is no account");
    assert_eq!((rows[3][6], rows[4][6], rows[4][10]), ("310", "302", "1"));
    let statements =
        std::fs::read_to_string(dir.join("out-broken/statements.csv")).expect("statements");
    let lines: Vec<&str> = statements.lines().skip(1).collect();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("1,amount,5,"))
            .count(),
        1,
        "{statements}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("1,amount,5,") && l.ends_with(",transfer,20000,7,12")),
        "{statements}"
    );
    assert!(
        lines.iter().any(
            |l| l.starts_with("2,missing_in_file,301,") && l.ends_with(",transfer,20001,9,310")
        ),
        "{statements}"
    );
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("out-broken/report.json")).expect("report.json"),
    )
    .expect("JSON");
    assert_eq!(json["summary"]["matched"], 399);
    assert_eq!(json["at"], at_text.as_str());

    // A refused credential: exit 3, no report.
    let out_refused = path("out-refused");
    let mut refused_env = env_refs.clone();
    refused_env.push(("TALLY_CREDENTIAL", "not-the-operator-credential"));
    let args = [
        "reconcile",
        "--positions",
        &clean_path,
        "--out",
        &out_refused,
    ];
    let started = Instant::now();
    let (code, stdout, stderr) = tally(&args, &refused_env);
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(stderr.contains("no report was written"), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(!Path::new(&out_refused).join("breaks.csv").exists());
    println!("refused in {:?}", started.elapsed());
    cluster
        .shutdown(Duration::from_secs(10))
        .expect("shut down");
}

/// Creates `records` in requests of a full batch, four requests at a time.
async fn create_all<T: Clone + Send + 'static>(
    client: &tally_client::Client,
    records: Vec<T>,
    create: fn(tally_client::Client, Vec<T>) -> tokio::task::JoinHandle<usize>,
) {
    let batches: Vec<Vec<T>> = records.chunks(8_189).map(<[T]>::to_vec).collect();
    let mut failed = 0;
    for wave in batches.chunks(4) {
        let tasks: Vec<_> = (wave.iter())
            .map(|batch| create(client.clone(), batch.clone()))
            .collect();
        for task in tasks {
            failed += task.await.expect("task");
        }
    }
    assert_eq!(failed, 0, "every record created");
}

/// Proves a large positions file reconciles through the binary against a node with exactly
/// the planted breaks (4 amount, 3 missing in the ledger, 3 missing in the file), and says
/// how long it took: 100,000 positions by default, 1,000,000 with `TALLY_SOAK=1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_positions_through_a_node_find_exactly_the_planted_breaks() {
    let n = u128::from(common::rounds(100_000, 1_000_000));
    let root = tempfile::tempdir().expect("tempdir");
    let mut cluster = common::local_cluster(root.path(), common::FAST_RAFT);
    cluster.found(&[1]).expect("started");
    cluster
        .wait_leader(common::LEADER_WAIT)
        .await
        .expect("a leader");
    let credential = String::from_utf8(cluster.operator_credential().to_vec()).expect("text");
    let client = tally_client::Client::connect(
        tally_client::ClientConfig::new(
            cluster.addrs(),
            cluster.cluster_id(),
            credential.clone().into_bytes(),
        )
        .with_tls(cluster.client_tls().expect("the local CA")),
    )
    .await
    .expect("connects");
    // Accounts 1..=n alternate ledgers 1 and 2; houses 10^9 + ledger; one account on ledger 3.
    let ledger_of = |id: u128| 1 + (id % 2) as u32;
    let house = |ledger: u32| 1_000_000_000 + u128::from(ledger);
    let amount_of = |id: u128| id % 997 + 1;
    let on_three = n + 1;
    let created = Instant::now();
    let accounts: Vec<Account> = (1..=n)
        .map(|id| (id, ledger_of(id)))
        .chain([(house(1), 1), (house(2), 2), (house(3), 3), (on_three, 3)])
        .map(|(id, ledger)| Account {
            id,
            ledger,
            code: 1,
            ..Account::default()
        })
        .collect();
    create_all(&client, accounts, |client, batch| {
        tokio::spawn(async move { client.create_accounts(&batch).await.expect("sent").len() })
    })
    .await;
    let transfers: Vec<Transfer> = (1..=n + 1)
        .map(|id| {
            let ledger = if id == on_three { 3 } else { ledger_of(id) };
            Transfer {
                id: 1_000_000_000_000 + id,
                debit_account_id: house(ledger),
                credit_account_id: id,
                amount: amount_of(id),
                ledger,
                code: 1,
                ..Transfer::default()
            }
        })
        .collect();
    create_all(&client, transfers, |client, batch| {
        tokio::spawn(async move { client.create_transfers(&batch).await.expect("sent").len() })
    })
    .await;
    // Everything before this last transfer is as of its timestamp.
    let at = credit(
        &client,
        2_000_000_000_000,
        &[(house(ledger_of(1)), 1, ledger_of(1), 1)],
    )
    .await;
    let extra_on_one = 1; // account 1 got one more at `at` exactly
    client.close().await;
    println!(
        "{n} accounts and transfers created in {:.1} s",
        created.elapsed().as_secs_f64()
    );

    let net = |id: u128| (amount_of(id) + if id == 1 { extra_on_one } else { 0 }) as i128;
    let house_net = |ledger: u32| -> i128 {
        -(1..=n)
            .filter(|id| ledger_of(*id) == ledger)
            .map(net)
            .sum::<i128>()
    };
    // Planted: amount breaks on 10, 11, n/2, n; missing in the ledger: n + 5 (no account),
    // n + 1 said on ledger 1 (it is on ledger 3), 20 said on ledger 2 (it is on ledger 1 — so
    // also missing in the file there); missing in the file: 30, 31 (and 20 on ledger 1).
    let amount_breaks = [10, 11, n / 2, n];
    let path = root.path().join("positions.csv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    writeln!(out, "account,ledger,amount").expect("write");
    for id in 1..=n {
        let (ledger, amount) = match id {
            20 => (2, net(id)),
            30 | 31 => continue,
            id if amount_breaks.contains(&id) => (ledger_of(id), net(id) - 3),
            id => (ledger_of(id), net(id)),
        };
        writeln!(out, "{id},{ledger},{amount}").expect("write");
    }
    writeln!(out, "{},1,{}", house(1), house_net(1)).expect("write");
    writeln!(out, "{},2,{}", house(2), house_net(2)).expect("write");
    writeln!(out, "{},1,5\n{on_three},1,{}", n + 5, amount_of(on_three)).expect("write");
    out.flush().expect("flush");
    drop(out);

    let mut env: Vec<(String, String)> = cluster.client_env();
    env.push(("TALLY_CLUSTER".to_owned(), cluster.addrs().join(",")));
    env.push(("TALLY_CREDENTIAL".to_owned(), credential));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (positions, at_text) = (path.display().to_string(), at.to_string());
    let report = root.path().join("report").display().to_string();
    let started = Instant::now();
    let args = [
        "reconcile",
        "--positions",
        &positions,
        "--at",
        &at_text,
        "--out",
        &report,
    ];
    let (code, stdout, stderr) = tally(&args, &env);
    let took = started.elapsed();
    println!(
        "{n} positions reconciled through the binary against a node in {:.2} s:\n{stdout}{stderr}",
        took.as_secs_f64()
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    // The file: n − 2 accounts (30, 31 left out), 2 houses, n + 5 and n + 1.
    let rows = n - 2 + 4;
    assert_eq!(
        stdout.trim_end(),
        format!(
            "reconciled {rows} positions as of {at} on ledgers [1,2]: {} matched, 4 amount \
             breaks, 3 missing in the ledger, 3 missing in the file",
            rows - 7
        )
    );
    let breaks = std::fs::read_to_string(root.path().join("report/breaks.csv")).expect("csv");
    let found: Vec<(String, String, String)> = (breaks.lines().skip(1))
        .map(|line| {
            let mut fields = line.split(',');
            let mut next = || fields.next().expect("a field").to_owned();
            (next(), next(), next())
        })
        .collect();
    let mut want: Vec<(String, String, String)> = [
        (ledger_of(10), "amount", 10),
        (ledger_of(11), "amount", 11),
        (ledger_of(n / 2), "amount", n / 2),
        (ledger_of(n), "amount", n),
        (2, "missing_in_ledger", 20),
        (1, "missing_in_ledger", n + 1),
        (1, "missing_in_ledger", n + 5),
        (1, "missing_in_file", 20),
        (ledger_of(30), "missing_in_file", 30),
        (ledger_of(31), "missing_in_file", 31),
    ]
    .iter()
    .map(|(l, kind, id)| (l.to_string(), kind.to_string(), id.to_string()))
    .collect();
    let mut sorted = found.clone();
    sorted.sort();
    want.sort();
    assert_eq!(sorted, want, "{breaks}");
    cluster
        .shutdown(Duration::from_secs(10))
        .expect("shut down");
}
