//! Credentials, roles and scopes (docs/protocol.md, "Authentication and scopes").
//!
//! The node stores only the BLAKE3 hash of each secret: a stolen config file does not let
//! anyone in. A client presents the secret at registration; the gateway hashes it and looks
//! the hash up. (The lookup's timing reveals nothing useful: it depends on a hash of the
//! secret, not on the secret.) A reader's scope decides which accounts, and so which transfers
//! and trades, it may see; the check runs on the record found, after the lookup, so a reader
//! cannot tell "missing" from "outside my scope". A submitter's scope, if it has one, decides
//! which accounts it may debit and on which ledgers it may open accounts (`scope.rs`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tally_engine::records::{Account, Trade, Transfer};
use tally_engine::{Engine, LedgerEvent, StatementEvent};

use crate::limits::SESSION_IDLE_DEFAULT;
pub use tally_client::protocol::Role;

/// For a reader, what it may see: accounts on these ledgers, and these accounts. For a
/// submitter, what it may debit: accounts on these ledgers, and these accounts (`scope.rs`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    pub ledgers: BTreeSet<u32>,
    pub accounts: BTreeSet<u128>,
}

/// One client identity the node accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// For logs only (who registered).
    pub name: String,
    /// BLAKE3 of the secret ([`credential_hash`]).
    pub hash: [u8; 32],
    pub role: Role,
    /// A reader's (empty: it sees nothing) or a submitter's (empty: unscoped, it may debit
    /// any account). Operators are not scoped.
    pub scope: Scope,
}

/// The gateway's configuration (the node config's `[gateway]` section).
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Requests naming another cluster are refused (`WrongCluster`).
    pub cluster_id: u128,
    /// Who may register. Empty: every gateway request is refused (`Unauthenticated`).
    pub credentials: Vec<Credential>,
    /// A session without a request for this long is dropped.
    pub session_idle: Duration,
    /// The verifiable log's origin (the checkpoint key's name): what a checkpoint's note names.
    /// `None`: this node has no key, and serves no checkpoint.
    pub log_origin: Option<Arc<str>>,
    /// The checkpoint key's verifier key (C2SP note verifier key: public), shown by
    /// `tally admin status` so anyone can check what the cluster signs.
    pub log_key: Option<Arc<str>>,
    /// The witnesses whose cosignatures of checkpoints this node accepts and shows
    /// (`[verifiable] witnesses`).
    pub witnesses: Arc<[tally_engine::checkpoint::NoteVerifier]>,
}

impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        GatewayConfig {
            cluster_id: 0,
            credentials: Vec::new(),
            session_idle: SESSION_IDLE_DEFAULT,
            log_origin: None,
            log_key: None,
            witnesses: Arc::from([]),
        }
    }
}

/// The hash under which a secret is configured.
pub fn credential_hash(secret: &[u8]) -> [u8; 32] {
    *blake3::hash(secret).as_bytes()
}

/// The hash of a secret as the config file holds it: 64 hex digits.
pub fn credential_hash_hex(secret: &[u8]) -> String {
    blake3::hash(secret).to_hex().to_string()
}

/// Parse a 64-digit hex hash as `tally hash-credential` prints it.
pub fn parse_hash(text: &str) -> Result<[u8; 32], String> {
    blake3::Hash::from_hex(text.trim())
        .map(|hash| *hash.as_bytes())
        .map_err(|error| format!("credential hash {text:?} is not 64 hex digits: {error}"))
}

/// Credentials by hash.
pub(crate) struct Credentials {
    by_hash: HashMap<[u8; 32], Arc<Credential>>,
}

impl Credentials {
    pub(crate) fn new(credentials: &[Credential]) -> Credentials {
        Credentials {
            by_hash: credentials
                .iter()
                .map(|credential| (credential.hash, Arc::new(credential.clone())))
                .collect(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    pub(crate) fn find(&self, secret: &[u8]) -> Option<Arc<Credential>> {
        self.by_hash.get(&credential_hash(secret)).cloned()
    }
}

/// The accounts a trade's legs move: what a reader must see one of, and what a read of the
/// trade touches (the access trail).
pub(crate) fn trade_accounts(trade: &Trade) -> [u128; 4] {
    [
        trade.instrument_debit_account_id,
        trade.instrument_credit_account_id,
        trade.cash_debit_account_id,
        trade.cash_credit_account_id,
    ]
}

/// Who a session is: its credential, its role, and for a reader what it may see or for a
/// scoped submitter what it may debit. `None` scope = everything.
#[derive(Clone, Debug)]
pub(crate) struct Access {
    /// The credential's hash: sessions are counted per credential.
    pub(crate) credential: [u8; 32],
    /// The credential's name as the access trail records it.
    pub(crate) name: [u8; tally_engine::ACCESS_NAME_BYTES],
    pub(crate) role: Role,
    pub(crate) scope: Option<Arc<Scope>>,
}

impl Access {
    pub(crate) fn of(credential: &Credential) -> Access {
        let scoped = match credential.role {
            Role::Reader => true,
            // A submitter without ledgers or accounts keeps the unscoped behaviour it always
            // had; one with either is limited to them.
            Role::Submitter => {
                !credential.scope.ledgers.is_empty() || !credential.scope.accounts.is_empty()
            }
            Role::Operator => false,
        };
        Access {
            credential: credential.hash,
            name: tally_engine::AccessEntry::name_field(&credential.name),
            role: credential.role,
            scope: scoped.then(|| Arc::new(credential.scope.clone())),
        }
    }

    /// The scope a create request of this session must stay within (`scope.rs`), if any.
    pub(crate) fn debit_scope(&self) -> Option<&Scope> {
        match self.role {
            Role::Submitter => self.scope.as_deref(),
            Role::Reader | Role::Operator => None,
        }
    }

    pub(crate) fn may_create(&self) -> bool {
        matches!(self.role, Role::Submitter | Role::Operator)
    }

    pub(crate) fn may_read(&self) -> bool {
        matches!(self.role, Role::Reader | Role::Operator)
    }

    pub(crate) fn may_operate(&self) -> bool {
        self.role == Role::Operator
    }

    fn account_id_visible(scope: &Scope, engine: &Engine, id: u128) -> bool {
        scope.accounts.contains(&id)
            || engine
                .lookup_account(id)
                .is_some_and(|account| scope.ledgers.contains(&account.ledger))
    }

    pub(crate) fn account_visible(&self, account: &Account) -> bool {
        self.scope.as_ref().is_none_or(|scope| {
            scope.accounts.contains(&account.id) || scope.ledgers.contains(&account.ledger)
        })
    }

    /// A transfer is visible if either of its accounts is (both are on its ledger).
    pub(crate) fn transfer_visible(&self, transfer: &Transfer) -> bool {
        self.scope.as_ref().is_none_or(|scope| {
            scope.ledgers.contains(&transfer.ledger)
                || scope.accounts.contains(&transfer.debit_account_id)
                || scope.accounts.contains(&transfer.credit_account_id)
        })
    }

    /// A trade is visible if any of its four accounts is.
    pub(crate) fn trade_visible(&self, engine: &Engine, trade: &Trade) -> bool {
        self.scope.as_ref().is_none_or(|scope| {
            trade_accounts(trade)
                .into_iter()
                .any(|id| Self::account_id_visible(scope, engine, id))
        })
    }

    /// An applied event is visible as its record is: an account created as the account, an
    /// expiry as the pending transfer or trade it released.
    pub(crate) fn event_visible(&self, engine: &Engine, event: &LedgerEvent) -> bool {
        if self.scope.is_none() {
            return true;
        }
        match event {
            LedgerEvent::AccountCreated(account) => self.account_visible(account),
            LedgerEvent::Applied(StatementEvent::Transfer(t)) => self.transfer_visible(t),
            LedgerEvent::Applied(StatementEvent::Trade(t)) => self.trade_visible(engine, t),
            LedgerEvent::Applied(StatementEvent::TransferExpired { pending_id }) => engine
                .lookup_transfer(*pending_id)
                .is_some_and(|t| self.transfer_visible(&t)),
            LedgerEvent::Applied(StatementEvent::TradeExpired { pending_id }) => engine
                .lookup_trade(*pending_id)
                .is_some_and(|t| self.trade_visible(engine, &t)),
        }
    }

    /// A settlement instruction is visible, like a trade, if any of its four accounts is.
    pub(crate) fn instruction_visible(
        &self,
        engine: &Engine,
        instruction: &tally_engine::settlement::Instruction,
    ) -> bool {
        self.scope.as_ref().is_none_or(|scope| {
            instruction
                .accounts()
                .into_iter()
                .any(|id| Self::account_id_visible(scope, engine, id))
        })
    }

    /// Whether the account `id` exists and is visible (statements, balances as of).
    pub(crate) fn account_id_readable(&self, engine: &Engine, id: u128) -> bool {
        engine
            .lookup_account(id)
            .is_some_and(|account| self.account_visible(&account))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves a reader sees accounts by ledger or id, transfers by either side, and an
    /// operator sees everything; hashes round-trip through hex.
    #[test]
    fn scopes_decide_visibility() {
        let reader = Access {
            credential: [0; 32],
            name: [0; 32],
            role: Role::Reader,
            scope: Some(Arc::new(Scope {
                ledgers: [1].into(),
                accounts: [77].into(),
            })),
        };
        let account = |id, ledger| Account {
            id,
            ledger,
            ..Account::default()
        };
        assert!(reader.account_visible(&account(5, 1)));
        assert!(reader.account_visible(&account(77, 2)));
        assert!(!reader.account_visible(&account(5, 2)));
        let transfer = |debit, credit, ledger| Transfer {
            debit_account_id: debit,
            credit_account_id: credit,
            ledger,
            ..Transfer::default()
        };
        assert!(reader.transfer_visible(&transfer(3, 77, 2)));
        assert!(!reader.transfer_visible(&transfer(3, 4, 2)));
        assert!(reader.transfer_visible(&transfer(3, 4, 1)));
        assert!(!reader.may_create() && reader.may_read());
        let operator = Access {
            credential: [0; 32],
            name: [0; 32],
            role: Role::Operator,
            scope: None,
        };
        assert!(operator.account_visible(&account(5, 2)) && operator.may_create());
        let hash = credential_hash(b"secret");
        assert_eq!(parse_hash(&blake3::Hash::from(hash).to_hex()), Ok(hash));
        assert!(parse_hash("zz").is_err());
    }

    /// Proves a submitter with ledgers or accounts is scoped for its writes, one without is
    /// not, and a reader's or operator's scope never limits writes.
    #[test]
    fn submitter_scopes_limit_writes_only() {
        let credential = |role, ledgers: &[u32]| Credential {
            name: "c".to_owned(),
            hash: [1; 32],
            role,
            scope: Scope {
                ledgers: ledgers.iter().copied().collect(),
                accounts: BTreeSet::new(),
            },
        };
        let scoped = Access::of(&credential(Role::Submitter, &[1]));
        assert_eq!(
            scoped.debit_scope().map(|s| s.ledgers.clone()),
            Some([1].into())
        );
        assert_eq!(scoped.credential, [1; 32]);
        assert!(Access::of(&credential(Role::Submitter, &[]))
            .debit_scope()
            .is_none());
        assert!(Access::of(&credential(Role::Reader, &[1]))
            .debit_scope()
            .is_none());
        assert!(Access::of(&credential(Role::Reader, &[])).scope.is_some());
        assert!(Access::of(&credential(Role::Operator, &[])).scope.is_none());
    }
}
