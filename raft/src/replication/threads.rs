//! Where the state machine's heavy work runs: blocking file work on tokio's blocking pool, a
//! snapshot's build on a thread of its own at a lower priority, a restore on two threads (and
//! a helper faulting in arena chunks). On a disk that wants no threads
//! (`Disk::single_threaded`: the deterministic simulator) the blocking work and the build run
//! within the call instead; a restore's threads are joined before it returns, so its result
//! does not depend on their interleaving.

use openraft::StorageIOError;
use tally_engine::{Engine, EngineConfig};

use super::types::StorageError;

/// Run blocking work (file I/O, restoring an engine) off the async runtime's workers; on a
/// disk that wants no threads, here.
pub(super) async fn blocking<T: Send + 'static>(
    single_threaded: bool,
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    if single_threaded {
        return work();
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| failed(error.to_string()))?
}

/// The state machine's error for work that could not run or finish where it was sent.
fn failed(why: String) -> StorageError {
    StorageError::from(StorageIOError::write_state_machine(&std::io::Error::other(
        why,
    )))
}

/// Run `work` on a thread of its own at a lower CPU priority (nice 10): serialising and
/// writing a snapshot takes seconds of CPU for a large state, which must not take the cores
/// from applies, replication and clients on a busy node (on an idle one it runs as fast). On a
/// disk that wants no threads, here.
pub(super) async fn in_background<T: Send + 'static>(
    single_threaded: bool,
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    if single_threaded {
        return work();
    }
    let (done, result) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("snapshot-build".to_owned())
        .spawn(move || {
            // SAFETY: gettid and setpriority take no pointers; a failure leaves the priority
            // as it was, which is only slower for the node's other work.
            unsafe {
                let thread = libc::syscall(libc::SYS_gettid) as libc::id_t;
                libc::setpriority(libc::PRIO_PROCESS, thread, 10);
            }
            let _ = done.send(work());
        });
    spawned.map_err(|error| failed(error.to_string()))?;
    result
        .await
        .map_err(|_| failed("the snapshot thread ended without a result".to_owned()))?
}

/// Arena chunks for an engine filled in bulk, faulted in by a thread of their own (the engine
/// starts none: `tally_engine::ChunkMaker`); the thread ends when the engine stops taking
/// them. `None` if no thread could be started: the fill then faults its own pages.
pub(super) fn chunk_supply() -> Option<tally_engine::ChunkSupply> {
    let (supply, maker) = tally_engine::chunk_supply();
    std::thread::Builder::new()
        .name("tally-prefault".to_owned())
        .spawn(move || maker.run())
        .ok()
        .map(|_| supply)
}

/// Hash `engine`'s leaves of the verifiable log on a thread of their own
/// (`Engine::start_leaf_hashing`) unless snapshot work runs within its calls (the simulator's
/// disk); the thread ends with the engine. Hashing on the apply thread cost a third of the
/// throughput of the TigerBeetle preset (docs/performance.md); if no thread can be started,
/// the engine hashes them itself.
pub(super) fn hash_leaves_aside(engine: &mut Engine, single_threaded: bool) {
    if single_threaded {
        return;
    }
    let worker = engine.start_leaf_hashing();
    let started = std::thread::Builder::new()
        .name("tally-leaves".to_owned())
        .spawn(move || worker.run());
    if let Err(error) = started {
        tracing::warn!(%error, "no thread for the verifiable log's hashing: it runs inline");
        engine.stop_leaf_hashing();
    }
}

/// `Engine::restore_from` on two threads: this one files the records (its arenas' chunks
/// faulted in by a maker thread, `chunk_supply`) while another reads the file and checks and
/// decodes its sections (`SnapshotSections`), a bounded channel between them. A 10M-transfer
/// restore takes about the longer half instead of their sum (docs/performance.md).
pub(super) fn restore_engine(
    input: impl std::io::Read + Send,
    config: EngineConfig,
) -> Result<Engine, tally_engine::SnapshotError> {
    let (start, mut sections) = Engine::restore_begin(input)?;
    let (spent, spares) = crossbeam_channel::bounded(4);
    sections.reuse(spares);
    std::thread::scope(|scope| {
        let (out, handed) = crossbeam_channel::bounded(2);
        scope.spawn(move || {
            for section in sections {
                // A closed channel: the restore stopped at an error of its own.
                if out.send(section).is_err() {
                    break;
                }
            }
        });
        Engine::restore_sections(start, config, chunk_supply(), handed, Some(spent))
    })
}
