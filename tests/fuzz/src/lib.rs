//! Tally's fuzz targets: one function per target, each taking arbitrary bytes. None may panic,
//! hang or allocate beyond the limits the decoders enforce, and whatever a decoder accepts
//! must re-encode to bytes that decode and re-encode to themselves (a decoder that accepted
//! something its encoder cannot say would let two replicas read one record two ways).
//!
//! The cargo-fuzz binaries in `fuzz_targets/` call these; `tests/fuzz_corpus.rs` (in the
//! default test run) replays every file of `corpus/<target>/` and every [`seeds`] input
//! through them. `examples/seeds.rs` writes [`seeds`] into the corpus.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use tally_client::protocol::{
    decode_create_reply, decode_refusal, decode_registered, decode_reply, decode_request,
    decode_statement_reply, encode_request, encode_request_header, RequestHeader,
};
use tally_engine::records::{Account, Transfer};
use tally_engine::{Engine, EngineConfig, Operation};
use tally_raft::net::frame::{encode_frame, read_frame, Frame};
use tally_raft::net::rpc_samples::{entries, meta, reencode, samples};
use tally_raft::replication::codec::{decode_entry, encode_entry};
use tally_raft::replication::replies::ReplyTable;
use tally_raft::replication::snapshot_image::{encode_head, read_head};
use tally_raft::storage::sim::SimDisk;
use tally_raft::storage::Disk;
use tally_raft::wal::segment::segment_name;
use tally_raft::{Entry, Wal, WalConfig};

/// A target: the name its cargo-fuzz binary and corpus directory have, and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub const TARGETS: [Target; 5] = [
    ("gateway", gateway),
    ("replica_rpc", replica_rpc),
    ("wal_entry", wal_entry),
    ("wal_recovery", wal_recovery),
    ("snapshot", snapshot),
];

fn gateway_payload(kind: u8, payload: &[u8]) {
    if let Ok((header, _)) = decode_request(kind, payload) {
        let mut again = Vec::new();
        encode_request_header(&header, payload.len() - 64, &mut again);
        assert_eq!(&again[..], &payload[..64]);
    }
    if let Ok((_, body)) = decode_reply(payload) {
        let _ = decode_registered(body);
        let _ = decode_create_reply(body);
        let _ = decode_statement_reply(body);
        let _ = decode_refusal(body);
    }
}

/// The client port's decoders from raw socket bytes: the frame reader (magic, version, length
/// limit, CRC32C) with the node's 16 MiB limit, then every frame's payload as a request of its
/// kind and as a reply, and the reply bodies; and the bytes as one payload of the kind their
/// first byte names. A request that decodes must re-encode to the same header.
pub fn gateway(data: &[u8]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut stream = data;
        while let Ok(Some(frame)) = read_frame(&mut stream, 16 << 20).await {
            gateway_payload(frame.kind, &frame.payload);
        }
    });
    if let Some((kind, rest)) = data.split_first() {
        gateway_payload(*kind, rest);
    }
}

/// The replica port's message decoders: the first byte picks the message kind (AppendEntries,
/// vote, InstallSnapshot chunk, their responses, error answers), the rest is its payload. What
/// decodes re-encodes, and the re-encoding is a fixed point.
pub fn replica_rpc(data: &[u8]) {
    const KINDS: [u8; 7] = [1, 2, 3, 17, 18, 19, 31];
    let Some((kind, payload)) = data.split_first() else {
        return;
    };
    let kind = KINDS[usize::from(*kind) % KINDS.len()];
    if let Some(again) = reencode(kind, payload) {
        assert_eq!(
            reencode(kind, &again).as_deref(),
            Some(&again[..]),
            "kind {kind}: a re-encoded message is not a fixed point"
        );
    }
}

/// A WAL record header (magic, kind, flags, length limit, CRC) and a log entry's payload as
/// the replicas' entry codec reads it (client batches with their origins, membership, blank;
/// entry formats 1 and 2). An entry that decodes re-encodes to a fixed point.
pub fn wal_entry(data: &[u8]) {
    let _ = tally_raft::wal::record::decode(data, tally_raft::limits::ENTRY_PAYLOAD_BYTES_MAX);
    let record = Entry {
        index: 7,
        term: 3,
        payload: Bytes::copy_from_slice(data),
    };
    if let Ok(entry) = decode_entry(&record) {
        let again = encode_entry(&entry).expect("a decoded entry re-encodes");
        let twice = encode_entry(&decode_entry(&again).expect("a re-encoded entry decodes"))
            .expect("re-encodes");
        assert_eq!(again.payload, twice.payload, "not a fixed point");
    }
}

/// The WAL's sizes in the recovery target: small segments, so a segment image is a short input.
pub fn wal_config() -> WalConfig {
    WalConfig {
        segment_bytes: tally_raft::limits::SEGMENT_BYTES_MIN,
        entry_payload_bytes_max: 8 * 1024,
    }
}

const WAL_DIR: &str = "/wal";

/// Recovery over an arbitrary segment image: the bytes are the log's first segment (entries
/// from index 0) on the
/// simulated disk, and the WAL is opened on it. It may refuse (corruption) or cut a torn tail,
/// never panic; what it recovers must be readable, every index from the first to the last.
pub fn wal_recovery(data: &[u8]) {
    let disk = SimDisk::new();
    let dir = Path::new(WAL_DIR);
    disk.create_dir_all(dir).expect("dir");
    let file = disk
        .open(&dir.join(segment_name(0)), true)
        .expect("segment");
    file.write_at(data, 0).expect("written");
    file.sync().expect("synced");
    let Ok(wal) = Wal::open(Arc::new(disk), dir, wal_config()) else {
        return;
    };
    let state = wal.log_state();
    if let Some(last) = state.last {
        let first = state.purged.map_or(0, |purged| purged.index + 1);
        let read = wal
            .reader()
            .read(first..last.index + 1)
            .expect("recovered entries are readable");
        assert_eq!(read.len() as u64, last.index + 1 - first);
    }
}

/// The snapshot image's decoders: the head (meta and the reply table) and the engine's
/// restore (every section, its counts and limits, the index rebuild). Either refuses or gives
/// an engine whose own snapshot restores to the same snapshot.
pub fn snapshot(data: &[u8]) {
    let _ = read_head(&mut &data[..]);
    if let Ok(mut engine) = Engine::restore(data, EngineConfig::default()) {
        let image = engine.snapshot();
        let mut again = Engine::restore(&image, EngineConfig::default())
            .expect("an engine's own snapshot restores");
        assert!(again.snapshot() == image, "a restored snapshot differs");
    }
}

/// Valid inputs for every target (target, name, bytes), the corpus's starting points: the
/// fuzzer mutates from what the decoders accept instead of guessing CRCs and magic numbers.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    for (n, (kind, payload)) in samples(3).into_iter().chain(samples(8)).enumerate() {
        out.push((
            "replica_rpc",
            format!("sample-{n}"),
            [&[kind][..], &payload].concat(),
        ));
    }
    for (n, entry) in entries(1, 3).iter().chain(&entries(5, 4)).enumerate() {
        let record = encode_entry(entry).expect("encodes");
        out.push(("wal_entry", format!("entry-{n}"), record.payload.to_vec()));
    }
    let header = RequestHeader {
        flags: 0,
        cluster_id: 1,
        client_id: 7,
        session: 9,
        request_number: 1,
    };
    let body: Vec<u8> = transfers(4).iter().flat_map(Transfer::encode).collect();
    for (n, kind) in [1u8, 2, 3, 4].into_iter().enumerate() {
        let frame = Frame {
            kind,
            request_id: n as u64,
            payload: Bytes::from(encode_request(&header, &body)),
        };
        let mut bytes = Vec::new();
        encode_frame(&frame, &mut bytes);
        out.push(("gateway", format!("request-{n}"), bytes));
    }
    out.push(("wal_recovery", "segment".to_owned(), segment_image()));
    let mut engine = Engine::new(EngineConfig::default());
    let accounts: Vec<u8> = (1..=4)
        .flat_map(|id| {
            Account {
                id,
                ledger: 1,
                code: 1,
                ..Account::default()
            }
            .encode()
        })
        .collect();
    engine
        .apply(Operation::CreateAccounts, 1_000, &accounts)
        .expect("accounts");
    let body: Vec<u8> = transfers(6).iter().flat_map(Transfer::encode).collect();
    engine
        .apply(Operation::CreateTransfers, 2_000, &body)
        .expect("transfers");
    out.push(("snapshot", "engine".to_owned(), engine.snapshot()));
    let head = encode_head(&meta(5), &ReplyTable::default()).expect("a head");
    out.push(("snapshot", "head".to_owned(), head));
    out
}

fn transfers(count: u128) -> Vec<Transfer> {
    (1..=count)
        .map(|id| Transfer {
            id: 100 + id,
            debit_account_id: 1 + id % 4,
            credit_account_id: 1 + (id + 1) % 4,
            amount: id,
            ledger: 1,
            code: 1,
            ..Transfer::default()
        })
        .collect()
}

/// A real first segment: entries of every kind appended and flushed on the simulated disk.
fn segment_image() -> Vec<u8> {
    let disk = SimDisk::new();
    let dir = Path::new(WAL_DIR);
    {
        let mut wal = Wal::open(Arc::new(disk.clone()), dir, wal_config()).expect("a WAL");
        let (sender, receiver) = std::sync::mpsc::channel();
        for (index, entry) in (0..).zip(entries(2, 6)) {
            let mut record = encode_entry(&entry).expect("encodes");
            record.index = index;
            let sender = sender.clone();
            wal.append([record], move |result| {
                let _ = sender.send(result.is_ok());
            })
            .expect("appended");
        }
        for _ in 0..6 {
            assert!(receiver.recv().expect("flushed"));
        }
    }
    let file = disk
        .open(&dir.join(segment_name(0)), false)
        .expect("segment");
    let mut image = vec![0; file.len().expect("len") as usize];
    tally_raft::storage::read_exact_at(file.as_ref(), &mut image, 0).expect("read");
    image
}
