//! cargo-fuzz entry of the `gateway` target; what it checks: `tally_fuzz::gateway`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tally_fuzz::gateway(data));
