//! TLS streams for every Tally connection (docs/security.md): reading certificates, keys and
//! CA files; [`ClientTls`], what a client needs to verify a node and speak TLS to it; and
//! [`Stream`], a connection that is plain TCP or TLS as the dialling or accepting side. The
//! node's own configurations (the peer network's mutual TLS, the client port's certificate)
//! are built from these by the replica crate. TLS 1.3 only, ring's primitives.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

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

/// The crypto provider every Tally TLS configuration uses: ring's.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
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

/// The private key in a PEM file.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
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
