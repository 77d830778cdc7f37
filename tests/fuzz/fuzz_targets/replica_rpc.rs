//! cargo-fuzz entry of the `replica_rpc` target; what it checks: `tally_fuzz::replica_rpc`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tally_fuzz::replica_rpc(data));
