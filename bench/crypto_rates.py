"""Rates of the column-encryption core, per cipher suite: seal, open, rewrap, reseal, blind index.

Run: ``.venv/bin/python bench/crypto_rates.py [--seconds 1.0]``. Single-threaded, warm caches, 21-character
values (an email address). Targets from the design: rewrap and reseal at least 20,000 per second.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable

from server.security.crypto import (
    DekCache,
    Keyring,
    Suite,
    normalise_email,
    open_sealed,
    reseal,
    seal,
)

TARGETS = {"rewrap": 20_000.0, "reseal": 20_000.0}
VALUE = "zhang.wei@example.com"


def rate(operation: Callable[[int], None], count: int, seconds: float) -> float:
    """Operations per second: repeat ``operation(count)`` until ``seconds`` have passed, best round wins."""
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        operation(count)
        best = max(best, count / (time.perf_counter() - started))
    return best


def measure(suite: Suite, seconds: float) -> dict[str, float]:
    """Rates for one suite."""
    keyring = Keyring.generate(suite)
    dek, _ = keyring.new_dek()
    new_dek, _ = keyring.new_dek()
    keys = DekCache(keyring)
    keys.add(dek)
    record_ids = [uuid.uuid4() for _ in range(2_000)]
    tokens = [seal(VALUE, dek=dek, table="contacts", column="email", record_id=rid) for rid in record_ids]
    pairs = list(zip(record_ids, tokens, strict=True))
    wrapped_v1 = [keyring.new_dek()[1] for _ in range(2_000)]
    keyring.add_kek_version()
    indexer = keyring.blind_indexer()

    def seal_all(_count: int) -> None:
        for rid in record_ids:
            seal(VALUE, dek=dek, table="contacts", column="email", record_id=rid)

    def open_all(_count: int) -> None:
        for rid, token in pairs:
            open_sealed(token, keys=keys, table="contacts", column="email", record_id=rid)

    def rewrap_all(_count: int) -> None:
        for wrapped in wrapped_v1:
            keyring.rewrap(wrapped)

    def reseal_all(_count: int) -> None:
        for rid, token in pairs:
            reseal(token, old_keys=keys, new_dek=new_dek, table="contacts", column="email", record_id=rid)

    def index_all(_count: int) -> None:
        for _ in record_ids:
            indexer.index("contact", "email", VALUE, normaliser=normalise_email)

    return {
        "seal": rate(seal_all, len(record_ids), seconds),
        "open": rate(open_all, len(pairs), seconds),
        "rewrap": rate(rewrap_all, len(wrapped_v1), seconds),
        "reseal": rate(reseal_all, len(pairs), seconds),
        "blind_index": rate(index_all, len(record_ids), seconds),
    }


def main() -> None:
    """Print a table of rates and whether each target is met."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    arguments = parser.parse_args()
    print(f"{'suite':<26}{'operation':<13}{'per second':>12}{'us each':>10}  target")
    for suite in Suite:
        for operation, per_second in measure(suite, arguments.seconds).items():
            target = TARGETS.get(operation)
            verdict = "" if target is None else ("ok" if per_second >= target else f"BELOW {target:,.0f}")
            print(f"{suite.label:<26}{operation:<13}{per_second:>12,.0f}{1e6 / per_second:>10.2f}  {verdict}")


if __name__ == "__main__":
    main()
