"""What a call can end with. Every exception is a ``TallyError``:

- ``InvalidRequest`` (also a ``ValueError``): refused by this library before anything was
  sent: a field of the wrong type or out of range, an empty or oversized batch, a credential
  of the wrong length. Nothing reached the cluster.
- ``Refused`` and its subclasses: the cluster refused for good; retrying unchanged fails
  again (wrong credential, cluster id, role or scope; a malformed request; a batch refused
  whole; an account not found; a bug on the node). Raised at once, never retried.
- ``DeadlineExceeded``: the transient refusals (not the leader, busy, unavailable, session
  unknown) and lost connections were retried until the call's deadline passed.
- ``TlsError``: the node could not be verified, or TLS met a plaintext port or the reverse.
- ``DecodeError``: the node's bytes did not decode (a version mismatch or a bug).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .protocol import Refusal, Status


class TallyError(Exception):
    """Any error of this client."""


class InvalidRequest(TallyError, ValueError):
    """Bad input, refused before anything was sent."""


class RecordError(InvalidRequest):
    """A record that cannot be encoded: the message names the event and the field."""


class DecodeError(TallyError, ValueError):
    """Bytes from a node that do not decode."""


class TlsError(TallyError):
    """TLS could not be set up with the node: a configuration error no retry fixes."""


class DeadlineExceeded(TallyError, TimeoutError):
    """No answer for good within the call's deadline; ``last`` says what the last try met.
    A create whose outcome was not seen may have been applied: send it again (same events,
    same ids) and the applied ones answer ``exists``."""

    def __init__(self, deadline_s: float, last: str) -> None:
        super().__init__(f"no answer within {deadline_s:g} s (last: {last})")
        self.last = last


class ClientClosed(TallyError):
    """The client was closed."""


class Refused(TallyError):
    """The cluster refused the request; ``status`` and ``refusal`` say how and why."""

    def __init__(self, status: Status, refusal: Refusal) -> None:
        super().__init__(f"refused ({status.name}): {refusal.message}")
        self.status = status
        self.refusal = refusal


class BadRequest(Refused):
    """Malformed or over a limit (``BadRequest``)."""


class Unauthenticated(Refused):
    """The credential is unknown to the node, or the node has none configured."""


class Forbidden(Refused):
    """The credential's role or scope does not allow this request."""


class WrongCluster(Refused):
    """The node belongs to another cluster than the cluster id given."""


class BatchRefused(Refused):
    """The engine refused the batch whole: nothing changed."""


class NotFound(Refused):
    """No such account (or, for a reader, not in its scope: the two are not told apart)."""


class Internal(Refused):
    """A bug or a storage fault on the node."""


class OutOfScope(Refused):
    """A scoped submitter's request has an event outside its scope (``refusal.event``):
    nothing of the request was applied."""


class RequestNumberReused(Refused):
    """The request number was used for other contents: a client bug."""
