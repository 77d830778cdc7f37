//! Crash and I/O-error behaviour, on the simulated disk (the only place a power loss can be
//! staged): crash at every I/O, poisoning, and why rotation fsyncs the directory.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{append_wait, entry, payload, Harness};
use rand::{Rng, SeedableRng};
use tally_raft::storage::sim::SimDisk;
use tally_raft::{AppendError, LogId, Vote, Wal};

/// What the scripted workload was told: the log as acknowledged, and everything it tried.
#[derive(Default, Debug)]
struct Outcome {
    /// The log according to acknowledged operations only.
    acked: BTreeMap<u64, Vec<u8>>,
    /// Every payload ever handed to `append` at each index, acknowledged or not.
    tried: BTreeMap<u64, Vec<Vec<u8>>>,
    purged_acked: Option<u64>,
    vote_acked: Option<Vote>,
    votes_tried: Vec<Vote>,
}

/// Appends (several in flight at once, so groups hold more than one), votes, truncations and
/// purges, stopping at the first error, as a node would when its disk dies.
fn workload(harness: &Harness, seed: u64) -> Outcome {
    let mut outcome = Outcome::default();
    let Ok(mut wal) = harness.try_open() else {
        return outcome;
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut next = 0u64;
    for round in 0..30u64 {
        let (sender, receiver) = crossbeam_channel::unbounded();
        let mut sent = 0;
        for _ in 0..rng.random_range(1..4) {
            let mut batch = Vec::new();
            for _ in 0..rng.random_range(1..4) {
                let bytes = payload(next, round, rng.random_range(1..6000));
                outcome.tried.entry(next).or_default().push(bytes.clone());
                batch.push(entry(next, 1 + round / 5, bytes));
                next += 1;
            }
            let sender = sender.clone();
            let sent_batch = batch.clone();
            if wal
                .append(batch, move |result| drop(sender.send((sent_batch, result))))
                .is_err()
            {
                return outcome;
            }
            sent += 1;
        }
        let mut failed = false;
        for _ in 0..sent {
            let (batch, result) = receiver.recv().expect("every append gets its callback");
            match result {
                Ok(()) => outcome
                    .acked
                    .extend(batch.into_iter().map(|e| (e.index, e.payload.to_vec()))),
                Err(_) => failed = true,
            }
        }
        if failed {
            return outcome;
        }
        match round % 10 {
            3 => {
                let vote = Vote {
                    term: round,
                    node_id: round % 3,
                    committed: round % 2 == 0,
                };
                outcome.votes_tried.push(vote);
                if wal.save_vote(&vote).is_err() {
                    return outcome;
                }
                outcome.vote_acked = Some(vote);
            }
            6 => {
                let since = next
                    - rng
                        .random_range(1..4)
                        .min(next - outcome.purged_acked.map_or(0, |p| p + 1));
                // A truncation that failed may still have happened; either way the entries
                // from `since` on are no longer promised.
                let truncated = wal.truncate(since);
                outcome.acked.retain(|&index, _| index < since);
                if truncated.is_err() {
                    return outcome;
                }
                next = since;
            }
            9 => {
                let upto = next - 5;
                if wal
                    .purge(LogId {
                        index: upto,
                        term: 0,
                    })
                    .is_err()
                {
                    return outcome;
                }
                outcome.purged_acked = Some(upto);
                outcome.acked.retain(|&index, _| index > upto);
            }
            _ => {}
        }
    }
    outcome
}

/// Reopen after the crash and check nothing acknowledged is lost and nothing invented, and
/// that a one-pass replay of the same image hands over exactly the recovered log.
fn verify(image: SimDisk, outcome: &Outcome, label: &str) {
    // The same crash image again, for the one-pass replay to recover on its own.
    let copy = image.crash_image(None);
    let harness = Harness::on_sim(image);
    if std::env::var("TALLY_DEBUG").is_ok() {
        for path in harness.segments() {
            let bytes = harness.read_file(&path);
            eprintln!("{}: {:?}", path.display(), common::record_offsets(&bytes));
        }
        eprintln!("acked {:?}", outcome.acked.keys().collect::<Vec<_>>());
    }
    let mut wal = harness
        .try_open()
        .unwrap_or_else(|error| panic!("{label}: recovery refused: {error}"));
    let state = wal.log_state();
    let purged = state.purged.map(|id| id.index);
    if let Some(acked) = outcome.purged_acked {
        assert!(purged >= Some(acked), "{label}: acknowledged purge lost");
    }
    let last = state.last.map(|id| id.index);
    for (&index, bytes) in &outcome.acked {
        if purged.is_some_and(|p| index <= p) {
            continue; // A purge that was attempted but not acknowledged may have happened.
        }
        assert!(
            last >= Some(index),
            "{label}: acknowledged entry {index} lost (last {last:?})"
        );
        let read = wal
            .reader()
            .read(index..index + 1)
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(
            &read[0].payload[..],
            &bytes[..],
            "{label}: entry {index} differs"
        );
    }
    let first = purged.map_or(0, |p| p + 1);
    if let Some(last) = last.filter(|&last| last >= first) {
        for read in wal
            .reader()
            .read(first..last + 1)
            .unwrap_or_else(|e| panic!("{label}: {e}"))
        {
            let tried = outcome
                .tried
                .get(&read.index)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            assert!(
                tried.iter().any(|t| t[..] == read.payload[..]),
                "{label}: entry {} invented",
                read.index
            );
        }
    }
    if let Some(acked) = outcome.vote_acked {
        let vote = wal
            .read_vote()
            .unwrap_or_else(|| panic!("{label}: acknowledged vote lost"));
        assert!(
            vote.term >= acked.term && outcome.votes_tried.contains(&vote),
            "{label}: vote {vote:?}"
        );
    }
    // The one-pass replay of the same image hands over exactly the recovered log.
    let mut replayed = Vec::new();
    let copy = Harness::on_sim(copy);
    Wal::open_with_replay(
        Arc::clone(&copy.disk),
        &copy.dir,
        common::config(),
        0,
        |entry| replayed.push(entry),
    )
    .unwrap_or_else(|error| panic!("{label}: replay refused: {error}"));
    let recovered = match last.filter(|&last| last >= first) {
        Some(last) => wal.reader().read(first..last + 1).expect("read"),
        None => Vec::new(),
    };
    assert_eq!(
        replayed, recovered,
        "{label}: replay differs from the reader"
    );
    // The recovered WAL accepts the next append, durably.
    let next = last.map_or(first, |l| l + 1).max(first);
    append_wait(&mut wal, vec![entry(next, 99, payload(next, 99, 100))])
        .unwrap_or_else(|e| panic!("{label}: append after recovery: {e}"));
    drop(wal);
    let wal = harness
        .try_open()
        .unwrap_or_else(|error| panic!("{label}: second recovery: {error}"));
    assert_eq!(
        wal.log_state().last.map(|id| id.index),
        Some(next),
        "{label}"
    );
}

/// Power loss at every single I/O operation of the scripted workload (appends in concurrent
/// groups, segment rotations, votes, truncations, purges), with unsynced sectors either all
/// lost or torn at random, and again with a second power loss during the recovery: recovery
/// never refuses, keeps every entry whose flush callback fired, every acknowledged
/// truncation, purge and vote, invents nothing, and accepts the next append.
#[test]
fn crash_at_every_io_recovers_every_acknowledged_append() {
    let seed = common::seed();
    let counting = SimDisk::new();
    let outcome = workload(&Harness::on_sim(counting.clone()), seed);
    assert!(
        outcome.purged_acked.is_some() && outcome.vote_acked.is_some(),
        "the workload ran to the end"
    );
    let total = counting.operations();
    assert!(
        total > 100,
        "the workload does real I/O ({total} operations)"
    );
    // TALLY_CRASH_AT=N replays a single crash point of a failing seed.
    let only: Option<u64> = std::env::var("TALLY_CRASH_AT")
        .ok()
        .and_then(|s| s.parse().ok());
    for crash_at in (1..=total + 3).filter(|&n| only.is_none_or(|only| only == n)) {
        for torn_seed in [None, Some(seed ^ crash_at)] {
            let disk = SimDisk::new();
            disk.crash_at(crash_at);
            let outcome = workload(&Harness::on_sim(disk.clone()), seed);
            let label = format!("TALLY_SEED={seed} TALLY_CRASH_AT={crash_at} (torn {torn_seed:?})");
            let image = disk.crash_image(torn_seed);
            // A second power loss during recovery itself (while it cuts a torn tail, removes
            // empty segments, re-extends the tail) must not lose anything either.
            let second = image.crash_image(None);
            second.crash_at(second.operations() + 1 + (seed ^ crash_at) % 6);
            let _ = Harness::on_sim(second.clone()).try_open();
            verify(
                second.crash_image(torn_seed.map(|t| t + 1)),
                &outcome,
                &format!("{label}, then crash during recovery"),
            );
            verify(image, &outcome, &label);
        }
    }
}

/// An fsync error fails the flush callback, and from then on the WAL acknowledges nothing —
/// appends, truncations, purges and votes are refused — until it is reopened; reopening
/// recovers every entry acknowledged before the error.
#[test]
fn fsync_error_poisons_until_reopened() {
    let disk = SimDisk::new();
    let harness = Harness::on_sim(disk.clone());
    let mut wal = harness.open();
    for index in 0..5 {
        append_wait(&mut wal, vec![entry(index, 1, payload(index, 0, 500))]).expect("flushed");
    }
    disk.fail_next_sync();
    assert!(
        append_wait(&mut wal, vec![entry(5, 1, payload(5, 0, 500))]).is_err(),
        "fsync error reported"
    );
    assert!(matches!(
        wal.append(vec![entry(6, 1, vec![1])], |_| {}),
        Err(AppendError::Poisoned(_))
    ));
    assert!(wal.truncate(3).is_err());
    assert!(wal.purge(LogId { index: 1, term: 1 }).is_err());
    assert!(wal
        .save_vote(&Vote {
            term: 1,
            node_id: 1,
            committed: false
        })
        .is_err());
    assert_eq!(
        wal.reader()
            .read(0..5)
            .expect("durable entries stay readable")
            .len(),
        5
    );
    drop(wal);
    let mut wal = harness.open();
    let last = wal.log_state().last.expect("entries").index;
    assert!(last >= 4);
    for read in wal.reader().read(0..5).expect("read") {
        assert_eq!(read.payload, payload(read.index, 0, 500));
    }
    append_wait(&mut wal, vec![entry(last + 1, 2, vec![7; 10])])
        .expect("appends work after reopening");
}

/// A failed write (not the fsync) poisons just the same, and every append queued behind the
/// failed group is failed too, never acknowledged.
#[test]
fn write_error_poisons_queued_appends() {
    let disk = SimDisk::new();
    let harness = Harness::on_sim(disk.clone());
    let mut wal = harness.open();
    append_wait(&mut wal, vec![entry(0, 1, vec![1; 100])]).expect("flushed");
    disk.fail_at(disk.operations() + 1);
    let (sender, receiver) = crossbeam_channel::unbounded();
    for index in 1..20 {
        let sender = sender.clone();
        match wal.append(vec![entry(index, 1, vec![2; 100])], move |result| {
            drop(sender.send(result))
        }) {
            Ok(()) | Err(AppendError::Poisoned(_)) => {}
            Err(other) => panic!("unexpected {other}"),
        }
    }
    drop(sender);
    let results: Vec<_> = receiver.iter().collect();
    assert!(!results.is_empty());
    assert!(
        results.iter().all(Result::is_err),
        "no acknowledgement after the write error"
    );
}

/// Entries acknowledged into a freshly rotated segment survive a power loss only because the
/// rotation fsyncs the directory: with that fsync disabled, the same crash loses them.
#[test]
fn rotation_needs_directory_fsync() {
    for directory_fsync in [true, false] {
        let disk = SimDisk::new();
        let harness = Harness::on_sim(disk.clone());
        let mut wal = harness.open();
        append_wait(&mut wal, vec![entry(0, 1, vec![0; 3000])]).expect("flushed");
        if !directory_fsync {
            disk.disable_dir_sync();
        }
        let mut index = 1;
        while harness.segments().len() < 2 || index < 24 {
            append_wait(&mut wal, vec![entry(index, 1, vec![1; 3000])]).expect("flushed");
            index += 1;
        }
        let acknowledged_last = index - 1;
        let recovered = Harness::on_sim(disk.crash_image(None))
            .open()
            .log_state()
            .last
            .map(|id| id.index);
        if directory_fsync {
            assert_eq!(recovered, Some(acknowledged_last));
        } else {
            assert!(
                recovered < Some(acknowledged_last),
                "without the directory fsync the segment is lost"
            );
        }
    }
}
