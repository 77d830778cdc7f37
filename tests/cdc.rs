//! `tally cdc` against a real RabbitMQ (Debian's package, which `.ci/run` installs with
//! `deploy/local/install-rabbitmq.sh` before the tests): a private broker started here, a node
//! under load, the cdc process killed -9 and restarted, the broker killed -9 and restarted on
//! its data; then the queue read whole and held against the events the load got acknowledged.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use lapin::options::{BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use tally::local_cluster::{http_get, metric_value, LocalCluster};
use tally_client::{Client, ClientConfig};
use tally_engine::records::{Account, Transfer};
use tally_engine::QueryFilter;

mod common;

const QUEUE: &str = "tally.feed.test";
const ACCOUNTS: u128 = 100;
const BATCHES: u64 = 200;
const BATCH: u64 = 1_000;
/// Between two batches of the load: 200 batches over ~8 s, so the faults land mid-load.
const BATCH_EVERY: Duration = Duration::from_millis(40);

/// A loopback port nobody listens on, below the ephemeral range (which outgoing connections
/// take from), not handed out before by this process.
fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<BTreeSet<u16>> = std::sync::Mutex::new(BTreeSet::new());
    let below = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..256 {
        let port = rand::random_range(10_000..below.max(10_001));
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() && handed_out.insert(port) {
            return port;
        }
    }
    panic!("no free loopback port in 256 tries");
}

/// The broker's own start script. Tests install nothing: a missing broker fails here with the
/// command that installs it. Debian's `/usr/sbin/rabbitmq-server` is a wrapper that switches to
/// the `rabbitmq` user (dropping this environment); the script beside its target runs as us.
fn rabbitmq_server() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("rabbitmq-server"))
        .find(|path| path.is_file());
    let Some(server) = on_path else {
        panic!(
            "rabbitmq-server is not installed: install it with `bash \
             deploy/local/install-rabbitmq.sh` (`.ci/run` does this before the tests)"
        );
    };
    let real = std::fs::canonicalize(&server).expect("rabbitmq-server resolves");
    match real.file_name().and_then(|name| name.to_str()) {
        Some("rabbitmq-script-wrapper") => real.with_file_name("rabbitmq-server"),
        _ => server,
    }
}

/// A private RabbitMQ node: its own name, ports, epmd, data, logs, config and cookie under
/// `dir`. Killed (the whole process group, and its epmd) when dropped, also on a panic.
struct Broker {
    dir: PathBuf,
    server: PathBuf,
    port: u16,
    env: Vec<(String, String)>,
    child: Option<Child>,
    epmd_port: u16,
}

impl Broker {
    fn new(dir: &Path) -> Broker {
        std::fs::create_dir_all(dir).expect("broker dir");
        std::fs::write(dir.join("enabled_plugins"), "[].\n").expect("plugins file");
        std::fs::write(dir.join("rabbitmq.conf"), "").expect("config file");
        std::fs::write(dir.join("rabbitmq-env.conf"), "").expect("env file");
        let (port, dist_port, epmd_port) = (free_port(), free_port(), free_port());
        let at = |name: &str| dir.join(name).display().to_string();
        let env = vec![
            ("HOME".to_owned(), dir.display().to_string()),
            (
                "RABBITMQ_NODENAME".to_owned(),
                format!("tally-cdc-{}-{port}@localhost", std::process::id()),
            ),
            (
                "RABBITMQ_NODE_IP_ADDRESS".to_owned(),
                "127.0.0.1".to_owned(),
            ),
            ("RABBITMQ_NODE_PORT".to_owned(), port.to_string()),
            ("RABBITMQ_DIST_PORT".to_owned(), dist_port.to_string()),
            ("ERL_EPMD_PORT".to_owned(), epmd_port.to_string()),
            ("RABBITMQ_MNESIA_BASE".to_owned(), at("mnesia")),
            ("RABBITMQ_LOG_BASE".to_owned(), at("log")),
            ("RABBITMQ_CONFIG_FILE".to_owned(), at("rabbitmq.conf")),
            (
                "RABBITMQ_ENABLED_PLUGINS_FILE".to_owned(),
                at("enabled_plugins"),
            ),
            ("RABBITMQ_CONF_ENV_FILE".to_owned(), at("rabbitmq-env.conf")),
        ];
        Broker {
            dir: dir.to_owned(),
            server: rabbitmq_server(),
            port,
            env,
            child: None,
            epmd_port,
        }
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Start the node (on the data it has, if any), in a process group of its own.
    fn start(&mut self) {
        use std::os::unix::process::CommandExt as _;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.out"))
            .expect("broker log");
        let child = Command::new(&self.server)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("rabbitmq-server starts");
        self.child = Some(child);
    }

    /// kill -9 the whole node (its start script, the Erlang VM and their helpers).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let group = i32::try_from(child.id()).expect("a pid");
            // SAFETY: kill(2) with a negative pid signals that process group; no memory is
            // involved. The group is the broker's own (`process_group(0)` at spawn).
            unsafe { libc::kill(-group, libc::SIGKILL) };
            let _ = child.wait();
        }
    }

    /// Until the AMQP port accepts a lapin connection (60 s at most).
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(connection) = connect(&self.url()).await {
                let _ = connection.close(200, "ready").await;
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("the broker exited ({status}):\n{}", self.tail());
            }
            assert!(
                Instant::now() < deadline,
                "the broker did not accept AMQP within 60 s:\n{}",
                self.tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn tail(&self) -> String {
        let out = std::fs::read_to_string(self.dir.join("server.out")).unwrap_or_default();
        let lines: Vec<&str> = out.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        // The node's epmd (on a port of its own) is a daemon outside the group. It refuses
        // `-kill` while it still lists the node, which it drops once it sees the VM's
        // connection closed: asked again until it is gone (`-names` fails), 5 s at most.
        let epmd = |what: &str| {
            Command::new("epmd")
                .args(["-port", &self.epmd_port.to_string(), what])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        };
        for _ in 0..50 {
            epmd("-kill");
            if !epmd("-names") {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

async fn connect(url: &str) -> lapin::Result<Connection> {
    let properties = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio);
    Connection::connect(url, properties).await
}

/// A `tally cdc` process; killed -9 when dropped.
struct Cdc(Child);

impl Cdc {
    fn start(args: &[String], env: &[(String, String)], log: &Path) -> Cdc {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("cdc log");
        Cdc(Command::new(env!("CARGO_BIN_EXE_tally"))
            .arg("cdc")
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("tally cdc starts"))
    }
}

impl Drop for Cdc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A metric of `tally cdc --metrics` (None while it does not answer).
fn cdc_metric(addr: &str, series: &str) -> Option<f64> {
    let (status, body) = http_get(addr, "/metrics").ok()?;
    (status == 200).then(|| metric_value(&body, series))?
}

/// Every event the node holds (accounts created, transfers), by events pages: their
/// positions.
async fn stored_positions(client: &Client) -> BTreeSet<u64> {
    let filter = QueryFilter {
        limit: tally_engine::limits::STATEMENT_ENTRIES_MAX,
        ..QueryFilter::default()
    };
    let mut positions = BTreeSet::new();
    let mut current = filter;
    loop {
        let page = client.query_events(&current).await.expect("a page");
        positions.extend(page.items.iter().map(|e| e.timestamp));
        match page.next {
            Some(next) => current = filter.after(next),
            None => return positions,
        }
    }
}

/// Every message in the queue, consumed (it is left empty): their positions in queue order,
/// each message's `message_id`, `position` header and body checked to agree.
async fn read_queue(url: &str) -> Vec<u64> {
    let connection = connect(url).await.expect("the broker");
    let channel = connection.create_channel().await.expect("a channel");
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let count = channel
        .queue_declare(QUEUE, passive, FieldTable::default())
        .await
        .expect("the queue")
        .message_count();
    channel
        .basic_qos(5_000, BasicQosOptions::default())
        .await
        .expect("qos");
    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..BasicConsumeOptions::default()
    };
    let mut consumer = channel
        .basic_consume(QUEUE, "test", no_ack, FieldTable::default())
        .await
        .expect("consume");
    let mut positions = Vec::with_capacity(count as usize);
    while positions.len() < count as usize {
        let delivery = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .expect("a delivery within 30 s")
            .expect("the consumer goes on")
            .expect("a delivery");
        let properties = &delivery.properties;
        let id: u64 = properties
            .message_id()
            .as_ref()
            .expect("a message_id")
            .as_str()
            .parse()
            .expect("a decimal message_id");
        let header = properties
            .headers()
            .as_ref()
            .and_then(|headers| headers.inner().get("position").cloned());
        assert_eq!(header, Some(AMQPValue::LongLongInt(id as i64)));
        assert_eq!(*properties.delivery_mode(), Some(2), "persistent");
        let body: serde_json::Value = serde_json::from_slice(&delivery.data).expect("JSON");
        assert_eq!(body["position"].as_u64(), Some(id), "{body}");
        let kind = body["kind"].as_str().expect("a kind");
        assert!(kind == "transfer" || kind == "account", "{body}");
        positions.push(id);
    }
    let _ = connection.close(200, "read").await;
    positions
}

/// Proves the feed reaches RabbitMQ whole through faults: while a node takes 200,000
/// transfers in batches, `tally cdc` publishes them; it is killed -9 and restarted on its
/// state file, and the broker is killed -9 and restarted on its data. Once the load ends and
/// cdc has caught up (its metrics say so), the queue read whole holds every acknowledged
/// account's and transfer's position (and nothing else), each at least once, in increasing order once
/// repeats are dropped; every message's `message_id`, `position` header and body agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_reaches_rabbitmq_whole_through_kills_of_cdc_and_the_broker() {
    let began = Instant::now();
    let root = tempfile::tempdir().expect("tempdir");
    let mut broker = Broker::new(&root.path().join("broker"));
    broker.start();
    let mut cluster = LocalCluster::new(
        Path::new(env!("CARGO_BIN_EXE_tally")),
        &root.path().join("cluster"),
        common::FAST_RAFT,
    );
    cluster.found(&[1]).expect("started");
    cluster
        .wait_leader(common::LEADER_WAIT)
        .await
        .expect("a leader");
    let credential = String::from_utf8(cluster.operator_credential().to_vec()).expect("utf-8");
    let config = ClientConfig::new(
        cluster.addrs(),
        cluster.cluster_id(),
        credential.clone().into(),
    )
    .with_tls(cluster.client_tls().expect("the local CA"));
    let client = Client::connect(config).await.expect("connects");
    let accounts: Vec<Account> = (1..=ACCOUNTS)
        .map(|id| Account {
            id,
            ledger: 1,
            code: 1,
            ..Account::default()
        })
        .collect();
    assert!(client
        .create_accounts(&accounts)
        .await
        .expect("accounts")
        .is_empty());
    broker.wait_ready().await;
    eprintln!("broker and node up after {:?}", began.elapsed());

    let mut env = cluster.client_env();
    env.push(("TALLY_CREDENTIAL".to_owned(), credential));
    env.push(("TALLY_CLUSTER".to_owned(), cluster.addr(1).expect("addr")));
    let metrics = format!("127.0.0.1:{}", free_port());
    let cdc_log = root.path().join("cdc.log");
    let args: Vec<String> = [
        "--amqp",
        &broker.url(),
        "--queue",
        QUEUE,
        "--state",
        &root.path().join("cdc.state").display().to_string(),
        "--metrics",
        &metrics,
        "--poll-ms",
        "20",
    ]
    .map(str::to_owned)
    .to_vec();
    let mut cdc = Cdc::start(&args, &env, &cdc_log);

    // The load: batches of transfers, every one acknowledged (no failures), at a steady pace.
    let done = Arc::new(AtomicU64::new(0));
    let load = {
        let client = client.clone();
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for batch in 0..BATCHES {
                let transfers: Vec<Transfer> = (0..BATCH)
                    .map(|i| {
                        let n = u128::from(batch * BATCH + i);
                        Transfer {
                            id: 1_000_000 + n,
                            debit_account_id: n % ACCOUNTS + 1,
                            credit_account_id: (n + 1 + n / ACCOUNTS % 7) % ACCOUNTS + 1,
                            amount: 1 + n % 100,
                            ledger: 1,
                            code: 1,
                            ..Transfer::default()
                        }
                    })
                    .collect();
                let failed = client.create_transfers(&transfers).await.expect("a batch");
                assert!(failed.is_empty(), "{failed:?}");
                ids.extend(transfers.iter().map(|t| t.id));
                done.store(batch + 1, Ordering::SeqCst);
                tokio::time::sleep(BATCH_EVERY).await;
            }
            ids
        })
    };
    let reach = async |batches: u64| {
        while done.load(Ordering::SeqCst) < batches {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };

    // A third in: cdc killed -9 and started again on the same state file.
    reach(BATCHES / 3).await;
    drop(cdc);
    eprintln!("cdc killed -9 at batch {}", done.load(Ordering::SeqCst));
    cdc = Cdc::start(&args, &env, &cdc_log);
    // Two thirds in: the broker killed -9, then started again on its data.
    reach(2 * BATCHES / 3).await;
    broker.kill();
    eprintln!("broker killed -9 at batch {}", done.load(Ordering::SeqCst));
    tokio::time::sleep(Duration::from_millis(500)).await;
    broker.start();
    broker.wait_ready().await;
    eprintln!("broker back after {:?}", began.elapsed());

    let ids = load.await.expect("the load");
    eprintln!("load done after {:?}", began.elapsed());
    // What was acknowledged (the accounts, then the load's transfers), read back from the
    // node: their positions.
    let mut acknowledged: BTreeSet<u64> = client
        .lookup_accounts(&accounts.iter().map(|a| a.id).collect::<Vec<_>>())
        .await
        .expect("lookup")
        .iter()
        .map(|a| a.timestamp)
        .collect();
    assert_eq!(acknowledged.len(), accounts.len());
    for chunk in ids.chunks(8_000) {
        let found = client.lookup_transfers(chunk).await.expect("lookup");
        assert_eq!(
            found.len(),
            chunk.len(),
            "every acknowledged transfer is stored"
        );
        acknowledged.extend(found.iter().map(|t| t.timestamp));
    }
    assert_eq!(acknowledged.len(), accounts.len() + ids.len());
    assert_eq!(
        stored_positions(&client).await,
        acknowledged,
        "the node holds exactly the acknowledged accounts and transfers"
    );
    let last = *acknowledged.last().expect("some");

    // cdc catches up: its checkpoint passes the last transfer, its lag falls to 0.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let confirmed = cdc_metric(&metrics, "tally_cdc_confirmed_position");
        if confirmed.is_some_and(|c| c >= last as f64) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cdc did not catch up within 60 s (confirmed {confirmed:?}, last {last}):\n{}",
            std::fs::read_to_string(&cdc_log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("cdc caught up after {:?}", began.elapsed());
    let reconnects = cdc_metric(&metrics, "tally_cdc_reconnects_total").expect("reconnects");
    assert!(reconnects >= 1.0, "the broker's restart is a reconnect");
    assert!(cdc_metric(&metrics, "tally_cdc_published_total").expect("published") > 0.0);
    assert_eq!(cdc_metric(&metrics, "tally_cdc_lag_seconds"), Some(0.0));
    drop(cdc);
    // The checkpoint covers it all: a run to the end publishes nothing new and exits 0.
    let mut again = vec!["cdc", "--until-caught-up"];
    again.extend(args[..6].iter().map(String::as_str));
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (code, _, stderr) = common::tally_cli(&again, &env_refs);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("(0 messages published"), "{stderr}");

    // The queue read whole.
    let positions = read_queue(&broker.url()).await;
    let distinct: BTreeSet<u64> = positions.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        acknowledged.len(),
        "distinct positions in the queue vs acknowledged events (missing: {:?}, extra: {:?})",
        acknowledged
            .difference(&distinct)
            .take(5)
            .collect::<Vec<_>>(),
        distinct
            .difference(&acknowledged)
            .take(5)
            .collect::<Vec<_>>()
    );
    assert!(
        distinct == acknowledged,
        "the queue holds exactly the acknowledged accounts and transfers"
    );
    let mut seen = BTreeSet::new();
    let mut newest = 0;
    for &position in &positions {
        if seen.insert(position) {
            assert!(position > newest, "{position} after {newest}: out of order");
            newest = position;
        }
    }
    let log = std::fs::read_to_string(&cdc_log).unwrap_or_default();
    let failures: Vec<&str> = log.lines().filter(|l| l.contains("failed at")).collect();
    eprintln!(
        "cdc's failed sessions, one line each:\n{}",
        failures.join("\n")
    );
    assert!(
        failures.len() as f64 >= reconnects,
        "one log line per failed session"
    );
    let duplicates = positions.len() - distinct.len();
    eprintln!(
        "{} messages, {} distinct positions, {duplicates} duplicates; {reconnects} reconnects; \
         {:?} in all",
        positions.len(),
        distinct.len(),
        began.elapsed()
    );

    // Resuming starts exactly one past the checkpoint: with the queue now empty and the state
    // file set to a position inside a batch, a run to the end publishes exactly the
    // acknowledged events after it, the first being the very next position.
    let sorted: Vec<u64> = acknowledged.iter().copied().collect();
    let middle = sorted.len() / 2 + 17;
    let resume_at = sorted[middle];
    assert_eq!(
        sorted[middle + 1],
        resume_at + 1,
        "the checkpoint sits inside a batch"
    );
    std::fs::write(root.path().join("cdc.state"), format!("{resume_at}\n")).expect("state");
    let (code, _, stderr) = common::tally_cli(&again, &env_refs);
    assert_eq!(code, 0, "{stderr}");
    let resumed = read_queue(&broker.url()).await;
    assert_eq!(
        resumed.first(),
        Some(&(resume_at + 1)),
        "the first message after a checkpoint at {resume_at}"
    );
    assert!(
        resumed == sorted[middle + 1..],
        "after the checkpoint at {resume_at}: {} messages, {} acknowledged events",
        resumed.len(),
        sorted.len() - middle - 1
    );
}

/// Bad flags are refused before connecting anywhere, with exit 2 and the reason: a TLS broker
/// URL (not built in), another scheme, --from beside a state file that says where to resume,
/// and a state file that holds no position.
#[test]
fn bad_flags_exit_2_before_connecting() {
    let root = tempfile::tempdir().expect("tempdir");
    let state = root.path().join("cdc.state");
    let state = state.to_str().expect("utf-8");
    let base = [
        "cdc",
        "--cluster",
        "127.0.0.1:1",
        "--credential",
        "a-credential-of-enough-bytes-0123",
        "--insecure-plaintext",
        "--state",
        state,
    ];
    let refused = |extra: &[&str], says: &str| {
        let args = [&base[..], extra].concat();
        let (code, _, stderr) = common::tally_cli::<&str>(&args, &[]);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    };
    refused(
        &["--amqp", "amqps://broker/%2f"],
        "amqps:// is not supported",
    );
    refused(&["--amqp", "http://broker/"], "--amqp");
    refused(&["--queue", ""], "--queue must name a queue");
    refused(&["--window", "0"], "--window");
    std::fs::write(state, "17\n").expect("state");
    refused(&["--from", "5"], "the file says where to resume");
    std::fs::write(state, "seventeen\n").expect("state");
    refused(&[], "does not hold a position");
}
