//! Style and architecture rules that are cheaper to enforce with a test than to remember.
//! Each rule says why; see ARCHITECTURE.md ("Architecture invariants").

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, recursively, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The part of a source file before its first `#[cfg(test)]`: test modules sit at the end.
fn non_test_code(path: &Path) -> String {
    // A `*_tests.rs` file is a test module of its own (`#[cfg(test)] #[path = …] mod tests;`).
    if path
        .file_name()
        .is_some_and(|name| name.to_string_lossy().ends_with("_tests.rs"))
    {
        return String::new();
    }
    let text = std::fs::read_to_string(path).expect("source file is readable");
    match text.find("#[cfg(test)]") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

fn crates_with_lib() -> Vec<&'static str> {
    [
        "engine",
        "raft",
        "gateway",
        "gateway/wire",
        "gateway/client",
        "benches",
        "loadgen",
    ]
    .into_iter()
    .filter(|c| root().join(c).join("src/lib.rs").exists())
    .collect()
}

/// Proves every crate's lib.rs opens with at least three lines of crate docs (what it owns,
/// its entry point, what it must not do), so a newcomer can read the code map from the code.
#[test]
fn every_crate_opens_with_docs() {
    for krate in crates_with_lib() {
        let text =
            std::fs::read_to_string(root().join(krate).join("src/lib.rs")).expect("readable");
        let doc_lines = text.lines().take_while(|l| l.starts_with("//!")).count();
        assert!(
            doc_lines >= 3,
            "{krate}/src/lib.rs opens with {doc_lines} doc lines, want >= 3"
        );
    }
}

/// Proves the engine stays sans-IO and deterministic: no files, sockets, clocks, randomness,
/// threads or std hash maps (whose iteration order is random) in its code.
#[test]
fn engine_is_sans_io() {
    let forbidden = [
        "std::fs",
        "std::net",
        "std::time",
        "Instant",
        "SystemTime",
        "std::thread",
        "rand::",
        "std::collections::HashMap",
        "std::collections::HashSet",
        "tokio",
    ];
    for path in rust_files(&root().join("engine/src")) {
        let code = non_test_code(&path);
        for word in forbidden {
            assert!(!code.contains(word), "{} uses {word}", path.display());
        }
    }
}

/// Proves engine, raft, gateway and loadgen code outside tests never calls `unwrap()`: a failure there must say
/// what broke (`expect` with the invariant) or be handled.
#[test]
fn no_unwrap_outside_tests() {
    for krate in [
        "engine",
        "raft",
        "gateway",
        "gateway/wire",
        "gateway/client",
        "loadgen",
    ] {
        for path in rust_files(&root().join(krate).join("src")) {
            let code = non_test_code(&path);
            assert!(
                !code.contains(".unwrap()"),
                "{} calls unwrap()",
                path.display()
            );
        }
    }
}

/// Proves only `raft/` (and benchmarks' /proc reads) touch the file system among the library
/// crates, as ARCHITECTURE.md promises.
#[test]
fn only_raft_touches_the_disk() {
    for krate in ["engine", "gateway", "loadgen"] {
        for path in rust_files(&root().join(krate)) {
            let code = non_test_code(&path);
            for word in ["std::fs", "File::", "OpenOptions"] {
                assert!(!code.contains(word), "{} uses {word}", path.display());
            }
        }
    }
}

/// Proves no engine source file grows past ~800 lines (past that it is two concepts).
#[test]
fn files_stay_small() {
    for krate in crates_with_lib() {
        for path in rust_files(&root().join(krate).join("src")) {
            let lines = std::fs::read_to_string(&path)
                .expect("readable")
                .lines()
                .count();
            assert!(lines <= 850, "{} has {lines} lines", path.display());
        }
    }
}

/// Proves ARCHITECTURE.md's code map names every top-level crate folder.
#[test]
fn architecture_names_every_crate() {
    let map =
        std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md exists");
    for folder in [
        "engine/",
        "raft/",
        "gateway/",
        "gateway/wire/",
        "gateway/client/",
        "loadgen/",
        "benches/",
        "deploy/",
    ] {
        assert!(
            map.contains(folder),
            "ARCHITECTURE.md does not mention {folder}"
        );
    }
}

/// Proves the client library carries no server: `cargo tree` of `tally-client` (what an
/// embedder links) names neither openraft, io-uring, prometheus, `tally-raft` nor
/// `tally-gateway`, so it builds wherever Rust and ring do, not only on Linux with io_uring.
#[test]
fn client_crate_has_no_server_stack() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = std::process::Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-p",
            "tally-client",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .current_dir(root())
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8_lossy(&output.stdout);
    assert!(
        tree.contains("tally-client") && tree.contains("tally-wire"),
        "{tree}"
    );
    for server in [
        "openraft",
        "io-uring",
        "prometheus",
        "tally-raft",
        "tally-gateway",
    ] {
        assert!(
            !tree
                .lines()
                .any(|line| line.starts_with(&format!("{server} "))),
            "tally-client depends on {server}:\n{tree}"
        );
    }
}

/// Proves no crate but `raft` dials a replica or speaks a replica RPC: the peer network's
/// client (`Network`, `PeerClient`) and its messages (`net::rpc`) are named only under
/// `raft/src` (tests that play a stranger on the peer port are the exception, by design).
#[test]
fn only_raft_opens_peer_connections() {
    for dir in ["engine/src", "gateway", "loadgen/src", "src", "benches"] {
        for path in rust_files(&root().join(dir)) {
            let code = non_test_code(&path);
            for word in ["PeerClient", "Network::new", "net::rpc", "peer_client"] {
                assert!(!code.contains(word), "{} uses {word}", path.display());
            }
        }
    }
}
