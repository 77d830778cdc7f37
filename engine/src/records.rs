//! Fixed-size little-endian event records: accounts, transfers and trades, 128 bytes each.
//!
//! These are the wire format and the log format (see `docs/records.md` for the byte layout).
//! `decode` checks syntax only (unknown flag bits); every semantic rule is checked by the
//! engine's `apply`, so that a bad record becomes a result code for that one event and the rest
//! of the batch proceeds.

use crate::limits::RECORD_BYTES;

/// Why a record could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    /// A flag bit this version does not define is set.
    ReservedFlag,
}

macro_rules! flags_type {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $flag:ident = $bit:expr,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        pub struct $name(pub u16);

        impl $name {
            $($(#[$fdoc])* pub const $flag: $name = $name(1 << $bit);)*
            /// Every bit this version defines.
            pub const KNOWN: u16 = 0 $(| (1 << $bit))*;
            /// Each flag's name (as docs/records.md spells it, in upper case) and bit.
            pub const NAMES: &'static [(&'static str, u16)] = &[$((stringify!($flag), $bit),)*];

            /// Whether every bit of `other` is set.
            pub fn contains(self, other: $name) -> bool {
                self.0 & other.0 == other.0
            }

            /// Whether any bit of `other` is set.
            pub fn intersects(self, other: $name) -> bool {
                self.0 & other.0 != 0
            }

            /// Flags from wire bits, refusing bits this version does not define.
            pub fn from_bits(bits: u16) -> Result<$name, RecordError> {
                if bits & !Self::KNOWN != 0 {
                    return Err(RecordError::ReservedFlag);
                }
                Ok($name(bits))
            }
        }

        impl std::ops::BitOr for $name {
            type Output = $name;
            fn bitor(self, rhs: $name) -> $name {
                $name(self.0 | rhs.0)
            }
        }
    };
}

flags_type! {
    /// Account flags.
    AccountFlags {
        /// This account and the next in the batch succeed or fail together.
        LINKED = 0,
        /// debits (posted + pending) may not exceed credits posted plus `limit`.
        DEBITS_MUST_NOT_EXCEED_CREDITS = 1,
        /// credits (posted + pending) may not exceed debits posted plus `limit`.
        CREDITS_MUST_NOT_EXCEED_DEBITS = 2,
        /// Keep the balances after every change, so "balance as of T" is a binary search.
        HISTORY = 3,
        /// No new transfer or trade may touch the account (set by a closing transfer).
        CLOSED = 4,
    }
}

flags_type! {
    /// Transfer flags.
    TransferFlags {
        /// This transfer and the next in the batch succeed or fail together.
        LINKED = 0,
        /// Reserve the amount (pending balances) until posted, voided or expired.
        PENDING = 1,
        /// Post (all or part of) the pending transfer named by `pending_id`.
        POST_PENDING_TRANSFER = 2,
        /// Void the pending transfer named by `pending_id`.
        VOID_PENDING_TRANSFER = 3,
        /// Cap the amount at what the debit account has available.
        BALANCING_DEBIT = 4,
        /// Cap the amount at what the credit account has available.
        BALANCING_CREDIT = 5,
        /// Close the debit account (pending only; voiding or expiry reopens it).
        CLOSING_DEBIT = 6,
        /// Close the credit account (pending only; voiding or expiry reopens it).
        CLOSING_CREDIT = 7,
    }
}

flags_type! {
    /// Trade flags.
    TradeFlags {
        /// This trade and the next in the batch succeed or fail together.
        LINKED = 0,
        /// Reserve both legs until posted, voided or expired.
        PENDING = 1,
        /// Post both legs of the pending trade named by `pending_id`.
        POST_PENDING_TRADE = 2,
        /// Void both legs of the pending trade named by `pending_id`.
        VOID_PENDING_TRADE = 3,
    }
}

flags_type! {
    /// Settlement instruction flags (net settlement, `crate::settlement`).
    InstructionFlags {
        /// This instruction and the next in the batch are taken or refused together.
        LINKED = 0,
        /// A part may settle when the whole cannot.
        PARTIAL = 1,
        /// Submitted on hold: nothing settles until it is released.
        HOLD = 2,
    }
}

/// An account of one ledger (asset).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Account {
    pub id: u128,
    pub debits_pending: u128,
    pub debits_posted: u128,
    pub credits_pending: u128,
    pub credits_posted: u128,
    pub user_data_128: u128,
    pub user_data_64: u64,
    /// How far past zero the constrained side may go (an overdraft or a credit line); counts
    /// pending amounts. Only meaningful with one of the must-not-exceed flags.
    pub limit: u64,
    pub ledger: u32,
    pub code: u16,
    pub flags: AccountFlags,
    pub timestamp: u64,
}

/// A movement of `amount` on `ledger` from the debit account to the credit account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transfer {
    pub id: u128,
    pub debit_account_id: u128,
    pub credit_account_id: u128,
    pub amount: u128,
    pub pending_id: u128,
    pub user_data_128: u128,
    pub user_data_64: u64,
    pub user_data_32: u32,
    /// Seconds after which a pending transfer expires; 0 = never.
    pub timeout: u32,
    pub ledger: u32,
    pub code: u16,
    pub flags: TransferFlags,
    pub timestamp: u64,
}

/// Delivery versus payment: `quantity` of an instrument from seller to buyer against
/// `cash_amount` of a currency from buyer to seller, both legs or neither.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trade {
    pub id: u128,
    /// The seller's account on the instrument ledger.
    pub instrument_debit_account_id: u128,
    /// The buyer's account on the instrument ledger.
    pub instrument_credit_account_id: u128,
    /// The buyer's account on the currency ledger.
    pub cash_debit_account_id: u128,
    /// The seller's account on the currency ledger.
    pub cash_credit_account_id: u128,
    /// Post/void: the pending trade. Shares its bytes with the two ledgers (docs/records.md):
    /// a new trade encodes its ledgers there and no pending id.
    pub pending_id: u128,
    /// A new trade: the instrument's ledger, which both instrument accounts must be on (a
    /// post/void names none: the pending trade's).
    pub instrument_ledger: u32,
    /// A new trade: the currency's ledger, which both cash accounts must be on.
    pub cash_ledger: u32,
    /// A new trade: the client's own (an intended settlement date, a reference). A post or
    /// void carries none in its record and keeps the pending trade's.
    pub user_data_64: u64,
    pub quantity: u64,
    pub cash_amount: u64,
    /// Seconds after which a pending trade expires; 0 = never.
    pub timeout: u32,
    pub code: u16,
    pub flags: TradeFlags,
    pub timestamp: u64,
}

/// One record's bytes.
pub type RecordBytes = [u8; RECORD_BYTES];

/// Field readers over a record. The offsets are compile-time constants, so every bounds check
/// folds away.
struct Reader<'a>(&'a RecordBytes);

impl Reader<'_> {
    fn u128(&self, at: usize) -> u128 {
        let mut b = [0u8; 16];
        b.copy_from_slice(&self.0[at..at + 16]);
        u128::from_le_bytes(b)
    }
    fn u64(&self, at: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[at..at + 8]);
        u64::from_le_bytes(b)
    }
    fn u32(&self, at: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.0[at..at + 4]);
        u32::from_le_bytes(b)
    }
    fn u16(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.0[at], self.0[at + 1]])
    }
}

struct Writer(RecordBytes);

impl Writer {
    fn u128(&mut self, at: usize, v: u128) {
        self.0[at..at + 16].copy_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, at: usize, v: u64) {
        self.0[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, at: usize, v: u32) {
        self.0[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn u16(&mut self, at: usize, v: u16) {
        self.0[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }
}

/// The flags field sits at the same offset in every record, so the batch loop can read the
/// `linked` bit of a record that fails to decode.
pub const FLAGS_OFFSET: usize = 118;

/// The raw flag bits of any record.
pub fn raw_flags(bytes: &RecordBytes) -> u16 {
    Reader(bytes).u16(FLAGS_OFFSET)
}

/// In a settlement batch (`Operation::CreateSettlements`), the flag bit that marks a record as
/// a trade; a record without it is a transfer. In every other batch the bit is reserved (a
/// record with it set fails `reserved_flag`).
pub const SETTLEMENT_TRADE: u16 = 1 << 15;

/// What a record of a settlement batch is (`Operation::CreateTransfers` or `CreateTrades`),
/// and the record as that operation reads it (the `SETTLEMENT_TRADE` bit cleared).
pub fn settlement_event(bytes: &RecordBytes) -> (crate::Operation, RecordBytes) {
    let flags = raw_flags(bytes);
    let mut record = *bytes;
    record[FLAGS_OFFSET..FLAGS_OFFSET + 2]
        .copy_from_slice(&(flags & !SETTLEMENT_TRADE).to_le_bytes());
    (settlement_kind(bytes), record)
}

/// What a record of a settlement batch is, without copying it (for warming ahead).
pub fn settlement_kind(bytes: &RecordBytes) -> crate::Operation {
    if raw_flags(bytes) & SETTLEMENT_TRADE != 0 {
        crate::Operation::CreateTrades
    } else {
        crate::Operation::CreateTransfers
    }
}

/// One event of a settlement batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settlement {
    Transfer(Transfer),
    Trade(Trade),
}

impl Settlement {
    /// The record as a settlement batch carries it (a trade with `SETTLEMENT_TRADE` set).
    pub fn encode(&self) -> RecordBytes {
        match self {
            Settlement::Transfer(transfer) => transfer.encode(),
            Settlement::Trade(trade) => {
                let mut record = trade.encode();
                let flags = raw_flags(&record) | SETTLEMENT_TRADE;
                record[FLAGS_OFFSET..FLAGS_OFFSET + 2].copy_from_slice(&flags.to_le_bytes());
                record
            }
        }
    }
}

/// The id of any record (the first field of each).
pub fn raw_id(bytes: &RecordBytes) -> u128 {
    Reader(bytes).u128(0)
}

impl Account {
    pub fn decode(bytes: &RecordBytes) -> Result<Account, RecordError> {
        let r = Reader(bytes);
        Ok(Account {
            id: r.u128(0),
            debits_pending: r.u128(16),
            debits_posted: r.u128(32),
            credits_pending: r.u128(48),
            credits_posted: r.u128(64),
            user_data_128: r.u128(80),
            user_data_64: r.u64(96),
            limit: r.u64(104),
            ledger: r.u32(112),
            code: r.u16(116),
            flags: AccountFlags::from_bits(r.u16(FLAGS_OFFSET))?,
            timestamp: r.u64(120),
        })
    }

    pub fn encode(&self) -> RecordBytes {
        let mut w = Writer([0; RECORD_BYTES]);
        w.u128(0, self.id);
        w.u128(16, self.debits_pending);
        w.u128(32, self.debits_posted);
        w.u128(48, self.credits_pending);
        w.u128(64, self.credits_posted);
        w.u128(80, self.user_data_128);
        w.u64(96, self.user_data_64);
        w.u64(104, self.limit);
        w.u32(112, self.ledger);
        w.u16(116, self.code);
        w.u16(FLAGS_OFFSET, self.flags.0);
        w.u64(120, self.timestamp);
        w.0
    }
}

impl Transfer {
    #[inline(always)]
    pub fn decode(bytes: &RecordBytes) -> Result<Transfer, RecordError> {
        let r = Reader(bytes);
        Ok(Transfer {
            id: r.u128(0),
            debit_account_id: r.u128(16),
            credit_account_id: r.u128(32),
            amount: r.u128(48),
            pending_id: r.u128(64),
            user_data_128: r.u128(80),
            user_data_64: r.u64(96),
            user_data_32: r.u32(104),
            timeout: r.u32(108),
            ledger: r.u32(112),
            code: r.u16(116),
            flags: TransferFlags::from_bits(r.u16(FLAGS_OFFSET))?,
            timestamp: r.u64(120),
        })
    }

    pub fn encode(&self) -> RecordBytes {
        let mut w = Writer([0; RECORD_BYTES]);
        w.u128(0, self.id);
        w.u128(16, self.debit_account_id);
        w.u128(32, self.credit_account_id);
        w.u128(48, self.amount);
        w.u128(64, self.pending_id);
        w.u128(80, self.user_data_128);
        w.u64(96, self.user_data_64);
        w.u32(104, self.user_data_32);
        w.u32(108, self.timeout);
        w.u32(112, self.ledger);
        w.u16(116, self.code);
        w.u16(FLAGS_OFFSET, self.flags.0);
        w.u64(120, self.timestamp);
        w.0
    }
}

impl crate::settlement::Instruction {
    pub fn decode(bytes: &RecordBytes) -> Result<crate::settlement::Instruction, RecordError> {
        let r = Reader(bytes);
        Ok(crate::settlement::Instruction {
            id: r.u128(0),
            deliverer_securities: r.u128(16),
            receiver_securities: r.u128(32),
            receiver_cash: r.u128(48),
            deliverer_cash: r.u128(64),
            reference: r.u128(80),
            quantity: r.u64(96),
            cash: r.u64(104),
            cycle: r.u32(112),
            priority: r.u16(116),
            flags: InstructionFlags::from_bits(r.u16(FLAGS_OFFSET))?,
            timestamp: r.u64(120),
        })
    }

    pub fn encode(&self) -> RecordBytes {
        let mut w = Writer([0; RECORD_BYTES]);
        w.u128(0, self.id);
        w.u128(16, self.deliverer_securities);
        w.u128(32, self.receiver_securities);
        w.u128(48, self.receiver_cash);
        w.u128(64, self.deliverer_cash);
        w.u128(80, self.reference);
        w.u64(96, self.quantity);
        w.u64(104, self.cash);
        w.u32(112, self.cycle);
        w.u16(116, self.priority);
        w.u16(FLAGS_OFFSET, self.flags.0);
        w.u64(120, self.timestamp);
        w.0
    }
}

/// What a settlement command does (`SettlementCommand::kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum CommandKind {
    /// Opens `cycle` for instructions.
    Open = 1,
    /// Closes `cycle` to new instructions.
    CutOff = 2,
    /// Nets and settles `cycle` (cut off) with every fail carried forward.
    Run = 3,
    /// Closes `cycle` after its run.
    Close = 4,
    /// Cancels `cycle`'s run before it happens and moves its instructions to `to_cycle`.
    CancelAndReschedule = 5,
    /// Holds `quantity` more units of `instruction` (0: all that is left).
    Hold = 6,
    /// Releases `quantity` held units of `instruction` (0: all held).
    Release = 7,
    /// One party's request to cancel `instruction`; the second party's cancels it.
    Cancel = 8,
    /// Sets the number of runs an instruction may fail before it is cancelled.
    SetMaxAge = 9,
}

impl CommandKind {
    /// Every kind, in code order.
    pub const ALL: [CommandKind; 9] = [
        CommandKind::Open,
        CommandKind::CutOff,
        CommandKind::Run,
        CommandKind::Close,
        CommandKind::CancelAndReschedule,
        CommandKind::Hold,
        CommandKind::Release,
        CommandKind::Cancel,
        CommandKind::SetMaxAge,
    ];

    /// The kind with this code, if any.
    pub fn from_code(code: u16) -> Option<CommandKind> {
        CommandKind::ALL.into_iter().find(|k| *k as u16 == code)
    }
}

/// A settlement command: one step of a cycle's lifecycle or of an instruction's
/// (docs/records.md, "Settlement command"). Fields a kind does not use must be zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SettlementCommand {
    /// Its own id: a retry of an applied command is answered `exists`.
    pub id: u128,
    /// Hold, release, cancel: the instruction.
    pub instruction: u128,
    /// Hold, release: units (0: all).
    pub quantity: u64,
    /// Open, cut off, run, close, cancel and reschedule: the cycle.
    pub cycle: u32,
    /// Cancel and reschedule: the later cycle the instructions move to.
    pub to_cycle: u32,
    /// Set max age: runs an instruction may fail before it is cancelled (at least 1).
    pub max_age: u16,
    /// Cancel: who asks, 1 the deliverer, 2 the receiver.
    pub party: u16,
    /// `CommandKind` code.
    pub kind: u16,
    /// No flag is defined: any bit set is refused (`reserved_flag`).
    pub flags: u16,
    /// When it was applied (assigned by the engine; 0 in a request).
    pub timestamp: u64,
}

/// Bytes 52..116 of a settlement command: reserved, zero.
pub const COMMAND_RESERVED: std::ops::Range<usize> = 52..116;

impl SettlementCommand {
    /// Decodes a command; `None` when a reserved byte or a flag bit is set.
    pub fn decode(bytes: &RecordBytes) -> Option<SettlementCommand> {
        let r = Reader(bytes);
        if bytes[COMMAND_RESERVED].iter().any(|b| *b != 0) || r.u16(FLAGS_OFFSET) != 0 {
            return None;
        }
        Some(SettlementCommand {
            id: r.u128(0),
            instruction: r.u128(16),
            quantity: r.u64(32),
            cycle: r.u32(40),
            to_cycle: r.u32(44),
            max_age: r.u16(48),
            party: r.u16(50),
            kind: r.u16(116),
            flags: 0,
            timestamp: r.u64(120),
        })
    }

    pub fn encode(&self) -> RecordBytes {
        let mut w = Writer([0; RECORD_BYTES]);
        w.u128(0, self.id);
        w.u128(16, self.instruction);
        w.u64(32, self.quantity);
        w.u32(40, self.cycle);
        w.u32(44, self.to_cycle);
        w.u16(48, self.max_age);
        w.u16(50, self.party);
        w.u16(116, self.kind);
        w.u16(FLAGS_OFFSET, self.flags);
        w.u64(120, self.timestamp);
        w.0
    }
}

impl Trade {
    /// Whether `flags` make the record a post or void of a pending trade, whose bytes 80..96
    /// hold `pending_id` instead of the ledgers.
    pub fn resolves(flags: TradeFlags) -> bool {
        flags.intersects(TradeFlags::POST_PENDING_TRADE | TradeFlags::VOID_PENDING_TRADE)
    }

    #[inline(always)]
    pub fn decode(bytes: &RecordBytes) -> Result<Trade, RecordError> {
        let r = Reader(bytes);
        let flags = TradeFlags::from_bits(r.u16(FLAGS_OFFSET))?;
        let (pending_id, instrument_ledger, cash_ledger, user_data_64) = if Trade::resolves(flags) {
            (r.u128(80), 0, 0, 0)
        } else {
            (0, r.u32(80), r.u32(84), r.u64(88))
        };
        Ok(Trade {
            id: r.u128(0),
            instrument_debit_account_id: r.u128(16),
            instrument_credit_account_id: r.u128(32),
            cash_debit_account_id: r.u128(48),
            cash_credit_account_id: r.u128(64),
            pending_id,
            instrument_ledger,
            cash_ledger,
            user_data_64,
            quantity: r.u64(96),
            cash_amount: r.u64(104),
            timeout: r.u32(112),
            code: r.u16(116),
            flags,
            timestamp: r.u64(120),
        })
    }

    /// The record's bytes: a post or void writes `pending_id` at 80, any other trade its two
    /// ledgers and `user_data_64` (the fields the flags do not select are not written).
    pub fn encode(&self) -> RecordBytes {
        let mut w = Writer([0; RECORD_BYTES]);
        w.u128(0, self.id);
        w.u128(16, self.instrument_debit_account_id);
        w.u128(32, self.instrument_credit_account_id);
        w.u128(48, self.cash_debit_account_id);
        w.u128(64, self.cash_credit_account_id);
        if Trade::resolves(self.flags) {
            w.u128(80, self.pending_id);
        } else {
            w.u32(80, self.instrument_ledger);
            w.u32(84, self.cash_ledger);
            w.u64(88, self.user_data_64);
        }
        w.u64(96, self.quantity);
        w.u64(104, self.cash_amount);
        w.u32(112, self.timeout);
        w.u16(116, self.code);
        w.u16(FLAGS_OFFSET, self.flags.0);
        w.u64(120, self.timestamp);
        w.0
    }
}

/// Splits a batch body into records, refusing a body that is not a whole number of them.
pub fn records(body: &[u8]) -> Option<impl ExactSizeIterator<Item = &RecordBytes>> {
    let (chunks, rest) = body.as_chunks::<RECORD_BYTES>();
    rest.is_empty().then(|| chunks.iter())
}

/// Encodes many records into one batch body.
pub fn encode_batch<T>(events: &[T], encode: impl Fn(&T) -> RecordBytes) -> Vec<u8> {
    let mut body = Vec::with_capacity(events.len() * RECORD_BYTES);
    for event in events {
        body.extend_from_slice(&encode(event));
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves encode and decode are inverse for every record type, field by field.
    #[test]
    fn records_round_trip() {
        let a = Account {
            id: 1 << 100 | 7,
            debits_pending: 2,
            debits_posted: 3,
            credits_pending: 4,
            credits_posted: u128::MAX,
            user_data_128: 5,
            user_data_64: 6,
            limit: 7,
            ledger: 8,
            code: 9,
            flags: AccountFlags::HISTORY | AccountFlags::LINKED,
            timestamp: 10,
        };
        assert_eq!(Account::decode(&a.encode()), Ok(a));
        let t = Transfer {
            id: 11,
            debit_account_id: 12,
            credit_account_id: 13,
            amount: 14,
            pending_id: 15,
            user_data_128: 16,
            user_data_64: 17,
            user_data_32: 18,
            timeout: 19,
            ledger: 20,
            code: 21,
            flags: TransferFlags::PENDING | TransferFlags::CLOSING_CREDIT,
            timestamp: 22,
        };
        assert_eq!(Transfer::decode(&t.encode()), Ok(t));
        let d = Trade {
            id: 23,
            instrument_debit_account_id: 24,
            instrument_credit_account_id: 25,
            cash_debit_account_id: 26,
            cash_credit_account_id: 27,
            pending_id: 28,
            instrument_ledger: 0,
            cash_ledger: 0,
            user_data_64: 0,
            quantity: 29,
            cash_amount: 30,
            timeout: 31,
            code: 32,
            flags: TradeFlags::VOID_PENDING_TRADE,
            timestamp: 33,
        };
        assert_eq!(Trade::decode(&d.encode()), Ok(d));
        assert_eq!(raw_flags(&d.encode()), TradeFlags::VOID_PENDING_TRADE.0);
        // A new trade names its ledgers where a post or void names its pending trade.
        let n = Trade {
            pending_id: 0,
            instrument_ledger: 34,
            cash_ledger: u32::MAX,
            user_data_64: 20_261_205,
            flags: TradeFlags::PENDING | TradeFlags::LINKED,
            ..d
        };
        assert_eq!(Trade::decode(&n.encode()), Ok(n));
        assert_eq!(&n.encode()[80..88], &[34, 0, 0, 0, 255, 255, 255, 255]);
        assert_eq!(&n.encode()[88..96], &20_261_205u64.to_le_bytes());
    }

    /// Proves a flag bit that this version does not define is refused by every decoder.
    #[test]
    fn unknown_flags_are_refused() {
        let mut bytes = [0u8; RECORD_BYTES];
        bytes[FLAGS_OFFSET + 1] = 0x80;
        assert_eq!(Account::decode(&bytes), Err(RecordError::ReservedFlag));
        assert_eq!(Transfer::decode(&bytes), Err(RecordError::ReservedFlag));
        assert_eq!(Trade::decode(&bytes), Err(RecordError::ReservedFlag));
        assert!(records(&[0u8; 129]).is_none());
        assert_eq!(records(&[0u8; 256]).map(|r| r.len()), Some(2));
    }
}
