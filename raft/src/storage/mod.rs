//! The storage seam: the few file operations the WAL, the vote and the snapshot files need.
//!
//! Production runs on [`uring::UringDisk`] (io_uring ring owned by the WAL thread, O_DIRECT where
//! the filesystem allows it). Where io_uring cannot be set up, [`open_default`] falls back to
//! [`sync::SyncDisk`] (pwrite + fdatasync) and says so in the log. Tests run the same WAL code on
//! [`sim::SimDisk`], which keeps "written" and "durable" images apart and can fail or crash at
//! the N-th operation.

pub mod aligned;
mod reclaim;
pub mod sim;
pub mod sync;
pub mod uring;

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

pub use aligned::AlignedBuffer;

/// Which implementation of [`Disk`] is in use; exported as a metric and logged at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// io_uring: one write linked to one fdatasync per group commit.
    Uring,
    /// pwrite + fdatasync, used where io_uring is unavailable.
    Sync,
    /// The simulated disk of the tests.
    Sim,
}

impl Backend {
    /// Name used in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Uring => "io_uring",
            Backend::Sync => "pwrite_fdatasync",
            Backend::Sim => "simulated",
        }
    }
}

/// A directory tree of files. Paths are absolute or relative to the process; the WAL only ever
/// uses one directory.
pub trait Disk: Send + Sync + fmt::Debug {
    /// Which implementation this is.
    fn backend(&self) -> Backend;
    /// Create `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names (not paths) of the files in `dir`, in no particular order.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Open `path` for reading and writing; create it (empty) if `create` and it is missing.
    /// A new name is durable only after [`Disk::sync_dir`] of its directory.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn DiskFile>>;
    /// Whether `path` exists.
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// Remove the name `path`. Durable only after [`Disk::sync_dir`].
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Atomically rename `from` to `to`, replacing `to`. Durable only after [`Disk::sync_dir`].
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Make the names in `dir` (creations, removals, renames) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Delete `path`, a file nothing reads or writes again, already renamed to a name its
    /// owner removes at start. The real disks give its space back in the background, a
    /// stretch at a time, so the WAL's fdatasyncs never wait for a whole file's discards
    /// (`reclaim.rs`); the simulated disk removes it at once. Durable only after
    /// [`Disk::sync_dir`], and not even then on the real disks: a crash may leave it.
    fn reclaim(&self, path: &Path) -> io::Result<()>;
    /// Whether the storage above this disk must do all its work on the calling thread: no
    /// WAL or commit-mark threads, snapshots built and restored within the call. `false` on
    /// the real disks. The deterministic simulator asks for it (`SimDisk::without_threads`),
    /// so that one seed gives one order of events: each write then completes, and its
    /// callback fires, inside the call that made it.
    fn single_threaded(&self) -> bool {
        false
    }
}

/// One open file. Reads and writes take explicit offsets, so one handle can be shared between
/// the WAL thread (writes) and readers.
pub trait DiskFile: Send + Sync + fmt::Debug {
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Read into `buf` from `offset`; returns fewer bytes than asked only at end of file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Read into `buf` (from an [`AlignedBuffer`], length a multiple of `SECTOR_BYTES`) at a
    /// sector-aligned `offset`, bypassing the page cache where the file allows O_DIRECT: a
    /// recovery scan or replay then runs at the disk's sequential speed instead of the
    /// readahead's (2.5x on this machine). Returns fewer bytes than asked only at end of file.
    fn read_direct_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.read_at(buf, offset)
    }
    /// Write all of `buf` at `offset` through the page cache; any alignment. Not durable until
    /// [`DiskFile::sync`].
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Write all of `buf` (from an [`AlignedBuffer`], length a multiple of `SECTOR_BYTES`) at a
    /// sector-aligned `offset`, bypassing the page cache where the file allows O_DIRECT; not
    /// durable until [`DiskFile::sync`]. For bulk writes beside the WAL (snapshot files): each
    /// call is one request the disk finishes before the next is made, so a WAL group commit
    /// never queues behind more than one of them, where write-back of a page cache full of
    /// dirty pages would put a whole burst ahead of it.
    fn write_direct_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.write_at(buf, offset)
    }
    /// The group commit: write all of `buf` at `offset` and then fdatasync.
    /// `offset` and `buf.len()` must be multiples of `SECTOR_BYTES` and `buf` comes from an
    /// [`AlignedBuffer`], so O_DIRECT can be used.
    ///
    /// Durability contract:
    /// - `Ok` means the bytes are on stable storage (the fdatasync completion reported success).
    /// - A short write is completed before the sync; it is never reported as success.
    /// - `Err` means nothing is known about which of the bytes reached the disk.
    fn write_sync_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// fsync: data and metadata (length, allocation) become durable.
    fn sync(&self) -> io::Result<()>;
    /// Preallocate so the file is at least `len` bytes long; new bytes read as zero. Durable
    /// after [`DiskFile::sync`].
    fn allocate(&self, len: u64) -> io::Result<()>;
    /// Cut or extend the file to exactly `len` bytes (tests use it to simulate truncation).
    fn set_len(&self, len: u64) -> io::Result<()>;
}

/// Remove a leftover file found at start (a crash's partial file, a purged file not yet
/// reclaimed). Gone already is as good: a node reopened in the same process races its own
/// reclaimer thread ([`Disk::reclaim`]).
pub(crate) fn remove_leftover(disk: &dyn Disk, path: &Path) -> io::Result<()> {
    match disk.remove(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// The production disk: io_uring if it can be set up here, otherwise pwrite + fdatasync. The
/// fallback is announced with a warning, and [`Disk::backend`] reports it for the metric.
/// Setting `TALLY_WAL_BACKEND=pwrite` forces the fallback (for comparison, or a kernel whose
/// io_uring misbehaves).
pub fn open_default() -> Arc<dyn Disk> {
    if std::env::var("TALLY_WAL_BACKEND").is_ok_and(|value| value == "pwrite") {
        tracing::warn!("TALLY_WAL_BACKEND=pwrite: the WAL uses the pwrite + fdatasync fallback");
        return Arc::new(sync::SyncDisk::new());
    }
    choose(uring::UringDisk::new())
}

/// io_uring if it could be set up, else the announced fallback.
fn choose(uring: io::Result<uring::UringDisk>) -> Arc<dyn Disk> {
    match uring {
        Ok(disk) => Arc::new(disk),
        Err(error) => {
            tracing::warn!(
                %error,
                "io_uring cannot be set up here; the WAL uses the pwrite + fdatasync fallback"
            );
            Arc::new(sync::SyncDisk::new())
        }
    }
}

/// Read exactly `buf.len()` bytes at `offset`, or fail with `UnexpectedEof`.
pub fn read_exact_at(file: &dyn DiskFile, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let n = file.read_at(&mut buf[done..], offset + done as u64)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short read"));
        }
        done += n;
    }
    Ok(())
}

/// Like [`read_up_to`], through [`DiskFile::read_direct_at`] (aligned `buf` and `offset`).
pub fn read_direct_up_to(file: &dyn DiskFile, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let n = file.read_direct_at(&mut buf[done..], offset + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
        if done % crate::limits::SECTOR_BYTES != 0 {
            // O_DIRECT returns a partial sector only at end of file.
            break;
        }
    }
    Ok(done)
}

/// Read as many bytes as the file holds at `offset`, up to `buf.len()`; returns the count.
pub fn read_up_to(file: &dyn DiskFile, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let n = file.read_at(&mut buf[done..], offset + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where io_uring setup fails (as under a seccomp profile that forbids it: EPERM), the
    /// pwrite + fdatasync backend is chosen instead of failing to start.
    #[test]
    fn falls_back_where_io_uring_is_forbidden() {
        let forbidden = Err(io::Error::from_raw_os_error(libc::EPERM));
        assert_eq!(choose(forbidden).backend(), Backend::Sync);
    }
}
