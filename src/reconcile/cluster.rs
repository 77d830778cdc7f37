//! The ledger's side from the cluster: [`LedgerSource`] over the client library's reads
//! (positions as of a time a page at a time, account lookups, statements). Reads only.

use anyhow::Context;
use tally_client::{Client, ClientConfig};
use tally_engine::{QueryFilter, StatementEntry, StatementFilter};

use super::{AccountFound, LedgerPosition, LedgerSource, PositionsPage};

/// Positions asked for per page (the most a page holds).
pub const PAGE_ACCOUNTS: u32 = tally_engine::limits::STATEMENT_ENTRIES_MAX;

/// The cluster, through a connected client.
pub struct ClusterSource {
    client: Client,
}

impl ClusterSource {
    pub async fn connect(config: ClientConfig) -> anyhow::Result<ClusterSource> {
        let client = Client::connect(config)
            .await
            .context("connecting to the cluster")?;
        Ok(ClusterSource { client })
    }

    /// A source over a client already connected.
    pub fn new(client: Client) -> ClusterSource {
        ClusterSource { client }
    }

    pub async fn close(&self) {
        self.client.close().await;
    }

    /// The newest record's timestamp the cluster holds: history up to it can no longer change
    /// (the same pin exports and the feed use).
    pub async fn history_reaches(&self) -> anyhow::Result<u64> {
        crate::query_cli::history_reaches(&self.client).await
    }
}

impl LedgerSource for ClusterSource {
    async fn positions(&self, ledger: u32, at: u64, from: u64) -> anyhow::Result<PositionsPage> {
        let filter = QueryFilter {
            ledger,
            timestamp_min: from,
            limit: PAGE_ACCOUNTS,
            ..QueryFilter::default()
        };
        let page = self.client.positions(&filter, at).await?;
        Ok(PositionsPage {
            items: page
                .items
                .iter()
                .map(|position| LedgerPosition {
                    account: position.account.id,
                    ledger: position.account.ledger,
                    balances: position.balances,
                })
                .collect(),
            next: page.next,
        })
    }

    async fn accounts(&self, ids: &[u128]) -> anyhow::Result<Vec<AccountFound>> {
        Ok(self
            .client
            .lookup_accounts(ids)
            .await?
            .iter()
            .map(|account| AccountFound {
                account: account.id,
                ledger: account.ledger,
                created: account.timestamp,
            })
            .collect())
    }

    async fn statement(
        &self,
        account: u128,
        min: u64,
        max: u64,
        limit: u32,
    ) -> anyhow::Result<Vec<StatementEntry>> {
        let filter = StatementFilter {
            account_id: account,
            timestamp_min: min,
            timestamp_max: max,
            limit,
            ..StatementFilter::default()
        };
        Ok(self.client.statement(&filter).await?)
    }
}
