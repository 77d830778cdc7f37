//! The `tally` binary's library half: what its subcommands share with the multi-process tests.
//! `config` turns a config file and flags into a node's configuration; `local_cluster` runs
//! real `tally node` processes on loopback (tests, `tally drive --spawn`, `tally loadgen --spawn`, `tally demo`);
//! `drive` is the simple load driver of the replicated write path; `load` fronts the load
//! generator (`tally loadgen`, `tally demo`); `admin_http` is a node's `/metrics`, `/health`
//! and `/ready`; `cluster_admin` is `tally admin`'s cluster operations.

pub mod admin_http;
pub mod client_cli;
pub mod cluster_admin;
pub mod config;
pub mod drive;
pub mod load;
pub mod local_cluster;
