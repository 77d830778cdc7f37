//! Tally's load generator: it owns workload generation (`workload`), the closed- and open-loop
//! drivers with HDR latency and a progress line (`run`), the final report (`report`) and the
//! history checker that reads everything back from every replica (`history`, `model`, `check`).
//! Entry point: [`run::run`]. It is a client: it builds records with the public wire format
//! (`tally_engine::records`) and reaches the cluster only through the [`cluster::Cluster`]
//! trait; it never links engine internals and never touches the disk (the binary writes files).

pub mod check;
pub mod cluster;
pub mod history;
pub mod model;
mod read_back;
pub mod report;
pub mod run;
pub mod workload;

pub use cluster::{Cluster, GatewayCluster};
pub use run::{run, RunConfig, RunOutcome};
pub use workload::{Mix, Skew, WorkloadConfig};
