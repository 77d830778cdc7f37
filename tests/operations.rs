//! The operators' kit against real processes: the shipped Prometheus files pass promtool, a
//! real Prometheus (Debian's package, which `.ci/run` installs with
//! `deploy/local/install-prometheus.sh` before the tests) scrapes a 3-node cluster under load with the shipped config, every metric the
//! dashboard and the alerts name is exported, and the CLI adds and removes a fourth node while
//! the cluster is loaded, losing nothing.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tally::local_cluster::{http_get, LocalCluster};

mod common;

/// One process cluster at a time: the tests share two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn tally() -> &'static str {
    env!("CARGO_BIN_EXE_tally")
}

fn on_path(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Prometheus and promtool must be on PATH. Tests install nothing: `.ci/run` runs the
/// project's install script before the tests; run by hand, a missing tool fails here with the
/// command that installs it.
fn ensure_prometheus() {
    for tool in ["prometheus", "promtool"] {
        assert!(
            on_path(tool),
            "{tool} is not on PATH: install it with `bash deploy/local/install-prometheus.sh` \
             (`.ci/run` does this before the tests)"
        );
    }
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|error| panic!("{program} {args:?}: {error}"))
}

fn assert_ok(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(byte).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Names of every metric in a Prometheus text exposition (series names, histogram parts
/// included).
fn exported_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// Identifiers in `text` that name Tally's or the process's metrics.
fn metric_names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if starts_word && (text[i..].starts_with("tally_") || text[i..].starts_with("process_")) {
            let end = text[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(text.len(), |length| i + length);
            names.insert(text[i..end].to_owned());
            i = end;
        } else {
            i += 1;
        }
    }
    names
}

/// Every `expr` string in a Grafana dashboard.
fn dashboard_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("expr", serde_json::Value::String(expr)) => out.push(expr.clone()),
                    _ => dashboard_exprs(inner, out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                dashboard_exprs(item, out);
            }
        }
        _ => {}
    }
}

/// Nodes 1, 2 and 3 founded under `root`, with a leader elected.
fn three_nodes(root: &Path, runtime: &tokio::runtime::Runtime) -> LocalCluster {
    let mut cluster = LocalCluster::new(Path::new(tally()), root, "");
    cluster.found(&[1, 2, 3]).expect("nodes start");
    runtime
        .block_on(cluster.wait_leader(Duration::from_secs(30)))
        .expect("a leader");
    cluster
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("a runtime")
}

/// Wait until every node answers `/ready` with 200.
fn wait_ready(cluster: &LocalCluster, ids: &[u64], within: Duration) {
    let deadline = Instant::now() + within;
    for id in ids {
        let addr = cluster.admin_addr(*id).expect("node");
        loop {
            match http_get(&addr, "/ready") {
                Ok((200, body)) => {
                    assert_eq!(body, "ready\n");
                    break;
                }
                other => assert!(
                    Instant::now() < deadline,
                    "node {id} not ready within {within:?}: {other:?}"
                ),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `tally admin … status --json` as the cluster's operator.
fn admin_status(cluster: &LocalCluster, node: u64) -> serde_json::Value {
    let output = Command::new(tally())
        .args([
            "admin",
            "--node",
            &cluster.addr(node).expect("node"),
            "status",
            "--json",
        ])
        .envs(cluster.client_env())
        .env(
            "TALLY_CREDENTIAL",
            String::from_utf8_lossy(cluster.operator_credential()).as_ref(),
        )
        .output()
        .expect("tally admin runs");
    assert_ok(&output, "tally admin status --json");
    serde_json::from_slice(&output.stdout).expect("status is JSON")
}

fn admin(cluster: &LocalCluster, node: u64, args: &[&str]) -> Output {
    let node_addr = cluster.addr(node).expect("node");
    let mut all = vec!["admin", "--node", node_addr.as_str()];
    all.extend_from_slice(args);
    Command::new(tally())
        .args(&all)
        .envs(cluster.client_env())
        .env(
            "TALLY_CREDENTIAL",
            String::from_utf8_lossy(cluster.operator_credential()).as_ref(),
        )
        .output()
        .expect("tally admin runs")
}

/// A Prometheus server, stopped when dropped.
struct Prometheus {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Start Prometheus with the shipped `deploy/local/prometheus.yml`, its three targets
    /// pointed at `targets` (everything else as shipped).
    fn start(targets: &[String]) -> Prometheus {
        let shipped = std::fs::read_to_string(repo().join("deploy/local/prometheus.yml"))
            .expect("the shipped local config");
        let mut config = shipped.clone();
        for (k, target) in targets.iter().enumerate() {
            let shipped_target = format!("127.0.0.1:910{}", k + 1);
            assert!(
                config.contains(&shipped_target),
                "the shipped config has no {shipped_target}"
            );
            config = config.replace(&shipped_target, target);
        }
        // The config sits in a temporary directory: name the shipped rules by full path.
        let rules = repo().join("deploy/prometheus/alerts.yml");
        assert!(config.contains("../prometheus/alerts.yml"));
        config = config.replace("../prometheus/alerts.yml", &rules.display().to_string());
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("config written");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let addr = listener.local_addr().expect("addr").to_string();
        drop(listener);
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        let prometheus = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(http_get(&prometheus.addr, "/-/ready"), Ok((200, _))) {
            assert!(Instant::now() < deadline, "{}", prometheus.log());
            std::thread::sleep(Duration::from_millis(200));
        }
        prometheus
    }

    fn log(&self) -> String {
        let log =
            std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default();
        format!("prometheus did not come up; its log:\n{log}")
    }

    /// An instant query's result vector: (labels, value).
    fn query(&self, query: &str) -> Vec<(serde_json::Value, f64)> {
        let (status, body) = http_get(
            &self.addr,
            &format!("/api/v1/query?query={}", url_encode(query)),
        )
        .expect("prometheus answers");
        assert_eq!(status, 200, "{query}: {body}");
        let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(answer["status"], "success", "{query}: {body}");
        answer["data"]["result"]
            .as_array()
            .expect("a vector")
            .iter()
            .map(|sample| {
                let value = sample["value"][1]
                    .as_str()
                    .and_then(|value| value.parse().ok())
                    .expect("a number");
                (sample["metric"].clone(), value)
            })
            .collect()
    }

    /// Poll `query` until `good` accepts its result.
    fn wait_for(
        &self,
        query: &str,
        within: Duration,
        good: impl Fn(&[(serde_json::Value, f64)]) -> bool,
    ) -> Vec<(serde_json::Value, f64)> {
        let deadline = Instant::now() + within;
        loop {
            let result = self.query(query);
            if good(&result) {
                return result;
            }
            assert!(
                Instant::now() < deadline,
                "{query} within {within:?}: last {result:?}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// Proves the node configs the deploy kit ships (systemd example, container template) are
/// accepted by `tally node`'s config reader once their credential hashes are filled in, with
/// the admin port set, their `[tls]` files made by the certificate tooling next to them (TLS
/// is on in every shipped config), and their listeners apart.
#[test]
fn shipped_node_configs_parse() {
    let hash = tally_gateway::credential_hash_hex(b"a secret for this test only");
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("pki");
    tally_raft::net::tls::pki::make_ca(&pki, "tally").expect("a CA");
    for id in [1, 2] {
        tally_raft::net::tls::pki::make_node(&pki, id, &["localhost".to_owned()])
            .expect("a node certificate");
    }
    for (shipped, fill) in [
        (
            "deploy/systemd/node.toml.example",
            vec![("<64 hex digits>", hash.as_str())],
        ),
        (
            "deploy/container/config/node.toml.in",
            vec![
                ("@ID@", "2"),
                ("@OPERATOR_HASH@", hash.as_str()),
                ("@SUBMITTER_HASH@", hash.as_str()),
            ],
        ),
    ] {
        let mut text = std::fs::read_to_string(repo().join(shipped)).expect("shipped config");
        for (placeholder, value) in fill {
            assert!(text.contains(placeholder), "{shipped} lacks {placeholder}");
            text = text.replace(placeholder, value);
        }
        let path = dir.path().join("node.toml");
        std::fs::write(&path, text).expect("written");
        let flags = tally::config::NodeFlags {
            config: Some(path),
            ..Default::default()
        };
        let node = tally::config::node_config(&flags)
            .unwrap_or_else(|error| panic!("{shipped}: {error:#}"));
        assert!(
            node.gateway
                .credentials
                .iter()
                .any(|credential| credential.role == tally_gateway::Role::Operator),
            "{shipped}: no operator"
        );
        let admin = tally::config::admin_listen(&flags)
            .unwrap_or_else(|error| panic!("{shipped}: {error:#}"));
        assert!(admin.is_some(), "{shipped} sets no admin_listen");
        assert!(node.tls.is_some(), "{shipped}: TLS is off");
        assert_ne!(node.listen, node.peer_listen, "{shipped}");
    }
}

/// Proves the systemd unit passes `systemd-analyze verify` (with its `ExecStart` pointed at
/// the binary under test, as installed) and the shipped shell scripts parse.
#[test]
fn shipped_unit_and_scripts_check() {
    let unit =
        std::fs::read_to_string(repo().join("deploy/systemd/tally.service")).expect("the unit");
    assert!(unit.contains("/usr/local/bin/tally node --config /etc/tally/node.toml"));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tally.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/tally", tally())).expect("written");
    let verified = run("systemd-analyze", &["verify", &path.display().to_string()]);
    assert_ok(&verified, "systemd-analyze verify");
    assert!(
        verified.stdout.is_empty() && verified.stderr.is_empty(),
        "systemd-analyze verify said:\n{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    // Every shell script the project ships, found rather than listed (a list forgets the
    // newest one), and the CI entry point.
    let mut scripts = Vec::new();
    shell_scripts(&repo().join("deploy"), &mut scripts);
    assert!(
        scripts.len() >= 7,
        "deploy/ ships at least seven scripts; found {scripts:?}"
    );
    scripts.push(repo().join(".ci/run"));
    for script in &scripts {
        let shown = script.display().to_string();
        assert_ok(&run("bash", &["-n", &shown]), &format!("bash -n {shown}"));
    }
}

/// Every `*.sh` under `dir`, at any depth, in a stable order.
fn shell_scripts(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            shell_scripts(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "sh") {
            out.push(path);
        }
    }
}

/// Proves the shipped Prometheus files are valid: both configs load (with the rules they
/// name), the alert rules parse, and the alert unit tests (firing and quiet cases) pass.
#[test]
fn shipped_prometheus_files_pass_promtool() {
    ensure_prometheus();
    for args in [
        vec!["check", "config", "deploy/prometheus/prometheus.yml"],
        vec!["check", "config", "deploy/local/prometheus.yml"],
        vec!["check", "rules", "deploy/prometheus/alerts.yml"],
        vec!["test", "rules", "deploy/prometheus/alerts_test.yml"],
    ] {
        assert_ok(
            &run("promtool", &args),
            &format!("promtool {}", args.join(" ")),
        );
    }
}

/// Proves, on 3 real nodes under load with a real Prometheus using the shipped config:
/// `/health` and `/ready` answer; `promtool check metrics` finds nothing to say about a live
/// node's output; every metric the dashboard's queries and the alert rules name is exported;
/// Prometheus sees all three targets up, Tally's event counter rising, and the same leader as
/// `tally admin status`.
#[test]
fn prometheus_scrapes_a_cluster_under_load() {
    ensure_prometheus();
    let _one = one_at_a_time();
    let root = tempfile::tempdir().expect("tempdir");
    let runtime = runtime();
    let mut cluster = three_nodes(root.path(), &runtime);
    let ids = [1, 2, 3];
    wait_ready(&cluster, &ids, Duration::from_secs(30));
    let targets: Vec<String> = ids
        .iter()
        .map(|id| cluster.admin_addr(*id).expect("node"))
        .collect();
    for target in &targets {
        let (status, body) = http_get(target, "/health").expect("health answers");
        assert_eq!((status, body.as_str()), (200, "ok\n"));
        let (status, _) = http_get(target, "/nowhere").expect("answers");
        assert_eq!(status, 404);
    }

    let prometheus = Prometheus::start(&targets);
    prometheus.wait_for("up{job=\"tally\"}", Duration::from_secs(30), |result| {
        result.len() == 3 && result.iter().all(|(_, value)| *value == 1.0)
    });
    let before = prometheus.query("sum(tally_events_total)");
    let before = before.first().map_or(0.0, |(_, value)| *value);

    let load = common::start_load(&cluster, &ids, 6, false);
    // While the load runs: events rise in Prometheus.
    prometheus.wait_for(
        "sum(tally_events_total)",
        Duration::from_secs(30),
        |result| {
            result
                .first()
                .is_some_and(|(_, value)| *value > before + 1000.0)
        },
    );
    let report = common::finish_load(load);
    assert!(report.contains("events/s"), "{report}");

    // A live node's exposition: promtool has nothing to say, and it names every metric the
    // dashboard and the alerts use (after load, so the labelled series exist).
    let (status, text) = http_get(&targets[0], "/metrics").expect("metrics");
    assert_eq!(status, 200);
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("written");
    let checked = check.wait_with_output().expect("promtool ends");
    assert_ok(&checked, "promtool check metrics");
    assert!(
        checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool check metrics said:\n{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let mut exported = BTreeSet::new();
    for target in &targets {
        exported.extend(exported_names(
            &http_get(target, "/metrics").expect("metrics").1,
        ));
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/grafana/tally-dashboard.json"))
            .expect("the dashboard"),
    )
    .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "only {} queries found", exprs.len());
    let mut named = BTreeSet::new();
    for expr in &exprs {
        let names = metric_names_in(expr);
        assert!(!names.is_empty(), "a query naming no Tally metric: {expr}");
        named.extend(names);
    }
    let alerts = std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yml"))
        .expect("the alert rules");
    named.extend(metric_names_in(&alerts));
    let missing: Vec<&String> = named.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "named by the dashboard or alerts but not exported: {missing:?}"
    );

    // The leader: Prometheus and the CLI agree.
    let status = admin_status(&cluster, 1);
    let leader = status["leader"].as_u64().expect("the CLI names a leader");
    let leader_admin = cluster.admin_addr(leader).expect("leader");
    let leaders = prometheus.wait_for(
        "tally_raft_is_leader == 1",
        Duration::from_secs(15),
        |result| result.len() == 1,
    );
    assert_eq!(
        leaders[0].0["instance"].as_str(),
        Some(leader_admin.as_str()),
        "{leaders:?}"
    );
    let agree = prometheus.wait_for(
        &format!("tally_raft_leader_id == {leader}"),
        Duration::from_secs(15),
        |result| result.len() == 3,
    );
    assert_eq!(agree.len(), 3);
    cluster.shutdown(Duration::from_secs(10)).expect("stopped");
}

/// Proves the CLI adds a fourth node to a loaded 3-node cluster (learner, caught up, voter)
/// and removes it again, while the load's every acknowledged event survives: the load's
/// history checks (C1, C3–C6, C8 of docs/faults.md) pass on the three remaining replicas.
#[test]
fn add_and_remove_a_fourth_node_under_load() {
    let _one = one_at_a_time();
    let root = tempfile::tempdir().expect("tempdir");
    let mut cluster = three_nodes(root.path(), &runtime());
    let ids = [1, 2, 3];
    let mut load = common::start_load(&cluster, &ids, 14, true);
    // Node 4 must later catch up with a ledger that has something in it: wait until the load
    // has written (with a deadline, and its own output if it ended first) instead of hoping a
    // fixed pause was long enough on a busy host.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = admin_status(&cluster, 1);
        let written = status["members"]
            .as_array()
            .is_some_and(|members| members.iter().any(|m| m["accounts"].as_u64() > Some(0)));
        if written {
            break;
        }
        if load.try_wait().expect("loadgen status").is_some() || Instant::now() > deadline {
            let _ = load.kill();
            panic!(
                "the load wrote nothing within 30 s:\n{}",
                common::finish_load(load)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    cluster
        .add(4, &std::collections::BTreeMap::new())
        .expect("node 4 configured");
    cluster.start(4).expect("node 4 starts");
    let addr4 = cluster.addr(4).expect("node 4");
    let peer4 = cluster.peer_addr(4).expect("node 4");
    // Sent to a follower on purpose: the CLI finds the leader itself.
    let status = admin_status(&cluster, 1);
    let leader = status["leader"].as_u64().expect("a leader");
    let follower = ids
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    let added = admin(&cluster, follower, &["add-node", "4", &addr4, &peer4]);
    assert_ok(&added, "tally admin add-node");
    // Node 4 is a voter at once; it has the ledger once it has applied what it was sent,
    // which its own state shows a moment later (wait for that, with a deadline).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = admin_status(&cluster, leader);
        let members = status["members"].as_array().expect("members");
        assert_eq!(members.len(), 4, "{status:#}");
        let four = members
            .iter()
            .find(|member| member["id"] == 4)
            .expect("node 4 listed");
        assert_eq!(four["voter"], true, "{status:#}");
        if four["reachable"] == true && four["accounts"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 4 did not catch up with the ledger: {status:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_ready(&cluster, &[4], Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));

    let removed = admin(&cluster, 4, &["remove-node", "4"]);
    assert_ok(&removed, "tally admin remove-node");
    // Node 1 (a follower, or the leader) lists the members it has applied: the removal is
    // committed, and applied there a moment later under load.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = admin_status(&cluster, 1);
        let members: Vec<u64> = status["members"]
            .as_array()
            .expect("members")
            .iter()
            .filter_map(|member| member["id"].as_u64())
            .collect();
        if members == [1, 2, 3] {
            break;
        }
        assert!(Instant::now() < deadline, "{status:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The removed node stops calling itself ready (it hears from no leader any more).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = cluster.admin_get(4, "/ready").expect("node 4 answers");
        if status == 503 {
            assert!(body.starts_with("not ready: "), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "removed node 4 still ready: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let again = admin(&cluster, 1, &["remove-node", "4"]);
    assert!(!again.status.success(), "removing a non-member must fail");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not a member"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    common::assert_checks_pass(&common::finish_load(load));
    let _ = cluster.kill(4);
    cluster.shutdown(Duration::from_secs(10)).expect("stopped");
}

/// Proves a whole cluster comes back from a snapshot file alone: after load, `tally admin
/// snapshot` on the leader, a copy of its newest snapshot file, all nodes stopped and their
/// data directories wiped, `tally restore` of each node from the copy (refused into a
/// non-empty directory), and a restart, the three nodes elect a leader in a later term, agree
/// on the state digest and record counts the cluster had at the snapshot, and take new writes.
#[test]
fn restore_a_whole_cluster_from_a_snapshot_file() {
    let _one = one_at_a_time();
    let root = tempfile::tempdir().expect("tempdir");
    let runtime = runtime();
    let mut cluster = three_nodes(root.path(), &runtime);
    let ids = [1, 2, 3];
    common::finish_load(common::start_load(&cluster, &ids, 3, false));
    let status = admin_status(&cluster, 1);
    let leader = status["leader"].as_u64().expect("a leader");
    let leader_state = |status: &serde_json::Value| {
        status["members"]
            .as_array()
            .expect("members")
            .iter()
            .find(|member| member["id"].as_u64() == Some(leader))
            .cloned()
            .expect("the leader listed")
    };
    let before = leader_state(&status);
    let applied = before["applied_index"].as_u64().expect("applied");
    assert_ok(
        &admin(&cluster, leader, &["snapshot"]),
        "tally admin snapshot",
    );
    // The snapshot is built in the background: wait for the file that covers `applied`.
    let snapshots = cluster.nodes[&leader].dir.join("data/snapshots");
    let deadline = Instant::now() + Duration::from_secs(30);
    let newest = loop {
        let mut names: Vec<String> = std::fs::read_dir(&snapshots)
            .expect("snapshots dir")
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.ends_with(".snap"))
            .collect();
        names.sort();
        let covered = names.last().and_then(|name| {
            let index: u64 = name.strip_prefix("snapshot-")?.get(..20)?.parse().ok()?;
            (index >= applied).then(|| name.clone())
        });
        if let Some(name) = covered {
            break name;
        }
        assert!(
            Instant::now() < deadline,
            "no snapshot at {applied}: {names:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let backup_dir = root.path().join("backup");
    std::fs::create_dir_all(&backup_dir).expect("backup dir");
    let backup = backup_dir.join(&newest);
    std::fs::copy(snapshots.join(&newest), &backup).expect("backed up");
    // A split snapshot's section files go with it, beside it (docs/operations.md, "Back up").
    let sections = snapshots.join("sections");
    std::fs::create_dir_all(backup_dir.join("sections")).expect("sections dir");
    for entry in std::fs::read_dir(&sections).into_iter().flatten() {
        let entry = entry.expect("entry");
        std::fs::copy(
            entry.path(),
            backup_dir.join("sections").join(entry.file_name()),
        )
        .expect("section backed up");
    }
    let status = admin_status(&cluster, leader);
    let at_snapshot = leader_state(&status);

    // Disaster: every node gone with its data.
    assert!(cluster
        .shutdown(Duration::from_secs(10))
        .expect("stopped")
        .is_empty());
    for id in ids {
        std::fs::remove_dir_all(cluster.nodes[&id].dir.join("data")).expect("wiped");
    }
    for id in ids {
        let output = Command::new(tally())
            .args(["restore", "--config"])
            .arg(cluster.nodes[&id].config_path())
            .arg("--snapshot")
            .arg(&backup)
            .output()
            .expect("tally restore runs");
        assert_ok(&output, "tally restore");
        assert!(String::from_utf8_lossy(&output.stdout).contains(&format!("node {id} restored")));
    }
    let again = Command::new(tally())
        .args(["restore", "--config"])
        .arg(cluster.nodes[&1].config_path())
        .arg("--snapshot")
        .arg(&backup)
        .output()
        .expect("tally restore runs");
    assert!(
        !again.status.success(),
        "restoring into a used directory must fail"
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    for id in ids {
        cluster.start(id).expect("restarted");
    }
    let new_leader = runtime
        .block_on(cluster.wait_leader(Duration::from_secs(30)))
        .expect("a leader after the restore");
    wait_ready(&cluster, &ids, Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let status = admin_status(&cluster, new_leader);
        if status["replicas_agree"] == true {
            break status;
        }
        assert!(Instant::now() < deadline, "replicas disagree: {status:#}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        status["term"].as_u64() > before["term"].as_u64(),
        "elections continue after the snapshot's term: {status:#}"
    );
    for member in status["members"].as_array().expect("members") {
        for field in ["digest", "accounts", "transfers", "trades"] {
            assert_eq!(member[field], at_snapshot[field], "{field}: {status:#}");
        }
        assert!(
            member["applied_index"].as_u64() > Some(applied),
            "{status:#}"
        );
    }

    // And it takes new writes.
    let client = runtime
        .block_on(tally_client::Client::connect(
            tally_client::ClientConfig::new(
                cluster.addrs(),
                cluster.cluster_id(),
                cluster.operator_credential().to_vec(),
            )
            .with_tls(cluster.client_tls().expect("the local CA")),
        ))
        .expect("registered");
    let accounts: Vec<u8> = [1u128 << 100, (1u128 << 100) + 1]
        .iter()
        .flat_map(|id| {
            tally_engine::records::Account {
                id: *id,
                ledger: 1,
                code: 1,
                ..Default::default()
            }
            .encode()
        })
        .collect();
    let answer = runtime
        .block_on(client.create_raw(
            tally_engine::Operation::CreateAccounts,
            bytes::Bytes::from(accounts),
        ))
        .expect("accounts created after the restore");
    assert!(answer.failures.is_empty(), "{:?}", answer.failures);
    cluster.shutdown(Duration::from_secs(10)).expect("stopped");
}
