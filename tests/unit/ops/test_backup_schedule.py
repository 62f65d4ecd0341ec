"""The embedded backup schedule: due times (DST included), one run per due time across workers, failures survived."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from server.config import Settings, SettingsError, load_settings
from server.ops.audit_archive import run_archive_schedule
from server.ops.backup.errors import BackupError
from server.ops.backup.schedule import next_due, run_backup_schedule

BERLIN = ZoneInfo("Europe/Berlin")


def _at(text: str, tz: ZoneInfo = BERLIN) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz)


@pytest.mark.parametrize(("schedule", "after", "expected"), [
    ("daily 02:30", "2026-03-10 01:00", "2026-03-10 02:30"),
    ("daily 02:30", "2026-03-10 02:30", "2026-03-11 02:30"),  # strictly after
    ("daily 02:30", "2026-03-10 23:59", "2026-03-11 02:30"),
    ("hourly :15", "2026-03-10 10:15", "2026-03-10 11:15"),
    ("hourly :15", "2026-03-10 10:14", "2026-03-10 10:15"),
    ("weekly sun 03:00", "2026-03-10 12:00", "2026-03-15 03:00"),  # a Tuesday
    ("weekly tue 03:00", "2026-03-10 02:00", "2026-03-10 03:00"),
    ("weekly tue 03:00", "2026-03-10 04:00", "2026-03-17 03:00"),
])
def test_next_due(schedule: str, after: str, expected: str) -> None:
    assert next_due(schedule, _at(after), BERLIN) == _at(expected)


def test_next_due_keeps_wall_clock_time_across_daylight_saving() -> None:
    # Europe/Berlin moves to summer time on 2026-03-29: 02:30 local is UTC+1 before, UTC+2 after.
    before = next_due("daily 04:00", _at("2026-03-28 05:00"), BERLIN)
    assert before is not None and before.astimezone(UTC) == datetime(2026, 3, 29, 2, 0, tzinfo=UTC)
    after = next_due("daily 04:00", before, BERLIN)
    assert after is not None and after.astimezone(UTC) == datetime(2026, 3, 30, 2, 0, tzinfo=UTC)


def test_off_has_no_due_time() -> None:
    assert next_due("off", datetime.now(UTC)) is None


def test_schedule_setting_is_validated_and_normalised() -> None:
    assert load_settings({"STRONGROOM_BACKUP_SCHEDULE": "  Daily   02:30 "}).backup_schedule == "daily 02:30"
    assert load_settings({}).backup_schedule == "off"
    for bad in ("daily 2:30", "nightly", "weekly funday 01:00", "hourly 15", "daily 25:00"):
        with pytest.raises(SettingsError, match="STRONGROOM_BACKUP_SCHEDULE"):
            load_settings({"STRONGROOM_BACKUP_SCHEDULE": bad})
    with pytest.raises(SettingsError, match="STRONGROOM_BACKUP_KEEP_DAILY"):
        load_settings({"STRONGROOM_BACKUP_KEEP_DAILY": "-1"})


def test_backup_and_ledger_paths_default_beside_data_and_keys(tmp_path: Path) -> None:
    settings = load_settings({"STRONGROOM_DATA_DIR": str(tmp_path)})
    assert settings.resolved_backup_dir == tmp_path / "backups"
    assert settings.resolved_erasure_ledger_path == tmp_path / "keys" / "erasure-ledger.jsonl"
    moved = load_settings({"STRONGROOM_DATA_DIR": str(tmp_path), "STRONGROOM_ERASURE_LEDGER_PATH": "/srv/l.jsonl",
                           "STRONGROOM_BACKUP_DIR": "/srv/backups"})
    assert moved.resolved_erasure_ledger_path == Path("/srv/l.jsonl")
    assert moved.resolved_backup_dir == Path("/srv/backups")


class _Clock:
    """A fake wall clock that the fake sleep moves forward."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        await asyncio.sleep(0)


def _settings(tmp_path: Path, schedule: str = "hourly :00") -> Settings:
    return load_settings({}, data_dir=str(tmp_path), backup_schedule=schedule)


async def test_each_due_time_runs_once_and_failures_do_not_stop_the_loop(tmp_path: Path) -> None:
    clock = _Clock(datetime(2026, 3, 10, 9, 30, tzinfo=UTC))
    runs: list[datetime] = []

    async def job(_settings: Settings) -> None:
        runs.append(clock())
        if len(runs) == 2:
            raise BackupError("disk full")
        if len(runs) == 3:
            raise RuntimeError("something unexpected")
        if len(runs) == 5:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await run_backup_schedule(_settings(tmp_path), job=job, clock=clock, sleep=clock.sleep, tz=UTC)
    assert runs == [datetime(2026, 3, 10, hour, 0, tzinfo=UTC) for hour in (10, 11, 12, 13, 14)]


async def test_a_run_that_overruns_skips_the_due_times_it_missed(tmp_path: Path) -> None:
    clock = _Clock(datetime(2026, 3, 10, 9, 59, tzinfo=UTC))
    runs: list[datetime] = []

    async def job(_settings: Settings) -> None:
        runs.append(clock())
        if len(runs) == 1:
            clock.now += timedelta(hours=2, minutes=30)  # 10:00 -> 12:30
        else:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await run_backup_schedule(_settings(tmp_path), job=job, clock=clock, sleep=clock.sleep, tz=UTC)
    assert runs == [datetime(2026, 3, 10, 10, 0, tzinfo=UTC), datetime(2026, 3, 10, 13, 0, tzinfo=UTC)]


async def test_several_workers_take_one_backup_per_due_time(tmp_path: Path) -> None:
    start = datetime(2026, 3, 10, 9, 59, 59, tzinfo=UTC)
    runs: list[str] = []
    release = asyncio.Event()

    def worker(name: str) -> asyncio.Task[None]:
        clock = _Clock(start)

        async def job(_settings: Settings) -> None:
            runs.append(name)
            await release.wait()  # hold the lock while the other workers wake up

        async def sleep(seconds: float) -> None:
            if clock.now >= datetime(2026, 3, 10, 10, 0, 30, tzinfo=UTC):
                await asyncio.Event().wait()  # park after the first due time
            await clock.sleep(seconds)

        return asyncio.create_task(run_backup_schedule(_settings(tmp_path), job=job, clock=clock, sleep=sleep,
                                                       tz=UTC))

    tasks = [worker(f"worker-{n}") for n in range(3)]
    for _ in range(20):
        await asyncio.sleep(0)
    release.set()
    # A worker that wakes only after the first one finished must not take the same backup again.
    late = worker("late")
    for _ in range(20):
        await asyncio.sleep(0)
    for task in [*tasks, late]:
        task.cancel()
    await asyncio.gather(*tasks, late, return_exceptions=True)
    assert len(runs) == 1


async def test_off_returns_at_once(tmp_path: Path) -> None:
    async def job(_settings: Settings) -> None:
        raise AssertionError("must not run")

    await asyncio.wait_for(run_backup_schedule(_settings(tmp_path, "off"), job=job), timeout=1)


# --- the audit archive schedule runs on the same loop, with its lock in the archive directory ------------------


def test_archive_schedule_setting_is_validated_and_off_by_default() -> None:
    assert load_settings({}).audit_archive_schedule == "off"
    assert load_settings({"STRONGROOM_AUDIT_ARCHIVE_SCHEDULE": " Daily 03:30"}).audit_archive_schedule == "daily 03:30"
    with pytest.raises(SettingsError, match="STRONGROOM_AUDIT_ARCHIVE_SCHEDULE"):
        load_settings({"STRONGROOM_AUDIT_ARCHIVE_SCHEDULE": "nightly"})


async def test_archive_schedule_runs_each_due_time_once_and_keeps_its_state_beside_the_archives(
        tmp_path: Path) -> None:
    clock = _Clock(datetime(2026, 3, 10, 9, 30, tzinfo=UTC))
    runs: list[datetime] = []
    settings = load_settings({}, data_dir=str(tmp_path), audit_archive_schedule="daily 03:30",
                             audit_archive_dir=str(tmp_path / "archives"))

    async def job(_settings: Settings) -> None:
        runs.append(clock())
        if len(runs) == 1:
            raise RuntimeError("role lacks the schema owner's rights")  # logged; the next day retries
        if len(runs) == 3:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await run_archive_schedule(settings, job=job, clock=clock, sleep=clock.sleep, tz=UTC)
    assert runs == [datetime(2026, 3, day, 3, 30, tzinfo=UTC) for day in (11, 12, 13)]
    assert {path.name for path in (tmp_path / "archives").iterdir()} == {".schedule.lock", ".schedule-last-run"}
    assert not (tmp_path / "backups").exists()
    assert await asyncio.wait_for(run_archive_schedule(load_settings({}, data_dir=str(tmp_path)), job=job), 1) is None
