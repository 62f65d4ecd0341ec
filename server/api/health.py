"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get

from server.api.problems import problem
from server.services.health import database_ready


class HealthController(Controller):
    path = "/health"
    tags = ["health"]

    @get("/live", summary="The process is up")
    async def live(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/ready", summary="The database answers")
    async def ready(self, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        if await database_ready(request.app.state.resources.engine):
            return Response({"status": "ok", "database": "ok"})
        return problem(request, 503, "the database is not reachable", slug="not-ready")
