//! Reading a snapshot's sections: the bytes read, each section's BLAKE3 and the trailer
//! checked, each section's archive validated and decoded ([`SnapshotSections`]), apart from
//! filing the records into the arenas and indexes (`Engine::restore_sections`), so that a
//! caller can run the two on two threads: on the 10M-transfer restore the halves are of a
//! size, and the restore then takes about the longer of them instead of their sum.

use std::io::{self, Read};

use rkyv::util::AlignedVec;

use crate::snapshot::{Record, SnapshotError, SECTION_HASH_BYTES, SECTION_RECORDS};
use crate::snapshot_sections::TrailerHasher;
use crate::state::{AccountState, Expiry, StoredTrade, StoredTransfer};

/// Bytes of a snapshot's trailer.
pub(crate) const TRAILER_BYTES: usize = 32;

/// Bytes an archived section of `records` records may take: the records, the vector's root
/// and alignment padding (a section claiming more is damaged, and is refused before any
/// buffer grows to it).
fn section_bytes_max<T>(records: usize) -> u64 {
    (records * std::mem::size_of::<T>() + 256) as u64
}

/// A reader that hashes (BLAKE3) what it hands out, while `hasher` is set (version 2's
/// trailer is the hash of every byte before it).
pub(crate) struct Hashed<R> {
    pub(crate) inner: R,
    pub(crate) hasher: Option<blake3::Hasher>,
}

impl<R: Read> Read for Hashed<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buffer)?;
        if let Some(hasher) = self.hasher.as_mut() {
            hasher.update(&buffer[..read]);
        }
        Ok(read)
    }
}

/// One decoded section, in the order the snapshot holds them.
pub(crate) enum Records {
    Accounts(Vec<AccountState>),
    Transfers(Vec<StoredTransfer>),
    Trades(Vec<StoredTrade>),
    Expiries(Vec<Expiry>),
    Failed(Vec<u128>),
}

/// A record kind as a section of [`Records`].
trait Kind: Record + Send {
    fn wrap(records: Vec<Self>) -> Records;
    /// The vector of a filed section of this kind, for reuse.
    fn unwrap(records: Records) -> Option<Vec<Self>>;
}

macro_rules! kind {
    ($type:ty, $variant:ident) => {
        impl Kind for $type {
            fn wrap(records: Vec<Self>) -> Records {
                Records::$variant(records)
            }
            fn unwrap(records: Records) -> Option<Vec<Self>> {
                match records {
                    Records::$variant(records) => Some(records),
                    _ => None,
                }
            }
        }
    };
}
kind!(AccountState, Accounts);
kind!(StoredTransfer, Transfers);
kind!(StoredTrade, Trades);
kind!(Expiry, Expiries);
kind!(u128, Failed);

/// A snapshot's sections, read, checked and decoded one at a time, in order: an iterator of
/// [`SnapshotSection`]s that ends by checking the trailer and that nothing follows it (an error
/// there is its last item). `Engine::restore_sections` files what it yields. Drive it on the
/// restoring thread (`Engine::restore_from`), or on a thread of the caller's and hand the
/// sections over a channel, so reading and checking overlap the filing (the engine keeps no
/// thread of its own, as it keeps no file or clock).
pub struct SnapshotSections<R> {
    input: Hashed<R>,
    /// Records of each kind still to read: accounts, transfers, trades, expiries, failed ids.
    left: [u64; 5],
    kind: usize,
    buffer: AlignedVec<16>,
    /// Versions 3 and 4: each section's hash, then the trailer over them; version 2: `input`
    /// hashes the whole stream.
    sections_hash: Option<TrailerHasher>,
    done: bool,
    /// Sections filed already, whose vectors are filled again (`SnapshotSections::reuse`).
    spares: Option<crossbeam_channel::Receiver<SnapshotSection>>,
}

/// One decoded section of a snapshot, as [`SnapshotSections`] yields it.
pub struct SnapshotSection(pub(crate) Records);

impl<R: Read> SnapshotSections<R> {
    pub(crate) fn new(
        input: Hashed<R>,
        counts: [u64; 5],
        sections_hash: Option<TrailerHasher>,
    ) -> SnapshotSections<R> {
        SnapshotSections {
            input,
            left: counts,
            kind: 0,
            buffer: AlignedVec::new(),
            sections_hash,
            done: false,
            spares: None,
        }
    }

    /// Fill the vectors of sections sent back on `spares` (by `Engine::restore_sections`'s
    /// `spent`) instead of new ones: on another thread than the filing, a fresh vector per
    /// section is a fresh 7 MB for the kernel to zero, on a machine whose cores are busy.
    pub fn reuse(&mut self, spares: crossbeam_channel::Receiver<SnapshotSection>) {
        self.spares = Some(spares);
    }

    /// The next section of kind `T` (`records` of them), read and checked.
    fn section<T: Kind>(&mut self, records: usize) -> Result<Records, SnapshotError> {
        let length = read_u64(&mut self.input)?;
        let bytes_max = section_bytes_max::<T>(records);
        if length > bytes_max {
            return Err(SnapshotError::LengthMismatch {
                header: length,
                actual: bytes_max as usize,
            });
        }
        // Sections of one kind are mostly the same length: the buffer is zeroed only when its
        // length changes (`read_exact` overwrites all of it).
        if self.buffer.len() != length as usize {
            self.buffer.clear();
            self.buffer.resize(length as usize, 0);
        }
        self.input.read_exact(&mut self.buffer)?;
        if let Some(trailer) = self.sections_hash.as_mut() {
            let mut hash = [0u8; SECTION_HASH_BYTES];
            self.input.read_exact(&mut hash)?;
            let mut hasher = blake3::Hasher::new();
            hasher.update(&length.to_le_bytes());
            hasher.update(&self.buffer);
            if hasher.finalize().as_bytes() != &hash {
                return Err(SnapshotError::ChecksumMismatch);
            }
            trailer.section(&hash);
        }
        let mut section = self
            .spares
            .as_ref()
            .and_then(|spares| spares.try_recv().ok())
            .and_then(|SnapshotSection(spare)| T::unwrap(spare))
            .unwrap_or_default();
        section.clear();
        T::unarchive(&self.buffer, records, |record| {
            section.push(record);
            Ok(())
        })?;
        Ok(T::wrap(section))
    }

    /// After the last section: the trailer, and nothing after it.
    fn finish(&mut self) -> Result<(), SnapshotError> {
        let expected = match (self.sections_hash.as_ref(), self.input.hasher.take()) {
            (Some(sections), _) => sections.finish(),
            (None, whole) => *whole.unwrap_or_default().finalize().as_bytes(),
        };
        let inner = &mut self.input.inner;
        let mut trailer = [0u8; TRAILER_BYTES];
        inner.read_exact(&mut trailer)?;
        if expected != trailer {
            return Err(SnapshotError::ChecksumMismatch);
        }
        if inner.read(&mut [0u8; 1])? != 0 {
            return Err(SnapshotError::TrailingBytes);
        }
        Ok(())
    }
}

impl<R: Read> Iterator for SnapshotSections<R> {
    type Item = Result<SnapshotSection, SnapshotError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        while self.kind < self.left.len() && self.left[self.kind] == 0 {
            self.kind += 1;
        }
        if self.kind == self.left.len() {
            self.done = true;
            return self.finish().err().map(Err);
        }
        let records = self.left[self.kind].min(SECTION_RECORDS as u64) as usize;
        let section = match self.kind {
            0 => self.section::<AccountState>(records),
            1 => self.section::<StoredTransfer>(records),
            2 => self.section::<StoredTrade>(records),
            3 => self.section::<Expiry>(records),
            _ => self.section::<u128>(records),
        };
        self.left[self.kind] -= records as u64;
        if section.is_err() {
            self.done = true;
        }
        Some(section.map(SnapshotSection))
    }
}

pub(crate) fn read_u64(input: &mut impl Read) -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    input.read_exact(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}
