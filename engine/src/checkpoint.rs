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
//! lines to the same text as C2SP tlog-cosignature/v1 cosignatures: key type 0x04, the line's
//! blob `key id ‖ time (u64 big-endian seconds) ‖ Ed25519 signature` over
//! `"cosignature/v1\ntime <seconds>\n" ‖ text`. Verifier keys travel as `<name>+<hex key
//! id>+<base64(type ‖ public key)>`, the C2SP form, so standard tools read them. Pure: signing
//! with Ed25519 is deterministic, and nothing here reads a clock or a file (the cosigning time
//! is the caller's).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// What a key signs: the signed-note signature type of its lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// Ed25519 over the note's text (type 0x01): the log's checkpoint key.
    Note,
    /// A C2SP tlog-cosignature/v1 (type 0x04): Ed25519 over `"cosignature/v1\ntime <s>\n"`
    /// and the text, the time carried in the line: a witness's key.
    Cosignature,
}

impl KeyKind {
    fn byte(self) -> u8 {
        match self {
            KeyKind::Note => 0x01,
            KeyKind::Cosignature => 0x04,
        }
    }

    fn of(byte: u8) -> Option<KeyKind> {
        match byte {
            0x01 => Some(KeyKind::Note),
            0x04 => Some(KeyKind::Cosignature),
            _ => None,
        }
    }

    /// Bytes of a signature line's blob: key id, the time for a cosignature, the signature.
    fn blob_bytes(self) -> usize {
        match self {
            KeyKind::Note => 4 + 64,
            KeyKind::Cosignature => 4 + 8 + 64,
        }
    }
}

/// The message a cosignature made at `time` (seconds) signs: C2SP tlog-cosignature/v1.
fn cosigned_message(time: u64, text: &str) -> Vec<u8> {
    format!("cosignature/v1\ntime {time}\n{text}").into_bytes()
}

/// A cosignature's time may not exceed this (C2SP tlog-cosignature).
pub const COSIGNATURE_TIME_MAX: u64 = (1 << 63) - 1;
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

fn key_id(name: &str, kind: KeyKind, key: &VerifyingKey) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', kind.byte()]);
    hasher.update(key.as_bytes());
    let hash = hasher.finalize();
    [hash[0], hash[1], hash[2], hash[3]]
}

/// A key's type and 32 bytes from `base64(type ‖ key)`, as verifier and private keys carry them.
fn typed_key(text: &str) -> Result<(KeyKind, [u8; 32]), &'static str> {
    let blob = BASE64.decode(text).map_err(|_| "the key is not base64")?;
    let (kind, key) = blob.split_first().ok_or("the key is empty")?;
    let kind = KeyKind::of(*kind)
        .ok_or("not an Ed25519 note key (type 0x01) nor cosignature key (type 0x04)")?;
    let key = key.try_into().map_err(|_| "the key is not 32 bytes")?;
    Ok((kind, key))
}

/// A signer: the cluster's checkpoint key ([`KeyKind::Note`]), or a witness's
/// ([`KeyKind::Cosignature`]).
pub struct NoteSigner {
    name: String,
    kind: KeyKind,
    key: SigningKey,
}

impl std::fmt::Debug for NoteSigner {
    /// The name and public key only: never the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NoteSigner({})", self.verifier_key())
    }
}

impl NoteSigner {
    /// This key's kind.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The note signer `name` (a log's key) with the Ed25519 key whose 32-byte seed is `seed`.
    pub fn new(name: &str, seed: &[u8; 32]) -> Result<NoteSigner, NoteError> {
        NoteSigner::of_kind(name, KeyKind::Note, seed)
    }

    /// The signer `name` of `kind` with the Ed25519 key whose 32-byte seed is `seed`.
    pub fn of_kind(name: &str, kind: KeyKind, seed: &[u8; 32]) -> Result<NoteSigner, NoteError> {
        check_name(name).map_err(NoteError::BadKey)?;
        Ok(NoteSigner {
            name: name.to_owned(),
            kind,
            key: SigningKey::from_bytes(seed),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same key under another name (another key id): how the cluster's key signs the
    /// access trail's checkpoints apart from the event log's.
    pub fn renamed(&self, name: &str) -> Result<NoteSigner, NoteError> {
        NoteSigner::of_kind(name, self.kind, self.key.as_bytes())
    }

    /// The private key as text, for a key file: `PRIVATE+KEY+<name>+<hex key id>+<base64(type
    /// ‖ 32-byte seed)>` (the form Go's `golang.org/x/mod/sumdb/note` reads).
    pub fn private_key(&self) -> String {
        let id = self.verifier().key_id_hex();
        let mut blob = vec![self.kind.byte()];
        blob.extend_from_slice(self.key.as_bytes());
        format!("PRIVATE+KEY+{}+{id}+{}", self.name, BASE64.encode(blob))
    }

    /// Read a private key written by [`NoteSigner::private_key`]; its key id must match.
    pub fn from_private_key(text: &str) -> Result<NoteSigner, NoteError> {
        // Never echo the text: it is a secret.
        let bad = |why: &str| NoteError::BadKey(format!("private key: {why}"));
        let Some(rest) = text.trim().strip_prefix("PRIVATE+KEY+") else {
            return Err(bad("does not start with PRIVATE+KEY+"));
        };
        let [name, id, key] = rest.splitn(3, '+').collect::<Vec<_>>()[..] else {
            return Err(bad("not PRIVATE+KEY+<name>+<key id>+<key>"));
        };
        let (kind, seed) = typed_key(key).map_err(bad)?;
        let signer = NoteSigner::of_kind(name, kind, &seed)?;
        if signer.verifier().key_id_hex() != id {
            return Err(bad("its key id does not match its name and key"));
        }
        Ok(signer)
    }

    /// The verifier key to publish, in the C2SP text form.
    pub fn verifier_key(&self) -> String {
        self.verifier().to_string()
    }

    /// The key that checks this signer's lines.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            kind: self.kind,
            key: self.key.verifying_key(),
        }
    }

    /// `text` signed by a log's key: the note with this signer's line.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        if self.kind != KeyKind::Note {
            return Err(NoteError::BadKey(format!(
                "{} is a cosigner's key",
                self.name
            )));
        }
        Ok(format!("{text}\n{}", self.line(text, None)))
    }

    /// `checkpoint` signed by this log key, in the compact form a replicated log keeps
    /// ([`SignedCheckpoint`]): the key's name must be the checkpoint's origin, so that the note
    /// can be written back from the record and the origin alone.
    pub fn sign_checkpoint(&self, checkpoint: &Checkpoint) -> Result<SignedCheckpoint, NoteError> {
        if self.kind != KeyKind::Note || self.name != checkpoint.origin {
            return Err(NoteError::BadKey(format!(
                "{} cannot sign checkpoints of {}: a log's key is named as its origin",
                self.name, checkpoint.origin
            )));
        }
        let text = checkpoint.text();
        check_text(&text)?;
        Ok(SignedCheckpoint {
            size: checkpoint.size,
            time_ns: checkpoint.time_ns,
            root: checkpoint.root,
            key_id: key_id(&self.name, self.kind, &self.key.verifying_key()),
            signature: self.key.sign(text.as_bytes()).to_bytes(),
        })
    }

    /// A witness's cosignature line on a note already signed, made at `time` (seconds since
    /// the Unix epoch). The note is not verified here: a witness verifies it against the log's
    /// key first (`witness`).
    pub fn cosignature(&self, note: &str, time: u64) -> Result<String, NoteError> {
        let (text, _) = split(note)?;
        if self.kind != KeyKind::Cosignature || time > COSIGNATURE_TIME_MAX {
            return Err(NoteError::BadKey(format!(
                "{} cannot cosign at {time}: not a cosigner's key, or the time is past 2^63 - 1",
                self.name
            )));
        }
        Ok(self.line(text, Some(time)))
    }

    fn line(&self, text: &str, time: Option<u64>) -> String {
        let mut blob = key_id(&self.name, self.kind, &self.key.verifying_key()).to_vec();
        let signature = match time {
            Some(time) => {
                blob.extend_from_slice(&time.to_be_bytes());
                self.key.sign(&cosigned_message(time, text))
            }
            None => self.key.sign(text.as_bytes()),
        };
        blob.extend_from_slice(&signature.to_bytes());
        format!("\u{2014} {} {}\n", self.name, BASE64.encode(blob))
    }
}

/// A checkpoint signed by a log key named as the log's origin, as a fixed-size record (what
/// the cluster replicates and keeps: 112 bytes instead of a note's ~250):
/// [`SignedCheckpoint::note`] writes the signed note back from it and the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SignedCheckpoint {
    pub size: u64,
    pub time_ns: u64,
    pub root: Hash,
    /// The signing key's id ([`NoteVerifier`]'s): which of the log's keys signed it.
    pub key_id: [u8; 4],
    /// Ed25519 over the checkpoint's text.
    pub signature: [u8; 64],
}

/// Bytes of [`SignedCheckpoint::encode`].
pub const SIGNED_CHECKPOINT_BYTES: usize = 8 + 8 + 32 + 4 + 64;

impl SignedCheckpoint {
    /// The checkpoint of the log `origin`.
    pub fn checkpoint(&self, origin: &str) -> Checkpoint {
        Checkpoint {
            origin: origin.to_owned(),
            size: self.size,
            root: self.root,
            time_ns: self.time_ns,
        }
    }

    /// The signed note: the checkpoint's text and the signature line of the key named
    /// `origin` with this record's key id.
    pub fn note(&self, origin: &str) -> String {
        let mut blob = self.key_id.to_vec();
        blob.extend_from_slice(&self.signature);
        format!(
            "{}\n\u{2014} {origin} {}\n",
            self.checkpoint(origin).text(),
            BASE64.encode(blob)
        )
    }

    /// Little-endian: size, time, root, key id, signature.
    pub fn encode(&self) -> [u8; SIGNED_CHECKPOINT_BYTES] {
        let mut out = [0u8; SIGNED_CHECKPOINT_BYTES];
        out[..8].copy_from_slice(&self.size.to_le_bytes());
        out[8..16].copy_from_slice(&self.time_ns.to_le_bytes());
        out[16..48].copy_from_slice(&self.root);
        out[48..52].copy_from_slice(&self.key_id);
        out[52..].copy_from_slice(&self.signature);
        out
    }

    /// The pair of [`SignedCheckpoint::encode`].
    pub fn decode(bytes: &[u8; SIGNED_CHECKPOINT_BYTES]) -> SignedCheckpoint {
        let long = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        SignedCheckpoint {
            size: long(0),
            time_ns: long(8),
            root: bytes[16..48].try_into().expect("32 bytes"),
            key_id: bytes[48..52].try_into().expect("4 bytes"),
            signature: bytes[52..].try_into().expect("64 bytes"),
        }
    }
}

/// A witness's cosignature of one of the log's checkpoints as the cluster keeps it beside
/// the checkpoint (84 bytes; the line is written back from it and the witness's name): which
/// checkpoint (its index), the witness key's id, the cosignature's time (seconds since the Unix
/// epoch) and its Ed25519 signature (C2SP tlog-cosignature/v1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct StoredCosignature {
    pub checkpoint: u64,
    pub key_id: [u8; 4],
    pub time: u64,
    pub signature: [u8; 64],
}

/// Bytes of [`StoredCosignature::encode`].
pub const STORED_COSIGNATURE_BYTES: usize = 8 + 4 + 8 + 64;

impl StoredCosignature {
    /// The cosignature line of checkpoint `checkpoint` (a note line, by a witness named in it),
    /// and the witness's name. Not verified here: check it with the witness's key first.
    pub fn from_line(
        checkpoint: u64,
        line: &str,
    ) -> Result<(String, StoredCosignature), NoteError> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let rest = line
            .strip_prefix("\u{2014} ")
            .ok_or_else(|| malformed("a cosignature line starts with an em dash and a space"))?;
        let (name, blob) = rest
            .rsplit_once(' ')
            .ok_or_else(|| malformed("a cosignature line is `— <name> <base64>`"))?;
        let blob = BASE64
            .decode(blob)
            .map_err(|_| malformed("the cosignature is not base64"))?;
        if blob.len() != KeyKind::Cosignature.blob_bytes() {
            return Err(malformed(
                "a cosignature is a key id, a time and a signature",
            ));
        }
        let cosignature = StoredCosignature {
            checkpoint,
            key_id: blob[..4].try_into().expect("4 bytes"),
            time: u64::from_be_bytes(blob[4..12].try_into().expect("8 bytes")),
            signature: blob[12..].try_into().expect("64 bytes"),
        };
        Ok((name.to_owned(), cosignature))
    }

    /// The note line, by the witness named `name`.
    pub fn line(&self, name: &str) -> String {
        let mut blob = self.key_id.to_vec();
        blob.extend_from_slice(&self.time.to_be_bytes());
        blob.extend_from_slice(&self.signature);
        format!("\u{2014} {name} {}\n", BASE64.encode(blob))
    }

    /// Little-endian checkpoint index; key id; big-endian time (as signed); signature.
    pub fn encode(&self) -> [u8; STORED_COSIGNATURE_BYTES] {
        let mut out = [0u8; STORED_COSIGNATURE_BYTES];
        out[..8].copy_from_slice(&self.checkpoint.to_le_bytes());
        out[8..12].copy_from_slice(&self.key_id);
        out[12..20].copy_from_slice(&self.time.to_be_bytes());
        out[20..].copy_from_slice(&self.signature);
        out
    }

    /// The pair of [`StoredCosignature::encode`].
    pub fn decode(bytes: &[u8; STORED_COSIGNATURE_BYTES]) -> StoredCosignature {
        StoredCosignature {
            checkpoint: u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")),
            key_id: bytes[8..12].try_into().expect("4 bytes"),
            time: u64::from_be_bytes(bytes[12..20].try_into().expect("8 bytes")),
            signature: bytes[20..].try_into().expect("64 bytes"),
        }
    }
}

/// A key that checks notes: a name, a kind and an Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    kind: KeyKind,
    key: VerifyingKey,
}

impl std::fmt::Display for NoteVerifier {
    /// `<name>+<hex key id>+<base64(type ‖ public key)>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut blob = vec![self.kind.byte()];
        blob.extend_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{}+{}",
            self.name,
            self.key_id_hex(),
            BASE64.encode(blob)
        )
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
        let (kind, key) = typed_key(key).map_err(bad)?;
        let key = VerifyingKey::from_bytes(&key).map_err(|_| bad("not a valid Ed25519 key"))?;
        let verifier = NoteVerifier {
            name: name.to_owned(),
            kind,
            key,
        };
        if verifier.key_id_hex() != id {
            return Err(bad("its key id does not match its name and key"));
        }
        Ok(verifier)
    }
}

impl NoteVerifier {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same public key under another name (see [`NoteSigner::renamed`]).
    pub fn renamed(&self, name: &str) -> Result<NoteVerifier, NoteError> {
        check_name(name).map_err(NoteError::BadKey)?;
        Ok(NoteVerifier {
            name: name.to_owned(),
            ..self.clone()
        })
    }

    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The key id: the first four bytes of SHA-256(name ‖ 0x0A ‖ type ‖ public key).
    pub fn key_id(&self) -> [u8; 4] {
        key_id(&self.name, self.kind, &self.key)
    }

    /// The key id, lower-case hex, as verifier and private keys spell it.
    fn key_id_hex(&self) -> String {
        key_id(&self.name, self.kind, &self.key)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The note's text if it carries a valid signature by this key. Other signers' lines are
    /// ignored (a witness's, or keys this verifier does not know); a line by this key that
    /// does not verify refuses the whole note.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        self.signed(note).map(|(text, _)| text)
    }

    /// The note's text and the latest time this cosigner's lines carry, if the note carries a
    /// valid cosignature by this key (a [`KeyKind::Cosignature`] key; a note key has no time).
    pub fn open_cosigned<'a>(&self, note: &'a str) -> Result<(&'a str, u64), NoteError> {
        match self.signed(note)? {
            (text, Some(time)) => Ok((text, time)),
            (_, None) => Err(NoteError::BadKey(format!(
                "{} is a log's key, not a cosigner's",
                self.name
            ))),
        }
    }

    fn signed<'a>(&self, note: &'a str) -> Result<(&'a str, Option<u64>), NoteError> {
        let (text, signatures) = split(note)?;
        let id = key_id(&self.name, self.kind, &self.key);
        let bad = || NoteError::BadSignature {
            key: self.name.clone(),
        };
        let mut signed = None;
        for (name, blob) in signatures {
            if name != self.name || blob[..4] != id {
                continue;
            }
            if blob.len() != self.kind.blob_bytes() {
                return Err(bad());
            }
            let (time, signature) = match self.kind {
                KeyKind::Note => (None, &blob[4..]),
                KeyKind::Cosignature => {
                    let time = u64::from_be_bytes(blob[4..12].try_into().map_err(|_| bad())?);
                    (Some(time), &blob[12..])
                }
            };
            let signature = Signature::from_slice(signature).map_err(|_| bad())?;
            let message = match time {
                Some(time) if time <= COSIGNATURE_TIME_MAX => cosigned_message(time, text),
                Some(_) => return Err(bad()),
                None => text.as_bytes().to_vec(),
            };
            self.key
                .verify_strict(&message, &signature)
                .map_err(|_| bad())?;
            signed = Some(signed.flatten().max(time));
        }
        match signed {
            Some(time) => Ok((text, time)),
            None => Err(NoteError::NotSigned {
                key: self.name.clone(),
            }),
        }
    }

    /// The checkpoint in `note`, if this key signed it.
    pub fn open_checkpoint(&self, note: &str) -> Result<Checkpoint, NoteError> {
        Checkpoint::parse(self.open(note)?)
    }
}

/// A note's text, its signatures unverified: what to read the origin from before choosing the
/// key to verify it with.
pub fn note_text(note: &str) -> Result<&str, NoteError> {
    split(note).map(|(text, _)| text)
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
#[path = "checkpoint_tests.rs"]
mod tests;
