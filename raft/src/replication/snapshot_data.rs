//! [`SnapshotBuffer`], openraft's `SnapshotData`: a snapshot image in memory that a peer can
//! only append to, in order, up to a bound.
//!
//! openraft's receiver (`Streaming::receive`) seeks to each chunk's offset and writes there.
//! On a `Cursor<Vec<u8>>` a chunk at a far offset grows the vector with zeros up to it, so one
//! small chunk from a peer (authenticated, but wrong) could make a replica commit gigabytes.
//! This buffer refuses, with an I/O error and without changing anything:
//! - a seek anywhere but to the current end or to 0 (the sender restarting its snapshot);
//! - a write that would take the image past its bound (`SNAPSHOT_RECEIVE_BYTES_MAX` for a
//!   received snapshot).
//!
//! So a received image grows only by the bytes actually sent, chunk after chunk. openraft turns
//! the I/O error into an error answer to that chunk (docs/protocol.md); its receiving state
//! keeps the bytes received so far, and the next chunk must still continue them.
//!
//! Reading goes from the start to the end (a snapshot built or loaded here is handed whole to
//! the network, which sends it from the bytes, never by seeking: `net/network.rs`).

use std::io::{self, SeekFrom};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

use super::limits::SNAPSHOT_RECEIVE_BYTES_MAX;

/// A snapshot image in memory, appended to in order up to a bound. See the module docs.
#[derive(Debug)]
pub struct SnapshotBuffer {
    image: Vec<u8>,
    /// Where the next read or write happens: 0, the end, or (while reading) in between.
    position: u64,
    /// The image may not grow past this many bytes.
    bytes_max: u64,
}

impl SnapshotBuffer {
    /// A complete image (built here, or read back from a snapshot file), to be read or sent.
    pub fn from_image(image: Vec<u8>) -> SnapshotBuffer {
        let bytes_max = image.len() as u64;
        SnapshotBuffer {
            image,
            position: 0,
            bytes_max,
        }
    }

    /// An empty image to receive a snapshot into, bounded by `SNAPSHOT_RECEIVE_BYTES_MAX`.
    pub fn receiving() -> SnapshotBuffer {
        SnapshotBuffer::receiving_at_most(SNAPSHOT_RECEIVE_BYTES_MAX)
    }

    /// An empty image to receive a snapshot into, bounded by `bytes_max` (a smaller bound than
    /// the node-wide one lets tests reach it).
    pub fn receiving_at_most(bytes_max: u64) -> SnapshotBuffer {
        SnapshotBuffer {
            image: Vec::new(),
            position: 0,
            bytes_max,
        }
    }

    /// The image's bytes.
    pub fn get_ref(&self) -> &[u8] {
        &self.image
    }

    /// The image's bytes, taken out.
    pub fn into_inner(self) -> Vec<u8> {
        self.image
    }

    fn len(&self) -> u64 {
        self.image.len() as u64
    }

    /// The position a seek would reach, if allowed: only 0 and the current end.
    fn seek_target(&self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::End(delta) => self.len().checked_add_signed(delta),
            SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
        };
        match target {
            Some(target) if target == 0 || target == self.len() => Ok(target),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "snapshot data refused a seek to {to:?}: chunks must continue the {} bytes \
                     received so far (or restart at 0)",
                    self.len()
                ),
            )),
        }
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.position != 0 && self.position != self.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "snapshot data refused a write at {} inside its {} bytes",
                    self.position,
                    self.len()
                ),
            ));
        }
        let end = self.position.saturating_add(bytes.len() as u64);
        if end > self.bytes_max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "snapshot data refused a write up to byte {end}: past its bound of {} bytes",
                    self.bytes_max
                ),
            ));
        }
        // A write at 0 into a non-empty image is the sender starting over: what came before is
        // dropped only now that the new chunk is accepted.
        self.image.truncate(self.position as usize);
        self.image.extend_from_slice(bytes);
        self.position = end;
        Ok(bytes.len())
    }
}

impl AsyncRead for SnapshotBuffer {
    fn poll_read(
        self: Pin<&mut Self>,
        _context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let start = (this.position as usize).min(this.image.len());
        let count = buf.remaining().min(this.image.len() - start);
        buf.put_slice(&this.image[start..start + count]);
        this.position += count as u64;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for SnapshotBuffer {
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
        Poll::Ready(Ok(()))
    }
}

impl AsyncSeek for SnapshotBuffer {
    fn start_seek(self: Pin<&mut Self>, to: SeekFrom) -> io::Result<()> {
        let this = self.get_mut();
        this.position = this.seek_target(to)?;
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _context: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Poll::Ready(Ok(self.position))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    /// Proves a received image grows only chunk after chunk: a seek past the end or inside it
    /// and a write past the bound are refused and leave the image as it was; a restart at 0
    /// replaces the image only once its first chunk is written; reading gives the image back.
    #[tokio::test]
    async fn chunks_only_continue_the_image_within_the_bound() {
        let mut buffer = SnapshotBuffer::receiving_at_most(10);
        buffer.write_all(b"abcd").await.unwrap();
        assert!(buffer.seek(SeekFrom::Start(64 << 30)).await.is_err());
        assert!(buffer.seek(SeekFrom::Start(2)).await.is_err());
        assert!(buffer.seek(SeekFrom::End(1)).await.is_err());
        assert_eq!(buffer.seek(SeekFrom::Start(4)).await.unwrap(), 4);
        assert!(buffer.write_all(b"efghijk").await.is_err());
        assert_eq!(buffer.get_ref(), b"abcd");
        buffer.write_all(b"efghij").await.unwrap();
        assert_eq!(buffer.get_ref(), b"abcdefghij");
        assert!(buffer.write_all(b"k").await.is_err());

        assert_eq!(buffer.seek(SeekFrom::Start(0)).await.unwrap(), 0);
        assert_eq!(buffer.get_ref(), b"abcdefghij");
        buffer.write_all(b"xy").await.unwrap();
        assert_eq!(buffer.get_ref(), b"xy");

        let mut image = SnapshotBuffer::from_image(b"snapshot".to_vec());
        let mut read = Vec::new();
        image.read_to_end(&mut read).await.unwrap();
        assert_eq!(read, b"snapshot");
        assert!(image.write_all(b"!").await.is_err());
    }
}
