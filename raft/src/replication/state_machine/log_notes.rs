//! What a replica does with a note for the verifiable log (`LogNote`) an entry carries: a
//! signed checkpoint kept only if it is this replica's history (else the replica stops), a
//! witness's cosignature kept beside its checkpoint.

use tally_engine::checkpoint::SignedCheckpoint;

use super::super::types::{LogId, LogNote};
use super::Applied;

impl Applied {
    /// Apply `note`, carried by the entry `log_id` stamped `timestamp`.
    pub(super) fn apply_log_note(&mut self, log_id: LogId, timestamp: u64, note: LogNote) {
        match note {
            LogNote::Checkpoint(checkpoint) => self.keep_checkpoint(log_id, checkpoint, false),
            LogNote::AccessCheckpoint(checkpoint) => self.keep_checkpoint(log_id, checkpoint, true),
            LogNote::Reads(reads) => self.engine.record_reads(&reads, timestamp, log_id.index),
            LogNote::Cosignature(cosignature) => {
                let kept = self.engine.record_cosignature(cosignature);
                if !kept {
                    tracing::debug!(entry = %log_id, "cosignature not kept");
                }
            }
        }
    }

    /// Keep the leader's signed `checkpoint` of the event log (of the access trail: `access`)
    /// if it is this replica's history (`Engine::record_checkpoint`). One not newer than the
    /// latest kept (a repeat) is dropped; one whose root differs marks this replica diverged.
    fn keep_checkpoint(&mut self, log_id: LogId, checkpoint: SignedCheckpoint, access: bool) {
        let kept = if access {
            self.engine.record_access_checkpoint(checkpoint)
        } else {
            self.engine.record_checkpoint(checkpoint)
        };
        match kept {
            Ok(()) => {}
            Err(refused) if refused.is_divergence() => {
                tracing::error!(
                    entry = %log_id,
                    %refused,
                    "this replica's verifiable log is not the history the leader signed: it \
                     stops applying (docs/operations.md, \"A root mismatch\")"
                );
                self.diverged = Some((log_id, refused));
            }
            Err(refused) => tracing::debug!(entry = %log_id, %refused, "checkpoint not kept"),
        }
    }
}
