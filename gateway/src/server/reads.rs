//! Reads: what a lookup, statement or balances request answers from the applied state, within
//! the session's scope.

use bytes::Bytes;
use tally_client::protocol::{encode_balances, encode_statement_reply, LookupKind, Status};

use super::Context;
use crate::auth::Access;

/// A read request, owned so it can move into its task.
pub(super) enum Read {
    Lookup { what: LookupKind, ids: Vec<u128> },
    Statement(tally_engine::StatementFilter),
    BalancesAsOf { account_id: u128, timestamp: u64 },
}

/// The reply to `read`, served from `engine` at `commit_index`.
pub(super) fn answer_read(
    context: &Context,
    access: &Access,
    engine: &tally_engine::Engine,
    read: Read,
    commit_index: u64,
) -> Bytes {
    // Outside the scope reads as absent, alike in every read (docs/protocol.md): lookups leave
    // both out, statements and balances answer both with this one refusal.
    let not_found =
        || context.refuse_with(Status::NotFound, "no such account (or not in your scope)");
    match read {
        Read::Lookup { what, ids } => {
            let mut body = Vec::with_capacity(ids.len() * 128);
            for id in ids {
                let record = match what {
                    LookupKind::Accounts => engine
                        .lookup_account(id)
                        .filter(|account| access.account_visible(account))
                        .map(|account| account.encode()),
                    LookupKind::Transfers => engine
                        .lookup_transfer(id)
                        .filter(|transfer| access.transfer_visible(transfer))
                        .map(|transfer| transfer.encode()),
                    LookupKind::Trades => engine
                        .lookup_trade(id)
                        .filter(|trade| access.trade_visible(engine, trade))
                        .map(|trade| trade.encode()),
                };
                if let Some(record) = record {
                    body.extend_from_slice(&record);
                }
            }
            context.ok(commit_index, &body)
        }
        Read::Statement(filter) => {
            if !access.account_id_readable(engine, filter.account_id) {
                return not_found();
            }
            match engine.statement(&filter) {
                Ok(entries) => context.ok(commit_index, &encode_statement_reply(&entries)),
                Err(tally_engine::QueryError::AccountNotFound) => not_found(),
                Err(error) => context.refuse_with(Status::BadRequest, error.to_string()),
            }
        }
        Read::BalancesAsOf {
            account_id,
            timestamp,
        } => {
            if !access.account_id_readable(engine, account_id) {
                return not_found();
            }
            match engine.balances_as_of(account_id, timestamp) {
                Ok(balances) => context.ok(commit_index, &encode_balances(&balances)),
                Err(tally_engine::QueryError::AccountNotFound) => not_found(),
                Err(error) => context.refuse_with(Status::BadRequest, error.to_string()),
            }
        }
    }
}
