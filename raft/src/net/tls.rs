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

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::replication::types::NodeId;

/// The DNS name a node's certificate carries to prove it is node `id` of its cluster.
pub fn peer_name(id: NodeId) -> String {
    format!("node-{id}.tally")
}

/// Why TLS could not be set up from files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path} holds no certificate")]
    NoCertificate { path: PathBuf },
    #[error("invalid CA certificate in {path}: {source}")]
    Ca {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("invalid TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("invalid client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates in a PEM file (at least one).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |source| TlsError::Read {
        path: path.to_owned(),
        source,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certificates)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The trust anchors in a CA file. Several CAs may be listed (during a CA rotation both the
/// old and the new one are trusted).
pub fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(path)? {
        roots.add(certificate).map_err(|source| TlsError::Ca {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(roots)
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

/// What a client needs to speak TLS to a node's client port: the CA to verify the node
/// against and, optionally, a certificate to present.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
    /// Verify the node's certificate for this name instead of the host of the address dialled
    /// (for a node reached by an address its certificate does not name, e.g. through a tunnel).
    server_name: Option<String>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Trust the CA(s) in `ca`; present the certificate `identity` (chain file, key file) if
    /// given.
    pub fn new(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<ClientTls, TlsError> {
        let roots = read_roots(ca)?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots);
        let config = match identity {
            Some((cert, key)) => {
                builder.with_client_auth_cert(read_certificates(cert)?, read_key(key)?)?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(ClientTls {
            config: Arc::new(config),
            server_name: None,
        })
    }

    /// Verify every node's certificate for `name` rather than for the host dialled.
    pub fn with_server_name(mut self, name: &str) -> ClientTls {
        self.server_name = Some(name.to_owned());
        self
    }

    /// Complete a TLS handshake on `stream`, dialled at `addr` ("host:port").
    pub async fn handshake(&self, stream: TcpStream, addr: &str) -> std::io::Result<Stream> {
        let host = match &self.server_name {
            Some(name) => name.clone(),
            None => host_of(addr).to_owned(),
        };
        let name = ServerName::try_from(host.clone()).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{host:?} is not a host name or address a certificate can name"),
            )
        })?;
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.config));
        let stream = connector.connect(name, stream).await.map_err(explain)?;
        Ok(Stream::TlsClient(Box::new(stream)))
    }
}

/// The host of "host:port" or "[v6]:port".
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// A handshake error with a hint for the usual causes, so a user sees why rather than a bare
/// alert code. Certificate and protocol failures keep their kind (`InvalidData`: no retry
/// helps); a connection closed during the handshake keeps its own (a full connection budget
/// closes it too, and that passes).
pub fn explain(error: std::io::Error) -> std::io::Error {
    let text = error.to_string();
    let hint = if text.contains("InvalidContentType") || text.contains("corrupt message") {
        " (the other side does not speak TLS: is it a plaintext port?)"
    } else if text.contains("NotValidForName") || text.contains("not valid for name") {
        " (the node's certificate does not name the host dialled)"
    } else if [
        "UnknownIssuer",
        "unknown issuer",
        "BadSignature",
        "bad signature",
    ]
    .iter()
    .any(|cause| text.contains(cause))
    {
        " (the certificate is not from a trusted CA)"
    } else if matches!(
        error.kind(),
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
    ) {
        " (the node closed the connection during the TLS handshake: does it serve plain TCP \
         (insecure_plaintext), or did it refuse this client's certificate?)"
    } else {
        ""
    };
    std::io::Error::new(error.kind(), format!("TLS handshake failed: {text}{hint}"))
}

/// Whether the first bytes of what should have been a frame are a TLS record (a handshake or
/// an alert): a plaintext client talking to a TLS port reads the node's alert this way.
pub fn looks_like_tls(first: &[u8]) -> bool {
    matches!(first, [0x15 | 0x16, 0x03, 0x00..=0x04, ..])
}

/// A connection between Tally processes: plain TCP (only where a config says
/// `insecure_plaintext`), or TLS on TCP as the dialling or the accepting side.
pub enum Stream {
    Plain(TcpStream),
    TlsClient(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    TlsServer(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Stream {
    /// The TCP connection underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(stream) => stream,
            Stream::TlsClient(stream) => stream.get_ref().0,
            Stream::TlsServer(stream) => stream.get_ref().0,
        }
    }

    /// The certificate the other side presented, if any (its own first).
    pub fn peer_certificate(&self) -> Option<&CertificateDer<'static>> {
        match self {
            Stream::Plain(_) => None,
            Stream::TlsClient(stream) => stream.get_ref().1.peer_certificates()?.first(),
            Stream::TlsServer(stream) => stream.get_ref().1.peer_certificates()?.first(),
        }
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Stream::Plain(_) => "plain",
            Stream::TlsClient(_) => "tls-client",
            Stream::TlsServer(_) => "tls-server",
        };
        f.debug_tuple("Stream").field(&kind).finish()
    }
}

macro_rules! delegate {
    ($self:ident, $stream:ident => $call:expr) => {
        match $self.get_mut() {
            Stream::Plain($stream) => {
                let $stream = std::pin::Pin::new($stream);
                $call
            }
            Stream::TlsClient($stream) => {
                let $stream = std::pin::Pin::new(&mut **$stream);
                $call
            }
            Stream::TlsServer($stream) => {
                let $stream = std::pin::Pin::new(&mut **$stream);
                $call
            }
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        delegate!(self, stream => stream.poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        delegate!(self, stream => stream.poll_write(cx, buf))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        delegate!(self, stream => stream.poll_flush(cx))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        delegate!(self, stream => stream.poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        delegate!(self, stream => stream.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(stream) => stream.is_write_vectored(),
            Stream::TlsClient(stream) => stream.is_write_vectored(),
            Stream::TlsServer(stream) => stream.is_write_vectored(),
        }
    }
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
