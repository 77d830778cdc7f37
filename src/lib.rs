//! The `tally` binary's library half: what its subcommands share with the multi-process tests.
//! `node` assembles a node from `tally-raft` and `tally-gateway`; `config` turns a config file
//! and flags into a node's configuration; `local_cluster` runs
//! real `tally node` processes on loopback (tests, `tally loadgen --spawn`, `tally demo`); `load` fronts the load
//! generator (`tally loadgen`, `tally demo`); `admin_http` is a node's `/metrics`, `/health`
//! and `/ready`; `cluster_admin` is `tally admin`'s cluster operations; `tls_args` is how client commands
//! find their TLS settings; `verify` checks proof bundles offline (`tally verify`); `witness` is `tally witness`, the
//! cosigning witness's files around `tally_engine::witness`; `cdc` is `tally cdc`, the change
//! feed published to RabbitMQ; `export_file` is the file `tally client export` writes (CSV,
//! JSON lines, Parquet).

pub mod access_trail;
pub mod admin_http;
pub mod cdc;
pub mod client_cli;
pub mod client_proofs;
pub mod cluster_admin;
pub mod config;
pub mod cycle_cli;
pub mod demo_proofs;
pub mod export_file;
pub mod import;
pub mod load;
pub mod local_cluster;
pub mod node;
pub mod query_cli;
pub mod reconcile;
pub mod tls_args;
pub mod verify;
pub mod witness;
