//! `tally demo` end to end, as a user runs it: a local 3-node cluster (real processes), a few
//! seconds of mixed load (transfers, trades, pending/post pairs, deliberate failures), the
//! report, and every history check of docs/faults.md passing on every replica.

mod common;

use std::process::Command;

/// Proves the demo works from a fresh start, in the real configuration: it exits successfully,
/// says it runs TLS on both networks, prints the report, and C1, C3, C4, C5, C6 and C8 all
/// PASS (a FAIL makes the demo exit non-zero).
#[test]
fn short_demo_passes_every_check() {
    let output = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["demo", "--seconds", "4", "--accounts", "2000"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("the tally binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "demo failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    common::assert_checks_pass(&stdout);
    for expected in [
        "events/s",
        "total",
        "trades",
        "post_void",
        "tally admin --node",
        "/metrics",
        "COMMITTED",
        "leader: ",
        "TLS on both networks",
        "TALLY_CA=",
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in:\n{stdout}");
    }
}
