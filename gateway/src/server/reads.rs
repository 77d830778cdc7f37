//! Reads: what a lookup, statement or balances request answers from the applied state, within
//! the session's scope.

use bytes::Bytes;
use tally_client::protocol::{encode_balances, encode_statement_reply, LookupKind, Status};
use tally_client::query::{put_event_entry, put_position_balances, query_reply_header, QueryKind};
use tally_engine::{LedgerEvent, StatementEvent};

use std::sync::Arc;

use tally_client::access_trail::AccessTrailRequest;
use tally_client::proofs::{
    encode_checkpoint_reply, encode_consistency_reply, encode_prove_reply, CheckpointReply,
    ProveReply, ProveRequest, Proven, WhichCheckpoint, LATEST,
};

use tally_engine::checkpoint::NoteVerifier;

use openraft::error::{CheckIsLeaderError, RaftError};
use tally_client::protocol::{Refusal, FLAG_LINEARIZABLE};

use super::{Context, Raft};
use crate::auth::{trade_accounts, Access};
use tally_engine::settlement_wire::InstructionView;

/// A read request, owned so it can move into its task.
pub(super) enum Read {
    Lookup {
        what: LookupKind,
        ids: Vec<u128>,
    },
    Statement(tally_engine::StatementFilter),
    /// A page of records matching a filter.
    Query {
        kind: QueryKind,
        filter: tally_engine::QueryFilter,
    },
    SettlementCycle {
        cycle: u32,
        limit: u32,
        after: u128,
    },
    BalancesAsOf {
        account_id: u128,
        timestamp: u64,
    },
    /// A checkpoint of the verifiable log, written as a note of the log `origin`.
    Checkpoint {
        which: WhichCheckpoint,
        origin: Option<Arc<str>>,
        witnesses: Arc<[NoteVerifier]>,
    },
    Prove(ProveRequest),
    Consistency {
        old: u64,
        new: u64,
    },
    /// The reads of an account in the access trail, against one of its checkpoints.
    AccessTrail {
        request: AccessTrailRequest,
        origin: Option<Arc<str>>,
    },
}

/// The reply to `read`, served from `engine` at `commit_index`, and the accounts whose data
/// it shows (what the access trail records of it: none for a refusal or a read of the logs'
/// checkpoints and proofs between sizes, which show no account).
pub(super) fn answer_read(
    context: &Context,
    access: &Access,
    engine: &tally_engine::Engine,
    read: Read,
    commit_index: u64,
) -> (Bytes, Vec<u128>) {
    let mut touched = Vec::new();
    let payload = answer(context, access, engine, read, commit_index, &mut touched);
    (payload, touched)
}

fn answer(
    context: &Context,
    access: &Access,
    engine: &tally_engine::Engine,
    read: Read,
    commit_index: u64,
    touched: &mut Vec<u128>,
) -> Bytes {
    // Outside the scope reads as absent, alike in every read (docs/protocol.md): lookups leave
    // both out, statements and balances answer both with this one refusal.
    let not_found =
        || context.refuse_with(Status::NotFound, "no such account (or not in your scope)");
    match read {
        Read::Lookup { what, ids } => {
            let mut body = Vec::with_capacity(ids.len() * 128);
            for id in ids {
                // Each record straight into the reply: no allocation per record on a read
                // that holds the applied state.
                match what {
                    LookupKind::Accounts => {
                        if let Some(account) = engine
                            .lookup_account(id)
                            .filter(|account| access.account_visible(account))
                        {
                            touched.push(account.id);
                            body.extend_from_slice(&account.encode());
                        }
                    }
                    LookupKind::Transfers => {
                        if let Some(transfer) = engine
                            .lookup_transfer(id)
                            .filter(|transfer| access.transfer_visible(transfer))
                        {
                            touched.extend(transfer_accounts(&transfer));
                            body.extend_from_slice(&transfer.encode());
                        }
                    }
                    LookupKind::Trades => {
                        if let Some(trade) = engine
                            .lookup_trade(id)
                            .filter(|trade| access.trade_visible(engine, trade))
                        {
                            touched.extend(trade_accounts(&trade));
                            body.extend_from_slice(&trade.encode());
                        }
                    }
                    LookupKind::Instructions => {
                        if let Some(state) = engine
                            .settlement()
                            .instruction(id)
                            .filter(|state| access.instruction_visible(engine, &state.instruction))
                        {
                            touched.extend(state.instruction.accounts());
                            body.extend_from_slice(&InstructionView::of(state).encode());
                        }
                    }
                }
            }
            context.ok(commit_index, &body)
        }
        Read::Statement(filter) => {
            if !access.account_id_readable(engine, filter.account_id) {
                return not_found();
            }
            match engine.statement(&filter) {
                Ok(page) => {
                    touched.push(filter.account_id);
                    context.ok(commit_index, &encode_statement_reply(&page))
                }
                Err(tally_engine::QueryError::AccountNotFound) => not_found(),
                Err(error) => context.refuse_with(Status::BadRequest, error.to_string()),
            }
        }
        Read::Query { kind, filter } => match query(access, engine, kind, &filter, touched) {
            Ok(body) => context.ok(commit_index, &body),
            Err(error) => context.refuse_with(Status::BadRequest, error.to_string()),
        },
        Read::SettlementCycle {
            cycle,
            limit,
            after,
        } => {
            // A reader sees its own instructions only, in the counts too; an operator all.
            let visible =
                |i: &tally_engine::settlement::Instruction| access.instruction_visible(engine, i);
            match engine
                .settlement()
                .cycle_summary(cycle, after, limit as usize, visible)
            {
                Some(summary) => {
                    for view in &summary.exceptions {
                        touched.extend(view.instruction.accounts());
                    }
                    context.ok(commit_index, &summary.encode())
                }
                None => context.refuse_with(Status::NotFound, format!("there is no cycle {cycle}")),
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
                Ok(balances) => {
                    touched.push(account_id);
                    context.ok(commit_index, &encode_balances(&balances))
                }
                Err(tally_engine::QueryError::AccountNotFound) => not_found(),
                Err(error) => context.refuse_with(Status::BadRequest, error.to_string()),
            }
        }
        Read::Checkpoint {
            which,
            origin,
            witnesses,
        } => {
            let Some(origin) = origin else {
                return context.refuse_with(
                    Status::NotFound,
                    "this node has no checkpoint key ([verifiable] key_file): it serves no \
                     checkpoints",
                );
            };
            let found = match which {
                WhichCheckpoint::Index(index) => checkpoint(engine, index),
                // Entries this replica has not applied yet cannot be said covered here.
                WhichCheckpoint::Covering(covering) if covering > commit_index => {
                    return context.refuse_with(
                        Status::NotFound,
                        format!(
                            "commit index {covering} is not applied on this replica yet (it \
                             applied {commit_index}); ask the leader, or again shortly"
                        ),
                    )
                }
                WhichCheckpoint::Covering(covering) => engine.checkpoint_covering(covering),
            };
            match found {
                Some((index, signed)) => {
                    // The cosignatures kept, by the witnesses this node knows by name.
                    let mut note = signed.note(&origin);
                    for cosignature in engine.cosignatures_of(index) {
                        let witness = witnesses.iter().find(|w| w.key_id() == cosignature.key_id);
                        if let Some(witness) = witness {
                            note.push_str(&cosignature.line(witness.name()));
                        }
                    }
                    let reply = CheckpointReply {
                        index,
                        size: signed.size,
                        note,
                    };
                    context.ok(commit_index, &encode_checkpoint_reply(&reply))
                }
                None => context.refuse_with(Status::NotFound, no_checkpoint(engine, which)),
            }
        }
        Read::Prove(request) => {
            let Some((index, signed)) = checkpoint(engine, request.checkpoint) else {
                let why = no_checkpoint(engine, WhichCheckpoint::Index(request.checkpoint));
                return context.refuse_with(Status::NotFound, why);
            };
            // The accounts each visible id shows.
            let visible = |id: u128| -> Option<Vec<u128>> {
                if request.accounts {
                    engine
                        .lookup_account(id)
                        .filter(|account| access.account_visible(account))
                        .map(|account| vec![account.id])
                } else if let Some(transfer) = engine.lookup_transfer(id) {
                    access
                        .transfer_visible(&transfer)
                        .then(|| transfer_accounts(&transfer).to_vec())
                } else {
                    engine
                        .lookup_trade(id)
                        .filter(|trade| access.trade_visible(engine, trade))
                        .map(|trade| trade_accounts(&trade).to_vec())
                }
            };
            let proofs = request
                .ids
                .iter()
                .filter_map(|&id| {
                    let accounts = visible(id)?;
                    let proof = engine.prove(id, request.accounts, signed.size)?.ok()?;
                    touched.extend(accounts);
                    Some(Proven {
                        id,
                        index: proof.index,
                        leaf: proof.leaf,
                        proof: proof.proof,
                    })
                })
                .collect();
            let reply = ProveReply {
                checkpoint: index,
                size: signed.size,
                proofs,
            };
            context.ok(commit_index, &encode_prove_reply(&reply))
        }
        Read::AccessTrail { request, origin } => {
            let answer = super::access::answer_trail(
                context,
                access,
                engine,
                &request,
                origin,
                commit_index,
            );
            if answer.is_ok() {
                touched.push(request.account);
            }
            answer.unwrap_or_else(|refusal| refusal)
        }
        Read::Consistency { old, new } => match engine.log_consistency(old, new) {
            Ok(proof) => context.ok(commit_index, &encode_consistency_reply(&proof)),
            Err(error) => context.refuse_with(
                Status::BadRequest,
                format!(
                    "no consistency proof from {old} to {new} here (this replica's log holds \
                     {} events): {error}",
                    engine.log_size()
                ),
            ),
        },
    }
}

/// A query reply: a page of the records matching `filter` that the session may see (a page
/// counts only those towards its limit), each record written straight into the reply.
fn query(
    access: &Access,
    engine: &tally_engine::Engine,
    kind: QueryKind,
    filter: &tally_engine::QueryFilter,
    touched: &mut Vec<u128>,
) -> Result<Vec<u8>, tally_engine::QueryError> {
    // The header is written once the count is known.
    let mut records = vec![0; 16];
    let (count, next) = match kind {
        QueryKind::Accounts => {
            let page = engine.query_accounts(filter, |a| access.account_visible(a))?;
            for account in &page.items {
                touched.push(account.id);
                records.extend_from_slice(&account.encode());
            }
            (page.items.len(), page.next)
        }
        QueryKind::Positions { at } => {
            let page = engine.query_positions(filter, at, |a| access.account_visible(a))?;
            for position in &page.items {
                touched.push(position.account.id);
                records.extend_from_slice(&position.account.encode());
                put_position_balances(&position.balances, &mut records);
            }
            (page.items.len(), page.next)
        }
        QueryKind::Transfers => {
            let page = engine.query_transfers(filter, |t| access.transfer_visible(t))?;
            for transfer in &page.items {
                touched.extend(transfer_accounts(transfer));
                records.extend_from_slice(&transfer.encode());
            }
            (page.items.len(), page.next)
        }
        QueryKind::Trades => {
            let page = engine.query_trades(filter, |t| access.trade_visible(engine, t))?;
            for trade in &page.items {
                touched.extend(trade_accounts(trade));
                records.extend_from_slice(&trade.encode());
            }
            (page.items.len(), page.next)
        }
        QueryKind::Events => {
            let page = engine.query_events(filter, |event| access.event_visible(engine, event))?;
            for entry in &page.items {
                push_event_accounts(engine, &entry.event, touched);
                put_event_entry(entry, &mut records);
            }
            (page.items.len(), page.next)
        }
    };
    records[..16].copy_from_slice(&query_reply_header(count, next));
    Ok(records)
}

/// Appends the accounts an applied event names: the account created, a transfer's two, a
/// trade's four, an expiry's pending event's.
fn push_event_accounts(engine: &tally_engine::Engine, event: &LedgerEvent, out: &mut Vec<u128>) {
    match event {
        LedgerEvent::AccountCreated(account) => out.push(account.id),
        LedgerEvent::Applied(StatementEvent::Transfer(t)) => out.extend(transfer_accounts(t)),
        LedgerEvent::Applied(StatementEvent::Trade(t)) => out.extend(trade_accounts(t)),
        LedgerEvent::Applied(StatementEvent::TransferExpired { pending_id }) => {
            out.extend(
                engine
                    .lookup_transfer(*pending_id)
                    .map(|t| transfer_accounts(&t))
                    .into_iter()
                    .flatten(),
            );
        }
        LedgerEvent::Applied(StatementEvent::TradeExpired { pending_id }) => {
            out.extend(
                engine
                    .lookup_trade(*pending_id)
                    .map(|t| trade_accounts(&t))
                    .into_iter()
                    .flatten(),
            );
        }
    }
}

/// The accounts a transfer moves.
fn transfer_accounts(transfer: &tally_engine::records::Transfer) -> [u128; 2] {
    [transfer.debit_account_id, transfer.credit_account_id]
}

/// Checkpoint `index` (`LATEST`: the newest) and its index.
fn checkpoint(
    engine: &tally_engine::Engine,
    index: u64,
) -> Option<(u64, tally_engine::checkpoint::SignedCheckpoint)> {
    if index == LATEST {
        engine.latest_checkpoint()
    } else {
        engine.checkpoint(index).map(|signed| (index, signed))
    }
}

fn no_checkpoint(engine: &tally_engine::Engine, which: WhichCheckpoint) -> String {
    match (engine.checkpoints_count(), which) {
        (0, _) => "this replica holds no checkpoint yet (one is signed within a second of events \
                   committing, on a cluster with a key)"
            .to_owned(),
        (_, WhichCheckpoint::Covering(commit_index)) => format!(
            "no checkpoint covers commit index {commit_index} yet: the leader signs one within \
             about a second; ask again shortly"
        ),
        (count, WhichCheckpoint::Index(index)) => {
            format!("no checkpoint {index}: this replica holds checkpoints 0..{count}")
        }
    }
}

type LateRefusal = Box<dyn FnOnce(&Context) -> Bytes + Send>;

/// Wait until a read with these flags may be served here.
pub(super) async fn linearize(raft: &Raft, flags: u16) -> Result<(), LateRefusal> {
    if flags & FLAG_LINEARIZABLE == 0 {
        return Ok(());
    }
    match raft.ensure_linearizable().await {
        Ok(_) => Ok(()),
        Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward))) => {
            let leader = forward
                .leader_id
                .zip(forward.leader_node.map(|node| node.client_addr));
            Err(Box::new(move |context: &Context| {
                context.refuse(
                    Status::NotLeader,
                    &Refusal {
                        leader,
                        event: None,
                        message: "linearizable reads are served by the leader".to_owned(),
                    },
                )
            }))
        }
        Err(error) => {
            let message = format!("leadership not confirmed: {error}");
            Err(Box::new(move |context: &Context| {
                context.refuse_with(Status::Unavailable, message)
            }))
        }
    }
}
