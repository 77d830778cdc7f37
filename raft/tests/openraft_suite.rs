//! openraft's own storage test suite (`openraft::testing::Suite`) against Tally's log store
//! (the WAL) and state machine (the engine): once on this machine's production disk backend
//! (io_uring, or the announced pwrite fallback) in a temporary directory, once on the
//! simulated disk.

use std::path::PathBuf;
use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};
use tally_engine::EngineConfig;
use tally_raft::replication::types::StorageError;
use tally_raft::replication::{open_storage, LogStore, StateMachine, TypeConfig};
use tally_raft::storage::sim::SimDisk;
use tally_raft::storage::{open_default, Disk};
use tally_raft::WalConfig;

/// Small segments so the suite's logs span several, and rotation is exercised too.
fn wal_config() -> WalConfig {
    WalConfig {
        segment_bytes: 256 * 1024,
        entry_payload_bytes_max: 64 * 1024,
    }
}

/// Opens a fresh node storage per suite case, on a new temporary directory.
struct OnDisk;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for OnDisk {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (log_store, state_machine) = open_storage(
            open_default(),
            dir.path(),
            wal_config(),
            EngineConfig::default(),
        )
        .expect("fresh storage opens");
        Ok((dir, log_store, state_machine))
    }
}

/// Opens a fresh node storage per suite case, on a new simulated disk.
struct OnSimulatedDisk;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, ()> for OnSimulatedDisk {
    async fn build(&self) -> Result<((), LogStore, StateMachine), StorageError> {
        let disk: Arc<dyn Disk> = Arc::new(SimDisk::new());
        let (log_store, state_machine) = open_storage(
            disk,
            &PathBuf::from("/node"),
            wal_config(),
            EngineConfig::default(),
        )
        .expect("fresh storage opens");
        Ok(((), log_store, state_machine))
    }
}

/// Proves Tally's log store and state machine meet openraft's storage contract on the real
/// disk: every case of openraft 0.9's storage suite (log state, reads, purge, truncate,
/// append, vote, applied state, membership, snapshot build/install) passes.
#[test]
fn openraft_storage_suite_on_disk() {
    Suite::test_all(OnDisk).expect("openraft's storage suite passes on disk");
}

/// Proves the same on the simulated disk the crash tests use, so later fault tests on it
/// start from a storage that openraft accepts.
#[test]
fn openraft_storage_suite_on_simulated_disk() {
    Suite::test_all(OnSimulatedDisk).expect("openraft's storage suite passes on the sim disk");
}
