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
    // A witness's cosignature is ignored by the log's key and opens with the witness's.
    let witness =
        NoteSigner::of_kind("witness.example/auditor", KeyKind::Cosignature, &[9; 32]).unwrap();
    let cosigned = format!(
        "{note}{}",
        witness.cosignature(&note, 1_796_000_123).unwrap()
    );
    assert_eq!(key.open_checkpoint(&cosigned).unwrap(), checkpoint());
    let witness_key: NoteVerifier = witness.verifier_key().parse().unwrap();
    assert_eq!(witness_key.kind(), KeyKind::Cosignature);
    let (text, time) = witness_key.open_cosigned(&cosigned).unwrap();
    assert_eq!((text, time), (checkpoint().text().as_str(), 1_796_000_123));
    assert!(matches!(
        witness_key.open(&note),
        Err(NoteError::NotSigned { .. })
    ));
    // Its time is signed: changing it breaks the line.
    let line = witness.cosignature(&note, 1_796_000_123).unwrap();
    let (name, blob) = line.trim_end().rsplit_once(' ').unwrap();
    let mut blob = BASE64.decode(blob).unwrap();
    blob[11] ^= 1;
    let forged = format!("{note}{name} {}\n", BASE64.encode(blob));
    assert!(matches!(
        witness_key.open_cosigned(&forged),
        Err(NoteError::BadSignature { .. })
    ));
    // Keys of one kind do not sign the other's way.
    assert!(log.cosignature(&note, 1).is_err());
    assert!(witness.sign(&checkpoint().text()).is_err());
    assert!(key.open_cosigned(&note).is_err());
}

/// The compact record a cluster keeps writes back the very note the key signs, survives
/// its encoding, and only a key named as the origin makes one.
#[test]
fn a_signed_checkpoint_record_is_the_note() {
    let log = signer("tally/cluster-0x1", 7);
    let record = log.sign_checkpoint(&checkpoint()).unwrap();
    let note = record.note("tally/cluster-0x1");
    assert_eq!(note, log.sign(&checkpoint().text()).unwrap());
    let key: NoteVerifier = log.verifier_key().parse().unwrap();
    assert_eq!(key.open_checkpoint(&note).unwrap(), checkpoint());
    assert_eq!(SignedCheckpoint::decode(&record.encode()), record);
    let mut forged = record;
    forged.size += 1;
    assert!(key.open(&forged.note("tally/cluster-0x1")).is_err());
    assert!(signer("tally/other", 7)
        .sign_checkpoint(&checkpoint())
        .is_err());
}

/// A cosignature line survives being kept as a record and written back.
#[test]
fn a_cosignature_record_is_its_line() {
    let log = signer("tally/cluster-0x1", 7);
    let note = log.sign(&checkpoint().text()).unwrap();
    let witness = NoteSigner::of_kind("witness.example/a", KeyKind::Cosignature, &[9; 32]).unwrap();
    let line = witness.cosignature(&note, 1_796_000_123).unwrap();
    let (name, stored) = StoredCosignature::from_line(3, &line).unwrap();
    assert_eq!(name, "witness.example/a");
    assert_eq!(stored.line(&name), line);
    assert_eq!(stored.time, 1_796_000_123);
    assert_eq!(StoredCosignature::decode(&stored.encode()), stored);
    assert!(StoredCosignature::from_line(3, "not a line").is_err());
    assert!(StoredCosignature::from_line(3, note.lines().last().unwrap()).is_err());
}

#[test]
fn a_private_key_reads_back_as_written() {
    for kind in [KeyKind::Note, KeyKind::Cosignature] {
        let signer = NoteSigner::of_kind("witness.example/a", kind, &[3; 32]).unwrap();
        let text = signer.private_key();
        let read = NoteSigner::from_private_key(&format!("{text}\n")).unwrap();
        assert_eq!(read.verifier(), signer.verifier());
        assert_eq!(read.private_key(), text);
        let (head, key) = text.rsplit_once('+').unwrap();
        for bad in [
            text.replacen("PRIVATE", "PUBLIC", 1),
            text.replacen("witness.example/a", "witness.example/b", 1),
            format!("{head}+{}", &key[1..]),
        ] {
            assert!(NoteSigner::from_private_key(&bad).is_err(), "{bad}");
        }
    }
}

#[test]
fn a_cosigners_key_has_its_own_type_and_id() {
    // The key id is over the name, a newline, the type byte 0x04 and the public key: the
    // same seed gives another id, and another verifier key, as a cosigner than as a log.
    let log = signer("witness.example/w1", 5);
    let witness =
        NoteSigner::of_kind("witness.example/w1", KeyKind::Cosignature, &[5; 32]).unwrap();
    let (log_key, witness_key) = (log.verifier_key(), witness.verifier_key());
    assert_ne!(log_key.split('+').nth(1), witness_key.split('+').nth(1));
    let blob = BASE64
        .decode(witness_key.rsplit('+').next().unwrap())
        .unwrap();
    assert_eq!(blob[0], 0x04);
    assert_eq!(
        witness_key.parse::<NoteVerifier>().unwrap(),
        witness.verifier()
    );
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
