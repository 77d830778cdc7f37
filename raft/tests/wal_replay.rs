//! The one-pass replay (`Wal::open_with_replay`) on every backend (io_uring, pwrite fallback,
//! simulated disk): it hands over exactly the entries `Wal::open` then `WalReader::read`
//! return, across segment rotations, truncations, purges and torn tails, and it refuses
//! corruption exactly where `Wal::open` does.

mod common;

use std::sync::Arc;

use common::{append_wait, entry, payload, record_offsets, Harness, Kind};
use rand::{Rng, SeedableRng};
use tally_raft::limits::{RECORD_HEADER_BYTES, SECTOR_BYTES};
use tally_raft::wal::record::{self, RecordKind};
use tally_raft::wal::segment::segment_name;
use tally_raft::{Entry, LogId, OpenError, Wal};

for_each_backend!(
    replay_yields_what_the_reader_reads,
    replay_after_a_torn_tail_matches_the_reader,
    replay_refuses_corruption_where_open_does,
    replay_refuses_a_mark_that_removes_replayed_entries,
);

/// Open with a replay from `from`; the WAL and the entries the replay visited.
fn replay(harness: &Harness, from: u64) -> Result<(Wal, Vec<Entry>), OpenError> {
    let mut visited = Vec::new();
    let wal = Wal::open_with_replay(
        Arc::clone(&harness.disk),
        &harness.dir,
        common::config(),
        from,
        |entry| visited.push(entry),
    )?;
    Ok((wal, visited))
}

/// What the reader returns for indexes `from` and up, after a plain open.
fn read_from(wal: &Wal, from: u64) -> Vec<Entry> {
    let state = wal.log_state();
    let first = state.purged.map_or(0, |id| id.index + 1);
    match state.last {
        Some(last) if from.max(first) <= last.index => wal
            .reader()
            .read(from.max(first)..last.index + 1)
            .expect("read"),
        _ => Vec::new(),
    }
}

/// Both ways over the same disk image, for each of `froms`: a plain open then reads, and a
/// replay; they must agree entry for entry (index, term, payload). Returns the entries from 0.
/// `restore` puts the image back before the replay (recovery may have cut a torn tail).
fn check_same(harness: &Harness, froms: &[u64], restore: &dyn Fn()) -> Vec<Entry> {
    let mut all = Vec::new();
    for &from in froms {
        restore();
        let expected = read_from(&harness.open(), from);
        restore();
        let (wal, visited) = replay(harness, from).expect("replay opens");
        assert_eq!(visited, expected, "replay from {from}");
        // The replay's open recovered the same log as the plain one.
        assert_eq!(
            read_from(&wal, from),
            expected,
            "log after replay from {from}"
        );
        if from == 0 {
            all = visited;
        }
    }
    all
}

/// Random entries (0..=8 KiB, alone or in groups, many segment rotations), then truncations
/// inside the tail segment and across segments with re-appends, then a purge: after each
/// stage the replay from several starting points equals what the reader returns.
fn replay_yields_what_the_reader_reads(kind: Kind) {
    let harness = Harness::new(kind);
    let mut rng = rand::rngs::StdRng::seed_from_u64(common::seed());
    let mut appended = 0u64;
    let mut append_some = |wal: &mut Wal, count: u64, term: u64, next: &mut u64| {
        let mut left = count;
        while left > 0 {
            let n = rng.random_range(1..4).min(left);
            let batch = (*next..*next + n)
                .map(|index| {
                    let length = rng.random_range(0..=8 * 1024);
                    entry(index, term, payload(index, term, length))
                })
                .collect();
            append_wait(wal, batch).expect("flushed");
            *next += n;
            left -= n;
        }
    };
    let nothing = || {};
    let mut wal = harness.open();
    append_some(&mut wal, 150, 1, &mut appended);
    drop(wal);
    assert!(harness.segments().len() > 5, "the log must span segments");
    let all = check_same(&harness, &[0, 1, 77, 149, 150, 400], &nothing);
    assert_eq!(all.len(), 150);

    let mut wal = harness.open();
    let tail_first: u64 = {
        let name = harness.segments().pop().expect("a segment");
        let stem = name
            .file_stem()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        stem.parse().expect("segment name is its first index")
    };
    wal.truncate(149).expect("truncate inside the tail segment");
    let mut next = 149;
    append_some(&mut wal, 3, 2, &mut next);
    wal.truncate(tail_first.saturating_sub(20))
        .expect("truncate across segments");
    next = tail_first.saturating_sub(20);
    append_some(&mut wal, 60, 3, &mut next);
    drop(wal);
    let froms = [0, 5, tail_first.saturating_sub(21), next - 1, next];
    let all = check_same(&harness, &froms, &nothing);
    assert_eq!(all.len() as u64, next);
    assert_eq!(all.last().map(|e| e.term), Some(3));

    let mut wal = harness.open();
    wal.purge(LogId { index: 60, term: 1 }).expect("purge");
    drop(wal);
    let all = check_same(&harness, &[0, 60, 61, 100, next], &nothing);
    assert_eq!(all.first().map(|e| e.index), Some(61));
    assert_eq!(all.len() as u64, next - 61);
}

/// Writes entries of 3000 bytes, each its own group commit, until `count` are written and,
/// if `rotate_last`, the last one is the first record of a new segment. Returns the count.
fn write_log(harness: &Harness, count: u64, rotate_last: bool) -> u64 {
    let mut wal = harness.open();
    let mut index = 0;
    loop {
        let segments = harness.segments().len();
        append_wait(&mut wal, vec![entry(index, 1, payload(index, 0, 3000))]).expect("flushed");
        index += 1;
        let rotated = harness.segments().len() > segments;
        if index >= count && (!rotate_last || (rotated && index > 1)) {
            return index;
        }
    }
}

/// A torn last record (cut or zeroed at byte steps through it), in a tail segment holding
/// other records and in one it starts alone (so recovery removes that segment): the replay
/// visits exactly what the reader reads from the recovered log, which is all but that record.
fn replay_after_a_torn_tail_matches_the_reader(kind: Kind) {
    for rotate_last in [false, true] {
        let harness = Harness::new(kind);
        let count = write_log(&harness, 40, rotate_last);
        let segments = harness.segments();
        let tail = segments.last().expect("a segment").clone();
        let original = harness.read_file(&tail);
        let offsets = record_offsets(&original);
        let &(offset, index) = offsets.last().expect("records in tail");
        assert_eq!(index, count - 1);
        assert_eq!(rotate_last, offsets.len() == 1);
        let end = offset + RECORD_HEADER_BYTES + 3000;
        for cut in (offset..end).step_by(97).chain([end - 1]) {
            for zero_instead_of_cut in [false, true] {
                let restore = || {
                    // Recovery may have deleted the tail segment; recreate it as it was.
                    let file = harness.disk.open(&tail, true).expect("open tail");
                    file.set_len(0).expect("set_len");
                    harness.write_file(&tail, &original);
                    harness.edit(&tail, |bytes| {
                        if zero_instead_of_cut {
                            bytes[cut..end].fill(0);
                        } else {
                            bytes.truncate(cut);
                        }
                    });
                };
                let all = check_same(&harness, &[0, count / 2, count - 1], &restore);
                assert_eq!(all.len() as u64, count - 1, "cut at {cut}");
            }
        }
        // The last sector of the last record zeroed: a torn tail too.
        let last_sector = (end - 1) / SECTOR_BYTES * SECTOR_BYTES;
        let restore = || {
            let file = harness.disk.open(&tail, true).expect("open tail");
            file.set_len(0).expect("set_len");
            harness.write_file(&tail, &original);
            harness.edit(&tail, |bytes| {
                let stop = (last_sector + SECTOR_BYTES).min(bytes.len());
                bytes[last_sector..stop].fill(0)
            });
        };
        let all = check_same(&harness, &[0], &restore);
        assert_eq!(all.len() as u64, count - 1);
    }
}

/// Both ways of opening refuse the same damage with the same segment and offset; a replay
/// that refuses has visited only entries of the log in front of the damage.
fn replay_refuses_corruption_where_open_does(kind: Kind) {
    let harness = Harness::new(kind);
    let count = write_log(&harness, 60, false);
    let segments = harness.segments();
    assert!(segments.len() >= 3, "the log must span segments");
    // A flipped bit in the first segment, then in the middle of the tail segment.
    for victim_segment in [&segments[0], &segments[segments.len() - 1]] {
        let original = harness.read_file(victim_segment);
        let offsets = record_offsets(&original);
        let (victim, victim_index) = offsets[offsets.len() / 2];
        harness.edit(victim_segment, |bytes| {
            bytes[victim + RECORD_HEADER_BYTES + 17] ^= 0x10
        });
        let open_error = harness.try_open().expect_err("open refuses");
        let mut visited = Vec::new();
        let replay_error = Wal::open_with_replay(
            Arc::clone(&harness.disk),
            &harness.dir,
            common::config(),
            0,
            |entry| visited.push(entry),
        )
        .expect_err("replay refuses");
        match (&open_error, &replay_error) {
            (
                OpenError::Corrupt {
                    path: open_path,
                    offset: open_offset,
                    ..
                },
                OpenError::Corrupt { path, offset, .. },
            ) => {
                assert_eq!((path, offset), (victim_segment, &(victim as u64)));
                assert_eq!((open_path, open_offset), (path, offset));
            }
            _ => panic!("expected corruption twice, got {open_error} and {replay_error}"),
        }
        assert!(visited.len() as u64 <= victim_index);
        for (index, read) in visited.iter().enumerate() {
            assert_eq!(read.index, index as u64);
            assert_eq!(read.payload, payload(read.index, 0, 3000));
        }
        harness.write_file(victim_segment, &original);
    }
    assert_eq!(check_same(&harness, &[0], &|| {}).len() as u64, count);
}

/// One record of a hand-made segment: kind, index, term, payload.
type Record<'a> = (RecordKind, u64, u64, &'a [u8]);

/// Encode groups of records back to back, each group padded to the sector, as a segment.
fn segment_image(groups: &[&[Record<'_>]], mut chain: u32) -> (Vec<u8>, u32) {
    let mut image = vec![0u8; common::config().segment_bytes as usize];
    let mut at = 0;
    for group in groups {
        for (position, &(kind, index, term, body)) in group.iter().enumerate() {
            let length = RECORD_HEADER_BYTES + body.len();
            let out = &mut image[at..at + length];
            chain = record::encode(out, kind, position == 0, index, term, chain, body);
            at += length;
        }
        at = at.div_ceil(SECTOR_BYTES) * SECTOR_BYTES;
    }
    (image, chain)
}

/// Write two segment images: entries 0, 1, 2 in segment 0, then `second` in segment 3.
fn write_two_segments(harness: &Harness, second: &[&[Record<'_>]]) {
    let _ = harness.disk.remove(&harness.dir.join(segment_name(0)));
    let _ = harness.disk.remove(&harness.dir.join(segment_name(3)));
    harness.disk.create_dir_all(&harness.dir).expect("dir");
    let (first, chain) = segment_image(
        &[&[
            (RecordKind::Entry, 0, 1, b"zero"),
            (RecordKind::Entry, 1, 1, b"one"),
            (RecordKind::Entry, 2, 1, b"two"),
        ]],
        0,
    );
    let (second, _) = segment_image(second, chain);
    for (first_index, image) in [(0, &first), (3, &second)] {
        let path = harness.dir.join(segment_name(first_index));
        let file = harness.disk.open(&path, true).expect("create");
        file.set_len(0).expect("empty");
        file.write_at(image, 0).expect("write");
        file.sync().expect("sync");
    }
    harness.disk.sync_dir(&harness.dir).expect("sync dir");
}

/// A truncate mark in a later segment removing entries of an earlier one. As the first record
/// of its segment the WAL writes it (truncating while the tail segment is full), and the
/// replay agrees with the reader. Anywhere else the WAL never writes it, but recovery accepts
/// it; the replay, which has handed the earlier segment over by then, refuses instead of
/// having visited removed entries, and from past them agrees with the reader.
fn replay_refuses_a_mark_that_removes_replayed_entries(kind: Kind) {
    let harness = Harness::new(kind);
    write_two_segments(
        &harness,
        &[&[
            (RecordKind::Truncate, 1, 0, b""),
            (RecordKind::Entry, 1, 2, b"one again"),
        ]],
    );
    let all = check_same(&harness, &[0, 1, 2, 3], &|| {});
    assert_eq!(all.len(), 2);
    assert_eq!(&all[1].payload[..], b"one again");

    write_two_segments(
        &harness,
        &[
            &[(RecordKind::Entry, 3, 1, b"three")],
            &[
                (RecordKind::Truncate, 1, 0, b""),
                (RecordKind::Entry, 1, 2, b"one again"),
            ],
        ],
    );
    let wal = harness.open();
    assert_eq!(wal.log_state().last, Some(LogId { index: 1, term: 2 }));
    drop(wal);
    for from in [0, 2] {
        match replay(&harness, from) {
            Err(OpenError::ReplayOvertaken {
                since,
                replayed_to,
                offset,
                ..
            }) => assert_eq!((since, replayed_to, offset), (1, 3, SECTOR_BYTES as u64)),
            Err(other) => panic!("expected ReplayOvertaken, got {other}"),
            Ok((_, visited)) => panic!("replay from {from} visited {visited:?}"),
        }
    }
    assert!(check_same(&harness, &[3], &|| {}).is_empty());
}
