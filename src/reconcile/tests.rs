//! The reconciliation without a cluster: the files' checks, the amounts, every break kind
//! against a ledger held in memory, and the report's files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tally_engine::records::Transfer;
use tally_engine::{Balances, StatementEntry, StatementEvent};

use super::input::{parse_i128, parse_u128, LINE_BYTES_MAX};
use super::*;

/// A ledger in memory: accounts in creation order, pages of `page` accounts (`from` is an
/// index), statements by account.
struct Memory {
    accounts: Vec<(LedgerPosition, u64)>,
    statements: HashMap<u128, Vec<StatementEntry>>,
    page: usize,
}

impl Memory {
    fn new(accounts: &[(u128, u32, i128)]) -> Memory {
        Memory {
            accounts: accounts
                .iter()
                .enumerate()
                .map(|(at, &(account, ledger, net))| {
                    (position(account, ledger, net), at as u64 + 1)
                })
                .collect(),
            statements: HashMap::new(),
            page: 2,
        }
    }
}

/// An account whose net credit is `net` (with some debits posted, and pending amounts that
/// must not count).
fn position(account: u128, ledger: u32, net: i128) -> LedgerPosition {
    let debits = 1_000u128;
    LedgerPosition {
        account,
        ledger,
        balances: Balances {
            debits_pending: 7,
            debits_posted: debits,
            credits_pending: 11,
            credits_posted: debits.checked_add_signed(net).expect("net ≥ -1000"),
        },
    }
}

impl LedgerSource for Memory {
    async fn positions(&self, ledger: u32, at: u64, from: u64) -> anyhow::Result<PositionsPage> {
        let of: Vec<LedgerPosition> = (self.accounts.iter())
            .filter(|(p, created)| p.ledger == ledger && *created <= at)
            .map(|(p, _)| *p)
            .collect();
        let from = from as usize;
        let end = (from + self.page).min(of.len());
        Ok(PositionsPage {
            items: of[from..end].to_vec(),
            next: (end < of.len()).then_some(end as u64),
        })
    }

    async fn accounts(&self, ids: &[u128]) -> anyhow::Result<Vec<AccountFound>> {
        assert!(ids.len() <= LOOKUP_IDS_MAX);
        Ok((self.accounts.iter())
            .filter(|(p, _)| ids.contains(&p.account))
            .map(|(p, created)| AccountFound {
                account: p.account,
                ledger: p.ledger,
                created: *created,
            })
            .collect())
    }

    async fn statement(
        &self,
        account: u128,
        min: u64,
        max: u64,
        limit: u32,
    ) -> anyhow::Result<Vec<StatementEntry>> {
        Ok(self
            .statements
            .get(&account)
            .into_iter()
            .flatten()
            .filter(|entry| (min..=max).contains(&entry.timestamp))
            .take(limit as usize)
            .copied()
            .collect())
    }
}

fn file(dir: &Path, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("written");
    path
}

/// The error reading `text` as a positions file gives.
fn refused(text: impl AsRef<[u8]>) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = file(dir.path(), "positions.csv", text);
    read_positions(&path, None)
        .expect_err("bad input")
        .to_string()
}

fn positions(text: &str) -> Positions {
    let dir = tempfile::tempdir().expect("tempdir");
    read_positions(&file(dir.path(), "positions.csv", text), None).expect("good input")
}

fn options(ledgers: &[u32]) -> Options {
    Options {
        at: 100,
        since: None,
        balance: BalanceKind::NetCredit,
        ledgers: ledgers.to_vec(),
    }
}

fn run(source: &Memory, positions: &Positions, options: &Options) -> Report {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(reconcile(source, positions, options))
        .expect("reconciled")
}

/// Proves u128 and i128 read in decimal and 0x hex, to their extremes and no further.
#[test]
fn numbers_read_in_decimal_and_hex_to_their_bounds() {
    assert_eq!(parse_u128("0"), Ok(0));
    assert_eq!(parse_u128("0x1F"), Ok(31));
    assert_eq!(parse_u128("0XfF"), Ok(255));
    assert_eq!(parse_u128(&u128::MAX.to_string()), Ok(u128::MAX));
    assert_eq!(parse_u128(&format!("{:#x}", u128::MAX)), Ok(u128::MAX));
    for bad in [
        "",
        "0x",
        "-1",
        "+1",
        "1_000",
        "1.5",
        "1e3",
        "0x1g",
        "340282366920938463463374607431768211456",
    ] {
        assert!(parse_u128(bad).is_err(), "{bad:?} read as a u128");
    }
    assert_eq!(parse_i128("-5"), Ok(-5));
    assert_eq!(parse_i128("+5"), Ok(5));
    assert_eq!(parse_i128("-0x10"), Ok(-16));
    assert_eq!(parse_i128(&i128::MIN.to_string()), Ok(i128::MIN));
    assert_eq!(
        parse_i128("-0x80000000000000000000000000000000"),
        Ok(i128::MIN)
    );
    assert_eq!(parse_i128(&i128::MAX.to_string()), Ok(i128::MAX));
    for bad in [
        "",
        "-",
        "--1",
        "170141183460469231731687303715884105728",
        "-170141183460469231731687303715884105729",
        "0x80000000000000000000000000000000",
        "- 1",
    ] {
        assert!(parse_i128(bad).is_err(), "{bad:?} read as an i128");
    }
}

/// Proves amounts are exact past 128 bits: a ledger's net of two u128s, and a break's
/// difference, printed in full.
#[test]
fn amounts_are_exact_past_128_bits() {
    assert_eq!(Amount::net(5, 7).to_string(), "-2");
    assert_eq!(Amount::net(u128::MAX, 0).to_string(), u128::MAX.to_string());
    assert_eq!(
        Amount::net(0, u128::MAX).to_string(),
        format!("-{}", u128::MAX)
    );
    assert_eq!(Amount::net(3, 3), Amount::from(0));
    assert_eq!(Amount::from(-4).minus(Amount::from(-4)), Amount::from(0));
    assert_eq!(Amount::from(0).minus(Amount::from(0)).to_string(), "0");
    assert_eq!(Amount::from(10).minus(Amount::from(3)).to_string(), "7");
    assert_eq!(Amount::from(3).minus(Amount::from(10)).to_string(), "-7");
    assert_eq!(Amount::from(-3).minus(Amount::from(10)).to_string(), "-13");
    assert_eq!(Amount::from(3).minus(Amount::from(-10)).to_string(), "13");
    // u128::MAX − i128::MIN = 2^128 − 1 + 2^127.
    assert_eq!(
        Amount::net(u128::MAX, 0)
            .minus(Amount::from(i128::MIN))
            .to_string(),
        "510423550381407695195061911147652317183"
    );
    // −u128::MAX − i128::MAX = −(2^128 − 1 + 2^127 − 1).
    assert_eq!(
        Amount::net(0, u128::MAX)
            .minus(Amount::from(i128::MAX))
            .to_string(),
        "-510423550381407695195061911147652317182"
    );
    // 2^128 exactly, and 2^128 + 9 (the carry past the last digit).
    assert_eq!(
        Amount::net(1 << 127, 0)
            .minus(Amount::from(i128::MIN))
            .to_string(),
        "340282366920938463463374607431768211456"
    );
    assert_eq!(
        Amount::net((1 << 127) + 9, 0)
            .minus(Amount::from(i128::MIN))
            .to_string(),
        "340282366920938463463374607431768211465"
    );
}

/// Proves a good file reads whole: hex and decimal, quoted fields, a BOM, CRLF, columns in any
/// order, blank lines, and the rows sorted by account with their lines.
#[test]
fn a_good_file_reads_whole() {
    let read = positions(
        "\u{feff}ledger, amount ,account\r\n1,-0x10,0x20\r\n\r\n\"2\",\"5\",7\n0x1,+3,\"1\"\n",
    );
    assert_eq!(
        read.rows,
        vec![
            Row {
                account: 1,
                amount: 3,
                ledger: 1,
                line: 5
            },
            Row {
                account: 7,
                amount: 5,
                ledger: 2,
                line: 4
            },
            Row {
                account: 32,
                amount: -16,
                ledger: 1,
                line: 2
            },
        ]
    );
    assert_eq!(read.ledgers.iter().copied().collect::<Vec<_>>(), vec![1, 2]);
}

/// Proves each malformed file is bad input that names the file and the line and says what
/// is wrong.
#[test]
fn every_malformed_file_is_named_with_its_line() {
    let cases: &[(&[u8], &[&str])] = &[
        (b"", &["positions.csv is empty"]),
        (b"\n\n", &["positions.csv is empty"]),
        (b"account,ledger,amount\n", &["the header and no rows"]),
        (b"account,ledger,amount\n\n", &["the header and no rows"]),
        (
            b"id,ledger,amount\n1,1,1\n",
            &["line 1", "unknown column \"id\""],
        ),
        (
            b"account,ledger,amount,note\n1,1,1,x\n",
            &["line 1", "unknown column \"note\""],
        ),
        (b"account,ledger\n1,1\n", &["line 1", "no column amount"]),
        (
            b"account,ledger,amount,amount\n",
            &["line 1", "named twice"],
        ),
        (
            b"\naccount,ledger,amount\n1,1,1\n",
            &["line 2", "the header must be line 1"],
        ),
        (
            b"account,ledger,amount\n1,1,1\n2,1,x1\n",
            &["1 malformed row", "line 3: amount: \"x1\""],
        ),
        (
            b"account,ledger,amount\n1,0,1\n",
            &["line 2: ledger: ledger 0"],
        ),
        (
            b"account,ledger,amount\n1,4294967296,1\n",
            &["line 2: ledger:"],
        ),
        (
            b"account,ledger,amount\n-1,1,1\n",
            &["line 2: account: \"-1\""],
        ),
        (
            b"account,ledger,amount\n1,1\n",
            &["line 2: 2 fields; the header has 3"],
        ),
        (b"account,ledger,amount\n1,1,1,\n", &["line 2: 4 fields"]),
        (
            b"account,ledger,amount\n\"1,1,1\n",
            &["line 2: a quoted field is not closed"],
        ),
        (
            b"account,ledger,amount\n5,1,1\n6,1,1\n5,2,3\n",
            &["line 4: account 5 is on line 2 already"],
        ),
        (
            b"account,ledger,amount\n1,1,1\n2,1,\xff\xfe\n",
            &["line 3: not UTF-8"],
        ),
        (b"\xff\xfeaccount,ledger,amount\n", &["line 1: not UTF-8"]),
        (
            b"\x7fELF\x02\x01\x01\x00\x00\x00",
            &["is binary (a NUL byte at offset 7)"],
        ),
    ];
    for (text, wanted) in cases {
        let error = refused(text);
        assert!(error.contains("positions.csv"), "{error}");
        for want in *wanted {
            assert!(
                error.contains(want),
                "{:?}: {error:?} lacks {want:?}",
                String::from_utf8_lossy(text)
            );
        }
    }
}

/// Proves a NUL byte past the first megabyte, and a line past the length cap, are each a
/// malformed row, and the rows after them are still checked.
#[test]
fn binary_rows_and_overlong_lines_are_rows_of_their_own() {
    let mut text = b"account,ledger,amount\n".to_vec();
    // Past the first megabyte (where a NUL makes the whole file binary).
    for account in 1..=150_000u32 {
        text.extend_from_slice(format!("{account},1,{account}\n").as_bytes());
    }
    assert!(text.len() > 2 << 20);
    // Line 150,002: a NUL; 150,003: too long; 150,004: bad; 150,005: good.
    text.extend_from_slice(b"9\x00,1,1\n");
    text.extend(std::iter::repeat_n(b'7', LINE_BYTES_MAX + 1));
    text.extend_from_slice(b",1,1\n200001,1,x\n200002,1,2\n");
    let error = refused(&text);
    assert!(error.contains("3 malformed rows"), "{error}");
    assert!(error.contains("line 150002: binary content"), "{error}");
    assert!(
        error.contains("line 150003: longer than 65536 bytes"),
        "{error}"
    );
    assert!(error.contains("line 150004: amount"), "{error}");
    assert!(
        error.len() < 1_000,
        "the long line is not echoed: {} bytes",
        error.len()
    );
    // A line of exactly the cap reads (and is then a bad account, not a long line).
    let mut text = b"account,ledger,amount\n".to_vec();
    text.extend(std::iter::repeat_n(b'7', LINE_BYTES_MAX - 4));
    text.extend_from_slice(b",1,1\n");
    let error = refused(&text);
    assert!(error.contains("line 2: account: \"7777"), "{error}");
    assert!(
        error.len() < 1_000,
        "the long value is cut: {} bytes",
        error.len()
    );
}

/// Proves every malformed row is counted, the first 20 by line are listed (duplicates found
/// after sorting among them in line order), and the rest said as "and N more".
#[test]
fn all_malformed_rows_are_counted_and_the_first_twenty_listed() {
    let mut text = "account,ledger,amount\n".to_owned();
    // Lines 2..=11 good; 12: duplicate of line 2; 13..=42 bad amounts.
    for account in 1..=10 {
        text.push_str(&format!("{account},1,1\n"));
    }
    text.push_str("1,1,1\n");
    for account in 100..130 {
        text.push_str(&format!("{account},1,bad\n"));
    }
    let error = refused(&text);
    assert!(
        error
            .lines()
            .next()
            .is_some_and(|first| first.ends_with("positions.csv: 31 malformed rows:")),
        "{error}"
    );
    let listed: Vec<&str> = error.lines().skip(1).collect();
    assert_eq!(listed.len(), 21, "{error}");
    assert_eq!(listed[0], "  line 12: account 1 is on line 2 already");
    assert!(listed[1].starts_with("  line 13: amount:"), "{error}");
    assert!(listed[19].starts_with("  line 31: amount:"), "{error}");
    assert_eq!(listed[20], "  and 11 more");
}

/// Proves the mapping reads external ids to accounts one to one, positions use them, and
/// an unknown external id, a duplicate external id, an account mapped twice or a duplicate
/// position after mapping are each bad input naming the line.
#[test]
fn mapping_translates_external_ids_and_is_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mapping = read_mapping(&file(
        dir.path(),
        "mapping.csv",
        "external,account\nFUND-A,0x10\n\"FUND, B\",17\n",
    ))
    .expect("a good mapping");
    assert_eq!(mapping.len(), 2);
    let path = file(
        dir.path(),
        "positions.csv",
        "account,ledger,amount\nFUND-A,1,5\n\"FUND, B\",1,-5\n",
    );
    let read = read_positions(&path, Some(&mapping)).expect("mapped");
    assert_eq!(
        read.rows
            .iter()
            .map(|row| (row.account, row.amount))
            .collect::<Vec<_>>(),
        vec![(16, 5), (17, -5)]
    );
    let externals = mapping.externals_of(&[17].into_iter().collect());
    assert_eq!(externals.get(&17).map(String::as_str), Some("FUND, B"));

    let path = file(
        dir.path(),
        "positions.csv",
        "account,ledger,amount\nFUND-A,1,5\nFUND-C,1,1\n16,1,1\nFUND-A,2,1\n",
    );
    let error = read_positions(&path, Some(&mapping))
        .expect_err("bad")
        .to_string();
    assert!(error.contains("3 malformed rows"), "{error}");
    assert!(
        error.contains("line 3: external id \"FUND-C\" is not in the mapping"),
        "{error}"
    );
    assert!(
        error.contains("line 4: external id \"16\" is not in the mapping"),
        "{error}"
    );
    assert!(
        error.contains("line 5: external id \"FUND-A\" (account 16) is on line 2 already"),
        "{error}"
    );

    let bad = file(
        dir.path(),
        "mapping.csv",
        "external,account\nA,1\nB,2\nA,3\nC,2\n,4\nD,x\n",
    );
    let error = read_mapping(&bad).expect_err("bad").to_string();
    assert!(error.contains("mapping.csv: 4 malformed rows"), "{error}");
    assert!(
        error.contains("line 4: external id \"A\" is mapped already, on line 2"),
        "{error}"
    );
    assert!(
        error.contains("line 5: account 2 is mapped already, on line 3"),
        "{error}"
    );
    assert!(
        error.contains("line 6: the external id is empty"),
        "{error}"
    );
    assert!(error.contains("line 7: account: \"x\""), "{error}");
    let error = read_mapping(&file(dir.path(), "mapping.csv", "external,id\nA,1\n"))
        .expect_err("bad")
        .to_string();
    assert!(
        error.contains("mapping.csv: line 1: unknown column \"id\""),
        "{error}"
    );
}

/// Proves every break kind is found, and nothing else: matched, an amount break (ledger −
/// file), missing in the ledger (no such account; on a ledger reconciled; on one not
/// reconciled; created after `at`), missing in the file (absent; present on another ledger),
/// a zero ledger account absent matched as zero, and positions on other ledgers left out.
#[test]
fn every_break_kind_is_found_and_nothing_else() {
    let source = Memory::new(&[
        (1, 1, 50), // matched
        (2, 1, 70), // amount break: file 60
        (3, 1, 0),  // absent from the file, zero: matched as zero
        (4, 1, -9), // missing in the file
        (5, 2, 8),  // the file has it on ledger 1: missing in ledger 1 and in file on 2
        (6, 3, 1),  // the file has it on ledger 1; ledger 3 not reconciled
        (7, 2, -1), // matched on ledger 2, negative
        (9, 9, 3),  // a ledger not reconciled, not in the file
    ]);
    let mut late = Memory::new(&[]);
    late.accounts = source.accounts.clone();
    late.accounts.push((position(8, 1, 4), 500)); // created after at = 100
    let read = positions(
        "account,ledger,amount\n1,1,50\n2,1,60\n5,1,8\n6,1,1\n7,2,-1\n8,1,4\n10,1,0\n11,4,2\n",
    );
    let report = run(&late, &read, &options(&[2, 1, 2]));
    assert_eq!(report.compared, 7);
    assert_eq!(report.left_out, 1);
    assert_eq!(report.ledger_accounts, 6);
    let [one, two] = &report.ledgers[..] else {
        panic!("two ledgers: {report:?}");
    };
    assert_eq!((one.ledger, one.matched, one.zero_absent), (1, 1, 1));
    assert_eq!(
        one.amount_breaks,
        vec![AmountBreak {
            account: 2,
            line: 3,
            file_amount: 60,
            ledger_amount: Amount::from(70),
            statement: Statement::NotAsked,
        }]
    );
    assert_eq!(one.amount_breaks[0].difference(), Amount::from(10));
    let missing = |account, line, file_amount, account_ledger, account_created| MissingInLedger {
        account,
        line,
        file_amount,
        account_ledger,
        account_created,
    };
    assert_eq!(
        one.missing_in_ledger,
        vec![
            missing(5, 4, 8, Some(2), None),
            missing(6, 5, 1, Some(3), Some(6)),
            missing(8, 7, 4, Some(1), Some(500)),
            missing(10, 8, 0, None, None),
        ]
    );
    assert_eq!(
        one.missing_in_file,
        vec![MissingInFile {
            account: 4,
            ledger_amount: Amount::from(-9),
            file_row: None,
            statement: Statement::NotAsked,
        }]
    );
    assert_eq!((two.ledger, two.matched, two.zero_absent), (2, 1, 0));
    assert!(two.amount_breaks.is_empty() && two.missing_in_ledger.is_empty());
    assert_eq!(
        two.missing_in_file,
        vec![MissingInFile {
            account: 5,
            ledger_amount: Amount::from(8),
            file_row: Some((1, 4)),
            statement: Statement::NotAsked,
        }]
    );
    assert_eq!(report.breaks(), 7);
    assert_eq!(
        report.summary(),
        "reconciled 7 positions as of 100 on ledgers [1,2]: 2 matched, 1 amount breaks, 4 \
         missing in the ledger, 2 missing in the file; 1 ledger accounts at zero not in the \
         file (matched as zero); 1 positions on other ledgers left out"
    );
    let notes: Vec<String> = one
        .missing_in_ledger
        .iter()
        .map(|b| report::missing_in_ledger_note(b, 1, 100))
        .collect();
    assert_eq!(
        notes,
        [
            "the account is on ledger 2",
            "the account is on ledger 3",
            "the account was created at 500, after --at",
            "no such account (or not in the credential's scope)",
        ]
    );
}

/// Proves a clean file reconciles with no breaks, and that net-debit reverses the sign.
#[test]
fn a_clean_file_has_no_breaks_and_net_debit_reverses_the_sign() {
    let source = Memory::new(&[(1, 1, 50), (2, 1, -70), (3, 1, 0)]);
    let read = positions("account,ledger,amount\n1,1,50\n2,1,-70\n");
    let report = run(&source, &read, &options(&[1]));
    assert_eq!(report.breaks(), 0, "{report:?}");
    assert_eq!(
        (report.ledgers[0].matched, report.ledgers[0].zero_absent),
        (2, 1)
    );
    let mut debit = options(&[1]);
    debit.balance = BalanceKind::NetDebit;
    let report = run(&source, &read, &debit);
    assert_eq!(report.ledgers[0].amount_breaks.len(), 2);
    assert_eq!(
        report.ledgers[0].amount_breaks[1].ledger_amount,
        Amount::from(70)
    );
    let read = positions("account,ledger,amount\n1,1,-50\n2,1,70\n");
    assert_eq!(run(&source, &read, &debit).breaks(), 0);
}

fn transfer_line(timestamp: u64, id: u128, credit_after: u128) -> StatementEntry {
    StatementEntry {
        timestamp,
        event: StatementEvent::Transfer(Transfer {
            id,
            amount: 5,
            ..Transfer::default()
        }),
        balances_after: Balances {
            credits_posted: credit_after,
            ..Balances::default()
        },
    }
}

/// Proves with --since each break with a ledger side carries its statement lines in (since,
/// at], and that a full page says there are more.
#[test]
fn breaks_carry_their_statement_lines_since_the_last_run() {
    let mut source = Memory::new(&[(1, 1, 50), (2, 1, 70), (4, 1, -9)]);
    source.statements.insert(
        2,
        vec![
            transfer_line(10, 900, 1_060),
            transfer_line(20, 901, 1_065),
            transfer_line(30, 902, 1_070),
            transfer_line(2_000_000, 903, 1_075),
        ],
    );
    // Timestamps are unique, as the ledger's are.
    let many: Vec<StatementEntry> = (0..STATEMENT_LINES_MAX as u64 + 1)
        .map(|at| transfer_line(11 + at, 1_000 + u128::from(at), 991))
        .collect();
    source.statements.insert(4, many);
    let read = positions("account,ledger,amount\n1,1,50\n2,1,60\n");
    let mut asked = options(&[1]);
    asked.since = Some(10);
    asked.at = 1_000_000;
    let report = run(&source, &read, &asked);
    let Statement::Lines { lines, more } = &report.ledgers[0].amount_breaks[0].statement else {
        panic!("lines: {report:?}");
    };
    assert!(!more);
    assert_eq!(
        lines
            .iter()
            .map(|l| (l.timestamp, l.id, l.amount, l.position_after))
            .collect::<Vec<_>>(),
        vec![
            (20, 901, Some(5), Amount::from(1_065)),
            (30, 902, Some(5), Amount::from(1_070))
        ]
    );
    let Statement::Lines { lines, more } = &report.ledgers[0].missing_in_file[0].statement else {
        panic!("lines: {report:?}");
    };
    assert!(*more, "a full page and one more line says more");
    assert_eq!(lines.len(), STATEMENT_LINES_MAX as usize);
}

/// Proves the report's files say the breaks: a CSV row per break, a statement row per line,
/// and JSON that parses with the same counts; and that a run without --since removes a
/// stale statements.csv.
#[test]
fn the_report_files_hold_every_break() {
    let mut source = Memory::new(&[(1, 1, 50), (2, 1, 70), (4, 1, -9)]);
    source
        .statements
        .insert(2, vec![transfer_line(20, 901, 1_065)]);
    let read = positions("account,ledger,amount\n1,1,50\n2,1,60\n12,1,3\n");
    let mut asked = options(&[1]);
    asked.since = Some(10);
    let report = run(&source, &read, &asked);
    let dir = tempfile::tempdir().expect("tempdir");
    let externals: HashMap<u128, String> = [(2, "FUND \"B\"".to_owned())].into();
    let files = report::Files {
        positions: "positions.csv",
        mapping: Some("mapping.csv"),
        balance: BalanceKind::NetCredit,
        externals: &externals,
    };
    report::write(dir.path(), &report, &files).expect("written");
    let breaks = std::fs::read_to_string(dir.path().join("breaks.csv")).expect("breaks.csv");
    let rows: Vec<&str> = breaks.lines().collect();
    assert_eq!(rows.len(), 4, "{breaks}");
    assert!(rows[0]
        .starts_with("ledger,kind,account,external,line,file_amount,ledger_amount,difference"));
    assert_eq!(
        rows[1],
        "1,amount,2,\"FUND \"\"B\"\"\",3,60,70,10,,,,1,false,,net-credit"
    );
    assert_eq!(rows[2], "1,missing_in_ledger,12,,4,3,,,,,,,,no such account (or not in the credential's scope),net-credit");
    assert_eq!(rows[3], "1,missing_in_file,4,,,,-9,,,,,0,false,,net-credit");
    let statements =
        std::fs::read_to_string(dir.path().join("statements.csv")).expect("statements");
    assert_eq!(
        statements.lines().collect::<Vec<_>>(),
        [
            "ledger,kind,account,external,timestamp,event,id,amount,position_after",
            "1,amount,2,\"FUND \"\"B\"\"\",20,transfer,901,5,1065",
        ]
    );
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("report.json")).expect("report.json"),
    )
    .expect("JSON");
    assert_eq!(json["summary"]["amount_breaks"], 1);
    assert_eq!(json["summary"]["missing_in_ledger"], 1);
    assert_eq!(json["summary"]["missing_in_file"], 1);
    assert_eq!(json["at"], "100");
    let ledger = &json["ledgers"][0];
    assert_eq!(ledger["matched"], 1);
    assert_eq!(ledger["amount_breaks"][0]["difference"], "10");
    assert_eq!(ledger["amount_breaks"][0]["external"], "FUND \"B\"");
    assert_eq!(
        ledger["amount_breaks"][0]["statement"]["lines"][0]["id"],
        "901"
    );
    assert_eq!(ledger["missing_in_file"][0]["ledger_amount"], "-9");

    let report = run(&source, &read, &options(&[1]));
    report::write(dir.path(), &report, &files).expect("written");
    assert!(
        !dir.path().join("statements.csv").exists(),
        "stale statements.csv left"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
    assert_eq!(left.len(), 2, "only breaks.csv and report.json: {left:?}");
}

/// Proves the flags are checked before anything is fetched: --since not before --at, ledger
/// 0, and an --out that cannot be made are bad input.
#[test]
fn flags_are_checked_before_fetching() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = file(
        dir.path(),
        "positions.csv",
        "account,ledger,amount\n1,1,1\n",
    );
    let args = |extra: &[&str]| {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: ReconcileArgs,
        }
        let mut argv = vec!["reconcile", "--cluster", "127.0.0.1:1", "--credential", "x"];
        argv.extend(["--positions", path.to_str().expect("utf-8")]);
        argv.extend(extra);
        <Cli as clap::Parser>::try_parse_from(argv)
            .expect("parsed")
            .args
    };
    let out = dir.path().join("out");
    let out = out.to_str().expect("utf-8");
    // --at 0 is "now": the cluster's newest record, set by pin() once it is known.
    let checked = check(&args(&["--out", out])).expect("good");
    assert_eq!(
        (checked.options.at, checked.options.ledgers.clone()),
        (0, vec![1])
    );
    let checked = check(&args(&[
        "--out", out, "--at", "9", "--ledger", "3,2", "--ledger", "2",
    ]))
    .expect("good");
    assert_eq!(
        (checked.options.at, checked.options.ledgers),
        (9, vec![2, 3])
    );
    let error = check(&args(&["--out", out, "--at", "9", "--since", "9"]))
        .err()
        .expect("bad");
    assert!(
        error.0.contains("--since 9 is not before --at 9"),
        "{error}"
    );
    let error = check(&args(&["--out", out, "--ledger", "0"]))
        .err()
        .expect("bad");
    assert!(error.0.contains("--ledger 0"), "{error}");
    // pin(): --at 0 becomes the newest record; --since is checked against it; a later --at
    // than the history is refused.
    let now = args(&["--out", out, "--since", "50"]);
    let mut options = check(&now).expect("good").options;
    pin(&now, 100, &mut options).expect("good");
    assert_eq!(options.at, 100);
    let error = pin(&now, 40, &mut options).expect_err("bad");
    assert!(
        error.0.contains("--since 50 is not before --at 40"),
        "{error}"
    );
    let later = args(&["--out", out, "--at", "200"]);
    let error = pin(&later, 100, &mut options).expect_err("bad");
    assert!(error.0.contains("--at 200 is later than"), "{error}");
    let blocked = file(dir.path(), "a-file", "x");
    let error = report::check_out_dir(&blocked.join("sub")).expect_err("bad");
    assert!(error.0.contains("cannot make the directory"), "{error}");
    assert!(!Path::new(out).exists(), "check() makes no directory");
    report::check_out_dir(Path::new(out)).expect("writable");
    assert!(Path::new(out).is_dir());
}
