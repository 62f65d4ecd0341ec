"""Runs the ASGI server. Granian was chosen by measurement (docs/benchmarks.md); this is the one place to swap it."""

from __future__ import annotations

from granian import Granian
from granian.constants import Interfaces

from server.config import Settings


def serve(settings: Settings) -> None:
    """Serve ``server.app:create_app_from_env`` with the configured address and worker count (blocks)."""
    Granian(
        target="server.app:create_app_from_env",
        factory=True,
        interface=Interfaces.ASGI,
        address=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_access=False,  # the application writes its own access log without query strings
        respawn_failed_workers=True,
    ).serve()
