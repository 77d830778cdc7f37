//! Snapshot files: atomic write, checksum, and newest-valid selection, on every backend.

mod common;

use std::sync::Arc;

use common::{payload, Harness, Kind};
use tally_raft::snapshot_file::SnapshotFiles;
use tally_raft::storage::sim::SimDisk;
use tally_raft::LogId;

for_each_backend!(newest_valid_snapshot_wins_and_damage_falls_back);

fn id(index: u64) -> LogId {
    LogId {
        index,
        term: 1 + index / 100,
    }
}

/// The newest snapshot is returned intact; when it is damaged (payload bit flip, cut file,
/// header bit flip) the next older valid one is returned instead; prune keeps the newest.
fn newest_valid_snapshot_wins_and_damage_falls_back(kind: Kind) {
    let harness = Harness::new(kind);
    let dir = harness.dir.join("snapshots");
    let files = SnapshotFiles::new(Arc::clone(&harness.disk), &dir).expect("dir");
    assert_eq!(files.newest_valid().expect("read"), None);
    for index in [100, 250, 400, 900] {
        files
            .write(id(index), &payload(index, 0, 10_000 + index as usize))
            .expect("write");
    }
    let check = |expected: u64| {
        let (last, bytes) = files.newest_valid().expect("read").expect("a snapshot");
        assert_eq!(last, id(expected));
        assert_eq!(bytes, payload(expected, 0, 10_000 + expected as usize));
    };
    check(900);
    harness.edit(
        &dir.join("snapshot-00000000000000000900-00000000000000000010.snap"),
        |b| b[5000] ^= 4,
    );
    check(400);
    harness.edit(
        &dir.join("snapshot-00000000000000000400-00000000000000000005.snap"),
        |b| b.truncate(b.len() - 1),
    );
    check(250);
    harness.edit(
        &dir.join("snapshot-00000000000000000250-00000000000000000003.snap"),
        |b| b[10] ^= 1,
    );
    check(100);
    files.prune(1).expect("prune");
    assert_eq!(files.list().expect("list"), vec![id(900)]);
}

/// A power loss at any operation of writing a snapshot leaves either the previous snapshot or
/// the new complete one as the newest valid, never a partial file.
#[test]
fn crash_while_writing_leaves_old_or_new_snapshot() {
    let old = payload(1, 0, 50_000);
    let new = payload(2, 0, 70_000);
    let dir = std::path::PathBuf::from("/snapshots");
    let mut crash_at = 1;
    loop {
        let disk = SimDisk::new();
        let files = SnapshotFiles::new(Arc::new(disk.clone()), &dir).expect("dir");
        files.write(id(100), &old).expect("first snapshot");
        disk.crash_at(disk.operations() + crash_at);
        let written = files.write(id(200), &new).is_ok();
        for torn in [None, Some(crash_at)] {
            let image = SnapshotFiles::new(Arc::new(disk.crash_image(torn)), &dir).expect("dir");
            let (last, bytes) = image
                .newest_valid()
                .expect("read")
                .expect("a snapshot survives");
            match last.index {
                100 => assert!(
                    bytes == old && !written,
                    "crash at {crash_at}: lost an acknowledged snapshot"
                ),
                200 => assert!(bytes == new, "crash at {crash_at}"),
                other => panic!("unexpected snapshot {other}"),
            }
        }
        if written {
            break;
        }
        crash_at += 1;
    }
    assert!(crash_at > 3, "the write took several operations");
}
