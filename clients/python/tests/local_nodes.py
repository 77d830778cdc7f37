"""Real ``tally node`` processes on loopback for the tests, as tests/common and
src/local_cluster.rs start them: a cluster CA made by ``tally certs``, one config file per
node (small WAL segments, credentials by their hash, a checkpoint key), data under one
temporary directory that ``stop`` removes. Nothing here is the client's code: the tests reach
the nodes only through ``tally_client``.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tally_client import Client, TallyError

REPO = Path(__file__).resolve().parents[3]
CLUSTER_ID = 0x7A11
#: The default timings and small WAL segments (tests/common/mod.rs's FAST_RAFT).
FAST_RAFT = "[raft]\n[wal]\nsegment_mib = 16\n"
#: How long a test waits for a node to lead or a cluster to agree on a leader.
LEADER_WAIT_S = 60.0

#: Credentials of the test nodes: name -> (secret, role, extra TOML lines).
CREDENTIALS = {
    "operator": ("test-operator-secret-0123456789", "operator", ""),
    "submitter": ("test-submitter-secret-012345678", "submitter", ""),
    # May debit (and open) accounts on ledger 2 only.
    "scoped": ("test-scoped-submitter-secret-01", "submitter", "ledgers = [2]\n"),
    # Reads accounts on ledger 1 only.
    "reader": ("test-reader-secret-0123456789ab", "reader", "ledgers = [1]\n"),
}


def tally_bin() -> Path:
    """The ``tally`` binary under test: ``TALLY_BIN`` (tests/python_client.rs passes
    cargo's), else the release build of this checkout."""
    path = Path(os.environ.get("TALLY_BIN", REPO / "target" / "release" / "tally"))
    if not path.is_file():
        raise RuntimeError(
            f"no tally binary at {path}: `cargo build --release --bin tally`, or set TALLY_BIN"
        )
    return path


_HANDED_OUT: set[int] = set()


def free_address() -> str:
    """A loopback address nobody listens on now, below the kernel's ephemeral range where it
    can (a port from that range may become another connection's source port before the node
    binds it), not handed out before by this process."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(256):
        port = random.randrange(10_000, low) if low > 11_000 else 0
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = probe.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return f"127.0.0.1:{port}"
    raise RuntimeError("no free loopback port in 256 tries")


def run(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [str(tally_bin()), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"tally {' '.join(args)} failed: {done.stderr}")
    return done.stdout


@dataclass
class Node:
    id: int
    address: str
    peer_address: str
    admin_address: str
    dir: Path
    process: subprocess.Popen[bytes] | None = None

    def log(self) -> str:
        try:
            return (self.dir / "node.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""


@dataclass
class LocalNodes:
    """Nodes ``1..=count`` of one cluster under a temporary directory."""

    root: Path
    plaintext: bool = False
    nodes: dict[int, Node] = field(default_factory=dict)
    #: The ``[[gateway.credentials]]`` sections of every node's config.
    credentials: str = ""

    @property
    def ca(self) -> str | None:
        return None if self.plaintext else str(self.root / "pki" / "ca.pem")

    @property
    def addresses(self) -> list[str]:
        return [node.address for node in self.nodes.values()]

    def client(self, credential: str = "operator", **options: object) -> Client:
        """A client of every node, as ``credential`` (a name in ``CREDENTIALS``)."""
        secret = CREDENTIALS[credential][0]
        options.setdefault("cluster_id", CLUSTER_ID)
        options.setdefault("deadline_s", LEADER_WAIT_S)
        addresses = options.pop("addresses", self.addresses)
        if self.plaintext:
            options.setdefault("insecure_plaintext", True)
        else:
            options.setdefault("ca", self.ca)
        return Client(addresses, credential=secret, **options)  # type: ignore[arg-type]

    def plan(self, node_id: int) -> Node:
        """Give node ``node_id`` its addresses and directory (not configured, not started)."""
        node_dir = self.root / f"node-{node_id}"
        node_dir.mkdir()
        node = Node(node_id, free_address(), free_address(), free_address(), node_dir)
        self.nodes[node_id] = node
        return node

    def configure(self, node_id: int, bootstrap: str = "") -> None:
        """Write node ``node_id``'s config: TLS with its certificate (made here if missing)
        or plain TCP, small WAL segments, the checkpoint key, every test credential, and the
        ``[bootstrap]`` members given (none: a fresh node, to be added or initialized)."""
        node = self.nodes[node_id]
        pki = self.root / "pki"
        if self.plaintext:
            tls = "insecure_plaintext = true\n"
        else:
            if not (pki / f"node-{node_id}.pem").exists():
                run("certs", "--dir", str(pki), "--ca-exists", "--nodes", str(node_id))
            tls = (
                f'[tls]\nca = "{pki}/ca.pem"\ncert = "{pki}/node-{node_id}.pem"\n'
                f'key = "{pki}/node-{node_id}.key"\n'
            )
        config = (
            f'id = {node_id}\nlisten = "{node.address}"\n'
            f'peer_listen = "{node.peer_address}"\nadmin_listen = "{node.admin_address}"\n'
            f'data_dir = "{node.dir / "data"}"\n{tls}{FAST_RAFT}'
            f'[verifiable]\nkey_file = "{self.root / "cluster.key"}"\n'
            f'[gateway]\ncluster_id = "{CLUSTER_ID:#x}"\n{self.credentials}'
        )
        if bootstrap:
            config += f"\n[bootstrap]\n{bootstrap}"
        (node.dir / "node.toml").write_text(config)

    def start(self, node_id: int) -> None:
        node = self.nodes[node_id]
        with open(node.dir / "node.log", "ab") as log:
            node.process = subprocess.Popen(
                [str(tally_bin()), "node", "--config", str(node.dir / "node.toml")],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
            )

    def kill(self, node_id: int) -> None:
        """SIGKILL: the node stops at once, mid-request if it was serving one."""
        process = self.nodes[node_id].process
        if process is not None:
            process.kill()
            process.wait(timeout=30)
            self.nodes[node_id].process = None

    def leader(self, exclude: int | None = None) -> int:
        """The id of the node that leads (as that node says), waiting for one."""
        deadline = time.monotonic() + LEADER_WAIT_S
        last = "nothing asked"
        while time.monotonic() < deadline:
            for node_id, node in self.nodes.items():
                if node.process is None or node_id == exclude:
                    continue
                if node.process.poll() is not None:
                    raise RuntimeError(f"node {node_id} exited:\n{node.log()}")
                try:
                    with self.client(
                        addresses=[node.address],
                        linearizable=False,
                        deadline_s=5.0,
                        request_timeout_s=5.0,
                    ) as client:
                        state = client.node_state()
                except TallyError as error:
                    last = str(error)
                    continue
                if state.role == "Leader":
                    return node_id
                last = f"node {node_id}: {state.role}"
            time.sleep(0.2)
        raise RuntimeError(f"no leader within {LEADER_WAIT_S} s (last: {last})")

    def stop(self) -> None:
        """Kill every node and remove the directory: always, however the test ended."""
        for node_id in list(self.nodes):
            try:
                self.kill(node_id)
            except (OSError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.root, ignore_errors=True)


def start_nodes(count: int, plaintext: bool = False, bootstrap: bool = True) -> LocalNodes:
    """Found a cluster of ``count`` nodes and wait for its leader (without ``bootstrap``:
    start them fresh, for ``Client.initialize``). The caller stops it (on a failure here, it
    is stopped before the error propagates)."""
    cluster = LocalNodes(Path(tempfile.mkdtemp(prefix="tally-python-")), plaintext)
    try:
        ids = list(range(1, count + 1))
        if not plaintext:
            run("certs", "--dir", str(cluster.root / "pki"), "--nodes",
                ",".join(map(str, ids)), "--hosts", "localhost,127.0.0.1")  # fmt: skip
        run("witness", "new-key", "--log", "--name", f"tally/cluster-{CLUSTER_ID:#x}",
            "--key-file", str(cluster.root / "cluster.key"))  # fmt: skip
        for name, (secret, role, scope) in CREDENTIALS.items():
            digest = run("hash-credential", stdin=secret + "\n").strip()
            cluster.credentials += (
                f'\n[[gateway.credentials]]\nname = "{name}"\nhash = "{digest}"\n'
                f'role = "{role}"\n{scope}'
            )
        for node_id in ids:
            cluster.plan(node_id)
        members = "".join(
            f'{n.id} = {{ client = "{n.address}", peer = "{n.peer_address}" }}\n'
            for n in cluster.nodes.values()
        )
        for node_id in ids:
            cluster.configure(node_id, members if bootstrap else "")
            cluster.start(node_id)
        if bootstrap:
            cluster.leader()
        return cluster
    except BaseException:
        cluster.stop()
        raise
