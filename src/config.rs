//! `tally node`'s configuration: a TOML file (all fields optional) and command-line flags that
//! override it. Every setting has a default that suits a 3–5 node cluster on one LAN.
//!
//! ```toml
//! id = 1
//! listen = "127.0.0.1:7001"         # clients (TLS)
//! peer_listen = "127.0.0.1:7201"    # replicas only (mutual TLS, members only)
//! data_dir = "/var/lib/tally/1"
//! admin_listen = "127.0.0.1:9101"   # HTTP: /metrics, /health, /ready (docs/operations.md)
//! # insecure_plaintext = true       # no TLS at all: tests and trusted networks only
//! [tls]                  # `tally certs`; paths relative to this file's directory
//! ca = "ca.pem"                     # the cluster CA (both old and new during a rotation)
//! cert = "node-1.pem"               # names node-1.tally and the hosts clients dial
//! key = "node-1.key"
//! [bootstrap]            # only on a fresh cluster: the founding voters
//! 1 = { client = "127.0.0.1:7001", peer = "127.0.0.1:7201" }
//! 2 = { client = "127.0.0.1:7002", peer = "127.0.0.1:7202" }
//! 3 = { client = "127.0.0.1:7003", peer = "127.0.0.1:7203" }
//! [dial]                 # optional: reach a replica here instead of its membership address
//! 2 = "10.0.0.2:7202"               #   (a tunnel or sidecar; its certificate is still checked)
//! [raft]
//! heartbeat_ms = 200
//! election_timeout_min_ms = 1000
//! election_timeout_max_ms = 2000
//! snapshot_every_entries = 10000
//! snapshot_every_mib = 2048
//! logs_kept_after_snapshot = 1000
//! [batcher]
//! entries_in_flight = 2
//! queue_batches = 256
//! [wal]
//! segment_mib = 128
//! [verifiable]           # signed checkpoints of the verifiable log (docs/verifiability.md)
//! key_file = "cluster.key"          # the same on every node; without it none are signed
//! witnesses = ["witness.example/a+1234abcd+BA…"]   # cosignatures kept with checkpoints
//! [gateway]              # the client protocol (docs/protocol.md, "Gateway protocol")
//! cluster_id = "0x7a11e5"          # u128, decimal or 0x-hex; clients must name it
//! session_idle_ms = 60000
//! [[gateway.credentials]]
//! name = "exchange-a"              # for logs
//! hash = "<64 hex digits>"         # `tally hash-credential`: BLAKE3 of the secret
//! role = "submitter"               # "submitter" | "reader" | "operator"
//! [[gateway.credentials]]
//! name = "exchange-b"
//! hash = "<64 hex digits>"
//! role = "submitter"
//! ledgers = [3]                    # a scoped submitter debits (and opens) accounts on
//! accounts = ["0x3e9"]             #   these ledgers, and debits these accounts only
//! [[gateway.credentials]]
//! name = "fund-b"
//! hash = "<64 hex digits>"
//! role = "reader"
//! ledgers = [1, 2]                 # a reader sees accounts on these ledgers ...
//! accounts = ["1001", "0x3e9"]     # ... and these accounts (u128 as strings)
//! ```
//!
//! Without credentials the gateway refuses every request (`Unauthenticated`). A reader's scope
//! (`ledgers`, `accounts`) is what it may see; without either it sees nothing. A submitter's
//! is what it may debit — a transfer's debit account, a trade's delivering and paying
//! accounts — and the ledgers it may open accounts on; without either it is unscoped, as
//! before scopes existed. A create request with an event outside the scope is refused whole
//! (`OutOfScope`). Operators have no scope. Ledger 0 and account 0 never exist, so they are
//! refused in a scope.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::node::NodeConfig;
use anyhow::{bail, Context};
use serde::Deserialize;
use tally_gateway::BatcherConfig;
use tally_gateway::{parse_hash, Credential, GatewayConfig, Role, Scope};
use tally_raft::net::{NodeTls, TlsFiles};
use tally_raft::replication::types::Node as Member;
use tally_raft::WalConfig;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub id: Option<u64>,
    /// The client listener.
    pub listen: Option<SocketAddr>,
    /// The peer listener: replica traffic only.
    pub peer_listen: Option<SocketAddr>,
    /// Serve both listeners without TLS. Must be said explicitly; without it a node refuses
    /// to start without a `[tls]` section.
    #[serde(default)]
    pub insecure_plaintext: bool,
    pub tls: Option<TlsSection>,
    pub data_dir: Option<PathBuf>,
    /// The admin HTTP port: `/metrics`, `/health`, `/ready` (none if not set).
    pub admin_listen: Option<SocketAddr>,
    #[serde(default)]
    pub bootstrap: BTreeMap<String, MemberSection>,
    /// Replica id → the address this node dials it at, instead of its membership address.
    #[serde(default)]
    pub dial: BTreeMap<String, String>,
    #[serde(default)]
    pub raft: RaftSection,
    #[serde(default)]
    pub batcher: BatcherSection,
    #[serde(default)]
    pub wal: WalSection,
    #[serde(default)]
    pub gateway: GatewaySection,
    #[serde(default)]
    pub verifiable: VerifiableSection,
}

/// `[verifiable]`: the cluster's checkpoint key (docs/verifiability.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifiableSection {
    /// The private key file (`tally witness new-key --log`'s form, `PRIVATE+KEY+…`; relative to
    /// the config file's directory) the leader signs checkpoints with. Its name is the log's
    /// origin. Give every node the same key: whichever leads signs. None: no checkpoints.
    pub key_file: Option<PathBuf>,
    /// Witnesses' verifier keys (`tally witness new-key` prints them): their cosignatures of
    /// checkpoints are accepted (`tally client cosign`), kept and served with the checkpoints.
    #[serde(default)]
    pub witnesses: Vec<String>,
}

/// The node's key material (PEM files; relative paths are relative to the config file).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A founding member's addresses.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberSection {
    pub client: String,
    pub peer: String,
}

/// The gateway: cluster id, session expiry and who may connect.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// Required once credentials are given: u128 as a decimal or `0x` hex string (TOML
    /// integers are only 64-bit).
    pub cluster_id: Option<String>,
    pub session_idle_ms: Option<u64>,
    #[serde(default)]
    pub credentials: Vec<CredentialSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialSection {
    #[serde(default)]
    pub name: String,
    /// Hex BLAKE3 of the secret; never the secret itself.
    pub hash: String,
    pub role: String,
    #[serde(default)]
    pub ledgers: Vec<u32>,
    /// Account ids as decimal or `0x` hex strings.
    #[serde(default)]
    pub accounts: Vec<String>,
}

/// openraft timing and log compaction.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftSection {
    pub cluster_name: String,
    /// Leader heartbeats. Well under the election timeout so one lost heartbeat never starts
    /// an election; openraft also times each AppendEntries out after one heartbeat, so it
    /// must cover the largest message plus a follower's fdatasync (`net::recommended_config`).
    pub heartbeat_ms: u64,
    /// A follower that hears nothing for this long (randomised in the range) stands for
    /// election. 1–2 s rides out fsync stalls of this shared host (tens of ms, sometimes
    /// hundreds) and still elects within a few seconds of a leader's death.
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many entries since the last one.
    pub snapshot_every_entries: u64,
    /// Build a snapshot once the WAL has taken this many MiB since the last one (whichever of
    /// the two comes first; 0: by entries only). Bounds what a restart replays when entries
    /// are large (docs/operations.md, "Snapshot policy").
    pub snapshot_every_mib: u64,
    /// Entries kept in the log behind a snapshot, so a follower a little behind catches up
    /// from the log rather than a whole snapshot.
    pub logs_kept_after_snapshot: u64,
}

/// The smallest nonzero `raft.snapshot_every_mib`: a snapshot every few MiB of log would be
/// built over and over.
const SNAPSHOT_EVERY_MIB_MIN: u64 = 16;

impl Default for RaftSection {
    fn default() -> RaftSection {
        RaftSection {
            cluster_name: "tally".to_owned(),
            heartbeat_ms: 200,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            snapshot_every_entries: 10_000,
            snapshot_every_mib: 2048,
            logs_kept_after_snapshot: 1000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatcherSection {
    pub entries_in_flight: usize,
    pub queue_batches: usize,
}

impl Default for BatcherSection {
    fn default() -> BatcherSection {
        let defaults = BatcherConfig::default();
        BatcherSection {
            entries_in_flight: defaults.entries_in_flight_max,
            queue_batches: defaults.queue_batches_max,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalSection {
    pub segment_mib: u64,
}

impl Default for WalSection {
    fn default() -> WalSection {
        WalSection {
            segment_mib: WalConfig::default().segment_bytes / (1024 * 1024),
        }
    }
}

/// Flags that override the file.
#[derive(Debug, Default, clap::Args)]
pub struct NodeFlags {
    /// TOML configuration file (see docs/operations.md).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// This node's id (unique in the cluster, never reused).
    #[arg(long)]
    pub id: Option<u64>,
    /// Address to listen on for clients.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Address to listen on for replicas (also the address peers dial).
    #[arg(long)]
    pub peer_listen: Option<SocketAddr>,
    /// Data directory (WAL, vote, snapshots).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Serve `/metrics` (Prometheus), `/health` and `/ready` over HTTP on this address.
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
    /// Founding voters of a fresh cluster as ID=CLIENT_ADDRESS/PEER_ADDRESS, e.g.
    /// `1=127.0.0.1:7001/127.0.0.1:7201,2=127.0.0.1:7002/127.0.0.1:7202`.
    #[arg(long, value_delimiter = ',')]
    pub bootstrap: Vec<String>,
}

fn parse_member(text: &str) -> anyhow::Result<(u64, Member)> {
    let Some((id, addrs)) = text.split_once('=') else {
        bail!("member {text:?} is not ID=CLIENT_ADDRESS/PEER_ADDRESS");
    };
    let Some((client, peer)) = addrs.split_once('/') else {
        bail!("member {text:?} is not ID=CLIENT_ADDRESS/PEER_ADDRESS");
    };
    Ok((parse_node_id(id)?, Member::new(client.trim(), peer.trim())))
}

fn parse_node_id(id: &str) -> anyhow::Result<u64> {
    id.trim()
        .parse()
        .with_context(|| format!("node id {id:?} is not a number"))
}

/// Members given as `ID=CLIENT_ADDRESS/PEER_ADDRESS` strings.
pub fn parse_members(items: &[String]) -> anyhow::Result<BTreeMap<u64, Member>> {
    items.iter().map(|item| parse_member(item)).collect()
}

pub fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
}

pub fn parse_u128(text: &str) -> anyhow::Result<u128> {
    let text = text.trim();
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u128::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.with_context(|| format!("{text:?} is not a u128 (decimal or 0x hex)"))
}

/// The admin HTTP address, from the flag or the file; `None`: no admin port.
pub fn admin_listen(flags: &NodeFlags) -> anyhow::Result<Option<SocketAddr>> {
    if flags.admin_listen.is_some() {
        return Ok(flags.admin_listen);
    }
    Ok(match &flags.config {
        Some(path) => read_file(path)?.admin_listen,
        None => None,
    })
}

/// The gateway's configuration from the file's `[gateway]` section, checked.
/// `[verifiable] witnesses`: cosignature keys, each in its C2SP verifier key form.
fn witnesses(keys: &[String]) -> anyhow::Result<Vec<tally_engine::checkpoint::NoteVerifier>> {
    keys.iter()
        .map(|key| {
            let witness: tally_engine::checkpoint::NoteVerifier = key
                .parse()
                .with_context(|| format!("[verifiable] witnesses: {key:?}"))?;
            if witness.kind() != tally_engine::checkpoint::KeyKind::Cosignature {
                bail!("[verifiable] witnesses: {key:?} is a log's key, not a witness's");
            }
            Ok(witness)
        })
        .collect()
}

fn gateway_section(section: &GatewaySection) -> anyhow::Result<GatewayConfig> {
    let mut config = GatewayConfig::default();
    if let Some(idle) = section.session_idle_ms {
        if idle == 0 {
            bail!("gateway.session_idle_ms must not be zero");
        }
        config.session_idle = std::time::Duration::from_millis(idle);
    }
    match &section.cluster_id {
        Some(id) => config.cluster_id = parse_u128(id).context("gateway.cluster_id")?,
        None if !section.credentials.is_empty() => {
            bail!("gateway.cluster_id is required when gateway credentials are configured")
        }
        None => {}
    }
    for credential in &section.credentials {
        let role = match credential.role.as_str() {
            "submitter" => Role::Submitter,
            "reader" => Role::Reader,
            "operator" => Role::Operator,
            other => {
                bail!("gateway credential role {other:?} is not submitter, reader or operator")
            }
        };
        if role == Role::Operator
            && (!credential.ledgers.is_empty() || !credential.accounts.is_empty())
        {
            bail!(
                "gateway credential {:?}: an operator has no scope (only readers and \
                 submitters have ledgers and accounts)",
                credential.name
            );
        }
        let accounts: std::collections::BTreeSet<u128> = credential
            .accounts
            .iter()
            .map(|id| parse_u128(id))
            .collect::<anyhow::Result<_>>()
            .with_context(|| format!("gateway credential {:?}", credential.name))?;
        if credential.ledgers.contains(&0) || accounts.contains(&0) {
            bail!(
                "gateway credential {:?}: ledger 0 and account 0 never exist, so they cannot \
                 be in a scope",
                credential.name
            );
        }
        config.credentials.push(Credential {
            name: credential.name.clone(),
            hash: parse_hash(&credential.hash).map_err(anyhow::Error::msg)?,
            role,
            scope: Scope {
                ledgers: credential.ledgers.iter().copied().collect(),
                accounts,
            },
        });
    }
    Ok(config)
}

/// The node's configuration: the file's, overridden by flags, checked.
pub fn node_config(flags: &NodeFlags) -> anyhow::Result<NodeConfig> {
    let file = match &flags.config {
        Some(path) => read_file(path)?,
        None => FileConfig::default(),
    };
    let id = flags
        .id
        .or(file.id)
        .context("a node id is required (--id or `id` in the config)")?;
    let listen = flags
        .listen
        .or(file.listen)
        .context("a listen address is required (--listen or `listen`)")?;
    let peer_listen = flags
        .peer_listen
        .or(file.peer_listen)
        .context("a peer listen address is required (--peer-listen or `peer_listen`)")?;
    if peer_listen == listen {
        bail!(
            "peer_listen and listen must differ: replicas and clients have listeners of their own"
        );
    }
    let tls = match (&file.tls, file.insecure_plaintext) {
        (Some(_), true) => {
            bail!("give either a [tls] section or insecure_plaintext = true, not both")
        }
        (None, false) => bail!(
            "no [tls] section: a node serves TLS (make certificates with `tally certs`), or \
             plain TCP only when its config says insecure_plaintext = true"
        ),
        (None, true) => None,
        (Some(section), false) => {
            let base = flags
                .config
                .as_deref()
                .and_then(Path::parent)
                .unwrap_or(Path::new("."));
            let files = TlsFiles {
                ca: base.join(&section.ca),
                cert: base.join(&section.cert),
                key: base.join(&section.key),
            };
            Some(NodeTls::from_files(&files).context("[tls]")?)
        }
    };
    let config_dir = flags
        .config
        .as_deref()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    let checkpoint_key = match &file.verifiable.key_file {
        None => None,
        Some(path) => {
            let path = config_dir.join(path);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("[verifiable] key_file {}", path.display()))?;
            let signer = tally_engine::checkpoint::NoteSigner::from_private_key(&text)
                .with_context(|| format!("[verifiable] key_file {}", path.display()))?;
            if signer.kind() != tally_engine::checkpoint::KeyKind::Note {
                bail!(
                    "[verifiable] key_file {}: a witness's cosigning key, not a log's",
                    path.display()
                );
            }
            Some(std::sync::Arc::new(signer))
        }
    };
    let data_dir = flags
        .data_dir
        .clone()
        .or(file.data_dir)
        .context("a data directory is required (--data-dir or `data_dir`)")?;
    let mut bootstrap = BTreeMap::new();
    for (id, member) in &file.bootstrap {
        bootstrap.insert(
            parse_node_id(id)?,
            Member::new(member.client.clone(), member.peer.clone()),
        );
    }
    bootstrap.extend(parse_members(&flags.bootstrap)?);
    if !bootstrap.is_empty() && !bootstrap.contains_key(&id) {
        bail!("the bootstrap members {bootstrap:?} do not include this node ({id})");
    }
    let mut dial = BTreeMap::new();
    for (peer, address) in &file.dial {
        let peer = parse_node_id(peer)?;
        if peer == id {
            bail!("[dial] names this node ({id}); it never dials itself");
        }
        if address.trim().is_empty() {
            bail!("[dial] {peer}: the address is empty");
        }
        dial.insert(peer, address.trim().to_owned());
    }
    let raft = &file.raft;
    if raft.heartbeat_ms == 0 || raft.election_timeout_min_ms <= raft.heartbeat_ms * 3 {
        bail!("raft.election_timeout_min_ms must exceed three heartbeats");
    }
    if raft.snapshot_every_entries == 0 {
        bail!("raft.snapshot_every_entries must be at least 1");
    }
    if (1..SNAPSHOT_EVERY_MIB_MIN).contains(&raft.snapshot_every_mib) {
        bail!(
            "raft.snapshot_every_mib must be 0 (by entries only) or at least \
             {SNAPSHOT_EVERY_MIB_MIN}"
        );
    }
    let segment_bytes = file.wal.segment_mib.saturating_mul(1024 * 1024);
    let wal = WalConfig {
        segment_bytes,
        ..WalConfig::default()
    };
    let raft_config = openraft::Config {
        heartbeat_interval: raft.heartbeat_ms,
        election_timeout_min: raft.election_timeout_min_ms,
        election_timeout_max: raft.election_timeout_max_ms,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(raft.snapshot_every_entries),
        max_in_snapshot_log_to_keep: raft.logs_kept_after_snapshot,
        ..tally_raft::net::recommended_config(&raft.cluster_name)
    };
    Ok(NodeConfig {
        id,
        listen,
        peer_listen,
        tls,
        data_dir,
        bootstrap,
        dial,
        raft: raft_config,
        checkpoint_key: checkpoint_key.clone(),
        snapshot_every_bytes: (raft.snapshot_every_mib > 0)
            .then(|| raft.snapshot_every_mib.saturating_mul(1024 * 1024)),
        wal,
        batcher: BatcherConfig {
            entry_payload_bytes_max: wal.entry_payload_bytes_max,
            entries_in_flight_max: file.batcher.entries_in_flight.max(1),
            queue_batches_max: file.batcher.queue_batches.max(1),
            ..BatcherConfig::default()
        },
        engine: tally_engine::EngineConfig {
            hash_seed: rand::random(),
        },
        gateway: GatewayConfig {
            log_origin: checkpoint_key.as_ref().map(|key| key.name().into()),
            log_key: checkpoint_key.as_ref().map(|key| key.verifier_key().into()),
            witnesses: witnesses(&file.verifiable.witnesses)?.into(),
            ..gateway_section(&file.gateway)?
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(credential: &str) -> anyhow::Result<GatewayConfig> {
        let text = format!(
            "cluster_id = \"7\"\n[[credentials]]\nname = \"c\"\nhash = \"{}\"\n{credential}",
            "ab".repeat(32)
        );
        gateway_section(&toml::from_str(&text).expect("toml"))
    }

    /// Proves a submitter may be given a scope (and one without stays unscoped), an operator
    /// may not, and a scope naming ledger or account 0 is refused with the credential's name.
    #[test]
    fn submitter_scopes_are_configured() {
        let scoped = section("role = \"submitter\"\nledgers = [1]\naccounts = [\"0x10\"]")
            .expect("a scoped submitter");
        assert_eq!(scoped.credentials[0].role, Role::Submitter);
        assert_eq!(scoped.credentials[0].scope.ledgers, [1].into());
        assert_eq!(scoped.credentials[0].scope.accounts, [16].into());
        let unscoped = section("role = \"submitter\"").expect("an unscoped submitter");
        assert_eq!(unscoped.credentials[0].scope, Scope::default());
        let operator = section("role = \"operator\"\nledgers = [1]").expect_err("no scope");
        assert!(
            operator.to_string().contains("operator has no scope"),
            "{operator}"
        );
        for zero in ["ledgers = [0]", "accounts = [\"0\"]"] {
            let error = section(&format!("role = \"reader\"\n{zero}")).expect_err("zero");
            assert!(format!("{error:#}").contains("\"c\""), "{error:#}");
        }
    }

    /// Proves `[dial]` overrides are read by peer id, and that one naming this node, an empty
    /// address or an id that is not a number is refused with the reason.
    #[test]
    fn dial_overrides_are_read_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.toml");
        let read = |dial: &str| {
            std::fs::write(
                &path,
                format!(
                    "id = 1\nlisten = \"127.0.0.1:7001\"\npeer_listen = \"127.0.0.1:7201\"\n\
                     data_dir = \"/d\"\ninsecure_plaintext = true\n[dial]\n{dial}"
                ),
            )
            .expect("written");
            node_config(&NodeFlags {
                config: Some(path.clone()),
                ..NodeFlags::default()
            })
        };
        let config = read("2 = \"10.0.0.2:7202\"").expect("a dial override");
        assert_eq!(
            config.dial,
            BTreeMap::from([(2, "10.0.0.2:7202".to_owned())])
        );
        for (dial, reason) in [
            ("1 = \"10.0.0.1:7201\"", "never dials itself"),
            ("2 = \" \"", "the address is empty"),
            ("two = \"10.0.0.2:7202\"", "is not a number"),
        ] {
            let error = read(dial).expect_err(dial);
            assert!(format!("{error:#}").contains(reason), "{dial}: {error:#}");
        }
    }
}
