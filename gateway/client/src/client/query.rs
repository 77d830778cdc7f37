//! Queries by field (docs/protocol.md, "Queries"): one page per call, and every page of a
//! filter in turn.

use super::{Client, ClientError};
use crate::protocol::Operation;
use crate::query::{
    decode_accounts_page, decode_events_page, decode_positions_page, decode_trades_page,
    decode_transfers_page, encode_query_request, QueryKind,
};
use tally_engine::records::{Account, Trade, Transfer};
use tally_engine::{FeedEntry, Position, QueryFilter, QueryPage};

/// Where the ledger's history has reached ([`Client::history_reached`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryReached {
    /// The newest applied event's timestamp (0: none yet).
    pub timestamp: u64,
    /// The commit index of the applied state that answered: every event up to `timestamp`
    /// was committed at or before it.
    pub commit_index: u64,
}

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

    /// One page of every applied event (accounts created, transfers, trades, expiries) with
    /// a timestamp in `filter`'s range, in timestamp order: the change feed's read. Events
    /// are selected by time only (a non-zero field of `filter` is refused); a reader sees
    /// those its scope shows.
    pub async fn query_events(
        &self,
        filter: &QueryFilter,
    ) -> Result<QueryPage<FeedEntry>, ClientError> {
        let body = self.query(QueryKind::Events, filter).await?;
        decode_events_page(&body).map_err(|error| ClientError::Decode(error.to_string()))
    }

    /// Where the ledger's history has reached: the newest applied event's timestamp (of those
    /// this client may see; 0 for none) and the commit index of the applied state that
    /// answered. Every event applied later has a later timestamp, so the history up to it can
    /// no longer change: what an export or the feed reads up to it is final.
    pub async fn history_reached(&self) -> Result<HistoryReached, ClientError> {
        let newest = QueryFilter {
            limit: 1,
            reversed: true,
            ..QueryFilter::default()
        };
        let reply = self
            .read_reply(
                Operation::QueryEvents,
                encode_query_request(&newest, QueryKind::Events),
            )
            .await?;
        let page = decode_events_page(&reply.body)
            .map_err(|error| ClientError::Decode(error.to_string()))?;
        // A page that found nothing visible within its scan bound still examined events
        // newer than its `next`.
        let timestamp = match (page.items.first(), page.next) {
            (Some(entry), _) => entry.timestamp,
            (None, Some(next)) => next + 1,
            (None, None) => 0,
        };
        Ok(HistoryReached {
            timestamp,
            commit_index: reply.commit_index,
        })
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
            QueryKind::Events => Operation::QueryEvents,
        };
        self.read(operation, encode_query_request(filter, kind))
            .await
    }
}
