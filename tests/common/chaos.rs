//! A TCP proxy on every directed replica link, for partitions and flapping links between real
//! `tally node` processes.
//!
//! Node `from` dials node `to` through the proxy of the link `from → to` (its config's
//! `[dial]`), so each direction can be cut on its own: a cut link closes the connections `from`
//! opened to `to` and refuses new ones (accepted, then closed at once, so the dialler's TLS
//! handshake fails as it would against a dead peer). The replies to `from`'s calls travel on
//! `from`'s own connection, so cutting `from → to` silences `from`'s RPCs to `to` and nothing
//! else: cutting both directions is a symmetric partition, one of them a one-way partition.
//! The proxies see only ciphertext (mutual TLS runs end to end through them).

use std::collections::BTreeMap;

use tally::local_cluster::LocalCluster;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The proxies of a cluster's links; they stop when this is dropped.
pub struct Chaos {
    /// (from, to) → whether the link is up.
    links: BTreeMap<(u64, u64), watch::Sender<bool>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Chaos {
    /// A proxy for every ordered pair of the planned nodes `ids`
    /// ([`LocalCluster::plan`]), each node told to dial the others through them. Call before
    /// the nodes start ([`LocalCluster::found`] rewrites their configs).
    pub async fn between(cluster: &mut LocalCluster, ids: &[u64]) -> Chaos {
        let mut chaos = Chaos {
            links: BTreeMap::new(),
            tasks: Vec::new(),
        };
        for from in ids {
            for to in ids.iter().filter(|to| *to != from) {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
                let address = listener.local_addr().expect("bound").to_string();
                let target = cluster.peer_addr(*to).expect("a planned node");
                let (up, watch) = watch::channel(true);
                chaos
                    .tasks
                    .push(tokio::spawn(serve(listener, target, watch)));
                chaos.links.insert((*from, *to), up);
                cluster.dial(*from, *to, &address);
            }
        }
        chaos
    }

    /// Bring the link `from → to` up or down (down: its connections close now).
    pub fn set(&self, from: u64, to: u64, up: bool) {
        self.links[&(from, to)].send_replace(up);
    }

    /// Whether the link `from → to` is up.
    pub fn is_up(&self, from: u64, to: u64) -> bool {
        *self.links[&(from, to)].borrow()
    }

    /// Every directed link, as (from, to).
    pub fn links(&self) -> Vec<(u64, u64)> {
        self.links.keys().copied().collect()
    }

    /// Cut every link to and from `id`: it hears nobody and nobody hears it.
    pub fn isolate(&self, id: u64) {
        for (from, to) in self.links() {
            if from == id || to == id {
                self.set(from, to, false);
            }
        }
    }

    /// Cut every link between the groups `a` and `b`, both ways.
    pub fn partition(&self, a: &[u64], b: &[u64]) {
        for (from, to) in self.links() {
            if (a.contains(&from) && b.contains(&to)) || (b.contains(&from) && a.contains(&to)) {
                self.set(from, to, false);
            }
        }
    }

    /// Every link up again.
    pub fn heal(&self) {
        for (from, to) in self.links() {
            self.set(from, to, true);
        }
    }
}

impl Drop for Chaos {
    fn drop(&mut self) {
        self.heal();
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// One link's proxy: every accepted connection is joined to a new one to `target` while the
/// link stays up.
async fn serve(listener: TcpListener, target: String, up: watch::Receiver<bool>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            return;
        };
        while connections.try_join_next().is_some() {}
        if !*up.borrow() {
            continue; // dropped: closed before any byte
        }
        let mut up = up.clone();
        let target = target.clone();
        connections.spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(&target).await else {
                return;
            };
            // As the nodes do: a proxy that waited to fill segments would add its own delay.
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = up.wait_for(|up| !*up) => {}
            }
        });
    }
}
