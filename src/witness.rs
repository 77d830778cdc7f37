//! `tally witness`: what an auditor, a regulator or a participant runs to hold a cluster to its
//! history (docs/verifiability.md, "Witnesses"). `new-key` makes the witness's Ed25519
//! cosignature key; `add-checkpoint` reads a C2SP tlog-witness `add-checkpoint` request,
//! checks it against the latest checkpoint it cosigned for that log and prints its
//! cosignature, or refuses loudly. The check is `tally_engine::witness`; this is its files.
//!
//! The state is one JSON file: for each log's origin, the latest checkpoint the witness
//! cosigned, as the cosigned note. Reading it, checking and replacing it happen under an
//! exclusive lock on `<state>.lock`, and the new state is durable (written beside, synced,
//! renamed, the directory synced) before the cosignature is printed: two requests at once
//! can never both be cosigned against the same old size, and a crash never loses a
//! checkpoint that was cosigned.
//!
//! Exit codes: 0 cosigned (the line on standard output), 1 refused (`REFUSED <status>: why` on
//! standard error; a 409 also prints the latest cosigned size on standard output, as the
//! specification's response body), 2 unreadable input or state.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::verify::read_verifier_key;
use anyhow::Context;
use clap::Subcommand;
use tally_engine::checkpoint::{note_text, Checkpoint, KeyKind, NoteSigner};
use tally_engine::witness::{AddCheckpoint, Refusal, Witness};

#[derive(Subcommand, Debug)]
pub enum WitnessCommand {
    /// Make a witness key (or with --log a cluster's checkpoint key): write the private key
    /// to --key-file (created with mode 0600, never overwritten) and print the verifier key to
    /// publish.
    NewKey {
        /// The witness's name, e.g. `witness.example.com/auditor`; a log's is its origin, e.g.
        /// `tally/cluster-0x7a11e5` (no spaces, no '+').
        #[arg(long)]
        name: String,
        #[arg(long)]
        key_file: PathBuf,
        /// A log's checkpoint key (a node's `[verifiable] key_file`), not a witness's.
        #[arg(long)]
        log: bool,
    },
    /// Check an add-checkpoint request (C2SP tlog-witness) and cosign the checkpoint if it
    /// extends the latest one this witness cosigned for its log. Exits 0 with the cosignature
    /// line, 1 refusing (the status and why), 2 on unreadable input.
    AddCheckpoint {
        /// The witness's private key file (`tally witness new-key`).
        #[arg(long)]
        key_file: PathBuf,
        /// A log's verifier key (or a file holding it); repeat for several logs.
        #[arg(long = "log-key", required = true)]
        log_keys: Vec<String>,
        /// The witness's state file (created on first use).
        #[arg(long)]
        state: PathBuf,
        /// The request body; `-` reads standard input.
        request: PathBuf,
    },
    /// Print the verifier key (the public key, to publish) of a private key file: a cluster's
    /// checkpoint key (`[verifiable] key_file`) or a witness's.
    VerifierKey {
        #[arg(long)]
        key_file: PathBuf,
    },
    /// Print the latest checkpoint cosigned for each log, as cosigned notes.
    Latest {
        #[arg(long)]
        state: PathBuf,
    },
}

/// The latest cosigned note per origin.
type State = BTreeMap<String, String>;

/// `tally witness`'s exit code.
pub fn run(command: &WitnessCommand) -> u8 {
    let result = match command {
        WitnessCommand::NewKey {
            name,
            key_file,
            log,
        } => {
            let kind = if *log {
                KeyKind::Note
            } else {
                KeyKind::Cosignature
            };
            new_key(name, key_file, kind).map(|()| 0)
        }
        WitnessCommand::AddCheckpoint {
            key_file,
            log_keys,
            state,
            request,
        } => add_checkpoint(key_file, log_keys, state, request),
        WitnessCommand::VerifierKey { key_file } => std::fs::read_to_string(key_file)
            .with_context(|| format!("reading {}", key_file.display()))
            .and_then(|text| {
                let signer = NoteSigner::from_private_key(&text)
                    .with_context(|| format!("{}", key_file.display()))?;
                println!("{}", signer.verifier_key());
                Ok(0)
            }),
        WitnessCommand::Latest { state } => read_state(state).map(|state| {
            for note in state.values() {
                print!("{note}");
            }
            0
        }),
    };
    result.unwrap_or_else(|error| {
        eprintln!("tally witness: {error:#}");
        2
    })
}

fn new_key(name: &str, key_file: &Path, kind: KeyKind) -> anyhow::Result<()> {
    let seed: [u8; 32] = rand::random();
    let signer = NoteSigner::of_kind(name, kind, &seed)?;
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(key_file)
        .with_context(|| format!("creating {}", key_file.display()))?;
    writeln!(file, "{}", signer.private_key())?;
    file.sync_all()?;
    println!("{}", signer.verifier_key());
    Ok(())
}

fn add_checkpoint(
    key_file: &Path,
    log_keys: &[String],
    state_path: &Path,
    request: &Path,
) -> anyhow::Result<u8> {
    let key = std::fs::read_to_string(key_file)
        .with_context(|| format!("reading {}", key_file.display()))?;
    let cosigner =
        NoteSigner::from_private_key(&key).with_context(|| format!("{}", key_file.display()))?;
    let logs = log_keys
        .iter()
        .map(|key| read_verifier_key(key))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let witness = Witness::new(cosigner, logs)?;
    let mut body = String::new();
    if request == Path::new("-") {
        std::io::stdin().read_to_string(&mut body)?;
    } else {
        body = std::fs::read_to_string(request)
            .with_context(|| format!("reading {}", request.display()))?;
    }

    let lock = lock_path(state_path);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .with_context(|| format!("opening {}", lock.display()))?;
    lock.lock().context("locking the witness state")?;
    let mut state = read_state(state_path)?;
    let refuse = |refusal: Refusal| -> anyhow::Result<u8> {
        if let Refusal::Conflict { latest, .. } = &refusal {
            println!("{latest}");
        }
        eprintln!("REFUSED {}: {refusal}", refusal.status());
        Ok(1)
    };
    let request = match AddCheckpoint::parse(&body) {
        Ok(request) => request,
        Err(refusal) => return refuse(refusal),
    };
    let origin = request
        .unverified_checkpoint()
        .ok()
        .map(|checkpoint| checkpoint.origin);
    let latest = match origin.and_then(|origin| state.get(&origin)) {
        Some(note) => Some(
            latest_checkpoint(note)
                .with_context(|| format!("{} holds a bad checkpoint", state_path.display()))?,
        ),
        None => None,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let cosigned = match witness.add_checkpoint(&request, latest.as_ref(), now) {
        Ok(cosigned) => cosigned,
        Err(refusal) => return refuse(refusal),
    };
    state.insert(
        cosigned.checkpoint.origin.clone(),
        format!("{}{}", request.note, cosigned.line),
    );
    write_state(state_path, &state)?;
    drop(lock);
    print!("{}", cosigned.line);
    eprintln!(
        "cosigned {} at size {}",
        cosigned.checkpoint.origin, cosigned.checkpoint.size
    );
    Ok(0)
}

fn lock_path(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// The checkpoint of a cosigned note the witness kept.
fn latest_checkpoint(note: &str) -> anyhow::Result<Checkpoint> {
    Ok(Checkpoint::parse(note_text(note)?)?)
}

fn read_state(path: &Path) -> anyhow::Result<State> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not a witness state", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(State::new()),
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

/// Replace the state durably: written beside it, synced, renamed over it, the directory synced.
fn write_state(path: &Path, state: &State) -> anyhow::Result<()> {
    let mut next = path.as_os_str().to_owned();
    next.push(".next");
    let next = PathBuf::from(next);
    let mut file = File::create(&next).with_context(|| format!("writing {}", next.display()))?;
    file.write_all(serde_json::to_string_pretty(state)?.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&next, path).with_context(|| format!("replacing {}", path.display()))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}
