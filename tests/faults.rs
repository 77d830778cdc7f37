//! Network and disk faults between real `tally node` processes: partitions and flapping links
//! through a proxy on every replica link (`common::chaos`), a retry storm of hundreds of
//! clients with very short timeouts, and a replica's disk filling up (`common::disk`). Each
//! runs the checked load while the fault happens and ends with every history check C1–C9
//! passing (docs/faults.md).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tally::local_cluster::LocalCluster;
use tally_client::{Client, ClientConfig, ClientError};
use tally_engine::records::{Account, Transfer};
use tally_engine::EventResult;

mod common;
use common::chaos::Chaos;
use common::checked::{all_checks_pass, checked_load};
use common::disk::SmallDisk;
use common::{another_leader, follows, local_cluster, FAST_RAFT, LEADER_WAIT};

/// One cluster at a time on the two shared cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const NODES: [u64; 3] = [1, 2, 3];

/// Three nodes that reach each other only through the proxies of `Chaos`, once they agree on
/// a leader.
async fn proxied(root: &Path, extra_config: &str) -> (LocalCluster, Chaos, u64) {
    let mut cluster = local_cluster(root, extra_config);
    cluster.plan(&NODES).expect("planned");
    let chaos = Chaos::between(&mut cluster, &NODES).await;
    cluster.found(&NODES).expect("started");
    let leader = cluster.wait_leader(LEADER_WAIT).await.expect("a leader");
    (cluster, chaos, leader)
}

/// The leader cut off from both followers, both ways, for 8 s under load: the followers elect
/// one of themselves and go on committing; once the links return the old leader follows the
/// new one, and what it appended alone (never committed) is replaced. Its clients' requests
/// are retried on the new leader under their numbers. Behind `TALLY_SOAK=1`, ten rounds on
/// one cluster, each isolating whoever leads then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_is_replaced_and_rejoins_as_a_follower() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let (cluster, chaos, mut leader) = proxied(root.path(), FAST_RAFT).await;
    for round in 0..common::rounds(1, 10) {
        let load = checked_load(&cluster, &NODES, 26, 21 + round as u8 * 16);
        tokio::time::sleep(Duration::from_secs(4)).await;
        chaos.isolate(leader);
        let started = Instant::now();
        let new_leader = another_leader(&cluster, leader).await;
        eprintln!(
            "round {round}: node {leader} isolated; node {new_leader} leads after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_secs(8).saturating_sub(started.elapsed())).await;
        chaos.heal();
        let now_follows = follows(&cluster, leader).await;
        eprintln!("node {leader} rejoined, following node {now_follows}");
        let longest = all_checks_pass(load).await;
        eprintln!("round {round}: longest wait for one batch: {longest:?}");
        leader = cluster.wait_leader(LEADER_WAIT).await.expect("a leader");
    }
}

/// A follower partitioned away (both ways) for 5 s, then a one-way cut where the leader cannot
/// reach that follower but it can reach the others (it times out and stands for election,
/// disturbing the majority), then a minority of one cut off again: the majority keeps
/// committing through all three, and the follower catches up each time. Behind
/// `TALLY_SOAK=1`, five rounds on one cluster, each under a new load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_minority_and_a_one_way_cut_lose_nothing() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let (cluster, chaos, _) = proxied(root.path(), FAST_RAFT).await;
    for round in 0..common::rounds(1, 5) {
        partition_round(&cluster, &chaos, round).await;
    }
}

/// One round of the test above.
async fn partition_round(cluster: &LocalCluster, chaos: &Chaos, round: u32) {
    let leader = cluster.wait_leader(LEADER_WAIT).await.expect("a leader");
    let follower = *NODES.iter().find(|id| **id != leader).expect("a follower");
    let others: Vec<u64> = NODES.iter().copied().filter(|id| *id != follower).collect();
    let load = checked_load(cluster, &NODES, 28, 22 + round as u8 * 16);
    tokio::time::sleep(Duration::from_secs(3)).await;
    chaos.partition(&[follower], &others);
    eprintln!("node {follower} partitioned from {others:?}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    chaos.heal();
    follows(cluster, follower).await;
    let leader = cluster.wait_leader(LEADER_WAIT).await.expect("a leader");
    let cut = *NODES.iter().find(|id| **id != leader).expect("a follower");
    chaos.set(leader, cut, false);
    eprintln!("one way: node {leader} cannot reach node {cut}, which reaches everyone");
    tokio::time::sleep(Duration::from_secs(5)).await;
    chaos.heal();
    let leader = cluster.wait_leader(LEADER_WAIT).await.expect("a leader");
    let minority = *NODES.iter().find(|id| **id != leader).expect("a follower");
    chaos.isolate(minority);
    eprintln!("node {minority} isolated");
    tokio::time::sleep(Duration::from_secs(4)).await;
    chaos.heal();
    follows(cluster, minority).await;
    let longest = all_checks_pass(load).await;
    eprintln!("round {round}: longest wait for one batch: {longest:?}");
}

/// Links cut and restored every 300 ms for 16 s (each step flips one directed link chosen by
/// a seeded generator; the seed is printed), then all healed: whatever elections and
/// step-downs the flapping caused, nothing acknowledged is lost, and the cluster commits again
/// once healed (C9). Behind `TALLY_SOAK=1`, twenty rounds (seeds), on a fresh cluster every
/// `ROUNDS_PER_CLUSTER`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_links_lose_nothing() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let first_seed = std::env::var("TALLY_FLAP_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    let rounds = common::rounds(1, 20);
    let mut round = 0;
    while round < rounds {
        let root = tempfile::tempdir().expect("tempdir");
        let (cluster, chaos, _) = proxied(root.path(), FAST_RAFT).await;
        for _ in 0..ROUNDS_PER_CLUSTER.min(rounds - round) {
            let seed = first_seed.wrapping_add(u64::from(round));
            let load = checked_load(&cluster, &NODES, 26, 100 + round as u8);
            eprintln!("round {round}: flapping with seed {seed} (replay: TALLY_FLAP_SEED={seed})");
            tokio::time::sleep(Duration::from_secs(3)).await;
            let (flips, longest_down) = flap(&chaos, seed, Duration::from_secs(16)).await;
            chaos.heal();
            eprintln!(
                "{flips} flips, at most {longest_down} of {} links down at once",
                chaos.links().len()
            );
            let leader = cluster.wait_leader(LEADER_WAIT).await.expect("a leader");
            eprintln!("healed; node {leader} leads");
            let longest = all_checks_pass(load).await;
            eprintln!("round {round}: longest wait for one batch: {longest:?}");
            round += 1;
        }
    }
}

/// Rounds of the flapping soak on one cluster. Its three replicas share this host's memory,
/// each holding the whole state (~140 bytes an event): a round adds ~3.3M
/// events, and at ~55M events per replica (round 18) the kernel killed a node for memory.
const ROUNDS_PER_CLUSTER: u32 = 10;

/// Flip one directed link every 300 ms for `period`, the links chosen by xorshift64 from
/// `seed` alone; (flips, most links down at once).
async fn flap(chaos: &Chaos, seed: u64, period: Duration) -> (u32, usize) {
    let mut rng = seed | 1;
    let links = chaos.links();
    let (mut flips, mut longest_down) = (0, 0);
    let until = Instant::now() + period;
    while Instant::now() < until {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let (from, to) = links[(rng % links.len() as u64) as usize];
        chaos.set(from, to, !chaos.is_up(from, to));
        flips += 1;
        let down = links.iter().filter(|(f, t)| !chaos.is_up(*f, *t)).count();
        longest_down = longest_down.max(down);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    (flips, longest_down)
}

/// Storm clients' credentials: 50 clients each, within a credential's 64 sessions.
const STORM_CREDENTIALS: usize = 6;
const STORM_CLIENTS: usize = 300;
const STORM_LEDGER: u32 = 0x57;
const STORM_TRANSFERS: u128 = 1_000;
const STORM_ACCOUNT: u128 = 0x5700_0000_0000_0001;
const STORM_TRANSFER: u128 = 0x5700_0000_0001_0000;

fn storm_secret(k: usize) -> String {
    format!("storm-credential-{k:02}-of-the-retry-storm-test")
}

/// The storm's transfers: created once before the storm, resent during it.
fn storm_transfers() -> Vec<Transfer> {
    (0..STORM_TRANSFERS)
        .map(|i| Transfer {
            id: STORM_TRANSFER + i,
            debit_account_id: STORM_ACCOUNT + i % 2,
            credit_account_id: STORM_ACCOUNT + (i + 1) % 2,
            amount: 1 + i,
            ledger: STORM_LEDGER,
            code: 1,
            ..Transfer::default()
        })
        .collect()
}

#[derive(Default)]
struct Storm {
    answered: AtomicU64,
    timed_out: AtomicU64,
    refused: AtomicU64,
    registrations_failed: AtomicU64,
    /// Why registrations failed: the first few distinct reasons, with counts.
    registration_errors: Mutex<BTreeMap<String, u64>>,
    /// Anything but `exists` for a transfer already stored: it was applied twice.
    applied_again: Mutex<Vec<String>>,
}

/// One storm client until `until`: resends a window of 50 already-stored transfers with a
/// 150 ms deadline (30 ms per attempt), and registers again whenever it has no session.
async fn storm_client(config: ClientConfig, n: usize, until: Instant, storm: Arc<Storm>) {
    let transfers = storm_transfers();
    let mut step = n as u64;
    while Instant::now() < until {
        let client = match Client::connect(config.clone()).await {
            Ok(client) => client,
            Err(error) => {
                storm.registrations_failed.fetch_add(1, Ordering::Relaxed);
                {
                    let mut reasons = storm.registration_errors.lock().expect("lock");
                    let reason = error.to_string();
                    if reasons.len() < 8 || reasons.contains_key(&reason) {
                        *reasons.entry(reason).or_default() += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        while Instant::now() < until {
            step = step
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let start = (step >> 33) as usize % (transfers.len() - 50);
            let window = &transfers[start..start + 50];
            let result = client.create_transfers(window).await.map(|failures| {
                let exists = failures
                    .iter()
                    .filter(|(_, result)| *result == EventResult::Exists)
                    .count();
                if exists != window.len() {
                    storm.applied_again.lock().expect("lock").push(format!(
                        "window at {start}: {exists} of 50 exist, answers {failures:?}"
                    ));
                }
            });
            match result {
                Ok(()) => storm.answered.fetch_add(1, Ordering::Relaxed),
                Err(ClientError::Deadline(..)) => storm.timed_out.fetch_add(1, Ordering::Relaxed),
                Err(_) => storm.refused.fetch_add(1, Ordering::Relaxed),
            };
        }
        client.close().await;
    }
}

/// Wait until every storm credential registers a session again, and say how long that took.
/// A storm may leave sessions behind (a registration the node completed after its client's
/// 150 ms deadline had passed), holding its own credentials' shares until idle for 60 s; the
/// next storm of the soak starts only once each credential registers. (That was the first
/// suspect for the soak's second storm failing to register at all; the cause was sessions
/// left on a follower by clients finding the leader: docs/reliability.md, "Bugs the soaks
/// found".)
async fn storm_credentials_free(cluster: &LocalCluster) -> Duration {
    let started = Instant::now();
    for k in 0..STORM_CREDENTIALS {
        loop {
            let mut config = ClientConfig::new(
                cluster.addrs(),
                cluster.cluster_id(),
                storm_secret(k).into_bytes(),
            )
            .with_tls(cluster.client_tls().expect("the local CA"));
            config.deadline = Duration::from_secs(2);
            if let Ok(client) = Client::connect(config).await {
                client.close().await;
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "storm credential {k} still refused after 180 s"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    started.elapsed()
}

/// Three hundred clients (six credentials) resending already-stored transfers with deadlines
/// of 150 ms, for 15 s, beside the checked load of a well-behaved client: every resent
/// transfer answers `exists` (none is applied twice), the storm's ledger keeps its totals, the
/// checked load passes C1–C9, and once the storm's clients are gone a new client registers on
/// every node at once (the storm left no sessions behind). Behind `TALLY_SOAK=1`, five storms
/// in a row, each beside its own checked load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_storm_of_three_hundred_clients_is_contained() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let mut config = format!("{FAST_RAFT}[gateway]\ncluster_id = \"0x1\"\n");
    for k in 0..STORM_CREDENTIALS {
        config.push_str(&format!(
            "[[gateway.credentials]]\nname = \"storm-{k}\"\nhash = \"{}\"\nrole = \"submitter\"\n",
            blake3::hash(storm_secret(k).as_bytes()).to_hex()
        ));
    }
    let mut cluster = local_cluster(root.path(), &config);
    cluster.found(&NODES).expect("started");
    cluster.wait_leader(LEADER_WAIT).await.expect("a leader");
    let operator = ClientConfig::new(
        cluster.addrs(),
        cluster.cluster_id(),
        cluster.operator_credential().to_vec(),
    )
    .with_tls(cluster.client_tls().expect("the local CA"));
    let setup = Client::connect(operator.clone()).await.expect("registered");
    let accounts: Vec<Account> = (0..2)
        .map(|i| Account {
            id: STORM_ACCOUNT + i,
            ledger: STORM_LEDGER,
            code: 1,
            ..Account::default()
        })
        .collect();
    assert!(setup
        .create_accounts(&accounts)
        .await
        .expect("accounts")
        .is_empty());
    assert!(setup
        .create_transfers(&storm_transfers())
        .await
        .expect("transfers")
        .is_empty());
    setup.close().await;
    let storm_total: u128 = storm_transfers().iter().map(|t| t.amount).sum();

    for round in 0..common::rounds(1, 5) {
        eprintln!("round {round}");
        if round > 0 {
            let waited = storm_credentials_free(&cluster).await;
            eprintln!("the storm's credentials register again after {waited:?}");
        }
        let load = checked_load(&cluster, &NODES, 22, 24 + round as u8 * 16);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let storm = Arc::new(Storm::default());
        let until = Instant::now() + Duration::from_secs(15);
        let clients: Vec<_> = (0..STORM_CLIENTS)
            .map(|n| {
                let mut config = ClientConfig::new(
                    cluster.addrs(),
                    cluster.cluster_id(),
                    storm_secret(n % STORM_CREDENTIALS).into_bytes(),
                )
                .with_tls(cluster.client_tls().expect("the local CA"));
                config.request_timeout = Duration::from_millis(30);
                config.deadline = Duration::from_millis(150);
                tokio::spawn(storm_client(config, n, until, Arc::clone(&storm)))
            })
            .collect();
        for client in clients {
            client.await.expect("a storm client");
        }
        eprintln!(
            "storm: {} answered, {} past their deadline, {} refused, {} registrations failed",
            storm.answered.load(Ordering::Relaxed),
            storm.timed_out.load(Ordering::Relaxed),
            storm.refused.load(Ordering::Relaxed),
            storm.registrations_failed.load(Ordering::Relaxed)
        );
        for (reason, count) in storm.registration_errors.lock().expect("lock").iter() {
            eprintln!("  registration failed {count} times: {reason}");
        }
        let longest = all_checks_pass(load).await;
        eprintln!("the well-behaved client's longest wait for one batch: {longest:?}");
        let applied_again = storm.applied_again.lock().expect("lock").clone();
        assert!(applied_again.is_empty(), "{applied_again:#?}");
        assert!(
            storm.answered.load(Ordering::Relaxed) > 0,
            "the storm never got through"
        );

        let states: BTreeMap<u64, _> = cluster.states(true).await;
        assert_eq!(states.len(), NODES.len(), "every node answers: {states:?}");
        for (id, state) in &states {
            let totals = state
                .ledger_totals
                .iter()
                .find(|totals| totals.ledger == STORM_LEDGER)
                .expect("the storm's ledger");
            assert_eq!(totals.debits_posted, storm_total, "node {id}");
            assert_eq!(totals.credits_posted, storm_total, "node {id}");
        }
    }
    for id in NODES {
        let mut config = ClientConfig::new(
            vec![cluster.addr(id).expect("a node")],
            cluster.cluster_id(),
            storm_secret(0).into_bytes(),
        )
        .with_tls(cluster.client_tls().expect("the local CA"));
        config.deadline = Duration::from_secs(1);
        let started = Instant::now();
        let client = Client::connect(config)
            .await
            .unwrap_or_else(|error| panic!("node {id} refuses a session after the storm: {error}"));
        eprintln!("node {id}: a new session in {:?}", started.elapsed());
        client.close().await;
    }
}

/// A replica whose disk fills up under load (its data directory is a 1 GiB file system, 8 GiB in the soak, room for
/// the whole run; a ballast file takes every free byte): its next WAL write fails with ENOSPC,
/// the WAL refuses every write after it and the node exits saying so, having acknowledged nothing it had not
/// made durable. The other two go on committing. Once the space is given back the node starts
/// again on its own files (the torn tail of the failed write cut, docs/wal.md), catches up,
/// and every check passes on all three. Behind `TALLY_SOAK=1`, five times in a row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_disk_fills_stops_and_recovers_when_space_returns() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let full = 3;
    let rounds = common::rounds(1, 5);
    let mut cluster = local_cluster(root.path(), FAST_RAFT);
    cluster.plan(&NODES).expect("planned");
    // Room for every round's data before the ballast takes the rest: 1 GiB for one round; 2 GiB
    // a round up to 8 GiB for the soak, whose node must also receive a snapshot of the grown
    // state after its restart (with 4 GiB its fifth round ran out again doing that, at 22M
    // events, and stopped as it should).
    let mib = if rounds == 1 {
        1024
    } else {
        2048 * u64::from(rounds.min(4))
    };
    let disk = SmallDisk::mount(&cluster.nodes[&full].dir.join("data"), mib);
    cluster.launch_through(full, disk.launcher());
    cluster.found(&NODES).expect("started");
    cluster.wait_leader(LEADER_WAIT).await.expect("a leader");
    for round in 0..rounds {
        let load = checked_load(&cluster, &NODES, 30, 25 + round as u8 * 16);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let told_before = std::fs::read_to_string(cluster.nodes[&full].log_path())
            .unwrap_or_default()
            .matches("No space left on device")
            .count();
        let taken = disk.fill();
        eprintln!(
            "round {round}: node {full}'s disk filled: the ballast took {} MiB",
            taken >> 20
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = cluster.nodes.get_mut(&full).expect("a node").exited() {
                break status;
            }
            assert!(Instant::now() < deadline, "node {full} runs on a full disk");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let log = std::fs::read_to_string(cluster.nodes[&full].log_path()).expect("its log");
        assert!(
            !status.success(),
            "a node that cannot write exits non-zero: {status}"
        );
        assert!(
            log.matches("No space left on device").count() > told_before,
            "the log names the full disk:\n{log}"
        );
        eprintln!("node {full} exited ({status}) naming the full disk");
        tokio::time::sleep(Duration::from_secs(4)).await;
        disk.free();
        cluster.kill(full).expect("reaped");
        cluster.start(full).expect("restarted");
        let leader = follows(&cluster, full).await;
        eprintln!("node {full} is back on its own files, following node {leader}");
        let longest = all_checks_pass(load).await;
        eprintln!("longest wait for one batch: {longest:?}");
    }
}
