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
