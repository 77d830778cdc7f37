//! Replica RPCs: openraft's AppendEntries, Vote and InstallSnapshot requests and their answers
//! as frame payloads, and [`answer`], the server side that hands a request to the local Raft.
//! Layouts are in docs/protocol.md ("Replica RPCs").
//!
//! Hand-rolled little-endian like every Tally format, with the pieces shared with the WAL and
//! snapshot files (log ids, votes, memberships, entries, snapshot meta) encoded exactly as
//! there (`replication::codec`, `replication::snapshot_image`). Decoders check every count
//! against the bytes left before allocating and never panic on random bytes (tested); entry
//! bodies are slices of the frame's buffer, not copies.
//!
//! A request that does not decode, or of a kind no replica serves, gets an error answer
//! ([`ErrorAnswer::BadRequest`]) rather than a closed connection: the frame itself was intact
//! (its checksum passed), so the stream is still at a frame boundary.

use bytes::Bytes;
use openraft::error::{Fatal, InstallSnapshotError, RaftError, SnapshotMismatch};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::SnapshotSegmentId;

use super::frame::Frame;
use super::limits::{
    APPEND_ENTRIES_MAX, APPEND_ENTRY_HEADER_BYTES, ERROR_MESSAGE_BYTES_MAX,
    SNAPSHOT_CHUNK_BYTES_MAX,
};
use crate::limits::{ENTRY_PAYLOAD_BYTES_MAX, SNAPSHOT_PAYLOAD_BYTES_MAX};
use crate::replication::codec::{
    decode_entry, decode_optional_log_id, decode_vote, encode_entry, encode_optional_log_id,
    encode_vote, Reader,
};
use crate::replication::limits::{SNAPSHOT_ID_BYTES_MAX, SNAPSHOT_META_BYTES_MAX};
use crate::replication::snapshot_image::{decode_meta, encode_meta};
use crate::replication::types::{NodeId, SnapshotMeta, TypeConfig, Vote};
use crate::replication::{DecodeError, EncodeError};
use crate::wal;

/// Frame kind of an AppendEntries request.
pub const KIND_APPEND_ENTRIES: u8 = 1;
/// Frame kind of a Vote request.
pub const KIND_VOTE: u8 = 2;
/// Frame kind of one InstallSnapshot chunk.
pub const KIND_INSTALL_SNAPSHOT: u8 = 3;
/// Frame kind of the answer to an AppendEntries request.
pub const KIND_APPEND_ENTRIES_RESPONSE: u8 = 17;
/// Frame kind of the answer to a Vote request.
pub const KIND_VOTE_RESPONSE: u8 = 18;
/// Frame kind of the answer to an InstallSnapshot chunk.
pub const KIND_INSTALL_SNAPSHOT_RESPONSE: u8 = 19;
/// Frame kind of an error answer to any replica request ([`ErrorAnswer`]).
pub const KIND_ERROR: u8 = 31;

const _: () = assert!(KIND_ERROR <= super::RAFT_KIND_LAST);

const APPEND_SUCCESS: u8 = 1;
const APPEND_PARTIAL_SUCCESS: u8 = 2;
const APPEND_CONFLICT: u8 = 3;
const APPEND_HIGHER_VOTE: u8 = 4;

const ERROR_STOPPED: u8 = 1;
const ERROR_PANICKED: u8 = 2;
const ERROR_STORAGE: u8 = 3;
const ERROR_SNAPSHOT_MISMATCH: u8 = 4;
const ERROR_BAD_REQUEST: u8 = 5;

/// Why a replica could not answer a request: what openraft's remote errors need, plus a
/// request the replica could not read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorAnswer {
    /// The replica's Raft has stopped (openraft `Fatal::Stopped`).
    Stopped,
    /// The replica's Raft panicked (`Fatal::Panicked`).
    Panicked,
    /// The replica's storage failed (`Fatal::StorageError`); its text.
    Storage { message: String },
    /// A snapshot chunk did not continue the snapshot being received: the sender restarts at
    /// offset 0 (`InstallSnapshotError::SnapshotMismatch`).
    SnapshotMismatch {
        expect: SnapshotSegmentId,
        got: SnapshotSegmentId,
    },
    /// The request did not decode, or its kind is not a replica request.
    BadRequest { message: String },
}

impl ErrorAnswer {
    fn from_fatal(fatal: Fatal<NodeId>) -> ErrorAnswer {
        match fatal {
            Fatal::Stopped => ErrorAnswer::Stopped,
            Fatal::Panicked => ErrorAnswer::Panicked,
            Fatal::StorageError(error) => ErrorAnswer::Storage {
                message: error.to_string(),
            },
        }
    }

    /// openraft's fatal error for this answer, if it is one.
    pub fn to_fatal(&self) -> Option<Fatal<NodeId>> {
        match self {
            ErrorAnswer::Stopped => Some(Fatal::Stopped),
            ErrorAnswer::Panicked => Some(Fatal::Panicked),
            ErrorAnswer::Storage { message } => {
                let source = openraft::AnyError::error(message);
                let io = openraft::StorageIOError::new(
                    openraft::ErrorSubject::Store,
                    openraft::ErrorVerb::Write,
                    source,
                );
                Some(Fatal::StorageError(io.into()))
            }
            ErrorAnswer::SnapshotMismatch { .. } | ErrorAnswer::BadRequest { .. } => None,
        }
    }

    /// openraft's snapshot mismatch for this answer, if it is one.
    pub fn to_snapshot_mismatch(&self) -> Option<SnapshotMismatch> {
        match self {
            ErrorAnswer::SnapshotMismatch { expect, got } => Some(SnapshotMismatch {
                expect: expect.clone(),
                got: got.clone(),
            }),
            _ => None,
        }
    }
}

impl std::fmt::Display for ErrorAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorAnswer::Stopped => write!(f, "the replica's Raft has stopped"),
            ErrorAnswer::Panicked => write!(f, "the replica's Raft panicked"),
            ErrorAnswer::Storage { message } => {
                write!(f, "the replica's storage failed: {message}")
            }
            ErrorAnswer::SnapshotMismatch { expect, got } => {
                write!(f, "snapshot chunk mismatch: expected {expect}, got {got}")
            }
            ErrorAnswer::BadRequest { message } => write!(f, "bad replica request: {message}"),
        }
    }
}

impl std::error::Error for ErrorAnswer {}

fn check_limit(what: &'static str, count: usize, limit: usize) -> Result<(), EncodeError> {
    if count > limit {
        return Err(EncodeError::OverLimit { what, count, limit });
    }
    Ok(())
}

/// Encode an AppendEntries request. Fails only if it breaks a limit (more entries than
/// `APPEND_ENTRIES_MAX`, an entry over `ENTRY_PAYLOAD_BYTES_MAX`).
pub fn encode_append_entries(
    request: &AppendEntriesRequest<TypeConfig>,
) -> Result<Vec<u8>, EncodeError> {
    check_limit(
        "entries in one AppendEntries",
        request.entries.len(),
        APPEND_ENTRIES_MAX,
    )?;
    let records = request
        .entries
        .iter()
        .map(encode_entry)
        .collect::<Result<Vec<_>, _>>()?;
    let bytes: usize = records
        .iter()
        .map(|record| APPEND_ENTRY_HEADER_BYTES + record.payload.len())
        .sum();
    let mut out = Vec::with_capacity(super::limits::APPEND_ENTRIES_HEADER_BYTES + bytes);
    encode_vote(&request.vote, &mut out);
    encode_optional_log_id(request.prev_log_id.as_ref(), &mut out);
    encode_optional_log_id(request.leader_commit.as_ref(), &mut out);
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    for record in &records {
        check_limit(
            "bytes of one entry",
            record.payload.len(),
            ENTRY_PAYLOAD_BYTES_MAX,
        )?;
        out.extend_from_slice(&record.index.to_le_bytes());
        out.extend_from_slice(&record.term.to_le_bytes());
        out.extend_from_slice(&(record.payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&record.payload);
    }
    Ok(out)
}

/// Decode an AppendEntries request (the pair of [`encode_append_entries`]).
pub fn decode_append_entries(
    payload: &Bytes,
) -> Result<AppendEntriesRequest<TypeConfig>, DecodeError> {
    let mut reader = Reader::new(payload);
    let vote = decode_vote(&mut reader)?;
    let prev_log_id = decode_optional_log_id(&mut reader)?;
    let leader_commit = decode_optional_log_id(&mut reader)?;
    let count = reader.count(
        "entries in one AppendEntries",
        APPEND_ENTRIES_MAX,
        APPEND_ENTRY_HEADER_BYTES,
    )?;
    reader.reserved(4)?;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let index = reader.u64()?;
        let term = reader.u64()?;
        let length = reader.u32()? as usize;
        reader.reserved(4)?;
        if length > ENTRY_PAYLOAD_BYTES_MAX {
            return Err(DecodeError::OverLimit {
                what: "bytes of one entry",
                count: length as u64,
                limit: ENTRY_PAYLOAD_BYTES_MAX,
            });
        }
        let start = reader.at;
        reader.take(length)?;
        let record = wal::Entry {
            index,
            term,
            payload: payload.slice(start..start + length),
        };
        entries.push(decode_entry(&record)?);
    }
    reader.finish()?;
    Ok(AppendEntriesRequest {
        vote,
        prev_log_id,
        entries,
        leader_commit,
    })
}

/// Encode the answer to an AppendEntries request.
pub fn encode_append_entries_response(response: &AppendEntriesResponse<NodeId>) -> Vec<u8> {
    let mut out = Vec::with_capacity(40);
    let tag = match response {
        AppendEntriesResponse::Success => APPEND_SUCCESS,
        AppendEntriesResponse::PartialSuccess(_) => APPEND_PARTIAL_SUCCESS,
        AppendEntriesResponse::Conflict => APPEND_CONFLICT,
        AppendEntriesResponse::HigherVote(_) => APPEND_HIGHER_VOTE,
    };
    out.push(tag);
    out.extend_from_slice(&[0; 7]);
    match response {
        AppendEntriesResponse::PartialSuccess(matching) => {
            encode_optional_log_id(matching.as_ref(), &mut out);
        }
        AppendEntriesResponse::HigherVote(vote) => encode_vote(vote, &mut out),
        AppendEntriesResponse::Success | AppendEntriesResponse::Conflict => {}
    }
    out
}

/// Decode the answer to an AppendEntries request.
pub fn decode_append_entries_response(
    payload: &[u8],
) -> Result<AppendEntriesResponse<NodeId>, DecodeError> {
    let mut reader = Reader::new(payload);
    let tag = reader.u8()?;
    reader.reserved(7)?;
    let response = match tag {
        APPEND_SUCCESS => AppendEntriesResponse::Success,
        APPEND_PARTIAL_SUCCESS => {
            AppendEntriesResponse::PartialSuccess(decode_optional_log_id(&mut reader)?)
        }
        APPEND_CONFLICT => AppendEntriesResponse::Conflict,
        APPEND_HIGHER_VOTE => AppendEntriesResponse::HigherVote(decode_vote(&mut reader)?),
        other => return Err(DecodeError::UnknownKind(other)),
    };
    reader.finish()?;
    Ok(response)
}

/// Encode a Vote request.
pub fn encode_vote_request(request: &VoteRequest<NodeId>) -> Vec<u8> {
    let mut out = Vec::with_capacity(56);
    encode_vote(&request.vote, &mut out);
    encode_optional_log_id(request.last_log_id.as_ref(), &mut out);
    out
}

/// Decode a Vote request.
pub fn decode_vote_request(payload: &[u8]) -> Result<VoteRequest<NodeId>, DecodeError> {
    let mut reader = Reader::new(payload);
    let vote = decode_vote(&mut reader)?;
    let last_log_id = decode_optional_log_id(&mut reader)?;
    reader.finish()?;
    Ok(VoteRequest { vote, last_log_id })
}

/// Encode the answer to a Vote request.
pub fn encode_vote_response(response: &VoteResponse<NodeId>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    encode_vote(&response.vote, &mut out);
    out.push(u8::from(response.vote_granted));
    out.extend_from_slice(&[0; 7]);
    encode_optional_log_id(response.last_log_id.as_ref(), &mut out);
    out
}

/// Decode the answer to a Vote request.
pub fn decode_vote_response(payload: &[u8]) -> Result<VoteResponse<NodeId>, DecodeError> {
    let mut reader = Reader::new(payload);
    let vote = decode_vote(&mut reader)?;
    let vote_granted = reader.flag()?;
    reader.reserved(7)?;
    let last_log_id = decode_optional_log_id(&mut reader)?;
    reader.finish()?;
    Ok(VoteResponse {
        vote,
        vote_granted,
        last_log_id,
    })
}

/// Encode one InstallSnapshot chunk from its parts, so a sender need not copy the chunk's
/// bytes into an `InstallSnapshotRequest` first.
pub fn encode_install_snapshot(
    vote: &Vote,
    meta: &SnapshotMeta,
    offset: u64,
    done: bool,
    data: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    check_limit(
        "bytes of a snapshot chunk",
        data.len(),
        SNAPSHOT_CHUNK_BYTES_MAX,
    )?;
    let mut section = Vec::with_capacity(1024);
    encode_meta(meta, &mut section)?;
    let mut out = Vec::with_capacity(
        super::limits::INSTALL_SNAPSHOT_HEADER_BYTES + section.len() + data.len(),
    );
    encode_vote(vote, &mut out);
    out.extend_from_slice(&offset.to_le_bytes());
    out.push(u8::from(done));
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&(section.len() as u32).to_le_bytes());
    out.extend_from_slice(&section);
    out.extend_from_slice(data);
    Ok(out)
}

/// Decode one InstallSnapshot chunk (the pair of [`encode_install_snapshot`]).
pub fn decode_install_snapshot(
    payload: &[u8],
) -> Result<InstallSnapshotRequest<TypeConfig>, DecodeError> {
    let mut reader = Reader::new(payload);
    let vote = decode_vote(&mut reader)?;
    let offset = reader.u64()?;
    let done = reader.flag()?;
    reader.reserved(3)?;
    let meta_bytes = reader.count("bytes of snapshot meta", SNAPSHOT_META_BYTES_MAX, 1)?;
    let mut section = Reader::new(reader.take(meta_bytes)?);
    let meta = decode_meta(&mut section)?;
    section.finish()?;
    let data = reader.take(reader.remaining())?;
    if data.len() > SNAPSHOT_CHUNK_BYTES_MAX {
        return Err(DecodeError::OverLimit {
            what: "bytes of a snapshot chunk",
            count: data.len() as u64,
            limit: SNAPSHOT_CHUNK_BYTES_MAX,
        });
    }
    // openraft writes a chunk at its offset into the image being received: a damaged offset
    // must not make it grow a buffer past any snapshot we would ever read back.
    let end = offset.saturating_add(data.len() as u64);
    if end > SNAPSHOT_PAYLOAD_BYTES_MAX {
        return Err(DecodeError::OverLimit {
            what: "end offset of a snapshot chunk",
            count: end,
            limit: SNAPSHOT_PAYLOAD_BYTES_MAX as usize,
        });
    }
    Ok(InstallSnapshotRequest {
        vote,
        meta,
        offset,
        data: data.to_vec(),
        done,
    })
}

/// Encode the answer to an InstallSnapshot chunk.
pub fn encode_install_snapshot_response(response: &InstallSnapshotResponse<NodeId>) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    encode_vote(&response.vote, &mut out);
    out
}

/// Decode the answer to an InstallSnapshot chunk.
pub fn decode_install_snapshot_response(
    payload: &[u8],
) -> Result<InstallSnapshotResponse<NodeId>, DecodeError> {
    let mut reader = Reader::new(payload);
    let vote = decode_vote(&mut reader)?;
    reader.finish()?;
    Ok(InstallSnapshotResponse { vote })
}

/// Append a message, cut to `ERROR_MESSAGE_BYTES_MAX` at a character boundary.
fn encode_message(message: &str, out: &mut Vec<u8>) {
    let mut end = message.len().min(ERROR_MESSAGE_BYTES_MAX);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u32).to_le_bytes());
    out.extend_from_slice(&message.as_bytes()[..end]);
}

fn decode_string(
    reader: &mut Reader<'_>,
    what: &'static str,
    limit: usize,
) -> Result<String, DecodeError> {
    let length = reader.count(what, limit, 1)?;
    Ok(std::str::from_utf8(reader.take(length)?)
        .map_err(|_| DecodeError::NotUtf8 { what })?
        .to_owned())
}

fn encode_segment(segment: &SnapshotSegmentId, out: &mut Vec<u8>) {
    // Snapshot ids are ours (`state_machine.rs`), far shorter than the limit; a longer one from
    // a peer never decoded, so cutting cannot hide anything.
    let mut end = segment.id.len().min(SNAPSHOT_ID_BYTES_MAX);
    while !segment.id.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u32).to_le_bytes());
    out.extend_from_slice(&segment.id.as_bytes()[..end]);
    out.extend_from_slice(&segment.offset.to_le_bytes());
}

fn decode_segment(reader: &mut Reader<'_>) -> Result<SnapshotSegmentId, DecodeError> {
    let id = decode_string(reader, "snapshot id", SNAPSHOT_ID_BYTES_MAX)?;
    let offset = reader.u64()?;
    Ok(SnapshotSegmentId { id, offset })
}

/// Encode an error answer.
pub fn encode_error_answer(error: &ErrorAnswer) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let code = match error {
        ErrorAnswer::Stopped => ERROR_STOPPED,
        ErrorAnswer::Panicked => ERROR_PANICKED,
        ErrorAnswer::Storage { .. } => ERROR_STORAGE,
        ErrorAnswer::SnapshotMismatch { .. } => ERROR_SNAPSHOT_MISMATCH,
        ErrorAnswer::BadRequest { .. } => ERROR_BAD_REQUEST,
    };
    out.push(code);
    out.extend_from_slice(&[0; 7]);
    match error {
        ErrorAnswer::Stopped | ErrorAnswer::Panicked => {}
        ErrorAnswer::Storage { message } | ErrorAnswer::BadRequest { message } => {
            encode_message(message, &mut out);
        }
        ErrorAnswer::SnapshotMismatch { expect, got } => {
            encode_segment(expect, &mut out);
            encode_segment(got, &mut out);
        }
    }
    out
}

/// Decode an error answer.
pub fn decode_error_answer(payload: &[u8]) -> Result<ErrorAnswer, DecodeError> {
    let mut reader = Reader::new(payload);
    let code = reader.u8()?;
    reader.reserved(7)?;
    let error = match code {
        ERROR_STOPPED => ErrorAnswer::Stopped,
        ERROR_PANICKED => ErrorAnswer::Panicked,
        ERROR_STORAGE => ErrorAnswer::Storage {
            message: decode_string(&mut reader, "error message", ERROR_MESSAGE_BYTES_MAX)?,
        },
        ERROR_SNAPSHOT_MISMATCH => ErrorAnswer::SnapshotMismatch {
            expect: decode_segment(&mut reader)?,
            got: decode_segment(&mut reader)?,
        },
        ERROR_BAD_REQUEST => ErrorAnswer::BadRequest {
            message: decode_string(&mut reader, "error message", ERROR_MESSAGE_BYTES_MAX)?,
        },
        other => return Err(DecodeError::UnknownKind(other)),
    };
    reader.finish()?;
    Ok(error)
}

fn bad_request(kind: u8) -> impl FnOnce(DecodeError) -> ErrorAnswer {
    move |error| ErrorAnswer::BadRequest {
        message: format!("kind {kind} does not decode: {error}"),
    }
}

fn fatal(error: RaftError<NodeId>) -> ErrorAnswer {
    match error {
        RaftError::Fatal(fatal) => ErrorAnswer::from_fatal(fatal),
        RaftError::APIError(never) => match never {},
    }
}

/// Refuse a request whose vote names another node than the one the connection authenticated
/// (`sender`; `None` on a plaintext network, where nobody is authenticated): one member must
/// not speak for another.
fn check_sender(vote: &Vote, sender: Option<NodeId>) -> Result<(), ErrorAnswer> {
    match (sender, vote.leader_id().voted_for()) {
        (Some(sender), Some(named)) if sender != named => Err(ErrorAnswer::BadRequest {
            message: format!("node {sender} sent a request in the name of node {named}"),
        }),
        (Some(sender), None) => Err(ErrorAnswer::BadRequest {
            message: format!("node {sender} sent a request that names no node"),
        }),
        _ => Ok(()),
    }
}

/// Whether `vote` names the node `raft` runs on.
fn names_this_node(raft: &openraft::Raft<TypeConfig>, vote: &Vote) -> bool {
    vote.leader_id().voted_for() == Some(raft.metrics().borrow().id)
}

/// Decode a replica request, hand it to `raft`, and encode the answer: its kind and payload.
async fn dispatch(
    raft: &openraft::Raft<TypeConfig>,
    frame: Frame,
    sender: Option<NodeId>,
) -> Result<(u8, Vec<u8>), ErrorAnswer> {
    match frame.kind {
        KIND_APPEND_ENTRIES => {
            let request = decode_append_entries(&frame.payload).map_err(bad_request(frame.kind))?;
            check_sender(&request.vote, sender)?;
            // A leader never sends itself AppendEntries, and openraft asserts that it is not
            // sent its own term's: one in this node's name is refused, never handed over
            // (reachable only where nobody is authenticated: `insecure_plaintext`).
            if names_this_node(raft, &request.vote) {
                return Err(ErrorAnswer::BadRequest {
                    message: "an AppendEntries in the receiving node's own name".to_owned(),
                });
            }
            let response = raft.append_entries(request).await.map_err(fatal)?;
            Ok((
                KIND_APPEND_ENTRIES_RESPONSE,
                encode_append_entries_response(&response),
            ))
        }
        KIND_VOTE => {
            let request = decode_vote_request(&frame.payload).map_err(bad_request(frame.kind))?;
            check_sender(&request.vote, sender)?;
            let response = raft.vote(request).await.map_err(fatal)?;
            Ok((KIND_VOTE_RESPONSE, encode_vote_response(&response)))
        }
        KIND_INSTALL_SNAPSHOT => {
            let request =
                decode_install_snapshot(&frame.payload).map_err(bad_request(frame.kind))?;
            check_sender(&request.vote, sender)?;
            // openraft 0.9 sends a follower no heartbeat while a snapshot streams to it, and a
            // chunk resets the follower's election timer only once the last one is installed:
            // a transfer longer than the election timeout (a 10M-event state's takes seconds)
            // made the follower start elections that cost the leader its leadership, and the
            // transfer started over. So each chunk also counts as the leader's heartbeat: an
            // empty AppendEntries under the chunk's vote, from before the first entry, which
            // matches any log and changes nothing but the election timer (and answers a stale
            // vote with the newer one, as the chunk itself would). Never under this node's own
            // vote: openraft asserts that a leader is not sent AppendEntries of its own term.
            if !names_this_node(raft, &request.vote) {
                raft.append_entries(AppendEntriesRequest {
                    vote: request.vote,
                    prev_log_id: None,
                    leader_commit: None,
                    entries: Vec::new(),
                })
                .await
                .map_err(fatal)?;
            }
            let response = raft
                .install_snapshot(request)
                .await
                .map_err(|error| match error {
                    RaftError::Fatal(fatal) => ErrorAnswer::from_fatal(fatal),
                    RaftError::APIError(InstallSnapshotError::SnapshotMismatch(mismatch)) => {
                        ErrorAnswer::SnapshotMismatch {
                            expect: mismatch.expect,
                            got: mismatch.got,
                        }
                    }
                })?;
            Ok((
                KIND_INSTALL_SNAPSHOT_RESPONSE,
                encode_install_snapshot_response(&response),
            ))
        }
        other => Err(ErrorAnswer::BadRequest {
            message: format!("frame kind {other} is not a replica request"),
        }),
    }
}

/// Answer one replica request frame (kind `1..=RAFT_KIND_LAST`) with the local Raft: decode it,
/// call `append_entries`, `vote` or `install_snapshot` (which, on the last chunk, installs the
/// whole snapshot through `install_full_snapshot`), and encode the answer under the request's
/// id. Anything that goes wrong is an error answer ([`KIND_ERROR`]); this never panics on
/// what a peer sends. `sender` is the node the connection authenticated as (every request's
/// vote must name it), or `None` on a plaintext network.
pub async fn answer(
    raft: &openraft::Raft<TypeConfig>,
    frame: Frame,
    sender: Option<NodeId>,
) -> Frame {
    let request_id = frame.request_id;
    let kind = frame.kind;
    let (kind, payload) = match dispatch(raft, frame, sender).await {
        Ok(answer) => answer,
        Err(error) => {
            tracing::warn!(kind, request_id, %error, "replica request answered with an error");
            (KIND_ERROR, encode_error_answer(&error))
        }
    };
    Frame {
        kind,
        request_id,
        payload: Bytes::from(payload),
    }
}

#[cfg(test)]
#[path = "rpc_tests.rs"]
mod tests;
