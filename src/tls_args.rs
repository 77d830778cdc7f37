//! How every client command of the binary (`tally client`, `tally admin`, `tally loadgen`
//! against a running cluster) finds the TLS settings for the nodes' client listeners: flags or `TALLY_CA`, `TALLY_CERT`, `TALLY_KEY`, `TALLY_SERVER_NAME`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use tally_client::ClientTls;

#[derive(Clone, Debug, Default, clap::Args)]
pub struct ClientTlsArgs {
    /// The cluster CA file to verify the nodes against (their certificates must name the host
    /// dialled).
    #[arg(long, env = "TALLY_CA")]
    pub ca: Option<PathBuf>,
    /// A client certificate to present (PEM chain); needs --key.
    #[arg(long, env = "TALLY_CERT", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "TALLY_KEY", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Verify every node's certificate for this name instead of the host dialled.
    #[arg(long, env = "TALLY_SERVER_NAME")]
    pub server_name: Option<String>,
    /// Speak plain TCP, to nodes configured with `insecure_plaintext = true`.
    #[arg(long, conflicts_with = "ca")]
    pub insecure_plaintext: bool,
}

impl ClientTlsArgs {
    /// The TLS to speak, or `None` for plain TCP (only when asked for).
    pub fn client_tls(&self) -> anyhow::Result<Option<ClientTls>> {
        if self.insecure_plaintext {
            return Ok(None);
        }
        let Some(ca) = &self.ca else {
            bail!(
                "no CA to verify the nodes with: set TALLY_CA (or --ca) to the cluster CA file, \
                 or pass --insecure-plaintext for nodes that serve plain TCP"
            );
        };
        let identity = self.cert.as_deref().zip(self.key.as_deref());
        let tls = ClientTls::new(ca, identity).context("TLS settings")?;
        Ok(Some(match &self.server_name {
            Some(name) => tls.with_server_name(name),
            None => tls,
        }))
    }
}
