//! Queries by field (docs/protocol.md, "Queries"): one page per call, and every page of a
//! filter in turn.

use super::{Client, ClientError};
use crate::protocol::Operation;
use crate::query::{
    decode_accounts_page, decode_positions_page, decode_trades_page, decode_transfers_page,
    encode_query_request, QueryKind,
};
use tally_engine::records::{Account, Trade, Transfer};
use tally_engine::{Position, QueryFilter, QueryPage};

impl Client {
    /// One page of the accounts matching `filter`, oldest first (or newest first), and where
    /// the next page starts. A page may hold fewer than `filter.limit` accounts, even none,
    /// and not be the last: go on with `filter.after(next)` while `next` is `Some`.
    pub async fn query_accounts(
        &self,
        filter: &QueryFilter,
    ) -> Result<QueryPage<Account>, ClientError> {
        let body = self.query(QueryKind::Accounts, filter).await?;
        decode_accounts_page(&body).map_err(|error| ClientError::Decode(error.to_string()))
    }

    /// One page of the transfers matching `filter` (see [`Client::query_accounts`]).
    pub async fn query_transfers(
        &self,
        filter: &QueryFilter,
    ) -> Result<QueryPage<Transfer>, ClientError> {
        let body = self.query(QueryKind::Transfers, filter).await?;
        decode_transfers_page(&body).map_err(|error| ClientError::Decode(error.to_string()))
    }

    /// One page of the trades matching `filter` (a trade matches a ledger on either leg).
    pub async fn query_trades(
        &self,
        filter: &QueryFilter,
    ) -> Result<QueryPage<Trade>, ClientError> {
        let body = self.query(QueryKind::Trades, filter).await?;
        decode_trades_page(&body).map_err(|error| ClientError::Decode(error.to_string()))
    }

    /// One page of the accounts matching `filter` that existed at `at` (ns; 0: now), each
    /// with its balances after every change up to `at`.
    pub async fn positions(
        &self,
        filter: &QueryFilter,
        at: u64,
    ) -> Result<QueryPage<Position>, ClientError> {
        let body = self.query(QueryKind::Positions { at }, filter).await?;
        decode_positions_page(&body).map_err(|error| ClientError::Decode(error.to_string()))
    }

    async fn query(
        &self,
        kind: QueryKind,
        filter: &QueryFilter,
    ) -> Result<bytes::Bytes, ClientError> {
        let operation = match kind {
            QueryKind::Accounts => Operation::QueryAccounts,
            QueryKind::Transfers => Operation::QueryTransfers,
            QueryKind::Trades => Operation::QueryTrades,
            QueryKind::Positions { .. } => Operation::QueryPositions,
        };
        self.read(operation, encode_query_request(filter, kind))
            .await
    }
}
