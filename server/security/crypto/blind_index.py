"""Blind indexes: a keyed, truncated HMAC of a normalised value, for equality search on encrypted columns.

Each field has its own key, ``HKDF(root, info=b"strongroom-bidx|" + entity + "." + field)``, so equal values
in different fields (a phone stored as ``phone`` and as ``mobile``) do not index alike, and a leaked field key
exposes one field only.

Why 32 bits. A blind index is stored as a signed 32-bit integer (an ``INTEGER`` column in SQLite and
PostgreSQL). For a table of N distinct values, a lookup of one value also matches each other value with
probability 2**-32, so it returns on average N / 2**32 false candidates: 0.00023 at N = 1M, 0.0023 at
N = 10M (one lookup in about 430). Across the whole column the expected number of colliding pairs is
N**2 / 2**33: about 116 at 1M and 11,600 at 10M. So collisions are rare per query but certainly present
in the table, and that is deliberate: the index cannot be an exact equality oracle, and every caller must
decrypt the candidates and compare in clear before treating a hit as a match (or a duplicate). Shorter
would blur equality further but cost decryptions (16 bits: 15 false candidates per lookup at 1M rows);
longer buys nothing a compare-after-decrypt does not already give.
"""

from __future__ import annotations

import hmac
import re

from cryptography.hazmat.primitives import hmac as crypto_hmac

from server.security.crypto.normalise import Normaliser, normalise_text
from server.security.crypto.suites import KEY_BYTES, Suite, derive_key, hash_for

__all__ = ["BLIND_INDEX_BITS", "BlindIndexer"]

BLIND_INDEX_BITS = 32
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_INFO_PREFIX = b"strongroom-bidx|"


class BlindIndexer:
    """Computes blind indexes for any ``entity.field`` from the keyring's blind-index root key.

    Args:
        root_key: The 32-byte blind-index root key.
        suite: HMAC-SHA256 (suite 1) or HMAC-SM3 (suite 2); HKDF uses the same hash.
    """

    __slots__ = ("_field_keys", "_root_key", "_suite")

    def __init__(self, root_key: bytes, suite: Suite) -> None:
        if len(root_key) != KEY_BYTES:
            raise ValueError(f"the blind-index root key is {KEY_BYTES} bytes, got {len(root_key)}")
        self._root_key = bytes(root_key)
        self._suite = suite
        self._field_keys: dict[tuple[str, str], bytes] = {}

    def __repr__(self) -> str:
        return f"BlindIndexer(suite={self._suite.label})"

    def field_key(self, entity: str, field: str) -> bytes:
        """The derived HMAC key of ``entity.field`` (cached).

        Raises:
            ValueError: ``entity`` or ``field`` is not a lower-case identifier (which keeps ``info`` unambiguous).
        """
        key = self._field_keys.get((entity, field))
        if key is None:
            if not (_NAME.fullmatch(entity) and _NAME.fullmatch(field)):
                raise ValueError(f"entity and field must be lower-case identifiers, got {entity!r}.{field!r}")
            info = _INFO_PREFIX + f"{entity}.{field}".encode()
            key = self._field_keys[(entity, field)] = derive_key(self._suite, self._root_key, info=info)
        return key

    def index(self, entity: str, field: str, value: str, *, normaliser: Normaliser = normalise_text) -> int:
        """The blind index of ``value`` in ``entity.field``: a signed 32-bit integer.

        Args:
            entity: Entity name as in policies (``contact``).
            field: Field name (``phone``).
            value: The plaintext, before normalisation.
            normaliser: Canonicalises ``value`` first (``normalise_email``, ``PhoneNormaliser(...)`` ...).

        Returns:
            An integer in [-2**31, 2**31). Equal normalised values give equal indexes; unequal ones collide
            with probability 2**-32, so decrypt candidates and compare.

        Raises:
            NormalisationError: ``value`` cannot be normalised.
        """
        message = normaliser(value).encode()
        key = self.field_key(entity, field)
        if self._suite is Suite.SM4GCM_HMAC_SM3:
            mac = crypto_hmac.HMAC(key, hash_for(self._suite))
            mac.update(message)
            digest = mac.finalize()
        else:
            digest = hmac.digest(key, message, "sha256")
        return int.from_bytes(digest[: BLIND_INDEX_BITS // 8], "big", signed=True)
