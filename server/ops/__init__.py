"""Operations: demo data, backups, key jobs, schedules. May use every layer."""
