//! Cosign: a witness's cosignature of one of the cluster's checkpoints, checked against the
//! witness keys this node is configured with and proposed in a Raft entry of its own, so every
//! replica keeps it beside the checkpoint (`Engine::record_cosignature`) and serves it with the
//! checkpoint's note. Leader only, like every write.

use bytes::Bytes;
use openraft::error::RaftError;
use tally_client::protocol::Status;
use tally_engine::checkpoint::StoredCosignature;
use tally_raft::net::Replies;
use tally_raft::replication::types::{LogNote, Request};
use tokio::time::Instant;

use super::{lock, session_refusal, Context, Gateway};

impl Gateway {
    pub(super) fn cosign(
        &self,
        context: &Context,
        checkpoint: u64,
        line: String,
        replies: &Replies,
        now: Instant,
    ) -> Result<(), Bytes> {
        let header = context.header;
        lock(&self.sessions)
            .admit_read(header.session, header.client_id, now)
            .map_err(|refusal| session_refusal(context, refusal))?;
        // Checked before it is admitted into the session's in-flight count: every refusal
        // below ends the request at once.
        let finish = |payload: Bytes| {
            lock(&self.sessions).finish(header.session);
            payload
        };
        self.check_leader()
            .map_err(|refusal| finish(context.refuse(Status::NotLeader, &refusal)))?;
        let cosignature = self
            .checked_cosignature(checkpoint, &line)
            .map_err(|(status, why)| finish(context.refuse_with(status, why)))?;
        let raft = self.raft.clone();
        let sessions = std::sync::Arc::clone(&self.sessions);
        let replies = replies.clone();
        let context = *context;
        let metrics = self.metrics.clone();
        // The host's clock, as the batcher's default: a cosignature entry is never proposed in
        // the simulator (no key there), whose clock the batcher's config carries.
        let timestamp = crate::batcher::system_clock();
        tokio::spawn(async move {
            let entry = Request {
                timestamp,
                batches: Vec::new(),
                log: Some(LogNote::Cosignature(cosignature)),
            };
            let payload = match raft.client_write(entry).await {
                Ok(written) => context.ok(written.log_id.index, &[]),
                Err(RaftError::APIError(error)) => context.refuse_with(
                    Status::NotLeader,
                    format!("not kept: {error}; send it to the leader"),
                ),
                Err(RaftError::Fatal(fatal)) => {
                    context.refuse_with(Status::Unavailable, format!("not kept: {fatal}"))
                }
            };
            lock(&sessions).finish(header.session);
            context.send(&metrics, &replies, payload).await;
        });
        Ok(())
    }

    /// `line` as a cosignature of checkpoint `index` by a witness this node knows, or why not.
    fn checked_cosignature(
        &self,
        index: u64,
        line: &str,
    ) -> Result<StoredCosignature, (Status, String)> {
        let Some(origin) = self.log_origin.as_deref() else {
            return Err((
                Status::NotFound,
                "this node has no checkpoint key ([verifiable] key_file)".to_owned(),
            ));
        };
        let note = self
            .view
            .read(|applied| applied.engine()?.checkpoint(index))
            .map(|signed| signed.note(origin))
            .ok_or_else(|| (Status::NotFound, format!("no checkpoint {index} here")))?;
        let (_, cosignature) = StoredCosignature::from_line(index, line)
            .map_err(|why| (Status::BadRequest, why.to_string()))?;
        let cosigned = format!("{note}{}", cosignature_line(line));
        let known = self
            .witnesses
            .iter()
            .filter(|witness| witness.key_id() == cosignature.key_id)
            .any(|witness| witness.open_cosigned(&cosigned).is_ok());
        if !known {
            return Err((
                Status::Forbidden,
                format!(
                    "not a valid cosignature of checkpoint {index} by a witness this node knows \
                     ([verifiable] witnesses)"
                ),
            ));
        }
        Ok(cosignature)
    }
}

/// The line as a note line: ending in one newline.
fn cosignature_line(line: &str) -> String {
    format!("{}\n", line.trim_end_matches('\n'))
}
