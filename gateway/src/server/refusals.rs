//! Who may make a create request, judged before it is submitted: a settlement cycle's
//! lifecycle is an operator's (`Forbidden` for anyone else), and a scoped submitter's events
//! must stay within its scope (`OutOfScope`, `crate::scope`). Nothing of a refused request
//! reaches the log.

use bytes::Bytes;
use tally_client::protocol::{Refusal, Status};

use super::{Context, Gateway, INSTALLING};
use crate::auth::Access;
use crate::scope::{check_create, operator_only};

impl Gateway {
    /// The refusal of a create request its session may not make: `Forbidden` for a cycle's
    /// lifecycle command from anyone but an operator; `OutOfScope` for a scoped submitter's
    /// event outside its scope. `None` when every event is allowed.
    pub(super) fn out_of_scope(
        &self,
        context: &Context,
        access: &Access,
        operation: tally_engine::Operation,
        body: &[u8],
    ) -> Option<Bytes> {
        if operation == tally_engine::Operation::SettlementCommands && !access.may_operate() {
            if let Some((index, kind)) = operator_only(body) {
                return Some(context.refuse(
                    Status::Forbidden,
                    &Refusal {
                        leader: None,
                        event: Some(index),
                        message: format!(
                            "event {index}: {kind:?} runs a settlement cycle's lifecycle, \
                             which only an operator may do"
                        ),
                    },
                ));
            }
        }
        let scope = access.debit_scope()?;
        let checked = match operation {
            // Trades, instructions and instruction commands need the applied state (their
            // records carry no ledger); the others do not hold up the apply loop's lock.
            tally_engine::Operation::CreateTrades
            | tally_engine::Operation::CreateSettlements
            | tally_engine::Operation::CreateInstructions
            | tally_engine::Operation::SettlementCommands => {
                let checked = self.view.read(|applied| {
                    let engine = applied.engine()?;
                    Some(check_create(
                        scope,
                        operation,
                        body,
                        |id| engine.lookup_account(id).map(|account| account.ledger),
                        |id| engine.settlement().instruction(id).map(|s| s.instruction),
                    ))
                });
                match checked {
                    Some(checked) => checked,
                    None => return Some(context.refuse_with(Status::Unavailable, INSTALLING)),
                }
            }
            _ => check_create(scope, operation, body, |_| None, |_| None),
        };
        let refusal = checked.err()?;
        tracing::info!(
            client = context.header.client_id,
            event = refusal.index,
            reason = refusal.reason,
            "create request out of the submitter's scope"
        );
        Some(context.refuse(
            Status::OutOfScope,
            &Refusal {
                leader: None,
                event: Some(refusal.index),
                message: refusal.reason,
            },
        ))
    }
}
