//! Submitter scopes: which accounts a scoped submitter's create request may debit, and on
//! which ledgers it may open accounts (docs/protocol.md, "Authentication and scopes").
//!
//! The check is an authorization property of the credential, so it runs in the gateway before
//! submission, never in the engine: a request with one event outside the scope is refused
//! whole (`Status::OutOfScope`, naming the first such event and why) and nothing of it is
//! submitted. The engine still decides every balance; this only decides who may ask.
//!
//! What "in scope" means, per event (a zero id or ledger is never in scope):
//! - **Account**: its ledger is in the scope's ledgers, or its id in the scope's accounts.
//! - **Transfer** (new, pending, post or void): its debit account id is in the scope's
//!   accounts, or its `ledger` field is in the scope's ledgers. This is sound without looking
//!   at the applied state because the engine refuses the event otherwise: a new transfer's
//!   ledger must equal its accounts' ledger, and a post or void whose debit account or ledger
//!   is non-zero must equal the pending transfer's. So a scoped submitter's post or void must
//!   *fill in* the pending transfer's ledger or debit account (both are optional for an
//!   unscoped one). A transfer that closes its credit account (`CLOSING_CREDIT`) touches that
//!   account too: it must also be in scope (by ledger, or its id listed).
//! - **Trade** (new, pending, post or void): both debited sides — the seller's instrument
//!   account (`instrument_debit_account_id`, who delivers) and the buyer's cash account
//!   (`cash_debit_account_id`, who pays) — are in scope: listed by id, or an account of an
//!   allowed ledger. A trade record carries no ledger, so the ledger is read from the applied
//!   state. An account's ledger never changes once created, so what is read cannot go stale;
//!   the only race is an account created by a request still in flight, which is not applied
//!   yet and is refused as of unknown ledger: wait for the account's create reply (sent after
//!   it applied) before trading on it. A post or void must name both debited accounts (the
//!   engine checks they are the pending trade's).
//!
//! - **Settlement instruction**: its paying sides — the deliverer's securities account and the
//!   receiver's cash account — are in scope, read as for a trade.
//! - **Settlement command**: the cycle's lifecycle (open, cut off, run, close, cancel and
//!   reschedule, the fail limit) is an operator's alone ([`operator_only`], checked for every
//!   role); a hold or release names an instruction whose paying sides are in scope, and a
//!   cancellation the side of the party it speaks for (the deliverer's securities account, or
//!   the receiver's cash account). The instruction is read from the applied book: an
//!   instruction not applied yet is refused as unknown.
//!
//! A record that does not decode (unknown flag bits) is let through: the engine refuses it as
//! an event (`reserved_flag`) and it moves nothing.

use std::collections::BTreeSet;
use std::fmt::Display;

use tally_engine::records::{
    Account, CommandKind, RecordBytes, SettlementCommand, Trade, Transfer, TransferFlags,
};
use tally_engine::settlement::Instruction;
use tally_engine::Operation;

use crate::auth::Scope;

/// Why a create request is outside its submitter's scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OutOfScope {
    /// The first offending event's index in the request.
    pub(crate) index: u32,
    /// Why, for humans: what it debits and what the scope allows.
    pub(crate) reason: String,
}

/// Scope entries shown in a refusal: enough to see the mistake, bounded however large the
/// configured scope is.
const SHOWN_ENTRIES_MAX: usize = 8;

fn shown<T: Display>(set: &BTreeSet<T>) -> String {
    let mut text = String::from("[");
    for (n, item) in set.iter().enumerate() {
        if n == SHOWN_ENTRIES_MAX {
            text.push_str(&format!(", … {} more", set.len() - n));
            break;
        }
        if n > 0 {
            text.push_str(", ");
        }
        text.push_str(&item.to_string());
    }
    text.push(']');
    text
}

impl Scope {
    fn allows(&self) -> String {
        format!(
            "scope allows ledgers {} and accounts {}",
            shown(&self.ledgers),
            shown(&self.accounts)
        )
    }

    fn ledger_allowed(&self, ledger: u32) -> bool {
        ledger != 0 && self.ledgers.contains(&ledger)
    }

    fn account_listed(&self, id: u128) -> bool {
        id != 0 && self.accounts.contains(&id)
    }
}

/// Check every event of a create request's `body` (whole 128-byte records, as decoded) against
/// `scope`. `ledger_of` gives an applied account's ledger (trades only carry account ids).
pub(crate) fn check_create(
    scope: &Scope,
    operation: Operation,
    body: &[u8],
    ledger_of: impl Fn(u128) -> Option<u32>,
    instruction_of: impl Fn(u128) -> Option<Instruction>,
) -> Result<(), OutOfScope> {
    let (records, _) = body.as_chunks::<{ tally_engine::limits::RECORD_BYTES }>();
    for (index, record) in records.iter().enumerate() {
        let verdict = match operation {
            Operation::CreateAccounts => check_account(scope, record),
            Operation::CreateTransfers => check_transfer(scope, record),
            Operation::CreateTrades => check_trade(scope, record, &ledger_of),
            Operation::CreateSettlements => match tally_engine::records::settlement_event(record) {
                (Operation::CreateTrades, record) => check_trade(scope, &record, &ledger_of),
                (_, record) => check_transfer(scope, &record),
            },
            Operation::CreateInstructions => check_instruction(scope, record, &ledger_of),
            Operation::SettlementCommands => {
                check_command(scope, record, &ledger_of, &instruction_of)
            }
        };
        if let Err(why) = verdict {
            return Err(OutOfScope {
                index: u32::try_from(index).unwrap_or(u32::MAX),
                reason: format!("event {index}: {why}; the credential's {}", scope.allows()),
            });
        }
    }
    Ok(())
}

fn check_account(scope: &Scope, record: &RecordBytes) -> Result<(), String> {
    let Ok(account) = Account::decode(record) else {
        return Ok(());
    };
    if scope.ledger_allowed(account.ledger) || scope.account_listed(account.id) {
        return Ok(());
    }
    Err(format!(
        "creates account {} on ledger {}",
        account.id, account.ledger
    ))
}

fn check_transfer(scope: &Scope, record: &RecordBytes) -> Result<(), String> {
    let Ok(transfer) = Transfer::decode(record) else {
        return Ok(());
    };
    let resolves = transfer
        .flags
        .intersects(TransferFlags::POST_PENDING_TRANSFER | TransferFlags::VOID_PENDING_TRANSFER);
    let by_ledger = scope.ledger_allowed(transfer.ledger);
    if !by_ledger && !scope.account_listed(transfer.debit_account_id) {
        return Err(
            if resolves && transfer.ledger == 0 && transfer.debit_account_id == 0 {
                format!(
                    "posts or voids pending transfer {} without naming its ledger or debit \
                 account (a scoped submitter must fill in one of them)",
                    transfer.pending_id
                )
            } else {
                format!(
                    "debits account {} on ledger {}",
                    transfer.debit_account_id, transfer.ledger
                )
            },
        );
    }
    if transfer.flags.contains(TransferFlags::CLOSING_CREDIT)
        && !by_ledger
        && !scope.account_listed(transfer.credit_account_id)
    {
        return Err(format!(
            "closes credit account {} on ledger {}",
            transfer.credit_account_id, transfer.ledger
        ));
    }
    Ok(())
}

fn check_trade(
    scope: &Scope,
    record: &RecordBytes,
    ledger_of: &impl Fn(u128) -> Option<u32>,
) -> Result<(), String> {
    let Ok(trade) = Trade::decode(record) else {
        return Ok(());
    };
    check_debited(
        scope,
        &[
            (
                "instrument (the seller's delivery)",
                trade.instrument_debit_account_id,
            ),
            ("cash (the buyer's payment)", trade.cash_debit_account_id),
        ],
        ledger_of,
    )
}

fn check_instruction(
    scope: &Scope,
    record: &RecordBytes,
    ledger_of: &impl Fn(u128) -> Option<u32>,
) -> Result<(), String> {
    let Ok(instruction) = Instruction::decode(record) else {
        return Ok(());
    };
    check_debited(scope, &paying_sides(&instruction), ledger_of)
}

/// An instruction's paying sides: the deliverer's securities and the receiver's cash.
fn paying_sides(instruction: &Instruction) -> [(&'static str, u128); 2] {
    [
        (
            "securities (the deliverer's delivery)",
            instruction.deliverer_securities,
        ),
        ("cash (the receiver's payment)", instruction.receiver_cash),
    ]
}

/// The first command of a settlement-commands body that runs a cycle's lifecycle (an
/// operator's alone, whatever the scope), with its index and kind.
pub(crate) fn operator_only(body: &[u8]) -> Option<(u32, CommandKind)> {
    let (records, _) = body.as_chunks::<{ tally_engine::limits::RECORD_BYTES }>();
    records.iter().enumerate().find_map(|(index, record)| {
        let kind = CommandKind::from_code(SettlementCommand::decode(record)?.kind)?;
        let lifecycle = !matches!(
            kind,
            CommandKind::Hold | CommandKind::Release | CommandKind::Cancel
        );
        lifecycle.then(|| (u32::try_from(index).unwrap_or(u32::MAX), kind))
    })
}

fn check_command(
    scope: &Scope,
    record: &RecordBytes,
    ledger_of: &impl Fn(u128) -> Option<u32>,
    instruction_of: &impl Fn(u128) -> Option<Instruction>,
) -> Result<(), String> {
    // Undecodable, unknown or lifecycle commands: the engine refuses the first two, and
    // `operator_only` the last before this runs.
    let Some(command) = SettlementCommand::decode(record) else {
        return Ok(());
    };
    let Some(kind) = CommandKind::from_code(command.kind) else {
        return Ok(());
    };
    if !matches!(
        kind,
        CommandKind::Hold | CommandKind::Release | CommandKind::Cancel
    ) {
        return Ok(());
    }
    let Some(instruction) = instruction_of(command.instruction) else {
        return Err(format!(
            "names instruction {}, which is not applied on this node (wait for its create \
             reply)",
            command.instruction
        ));
    };
    let sides = paying_sides(&instruction);
    let sides: &[(&str, u128)] = match (kind, command.party) {
        (CommandKind::Cancel, 1) => &sides[..1],
        (CommandKind::Cancel, 2) => &sides[1..],
        _ => &sides,
    };
    check_debited(scope, sides, ledger_of)
}

/// Each debited side is in scope: listed by id, or an applied account of an allowed ledger.
fn check_debited(
    scope: &Scope,
    sides: &[(&str, u128)],
    ledger_of: &impl Fn(u128) -> Option<u32>,
) -> Result<(), String> {
    for &(side, id) in sides {
        if scope.account_listed(id) {
            continue;
        }
        match ledger_of(id) {
            Some(ledger) if scope.ledger_allowed(ledger) => {}
            Some(ledger) => return Err(format!("debits {side} account {id} on ledger {ledger}")),
            None if id == 0 => {
                return Err(format!(
                    "names no {side} debit account (a scoped submitter must name every \
                     debited account: a trade's, post's or void's two)"
                ))
            }
            None => {
                return Err(format!(
                    "debits {side} account {id}, which is not applied on this node, so its \
                     ledger is unknown (wait for its create reply)"
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_engine::records::{AccountFlags, TradeFlags};

    fn no_instructions(_: u128) -> Option<Instruction> {
        None
    }

    fn scope() -> Scope {
        Scope {
            ledgers: [1].into(),
            accounts: [77].into(),
        }
    }

    /// Applied accounts for the trade checks: 10 and 11 on ledger 1, 20 and 21 on ledger 2.
    fn ledger_of(id: u128) -> Option<u32> {
        match id {
            10 | 11 => Some(1),
            20 | 21 => Some(2),
            77 => Some(3),
            _ => None,
        }
    }

    fn check<T>(
        operation: Operation,
        events: &[T],
        encode: impl Fn(&T) -> RecordBytes,
    ) -> Option<u32> {
        let body: Vec<u8> = events.iter().flat_map(encode).collect();
        check_create(&scope(), operation, &body, ledger_of, no_instructions)
            .err()
            .map(|refusal| refusal.index)
    }

    fn transfer(debit: u128, credit: u128, ledger: u32, flags: TransferFlags) -> Transfer {
        Transfer {
            id: 1,
            debit_account_id: debit,
            credit_account_id: credit,
            ledger,
            amount: 1,
            code: 1,
            flags,
            ..Transfer::default()
        }
    }

    fn trade(instrument_debit: u128, cash_debit: u128, flags: TradeFlags) -> Trade {
        Trade {
            id: 1,
            instrument_debit_account_id: instrument_debit,
            instrument_credit_account_id: 500,
            cash_debit_account_id: cash_debit,
            cash_credit_account_id: 600,
            quantity: 1,
            cash_amount: 1,
            code: 1,
            flags,
            ..Trade::default()
        }
    }

    /// Proves accounts are created only on allowed ledgers or under listed ids, and a request
    /// is judged by its first offending event.
    #[test]
    fn accounts_in_scope() {
        let account = |id, ledger| Account {
            id,
            ledger,
            code: 1,
            flags: AccountFlags::HISTORY,
            ..Account::default()
        };
        let encode = |a: &Account| a.encode();
        assert_eq!(
            check(
                Operation::CreateAccounts,
                &[account(5, 1), account(77, 9)],
                encode
            ),
            None
        );
        assert_eq!(
            check(
                Operation::CreateAccounts,
                &[account(5, 1), account(6, 2), account(7, 3)],
                encode
            ),
            Some(1)
        );
        let refusal = check_create(
            &scope(),
            Operation::CreateAccounts,
            &account(6, 2).encode(),
            ledger_of,
            no_instructions,
        )
        .expect_err("ledger 2 is outside");
        assert!(refusal.reason.contains("ledger 2"), "{}", refusal.reason);
        assert!(refusal.reason.contains("ledgers [1]"), "{}", refusal.reason);
    }

    /// Proves a transfer is in scope by its ledger or its debit account, never by its credit
    /// account alone; a post or void must name the ledger or debit account; closing a credit
    /// account needs that account in scope too.
    #[test]
    fn transfers_debit_in_scope() {
        let none = TransferFlags::default();
        let post = TransferFlags::POST_PENDING_TRANSFER;
        let encode = |t: &Transfer| t.encode();
        let cases: [(Transfer, bool); 9] = [
            (transfer(5, 6, 1, none), true),
            (transfer(77, 6, 2, none), true),
            (transfer(6, 77, 2, none), false),
            (transfer(5, 6, 2, none), false),
            (transfer(0, 0, 0, post), false),
            (transfer(0, 0, 1, post), true),
            (
                transfer(77, 0, 0, TransferFlags::VOID_PENDING_TRANSFER),
                true,
            ),
            (
                transfer(
                    77,
                    6,
                    2,
                    TransferFlags::PENDING | TransferFlags::CLOSING_CREDIT,
                ),
                false,
            ),
            (
                transfer(
                    5,
                    6,
                    1,
                    TransferFlags::PENDING | TransferFlags::CLOSING_CREDIT,
                ),
                true,
            ),
        ];
        for (n, (event, allowed)) in cases.iter().enumerate() {
            let index = check(Operation::CreateTransfers, &[*event], encode);
            assert_eq!(index.is_none(), *allowed, "case {n}: {event:?}");
        }
        let refusal = check_create(
            &scope(),
            Operation::CreateTransfers,
            &transfer(0, 0, 0, post).encode(),
            ledger_of,
            no_instructions,
        )
        .expect_err("must name");
        assert!(refusal.reason.contains("fill in"), "{}", refusal.reason);
        // A record with unknown flag bits moves nothing (the engine refuses it): let through.
        let mut unknown = transfer(5, 6, 2, none).encode();
        let flags = tally_engine::records::FLAGS_OFFSET;
        unknown[flags..flags + 2].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(Transfer::decode(&unknown).is_err());
        assert_eq!(
            check_create(
                &scope(),
                Operation::CreateTransfers,
                &unknown,
                ledger_of,
                no_instructions
            ),
            Ok(())
        );
    }

    /// Proves both debited sides of a trade must be in scope — the seller's instrument account
    /// and the buyer's cash account — by id or by their applied ledger; an unapplied or
    /// unnamed debited account is refused; the credited sides do not matter.
    #[test]
    fn trades_debit_both_legs_in_scope() {
        let none = TradeFlags::default();
        let encode = |t: &Trade| t.encode();
        let cases: [(Trade, bool); 7] = [
            (trade(10, 11, none), true),
            (trade(77, 11, none), true),
            (trade(10, 20, none), false),
            (trade(20, 10, none), false),
            (trade(10, 999, none), false),
            (trade(0, 0, TradeFlags::POST_PENDING_TRADE), false),
            (trade(10, 77, TradeFlags::VOID_PENDING_TRADE), true),
        ];
        for (n, (event, allowed)) in cases.iter().enumerate() {
            let index = check(Operation::CreateTrades, &[*event], encode);
            assert_eq!(index.is_none(), *allowed, "case {n}: {event:?}");
        }
        let refusal = check_create(
            &scope(),
            Operation::CreateTrades,
            &trade(10, 999, none).encode(),
            ledger_of,
            no_instructions,
        )
        .expect_err("999 is not applied");
        assert!(refusal.reason.contains("not applied"), "{}", refusal.reason);
        assert_eq!(
            check(
                Operation::CreateTrades,
                &[
                    trade(10, 11, none),
                    trade(10, 11, none),
                    trade(21, 11, none)
                ],
                encode
            ),
            Some(2)
        );
    }

    /// Proves a refusal lists a bounded part of a large scope.
    #[test]
    fn refusal_shows_a_bounded_scope() {
        let big: BTreeSet<u32> = (1..=1000).collect();
        let text = shown(&big);
        assert!(
            text.starts_with("[1, 2,") && text.ends_with("… 992 more]"),
            "{text}"
        );
        assert_eq!(shown(&BTreeSet::<u32>::new()), "[]");
    }
}
