"""docs/records.md is the one description of the record layouts, and the Rust encoders are
checked against it by engine/tests/records_doc.rs: this test reads the same tables and checks
the Python client against them, so a change to the page, to the Rust records or to this
client that the other two do not follow fails a test. Checked: the client's layout table
(every field's offset and size), the encoders (each field, set alone to a value whose every
byte is non-zero, lands exactly at the documented offset and size, little-endian, and nowhere
else; decoding gives it back), the flags (each documented bit is the flag of that name, and
no other bit is defined) and the settlement batch's trade bit, for the five record tables
(accounts, transfers, trades, and net settlement's instructions and commands, whose reserved
bytes the encoder leaves zero); and the run record's decoder against its byte table. The
result codes' names are checked against engine/src/result.rs, their source."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tally_client import records
from tally_client.errors import DecodeError
from tally_client.records import (
    Account,
    Instruction,
    SettlementCommand,
    Trade,
    TradeFlags,
    Transfer,
    decode_accounts,
    decode_commands,
    decode_instructions,
    decode_trades,
    decode_transfers,
    encode_accounts,
    encode_commands,
    encode_instructions,
    encode_settlements,
    encode_trades,
    encode_transfers,
)
from tally_client.results import RESULT_NAMES
from tally_client.settlement import RUN_RECORD_BYTES, decode_run_record

REPO = Path(__file__).resolve().parents[3]
KINDS = ("Account", "Transfer", "Trade", "Instruction", "Command")
#: A table's row for bytes no field holds (a command's 52..116).
RESERVED = "reserved"


def documented() -> dict[str, tuple[dict[str, tuple[int, int]], dict[str, int]]]:
    """The tables of docs/records.md by heading, and each flags row's bits by name (parsed as
    engine/tests/records_doc.rs parses them)."""
    tables: dict[str, tuple[dict[str, tuple[int, int]], dict[str, int]]] = {}
    current = None
    for line in (REPO / "docs" / "records.md").read_text().splitlines():
        if line.startswith("## "):
            name = (line[3:].split() or [""])[0]
            current = name if name in KINDS else None
            continue
        if current is None:
            continue
        cells = [cell.strip() for cell in line.split("|")]
        if len(cells) < 5 or not (cells[1].isdigit() and cells[2].isdigit()):
            continue
        layout, flags = tables.setdefault(current, ({}, {}))
        field = cells[3].strip("`")
        if field == "flags":
            for part in cells[4].split(","):
                words = part.split()
                bit = next((int(w) for w in words if w.isdigit()), None)
                flag = next((w for w in words if w.startswith("`")), None)
                if bit is not None and flag is not None:
                    flags[flag.strip("`").upper()] = bit
        layout[field] = (int(cells[1]), int(cells[2]))
    return tables


DOCUMENTED = documented()


def pattern(size: int) -> int:
    """Bytes 1, 2, ... as a little-endian value of ``size`` bytes (every byte non-zero)."""
    return int.from_bytes(bytes(range(1, size + 1)), "little")


def test_the_page_has_the_five_tables():
    assert set(DOCUMENTED) == set(KINDS)
    for kind in KINDS:
        assert len(DOCUMENTED[kind][0]) >= 11, kind


@pytest.mark.parametrize("kind", KINDS)
def test_the_client_layouts_are_the_documented_ones(kind):
    """Same fields, offsets and sizes, and every byte of the 128 belongs to a field (or to
    the documented reserved bytes, which the client knows too)."""
    layout = {name: (offset, size) for name, offset, size in records.LAYOUTS[kind]}
    documented = dict(DOCUMENTED[kind][0])
    reserved = documented.pop(RESERVED, None)
    assert layout == documented
    assert reserved == (records.COMMAND_RESERVED if kind == "Command" else None)
    spans = [*layout.items(), *([(RESERVED, reserved)] if reserved else [])]
    covered = sorted(
        {i for name, (offset, size) in spans if name != "pending_id" or kind != "Trade"
         for i in range(offset, offset + size)}
    )  # fmt: skip
    assert covered == list(range(records.RECORD_BYTES))
    assert set(layout) == set(records.field_names(kind))


@pytest.mark.parametrize("kind", KINDS)
def test_the_client_flags_are_the_documented_ones(kind):
    flags = {flag.name: flag.value.bit_length() - 1 for flag in records.FLAGS.get(kind, [])}
    assert flags == DOCUMENTED[kind][1]


Blank = Account | Transfer | Trade | Instruction | SettlementCommand


def blank(kind: str, /, **fields: int) -> Blank:
    cls: type[Blank] = {
        "Account": Account,
        "Transfer": Transfer,
        "Trade": Trade,
        "Instruction": Instruction,
        "Command": SettlementCommand,
    }[kind]
    values = {name: 0 for name in records.field_names(kind)}
    values.update(fields)
    return cls(**values)


ENCODE = {"Account": encode_accounts, "Transfer": encode_transfers, "Trade": encode_trades,
          "Instruction": encode_instructions, "Command": encode_commands}  # fmt: skip
DECODE = {"Account": decode_accounts, "Transfer": decode_transfers, "Trade": decode_trades,
          "Instruction": decode_instructions, "Command": decode_commands}  # fmt: skip


def cases():
    for kind in KINDS:
        for name, (offset, size) in DOCUMENTED[kind][0].items():
            if name != RESERVED:
                yield kind, name, offset, size


@pytest.mark.parametrize("kind, name, offset, size", list(cases()))
def test_each_field_is_encoded_where_the_page_says(kind, name, offset, size):
    """The field alone, set to a value of non-zero bytes, lands at its offset and size and
    nowhere else (a trade's pending id needs the post flag, whose bytes are then allowed),
    and decodes back."""
    value = pattern(size)
    also: tuple[int, int] = (0, 0)
    if name == "flags":
        value = sum(1 << bit for bit in DOCUMENTED[kind][1].values())
        if kind == "Trade":
            value &= ~TradeFlags.VOID_PENDING_TRADE  # a post: its pending id is written
    fields = {name: value}
    if kind == "Trade" and name == "pending_id":
        fields["flags"] = TradeFlags.POST_PENDING_TRADE
        also = DOCUMENTED[kind][0]["flags"]
    record = blank(kind, **fields)
    encoded = bytes(ENCODE[kind]([record]))
    assert len(encoded) == records.RECORD_BYTES
    for i, byte in enumerate(encoded):
        if offset <= i < offset + size:
            assert byte == value.to_bytes(size, "little")[i - offset], (name, i)
        elif not also[0] <= i < also[0] + also[1]:
            assert byte == 0, (name, i)
    assert DECODE[kind](encoded) == [record]


def test_a_settlement_batch_marks_trades_with_the_documented_bit():
    text = (REPO / "docs" / "records.md").read_text()
    bit = int(re.search(r"\*\*Bit (\d+) of `flags` marks a\s+trade\*\*", text).group(1))
    assert records.SETTLEMENT_TRADE == 1 << bit
    batch = encode_settlements([blank("Transfer", id=1), blank("Trade", id=2, flags=1)])
    flags = [int.from_bytes(batch[i + 118 : i + 120], "little") for i in (0, 128)]
    assert flags == [0, 1 | 1 << bit]


def run_record_table() -> list[tuple[int, str, int]]:
    """docs/records.md's run record block: (offset, field, size) per line, sizes from the
    types (``u128``, ``u64``, ``u32``, ``[n]``)."""
    text = (REPO / "docs" / "records.md").read_text()
    section = text[text.index("## Run record") :]
    start = section.index("```text") + len("```text")
    block = section[start : section.index("```", start)]
    sizes = {"u128": 16, "u64": 8, "u32": 4}
    rows = []
    for line in block.strip().splitlines():
        match = re.match(r"(\d+)\s+(\S+)\s+(u128|u64|u32|\[\d+\])", line)
        assert match, line
        kind = match.group(3)
        size = sizes[kind] if kind in sizes else int(kind.strip("[]"))
        rows.append((int(match.group(1)), match.group(2), size))
    return rows


def test_the_run_record_decoder_reads_the_documented_bytes():
    """The table covers the 256 bytes once; each field, alone set to non-zero bytes at its
    documented offset, decodes to that value; a reserved byte set is refused."""
    rows = run_record_table()
    covered = sorted(i for offset, _, size in rows for i in range(offset, offset + size))
    assert covered == list(range(RUN_RECORD_BYTES))
    fields = 0
    for offset, name, size in rows:
        raw = bytearray(RUN_RECORD_BYTES)
        raw[offset : offset + size] = bytes(range(1, size + 1))
        if name == RESERVED:
            with pytest.raises(DecodeError, match="reserved"):
                decode_run_record(bytes(raw))
            continue
        value: object = decode_run_record(bytes(raw))
        for part in name.split("."):
            value = getattr(value, part)
        expected = bytes(raw[offset : offset + size])
        assert value == (expected if name.startswith("certificate.") else
                         int.from_bytes(expected, "little")), name  # fmt: skip
        fields += 1
    assert fields == 15


def test_result_names_are_the_engines():
    """Every ``EventResult`` variant of engine/src/result.rs, by code, in the engine's
    snake_case (a number is a word of its own), and nothing else."""
    source = (REPO / "engine" / "src" / "result.rs").read_text()
    body = source[source.index("pub enum EventResult") :]
    body = body[: body.index("\n}")]
    variants = re.findall(r"^\s*([A-Z][A-Za-z0-9]*) = (\d+),", body, re.MULTILINE)

    def snake(name: str) -> str:
        return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[a-zA-Z])(?=[0-9])", "_", name).lower()

    assert RESULT_NAMES == {int(code): snake(name) for name, code in variants}
