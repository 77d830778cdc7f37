//! `tally`: one binary for every role. Subcommands arrive with their issues: `node` (replication),
//! `client` (gateway), `loadgen` and `demo` (load generator). Until then it says so plainly.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version" | "version") => {
            println!("tally {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!(
                "tally: unknown subcommand {other:?}. This build has the settlement engine only; \
                 `node`, `client`, `loadgen` and `demo` are not built yet."
            );
            ExitCode::from(2)
        }
        None => {
            println!(
                "tally {}: settlement ledger. Subcommands: version.\n\
                 The engine is a library (crate tally-engine); run the tests with `bash .ci/run`.",
                env!("CARGO_PKG_VERSION")
            );
            ExitCode::SUCCESS
        }
    }
}
