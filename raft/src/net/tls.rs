//! TLS for both networks of a node (docs/security.md).
//!
//! - **Peers** (replica traffic, `peer_listen`): mutual TLS 1.3 under the cluster CA. A node's
//!   certificate names it `node-<id>.tally` ([`peer_name`]); a connecting replica checks that
//!   the node it dials presents exactly that name, and a listening replica accepts a peer only
//!   if its certificate is valid for the name of a node in the current membership
//!   ([`peer_identity`]). Anything else is closed before a frame is read.
//! - **Clients** (`listen`): the node presents the same certificate (which also names the host
//!   names and addresses clients dial); clients verify it against the CA file they are given
//!   ([`ClientTls`]) and may present a certificate of their own.
//!
//! Session tickets are off: a connection carries nothing but frames after its handshake, so
//! the peer network can tell an idle connection from a closed one by reading nothing (see
//! `network.rs`). TLS 1.3 only, ring's primitives.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
pub use tally_wire::tls::{
    explain, looks_like_tls, provider, read_certificates, read_key, read_roots, ClientTls, Stream,
    TlsError,
};

use crate::replication::types::NodeId;

/// The DNS name a node's certificate carries to prove it is node `id` of its cluster.
pub fn peer_name(id: NodeId) -> String {
    format!("node-{id}.tally")
}

/// Where a node's key material lives (all PEM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The cluster CA certificate(s): trust anchors for peers and for client certificates.
    pub ca: PathBuf,
    /// This node's certificate chain (its own first), naming [`peer_name`] of its id and the
    /// host names clients use.
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
}

/// A node's TLS configurations: the peer listener's and dialler's, and the client port's.
#[derive(Clone)]
pub struct NodeTls {
    /// Accepts replicas: a client certificate from the cluster CA is required.
    pub peer_server: Arc<ServerConfig>,
    /// Dials replicas, presenting this node's certificate.
    pub peer_client: Arc<ClientConfig>,
    /// Serves clients: presents this node's certificate; a client certificate from the
    /// cluster CA is verified when one is offered, and not required.
    pub client_server: Arc<ServerConfig>,
    /// The CA's roots, kept to check a peer's identity against the membership.
    roots: Arc<RootCertStore>,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTls").finish_non_exhaustive()
    }
}

impl NodeTls {
    pub fn from_files(files: &TlsFiles) -> Result<NodeTls, TlsError> {
        let roots = Arc::new(read_roots(&files.ca)?);
        let chain = read_certificates(&files.cert)?;
        let key = read_key(&files.key)?;
        let versions: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

        let peer_verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), provider()).build()?;
        let mut peer_server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)?
            .with_client_cert_verifier(peer_verifier)
            .with_single_cert(chain.clone(), key.clone_key())?;
        peer_server.send_tls13_tickets = 0;

        let peer_client = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)?
            .with_root_certificates(Arc::clone(&roots))
            .with_client_auth_cert(chain.clone(), key.clone_key())?;

        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), provider())
                .allow_unauthenticated()
                .build()?;
        let mut client_server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(chain, key)?;
        client_server.send_tls13_tickets = 0;

        Ok(NodeTls {
            peer_server: Arc::new(peer_server),
            peer_client: Arc::new(peer_client),
            client_server: Arc::new(client_server),
            roots,
        })
    }

    /// The CA roots this node trusts.
    pub fn roots(&self) -> &RootCertStore {
        &self.roots
    }
}

/// The node a certificate (already verified against the cluster CA by the handshake) names:
/// the `<id>` of its one `node-<id>.tally` DNS name. A certificate naming no node, or more
/// than one, names none.
pub fn peer_identity(end_entity: &CertificateDer<'_>) -> Option<NodeId> {
    let certificate = webpki::EndEntityCert::try_from(end_entity).ok()?;
    let mut ids = certificate.valid_dns_names().filter_map(|name| {
        let id = name.strip_prefix("node-")?.strip_suffix(".tally")?;
        // Canonical decimal only, so one id has one name.
        let parsed: NodeId = id.parse().ok()?;
        (parsed.to_string() == id).then_some(parsed)
    });
    let id = ids.next()?;
    ids.next().is_none().then_some(id)
}

/// A cluster CA and node certificates, made with rcgen: for a test or a first deployment
/// (`tally certs`). The CA's key is kept in `ca.key` so more node certificates can be made
/// later with the same CA.
pub mod pki {
    use std::path::Path;

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };

    use super::{peer_name, NodeId, TlsFiles};

    /// Why certificates could not be made.
    #[derive(Debug, thiserror::Error)]
    #[non_exhaustive]
    pub enum PkiError {
        #[error("certificate generation: {0}")]
        Rcgen(#[from] rcgen::Error),
        #[error("{path}: {source}")]
        Io {
            path: std::path::PathBuf,
            source: std::io::Error,
        },
    }

    fn write(path: &Path, text: &str, secret: bool) -> Result<(), PkiError> {
        let io = |source| PkiError::Io {
            path: path.to_owned(),
            source,
        };
        std::fs::write(path, text).map_err(io)?;
        if secret {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
        Ok(())
    }

    fn ca_params(name: &str) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Tally cluster CA {name}"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params
    }

    /// A CA in `dir` (`ca.pem`, `ca.key`, and `ca.name`: the name its subject is built from,
    /// which signing needs again) named after `name`, replacing any there.
    pub fn make_ca(dir: &Path, name: &str) -> Result<(), PkiError> {
        std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let key = KeyPair::generate()?;
        let certificate = ca_params(name).self_signed(&key)?;
        write(&dir.join("ca.pem"), &certificate.pem(), false)?;
        write(&dir.join("ca.name"), name, false)?;
        write(&dir.join("ca.key"), &key.serialize_pem(), true)
    }

    /// The CA in `dir` as an issuer: its key, and a certificate with the same subject and key
    /// as `ca.pem` (what a certificate needs of its issuer, the name and key identifier, is
    /// identical, so the chain verifies against the original `ca.pem`).
    fn issuer(dir: &Path) -> Result<(rcgen::Certificate, KeyPair), PkiError> {
        let read = |file: &str| {
            let path = dir.join(file);
            std::fs::read_to_string(&path).map_err(|source| PkiError::Io { path, source })
        };
        let key = KeyPair::from_pem(&read("ca.key")?)?;
        let name = read("ca.name")?;
        let certificate = ca_params(name.trim()).self_signed(&key)?;
        Ok((certificate, key))
    }

    /// A certificate for node `id` signed by the CA in `dir` (made by [`make_ca`]), naming
    /// [`peer_name`]`(id)` and `hosts` (DNS names or IP addresses clients dial). Writes
    /// `node-<id>.pem` and `node-<id>.key` in `dir`; returns the node's files.
    pub fn make_node(dir: &Path, id: NodeId, hosts: &[String]) -> Result<TlsFiles, PkiError> {
        let (ca, ca_key) = issuer(dir)?;
        let mut names = vec![peer_name(id)];
        names.extend(hosts.iter().cloned());
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, peer_name(id));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        let certificate = params.signed_by(&key, &ca, &ca_key)?;
        let files = TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("node-{id}.pem")),
            key: dir.join(format!("node-{id}.key")),
        };
        write(&files.cert, &certificate.pem(), false)?;
        write(&files.key, &key.serialize_pem(), true)?;
        Ok(files)
    }

    /// A certificate for a client called `name` (no node identity, client use only) signed
    /// by the CA in `dir`; writes `client-<name>.pem` and `.key`.
    pub fn make_client(dir: &Path, name: &str) -> Result<(), PkiError> {
        let (ca, ca_key) = issuer(dir)?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate()?;
        let certificate = params.signed_by(&key, &ca, &ca_key)?;
        write(
            &dir.join(format!("client-{name}.pem")),
            &certificate.pem(),
            false,
        )?;
        write(
            &dir.join(format!("client-{name}.key")),
            &key.serialize_pem(),
            true,
        )
    }
}
