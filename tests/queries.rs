//! Queries by field through a real node: the Rust client's pages against a reference computed
//! here from lookups by id, a reader's scope on every result, positions as of a time, and
//! `tally client query` with its exit codes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use tally::local_cluster::LocalCluster;
use tally_client::{Client, ClientConfig};
use tally_engine::records::{Account, Transfer};
use tally_engine::{Balances, QueryFilter, QueryPage};
use tally_gateway::credential_hash_hex;

mod common;

const CLUSTER_ID: u128 = 0x9E41;
const OPERATOR: &str = "operator-secret-for-query-tests";
/// A reader that sees account 3 and nothing else.
const READER: &str = "reader-secret-for-query-tests-3";
const ACCOUNTS: u128 = 30;
const TRANSFERS: u128 = 3_000;

fn node(root: &Path) -> LocalCluster {
    let config = format!(
        "[raft]\n[wal]\nsegment_mib = 16\n[gateway]\ncluster_id = \"{CLUSTER_ID:#x}\"\n\
         [[gateway.credentials]]\nname = \"ops\"\nhash = \"{}\"\nrole = \"operator\"\n\
         [[gateway.credentials]]\nname = \"fund\"\nhash = \"{}\"\nrole = \"reader\"\n\
         accounts = [\"3\"]\n",
        credential_hash_hex(OPERATOR.as_bytes()),
        credential_hash_hex(READER.as_bytes()),
    );
    LocalCluster::new(Path::new(env!("CARGO_BIN_EXE_tally")), root, &config)
}

/// Every page of `filter`, following `next`.
async fn all<T, F>(filter: QueryFilter, page: impl Fn(QueryFilter) -> F) -> Vec<T>
where
    F: std::future::Future<Output = Result<QueryPage<T>, tally_client::ClientError>>,
{
    let mut out = Vec::new();
    let mut current = filter;
    loop {
        let got = page(current).await.expect("a page");
        assert!(got.items.len() <= filter.limit as usize);
        out.extend(got.items);
        match got.next {
            Some(next) => current = filter.after(next),
            None => return out,
        }
    }
}

fn matches(filter: &QueryFilter, t: &Transfer) -> bool {
    let any = |wanted: u128, value: u128| wanted == 0 || wanted == value;
    any(filter.ledger.into(), t.ledger.into())
        && any(filter.code.into(), t.code.into())
        && any(filter.user_data_64.into(), t.user_data_64.into())
        && t.timestamp >= filter.timestamp_min
        && (filter.timestamp_max == 0 || t.timestamp <= filter.timestamp_max)
}

/// A CSV export's header and rows.
fn csv_rows(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_path(path).expect("the CSV export");
    let header = reader
        .headers()
        .expect("a header")
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader
        .records()
        .map(|r| r.expect("a row").iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

/// A Parquet export's column names and rows, read with the `parquet` crate's row reader: each
/// value as CSV text (unsigned integers in decimal, strings as they are, a null empty).
fn parquet_rows(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;
    let file = std::fs::File::open(path).expect("the Parquet export");
    let reader = SerializedFileReader::new(file).expect("a Parquet file");
    let columns = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    let rows = reader
        .get_row_iter(None)
        .expect("rows")
        .map(|row| {
            row.expect("a row")
                .get_column_iter()
                .map(|(name, field)| match field {
                    Field::Null => String::new(),
                    Field::Str(text) => text.clone(),
                    Field::ULong(v) => v.to_string(),
                    Field::UInt(v) => v.to_string(),
                    Field::UShort(v) => v.to_string(),
                    other => panic!("{name}: not an export's type: {other:?}"),
                })
                .collect()
        })
        .collect();
    (columns, rows)
}

/// Proves queries page by page equal a reference built from lookups (filters on ledger,
/// code, user data and a time range, both directions, pages of 7); a reader scoped to account
/// 3 gets only what touches 3 from every query kind; positions as of a time equal each
/// account's balances-as-of; and `tally client query` prints the same rows (CSV), refuses
/// a filter that matches everything by accident with exit 2, and a reader sees its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_page_by_page_match_the_reference_within_scope() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut cluster = node(root.path());
    cluster.found(&[1]).expect("started");
    cluster
        .wait_leader(Duration::from_secs(30))
        .await
        .expect("a leader");
    let tls = cluster.client_tls().expect("the local CA");
    let config = |secret: &str| {
        ClientConfig::new(cluster.addrs(), CLUSTER_ID, secret.as_bytes().to_vec())
            .with_tls(tls.clone())
    };
    let operator = Client::connect(config(OPERATOR)).await.expect("connects");
    let accounts: Vec<Account> = (1..=ACCOUNTS)
        .map(|id| Account {
            id,
            ledger: (id % 2 + 1) as u32,
            code: (id % 3 + 1) as u16,
            ..Account::default()
        })
        .collect();
    assert!(operator
        .create_accounts(&accounts)
        .await
        .unwrap()
        .is_empty());
    // Transfers between accounts of one ledger (ids of one parity), in three requests so the
    // history spans several entries.
    let transfers: Vec<Transfer> = (0..TRANSFERS)
        .map(|i| {
            let debit = i % ACCOUNTS + 1;
            // An even step (never a multiple of 30) keeps the parity: the same ledger.
            let credit = (debit - 1 + 2 * (1 + i % 14)) % ACCOUNTS + 1;
            Transfer {
                id: 10_000 + i,
                debit_account_id: debit,
                credit_account_id: credit,
                amount: 1 + i % 50,
                ledger: (debit % 2 + 1) as u32,
                code: (1 + i % 4) as u16,
                user_data_64: (i % 5) as u64,
                ..Transfer::default()
            }
        })
        .collect();
    for chunk in transfers.chunks(1_000) {
        let failed = operator.create_transfers(chunk).await.expect("transfers");
        assert!(failed.is_empty(), "{failed:?}");
    }
    let ids: Vec<u128> = transfers.iter().map(|t| t.id).collect();
    let mut stored = Vec::new();
    for chunk in ids.chunks(1_000) {
        stored.extend(operator.lookup_transfers(chunk).await.expect("lookup"));
    }
    stored.sort_by_key(|t| t.timestamp);
    assert_eq!(stored.len(), TRANSFERS as usize);
    let middle = stored[1_500].timestamp;

    // --- every filter, both directions, pages of 7, against the reference
    let base = QueryFilter {
        limit: 7,
        ..QueryFilter::default()
    };
    let filters = [
        QueryFilter { code: 2, ..base },
        QueryFilter {
            ledger: 1,
            code: 3,
            ..base
        },
        QueryFilter {
            user_data_64: 4,
            ledger: 2,
            ..base
        },
        QueryFilter {
            timestamp_min: middle,
            code: 1,
            ..base
        },
        QueryFilter {
            timestamp_max: middle,
            user_data_64: 1,
            ..base
        },
        QueryFilter { code: 9, ..base },
    ];
    for filter in filters {
        for reversed in [false, true] {
            let filter = QueryFilter { reversed, ..filter };
            let mut expected: Vec<Transfer> = stored
                .iter()
                .filter(|t| matches(&filter, t))
                .copied()
                .collect();
            if reversed {
                expected.reverse();
            }
            let got = all(filter, |f| {
                let operator = &operator;
                async move { operator.query_transfers(&f).await }
            })
            .await;
            assert_eq!(got, expected, "{filter:?}");
        }
    }
    let ledger_two = all(
        QueryFilter {
            ledger: 2,
            limit: 4,
            ..base
        },
        |f| {
            let operator = &operator;
            async move { operator.query_accounts(&f).await }
        },
    )
    .await;
    let expected: Vec<u128> = (1..=ACCOUNTS).filter(|id| id % 2 == 1).collect();
    assert_eq!(
        ledger_two.iter().map(|a| a.id).collect::<Vec<_>>(),
        expected
    );

    // --- positions as of the middle: each account's balances-as-of
    let positions = all(QueryFilter { limit: 8, ..base }, |f| {
        let operator = &operator;
        async move { operator.positions(&f, middle).await }
    })
    .await;
    assert_eq!(positions.len(), ACCOUNTS as usize);
    let mut moved = 0;
    for position in &positions {
        let id = position.account.id;
        let then: Balances = operator.balances_as_of(id, middle).await.expect("as of");
        assert_eq!(position.balances, then, "account {id}");
        let now = operator.lookup_accounts(&[id]).await.expect("lookup")[0];
        moved += usize::from(now.credits_posted != then.credits_posted);
    }
    assert!(
        moved > 0,
        "the history after the middle moved no balance: the test proves nothing"
    );

    // --- a reader scoped to account 3 sees what touches 3, in every kind
    let reader = Client::connect(config(READER)).await.expect("connects");
    let everything = QueryFilter {
        limit: 50,
        ..QueryFilter::default()
    };
    let seen = all(everything, |f| {
        let reader = &reader;
        async move { reader.query_transfers(&f).await }
    })
    .await;
    let touching_3: Vec<Transfer> = stored
        .iter()
        .filter(|t| t.debit_account_id == 3 || t.credit_account_id == 3)
        .copied()
        .collect();
    assert!(!touching_3.is_empty());
    assert_eq!(seen, touching_3);
    let accounts_seen = all(everything, |f| {
        let reader = &reader;
        async move { reader.query_accounts(&f).await }
    })
    .await;
    assert_eq!(accounts_seen.iter().map(|a| a.id).collect::<Vec<_>>(), [3]);
    let positions_seen = all(everything, |f| {
        let reader = &reader;
        async move { reader.positions(&f, 0).await }
    })
    .await;
    assert_eq!(positions_seen.len(), 1);
    assert_eq!(positions_seen[0].account.id, 3);
    assert!(all(everything, |f| {
        let reader = &reader;
        async move { reader.query_trades(&f).await }
    })
    .await
    .is_empty());

    // --- the CLI: the same rows, and bad filters refused before connecting
    let ca = cluster.pki_dir().expect("TLS is on").join("ca.pem");
    let env = |secret: &str| {
        vec![
            ("TALLY_CLUSTER", cluster.addrs().join(",")),
            ("TALLY_CLUSTER_ID", format!("{CLUSTER_ID:#x}")),
            ("TALLY_CREDENTIAL", secret.to_owned()),
            ("TALLY_CA", ca.display().to_string()),
        ]
    };
    let run = |args: &[&str], secret: &str| {
        let env = env(secret);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        common::tally_cli(args, &env)
    };
    let (code, out, err) = run(
        &[
            "client",
            "--output",
            "csv",
            "query",
            "transfers",
            "--ledger",
            "1",
            "--code",
            "3",
        ],
        OPERATOR,
    );
    assert_eq!(code, 0, "{err}");
    let expected: Vec<String> = stored
        .iter()
        .filter(|t| t.ledger == 1 && t.code == 3)
        .map(|t| t.id.to_string())
        .collect();
    let got: Vec<String> = out
        .lines()
        .skip(1)
        .map(|line| line.split(',').next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(got, expected);
    let at = middle.to_string();
    let (code, out, err) = run(
        &[
            "client",
            "--output",
            "csv",
            "query",
            "positions",
            "--at",
            &at,
            "--max",
            "5",
        ],
        OPERATOR,
    );
    assert_eq!(code, 0, "{err}");
    let rows: BTreeMap<String, String> = out
        .lines()
        .skip(1)
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            (cells[0].to_owned(), cells[6].to_owned())
        })
        .collect();
    assert_eq!(rows.len(), 5, "--max 5: {out}");
    for position in positions.iter().take(5) {
        let id = position.account.id.to_string();
        assert_eq!(rows[&id], position.balances.credits_posted.to_string());
    }
    for bad in [
        &["client", "query", "transfers", "--ledger", "0"][..],
        &["client", "query", "transfers", "--from", "9", "--to", "3"],
        &["client", "query", "accounts", "--user-data-32", "1"],
        &["client", "query", "trades", "--user-data-128", "0x10"],
    ] {
        let (code, _, err) = run(bad, OPERATOR);
        assert_eq!(code, 2, "{bad:?}: {err}");
    }
    let (code, out, err) = run(&["client", "--output", "csv", "query", "accounts"], READER);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 2, "the header and account 3: {out}");

    // --- exports: positions as of the middle and the events of a range, each with a
    // manifest that says what it holds; a time the history has not reached is refused
    let dir = root.path();
    let positions_file = dir.join("positions.csv");
    let (code, _, err) = run(
        &[
            "client",
            "export",
            "positions",
            "--ledger",
            "2",
            "--at",
            &at,
            "--out",
            positions_file.to_str().expect("path"),
        ],
        OPERATOR,
    );
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&positions_file).expect("the export");
    let on_two: Vec<_> = positions.iter().filter(|p| p.account.ledger == 2).collect();
    assert_eq!(text.lines().count(), 1 + on_two.len(), "{text}");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("positions.csv.manifest.json")).expect("manifest"),
    )
    .expect("JSON");
    let credits: u128 = on_two.iter().map(|p| p.balances.credits_posted).sum();
    assert_eq!(manifest["accounts"], on_two.len() as u64);
    assert_eq!(
        manifest["ledgers"][0]["credits_posted"],
        credits.to_string()
    );
    assert_eq!(manifest["as_of"], middle);
    let (from, to) = (stored[100].timestamp, stored[2_100].timestamp);
    let events_file = dir.join("events.jsonl");
    let (code, _, err) = run(
        &[
            "client",
            "export",
            "events",
            "--from",
            &from.to_string(),
            "--to",
            &to.to_string(),
            "--format",
            "jsonl",
            "--out",
            events_file.to_str().expect("path"),
        ],
        OPERATOR,
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&events_file)
        .expect("the export")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let expected: Vec<String> = stored[100..=2_100]
        .iter()
        .map(|t| t.id.to_string())
        .collect();
    let got: Vec<String> = lines
        .iter()
        .map(|l| l["id"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(got, expected);
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("events.jsonl.manifest.json")).expect("manifest"),
    )
    .expect("JSON");
    assert_eq!(manifest["transfers"], 2_001);
    assert_eq!(manifest["events"], 2_001);
    // The commit index it reflects: every write so far was committed by it.
    assert!(
        manifest["commit_index"].as_u64().is_some_and(|c| c >= 4),
        "{manifest}"
    );
    assert_eq!(manifest["accounts"], 0);
    assert_eq!(manifest["trades"], 0);
    // The same positions and the same events as CSV and as Parquet: every row and value the
    // same (typed values back to text, nulls to empty cells), the count the manifest's.
    let export = |what: &[&str], format: &str, name: &str| {
        let out = dir.join(name);
        let mut args = vec!["client", "export"];
        args.extend_from_slice(what);
        args.extend_from_slice(&["--format", format, "--out", out.to_str().expect("path")]);
        let (code, _, err) = run(&args, OPERATOR);
        assert_eq!(code, 0, "{err}");
        let manifest: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("{name}.manifest.json"))).expect("manifest"),
        )
        .expect("JSON");
        assert_eq!(manifest["format"], format);
        (out, manifest)
    };
    let (from, to) = (from.to_string(), to.to_string());
    for (what, count) in [
        (&["positions", "--ledger", "2", "--at", &at][..], "accounts"),
        (&["events", "--from", &from, "--to", &to], "events"),
    ] {
        let (csv_file, csv_manifest) = export(what, "csv", &format!("both-{}.csv", what[0]));
        let (parquet_file, manifest) =
            export(what, "parquet", &format!("both-{}.parquet", what[0]));
        let (header, csv_rows) = csv_rows(&csv_file);
        let (columns, rows) = parquet_rows(&parquet_file);
        assert_eq!(columns, header);
        assert!(!rows.is_empty());
        assert_eq!(rows, csv_rows, "{}", what[0]);
        assert_eq!(manifest[count].as_u64(), Some(rows.len() as u64));
        for field in [
            "ledgers",
            "transfers_by_ledger",
            "history_reached",
            "trades",
        ] {
            assert_eq!(manifest[field], csv_manifest[field], "{field}");
        }
    }
    let (code, _, err) = run(
        &[
            "client",
            "export",
            "events",
            "--from",
            &from,
            "--to",
            &to,
            "--format",
            "parquet",
            "--out",
            dir.join("no/such/dir/events.parquet")
                .to_str()
                .expect("path"),
        ],
        OPERATOR,
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("cannot create") && !err.contains("panicked"),
        "{err}"
    );
    let later = (stored.last().expect("transfers").timestamp + 1_000_000_000).to_string();
    let (code, _, err) = run(
        &[
            "client",
            "export",
            "positions",
            "--at",
            &later,
            "--out",
            dir.join("later.csv").to_str().expect("path"),
        ],
        OPERATOR,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("later than the ledger's history"), "{err}");
    assert!(!dir.join("later.csv.manifest.json").exists());

    // --- the feed: everything once, in order, with positions; resumed after the 1,000th
    // line it goes on exactly where it stopped, new events included
    let follow = |from: &str| {
        let (code, out, err) = run(
            &["client", "follow", "--from", from, "--until-caught-up"],
            OPERATOR,
        );
        assert_eq!(code, 0, "{err}");
        out.lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("a JSON line"))
            .collect::<Vec<_>>()
    };
    let feed = follow("0");
    let ids = |lines: &[serde_json::Value]| -> Vec<String> {
        lines
            .iter()
            .map(|l| l["id"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    // The accounts' creations come first (one request before every transfer), then the
    // transfers: every applied event.
    let all_ids: Vec<String> = accounts
        .iter()
        .map(|a| a.id.to_string())
        .chain(stored.iter().map(|t| t.id.to_string()))
        .collect();
    assert_eq!(ids(&feed), all_ids);
    assert!(feed[..accounts.len()].iter().all(|l| l["kind"] == "account"
        && l["ledger"].is_string()
        && l.get("debit_account_id").is_none()));
    // The feed's objects are the export's rows (but the empty cash columns), plus a position.
    let exported = &lines[0];
    let fed = feed
        .iter()
        .find(|l| l["id"] == exported["id"])
        .expect("in the feed");
    for (key, value) in exported.as_object().expect("an object") {
        if value != "" {
            assert_eq!(&fed[key], value, "{key}");
        }
    }
    assert_eq!(
        fed["position"].as_u64(),
        exported["timestamp"].as_str().and_then(|t| t.parse().ok())
    );
    let positions: Vec<u64> = feed
        .iter()
        .map(|l| l["position"].as_u64().expect("position"))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    let created = operator
        .lookup_accounts(&[1])
        .await
        .expect("lookup")
        .first()
        .map(|a| a.timestamp);
    assert_eq!(Some(positions[0]), created);
    assert_eq!(positions[accounts.len()], stored[0].timestamp);
    let more: Vec<Transfer> = (0..500u128)
        .map(|i| Transfer {
            id: 50_000 + i,
            debit_account_id: 1,
            credit_account_id: 3,
            amount: 1,
            ledger: 2,
            code: 7,
            ..Transfer::default()
        })
        .collect();
    assert!(operator
        .create_transfers(&more)
        .await
        .expect("more")
        .is_empty());
    let resumed = follow(&(positions[999] + 1).to_string());
    let mut expected: Vec<String> = all_ids[1_000..].to_vec();
    expected.extend(more.iter().map(|t| t.id.to_string()));
    assert_eq!(ids(&resumed), expected);

    // --- a reader's feed and export hold its scope only (account 3)
    let (code, out, err) = run(&["client", "follow", "--until-caught-up"], READER);
    assert_eq!(code, 0, "{err}");
    let fed: Vec<serde_json::Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let mut touching: Vec<String> = vec!["3".to_owned()];
    touching.extend(touching_3.iter().map(|t| t.id.to_string()));
    touching.extend(more.iter().map(|t| t.id.to_string()));
    assert_eq!(ids(&fed), touching);
    let reader_file = dir.join("reader-positions.csv");
    let (code, _, err) = run(
        &[
            "client",
            "export",
            "positions",
            "--at",
            &at,
            "--out",
            reader_file.to_str().expect("path"),
        ],
        READER,
    );
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&reader_file).expect("the export");
    assert_eq!(text.lines().count(), 2, "the header and account 3: {text}");
    assert!(
        text.lines().nth(1).is_some_and(|row| row.starts_with("3,")),
        "{text}"
    );
}

/// Proves a statement whose account filter keeps few events of a long history is read in
/// bounded requests: account 1 has more changes than one request walks
/// (`QUERY_SCAN_MAX`), one in 50,000 with code 2. One request (`statement_page`) answers
/// short, with a `next`; the client's `statement` follows `next` and gives every code-2 event
/// in order, oldest or newest first, and a limit stops it early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rare_statement_filter_over_a_long_history_is_read_in_bounded_pages() {
    use tally_engine::{StatementEvent, StatementFilter};
    let root = tempfile::tempdir().expect("tempdir");
    let mut cluster = node(root.path());
    cluster.found(&[1]).expect("started");
    cluster
        .wait_leader(Duration::from_secs(30))
        .await
        .expect("a leader");
    let config = ClientConfig::new(cluster.addrs(), CLUSTER_ID, OPERATOR.as_bytes().to_vec())
        .with_tls(cluster.client_tls().expect("the local CA"));
    let client = Client::connect(config).await.expect("connects");
    let accounts: Vec<Account> = (1..=2)
        .map(|id| Account {
            id,
            ledger: 1,
            code: 1,
            ..Account::default()
        })
        .collect();
    assert!(client.create_accounts(&accounts).await.unwrap().is_empty());
    let total = tally_engine::limits::QUERY_SCAN_MAX as u128 + 40_000;
    let rare = |n: u128| n % 50_000 == 49_999;
    let ids: Vec<u128> = (0..total).collect();
    for chunk in ids.chunks(8_189) {
        let batch: Vec<Transfer> = chunk
            .iter()
            .map(|&n| Transfer {
                id: n + 1,
                debit_account_id: 1,
                credit_account_id: 2,
                amount: 1,
                ledger: 1,
                code: if rare(n) { 2 } else { 1 },
                ..Transfer::default()
            })
            .collect();
        let failed = client.create_transfers(&batch).await.expect("a batch");
        assert!(failed.is_empty(), "{failed:?}");
    }
    let expected: Vec<u128> = ids.iter().filter(|&&n| rare(n)).map(|n| n + 1).collect();
    assert_eq!(expected.len(), 11);
    let ids_of = |entries: &[tally_engine::StatementEntry]| -> Vec<u128> {
        entries
            .iter()
            .map(|e| match e.event {
                StatementEvent::Transfer(t) => t.id,
                other => panic!("{other:?}"),
            })
            .collect()
    };
    let filter = StatementFilter {
        account_id: 1,
        limit: 8_189,
        code: 2,
        ..StatementFilter::default()
    };
    let first = client.statement_page(&filter).await.expect("a page");
    assert!(first.next.is_some(), "the walk's bound was met");
    assert!(first.items.len() < expected.len(), "{}", first.items.len());
    assert_eq!(ids_of(&first.items), expected[..first.items.len()]);
    let all = client.statement(&filter).await.expect("a statement");
    assert_eq!(ids_of(&all), expected);
    let newest = StatementFilter {
        reversed: true,
        ..filter
    };
    let mut all = ids_of(&client.statement(&newest).await.expect("a statement"));
    all.reverse();
    assert_eq!(all, expected);
    // A limit ends the walk with that many, even across the bound.
    let some = StatementFilter {
        limit: 10,
        ..filter
    };
    assert_eq!(
        ids_of(&client.statement(&some).await.expect("a statement")),
        expected[..10]
    );
}
