"""The codec without a node: CRC32C against its check value and a plain table loop, frames
sealed as docs/protocol.md lays them out, and decoders that refuse what the Rust decoders
refuse (a wrong version, a body size that does not match, non-zero reserved bytes, counts
past the bytes left) with a DecodeError, never another exception."""

from __future__ import annotations

import random
import struct

import pytest

from tally_client import DecodeError, Status, protocol
from tally_client.crc32c import crc32c

_POLY = 0x82F63B78


def crc32c_bitwise(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (_POLY if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_crc32c_check_value_and_every_length_class():
    """The CRC-32C check value, and lengths around the table loop's limit and the 8 KiB
    blocks (a short first block of 1..3 bytes, whole blocks), equal a bit-by-bit CRC."""
    assert crc32c(b"123456789") == 0xE3069283
    rng = random.Random(20)
    for length in [0, 1, 4, 255, 256, 257, 8191, 8192, 8193, 8194, 8195, 8196, 20_000]:
        data = rng.randbytes(length)
        assert crc32c(data) == crc32c_bitwise(data), length
        cut = length // 3
        assert crc32c(data[:cut], data[cut:]) == crc32c(data), length


def test_a_sealed_request_is_laid_out_as_documented():
    header = protocol.RequestHeader(
        flags=protocol.FLAG_LINEARIZABLE,
        cluster_id=(1 << 127) | 0x7A11,
        client_id=3,
        session=9,
        request_number=42,
    )
    frame = protocol.request_frame(protocol.KIND_LOOKUP_ACCOUNTS, 77, header, bytes(16))
    magic, version, kind, reserved, length, frame_id, crc = struct.unpack_from("<4sBBHIQI", frame)
    assert (magic, version, kind, reserved) == (b"TLYF", 1, 74, 0)
    assert (length, frame_id) == (64 + 16, 77)
    assert crc == crc32c(frame[:20], frame[24:])
    fields = struct.unpack_from("<HHI16s16sQQQ", frame, 24)
    assert fields[:3] == (2, 1, 16)
    assert int.from_bytes(fields[3], "little") == header.cluster_id
    assert int.from_bytes(fields[4], "little") == 3
    assert fields[5:] == (9, 42, 0)


def reply(status: int = 0, body: bytes = b"", version: int = 2, declared: int | None = None):
    size = len(body) if declared is None else declared
    return struct.pack("<HBBI2Q2QQQQ", version, status, 0, size, 1, 0, 3, 0, 9, 42, 5) + body


def refusal(leader: tuple[int, str] | None = None, message: str = "why") -> bytes:
    known = 1 if leader else 0
    node, address = leader or (0, "")
    return (
        struct.pack("<BBHIQ", known, 0, 0, 0, node)
        + struct.pack("<H", len(address))
        + address.encode()
        + struct.pack("<H", len(message))
        + message.encode()
    )


def test_replies_and_refusals_decode():
    header, body = protocol.decode_reply(reply(1, refusal((2, "127.0.0.1:7102"), "not me")))
    assert header.status is Status.NOT_LEADER and header.commit_index == 5
    assert header.request_number == 42 and header.cluster_id == 1
    decoded = protocol.decode_refusal(body)
    assert (decoded.leader_id, decoded.leader_address, decoded.message) == (
        2,
        "127.0.0.1:7102",
        "not me",
    )
    assert Status.BUSY.is_transient and not Status.FORBIDDEN.is_transient


@pytest.mark.parametrize(
    "payload",
    [
        reply(version=1),
        reply(declared=4),
        reply(status=14),
        reply(body=b"\x00")[:10],
    ],
)
def test_malformed_reply_headers_are_refused(payload):
    with pytest.raises(DecodeError):
        protocol.decode_reply(payload)


@pytest.mark.parametrize(
    "decode, body",
    [
        (protocol.decode_refusal, refusal() + b"\x00"),
        (protocol.decode_refusal, b"\x02" + refusal()[1:]),
        (protocol.decode_registered, struct.pack("<QIB3xII", 1, 2, 9, 3, 4)),
        (protocol.decode_registered, struct.pack("<QIB3sII", 1, 2, 1, b"\x01\x00\x00", 3, 4)),
        (protocol.decode_create_reply, struct.pack("<QQII", 1, 2, 3, 0)),
        (protocol.decode_create_reply, struct.pack("<QQII", 1, 2, 0, 1)),
        (protocol.decode_balances, bytes(63)),
        (protocol.decode_statement, struct.pack("<IIQ", 2, 0, 0) + bytes(208)),
        (
            protocol.decode_statement,
            struct.pack("<IIQQB7x", 1, 0, 0, 5, 1)
            + bytes(64)
            + bytes(118)
            + b"\x00\x01"
            + bytes(8),
        ),
        # A next page without the more flag; an unknown flag.
        (protocol.decode_statement, struct.pack("<IIQ", 0, 0, 9)),
        (protocol.decode_statement, struct.pack("<IIQ", 0, 2, 0)),
        (protocol.decode_checkpoint, struct.pack("<QQH", 1, 2, 5) + b"abc"),
        (protocol.decode_consistency, struct.pack("<II", 66, 0) + bytes(66 * 32)),
        (protocol.decode_prove, struct.pack("<QQII", 1, 2, 1, 0)),
        (protocol.decode_access_trail, struct.pack("<QQHII", 1, 2, 0, 1, 0)),
    ],
)
def test_malformed_bodies_are_decode_errors(decode, body):
    with pytest.raises(DecodeError):
        decode(body)


def test_random_bytes_never_raise_anything_but_decode_error():
    rng = random.Random(7)
    decoders = [
        protocol.decode_refusal,
        protocol.decode_registered,
        protocol.decode_create_reply,
        protocol.decode_statement,
        protocol.decode_checkpoint,
        protocol.decode_prove,
        protocol.decode_consistency,
        protocol.decode_access_trail,
        protocol.decode_node_state,
        protocol.decode_reply,
    ]
    for _ in range(2000):
        body = rng.randbytes(rng.randrange(0, 300))
        for decode in decoders:
            try:
                decode(body)
            except DecodeError:
                pass
