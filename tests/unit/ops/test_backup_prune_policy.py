"""The retention policy: the newest backup per day, ISO week and month, for the configured number of each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from server.ops.backup.prune import BackupEntry, RetentionPolicy, select_kept


def _entry(moment: datetime) -> BackupEntry:
    name = f"strongroom-{moment:%Y%m%dT%H%M%SZ}.srbk"
    return BackupEntry(created_at=moment, backup=Path(name), manifest=Path(name + ".manifest.json"))


def _kept_times(entries: list[BackupEntry], policy: RetentionPolicy) -> list[datetime]:
    kept = select_kept(entries, policy)
    return sorted(entry.created_at for entry in entries if entry.backup in kept)


def test_nothing_to_keep_in_an_empty_directory() -> None:
    assert select_kept([], RetentionPolicy()) == set()


def test_the_newest_backup_is_always_kept() -> None:
    entries = [_entry(datetime(2026, 1, day, 2, 30, tzinfo=UTC)) for day in (1, 2, 3)]
    assert _kept_times(entries, RetentionPolicy(0, 0, 0)) == [datetime(2026, 1, 3, 2, 30, tzinfo=UTC)]


def test_daily_keeps_the_newest_of_each_of_the_last_n_days() -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    # Three backups a day for ten days.
    entries = [_entry(start + timedelta(days=day, hours=hour)) for day in range(10) for hour in (1, 9, 17)]
    kept = _kept_times(entries, RetentionPolicy(daily=3, weekly=0, monthly=0))
    assert kept == [start + timedelta(days=day, hours=17) for day in (7, 8, 9)]


def test_days_without_a_backup_do_not_count() -> None:
    days = [1, 2, 10, 20, 21]
    entries = [_entry(datetime(2026, 4, day, 2, tzinfo=UTC)) for day in days]
    kept = _kept_times(entries, RetentionPolicy(daily=3, weekly=0, monthly=0))
    assert [moment.day for moment in kept] == [10, 20, 21]


def test_a_year_of_nightly_backups_with_the_default_policy() -> None:
    # Nightly at 02:30 UTC from 2025-01-01 to 2025-12-31 (a Wednesday).
    start = datetime(2025, 1, 1, 2, 30, tzinfo=UTC)
    entries = [_entry(start + timedelta(days=day)) for day in range(365)]
    kept = _kept_times(entries, RetentionPolicy(daily=7, weekly=4, monthly=12))
    last = datetime(2025, 12, 31, 2, 30, tzinfo=UTC)
    daily = {last - timedelta(days=n) for n in range(7)}  # Dec 25..31
    # Newest per ISO week, newest first: week 1 of 2026 (Dec 29-31) -> Dec 31; week 52 -> Sun Dec 28;
    # week 51 -> Dec 21; week 50 -> Dec 14.
    weekly = {last, datetime(2025, 12, 28, 2, 30, tzinfo=UTC), datetime(2025, 12, 21, 2, 30, tzinfo=UTC),
              datetime(2025, 12, 14, 2, 30, tzinfo=UTC)}
    month_ends = {datetime(2025, month + 1, 1, 2, 30, tzinfo=UTC) - timedelta(days=1) for month in range(1, 12)}
    monthly = month_ends | {last}
    assert set(kept) == daily | weekly | monthly
    assert len(kept) == 7 + 2 + 11  # Dec 31 counts for all three rules, Dec 28 for daily and weekly


def test_weeks_are_iso_weeks_across_the_new_year() -> None:
    # Sun 2026-01-04 closes ISO week 1 of 2026, which began on Mon 2025-12-29.
    entries = [_entry(datetime(2025, 12, 28, tzinfo=UTC)), _entry(datetime(2025, 12, 29, tzinfo=UTC)),
               _entry(datetime(2026, 1, 4, tzinfo=UTC))]
    kept = _kept_times(entries, RetentionPolicy(daily=0, weekly=2, monthly=0))
    assert kept == [datetime(2025, 12, 28, tzinfo=UTC), datetime(2026, 1, 4, tzinfo=UTC)]


def test_monthly_keeps_the_last_backup_of_each_month() -> None:
    entries = [_entry(datetime(2026, month, day, tzinfo=UTC)) for month in (1, 2, 3) for day in (1, 15, 28)]
    kept = _kept_times(entries, RetentionPolicy(daily=0, weekly=0, monthly=2))
    assert kept == [datetime(2026, 2, 28, tzinfo=UTC), datetime(2026, 3, 28, tzinfo=UTC)]
