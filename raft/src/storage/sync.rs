//! The fallback backend: pwrite + fdatasync on plain file descriptors, and the directory and
//! file handling that the io_uring backend shares.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{Backend, Disk, DiskFile};
use crate::limits::SECTOR_BYTES;

/// pwrite + fdatasync. Used where io_uring cannot be set up (see `storage::open_default`).
#[derive(Debug, Default)]
pub struct SyncDisk {
    _private: (),
}

impl SyncDisk {
    /// The fallback disk.
    pub fn new() -> SyncDisk {
        SyncDisk { _private: () }
    }
}

/// Set once the first time a filesystem refuses O_DIRECT, so the fact is logged only once.
static DIRECT_REFUSED_LOGGED: AtomicBool = AtomicBool::new(false);

/// A file opened twice: once through the page cache (reads, small writes) and, where the
/// filesystem supports it, once with O_DIRECT for the WAL's aligned group writes, so a large
/// group goes to the disk without first being copied into and flushed out of the page cache.
#[derive(Debug)]
pub struct RealFile {
    pub(crate) buffered: File,
    pub(crate) direct: Option<File>,
}

impl RealFile {
    pub(crate) fn open(path: &Path, create: bool) -> io::Result<RealFile> {
        let buffered = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .open(path)?;
        let direct = match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
        {
            Ok(file) => Some(file),
            Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
                if !DIRECT_REFUSED_LOGGED.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        path = %path.display(),
                        "filesystem refuses O_DIRECT; WAL writes go through the page cache"
                    );
                }
                None
            }
            Err(error) => return Err(error),
        };
        Ok(RealFile { buffered, direct })
    }

    /// The descriptor for aligned group writes.
    pub(crate) fn group_fd(&self) -> i32 {
        match &self.direct {
            Some(file) => file.as_raw_fd(),
            None => self.buffered.as_raw_fd(),
        }
    }

    pub(crate) fn check_aligned(buf: &[u8], offset: u64) {
        assert_eq!(
            offset % SECTOR_BYTES as u64,
            0,
            "unaligned group offset {offset}"
        );
        assert_eq!(
            buf.len() % SECTOR_BYTES,
            0,
            "unaligned group length {}",
            buf.len()
        );
        assert_eq!(
            buf.as_ptr() as usize % SECTOR_BYTES,
            0,
            "unaligned group buffer"
        );
    }

    fn fdatasync(fd: i32) -> io::Result<()> {
        // SAFETY: fdatasync takes a descriptor we own for the duration of the call.
        let rc = unsafe { libc::fdatasync(fd) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

impl DiskFile for RealFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.buffered.metadata()?.len())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        loop {
            match self.buffered.read_at(buf, offset) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    fn read_direct_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let Some(direct) = &self.direct else {
            return self.read_at(buf, offset);
        };
        Self::check_aligned(buf, offset);
        loop {
            match direct.read_at(buf, offset) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        // write_all_at completes short writes and retries EINTR.
        self.buffered.write_all_at(buf, offset)
    }

    fn write_direct_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let Some(direct) = &self.direct else {
            return self.write_at(buf, offset);
        };
        Self::check_aligned(buf, offset);
        // Short O_DIRECT writes come in whole sectors, so the rest stays aligned.
        direct.write_all_at(buf, offset)
    }

    fn write_sync_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        Self::check_aligned(buf, offset);
        let fd = self.group_fd();
        let mut done = 0usize;
        while done < buf.len() {
            let rest = &buf[done..];
            // SAFETY: `rest` is valid for reads of `rest.len()` bytes during the call.
            let n = unsafe {
                libc::pwrite(
                    fd,
                    rest.as_ptr().cast(),
                    rest.len(),
                    (offset + done as u64) as libc::off_t,
                )
            };
            if n < 0 {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(error);
            }
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "pwrite wrote nothing",
                ));
            }
            // A short write is completed by the next turn of the loop, never acknowledged.
            done += n as usize;
        }
        Self::fdatasync(fd)
    }

    fn sync(&self) -> io::Result<()> {
        self.buffered.sync_all()
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        let fd = self.buffered.as_raw_fd();
        // SAFETY: fallocate on a descriptor we own; mode 0 allocates and extends the size.
        let rc = unsafe { libc::fallocate(fd, 0, 0, len as libc::off_t) };
        if rc == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EOPNOTSUPP) {
            // Without fallocate the segment is sparse: still reads as zeros, only allocation
            // happens later, on the group writes.
            if self.len()? < len {
                self.buffered.set_len(len)?;
            }
            return Ok(());
        }
        Err(error)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.buffered.set_len(len)
    }
}

pub(crate) fn list(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Disk for SyncDisk {
    fn backend(&self) -> Backend {
        Backend::Sync
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        list(dir)
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn DiskFile>> {
        Ok(Arc::new(RealFile::open(path, create)?))
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        sync_dir(dir)
    }
    fn reclaim(&self, path: &Path) -> io::Result<()> {
        super::reclaim::reclaim(path)
    }
}
