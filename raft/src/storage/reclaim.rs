//! Deleting large files without stalling the WAL: a WAL segment behind the purge point, a
//! snapshot older than the current one.
//!
//! On a filesystem mounted with online discard, unlinking a file frees all its blocks in one
//! journal commit, and the discards of that commit hold up every fdatasync queued behind it:
//! the WAL's group commits stop for tens of milliseconds per GiB deleted (measured figures at
//! `RECLAIM_STEP_BYTES`). So a file is handed to one background thread per process, which
//! cuts it from its end a stretch at a time, each cut fsync'd and followed by a pause, and
//! unlinks what is left.
//!
//! Contract for callers: the file has already been renamed to a name its owner removes at
//! start (a crash may leave it, cut or whole), and nothing reads or writes it again.

use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crossbeam_channel::Sender;

use crate::limits::{RECLAIM_PAUSE, RECLAIM_STEP_BYTES};

/// The reclaimer thread's queue; `None` if the thread could not be started.
static QUEUE: OnceLock<Option<Sender<PathBuf>>> = OnceLock::new();

/// Delete `path` in the background (see the module docs); where no background thread can be
/// started, now.
pub(crate) fn reclaim(path: &Path) -> io::Result<()> {
    let queue = QUEUE.get_or_init(|| {
        let (sender, receiver) = crossbeam_channel::unbounded::<PathBuf>();
        let started = std::thread::Builder::new()
            .name("tally-reclaim".to_owned())
            .spawn(move || {
                for path in receiver {
                    // Not found: the owner reopened in this process and removed it first.
                    match shrink_and_remove(&path) {
                        Err(error) if error.kind() != io::ErrorKind::NotFound => {
                            tracing::warn!(path = %path.display(), %error,
                                "a deleted file could not be reclaimed (it is removed at the next start)");
                        }
                        _ => {}
                    }
                }
            });
        match started {
            Ok(_) => Some(sender),
            Err(error) => {
                tracing::warn!(%error, "no reclaimer thread: large files are deleted at once");
                None
            }
        }
    });
    match queue {
        Some(queue) => queue
            .send(path.to_path_buf())
            .map_err(|_| io::Error::other("the reclaimer thread stopped")),
        None => std::fs::remove_file(path),
    }
}

/// Cut `path` from its end by `RECLAIM_STEP_BYTES` at a time, then unlink it.
fn shrink_and_remove(path: &Path) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    let mut length = file.metadata()?.len();
    while length > RECLAIM_STEP_BYTES {
        length -= RECLAIM_STEP_BYTES;
        file.set_len(length)?;
        file.sync_all()?;
        std::thread::sleep(RECLAIM_PAUSE);
    }
    drop(file);
    std::fs::remove_file(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves a file handed over is deleted, cut by cut (it is seen shorter before it is
    /// gone), and that its directory keeps no trace of it.
    #[test]
    fn a_reclaimed_file_shrinks_and_goes() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("old.purged");
        let file = std::fs::File::create(&path).expect("created");
        let length = 5 * RECLAIM_STEP_BYTES + 7;
        file.set_len(length).expect("sized");
        drop(file);
        reclaim(&path).expect("handed over");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut lengths = Vec::new();
        while let Ok(metadata) = std::fs::metadata(&path) {
            lengths.push(metadata.len());
            assert!(
                std::time::Instant::now() < deadline,
                "still there: {lengths:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert!(
            lengths.iter().any(|&seen| seen < length && seen > 0),
            "the file was cut before it was unlinked: {lengths:?}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).expect("listed").count(), 0);
    }
}
