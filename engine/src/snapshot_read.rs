//! Reading a snapshot's sections on a thread of their own (`Engine::restore_from`): the bytes
//! read, each section's BLAKE3 and the trailer checked, each section's archive validated and
//! decoded, while the restoring thread files the records of the section before into the
//! arenas and indexes. On the 10M-transfer restore the two halves are of a size, so the
//! restore takes about the longer of them instead of their sum.

use std::io::{self, Read};

use crossbeam_channel::{Receiver, Sender};
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
    /// The vector of a spent section of this kind, for reuse.
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

/// Read every section after the header of a snapshot with `counts` records of each kind
/// (accounts, transfers, trades, expiries, failed ids), then its trailer and its end, sending
/// each section's records to `out` in order; `spent` hands back vectors to fill again (a
/// fresh multi-megabyte vector per section would be fresh pages to zero). With
/// `sections_hash` (versions 3 and 4) each section's hash is checked and the trailer is their
/// hash; without, `input` hashes the whole stream (version 2). Stops early, with `Ok`, when
/// the receiver is gone (the restoring thread found an error of its own).
pub(crate) fn read_sections<R: Read>(
    mut input: Hashed<R>,
    counts: [u64; 5],
    mut sections_hash: Option<TrailerHasher>,
    out: &Sender<Records>,
    spent: &Receiver<Records>,
) -> Result<(), SnapshotError> {
    let mut buffer = AlignedVec::<16>::new();
    let trailer = sections_hash.as_mut();
    let mut reader = SectionReader {
        input: &mut input,
        buffer: &mut buffer,
        trailer,
        out,
        spent,
    };
    if !(reader.kind::<AccountState>(counts[0])?
        && reader.kind::<StoredTransfer>(counts[1])?
        && reader.kind::<StoredTrade>(counts[2])?
        && reader.kind::<Expiry>(counts[3])?
        && reader.kind::<u128>(counts[4])?)
    {
        return Ok(());
    }
    drop(buffer);
    let Hashed { mut inner, hasher } = input;
    let expected = match (sections_hash, hasher) {
        (Some(sections), _) => sections.finish(),
        (None, whole) => *whole.unwrap_or_default().finalize().as_bytes(),
    };
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

struct SectionReader<'a, R> {
    input: &'a mut Hashed<R>,
    buffer: &'a mut AlignedVec<16>,
    trailer: Option<&'a mut TrailerHasher>,
    out: &'a Sender<Records>,
    spent: &'a Receiver<Records>,
}

impl<R: Read> SectionReader<'_, R> {
    /// The sections of `count` records of kind `T`; `false` if the receiver is gone.
    fn kind<T: Kind>(&mut self, count: u64) -> Result<bool, SnapshotError> {
        let mut left = count;
        while left > 0 {
            let records = left.min(SECTION_RECORDS as u64) as usize;
            let length = read_u64(self.input)?;
            let bytes_max = section_bytes_max::<T>(records);
            if length > bytes_max {
                return Err(SnapshotError::LengthMismatch {
                    header: length,
                    actual: bytes_max as usize,
                });
            }
            // Sections of one kind are mostly the same length: the buffer is zeroed only
            // when its length changes (`read_exact` overwrites all of it).
            if self.buffer.len() != length as usize {
                self.buffer.clear();
                self.buffer.resize(length as usize, 0);
            }
            self.input.read_exact(self.buffer)?;
            if let Some(trailer) = self.trailer.as_mut() {
                let mut hash = [0u8; SECTION_HASH_BYTES];
                self.input.read_exact(&mut hash)?;
                let mut hasher = blake3::Hasher::new();
                hasher.update(&length.to_le_bytes());
                hasher.update(self.buffer);
                if hasher.finalize().as_bytes() != &hash {
                    return Err(SnapshotError::ChecksumMismatch);
                }
                trailer.section(&hash);
            }
            let mut section = self
                .spent
                .try_recv()
                .ok()
                .and_then(T::unwrap)
                .unwrap_or_default();
            section.clear();
            T::unarchive(self.buffer, records, |record| {
                section.push(record);
                Ok(())
            })?;
            if self.out.send(T::wrap(section)).is_err() {
                return Ok(false);
            }
            left -= records as u64;
        }
        Ok(true)
    }
}

pub(crate) fn read_u64(input: &mut impl Read) -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    input.read_exact(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}
