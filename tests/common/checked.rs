//! The load the fault tests run while they do harm: checked, and judged by C1–C9.

use std::sync::Arc;
use std::time::Duration;

use tally::local_cluster::LocalCluster;
use tally_client::ClientConfig;
use tally_loadgen::check::{render, Verdict};
use tally_loadgen::cluster::GatewayCluster;
use tally_loadgen::run::{Limit, Pace, RunConfig, RunOutcome};
use tally_loadgen::{Mix, Skew, WorkloadConfig};
use tokio::task::JoinHandle;

/// A checked load running against `cluster`'s `nodes` (the replicas it writes through and reads
/// back from): the load generator's closed loop for `seconds`
/// (transfers, trades and pending transfers with their posts and voids, some invalid), every
/// batch recorded; when it ends it reads everything back from every replica and runs the
/// history checks C1–C9 (docs/faults.md). Faults go on while it runs; await it with
/// [`all_checks_pass`].
pub fn checked_load(
    cluster: &LocalCluster,
    nodes: &[u64],
    seconds: u64,
    tag: u8,
) -> JoinHandle<RunOutcome> {
    let addrs = nodes
        .iter()
        .map(|id| cluster.addr(*id).expect("a node"))
        .collect();
    let config = ClientConfig::new(
        addrs,
        cluster.cluster_id(),
        cluster.operator_credential().to_vec(),
    )
    .with_tls(cluster.client_tls().expect("the local CA"));
    let run = RunConfig {
        workload: WorkloadConfig {
            accounts: 1_000,
            batch_events: 200,
            mix: Mix {
                transfers: 70,
                trades: 15,
                pending: 15,
            },
            skew: Skew::Uniform,
            invalid_per_mille: 10,
            seed: u64::from(tag),
        },
        pace: Pace::Closed { clients: 2 },
        limit: Limit::Duration(Duration::from_secs(seconds)),
        check: true,
        progress: false,
        tag: tag.into(),
    };
    tokio::spawn(async move {
        let cluster = Arc::new(GatewayCluster::connect(config).await.expect("registered"));
        let outcome = tally_loadgen::run(Arc::clone(&cluster), &run)
            .await
            .expect("the load runs and is read back");
        cluster.close().await;
        outcome
    })
}

/// Await a [`checked_load`]: its report and checks printed as the demo prints them, every
/// check passed (none skipped), and the longest wait for one batch.
pub async fn all_checks_pass(load: JoinHandle<RunOutcome>) -> Duration {
    let outcome = load.await.expect("the load's task");
    let checks = outcome.checks.expect("checks ran");
    eprintln!("{}\n{}", outcome.report.table(), render(&checks));
    let ids: Vec<&str> = checks.iter().map(|check| check.id).collect();
    assert_eq!(ids, ["C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9"]);
    for check in &checks {
        assert_eq!(check.verdict, Verdict::Pass, "{check:?}");
    }
    let total = outcome.report.total().expect("a total");
    assert!(total.events_ok > 0);
    Duration::from_micros(total.max_us)
}
