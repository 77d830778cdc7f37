//! cargo-fuzz entry of the `wal_entry` target; what it checks: `tally_fuzz::wal_entry`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tally_fuzz::wal_entry(data));
