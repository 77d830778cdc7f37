//! Where and who a client is, and how its reads are served.

use std::time::Duration;

use tally_wire::ClientTls;

/// Where and who a client is.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Every node's address (the client finds the leader among them).
    pub addrs: Vec<String>,
    /// The cluster's id: a node of another cluster refuses the requests.
    pub cluster_id: u128,
    /// The secret the node's config knows by its hash.
    pub credential: Vec<u8>,
    /// Wait this long for one reply before sending the request again (to the next node, if
    /// the connection is still open: a node that keeps a connection but does not answer is
    /// stopped, isolated or stalled).
    pub request_timeout: Duration,
    /// Give up on a call after this long.
    pub deadline: Duration,
    /// TLS to the nodes' client listeners, verified against a CA (`TALLY_CA` for the CLI);
    /// `None` speaks plain TCP, only to nodes configured with `insecure_plaintext`.
    pub tls: Option<ClientTls>,
    /// How reads (lookups, statements, balances, node state) are served.
    pub reads: Reads,
}

/// How a client's reads are served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reads {
    /// By the leader after confirming its leadership with a quorum (openraft's read index):
    /// every write acknowledged before the read was sent is seen.
    #[default]
    Linearizable,
    /// By whichever node the session is on, from what it has applied: on a follower this may
    /// lag. What an operator asks of one replica ("what do you have?").
    Local,
}

impl ClientConfig {
    pub fn new(addrs: Vec<String>, cluster_id: u128, credential: Vec<u8>) -> ClientConfig {
        ClientConfig {
            addrs,
            cluster_id,
            credential,
            request_timeout: Duration::from_secs(10),
            deadline: Duration::from_secs(60),
            tls: None,
            reads: Reads::Linearizable,
        }
    }

    /// Serve reads from the applied state of the node the session is on (see [`Reads`]).
    pub fn with_reads(mut self, reads: Reads) -> ClientConfig {
        self.reads = reads;
        self
    }

    /// Speak TLS to the nodes, verified against `tls`.
    pub fn with_tls(mut self, tls: Option<ClientTls>) -> ClientConfig {
        self.tls = tls;
        self
    }
}
