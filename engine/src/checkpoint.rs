//! Signed checkpoints: a tree size and root in the C2SP tlog-checkpoint text format, signed
//! as a C2SP signed note with Ed25519 (docs/verifiability.md has the byte-exact formats).
//!
//! A checkpoint's text is four lines, each ending in a newline:
//!
//! ```text
//! <origin>                       the log's name, e.g. "tally/cluster-0x1"
//! <tree size>                    decimal, no leading zeros
//! <root hash>                    standard base64 of the 32-byte RFC 6962 root
//! time <nanoseconds>             an extension line: when the node signed it (Unix epoch)
//! ```
//!
//! A signed note is that text, a blank line, and one signature line per signer:
//! `— <key name> <base64(key id ‖ Ed25519 signature over the text)>`, where the key id is the
//! first four bytes of `SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public key)`. Witnesses add their own
//! lines to the same text. Verifier keys travel as `<name>+<hex key id>+<base64(0x01 ‖ public
//! key)>`, the C2SP form, so standard tools read them. Pure: signing with Ed25519 is
//! deterministic, and nothing here reads a clock or a file.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// The signed-note signature type of Ed25519.
const ED25519: u8 = 0x01;
/// At most this many signature lines are read from a note (the log's and its witnesses').
pub const SIGNATURES_MAX: usize = 100;
/// A note longer than this is refused before it is parsed.
pub const NOTE_BYTES_MAX: usize = 64 * 1024;

/// Why a checkpoint or note is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoteError {
    /// Not a well-formed note or checkpoint; says where.
    Malformed(String),
    /// No signature by the key asked for.
    NotSigned { key: String },
    /// A signature by that key that does not verify.
    BadSignature { key: String },
    /// A key name or verifier key that is not well formed.
    BadKey(String),
}

impl std::fmt::Display for NoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoteError::Malformed(why) => write!(f, "malformed note: {why}"),
            NoteError::NotSigned { key } => write!(f, "the note carries no signature by {key}"),
            NoteError::BadSignature { key } => {
                write!(
                    f,
                    "the signature by {key} does not verify: the note was altered"
                )
            }
            NoteError::BadKey(why) => write!(f, "bad key: {why}"),
        }
    }
}

impl std::error::Error for NoteError {}

fn malformed(why: impl Into<String>) -> NoteError {
    NoteError::Malformed(why.into())
}

/// A point in the log's history: its origin, size, root and signing time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// Nanoseconds since the Unix epoch when the checkpoint was made.
    pub time_ns: u64,
}

impl Checkpoint {
    /// The checkpoint's text, the part every signature covers.
    pub fn text(&self) -> String {
        format!(
            "{}\n{}\n{}\ntime {}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root),
            self.time_ns
        )
    }

    /// Read a checkpoint's text (as [`Checkpoint::text`] writes it, nothing else).
    pub fn parse(text: &str) -> Result<Checkpoint, NoteError> {
        let Some(body) = text.strip_suffix('\n') else {
            return Err(malformed("the checkpoint does not end in a newline"));
        };
        let lines: Vec<&str> = body.split('\n').collect();
        let [origin, size, root, time] = lines.as_slice() else {
            return Err(malformed(format!(
                "a checkpoint has 4 lines, this one {}",
                lines.len()
            )));
        };
        check_name(origin).map_err(|why| malformed(format!("origin: {why}")))?;
        let size = decimal(size).ok_or_else(|| malformed(format!("tree size {size:?}")))?;
        let root: Hash = BASE64
            .decode(root)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| malformed(format!("root hash {root:?} is not base64 of 32 bytes")))?;
        let time_ns = time
            .strip_prefix("time ")
            .and_then(decimal)
            .ok_or_else(|| malformed(format!("time line {time:?}")))?;
        let checkpoint = Checkpoint {
            origin: (*origin).to_owned(),
            size,
            root,
            time_ns,
        };
        // One spelling per checkpoint: what does not round-trip is refused.
        if checkpoint.text() != text {
            return Err(malformed("not in canonical form"));
        }
        Ok(checkpoint)
    }
}

/// A decimal u64 without sign, leading zeros or anything else.
fn decimal(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

/// A key name or origin: non-empty, printable, no spaces and no `+`.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty".to_owned());
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '+')
    {
        return Err(format!("{name:?} has a space, a control character or '+'"));
    }
    Ok(())
}

fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', ED25519]);
    hasher.update(key.as_bytes());
    let hash = hasher.finalize();
    [hash[0], hash[1], hash[2], hash[3]]
}

/// A signer: the cluster's checkpoint key, or a witness's.
pub struct NoteSigner {
    name: String,
    key: SigningKey,
}

impl NoteSigner {
    /// The signer `name` with the Ed25519 key whose 32-byte seed is `seed`.
    pub fn new(name: &str, seed: &[u8; 32]) -> Result<NoteSigner, NoteError> {
        check_name(name).map_err(NoteError::BadKey)?;
        Ok(NoteSigner {
            name: name.to_owned(),
            key: SigningKey::from_bytes(seed),
        })
    }

    /// The verifier key to publish, in the C2SP text form.
    pub fn verifier_key(&self) -> String {
        NoteVerifier {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
        .to_string()
    }

    /// `text` signed: the note with this signer's line.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        Ok(format!("{text}\n{}", self.line(text)))
    }

    /// Add this signer's line to a note already signed (a witness's cosignature). The note is
    /// not verified here: a witness verifies it against the log's key first.
    pub fn cosign(&self, note: &str) -> Result<String, NoteError> {
        let (text, _) = split(note)?;
        Ok(format!("{note}{}", self.line(text)))
    }

    fn line(&self, text: &str) -> String {
        let signature = self.key.sign(text.as_bytes());
        let mut blob = key_id(&self.name, &self.key.verifying_key()).to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        format!("\u{2014} {} {}\n", self.name, BASE64.encode(blob))
    }
}

/// A key that checks notes: a name and an Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key: VerifyingKey,
}

impl std::fmt::Display for NoteVerifier {
    /// `<name>+<hex key id>+<base64(0x01 ‖ public key)>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let id: String = key_id(&self.name, &self.key)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut blob = vec![ED25519];
        blob.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{id}+{}", self.name, BASE64.encode(blob))
    }
}

impl std::str::FromStr for NoteVerifier {
    type Err = NoteError;

    /// Read a verifier key; its key id must match its name and key.
    fn from_str(text: &str) -> Result<NoteVerifier, NoteError> {
        let bad = |why: &str| NoteError::BadKey(format!("{text:?}: {why}"));
        let [name, id, key] = text.trim().splitn(3, '+').collect::<Vec<_>>()[..] else {
            return Err(bad("not <name>+<key id>+<key>"));
        };
        check_name(name).map_err(|why| bad(&why))?;
        let blob = BASE64
            .decode(key)
            .map_err(|_| bad("the key is not base64"))?;
        let [ED25519, key @ ..] = blob.as_slice() else {
            return Err(bad("not an Ed25519 key (type 0x01)"));
        };
        let key: [u8; 32] = key.try_into().map_err(|_| bad("the key is not 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&key).map_err(|_| bad("not a valid Ed25519 key"))?;
        let verifier = NoteVerifier {
            name: name.to_owned(),
            key,
        };
        let expected = verifier.to_string();
        if expected.split('+').nth(1) != Some(id) {
            return Err(bad("its key id does not match its name and key"));
        }
        Ok(verifier)
    }
}

impl NoteVerifier {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The note's text if it carries a valid signature by this key. Other signers' lines are
    /// ignored (a witness's, or keys this verifier does not know); a line by this key that
    /// does not verify refuses the whole note.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let (text, signatures) = split(note)?;
        let id = key_id(&self.name, &self.key);
        let mut signed = false;
        for (name, blob) in signatures {
            if name != self.name || blob[..4] != id {
                continue;
            }
            let signature =
                Signature::from_slice(&blob[4..]).map_err(|_| NoteError::BadSignature {
                    key: self.name.clone(),
                })?;
            self.key
                .verify_strict(text.as_bytes(), &signature)
                .map_err(|_| NoteError::BadSignature {
                    key: self.name.clone(),
                })?;
            signed = true;
        }
        if !signed {
            return Err(NoteError::NotSigned {
                key: self.name.clone(),
            });
        }
        Ok(text)
    }

    /// The checkpoint in `note`, if this key signed it.
    pub fn open_checkpoint(&self, note: &str) -> Result<Checkpoint, NoteError> {
        Checkpoint::parse(self.open(note)?)
    }
}

/// A note's text must be non-empty, end in a newline, have no blank line and no control
/// characters but newlines.
fn check_text(text: &str) -> Result<(), NoteError> {
    if text.is_empty() || !text.ends_with('\n') {
        return Err(malformed("the text is empty or does not end in a newline"));
    }
    if text.contains("\n\n") {
        return Err(malformed("the text has a blank line"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(malformed("the text has a control character"));
    }
    Ok(())
}

/// A signature line: the signer's name and its key id ‖ signature.
type SignatureLine<'a> = (&'a str, Vec<u8>);

/// Split a note into its text and its signature lines.
fn split(note: &str) -> Result<(&str, Vec<SignatureLine<'_>>), NoteError> {
    if note.len() > NOTE_BYTES_MAX {
        return Err(malformed(format!("longer than {NOTE_BYTES_MAX} bytes")));
    }
    let Some(at) = note.rfind("\n\n") else {
        return Err(malformed("no blank line before the signatures"));
    };
    let (text, rest) = (&note[..at + 1], &note[at + 2..]);
    check_text(text)?;
    let Some(rest) = rest.strip_suffix('\n') else {
        return Err(malformed("the signatures do not end in a newline"));
    };
    let mut signatures = Vec::new();
    for line in rest.split('\n') {
        let Some(line) = line.strip_prefix("\u{2014} ") else {
            return Err(malformed(format!("signature line {line:?}")));
        };
        let Some((name, blob)) = line.split_once(' ') else {
            return Err(malformed(format!("signature line {line:?}")));
        };
        check_name(name).map_err(|why| malformed(format!("signer name: {why}")))?;
        let blob = BASE64
            .decode(blob)
            .map_err(|_| malformed(format!("the signature by {name} is not base64")))?;
        if blob.len() < 5 {
            return Err(malformed(format!("the signature by {name} is too short")));
        }
        signatures.push((name, blob));
        if signatures.len() > SIGNATURES_MAX {
            return Err(malformed(format!("more than {SIGNATURES_MAX} signatures")));
        }
    }
    Ok((text, signatures))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: "tally/cluster-0x1".to_owned(),
            size: 1_000_000,
            root: crate::merkle::leaf_hash(b"root"),
            time_ns: 1_796_000_000_000_000_000,
        }
    }

    fn signer(name: &str, seed: u8) -> NoteSigner {
        NoteSigner::new(name, &[seed; 32]).expect("signer")
    }

    #[test]
    fn a_signed_checkpoint_opens_with_its_key_only() {
        let log = signer("tally/cluster-0x1", 7);
        let note = log.sign(&checkpoint().text()).unwrap();
        let key: NoteVerifier = log.verifier_key().parse().unwrap();
        assert_eq!(key.open_checkpoint(&note).unwrap(), checkpoint());
        assert_eq!(key.to_string(), log.verifier_key());

        // Another key by the same name: its id differs, so the note is not signed by it.
        let other: NoteVerifier = signer("tally/cluster-0x1", 8)
            .verifier_key()
            .parse()
            .unwrap();
        assert!(matches!(
            other.open(&note),
            Err(NoteError::NotSigned { .. })
        ));
        // A witness's line is ignored by the log's key and opens with the witness's.
        let witness = signer("witness.example/auditor", 9);
        let cosigned = witness.cosign(&note).unwrap();
        assert_eq!(key.open_checkpoint(&cosigned).unwrap(), checkpoint());
        let witness_key: NoteVerifier = witness.verifier_key().parse().unwrap();
        assert_eq!(
            witness_key.open_checkpoint(&cosigned).unwrap(),
            checkpoint()
        );
        assert!(matches!(
            witness_key.open(&note),
            Err(NoteError::NotSigned { .. })
        ));
    }

    #[test]
    fn every_changed_byte_is_refused() {
        let log = signer("tally/cluster-0x1", 7);
        let note = log.sign(&checkpoint().text()).unwrap();
        let key: NoteVerifier = log.verifier_key().parse().unwrap();
        let bytes = note.as_bytes();
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x20] {
                let mut changed = bytes.to_vec();
                changed[i] ^= flip;
                let Ok(changed) = String::from_utf8(changed) else {
                    continue;
                };
                if let Ok(opened) = key.open_checkpoint(&changed) {
                    panic!("byte {i} ^ {flip:#x} still opens: {opened:?}");
                }
            }
        }
    }

    #[test]
    fn malformed_checkpoints_and_keys_are_refused() {
        let good = checkpoint().text();
        for bad in [
            good.replace("1000000", "01000000"),
            good.replace("1000000", "+1000000"),
            good.replace("time ", "time  "),
            good.trim_end().to_owned(),
            format!("{good}extra\n"),
            good.replace("tally/cluster-0x1", "tally cluster"),
        ] {
            assert!(Checkpoint::parse(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(Checkpoint::parse(&good).unwrap(), checkpoint());
        let log = signer("tally/cluster-0x1", 7);
        assert!(log.sign("two\n\nparagraphs\n").is_err());
        assert!(NoteSigner::new("has space", &[1; 32]).is_err());
        let key = log.verifier_key();
        for bad in [
            key.replace("tally/cluster-0x1", "tally/cluster-0x2"),
            key.replacen('+', "-", 1),
            format!("{key}+more"),
        ] {
            assert!(bad.parse::<NoteVerifier>().is_err(), "{bad}");
        }
    }
}
