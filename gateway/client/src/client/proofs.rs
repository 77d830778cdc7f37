//! The verifiable log's reads: signed checkpoints, inclusion and consistency proofs
//! (`crate::proofs`, docs/verifiability.md). Served like any read; what they prove is for the
//! caller to check (`tally verify`), never taken on the node's word.

use tally_engine::merkle::Hash;

use super::{Client, ClientError};
use crate::proofs::{
    decode_checkpoint_reply, decode_consistency_reply, decode_prove_reply,
    encode_checkpoint_request, encode_consistency_request, encode_cosign_request,
    encode_prove_request, CheckpointReply, ProveReply, ProveRequest, WhichCheckpoint,
};
use crate::protocol::Operation;

fn decode_error(error: crate::protocol::DecodeError) -> ClientError {
    ClientError::Decode(error.to_string())
}

impl Client {
    /// Checkpoint `index` of the verifiable log (`proofs::LATEST`: the newest), signed.
    pub async fn checkpoint(&self, index: u64) -> Result<CheckpointReply, ClientError> {
        self.checkpoint_of(WhichCheckpoint::Index(index)).await
    }

    /// The oldest checkpoint covering every event committed up to `commit_index` (what a
    /// create reply names, [`crate::Created::commit_index`]), signed; refused `NotFound`
    /// until one is signed (within about a second of the events committing).
    pub async fn checkpoint_covering(
        &self,
        commit_index: u64,
    ) -> Result<CheckpointReply, ClientError> {
        self.checkpoint_of(WhichCheckpoint::Covering(commit_index))
            .await
    }

    /// The reads of an account recorded in the access trail, newest first, each with its
    /// inclusion proof against the trail's checkpoint (a reader's scope applies: an account
    /// it may not read is `NotFound`).
    pub async fn access_trail(
        &self,
        request: &crate::access_trail::AccessTrailRequest,
    ) -> Result<crate::access_trail::AccessTrailReply, ClientError> {
        let body = self
            .read(
                Operation::AccessTrail,
                crate::access_trail::encode_access_trail_request(request),
            )
            .await?;
        crate::access_trail::decode_access_trail_reply(&body).map_err(decode_error)
    }

    async fn checkpoint_of(&self, which: WhichCheckpoint) -> Result<CheckpointReply, ClientError> {
        let body = self
            .read(Operation::Checkpoint, encode_checkpoint_request(which))
            .await?;
        decode_checkpoint_reply(&body).map_err(decode_error)
    }

    /// The leaves and inclusion proofs of `request`'s ids against its checkpoint; ids not
    /// stored, not in the reader's scope or not yet in that checkpoint are left out.
    pub async fn prove(&self, request: &ProveRequest) -> Result<ProveReply, ClientError> {
        let body = self
            .read(Operation::Prove, encode_prove_request(request))
            .await?;
        decode_prove_reply(&body).map_err(decode_error)
    }

    /// Hand the cluster witness cosignature `line` of checkpoint `checkpoint` to keep with it
    /// (the node checks it against the witness keys it is configured with); done once the
    /// entry carrying it is committed.
    pub async fn cosign(&self, checkpoint: u64, line: &str) -> Result<(), ClientError> {
        self.read(Operation::Cosign, encode_cosign_request(checkpoint, line))
            .await
            .map(|_| ())
    }

    /// RFC 6962's consistency proof from the log at `old` leaves to `new`.
    pub async fn consistency(&self, old: u64, new: u64) -> Result<Vec<Hash>, ClientError> {
        let body = self
            .read(Operation::Consistency, encode_consistency_request(old, new))
            .await?;
        decode_consistency_reply(&body).map_err(decode_error)
    }
}
