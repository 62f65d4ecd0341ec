"""Generated rows stored as Strongroom stores them: encrypted fields sealed, blind indexes filled, DEKs in place.

Nothing here is a second implementation of the column encryption: the keyring, the data keys, the sealing
(AEAD bound to table, column and row id) and the blind indexes all come from the server's
:class:`server.security.field_cipher.FieldCipher` over the keyring that ``strongroom init`` wrote for the
benchmark's data directory. What this module adds is the bulk path: one DEK per data subject (a customer and
everything under it), generated, wrapped under the current KEK and returned as a ``data_keys`` row to be
written in the same batch as the subject's records, instead of one ``INSERT`` per subject through a session.

The rows are what ``FieldCipher.seal_fields`` leaves on a record before flush, and the ``data_keys`` rows are
what ``FieldCipher.create_dek`` inserts (generation 1, active), so the server opens every generated value.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from server.config import load_settings
from server.security.crypto import DataKey
from server.security.data_keys import DekState, token_prefix
from server.security.field_cipher import EncryptedEntity, FieldCipher

DATA_KEYS_TABLE = "data_keys"


class RowSealer:
    """Seals the encrypted fields of generated rows under their subject's DEK and fills their blind indexes.

    Args:
        cipher: The server's field cipher for the benchmark's keyring.
    """

    def __init__(self, cipher: FieldCipher) -> None:
        self.cipher = cipher
        self.layouts: dict[str, EncryptedEntity] = {layout.table: layout for layout in cipher.entities}
        self._keys: dict[uuid.UUID, DataKey] = {}
        self._key_rows: list[dict[str, Any]] = []

    @classmethod
    def for_environment(cls, environ: Mapping[str, str]) -> RowSealer:
        """The sealer for the keyring of ``environ``'s ``STRONGROOM_DATA_DIR`` (or ``STRONGROOM_KEYRING``).

        Raises:
            FileNotFoundError: No keyring yet (run ``strongroom init`` first).
        """
        settings = load_settings(dict(environ))
        return cls(FieldCipher.from_settings(settings, environ=environ))

    def encrypted_columns(self, table: str) -> frozenset[str]:
        """The columns of ``table`` that Strongroom stores sealed."""
        layout = self.layouts.get(table)
        return frozenset(layout.columns.values()) if layout is not None else frozenset()

    def seal_row(self, table: str, row: dict[str, Any]) -> dict[str, Any]:
        """Seal ``row``'s encrypted fields in place and set its ``<field>_bidx`` columns, as the server does.

        A None value stays None (and so does its blind index); every string, even blank, is sealed.
        """
        layout = self.layouts.get(table)
        if layout is None:
            return row
        dek: DataKey | None = None
        for name, column in layout.columns.items():
            value = row.get(column)
            if name in layout.blind_indexed:
                row[f"{name}_bidx"] = (self.cipher.blind_index_or_none(layout.name, name, value)
                                       if isinstance(value, str) else None)
            if not isinstance(value, str):
                continue
            if dek is None:
                dek = self.subject_key(row[layout.subject_column], row.get("created_at"))
            row[column] = self.cipher.seal_value(dek, layout, name, row["id"], value)
        return row

    def subject_key(self, subject_id: uuid.UUID, created_at: datetime | None) -> DataKey:
        """The subject's DEK, made (and queued as a ``data_keys`` row) on its first sealed value."""
        dek = self._keys.get(subject_id)
        if dek is None:
            provider = self.cipher.provider
            dek = DataKey.generate(provider.suite)
            wrapped = provider.wrap_dek(dek)
            self._keys[subject_id] = dek
            self._key_rows.append({
                "id": dek.id, "subject_id": subject_id, "generation": 1, "state": DekState.ACTIVE.value,
                "suite": int(dek.suite), "kek_version": wrapped.kek_version, "wrapped": wrapped.to_bytes(),
                "token_prefix": token_prefix(dek.id, dek.suite), "created_at": created_at,
            })
        return dek

    def take_key_rows(self) -> list[dict[str, Any]]:
        """The ``data_keys`` rows made since the last call. A batch holds whole subjects, so the keys are
        forgotten here too (memory stays flat at any profile size)."""
        rows, self._key_rows, self._keys = self._key_rows, [], {}
        return rows


class TokenPool:
    """Ciphertext of realistic size and form for audit ``before``/``after`` values, made by the server's sealing.

    The trail keeps sensitive values only as their stored ciphertext. Sealing a fresh value for each of
    millions of generated events would cost more than the rest of the event, so each encrypted column gets a
    pool of tokens sealed once under a bench-only DEK (not in ``data_keys``: they are the right bytes to store,
    hash and query, but do not open, which no benchmark needs).
    """

    def __init__(self, sealer: RowSealer, *, size: int = 256, seed: int = 7) -> None:
        rng = random.Random(seed)
        dek = DataKey.generate(sealer.cipher.provider.suite)
        self.tokens: dict[tuple[str, str], list[str]] = {}
        for layout in sealer.layouts.values():
            for name in layout.columns:
                self.tokens[(layout.name, name)] = [
                    sealer.cipher.seal_value(dek, layout, name, uuid.UUID(int=rng.getrandbits(128)),
                                             _sample_plaintext(name, rng))
                    for _ in range(size)
                ]

    def get(self, entity: str, name: str, rng: random.Random) -> str | None:
        """A token for ``entity.name``, or None if that field is not encrypted."""
        pool = self.tokens.get((entity, name))
        return rng.choice(pool) if pool else None


def _sample_plaintext(name: str, rng: random.Random) -> str:
    """A plaintext of typical length for the field (the token's length follows the plaintext's)."""
    samples = {
        "phone": f"+86 13{rng.randrange(10**9):09d}", "mobile": f"+86 15{rng.randrange(10**9):09d}",
        "email": f"user.{rng.randrange(10**6)}@example.com", "address": f"上海市浦东新区{rng.randrange(1, 999)}号",
        "national_id": f"{rng.randrange(10**17):017d}X", "tax_id": f"91{rng.randrange(10**16):016d}",
    }
    return samples.get(name, f"{name}: 现场支持 follow-up #{rng.randrange(10**6)}")
