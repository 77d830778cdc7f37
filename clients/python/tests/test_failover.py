"""Failover on a 3-node cluster: the leader applies a create request and is killed before
the client sees the reply. The client retries under the same request number, follows the new
leader, and gets the original reply from the replicated reply table: the events applied
exactly once. A reply lost with its connection alone is had again from the same node and
session, under the same number. Plus plain TCP, where a node's config allows it."""

from __future__ import annotations

import logging
import struct

import pytest
from local_nodes import run, start_nodes

from tally_client import Account, DeadlineExceeded, Transfer, protocol
from tally_client.connection import Connection, ConnectionLost

log = logging.getLogger(__name__)


@pytest.fixture
def cluster():
    cluster = start_nodes(3)
    try:
        yield cluster
    finally:
        cluster.stop()


def test_a_request_retried_after_the_leader_dies_lands_exactly_once(cluster, monkeypatch):
    """The reply to a committed create is lost with its leader; the retry, same number, at
    the new leader is answered from the reply table (same commit index and timestamps) and
    the balances show one application. Then the operators' membership commands: the dead
    node removed, a fresh one added as a learner and made a voter."""
    client = cluster.client()
    try:
        assert client.create_accounts([Account(id=1, ledger=1, code=1),
                                       Account(id=2, ledger=1, code=1)]).ok  # fmt: skip
        leader = cluster.leader()
        sent: list[tuple[int, int]] = []
        lost: list[protocol.ReplyHeader] = []
        send, receive = Connection.send, Connection.receive

        def record(self, frame, timeout_s):
            kind = frame[5]
            if kind == protocol.KIND_CREATE_TRANSFERS:
                (number,) = struct.unpack_from("<Q", frame, 72)
                sent.append((number, self.address == cluster.nodes[leader].address))
            return send(self, frame, timeout_s)

        def lose_first_reply(self, frame_id, timeout_s):
            kind, payload = receive(self, frame_id, timeout_s)
            if kind == protocol.KIND_CREATE_TRANSFERS | 1 and not lost:
                header, _ = protocol.decode_reply(payload)
                assert header.status is protocol.Status.OK
                lost.append(header)
                log.info("--- kill leader %d with the reply unread", leader)
                cluster.kill(leader)
                self.close()
                raise ConnectionLost("test: the leader died before its reply was read")
            return kind, payload

        monkeypatch.setattr(Connection, "send", record)
        monkeypatch.setattr(Connection, "receive", lose_first_reply)
        transfers = [Transfer(id=100 + n, debit_account_id=1, credit_account_id=2, amount=10,
                              ledger=1, code=1) for n in range(3)]  # fmt: skip
        created = client.create_transfers(transfers)
        monkeypatch.undo()

        assert lost, "the first reply was never lost"
        assert created.ok
        assert created.commit_index == lost[0].commit_index
        numbers = {number for number, _ in sent}
        assert len(sent) >= 2 and len(numbers) == 1, sent
        assert sent[0][1] and not sent[-1][1], "first sent to the old leader, last elsewhere"
        assert cluster.leader(exclude=leader) != leader
        balances = {a.id: a for a in client.lookup_accounts([1, 2])}
        assert balances[1].debits_posted == 30 and balances[2].credits_posted == 30
        assert [t.timestamp for t in client.lookup_transfers([100, 101, 102])] == [
            created.timestamp_first + n for n in range(3)
        ]

        log.info("--- remove the dead node, add a fresh node 4 as a learner, then a voter")
        others = sorted(set(cluster.nodes) - {leader})
        client.remove_nodes([leader])
        assert sorted(client.node_state().voters) == others
        cluster.plan(4)
        cluster.configure(4)
        cluster.start(4)
        node = cluster.nodes[4]
        client.add_learner(4, node.address, node.peer_address)
        client.change_voters([*others, 4])
        state = client.node_state()
        assert sorted(state.voters) == [*others, 4] and state.learners == []
        assert state.addresses[4] == node.address
    finally:
        client.close()


def test_plain_tcp_where_the_node_allows_it():
    """A node configured with insecure_plaintext serves a plaintext client (here a fresh
    node, which the client founds a cluster on: ``initialize``); a TLS client
    is told, when its deadline passes, that the node likely serves plain TCP."""
    cluster = start_nodes(1, plaintext=True, bootstrap=False)
    try:
        node = cluster.nodes[1]
        with cluster.client() as client:
            client.initialize({1: (node.address, node.peer_address)})
            assert cluster.leader() == 1
            assert client.create_accounts([Account(id=1, ledger=1, code=1)]).ok
            assert client.lookup_accounts([1])[0].ledger == 1
        run("certs", "--dir", str(cluster.root / "pki"), "--nodes", "1")
        # The node closes a connection that does not start with a frame; a closed handshake
        # may pass (a full connection budget), so it is retried, with the likely cause named.
        with pytest.raises(DeadlineExceeded, match="does it serve plain TCP"):
            cluster.client(ca=str(cluster.root / "pki" / "ca.pem"), insecure_plaintext=False,
                           deadline_s=3.0)  # fmt: skip
    finally:
        cluster.stop()


def test_a_reply_lost_with_its_connection_is_had_again_in_the_same_session(node, monkeypatch):
    """A connection that drops after the node applied a create, before the client read the
    reply: the client connects to the same node again, keeps its session, sends the same
    request number and gets the original reply (the session's reply cache), applying
    nothing twice."""
    base = 900_000_000
    with node.client(addresses=node.addresses[:1]) as client:
        assert client.create_accounts([Account(id=base + 1, ledger=1, code=1),
                                       Account(id=base + 2, ledger=1, code=1)]).ok  # fmt: skip
        session = client.session_id
        sent: list[int] = []
        lost: list[protocol.ReplyHeader] = []
        send, receive = Connection.send, Connection.receive

        def record(self, frame, timeout_s):
            if frame[5] == protocol.KIND_CREATE_TRANSFERS:
                sent.append(struct.unpack_from("<Q", frame, 72)[0])
            return send(self, frame, timeout_s)

        def drop_first_reply(self, frame_id, timeout_s):
            kind, payload = receive(self, frame_id, timeout_s)
            if kind == protocol.KIND_CREATE_TRANSFERS | 1 and not lost:
                lost.append(protocol.decode_reply(payload)[0])
                self.close()
                raise ConnectionLost("test: the connection dropped before the reply was read")
            return kind, payload

        monkeypatch.setattr(Connection, "send", record)
        monkeypatch.setattr(Connection, "receive", drop_first_reply)
        created = client.create_transfers(
            [Transfer(id=base + 10, debit_account_id=base + 1, credit_account_id=base + 2,
                      amount=7, ledger=1, code=1)]
        )  # fmt: skip
        monkeypatch.undo()
        assert lost and created.commit_index == lost[0].commit_index
        assert len(sent) == 2 and sent[0] == sent[1]
        assert session is not None and client.session_id == session
        assert client.lookup_accounts([base + 2])[0].credits_posted == 7
