//! `tally verify`: check a proof bundle offline (docs/verifiability.md) — every checkpoint
//! signed by the cluster's key, each extending the one before it, every event in its
//! checkpoint's tree. No network, no node: the bundle and the key are all it reads.
//!
//! A bundle is JSON:
//!
//! ```json
//! { "checkpoints": ["<signed note>", …],                        oldest first
//!   "consistency": [{"old": 0, "new": 1, "proof": ["<hex>", …]}, …],
//!   "events": [{"leaf": "<hex>", "index": 7, "checkpoint": 1, "proof": ["<hex>", …]}, …] }
//! ```
//!
//! `old`, `new` and `checkpoint` are positions in `checkpoints`; `index` is the leaf's
//! position in the log; `leaf` the leaf's bytes. Every checkpoint after the first must be
//! joined to the one before it by a consistency step. The independent verifier (`verifier/`) reads
//! the same files.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tally_engine::checkpoint::{Checkpoint, KeyKind, NoteVerifier};
use tally_engine::merkle::{leaf_hash, verify_consistency, verify_inclusion, Hash};

/// What a client keeps to prove its events later.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Bundle {
    pub checkpoints: Vec<String>,
    #[serde(default)]
    pub consistency: Vec<ConsistencyStep>,
    #[serde(default)]
    pub events: Vec<EventProof>,
}

/// Checkpoint `new` extends checkpoint `old`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsistencyStep {
    pub old: usize,
    pub new: usize,
    pub proof: Vec<String>,
}

/// The leaf at `index` is in checkpoint `checkpoint`'s tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventProof {
    pub leaf: String,
    pub index: u64,
    pub checkpoint: usize,
    pub proof: Vec<String>,
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

fn hashes(items: &[String]) -> Result<Vec<Hash>, String> {
    items
        .iter()
        .map(|item| {
            unhex(item)
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| {
                    "the proof holds something that is not a 32-byte hex hash".to_owned()
                })
        })
        .collect()
}

/// Every failure in `bundle` checked against `key`, as messages; empty means all verifies.
/// With `witnesses`, every checkpoint must also carry a valid cosignature by each of them.
pub fn check(bundle: &Bundle, key: &NoteVerifier, witnesses: &[NoteVerifier]) -> Vec<String> {
    let mut failures = Vec::new();
    if key.kind() != KeyKind::Note || witnesses.iter().any(|w| w.kind() != KeyKind::Cosignature) {
        failures.push(
            "the log's key must be a note key (type 0x01), a witness's a cosignature key (type \
             0x04)"
                .to_owned(),
        );
        return failures;
    }
    let checkpoints: Vec<Option<Checkpoint>> = bundle
        .checkpoints
        .iter()
        .enumerate()
        .map(|(i, note)| {
            let cosigned = witnesses
                .iter()
                .try_for_each(|witness| witness.open_cosigned(note).map(|_| ()));
            match key.open_checkpoint(note).and_then(|c| cosigned.map(|()| c)) {
                Ok(checkpoint) => Some(checkpoint),
                Err(why) => {
                    failures.push(format!("checkpoint {i}: {why}"));
                    None
                }
            }
        })
        .collect();
    if checkpoints.is_empty() {
        failures.push("the bundle holds no checkpoint".to_owned());
    }
    let mut origins: Vec<&str> = checkpoints
        .iter()
        .flatten()
        .map(|c| c.origin.as_str())
        .collect();
    origins.sort_unstable();
    origins.dedup();
    if origins.len() > 1 {
        failures.push(format!("checkpoints of more than one log: {origins:?}"));
    }
    for i in 1..checkpoints.len() {
        let joined = bundle
            .consistency
            .iter()
            .any(|step| step.old == i - 1 && step.new == i);
        if !joined {
            failures.push(format!(
                "checkpoint {i}: no consistency proof joins it to checkpoint {}",
                i - 1
            ));
        }
    }
    let at = |i: usize| checkpoints.get(i).cloned().flatten();
    for (i, step) in bundle.consistency.iter().enumerate() {
        let result = (|| {
            let (Some(old), Some(new)) = (at(step.old), at(step.new)) else {
                return Err("a checkpoint it joins is missing or does not verify".to_owned());
            };
            let proof = hashes(&step.proof)?;
            verify_consistency(old.size, new.size, &old.root, &new.root, &proof).map_err(|_| {
                format!(
                    "checkpoint {} (size {}) does not extend checkpoint {} (size {}): history \
                     was rewritten, or the proof altered",
                    step.new, new.size, step.old, old.size
                )
            })
        })();
        if let Err(why) = result {
            failures.push(format!("consistency step {i}: {why}"));
        }
    }
    for (i, event) in bundle.events.iter().enumerate() {
        let result = (|| {
            let Some(checkpoint) = at(event.checkpoint) else {
                return Err("its checkpoint is missing or does not verify".to_owned());
            };
            let leaf = unhex(&event.leaf).ok_or("the leaf is not hex")?;
            let proof = hashes(&event.proof)?;
            verify_inclusion(
                event.index,
                checkpoint.size,
                &leaf_hash(&leaf),
                &proof,
                &checkpoint.root,
            )
            .map_err(|_| {
                format!(
                    "leaf {} is not in checkpoint {} (size {}): the event or its proof was \
                     altered",
                    event.index, event.checkpoint, checkpoint.size
                )
            })
        })();
        if let Err(why) = result {
            failures.push(format!("event {i}: {why}"));
        }
    }
    failures
}

/// A verifier key given inline (it has a '+') or as a file holding it.
pub fn read_verifier_key(key: &str) -> anyhow::Result<NoteVerifier> {
    let text = if key.contains('+') {
        key.to_owned()
    } else {
        std::fs::read_to_string(key).map_err(|e| anyhow::anyhow!("{key}: {e}"))?
    };
    Ok(text.parse()?)
}

/// What `tally verify` ends with: 0 all verifies, 1 something does not, 2 unreadable input.
pub fn run(key: &str, witnesses: &[String], bundle: &Path) -> u8 {
    let read = || -> anyhow::Result<(NoteVerifier, Vec<NoteVerifier>, Bundle)> {
        let key = read_verifier_key(key)?;
        let witnesses = witnesses
            .iter()
            .map(|key| read_verifier_key(key))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let text = std::fs::read_to_string(bundle)
            .map_err(|e| anyhow::anyhow!("{}: {e}", bundle.display()))?;
        let bundle: Bundle = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: not a proof bundle: {e}", bundle.display()))?;
        Ok((key, witnesses, bundle))
    };
    let (key, witnesses, bundle) = match read() {
        Ok(read) => read,
        Err(error) => {
            eprintln!("tally verify: cannot read the input: {error:#}");
            return 2;
        }
    };
    let failures = check(&bundle, &key, &witnesses);
    if !failures.is_empty() {
        for failure in &failures {
            println!("FAILED {failure}");
        }
        return 1;
    }
    let sizes: Vec<String> = bundle
        .checkpoints
        .iter()
        .filter_map(|note| key.open_checkpoint(note).ok())
        .map(|c| c.size.to_string())
        .collect();
    let cosigned: String = witnesses
        .iter()
        .map(|witness| format!(", cosigned by {}", witness.name()))
        .collect();
    println!(
        "OK: {} checkpoints (sizes {}) signed by {}{cosigned}, each extending the last; {} \
         events included",
        bundle.checkpoints.len(),
        sizes.join(", "),
        key.name(),
        bundle.events.len()
    );
    0
}
