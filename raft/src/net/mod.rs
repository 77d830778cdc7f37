//! The network between Tally processes: checksummed frames over TCP ([`frame`]).
//! Replica-to-replica Raft RPCs and the node's client protocol both travel in these frames,
//! on one port per node; the frame's kind byte says which message a payload is: kinds
//! `1..=RAFT_KIND_LAST` are Raft RPCs, the rest belong to the [`ClientHandler`] of the node.

pub mod frame;

use std::future::Future;
use std::pin::Pin;

pub use frame::{read_frame, write_frame, Frame, FrameError, FRAME_HEADER_BYTES};

/// Frame kinds up to this one are replica-to-replica Raft RPCs (requests and responses).
pub const RAFT_KIND_LAST: u8 = 31;

/// Where a handler sends its responses on a connection: they are written in the order sent,
/// each carrying its request's id, so a client may keep many requests in flight.
pub type Replies = tokio::sync::mpsc::Sender<Frame>;

/// The node's client protocol, served on the same port as the Raft RPCs.
///
/// The server calls `handle` for each client frame of a connection in arrival order and awaits
/// it before reading the next frame. A handler does there whatever must keep the connection's
/// order (queueing a batch into the batcher, which also applies back-pressure by waiting for
/// room) and spawns the rest (waiting for the commit), replying later through `replies`.
pub trait ClientHandler: Send + Sync + 'static {
    fn handle(
        &self,
        frame: Frame,
        replies: Replies,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}
