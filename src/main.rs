//! `tally`: one binary for every role.
//! - `tally node`: run a replica (config file and flags: docs/operations.md).
//! - `tally admin`: the cluster's status; add and remove nodes; initialize a cluster, add
//!   learners, change voters, snapshot.
//! - `tally restore`: prepare an empty data directory to start from a snapshot file.
//! - `tally drive`: a simple load driver for the replicated write path, against a running
//!   cluster or a local one it starts (`--spawn 3`).
//! - `tally loadgen`: the load generator (workload mix, closed or open loop, report, checks).
//! - `tally demo`: a local 3-node cluster under mixed load for ~20 s, the report, the checks.
//!
//! - `tally client`: the gateway from the command line (files in, tables/JSON/CSV out).
//! - `tally hash-credential`: the hash of a gateway credential, for a node's config.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::sync::Arc;

use tally::client_cli::{ClientArgs, Ended};
use tally::cluster_admin;
use tally::config::{admin_listen, gateway_config, node_config, parse_members, NodeFlags};
use tally::drive::{drive, DriveArgs};
use tally::load::{demo, loadgen, DemoArgs, LoadgenArgs};
use tally::local_cluster::LocalCluster;
use tally_gateway::Gateway;
use tally_raft::net::ClientHandler;
use tally_raft::node::client::Connection;
use tally_raft::node::protocol::{Admin, Request, STATE_AUDIT};
use tally_raft::node::ExtraHandler;
use tally_raft::node::Node;

#[derive(Parser)]
#[command(
    name = "tally",
    version,
    about = "Tally: a replicated settlement ledger"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a replica until SIGTERM or SIGINT (then shut down gracefully).
    Node(NodeFlags),
    /// Administer a cluster through one of its nodes.
    Admin {
        /// A node's address.
        #[arg(long)]
        node: String,
        /// An operator's credential (the node knows its hash: `[[gateway.credentials]]` with
        /// role "operator").
        #[arg(long, env = "TALLY_CREDENTIAL", hide_env_values = true)]
        credential: String,
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Prepare this node's empty data directory to start from a snapshot file (a backup of
    /// `snapshots/snapshot-*.snap`): restore every voter of the snapshot's cluster from the same
    /// file, then start them (docs/operations.md, "Back up and restore").
    Restore {
        #[command(flatten)]
        flags: NodeFlags,
        /// The snapshot file, named as the node wrote it (`snapshot-<index>-<term>.snap`).
        #[arg(long)]
        snapshot: std::path::PathBuf,
    },
    /// Drive transfers through the replicated write path and report throughput and latency.
    Drive(DriveArgs),
    /// Use the gateway: create accounts, transfers and trades from files, look up, statements.
    Client(ClientArgs),
    /// Print the hash of a gateway credential, for `[[gateway.credentials]]` in a node's
    /// config (the node stores only the hash). Reads the secret from stdin if not given.
    HashCredential { secret: Option<String> },
    /// Generate load (transfers, trades, pending/post) and report throughput, latency and,
    /// with --check, the history checks.
    Loadgen(LoadgenArgs),
    /// Start a local cluster, load it for ~20 s with live progress, report, check, shut down.
    Demo(DemoArgs),
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Every member's role, term, last log / committed / applied index, lag behind the
    /// leader, snapshot and state digest (asked of each member).
    Status {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add a running node (fresh data directory) as a voter: learner first, caught up, then
    /// voter. Goes to the leader wherever --node points.
    AddNode { id: u64, addr: String },
    /// Remove a node (voter or learner) from the cluster. Goes to the leader.
    RemoveNode { id: u64 },
    /// Initialize a fresh cluster with these voters (ID=ADDRESS ...).
    Init { members: Vec<String> },
    /// Add a node as a learner and wait for it to catch up.
    AddLearner { id: u64, addr: String },
    /// Make exactly these nodes the voters.
    Voters { ids: Vec<u64> },
    /// Build a snapshot on this node now (and purge its log behind it as configured).
    Snapshot,
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

async fn run_node(flags: NodeFlags) -> anyhow::Result<()> {
    let config = node_config(&flags)?;
    let gateway = gateway_config(&flags)?;
    let admin_listener = match admin_listen(&flags)? {
        Some(addr) => Some(tally::admin_http::bind(addr).await?),
        None => None,
    };
    let extra: ExtraHandler = Box::new(move |raft, view, batcher, metrics| {
        Arc::new(Gateway::new(gateway, raft, view, batcher, metrics)) as Arc<dyn ClientHandler>
    });
    let node = Node::start(config, tally_raft::storage::open_default(), Some(extra))
        .await
        .context("starting the node")?;
    let id = node.id();
    println!(
        "tally node {} listening on {}",
        node.id(),
        node.local_addr()
    );
    let (stop_admin, admin_stopped) = tokio::sync::watch::channel(false);
    let admin = admin_listener
        .map(|listener| tally::admin_http::serve(listener, node.probe(), admin_stopped));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let probe = node.probe();
    // A poisoned WAL or a fatal Raft error does not heal while the process runs; exiting
    // non-zero lets the supervisor (systemd `Restart=on-failure`) restart the node, which
    // recovers from what is durable (docs/operations.md, "Node exited unhealthy").
    let unhealthy = tokio::select! {
        _ = terminate.recv() => { tracing::info!("SIGTERM"); None }
        _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT"); None }
        reason = probe.unhealthy() => {
            tracing::error!(%reason, "node unhealthy; stopping it to be restarted");
            Some(reason)
        }
    };
    // The admin port answers until the node is gone: `/ready` says 503 meanwhile.
    let stopped = node.shutdown().await.context("shutting down");
    let _ = stop_admin.send(true);
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    match unhealthy {
        Some(reason) => {
            if let Err(error) = stopped {
                tracing::warn!(error = format!("{error:#}"), "shutdown after the failure");
            }
            Err(anyhow::anyhow!("node {id} stopped unhealthy: {reason}"))
        }
        None => stopped,
    }
}

async fn run_admin(addr: &str, credential: &[u8], command: AdminCommand) -> anyhow::Result<()> {
    let admin = match command {
        AdminCommand::Status { json } => {
            let status = cluster_admin::cluster_status(addr, credential).await?;
            if json {
                println!("{:#}", cluster_admin::status_json(&status));
            } else {
                print!("{}", cluster_admin::status_table(&status));
            }
            return Ok(());
        }
        AdminCommand::AddNode {
            id,
            addr: node_addr,
        } => {
            cluster_admin::add_node(addr, credential, id, &node_addr).await?;
            println!("done");
            return Ok(());
        }
        AdminCommand::RemoveNode { id } => {
            cluster_admin::remove_node(addr, credential, id).await?;
            println!("done");
            return Ok(());
        }
        AdminCommand::Init { members } => {
            Admin::Initialize(parse_members(&members)?.into_iter().collect())
        }
        AdminCommand::AddLearner { id, addr } => Admin::AddLearner(id, addr),
        AdminCommand::Voters { ids } => Admin::ChangeVoters(ids),
        AdminCommand::Snapshot => Admin::Snapshot,
    };
    let connection = Connection::connect_as(addr, credential).await?;
    connection
        .request(&Request::Admin(admin))
        .await?
        .map_err(anyhow::Error::new)?;
    println!("done");
    Ok(())
}

fn run_restore(flags: &NodeFlags, snapshot: &std::path::Path) -> anyhow::Result<()> {
    let config = node_config(flags)?;
    let restored = tally_raft::replication::restore::restore_from_snapshot(
        tally_raft::storage::open_default(),
        &config.data_dir,
        config.id,
        snapshot,
        config.engine,
    )
    .with_context(|| format!("restoring node {} from {}", config.id, snapshot.display()))?;
    println!(
        "node {} restored in {} at index {} (term {}): {} accounts, {} transfers; \
         voters {:?}, learners {:?}. Restore the other voters from the same file, then start \
         the nodes.",
        config.id,
        config.data_dir.display(),
        restored.last_index,
        restored.last_term,
        restored.accounts,
        restored.transfers,
        restored.voters,
        restored.learners
    );
    Ok(())
}

async fn run_drive(args: DriveArgs) -> anyhow::Result<()> {
    let Some(count) = args.spawn else {
        let credential = args.credential.clone().unwrap_or_default();
        drive(args.cluster.clone(), credential.as_bytes(), &args).await?;
        return Ok(());
    };
    let root = tempfile::tempdir().context("temporary directory")?;
    let exe = std::env::current_exe()?;
    let mut cluster = LocalCluster::new(&exe, root.path(), "");
    let ids: Vec<u64> = (1..=count as u64).collect();
    cluster.found(&ids)?;
    let leader = cluster.wait_leader(Duration::from_secs(30)).await?;
    println!(
        "{count} local node(s) up in {}; node {leader} leads",
        root.path().display()
    );
    let first = cluster.addr(leader)?;
    let mut addrs = vec![first.clone()];
    addrs.extend(cluster.addrs().into_iter().filter(|addr| *addr != first));
    drive(addrs, cluster.operator_credential(), &args).await?;
    let states = cluster.states(STATE_AUDIT).await;
    let digests: BTreeMap<u64, _> = states
        .iter()
        .map(|(id, state)| (*id, (state.last_applied, state.digest)))
        .collect();
    println!("replica states after the run: {digests:?}");
    Ok(())
}

fn hash_credential(secret: Option<String>) -> anyhow::Result<()> {
    let secret = match secret {
        Some(secret) => secret,
        None => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    let length = secret.len();
    let (min, max) = (
        tally_gateway::limits::CREDENTIAL_BYTES_MIN,
        tally_gateway::limits::CREDENTIAL_BYTES_MAX,
    );
    if !(min..=max).contains(&length) {
        anyhow::bail!("a credential has {min}..={max} bytes; this one has {length}");
    }
    println!("{}", tally_gateway::credential_hash_hex(secret.as_bytes()));
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tally: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Command::Client(args) = cli.command {
        // 0 done, 1 some events failed, 2 bad input (refused before connecting), 3 the
        // cluster refused or did not answer.
        return match runtime.block_on(tally::client_cli::run(args)) {
            Ok(Ended::Done) => ExitCode::SUCCESS,
            Ok(Ended::EventsFailed) => ExitCode::from(1),
            Err(error) => {
                eprintln!("tally client: {error:#}");
                let cluster = error.chain().any(|cause| {
                    cause
                        .downcast_ref::<tally_gateway::client::ClientError>()
                        .is_some()
                });
                ExitCode::from(if cluster { 3 } else { 2 })
            }
        };
    }
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Node(flags) => run_node(flags).await.map(|()| true),
            Command::Admin {
                node,
                credential,
                command,
            } => run_admin(&node, credential.as_bytes(), command)
                .await
                .map(|()| true),
            Command::Restore { flags, snapshot } => run_restore(&flags, &snapshot).map(|()| true),
            Command::Drive(args) => run_drive(args).await.map(|()| true),
            Command::Client(_) => Ok(true),
            Command::HashCredential { secret } => hash_credential(secret).map(|()| true),
            Command::Loadgen(args) => loadgen(args).await,
            Command::Demo(args) => demo(args).await,
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("tally: a check FAILED");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("tally: {error:#}");
            ExitCode::FAILURE
        }
    }
}
