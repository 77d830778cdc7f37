//! Every limit of the engine in one place, units last, each with its reason.

/// Size of every event record on the wire and in the log. 128 bytes holds a transfer with
/// 128-bit ids and amounts and keeps records cache-line aligned in pairs.
pub const RECORD_BYTES: usize = 128;

/// Events in one applied batch. 8,189 is what fits TigerBeetle's 1 MiB message after its
/// header, so batches from their benchmark map one to one; a batch is also the unit of the
/// per-ledger conservation assertion, so its cost is paid once per this many events.
pub const BATCH_EVENTS_MAX: usize = 8_189;

/// Bytes of one applied batch body.
pub const BATCH_BYTES_MAX: usize = BATCH_EVENTS_MAX * RECORD_BYTES;

/// Accounts the engine will store. Account slots are addressed with `u32`.
pub const ACCOUNTS_MAX: u32 = (1 << 31) - 1;

/// Stored transfers, and separately stored trades and expiries. Event references carry a
/// 2-bit kind tag in a `u32`, which leaves 30 bits of index: about a billion events of each
/// kind, roughly 120 GB of transfers, far past this machine's memory.
pub const EVENTS_PER_KIND_MAX: u32 = (1 << 30) - 1;

/// Elements per arena chunk. Chunks never reallocate, so a growing ledger never copies its
/// history (no latency spike, no transient 2x memory).
pub const ARENA_CHUNK_ELEMENTS: usize = 1 << 16;

/// Ids an index is sized for at most by `Engine::make_room` at once: 2^27, a 2 GiB table of
/// address space (the indexes go on growing on demand past it). Keeps a wild estimate from
/// asking the kernel for more address space than this machine's memory.
pub const ROOM_EVENTS_MAX: usize = 1 << 27;

/// Nanoseconds per second of a pending transfer's `timeout` (which is in seconds).
pub const NANOSECONDS_PER_SECOND: u64 = 1_000_000_000;

/// Entries a statement query returns at most, whatever the caller asks: one reply frame.
pub const STATEMENT_ENTRIES_MAX: u32 = 8_189;

/// What one page of a query by field may cost (`search`), in records examined: the applied
/// state is held while a page is read, so a filter that matches little costs a page this
/// much, not the whole history; the page then says where the next one starts. 2–4 ms of a scan
/// on this project's 2-core test host (140–310M records/s, docs/performance.md "Queries").
pub const QUERY_SCAN_MAX: usize = 1 << 19;

/// What walking one event of an account's history back costs a page of positions as of a
/// past time, in records examined: a walk step is a random read (about 5M/s against a scan's
/// 140–310M/s on the same host), so a page that walks stops no later than one that scans.
pub const QUERY_WALK_COST: usize = 64;

/// Obligations one netting run takes (`netting::net`). A cycle of a busy CSD day is a few
/// million instructions; 2^26 keeps every per-position sum of 64-bit amounts far inside u128
/// and a run's working memory (about 100 bytes per obligation) within a few GiB.
pub const NETTING_MAX_OBLIGATIONS: usize = 1 << 26;

const _: () = assert!(BATCH_EVENTS_MAX as u64 <= EVENTS_PER_KIND_MAX as u64);
const _: () = assert!(BATCH_BYTES_MAX <= 1 << 20);
const _: () = assert!(ARENA_CHUNK_ELEMENTS.is_power_of_two());

/// Entry timestamps (ns since the Unix epoch) beyond this are refused: it is the year 2116,
/// and it keeps `timestamp + events + timeout × 10⁹` far from `u64::MAX`.
pub const TIMESTAMP_MAX: u64 = 1 << 62;

/// Runs a settlement instruction may fail before it is cancelled (aged out), until a
/// settlement command sets another limit (replicated state, like every rule of a run).
pub const SETTLEMENT_MAX_AGE_DEFAULT: u16 = 5;

/// Ids from here up (the upper half all ones) are the engine's own: the per-ledger clearing
/// accounts and the transfers a settlement run posts. A client's account, transfer, trade or
/// instruction may neither have one nor name an account that has one.
pub const RESERVED_ID_FIRST: u128 = (u64::MAX as u128) << 64;
