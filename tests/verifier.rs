//! The two verifiers against the same files: `tally verify` (Rust, the product's own code) and
//! the independent one in `verifier/` (Python 3, standard library only, no code shared). A
//! bundle of signed checkpoints and proofs, as a client keeps it, verifies with both; each
//! tampering is refused by both, naming what does not verify.

use std::path::Path;
use std::process::Command;

use tally::verify::{hex, Bundle, ConsistencyStep, EventProof};
use tally_engine::checkpoint::{Checkpoint, NoteSigner};
use tally_engine::merkle::{leaf_hash, Tree};

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

/// (exit code, output) of `tally verify` and of the independent verifier on `bundle`.
fn both(dir: &Path, key: &str, bundle: &Bundle) -> [(i32, String); 2] {
    let path = dir.join("bundle.json");
    std::fs::write(&path, serde_json::to_vec_pretty(bundle).unwrap()).unwrap();
    let key_file = dir.join("cluster.vkey");
    std::fs::write(&key_file, key).unwrap();
    let rust = Command::new(env!("CARGO_BIN_EXE_tally"))
        .arg("verify")
        .arg("--key")
        .arg(&key_file)
        .arg(&path)
        .output()
        .expect("tally verify");
    let python = Command::new("python3")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .arg(verifier_dir().join("tally_verify.py"))
        .arg("--key")
        .arg(&key_file)
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
    for (code, out) in both(dir.path(), &key, &honest) {
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
    let note = &bundle.checkpoints[2];
    let at = note.rfind(' ').unwrap() + 20;
    let mut bytes = note.clone().into_bytes();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    bundle.checkpoints[2] = String::from_utf8(bytes).unwrap();
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
        for (code, out) in both(dir.path(), &key, &bundle) {
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
