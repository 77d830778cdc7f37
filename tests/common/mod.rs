//! Helpers shared by the multi-process tests.

#![allow(dead_code)] // Each test binary uses a different subset.

/// The history checks every load with `--check` reports (../shared/FAULTS.md).
pub const CHECKS: [&str; 6] = ["C1", "C3", "C4", "C5", "C6", "C8"];

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
