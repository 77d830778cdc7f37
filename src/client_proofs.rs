//! `tally client`'s verifiable-log commands: `--prove FILE` on the lookups (a proof bundle of
//! the records looked up, against the cluster's latest checkpoint, for `tally verify`), and
//! `checkpoint` (a signed checkpoint, or a witness's `add-checkpoint` request built from it).

use std::path::Path;

use anyhow::Context;
use tally_client::proofs::{ProveRequest, WhichCheckpoint, LATEST, PROVE_IDS_MAX};
use tally_client::Client;
use tally_engine::witness::AddCheckpoint;

use crate::verify::{hex, Bundle, EventProof};

/// How long `--prove` waits for a checkpoint to cover records just committed (the leader
/// signs one within about a second of events committing).
const COVER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Prove `ids` (accounts' with `accounts`) against the latest checkpoint and write the bundle
/// to `path`; returns what was written (ids not stored, not visible or not yet in the
/// checkpoint are left out: the lookup says which exist).
pub async fn write_bundle(
    client: &Client,
    ids: &[u128],
    accounts: bool,
    path: &Path,
) -> anyhow::Result<Bundle> {
    let checkpoint = client
        .checkpoint(LATEST)
        .await
        .context("fetching the latest checkpoint")?;
    let mut bundle = Bundle {
        checkpoints: vec![checkpoint.note.clone()],
        ..Bundle::default()
    };
    for chunk in ids.chunks(PROVE_IDS_MAX) {
        let request = ProveRequest {
            checkpoint: checkpoint.index,
            accounts,
            ids: chunk.to_vec(),
        };
        let reply = client.prove(&request).await.context("fetching proofs")?;
        bundle
            .events
            .extend(reply.proofs.into_iter().map(|proven| EventProof {
                leaf: hex(&proven.leaf),
                index: proven.index,
                checkpoint: 0,
                proof: proven.proof.iter().map(|hash| hex(hash)).collect(),
            }));
    }
    let text = serde_json::to_string_pretty(&bundle)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    Ok(bundle)
}

/// `--prove FILE`: the bundle of `ids` written, and a line on standard error saying so. Of
/// `found` records (the lookup's), those committed in the last second or so are in no
/// checkpoint yet: the bundle is made again, for up to `COVER_WAIT`, until all are.
pub async fn prove_to_file(
    client: &Client,
    ids: &[u128],
    found: usize,
    accounts: bool,
    path: &Path,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + COVER_WAIT;
    let mut bundle = write_bundle(client, ids, accounts, path).await?;
    while bundle.events.len() < found && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        bundle = write_bundle(client, ids, accounts, path).await?;
    }
    eprintln!(
        "{} of {} proven against the latest checkpoint: {} (check it offline: tally verify \
         --key <the cluster's verifier key> {})",
        bundle.events.len(),
        ids.len(),
        path.display(),
        path.display()
    );
    Ok(())
}

/// `tally client checkpoint`: the checkpoint `which` names, as its signed note;
/// with `witness_old`, the C2SP tlog-witness `add-checkpoint` request that asks a witness
/// holding a checkpoint of that size to cosign this one (`tally witness add-checkpoint`).
pub async fn checkpoint(
    client: &Client,
    which: WhichCheckpoint,
    witness_old: Option<u64>,
) -> anyhow::Result<String> {
    let checkpoint = match which {
        WhichCheckpoint::Index(index) => client.checkpoint(index).await?,
        WhichCheckpoint::Covering(commit_index) => client.checkpoint_covering(commit_index).await?,
    };
    let Some(old) = witness_old else {
        return Ok(checkpoint.note);
    };
    let proof = if old == 0 || old >= checkpoint.size {
        Vec::new()
    } else {
        client.consistency(old, checkpoint.size).await?
    };
    Ok(AddCheckpoint {
        old_size: old,
        proof,
        note: checkpoint.note,
    }
    .text())
}
