//! A cluster of real `tally node` processes on loopback, each with its own config file, data
//! directory and log file under one directory. Used by the multi-process tests, by
//! `tally loadgen --spawn N` and `tally demo`.
//!
//! The cluster runs as a deployment does: TLS on both listeners, under a cluster CA made in
//! `<root>/pki` (`LocalCluster::client_tls` trusts it), unless a test asks for plain TCP
//! ([`LocalCluster::plaintext`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use tally_client::protocol::NodeState;
use tally_client::Client;
use tally_client::ClientTls;
use tally_raft::net::tls::pki;
use tally_raft::net::TlsFiles;

use crate::cluster_admin::Operator;
use tally_raft::replication::types::Node as Member;

/// One node of the cluster: its address and, while it runs, its process.
#[derive(Debug)]
pub struct LocalNode {
    pub id: u64,
    /// The client listener.
    pub addr: String,
    /// The peer listener (replicas only).
    pub peer_addr: String,
    /// The admin HTTP address: `/metrics`, `/health`, `/ready`.
    pub admin_addr: String,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl LocalNode {
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("node.toml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("node.log")
    }

    /// Started here and not killed or stopped since (it may have exited on its own: see
    /// [`LocalNode::exited`]).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// How the process ended, if it has ended on its own (a node that refuses to start).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The process's peak resident set size so far (VmHWM in /proc), while it runs.
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }
}

/// A plain HTTP/1.0 GET on `addr` (the admin port, Prometheus): (status code, body).
pub fn http_get(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let Some((head, body)) = response.split_once("\r\n\r\n") else {
        bail!("{addr}{path}: no end of the header in {response:?}");
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("{addr}{path}: bad status line in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// The value of one series (`name` or `name{labels}`, exactly as exposed) in a Prometheus text
/// exposition.
pub fn metric_value(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// Nodes as child processes of this one; they are killed when this is dropped.
pub struct LocalCluster {
    exe: PathBuf,
    root: PathBuf,
    extra_config: String,
    /// The cluster CA's directory (`ca.pem`, node certificates), `None` for plain TCP.
    pki: Option<PathBuf>,
    /// The operator secret every node's config knows (by its hash), for state and
    /// administration; `None` for a cluster configured without any credential.
    operator: Option<String>,
    /// The cluster id of the nodes' gateway: `gateway.cluster_id` of `extra_config`, else 1.
    cluster_id: u128,
    /// Per node, the peers it dials at another address (its config's `[dial]`).
    dial: BTreeMap<u64, BTreeMap<u64, String>>,
    /// Per node, the command its `tally node` runs under (see [`LocalCluster::launch_through`]).
    launchers: BTreeMap<u64, Vec<String>>,
    /// The verifier key of the cluster's checkpoint key, when the nodes have one
    /// ([`LocalCluster::with_log_key`]).
    log_key: Option<String>,
    pub nodes: BTreeMap<u64, LocalNode>,
}

/// A loopback address with a port nobody listens on right now, not handed out before by this
/// process, and below the kernel's range of ephemeral ports where it can: a port from that
/// range may be taken, between this pick and the node's bind, as the source port of another
/// connection, or make a connection to it connect to itself.
fn free_addr() -> anyhow::Result<String> {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let below = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    for _ in 0..256 {
        let listener = if below > 11_000 {
            TcpListener::bind(("127.0.0.1", rand::random_range(10_000..below)))
        } else {
            TcpListener::bind("127.0.0.1:0")
        };
        if let Ok(listener) = listener {
            let addr = listener.local_addr()?;
            if handed_out.insert(addr.port()) {
                return Ok(addr.to_string());
            }
        }
    }
    anyhow::bail!("no free loopback port found in 256 tries")
}

impl LocalCluster {
    /// A cluster of the `tally` binary `exe` under `root`. `extra_config` is appended to every
    /// node's config file (e.g. `[raft]` settings for a test).
    pub fn new(exe: &Path, root: &Path, extra_config: &str) -> LocalCluster {
        let cluster_id = toml::from_str::<toml::Table>(extra_config)
            .ok()
            .and_then(|table| {
                let id = table
                    .get("gateway")?
                    .get("cluster_id")?
                    .as_str()?
                    .to_owned();
                crate::config::parse_u128(&id).ok()
            })
            .unwrap_or(1);
        LocalCluster {
            cluster_id,
            exe: exe.to_owned(),
            root: root.to_owned(),
            extra_config: extra_config.to_owned(),
            pki: Some(root.join("pki")),
            operator: Some(format!("local-operator-{:032x}", rand::random::<u128>())),
            dial: BTreeMap::new(),
            launchers: BTreeMap::new(),
            log_key: None,
            nodes: BTreeMap::new(),
        }
    }

    /// Give every node the same checkpoint key, made here (`cluster.key` in the root, named
    /// `tally/cluster-<cluster id>`), so the leader signs checkpoints of the verifiable log.
    pub fn with_log_key(mut self) -> anyhow::Result<LocalCluster> {
        let name = format!("tally/cluster-{:#x}", self.cluster_id);
        let signer = tally_engine::checkpoint::NoteSigner::new(&name, &rand::random())?;
        std::fs::create_dir_all(&self.root)?;
        let path = self.root.join("cluster.key");
        std::fs::write(&path, signer.private_key())?;
        self.extra_config.push_str(&format!(
            "\n[verifiable]\nkey_file = \"{}\"\n",
            path.display()
        ));
        self.log_key = Some(signer.verifier_key());
        Ok(self)
    }

    /// The cluster's verifier key, if its nodes sign checkpoints.
    pub fn log_key(&self) -> Option<&str> {
        self.log_key.as_deref()
    }

    /// Run the nodes without TLS (`insecure_plaintext = true`), for comparisons.
    pub fn plaintext(mut self) -> LocalCluster {
        self.pki = None;
        self
    }

    /// Whether the nodes serve TLS.
    pub fn is_tls(&self) -> bool {
        self.pki.is_some()
    }

    /// The directory of the cluster CA and the nodes' certificates, if TLS is on.
    pub fn pki_dir(&self) -> Option<&Path> {
        self.pki.as_deref()
    }

    /// What a client needs to reach this cluster's nodes: the CA (`None` for plain TCP).
    pub fn client_tls(&self) -> anyhow::Result<Option<ClientTls>> {
        self.pki
            .as_ref()
            .map(|pki| ClientTls::new(&pki.join("ca.pem"), None).context("the local CA"))
            .transpose()
    }

    /// The environment a `tally` client or admin command needs to reach this cluster: its
    /// cluster id in `TALLY_CLUSTER_ID`, and the CA in `TALLY_CA` (without it, plain TCP: then
    /// the command needs `--insecure-plaintext`).
    pub fn client_env(&self) -> Vec<(String, String)> {
        let mut env = vec![(
            "TALLY_CLUSTER_ID".to_owned(),
            format!("{:#x}", self.cluster_id),
        )];
        env.extend(self.pki.iter().map(|pki| {
            (
                "TALLY_CA".to_owned(),
                pki.join("ca.pem").display().to_string(),
            )
        }));
        env
    }

    /// The local CA, made on first use.
    fn certificate(&self, id: u64) -> anyhow::Result<Option<TlsFiles>> {
        let Some(pki) = &self.pki else {
            return Ok(None);
        };
        if !pki.join("ca.key").exists() {
            pki::make_ca(pki, "local")?;
        }
        let hosts = ["localhost".to_owned(), "127.0.0.1".to_owned()];
        Ok(Some(pki::make_node(pki, id, &hosts)?))
    }

    /// Configure the nodes without the local operator credential (then `states` and
    /// `wait_leader` cannot ask the nodes anything).
    pub fn without_operator(mut self) -> LocalCluster {
        self.operator = None;
        self
    }

    /// The operator secret of this cluster's nodes (a gateway credential, role operator).
    pub fn operator_credential(&self) -> &[u8] {
        self.operator.as_deref().unwrap_or_default().as_bytes()
    }

    /// The cluster's id, as its nodes' gateway knows it.
    pub fn cluster_id(&self) -> u128 {
        self.cluster_id
    }

    /// This cluster's operator (its id, credential and CA).
    pub fn operator(&self) -> anyhow::Result<Operator> {
        Ok(Operator {
            cluster_id: self.cluster_id,
            credential: self.operator_credential().to_vec(),
            tls: self.client_tls()?,
        })
    }

    /// An operator's client of node `id` alone (reads: what it has applied).
    pub async fn operator_client(&self, id: u64) -> anyhow::Result<Client> {
        Ok(self
            .operator()?
            .node(&self.addr(id)?, Duration::from_secs(30))
            .await?)
    }

    /// Add node `id` with a fresh address and directory, and write its config (bootstrapping
    /// `bootstrap` if not empty). Not started.
    pub fn add(&mut self, id: u64, bootstrap: &BTreeMap<u64, Member>) -> anyhow::Result<()> {
        let dir = self.root.join(format!("node-{id}"));
        std::fs::create_dir_all(&dir)?;
        let (addr, peer_addr, admin_addr) = match self.nodes.get(&id) {
            Some(node) => (
                node.addr.clone(),
                node.peer_addr.clone(),
                node.admin_addr.clone(),
            ),
            None => (free_addr()?, free_addr()?, free_addr()?),
        };
        let mut config = format!(
            "id = {id}\nlisten = \"{addr}\"\npeer_listen = \"{peer_addr}\"\n\
             admin_listen = \"{admin_addr}\"\ndata_dir = \"{}\"\n",
            dir.join("data").display()
        );
        match self.certificate(id)? {
            Some(files) => config.push_str(&format!(
                "[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
                files.ca.display(),
                files.cert.display(),
                files.key.display()
            )),
            None => config.push_str("insecure_plaintext = true\n"),
        }
        config.push_str(&self.extra_config);
        if let Some(secret) = &self.operator {
            if !self.extra_config.contains("[gateway]") {
                config.push_str("\n[gateway]\ncluster_id = \"0x1\"\n");
            }
            config.push_str(&format!(
                "\n[[gateway.credentials]]\nname = \"local-operator\"\nhash = \"{}\"\n\
                 role = \"operator\"\n",
                blake3::hash(secret.as_bytes()).to_hex()
            ));
        }
        if let Some(dial) = self.dial.get(&id).filter(|dial| !dial.is_empty()) {
            config.push_str("\n[dial]\n");
            for (peer, address) in dial {
                config.push_str(&format!("{peer} = \"{address}\"\n"));
            }
        }
        if !bootstrap.is_empty() {
            config.push_str("\n[bootstrap]\n");
            for (member, addrs) in bootstrap {
                config.push_str(&format!(
                    "{member} = {{ client = \"{}\", peer = \"{}\" }}\n",
                    addrs.client_addr, addrs.peer_addr
                ));
            }
        }
        std::fs::write(dir.join("node.toml"), config)?;
        self.nodes.insert(
            id,
            LocalNode {
                id,
                addr,
                peer_addr,
                admin_addr,
                dir,
                child: None,
            },
        );
        Ok(())
    }

    /// Add the founding nodes `ids`, each configured to bootstrap the same voters, and start
    /// them (nodes already [`planned`](LocalCluster::plan) keep their addresses).
    pub fn found(&mut self, ids: &[u64]) -> anyhow::Result<()> {
        self.plan(ids)?;
        for id in ids {
            self.start(*id)?;
        }
        Ok(())
    }

    /// Give the founding nodes `ids` their addresses and configs (each bootstrapping the same
    /// voters) without starting them, so a test can place something between them first.
    pub fn plan(&mut self, ids: &[u64]) -> anyhow::Result<()> {
        let mut members = BTreeMap::new();
        for id in ids {
            if !self.nodes.contains_key(id) {
                let node = LocalNode {
                    id: *id,
                    addr: free_addr()?,
                    peer_addr: free_addr()?,
                    admin_addr: free_addr()?,
                    dir: self.root.join(format!("node-{id}")),
                    child: None,
                };
                self.nodes.insert(*id, node);
            }
            let node = &self.nodes[id];
            members.insert(*id, Member::new(node.addr.clone(), node.peer_addr.clone()));
        }
        for id in ids {
            self.add(*id, &members)?;
        }
        Ok(())
    }

    /// Node `from` dials node `to` at `address` instead of `to`'s peer address (its config's
    /// `[dial]`), from its next (re)configuration by [`add`](LocalCluster::add),
    /// [`plan`](LocalCluster::plan) or [`found`](LocalCluster::found).
    pub fn dial(&mut self, from: u64, to: u64, address: &str) {
        self.dial
            .entry(from)
            .or_default()
            .insert(to, address.to_owned());
    }

    pub fn addr(&self, id: u64) -> anyhow::Result<String> {
        Ok(self.nodes.get(&id).context("no such node")?.addr.clone())
    }

    /// Node `id`'s addresses, as the membership knows them.
    pub fn member(&self, id: u64) -> anyhow::Result<tally_client::protocol::Member> {
        let node = self.nodes.get(&id).context("no such node")?;
        Ok(tally_client::protocol::Member::new(
            node.addr.clone(),
            node.peer_addr.clone(),
        ))
    }

    /// Node `id`'s peer listener.
    pub fn peer_addr(&self, id: u64) -> anyhow::Result<String> {
        Ok(self
            .nodes
            .get(&id)
            .context("no such node")?
            .peer_addr
            .clone())
    }

    /// Node `id`'s admin HTTP address (`/metrics`, `/health`, `/ready`).
    pub fn admin_addr(&self, id: u64) -> anyhow::Result<String> {
        Ok(self
            .nodes
            .get(&id)
            .context("no such node")?
            .admin_addr
            .clone())
    }

    /// `GET path` on node `id`'s admin HTTP port: (status code, body).
    pub fn admin_get(&self, id: u64, path: &str) -> anyhow::Result<(u16, String)> {
        http_get(&self.admin_addr(id)?, path)
    }

    /// Every node's address.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.values().map(|node| node.addr.clone()).collect()
    }

    /// Start node `id`'s process (its log goes to `node.log` in its directory).
    pub fn start(&mut self, id: u64) -> anyhow::Result<()> {
        let exe = self.exe.clone();
        let node = self.nodes.get(&id).context("no such node")?;
        if node.child.is_some() {
            bail!("node {id} is already running");
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(node.log_path())?;
        let mut command = match self.launchers.get(&id).and_then(|l| l.split_first()) {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(exe);
                command
            }
            None => Command::new(exe),
        };
        let child = command
            .arg("node")
            .arg("--config")
            .arg(node.config_path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting a tally node")?;
        self.nodes.get_mut(&id).context("no such node")?.child = Some(child);
        Ok(())
    }

    /// Start node `id` as `launcher... tally node --config ...` from now on: the launcher
    /// `exec`s the node in the place a test prepared (`nsenter` into a namespace where the data
    /// directory is a small file system), so the process the cluster signals is the node.
    pub fn launch_through(&mut self, id: u64, launcher: Vec<String>) {
        self.launchers.insert(id, launcher);
    }

    fn signal(&mut self, id: u64, signal: libc::c_int) -> anyhow::Result<()> {
        let node = self.nodes.get_mut(&id).context("no such node")?;
        let Some(mut child) = node.child.take() else {
            bail!("node {id} is not running");
        };
        let pid = libc::pid_t::try_from(child.id()).context("pid")?;
        // SAFETY: kill(2) on our own child's pid; the child is not reaped yet, so the pid is
        // still ours.
        unsafe { libc::kill(pid, signal) };
        let status = child.wait()?;
        tracing::info!(node = id, ?status, "node stopped");
        Ok(())
    }

    /// kill -9: the process gets no chance to flush or say goodbye.
    pub fn kill(&mut self, id: u64) -> anyhow::Result<()> {
        self.signal(id, libc::SIGKILL)
    }

    /// SIGTERM, then wait for the graceful shutdown to finish.
    pub fn terminate(&mut self, id: u64) -> anyhow::Result<()> {
        self.signal(id, libc::SIGTERM)
    }

    /// SIGTERM every running node at once, wait up to `grace` for their graceful shutdowns,
    /// then SIGKILL whatever still runs; the ids of the nodes that had to be killed. (A leader
    /// whose last entries can no longer reach a quorum, because the others stopped first,
    /// waits for them without end: `Node::shutdown` has no bound of its own.)
    pub fn shutdown(&mut self, grace: Duration) -> anyhow::Result<Vec<u64>> {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        self.shutdown_nodes(&ids, grace)
    }

    /// [`LocalCluster::shutdown`] for the nodes `ids` only.
    pub fn shutdown_nodes(&mut self, ids: &[u64], grace: Duration) -> anyhow::Result<Vec<u64>> {
        let mut stopping = Vec::new();
        for node in self
            .nodes
            .values_mut()
            .filter(|node| ids.contains(&node.id))
        {
            if let Some(child) = node.child.take() {
                let pid = libc::pid_t::try_from(child.id()).context("pid")?;
                // SAFETY: kill(2) on our own child's pid; it is not reaped yet.
                unsafe { libc::kill(pid, libc::SIGTERM) };
                stopping.push((node.id, child));
            }
        }
        let deadline = std::time::Instant::now() + grace;
        let mut killed = Vec::new();
        for (id, mut child) in stopping {
            while child.try_wait()?.is_none() {
                if std::time::Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    killed.push(id);
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(killed)
    }

    /// Ask each running node for its state (`audit`: with digest and ledger totals); nodes
    /// that do not answer are left out.
    pub async fn states(&self, audit: bool) -> BTreeMap<u64, NodeState> {
        let mut states = BTreeMap::new();
        let Ok(operator) = self.operator() else {
            return states;
        };
        let wait = Duration::from_secs(5);
        for node in self.nodes.values().filter(|node| node.is_running()) {
            let asked = async {
                let client = operator.node(&node.addr, wait).await?;
                let state = client.node_state(audit).await;
                client.close().await;
                state
            };
            if let Ok(Ok(state)) = tokio::time::timeout(wait, asked).await {
                states.insert(node.id, state);
            }
        }
        states
    }

    /// Kill the leader `leader` with SIGKILL and wait `within` for another node to lead; its id.
    pub async fn fail_over(&mut self, leader: u64, within: Duration) -> anyhow::Result<u64> {
        self.kill(leader)?;
        let new_leader = self.wait_leader(within).await?;
        anyhow::ensure!(
            new_leader != leader,
            "node {leader} still leads after its kill"
        );
        Ok(new_leader)
    }

    /// Wait until a running node says it leads and a majority of the running nodes agree.
    pub async fn wait_leader(&self, within: Duration) -> anyhow::Result<u64> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let states = self.states(false).await;
            let leaders: Vec<u64> = states
                .values()
                .filter(|state| state.role == "Leader")
                .map(|state| state.node_id)
                .collect();
            if let [leader] = leaders[..] {
                let agree = states
                    .values()
                    .filter(|state| state.leader == Some(leader))
                    .count();
                if agree * 2 > states.len() {
                    return Ok(leader);
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("no leader within {within:?}: {states:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// How much of each node's log a failing test shows.
const LOG_TAIL_LINES: usize = 60;

/// Where a failing test keeps every node's whole log, when set (a soak's failure is rarely
/// explained by the last lines alone).
pub const KEEP_LOGS_ENV: &str = "TALLY_KEEP_LOGS";

impl Drop for LocalCluster {
    /// Stops every node; when the thread is panicking (a failed test), prints the end of each
    /// node's log first, since the logs go with the test's temporary directory, and copies the
    /// whole logs to `$TALLY_KEEP_LOGS/<pid>-<time>/node-<id>.log` if that is set.
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        let keep = std::env::var_os(KEEP_LOGS_ENV)
            .filter(|_| failing)
            .map(|dir| {
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| since.as_secs());
                std::path::PathBuf::from(dir).join(format!("{}-{stamp}", std::process::id()))
            });
        for (id, node) in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                // A node that died on its own says how: a signal 9 nobody sent is the kernel's
                // out-of-memory killer, and its log says nothing of it.
                if let Ok(Some(status)) = child.try_wait() {
                    eprintln!("--- node {id} had already exited: {status} ---");
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            if let Some(dir) = &keep {
                let kept = std::fs::create_dir_all(dir).and_then(|()| {
                    std::fs::copy(node.log_path(), dir.join(format!("node-{id}.log")))
                });
                match kept {
                    Ok(_) => eprintln!("--- node {id}: whole log kept in {} ---", dir.display()),
                    Err(error) => eprintln!(
                        "--- node {id}: log not kept in {}: {error} ---",
                        dir.display()
                    ),
                }
            }
            if failing {
                let log = std::fs::read_to_string(node.log_path()).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
                eprintln!("--- node {id}: last {} lines of its log ---", tail.len());
                for line in tail {
                    eprintln!("{line}");
                }
            }
        }
    }
}
