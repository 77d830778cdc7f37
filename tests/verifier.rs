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

/// Tests install nothing: `.ci/run` installs Python 3 before the tests.
const PYTHON_MISSING: &str = "python3 does not run: install it with \
    `bash deploy/local/install-python.sh` (`.ci/run` does this before the tests)";

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
        .expect(PYTHON_MISSING);
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
        .expect(PYTHON_MISSING);
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

/// `tally` run with `args` and `envs`: (exit code, standard output, standard error).
fn tally(args: &[&str], envs: &[(&str, String)], dir: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(args)
        .envs(envs.iter().map(|(name, value)| (*name, value.as_str())))
        .current_dir(dir)
        .output()
        .expect("tally runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What `tally client` needs to reach `cluster` (id 0x7a11) as the credential `secret`.
fn cli_env(
    cluster: &tally::local_cluster::LocalCluster,
    secret: &str,
) -> Vec<(&'static str, String)> {
    let ca = cluster.pki_dir().expect("a TLS cluster").join("ca.pem");
    vec![
        ("TALLY_CLUSTER", cluster.addrs().join(",")),
        ("TALLY_CLUSTER_ID", "0x7a11".to_owned()),
        ("TALLY_CREDENTIAL", secret.to_owned()),
        ("TALLY_CA", ca.display().to_string()),
    ]
}

/// The latest checkpoint once it covers at least `size` events (the leader signs one within
/// about a second of events committing).
async fn checkpoint_covering(client: &tally_client::Client, size: u64) -> (u64, u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match client.checkpoint(tally_client::proofs::LATEST).await {
            Ok(checkpoint) if checkpoint.size >= size => {
                return (checkpoint.index, checkpoint.size)
            }
            other => assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint of {size} events within 20 s: {other:?}"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Events written through a real 3-node cluster whose nodes hold the cluster's key: the leader
/// signs checkpoints of the log every replica computes (they keep them only if the root is
/// their own, and their digests, which cover the log, agree); a reader scoped to ledger 1
/// writes a proof bundle with `tally client lookup-transfers --prove`, and both verifiers
/// accept it — and refuse it with one byte of a leaf or a signature changed, or against
/// another key. Every leaf holds the record the lookup returns, where it was applied and its
/// result. A witness then cosigns the cluster's checkpoints as the log grows, fed by
/// `tally client checkpoint --witness-old`.
/// A 3-node cluster (cluster id 0x7a11) in `dir` whose nodes sign checkpoints with the key
/// `cluster.key` there (`ORIGIN`, seed 7), `config` added to each node's; returns it with the
/// signer once it has a leader.
async fn signed_cluster(
    dir: &Path,
    config: &str,
) -> (tally::local_cluster::LocalCluster, NoteSigner) {
    let signer = NoteSigner::new(ORIGIN, &[7; 32]).unwrap();
    std::fs::write(dir.join("cluster.key"), signer.private_key()).unwrap();
    let config = format!(
        "[raft]\n[verifiable]\nkey_file = \"{}\"\n{config}",
        dir.join("cluster.key").display()
    );
    let mut cluster = tally::local_cluster::LocalCluster::new(
        Path::new(env!("CARGO_BIN_EXE_tally")),
        dir,
        &config,
    );
    cluster.found(&[1, 2, 3]).unwrap();
    cluster
        .wait_leader(std::time::Duration::from_secs(30))
        .await
        .unwrap();
    (cluster, signer)
}

/// Accounts 1..=4 on ledger 1, created through `client`.
async fn four_accounts(client: &tally_client::Client) {
    let accounts: Vec<tally_engine::records::Account> = (1..=4u128)
        .map(|id| tally_engine::records::Account {
            id,
            ledger: 1,
            code: 1,
            ..Default::default()
        })
        .collect();
    assert_eq!(client.create_accounts(&accounts).await.unwrap(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_signs_checkpoints_and_its_proofs_verify_in_both_verifiers() {
    use tally_client::{Client, ClientConfig};
    use tally_engine::records::Transfer;
    use tally_gateway::credential_hash_hex;

    const SUBMITTER: &str = "a-submitter-secret-0123456789";
    const READER: &str = "a-reader-secret-0123456789";
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let witness_signer = NoteSigner::of_kind(
        "witness.test/auditor",
        tally_engine::checkpoint::KeyKind::Cosignature,
        &[9; 32],
    )
    .unwrap();
    std::fs::write(dir.join("witness.key"), witness_signer.private_key()).unwrap();
    let witness_key = witness_signer.verifier_key();
    let config = format!(
        "witnesses = [\"{witness_key}\"]\n[wal]\nsegment_mib = 16\n[gateway]\n\
         cluster_id = \"0x7a11\"\n[[gateway.credentials]]\nname = \"exchange\"\nhash = \"{}\"\n\
         role = \"submitter\"\n[[gateway.credentials]]\nname = \"fund\"\nhash = \"{}\"\n\
         role = \"reader\"\nledgers = [1]\n",
        credential_hash_hex(SUBMITTER.as_bytes()),
        credential_hash_hex(READER.as_bytes()),
    );
    let (mut cluster, signer) = signed_cluster(dir, &config).await;
    let (addrs, tls) = (cluster.addrs(), cluster.client_tls().unwrap());
    let connect = |secret: &str| {
        ClientConfig::new(addrs.clone(), 0x7a11, secret.as_bytes().to_vec()).with_tls(tls.clone())
    };
    let client = Client::connect(connect(SUBMITTER)).await.unwrap();
    four_accounts(&client).await;
    let transfer = |id: u128| Transfer {
        id,
        debit_account_id: 1 + id % 2,
        credit_account_id: 3 + id % 2,
        amount: id,
        ledger: 1,
        code: 1,
        ..Transfer::default()
    };
    let transfers: Vec<Transfer> = (100..300u128).map(transfer).collect();
    assert_eq!(client.create_transfers(&transfers).await.unwrap(), vec![]);
    // One that fails (its ledger is not its accounts'): a leaf too.
    let refused = Transfer {
        ledger: 2,
        ..transfer(300)
    };
    assert_eq!(client.create_transfers(&[refused]).await.unwrap().len(), 1);
    let reader = Client::connect(connect(READER)).await.unwrap();
    let (first_index, first_size) = checkpoint_covering(&reader, 4 + 200 + 1).await;

    // The reader's bundle, from the CLI.
    let env = cli_env(&cluster, READER);
    let ids = ["100", "101", "250", "299", "300", "999"];
    let mut args = vec!["client", "lookup-transfers", "--prove", "proofs.json"];
    args.extend(ids);
    let (code, out, err) = tally(&args, &env, dir);
    // 300 failed and 999 never existed: not found (exit 1), the others proven.
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("4 of 6 proven"), "{err}");
    let bundle: Bundle =
        serde_json::from_slice(&std::fs::read(dir.join("proofs.json")).unwrap()).unwrap();
    assert_eq!(bundle.events.len(), 4);
    let key = signer.verifier_key();
    for (code, out) in both(dir, &key, &[], &bundle) {
        assert_eq!(code, 0, "{out}");
    }
    // Each leaf is the transfer as looked up, applied ok, at its commit index.
    let looked_up = reader
        .lookup_transfers(&[100, 101, 250, 299])
        .await
        .unwrap();
    for (event, transfer) in bundle.events.iter().zip(&looked_up) {
        let leaf = (0..event.leaf.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&event.leaf[i..i + 2], 16).unwrap())
            .collect::<Vec<u8>>();
        assert_eq!(leaf.len(), tally_engine::LEAF_BYTES);
        assert_eq!(&leaf[..4], &[1, 2, 0, 0], "version, transfer, ok");
        assert_eq!(leaf[24..], transfer.encode());
        assert!(event.index < first_size);
    }
    // Tampered: a leaf's byte, the checkpoint's signature, another key.
    let mut tampered = bundle.clone();
    change_hex(&mut tampered.events[2].leaf, 60);
    for (code, out) in both(dir, &key, &[], &tampered) {
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("event 2"), "{out}");
    }
    let mut tampered = bundle.clone();
    change_last_signature(&mut tampered.checkpoints[0], 10);
    for (code, out) in both(dir, &key, &[], &tampered) {
        assert_eq!(code, 1, "{out}");
    }
    let impostor = NoteSigner::new(ORIGIN, &[8; 32]).unwrap().verifier_key();
    for (code, out) in both(dir, &impostor, &[], &bundle) {
        assert_eq!(code, 1, "{out}");
    }

    // Every replica applied the same log and kept the same checkpoints: the digests cover
    // both and agree.
    let states = cluster.states(true).await;
    let digests: std::collections::BTreeSet<_> =
        states.values().map(|state| state.digest).collect();
    assert_eq!(states.len(), 3);
    assert_eq!(digests.len(), 1, "{states:?}");

    // A witness follows the log: cosigns the first checkpoint, then a later one proven to
    // extend it.
    let cosign = |old: u64, index: u64| {
        let (index, old) = (index.to_string(), old.to_string());
        let (code, request, err) = tally(
            &[
                "client",
                "checkpoint",
                "--index",
                &index,
                "--witness-old",
                &old,
            ],
            &env,
            dir,
        );
        assert_eq!(code, 0, "{err}");
        std::fs::write(dir.join("request"), request).unwrap();
        tally(
            &[
                "witness",
                "add-checkpoint",
                "--key-file",
                "witness.key",
                "--log-key",
                &key,
                "--state",
                "witness.json",
                "request",
            ],
            &[],
            dir,
        )
    };
    let (code, line, err) = cosign(0, first_index);
    assert_eq!(code, 0, "{line}{err}");
    // The cluster keeps the cosignature with its checkpoint and serves it there: the first
    // checkpoint's bundle then verifies with the witness required, in both verifiers.
    std::fs::write(dir.join("cosignature"), &line).unwrap();
    let index = first_index.to_string();
    let (code, out, err) = tally(
        &["client", "cosign", "--index", &index, "cosignature"],
        &env,
        dir,
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, note, err) = tally(&["client", "checkpoint", "--index", &index], &env, dir);
    assert_eq!(code, 0, "{err}");
    assert!(note.ends_with(&line), "{note}");
    let proofs = reader
        .prove(&tally_client::proofs::ProveRequest {
            checkpoint: first_index,
            accounts: false,
            ids: vec![100, 299],
        })
        .await
        .unwrap();
    let cosigned = Bundle {
        checkpoints: vec![note],
        consistency: Vec::new(),
        events: proofs
            .proofs
            .iter()
            .map(|proven| EventProof {
                leaf: hex(&proven.leaf),
                index: proven.index,
                checkpoint: 0,
                proof: proof(proven.proof.clone()),
            })
            .collect(),
    };
    for (code, out) in both(dir, &key, &[witness_key.as_str()], &cosigned) {
        assert_eq!(code, 0, "{out}");
    }
    // A cosignature by a witness the nodes do not know is refused.
    let stranger = NoteSigner::of_kind(
        "witness.test/stranger",
        tally_engine::checkpoint::KeyKind::Cosignature,
        &[10; 32],
    )
    .unwrap();
    let note = reader.checkpoint(first_index).await.unwrap().note;
    let signed = note
        .split_once(&line)
        .map_or(note.as_str(), |(head, _)| head);
    let forged = stranger.cosignature(signed, 1_796_000_000).unwrap();
    assert!(reader.cosign(first_index, &forged).await.is_err());
    let more: Vec<Transfer> = (400..500u128).map(transfer).collect();
    assert_eq!(client.create_transfers(&more).await.unwrap(), vec![]);
    let (second_index, second_size) = checkpoint_covering(&reader, first_size + 100).await;
    assert!(second_index > first_index);
    let (code, out, err) = cosign(first_size, second_index);
    assert_eq!(code, 0, "{out}{err}");
    // Claiming the witness saw a smaller tree than it did is refused (409), and nothing moves.
    let (code, out, err) = cosign(first_size - 1, second_index);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("409"), "{err}");
    let (_, latest, _) = tally(&["witness", "latest", "--state", "witness.json"], &[], dir);
    assert!(latest.contains(&format!("\n{second_size}\n")), "{latest}");
    assert!(witness_key.starts_with("witness.test/auditor+"));

    // A create reply's commit index is the handle to the checkpoint covering its events.
    let batch: Vec<Transfer> = (500..520u128).map(transfer).collect();
    let body = tally_engine::records::encode_batch(&batch, Transfer::encode);
    let created = client
        .create_raw(tally_engine::Operation::CreateTransfers, body.into())
        .await
        .unwrap();
    assert!(created.failures.is_empty());
    let covering = checkpoint_covering_commit(&reader, created.commit_index).await;
    let (code, note, err) = tally(
        &[
            "client",
            "checkpoint",
            "--covering",
            &created.commit_index.to_string(),
        ],
        &env,
        dir,
    );
    assert_eq!((code, note.as_str()), (0, covering.note.as_str()), "{err}");
    let proven = reader
        .prove(&tally_client::proofs::ProveRequest {
            checkpoint: covering.index,
            accounts: false,
            ids: vec![519],
        })
        .await
        .unwrap();
    assert_eq!(proven.proofs.len(), 1, "the batch's last event is in it");
    // Anyone can fetch the key that signs: `tally admin status` prints it.
    let mut operator_env = cluster.client_env();
    operator_env.push((
        "TALLY_CREDENTIAL".to_owned(),
        String::from_utf8_lossy(cluster.operator_credential()).into_owned(),
    ));
    let operator_env: Vec<(&str, String)> = operator_env
        .iter()
        .map(|(name, value)| (name.as_str(), value.clone()))
        .collect();
    let (code, status, err) = tally(
        &["admin", "--node", &cluster.addr(1).unwrap(), "status"],
        &operator_env,
        dir,
    );
    assert_eq!(code, 0, "{err}");
    assert!(status.contains(&format!("\n{key}\n")), "{status}");

    // History rewritten: the operator stops every node, changes transfer 250's amount in each
    // WAL and drops the checkpoints signed since (so the nodes replay it without noticing),
    // and restarts them. The cluster signs checkpoints of the new history with its own key,
    // and the witness, which holds a checkpoint of the old one, refuses them.
    cluster
        .shutdown(std::time::Duration::from_secs(10))
        .unwrap();
    for id in 1..=3 {
        rewrite_history(&dir.join(format!("node-{id}/data")), 250, 5_000);
    }
    for id in 1..=3 {
        cluster.start(id).unwrap();
    }
    cluster
        .wait_leader(std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let client = Client::connect(connect(SUBMITTER)).await.unwrap();
    let later: Vec<Transfer> = (600..650u128).map(transfer).collect();
    assert_eq!(client.create_transfers(&later).await.unwrap(), vec![]);
    let reader = Client::connect(connect(READER)).await.unwrap();
    let rewritten = reader.lookup_transfers(&[250]).await.unwrap();
    assert_eq!(
        rewritten[0].amount, 5_000,
        "the nodes replayed the edited WAL"
    );
    let (rewritten_index, _) = checkpoint_covering(&reader, second_size + 50).await;
    let (code, out, err) = cosign(second_size, rewritten_index);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("422"),
        "not an extension of what it cosigned: {err}"
    );
    let (_, still, _) = tally(&["witness", "latest", "--state", "witness.json"], &[], dir);
    assert_eq!(still, latest, "the witness keeps the history it saw");
    cluster
        .shutdown(std::time::Duration::from_secs(10))
        .unwrap();
}

/// The checkpoint covering commit index `commit_index`, once one is signed.
async fn checkpoint_covering_commit(
    client: &tally_client::Client,
    commit_index: u64,
) -> tally_client::proofs::CheckpointReply {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match client.checkpoint_covering(commit_index).await {
            Ok(checkpoint) => return checkpoint,
            other => assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint covers commit index {commit_index} within 20 s: {other:?}"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// What an operator holding the disks could do to a stopped node: change transfer `id`'s
/// amount in the WAL under `data_dir` and drop every checkpoint and cosignature note from
/// that entry on, so the node replays another history without meeting a checkpoint of the
/// old one. Done through the WAL's own API: checksums and chain are rewritten, and nothing on
/// disk looks damaged.
fn rewrite_history(data_dir: &Path, id: u128, amount: u128) {
    use tally_engine::records::{RecordBytes, Transfer};
    use tally_raft::replication::codec::{decode_entry, encode_entry};
    use tally_raft::replication::types::EntryPayload;
    use tally_raft::storage::{sync::SyncDisk, Disk};
    use tally_raft::wal::{Wal, WalConfig};

    let disk: std::sync::Arc<dyn Disk> = std::sync::Arc::new(SyncDisk::new());
    let config = WalConfig {
        segment_bytes: 16 << 20,
        ..WalConfig::default()
    };
    let wal_dir = data_dir.join(tally_raft::replication::WAL_DIR);
    let mut wal = Wal::open(disk, &wal_dir, config).unwrap();
    let state = wal.log_state();
    let first = state.purged.map_or(0, |purged| purged.index + 1);
    let last = state.last.expect("a log").index;
    let records = wal.reader().read(first..last + 1).unwrap();
    let mut entries: Vec<_> = records.iter().map(|r| decode_entry(r).unwrap()).collect();
    let mut from = None;
    for (at, entry) in entries.iter_mut().enumerate() {
        let EntryPayload::Normal(request) = &mut entry.payload else {
            continue;
        };
        if from.is_some() {
            request.log = None;
            continue;
        }
        for batch in &mut request.batches {
            if batch.operation != tally_engine::Operation::CreateTransfers {
                continue;
            }
            let mut body = batch.body.to_vec();
            for record in body.chunks_mut(128) {
                let bytes: &RecordBytes = (&*record).try_into().unwrap();
                let mut transfer = Transfer::decode(bytes).unwrap();
                if transfer.id == id {
                    transfer.amount = amount;
                    record.copy_from_slice(&transfer.encode());
                    from = Some(at);
                }
            }
            batch.body = body.into();
        }
    }
    let from = from.expect("the transfer is in the log");
    let index = entries[from].log_id.index;
    wal.truncate(index).unwrap();
    let rewritten: Vec<_> = entries[from..]
        .iter()
        .map(|entry| encode_entry(entry).unwrap())
        .collect();
    let (done, flushed) = std::sync::mpsc::channel();
    wal.append(rewritten, move |result| done.send(result).unwrap())
        .unwrap();
    flushed.recv().unwrap().unwrap();
    wal.close();
}

/// The access trail through a real 3-node cluster: two auditors read account 1 (one of them
/// twice, the other account 4 too); the fund scoped to account 1 lists who read it — each read with who,
/// how and when — and verifies the list against the trail's signed checkpoint and the
/// account's chain of reads. A read left out, a changed byte or another key is refused, and
/// the fund cannot see another account's trail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_lists_and_verifies_who_read_its_account() {
    use tally::access_trail::{fetch_trail, verify_trail};
    use tally_client::{Client, ClientConfig};
    use tally_engine::records::Transfer;
    use tally_gateway::credential_hash_hex;

    const SUBMITTER: &str = "a-submitter-secret-0123456789";
    const FUND: &str = "the-fund-secret-0123456789";
    const AUDITOR_A: &str = "auditor-a-secret-0123456789";
    const AUDITOR_B: &str = "auditor-b-secret-0123456789";
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let credential = |name: &str, secret: &str, scope: &str| {
        format!(
            "[[gateway.credentials]]\nname = \"{name}\"\nhash = \"{}\"\n{scope}\n",
            credential_hash_hex(secret.as_bytes())
        )
    };
    let config = format!(
        "[gateway]\ncluster_id = \"0x7a11\"\n{}{}{}{}",
        credential("exchange", SUBMITTER, "role = \"submitter\""),
        credential("fund", FUND, "role = \"reader\"\naccounts = [\"1\"]"),
        credential("auditor-a", AUDITOR_A, "role = \"reader\"\nledgers = [1]"),
        credential("auditor-b", AUDITOR_B, "role = \"reader\"\nledgers = [1]"),
    );
    let (mut cluster, signer) = signed_cluster(dir, &config).await;
    let (addrs, tls) = (cluster.addrs(), cluster.client_tls().unwrap());
    let connect = |secret: &str| {
        Client::connect(
            ClientConfig::new(addrs.clone(), 0x7a11, secret.as_bytes().to_vec())
                .with_tls(tls.clone()),
        )
    };
    let exchange = connect(SUBMITTER).await.unwrap();
    four_accounts(&exchange).await;
    let transfer = Transfer {
        id: 100,
        debit_account_id: 1,
        credit_account_id: 3,
        amount: 5,
        ledger: 1,
        code: 1,
        ..Transfer::default()
    };
    assert_eq!(
        exchange.create_transfers(&[transfer]).await.unwrap(),
        vec![]
    );

    let auditor_a = connect(AUDITOR_A).await.unwrap();
    assert_eq!(auditor_a.lookup_accounts(&[1, 2]).await.unwrap().len(), 2);
    let auditor_b = connect(AUDITOR_B).await.unwrap();
    assert_eq!(auditor_b.lookup_transfers(&[100]).await.unwrap().len(), 1);
    assert_eq!(auditor_b.lookup_accounts(&[4]).await.unwrap().len(), 1);
    assert_eq!(auditor_a.lookup_accounts(&[1]).await.unwrap().len(), 1);

    // The fund's view, once a checkpoint of the trail holds both auditors' reads.
    let fund = connect(FUND).await.unwrap();
    let key: tally_engine::checkpoint::NoteVerifier = signer.verifier_key().parse().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (pages, reads) = loop {
        let pages = fetch_trail(&fund, 1).await.ok();
        let reads = pages
            .as_ref()
            .and_then(|pages| verify_trail(&key, 1, pages).ok())
            .unwrap_or_default();
        if reads
            .iter()
            .filter(|read| read.name.starts_with("auditor"))
            .count()
            == 3
        {
            break (pages.unwrap(), reads);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the auditors' reads are not in a checkpoint within 20 s: {reads:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let auditors: Vec<_> = reads
        .iter()
        .filter(|read| read.name.starts_with("auditor"))
        .map(|read| (read.name.as_str(), read.operation_name, read.accounts))
        .collect();
    assert_eq!(
        auditors,
        vec![
            ("auditor-a", "lookup-accounts", 1),
            ("auditor-b", "lookup-transfers", 2),
            ("auditor-a", "lookup-accounts", 2)
        ],
        "newest first; auditor-b's lookup of account 4 is not account 1's: {reads:?}"
    );
    // The others are the fund's own reads of its trail: recorded like any read.
    assert!(reads
        .iter()
        .all(|read| read.name.starts_with("auditor") || read.name == "fund"));
    assert!(reads.windows(2).all(|pair| pair[0].index > pair[1].index));
    assert!(reads
        .iter()
        .all(|read| read.time_ns > 1_700_000_000_000_000_000));

    // A read left out (the oldest, or one in the middle), a changed byte, another key.
    let mut dropped = pages.clone();
    dropped.last_mut().unwrap().reads.pop();
    assert!(verify_trail(&key, 1, &dropped)
        .unwrap_err()
        .contains("not whole"));
    let mut dropped = pages.clone();
    dropped[0].reads.remove(1);
    assert!(verify_trail(&key, 1, &dropped)
        .unwrap_err()
        .contains("not whole"));
    let mut changed = pages.clone();
    changed[0].reads[0].leaf[41] ^= 1;
    assert!(verify_trail(&key, 1, &changed)
        .unwrap_err()
        .contains("not in the signed trail"));
    let impostor: tally_engine::checkpoint::NoteVerifier = NoteSigner::new(ORIGIN, &[8; 32])
        .unwrap()
        .verifier_key()
        .parse()
        .unwrap();
    assert!(verify_trail(&impostor, 1, &pages).is_err());
    // Another account's trail is out of the fund's scope.
    let other = fund
        .access_trail(&tally_client::access_trail::AccessTrailRequest::newest(2))
        .await;
    assert!(
        matches!(&other, Err(tally_client::ClientError::Refused { status, .. })
            if *status == tally_client::protocol::Status::NotFound),
        "{other:?}"
    );

    // A follower does not serve a reader's read (it cannot record it): it names the leader.
    let leader = cluster
        .wait_leader(std::time::Duration::from_secs(10))
        .await
        .unwrap();
    let follower = if leader == 1 { 2 } else { 1 };
    let mut config = ClientConfig::new(
        vec![cluster.addr(follower).unwrap()],
        0x7a11,
        FUND.as_bytes().to_vec(),
    )
    .with_tls(tls.clone())
    .with_reads(tally_client::Reads::Local);
    config.deadline = std::time::Duration::from_secs(2);
    let at_follower = Client::connect(config).await.unwrap();
    match at_follower.lookup_accounts(&[1]).await {
        Err(tally_client::ClientError::Deadline(_, last)) => assert!(
            last.contains("NotLeader") && last.contains("access trail"),
            "{last}"
        ),
        other => panic!("a follower served a recorded read: {other:?}"),
    }

    // The same from the command line.
    let env = cli_env(&cluster, FUND);
    let vkey = signer.verifier_key();
    let (code, out, err) = tally(&["client", "reads", "1", "--key", &vkey], &env, dir);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("lookup-accounts") && out.contains("auditor-a"),
        "{out}"
    );
    assert!(
        out.contains("lookup-transfers") && out.contains("auditor-b"),
        "{out}"
    );
    assert!(err.contains("verified"), "{err}");
    let wrong = NoteSigner::new(ORIGIN, &[8; 32]).unwrap().verifier_key();
    let (code, _, err) = tally(&["client", "reads", "1", "--key", &wrong], &env, dir);
    assert_ne!(code, 0);
    assert!(err.contains("does not verify"), "{err}");
    cluster
        .shutdown(std::time::Duration::from_secs(10))
        .unwrap();
}
