//! The access trail's recorder: on a node with the cluster's key, every read it serves that
//! touched an account is recorded in the access trail (`Engine::record_reads`) before its
//! reply goes out. Reads wait in a queue; one task proposes everything queued as one Raft
//! entry (`LogNote::Reads`), waits for it to commit, and releases the replies: a read costs a
//! share of one entry, not an entry of its own (group commit), and no reply leaves without
//! its record on a quorum. Only a leader can propose: on a follower the record fails with
//! `NotLeader` naming the leader, and the client reads there instead.

use std::sync::Arc;

use bytes::Bytes;
use tally_client::access_trail::{
    encode_access_trail_reply, AccessRead, AccessTrailReply, AccessTrailRequest,
};
use tally_client::proofs::LATEST;
use tally_client::protocol::{Refusal, Status};
use tally_engine::{AccessEntry, ACCESS_ORIGIN_SUFFIX};
use tally_raft::replication::types::{LogNote, Request};
use tokio::sync::{mpsc, oneshot};

use super::{batcher_refusal, Context, Raft};
use crate::auth::Access;
use crate::batcher::{refusal_of, BatcherError};

/// Reads waiting to be recorded before the queue pushes back on new ones.
const QUEUE_READS_MAX: usize = 4096;
/// Reads in one entry (the limit of a reads note, `tally_raft::replication::limits`).
const ENTRY_READS_MAX: usize = tally_raft::replication::limits::ENTRY_READS_MAX;
/// Bytes of reads in one entry: inside an entry's payload with room for its headers. The
/// largest read (8,189 trades, four accounts each) takes about half.
const ENTRY_READ_BYTES_MAX: usize = tally_raft::limits::ENTRY_PAYLOAD_BYTES_MAX - 1024;

/// Bytes one read takes in a reads note: its header (56) and 16 per account.
fn read_bytes(entry: &AccessEntry) -> usize {
    56 + 16 * entry.accounts.len()
}

type Done = oneshot::Sender<Result<(), BatcherError>>;

/// The handle reads record through; cloned into every read's task.
#[derive(Clone)]
pub(crate) struct AccessRecorder {
    queue: mpsc::Sender<(AccessEntry, Done)>,
}

impl AccessRecorder {
    /// Start the recording task on this runtime; it ends when every handle is dropped.
    pub(crate) fn start(raft: Raft, clock: fn() -> u64) -> AccessRecorder {
        let (queue, queued) = mpsc::channel(QUEUE_READS_MAX);
        tokio::spawn(run(raft, clock, queued));
        AccessRecorder { queue }
    }

    /// `payload`, the reply to a read by `access` that touched `accounts`, once the read is
    /// recorded; a refusal instead if it cannot be (the client retries at the leader).
    pub(crate) async fn recorded(
        &self,
        context: &Context,
        access: &Access,
        mut accounts: Vec<u128>,
        payload: Bytes,
    ) -> Bytes {
        // Each account once (a lookup of a thousand transfers between ten accounts names ten);
        // account 0 is never an account (a post's or void's unnamed sides).
        accounts.sort_unstable();
        accounts.dedup();
        accounts.retain(|&account| account != 0);
        if accounts.is_empty() {
            return payload;
        }
        let mut credential = [0u8; 16];
        credential.copy_from_slice(&access.credential[..16]);
        let entry = AccessEntry {
            // The request's kind: the reply's less one.
            operation: context.kind & !1,
            credential,
            name: access.name,
            accounts,
        };
        let (done, recorded) = oneshot::channel();
        let unrecorded = || {
            BatcherError::Unavailable("the read could not be recorded in the access trail".into())
        };
        let result = match self.queue.send((entry, done)).await {
            Ok(()) => recorded.await.unwrap_or_else(|_| Err(unrecorded())),
            Err(_) => Err(unrecorded()),
        };
        match result {
            Ok(()) => payload,
            Err(BatcherError::NotLeader { leader }) => context.refuse(
                Status::NotLeader,
                &Refusal {
                    leader,
                    event: None,
                    message: "on this cluster every read is recorded in the access trail, which \
                              only the leader can do: read at the leader"
                        .to_owned(),
                },
            ),
            Err(error) => batcher_refusal(context, error),
        }
    }
}

async fn run(raft: Raft, clock: fn() -> u64, mut queued: mpsc::Receiver<(AccessEntry, Done)>) {
    let mut last_timestamp = 0;
    let mut pending = None;
    loop {
        let first = match pending.take() {
            Some(read) => read,
            None => match queued.recv().await {
                Some(read) => read,
                None => return,
            },
        };
        let mut bytes = read_bytes(&first.0);
        let mut reads = vec![first];
        let mut carried = None;
        while reads.len() < ENTRY_READS_MAX {
            let Ok(read) = queued.try_recv() else { break };
            if bytes + read_bytes(&read.0) > ENTRY_READ_BYTES_MAX {
                carried = Some(read);
                break;
            }
            bytes += read_bytes(&read.0);
            reads.push(read);
        }
        let (entries, waiting): (Vec<AccessEntry>, Vec<Done>) = reads.into_iter().unzip();
        last_timestamp = clock().max(last_timestamp + 1);
        let entry = Request {
            timestamp: last_timestamp,
            batches: Vec::new(),
            log: Some(LogNote::Reads(entries)),
        };
        let result = raft
            .client_write(entry)
            .await
            .map(|_| ())
            .map_err(refusal_of);
        for done in waiting {
            let _ = done.send(result.clone());
        }
        pending = carried;
    }
}

/// The reply to an access trail request: the reads of `request.account` against an access
/// checkpoint, each proven; `Err` a refusal (an account the reader may not read is absent,
/// as everywhere).
pub(super) fn answer_trail(
    context: &Context,
    access: &Access,
    engine: &tally_engine::Engine,
    request: &AccessTrailRequest,
    origin: Option<Arc<str>>,
    commit_index: u64,
) -> Result<Bytes, Bytes> {
    let Some(origin) = origin else {
        return Err(context.refuse_with(
            Status::NotFound,
            "this node has no checkpoint key ([verifiable] key_file): it keeps no access trail",
        ));
    };
    if !access.account_id_readable(engine, request.account) {
        return Err(context.refuse_with(Status::NotFound, "no such account (or not in your scope)"));
    }
    let checkpoint = if request.checkpoint == LATEST {
        engine.latest_access_checkpoint()
    } else {
        engine
            .access_checkpoint(request.checkpoint)
            .map(|signed| (request.checkpoint, signed))
    };
    let Some((index, signed)) = checkpoint else {
        return Err(context.refuse_with(
            Status::NotFound,
            "no such checkpoint of the access trail here (one is signed within a second of \
             reads being recorded)",
        ));
    };
    let reads = engine
        .access_trail(
            request.account,
            signed.size,
            request.before,
            request.limit as usize,
            TRAIL_REPLY_BYTES_MAX,
        )
        .map_err(|error| context.refuse_with(Status::Internal, error.to_string()))?;
    let reply = AccessTrailReply {
        checkpoint: index,
        size: signed.size,
        note: signed.note(&format!("{origin}{ACCESS_ORIGIN_SUFFIX}")),
        reads: reads
            .into_iter()
            .map(|read| AccessRead {
                index: read.index,
                leaf: read.leaf,
                proof: read.proof,
            })
            .collect(),
    };
    Ok(context.ok(commit_index, &encode_access_trail_reply(&reply)))
}

/// Bytes of leaves and proofs in one access trail reply: inside a reply's limit.
const TRAIL_REPLY_BYTES_MAX: usize = tally_client::limits::REPLY_PAYLOAD_BYTES_MAX - 64 * 1024;
