"""Refusals the client must raise at once, as clear exceptions, without retrying: a wrong
credential, a wrong cluster id, a role or scope that forbids the operation, a node that
speaks TLS to a plaintext client; and what a scope allows still works."""

from __future__ import annotations

import time

import pytest
from local_nodes import CLUSTER_ID, run

from tally_client import (
    Account,
    Client,
    DeadlineExceeded,
    Forbidden,
    OutOfScope,
    Role,
    TlsError,
    Transfer,
    Unauthenticated,
    WrongCluster,
)


def test_wrong_credential_is_unauthenticated_at_once(node):
    """A credential the node does not know is refused at registration, at once (a permanent
    refusal is never retried until the deadline)."""
    started = time.monotonic()
    with pytest.raises(Unauthenticated, match="UNAUTHENTICATED"):
        Client(node.addresses, CLUSTER_ID, b"not-a-known-secret-0123456789", ca=node.ca)
    assert time.monotonic() - started < 10.0


def test_wrong_cluster_id_is_refused_at_once(node):
    """A client of another cluster is refused WrongCluster, and nothing is retried."""
    started = time.monotonic()
    with pytest.raises(WrongCluster):
        node.client(cluster_id=CLUSTER_ID + 1)
    assert time.monotonic() - started < 10.0


def test_roles_and_scopes_forbid_what_they_do_not_allow(node, base):
    """A reader may not write and sees only its ledger; a submitter may not read; a scoped
    submitter is refused OutOfScope (naming the event) for a debit outside its ledgers, and
    nothing of that request applies, while a request inside its scope does."""
    with node.client() as operator:
        assert operator.create_accounts(
            [Account(id=base + 1, ledger=1, code=1), Account(id=base + 2, ledger=1, code=1),
             Account(id=base + 3, ledger=2, code=1), Account(id=base + 4, ledger=2, code=1)]
        ).ok  # fmt: skip
    with node.client("reader") as reader:
        assert reader.role is Role.READER
        with pytest.raises(Forbidden):
            reader.create_accounts([Account(id=base + 9, ledger=1, code=1)])
        assert [a.id for a in reader.lookup_accounts([base + 1, base + 3])] == [base + 1]
    with node.client("submitter") as submitter, pytest.raises(Forbidden):
        submitter.lookup_accounts([base + 1])
    with node.client("scoped") as scoped:
        inside = Transfer(id=base + 20, debit_account_id=base + 3, credit_account_id=base + 4,
                          amount=5, ledger=2, code=1)  # fmt: skip
        outside = Transfer(id=base + 21, debit_account_id=base + 1, credit_account_id=base + 2,
                           amount=5, ledger=1, code=1)  # fmt: skip
        with pytest.raises(OutOfScope) as refused:
            scoped.create_transfers([inside, outside])
        assert refused.value.refusal.event == 1
        assert "ledger" in refused.value.refusal.message
        assert scoped.create_transfers([inside]).ok
    with node.client() as operator:
        assert [t.id for t in operator.lookup_transfers([base + 20, base + 21])] == [base + 20]


def test_a_tls_node_refuses_a_plaintext_client_and_an_unknown_ca(node, tmp_path):
    """A CA that did not sign the node is a TlsError at once; plain TCP to a TLS port ends
    at the deadline, naming the likely cause."""
    # The node closes a connection whose first bytes are not TLS; a closed connection may
    # pass (a full connection budget), so it is retried, with the likely cause named.
    with pytest.raises(DeadlineExceeded, match="give the CA"):
        node.client(ca=None, insecure_plaintext=True, deadline_s=3.0)
    run("certs", "--dir", str(tmp_path / "other"), "--nodes", "1")  # another cluster's CA
    with pytest.raises(TlsError, match="TLS handshake with .* failed"):
        node.client(ca=str(tmp_path / "other" / "ca.pem"), deadline_s=10.0)
