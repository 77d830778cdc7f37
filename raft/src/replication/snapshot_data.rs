//! [`SnapshotData`], openraft's `SnapshotData`: a snapshot image in a file, never in memory.
//!
//! Two kinds, one type (openraft has one `SnapshotData` for both directions):
//! - **stored**: a snapshot file of this node (built here, or the current one read back to
//!   send it), read only. The network sends it in chunks read at their offsets
//!   ([`SnapshotData::chunks`]), from a blocking thread; nothing seeks it.
//! - **receiving**: a snapshot a peer is sending, written to a partial file in the snapshots
//!   directory as its chunks arrive (`SnapshotWriter`), checked and restored from that file
//!   by `install_snapshot`, which then makes the same file the node's snapshot by a rename.
//!
//! openraft's receiver (`Streaming::receive`) seeks to each chunk's offset and writes there.
//! A chunk at a far offset must not make a replica write gigabytes, so a receiving image
//! refuses, with an I/O error and without changing anything:
//! - a seek anywhere but to the current end or to 0 (the sender restarting its snapshot);
//! - a write that would take the image past its bound (`SNAPSHOT_RECEIVE_BYTES_MAX` for a
//!   received snapshot).
//!
//! So a received image grows only by the bytes actually sent, chunk after chunk. openraft turns
//! the I/O error into an error answer to that chunk (docs/protocol.md); its receiving state
//! keeps the bytes received so far, and the next chunk must still continue them.
//!
//! Writes and reads here are blocking file I/O of at most one chunk (`SNAPSHOT_CHUNK_BYTES_MAX`)
//! into the page cache, done in the poll: a chunk's worth, as the in-memory buffer before it
//! copied a chunk's worth.

use std::io::{self, Read, SeekFrom, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};
use tokio::sync::watch;

use crate::snapshot_file::{ChunkSource, PayloadReader, SnapshotFile, SnapshotWriter};

/// A snapshot image in a file, stored or being received. See the module docs.
#[derive(Debug)]
pub struct SnapshotData {
    kind: Kind,
    /// Where the next read or write happens: 0, the end, or (while reading) in between.
    position: u64,
    /// Counts received images that are complete and neither durable nor dropped: see
    /// [`SnapshotData::announcing_install`].
    install_pending: Option<Arc<watch::Sender<u32>>>,
    /// This image's place in that count, from its last chunk on.
    hold: Option<InstallHold>,
}

/// A received image complete (openraft shut its writer down after the last chunk) and not yet
/// a durable snapshot, nor dropped: while any is held, log purges wait (`LogStore::purge`).
/// The install releases it once the snapshot is durable and current, or has failed; openraft
/// drops an image it decides not to install (not newer than what is committed), releasing it.
#[derive(Debug)]
pub struct InstallHold(Arc<watch::Sender<u32>>);

impl InstallHold {
    fn raise(pending: &Arc<watch::Sender<u32>>) -> InstallHold {
        pending.send_modify(|held| *held += 1);
        InstallHold(Arc::clone(pending))
    }
}

impl Drop for InstallHold {
    fn drop(&mut self) {
        self.0.send_modify(|held| *held = held.saturating_sub(1));
    }
}

#[derive(Debug)]
enum Kind {
    Stored(SnapshotFile),
    Receiving {
        writer: SnapshotWriter,
        /// The image may not grow past this many bytes.
        bytes_max: u64,
    },
}

fn refused(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, why)
}

impl SnapshotData {
    /// A snapshot file of this node, to be read or sent.
    pub fn stored(file: SnapshotFile) -> SnapshotData {
        SnapshotData {
            kind: Kind::Stored(file),
            position: 0,
            install_pending: None,
            hold: None,
        }
    }

    /// An empty image to receive a snapshot into `writer`'s partial file, bounded by
    /// `bytes_max`.
    pub fn receiving(writer: SnapshotWriter, bytes_max: u64) -> SnapshotData {
        SnapshotData {
            kind: Kind::Receiving { writer, bytes_max },
            position: 0,
            install_pending: None,
            hold: None,
        }
    }

    /// Count this image in `install_pending` from its last chunk until it is a durable
    /// snapshot or dropped ([`InstallHold`]): openraft 0.9 orders the log purge for an
    /// installed snapshot right after handing the install to the state machine, without
    /// waiting for it, and the log store holds purges while any image is counted.
    pub fn announcing_install(mut self, install_pending: Arc<watch::Sender<u32>>) -> SnapshotData {
        self.install_pending = Some(install_pending);
        self
    }

    /// This image's hold on purges, for the install to release once the snapshot is durable.
    pub fn take_hold(&mut self) -> Option<InstallHold> {
        self.hold.take()
    }

    /// Bytes of the image (received so far, for a receiving one).
    pub fn len(&self) -> u64 {
        match &self.kind {
            Kind::Stored(file) => file.payload_bytes(),
            Kind::Receiving { writer, .. } => writer.len(),
        }
    }

    /// True for an image of no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Chunks of the image at any offset, from any thread.
    pub fn chunks(&mut self) -> io::Result<ChunkSource> {
        match &mut self.kind {
            Kind::Stored(file) => Ok(file.chunks()),
            Kind::Receiving { writer, .. } => writer.chunks(),
        }
    }

    /// The image as a stream from its first byte (a stored file's CRC checked at its end).
    pub fn reader(&mut self) -> io::Result<PayloadReader> {
        match &mut self.kind {
            Kind::Stored(file) => Ok(file.reader()),
            Kind::Receiving { writer, .. } => writer.reader(),
        }
    }

    /// True for a stored snapshot file (one of this node's, or handed over from another).
    pub fn is_stored(&self) -> bool {
        matches!(self.kind, Kind::Stored(_))
    }

    /// The partial file of a received image, to be made a snapshot file; `None` for a stored
    /// one (already a file of this node).
    pub fn into_received(self) -> Option<SnapshotWriter> {
        match self.kind {
            Kind::Stored(_) => None,
            Kind::Receiving { writer, .. } => Some(writer),
        }
    }

    /// The position a seek would reach, if allowed: only 0 and the current end (anywhere
    /// within a stored image, which is only read).
    fn seek_target(&self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::End(delta) => self.len().checked_add_signed(delta),
            SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
        };
        let allowed = |target: u64| match self.kind {
            Kind::Stored(_) => target <= self.len(),
            Kind::Receiving { .. } => target == 0 || target == self.len(),
        };
        match target {
            Some(target) if allowed(target) => Ok(target),
            _ => Err(refused(format!(
                "snapshot data refused a seek to {to:?}: chunks must continue the {} bytes \
                 received so far (or restart at 0)",
                self.len()
            ))),
        }
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let (position, len) = (self.position, self.len());
        let Kind::Receiving { writer, bytes_max } = &mut self.kind else {
            return Err(refused("a stored snapshot is read only".to_owned()));
        };
        if position != 0 && position != len {
            return Err(refused(format!(
                "snapshot data refused a write at {position} inside its {len} bytes"
            )));
        }
        let end = position.saturating_add(bytes.len() as u64);
        if end > *bytes_max {
            return Err(refused(format!(
                "snapshot data refused a write up to byte {end}: past its bound of {bytes_max} bytes"
            )));
        }
        // A write at 0 into a non-empty image is the sender starting over: what came before is
        // dropped only now that the new chunk is accepted.
        if position == 0 {
            writer.rewind();
        }
        writer.write_all(bytes)?;
        self.position = end;
        Ok(bytes.len())
    }

    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let position = self.position;
        let chunk = self.chunks()?.read(position, out.len())?;
        out[..chunk.len()].copy_from_slice(&chunk);
        self.position += chunk.len() as u64;
        Ok(chunk.len())
    }
}

impl AsyncRead for SnapshotData {
    fn poll_read(
        self: Pin<&mut Self>,
        _context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let read = this.read(buf.initialize_unfilled());
        Poll::Ready(read.map(|count| buf.advance(count)))
    }
}

impl AsyncWrite for SnapshotData {
    fn poll_write(
        self: Pin<&mut Self>,
        _context: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.get_mut().write(bytes))
    }

    fn poll_flush(self: Pin<&mut Self>, _context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _context: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let (Kind::Receiving { .. }, Some(pending), None) =
            (&this.kind, &this.install_pending, &this.hold)
        {
            this.hold = Some(InstallHold::raise(pending));
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncSeek for SnapshotData {
    fn start_seek(self: Pin<&mut Self>, to: SeekFrom) -> io::Result<()> {
        let this = self.get_mut();
        this.position = this.seek_target(to)?;
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _context: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Poll::Ready(Ok(self.position))
    }
}

/// Read a whole image into memory (tests and tools; nodes stream).
pub fn read_image(data: &mut SnapshotData) -> io::Result<Vec<u8>> {
    let mut image = Vec::new();
    data.reader()?.read_to_end(&mut image)?;
    Ok(image)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::snapshot_file::SnapshotFiles;
    use crate::wal::LogId;
    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    /// Proves a received image grows only chunk after chunk: a seek past the end or inside it
    /// and a write past the bound are refused and leave the image as it was; a restart at 0
    /// replaces the image only once its first chunk is written; a stored image reads back
    /// and refuses writes.
    #[tokio::test]
    async fn chunks_only_continue_the_image_within_the_bound() {
        let disk = crate::storage::open_default();
        let dir = tempfile::tempdir().expect("temporary directory");
        let files = SnapshotFiles::new(Arc::clone(&disk), dir.path()).expect("files");
        let mut buffer = SnapshotData::receiving(files.create().expect("writer"), 10);
        buffer.write_all(b"abcd").await.unwrap();
        assert!(buffer.seek(SeekFrom::Start(64 << 30)).await.is_err());
        assert!(buffer.seek(SeekFrom::Start(2)).await.is_err());
        assert!(buffer.seek(SeekFrom::End(1)).await.is_err());
        assert_eq!(buffer.seek(SeekFrom::Start(4)).await.unwrap(), 4);
        assert!(buffer.write_all(b"efghijk").await.is_err());
        assert_eq!(read_image(&mut buffer).unwrap(), b"abcd");
        buffer.write_all(b"efghij").await.unwrap();
        assert_eq!(read_image(&mut buffer).unwrap(), b"abcdefghij");
        assert!(buffer.write_all(b"k").await.is_err());

        assert_eq!(buffer.seek(SeekFrom::Start(0)).await.unwrap(), 0);
        assert_eq!(read_image(&mut buffer).unwrap(), b"abcdefghij");
        buffer.write_all(b"xy").await.unwrap();
        assert_eq!(read_image(&mut buffer).unwrap(), b"xy");

        let last = LogId { index: 3, term: 1 };
        buffer
            .into_received()
            .expect("received")
            .finish(last)
            .expect("kept");
        let mut image = SnapshotData::stored(files.open(last).unwrap().expect("valid"));
        let mut read = Vec::new();
        image.read_to_end(&mut read).await.unwrap();
        assert_eq!(read, b"xy");
        assert!(image.write_all(b"!").await.is_err());
    }
}
