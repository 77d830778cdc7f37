//! `tally loadgen` and `tally demo`: the binary's half of the load generator (crate
//! `tally-loadgen`): flags, a local cluster when asked for one, the JSON report file, Ctrl-C.
//! The load generator itself never touches the disk; writing the report is done here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tally_client::ClientTls;
use tally_loadgen::check::{all_passed, render};
use tally_loadgen::run::{Limit, Pace, RunConfig, RunOutcome};
use tally_loadgen::{GatewayCluster, Mix, Skew, WorkloadConfig};

use crate::local_cluster::{metric_value, LocalCluster};

/// TigerBeetle's benchmark: 10,000 accounts, 10,000,000 transfers in batches of 8,189 from
/// one client, accounts drawn uniformly.
pub const TIGERBEETLE_ACCOUNTS: u64 = 10_000;
pub const TIGERBEETLE_TRANSFERS: u64 = 10_000_000;
pub const TIGERBEETLE_BATCH_EVENTS: usize = 8_189;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// TigerBeetle's benchmark (10,000 accounts, 10M transfers, batches of 8,189, 1 client,
    /// uniform); flags given explicitly still override it.
    Tigerbeetle,
}

/// The workload and pacing flags `loadgen` and `demo` share.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadFlags {
    /// Cash accounts to create (as many instrument accounts when trades are mixed in).
    #[arg(long)]
    pub accounts: Option<u64>,
    /// Events per batch (1..=8189).
    #[arg(long)]
    pub batch_events: Option<usize>,
    /// Closed loop: this many clients, each with one batch in flight.
    #[arg(long, conflicts_with = "rate")]
    pub clients: Option<usize>,
    /// Open loop: this many events per second on a fixed timetable (latency from the
    /// intended send time).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Run this long (seconds).
    #[arg(long, conflicts_with = "events")]
    pub seconds: Option<f64>,
    /// Run until this many events were sent.
    #[arg(long)]
    pub events: Option<u64>,
    /// Shares of batches in percent, e.g. transfers=70,trades=20,pending=10.
    #[arg(long)]
    pub mix: Option<Mix>,
    /// How accounts are drawn: uniform, zipf:S, hot:ACCOUNTS:PERCENT.
    #[arg(long)]
    pub skew: Option<Skew>,
    /// Per thousand transfers, one naming a missing account (a deliberate, definite failure).
    #[arg(long)]
    pub invalid_per_mille: Option<u32>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write the report (and the checks) as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct LoadgenArgs {
    /// Addresses of the cluster's nodes (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        conflicts_with = "spawn",
        required_unless_present = "spawn"
    )]
    pub cluster: Vec<String>,
    /// An operator's credential for `--cluster` (`--spawn` makes its own): writes go through
    /// the gateway with it, the checks read each replica in an operator session of its own.
    #[arg(long, env = "TALLY_CREDENTIAL", hide_env_values = true)]
    pub credential: Option<String>,
    /// The cluster id of `--cluster` (decimal or 0x-hex).
    #[arg(long, env = "TALLY_CLUSTER_ID", default_value = "0x1")]
    pub cluster_id: String,
    /// TLS for `--cluster` (`--spawn` makes its own CA).
    #[command(flatten)]
    pub tls: crate::tls_args::ClientTlsArgs,
    /// Start this many local nodes in a temporary directory and load them.
    #[arg(long)]
    pub spawn: Option<usize>,
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    /// Record every operation and, at the end, read everything back from every replica and
    /// run the history checks of docs/faults.md (C1, C3, C4, C5, C6, C8).
    #[arg(long)]
    pub check: bool,
    #[command(flatten)]
    pub load: LoadFlags,
}

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Nodes of the local cluster.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    #[command(flatten)]
    pub load: LoadFlags,
}

/// What a run is: explicit flags over the preset's over `defaults`.
fn run_config(
    flags: &LoadFlags,
    preset: Option<Preset>,
    defaults: RunConfig,
) -> anyhow::Result<RunConfig> {
    let mut config = defaults;
    if preset == Some(Preset::Tigerbeetle) {
        config.workload.accounts = TIGERBEETLE_ACCOUNTS;
        config.workload.batch_events = TIGERBEETLE_BATCH_EVENTS;
        config.workload.mix = Mix::TRANSFERS_ONLY;
        config.workload.skew = Skew::Uniform;
        config.workload.invalid_per_mille = 0;
        config.pace = Pace::Closed { clients: 1 };
        config.limit = Limit::Events(TIGERBEETLE_TRANSFERS);
    }
    let w = &mut config.workload;
    w.accounts = flags.accounts.unwrap_or(w.accounts);
    w.batch_events = flags.batch_events.unwrap_or(w.batch_events);
    w.mix = flags.mix.unwrap_or(w.mix);
    w.skew = flags.skew.unwrap_or(w.skew);
    w.invalid_per_mille = flags.invalid_per_mille.unwrap_or(w.invalid_per_mille);
    w.seed = flags.seed;
    if let Some(clients) = flags.clients {
        config.pace = Pace::Closed { clients };
    }
    if let Some(events_per_s) = flags.rate {
        config.pace = Pace::Open { events_per_s };
    }
    if let Some(seconds) = flags.seconds {
        config.limit = Limit::Duration(Duration::from_secs_f64(seconds));
    }
    if let Some(events) = flags.events {
        config.limit = Limit::Events(events);
    }
    config.workload.validate().map_err(anyhow::Error::msg)?;
    Ok(config)
}

/// This run's id tag: the wall clock in microseconds, modulo 2^32 (0 is left for nobody in
/// particular). Seconds were not enough: two runs started within one second (a bench that
/// loads, then measures) got the same ids, and the second run's differing bodies came back as
/// `exists_with_different_*` errors. Runs collide now only if they start in the same
/// microsecond of a 71.6-minute cycle.
fn tag() -> u32 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (now.as_micros() as u32).max(1)
}

fn defaults() -> RunConfig {
    RunConfig {
        workload: WorkloadConfig {
            accounts: 10_000,
            batch_events: 1_000,
            mix: Mix::TRANSFERS_ONLY,
            skew: Skew::Uniform,
            invalid_per_mille: 0,
            seed: 1,
        },
        pace: Pace::Closed { clients: 8 },
        limit: Limit::Duration(Duration::from_secs(10)),
        check: false,
        progress: true,
        tag: tag(),
    }
}

/// Print the report and checks, write the JSON if asked; whether every check passed.
fn finish(outcome: &RunOutcome, json: Option<&PathBuf>) -> anyhow::Result<bool> {
    println!("\n{}", outcome.report.table());
    let passed = match &outcome.checks {
        Some(checks) => {
            print!("{}", render(checks));
            all_passed(checks)
        }
        None => true,
    };
    if let Some(path) = json {
        let mut value = outcome.report.json();
        if let Some(checks) = &outcome.checks {
            value["checks"] = checks
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "id": c.id, "name": c.name,
                        "verdict": format!("{:?}", c.verdict).to_lowercase(),
                        "detail": c.detail,
                    })
                })
                .collect();
        }
        let text = serde_json::to_string_pretty(&value)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("report written to {}", path.display());
    }
    Ok(passed)
}

async fn load(
    addrs: Vec<String>,
    cluster_id: u128,
    credential: &[u8],
    tls: Option<ClientTls>,
    config: &RunConfig,
) -> anyhow::Result<RunOutcome> {
    let cluster = Arc::new(
        GatewayCluster::connect(
            tally_client::ClientConfig::new(addrs, cluster_id, credential.to_vec()).with_tls(tls),
        )
        .await
        .context("registering with the gateway")?,
    );
    let outcome = tally_loadgen::run(Arc::clone(&cluster), config).await;
    cluster.close().await;
    outcome.map_err(anyhow::Error::msg)
}

/// Start `count` local nodes under `root` and wait for a leader; the addresses, leader first.
async fn spawn(cluster: &mut LocalCluster, count: usize) -> anyhow::Result<Vec<String>> {
    let ids: Vec<u64> = (1..=count as u64).collect();
    cluster.found(&ids)?;
    let leader = cluster.wait_leader(Duration::from_secs(30)).await?;
    let first = cluster.addr(leader)?;
    let mut addrs = vec![first.clone()];
    addrs.extend(cluster.addrs().into_iter().filter(|addr| *addr != first));
    for node in cluster.nodes.values() {
        println!(
            "node {} at {} (pid {}, log {}){}",
            node.id,
            node.addr,
            node.pid().unwrap_or(0),
            node.log_path().display(),
            if node.id == leader { " leads" } else { "" }
        );
    }
    Ok(addrs)
}

fn print_peak_rss(cluster: &LocalCluster) {
    for node in cluster.nodes.values() {
        if let Some(bytes) = node.peak_rss_bytes() {
            println!(
                "node {} peak RSS (VmHWM) {:.1} MiB",
                node.id,
                bytes as f64 / (1 << 20) as f64
            );
        }
    }
}

/// Each node's snapshots during the run and what they cost the apply path, from its
/// `/metrics`: how many it built and installed, the pauses' mean and bound (the smallest
/// histogram bucket holding them all), and the bytes its builds wrote and kept (incremental).
fn print_snapshots(cluster: &LocalCluster) {
    for &id in cluster.nodes.keys() {
        let Ok((200, metrics)) = cluster.admin_get(id, "/metrics") else {
            continue;
        };
        let value = |series: &str| metric_value(&metrics, series).unwrap_or(0.0);
        let built = value("tally_snapshots_total{origin=\"built\"}");
        let installed = value("tally_snapshots_total{origin=\"installed\"}");
        let pauses = value("tally_snapshot_apply_pause_seconds_count");
        let mean_ms = 1e3 * value("tally_snapshot_apply_pause_seconds_sum") / pauses.max(1.0);
        let bound = metrics
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("tally_snapshot_apply_pause_seconds_bucket{le=\"")?;
                let (le, count) = rest.split_once("\"} ")?;
                Some((le.parse::<f64>().ok()?, count.trim().parse::<f64>().ok()?))
            })
            .find(|&(_, count)| count >= pauses)
            .map_or("?".to_owned(), |(le, _)| format!("{}", le * 1e3));
        let mib = |phase: &str| {
            value(&format!(
                "tally_snapshot_rss_growth_bytes{{phase=\"{phase}\"}}"
            )) / 1048576.0
        };
        let bytes = |kind: &str| {
            value(&format!("tally_snapshot_bytes_total{{kind=\"{kind}\"}}")) / 1048576.0
        };
        println!(
            "node {id} snapshots: built {built}, installed {installed}; apply pause per snapshot \
             mean {mean_ms:.3} ms, every one ≤ {bound} ms; resident memory rose {:.1} MiB \
             during the last build, {:.1} MiB during the last install; builds wrote {:.0} MiB \
             and kept {:.0} MiB of earlier section files",
            mib("build"),
            mib("install"),
            bytes("written"),
            bytes("kept")
        );
    }
}

/// Start `count` local nodes, run `config` against them and print each node's peak RSS. The
/// nodes stay up for the caller to shut down; Ctrl-C ends the run early (as an error).
async fn run_local(
    cluster: &mut LocalCluster,
    count: usize,
    config: &RunConfig,
) -> anyhow::Result<RunOutcome> {
    let run = async {
        let addrs = spawn(cluster, count).await?;
        println!("metrics (Prometheus text; also /health and /ready):");
        for node in cluster.nodes.values() {
            println!("  node {}: http://{}/metrics", node.id, node.admin_addr);
        }
        println!("load: {}", describe_short(config));
        println!(
            "{}",
            match cluster.pki_dir() {
                Some(pki) => format!(
                    "TLS on both networks: mutual TLS between replicas, TLS for clients \
                     (cluster CA {})",
                    pki.join("ca.pem").display()
                ),
                None => "INSECURE: plain TCP on both networks".to_owned(),
            }
        );
        let outcome = load(
            addrs,
            LOCAL_CLUSTER_ID,
            cluster.operator_credential(),
            cluster.client_tls()?,
            config,
        )
        .await?;
        print_peak_rss(cluster);
        print_snapshots(cluster);
        anyhow::Ok(outcome)
    };
    tokio::select! {
        result = run => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    }
}

/// The cluster id `LocalCluster` gives its nodes.
const LOCAL_CLUSTER_ID: u128 = 1;

/// How long nodes get to finish a graceful shutdown before they are killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

async fn stop(cluster: &mut LocalCluster) -> anyhow::Result<()> {
    println!("shutting the local cluster down (SIGTERM)");
    // The leader first, while its followers can still commit the entries it has in flight
    // (after Ctrl-C there may be some); then the rest at once.
    let mut killed = Vec::new();
    if let Ok(leader) = cluster.wait_leader(Duration::from_secs(2)).await {
        killed.extend(cluster.shutdown_nodes(&[leader], SHUTDOWN_GRACE)?);
    }
    killed.extend(cluster.shutdown(SHUTDOWN_GRACE)?);
    for id in killed {
        println!(
            "node {id} did not stop within {SHUTDOWN_GRACE:?} of SIGTERM (its last entries had no \
             quorum left); killed"
        );
    }
    Ok(())
}

/// `tally loadgen`: true when every check passed (or none ran).
pub async fn loadgen(args: LoadgenArgs) -> anyhow::Result<bool> {
    let mut config = run_config(&args.load, args.preset, defaults())?;
    config.check = args.check;
    let Some(count) = args.spawn else {
        let credential = args.credential.clone().unwrap_or_default();
        let cluster_id = crate::config::parse_u128(&args.cluster_id).context("--cluster-id")?;
        let outcome = load(
            args.cluster.clone(),
            cluster_id,
            credential.as_bytes(),
            args.tls.client_tls()?,
            &config,
        )
        .await?;
        return finish(&outcome, args.load.json.as_ref());
    };
    let root = tempfile::tempdir().context("temporary directory")?;
    let mut cluster =
        LocalCluster::new(&std::env::current_exe()?, root.path(), "").with_log_key()?;
    // `--spawn` with `--insecure-plaintext`: a plain-TCP cluster, to measure what TLS costs.
    if args.tls.insecure_plaintext {
        cluster = cluster.plaintext();
    }
    let outcome = run_local(&mut cluster, count, &config).await;
    stop(&mut cluster).await?;
    finish(&outcome?, args.load.json.as_ref())
}

/// `tally demo`: a local cluster, twenty seconds of mixed load with live numbers, the report,
/// the checks, where to look, and a clean shutdown.
pub async fn demo(args: DemoArgs) -> anyhow::Result<bool> {
    if args.nodes == 0 || args.nodes > 7 {
        bail!("--nodes must be 1..=7");
    }
    let mut base = defaults();
    base.workload.mix = Mix {
        transfers: 70,
        trades: 20,
        pending: 10,
    };
    base.workload.skew = Skew::Zipf(1.0);
    base.workload.invalid_per_mille = 5;
    base.pace = Pace::Closed { clients: 8 };
    base.limit = Limit::Duration(Duration::from_secs(20));
    base.check = true;
    let config = run_config(&args.load, None, base)?;
    let root = tempfile::tempdir().context("temporary directory")?;
    println!(
        "tally demo: {} local node(s), data in {}",
        args.nodes,
        root.path().display()
    );
    let mut cluster =
        LocalCluster::new(&std::env::current_exe()?, root.path(), "").with_log_key()?;
    let outcome = run_local(&mut cluster, args.nodes, &config).await;
    let mut passed = match &outcome {
        Ok(outcome) => finish(outcome, args.load.json.as_ref())?,
        Err(_) => false,
    };
    if let (Ok(outcome), Some(key)) = (&outcome, cluster.log_key()) {
        let proofs =
            std::env::temp_dir().join(format!("tally-demo-proofs-{}.json", std::process::id()));
        passed &= verify_history(&cluster, outcome, key, &proofs).await;
    }
    if let Some(node) = cluster.nodes.values().find(|node| node.is_running()) {
        let ca: String = cluster
            .client_env()
            .iter()
            .map(|(name, value)| format!("{name}={value} "))
            .collect();
        println!(
            "\nthe cluster after the run (`{ca}TALLY_CREDENTIAL={} tally admin --node {} status`):",
            String::from_utf8_lossy(cluster.operator_credential()),
            node.addr
        );
        match crate::cluster_admin::cluster_status(&cluster.operator()?, &node.addr).await {
            Ok(status) => print!("{}", crate::cluster_admin::status_table(&status)),
            Err(error) => println!("  status unavailable: {error:#}"),
        }
    }
    stop(&mut cluster).await?;
    outcome?;
    Ok(passed)
}

/// The demo's last check: a sample of its events proven against the cluster's signed
/// checkpoint, cosigned by a witness, verified offline (`demo_proofs.rs`); prints the result.
async fn verify_history(
    cluster: &LocalCluster,
    outcome: &RunOutcome,
    key: &str,
    proofs: &std::path::Path,
) -> bool {
    let Some(history) = &outcome.history else {
        return true;
    };
    let verified = async {
        let node = cluster
            .nodes
            .values()
            .find(|node| node.is_running())
            .context("no node running")?;
        let client = cluster.operator_client(node.id).await?;
        crate::demo_proofs::verify_sample(&client, history, key, proofs).await
    };
    match verified.await {
        Ok(line) => {
            println!("\n{line}");
            true
        }
        Err(error) => {
            println!("\nverifiable history: FAILED: {error:#}");
            false
        }
    }
}

fn describe_short(config: &RunConfig) -> String {
    format!(
        "{:?}, {:?}, mix {:?}, skew {:?}",
        config.pace, config.limit, config.workload.mix, config.workload.skew
    )
}

#[cfg(test)]
mod tests {
    /// Proves two runs started one right after the other get different id tags (they used to
    /// share one within a second, and the second run's events collided with the first's).
    #[test]
    fn runs_started_together_get_different_tags() {
        let first = super::tag();
        std::thread::sleep(std::time::Duration::from_micros(2));
        let second = super::tag();
        assert_ne!(first, second);
        assert_ne!(first, 0);
    }
}
