//! docs/records.md is the one description of the record layouts that every client is built
//! from: this test reads its tables and checks the Rust encoders against them, field by field
//! (each field, set alone to a value whose every byte is non-zero, lands exactly at the
//! documented offset and size, little-endian, and nowhere else) and flag by flag (each
//! documented bit is the flag of that name, and no other bit is defined).

use std::collections::BTreeMap;

use tally_engine::limits::RECORD_BYTES;
use tally_engine::records::SettlementCommand;
use tally_engine::settlement::Instruction;
use tally_engine::{
    Account, AccountFlags, InstructionFlags, Trade, TradeFlags, Transfer, TransferFlags,
};

/// One documented field: offset, size.
type Layout = BTreeMap<String, (usize, usize)>;

/// The tables of docs/records.md by heading ("Account", "Transfer", "Trade", "Instruction",
/// "Command"),
/// and each flags
/// row's bits by name.
fn documented() -> BTreeMap<String, (Layout, BTreeMap<String, u16>)> {
    // Built in, so a change to the page rebuilds this test (and the engine's crates read no
    // files).
    let text = include_str!("../../docs/records.md");
    let mut tables = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            let name = heading.split_whitespace().next().unwrap_or("").to_string();
            current = ["Account", "Transfer", "Trade", "Instruction", "Command"]
                .contains(&name.as_str())
                .then_some(name);
            continue;
        }
        let Some(record) = &current else { continue };
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 5 {
            continue;
        }
        let (Ok(offset), Ok(size)) = (cells[1].parse::<usize>(), cells[2].parse::<usize>()) else {
            continue;
        };
        let field = cells[3].trim_matches('`').to_string();
        let entry = tables
            .entry(record.clone())
            .or_insert_with(|| (Layout::new(), BTreeMap::new()));
        if field == "flags" {
            // "bit 0 `linked`, 1 `pending`, ..."
            for part in cells[4].split(',') {
                let words: Vec<&str> = part.split_whitespace().collect();
                let bit = words.iter().find_map(|w| w.parse::<u16>().ok());
                let name = words.iter().find(|w| w.starts_with('`'));
                if let (Some(bit), Some(name)) = (bit, name) {
                    entry.1.insert(name.trim_matches('`').to_uppercase(), bit);
                }
            }
        }
        entry.0.insert(field, (offset, size));
    }
    tables
}

/// Bytes 1, 2, … as a little-endian value of `size` bytes (every byte non-zero).
fn pattern(size: usize) -> u128 {
    (0..size).fold(0u128, |value, i| value | ((i as u128 + 1) << (8 * i)))
}

/// Checks that `encoded` holds `pattern(size)` at `offset` and zeros elsewhere, except in
/// `also` (bytes another field had to set for this one to be written).
fn check(
    record: &str,
    field: &str,
    encoded: &[u8; RECORD_BYTES],
    at: (usize, usize),
    also: (usize, usize),
) {
    let (offset, size) = at;
    for (i, byte) in encoded.iter().enumerate() {
        let expected = if (offset..offset + size).contains(&i) {
            (i - offset + 1) as u8
        } else if (also.0..also.0 + also.1).contains(&i) {
            *byte
        } else {
            0
        };
        assert_eq!(
            *byte,
            expected,
            "{record}.{field}: byte {i} is {byte:#04x}, docs/records.md puts the field at \
             {offset}..{}",
            offset + size
        );
    }
}

type Setter<T> = (&'static str, fn(&mut T, u128));

fn check_record<T: Default>(
    record: &str,
    layout: &Layout,
    setters: &[Setter<T>],
    encode: fn(&T) -> [u8; RECORD_BYTES],
    prepare: fn(&str, &mut T) -> (usize, usize),
) {
    let fields: Vec<&str> = setters.iter().map(|(name, _)| *name).collect();
    // `reserved` bytes have no field to set: they count towards the record's bytes only.
    let documented: Vec<&str> = layout
        .keys()
        .map(String::as_str)
        .filter(|name| *name != "reserved")
        .collect();
    let mut sorted = fields.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted, documented,
        "{record}: the documented fields are the encoder's"
    );
    for (field, set) in setters {
        let (offset, size) = layout[*field];
        let mut value = T::default();
        let also = prepare(field, &mut value);
        set(&mut value, pattern(size));
        check(record, field, &encode(&value), (offset, size), also);
    }
    let covered: usize = layout
        .iter()
        .filter(|(name, _)| name.as_str() != "pending_id" || record != "Trade")
        .map(|(_, (_, size))| size)
        .sum();
    assert_eq!(covered, RECORD_BYTES, "{record}: every byte is a field");
}

fn check_flags(
    record: &str,
    documented: &BTreeMap<String, u16>,
    names: &[(&str, u16)],
    known: u16,
) {
    let code: BTreeMap<String, u16> = names.iter().map(|(n, b)| (n.to_string(), *b)).collect();
    assert_eq!(
        &code, documented,
        "{record}: flag names and bits as documented"
    );
    let bits = documented.values().fold(0u16, |all, bit| all | (1 << bit));
    assert_eq!(bits, known, "{record}: no undocumented flag bit");
}

#[test]
fn the_encoders_match_docs_records_md() {
    let docs = documented();
    assert_eq!(docs.len(), 5, "five record tables found");

    let (layout, flags) = &docs["Account"];
    let account: &[Setter<Account>] = &[
        ("id", |a, v| a.id = v),
        ("debits_pending", |a, v| a.debits_pending = v),
        ("debits_posted", |a, v| a.debits_posted = v),
        ("credits_pending", |a, v| a.credits_pending = v),
        ("credits_posted", |a, v| a.credits_posted = v),
        ("user_data_128", |a, v| a.user_data_128 = v),
        ("user_data_64", |a, v| a.user_data_64 = v as u64),
        ("limit", |a, v| a.limit = v as u64),
        ("ledger", |a, v| a.ledger = v as u32),
        ("code", |a, v| a.code = v as u16),
        ("flags", |a, v| a.flags = AccountFlags(v as u16)),
        ("timestamp", |a, v| a.timestamp = v as u64),
    ];
    check_record("Account", layout, account, Account::encode, |_, _| (0, 0));
    check_flags("Account", flags, AccountFlags::NAMES, AccountFlags::KNOWN);

    let (layout, flags) = &docs["Transfer"];
    let transfer: &[Setter<Transfer>] = &[
        ("id", |t, v| t.id = v),
        ("debit_account_id", |t, v| t.debit_account_id = v),
        ("credit_account_id", |t, v| t.credit_account_id = v),
        ("amount", |t, v| t.amount = v),
        ("pending_id", |t, v| t.pending_id = v),
        ("user_data_128", |t, v| t.user_data_128 = v),
        ("user_data_64", |t, v| t.user_data_64 = v as u64),
        ("user_data_32", |t, v| t.user_data_32 = v as u32),
        ("timeout", |t, v| t.timeout = v as u32),
        ("ledger", |t, v| t.ledger = v as u32),
        ("code", |t, v| t.code = v as u16),
        ("flags", |t, v| t.flags = TransferFlags(v as u16)),
        ("timestamp", |t, v| t.timestamp = v as u64),
    ];
    check_record("Transfer", layout, transfer, Transfer::encode, |_, _| {
        (0, 0)
    });
    check_flags(
        "Transfer",
        flags,
        TransferFlags::NAMES,
        TransferFlags::KNOWN,
    );

    let (layout, flags) = &docs["Trade"];
    let trade: &[Setter<Trade>] = &[
        ("id", |t, v| t.id = v),
        ("instrument_debit_account_id", |t, v| {
            t.instrument_debit_account_id = v
        }),
        ("instrument_credit_account_id", |t, v| {
            t.instrument_credit_account_id = v
        }),
        ("cash_debit_account_id", |t, v| t.cash_debit_account_id = v),
        ("cash_credit_account_id", |t, v| {
            t.cash_credit_account_id = v
        }),
        ("instrument_ledger", |t, v| t.instrument_ledger = v as u32),
        ("cash_ledger", |t, v| t.cash_ledger = v as u32),
        ("user_data_64", |t, v| t.user_data_64 = v as u64),
        ("pending_id", |t, v| t.pending_id = v),
        ("quantity", |t, v| t.quantity = v as u64),
        ("cash_amount", |t, v| t.cash_amount = v as u64),
        ("timeout", |t, v| t.timeout = v as u32),
        ("code", |t, v| t.code = v as u16),
        ("flags", |t, v| t.flags = TradeFlags(v as u16)),
        ("timestamp", |t, v| t.timestamp = v as u64),
    ];
    // A trade's pending id is written only by a post or void (bytes 80..96 are the ledgers and
    // user data otherwise), so it is checked on a post, whose flag bytes are then set too.
    check_record("Trade", layout, trade, Trade::encode, |field, trade| {
        if field == "pending_id" {
            trade.flags = TradeFlags::POST_PENDING_TRADE;
            (118, 2)
        } else {
            (0, 0)
        }
    });
    check_flags("Trade", flags, TradeFlags::NAMES, TradeFlags::KNOWN);

    let (layout, flags) = &docs["Instruction"];
    let instruction: &[Setter<Instruction>] = &[
        ("id", |i, v| i.id = v),
        ("deliverer_securities", |i, v| i.deliverer_securities = v),
        ("receiver_securities", |i, v| i.receiver_securities = v),
        ("receiver_cash", |i, v| i.receiver_cash = v),
        ("deliverer_cash", |i, v| i.deliverer_cash = v),
        ("reference", |i, v| i.reference = v),
        ("quantity", |i, v| i.quantity = v as u64),
        ("cash", |i, v| i.cash = v as u64),
        ("cycle", |i, v| i.cycle = v as u32),
        ("priority", |i, v| i.priority = v as u16),
        ("flags", |i, v| i.flags = InstructionFlags(v as u16)),
        ("timestamp", |i, v| i.timestamp = v as u64),
    ];
    check_record(
        "Instruction",
        layout,
        instruction,
        Instruction::encode,
        |_, _| (0, 0),
    );
    check_flags(
        "Instruction",
        flags,
        InstructionFlags::NAMES,
        InstructionFlags::KNOWN,
    );

    let (layout, flags) = &docs["Command"];
    let command: &[Setter<SettlementCommand>] = &[
        ("id", |c, v| c.id = v),
        ("instruction", |c, v| c.instruction = v),
        ("quantity", |c, v| c.quantity = v as u64),
        ("cycle", |c, v| c.cycle = v as u32),
        ("to_cycle", |c, v| c.to_cycle = v as u32),
        ("max_age", |c, v| c.max_age = v as u16),
        ("party", |c, v| c.party = v as u16),
        ("kind", |c, v| c.kind = v as u16),
        ("flags", |c, v| c.flags = v as u16),
        ("timestamp", |c, v| c.timestamp = v as u64),
    ];
    check_record(
        "Command",
        layout,
        command,
        SettlementCommand::encode,
        |_, _| (0, 0),
    );
    assert!(flags.is_empty(), "no command flag is defined");
    let reserved = layout["reserved"];
    assert_eq!(
        (reserved.0, reserved.0 + reserved.1),
        (
            tally_engine::records::COMMAND_RESERVED.start,
            tally_engine::records::COMMAND_RESERVED.end
        ),
        "the reserved bytes the decoder checks are the documented ones"
    );
}
