//! The Python client's own tests (clients/python/tests, pytest) in the default test run:
//! against real nodes of this build's `tally` binary, which they start and stop themselves,
//! they cover every gateway operation, the refusals, a failover retried under the same
//! request number, bad input, and docs/records.md against the client's record layouts.

use std::path::Path;
use std::process::Command;

/// Tests install nothing: `.ci/run` installs pytest (and the client, editable) first.
const PYTEST_MISSING: &str = "pytest does not run in target/python-tools: install it with \
    `bash deploy/local/install-python.sh` (`.ci/run` does this before the tests)";

/// Every pytest test of the client passes, and none is skipped (a skipped test would be
/// counted as passed).
#[test]
fn the_python_client_passes_its_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("target/python-tools/bin/python");
    let probe = Command::new(&python)
        .args(["-m", "pytest", "--version"])
        .output();
    assert!(
        probe.is_ok_and(|out| out.status.success()),
        "{PYTEST_MISSING}"
    );
    let out = Command::new(&python)
        .args([
            "-m",
            "pytest",
            "clients/python/tests",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
        ])
        .env("TALLY_BIN", env!("CARGO_BIN_EXE_tally"))
        .env("PYTHONPATH", root.join("clients/python/src"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(root)
        .output()
        .expect(PYTEST_MISSING);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = report.lines().next_back().unwrap_or_default();
    assert!(
        summary.contains(" passed") && !summary.contains("skipped"),
        "{report}"
    );
}
