//! The production backend: each group commit is one io_uring write linked to one fdatasync.
//!
//! The ring is shared by the files of one [`UringDisk`] behind a mutex. Group writes come from
//! the WAL's commit path only, one at a time (the commit thread, or the staging thread while
//! the commit thread is idle), so the mutex is never contended; it makes the sharing sound.
//! Everything except the group write (reads, small files, directories) uses the plain calls of
//! the fallback backend: those are rare and gain nothing from the ring.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use io_uring::{opcode, squeue, types, IoUring};

use super::sync::{self as fallback, RealFile};
use super::{Backend, Disk, DiskFile};
use crate::limits::URING_QUEUE_DEPTH;

const USER_DATA_WRITE: u64 = 1;
const USER_DATA_SYNC: u64 = 2;

/// io_uring disk. [`UringDisk::new`] fails where the kernel or a seccomp profile forbids
/// io_uring; `storage::open_default` then falls back to the pwrite backend.
pub struct UringDisk {
    ring: Arc<Mutex<IoUring>>,
}

impl fmt::Debug for UringDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UringDisk")
    }
}

impl UringDisk {
    /// Set up the ring, and prove it works with a no-op round trip: some sandboxes let
    /// io_uring_setup succeed and then fail every submission.
    pub fn new() -> io::Result<UringDisk> {
        let mut ring = IoUring::new(URING_QUEUE_DEPTH)?;
        let nop = opcode::Nop::new().build().user_data(0);
        // SAFETY: a Nop entry references no memory.
        unsafe {
            ring.submission()
                .push(&nop)
                .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        }
        ring.submit_and_wait(1)?;
        let completion = ring
            .completion()
            .next()
            .ok_or_else(|| io::Error::other("io_uring nop did not complete"))?;
        if completion.result() < 0 {
            return Err(io::Error::from_raw_os_error(-completion.result()));
        }
        Ok(UringDisk {
            ring: Arc::new(Mutex::new(ring)),
        })
    }
}

/// A file whose group writes go through the ring.
pub struct UringFile {
    file: RealFile,
    ring: Arc<Mutex<IoUring>>,
}

impl fmt::Debug for UringFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UringFile")
            .field("file", &self.file)
            .finish()
    }
}

impl UringFile {
    /// Submit `write(buf) -> fdatasync` as a linked pair and wait for both completions.
    /// Returns the bytes written; the sync counts only if the write was complete.
    fn write_linked_sync(
        ring: &mut IoUring,
        fd: i32,
        buf: &[u8],
        offset: u64,
    ) -> io::Result<usize> {
        let length = u32::try_from(buf.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "group over 4 GiB"))?;
        let write = opcode::Write::new(types::Fd(fd), buf.as_ptr(), length)
            .offset(offset)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(USER_DATA_WRITE);
        let sync = opcode::Fsync::new(types::Fd(fd))
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .user_data(USER_DATA_SYNC);
        // SAFETY: `buf` outlives the submission: we wait below for both completions before
        // returning, and the ring is not shared with anything that could outlive this call.
        unsafe {
            let mut queue = ring.submission();
            queue
                .push(&write)
                .map_err(|_| io::Error::other("io_uring submission queue full"))?;
            queue
                .push(&sync)
                .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        }
        let mut written: Option<i32> = None;
        let mut synced: Option<i32> = None;
        while written.is_none() || synced.is_none() {
            match ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
            for completion in ring.completion() {
                match completion.user_data() {
                    USER_DATA_WRITE => written = Some(completion.result()),
                    USER_DATA_SYNC => synced = Some(completion.result()),
                    other => panic!("unexpected io_uring completion {other}"),
                }
            }
        }
        let (Some(written), Some(synced)) = (written, synced) else {
            unreachable!("loop exits only with both completions")
        };
        if written < 0 {
            return Err(io::Error::from_raw_os_error(-written));
        }
        let written = written as usize;
        if written < buf.len() {
            // A short write breaks the link: the sync was cancelled and the caller completes
            // the rest, then syncs again.
            return Ok(written);
        }
        if synced < 0 {
            return Err(io::Error::from_raw_os_error(-synced));
        }
        Ok(written)
    }
}

impl DiskFile for UringFile {
    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }
    fn read_direct_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_direct_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_at(buf, offset)
    }
    fn write_direct_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_direct_at(buf, offset)
    }

    fn write_sync_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        RealFile::check_aligned(buf, offset);
        let fd = self.file.group_fd();
        let mut ring = self
            .ring
            .lock()
            .map_err(|_| io::Error::other("io_uring ring lock poisoned by a panic"))?;
        let mut done = 0usize;
        while done < buf.len() {
            let written =
                Self::write_linked_sync(&mut ring, fd, &buf[done..], offset + done as u64)?;
            if written == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "io_uring wrote nothing",
                ));
            }
            // Short writes of O_DIRECT come in whole sectors, so the remainder stays aligned;
            // a buffered short write has no alignment requirement.
            done += written;
        }
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync()
    }
    fn allocate(&self, len: u64) -> io::Result<()> {
        self.file.allocate(len)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

impl Disk for UringDisk {
    fn backend(&self) -> Backend {
        Backend::Uring
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        fallback::list(dir)
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn DiskFile>> {
        Ok(Arc::new(UringFile {
            file: RealFile::open(path, create)?,
            ring: Arc::clone(&self.ring),
        }))
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        fallback::sync_dir(dir)
    }
    fn reclaim(&self, path: &Path) -> io::Result<()> {
        super::reclaim::reclaim(path)
    }
}
