//! The WAL's on-disk format and recovery, run on every backend (io_uring, pwrite fallback,
//! simulated disk): round trips, torn tails at every byte, corruption reports.

mod common;

use common::{append_wait, entry, payload, record_offsets, Harness, Kind};
use rand::{Rng, SeedableRng};
use tally_raft::limits::{RECORD_HEADER_BYTES, SECTOR_BYTES};
use tally_raft::{LogId, OpenError, Vote};

for_each_backend!(
    round_trip_of_random_records,
    truncation_at_every_byte_of_the_last_record_is_a_torn_tail,
    zeroed_last_sector_is_a_torn_tail,
    bit_flip_mid_log_is_corruption_at_that_record,
    record_copied_to_the_wrong_place_is_detected,
    record_from_another_log_breaks_the_chain,
    truncate_and_purge_survive_reopen,
    vote_is_durable,
);

/// Random entries (sizes 0..=8 KiB, appended alone or in concurrent groups, across many
/// segment rotations) read back identical before and after reopening, and a reader running
/// concurrently with the appends always sees exactly what was appended.
fn round_trip_of_random_records(kind: Kind) {
    let harness = Harness::new(kind);
    let mut rng = rand::rngs::StdRng::seed_from_u64(common::seed());
    let mut expected = Vec::new();
    let mut wal = harness.open();
    // A concurrent reader checks every entry it can see while appends and flushes go on:
    // entries move from memory to disk under it.
    let reader = wal.reader();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader_thread = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut checked = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Some(last) = reader.log_state().last else {
                    continue;
                };
                let from = last.index.saturating_sub(8);
                for read in reader.read(from..last.index + 1).expect("concurrent read") {
                    assert_eq!(read.payload, payload(read.index, 0, read.payload.len()));
                    checked += 1;
                }
            }
            checked
        })
    };
    let mut index = 0u64;
    for _ in 0..40 {
        let (sender, receiver) = crossbeam_channel::unbounded();
        let appends = rng.random_range(1..5);
        for _ in 0..appends {
            let count = rng.random_range(1..4);
            let batch: Vec<_> = (0..count)
                .map(|_| {
                    let length = rng.random_range(0..=8 * 1024);
                    let e = entry(index, 1 + index / 50, payload(index, 0, length));
                    index += 1;
                    e
                })
                .collect();
            expected.extend(batch.iter().cloned());
            let sender = sender.clone();
            wal.append(batch, move |result| {
                sender.send(result).expect("receiver alive")
            })
            .expect("append");
        }
        for _ in 0..appends {
            receiver.recv().expect("callback").expect("flushed");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader_thread.join().expect("reader thread") > 0);
    assert!(
        harness.segments().len() > 3,
        "the workload must rotate segments"
    );
    assert_eq!(wal.reader().read(0..index).expect("read"), expected);
    drop(wal);
    let wal = harness.open();
    assert_eq!(
        wal.reader().read(0..index).expect("read after reopen"),
        expected
    );
    assert_eq!(
        wal.log_state().last,
        Some(LogId {
            index: index - 1,
            term: 1 + (index - 1) / 50
        })
    );
}

/// Writes `count` entries, each its own group commit (flushed before the next), and
/// returns the tail segment's image and the offset of the last record in it.
fn write_log(harness: &Harness, count: u64, last_length: usize) -> (std::path::PathBuf, usize) {
    let mut wal = harness.open();
    for index in 0..count {
        let length = if index + 1 == count { last_length } else { 300 };
        append_wait(&mut wal, vec![entry(index, 1, payload(index, 0, length))]).expect("flushed");
    }
    drop(wal);
    let tail = harness.segments().pop().expect("a segment");
    let offsets = record_offsets(&harness.read_file(&tail));
    let &(offset, index) = offsets.last().expect("records in tail");
    assert_eq!(index, count - 1);
    (tail, offset)
}

fn check_log(harness: &Harness, count: u64, salt_of_last: Option<u64>) {
    let wal = harness.open();
    let entries = wal.reader().read(0..count).expect("earlier records intact");
    for (index, read) in entries.iter().enumerate() {
        let index = index as u64;
        let salt = if index + 1 == count {
            salt_of_last.unwrap_or(0)
        } else {
            0
        };
        assert!(!read.payload.is_empty());
        assert_eq!(
            read.payload,
            payload(index, salt, read.payload.len()),
            "entry {index}"
        );
    }
    assert_eq!(wal.log_state().last.map(|id| id.index), Some(count - 1));
}

/// Cutting the file, or zeroing, at every byte offset of the last record loses exactly that
/// record: all earlier records recover, the next append is accepted, and it survives a reopen.
fn truncation_at_every_byte_of_the_last_record_is_a_torn_tail(kind: Kind) {
    let harness = Harness::new(kind);
    let count = 12;
    let last_length = 150;
    let (tail, offset) = write_log(&harness, count, last_length);
    let original = harness.read_file(&tail);
    for cut in offset..offset + RECORD_HEADER_BYTES + last_length {
        for zero_instead_of_cut in [false, true] {
            harness.write_file(&tail, &original);
            harness.edit(&tail, |bytes| {
                if zero_instead_of_cut {
                    bytes[cut..offset + RECORD_HEADER_BYTES + last_length].fill(0);
                } else {
                    bytes.truncate(cut);
                }
            });
            let mut wal = harness
                .try_open()
                .unwrap_or_else(|error| panic!("cut at {cut}: {error}"));
            assert_eq!(
                wal.log_state().last.map(|id| id.index),
                Some(count - 2),
                "cut at {cut}"
            );
            append_wait(
                &mut wal,
                vec![entry(count - 1, 2, payload(count - 1, 9, 77))],
            )
            .expect("next append");
            drop(wal);
            check_log(&harness, count, Some(9));
        }
    }
}

/// Zeroing the last sector of a multi-sector last record is a torn tail, not corruption.
fn zeroed_last_sector_is_a_torn_tail(kind: Kind) {
    let harness = Harness::new(kind);
    let count = 8;
    let last_length = 2 * SECTOR_BYTES - 100;
    let (tail, offset) = write_log(&harness, count, last_length);
    let end = offset + RECORD_HEADER_BYTES + last_length;
    let last_sector = (end - 1) / SECTOR_BYTES * SECTOR_BYTES;
    harness.edit(&tail, |bytes| {
        bytes[last_sector..last_sector + SECTOR_BYTES].fill(0)
    });
    let mut wal = harness.open();
    assert_eq!(wal.log_state().last.map(|id| id.index), Some(count - 2));
    append_wait(
        &mut wal,
        vec![entry(count - 1, 1, payload(count - 1, 5, 10))],
    )
    .expect("next append");
    drop(wal);
    check_log(&harness, count, Some(5));
}

fn expect_corrupt(harness: &Harness, path: &std::path::Path, offset: usize) -> String {
    match harness.try_open() {
        Err(OpenError::Corrupt {
            path: reported,
            offset: at,
            reason,
        }) => {
            assert_eq!((reported.as_path(), at), (path, offset as u64), "{reason}");
            reason
        }
        Err(other) => panic!("expected corruption, got {other}"),
        Ok(_) => panic!(
            "expected corruption at {} byte {offset}, WAL opened",
            path.display()
        ),
    }
}

/// A single flipped bit in a record in the middle of the log makes open fail with an error
/// naming that record's segment and offset.
fn bit_flip_mid_log_is_corruption_at_that_record(kind: Kind) {
    let harness = Harness::new(kind);
    let (tail, _) = write_log(&harness, 20, 300);
    let offsets = record_offsets(&harness.read_file(&tail));
    let (victim, _) = offsets[offsets.len() / 2];
    harness.edit(&tail, |bytes| {
        bytes[victim + RECORD_HEADER_BYTES + 17] ^= 0x10
    });
    let reason = expect_corrupt(&harness, &tail, victim);
    assert!(reason.contains("checksum"), "{reason}");
}

/// A valid record copied over another one (a misdirected write) is caught by the index.
fn record_copied_to_the_wrong_place_is_detected(kind: Kind) {
    let harness = Harness::new(kind);
    let (tail, _) = write_log(&harness, 28, 300);
    let offsets = record_offsets(&harness.read_file(&tail));
    assert!(offsets.len() >= 5);
    let (source, _) = offsets[1];
    let (target, _) = offsets[offsets.len() - 3];
    let length = RECORD_HEADER_BYTES + 300;
    harness.edit(&tail, |bytes| {
        let copy = bytes[source..source + length].to_vec();
        bytes[target..target + length].copy_from_slice(&copy);
    });
    let reason = expect_corrupt(&harness, &tail, target);
    assert!(reason.contains("expected"), "{reason}");
}

/// A record with the right index and a valid checksum but from another history (here:
/// another WAL with different earlier payloads) is caught by the chain.
fn record_from_another_log_breaks_the_chain(kind: Kind) {
    let ours = Harness::new(kind);
    let theirs = Harness::new(kind);
    let (tail, _) = write_log(&ours, 10, 300);
    {
        let mut wal = theirs.open();
        for index in 0..10 {
            let salt = if index == 3 { 1 } else { 0 };
            append_wait(&mut wal, vec![entry(index, 1, payload(index, salt, 300))])
                .expect("flushed");
        }
    }
    let their_tail = theirs.segments().pop().expect("segment");
    let their_bytes = theirs.read_file(&their_tail);
    let offsets = record_offsets(&ours.read_file(&tail));
    // Same index, same payload, same position; only the chain differs (entry 3 differs).
    let (target, index) = offsets[offsets.len() - 4];
    let their_offsets = record_offsets(&their_bytes);
    let &(source, _) = their_offsets
        .iter()
        .find(|(_, i)| *i == index)
        .expect("same index");
    let length = RECORD_HEADER_BYTES + 300;
    ours.edit(&tail, |bytes| {
        bytes[target..target + length].copy_from_slice(&their_bytes[source..source + length])
    });
    let reason = expect_corrupt(&ours, &tail, target);
    assert!(reason.contains("chain"), "{reason}");
}

/// Truncation (with re-append) and purge are durable: a reopened WAL shows the same log, and
/// purged entries can no longer be read.
fn truncate_and_purge_survive_reopen(kind: Kind) {
    let harness = Harness::new(kind);
    let mut wal = harness.open();
    for index in 0..100 {
        append_wait(&mut wal, vec![entry(index, 1, payload(index, 0, 2000))]).expect("flushed");
    }
    let segments_before = harness.segments().len();
    assert!(segments_before > 3);
    wal.truncate(80).expect("truncate inside the tail");
    wal.truncate(60).expect("truncate across segments");
    for index in 60..90 {
        append_wait(&mut wal, vec![entry(index, 2, payload(index, 2, 1000))]).expect("flushed");
    }
    wal.purge(LogId { index: 40, term: 1 }).expect("purge");
    assert!(harness.segments().len() < segments_before);
    let check = |wal: &tally_raft::Wal| {
        let state = wal.log_state();
        assert_eq!(state.purged, Some(LogId { index: 40, term: 1 }));
        assert_eq!(state.last, Some(LogId { index: 89, term: 2 }));
        assert!(wal.reader().read(40..41).is_err());
        let entries = wal.reader().read(41..90).expect("read");
        for read in entries {
            let (salt, length) = if read.index < 60 {
                (0, 2000)
            } else {
                (2, 1000)
            };
            assert_eq!(
                read.payload,
                payload(read.index, salt, length),
                "entry {}",
                read.index
            );
        }
    };
    check(&wal);
    drop(wal);
    let mut wal = harness.open();
    check(&wal);
    // A purge beyond the end (openraft after installing a snapshot) empties the log, and
    // appends continue after it.
    wal.purge(LogId {
        index: 200,
        term: 3,
    })
    .expect("purge past the end");
    append_wait(&mut wal, vec![entry(201, 3, payload(201, 0, 10))]).expect("append after purge");
    drop(wal);
    let wal = harness.open();
    assert_eq!(
        wal.log_state().last,
        Some(LogId {
            index: 201,
            term: 3
        })
    );
    assert_eq!(
        wal.reader().read(201..202).expect("read")[0].payload,
        payload(201, 0, 10)
    );
}

/// A saved vote is what the next open reads; a damaged vote file refuses to start.
fn vote_is_durable(kind: Kind) {
    let harness = Harness::new(kind);
    let mut wal = harness.open();
    assert_eq!(wal.read_vote(), None);
    let vote = Vote {
        term: 7,
        node_id: 2,
        committed: true,
    };
    wal.save_vote(&Vote {
        term: 6,
        node_id: 1,
        committed: false,
    })
    .expect("save");
    wal.save_vote(&vote).expect("save");
    drop(wal);
    assert_eq!(harness.open().read_vote(), Some(vote));
    harness.edit(&harness.dir.join("vote"), |bytes| bytes[9] ^= 1);
    assert!(matches!(harness.try_open(), Err(OpenError::Corrupt { .. })));
}
