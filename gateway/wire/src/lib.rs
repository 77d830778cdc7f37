//! The bytes every Tally connection carries, whether between replicas or from a client to a
//! node: [`frame`] (a 24-byte header with magic, version, kind, length, request id and a CRC32C,
//! then the payload; read with a limit checked before allocating) and [`tls`] (certificates,
//! the client's TLS, and the stream type both sides use). It knows no message: the replica
//! RPCs are `tally-raft`'s, the client protocol is `tally-client`'s.

pub mod frame;
pub mod tls;

pub use frame::{read_frame, read_frame_limited, write_frame, Frame, FrameError};
pub use tls::{ClientTls, Stream, TlsError};
