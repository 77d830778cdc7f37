//! cargo-fuzz entry of the `wal_recovery` target; what it checks: `tally_fuzz::wal_recovery`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tally_fuzz::wal_recovery(data));
