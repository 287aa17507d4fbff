"""Key agreement, key derivation, authenticated encryption and mask streams.

Thin wrappers over ``cryptography``; nothing here is a home-made primitive:

- X25519 key agreement (RFC 7748) between two sites' key pairs;
- HKDF-SHA256 (RFC 5869) turns each shared secret into a single-purpose key, with the
  purpose, the round id and the site ids in ``info`` (domain separation);
- ChaCha20-Poly1305 (RFC 8439) encrypts what one site sends another through the
  coordinator, with the sender, recipient and round bound as associated data;
- a ChaCha20 keystream read as little-endian ``uint64`` words is the mask stream
  (pseudo-random generator). Each stream key is derived for one stream only, so the
  fixed all-zero nonce is never reused with the same key.
"""

from __future__ import annotations

import os
import struct

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedshift.errors import SecureAggregationError

#: bytes of a raw X25519 public or private key, and of every derived key
KEY_BYTES = 32
#: bytes of the random ChaCha20-Poly1305 nonce put in front of each ciphertext
NONCE_BYTES = 12
#: bytes of the Poly1305 tag at the end of each ciphertext
TAG_BYTES = 16
_LABEL = b"fedshift/secagg/v1"
_ZERO_NONCE = bytes(16)  # ChaCha20: 4-byte block counter + 12-byte nonce, all zero


def new_private_key() -> X25519PrivateKey:
    """A fresh X25519 private key from the operating system's CSPRNG."""
    return X25519PrivateKey.generate()


def public_bytes(key: X25519PrivateKey) -> bytes:
    """The raw 32-byte public key of ``key``."""
    return key.public_key().public_bytes_raw()


def private_bytes(key: X25519PrivateKey) -> bytes:
    """The raw 32-byte private key (only ever Shamir-shared, never sent in the clear)."""
    return key.private_bytes_raw()


def load_private_key(raw: bytes) -> X25519PrivateKey:
    """The X25519 private key of 32 raw bytes."""
    return X25519PrivateKey.from_private_bytes(raw)


def agree(private: X25519PrivateKey, peer_public: bytes, peer: int) -> bytes:
    """The X25519 shared secret of ``private`` and site ``peer``'s raw public key."""
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError as err:  # wrong length, or a low-order point (all-zero secret)
        raise SecureAggregationError(f"unusable X25519 public key from site {peer}: {err}") from err


def derive_key(secret: bytes, purpose: str, round_id: str, *site_ids: int) -> bytes:
    """A 32-byte key for one ``purpose`` in one round, HKDF-SHA256 of ``secret``."""
    rid = round_id.encode()
    info = b"|".join([_LABEL, purpose.encode(), struct.pack(">I", len(rid)) + rid])
    info += b"".join(struct.pack(">Q", s) for s in site_ids)
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info)
    return hkdf.derive(secret)


def associated_data(purpose: str, round_id: str, sender: int, recipient: int) -> bytes:
    """Associated data binding a ciphertext to its purpose, round, sender and recipient."""
    rid = round_id.encode()
    return b"|".join([_LABEL, purpose.encode(), struct.pack(">I", len(rid)) + rid]) + struct.pack(
        ">QQ", sender, recipient
    )


def seal(key: bytes, plaintext: bytes, ad: bytes) -> bytes:
    """ChaCha20-Poly1305 encryption: ``nonce || ciphertext || tag`` (random nonce)."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + ChaCha20Poly1305(key).encrypt(nonce, plaintext, ad)


def open_sealed(key: bytes, sealed: bytes, ad: bytes, sender: int, recipient: int) -> bytes:
    """Decrypt and authenticate what :func:`seal` made; raise naming sender and recipient."""
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise SecureAggregationError(
            f"ciphertext from site {sender} to site {recipient} is too short ({len(sealed)} bytes)"
        )
    try:
        return ChaCha20Poly1305(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], ad)
    except InvalidTag as err:
        raise SecureAggregationError(
            f"ciphertext from site {sender} to site {recipient} failed authentication: "
            "it was tampered with, misaddressed or belongs to another round"
        ) from err


class MaskStreams:
    """ChaCha20 mask streams of one length, added to or subtracted from ``uint64`` vectors.

    Reuses one input and one output buffer (``16 * length`` bytes in all): fresh 800 kB
    buffers per stream cost more than the cipher itself. Not thread-safe; use one per
    session. Each key must serve one stream only (derive it with :func:`derive_key`).
    """

    def __init__(self, length: int) -> None:
        self.length = length
        self._zeros = bytes(8 * length)
        self._buf = bytearray(8 * length)
        self._words = np.frombuffer(self._buf, dtype="<u8")

    def stream(self, key: bytes) -> np.ndarray:
        """The first ``length`` little-endian ``uint64`` words of ``key``'s keystream.

        The array is a view of the shared buffer, overwritten by the next call.
        """
        encryptor = Cipher(algorithms.ChaCha20(key, _ZERO_NONCE), mode=None).encryptor()
        encryptor.update_into(self._zeros, self._buf)
        return self._words

    def add(self, acc: np.ndarray, key: bytes, sign: int = 1) -> None:
        """``acc += sign * stream(key)`` modulo 2**64, in place; ``sign`` is 1 or -1."""
        if sign == 1:
            acc += self.stream(key)
        else:
            acc -= self.stream(key)


def mask_stream(key: bytes, length: int) -> np.ndarray:
    """``length`` pseudo-random ``uint64`` words: the ChaCha20 keystream of ``key`` (a copy)."""
    return MaskStreams(length).stream(key).copy()
