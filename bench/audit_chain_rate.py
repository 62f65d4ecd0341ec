"""CPU that audit chaining adds per event, without the database.

Run: ``.venv/bin/python -m bench.audit_chain_rate [--events 200000] [--rounds 7]``. The events are built as
the server builds them (:func:`server.audit.trail.pending_event`: an update of a contact, two sealed fields
before and after, one data subject). What the chain adds to recording an event, judged against the issue's
10 us:

- :func:`server.audit.sealer.chain_rows`, which every seal pass and every group commit of read events runs:
  the sequence number written into the canonical bytes, the SHA-256 link over the previous hash, and the rows
  for the three event tables (a trail without a chain would build those rows too: counted anyway);
- the canonical encoding's cost beyond a plain JSON encoding of the same event with the encoder the server uses
  for everything else (msgspec, no sorting, no checks): the validation and the fixed form the hash needs;
  storing the event as JSON at all is not the chain's cost. The stdlib's ``json.dumps`` is printed too, for
  scale (the canonical encoder wrote its bytes with it until 2026-12-07).

CPU is ``time.process_time`` of this process, so other load on the machine does not count; each figure is the
best of several interleaved rounds. Target: at most 10 us per event (100,000 events/s).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import msgspec

from server.audit.canonical import decode_event, encode_event
from server.audit.chain import GENESIS_HASH
from server.audit.sealer import chain_rows
from server.audit.tags import ActorType, AuditAction
from server.audit.trail import AuditActor, RequestInfo, pending_event

TARGET_US = 10.0


def make_events(count: int) -> list[tuple[int | None, dict[str, Any]]]:
    """``count`` pending events as ``(pending id, row)`` (1,000 distinct bodies, reused)."""
    actor = AuditActor(ActorType.USER, "0192f3a4-7c1e-7d2a-9a41-5b0c1d2e3f40", "mia.keller", ("sales_manager",))
    request = RequestInfo("01JD5ZK8N3Q7V2X4Y6Z8A0B2C4", "10.20.30.40",
                          "Mozilla/5.0 (X11; Linux x86_64) strongroom-console/1.4")
    bodies = [
        pending_event(
            action=AuditAction.UPDATE, actor=actor, entity="contact",
            entity_id=f"0192f3a4-7c1e-7d2a-9a41-{number:012d}", subject_id=f"0192f3a4-7c1e-7d2a-9a42-{number:012d}",
            fields=["email", "phone"],
            before={"email": "v1.k7." + "A" * 64, "phone": "v1.k7." + "B" * 48, "version": 3},
            after={"email": "v1.k7." + "C" * 64, "phone": "v1.k7." + "D" * 48, "version": 4},
            request=request,
        )
        for number in range(1000)
    ]
    return [(pending_id, bodies[pending_id % 1000]) for pending_id in range(1, count + 1)]


def cpu_seconds(work: Callable[[], object]) -> float:
    """Process CPU time of one call."""
    started = time.process_time()
    work()
    return time.process_time() - started


def bare_link(events: list[tuple[int | None, dict[str, Any]]]) -> None:
    """SHA-256 over previous hash and body, nothing else: the floor of any chain."""
    sha256, digest = hashlib.sha256, GENESIS_HASH
    for _pending_id, row in events:
        digest = sha256(digest + row["canonical"]).digest()


def plain_json(documents: list[dict[str, Any]]) -> None:
    """The same events as JSON with no canonical checks: what storing them would cost without a chain."""
    encode = msgspec.json.Encoder().encode
    for document in documents:
        encode(document)


def stdlib_json(documents: list[dict[str, Any]]) -> None:
    """The same events through the standard library's ``json.dumps`` (for scale only)."""
    dumps = json.dumps
    for document in documents:
        dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def canonical(documents: list[dict[str, Any]]) -> None:
    """The same events through the canonical encoder."""
    for document in documents:
        encode_event(document)


def main() -> None:
    """Print the best round of each measurement, in microseconds of CPU per event."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    options = parser.parse_args()
    events = make_events(options.events)
    documents = [dict(decode_event(row["canonical"])) for _pending_id, row in events[:20_000]]
    size = sum(len(row["canonical"]) for _pending_id, row in events[:1000]) // 1000
    chain = bare = encoded = plain = stdlib = float("inf")
    for _ in range(options.rounds):  # interleaved, best round wins
        chain = min(chain, cpu_seconds(lambda: chain_rows(0, GENESIS_HASH, events)) / len(events))
        bare = min(bare, cpu_seconds(lambda: bare_link(events)) / len(events))
        encoded = min(encoded, cpu_seconds(lambda: canonical(documents)) / len(documents))
        plain = min(plain, cpu_seconds(lambda: plain_json(documents)) / len(documents))
        stdlib = min(stdlib, cpu_seconds(lambda: stdlib_json(documents)) / len(documents))
    check = chain_rows(0, GENESIS_HASH, events[:2]).events
    if [row["seq"] for row in check] != [1, 2] or check[1]["prev_hash"] != check[0]["hash"]:
        raise SystemExit("chain_rows did not chain the benchmark events")
    added = chain + max(0.0, encoded - plain)
    verdict = "meets" if added * 1e6 <= TARGET_US else "MISSES"
    print(f"events: {len(events):,}, mean canonical size {size} bytes, best of {options.rounds} rounds, CPU time")
    print(f"chaining    : {added * 1e6:6.2f} us/event = {1 / added:>10,.0f} events/s  "
          f"({verdict} target <= {TARGET_US:.0f} us: chain_rows + canonical encoding beyond plain JSON)")
    print(f"chain_rows  : {chain * 1e6:6.2f} us/event (sequence number, link, table rows)")
    print(f"bare sha256 : {bare * 1e6:6.2f} us/event (the link alone)")
    print(f"encoding    : {encoded * 1e6:6.2f} us/event canonical, {plain * 1e6:.2f} us/event plain (msgspec), "
          f"{stdlib * 1e6:.2f} us/event json.dumps")


if __name__ == "__main__":
    main()
