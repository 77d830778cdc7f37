//! A simulated disk for tests: it keeps what was *written* apart from what is *durable*, and
//! can fail or crash at the N-th operation.
//!
//! Model (the weakest disk we promise to survive, see docs/wal.md):
//! - A file's bytes become durable only at `sync` / `write_sync_at` of that file.
//! - A name (create, remove, rename) becomes durable only at `sync_dir` of its directory.
//! - A crash keeps the durable image; of the bytes written but not yet synced, each sector
//!   independently may or may not have reached the disk (torn writes, in any order).
//!
//! Every mutating call and every sync is one numbered operation (a group write is two: the
//! write, then the sync), so a test can crash or fail the system at each of them in turn.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Backend, Disk, DiskFile};
use crate::limits::SECTOR_BYTES;

#[derive(Debug, Default, Clone)]
struct Inode {
    written: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    inodes: Vec<Inode>,
    names: BTreeMap<PathBuf, usize>,
    names_durable: BTreeMap<PathBuf, usize>,
    operations: u64,
    fail_at: Option<u64>,
    fail_next_sync: bool,
    crash_at: Option<u64>,
    crashed: bool,
    dir_sync_disabled: bool,
    syncs_lie: bool,
    /// The storage above runs on its caller's thread (`Disk::single_threaded`); kept across
    /// crash images.
    single_threaded: bool,
    /// Name changes (create, rename, remove, directory sync) by operation number, kept
    /// across crash images: what a test prints to explain a state it did not expect.
    journal: Vec<String>,
}

/// Kinds of numbered operation; only syncs can be singled out for failure.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Operation {
    Mutate,
    Sync,
}

/// The simulated disk. Cloning gives another handle to the same disk.
#[derive(Debug, Clone, Default)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock can only come from a test assertion; the state is
        // still consistent enough to inspect.
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Number of operations performed (or attempted) so far.
    pub fn operations(&self) -> u64 {
        self.lock().operations
    }

    /// Operation number `n` (1-based, counted from the disk's creation) fails with EIO and
    /// has no effect; later operations succeed.
    pub fn fail_at(&self, n: u64) {
        self.lock().fail_at = Some(n);
    }

    /// The next sync (file sync or the sync half of a group write) fails with EIO. The
    /// written bytes stay written but do not become durable.
    pub fn fail_next_sync(&self) {
        self.lock().fail_next_sync = true;
    }

    /// The machine loses power at operation number `n`: that operation and every later one
    /// fail, and [`SimDisk::crash_image`] gives what a reboot would find.
    pub fn crash_at(&self, n: u64) {
        self.lock().crash_at = Some(n);
    }

    /// Whether a scheduled crash has happened.
    pub fn crashed(&self) -> bool {
        self.lock().crashed
    }

    /// Make `sync_dir` do nothing, as if the code forgot to call it: a test uses this to show
    /// that the directory fsync is what keeps a new segment after a crash.
    pub fn disable_dir_sync(&self) {
        self.lock().dir_sync_disabled = true;
    }

    /// Every sync (of a file, of a directory, the sync half of a group write) reports success
    /// and makes nothing durable, as a disk that lies about its cache or a build that
    /// acknowledges before its fsync: the simulator uses it to show its checks catch a WAL
    /// that acknowledges what a crash then loses.
    pub fn lie_about_syncs(&self) {
        self.lock().syncs_lie = true;
    }

    /// Ask the storage above to run on its caller's thread, with no threads of its own (see
    /// `Disk::single_threaded`): what makes a simulated run repeat exactly from its seed.
    pub fn without_threads(self) -> SimDisk {
        self.lock().single_threaded = true;
        self
    }

    /// The name changes made on this disk and the disks it is a crash image of, oldest first.
    pub fn journal(&self) -> Vec<String> {
        self.lock().journal.clone()
    }

    /// What a reboot finds now: durable names and durable bytes, plus, if `torn_seed` is
    /// given, a seeded random subset of the sectors written since the last sync of each file.
    pub fn crash_image(&self, torn_seed: Option<u64>) -> SimDisk {
        let state = self.lock();
        let mut random = torn_seed.map(|seed| seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut next_bit = move || match random.as_mut() {
            None => false,
            Some(x) => {
                // xorshift64: deterministic per seed, no dependency needed in the library.
                *x ^= *x << 13;
                *x ^= *x >> 7;
                *x ^= *x << 17;
                *x & 1 == 1
            }
        };
        let mut image = State::default();
        for (name, &inode) in &state.names_durable {
            let source = &state.inodes[inode];
            let mut bytes = source.durable.clone();
            let common = bytes.len().min(source.written.len());
            let mut start = 0;
            while start < common {
                let end = (start + SECTOR_BYTES).min(common);
                if bytes[start..end] != source.written[start..end] && next_bit() {
                    bytes[start..end].copy_from_slice(&source.written[start..end]);
                }
                start = end;
            }
            image.inodes.push(Inode {
                written: bytes.clone(),
                durable: bytes,
            });
            image.names.insert(name.clone(), image.inodes.len() - 1);
        }
        image.names_durable = image.names.clone();
        image.journal = state.journal.clone();
        image.single_threaded = state.single_threaded;
        image.journal.push(format!(
            "crash after operation {}: reboot finds {:?}",
            state.operations,
            image.names.keys().collect::<Vec<_>>()
        ));
        SimDisk {
            state: Arc::new(Mutex::new(image)),
        }
    }

    /// Count one operation and decide whether it may proceed.
    fn begin(state: &mut State, operation: Operation) -> io::Result<()> {
        if state.crashed {
            return Err(io::Error::other("simulated disk: crashed"));
        }
        state.operations += 1;
        if state.crash_at == Some(state.operations) {
            state.crashed = true;
            return Err(io::Error::other("simulated disk: crashed"));
        }
        if state.fail_at == Some(state.operations) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        if operation == Operation::Sync && state.fail_next_sync {
            state.fail_next_sync = false;
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }

    fn not_found(path: &Path) -> io::Error {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("simulated disk: no {}", path.display()),
        )
    }
}

/// An open file of the simulated disk. Like a Unix descriptor it refers to the inode, so it
/// keeps working after its name is removed.
#[derive(Debug)]
pub struct SimFile {
    disk: SimDisk,
    inode: usize,
}

fn write_into(bytes: &mut Vec<u8>, buf: &[u8], offset: u64) {
    let offset = offset as usize;
    let end = offset + buf.len();
    if bytes.len() < end {
        bytes.resize(end, 0);
    }
    bytes[offset..end].copy_from_slice(buf);
}

impl DiskFile for SimFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.disk.lock().inodes[self.inode].written.len() as u64)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let state = self.disk.lock();
        if state.crashed {
            return Err(io::Error::other("simulated disk: crashed"));
        }
        let bytes = &state.inodes[self.inode].written;
        let offset = offset as usize;
        if offset >= bytes.len() {
            return Ok(0);
        }
        let n = buf.len().min(bytes.len() - offset);
        buf[..n].copy_from_slice(&bytes[offset..offset + n]);
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut state = self.disk.lock();
        SimDisk::begin(&mut state, Operation::Mutate)?;
        write_into(&mut state.inodes[self.inode].written, buf, offset);
        Ok(())
    }

    fn write_sync_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        super::sync::RealFile::check_aligned(buf, offset);
        let mut state = self.disk.lock();
        SimDisk::begin(&mut state, Operation::Mutate)?;
        write_into(&mut state.inodes[self.inode].written, buf, offset);
        SimDisk::begin(&mut state, Operation::Sync)?;
        if state.syncs_lie {
            return Ok(());
        }
        let inode = &mut state.inodes[self.inode];
        inode.durable = inode.written.clone();
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let mut state = self.disk.lock();
        SimDisk::begin(&mut state, Operation::Sync)?;
        if state.syncs_lie {
            return Ok(());
        }
        let inode = &mut state.inodes[self.inode];
        inode.durable = inode.written.clone();
        Ok(())
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        let mut state = self.disk.lock();
        SimDisk::begin(&mut state, Operation::Mutate)?;
        let bytes = &mut state.inodes[self.inode].written;
        if (bytes.len() as u64) < len {
            bytes.resize(len as usize, 0);
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.disk.lock();
        SimDisk::begin(&mut state, Operation::Mutate)?;
        state.inodes[self.inode].written.resize(len as usize, 0);
        Ok(())
    }
}

impl Disk for SimDisk {
    fn backend(&self) -> Backend {
        Backend::Sim
    }

    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        // Directories are implicit in the simulated namespace.
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.lock();
        if state.crashed {
            return Err(io::Error::other("simulated disk: crashed"));
        }
        Ok(state
            .names
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn DiskFile>> {
        let mut state = self.lock();
        if state.crashed {
            return Err(io::Error::other("simulated disk: crashed"));
        }
        let inode = match state.names.get(path) {
            Some(&inode) => inode,
            None if create => {
                SimDisk::begin(&mut state, Operation::Mutate)?;
                state.inodes.push(Inode::default());
                let inode = state.inodes.len() - 1;
                state.names.insert(path.to_path_buf(), inode);
                let entry = format!("{} create {}", state.operations, path.display());
                state.journal.push(entry);
                inode
            }
            None => return Err(SimDisk::not_found(path)),
        };
        Ok(Arc::new(SimFile {
            disk: self.clone(),
            inode,
        }))
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        Ok(self.lock().names.contains_key(path))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        SimDisk::begin(&mut state, Operation::Mutate)?;
        let entry = format!("{} remove {}", state.operations, path.display());
        state.journal.push(entry);
        match state.names.remove(path) {
            Some(_) => Ok(()),
            None => Err(SimDisk::not_found(path)),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        SimDisk::begin(&mut state, Operation::Mutate)?;
        let inode = state
            .names
            .remove(from)
            .ok_or_else(|| SimDisk::not_found(from))?;
        state.names.insert(to.to_path_buf(), inode);
        let entry = format!(
            "{} rename {} -> {}",
            state.operations,
            from.display(),
            to.display()
        );
        state.journal.push(entry);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        SimDisk::begin(&mut state, Operation::Sync)?;
        let entry = format!("{} sync_dir {}", state.operations, dir.display());
        state.journal.push(entry);
        if state.dir_sync_disabled || state.syncs_lie {
            return Ok(());
        }
        state
            .names_durable
            .retain(|path, _| path.parent() != Some(dir));
        let live: Vec<(PathBuf, usize)> = state
            .names
            .iter()
            .filter(|(path, _)| path.parent() == Some(dir))
            .map(|(path, &inode)| (path.clone(), inode))
            .collect();
        state.names_durable.extend(live);
        Ok(())
    }

    fn reclaim(&self, path: &Path) -> io::Result<()> {
        // Nothing to pace on a simulated disk; removed at once keeps runs deterministic.
        self.remove(path)
    }

    fn single_threaded(&self) -> bool {
        self.lock().single_threaded
    }
}
