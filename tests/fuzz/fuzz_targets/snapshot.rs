//! cargo-fuzz entry of the `snapshot` target; what it checks: `tally_fuzz::snapshot`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tally_fuzz::snapshot(data));
