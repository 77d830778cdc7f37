//! The end of `tally demo`: verifiable history shown on the run's own events — a sample of
//! them proven against the cluster's latest signed checkpoint, the checkpoint cosigned by a
//! witness run here, and the bundle checked as `tally verify` checks it.

use std::path::Path;

use anyhow::Context;
use tally_client::Client;
use tally_engine::checkpoint::{KeyKind, NoteSigner};
use tally_engine::witness::{AddCheckpoint, Witness};
use tally_loadgen::history::History;
use tally_loadgen::workload::Kind;

use crate::client_proofs::write_bundle;
use crate::verify::{check, read_verifier_key};

/// Events sampled from the run's history (at most one prove request's worth).
const SAMPLE: usize = tally_client::proofs::PROVE_IDS_MAX;

/// Transfer and trade ids of `history`, `SAMPLE` of them spread over the run.
fn sample(history: &History) -> Vec<u128> {
    let ids: Vec<u128> = history
        .batches
        .iter()
        .filter(|batch| !matches!(batch.kind, Kind::Accounts))
        .flat_map(|batch| {
            batch
                .body
                .chunks_exact(tally_engine::limits::RECORD_BYTES)
                .map(|record| u128::from_le_bytes(record[..16].try_into().expect("16 bytes")))
        })
        .collect();
    let step = ids.len().div_ceil(SAMPLE).max(1);
    ids.into_iter().step_by(step).take(SAMPLE).collect()
}

/// Prove a sample of `history`'s events against the latest checkpoint (`client`), have a
/// witness made here cosign it, and check the bundle (written to `path`, kept after the demo)
/// against the cluster's verifier key `log_key` and the witness's. Returns what the demo
/// prints.
pub async fn verify_sample(
    client: &Client,
    history: &History,
    log_key: &str,
    path: &Path,
) -> anyhow::Result<String> {
    let ids = sample(history);
    let mut bundle = write_bundle(client, &ids, false, path).await?;
    let log = read_verifier_key(log_key)?;
    let cosigner =
        NoteSigner::of_kind("demo.tally/witness", KeyKind::Cosignature, &rand::random())?;
    let witness_key = cosigner.verifier();
    let witness_text = cosigner.verifier_key();
    let witness = Witness::new(cosigner, vec![log.clone()])?;
    let note = bundle.checkpoints[0].clone();
    let request = AddCheckpoint {
        old_size: 0,
        proof: Vec::new(),
        note: note.clone(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let cosigned = witness
        .add_checkpoint(&request, None, now)
        .map_err(|refusal| anyhow::anyhow!("the witness refused: {refusal}"))?;
    bundle.checkpoints[0] = format!("{note}{}", cosigned.line);
    std::fs::write(path, serde_json::to_string_pretty(&bundle)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    let failures = check(&bundle, &log, &[witness_key]);
    if !failures.is_empty() {
        anyhow::bail!("the proofs do not verify: {}", failures.join("; "));
    }
    Ok(format!(
        "verifiable history: OK — {} of {} sampled events proven against the signed checkpoint \
         of {} events, cosigned by a witness\n  check it yourself, offline: tally verify --key \
         '{log_key}' --witness '{witness_text}' {}\n  (or python3 verifier/tally_verify.py \
         with the same arguments)",
        bundle.events.len(),
        ids.len(),
        cosigned.checkpoint.size,
        path.display()
    ))
}
