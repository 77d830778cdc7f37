//! The fuzz targets' regression run (docs/reliability.md, "Fuzzing"): every input kept in
//! `tests/fuzz/corpus/<target>/` — the seeds, what the fuzzer found interesting, and every
//! input that once crashed a target (named `crash-*`, kept after the fix) — and every seed
//! built from today's encoders goes through its target, which must neither panic nor break its
//! round-trip checks.

#[path = "fuzz/src/lib.rs"]
mod targets;

/// Proves every corpus file of every target passes it, and that each target has a corpus.
#[test]
fn every_kept_fuzz_input_passes_its_target() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus");
    for (name, target) in targets::TARGETS {
        let dir = corpus.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
            .map(|entry| entry.expect("a corpus entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{name} has no corpus");
        for file in &files {
            let bytes = std::fs::read(file).expect("a corpus file");
            let outcome = std::panic::catch_unwind(|| target(&bytes));
            assert!(outcome.is_ok(), "{name} fails on {}", file.display());
        }
        eprintln!("{name}: {} inputs replayed", files.len());
    }
}

/// Proves the seeds built from today's encoders (valid messages, entries, a real segment, a
/// real snapshot) pass their targets, and that there is at least one for every target.
#[test]
fn todays_seeds_pass_their_targets() {
    let seeds = targets::seeds();
    for (name, target) in targets::TARGETS {
        let mine: Vec<_> = seeds.iter().filter(|(t, _, _)| *t == name).collect();
        assert!(!mine.is_empty(), "no seed for {name}");
        for (_, seed, bytes) in mine {
            let outcome = std::panic::catch_unwind(|| target(bytes));
            assert!(outcome.is_ok(), "{name} fails on its seed {seed}");
        }
    }
}
