"""Sign-in throttling: lockout keyed on (account, client address), with exponential backoff.

Why not lock the account alone: whoever knows a username could then keep its owner (an administrator, say)
locked out for ever by sending wrong passwords from anywhere. Following OWASP's authentication guidance, a
run of failures locks the account *for the address it came from*; the owner signing in from elsewhere is not
affected. A distributed guesser (many addresses, a few tries each) is held back by a second, higher,
per-account threshold with a short backoff, kept in the ``users`` row (``failed_logins``/``locked_until``)
by the identity service: it slows guessing across every address to a trickle while costing the real owner
at most a short wait.

The per-address counters live in this process's memory (no schema change, no extra round trip). With several
processes or replicas an address gets the threshold once per process before its lock; the per-account
threshold in the database bounds the total regardless. A restart forgets address locks, not account locks.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

ADDRESS_LOCKOUT_THRESHOLD: Final = 5
ADDRESS_LOCKOUT_BASE: Final = timedelta(seconds=30)
ADDRESS_LOCKOUT_MAX: Final = timedelta(minutes=15)
# Failures older than this are forgotten, so a few typos last week do not count towards today's lock.
FAILURE_MEMORY: Final = timedelta(hours=24)
MAX_TRACKED: Final = 100_000
# IPv6 hosts usually hold a whole /64: counting each address separately would give one attacker 2**64 fresh
# starts. Addresses inside one /64 therefore share a counter.
IPV6_PREFIX: Final = 64


def backoff(failures: int, *, threshold: int, base: timedelta, cap: timedelta) -> timedelta | None:
    """How long to lock after ``failures`` consecutive failures: none below ``threshold``, then doubling, capped."""
    if failures < threshold:
        return None
    delay: timedelta = base * (2 ** min(failures - threshold, 32))
    return min(delay, cap)


def address_key(address: str | None) -> str:
    """The throttling key of a client address: the address itself, its /64 for IPv6, ``unknown`` for none."""
    if not address:
        return "unknown"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:100]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, IPV6_PREFIX), strict=False))
    return str(parsed)


@dataclass(slots=True)
class AddressFailures:
    """Consecutive failed sign-ins for one account from one address."""

    count: int
    last_failure: datetime
    locked_until: datetime | None = None


class LoginThrottle:
    """Per-(account, address) failure counts and locks, in memory, bounded in size (least recently used out).

    Single-threaded use from the event loop; no awaits happen between a read and its update.
    """

    def __init__(self, *, threshold: int = ADDRESS_LOCKOUT_THRESHOLD, base: timedelta = ADDRESS_LOCKOUT_BASE,
                 cap: timedelta = ADDRESS_LOCKOUT_MAX, memory: timedelta = FAILURE_MEMORY,
                 max_tracked: int = MAX_TRACKED) -> None:
        self.threshold, self.base, self.cap, self.memory = threshold, base, cap, memory
        self._max_tracked = max_tracked
        self._failures: OrderedDict[tuple[str, str], AddressFailures] = OrderedDict()

    def _current(self, account: str, address: str | None, now: datetime) -> AddressFailures | None:
        key = (account, address_key(address))
        entry = self._failures.get(key)
        if entry is None:
            return None
        if now - entry.last_failure > self.memory and (entry.locked_until is None or entry.locked_until <= now):
            del self._failures[key]
            return None
        return entry

    def locked_until(self, account: str, address: str | None, now: datetime) -> datetime | None:
        """When the lock of ``account`` for ``address`` ends, or None if it is not locked there."""
        entry = self._current(account, address, now)
        if entry is None or entry.locked_until is None or entry.locked_until <= now:
            return None
        return entry.locked_until

    def failed(self, account: str, address: str | None, now: datetime) -> AddressFailures:
        """Count a wrong password for ``account`` from ``address``; lock the pair once the threshold is reached."""
        key = (account, address_key(address))
        entry = self._current(account, address, now)
        if entry is None:
            entry = AddressFailures(count=0, last_failure=now)
            self._failures[key] = entry
        entry.count += 1
        entry.last_failure = now
        delay = backoff(entry.count, threshold=self.threshold, base=self.base, cap=self.cap)
        entry.locked_until = now + delay if delay else None
        self._failures.move_to_end(key)
        while len(self._failures) > self._max_tracked:
            self._failures.popitem(last=False)
        return entry

    def succeeded(self, account: str, address: str | None) -> None:
        """A correct sign-in from ``address`` clears that address's count (other addresses keep theirs)."""
        self._failures.pop((account, address_key(address)), None)

    def forget(self, account: str) -> None:
        """Drop every count and lock of ``account`` (after a password reset)."""
        for key in [key for key in self._failures if key[0] == account]:
            del self._failures[key]


# One per process: the token endpoint's identity services share it.
LOGIN_THROTTLE: Final = LoginThrottle()
