"""One connection to a node's client port: TLS 1.3 verified against the cluster CA (or plain
TCP where the node's config says ``insecure_plaintext``), frames out, frames in.

A connection carries one request at a time (the client is synchronous): it sends a frame and
reads replies until the one with its frame id, dropping any late reply to an earlier request
that timed out. Any error closes the connection; the client decides what to retry.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

from . import protocol
from .errors import DecodeError, TlsError


@dataclass(frozen=True)
class Tls:
    """How to speak TLS to the nodes: the cluster CA file (``tally certs`` makes ``ca.pem``),
    optionally a client certificate and key, and the name to verify the nodes' certificates
    for when the address dialled is not one they name."""

    ca: str
    cert: str | None = None
    key: str | None = None
    server_name: str | None = None

    def context(self) -> ssl.SSLContext:
        try:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.minimum_version = ssl.TLSVersion.TLSv1_3
            context.load_verify_locations(cafile=self.ca)
            if self.cert is not None:
                context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as error:
            raise TlsError(f"cannot set up TLS from {self.ca}: {error}") from None
        return context


class ConnectionLost(Exception):
    """The connection failed or timed out: the outcome of a request on it is unknown.
    ``timed_out``: the node kept the connection but did not answer (stopped, isolated or
    stalled), so the client tries the next node rather than wait on it again."""

    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port``."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{address!r} is not host:port")
    return host.strip("[]"), int(port)


def _looks_like_tls(first: bytes) -> bool:
    """A TLS record (handshake or alert): what a plaintext client reads from a TLS port."""
    return len(first) >= 3 and first[0] in (0x15, 0x16) and first[1] == 3 and first[2] <= 4


class Connection:
    """A connection to ``address``; ``tls`` is an ``ssl.SSLContext`` or ``None``."""

    def __init__(
        self,
        address: str,
        context: ssl.SSLContext | None,
        server_name: str | None,
        timeout_s: float,
    ) -> None:
        self.address = address
        self._frame_id = 0
        host, port = split_address(address)
        try:
            raw = socket.create_connection((host, port), timeout=timeout_s)
        except OSError as error:
            raise ConnectionLost(f"connect to {address}: {error}") from None
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if context is None:
            self._socket: socket.socket = raw
            return
        try:
            self._socket = context.wrap_socket(raw, server_hostname=server_name or host)
        except ssl.SSLCertVerificationError as error:
            raw.close()
            raise TlsError(
                f"TLS handshake with {address} failed: {error.verify_message} (is the CA the "
                "cluster's, and does the node's certificate name the host dialled?)"
            ) from None
        except ssl.SSLError as error:
            raw.close()
            raise TlsError(
                f"TLS handshake with {address} failed: {error} (does the node serve plain TCP, "
                "insecure_plaintext?)"
            ) from None
        except OSError as error:
            raw.close()
            # A closed connection may pass (a node at its connection budget closes too), so
            # this is retried, as the Rust client does; the hint names the usual cause.
            raise ConnectionLost(
                f"TLS handshake with {address}: {error} (the node closed the connection during "
                "the handshake: does it serve plain TCP, insecure_plaintext?)"
            ) from None

    @property
    def is_open(self) -> bool:
        return self._socket.fileno() != -1

    def close(self) -> None:
        try:
            self._socket.close()
        except OSError:
            pass

    def next_frame_id(self) -> int:
        self._frame_id += 1
        return self._frame_id

    def send(self, frame: bytes | bytearray, timeout_s: float) -> None:
        try:
            self._socket.settimeout(timeout_s)
            self._socket.sendall(frame)
        except OSError as error:
            self.close()
            raise ConnectionLost(f"send to {self.address}: {error}") from None

    def _read_exactly(self, count: int) -> bytearray:
        buffer = bytearray(count)
        view = memoryview(buffer)
        filled = 0
        while filled < count:
            read = self._socket.recv_into(view[filled:])
            if read == 0:
                raise ConnectionLost(f"{self.address} closed the connection")
            filled += read
        return buffer

    def receive(self, frame_id: int, timeout_s: float) -> tuple[int, bytearray]:
        """The reply to frame ``frame_id``: its kind and payload (checksum checked)."""
        try:
            self._socket.settimeout(timeout_s)
            while True:
                header = bytes(self._read_exactly(protocol.FRAME_HEADER_BYTES))
                if _looks_like_tls(header):
                    self.close()
                    raise TlsError(
                        f"{self.address} speaks TLS: give the client the cluster CA "
                        "(plain TCP is only for nodes with insecure_plaintext)"
                    )
                try:
                    frame = protocol.decode_frame_header(header)
                except DecodeError as error:
                    raise ConnectionLost(f"{self.address}: {error}") from None
                payload = self._read_exactly(frame.payload_bytes)
                try:
                    protocol.check_frame_crc(header, payload, frame.crc)
                except DecodeError as error:
                    raise ConnectionLost(f"{self.address}: {error}") from None
                if frame.frame_id == frame_id:
                    return frame.kind, payload
                # A late reply to a request that timed out earlier on this connection.
        except ConnectionLost:
            self.close()
            raise
        except TimeoutError:
            self.close()
            raise ConnectionLost(
                f"no reply from {self.address} within {timeout_s:g} s", timed_out=True
            ) from None
        except OSError as error:
            self.close()
            raise ConnectionLost(f"{self.address}: {error}") from None
