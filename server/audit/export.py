"""Audit exports: a JSONL file that proves its events offline, and the verifier a compliance officer runs on it.

A file is UTF-8 JSON Lines, every line ending in ``\\n``, one object per line, in this order:

1. ``header`` (once)::

       {"type": "header", "format": "strongroom-audit-export", "version": 1, "origin": "strongroom-audit",
        "key_id": "<16 hex>", "created": "<RFC 3339 UTC>", "filter": <what was selected: object or string>,
        "complete": <bool>, "seq_range": [<first>, <last>] | null}

   ``complete: true`` claims every event of ``seq_range`` is present (a full or ranged export);
   ``false`` is a selection (one customer's events) where gaps are expected.
2. ``checkpoint`` (one or more, tree sizes ascending)::

       {"type": "checkpoint", "body": "<checkpoint body text>", "signature": "<base64 Ed25519>"}

3. ``consistency`` (one per pair of successive checkpoints, in order)::

       {"type": "consistency", "first": <size>, "second": <size>, "proof": ["<hex>", ...]}

4. ``event`` (seq ascending)::

       {"type": "event", "seq": <n>, "canonical": "<base64 canonical bytes>", "prev_hash": "<hex>",
        "hash": "<hex>", "leaf_index": <n - 1>, "tree_size": <a checkpoint's size>, "proof": ["<hex>", ...]}

5. ``trailer`` (once, last)::

       {"type": "trailer", "lines": <lines before it>, "events": <event lines>, "digest": "<hex>",
        "signature": "<base64 Ed25519>"}

   ``digest`` is SHA-256 over every preceding line with its ``\\n``; the signature is over the text
   ``"strongroom-audit-export\\n<lines>\\n<events>\\n<digest>\\n"``, whose first line keeps it apart from
   checkpoint signatures made with the same key.

What a verified file proves: each event is leaf ``seq - 1`` of a tree whose root the audit key signed; events
with consecutive numbers are hash-chained; checkpoints are consistent (the log only grew). The signed
trailer adds that no line was added, removed or changed since the server wrote the file, which is what
makes a selection's completeness (and the header's claims) trustworthy. Without it only the per-event proofs
stand, so :func:`verify_export` requires it unless told otherwise.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, pairwise
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from server.audit.canonical import CanonicalError, JSONValue, parse_timestamp
from server.audit.chain import GENESIS_HASH, LOOKAHEAD, ChainRow, seal_event
from server.audit.checkpoint import ORIGIN, Checkpoint, CheckpointFormatError, key_id
from server.audit.merkle import leaf_hash, verify_consistency, verify_inclusion

FORMAT: Final = "strongroom-audit-export"
VERSION: Final = 1
_MANIFEST_PREFIX: Final = b"strongroom-audit-export\n"
_HEX_HASH: Final = re.compile(r"[0-9a-f]{64}")
# CSV form (:func:`csv_rows`): one row per JSONL line, the line itself in the last column, and for event lines the
# event's content spread over readable columns.
CSV_COLUMNS: Final = ("type", "seq", "ts", "actor_type", "actor_id", "actor_name", "actor_roles", "action", "entity",
                      "entity_id", "fields", "outcome", "reason", "before", "after", "request_id", "client_address",
                      "user_agent", "hash", "line")
_CSV_EVENT_KEYS: Final = CSV_COLUMNS[1:-2]
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection").
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")

ExportProblem = Literal[
    "altered", "deleted", "inserted", "reordered", "truncated", "signature", "inconsistent", "malformed"
]

_KEYS: Final[Mapping[str, frozenset[str]]] = {
    "header": frozenset(
        {"type", "format", "version", "origin", "key_id", "created", "filter", "complete", "seq_range"}
    ),
    "checkpoint": frozenset({"type", "body", "signature"}),
    "consistency": frozenset({"type", "first", "second", "proof"}),
    "event": frozenset({"type", "seq", "canonical", "prev_hash", "hash", "leaf_index", "tree_size", "proof"}),
    "trailer": frozenset({"type", "lines", "events", "digest", "signature"}),
}
_ORDER: Final = {"header": 0, "checkpoint": 1, "consistency": 2, "event": 3, "trailer": 4}


class ProofSource(Protocol):
    """Where :func:`build_export` gets proofs: a :class:`server.audit.merkle.MerkleTree`, or a DB-backed store."""

    def inclusion_proof(self, index: int, tree_size: int | None = None) -> list[bytes]:
        """The RFC 9162 inclusion proof for leaf ``index`` in the tree of ``tree_size`` leaves."""
        ...

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        """The RFC 9162 consistency proof from ``first`` leaves to ``second``."""
        ...


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint with its signature, as stored and as exported."""

    checkpoint: Checkpoint
    signature: bytes


@dataclass(frozen=True, slots=True)
class ExportReport:
    """The outcome of :func:`verify_export`.

    Attributes:
        ok: True only if every check passed.
        problem: What is wrong (chain problems as in :class:`server.audit.chain.ChainReport`, or
            ``signature``, ``inconsistent``, ``malformed``); None when ``ok``.
        first_bad_seq: The first event implicated, when the problem is about an event.
        detail: One sentence for a person, naming the line.
        events_checked: Event lines verified before the first problem.
        checkpoint_sizes: Tree sizes of the checkpoints whose signatures verified.
        manifest_signed: Whether the signed trailer verified.
        complete: Whether the file claims (and, when ``ok`` and signed, proves) every event of its range.
    """

    ok: bool
    problem: ExportProblem | None
    first_bad_seq: int | None
    detail: str
    events_checked: int
    checkpoint_sizes: tuple[int, ...] = ()
    manifest_signed: bool = False
    complete: bool = False


class ExportWriter:
    """Writes an export one line at a time, so a caller can stream events from a database cursor.

    Call :meth:`opening` once (header, checkpoints, consistency proofs), :meth:`event` for each event in seq
    order, then :meth:`closing` once (the signed trailer). :func:`build_export` does all three over an iterable.
    """

    def __init__(
        self,
        proofs: ProofSource,
        checkpoints: Sequence[SignedCheckpoint],
        *,
        selection: Mapping[str, JSONValue] | str,
        created: str,
        seq_range: tuple[int, int] | None = None,
        signing_key: Ed25519PrivateKey | None = None,
    ) -> None:
        """Check the inputs; see :func:`build_export` for the arguments.

        Raises:
            ValueError: If the checkpoints are empty, unordered or from different keys, or an argument is malformed.
        """
        if not checkpoints:
            raise ValueError("an export needs at least one checkpoint")
        sizes = [signed.checkpoint.tree_size for signed in checkpoints]
        if sizes != sorted(set(sizes)):
            raise ValueError("checkpoints must have distinct tree sizes, ascending")
        signer_id = checkpoints[-1].checkpoint.key_id
        if any(signed.checkpoint.key_id != signer_id for signed in checkpoints):
            raise ValueError("all checkpoints of one export must be signed by the same key")
        if signing_key is not None and key_id(signing_key.public_key()) != signer_id:
            raise ValueError("the trailer must be signed by the key that signed the checkpoints")
        parse_timestamp(created)
        json.loads(json.dumps(selection), parse_float=_no_float, parse_constant=_no_float)  # what verify will accept
        if seq_range is not None and not 1 <= seq_range[0] <= seq_range[1]:
            raise ValueError("seq_range must be (first, last) with 1 <= first <= last")
        self._proofs = proofs
        self._checkpoints = list(checkpoints)
        self._selection = selection
        self._created = created
        self._seq_range = seq_range
        self._signing_key = signing_key
        self._signer_id = signer_id
        self.tree_size = sizes[-1]
        self._digest = hashlib.sha256()
        self._line_count = 0
        self._event_count = 0
        self._last_seq = 0 if seq_range is None else seq_range[0] - 1

    def _emit(self, record: Mapping[str, object]) -> str:
        line = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
        self._digest.update(line.encode("utf-8"))
        self._line_count += 1
        return line

    def opening(self) -> list[str]:
        """The header, the checkpoints and the consistency proofs between them."""
        seq_range = self._seq_range
        lines = [self._emit({
            "type": "header",
            "format": FORMAT,
            "version": VERSION,
            "origin": ORIGIN,
            "key_id": self._signer_id,
            "created": self._created,
            "filter": self._selection,
            "complete": seq_range is not None,
            "seq_range": list(seq_range) if seq_range is not None else None,
        })]
        for signed in self._checkpoints:
            lines.append(self._emit({
                "type": "checkpoint",
                "body": signed.checkpoint.body().decode("ascii"),
                "signature": base64.b64encode(signed.signature).decode("ascii"),
            }))
        sizes = [signed.checkpoint.tree_size for signed in self._checkpoints]
        for first, second in pairwise(sizes):
            proof = self._proofs.consistency_proof(first, second)
            lines.append(self._emit({"type": "consistency", "first": first, "second": second,
                                     "proof": [n.hex() for n in proof]}))
        return lines

    def event(self, row: ChainRow) -> str:
        """One event line, with its inclusion proof against the last checkpoint.

        Raises:
            ValueError: If the event is out of order, beyond the last checkpoint, or leaves a gap in a complete export.
        """
        seq, canonical, prev_hash, event_hash = row
        seq_range = self._seq_range
        if seq <= self._last_seq or (seq_range is not None and seq != self._last_seq + 1):
            raise ValueError(f"event seq {seq} out of order or missing events after {self._last_seq}")
        if seq > self.tree_size:
            raise ValueError(f"event seq {seq} is beyond the last checkpoint (size {self.tree_size}); checkpoint first")
        self._last_seq = seq
        self._event_count += 1
        return self._emit({
            "type": "event",
            "seq": seq,
            "canonical": base64.b64encode(canonical).decode("ascii"),
            "prev_hash": prev_hash.hex(),
            "hash": event_hash.hex(),
            "leaf_index": seq - 1,
            "tree_size": self.tree_size,
            "proof": [n.hex() for n in self._proofs.inclusion_proof(seq - 1, self.tree_size)],
        })

    def closing(self) -> list[str]:
        """The signed trailer (nothing without a signing key).

        Raises:
            ValueError: If a complete export did not reach the end of its range.
        """
        if self._seq_range is not None and self._last_seq != self._seq_range[1]:
            raise ValueError(f"complete export ends at seq {self._last_seq}, not {self._seq_range[1]}")
        if self._signing_key is None:
            return []
        digest_hex = self._digest.hexdigest()
        signature = self._signing_key.sign(_manifest(self._line_count, self._event_count, digest_hex))
        return [self._emit({
            "type": "trailer",
            "lines": self._line_count,
            "events": self._event_count,
            "digest": digest_hex,
            "signature": base64.b64encode(signature).decode("ascii"),
        })]


def build_export(
    events: Iterable[ChainRow],
    proofs: ProofSource,
    checkpoints: Sequence[SignedCheckpoint],
    *,
    selection: Mapping[str, JSONValue] | str,
    created: str,
    seq_range: tuple[int, int] | None = None,
    signing_key: Ed25519PrivateKey | None = None,
) -> Iterator[str]:
    """Write an export, line by line, streaming over the events.

    Every event is proven against the last (largest) checkpoint, so make a fresh checkpoint first if the
    selection reaches past it. Events are leaf ``seq - 1``; their data is the canonical bytes.

    Args:
        events: ``(seq, canonical, prev_hash, hash)`` rows of the selection, seq ascending.
        proofs: Gives inclusion and consistency proofs over the whole trail's leaf hashes.
        checkpoints: Signed checkpoints to include, tree sizes ascending (at least one).
        selection: What was selected, for the reader (e.g. ``{"customer_id": "..."}``); written as ``filter``.
        created: When the export was made, RFC 3339 UTC with microseconds.
        seq_range: For a complete export, the first and last seq; every event between must be in ``events``.
            None for a selection with gaps.
        signing_key: The audit signing key, to sign the trailer. None writes no trailer: the file then
            proves each event but not that the selection is complete, and verifies only when the reader
            opts out of requiring a signed manifest.

    Yields:
        Lines, each ending in ``\\n``.

    Raises:
        ValueError: If the checkpoints are empty, unordered or from different keys, an event lies beyond the
            last checkpoint, events are out of order, or a complete export misses an event of its range.
    """
    writer = ExportWriter(proofs, checkpoints, selection=selection, created=created, seq_range=seq_range,
                          signing_key=signing_key)
    yield from writer.opening()
    for row in events:
        yield writer.event(row)
    yield from writer.closing()


def write_export(path: str | os.PathLike[str], lines: Iterable[str]) -> None:
    """Write export lines to a file, byte for byte (no newline translation).

    Args:
        path: The file to create or replace.
        lines: Lines from :func:`build_export`.
    """
    with Path(path).open("w", encoding="utf-8", newline="") as handle:
        handle.writelines(lines)


def verify_export(
    source: str | os.PathLike[str] | Iterable[str],
    public_key: Ed25519PublicKey,
    *,
    require_signed_manifest: bool = True,
) -> ExportReport:
    """Verify an export offline with the audit public key; stop at the first problem and name it.

    Checks the checkpoint signatures, consistency between successive checkpoints, each event's inclusion
    proof and seal, the hash chain across consecutive events, order, completeness of a complete export, and
    the signed trailer over the whole file. A CSV export (:func:`csv_rows`) is recognised by its header row; its
    ``line`` column is verified as the JSONL file, and every readable column must say what the verified line says.

    Args:
        source: A path to the file, or its lines (an iterable of ``str``, trailing ``\\n`` optional).
        public_key: The trusted audit public key (from the PEM the server exported).
        require_signed_manifest: Fail a file without a signed trailer (the default). Turn off only to read
            an export built without a signing key; completeness is then unproven.

    Returns:
        An :class:`ExportReport`.

    Raises:
        OSError: If ``source`` is a path that cannot be read.
    """
    verifier = _ExportVerifier(public_key, require_signed_manifest)
    try:
        if isinstance(source, str | os.PathLike):
            with Path(source).open(encoding="utf-8", newline="") as handle:
                verifier.run(_jsonl_lines(handle, verifier))
        else:
            verifier.run(_jsonl_lines(source, verifier))
    except _Failed as failure:
        return failure.report
    except UnicodeDecodeError:
        return verifier.report("malformed", None, "the file is not UTF-8")
    return verifier.report(None, None, "intact")


def csv_cell(value: str) -> str:
    """A cell that a spreadsheet shows as text: one starting with ``= + - @``, tab or CR gets a leading ``'``."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def _readable_cells(canonical: bytes) -> list[str]:
    """The readable columns of an event row, from its canonical bytes (lists space-separated, objects as JSON)."""
    event = json.loads(canonical)
    if not isinstance(event, dict):
        raise TypeError("an event is a JSON object")
    cells: list[str] = []
    for key in _CSV_EVENT_KEYS:
        value = event.get(key)
        if value is None:
            cells.append("")
        elif isinstance(value, list):
            cells.append(" ".join(str(item) for item in value))
        elif isinstance(value, dict):
            cells.append(json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
        else:
            cells.append(str(value))
    return [csv_cell(cell) for cell in cells]


def _csv_record(cells: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(cells)
    return buffer.getvalue()


def csv_header() -> str:
    """The header record of the CSV form."""
    return _csv_record(CSV_COLUMNS)


def csv_row(line: str) -> str:
    """The CSV record of one JSONL export line (see :func:`csv_rows`)."""
    text = line[:-1] if line.endswith("\n") else line
    record = json.loads(text)
    if record["type"] == "event":
        readable = _readable_cells(base64.b64decode(record["canonical"]))
        return _csv_record(["event", *readable, record["hash"], text])
    return _csv_record([record["type"], *[""] * (len(CSV_COLUMNS) - 2), text])


def csv_rows(lines: Iterable[str]) -> Iterator[str]:
    """The CSV form of an export: a header row, then one row per line of the JSONL export, in the same order.

    The last column, ``line``, holds the JSONL line itself (without its newline), so the CSV verifies offline
    exactly as the JSONL does, checkpoints, proofs and signed trailer included (the checkpoint rows come first,
    the trailer row last). Event rows also spread the event over readable columns (``actor_roles`` and
    ``fields`` space-separated, ``before`` and ``after`` as JSON, null as empty); the verifier checks each of
    them against the signed line, so an edited cell is caught. Every cell that a spreadsheet would run as a
    formula is prefixed with ``'``. Rows end in CRLF (RFC 4180).

    Args:
        lines: Lines from :func:`build_export` or :class:`ExportWriter`.

    Yields:
        CSV records, each ending in ``\\r\\n``.
    """
    yield csv_header()
    for line in lines:
        yield csv_row(line)


def _jsonl_lines(lines: Iterable[str], verifier: _ExportVerifier) -> Iterator[str]:
    """The JSONL lines of an export file, which may be in the CSV form."""
    iterator = iter(lines)
    first = next(iterator, None)
    if first is None:
        return
    rest = chain([first], iterator)
    if first.rstrip("\r\n") != ",".join(CSV_COLUMNS):
        yield from rest
        return
    reader = csv.reader(rest)
    next(reader)
    for number, cells in enumerate(reader, start=1):
        if len(cells) != len(CSV_COLUMNS):
            raise verifier.fail("malformed", None, f"CSV record {number} does not have {len(CSV_COLUMNS)} columns")
        kind, readable, line = cells[0], cells[1:-1], cells[-1]
        if kind == "event":
            try:
                record = json.loads(line)
                expected = _readable_cells(base64.b64decode(record["canonical"], validate=True))
                seq = record.get("seq")
            except (ValueError, TypeError, KeyError, binascii.Error, RecursionError):
                yield line  # the verifier names what is wrong with the line itself
                continue
            if readable != [*expected, record.get("hash")]:
                detail = f"CSV record {number}: the readable columns of event {seq} do not match its signed content"
                raise verifier.fail("altered", seq if type(seq) is int else None, detail)
        elif any(readable):
            raise verifier.fail("altered", None, f"CSV record {number}: a {kind!r} row has readable cells")
        yield line


def _manifest(lines: int, events: int, digest_hex: str) -> bytes:
    return _MANIFEST_PREFIX + f"{lines}\n{events}\n{digest_hex}\n".encode("ascii")


class _Failed(Exception):
    def __init__(self, report: ExportReport) -> None:
        super().__init__(report.detail)
        self.report = report


@dataclass(slots=True)
class _PendingGap:
    """A gap in a complete export, held while the next lines show whether the events were only moved."""

    first_missing: int
    last_missing: int
    lines_left: int


@dataclass(slots=True)
class _ExportVerifier:
    public_key: Ed25519PublicKey
    require_signed_manifest: bool
    key_id: str = ""
    complete: bool = False
    seq_range: tuple[int, int] | None = None
    checkpoints: dict[int, bytes] = field(default_factory=dict)
    checkpoint_sizes: list[int] = field(default_factory=list)
    consistency_checked: int = 0
    events_checked: int = 0
    last_seq: int = 0
    last_hash: bytes | None = None
    line_count: int = 0
    stage: int = -1
    manifest_signed: bool = False
    pending: _PendingGap | None = None
    digest: Any = field(default_factory=hashlib.sha256)

    def report(self, problem: ExportProblem | None, seq: int | None, detail: str) -> ExportReport:
        return ExportReport(
            ok=problem is None,
            problem=problem,
            first_bad_seq=seq,
            detail=detail,
            events_checked=self.events_checked,
            checkpoint_sizes=tuple(self.checkpoint_sizes),
            manifest_signed=self.manifest_signed,
            complete=self.complete,
        )

    def fail(self, problem: ExportProblem, seq: int | None, detail: str) -> _Failed:
        if self.pending is not None:  # an earlier gap is the first problem, whatever came after it
            return self._gap_failure(self.pending)
        return _Failed(self.report(problem, seq, detail))

    def run(self, lines: Iterable[str]) -> None:
        self.key_id = key_id(self.public_key)
        for raw in _strip_newlines(lines):
            self.line_count += 1
            number = self.line_count
            record = self._parse(raw, number)
            kind = record["type"]
            if self.stage == 4:
                raise self.fail("malformed", None, f"line {number}: nothing may follow the trailer")
            if _ORDER[kind] < self.stage or (kind == "header" and self.stage == 0):
                raise self.fail("malformed", None, f"line {number}: a {kind} line is out of place")
            if kind != "header" and self.stage < 0:
                raise self.fail("malformed", None, "line 1 is not the export header")
            if kind in ("event", "trailer") and self.stage < 3:
                self._checkpoints_complete(number)
            self.stage = _ORDER[kind]
            if kind == "trailer":
                self._trailer(record, number)
            else:
                self.digest.update(raw.encode("utf-8") + b"\n")
                self._dispatch(kind, record, number)
        self._finish()

    def _dispatch(self, kind: str, record: dict[str, Any], number: int) -> None:
        if kind == "header":
            self._header(record, number)
        elif kind == "checkpoint":
            self._checkpoint(record, number)
        elif kind == "consistency":
            self._consistency(record, number)
        else:
            self._event(record, number)

    def _parse(self, raw: str, number: int) -> dict[str, Any]:
        try:
            parsed = json.loads(raw, object_pairs_hook=_no_duplicates, parse_float=_no_float, parse_constant=_no_float)
        except (ValueError, RecursionError) as exc:
            raise self.fail("malformed", None, f"line {number} is not valid JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise self.fail("malformed", None, f"line {number} is not a JSON object")
        record: dict[str, Any] = parsed
        kind = record.get("type")
        if not isinstance(kind, str) or kind not in _KEYS:
            raise self.fail("malformed", None, f"line {number} has no known type")
        if set(record) != _KEYS[kind]:
            raise self.fail("malformed", None, f"line {number}: a {kind} line must have exactly {sorted(_KEYS[kind])}")
        return record

    def _header(self, record: dict[str, Any], number: int) -> None:
        if record["format"] != FORMAT or record["version"] != VERSION or record["origin"] != ORIGIN:
            raise self.fail("malformed", None, f"line {number}: not a {FORMAT} version {VERSION} file")
        if record["key_id"] != self.key_id:
            detail = f"the export is signed by key {record['key_id']!r}, not by the given key {self.key_id}"
            raise self.fail("signature", None, detail)
        try:
            parse_timestamp(record["created"])
        except CanonicalError:
            raise self.fail("malformed", None, f"line {number}: bad 'created' timestamp") from None
        complete, seq_range = record["complete"], record["seq_range"]
        if type(complete) is not bool:
            raise self.fail("malformed", None, f"line {number}: 'complete' must be true or false")
        if complete:
            if not (isinstance(seq_range, list) and len(seq_range) == 2 and all(_is_seq(s) for s in seq_range)):
                raise self.fail("malformed", None, f"line {number}: a complete export needs seq_range [first, last]")
            if seq_range[0] > seq_range[1]:
                raise self.fail("malformed", None, f"line {number}: seq_range is empty")
            self.seq_range = (seq_range[0], seq_range[1])
            self.last_seq = seq_range[0] - 1
        elif seq_range is not None:
            raise self.fail("malformed", None, f"line {number}: seq_range is only for complete exports")
        self.complete = complete

    def _checkpoint(self, record: dict[str, Any], number: int) -> None:
        body, signature = record["body"], _b64(record["signature"])
        if not isinstance(body, str) or signature is None:
            raise self.fail("malformed", None, f"line {number}: checkpoint body or signature malformed")
        try:
            checkpoint = Checkpoint.parse(body.encode("utf-8"))
        except CheckpointFormatError as exc:
            raise self.fail("malformed", None, f"line {number}: {exc}") from None
        if not checkpoint.verify(signature, self.public_key):
            detail = f"line {number}: the checkpoint at size {checkpoint.tree_size} has no valid signature by this key"
            raise self.fail("signature", None, detail)
        if self.checkpoint_sizes and checkpoint.tree_size <= self.checkpoint_sizes[-1]:
            raise self.fail("malformed", None, f"line {number}: checkpoints must grow in size")
        self.checkpoints[checkpoint.tree_size] = checkpoint.root_hash
        self.checkpoint_sizes.append(checkpoint.tree_size)

    def _consistency(self, record: dict[str, Any], number: int) -> None:
        index = self.consistency_checked
        if index + 1 >= len(self.checkpoint_sizes):
            raise self.fail("malformed", None, f"line {number}: more consistency proofs than checkpoint pairs")
        first, second = self.checkpoint_sizes[index], self.checkpoint_sizes[index + 1]
        if record["first"] != first or record["second"] != second:
            raise self.fail("malformed", None, f"line {number}: expected the proof from size {first} to {second}")
        proof = _hex_list(record["proof"])
        if proof is None:
            raise self.fail("malformed", None, f"line {number}: proof nodes must be 64 lower-case hex digits")
        if not verify_consistency(first, second, proof, self.checkpoints[first], self.checkpoints[second]):
            detail = f"the checkpoint at size {second} does not extend the one at size {first}: the trail was rewritten"
            raise self.fail("inconsistent", None, detail)
        self.consistency_checked += 1

    def _checkpoints_complete(self, number: int) -> None:
        if not self.checkpoint_sizes:
            raise self.fail("malformed", None, f"line {number}: an export needs at least one checkpoint")
        if self.consistency_checked != len(self.checkpoint_sizes) - 1:
            raise self.fail("malformed", None, f"line {number}: missing consistency proofs between checkpoints")

    def _event(self, record: dict[str, Any], number: int) -> None:
        seq = record["seq"]
        if not _is_seq(seq):
            raise self.fail("malformed", None, f"line {number}: bad seq")
        if self.pending is not None:
            self._during_gap(self.pending, seq)
            return
        if self.seq_range is not None and not self.seq_range[0] <= seq <= self.seq_range[1]:
            raise self.fail("inserted", seq, f"line {number}: seq {seq} is outside the export's range {self.seq_range}")
        if seq == self.last_seq and self.events_checked:
            raise self.fail("inserted", seq, f"line {number}: seq {seq} appears twice")
        if seq <= self.last_seq:
            raise self.fail("reordered", seq, f"line {number}: seq {seq} comes after seq {self.last_seq}")
        if self.complete and seq != self.last_seq + 1:
            # Hold the verdict: if the missing events turn up in the next lines they were moved, not deleted.
            self.pending = _PendingGap(self.last_seq + 1, seq - 1, LOOKAHEAD)
            return

        canonical = _b64(record["canonical"])
        prev_hash, event_hash = _hex(record["prev_hash"]), _hex(record["hash"])
        proof = _hex_list(record["proof"])
        if canonical is None or prev_hash is None or event_hash is None or proof is None:
            raise self.fail("malformed", seq, f"line {number}: event {seq} has a malformed field")
        if record["leaf_index"] != seq - 1:
            raise self.fail("altered", seq, f"line {number}: event {seq} claims leaf {record['leaf_index']!r}")
        root = self.checkpoints.get(record["tree_size"]) if type(record["tree_size"]) is int else None
        if root is None:
            raise self.fail("malformed", seq, f"line {number}: event {seq} refers to a checkpoint not in the file")
        if not verify_inclusion(leaf_hash(canonical), seq - 1, record["tree_size"], proof, root):
            detail = f"line {number}: event {seq} is not leaf {seq - 1} of the signed tree: its content was changed"
            raise self.fail("altered", seq, detail)
        if _declared_seq(canonical) != seq:
            raise self.fail("altered", seq, f"line {number}: event {seq} carries another seq in its content")
        if seal_event(prev_hash, seq, canonical) != event_hash:
            raise self.fail("altered", seq, f"line {number}: event {seq}'s hash does not match its content and link")
        if seq == 1 and prev_hash != GENESIS_HASH:
            raise self.fail("altered", seq, f"line {number}: event 1 does not link to the genesis hash")
        if seq == self.last_seq + 1 and self.last_hash is not None and prev_hash != self.last_hash:
            detail = f"line {number}: event {seq} does not link to event {seq - 1}: chain hashes were rewritten"
            raise self.fail("altered", seq, detail)
        self.last_seq = seq
        self.last_hash = event_hash
        self.events_checked += 1

    def _during_gap(self, gap: _PendingGap, seq: int) -> None:
        if gap.first_missing <= seq <= gap.last_missing:
            self.pending = None
            raise self.fail("reordered", gap.first_missing, f"seq {seq} appears after later events: lines were moved")
        gap.lines_left -= 1
        if gap.lines_left <= 0:
            raise self._gap_failure(gap)

    def _gap_failure(self, gap: _PendingGap) -> _Failed:
        self.pending = None
        missing = (
            f"event {gap.first_missing} is"
            if gap.first_missing == gap.last_missing
            else f"events {gap.first_missing}..{gap.last_missing} are"
        )
        return _Failed(self.report("deleted", gap.first_missing, f"{missing} missing from a complete export"))

    def _trailer(self, record: dict[str, Any], number: int) -> None:
        digest_hex, signature = record["digest"], _b64(record["signature"])
        lines, events = record["lines"], record["events"]
        well_formed = isinstance(digest_hex, str) and _HEX_HASH.fullmatch(digest_hex) and signature is not None
        if not (well_formed and type(lines) is int and type(events) is int and signature is not None):
            raise self.fail("malformed", None, f"line {number}: trailer malformed")
        if lines != number - 1 or events != self.events_checked:
            detail = (
                f"the trailer counts {lines} lines and {events} events; "
                f"the file has {number - 1} and {self.events_checked}"
            )
            raise self.fail("deleted" if lines > number - 1 else "inserted", None, detail)
        if digest_hex != self.digest.hexdigest():
            raise self.fail("altered", None, "the file's lines do not match the signed digest: a line was changed")
        try:
            self.public_key.verify(signature, _manifest(lines, events, digest_hex))
        except InvalidSignature:
            raise self.fail("signature", None, "the trailer signature is not valid for this key") from None
        self.manifest_signed = True

    def _finish(self) -> None:
        if self.pending is not None:
            raise self._gap_failure(self.pending)
        if self.stage < 0:
            raise self.fail("malformed", None, "the export is empty")
        if self.stage < 3:
            self._checkpoints_complete(self.line_count)
        if self.seq_range is not None and self.last_seq < self.seq_range[1]:
            detail = f"a complete export of {self.seq_range[0]}..{self.seq_range[1]} ends at seq {self.last_seq}"
            raise self.fail("truncated", self.last_seq + 1, detail)
        if self.require_signed_manifest and not self.manifest_signed:
            raise self.fail("truncated", None, "no signed trailer: lines may have been removed from the end")


def _strip_newlines(lines: Iterable[str]) -> Iterator[str]:
    for line in lines:
        yield line[:-1] if line.endswith("\n") else line


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_float(text: str) -> Any:
    raise ValueError(f"non-integer number {text!r}")


def _is_seq(value: object) -> bool:
    return type(value) is int and 1 <= value < 2**63


def _b64(value: object) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return decoded if base64.b64encode(decoded).decode("ascii") == value else None


def _hex(value: object) -> bytes | None:
    if not isinstance(value, str) or _HEX_HASH.fullmatch(value) is None:
        return None
    return bytes.fromhex(value)


def _hex_list(value: object) -> list[bytes] | None:
    if not isinstance(value, list) or len(value) > 64:
        return None
    nodes = [_hex(item) for item in value]
    return None if any(node is None for node in nodes) else [node for node in nodes if node is not None]


def _declared_seq(canonical: bytes) -> int | None:
    try:
        declared = json.loads(canonical)
    except (ValueError, TypeError, RecursionError):
        return None
    value = declared.get("seq") if isinstance(declared, dict) else None
    return value if type(value) is int else None
