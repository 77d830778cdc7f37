//! Frames: how every message between Tally processes (replica to replica, client to node)
//! travels over TCP. A fixed 24-byte header, then the payload (docs/protocol.md):
//!
//! ```text
//! offset size field
//!      0    4 magic "TLYF"
//!      4    1 version (1)
//!      5    1 kind: which message the payload is (replica RPCs on the peer port; the client
//!               protocol on the client port)
//!      6    2 reserved, zero
//!      8    4 payload length, little-endian
//!     12    8 request id, little-endian: a response carries its request's id
//!     20    4 CRC32C of bytes 0..20 and of the payload
//! ```
//!
//! A frame is checked before anything in it is used: magic, version, reserved bytes, a length
//! under the receiver's limit (checked before allocating), then the checksum. Any failure ends
//! the connection (the stream can no longer be trusted to be at a frame boundary); the peer
//! reconnects. TCP's own checksum is 16 bits and misses real corruption; CRC32C does not.

use std::io;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes of a frame header.
pub const FRAME_HEADER_BYTES: usize = 24;
const MAGIC: [u8; 4] = *b"TLYF";
const VERSION: u8 = 1;
const CRC_OFFSET: usize = 20;

/// One message: its kind, the id that pairs a response with its request, and the payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub request_id: u64,
    pub payload: Bytes,
}

/// A frame that could not be read. All of these end the connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("not a Tally frame (bad magic {0:02x?})")]
    BadMagic([u8; 4]),
    #[error("unknown frame version {0}")]
    UnknownVersion(u8),
    #[error("reserved header bytes are not zero")]
    ReservedNotZero,
    /// The header declares more than the kind may carry; the payload was not read. `kind` and
    /// `request_id` are the header's, so the server can answer before it closes.
    #[error("frame payload of {length} bytes is over this connection's limit of {limit}")]
    TooLarge {
        kind: u8,
        request_id: u64,
        length: usize,
        limit: usize,
    },
    #[error("frame checksum mismatch (kind {kind}, request {request_id}): corrupted in transit")]
    Checksum { kind: u8, request_id: u64 },
}

fn crc(header: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&header[..CRC_OFFSET]), payload)
}

/// The header of a frame carrying `payload`.
pub fn encode_header(kind: u8, request_id: u64, payload: &[u8]) -> [u8; FRAME_HEADER_BYTES] {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    header[0..4].copy_from_slice(&MAGIC);
    header[4] = VERSION;
    header[5] = kind;
    let length = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    header[8..12].copy_from_slice(&length.to_le_bytes());
    header[12..20].copy_from_slice(&request_id.to_le_bytes());
    let crc = crc(&header, payload);
    header[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Append the whole frame (header and payload) to `out`.
pub fn encode_frame(frame: &Frame, out: &mut Vec<u8>) {
    out.extend_from_slice(&encode_header(frame.kind, frame.request_id, &frame.payload));
    out.extend_from_slice(&frame.payload);
}

/// Read one frame whose payload is at most `payload_bytes_max`. `Ok(None)` is a clean end of
/// the stream at a frame boundary; an end inside a frame is [`FrameError::Truncated`].
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    payload_bytes_max: usize,
) -> Result<Option<Frame>, FrameError> {
    read_frame_limited(reader, |_| payload_bytes_max).await
}

/// As [`read_frame`], with the payload limit chosen by the frame's kind (a server gives client
/// kinds a smaller limit than replica RPCs), still checked before allocating.
pub async fn read_frame_limited<R: AsyncRead + Unpin>(
    reader: &mut R,
    payload_bytes_max: impl Fn(u8) -> usize,
) -> Result<Option<Frame>, FrameError> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    let mut filled = 0;
    while filled < FRAME_HEADER_BYTES {
        let read = reader.read(&mut header[filled..]).await?;
        if read == 0 {
            return if filled == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        filled += read;
    }
    let magic: [u8; 4] = [header[0], header[1], header[2], header[3]];
    if magic != MAGIC {
        return Err(FrameError::BadMagic(magic));
    }
    if header[4] != VERSION {
        return Err(FrameError::UnknownVersion(header[4]));
    }
    if header[6] != 0 || header[7] != 0 {
        return Err(FrameError::ReservedNotZero);
    }
    let kind = header[5];
    let length = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
    let mut id = [0u8; 8];
    id.copy_from_slice(&header[12..20]);
    let request_id = u64::from_le_bytes(id);
    let limit = payload_bytes_max(kind);
    if length > limit {
        return Err(FrameError::TooLarge {
            kind,
            request_id,
            length,
            limit,
        });
    }
    let mut payload = BytesMut::zeroed(length);
    reader.read_exact(&mut payload).await.map_err(|error| {
        if error.kind() == io::ErrorKind::UnexpectedEof {
            FrameError::Truncated
        } else {
            FrameError::Io(error)
        }
    })?;
    let expected = u32::from_le_bytes([header[20], header[21], header[22], header[23]]);
    if crc(&header, &payload) != expected {
        return Err(FrameError::Checksum { kind, request_id });
    }
    Ok(Some(Frame {
        kind,
        request_id,
        payload: payload.freeze(),
    }))
}

/// Write one frame. The header and a small payload go out in one write; a large payload is
/// written straight from its buffer rather than copied behind the header.
pub async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, frame: &Frame) -> io::Result<()> {
    const COALESCE_BYTES_MAX: usize = 16 * 1024;
    let header = encode_header(frame.kind, frame.request_id, &frame.payload);
    if frame.payload.len() <= COALESCE_BYTES_MAX {
        let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + frame.payload.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&frame.payload);
        writer.write_all(&out).await?;
    } else {
        writer.write_all(&header).await?;
        writer.write_all(&frame.payload).await?;
    }
    // The whole frame on the wire before the caller waits for an answer: a TLS stream takes
    // the plaintext and may keep the last records queued while the socket is full, sending
    // them only on a flush. Without it, a large frame's tail could wait for the connection's
    // next write — a snapshot chunk stalled until its 5-s timeout, every few chunks.
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves a frame is on the wire when `write_frame` returns, also through a writer that
    /// keeps what it is given until it is flushed (as a TLS stream may with its last records
    /// while the socket is full): small, coalesced frames and large ones alike.
    #[tokio::test]
    async fn a_written_frame_is_flushed_whole() {
        for size in [10, 5 * 1024 * 1024] {
            let sent = frame(3, 9, &vec![7u8; size]);
            let mut writer = tokio::io::BufWriter::with_capacity(64 * 1024 * 1024, Vec::new());
            write_frame(&mut writer, &sent).await.expect("written");
            let wire = writer.get_ref().clone();
            assert_eq!(
                wire.len(),
                FRAME_HEADER_BYTES + size,
                "all of a {size}-byte frame"
            );
            let read = read_frame(&mut wire.as_slice(), usize::MAX)
                .await
                .expect("readable")
                .expect("a frame");
            assert_eq!(read, sent);
        }
    }

    fn frame(kind: u8, request_id: u64, payload: &[u8]) -> Frame {
        Frame {
            kind,
            request_id,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    async fn read_all(bytes: &[u8], limit: usize) -> Vec<Result<Option<Frame>, String>> {
        let mut reader = bytes;
        let mut out = Vec::new();
        loop {
            let next = read_frame(&mut reader, limit).await;
            let stop = !matches!(next, Ok(Some(_)));
            out.push(next.map_err(|error| error.to_string()));
            if stop {
                return out;
            }
        }
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    /// Proves frames round-trip back to back, including an empty and a large payload and a
    /// clean end of stream after the last one.
    #[test]
    fn frames_round_trip() {
        let frames = [
            frame(1, 7, b"hello"),
            frame(2, u64::MAX, b""),
            frame(250, 0, &vec![0xa5; 100_000]),
        ];
        let mut bytes = Vec::new();
        for each in &frames {
            encode_frame(each, &mut bytes);
        }
        let read = block_on(read_all(&bytes, 1 << 20));
        assert_eq!(read.len(), 4);
        for (each, got) in frames.iter().zip(&read) {
            assert_eq!(got.as_ref().expect("ok").as_ref(), Some(each));
        }
        assert_eq!(read[3], Ok(None));
    }

    /// Proves that every single-bit flip anywhere in a frame, and every truncation, is refused
    /// with an error and never read as a (different) frame.
    #[test]
    fn every_bit_flip_and_truncation_is_refused() {
        let mut bytes = Vec::new();
        encode_frame(&frame(3, 99, b"settle this batch"), &mut bytes);
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            let read = block_on(read_all(&damaged, 1 << 20));
            assert!(read[0].is_err(), "bit {bit} flipped was accepted: {read:?}");
        }
        for cut in 1..bytes.len() {
            let read = block_on(read_all(&bytes[..cut], 1 << 20));
            assert_eq!(
                read[0],
                Err(FrameError::Truncated.to_string()),
                "cut at {cut}"
            );
        }
    }

    /// Proves a length over the receiver's limit is refused before the payload is read.
    #[test]
    fn oversized_payload_is_refused_before_reading() {
        let header = encode_header(1, 1, &[0u8; 4096]);
        let read = block_on(read_all(&header, 1024));
        assert_eq!(
            read[0],
            Err(FrameError::TooLarge {
                kind: 1,
                request_id: 1,
                length: 4096,
                limit: 1024
            }
            .to_string())
        );
    }
}
