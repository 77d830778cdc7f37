"""Tests of the independent verifier, standard library only: `python3 -m unittest` here.

The RFC 6962 test vectors come from testdata/rfc6962.txt (the data the Rust tests read too);
the Ed25519 vectors are RFC 8032's section 7.1 tests 1-3."""

import os
import unittest

import tally_verify as v

HERE = os.path.dirname(os.path.abspath(__file__))


def vectors():
    empty, leaves, roots, inclusions, consistencies = None, [], {}, [], []
    with open(os.path.join(HERE, "testdata", "rfc6962.txt"), encoding="utf-8") as file:
        for line in file:
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            kind, rest = fields[0], fields[1:]
            if kind == "empty":
                empty = bytes.fromhex(rest[0])
            elif kind == "leaf":
                leaves.append(bytes.fromhex(rest[0] if rest else ""))
            elif kind == "root":
                roots[int(rest[0])] = bytes.fromhex(rest[1])
            elif kind == "inclusion":
                inclusions.append(
                    (int(rest[0]), int(rest[1]), [bytes.fromhex(h) for h in rest[2:]])
                )
            elif kind == "consistency":
                consistencies.append(
                    (int(rest[0]), int(rest[1]), [bytes.fromhex(h) for h in rest[2:]])
                )
            else:
                raise AssertionError(f"unknown line {line!r}")
    return empty, leaves, roots, inclusions, consistencies


def root_of(leaf_hashes):
    """The RFC's definition of a tree's root, recursively."""
    n = len(leaf_hashes)
    if n == 1:
        return leaf_hashes[0]
    k = 1 << ((n - 1).bit_length() - 1)
    return v.node_hash(root_of(leaf_hashes[:k]), root_of(leaf_hashes[k:]))


def flips(proof):
    """Every proof with one bit changed."""
    for i, item in enumerate(proof):
        for bit in range(256):
            changed = bytearray(item)
            changed[bit // 8] ^= 1 << (bit % 8)
            yield proof[:i] + [bytes(changed)] + proof[i + 1 :]


class Rfc6962(unittest.TestCase):
    def test_the_rfcs_vectors(self):
        empty, leaves, roots, inclusions, consistencies = vectors()
        import hashlib

        self.assertEqual(hashlib.sha256(b"").digest(), empty)
        hashes = [v.leaf_hash(leaf) for leaf in leaves]
        for size, root in roots.items():
            self.assertEqual(root_of(hashes[:size]), root, size)
        self.assertEqual((len(roots), len(inclusions), len(consistencies)), (8, 5, 5))
        for index, size, proof in inclusions:
            self.assertTrue(
                v.verify_inclusion(index, size, hashes[index], proof, roots[size])
            )
            for bad in flips(proof):
                self.assertFalse(
                    v.verify_inclusion(index, size, hashes[index], bad, roots[size])
                )
            self.assertFalse(
                v.verify_inclusion(index ^ 1, size, hashes[index], proof, roots[size])
            )
            self.assertFalse(
                v.verify_inclusion(index, size * 2, hashes[index], proof, roots[size])
            )
            self.assertFalse(
                v.verify_inclusion(
                    index, size, hashes[index], proof + [roots[size]], roots[size]
                )
            )
        for old, new, proof in consistencies:
            self.assertTrue(
                v.verify_consistency(old, new, roots[old], roots[new], proof)
            )
            for bad in flips(proof):
                self.assertFalse(
                    v.verify_consistency(old, new, roots[old], roots[new], bad)
                )
            if proof:
                self.assertFalse(
                    v.verify_consistency(old, new, roots[new], roots[old], proof)
                )
                self.assertFalse(
                    v.verify_consistency(old, new, roots[old], roots[new], proof[1:])
                )
                self.assertFalse(
                    v.verify_consistency(old + 1, new, roots[old], roots[new], proof)
                )

    def test_degenerate_sizes(self):
        _, leaves, roots, _, _ = vectors()
        some = roots[5]
        self.assertTrue(v.verify_consistency(0, 5, b"x" * 32, some, []))
        self.assertFalse(v.verify_consistency(0, 5, b"x" * 32, some, [some]))
        self.assertTrue(v.verify_consistency(5, 5, some, some, []))
        self.assertFalse(v.verify_consistency(5, 5, some, roots[4], []))
        self.assertFalse(v.verify_consistency(5, 4, some, roots[4], []))
        self.assertFalse(v.verify_inclusion(0, 0, some, [], some))
        leaf = v.leaf_hash(leaves[0])
        self.assertTrue(v.verify_inclusion(0, 1, leaf, [], leaf))


class Ed25519(unittest.TestCase):
    VECTORS = (
        (
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            (
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
                "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
            ),
        ),
        (
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            (
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
                "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
            ),
        ),
        (
            "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
            "af82",
            (
                "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
                "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"
            ),
        ),
    )

    def test_rfc8032_vectors_and_every_bit_flip(self):
        for public, message, signature in self.VECTORS:
            public, message, signature = map(
                bytes.fromhex, (public, message, signature)
            )
            self.assertTrue(v.ed25519_verify(public, message, signature))
            for bit in range(512):
                bad = bytearray(signature)
                bad[bit // 8] ^= 1 << (bit % 8)
                self.assertFalse(v.ed25519_verify(public, message, bytes(bad)), bit)
            self.assertFalse(v.ed25519_verify(public, message + b"!", signature))


if __name__ == "__main__":
    unittest.main()
