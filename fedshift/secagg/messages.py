"""The messages of a secure-aggregation round, as plain frozen dataclasses.

Round trip, one message type per step (``site -> coordinator`` and back)::

    AdvertiseKeys  (site -> coordinator)   two X25519 public keys
    KeyDirectory   (coordinator -> sites)  every site's public keys, threshold, settings
    SharePackets   (site -> coordinator)   encrypted Shamir shares, one per peer
    ShareInbox     (coordinator -> site)   the ciphertexts addressed to that site
    MaskedInput    (site -> coordinator)   the masked, fixed-point-encoded vector
    UnmaskRequest  (coordinator -> sites)  who survived and who dropped
    UnmaskResponse (site -> coordinator)   shares of survivors' seeds, dropped sites' keys

Every field is a type Flower's ``ConfigRecord`` holds (``str``, ``int``, ``float``,
``bytes`` and lists of one of them), except :attr:`MaskedInput.values`, a ``uint64``
array for an ``ArrayRecord``. :meth:`to_dict` and :meth:`from_dict` convert; the dict keys
are the field names with ``-`` for ``_``. Site ids are non-negative ints below 2**64
(Flower node ids). No message holds a private key, a share or a site's statistics in
the clear.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np

from fedshift.errors import SecureAggregationError

# annotation -> (accepted types, conversion)
_SCALARS: dict[str, tuple[type, Any]] = {
    "str": (str, str),
    "int": (numbers.Integral, int),
    "float": (numbers.Real, float),
    "bytes": (bytes, bytes),
}


_ID_FIELDS = frozenset(
    {"site", "sender", "recipient", "sites", "recipients", "senders", "survivors", "dropped"}
    | {"seed_owners", "key_owners"}
)


def _checked(kind: str, name: str, annotation: str, value: Any) -> Any:
    """``value`` converted to ``annotation`` (lists become tuples); raise on a mismatch."""
    is_list = annotation.startswith("tuple[")
    key = annotation[len("tuple[") :].split(",")[0] if is_list else annotation
    if key not in _SCALARS:  # np.ndarray: checked by the message itself
        return value
    accepted, convert = _SCALARS[key]
    if is_list and not isinstance(value, (list, tuple)):
        raise SecureAggregationError(f"{kind}.{name} must be a list, got {type(value).__name__}")
    items = value if is_list else (value,)
    for v in items:
        if not isinstance(v, accepted) or isinstance(v, bool):
            raise SecureAggregationError(
                f"{kind}.{name} must hold {key} values, got {type(v).__name__}"
            )
    return tuple(convert(v) for v in items) if is_list else convert(value)


M = TypeVar("M", bound="Message")


@dataclass(frozen=True)
class Message:
    """Base of every message: checks field types on construction (lists become tuples,
    numpy ints become ints) and converts to and from record dicts."""

    kind: ClassVar[str] = "message"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = _checked(self.kind, f.name, f.type, getattr(self, f.name))
            object.__setattr__(self, f.name, value)
            if f.name in _ID_FIELDS:
                for v in value if isinstance(value, tuple) else (value,):
                    if not 0 <= v < 2**64:
                        raise SecureAggregationError(
                            f"{self.kind}.{f.name}: site id {v} is not in [0, 2**64)"
                        )

    def to_dict(self) -> dict[str, Any]:
        """The message as ``{key: value}``, lists for tuples (ConfigRecord-ready)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name.replace("_", "-")] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls: type[M], record: Mapping[str, Any]) -> M:
        """The message from :meth:`to_dict`'s output (or a Flower record holding it)."""
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n.replace("_", "-") for n in names if n.replace("_", "-") not in record]
        if missing:
            raise SecureAggregationError(f"{cls.kind} record lacks keys {missing}")
        return cls(**{n: record[n.replace("_", "-")] for n in names})

    def nbytes(self) -> int:
        """Payload bytes: ``len`` of str/bytes, 8 per int or float, ``nbytes`` of arrays.

        Counts values only, as Flower's ``ConfigRecord.count_bytes`` does, without keys
        or transport framing.
        """
        total = 0
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            for v in value if isinstance(value, tuple) else (value,):
                if isinstance(v, np.ndarray):
                    total += v.nbytes
                elif isinstance(v, (str, bytes)):
                    total += len(v.encode() if isinstance(v, str) else v)
                else:
                    total += 8
        return total


@dataclass(frozen=True)
class AdvertiseKeys(Message):
    """A site's two fresh X25519 public keys: ``channel_key`` encrypts shares between
    sites, ``mask_key`` agrees pairwise masks."""

    kind: ClassVar[str] = "AdvertiseKeys"
    round_id: str
    site: int
    channel_key: bytes
    mask_key: bytes


@dataclass(frozen=True)
class KeyDirectory(Message):
    """Every advertising site's public keys (sites in ascending id order), the Shamir
    threshold and the fixed-point settings the sites must share."""

    kind: ClassVar[str] = "KeyDirectory"
    round_id: str
    threshold: int
    frac_bits: int
    clip: float
    min_sites: int
    sites: tuple[int, ...]
    channel_keys: tuple[bytes, ...]
    mask_keys: tuple[bytes, ...]


@dataclass(frozen=True)
class SharePackets(Message):
    """One ciphertext per peer from ``sender``: its shares of its mask key and seed."""

    kind: ClassVar[str] = "SharePackets"
    round_id: str
    sender: int
    recipients: tuple[int, ...]
    ciphertexts: tuple[bytes, ...]


@dataclass(frozen=True)
class ShareInbox(Message):
    """The ciphertexts addressed to ``recipient``; ``senders`` plus the recipient are the
    sites that shared their keys (the sites whose masks enter the round)."""

    kind: ClassVar[str] = "ShareInbox"
    round_id: str
    recipient: int
    senders: tuple[int, ...]
    ciphertexts: tuple[bytes, ...]


@dataclass(frozen=True)
class MaskedInput(Message):
    """A site's masked vector, ``(L + 1,)`` ``uint64``: the encoded statistics and, last,
    the site's count of clipped values, plus the self mask and the pairwise masks."""

    kind: ClassVar[str] = "MaskedInput"
    round_id: str
    site: int
    values: np.ndarray

    def __post_init__(self) -> None:
        super().__post_init__()
        v = self.values
        if not isinstance(v, np.ndarray) or v.dtype != np.uint64 or v.ndim != 1:
            raise SecureAggregationError(
                f"MaskedInput.values from site {self.site} must be a 1-D uint64 array, got "
                f"{getattr(v, 'dtype', type(v).__name__)} {getattr(v, 'shape', '')}"
            )


@dataclass(frozen=True)
class UnmaskRequest(Message):
    """Which sites sent a masked input (``survivors``) and which shared keys but did not
    (``dropped``)."""

    kind: ClassVar[str] = "UnmaskRequest"
    round_id: str
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]


@dataclass(frozen=True)
class UnmaskResponse(Message):
    """A survivor's shares: of each survivor's self-mask seed, of each dropped site's mask
    private key (never both for one site)."""

    kind: ClassVar[str] = "UnmaskResponse"
    round_id: str
    site: int
    seed_owners: tuple[int, ...]
    seed_shares: tuple[bytes, ...]
    key_owners: tuple[int, ...]
    key_shares: tuple[bytes, ...]
