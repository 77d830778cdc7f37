//! `tally`: one binary for every role.
//! - `tally node`: run a replica (config file and flags: docs/operations.md).
//! - `tally admin`: the cluster's status; add and remove nodes; initialize a cluster, add
//!   learners, change voters, snapshot.
//! - `tally certs`: a cluster CA and node certificates (docs/security.md).
//! - `tally restore`: prepare an empty data directory to start from a snapshot file.
//! - `tally loadgen`: the load generator (workload mix, closed or open loop, report, checks).
//! - `tally demo`: a local 3-node cluster under mixed load for ~20 s, the report, the checks.
//!
//! - `tally client`: the gateway from the command line (files in, tables/JSON/CSV out).
//! - `tally cdc`: the change feed published to RabbitMQ, at least once, from a checkpoint.
//! - `tally hash-credential`: the hash of a gateway credential, for a node's config (the secret
//!   is read from standard input, so it stays out of shell history).

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use tally::client_cli::{ClientArgs, Ended};
use tally::cluster_admin;
use tally::cluster_admin::{Operator, ADMIN_TIMEOUT};
use tally::config::parse_u128;
use tally::config::{admin_listen, node_config, parse_members, NodeFlags};
use tally::load::{demo, loadgen, DemoArgs, LoadgenArgs};
use tally::node::Node;
use tally_client::protocol::{Admin, Member};

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
        /// The cluster id (decimal or 0x-hex), as in the nodes' config.
        #[arg(long, env = "TALLY_CLUSTER_ID", default_value = "0")]
        cluster_id: String,
        /// An operator's credential (the node knows its hash: `[[gateway.credentials]]` with
        /// role "operator").
        #[arg(long, env = "TALLY_CREDENTIAL", hide_env_values = true)]
        credential: String,
        #[command(flatten)]
        tls: tally::tls_args::ClientTlsArgs,
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Make a cluster CA and node certificates (PEM) for a test or a first deployment
    /// (docs/security.md). Without --ca-exists a new CA is made in DIR first; with it, the CA
    /// already in DIR (ca.pem, ca.key) signs the new certificates.
    Certs {
        /// Where the files go: ca.pem, ca.key, node-<id>.pem, node-<id>.key.
        #[arg(long)]
        dir: std::path::PathBuf,
        /// The node ids to make certificates for (comma-separated).
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<u64>,
        /// Host names and IP addresses clients dial the nodes by (comma-separated; every node
        /// certificate names them all).
        #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1")]
        hosts: Vec<String>,
        /// Client certificates to make, by name (comma-separated).
        #[arg(long, value_delimiter = ',')]
        clients: Vec<String>,
        /// The cluster name in a new CA's subject (kept in ca.name; later signing reads it).
        #[arg(long, default_value = "tally")]
        name: String,
        /// Sign with the CA already in DIR instead of making a new one.
        #[arg(long)]
        ca_exists: bool,
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
    /// Use the gateway: create accounts, transfers and trades from files, look up, statements.
    Client(ClientArgs),
    /// Print the hash of a gateway credential, for `[[gateway.credentials]]` in a node's
    /// config (the node stores only the hash). Reads the secret's first line from standard
    /// input, so it does not land in shell history: `tally hash-credential < secret-file`.
    HashCredential {
        /// The secret on the command line instead (warns: it lands in shell history and in
        /// the process list).
        #[arg(long)]
        secret: Option<String>,
    },
    /// Check a proof bundle offline (docs/verifiability.md): every checkpoint signed by the
    /// cluster's key and extending the one before it, every event in its checkpoint. Exits 0
    /// when all verifies, 1 naming what does not, 2 when the input cannot be read.
    Verify {
        /// The cluster's verifier key (`<name>+<key id>+<key>`), or a file holding it.
        #[arg(long)]
        key: String,
        /// A witness's verifier key (or a file holding it): every checkpoint must carry its
        /// cosignature too. Repeat for several witnesses.
        #[arg(long = "witness")]
        witnesses: Vec<String>,
        /// The proof bundle (JSON).
        bundle: std::path::PathBuf,
    },
    /// Witness a cluster's history (docs/verifiability.md, "Witnesses"): cosign each
    /// checkpoint that extends the last one cosigned, refuse loudly one that does not.
    Witness {
        #[command(subcommand)]
        command: tally::witness::WitnessCommand,
    },
    // `tally reconcile` (src/reconcile.rs) begins.
    /// Reconcile a client's positions file against the ledger's positions as of a time and
    /// write the break report (docs/reconcile.md). Exits 0 with no breaks, 1 with breaks, 2 on
    /// bad input (nothing fetched), 3 when the cluster fails (no report written).
    Reconcile(tally::reconcile::ReconcileArgs),
    // `tally reconcile` ends.
    // `tally cdc` (src/cdc.rs) begins.
    /// Publish the change feed (every applied event: accounts created, transfers, trades,
    /// expiries, in position order) to RabbitMQ, at least once, resuming from a checkpoint
    /// file (docs/queries.md, "Publishing to RabbitMQ"). Exits 0 when caught up
    /// (--until-caught-up) or stopped by SIGTERM, 1 when the checkpoint cannot be written, 2
    /// on bad input; a broker or cluster that fails is retried.
    Cdc(tally::cdc::CdcArgs),
    // `tally cdc` ends.
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
    AddNode {
        id: u64,
        /// Its client listener's address.
        client_addr: String,
        /// Its peer listener's address.
        peer_addr: String,
    },
    /// Remove a node (voter or learner) from the cluster. Goes to the leader.
    RemoveNode { id: u64 },
    /// Initialize a fresh cluster with these voters (ID=CLIENT_ADDRESS/PEER_ADDRESS ...).
    Init { members: Vec<String> },
    /// Add a node as a learner and wait for it to catch up.
    AddLearner {
        id: u64,
        client_addr: String,
        peer_addr: String,
    },
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
    let tls = config.tls.is_some();
    let admin_listener = match admin_listen(&flags)? {
        Some(addr) => Some(tally::admin_http::bind(addr).await?),
        None => None,
    };
    let node = Node::start(config, tally_raft::storage::open_default())
        .await
        .context("starting the node")?;
    let id = node.id();
    println!(
        "tally node {} listening on {} (clients) and {} (replicas), {}",
        node.id(),
        node.local_addr(),
        node.peer_addr(),
        if tls { "TLS" } else { "INSECURE PLAINTEXT" }
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

async fn run_admin(operator: &Operator, addr: &str, command: AdminCommand) -> anyhow::Result<()> {
    let admin = match command {
        AdminCommand::Status { json } => {
            let status = cluster_admin::cluster_status(operator, addr).await?;
            if json {
                println!("{:#}", cluster_admin::status_json(&status));
            } else {
                print!("{}", cluster_admin::status_table(&status));
            }
            return Ok(());
        }
        AdminCommand::AddNode {
            id,
            client_addr,
            peer_addr,
        } => {
            let node = Member::new(client_addr, peer_addr);
            cluster_admin::add_node(operator, addr, id, &node).await?;
            println!("done");
            return Ok(());
        }
        AdminCommand::RemoveNode { id } => {
            cluster_admin::remove_node(operator, addr, id).await?;
            println!("done");
            return Ok(());
        }
        AdminCommand::Init { members } => Admin::Initialize(
            parse_members(&members)?
                .into_iter()
                .map(|(id, node)| (id, Member::new(node.client_addr, node.peer_addr)))
                .collect(),
        ),
        AdminCommand::AddLearner {
            id,
            client_addr,
            peer_addr,
        } => Admin::AddLearner(id, Member::new(client_addr, peer_addr)),
        AdminCommand::Voters { ids } => Admin::ChangeVoters(ids),
        AdminCommand::Snapshot => Admin::Snapshot,
    };
    // Initialize and snapshot are the asked node's own; the others go to the leader.
    let client = match admin {
        Admin::Initialize(_) | Admin::Snapshot => operator.node(addr, ADMIN_TIMEOUT).await?,
        _ => cluster_admin::leader(operator, addr).await?.0,
    };
    let done = client.admin(&admin).await;
    client.close().await;
    done?;
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

fn make_certs(
    dir: &std::path::Path,
    name: &str,
    nodes: &[u64],
    hosts: &[String],
    clients: &[String],
    ca_exists: bool,
) -> anyhow::Result<()> {
    use tally_raft::net::tls::pki;
    if !ca_exists {
        if dir.join("ca.key").exists() {
            anyhow::bail!(
                "{} already holds a CA key; pass --ca-exists to sign with it, or choose another \
                 directory",
                dir.display()
            );
        }
        pki::make_ca(dir, name)?;
        println!("made the cluster CA: {}", dir.join("ca.pem").display());
    }
    for id in nodes {
        let files = pki::make_node(dir, *id, hosts)?;
        println!(
            "made node {id}'s certificate: {} (key {})",
            files.cert.display(),
            files.key.display()
        );
    }
    for client in clients {
        pki::make_client(dir, client)?;
        println!("made client certificate {client}");
    }
    println!(
        "keep ca.key offline; each node needs ca.pem and its own node-<id>.pem and .key \
         (docs/security.md)"
    );
    Ok(())
}

fn hash_credential(secret: Option<String>) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let secret = match secret {
        Some(secret) => {
            eprintln!(
                "tally: warning: a secret given with --secret lands in your shell history and \
                 the process list; pipe it on standard input instead"
            );
            secret
        }
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("secret (one line, then Enter):");
            }
            let mut line = String::new();
            if stdin
                .read_line(&mut line)
                .context("reading the secret from standard input")?
                == 0
            {
                anyhow::bail!(
                    "no secret on standard input (pipe it in: `printf '%s\\n' \"$SECRET\" | \
                     tally hash-credential`)"
                );
            }
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
    if let Command::Verify {
        key,
        witnesses,
        bundle,
    } = &cli.command
    {
        return ExitCode::from(tally::verify::run(key, witnesses, bundle));
    }
    if let Command::Witness { command } = &cli.command {
        return ExitCode::from(tally::witness::run(command));
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tally: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // `tally reconcile` begins.
    if let Command::Reconcile(args) = cli.command {
        return ExitCode::from(runtime.block_on(tally::reconcile::run(args)));
    }
    // `tally reconcile` ends.
    // `tally cdc` begins.
    if let Command::Cdc(args) = cli.command {
        return ExitCode::from(runtime.block_on(tally::cdc::run(args)));
    }
    // `tally cdc` ends.
    if let Command::Client(args) = cli.command {
        // 0 done, 1 some events failed or some ids were not found, 2 bad input (refused
        // before connecting), 3 the cluster refused or did not answer.
        return match runtime.block_on(tally::client_cli::run(args)) {
            Ok(Ended::Done) => ExitCode::SUCCESS,
            Ok(Ended::EventsFailed | Ended::NotFound) => ExitCode::from(1),
            Err(error) => {
                eprintln!("tally client: {error:#}");
                // The library's own refusals before sending are bad input, like the CLI's.
                let cluster = tally::import::is_cluster_error(&error);
                if let Some(hint) = tally::import::outcome_hint(&error) {
                    eprintln!("{hint}");
                }
                ExitCode::from(if cluster { 3 } else { 2 })
            }
        };
    }
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Node(flags) => run_node(flags).await.map(|()| true),
            Command::Admin {
                node,
                cluster_id,
                credential,
                tls,
                command,
            } => {
                let operator = Operator {
                    cluster_id: parse_u128(&cluster_id).context("--cluster-id")?,
                    credential: credential.into_bytes(),
                    tls: tls.client_tls()?,
                };
                run_admin(&operator, &node, command).await.map(|()| true)
            }
            Command::Certs {
                dir,
                nodes,
                hosts,
                clients,
                name,
                ca_exists,
            } => make_certs(&dir, &name, &nodes, &hosts, &clients, ca_exists).map(|()| true),
            Command::Restore { flags, snapshot } => run_restore(&flags, &snapshot).map(|()| true),
            Command::Client(_)
            | Command::Verify { .. }
            | Command::Witness { .. }
            | Command::Reconcile(_)
            | Command::Cdc(_) => Ok(true),
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
