//! A witness: what an auditor or a regulator runs to hold the log to its history. It keeps the
//! latest checkpoint it cosigned for each log and cosigns a new one only if a consistency proof
//! shows the new tree extends that one: a log that rewrites a single settled event after a
//! witness saw it can never again get that witness's cosignature, and a participant who
//! requires the cosignature is never shown the rewritten history.
//!
//! The request and the answers follow C2SP tlog-witness's `add-checkpoint` (docs/
//! verifiability.md, "Witnesses"), so a witness written to that specification can serve a
//! Tally cluster, and this one any log speaking it. A request is an old-size line, the
//! consistency proof's hashes one per line in base64, a blank line, and the signed checkpoint:
//!
//! ```text
//! old 577
//! <base64 hash>
//! …
//!
//! <signed checkpoint note>
//! ```
//!
//! The refusals carry the specification's HTTP status codes. Pure: the caller keeps the
//! latest checkpoint durably (before it hands out the cosignature) and gives the time.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::checkpoint::{note_text, Checkpoint, KeyKind, NoteError, NoteSigner, NoteVerifier};
use crate::merkle::{verify_consistency, Hash};

/// At most this many proof lines (C2SP tlog-witness): a tree of 2⁶³ leaves needs fewer.
pub const PROOF_LINES_MAX: usize = 63;

/// An `add-checkpoint` request: a new checkpoint and the proof that it extends `old_size`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size of the latest checkpoint the witness cosigned for this log (0 for none).
    pub old_size: u64,
    /// RFC 6962 consistency proof from `old_size` to the new checkpoint's size.
    pub proof: Vec<Hash>,
    /// The log's signed checkpoint.
    pub note: String,
}

/// Why a witness refuses, with the C2SP tlog-witness status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 400: not a well-formed request, or an old size above the new one.
    BadRequest(String),
    /// 403: no signature on the checkpoint verifies with a key the witness trusts for it.
    Forbidden(String),
    /// 404: the witness knows no log of this origin.
    UnknownOrigin(String),
    /// 409: the old size is not the latest the witness cosigned (`latest`), or the same size
    /// with another root — a fork.
    Conflict { latest: u64, why: String },
    /// 422: the consistency proof does not verify: the new tree does not extend the one the
    /// witness saw (history rewritten), or the proof was altered.
    Inconsistent(String),
}

impl Refusal {
    /// The HTTP status C2SP tlog-witness gives this refusal.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::BadRequest(_) => 400,
            Refusal::Forbidden(_) => 403,
            Refusal::UnknownOrigin(_) => 404,
            Refusal::Conflict { .. } => 409,
            Refusal::Inconsistent(_) => 422,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::BadRequest(why) => write!(f, "bad request: {why}"),
            Refusal::Forbidden(why) => write!(f, "not signed by a trusted key: {why}"),
            Refusal::UnknownOrigin(origin) => write!(f, "no log {origin:?} is known here"),
            Refusal::Conflict { latest, why } => {
                write!(f, "conflict with the latest cosigned size {latest}: {why}")
            }
            Refusal::Inconsistent(why) => write!(f, "not consistent with what was seen: {why}"),
        }
    }
}

impl std::error::Error for Refusal {}

fn bad(why: impl Into<String>) -> Refusal {
    Refusal::BadRequest(why.into())
}

impl AddCheckpoint {
    /// Read a request body (the format above, nothing else).
    pub fn parse(body: &str) -> Result<AddCheckpoint, Refusal> {
        let Some((head, note)) = body.split_once("\n\n") else {
            return Err(bad("no blank line between the proof and the checkpoint"));
        };
        let mut lines = head.split('\n');
        let old = lines.next().unwrap_or_default();
        let old_size = old
            .strip_prefix("old ")
            .filter(|n| {
                !n.is_empty()
                    && n.bytes().all(|b| b.is_ascii_digit())
                    && (*n == "0" || !n.starts_with('0'))
            })
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| bad(format!("the first line {old:?} is not \"old <size>\"")))?;
        let proof = lines
            .map(|line| {
                BASE64
                    .decode(line)
                    .ok()
                    .and_then(|bytes| bytes.try_into().ok())
                    .ok_or_else(|| bad(format!("proof line {line:?} is not base64 of 32 bytes")))
            })
            .collect::<Result<Vec<Hash>, Refusal>>()?;
        if proof.len() > PROOF_LINES_MAX {
            return Err(bad(format!("more than {PROOF_LINES_MAX} proof lines")));
        }
        Ok(AddCheckpoint {
            old_size,
            proof,
            note: note.to_owned(),
        })
    }

    /// The checkpoint the request carries, its signatures not yet verified: its origin says
    /// which log's key to verify it with, and which record of the witness it extends.
    pub fn unverified_checkpoint(&self) -> Result<Checkpoint, Refusal> {
        let text = note_text(&self.note).map_err(|why| bad(why.to_string()))?;
        Checkpoint::parse(text).map_err(|why| bad(why.to_string()))
    }

    /// The request's body.
    pub fn text(&self) -> String {
        let mut body = format!("old {}\n", self.old_size);
        for hash in &self.proof {
            body.push_str(&BASE64.encode(hash));
            body.push('\n');
        }
        body.push('\n');
        body.push_str(&self.note);
        body
    }
}

/// A witness's key and the logs it watches.
pub struct Witness {
    cosigner: NoteSigner,
    logs: Vec<NoteVerifier>,
}

/// A checkpoint the witness accepted: the new latest to keep, and the cosignature line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosigned {
    pub checkpoint: Checkpoint,
    /// The witness's cosignature line (C2SP tlog-cosignature/v1), ending in a newline:
    /// appended to the log's note it makes the cosigned checkpoint.
    pub line: String,
}

impl Witness {
    /// A witness cosigning with `cosigner` (a [`KeyKind::Cosignature`] key) the checkpoints of
    /// the logs whose keys are `logs` (each log's key is named as its origin).
    pub fn new(cosigner: NoteSigner, logs: Vec<NoteVerifier>) -> Result<Witness, NoteError> {
        if cosigner.verifier().kind() != KeyKind::Cosignature {
            return Err(NoteError::BadKey(format!(
                "{} is a log's key; a witness cosigns with a cosignature key",
                cosigner.name()
            )));
        }
        if let Some(log) = logs.iter().find(|log| log.kind() != KeyKind::Note) {
            return Err(NoteError::BadKey(format!(
                "{} is a cosigner's key, not a log's",
                log.name()
            )));
        }
        Ok(Witness { cosigner, logs })
    }

    pub fn verifier_key(&self) -> String {
        self.cosigner.verifier_key()
    }

    /// Check `request` against `latest`, the last checkpoint this witness cosigned for the
    /// request's origin (`None`: never), in the order C2SP tlog-witness gives; cosign at `now`
    /// (seconds since the Unix epoch) what passes. The caller must make the returned
    /// checkpoint its new latest, durably and atomically with the check, before handing out
    /// the line.
    pub fn add_checkpoint(
        &self,
        request: &AddCheckpoint,
        latest: Option<&Checkpoint>,
        now: u64,
    ) -> Result<Cosigned, Refusal> {
        let unverified = request.unverified_checkpoint()?;
        let keys: Vec<&NoteVerifier> = self
            .logs
            .iter()
            .filter(|log| log.name() == unverified.origin)
            .collect();
        if keys.is_empty() {
            return Err(Refusal::UnknownOrigin(unverified.origin));
        }
        let mut refusals = Vec::new();
        let Some(checkpoint) =
            keys.iter()
                .find_map(|key| match key.open_checkpoint(&request.note) {
                    Ok(checkpoint) => Some(checkpoint),
                    Err(why) => {
                        refusals.push(why.to_string());
                        None
                    }
                })
        else {
            return Err(Refusal::Forbidden(refusals.join("; ")));
        };
        if request.old_size > checkpoint.size {
            return Err(bad(format!(
                "old size {} is above the checkpoint's size {}",
                request.old_size, checkpoint.size
            )));
        }
        let latest = latest.filter(|latest| latest.origin == checkpoint.origin);
        let latest_size = latest.map_or(0, |latest| latest.size);
        if request.old_size != latest_size {
            return Err(Refusal::Conflict {
                latest: latest_size,
                why: format!("the request extends size {}", request.old_size),
            });
        }
        if let Some(latest) = latest {
            verify_consistency(
                latest.size,
                checkpoint.size,
                &latest.root,
                &checkpoint.root,
                &request.proof,
            )
            .map_err(|why| {
                if latest.size == checkpoint.size {
                    Refusal::Conflict {
                        latest: latest.size,
                        why: "the same size with another root: the log forked".to_owned(),
                    }
                } else {
                    Refusal::Inconsistent(format!(
                        "size {} does not extend the cosigned size {}: {why}",
                        checkpoint.size, latest.size
                    ))
                }
            })?;
        } else if !request.proof.is_empty() {
            return Err(Refusal::Inconsistent(
                "a proof from size 0 must be empty".to_owned(),
            ));
        }
        let line = self
            .cosigner
            .cosignature(&request.note, now)
            .map_err(|why| bad(why.to_string()))?;
        Ok(Cosigned { checkpoint, line })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{leaf_hash, Tree};

    const ORIGIN: &str = "tally/cluster-0x1";

    fn tree(leaves: u64, rewrite: Option<u64>) -> Tree {
        let mut tree = Tree::new();
        for i in 0..leaves {
            let byte = if Some(i) == rewrite { 0xee } else { 0 };
            tree.push(leaf_hash(&[&i.to_le_bytes()[..], &[byte]].concat()));
        }
        tree
    }

    fn log() -> NoteSigner {
        NoteSigner::new(ORIGIN, &[42; 32]).unwrap()
    }

    fn witness() -> Witness {
        let cosigner =
            NoteSigner::of_kind("witness.example/a", KeyKind::Cosignature, &[7; 32]).unwrap();
        Witness::new(cosigner, vec![log().verifier()]).unwrap()
    }

    fn note(signer: &NoteSigner, tree: &Tree, size: u64) -> String {
        let checkpoint = Checkpoint {
            origin: ORIGIN.to_owned(),
            size,
            root: tree.root(size).unwrap(),
            time_ns: 1_796_000_000_000_000_000 + size,
        };
        signer.sign(&checkpoint.text()).unwrap()
    }

    fn request(tree: &Tree, old: u64, new: u64) -> AddCheckpoint {
        AddCheckpoint {
            old_size: old,
            proof: if old == 0 {
                Vec::new()
            } else {
                tree.consistency_proof(old, new).unwrap()
            },
            note: note(&log(), tree, new),
        }
    }

    #[test]
    fn an_honest_log_is_cosigned_step_by_step() {
        let (witness, honest) = (witness(), tree(1000, None));
        let key: NoteVerifier = witness.verifier_key().parse().unwrap();
        let mut latest: Option<Checkpoint> = None;
        for (old, new) in [(0, 100), (100, 577), (577, 577), (577, 1000)] {
            let request = request(&honest, old, new);
            assert_eq!(AddCheckpoint::parse(&request.text()).unwrap(), request);
            let cosigned = witness
                .add_checkpoint(&request, latest.as_ref(), 1_796_000_000 + new)
                .unwrap();
            let note = format!("{}{}", request.note, cosigned.line);
            let (text, time) = key.open_cosigned(&note).unwrap();
            assert_eq!(time, 1_796_000_000 + new);
            assert_eq!(Checkpoint::parse(text).unwrap(), cosigned.checkpoint);
            assert_eq!(cosigned.checkpoint.size, new);
            latest = Some(cosigned.checkpoint);
        }
    }

    #[test]
    fn a_rewritten_history_is_refused() {
        let witness = witness();
        let honest = tree(577, None);
        let latest = witness
            .add_checkpoint(&request(&honest, 0, 577), None, 1)
            .unwrap()
            .checkpoint;
        // Event 300 changed after the witness saw size 577; the log signs the rewritten tree
        // honestly with its own key and proves consistency from its own (rewritten) past.
        let rewritten = tree(1000, Some(300));
        let refused = witness.add_checkpoint(&request(&rewritten, 577, 1000), Some(&latest), 2);
        assert!(
            matches!(refused, Err(Refusal::Inconsistent(_))),
            "{refused:?}"
        );
        assert_eq!(refused.unwrap_err().status(), 422);
        // At the same size, a rewritten root is a fork.
        let fork = tree(577, Some(3));
        let refused = witness.add_checkpoint(&request(&fork, 577, 577), Some(&latest), 2);
        assert!(matches!(
            refused,
            Err(Refusal::Conflict { latest: 577, .. })
        ));
    }

    #[test]
    fn each_refusal_has_its_status() {
        let (witness, honest) = (witness(), tree(600, None));
        let latest = witness
            .add_checkpoint(&request(&honest, 0, 100), None, 1)
            .unwrap()
            .checkpoint;
        let status = |request: &AddCheckpoint, latest: Option<&Checkpoint>| {
            witness
                .add_checkpoint(request, latest, 2)
                .unwrap_err()
                .status()
        };
        // Not the latest size: 409, whatever the proof.
        assert_eq!(status(&request(&honest, 50, 600), Some(&latest)), 409);
        assert_eq!(status(&request(&honest, 0, 600), Some(&latest)), 409);
        // Old size above new: 400.
        let mut backwards = request(&honest, 100, 600);
        backwards.note = note(&log(), &honest, 50);
        assert_eq!(status(&backwards, Some(&latest)), 400);
        // Another key, same name: 403.
        let impostor = NoteSigner::new(ORIGIN, &[43; 32]).unwrap();
        let mut forged = request(&honest, 100, 600);
        forged.note = note(&impostor, &honest, 600);
        assert_eq!(status(&forged, Some(&latest)), 403);
        // An origin nobody configured: 404.
        let stranger = NoteSigner::new("tally/cluster-0x2", &[42; 32]).unwrap();
        let text = Checkpoint {
            origin: "tally/cluster-0x2".to_owned(),
            size: 600,
            root: honest.root(600).unwrap(),
            time_ns: 1,
        }
        .text();
        let mut unknown = request(&honest, 100, 600);
        unknown.note = stranger.sign(&text).unwrap();
        assert_eq!(status(&unknown, Some(&latest)), 404);
        // One changed proof hash: 422.
        let mut altered = request(&honest, 100, 600);
        altered.proof[0][0] ^= 1;
        assert_eq!(status(&altered, Some(&latest)), 422);
        // And the honest request passes after all that.
        assert!(witness
            .add_checkpoint(&request(&honest, 100, 600), Some(&latest), 3)
            .is_ok());
    }

    #[test]
    fn malformed_requests_are_bad_requests() {
        let good = request(&tree(10, None), 4, 10).text();
        for body in [
            good.replacen("old 4", "old 04", 1),
            good.replacen("old 4", "old", 1),
            good.replacen("old 4", "new 4", 1),
            good.replacen("\n\n", "\n", 1),
            good.replacen('=', "", 1),
            format!(
                "old 4\n{}{}",
                format!("{}\n", BASE64.encode([0u8; 32])).repeat(64),
                &good[good.find("\n\n").unwrap() + 1..]
            ),
        ] {
            assert!(
                matches!(AddCheckpoint::parse(&body), Err(Refusal::BadRequest(_))),
                "{body:?}"
            );
        }
        let witness = witness();
        let mut garbled = AddCheckpoint::parse(&good).unwrap();
        garbled.note = "not a note".to_owned();
        assert_eq!(
            witness
                .add_checkpoint(&garbled, None, 1)
                .unwrap_err()
                .status(),
            400
        );
        // Keys of the wrong kind are refused when the witness is made.
        assert!(Witness::new(log(), vec![log().verifier()]).is_err());
        let cosigner =
            NoteSigner::of_kind("witness.example/a", KeyKind::Cosignature, &[7; 32]).unwrap();
        let other =
            NoteSigner::of_kind("witness.example/b", KeyKind::Cosignature, &[8; 32]).unwrap();
        assert!(Witness::new(cosigner, vec![other.verifier()]).is_err());
    }
}
