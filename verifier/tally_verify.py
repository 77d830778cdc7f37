#!/usr/bin/env python3
"""An independent verifier of Tally's history: Python 3 with its standard library only.

It shares no code with the server. It checks, offline, a proof bundle (docs/verifiability.md):
that every checkpoint is signed by the cluster's key (a C2SP signed note, Ed25519), that each
checkpoint extends the one before it (an RFC 6962 consistency proof), and that every event is
in its checkpoint's tree (an RFC 6962 inclusion proof).

    python3 tally_verify.py --key KEY [--witness WITNESS_KEY ...] bundle.json

KEY is the cluster's verifier key (`<name>+<key id>+<base64 key>`) or a file holding it; each
WITNESS_KEY a witness's, whose cosignature (C2SP tlog-cosignature/v1) every checkpoint must
then carry too.
Prints OK and exits 0, or names each thing that does not verify and exits 1 (2: unreadable
input). Everything here follows the public specifications, not Tally's source: RFC 6962 and
RFC 9162 (the tree and its proofs), RFC 8032 (Ed25519), C2SP signed-note, tlog-checkpoint and
tlog-cosignature.
"""

import argparse
import base64
import hashlib
import json
import sys

# --- RFC 6962 / RFC 9162: the Merkle tree ------------------------------------------------------


def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(index, size, leaf, proof, root):
    """RFC 9162 section 2.1.3.2: is `leaf` (a leaf hash) leaf `index` of the tree `root`?"""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(old, new, old_root, new_root, proof):
    """RFC 9162 section 2.1.4.2: is the tree of `old` leaves a prefix of the one of `new`?"""
    if old > new:
        return False
    if old == new or old == 0:
        return not proof and (old != new or old_root == new_root)
    if not proof:
        return False
    if (
        old & (old - 1) == 0
    ):  # a power of two: the old root is the path's implicit start
        proof = [old_root] + list(proof)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


# --- RFC 8032: Ed25519 verification ------------------------------------------------------------

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _recover_x(y, sign):
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P != 0:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P != 0:
        return None
    if (x & 1) != sign:
        x = _P - x
    return x


def _add(a, b):
    # Extended homogeneous coordinates (X, Y, Z, T), RFC 8032 section 5.1.4.
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa = (y1 - x1) * (y2 - x2) % _P
    bb = (y1 + x1) * (y2 + x2) % _P
    cc = 2 * t1 * t2 * _D % _P
    dd = 2 * z1 * z2 % _P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(s, point):
    result = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            result = _add(result, point)
        point = _add(point, point)
        s >>= 1
    return result


def _equal(a, b):
    return (a[0] * b[2] - b[0] * a[2]) % _P == 0 and (
        a[1] * b[2] - b[1] * a[2]
    ) % _P == 0


def _decompress(data):
    if len(data) != 32:
        return None
    y = int.from_bytes(data, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % _P)


_GY = 4 * pow(5, _P - 2, _P) % _P
_GX = _recover_x(_GY, 0)
_G = (_GX, _GY, 1, _GX * _GY % _P)


def ed25519_verify(public, message, signature):
    """RFC 8032 section 5.1.7: [S]B = R + [k]A, with S < L and canonical points."""
    if len(public) != 32 or len(signature) != 64:
        return False
    a = _decompress(public)
    r = _decompress(signature[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= _L:
        return False
    k = (
        int.from_bytes(
            hashlib.sha512(signature[:32] + public + message).digest(), "little"
        )
        % _L
    )
    return _equal(_mul(s, _G), _add(r, _mul(k, a)))


# --- C2SP signed-note and tlog-checkpoint ------------------------------------------------------


class Refused(Exception):
    """Something does not verify; the message says what."""


def _b64(text, what):
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as error:
        raise Refused(f"{what} is not base64") from error


NOTE_KEY = 0x01  # Ed25519 over the note's text: a log's key
COSIGNATURE_KEY = 0x04  # C2SP tlog-cosignature/v1: a witness's key


def parse_key(text):
    """A verifier key `<name>+<hex key id>+<base64(type || public key)>`, type 0x01 (a log's)
    or 0x04 (a witness's): (name, id, key, type)."""
    parts = text.strip().split("+", 2)
    if len(parts) != 3:
        raise Refused("the key is not <name>+<key id>+<key>")
    name, key_id, blob = parts
    blob = _b64(blob, "the key")
    if len(blob) != 33 or blob[0] not in (NOTE_KEY, COSIGNATURE_KEY):
        raise Refused("the key is not an Ed25519 key (type 0x01 or 0x04, 32 bytes)")
    expected = hashlib.sha256(name.encode() + b"\n" + blob).digest()[:4]
    if expected.hex() != key_id:
        raise Refused("the key's id does not match its name and key")
    return name, expected, blob[1:], blob[0]


def open_note(note, key):
    """The text of `note` if `key` (from parse_key) signed it (a witness's key: cosigned it);
    Refused otherwise."""
    name, key_id, public, kind = key
    if not note.endswith("\n") or "\n\n" not in note:
        raise Refused("not a signed note (no blank line before its signatures)")
    at = note.rindex("\n\n")
    text, lines = note[: at + 1], note[at + 2 : -1].split("\n")
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise Refused("the note's text has a control character")
    signed = False
    for line in lines:
        if not line.startswith("\u2014 ") or line.count(" ") != 2:
            raise Refused(f"malformed signature line {line!r}")
        signer, blob = line[2:].split(" ")
        blob = _b64(blob, f"the signature by {signer}")
        if signer != name or blob[:4] != key_id:
            continue
        if kind == COSIGNATURE_KEY:
            # key id || time (u64, big-endian seconds) || signature over the time and the text
            if len(blob) != 4 + 8 + 64:
                raise Refused(f"the cosignature by {name} is not 76 bytes")
            time = int.from_bytes(blob[4:12], "big")
            message = f"cosignature/v1\ntime {time}\n{text}".encode()
            if time >= 1 << 63 or not ed25519_verify(public, message, blob[12:]):
                raise Refused(
                    f"the cosignature by {name} does not verify: the note was altered"
                )
        elif not ed25519_verify(public, text.encode(), blob[4:]):
            raise Refused(
                f"the signature by {name} does not verify: the note was altered"
            )
        signed = True
    if not signed:
        raise Refused(f"the note carries no signature by {name}")
    return text


def parse_checkpoint(text):
    """(origin, size, root, time_ns) from a checkpoint's text."""
    lines = text.split("\n")
    if len(lines) != 5 or lines[4] != "":
        raise Refused("a checkpoint has 4 lines")
    origin, size, root, time = lines[:4]
    if not size.isdigit() or (size != "0" and size.startswith("0")):
        raise Refused(f"tree size {size!r}")
    root = _b64(root, "the root hash")
    if len(root) != 32:
        raise Refused("the root hash is not 32 bytes")
    if not time.startswith("time ") or not time[5:].isdigit():
        raise Refused(f"time line {time!r}")
    return origin, int(size), root, int(time[5:])


# --- The proof bundle --------------------------------------------------------------------------


def _hashes(items, what):
    out = []
    for item in items:
        try:
            value = bytes.fromhex(item)
        except (TypeError, ValueError) as error:
            raise Refused(f"{what} holds something that is not hex") from error
        if len(value) != 32:
            raise Refused(f"{what} holds a hash that is not 32 bytes")
        out.append(value)
    return out


def verify_bundle(bundle, key, witnesses=()):
    """Every failure in `bundle`, as messages; empty means it all verifies. Each checkpoint
    must be signed by `key` and cosigned by every one of `witnesses`."""
    failures = []
    checkpoints = []
    for i, note in enumerate(bundle.get("checkpoints", [])):
        try:
            if key[3] != NOTE_KEY or any(w[3] != COSIGNATURE_KEY for w in witnesses):
                raise Refused(
                    "the log's key must be of type 0x01, a witness's of type 0x04"
                )
            for witness in witnesses:
                open_note(note, witness)
            checkpoints.append(parse_checkpoint(open_note(note, key)))
        except Refused as why:
            failures.append(f"checkpoint {i}: {why}")
            checkpoints.append(None)
    if not checkpoints:
        failures.append("the bundle holds no checkpoint")
    origins = {c[0] for c in checkpoints if c}
    if len(origins) > 1:
        failures.append(f"checkpoints of more than one log: {sorted(origins)}")
    steps = bundle.get("consistency", [])
    for i in range(1, len(checkpoints)):
        if not any(
            s.get("old") == i - 1 and s.get("new") == i
            for s in steps
            if isinstance(s, dict)
        ):
            failures.append(
                f"checkpoint {i}: no consistency proof joins it to checkpoint {i - 1}"
            )
    for i, step in enumerate(steps):
        try:
            old, new = checkpoints[step["old"]], checkpoints[step["new"]]
            if old is None or new is None:
                raise Refused("a checkpoint it joins does not verify")
            proof = _hashes(step["proof"], "the proof")
            if not verify_consistency(old[1], new[1], old[2], new[2], proof):
                raise Refused(
                    f"checkpoint {step['new']} (size {new[1]}) does not extend checkpoint "
                    f"{step['old']} (size {old[1]}): history was rewritten, or the proof altered"
                )
        except (KeyError, IndexError, TypeError) as error:
            failures.append(f"consistency step {i}: malformed ({error!r})")
        except Refused as why:
            failures.append(f"consistency step {i}: {why}")
    for i, event in enumerate(bundle.get("events", [])):
        try:
            checkpoint = checkpoints[event["checkpoint"]]
            if checkpoint is None:
                raise Refused("its checkpoint does not verify")
            leaf = bytes.fromhex(event["leaf"])
            proof = _hashes(event["proof"], "the proof")
            index = event["index"]
            if not verify_inclusion(
                index, checkpoint[1], leaf_hash(leaf), proof, checkpoint[2]
            ):
                raise Refused(
                    f"leaf {index} is not in checkpoint {event['checkpoint']} "
                    f"(size {checkpoint[1]}): the event or its proof was altered"
                )
        except (KeyError, IndexError, TypeError, ValueError) as error:
            failures.append(f"event {i}: malformed ({error!r})")
        except Refused as why:
            failures.append(f"event {i}: {why}")
    return failures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--key", required=True, help="verifier key, or a file holding it"
    )
    parser.add_argument(
        "--witness",
        action="append",
        default=[],
        help="a witness's verifier key, or a file holding it (repeatable)",
    )
    parser.add_argument("bundle", help="proof bundle (JSON, docs/verifiability.md)")
    args = parser.parse_args(argv)

    def read_key(text):
        if "+" not in text:
            with open(text, encoding="utf-8") as file:
                text = file.read()
        return parse_key(text)

    try:
        key = read_key(args.key)
        witnesses = [read_key(w) for w in args.witness]
        with open(args.bundle, encoding="utf-8") as file:
            bundle = json.load(file)
    except (OSError, ValueError, Refused) as error:
        print(f"cannot read the input: {error}", file=sys.stderr)
        return 2
    failures = verify_bundle(bundle, key, witnesses)
    if failures:
        for failure in failures:
            print(f"FAILED {failure}")
        return 1
    events = len(bundle.get("events", []))
    sizes = ", ".join(
        str(parse_checkpoint(open_note(n, key))[1]) for n in bundle["checkpoints"]
    )
    cosigned = "".join(f", cosigned by {w[0]}" for w in witnesses)
    print(
        f"OK: {len(bundle['checkpoints'])} checkpoints (sizes {sizes}) signed by {key[0]}"
        f"{cosigned}, each extending the last; {events} events included"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
