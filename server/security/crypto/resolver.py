"""Finding the data key a sealed value names: the ``DekResolver`` seam and a bounded in-process cache."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Protocol

from server.security.crypto.datakeys import DataKey, WrappedDek
from server.security.crypto.errors import KeyDestroyed, UnknownKey

__all__ = ["DekCache", "DekResolver", "DekUnwrapper"]


class DekResolver(Protocol):
    """Turns the DEK id in a sealed value's header into the key."""

    def resolve(self, dek_id: uuid.UUID) -> DataKey:
        """The data key with id ``dek_id``.

        Raises:
            KeyDestroyed: The key was erased (crypto-shredded).
            UnknownKey: The key is not known here.
        """
        ...


class DekUnwrapper(Protocol):
    """The part of a ``KeyProvider`` the cache needs."""

    def unwrap_dek(self, wrapped: WrappedDek) -> DataKey:
        """Decrypt a wrapped DEK."""
        ...


class DekCache:
    """A ``DekResolver`` holding unwrapped DEKs in memory, loading missing ones through a callback.

    Unwrapping costs a KEK decryption (and, with a remote provider, a network call), so resolved keys
    are kept. The cache is bounded (oldest entries leave first) and, with ``ttl_seconds``, entries expire
    so that a DEK destroyed by another process stops working here within that time.

    Args:
        provider: Unwraps what ``load_wrapped`` returns. Required when ``load_wrapped`` is given.
        load_wrapped: Fetches a wrapped DEK by id (for example from the DEK table); None when absent.
        is_destroyed: Whether a DEK id is known to be erased (for example from the erasure ledger).
        destroyed: DEK ids known to be erased, checked before ``is_destroyed``.
        max_entries: Upper bound on cached keys.
        ttl_seconds: Lifetime of a cached key; None keeps keys until evicted or forgotten.
    """

    def __init__(
        self,
        provider: DekUnwrapper | None = None,
        *,
        load_wrapped: Callable[[uuid.UUID], WrappedDek | None] | None = None,
        is_destroyed: Callable[[uuid.UUID], bool] | None = None,
        destroyed: Iterable[uuid.UUID] = (),
        max_entries: int = 100_000,
        ttl_seconds: float | None = None,
    ) -> None:
        if load_wrapped is not None and provider is None:
            raise ValueError("load_wrapped needs a provider to unwrap what it loads")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._provider = provider
        self._load_wrapped = load_wrapped
        self._is_destroyed = is_destroyed
        self._destroyed: set[uuid.UUID] = set(destroyed)
        self._max_entries = max_entries
        self._ttl = ttl_seconds
        # dict keeps insertion order: evicting from the front drops the oldest entry. A plain dict lookup is
        # atomic under the GIL, so the hot path (a hit) takes no lock.
        self._entries: dict[uuid.UUID, tuple[DataKey, float]] = {}
        self._lock = threading.Lock()

    def add(self, dek: DataKey) -> None:
        """Cache a DEK the caller already holds (for example one it has just generated).

        Raises:
            KeyDestroyed: The id is known to be erased.
        """
        if dek.id in self._destroyed:
            raise KeyDestroyed(f"DEK {dek.id} has been destroyed")
        self._store(dek)

    def add_wrapped(self, wrapped: WrappedDek) -> DataKey:
        """Unwrap a DEK with the provider and cache it."""
        if self._provider is None:
            raise ValueError("this cache has no provider to unwrap with")
        if self._known_destroyed(wrapped.dek_id):
            raise KeyDestroyed(f"DEK {wrapped.dek_id} has been destroyed")
        dek = self._provider.unwrap_dek(wrapped)
        self._store(dek)
        return dek

    def forget(self, dek_id: uuid.UUID) -> None:
        """Drop a DEK from the cache (it may be loaded again)."""
        with self._lock:
            self._entries.pop(dek_id, None)

    def mark_destroyed(self, dek_id: uuid.UUID) -> None:
        """Drop a DEK and refuse it from now on with ``KeyDestroyed``."""
        with self._lock:
            self._destroyed.add(dek_id)
            self._entries.pop(dek_id, None)

    def holds(self, dek_id: uuid.UUID) -> bool:
        """Whether ``resolve`` would answer ``dek_id`` from memory (cached and not expired)."""
        entry = self._entries.get(dek_id)
        return entry is not None and (self._ttl is None or entry[1] > time.monotonic())

    def refuses(self, dek_id: uuid.UUID) -> bool:
        """Whether ``dek_id`` is already known here to be destroyed (no callback is asked)."""
        return dek_id in self._destroyed

    def resolve(self, dek_id: uuid.UUID) -> DataKey:
        """The DEK with id ``dek_id``, from the cache or loaded and unwrapped.

        Raises:
            KeyDestroyed: The id is known to be erased, here or by ``is_destroyed``.
            UnknownKey: No such key in the cache and the loader has none.
            DecryptionError: The loaded wrapped DEK does not unwrap.
        """
        entry = self._entries.get(dek_id)
        if entry is not None and (self._ttl is None or entry[1] > time.monotonic()):
            return entry[0]
        if self._known_destroyed(dek_id):
            self.mark_destroyed(dek_id)
            raise KeyDestroyed(f"DEK {dek_id} has been destroyed; values sealed with it are erased")
        if self._load_wrapped is None or self._provider is None:
            raise UnknownKey(f"DEK {dek_id} is not known")
        wrapped = self._load_wrapped(dek_id)
        if wrapped is None:
            raise UnknownKey(f"DEK {dek_id} is not known")
        if wrapped.dek_id != dek_id:
            raise UnknownKey(f"loader returned DEK {wrapped.dek_id} when asked for {dek_id}")
        dek = self._provider.unwrap_dek(wrapped)
        self._store(dek)
        return dek

    def _known_destroyed(self, dek_id: uuid.UUID) -> bool:
        return dek_id in self._destroyed or (self._is_destroyed is not None and self._is_destroyed(dek_id))

    def _store(self, dek: DataKey) -> None:
        expires = time.monotonic() + self._ttl if self._ttl is not None else float("inf")
        with self._lock:
            self._entries.pop(dek.id, None)
            while len(self._entries) >= self._max_entries:
                del self._entries[next(iter(self._entries))]
            self._entries[dek.id] = (dek, expires)
