"""Serve the baseline exactly as ``server/serving.py`` serves Strongroom: granian, ASGI, same options.

    STRONGROOM_DATABASE_URL=... python -m bench.baseline.serve --host 127.0.0.1 --port 8001 --workers 2
"""

from __future__ import annotations

import argparse

from granian import Granian
from granian.constants import Interfaces


def serve(host: str, port: int, workers: int) -> None:
    """Blocks; the same Granian settings (and worker garbage-collector settings) as Strongroom's server/serving.py."""
    Granian(
        target="bench.baseline.app:create_served_app",
        factory=True,
        interface=Interfaces.ASGI,
        address=host,
        port=port,
        workers=workers,
        log_access=False,
        respawn_failed_workers=True,
    ).serve()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="serve the benchmark baseline app with granian")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.workers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
