"""Column encryption core: cipher suites, sealed values, envelope keys, blind indexes and crypto-shredding.

Pure: no database, no HTTP. The services layer seals and opens field values with these functions, stores
wrapped DEKs and blind indexes in columns, and appends erasures to the ledger.

Typical use::

    provider = FileKeyProvider(data_dir / "keyring.json")
    dek, wrapped = provider.keyring.new_dek()          # store wrapped.to_bytes() in the DEK table
    token = seal("138 0013 8000", dek=dek, table="contacts", column="phone", record_id=contact_id)
    keys = DekCache(provider, load_wrapped=load_from_dek_table, destroyed=ledger.destroyed_dek_ids())
    phone = open_sealed(token, keys=keys, table="contacts", column="phone", record_id=contact_id)
    phone_bidx = provider.keyring.blind_indexer().index("contact", "phone", phone, normaliser=normalise_phone)
"""

from server.security.crypto.blind_index import BLIND_INDEX_BITS, BlindIndexer
from server.security.crypto.datakeys import DataKey, Kek, WrappedDek, unwrap_dek, wrap_dek, wrapped_dek_id
from server.security.crypto.envelope import (
    SEAL_FORMAT_VERSION,
    SEALED_HEADER_CHARS,
    SEALED_PREFIX,
    named_key_id,
    open_raw,
    open_sealed,
    reseal,
    seal,
    seal_raw,
    sealed_key_id,
)
from server.security.crypto.erasure_ledger import ERASURE_LEDGER_NAME, ErasureLedger, ErasureRecord
from server.security.crypto.errors import (
    CryptoError,
    DecryptionError,
    ErasureLedgerError,
    KeyDestroyed,
    KeyringError,
    NormalisationError,
    UnknownKey,
)
from server.security.crypto.keyring import Keyring
from server.security.crypto.normalise import (
    Normaliser,
    PhoneNormaliser,
    normalise_email,
    normalise_national_id,
    normalise_phone,
    normalise_text,
)
from server.security.crypto.providers import (
    KEYRING_ENV,
    EnvKeyProvider,
    FileKeyProvider,
    KeyProvider,
    create_keyring_file,
    keyring_env_value,
    load_keyring_file,
)
from server.security.crypto.resolver import DekCache, DekResolver
from server.security.crypto.suites import DEFAULT_SUITE, Suite

__all__ = [
    "BLIND_INDEX_BITS",
    "DEFAULT_SUITE",
    "ERASURE_LEDGER_NAME",
    "KEYRING_ENV",
    "SEALED_HEADER_CHARS",
    "SEALED_PREFIX",
    "SEAL_FORMAT_VERSION",
    "BlindIndexer",
    "CryptoError",
    "DataKey",
    "DecryptionError",
    "DekCache",
    "DekResolver",
    "EnvKeyProvider",
    "ErasureLedger",
    "ErasureLedgerError",
    "ErasureRecord",
    "FileKeyProvider",
    "Kek",
    "KeyDestroyed",
    "KeyProvider",
    "Keyring",
    "KeyringError",
    "NormalisationError",
    "Normaliser",
    "PhoneNormaliser",
    "Suite",
    "UnknownKey",
    "WrappedDek",
    "create_keyring_file",
    "keyring_env_value",
    "load_keyring_file",
    "named_key_id",
    "normalise_email",
    "normalise_national_id",
    "normalise_phone",
    "normalise_text",
    "open_raw",
    "open_sealed",
    "reseal",
    "seal",
    "seal_raw",
    "sealed_key_id",
    "unwrap_dek",
    "wrap_dek",
    "wrapped_dek_id",
]
