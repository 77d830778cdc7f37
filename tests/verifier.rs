//! The two verifiers against the same files: `tally verify` (Rust, the product's own code) and
//! the independent one in `verifier/` (Python 3, standard library only, no code shared). A
//! bundle of signed checkpoints and proofs, as a client keeps it, verifies with both; each
//! tampering is refused by both, naming what does not verify.

use std::path::Path;
use std::process::Command;

use tally::verify::{hex, Bundle, ConsistencyStep, EventProof};
use tally_engine::checkpoint::{Checkpoint, NoteSigner};
use tally_engine::merkle::{leaf_hash, Tree};
use tally_engine::witness::AddCheckpoint;

const ORIGIN: &str = "tally/cluster-0x7a11";

fn verifier_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/verifier"))
}

/// The independent verifier's own tests: RFC 6962's and RFC 8032's vectors.
#[test]
fn the_independent_verifier_passes_its_tests() {
    let out = Command::new("python3")
        .args(["-m", "unittest", "-v"])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(verifier_dir())
        .output()
        .expect("python3 runs (installed by .ci/run's set-up)");
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("Ran 3 tests"), "{report}");
}

fn leaves(n: u64, rewritten: Option<u64>) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let text = if Some(i) == rewritten {
                format!("event {i}: amount 5000")
            } else {
                format!("event {i}: amount 100")
            };
            text.into_bytes()
        })
        .collect()
}

fn tree(leaves: &[Vec<u8>]) -> Tree {
    let mut tree = Tree::new();
    for leaf in leaves {
        tree.push(leaf_hash(leaf));
    }
    tree
}

fn checkpoint(signer: &NoteSigner, tree: &Tree, size: u64) -> String {
    let checkpoint = Checkpoint {
        origin: ORIGIN.to_owned(),
        size,
        root: tree.root(size).expect("a size the tree has"),
        time_ns: 1_796_000_000_000_000_000 + size,
    };
    signer.sign(&checkpoint.text()).expect("signed")
}

fn proof(hashes: Vec<[u8; 32]>) -> Vec<String> {
    hashes.iter().map(|h| hex(h)).collect()
}

const SIZES: [u64; 3] = [100, 577, 1000];
const EVENTS: [(u64, usize); 5] = [(0, 0), (99, 0), (500, 1), (576, 1), (999, 2)];

/// An honest bundle: checkpoints at 100, 577 and 1000 events, joined by consistency proofs,
/// and five events with their inclusion proofs.
fn honest(signer: &NoteSigner) -> Bundle {
    let leaves = leaves(1000, None);
    let tree = tree(&leaves);
    Bundle {
        checkpoints: SIZES
            .iter()
            .map(|&s| checkpoint(signer, &tree, s))
            .collect(),
        consistency: (1..SIZES.len())
            .map(|i| ConsistencyStep {
                old: i - 1,
                new: i,
                proof: proof(tree.consistency_proof(SIZES[i - 1], SIZES[i]).unwrap()),
            })
            .collect(),
        events: EVENTS
            .iter()
            .map(|&(index, at)| EventProof {
                leaf: hex(&leaves[index as usize]),
                index,
                checkpoint: at,
                proof: proof(tree.inclusion_proof(index, SIZES[at]).unwrap()),
            })
            .collect(),
    }
}

/// Change one hex digit of `text` at `at` (to another hex digit).
fn change_hex(text: &mut String, at: usize) {
    let c = text.as_bytes()[at];
    let changed = if c == b'0' { '1' } else { '0' };
    text.replace_range(at..at + 1, &changed.to_string());
}

/// Change one base64 character of the note's last signature line, `at` characters into it.
fn change_last_signature(note: &mut String, at: usize) {
    let at = note.rfind(' ').unwrap() + at;
    let changed = if note.as_bytes()[at] == b'A' {
        "B"
    } else {
        "A"
    };
    note.replace_range(at..at + 1, changed);
}

/// (exit code, output) of `tally verify` and of the independent verifier on `bundle`, each
/// checkpoint required to carry the cosignature of every one of `witnesses`.
fn both(dir: &Path, key: &str, witnesses: &[&str], bundle: &Bundle) -> [(i32, String); 2] {
    let path = dir.join("bundle.json");
    std::fs::write(&path, serde_json::to_vec_pretty(bundle).unwrap()).unwrap();
    let key_file = dir.join("cluster.vkey");
    std::fs::write(&key_file, key).unwrap();
    let witness_args: Vec<&str> = witnesses.iter().flat_map(|w| ["--witness", w]).collect();
    let rust = Command::new(env!("CARGO_BIN_EXE_tally"))
        .arg("verify")
        .arg("--key")
        .arg(&key_file)
        .args(&witness_args)
        .arg(&path)
        .output()
        .expect("tally verify");
    let python = Command::new("python3")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .arg(verifier_dir().join("tally_verify.py"))
        .arg("--key")
        .arg(&key_file)
        .args(&witness_args)
        .arg(&path)
        .output()
        .expect("python3");
    [rust, python].map(|out| {
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    })
}

#[test]
fn both_verifiers_accept_honest_proofs_and_refuse_every_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let signer = NoteSigner::new(ORIGIN, &[42; 32]).unwrap();
    let key = signer.verifier_key();
    assert_eq!(
        key, "tally/cluster-0x7a11+e7d5df65+ARl/ayPhbIUyxqvIOPrNXqeJvgx2spIDNAOb+os9No1h",
        "the example key in docs/verifiability.md"
    );
    let honest = honest(&signer);
    for (code, out) in both(dir.path(), &key, &[], &honest) {
        assert_eq!(code, 0, "{out}");
        assert!(
            out.starts_with("OK: 3 checkpoints (sizes 100, 577, 1000)"),
            "{out}"
        );
        assert!(out.contains("5 events included"), "{out}");
    }

    let mut cases: Vec<(&str, Bundle, &str)> = Vec::new();
    let mut bundle = honest.clone();
    change_hex(&mut bundle.events[2].leaf, 6);
    cases.push(("one byte of an event", bundle, "event 2"));

    let mut bundle = honest.clone();
    change_hex(&mut bundle.events[4].proof[3], 10);
    cases.push(("one byte of an inclusion proof", bundle, "event 4"));

    let mut bundle = honest.clone();
    change_hex(&mut bundle.consistency[1].proof[0], 0);
    cases.push((
        "one byte of a consistency proof",
        bundle,
        "consistency step 1",
    ));

    let mut bundle = honest.clone();
    bundle.checkpoints[1] = bundle.checkpoints[1].replacen("577", "578", 1);
    cases.push(("one byte of a checkpoint", bundle, "checkpoint 1"));

    let mut bundle = honest.clone();
    change_last_signature(&mut bundle.checkpoints[2], 20);
    cases.push(("one byte of a signature", bundle, "checkpoint 2"));

    let mut bundle = honest.clone();
    let impostor = NoteSigner::new(ORIGIN, &[43; 32]).unwrap();
    bundle.checkpoints[1] = checkpoint(&impostor, &tree(&leaves(1000, None)), 577);
    cases.push(("a checkpoint signed by another key", bundle, "checkpoint 1"));

    // History rewritten after checkpoint 1: event 50 changed, the tree rebuilt and the new
    // head honestly signed by the cluster's own key. Only the consistency proof can tell.
    let mut bundle = honest.clone();
    let rewritten = tree(&leaves(1000, Some(50)));
    bundle.checkpoints[2] = checkpoint(&signer, &rewritten, 1000);
    bundle.consistency[1].proof = proof(rewritten.consistency_proof(577, 1000).unwrap());
    bundle.events.truncate(4);
    cases.push((
        "a checkpoint that rewrites history",
        bundle,
        "consistency step 1",
    ));

    let mut bundle = honest.clone();
    bundle.consistency.remove(0);
    cases.push(("a checkpoint joined to nothing", bundle, "checkpoint 1"));

    for (what, bundle, names) in cases {
        for (code, out) in both(dir.path(), &key, &[], &bundle) {
            assert_eq!(code, 1, "{what}: {out}");
            assert!(out.contains(&format!("FAILED {names}")), "{what}: {out}");
        }
    }

    // Input that is not a bundle or a key at all: exit 2, nothing verified.
    std::fs::write(dir.path().join("bundle.json"), b"not json").unwrap();
    for program in [env!("CARGO_BIN_EXE_tally").to_owned(), "python3".to_owned()] {
        let mut command = Command::new(&program);
        if program == "python3" {
            command.arg(verifier_dir().join("tally_verify.py"));
        } else {
            command.arg("verify");
        }
        let out = command
            .arg("--key")
            .arg(&key)
            .arg(dir.path().join("bundle.json"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{program}");
    }
}

/// `tally witness` run with `args`: (exit code, standard output, standard error).
fn witness(args: &[&str], dir: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tally"))
        .arg("witness")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("tally witness");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Ask the witness to cosign `note`, extending `old`; the tree gives the consistency proof.
fn add_checkpoint(
    dir: &Path,
    log_key: &str,
    tree: &Tree,
    old: u64,
    note: &str,
) -> (i32, String, String) {
    let size = Checkpoint::parse(tally_engine::checkpoint::note_text(note).unwrap())
        .unwrap()
        .size;
    let request = AddCheckpoint {
        old_size: old,
        proof: if old == 0 {
            Vec::new()
        } else {
            tree.consistency_proof(old, size).unwrap()
        },
        note: note.to_owned(),
    };
    std::fs::write(dir.join("request"), request.text()).unwrap();
    witness(
        &[
            "add-checkpoint",
            "--key-file",
            "witness.key",
            "--log-key",
            log_key,
            "--state",
            "witness.json",
            "request",
        ],
        dir,
    )
}

/// A witness cosigns each checkpoint of an honest history, and both verifiers then require its
/// cosignature; a checkpoint that rewrites what the witness saw is refused loudly and never
/// cosigned, and the witness's record stays where it was.
#[test]
fn a_witness_cosigns_history_and_refuses_a_rewrite() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let signer = NoteSigner::new(ORIGIN, &[42; 32]).unwrap();
    let key = signer.verifier_key();
    let (code, witness_key, err) = witness(
        &[
            "new-key",
            "--name",
            "witness.example/auditor",
            "--key-file",
            "witness.key",
        ],
        dir,
    );
    assert_eq!(code, 0, "{err}");
    let witness_key = witness_key.trim().to_owned();
    assert!(
        witness_key.starts_with("witness.example/auditor+"),
        "{witness_key}"
    );
    // The key file is the owner's alone, and never overwritten.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("witness.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (code, _, _) = witness(
        &[
            "new-key",
            "--name",
            "witness.example/other",
            "--key-file",
            "witness.key",
        ],
        dir,
    );
    assert_eq!(code, 2, "an existing key file is not overwritten");

    // Cosign the honest history step by step.
    let honest_leaves = leaves(1000, None);
    let honest_tree = tree(&honest_leaves);
    let mut bundle = honest(&signer);
    let mut old = 0;
    for (i, &size) in SIZES.iter().enumerate() {
        let note = bundle.checkpoints[i].clone();
        let (code, line, err) = add_checkpoint(dir, &key, &honest_tree, old, &note);
        assert_eq!(code, 0, "size {size}: {err}");
        assert!(
            line.starts_with("\u{2014} witness.example/auditor "),
            "{line}"
        );
        bundle.checkpoints[i] = format!("{note}{line}");
        old = size;
    }
    for (code, out) in both(dir, &key, &[&witness_key], &bundle) {
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("cosigned by witness.example/auditor"), "{out}");
    }
    // Without the cosignature, or with one byte of it changed, neither verifier accepts it.
    let mut uncosigned = bundle.clone();
    uncosigned.checkpoints[1] = honest(&signer).checkpoints[1].clone();
    let mut altered = bundle.clone();
    change_last_signature(&mut altered.checkpoints[2], 30);
    for (what, bundle, names) in [
        ("no cosignature", uncosigned, "checkpoint 1"),
        ("one byte of a cosignature", altered, "checkpoint 2"),
    ] {
        for (code, out) in both(dir, &key, &[&witness_key], &bundle) {
            assert_eq!(code, 1, "{what}: {out}");
            assert!(out.contains(&format!("FAILED {names}")), "{what}: {out}");
        }
    }

    // The log rewrites event 300 after the witness saw size 1000, signs the rewritten tree
    // honestly with its own key and proves consistency from its own (rewritten) past.
    let rewritten = tree(&leaves(1200, Some(300)));
    let note = checkpoint(&signer, &rewritten, 1200);
    let (code, _, err) = add_checkpoint(dir, &key, &rewritten, 1000, &note);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("REFUSED 422"), "{err}");
    // Claiming an older size than the witness's is a conflict; it answers with its own.
    let (code, out, err) = add_checkpoint(dir, &key, &rewritten, 577, &note);
    assert_eq!((code, out.trim()), (1, "1000"), "{err}");
    assert!(err.contains("REFUSED 409"), "{err}");
    // Another key under the cluster's name: not signed by a key the witness trusts.
    let impostor = NoteSigner::new(ORIGIN, &[43; 32]).unwrap();
    let forged = checkpoint(&impostor, &tree(&leaves(1200, None)), 1200);
    let (code, _, err) = add_checkpoint(dir, &key, &tree(&leaves(1200, None)), 1000, &forged);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("REFUSED 403"), "{err}");
    // None of that moved the witness: its latest is still the honest 1000, which the honest
    // continuation extends.
    let (code, latest, _) = witness(&["latest", "--state", "witness.json"], dir);
    assert_eq!(code, 0);
    assert!(latest.starts_with(&format!("{ORIGIN}\n1000\n")), "{latest}");
    let honest_more = tree(&leaves(1200, None));
    let note = checkpoint(&signer, &honest_more, 1200);
    let (code, _, err) = add_checkpoint(dir, &key, &honest_more, 1000, &note);
    assert_eq!(code, 0, "{err}");
}
