"""The erasure ledger: appends chain, and any edit, insertion, removal or reordering is detected."""

from __future__ import annotations

import json
import stat
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from server.security.crypto import (
    DekCache,
    ErasureLedger,
    ErasureLedgerError,
    KeyDestroyed,
    Keyring,
    open_sealed,
    seal,
)


@pytest.fixture(name="ledger")
def fx_ledger(tmp_path: Path, keyring: Keyring) -> ErasureLedger:
    return ErasureLedger.beside(tmp_path / "keyring.json", keyring.ledger_key, keyring.suite)


def _erase(ledger: ErasureLedger, count: int) -> list[uuid.UUID]:
    dek_ids = [uuid.uuid4() for _ in range(count)]
    for number, dek_id in enumerate(dek_ids):
        ledger.append(subject_id=f"customer-{number}", dek_ids=[dek_id], actor="secadmin", legal_basis="PIPL Art. 47")
    return dek_ids


def test_append_and_read_back(ledger: ErasureLedger, tmp_path: Path) -> None:
    assert ledger.read_all() == []
    assert ledger.head() == (0, "0" * 64)
    when = datetime(2026, 11, 23, 10, 15, tzinfo=UTC)
    subject, deks = uuid.uuid4(), [uuid.uuid4(), uuid.uuid4()]
    written = ledger.append(subject_id=subject, dek_ids=deks, actor="alice", legal_basis="GDPR Art. 17",
                            erased_at=when)
    [record] = ledger.read_all()
    assert record == written
    assert (record.seq, record.subject_id, record.dek_ids, record.erased_at) == (1, str(subject), tuple(deks), when)
    assert ledger.head() == (1, record.mac)
    assert stat.S_IMODE(ledger.path.stat().st_mode) == 0o600
    assert ledger.path == tmp_path / "erasure-ledger.jsonl"  # beside the keyring


def test_destroyed_ids_feed_the_cache(ledger: ErasureLedger, keyring: Keyring) -> None:
    dek, wrapped = keyring.new_dek()
    token = seal("13800138000", dek=dek, table="contacts", column="phone", record_id="r1")
    ledger.append(subject_id="c1", dek_ids=[dek.id], actor="secadmin", legal_basis="PIPL Art. 47")
    # A restore brings the wrapped DEK back; the ledger still says it was destroyed.
    keys = DekCache(keyring, load_wrapped=lambda _dek_id: wrapped, destroyed=ledger.destroyed_dek_ids())
    with pytest.raises(KeyDestroyed):
        open_sealed(token, keys=keys, table="contacts", column="phone", record_id="r1")


def _lines(ledger: ErasureLedger) -> list[str]:
    return ledger.path.read_text().splitlines(keepends=True)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("subject_id", "customer-9"),
        ("actor", "mallory"),
        ("legal_basis", "none"),
        ("erased_at", "2020-01-01T00:00:00Z"),
    ],
)
def test_edited_line_detected(ledger: ErasureLedger, field: str, value: str) -> None:
    _erase(ledger, 3)
    lines = _lines(ledger)
    document = json.loads(lines[1])
    document[field] = value
    lines[1] = json.dumps(document, sort_keys=True, separators=(",", ":")) + "\n"
    ledger.path.write_text("".join(lines))
    with pytest.raises(ErasureLedgerError, match="line 2: MAC mismatch"):
        ledger.read_all()


def test_edited_dek_id_detected(ledger: ErasureLedger) -> None:
    _erase(ledger, 2)
    lines = _lines(ledger)
    document = json.loads(lines[0])
    document["dek_ids"] = [str(uuid.uuid4())]
    lines[0] = json.dumps(document, sort_keys=True, separators=(",", ":")) + "\n"
    ledger.path.write_text("".join(lines))
    with pytest.raises(ErasureLedgerError, match="line 1"):
        ledger.destroyed_dek_ids()


def test_removed_line_detected(ledger: ErasureLedger) -> None:
    _erase(ledger, 3)
    lines = _lines(ledger)
    ledger.path.write_text(lines[0] + lines[2])
    with pytest.raises(ErasureLedgerError, match="line 2: chain broken"):
        ledger.read_all()


def test_reordered_lines_detected(ledger: ErasureLedger) -> None:
    _erase(ledger, 3)
    lines = _lines(ledger)
    ledger.path.write_text(lines[1] + lines[0] + lines[2])
    with pytest.raises(ErasureLedgerError, match="line 1: chain broken"):
        ledger.read_all()


def test_line_from_another_key_detected(ledger: ErasureLedger, tmp_path: Path, keyring: Keyring) -> None:
    _erase(ledger, 1)
    other = ErasureLedger(tmp_path / "other.jsonl", Keyring.generate(keyring.suite).ledger_key, keyring.suite)
    other.append(subject_id="x", dek_ids=[uuid.uuid4()], actor="mallory", legal_basis="none")
    forged = other.path.read_text()
    with ledger.path.open("a") as handle:
        handle.write(forged.replace('"seq":1', '"seq":2'))
    with pytest.raises(ErasureLedgerError, match="line 2: MAC mismatch"):
        ledger.read_all()


def test_garbage_and_partial_lines(ledger: ErasureLedger) -> None:
    _erase(ledger, 1)
    good = ledger.path.read_text()
    ledger.path.write_text(good + '{"seq":2')
    with pytest.raises(ErasureLedgerError, match="incomplete"):
        ledger.read_all()
    ledger.path.write_text(good + "not json\n")
    with pytest.raises(ErasureLedgerError, match="line 2: not valid JSON"):
        ledger.read_all()
    with pytest.raises(ErasureLedgerError):
        ledger.append(subject_id="c", dek_ids=[uuid.uuid4()], actor="a", legal_basis="b")
    assert ledger.path.read_text() == good + "not json\n"  # nothing appended to a broken ledger


def test_append_requires_keys_and_aware_time(ledger: ErasureLedger) -> None:
    with pytest.raises(ValueError, match="at least one"):
        ledger.append(subject_id="c", dek_ids=[], actor="a", legal_basis="b")
    with pytest.raises(ValueError, match="timezone"):
        ledger.append(
            subject_id="c", dek_ids=[uuid.uuid4()], actor="a", legal_basis="b", erased_at=datetime(2026, 1, 1)
        )
