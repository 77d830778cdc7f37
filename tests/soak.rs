//! The fixed-rate soak (behind `TALLY_SOAK=1`, not in the default run): 16,667 transfers/s for
//! 600 s against a local 3-node cluster, open loop (latency from each batch's intended send
//! time), with the history checks at the end. docs/performance.md has the 60 s figures.

use std::process::Command;

/// Proves a long fixed-rate run makes no errors and passes every history check; prints the
/// latency percentiles, which docs/performance.md compares with the 5 ms p99 target.
#[test]
fn fixed_rate_soak() {
    if std::env::var("TALLY_SOAK").as_deref() != Ok("1") {
        eprintln!("fixed_rate_soak: set TALLY_SOAK=1 to run the 600 s soak");
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let json = dir.path().join("soak.json");
    let output = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args([
            "loadgen",
            "--spawn",
            "3",
            "--rate",
            "16667",
            "--batch-events",
            "100",
        ])
        .args(["--seconds", "600", "--check", "--json"])
        .arg(&json)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the tally binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "soak failed:\n{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("report written"))
            .expect("report is JSON");
    let total = report["operations"]
        .as_array()
        .and_then(|rows| rows.last())
        .expect("a total row");
    assert_eq!(total["errors"], 0, "{total}");
    println!("soak total: {total}");
}
