//! Helpers shared by the multi-process tests.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::path::Path;
use std::time::{Duration, Instant};

use tally::local_cluster::LocalCluster;

/// How long a test waits for a cluster to agree on a leader.
pub const LEADER_WAIT: Duration = Duration::from_secs(30);

/// The default timings (elections within 1–2 s) and small WAL segments.
pub const FAST_RAFT: &str = "[raft]\n[wal]\nsegment_mib = 16\n";

/// Run the `tally` binary with `args` and the environment `envs`: its exit code, standard
/// output and standard error.
pub fn tally_cli<V: AsRef<std::ffi::OsStr>>(
    args: &[&str],
    envs: &[(&str, V)],
) -> (i32, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_ref())))
        .output()
        .expect("tally runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Wait until a node other than `old` leads (as that node itself reports); its id.
pub async fn another_leader(cluster: &LocalCluster, old: u64) -> u64 {
    let deadline = Instant::now() + LEADER_WAIT;
    loop {
        let states = cluster.states(false).await;
        let leader = states
            .iter()
            .find(|(id, state)| **id != old && state.role == "Leader")
            .map(|(id, _)| *id);
        if let Some(leader) = leader {
            return leader;
        }
        assert!(Instant::now() < deadline, "no leader but {old}: {states:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait until node `id` follows a leader other than itself; that leader.
pub async fn follows(cluster: &LocalCluster, id: u64) -> u64 {
    let deadline = Instant::now() + LEADER_WAIT;
    loop {
        let states = cluster.states(false).await;
        let state = states.get(&id);
        if let Some(leader) = state
            .filter(|state| state.role == "Follower")
            .and_then(|state| state.leader)
            .filter(|leader| *leader != id)
        {
            return leader;
        }
        assert!(
            Instant::now() < deadline,
            "node {id} follows nobody: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many times a fault test repeats its fault: `default` in the default test run, `soak`
/// behind `TALLY_SOAK=1` (docs/reliability.md counts both).
pub fn rounds(default: u32, soak: u32) -> u32 {
    if std::env::var("TALLY_SOAK").as_deref() == Ok("1") {
        soak
    } else {
        default
    }
}

/// A cluster of this build's `tally` binary under `root`; `extra_config` goes into every
/// node's config file.
pub fn local_cluster(root: &Path, extra_config: &str) -> LocalCluster {
    LocalCluster::new(Path::new(env!("CARGO_BIN_EXE_tally")), root, extra_config)
}

/// The history checks every load with `--check` reports (docs/faults.md).
pub const CHECKS: [&str; 9] = ["C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9"];

/// Assert that `report` (the output of `tally loadgen --check` or `tally demo`) has a line for
/// each of [`CHECKS`] and that each says PASS.
pub fn assert_checks_pass(report: &str) {
    for check in CHECKS {
        let line = report
            .lines()
            .find(|line| line.trim_start().starts_with(&format!("{check} ")))
            .unwrap_or_else(|| panic!("no {check} line:\n{report}"));
        assert!(line.contains("PASS"), "{line}\n{report}");
    }
}

/// `tally loadgen` against the nodes `ids` of the running `cluster`, as a child process:
/// writes through the gateway (over the cluster's TLS), and with `check` reads every listed
/// replica back at the end and runs the history checks.
pub fn start_load(
    cluster: &tally::local_cluster::LocalCluster,
    ids: &[u64],
    seconds: u64,
    check: bool,
) -> std::process::Child {
    let addrs: Vec<String> = ids
        .iter()
        .map(|id| cluster.addr(*id).expect("node"))
        .collect();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tally"));
    command
        .args([
            "loadgen",
            "--cluster",
            &addrs.join(","),
            "--cluster-id",
            "0x1",
            "--seconds",
            &seconds.to_string(),
            "--accounts",
            "1000",
            "--batch-events",
            "500",
            "--clients",
            "4",
        ])
        .envs(cluster.client_env())
        .env(
            "TALLY_CREDENTIAL",
            String::from_utf8_lossy(cluster.operator_credential()).as_ref(),
        )
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if check {
        command.arg("--check");
    }
    command.spawn().expect("tally loadgen starts")
}

/// Wait for a load started by [`start_load`] and return its report; it must have succeeded.
pub fn finish_load(load: std::process::Child) -> String {
    let output = load.wait_with_output().expect("loadgen ends");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "tally loadgen failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

pub mod chaos;
pub mod checked;
pub mod disk;
