//! `tally drive`: a simple load driver for the replicated batcher path (before the gateway and
//! the real load generator exist). It creates accounts, then keeps `clients` batches of
//! transfers in flight against the cluster for a while, and prints events/s every second and
//! commit latency percentiles (submit to answer, i.e. replicated, fsync'd on a quorum and
//! applied) at the end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tally_engine::records::{Account, Transfer};
use tally_engine::Operation;
use tally_raft::node::client::{Client, RetryPolicy};

#[derive(Debug, clap::Args)]
pub struct DriveArgs {
    /// Addresses of the cluster's nodes (comma-separated).
    #[arg(long, value_delimiter = ',', conflicts_with = "spawn")]
    pub cluster: Vec<String>,
    /// Start this many local nodes (1, 3 or 5) in a temporary directory and drive them.
    #[arg(long)]
    pub spawn: Option<usize>,
    /// An operator's credential for `--cluster` (the driver writes through the node
    /// protocol); `--spawn` makes its own.
    #[arg(long, env = "TALLY_CREDENTIAL", hide_env_values = true)]
    pub credential: Option<String>,
    /// Accounts to create first (transfers pick two of them at random).
    #[arg(long, default_value_t = 10_000)]
    pub accounts: u64,
    /// Transfers per batch (at most 8,189).
    #[arg(long, default_value_t = 8189)]
    pub batch_events: usize,
    /// Batches in flight at once (one per simulated client).
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// How long to drive, after the accounts exist.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
}

/// Summary of a run, as printed.
#[derive(Debug, Clone, Copy)]
pub struct DriveReport {
    pub events: u64,
    pub seconds: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

fn account(id: u64) -> [u8; 128] {
    Account {
        id: u128::from(id),
        ledger: 1,
        code: 1,
        ..Account::default()
    }
    .encode()
}

/// Create accounts `1..=count` in full batches.
async fn create_accounts(client: &Client, count: u64) -> anyhow::Result<()> {
    let ids: Vec<u64> = (1..=count).collect();
    for chunk in ids.chunks(tally_engine::limits::BATCH_EVENTS_MAX) {
        let body: Vec<u8> = chunk.iter().flat_map(|id| account(*id)).collect();
        let answer = client
            .submit(Operation::CreateAccounts, Bytes::from(body))
            .await
            .context("creating accounts")?;
        let real = answer
            .failures
            .iter()
            .filter(|(_, result)| *result != tally_engine::EventResult::Exists)
            .count();
        if real > 0 {
            bail!(
                "creating accounts: {real} failed, e.g. {:?}",
                answer.failures[0]
            );
        }
    }
    Ok(())
}

/// Drive `addrs` as `args` say and print the figures.
pub async fn drive(
    addrs: Vec<String>,
    credential: &[u8],
    args: &DriveArgs,
) -> anyhow::Result<DriveReport> {
    if args.batch_events == 0 || args.batch_events > tally_engine::limits::BATCH_EVENTS_MAX {
        bail!("--batch-events must be 1..=8189");
    }
    if args.accounts < 2 {
        bail!("--accounts must be at least 2");
    }
    let client = Arc::new(Client::new(addrs, credential, RetryPolicy::default()));
    let started = Instant::now();
    create_accounts(&client, args.accounts).await?;
    println!(
        "created {} accounts in {:.2} s",
        args.accounts,
        started.elapsed().as_secs_f64()
    );
    let committed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for task in 0..args.clients as u64 {
        let client = Arc::clone(&client);
        let committed = Arc::clone(&committed);
        let (events, accounts) = (args.batch_events, args.accounts);
        tasks.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new(3).context("histogram")?;
            let mut rng = SmallRng::seed_from_u64(task);
            // Ids: the task in the top bits, a counter below; unique across the run.
            let mut next_id = u128::from(task + 1) << 64;
            while Instant::now() < deadline {
                let body: Vec<u8> = (0..events)
                    .flat_map(|_| {
                        next_id += 1;
                        let debit = rng.random_range(1..=accounts);
                        let credit = (debit % accounts) + 1;
                        Transfer {
                            id: next_id,
                            debit_account_id: u128::from(debit),
                            credit_account_id: u128::from(credit),
                            amount: 1,
                            ledger: 1,
                            code: 1,
                            ..Transfer::default()
                        }
                        .encode()
                    })
                    .collect();
                let sent = Instant::now();
                let answer = client
                    .submit(Operation::CreateTransfers, Bytes::from(body))
                    .await?;
                let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                latency.record(micros.max(1))?;
                if let Some((index, result)) = answer.failures.first() {
                    bail!("transfer {index} of a batch failed: {result:?}");
                }
                committed.fetch_add(events as u64, Ordering::Relaxed);
            }
            anyhow::Ok(latency)
        }));
    }
    let measuring = Instant::now();
    let mut last = 0;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = committed.load(Ordering::Relaxed);
        println!(
            "{:>5.1} s  {:>10} events/s  {:>12} committed",
            measuring.elapsed().as_secs_f64(),
            now - last,
            now
        );
        last = now;
    }
    let mut latency = Histogram::<u64>::new(3)?;
    for task in tasks {
        latency.add(task.await??)?;
    }
    let seconds = measuring.elapsed().as_secs_f64();
    let report = DriveReport {
        events: committed.load(Ordering::Relaxed),
        seconds,
        p50_us: latency.value_at_quantile(0.5),
        p99_us: latency.value_at_quantile(0.99),
        p999_us: latency.value_at_quantile(0.999),
        max_us: latency.max(),
    };
    println!(
        "drive: {} events in {:.2} s = {:.0} events/s; batches of {}, {} in flight; commit latency \
         p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        report.events,
        seconds,
        report.events as f64 / seconds,
        args.batch_events,
        args.clients,
        report.p50_us as f64 / 1e3,
        report.p99_us as f64 / 1e3,
        report.p999_us as f64 / 1e3,
        report.max_us as f64 / 1e3,
    );
    Ok(report)
}
